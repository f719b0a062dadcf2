package main

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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// e2eHookSecret is the webhook secret of the end-to-end runs.
const e2eHookSecret = "bench-e2e-hook-secret"

// ferryProc is one running ferry binary.
type ferryProc struct {
	URL  string
	Log  string
	cmd  *exec.Cmd
	done chan error
}

// appConf is one app of a generated ferry.yaml.
type appConf struct {
	Name, Path, Namespace string
	DependsOn             []string
}

// ferryConfig writes ferry.yaml for one GitHub repository served at cloneURL with statuses going
// to apiURL.
func ferryConfig(cloneURL, apiURL string, apps []appConf) string {
	var b strings.Builder
	fmt.Fprintf(&b, `externalURL: http://ferry.bench.invalid
repos:
  - name: platform
    url: %s
    provider: github
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    token: {env: FORGE_TOKEN}
    apiURL: %s
    interval: 1h
apps:
`, cloneURL, apiURL)
	for _, a := range apps {
		fmt.Fprintf(&b, "  - name: %s\n    repo: platform\n    path: %s\n    namespace: %s\n    prune: true\n    timeout: 120s\n", a.Name, a.Path, a.Namespace)
		if len(a.DependsOn) > 0 {
			fmt.Fprintf(&b, "    dependsOn: [%s]\n", strings.Join(a.DependsOn, ", "))
		}
	}
	return b.String()
}

// startFerry runs `ferry serve` with config and extra flags and waits until /readyz answers 200.
func startFerry(ctx context.Context, bin, dir, config, kubeconfig string, extra ...string) (*ferryProc, error) {
	return startFerryUntil(ctx, bin, dir, config, kubeconfig, "/readyz", extra...)
}

// startFerryUntil runs `ferry serve` with config and extra flags and waits until ready (a path)
// answers 200.
func startFerryUntil(ctx context.Context, bin, dir, config, kubeconfig, ready string, extra ...string) (*ferryProc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ferry dir: %w", err)
	}
	cfgPath := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("ferry config: %w", err)
	}
	addr, err := freeLoopback()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "ferry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("ferry log: %w", err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--config", cfgPath, "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--kubeconfig", kubeconfig, "--log-level", "info"}, extra...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "HOOK_SECRET=" + e2eHookSecret, "FORGE_TOKEN=" + statusToken}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start ferry: %w", err)
	}
	p := &ferryProc{URL: "http://" + addr, Log: logPath, cmd: cmd, done: make(chan error, 1)}
	go func() {
		p.done <- cmd.Wait()
		logf.Close()
	}()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, p.URL+ready, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("ferry exited before it was ready (log %s): %w", logPath, err)
		case <-rctx.Done():
			p.stop()
			return nil, fmt.Errorf("ferry not ready (log %s): %w", logPath, rctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits at most 90 s before killing the process.
func (p *ferryProc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(90 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

// pid is the process id, for /proc.
func (p *ferryProc) pid() string { return strconv.Itoa(p.cmd.Process.Pid) }

// pushHook builds a signed GitHub push delivery of sha on main from the captured payload.
func pushHook(payload []byte, delivery, before, sha string, changed []string) (body []byte, header http.Header, err error) {
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, nil, fmt.Errorf("push payload: %w", err)
	}
	commit := map[string]any{"id": sha, "message": "bench change", "added": []string{}, "removed": []string{}, "modified": changed, "distinct": true}
	m["ref"], m["before"], m["after"] = "refs/heads/main", before, sha
	m["commits"], m["head_commit"] = []any{commit}, commit
	if body, err = json.Marshal(m); err != nil {
		return nil, nil, fmt.Errorf("push payload: %w", err)
	}
	mac := hmac.New(sha256.New, []byte(e2eHookSecret))
	mac.Write(body)
	header = http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set("X-GitHub-Event", "push")
	header.Set("X-GitHub-Delivery", delivery)
	header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	return body, header, nil
}

// sendHook posts a delivery to ferry and fails unless it answers 202.
func (p *ferryProc) sendHook(ctx context.Context, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/hooks/platform", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("hook: %w", err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("hook: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("hook: status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// memMetrics reads the Go runtime's memory figures from ferry's /metrics, as a one-line summary.
func (p *ferryProc) memMetrics(ctx context.Context) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/metrics", nil)
	if err != nil {
		return "metrics: " + err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "metrics: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	want := []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
		"go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_goroutines", "go_memstats_heap_objects"}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		for _, w := range want {
			if name != w {
				continue
			}
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				continue
			}
			short := strings.TrimPrefix(strings.TrimPrefix(w, "go_memstats_"), "go_")
			if strings.HasSuffix(w, "_bytes") {
				out = append(out, fmt.Sprintf("%s %s", strings.TrimSuffix(short, "_bytes"), fmtMB(uint64(f))))
			} else {
				out = append(out, fmt.Sprintf("%s %.0f", short, f))
			}
		}
	}
	return strings.Join(out, ", ")
}

func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// logStats summarises ferry's own per-sync log lines (msg=sync part=apply … apply= prune=
// health=): how many syncs ran and the median time of each phase, plus how many jobs were put
// back to wait for a dependency.
func logStats(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "log unreadable: " + err.Error()
	}
	var apply, health []time.Duration
	waits := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "waiting for dependency") {
			waits++
		}
		if !strings.Contains(line, "msg=sync part=apply") {
			continue
		}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			d, err := time.ParseDuration(v)
			if err != nil {
				continue
			}
			switch k {
			case "apply":
				apply = append(apply, d)
			case "health":
				health = append(health, d)
			}
		}
	}
	return fmt.Sprintf("%d syncs in ferry's log, median apply phase %s, median health wait %s (max %s); %d job deliveries put back to wait for a dependency",
		len(apply), fmtDur(medianDur(apply)), fmtDur(medianDur(health)), fmtDur(percentile(health, 100)), waits)
}
