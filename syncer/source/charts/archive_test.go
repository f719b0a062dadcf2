package charts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"testing"
)

// tgz builds a gzip tar of files, in order.
func tgz(t *testing.T, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestVerifyArchive(t *testing.T) {
	chartYAML := "apiVersion: v2\nname: demo\nversion: 1.2.3\n"
	big := string(bytes.Repeat([]byte("a"), 4096))
	for _, tc := range []struct {
		name    string
		archive []byte
		want    error
	}{
		{"chart", tgz(t, [2]string{"demo/Chart.yaml", chartYAML}, [2]string{"demo/templates/cm.yaml", "kind: ConfigMap"}), nil},
		{"Chart.yaml after templates", tgz(t, [2]string{"demo/values.yaml", "a: 1"}, [2]string{"demo/Chart.yaml", chartYAML}), nil},
		{"not gzip", []byte("plain text"), ErrNotChart},
		{"gzip, not tar", gzipOf(t, "plain text that is no tar header at all"), ErrNotChart},
		{"no Chart.yaml", tgz(t, [2]string{"demo/values.yaml", "a: 1"}), ErrNotChart},
		{"Chart.yaml of a subchart only", tgz(t, [2]string{"demo/values.yaml", "a: 1"}, [2]string{"demo/charts/sub/Chart.yaml", chartYAML}), ErrNotChart},
		{"Chart.yaml without version", tgz(t, [2]string{"demo/Chart.yaml", "name: demo\n"}), ErrNotChart},
		{"unpacks too large", tgz(t, [2]string{"demo/Chart.yaml", chartYAML}, [2]string{"demo/big", big}), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf, err := verifyArchive(tc.archive, 1024)
			if tc.want == nil {
				if err != nil || cf.Name != "demo" || cf.Version != "1.2.3" {
					t.Fatalf("verifyArchive = %+v, %v; want demo 1.2.3", cf, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("verifyArchive error = %v, want %v", err, tc.want)
			}
		})
	}
}

func gzipOf(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestResolveVersion(t *testing.T) {
	available := []string{"0.9.0", "1.0.0", "1.2.0", "1.3.0-rc.1", "2.0.0", "latest"}
	for _, tc := range []struct{ want, got string }{
		{"1.0.0", "1.0.0"},
		{"v1.2.0", "1.2.0"},
		{"", "2.0.0"},
		{"1.x", "1.2.0"},
		{"~1.2", "1.2.0"},
		{">=1.3.0-0 <2", "1.3.0-rc.1"},
		{"<1", "0.9.0"},
		{"latest", "latest"},
	} {
		got, err := resolveVersion(available, tc.want)
		if err != nil || got != tc.got {
			t.Errorf("resolveVersion(%q) = %q, %v; want %q", tc.want, got, err, tc.got)
		}
	}
	for _, want := range []string{"1.1.0", ">=3", "1.3.0-rc.2"} {
		if _, err := resolveVersion(available, want); !errors.Is(err, ErrVersionNotFound) {
			t.Errorf("resolveVersion(%q) error = %v, want ErrVersionNotFound", want, err)
		}
	}
	if _, err := resolveVersion(available, "abc"); !errors.Is(err, ErrBadRef) {
		t.Errorf("resolveVersion(\"abc\") error = %v, want ErrBadRef", err)
	}
}
