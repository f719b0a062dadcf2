// Package test holds ferry's end-to-end tests: the ferry binary against a real kube-apiserver
// and etcd, real git over HTTP, embedded NATS, and fakes only for the forges' status APIs.
package test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/cluster"
)

// ferryBin is the binary under test, built once by TestMain.
var ferryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ferryBin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-race", "-o", ferryBin, "../cmd/ferry")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ferry:", err)
		os.Exit(1)
	}
	code := cluster.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects a process's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ferry is one running ferry process.
type ferry struct {
	URL     string
	DataDir string
	cmd     *exec.Cmd
	logs    *lockedBuffer
	done    chan error
}

// startFerry runs the ferry binary with config and env until the test ends, and waits until
// it is ready. extra flags are appended to ferry serve's (e.g. --nats-url).
func startFerry(t *testing.T, config string, env map[string]string, dataDir string, extra ...string) *ferry {
	t.Helper()
	dir := t.TempDir()
	if dataDir == "" {
		dataDir = filepath.Join(dir, "data")
	}
	cfgPath := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(ferryBin, "serve", "--config", cfgPath, "--listen", addr, "--data-dir", dataDir,
		"--kubeconfig", cluster.Shared(t).Kubeconfig, "--log-level", "debug")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f := &ferry{URL: "http://" + addr, DataDir: dataDir, cmd: cmd, logs: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = f.logs, f.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.done <- cmd.Wait() }()
	t.Cleanup(func() {
		f.Stop(t)
		if t.Failed() {
			t.Logf("ferry's log:\n%s", tail(f.logs.String(), 12000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(f.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return f
			}
		}
		select {
		case err := <-f.done:
			t.Fatalf("ferry exited before it was ready: %v\n%s", err, f.logs.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry not ready after 60s\n%s", f.logs.String())
		}
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (f *ferry) Stop(t *testing.T) {
	if f.cmd.ProcessState != nil {
		return
	}
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-f.done:
		if err != nil {
			t.Errorf("ferry did not exit cleanly on SIGTERM: %v", err)
		}
		f.done <- err
	case <-time.After(90 * time.Second):
		_ = f.cmd.Process.Kill()
		t.Errorf("ferry did not stop within 90s of SIGTERM")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// hook is one webhook delivery.
type hook struct {
	headers map[string]string
	body    []byte
}

// send posts a delivery and returns the status code and body.
func (f *ferry) send(t *testing.T, repo string, h hook) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL+"/hooks/"+repo, bytes.NewReader(h.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// payload loads a captured webhook payload and sets fields on it.
func payload(t *testing.T, file string, set func(map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "handlers", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	set(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// githubPush is a signed GitHub push delivery of sha on main, changing paths.
func githubPush(t *testing.T, secret, delivery, before, sha string, paths ...string) hook {
	body := payload(t, "github/push.json", func(m map[string]any) {
		m["ref"], m["before"], m["after"] = "refs/heads/main", before, sha
		m["commits"] = []any{map[string]any{"id": sha, "message": "change", "added": []any{}, "removed": []any{}, "modified": toAny(paths), "distinct": true}}
		m["head_commit"] = m["commits"].([]any)[0]
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hook{body: body, headers: map[string]string{
		"X-GitHub-Event":      "push",
		"X-GitHub-Delivery":   delivery,
		"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil)),
	}}
}

// gitlabPush is a GitLab push delivery of sha on main with the secret token.
func gitlabPush(t *testing.T, token, delivery, before, sha string, paths ...string) hook {
	body := payload(t, "gitlab/push.json", func(m map[string]any) {
		m["ref"], m["before"], m["after"], m["checkout_sha"] = "refs/heads/main", before, sha, sha
		m["commits"] = []any{map[string]any{"id": sha, "message": "change", "added": []any{}, "removed": []any{}, "modified": toAny(paths)}}
		m["total_commits_count"] = 1
	})
	return hook{body: body, headers: map[string]string{
		"X-Gitlab-Event":      "Push Hook",
		"X-Gitlab-Token":      token,
		"X-Gitlab-Event-UUID": delivery,
	}}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// getJSON decodes a GET of the ferry API.
func (f *ferry) getJSON(t *testing.T, path string, v any) int {
	t.Helper()
	resp, err := http.Get(f.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// history returns the app's sync records, newest first.
func (f *ferry) history(t *testing.T, app string) []queue.Record {
	t.Helper()
	var v struct {
		History []queue.Record `json:"history"`
	}
	if code := f.getJSON(t, "/api/v1/apps/"+app, &v); code != http.StatusOK {
		t.Fatalf("GET app %s: %d", app, code)
	}
	return v.History
}

// waitCtx bounds a wait inside a test.
func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
