package source

import (
	"fmt"
	"io/fs"
	"testing"

	"github.com/ferrygitops/ferry/test/gitserver"
)

// BenchmarkFilesManyApps reads every app of a monorepo of 200 apps from the cache, as the
// workers of a push touching all of them do.
func BenchmarkFilesManyApps(b *testing.B) {
	const apps = 200
	srv := gitserver.New(b)
	gr := srv.CreateRepo(b, "acme/mono")
	files := map[string]string{}
	for i := range apps {
		for j := range 3 {
			files[fmt.Sprintf("apps/a%d/obj%d.yaml", i, j)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a%d-%d\ndata:\n  k: v%d\n", i, j, i)
		}
	}
	sha := gr.Commit(b, "main", "apps", files)
	repo := Repo{Name: "mono", URL: gr.CloneURL()}
	c := newCache(b, b.TempDir())
	if err := c.Fetch(b.Context(), repo, sha, "main"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		for i := range apps {
			fsys, err := c.Files(b.Context(), repo, sha, fmt.Sprintf("apps/a%d", i))
			if err != nil {
				b.Fatal(err)
			}
			if err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				_, err = fs.ReadFile(fsys, p)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
