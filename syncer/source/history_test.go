package source

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/test/gitserver"
	"github.com/google/go-cmp/cmp"
)

func TestHistory(t *testing.T) {
	gr := gitserver.New(t).CreateRepo(t, "acme/history")
	c1 := gr.Commit(t, "main", "one", map[string]string{"a.yaml": "a: 1\n", "b/b.yaml": "b: 1\n"})
	c2 := gr.Commit(t, "main", "two", map[string]string{"a.yaml": "a: 2\n", "c.yaml": "c: 1\n"})
	f1 := gr.Commit(t, "feature", "feature", map[string]string{"f.yaml": "f: 1\n"})
	c3 := gr.Remove(t, "main", "three", "b")
	repo := Repo{Name: "history", URL: gr.CloneURL()}
	c := newCache(t, t.TempDir())
	for _, sha := range []string{c3, f1} {
		if err := c.Fetch(t.Context(), repo, sha); err != nil {
			t.Fatal(err)
		}
	}
	missing := strings.Repeat("0123456789", 4)

	changed := []struct {
		name     string
		from, to string
		want     []string
	}{
		{"modified and added", c1, c2, []string{"a.yaml", "c.yaml"}},
		{"removed", c2, c3, []string{"b/b.yaml"}},
		{"from nothing", "", c1, []string{"a.yaml", "b/b.yaml"}},
		{"backwards", c3, c1, []string{"a.yaml", "b/b.yaml", "c.yaml"}},
		{"across branches", c3, f1, []string{"b/b.yaml", "f.yaml"}},
		{"same commit", c2, c2, []string{}},
	}
	for _, tt := range changed {
		t.Run("changed "+tt.name, func(t *testing.T) {
			got, err := c.Changed(t.Context(), repo, tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Changed(%s, %s) (-want +got):\n%s", tt.from, tt.to, diff)
			}
		})
	}

	ancestor := []struct {
		name string
		a, b string
		want bool
	}{
		{"older on the branch", c1, c3, true},
		{"newer on the branch", c3, c1, false},
		{"itself", c2, c2, true},
		{"branch point", c2, f1, true},
		{"other branch", f1, c3, false},
		{"diverged", c3, f1, false},
	}
	for _, tt := range ancestor {
		t.Run("ancestor "+tt.name, func(t *testing.T) {
			got, err := c.IsAncestor(t.Context(), repo, tt.a, tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("IsAncestor(%s, %s) = %v, want %v", short(tt.a), short(tt.b), got, tt.want)
			}
		})
	}

	t.Run("unfetched commits", func(t *testing.T) {
		if _, err := c.Changed(t.Context(), repo, c1, missing); !errors.Is(err, ErrCommitNotFound) {
			t.Errorf("Changed with an unfetched commit: %v, want ErrCommitNotFound", err)
		}
		if _, err := c.Changed(t.Context(), repo, missing, c1); !errors.Is(err, ErrCommitNotFound) {
			t.Errorf("Changed from an unfetched commit: %v, want ErrCommitNotFound", err)
		}
		if _, err := c.IsAncestor(t.Context(), repo, missing, c3); !errors.Is(err, ErrCommitNotFound) {
			t.Errorf("IsAncestor with an unfetched commit: %v, want ErrCommitNotFound", err)
		}
	})
}
