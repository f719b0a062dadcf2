package source

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ferrygitops/ferry/test/gitserver"
	"github.com/google/go-cmp/cmp"
)

// walk lists the files under root in fsys, sorted.
func walk(t *testing.T, fsys fs.FS, root string) []string {
	t.Helper()
	var got []string
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			got = append(got, p)
		}
		return err
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return got
}

// linkedRepo is a commit with plain files, links that stay in the repository and links that
// do not.
func linkedRepo(t *testing.T) (*Cache, Repo, string) {
	t.Helper()
	gr := gitserver.New(t).CreateRepo(t, "acme/links")
	gr.Commit(t, "main", "files", map[string]string{
		"shared/cm.yaml":       "kind: ConfigMap\n",
		"shared/sub/svc.yaml":  "kind: Service\n",
		"apps/ok/own.yaml":     "kind: Deployment\n",
		"apps/plain/a.yaml":    "kind: Secret\n",
		"apps/plain/b/c.yaml":  "kind: Job\n",
		"apps/escape/ok.yaml":  "kind: Pod\n",
		"apps/abs/ok.yaml":     "kind: Pod\n",
		"apps/loop/ok.yaml":    "kind: Pod\n",
		"apps/dangle/ok.yaml":  "kind: Pod\n",
		"apps/hops/real.yaml":  "kind: CronJob\n",
		"docs/README.md":       "hello\n",
		"apps/exec/run.sh":     "#!/bin/sh\n",
		"apps/deep/x/y/z.yaml": "kind: Role\n",
		"apps/cyc/c.yaml":      "kind: Pod\n",
		"apps/cyc2/d.yaml":     "kind: Pod\n",
	})
	for _, l := range [][2]string{
		{"apps/ok/cm.yaml", "../../shared/cm.yaml"},        // a file elsewhere in the repository
		{"apps/ok/shared", "../../shared"},                 // a directory
		{"apps/ok/via.yaml", "shared/sub/svc.yaml"},        // through the directory link
		{"apps/linked", "ok"},                              // the app directory itself is a link
		{"apps/hops/one.yaml", "two.yaml"},                 // a chain of links
		{"apps/hops/two.yaml", "real.yaml"},                //
		{"apps/escape/passwd.yaml", "../../../etc/passwd"}, // out of the repository
		{"apps/abs/passwd.yaml", "/etc/passwd"},            // absolute
		{"apps/loop/self", "."},                            // a directory containing the link
		{"apps/dangle/gone.yaml", "missing.yaml"},          // nothing there
		{"apps/deep/x/up", "../../.."},                     // to an ancestor: a loop
		{"apps/cyc/a", "../cyc2"},                          // two links that lead to each other
		{"apps/cyc2/b", "../cyc"},                          //
	} {
		gr.Symlink(t, "main", l[0], l[1])
	}
	sha := gr.Head(t, "main")
	repo := Repo{Name: "links", URL: gr.CloneURL()}
	c := newCache(t, t.TempDir())
	if err := c.Fetch(t.Context(), repo, sha, "main"); err != nil {
		t.Fatal(err)
	}
	return c, repo, sha
}

func TestFiles(t *testing.T) {
	c, repo, sha := linkedRepo(t)
	tests := []struct {
		name    string
		dir     string
		want    []string // files under the cleaned dir
		wantErr string   // in the error, which then wraps ErrBadTree
	}{
		{name: "plain directory", dir: "apps/plain", want: []string{"apps/plain/a.yaml", "apps/plain/b/c.yaml"}},
		{name: "unclean path", dir: "./apps/plain/", want: []string{"apps/plain/a.yaml", "apps/plain/b/c.yaml"}},
		{name: "executable file", dir: "apps/exec", want: []string{"apps/exec/run.sh"}},
		{name: "links inside the repository", dir: "apps/ok", want: []string{
			"apps/ok/cm.yaml", "apps/ok/own.yaml", "apps/ok/shared/cm.yaml", "apps/ok/shared/sub/svc.yaml", "apps/ok/via.yaml",
		}},
		{name: "app directory is a link", dir: "apps/linked", want: []string{
			"apps/linked/cm.yaml", "apps/linked/own.yaml", "apps/linked/shared/cm.yaml", "apps/linked/shared/sub/svc.yaml", "apps/linked/via.yaml",
		}},
		{name: "chain of links", dir: "apps/hops", want: []string{"apps/hops/one.yaml", "apps/hops/real.yaml", "apps/hops/two.yaml"}},
		{name: "link out of the repository", dir: "apps/escape", wantErr: "apps/escape/passwd.yaml -> ../../../etc/passwd leaves the repository"},
		{name: "absolute link", dir: "apps/abs", wantErr: "apps/abs/passwd.yaml -> /etc/passwd points to an absolute path"},
		{name: "link to its own directory", dir: "apps/loop", wantErr: "apps/loop/self -> . makes a directory loop"},
		{name: "dangling link", dir: "apps/dangle", wantErr: "apps/dangle/gone.yaml -> missing.yaml apps/dangle/missing.yaml does not exist"},
		{name: "link to an ancestor", dir: "apps/deep", wantErr: "apps/deep/x/up -> ../../.. makes a directory loop"},
		{name: "links in a cycle", dir: "apps/cyc", wantErr: "apps/cyc/a/b/a -> ../cyc2 makes a directory loop"},
		{name: "missing directory", dir: "apps/missing", wantErr: `app path "apps/missing"`},
		{name: "a file", dir: "apps/plain/a.yaml", wantErr: `app path "apps/plain/a.yaml" in commit ` + short(sha) + " is not a directory"},
		{name: "leaves the repository", dir: "apps/../../x", wantErr: "leaves the repository"},
		{name: "absolute", dir: "/apps/plain", wantErr: "must be relative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys, err := c.Files(t.Context(), repo, sha, tt.dir)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrBadTree) || err == nil || !strings.Contains(err.Error(), tt.wantErr) || IsTransient(err) {
					t.Fatalf("Files(%q) = %v, want ErrBadTree saying %q", tt.dir, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			root := strings.Trim(strings.TrimPrefix(tt.dir, "./"), "/")
			if diff := cmp.Diff(tt.want, walk(t, fsys, root)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilesContentAndRefusedLinks(t *testing.T) {
	c, repo, sha := linkedRepo(t)
	fsys, err := c.Files(t.Context(), repo, sha, "apps/ok")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, name := range []string{"apps/ok/cm.yaml", "apps/ok/via.yaml", "apps/linked/shared/sub/svc.yaml", "apps/hops/one.yaml", "docs/README.md"} {
		got[name] = readFile(t, fsys, name)
	}
	want := map[string]string{
		"apps/ok/cm.yaml":                 "kind: ConfigMap\n",
		"apps/ok/via.yaml":                "kind: Service\n",
		"apps/linked/shared/sub/svc.yaml": "kind: Service\n",
		"apps/hops/one.yaml":              "kind: CronJob\n",
		"docs/README.md":                  "hello\n",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("content (-want +got):\n%s", diff)
	}

	// Bad links outside the app are left out of listings, and opening one says why.
	for _, name := range []string{"apps/escape/passwd.yaml", "apps/abs/passwd.yaml", "apps/loop/self/ok.yaml"} {
		if _, err := fs.ReadFile(fsys, name); !errors.Is(err, ErrBadTree) {
			t.Errorf("read %s: %v, want ErrBadTree", name, err)
		}
	}
	all := walk(t, fsys, ".")
	for _, name := range all {
		if strings.HasPrefix(name, "apps/escape/passwd") || strings.HasPrefix(name, "apps/loop/self") {
			t.Errorf("refused link %s is listed", name)
		}
	}
	// The file system behaves as io/fs requires.
	if err := fstest.TestFS(fsys, all...); err != nil {
		t.Error(err)
	}
	if _, err := c.Files(t.Context(), repo, strings.Repeat("cd", 20), "apps/ok"); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("Files of an unfetched commit: %v, want ErrCommitNotFound", err)
	}
}
