package test

import (
	"crypto/sha256"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// incompressible is n bytes that zlib cannot shrink, so a pack's size shows what it carries.
func incompressible(n int) string {
	out := make([]byte, 0, n+sha256.Size)
	sum := sha256.Sum256([]byte("ferry"))
	for len(out) < n {
		out = append(out, sum[:]...)
		sum = sha256.Sum256(sum[:])
	}
	return string(out[:n])
}

// cachePackBytes is the size of the pack files of ferry's Git cache for repository name.
func cachePackBytes(t *testing.T, dataDir, name string) int64 {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(dataDir, "git", name+".git", "objects", "pack", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range packs {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// TestPreviewObjectsAreCollected shows that a pull request carrying large files does not grow the
// Git cache for good: its ref and the objects only it reaches are dropped once they expire (a new
// process counts every ref it did not fetch itself as expired) at the repository's next fetch.
func TestPreviewObjectsAreCollected(t *testing.T) {
	ns := "e2e-gitcache"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	base := repo.Commit(t, "main", "web", webApp(ns, "one"))
	forge := forgefake.New(t, forgeToken)
	cfg := config("github", repo.CloneURL(), forge.URL(), ns)
	dataDir := t.TempDir()
	f := startFerry(t, cfg, ferryEnv, dataDir)
	if st := waitFinal(t, forge, base, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("base sync: %+v", st[len(st)-1])
	}
	before := cachePackBytes(t, dataDir, "platform")

	const large = 8 << 20
	files := webApp(ns, "two")
	files["assets/large.bin"] = incompressible(large)
	head := repo.Commit(t, "large", "web: greeting, and a large file", files)
	repo.PushRef(t, "refs/pull/41/head", head)
	repo.DeleteRef(t, "refs/heads/large") // only the pull request's ref reaches it, as for a fork
	if code, body := f.send(t, "platform", githubPR(t, "d-cache-41", 41, head, base)); code != http.StatusAccepted {
		t.Fatalf("pull_request hook: %d %s", code, body)
	}
	if st := waitFinal(t, forge, head, "ferry/web/preview"); st[len(st)-1].State != "success" {
		t.Fatalf("preview: %+v", st[len(st)-1])
	}
	if grown := cachePackBytes(t, dataDir, "platform") - before; grown < large {
		t.Fatalf("the preview added %d bytes to the cache, want its %d byte file", grown, large)
	}

	f.Stop(t)
	f = startFerry(t, cfg, ferryEnv, dataDir)
	next := repo.Commit(t, "main", "web: three", map[string]string{"apps/web/config.yaml": webApp(ns, "three")["apps/web/config.yaml"]})
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-cache-push", base, next, "apps/web/config.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	if st := waitFinal(t, forge, next, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("deploy after the restart: %+v", st[len(st)-1])
	}
	if left := cachePackBytes(t, dataDir, "platform") - before; left >= large {
		t.Errorf("%d bytes left in the cache over the branch's, want the pull request's %d byte file collected", left, large)
	}
}
