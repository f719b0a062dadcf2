package client

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testLimits = ArchiveLimits{MaxCompressed: 1 << 20, MaxBytes: 1 << 20, MaxFiles: 10}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// untar reads an archive back into names and contents.
func untar(t *testing.T, data []byte) map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: type %c, want regular files only", hdr.Name, hdr.Typeflag)
		}
		b, _ := io.ReadAll(tr)
		out[hdr.Name] = string(b)
	}
}

// TestArchiveSendsTheDirectory: the files under the directory, by relative name, without .git;
// a link to a file inside is sent as that file; the same tree gives the same bytes.
func TestArchiveSendsTheDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"kustomization.yaml": "resources: [a.yaml]\n", "base/a.yaml": "a: 1\n", ".git/config": "[core]\n"})
	if err := os.Symlink("base/a.yaml", filepath.Join(dir, "alias.yaml")); err != nil {
		t.Fatal(err)
	}
	data, err := Archive(dir, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"kustomization.yaml": "resources: [a.yaml]\n", "base/a.yaml": "a: 1\n", "alias.yaml": "a: 1\n"}
	if diff := cmp.Diff(want, untar(t, data)); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
	again, err := Archive(dir, testLimits)
	if err != nil || !bytes.Equal(data, again) {
		t.Errorf("a second archive of the same tree differs (%v)", err)
	}
}

// TestArchiveRefuses: links leaving the directory or naming a directory, a file instead of a
// directory, and trees past each bound are refused, naming what is wrong.
func TestArchiveRefuses(t *testing.T) {
	outside := t.TempDir()
	write(t, outside, map[string]string{"secret.yaml": "x"})
	tests := []struct {
		name  string
		setup func(dir string)
		lim   ArchiveLimits
		say   string
		large bool
	}{
		{name: "link leaving", setup: func(dir string) { _ = os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(dir, "s.yaml")) }, say: "link s.yaml leaves"},
		{name: "relative link climbing out", setup: func(dir string) { _ = os.Symlink("../../etc/hostname", filepath.Join(dir, "h.yaml")) }, say: "h.yaml"},
		{name: "dangling link", setup: func(dir string) { _ = os.Symlink("nope.yaml", filepath.Join(dir, "d.yaml")) }, say: "link d.yaml"},
		{name: "link to a directory", setup: func(dir string) {
			write(t, dir, map[string]string{"sub/a.yaml": "a"})
			_ = os.Symlink("sub", filepath.Join(dir, "dirlink"))
		}, say: "names a directory"},
		{name: "too many files", setup: func(dir string) {
			for i := range 11 {
				write(t, dir, map[string]string{strings.Repeat("f", i+1) + ".yaml": "x"})
			}
		}, say: "more than 10 files", large: true},
		{name: "too many bytes", setup: func(dir string) { write(t, dir, map[string]string{"big.yaml": strings.Repeat("x", 1<<20+1)}) }, say: "more than 1048576 bytes", large: true},
		{name: "compressed too large", setup: func(dir string) { write(t, dir, map[string]string{"a.yaml": strings.Repeat("y", 5000)}) },
			lim: ArchiveLimits{MaxCompressed: 10, MaxBytes: 1 << 20, MaxFiles: 10}, say: "larger than 10 bytes", large: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app")
			write(t, dir, map[string]string{"ok.yaml": "ok"})
			tt.setup(dir)
			lim := tt.lim
			if lim == (ArchiveLimits{}) {
				lim = testLimits
			}
			_, err := Archive(dir, lim)
			if err == nil || !strings.Contains(err.Error(), tt.say) || errors.Is(err, ErrArchiveTooLarge) != tt.large {
				t.Errorf("Archive = %v, want an error saying %q (too large: %v)", err, tt.say, tt.large)
			}
		})
	}
	file := filepath.Join(t.TempDir(), "f.yaml")
	write(t, filepath.Dir(file), map[string]string{"f.yaml": "x"})
	if _, err := Archive(file, testLimits); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Archive of a file = %v", err)
	}
}
