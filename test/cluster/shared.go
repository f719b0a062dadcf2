package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sharedStartTimeout bounds the first Shared call: a cold build of the binaries (about 20
// minutes on 2 cores) plus the start. Tests running that long need `go test -timeout` raised.
const sharedStartTimeout = 40 * time.Minute

// BinDirEnv names the environment variable that Shared reads for Options.BinDir: a directory
// with prebuilt binaries skips build.sh (useful in CI images that ship them).
const BinDirEnv = "FERRY_K8S_BIN"

// shared is the per-test-binary cluster behind Shared. Package state is unavoidable here: the
// cluster must outlive every test and be stopped by TestMain.
var shared struct {
	mainRunning atomic.Bool
	once        sync.Once
	cluster     *Cluster
	dir         string
	err         error
}

// Shared returns the test binary's cluster (with the controller manager), starting it on the
// first call; every test of the package then uses the same apiserver, so tests should keep to
// their own namespaces. The package's TestMain must call Main, which stops the cluster when the
// tests are done. A cluster that fails to start fails every test that asks for it: tests never
// skip for want of binaries, they build them.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if !shared.mainRunning.Load() {
		t.Fatal("cluster.Shared needs TestMain to call cluster.Main(m) so the cluster is stopped: func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }")
	}
	shared.once.Do(func() {
		shared.cluster, shared.dir, shared.err = startShared(t.Context())
	})
	if shared.err != nil {
		t.Fatalf("shared cluster: %v", shared.err)
	}
	return shared.cluster
}

// startShared starts the shared cluster in a fresh temporary directory, with progress on
// stderr under go test -v.
func startShared(ctx context.Context) (*Cluster, string, error) {
	dir, err := os.MkdirTemp("", "ferry-cluster-")
	if err != nil {
		return nil, "", fmt.Errorf("create cluster dir: %w", err)
	}
	opts := Options{ControllerManager: true, BinDir: os.Getenv(BinDirEnv)}
	if testing.Verbose() {
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...)
		}
	}
	// The first caller's test context bounds only the start: the processes outlive it.
	ctx, cancel := context.WithTimeout(ctx, sharedStartTimeout)
	defer cancel()
	c, err := Start(ctx, dir, opts)
	if err != nil {
		// The logs explain the failure; keep them.
		return nil, dir, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	return c, dir, nil
}

// Main runs the tests and then stops the shared cluster, if one was started, and removes its
// directory. Call it from TestMain: os.Exit(cluster.Main(m)). A failure to stop turns a passing
// run into a failing one, since it means processes may be left behind.
func Main(m *testing.M) int {
	shared.mainRunning.Store(true)
	code := m.Run()
	shared.mainRunning.Store(false)
	if err := stopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// stopShared stops the shared cluster and removes its state, keeping the state if the cluster
// failed to start so its logs can be read.
func stopShared() error {
	if shared.cluster == nil {
		return nil
	}
	var errs []error
	if err := shared.cluster.Stop(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(shared.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove cluster dir: %w", err))
	}
	return errors.Join(errs...)
}
