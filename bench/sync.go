package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ferrygitops/ferry/syncer/render"
)

// Targets of P3, P4 and P5 (sync).
const (
	p3MaxVsKubectl = 0.45
	p3MaxVsBare    = 1.15
	p4MaxVsFirst   = 0.1
	p5MaxSyncRSS   = 250 << 20
	// bareQPS leaves the bare loop unthrottled on the client side: it is the floor.
	bareQPS = 5000
)

// syncParams are the knobs of P3, P4 and P5 (sync).
type syncParams struct {
	Objects, Namespaces int
	BareWorkers         int
	FerryQPS            float64
	Timeout             time.Duration
	Reps                int
	// Variants run in each repetition, rotating which goes first.
	Variants []variant
}

// variant is one way of applying the manifests to a fresh cluster.
type variant string

const (
	vKubectl variant = "kubectl --server-side"
	vBare    variant = "bare client-go SSA loop"
	vFerry   variant = "ferry engine"
)

// short names a variant in file names.
func (v variant) short() string {
	switch v {
	case vKubectl:
		return "kubectl"
	case vBare:
		return "bare"
	}
	return "ferry"
}

// runSync measures P3 (a first apply of the manifests by kubectl, the bare loop and ferry, each
// on a control plane of its own), P4 (ferry re-syncing the same revision) and P5 (ferry's peak RSS
// during those syncs). Variants rotate their order every repetition so none always runs first.
func runSync(ctx context.Context, p *params, res *results, logf func(string, ...any)) error {
	if p.K8sBin == "" {
		return errors.New("FERRY_K8S_BIN (or -k8s-bin) must name the control-plane binaries; run via make bench")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	dir := filepath.Join(p.Work, "manifests")
	if err := writeManifests(dir, p.Sync.Objects, p.Sync.Namespaces); err != nil {
		return err
	}
	objs, err := render.Render(os.DirFS(dir), ".", render.DefaultOptions())
	if err != nil {
		return fmt.Errorf("render manifests: %w", err)
	}
	applied := map[variant][]time.Duration{}
	healthy := map[variant][]time.Duration{}
	var bareCP, bareClient []time.Duration
	var children []*childSync
	order := p.Sync.Variants
	for rep := range p.Sync.Reps {
		for k := range order {
			v := order[(k+rep)%len(order)]
			profile := ""
			if rep == p.Sync.Reps-1 && v == vFerry {
				profile = filepath.Join(p.Work, "p3-ferry-cpu.pprof")
			}
			m, err := syncVariant(ctx, p, v, rep, dir, objs, self, profile, logf)
			if err != nil {
				return fmt.Errorf("%s (rep %d): %w", v, rep+1, err)
			}
			applied[v] = append(applied[v], m.applied)
			if v == vBare {
				var total time.Duration
				for _, d := range m.controlPlaneCPU {
					total += d
				}
				bareCP, bareClient = append(bareCP, total), append(bareClient, m.clientCPU)
			}
			healthy[v] = append(healthy[v], m.healthy)
			if m.child != nil && v == vFerry {
				children = append(children, m.child)
			}
		}
	}
	if len(children) == 0 {
		return nil
	}
	n := p.Sync.Objects
	fer, ferHealthy := medianDur(applied[vFerry]), medianDur(healthy[vFerry])
	var resync, pollWait []time.Duration
	var hwm, heap []float64
	for _, c := range children {
		resync = append(resync, c.Resync.Wall)
		pollWait = append(pollWait, c.First.Health)
		hwm = append(hwm, float64(c.HWMResync))
		heap = append(heap, float64(c.HeapPeak))
	}
	if ts := applied[vKubectl]; len(ts) > 0 {
		kub := medianDur(ts)
		rk := float64(fer) / float64(kub)
		res.add(row{ID: "P3", Measure: fmt.Sprintf("%d objects applied to an empty cluster vs (a) kubectl apply --server-side", n),
			Ferry: fmtDur(fer), Baseline: fmtDur(kub), Ratio: fmt.Sprintf("%.2f", rk), Target: "≤ 0.45×", Met: verdict(rk <= p3MaxVsKubectl)})
		if rk > p3MaxVsKubectl {
			res.note("P3 (a): ferry took %.2f× kubectl's time, target 0.45× (%.0f%% over).", rk, 100*(rk/p3MaxVsKubectl-1))
		}
	}
	if ts := applied[vBare]; len(ts) > 0 {
		bare := medianDur(ts)
		rb := float64(fer) / float64(bare)
		res.add(row{ID: "P3", Measure: fmt.Sprintf("%d objects applied vs (b) bare parallel SSA loop, %d workers", n, p.Sync.BareWorkers),
			Ferry: fmtDur(fer), Baseline: fmtDur(bare), Ratio: fmt.Sprintf("%.2f", rb), Target: "≤ 1.15×", Met: verdict(rb <= p3MaxVsBare)})
		if rb > p3MaxVsBare {
			res.addProfile("P3 ferry engine, last repetition, CPU", filepath.Join(p.Work, "p3-ferry-cpu.pprof"), 25)
			res.note("P3 (b): ferry took %.2f× the floor, target 1.15× (%.0f%% over).", rb, 100*(rb/p3MaxVsBare-1))
		}
		bh := medianDur(healthy[vBare])
		res.add(row{ID: "P3", Measure: "… until every Deployment is Available (ferry: whole Sync incl. its health wait; bare: loop + 100 ms polling)",
			Ferry: fmtDur(ferHealthy), Baseline: fmtDur(bh), Ratio: fmt.Sprintf("%.2f", float64(ferHealthy)/float64(bh)), Target: "informative"})
	}
	if len(bareCP) > 0 {
		cp, client, wall, cores := medianDur(bareCP), medianDur(bareClient), medianDur(applied[vBare]), runtime.NumCPU()
		res.note("P3 machine: during the bare loop's apply the control plane (kube-apiserver, etcd, kube-controller-manager) used %s of CPU and the loop %s (medians) in %s: %.0f%% of the %d cores. Applying these objects is bound by the apiserver's CPU on cores it shares with its clients; kubectl, one request at a time, leaves them partly idle, which is what the ratio to kubectl measures.",
			fmtDur(cp), fmtDur(client), fmtDur(wall), 100*float64(cp+client)/float64(wall)/float64(cores), cores)
	}
	rs := medianDur(resync)
	// The denominator is P3's applied time, not the whole first Sync with its health wait: the
	// stricter of the two.
	r4 := float64(rs) / float64(fer)
	res.add(row{ID: "P4", Measure: fmt.Sprintf("re-sync of the same commit, %d objects unchanged (whole Sync)", n),
		Ferry: fmtDur(rs), Baseline: fmtDur(fer) + " (P3 applied)", Ratio: fmt.Sprintf("%.3f", r4), Target: "≤ 0.1×", Met: verdict(r4 <= p4MaxVsFirst)})
	if r4 > p4MaxVsFirst {
		res.note("P4: the re-sync took %.3f× the first apply, target 0.1×.", r4)
	}
	peak := uint64(median(hwm))
	res.add(row{ID: "P5", Measure: fmt.Sprintf("peak RSS (VmHWM) of a process running the engine over the %d-object sync and re-sync", n),
		Ferry: fmtMB(peak) + fmt.Sprintf(" (heap in use ≤ %s)", fmtMB(uint64(median(heap)))), Target: "< 250 MB", Met: verdict(peak < p5MaxSyncRSS)})
	if bh := healthy[vBare]; len(bh) > 0 && ferHealthy > fer+time.Second {
		res.note("P3 health: ferry's whole first Sync took %s, of which %s waiting for health (polls back off from 100 ms to 2 s); the bare loop's Deployments were all Available %s after it started. The wait is kube-controller-manager working through the new Deployments, not ferry.",
			fmtDur(ferHealthy), fmtDur(medianDur(pollWait)), fmtDur(medianDur(bh)))
	}
	return nil
}

// measured is what one variant cost: until every object was applied, and until every Deployment
// was reported Available.
type measured struct {
	applied, healthy time.Duration
	child            *childSync
	// controlPlaneCPU and clientCPU are the CPU times the bare loop's apply cost, by process.
	controlPlaneCPU map[string]time.Duration
	clientCPU       time.Duration
}

// syncVariant starts a fresh control plane, applies the manifests one way and stops it.
func syncVariant(ctx context.Context, p *params, v variant, rep int, dir string, objs []render.Object, self, profile string,
	logf func(string, ...any)) (measured, error) {
	var m measured
	cl, err := startCluster(ctx, p, fmt.Sprintf("cluster-p3-%d-%s", rep, v.short()))
	if err != nil {
		return m, err
	}
	cdir := cl.Dir
	defer func() {
		_ = cl.Stop()
		if !p.Keep {
			// Each repetition's etcd holds a thousand objects: the disk is given back at once.
			_ = os.RemoveAll(cdir)
		}
	}()
	actx, acancel := context.WithTimeout(ctx, p.Sync.Timeout)
	defer acancel()
	t0 := time.Now()
	switch v {
	case vKubectl:
		m.applied, err = kubectlApply(actx, filepath.Join(p.K8sBin, "kubectl"), cl.Kubeconfig, dir, filepath.Join(cdir, "kubectl.out"))
	case vBare:
		cp0, self0 := cpuUnder(cdir), selfCPU()
		m.applied, err = bareApply(actx, cl.Config, objs, p.Sync.BareWorkers)
		m.controlPlaneCPU, m.clientCPU = cpuSince(cp0, cpuUnder(cdir)), selfCPU()-self0
	case vFerry:
		qps := p.Sync.FerryQPS
		m.child, err = ferrySyncChild(actx, self, childSyncArgs{Kubeconfig: cl.Kubeconfig, Dir: dir, App: "bench",
			QPS: qps, Timeout: p.Sync.Timeout, CPUProfile: profile})
	}
	if err != nil {
		return m, err
	}
	if c := m.child; c != nil {
		m.applied, m.healthy = c.First.Apply+c.First.Prune, c.First.Wall
		logf("P3 rep %d: %s: applied %s (apply %s, inventory %s), whole Sync %s (health wait %s; %d created); re-sync %s (%d unchanged; reads and diff %s, health %s); VmHWM %s, heap peak %s",
			rep+1, v, fmtDur(m.applied), fmtDur(c.First.Apply), fmtDur(c.First.Prune), fmtDur(c.First.Wall), fmtDur(c.First.Health), c.First.Created,
			fmtDur(c.Resync.Wall), c.Resync.Unchanged, fmtDur(c.Resync.Apply), fmtDur(c.Resync.Health), fmtMB(c.HWMResync), fmtMB(c.HeapPeak))
		return m, nil
	}
	if v == vKubectl {
		logf("P3 rep %d: %s: applied %s", rep+1, v, fmtDur(m.applied))
		return m, nil
	}
	if err := waitAvailable(actx, cl.Config, countKind(objs, "Deployment")); err != nil {
		return m, err
	}
	m.healthy = time.Since(t0)
	logf("P3 rep %d: %s: applied %s, all Deployments Available after %s; the apply cost the control plane %s and the loop %s CPU",
		rep+1, v, fmtDur(m.applied), fmtDur(m.healthy), fmtCPU(m.controlPlaneCPU), fmtDur(m.clientCPU))
	return m, nil
}

func countKind(objs []render.Object, kind string) int {
	n := 0
	for _, o := range objs {
		if o.GetKind() == kind {
			n++
		}
	}
	return n
}

// waitAvailable polls every 100 ms until want Deployments (besides the probe) are Available at
// their current generation.
func waitAvailable(ctx context.Context, cfg *rest.Config, want int) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("wait available: %w", err)
	}
	for {
		l, err := cs.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=bench"})
		if err == nil {
			ready := 0
			for i := range l.Items {
				if available(&l.Items[i]) {
					ready++
				}
			}
			if ready >= want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait available: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func available(d *appsv1.Deployment) bool {
	if d.Status.ObservedGeneration != d.Generation {
		return false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// warmControllers waits until kube-controller-manager's deployment controller reports a probe
// Deployment Available, so that no variant pays for controllers still starting: in a real cluster
// they are long warm.
func warmControllers(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("warm controllers: %w", err)
	}
	zero := int32(0)
	labels := map[string]string{"app": "kcm-probe"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "kcm-probe", Namespace: metav1.NamespaceDefault},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "registry.invalid/probe:1"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("warm controllers: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		got, err := cs.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		if err == nil {
			if available(got) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("warm controllers: probe Deployment not Available: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kubectlApply times `kubectl apply --server-side -f dir`.
func kubectlApply(ctx context.Context, kubectl, kubeconfig, dir, outFile string) (time.Duration, error) {
	out, err := os.Create(outFile)
	if err != nil {
		return 0, fmt.Errorf("kubectl output: %w", err)
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", dir)
	cmd.Stdout, cmd.Stderr = out, out
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("kubectl apply (output in %s): %w", outFile, err)
	}
	return time.Since(t0), nil
}

// bareGVR maps the kinds the manifests use to their resources: the floor does no discovery.
var bareGVR = map[string]schema.GroupVersionResource{
	"Namespace":  {Version: "v1", Resource: "namespaces"},
	"ConfigMap":  {Version: "v1", Resource: "configmaps"},
	"Service":    {Version: "v1", Resource: "services"},
	"Deployment": {Group: "apps", Version: "v1", Resource: "deployments"},
}

// bareApply is the floor: namespaces first, then every other object, each one SSA patch sent by
// a pool of workers. No diff, no inventory, no health.
func bareApply(ctx context.Context, cfg *rest.Config, objs []render.Object, workers int) (time.Duration, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = bareQPS, 2*bareQPS
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return 0, fmt.Errorf("dynamic client: %w", err)
	}
	var nss, others []render.Object
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			nss = append(nss, o)
		} else {
			others = append(others, o)
		}
	}
	t0 := time.Now()
	for _, batch := range [][]render.Object{nss, others} {
		var next atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= len(batch) || ctx.Err() != nil {
						return
					}
					o := batch[i]
					gvr, ok := bareGVR[o.GetKind()]
					if !ok {
						errc <- fmt.Errorf("no resource for kind %s", o.GetKind())
						return
					}
					_, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Apply(ctx, o.GetName(), o.Unstructured,
						metav1.ApplyOptions{FieldManager: "bench-bare", Force: true})
					if err != nil {
						errc <- fmt.Errorf("apply %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		if err := <-errc; err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// ferrySyncChild runs the engine in a child process (so its VmHWM is the engine's own) and reads
// its report.
func ferrySyncChild(ctx context.Context, self string, a childSyncArgs) (*childSync, error) {
	args := append([]string{"-child", "sync", "--"}, a.list()...)
	cmd := exec.CommandContext(ctx, self, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("engine child: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var out childSync
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("engine child output: %w", err)
	}
	return &out, nil
}
