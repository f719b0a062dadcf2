package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/test/upstream"
)

// P10: a real operator bundle, synced whole by the ferry binary, against kubectl applying it and
// waiting for its CRDs, each on a fresh control plane.
const (
	// p10Module and p10Version name the upstream module whose bundle.yaml is synced: the
	// Prometheus operator's install bundle, ten large CRDs (4 MB of OpenAPI schemas), RBAC, a
	// Service and a Deployment, as many users install it.
	p10Module  = "github.com/prometheus-operator/prometheus-operator"
	p10Version = "v0.85.0"
	p10File    = "bundle.yaml"
	// p10MaxVsKubectl is the target: the whole sync within 0.9× kubectl apply + wait.
	p10MaxVsKubectl = 0.9
	// p10App is the app the bundle is synced as; its path in the bench repository is apps/<app>.
	p10App = "prom"
)

// p10Params are the knobs of P10.
type p10Params struct {
	Reps    int
	Timeout time.Duration
}

// p10Variants are the two sides of P10, rotated each repetition so neither always runs first.
var p10Variants = []string{"kubectl", "ferry"}

// p10Bundle is the bundle as P10 syncs it.
type p10Bundle struct {
	// dir holds bundle.yaml alone, for kubectl and the profiled engine run.
	dir  string
	data []byte
	crds []string
	objs int
}

// loadP10Bundle fetches the module through the Go module proxy (cached in the module cache
// afterwards) and writes its bundle, with the operator's Deployment scaled to zero replicas: the
// bench control plane has no scheduler or kubelet, so one replica would never be Available.
func loadP10Bundle(ctx context.Context, work string) (*p10Bundle, error) {
	mod, err := upstream.Dir(ctx, p10Module, p10Version)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(mod, p10File))
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", p10Module, p10Version, err)
	}
	docs := strings.Split(string(data), "\n---\n")
	scaled := 0
	for i, d := range docs {
		if strings.Contains(d, "\nkind: Deployment\n") && strings.Count(d, "\n  replicas: 1\n") == 1 {
			docs[i] = strings.Replace(d, "\n  replicas: 1\n", "\n  replicas: 0\n", 1)
			scaled++
		}
	}
	if scaled != 1 {
		return nil, fmt.Errorf("%s@%s %s: found %d Deployments with one replica to scale to zero, want 1", p10Module, p10Version, p10File, scaled)
	}
	b := &p10Bundle{dir: filepath.Join(work, "p10-bundle"), data: []byte(strings.Join(docs, "\n---\n"))}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, fmt.Errorf("p10 bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, p10File), b.data, 0o644); err != nil {
		return nil, fmt.Errorf("p10 bundle: %w", err)
	}
	objs, err := render.Render(os.DirFS(b.dir), ".", render.DefaultOptions())
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", p10File, err)
	}
	b.objs = len(objs)
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			b.crds = append(b.crds, o.GetName())
		}
	}
	if len(b.crds) == 0 {
		return nil, fmt.Errorf("%s@%s %s declares no CRD", p10Module, p10Version, p10File)
	}
	return b, nil
}

// runP10 measures P10: per repetition, on a fresh control plane each, (a) `kubectl apply
// --server-side` of the bundle then `kubectl wait --for=condition=established` on its CRDs, and
// (b) the ferry binary syncing a push that adds the bundle to an app, from the hook to the
// success status: fetch, render, apply, inventory, health wait and status. A last engine-only
// run on a fresh control plane writes a CPU profile.
func (e *e2e) runP10(ctx context.Context, res *results) error {
	b, err := loadP10Bundle(ctx, e.p.Work)
	if err != nil {
		return err
	}
	e.logf("P10: %s@%s %s: %d bytes, %d objects, %d CRDs", p10Module, p10Version, p10File, len(b.data), b.objs, len(b.crds))
	took := map[string][]time.Duration{}
	var ratios []float64
	var busy []string
	for rep := range e.p.P10.Reps {
		pair := map[string]time.Duration{}
		for k := range p10Variants {
			v := p10Variants[(k+rep)%len(p10Variants)]
			cpu0 := readCPUStat()
			var d time.Duration
			var detail string
			if v == "kubectl" {
				d, detail, err = e.p10Kubectl(ctx, rep, b)
			} else {
				d, detail, err = e.p10Ferry(ctx, rep, b)
			}
			if err != nil {
				return fmt.Errorf("%s (rep %d): %w", v, rep+1, err)
			}
			load := readCPUStat().busySince(cpu0)
			busy = append(busy, fmt.Sprintf("%.0f%%", 100*load))
			e.logf("P10 rep %d: %s: %s%s; machine CPU busy %.0f%% meanwhile", rep+1, v, fmtDur(d), detail, 100*load)
			took[v], pair[v] = append(took[v], d), d
		}
		ratios = append(ratios, float64(pair["ferry"])/float64(pair["kubectl"]))
	}
	fer, kub := medianDur(took["ferry"]), medianDur(took["kubectl"])
	r := median(ratios)
	res.add(row{ID: "P10", Measure: fmt.Sprintf("real bundle (%s %s: %d objects, %d CRDs, %.1f MB) pushed → success status (whole sync) vs kubectl apply --server-side + wait established, each on a fresh control plane",
		p10Module[strings.LastIndex(p10Module, "/")+1:], p10Version, b.objs, len(b.crds), float64(len(b.data))/(1<<20)),
		Ferry: fmtDur(fer), Baseline: fmtDur(kub), Ratio: fmt.Sprintf("%.2f", r), Target: "≤ 0.9×", Met: verdict(r <= p10MaxVsKubectl)})
	var per []string
	for i, x := range ratios {
		per = append(per, fmt.Sprintf("%.2f (%s / %s)", x, fmtDur(took["ferry"][i]), fmtDur(took["kubectl"][i])))
	}
	res.note("P10: ratio is the median of the per-repetition ratios, each measured side by side; per repetition: %s. Machine CPU busy during each variant (all processes, both cores): %s.",
		strings.Join(per, ", "), strings.Join(busy, ", "))
	if r > p10MaxVsKubectl {
		res.note("P10: ferry took %.2f× kubectl + wait, target 0.9×.", r)
	}
	prof := filepath.Join(e.p.Work, "p10-ferry-cpu.pprof")
	if err := e.p10Profile(ctx, b, prof); err != nil {
		res.note("P10 profile not taken: %v", err)
		return nil
	}
	res.addProfile("P10 ferry engine (Sync of the rendered bundle to a fresh control plane, then its re-sync), CPU", prof, 25)
	return nil
}

// p10Kubectl times kubectl applying the bundle and waiting for its CRDs to be established. detail
// is the CPU time the control plane spent meanwhile.
func (e *e2e) p10Kubectl(ctx context.Context, rep int, b *p10Bundle) (time.Duration, string, error) {
	cl, err := startCluster(ctx, e.p, fmt.Sprintf("cluster-p10-%d-kubectl", rep))
	if err != nil {
		return 0, "", err
	}
	defer cl.Stop()
	kubectl := filepath.Join(e.p.K8sBin, "kubectl")
	wait := []string{"--kubeconfig", cl.Kubeconfig, "wait", "--for=condition=established", "--timeout=" + strconv.Itoa(int(e.p.P10.Timeout.Seconds())) + "s"}
	for _, n := range b.crds {
		wait = append(wait, "crd/"+n)
	}
	actx, cancel := context.WithTimeout(ctx, e.p.P10.Timeout)
	defer cancel()
	cdir := filepath.Join(e.p.Work, fmt.Sprintf("cluster-p10-%d-kubectl", rep))
	cp0 := cpuUnder(cdir)
	t0 := time.Now()
	for _, args := range [][]string{
		{"--kubeconfig", cl.Kubeconfig, "apply", "--server-side", "-f", filepath.Join(b.dir, p10File)},
		wait,
	} {
		var out bytes.Buffer
		cmd := exec.CommandContext(actx, kubectl, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return 0, "", fmt.Errorf("kubectl %s: %w: %s", args[2], err, bytes.TrimSpace(out.Bytes()))
		}
	}
	d := time.Since(t0)
	return d, fmt.Sprintf(" (control plane %s)", fmtCPU(cpuSince(cp0, cpuUnder(cdir)))), nil
}

// p10Ferry starts the ferry binary on a fresh control plane with the app holding one ConfigMap,
// waits for its start-up sync, then pushes the commit that adds the bundle and times the hook to
// the success status. detail is ferry's own account of the sync, from its log, and the CPU time
// the control plane and ferry spent meanwhile.
func (e *e2e) p10Ferry(ctx context.Context, rep int, b *p10Bundle) (time.Duration, string, error) {
	cl, err := startCluster(ctx, e.p, fmt.Sprintf("cluster-p10-%d-ferry", rep))
	if err != nil {
		return 0, "", err
	}
	defer cl.Stop()
	var d time.Duration
	var detail string
	err = guard(func() error {
		repo := e.git.CreateRepo(e.tb, fmt.Sprintf("acme/p10-%d", rep))
		dir := "apps/" + p10App
		placeholder := map[string]string{dir + "/placeholder.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: p10-placeholder\ndata:\n  a: b\n"}
		first := repo.Commit(e.tb, "main", "p10: placeholder", placeholder)
		apps := []appConf{{Name: p10App, Path: dir, Namespace: "default"}}
		f, err := startFerry(ctx, e.p.FerryBin, filepath.Join(e.p.Work, fmt.Sprintf("ferry-p10-%d", rep)), ferryConfig(repo.CloneURL(), e.forge.URL, apps), cl.Kubeconfig)
		if err != nil {
			return err
		}
		defer f.stop()
		wctx, cancel := context.WithTimeout(ctx, e.p.P10.Timeout)
		defer cancel()
		if _, err := e.forge.waitFinal(wctx, time.Time{}, first, []string{"ferry/" + p10App}); err != nil {
			return fmt.Errorf("start-up sync (log %s): %w", f.Log, err)
		}
		sha := repo.Commit(e.tb, "main", "p10: the operator bundle", map[string]string{dir + "/" + p10File: string(b.data)})
		body, hdr, err := pushHook(e.payload, fmt.Sprintf("p10-%d-%d", time.Now().UnixNano(), rep), first, sha, []string{dir + "/" + p10File})
		if err != nil {
			return err
		}
		cdir, fdir := filepath.Join(e.p.Work, fmt.Sprintf("cluster-p10-%d-ferry", rep)), filepath.Join(e.p.Work, fmt.Sprintf("ferry-p10-%d", rep))
		cp0, f0 := cpuUnder(cdir), cpuUnder(fdir)
		t0 := time.Now()
		if err := f.sendHook(wctx, body, hdr); err != nil {
			return err
		}
		got, err := e.forge.waitFinal(wctx, t0, sha, []string{"ferry/" + p10App})
		if err != nil {
			return fmt.Errorf("bundle sync (log %s): %w", f.Log, err)
		}
		d = got["ferry/"+p10App].At.Sub(t0)
		// ferry's command line names the cluster's kubeconfig too: count it on its own.
		cp := cpuSince(cp0, cpuUnder(cdir))
		delete(cp, filepath.Base(e.p.FerryBin))
		detail = fmt.Sprintf(" (%s; control plane %s; ferry process %s)", lastSyncLine(f.Log), fmtCPU(cp), fmtCPU(cpuSince(f0, cpuUnder(fdir))))
		return nil
	})
	return d, detail, err
}

// lastSyncLine returns the phases of ferry's last logged sync: the engine's apply, prune (the
// inventory write) and health durations.
func lastSyncLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "log unreadable: " + err.Error()
	}
	var last string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "msg=sync part=apply") {
			last = line
		}
	}
	var parts []string
	for _, f := range strings.Fields(last) {
		if k, v, ok := strings.Cut(f, "="); ok && (k == "apply" || k == "prune" || k == "health") {
			parts = append(parts, k+" "+v)
		}
	}
	if len(parts) == 0 {
		return "no sync line in ferry's log"
	}
	return "ferry's engine: " + strings.Join(parts, ", ")
}

// p10Profile runs the engine alone on the bundle in a child process, on a fresh control plane,
// with a CPU profile of its first sync.
func (e *e2e) p10Profile(ctx context.Context, b *p10Bundle, profile string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	cl, err := startCluster(ctx, e.p, "cluster-p10-profile")
	if err != nil {
		return err
	}
	defer cl.Stop()
	c, err := ferrySyncChild(ctx, self, childSyncArgs{Kubeconfig: cl.Kubeconfig, Dir: b.dir, App: p10App, Timeout: e.p.P10.Timeout, CPUProfile: profile})
	if err != nil {
		return err
	}
	e.logf("P10 profile run: engine Sync %s (apply %s, inventory %s, health %s; %d created); re-sync %s",
		fmtDur(c.First.Wall), fmtDur(c.First.Apply), fmtDur(c.First.Prune), fmtDur(c.First.Health), c.First.Created, fmtDur(c.Resync.Wall))
	return nil
}

// cpuStat is the machine's cumulative CPU time from /proc/stat, in clock ticks.
type cpuStat struct{ busy, total int64 }

func readCPUStat() cpuStat {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var s cpuStat
	// user nice system idle iowait irq softirq steal, then guest times already counted in user.
	for i, x := range f[1:min(len(f), 9)] {
		n, _ := strconv.ParseInt(x, 10, 64)
		s.total += n
		if i != 3 && i != 4 {
			s.busy += n
		}
	}
	return s
}

// busySince is the fraction of the machine's CPU time that was busy since s0.
func (s cpuStat) busySince(s0 cpuStat) float64 {
	if s.total <= s0.total {
		return 0
	}
	return float64(s.busy-s0.busy) / float64(s.total-s0.total)
}
