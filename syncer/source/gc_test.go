package source

import (
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/test/gitserver"
)

// clock is a settable Options.Now.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// packBytes is the size of the cache's pack files for repo name.
func packBytes(t *testing.T, dir, name string) int64 {
	t.Helper()
	var n int64
	for _, s := range packSizes(t, dir, name) {
		n += s
	}
	return n
}

func TestPreviewRefsAreCollected(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/platform")
	main1 := gr.Commit(t, "main", "first", map[string]string{"apps/a/a.yaml": "kind: ConfigMap\n"})
	pr := gr.Commit(t, "pr7", "large files", map[string]string{"apps/a/big.yaml": noise(2 << 20)})
	gr.PushRef(t, "refs/pull/7/head", pr)
	merged := gr.Commit(t, "pr8", "large files, merged later", map[string]string{"apps/a/merged.yaml": noise(1 << 20)})
	gr.PushRef(t, "refs/pull/8/head", merged)

	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	ttl := 10 * time.Minute
	c, err := New(Options{Dir: dir, PreviewRefTTL: ttl, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	repo := Repo{Name: "platform", URL: gr.CloneURL()}
	ctx := t.Context()
	if err := c.Fetch(ctx, repo, main1, "main"); err != nil {
		t.Fatal(err)
	}
	base := packBytes(t, dir, "platform")
	if err := c.Fetch(ctx, repo, pr, "refs/pull/7/head"); err != nil {
		t.Fatal(err)
	}
	with7 := packBytes(t, dir, "platform")
	if err := c.Fetch(ctx, repo, merged, "refs/pull/8/head"); err != nil {
		t.Fatal(err)
	}
	pr7, pr8 := with7-base, packBytes(t, dir, "platform")-with7
	if pr7 < 1<<20 || pr8 < 512<<10 {
		t.Fatalf("the previews added %d and %d bytes, want their large files", pr7, pr8)
	}
	// Within the TTL, a preview keeps its commit, even while other fetches run.
	clk.now = clk.now.Add(ttl / 2)
	if err := c.Fetch(ctx, repo, main1, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Files(ctx, repo, pr, "apps/a"); err != nil {
		t.Fatalf("preview commit within the TTL: %v", err)
	}

	// Pull request 8 is merged: main now reaches its objects, fetched for the preview. Past the
	// TTL, the fetch of main drops both preview refs and the objects only pull request 7 reached.
	main2 := gr.Commit(t, "pr8", "later", map[string]string{"apps/a/b.yaml": "kind: Secret\n"})
	gr.PushRef(t, "refs/heads/main", main2)
	clk.now = clk.now.Add(ttl)
	if err := c.Fetch(ctx, repo, main2, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Files(ctx, repo, pr, "apps/a"); !errors.Is(err, ErrCommitNotFound) {
		t.Fatalf("expired preview commit: %v, want ErrCommitNotFound", err)
	}
	// What is left over the first fetch: pull request 8's pack (now main's) and main2's commit.
	if left := packBytes(t, dir, "platform") - base; left >= pr8+pr7/2 {
		t.Errorf("%d bytes left over the branches' first fetch, want about pull request 8's %d, now on main; pull request 7's %d gone", left, pr8, pr7)
	}
	// What a branch reaches is kept, pull request 8's file included.
	fsys, err := c.Files(ctx, repo, merged, "apps/a")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, fsys, "apps/a/merged.yaml"); len(got) != 1<<20 {
		t.Errorf("merged.yaml has %d bytes after the collection", len(got))
	}
	// A collected preview is fetched again when asked for.
	if err := c.Fetch(ctx, repo, pr, "refs/pull/7/head"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, mustFiles(t, c, repo, pr), "apps/a/big.yaml"); len(got) != 2<<20 {
		t.Errorf("big.yaml has %d bytes after the second fetch", len(got))
	}
}

func mustFiles(t *testing.T, c *Cache, repo Repo, sha string) fs.FS {
	t.Helper()
	fsys, err := c.Files(t.Context(), repo, sha, "apps/a")
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}
