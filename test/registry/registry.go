// Package registry runs a real OCI registry (CNCF distribution, built from the Go module proxy by
// bin/build.sh) on 127.0.0.1 for tests, with its storage in the test's temporary directory and,
// optionally, htpasswd authentication.
package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferrygitops/ferry/test/toolbin"
)

const (
	// buildTimeout bounds bin/build.sh: a cold build of the registry takes about 10 minutes on 2
	// busy cores (module downloads included); a warm cache answers at once.
	buildTimeout = 30 * time.Minute
	// readyTimeout bounds the wait for a started registry to answer /v2/.
	readyTimeout = 30 * time.Second
	// startAttempts is how many free ports are tried: a port picked free can be taken by another
	// process before the registry binds it.
	startAttempts = 3
	// stopGrace is how long the registry gets to exit after SIGTERM before it is killed.
	stopGrace = 5 * time.Second
)

// Options configure a registry.
type Options struct {
	// Username and Password, when both set, require HTTP basic authentication (htpasswd) for
	// every request.
	Username, Password string
}

// Registry is a running registry.
type Registry struct {
	Host string // 127.0.0.1:port, plain HTTP
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Start runs a registry without authentication for the rest of the test and returns its
// host:port.
func Start(t testing.TB) string {
	return Run(t, Options{}).Host
}

// Run starts a registry with opts; it is stopped at the end of the test (or earlier by Stop).
func Run(t testing.TB, opts Options) *Registry {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	var auth string
	if opts.Username != "" && opts.Password != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("registry: htpasswd: %v", err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatalf("registry: %v", err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: ferry-test\n    path: %s\n", htpasswd)
	}
	var lastErr error
	for attempt := range startAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("registry: %v", err)
		}
		host := "127.0.0.1:" + strconv.Itoa(port)
		config := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", attempt))
		conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: ferry-test-secret
%s`, filepath.Join(dir, "storage"), host, auth)
		if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
			t.Fatalf("registry: %v", err)
		}
		r, err := start(t.Context(), bin, host, config, filepath.Join(dir, fmt.Sprintf("registry-%d.log", attempt)))
		if err == nil {
			t.Cleanup(r.Stop)
			return r
		}
		lastErr = err
	}
	t.Fatalf("registry: %v", lastErr)
	return nil
}

func start(ctx context.Context, bin, host, config, logPath string) (*Registry, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A clean environment: no REGISTRY_* overrides from the caller, no tracing exporter.
	cmd.Env = []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true", "HOME=" + filepath.Dir(config)}
	cmd.SysProcAttr = toolbin.SysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	r := &Registry{Host: host, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(r.done)
	}()
	if err := r.waitReady(ctx); err != nil {
		r.Stop()
		return nil, fmt.Errorf("%w\n%s", err, r.logTail())
	}
	return r, nil
}

// waitReady polls /v2/ until the registry answers (200, or 401 when it requires auth).
func (r *Registry) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Host+"/v2/", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-r.done:
			return fmt.Errorf("registry on %s exited before it answered", r.Host)
		case <-ctx.Done():
			return fmt.Errorf("registry on %s did not answer /v2/ within %s (last: %v)", r.Host, readyTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the registry (SIGTERM, then SIGKILL after stopGrace). It may be called more than once.
func (r *Registry) Stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
}

func (r *Registry) logTail() string {
	data, _ := os.ReadFile(r.log)
	if len(data) > 4<<10 {
		data = data[len(data)-4<<10:]
	}
	return string(data)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Binary returns the path of the registry binary, building it with bin/build.sh when the cache
// does not hold it yet (about 10 minutes the first time on 2 cores; concurrent callers wait for
// one build).
func Binary(t testing.TB) string {
	t.Helper()
	script, err := toolbin.Find(buildScriptPath)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	bin, err := toolbin.Build(ctx, script, nil, t.Logf)
	if err != nil {
		t.Fatalf("registry: build: %v", err)
	}
	if st, err := os.Stat(bin); err != nil || st.Mode().Perm()&0o111 == 0 {
		t.Fatalf("registry: %s printed %q, not an executable", script, bin)
	}
	return bin
}

// buildScriptPath builds the registry from the Go module proxy and prints the binary's path.
const buildScriptPath = "test/registry/bin/build.sh"
