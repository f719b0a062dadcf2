package source

import (
	"errors"
	"fmt"
	"io/fs"

	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/test/gitserver"
)

func TestFetchBound(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/platform")
	small := gr.Commit(t, "main", "small", map[string]string{"apps/a/a.yaml": "kind: ConfigMap\n"})
	big := gr.Commit(t, "feature", "big file outside every app", map[string]string{"junk/big.bin": noise(2 << 20)})
	dir := t.TempDir()
	c, err := New(Options{Dir: dir, MaxFetchBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	repo := Repo{Name: "platform", URL: gr.CloneURL()}
	err = c.Fetch(t.Context(), repo, big, "feature")
	if !errors.Is(err, ErrFetchTooLarge) || IsTransient(err) || !strings.Contains(err.Error(), "MaxFetchBytes") {
		t.Fatalf("fetch of a 2 MiB commit under a 1 MiB bound: %v, want a permanent ErrFetchTooLarge naming MaxFetchBytes", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "platform.git", "objects", "pack", "*"))
	for _, p := range left {
		if strings.Contains(filepath.Base(p), "tmp_") {
			t.Errorf("the refused fetch left %s behind", p)
		}
	}
	// What fits still fetches.
	if err := c.Fetch(t.Context(), repo, small, "main"); err != nil {
		t.Fatalf("a small fetch after the refused one: %v", err)
	}
}

func TestFilesCountsEveryRead(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/platform")
	blob := noise(4 << 20)
	files := map[string]string{}
	n := MaxTreeBytes/len(blob) + 2
	for i := range n {
		files[fmt.Sprintf("apps/a/f%03d.yaml", i)] = blob
	}
	sha := gr.Commit(t, "main", "one blob at many paths", files)
	c := newCache(t, t.TempDir())
	repo := Repo{Name: "platform", URL: gr.CloneURL()}
	if err := c.Fetch(t.Context(), repo, sha); err != nil {
		t.Fatal(err)
	}
	fsys, err := c.Files(t.Context(), repo, sha, "apps/a")
	if err != nil {
		t.Fatal(err)
	}
	var read int
	for i := range n {
		_, err = fs.ReadFile(fsys, fmt.Sprintf("apps/a/f%03d.yaml", i))
		if err != nil {
			break
		}
		read++
	}
	if !errors.Is(err, ErrBadTree) || !strings.Contains(err.Error(), "MaxTreeBytes") {
		t.Fatalf("after %d reads: %v, want ErrBadTree naming MaxTreeBytes", read, err)
	}
	if want := MaxTreeBytes / len(blob); read != want {
		t.Errorf("%d reads of a %d byte blob before the bound, want %d", read, len(blob), want)
	}
}
