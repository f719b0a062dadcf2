// Package cluster runs a real Kubernetes control plane (etcd, kube-apiserver and, on request,
// kube-controller-manager) as local processes on 127.0.0.1, for ferry's end-to-end tests and
// demos. Nothing is mocked: what ferry applies goes through real admission, validation,
// server-side apply and storage. There is no kubelet or scheduler, so pods never run; ferry's
// tests are about objects, not workloads.
//
// The binaries come from test/k8sbin/build.sh, built once from the Go module proxy into a cache.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// Timeouts for each part to come up. They are generous because the machine running the tests
// may be compiling something else on the same two cores; a healthy start takes a few seconds.
const (
	etcdReadyTimeout       = 30 * time.Second
	apiServerReadyTimeout  = 90 * time.Second
	controllerReadyTimeout = 60 * time.Second
	pollInterval           = 100 * time.Millisecond
	probeTimeout           = 2 * time.Second
)

// startAttempts is how often a part is started on fresh ports when its port was taken between
// picking it and binding it (other test binaries on the machine pick ports too).
const startAttempts = 3

// Client rate limits for tests: client-go's defaults (5 QPS) would make an apply of a few dozen
// objects crawl, and there is no one to protect on a private apiserver.
const (
	clientQPS   = 200
	clientBurst = 400
)

// serviceClusterIPRange is the Service IP range; nothing routes it, Services just need one.
const serviceClusterIPRange = "10.0.0.0/24"

// serviceAccountIssuer is the issuer of service account tokens, as in a real cluster.
const serviceAccountIssuer = "https://kubernetes.default.svc"

// Options tunes Start. The zero value runs etcd and kube-apiserver, silently, with binaries from
// test/k8sbin/build.sh.
type Options struct {
	// ControllerManager also runs kube-controller-manager, which tests need when they rely on a
	// namespace deletion finishing, on garbage collection of owned objects, or on service
	// accounts being created.
	ControllerManager bool
	// Logf receives progress lines (build, start, ready, stop); nil means silent.
	Logf func(format string, args ...any)
	// BinDir holds etcd, kube-apiserver and kube-controller-manager. Empty means running
	// test/k8sbin/build.sh, which builds them on first use and prints where they are. The
	// package never reads the environment; a caller that wants FERRY_K8S_BIN passes it here.
	BinDir string
}

// Cluster is a running control plane. Its fields are set by Start and not changed afterwards.
type Cluster struct {
	// Config reaches the apiserver as a system:masters user, verifying its serving certificate.
	// Shared by every user of the cluster: copy it with rest.CopyConfig before changing it.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file equivalent to Config, for kubectl and for
	// programs (such as ferry itself) that take a --kubeconfig.
	Kubeconfig string
	// Dir holds the state: etcd data, pki, the kubeconfig and one <part>.log per process.
	Dir string

	logf      func(string, ...any)
	binDir    string
	creds     credentials
	etcdURL   string
	apiPort   int
	withKCM   bool
	mu        sync.Mutex // serialises Stop, StopAPIServer and StartAPIServer
	etcd      *process
	apiserver *process
	kcm       *process
	stopped   bool
}

// Start runs a control plane with its state under dir (created if needed; use an empty
// directory) and returns once the apiserver is ready and, if asked for, the controller manager
// works. ctx bounds the start, including a first build of the binaries; the processes outlive it
// and end with Stop, or with the test binary.
func Start(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	tools := []string{"etcd", "kube-apiserver"}
	if opts.ControllerManager {
		tools = append(tools, "kube-controller-manager")
	}
	binDir, err := ensureBinaries(ctx, opts.BinDir, tools, logf)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	creds, err := writeCredentials(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{
		Kubeconfig: filepath.Join(dir, "kubeconfig"),
		Dir:        dir,
		logf:       logf,
		binDir:     binDir,
		creds:      creds,
		withKCM:    opts.ControllerManager,
	}
	began := time.Now()
	if err := c.start(ctx); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	logf("control plane ready in %s at %s (state in %s)", time.Since(began).Round(time.Millisecond), c.Config.Host, dir)
	return c, nil
}

// start brings up each part in order, each ready before the next.
func (c *Cluster) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, true); err != nil {
		return err
	}
	if err := writeKubeconfig(c.Kubeconfig, c.Config); err != nil {
		return err
	}
	if c.withKCM {
		if err := c.startControllerManager(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends every process and waits for them to exit. The state directory stays (the caller
// owns it). Calling Stop again does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	var errs []error
	// Reverse order of start: clients of the apiserver first, etcd last.
	for _, p := range []**process{&c.kcm, &c.apiserver, &c.etcd} {
		if *p == nil {
			continue
		}
		if err := (*p).stop(); err != nil {
			errs = append(errs, err)
		}
		*p = nil
	}
	c.logf("control plane stopped")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: stop: %w", err)
	}
	return nil
}

// StopAPIServer ends kube-apiserver only, leaving etcd and the controller manager running, so a
// test can see how ferry behaves while the cluster is unreachable. It does nothing if the
// apiserver is already stopped.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil {
		return nil
	}
	err := c.apiserver.stop()
	c.apiserver = nil
	if err != nil {
		return fmt.Errorf("cluster: stop apiserver: %w", err)
	}
	c.logf("kube-apiserver stopped")
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the same port, etcd and
// serving certificate, so Config and Kubeconfig stay valid; it returns once it is ready. It does
// nothing if the apiserver is running.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("cluster: start apiserver: cluster is stopped")
	}
	if c.apiserver != nil {
		return nil
	}
	began := time.Now()
	if err := c.startAPIServer(ctx, false); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.logf("kube-apiserver ready again in %s", time.Since(began).Round(time.Millisecond))
	return nil
}

// startEtcd runs a single-member etcd on two free loopback ports, retrying on fresh ports if
// one was taken in the meantime.
func (c *Cluster) startEtcd(ctx context.Context) error {
	var err error
	for range startAttempts {
		var ports []int
		if ports, err = freePorts(2); err != nil {
			return err
		}
		// A failed attempt may have bootstrapped a member with other peer URLs; start afresh.
		dataDir := filepath.Join(c.Dir, "etcd")
		if err := os.RemoveAll(dataDir); err != nil {
			return fmt.Errorf("clear etcd data dir: %w", err)
		}
		clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		args := []string{
			"--name=default",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			// Test data is throwaway: skipping fsync makes every write an order of magnitude faster.
			"--unsafe-no-fsync=true",
		}
		var p *process
		if p, err = startProcess("etcd", filepath.Join(c.binDir, "etcd"), filepath.Join(c.Dir, "etcd.log"), args); err != nil {
			return err
		}
		c.logf("etcd starting at %s", clientURL)
		hc := probeClient()
		err = poll(ctx, p, etcdReadyTimeout, pollInterval, "etcd health", func(ctx context.Context) (bool, error) {
			return probe(ctx, hc, clientURL+"/health", "", `"health":"true"`)
		})
		if err == nil {
			c.etcd, c.etcdURL = p, clientURL
			return nil
		}
		_ = p.stop()
		if !portTaken(p) {
			return err
		}
		c.logf("etcd port was taken, retrying on other ports")
	}
	return err
}

// apiServerArgs are kube-apiserver's flags for this cluster.
func (c *Cluster) apiServerArgs() []string {
	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.apiPort),
		// The apiserver writes a self-signed serving certificate here on first start and reuses
		// it on restarts, so clients' CA data stays valid.
		"--cert-dir=" + filepath.Join(c.Dir, "pki"),
		"--token-auth-file=" + c.creds.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + c.creds.saKeyFile,
		"--service-account-signing-key-file=" + c.creds.saKeyFile,
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-cluster-ip-range=" + serviceClusterIPRange,
		// There is no kubernetes Service endpoint to keep: nothing runs in the cluster.
		"--endpoint-reconciler-type=none",
	}
	if !c.withKCM {
		// Without the controller manager no namespace gets a default ServiceAccount, and this
		// plugin would reject every Pod (and so every Pod a test applies) for lacking one.
		args = append(args, "--disable-admission-plugins=ServiceAccount")
	}
	return args
}

// startAPIServer runs kube-apiserver and waits until it is ready. The first time (first=true)
// it picks a port, retrying on another if it was taken, and sets c.Config; later starts reuse
// both.
func (c *Cluster) startAPIServer(ctx context.Context, first bool) error {
	attempts := 1
	if first {
		attempts = startAttempts
	}
	var err error
	for range attempts {
		if first {
			ports, perr := freePorts(1)
			if perr != nil {
				return perr
			}
			c.apiPort = ports[0]
		}
		host := "https://127.0.0.1:" + strconv.Itoa(c.apiPort)
		var p *process
		p, err = startProcess("kube-apiserver", filepath.Join(c.binDir, "kube-apiserver"), filepath.Join(c.Dir, "kube-apiserver.log"), c.apiServerArgs())
		if err != nil {
			return err
		}
		c.logf("kube-apiserver starting at %s", host)
		if err = c.waitAPIServer(ctx, p, host, first); err == nil {
			c.apiserver = p
			return nil
		}
		_ = p.stop()
		if !first || !portTaken(p) {
			return err
		}
		c.logf("kube-apiserver port was taken, retrying on another port")
	}
	return err
}

// waitAPIServer waits for /readyz, then (first start) builds c.Config from the generated
// certificate, then waits for the namespaces the apiserver creates itself, through c.Config, so
// the config is proven to work.
func (c *Cluster) waitAPIServer(ctx context.Context, p *process, host string, first bool) error {
	deadline := time.Now().Add(apiServerReadyTimeout)
	hc := probeClient()
	err := poll(ctx, p, apiServerReadyTimeout, pollInterval, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		return probe(ctx, hc, host+"/readyz", c.creds.token, "")
	})
	if err != nil {
		return err
	}
	if first {
		ca, err := os.ReadFile(filepath.Join(c.Dir, "pki", "apiserver.crt"))
		if err != nil {
			return p.failure(fmt.Errorf("read apiserver certificate: %w", err))
		}
		c.Config = &rest.Config{
			Host:            host,
			BearerToken:     c.creds.token,
			TLSClientConfig: rest.TLSClientConfig{CAData: ca},
			QPS:             clientQPS,
			Burst:           clientBurst,
		}
	}
	core, err := corev1client.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("core client: %w", err)
	}
	return poll(ctx, p, time.Until(deadline), pollInterval, "namespaces default and kube-system", func(ctx context.Context) (bool, error) {
		for _, ns := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem} {
			if _, err := core.Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
				return false, err
			}
		}
		return true, nil
	})
}

// startControllerManager runs kube-controller-manager with every default controller and waits
// until the service account controller has made the default namespace's ServiceAccount: proof
// that it reached the apiserver, synced its informers and runs controllers.
func (c *Cluster) startControllerManager(ctx context.Context) error {
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		// No serving port: nothing probes it, and it would be one more port to pick.
		"--secure-port=0",
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + c.creds.saKeyFile,
		"--root-ca-file=" + filepath.Join(c.Dir, "pki", "apiserver.crt"),
		"--service-cluster-ip-range=" + serviceClusterIPRange,
	}
	p, err := startProcess("kube-controller-manager", filepath.Join(c.binDir, "kube-controller-manager"), filepath.Join(c.Dir, "kube-controller-manager.log"), args)
	if err != nil {
		return err
	}
	c.kcm = p
	c.logf("kube-controller-manager starting")
	core, err := corev1client.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("core client: %w", err)
	}
	return poll(ctx, p, controllerReadyTimeout, 200*time.Millisecond, "the default ServiceAccount (kube-controller-manager)", func(ctx context.Context) (bool, error) {
		_, err := core.ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// probeBodyLimit bounds how much of a health answer is read; /readyz?verbose is a few KiB.
const probeBodyLimit = 64 << 10

// probeClient returns a client for readiness probes. The apiserver is probed before its
// certificate is known, so without verification; every real client verifies it.
func probeClient() *http.Client {
	return &http.Client{
		Timeout: probeTimeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // readiness probe of a local test server
			DisableKeepAlives: true,
		},
	}
}

// probe reports whether GET url answers 200 (and, if want is set, a body containing it).
func probe(ctx context.Context, hc *http.Client, url, token, want string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, probeBodyLimit))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s: http %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return want == "" || strings.Contains(string(body), want), nil
}

// freePorts returns n distinct loopback ports that were free a moment ago. Another process may
// take one before the control plane binds it; the callers retry then.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		// Kept open until all are picked, so the n ports differ.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// portTaken reports whether p's log says it could not bind its port.
func portTaken(p *process) bool {
	return strings.Contains(p.logTail(), "address already in use")
}
