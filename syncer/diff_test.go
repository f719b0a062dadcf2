package syncer

import (
	"testing"
	"testing/fstest"
)

// TestMountedIsAFileSystem: a directory's files mounted at an app's path read as a file
// system whose parents hold only the way to them, as fs.FS requires of every part.
func TestMountedIsAFileSystem(t *testing.T) {
	files := fstest.MapFS{
		"kustomization.yaml": {Data: []byte("resources: [a.yaml]\n")},
		"a.yaml":             {Data: []byte("kind: ConfigMap\n")},
		"sub/b.yaml":         {Data: []byte("kind: Secret\n")},
	}
	m := mounted{dir: "apps/web", fsys: files}
	if err := fstest.TestFS(m, "apps/web/kustomization.yaml", "apps/web/a.yaml", "apps/web/sub/b.yaml"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"apps/other", "apps/webx/a.yaml", "a.yaml", "../apps/web/a.yaml"} {
		if _, err := m.Open(name); err == nil {
			t.Errorf("Open(%q) succeeded; only the mounted tree and its parents exist", name)
		}
	}
}
