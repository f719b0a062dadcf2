package handlers

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/go-chi/chi/v5"
)

// differFunc is a Differ with a function field.
type differFunc func(ctx context.Context, app string, files fs.FS) (syncer.DiffResult, error)

func (f differFunc) Diff(ctx context.Context, app string, files fs.FS) (syncer.DiffResult, error) {
	return f(ctx, app, files)
}

// entry is one member of a test archive.
type entry struct {
	name, body string
	kind       byte
	link       string
}

func archive(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		kind := e.kind
		if kind == 0 {
			kind = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: kind, Mode: 0o644, Linkname: e.link}
		if kind == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
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

// newTestResync is the manual sync handler a Diff takes its apps from: one app, api.
func newTestResync(t *testing.T) *Resync {
	t.Helper()
	r, err := NewResync([]ResyncApp{{Name: "api", Repo: "platform", Branch: "main"}}, remoteRefs{"refs/heads/main": strings.Repeat("a", 40)},
		&jobSink{}, testSuspensions(t), ResyncOptions{Repos: map[string]source.Repo{"platform": {Name: "platform"}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// serveDiff serves d as the server mounts it, behind Auth with the one API token "tok".
func serveDiff(t *testing.T, d *Diff, app, token string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	r := chi.NewRouter()
	r.With(NewAuth([]Token{{Name: "ci", Value: []byte("tok")}}, nil).Require).Method(http.MethodPost, "/api/v1/apps/{app}/diff", d)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/apps/"+app+"/diff", body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

// TestDiffHandsTheDirectoryToTheDiffer: the archive's files reach the differ as a tree rooted
// at the directory, and the differ's result is the answer.
func TestDiffHandsTheDirectoryToTheDiffer(t *testing.T) {
	var got map[string]string
	d, err := NewDiff(newTestResync(t), differFunc(func(_ context.Context, app string, files fs.FS) (syncer.DiffResult, error) {
		got = map[string]string{}
		err := fs.WalkDir(files, ".", func(p string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			b, err := fs.ReadFile(files, p)
			got[p] = string(b)
			return err
		})
		return syncer.DiffResult{Diff: "~ v1/ConfigMap web/x  change\n", Summary: "1 changed, 0 created, 0 pruned", Counts: map[string]int{"changed": 1},
			Objects: []queue.ObjectRecord{{Kind: "ConfigMap", Namespace: "web", Name: "x", Action: "change"}}}, err
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	body := archive(t, entry{name: "./config.yaml", body: "a: 1\n"}, entry{name: "base/", kind: tar.TypeDir}, entry{name: "base/kustomization.yaml", body: "resources: []\n"})
	w := serveDiff(t, d, "api", "tok", bytes.NewReader(body))
	if w.Code != http.StatusOK {
		t.Fatalf("diff = %d %s", w.Code, w.Body)
	}
	want := map[string]string{"config.yaml": "a: 1\n", "base/kustomization.yaml": "resources: []\n"}
	if len(got) != len(want) || got["config.yaml"] != want["config.yaml"] || got["base/kustomization.yaml"] != want["base/kustomization.yaml"] {
		t.Errorf("files the differ saw = %v, want %v", got, want)
	}
	var res syncer.DiffResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || res.Counts["changed"] != 1 || len(res.Objects) != 1 || !strings.Contains(res.Diff, "ConfigMap") {
		t.Errorf("answer %s (%v)", w.Body, err)
	}
}

// TestDiffRefusesBadRequests: no token, an unknown app, archives that are not what they must
// be, past a bound, or hostile: each refused with its status and a clear message, before the
// differ runs.
func TestDiffRefusesBadRequests(t *testing.T) {
	called := false
	d, err := NewDiff(newTestResync(t), differFunc(func(context.Context, string, fs.FS) (syncer.DiffResult, error) {
		called = true
		return syncer.DiffResult{}, nil
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := archive(t, entry{name: "a.yaml", body: "a: 1\n"})
	random := make([]byte, MaxDiffArchive+1)
	_, _ = rand.Read(random)
	big := archive(t, entry{name: "noise", body: string(random)})
	many := make([]entry, MaxDiffFiles+1)
	for i := range many {
		many[i] = entry{name: "f/" + strings.Repeat("x", 1+i%50) + string(rune('a'+i%26)) + "-" + itoa(i)}
	}
	tests := []struct {
		name, app, token string
		body             io.Reader
		code             int
		msg              string
	}{
		{"no token", "api", "", bytes.NewReader(ok), http.StatusUnauthorized, "bearer token"},
		{"wrong token", "api", "nope", bytes.NewReader(ok), http.StatusUnauthorized, "bearer token"},
		{"unknown app", "nope", "tok", bytes.NewReader(ok), http.StatusNotFound, `no app named`},
		{"not gzip", "api", "tok", strings.NewReader("plain text"), http.StatusBadRequest, "gzip-compressed tar"},
		{"climbs out", "api", "tok", bytes.NewReader(archive(t, entry{name: "../secret.yaml", body: "x"})), http.StatusBadRequest, "leaves the directory"},
		{"climbs out midway", "api", "tok", bytes.NewReader(archive(t, entry{name: "a/../../b.yaml", body: "x"})), http.StatusBadRequest, "leaves the directory"},
		{"absolute", "api", "tok", bytes.NewReader(archive(t, entry{name: "/etc/passwd", body: "x"})), http.StatusBadRequest, "not a relative path"},
		{"symlink", "api", "tok", bytes.NewReader(archive(t, entry{name: "l.yaml", kind: tar.TypeSymlink, link: "/etc/passwd"})), http.StatusBadRequest, "is a link"},
		{"device", "api", "tok", bytes.NewReader(archive(t, entry{name: "dev", kind: tar.TypeChar})), http.StatusBadRequest, "not a regular file"},
		{"twice", "api", "tok", bytes.NewReader(archive(t, entry{name: "a.yaml"}, entry{name: "./a.yaml"})), http.StatusBadRequest, "appears twice"},
		{"file and directory", "api", "tok", bytes.NewReader(archive(t, entry{name: "a"}, entry{name: "a/b.yaml"})), http.StatusBadRequest, "both a file and a directory"},
		{"long name", "api", "tok", bytes.NewReader(archive(t, entry{name: strings.Repeat("n", MaxDiffPath+1)})), http.StatusBadRequest, "longer than"},
		{"compressed past the bound, length declared", "api", "tok", bytes.NewReader(big), http.StatusRequestEntityTooLarge, "larger than"},
		{"compressed past the bound, length not declared", "api", "tok", io.MultiReader(bytes.NewReader(big)), http.StatusRequestEntityTooLarge, "larger than"},
		{"too many entries", "api", "tok", bytes.NewReader(archive(t, many...)), http.StatusRequestEntityTooLarge, "entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called = false
			w := serveDiff(t, d, tt.app, tt.token, tt.body)
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.msg) {
				t.Errorf("= %d %s, want %d with %q", w.Code, w.Body, tt.code, tt.msg)
			}
			if called {
				t.Errorf("the differ ran")
			}
		})
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// errReadPast fails a read past the point where the handler must have stopped.
var errReadPast = errors.New("read past the refusal point")

type failAfter struct{}

func (failAfter) Read([]byte) (int, error) { return 0, errReadPast }

// TestDiffRefusesAnArchiveThatInflates: an archive whose files inflate past MaxDiffBytes is
// refused when its content crosses the bound, while it is read: the body behind that point is
// never read.
func TestDiffRefusesAnArchiveThatInflates(t *testing.T) {
	d, err := NewDiff(newTestResync(t), differFunc(func(context.Context, string, fs.FS) (syncer.DiffResult, error) {
		t.Error("the differ ran")
		return syncer.DiffResult{}, nil
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	zeros := make([]byte, 1<<20)
	half := int64(MaxDiffBytes/2 + 1)
	for _, name := range []string{"a.yaml", "b.yaml"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: half}); err != nil {
			t.Fatal(err)
		}
		for n := half; n > 0; n -= int64(len(zeros)) {
			if _, err := tw.Write(zeros[:min(n, int64(len(zeros)))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > MaxDiffArchive/10 {
		t.Fatalf("the test's archive is %d bytes compressed: not a bomb", buf.Len())
	}
	w := serveDiff(t, d, "api", "tok", io.MultiReader(&buf, failAfter{}))
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "uncompressed") {
		t.Errorf("= %d %s, want 413 for the uncompressed size", w.Code, w.Body)
	}
}

// TestDiffAnswersTheDiffersFailure: a render or dry-run failure is 422 with the stage, object,
// file and message; a transient one 503; a busy server 503 with Retry-After.
func TestDiffAnswersTheDiffersFailure(t *testing.T) {
	fail := &syncer.DiffError{RecordError: queue.RecordError{Stage: "plan", Object: "ConfigMap web/x", File: "config.yaml", Message: "data: Invalid value"}}
	d, err := NewDiff(newTestResync(t), differFunc(func(context.Context, string, fs.FS) (syncer.DiffResult, error) {
		return syncer.DiffResult{}, fail
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := archive(t, entry{name: "a.yaml", body: "a: 1\n"})
	w := serveDiff(t, d, "api", "tok", bytes.NewReader(ok))
	var got map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &got)
	want := map[string]string{"error": "data: Invalid value", "stage": "plan", "object": "ConfigMap web/x", "file": "config.yaml"}
	if w.Code != http.StatusUnprocessableEntity || len(got) != len(want) || got["object"] != want["object"] || got["file"] != want["file"] || got["error"] != want["error"] {
		t.Errorf("= %d %v, want 422 %v", w.Code, got, want)
	}
	fail.Transient = true
	if w := serveDiff(t, d, "api", "tok", bytes.NewReader(ok)); w.Code != http.StatusServiceUnavailable {
		t.Errorf("transient failure = %d, want 503", w.Code)
	}
	for range MaxConcurrentDiffs {
		d.slots <- struct{}{}
	}
	if w := serveDiff(t, d, "api", "tok", bytes.NewReader(ok)); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("busy = %d (Retry-After %q), want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}

// TestArchiveTreeIsAFileSystem: the tree read from an archive behaves as fs.FS requires.
func TestArchiveTreeIsAFileSystem(t *testing.T) {
	t.Parallel()
	files, err := readArchive(bytes.NewReader(archive(t, entry{name: "./kustomization.yaml", body: "resources: []\n"},
		entry{name: "base/", kind: tar.TypeDir}, entry{name: "base/a.yaml", body: "a: 1\n"}, entry{name: "empty/", kind: tar.TypeDir})))
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(files, "kustomization.yaml", "base/a.yaml", "empty"); err != nil {
		t.Fatal(err)
	}
}
