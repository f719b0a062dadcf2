package upstream

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDir(t *testing.T) {
	// A small module that ships a YAML file: the download and the cached directory are real.
	dir, err := Dir(t.Context(), "sigs.k8s.io/yaml", "v1.4.0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "yaml.go")); err != nil {
		t.Fatalf("module directory %s lacks yaml.go: %v", dir, err)
	}
	if _, err := Dir(t.Context(), "sigs.k8s.io/yaml", "v0.0.0-no-such-version"); err == nil {
		t.Fatal("a version that does not exist was found")
	}
}
