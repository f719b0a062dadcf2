package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cliRun is one run of the ferry command line.
type cliRun struct {
	code        int
	out, stderr string
}

// runCLI runs the ferry binary as a user would, against server, with env (FERRY_TOKEN, …).
func runCLI(t *testing.T, server string, env map[string]string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "FERRY_SERVER=" + server}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliRun{out: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("ferry %v: %v", args, err)
	}
	return r
}

// writeDir writes files (paths relative to dir) under dir.
func writeDir(t *testing.T, dir string, files map[string]string) {
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

// localCopy is the app's files as a user's checkout holds them, relative to apps/web.
func localCopy(files map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range files {
		out[strings.TrimPrefix(k, "apps/web/")] = v
	}
	return out
}

// TestCLIEndToEnd: the ferry command line against a running ferry, a real apiserver and git
// over HTTP: apps, app and history read the state; sync --wait exits 0 on a good commit and 1
// on one the apiserver refuses, with the object and the apiserver's words; diff --path shows a
// local change against the cluster without applying it; bad input gets clear errors and the
// documented exit codes.
func TestCLIEndToEnd(t *testing.T) {
	ns := "e2e-cli"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hello"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if st := waitFinal(t, forge, first, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("start-up sync: %+v", st[len(st)-1])
	}
	withToken := map[string]string{"FERRY_TOKEN": apiToken}

	// Reads.
	r := runCLI(t, f.URL, nil, "apps")
	if r.code != 0 || !contains(r.out, "NAME", "STATE", "REVISION", "AGE", "web", "succeeded", first[:7]) {
		t.Errorf("ferry apps = %d\n%s%s", r.code, r.out, r.stderr)
	}
	r = runCLI(t, f.URL, nil, "apps", "-o", "json")
	var apps struct {
		Apps []struct {
			Name     string       `json:"name"`
			LastSync queue.Record `json:"lastSync"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(r.out), &apps); err != nil || r.code != 0 || len(apps.Apps) != 1 || apps.Apps[0].Name != "web" || apps.Apps[0].LastSync.SHA != first {
		t.Errorf("ferry apps -o json = %d %v\n%s", r.code, err, r.out)
	}
	r = runCLI(t, f.URL, nil, "app", "web")
	if r.code != 0 || !contains(r.out, "Path:", "apps/web", "Last sync:", "succeeded", "Objects of sync", "ConfigMap", "web-settings", "Service") {
		t.Errorf("ferry app web = %d\n%s%s", r.code, r.out, r.stderr)
	}

	// A good commit: sync --wait follows it to success, and the cluster holds it.
	good := repo.Commit(t, "main", "web: bonjour", webApp(ns, "bonjour"))
	r = runCLI(t, f.URL, withToken, "sync", "web", "--revision", good, "--wait", "--timeout", "2m")
	if r.code != 0 || !contains(r.out, "queued: http://ferry.e2e.invalid/syncs/", "running web at "+good[:7], "apply", "succeeded", "objects:") {
		t.Fatalf("ferry sync --wait (good) = %d\n%s%s", r.code, r.out, r.stderr)
	}
	t.Logf("ferry sync --wait:\n%s", r.out)
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "bonjour" {
		t.Fatalf("after the sync: %v %v", cm.Data, err)
	}

	// A commit the apiserver refuses: exit 1, the object and the apiserver's words.
	bad := repo.Commit(t, "main", "web: bad name", map[string]string{
		"apps/web/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\ndata:\n  a: b\n",
	})
	r = runCLI(t, f.URL, withToken, "sync", "web", "--revision", bad, "--wait", "--timeout", "2m", "-o", "json")
	var rec queue.Record
	if r.code != 1 || json.Unmarshal([]byte(r.out), &rec) != nil || rec.State != queue.StateFailed || rec.SHA != bad {
		t.Fatalf("ferry sync --wait -o json (bad) = %d, want 1 and the failed record\n%s%s", r.code, r.out, r.stderr)
	}
	if !contains(r.stderr, "failed", "Bad_Name", "bad.yaml") {
		t.Errorf("the failure does not name the object and file:\n%s", r.stderr)
	}

	// History: every sync, newest first.
	r = runCLI(t, f.URL, nil, "history", "web")
	t.Logf("ferry history:\n%s", r.out)
	if r.code != 0 || strings.Count(r.out, "\n") < 4 || !contains(r.out, "failed", "succeeded", bad[:7], good[:7], first[:7]) ||
		strings.Index(r.out, bad[:7]) > strings.Index(r.out, good[:7]) {
		t.Errorf("ferry history web = %d\n%s%s", r.code, r.out, r.stderr)
	}
	r = runCLI(t, f.URL, nil, "history", "web", "-o", "json")
	var hist []queue.Record
	if err := json.Unmarshal([]byte(r.out), &hist); err != nil || len(hist) < 3 || hist[0].SHA != bad {
		t.Errorf("ferry history -o json = %v %d records\n%s", err, len(hist), r.out)
	}

	// Diff of a changed local copy: the change against the cluster, nothing applied.
	dir := t.TempDir()
	local := localCopy(webApp(ns, "hola"))
	local["extra.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-extra\ndata:\n  k: v\n"
	local["secret.yaml"] = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-token\nstringData:\n  token: hunter2-very-secret\n"
	writeDir(t, dir, local)
	writeDir(t, filepath.Join(dir, ".git"), map[string]string{"config": "not: [valid yaml"})
	r = runCLI(t, f.URL, withToken, "diff", "web", "--path", dir)
	if r.code != 0 || !contains(r.out, "web-settings", "greeting", "hola", "web-extra", "web-token", "created", "changed") {
		t.Errorf("ferry diff = %d\n%s%s", r.code, r.out, r.stderr)
	}
	t.Logf("ferry diff:\n%s", r.out)
	if strings.Contains(r.out, "hunter2-very-secret") {
		t.Errorf("the diff shows a Secret's value:\n%s", r.out)
	}
	r = runCLI(t, f.URL, withToken, "diff", "web", "--path", dir, "-o", "json")
	var diff struct {
		Diff    string               `json:"diff"`
		Counts  map[string]int       `json:"counts"`
		Objects []queue.ObjectRecord `json:"objects"`
	}
	if err := json.Unmarshal([]byte(r.out), &diff); err != nil || diff.Counts["created"] != 2 || diff.Counts["changed"] != 1 || len(diff.Objects) < 4 {
		t.Errorf("ferry diff -o json = %v %+v\n%s", err, diff.Counts, r.out)
	}
	cm, err = cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "bonjour" {
		t.Errorf("the diff changed the cluster: %v %v", cm.Data, err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-extra", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the diff created web-extra: %v", err)
	}

	// A local copy that does not render: exit 1 with the stage and file.
	broken := t.TempDir()
	writeDir(t, broken, map[string]string{"config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [not, a, map\n"})
	r = runCLI(t, f.URL, withToken, "diff", "web", "--path", broken)
	t.Logf("ferry diff of a broken copy:\n%s", r.stderr)
	if r.code != 1 || !contains(r.stderr, "render", "config.yaml") {
		t.Errorf("ferry diff of a broken copy = %d\n%s%s", r.code, r.out, r.stderr)
	}

	// Bad input.
	escape := t.TempDir()
	writeDir(t, escape, map[string]string{"config.yaml": local["config.yaml"]})
	if err := os.Symlink("/etc/hostname", filepath.Join(escape, "host.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		say  string
	}{
		{"unknown app", nil, []string{"app", "nope"}, 3, `no app named "nope"`},
		{"sync of an unknown app", withToken, []string{"sync", "nope"}, 3, `no app named "nope"`},
		{"sync without a token", nil, []string{"sync", "web"}, 2, "needs an API token"},
		{"diff without a token", nil, []string{"diff", "web", "--path", dir}, 2, "needs an API token"},
		{"wrong token", map[string]string{"FERRY_TOKEN": "not-the-token"}, []string{"diff", "web", "--path", dir}, 3, "401"},
		{"diff without a path", withToken, []string{"diff", "web"}, 2, "--path"},
		{"diff of a missing directory", withToken, []string{"diff", "web", "--path", filepath.Join(dir, "nope")}, 2, "no such file"},
		{"link leaving the directory", withToken, []string{"diff", "web", "--path", escape}, 2, "link host.yaml leaves"},
		{"unknown command", nil, []string{"deploy", "web"}, 2, "unknown command"},
	} {
		r := runCLI(t, f.URL, c.env, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.say) {
			t.Errorf("%s: ferry %v = %d %q, want %d saying %q", c.name, c.args, r.code, r.stderr, c.code, c.say)
		}
		if strings.Contains(r.stderr+r.out, apiToken) {
			t.Errorf("%s: the token is printed", c.name)
		}
	}

	// Suspend, a refused sync, a forced one's absence of need, and resume syncing the head.
	r = runCLI(t, f.URL, withToken, "suspend", "web", "--reason", "e2e freeze")
	if r.code != 0 || !contains(r.out, "web", "suspended") {
		t.Fatalf("ferry suspend = %d\n%s%s", r.code, r.out, r.stderr)
	}
	r = runCLI(t, f.URL, nil, "apps", "-o", "json")
	if r.code != 0 || !contains(r.out, `"suspended": true`, "e2e freeze") {
		t.Errorf("ferry apps -o json after suspend = %d\n%s", r.code, r.out)
	}
	r = runCLI(t, f.URL, withToken, "sync", "web", "--wait", "--timeout", "2m")
	if r.code != 5 || !contains(r.stderr, "suspended", "--force") {
		t.Errorf("ferry sync of a suspended app = %d, want 5 suggesting --force\n%s%s", r.code, r.out, r.stderr)
	}
	repo.Remove(t, "main", "web: the bad object goes", "apps/web/bad.yaml")
	head := repo.Commit(t, "main", "web: while suspended", webApp(ns, "resumed"))
	r = runCLI(t, f.URL, withToken, "resume", "web", "--wait", "--timeout", "2m")
	if r.code != 0 || !contains(r.out, head[:7], "succeeded") {
		t.Errorf("ferry resume --wait = %d, want 0 after syncing %s\n%s%s", r.code, head[:7], r.out, r.stderr)
	}
	cm, err = cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "resumed" {
		t.Errorf("after resume the cluster holds %v (%v), want the head's greeting", cm.Data, err)
	}
}

// TestDiffEndpointRefusesHostileArchives: the real server refuses, with 400 or 413 and a clear
// message, archives that climb out of the directory, hold links, or inflate past the bound.
func TestDiffEndpointRefusesHostileArchives(t *testing.T) {
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	repo.Commit(t, "main", "web", webApp("e2e-cli-hostile", "hello"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), "e2e-cli-hostile"), ferryEnv, "")

	tarGz := func(write func(tw *tar.Writer)) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		write(tw)
		_ = tw.Close()
		_ = zw.Close()
		return buf.Bytes()
	}
	file := func(name string, size int64) func(tw *tar.Writer) {
		return func(tw *tar.Writer) {
			_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size})
			chunk := make([]byte, 1<<20)
			for n := size; n > 0; n -= int64(len(chunk)) {
				_, _ = tw.Write(chunk[:min(n, int64(len(chunk)))])
			}
		}
	}
	for _, c := range []struct {
		name string
		body []byte
		code int
		say  string
	}{
		{"dot-dot", tarGz(file("../../etc/x.yaml", 4)), http.StatusBadRequest, "leaves the directory"},
		{"absolute", tarGz(file("/etc/x.yaml", 4)), http.StatusBadRequest, "not a relative path"},
		{"link", tarGz(func(tw *tar.Writer) {
			_ = tw.WriteHeader(&tar.Header{Name: "x.yaml", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})
		}), http.StatusBadRequest, "is a link"},
		{"inflates past the bound", tarGz(file("zeros.yaml", handlers.MaxDiffBytes+1)), http.StatusRequestEntityTooLarge, "uncompressed"},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL+"/api/v1/apps/web/diff", bytes.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(body["error"], c.say) {
			t.Errorf("%s: %d %v, want %d saying %q", c.name, resp.StatusCode, body, c.code, c.say)
		}
	}
}
