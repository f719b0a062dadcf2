package test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// natsReadyTimeout bounds how long a NATS server (or a cluster electing its JetStream meta
	// leader, or a restarted server recovering its store) may take to serve JetStream.
	natsReadyTimeout = 60 * time.Second
	// natsStopTimeout bounds how long a NATS server may take to exit after SIGTERM.
	natsStopTimeout = 30 * time.Second
)

// natsBuild builds the nats-server binary once per test binary, from the module already in
// go.mod, next to the ferry binary (whose directory TestMain removes).
var natsBuild struct {
	once sync.Once
	bin  string
	err  error
}

// natsServerBin returns the path of the nats-server binary, building it on first use.
func natsServerBin(t *testing.T) string {
	t.Helper()
	natsBuild.once.Do(func() {
		bin := filepath.Join(filepath.Dir(ferryBin), "nats-server")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
		out, err := cmd.CombinedOutput()
		if err != nil {
			natsBuild.err = fmt.Errorf("build nats-server: %w\n%s", err, out)
			return
		}
		natsBuild.bin = bin
	})
	if natsBuild.err != nil {
		t.Fatal(natsBuild.err)
	}
	return natsBuild.bin
}

// natsServer is one nats-server process with JetStream, on 127.0.0.1. Stopping and starting it
// again keeps its ports and store, as a restarted pod would.
type natsServer struct {
	name        string
	dir         string
	port        int
	clusterPort int
	// routes are the cluster URLs of every member, this one included; empty for a single server.
	routes []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
	logs *lockedBuffer
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startNATS runs a single JetStream server until the test ends and waits until it serves.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{name: "n1", dir: t.TempDir(), port: freePort(t)}
	n.Start(t)
	t.Cleanup(func() { n.Stop(t) })
	n.waitJetStream(t)
	return n
}

// startNATSCluster runs a cluster of size JetStream servers until the test ends and waits until
// every member serves JetStream (which needs a meta leader).
func startNATSCluster(t *testing.T, size int) []*natsServer {
	t.Helper()
	var routes []string
	nodes := make([]*natsServer, size)
	for i := range nodes {
		nodes[i] = &natsServer{name: fmt.Sprintf("n%d", i+1), dir: t.TempDir(), port: freePort(t), clusterPort: freePort(t)}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].clusterPort))
	}
	for _, n := range nodes {
		n.routes = routes
		n.Start(t)
		t.Cleanup(func() { n.Stop(t) })
	}
	for _, n := range nodes {
		n.waitJetStream(t)
	}
	return nodes
}

// natsURLs joins the client URLs of servers, as ferry's --nats-url takes them.
func natsURLs(servers ...*natsServer) string {
	urls := make([]string, len(servers))
	for i, n := range servers {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// URL is the server's client URL.
func (n *natsServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Start runs the server process; it does not wait until it serves.
func (n *natsServer) Start(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		t.Fatalf("nats %s is already running", n.name)
	}
	args := []string{"-js", "-sd", filepath.Join(n.dir, "store"), "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-n", n.name}
	if len(n.routes) > 0 {
		args = append(args, "--cluster_name", "ferry-e2e", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.clusterPort),
			"--routes", strings.Join(n.routes, ","))
	}
	cmd := exec.Command(natsServerBin(t), args...)
	if n.logs == nil {
		// One buffer across restarts, shown once if the test fails.
		n.logs = &lockedBuffer{}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("nats %s log:\n%s", n.name, tail(n.logs.String(), 4000))
			}
		})
	}
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats %s: %v", n.name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	n.cmd, n.done = cmd, done
}

// Stop ends the server with SIGTERM (SIGKILL if it lingers) and waits for it to exit. Stopping a
// stopped server does nothing.
func (n *natsServer) Stop(t *testing.T) { n.signal(t, syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash would, and waits for it to exit.
func (n *natsServer) Kill(t *testing.T) { n.signal(t, syscall.SIGKILL) }

func (n *natsServer) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(natsStopTimeout):
		_ = n.cmd.Process.Kill()
		<-n.done
		t.Errorf("nats %s did not exit within %s of %s", n.name, natsStopTimeout, sig)
	}
	n.cmd, n.done = nil, nil
}

// Restart starts a stopped server again on the same ports and store and waits until it serves.
func (n *natsServer) Restart(t *testing.T) {
	t.Helper()
	n.Start(t)
	n.waitJetStream(t)
}

// waitJetStream waits until the server answers JetStream requests for the default account.
func (n *natsServer) waitJetStream(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), natsReadyTimeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		last = n.jetStreamReady(ctx)
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Fatalf("nats %s has no working JetStream after %s: %v\n%s", n.name, natsReadyTimeout, last, tail(n.logs.String(), 4000))
}

func (n *natsServer) jetStreamReady(ctx context.Context) error {
	nc, err := nats.Connect(n.URL(), nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		return fmt.Errorf("account info: %w", err)
	}
	return nil
}
