package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/test/upstream"
)

// P8: a real Helm chart rendered with the target cluster's capabilities, applied to an empty
// cluster, then re-synced unchanged, by ferry's engine in a child process (so that its VmHWM is
// the render's and the syncs' own).
const (
	// p8Module, p8Version and p8Chart name the chart: Kueue's, as its Go module ships it, with
	// the optional parts on that need no other project's CRDs (Kueue's own CRDs, RBAC, webhooks,
	// the visibility API's priority settings, KueueViz): the largest real chart found in a Go
	// module that renders offline and applies to a bare control plane.
	p8Module  = "sigs.k8s.io/kueue"
	p8Version = "v0.17.0"
	p8Chart   = "charts/kueue"
	// p8Values: no replicas (nothing runs pods on the bench control plane) and the optional
	// parts on.
	p8Values = `{"controllerManager":{"replicas":0},"enableVisibilityAPF":true,"enableKueueViz":true}`
	// p8Renders is how many times each repetition renders the chart; the median is reported.
	p8Renders = 5
	// Targets: render within 500 ms, the unchanged re-sync within 0.1× the first apply.
	p8MaxRender     = 500 * time.Millisecond
	p8MaxResyncRate = 0.1
)

// runP8 measures P8 on a fresh control plane per repetition.
func runP8(ctx context.Context, p *params, res *results, logf func(string, ...any)) error {
	if p.K8sBin == "" {
		return errors.New("FERRY_K8S_BIN (or -k8s-bin) must name the control-plane binaries; run via make bench")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	mod, err := upstream.Dir(ctx, p8Module, p8Version)
	if err != nil {
		return err
	}
	chart, err := p8Copy(filepath.Join(mod, p8Chart), filepath.Join(p.Work, "p8-chart"))
	if err != nil {
		return err
	}
	var renders, first, resync []time.Duration
	var hwm, hwmStart []float64
	objects := 0
	for rep := range p.Reps {
		c, err := p8Run(ctx, p, self, chart, rep)
		if err != nil {
			return fmt.Errorf("rep %d: %w", rep+1, err)
		}
		objects = c.Objects
		renders = append(renders, medianDur(c.Renders))
		first = append(first, c.First.Wall)
		resync = append(resync, c.Resync.Wall)
		hwm, hwmStart = append(hwm, float64(c.HWMResync)), append(hwmStart, float64(c.HWMStart))
		logf("P8 rep %d: %d objects; render median %s of %v; first sync %s (%d created, health %s); re-sync %s (%d unchanged); VmHWM %s after the render, %s at the end",
			rep+1, c.Objects, fmtDur(medianDur(c.Renders)), c.Renders, fmtDur(c.First.Wall), c.First.Created, fmtDur(c.First.Health),
			fmtDur(c.Resync.Wall), c.Resync.Unchanged, fmtMB(c.HWMStart), fmtMB(c.HWMResync))
	}
	rd := medianDur(renders)
	res.add(row{ID: "P8", Measure: fmt.Sprintf("render of a real chart (%s@%s %s, %d objects) with the cluster's capabilities", p8Module, p8Version, p8Chart, objects),
		Ferry: fmtDur(rd), Target: "< 500 ms", Met: verdict(rd < p8MaxRender)})
	f, r := medianDur(first), medianDur(resync)
	ratio := float64(r) / float64(f)
	res.add(row{ID: "P8", Measure: "unchanged re-sync of the chart vs its first apply (whole Sync, health included)",
		Ferry: fmtDur(r), Baseline: fmtDur(f), Ratio: fmt.Sprintf("%.3f", ratio), Target: "≤ 0.1×", Met: verdict(ratio <= p8MaxResyncRate)})
	res.add(row{ID: "P8", Measure: "peak RSS (VmHWM) of the process rendering and syncing the chart",
		Ferry: fmtMB(uint64(median(hwm))) + fmt.Sprintf(" (%s after the renders)", fmtMB(uint64(median(hwmStart)))), Target: "informative"})
	if objects < 100 {
		res.note("P8: the chart renders %d objects; the measure asks for 100+, and no larger real chart that renders offline and applies to a bare control plane was found in a Go module.", objects)
	}
	return nil
}

// p8Copy copies the chart to dir and sets KueueViz's two Deployments, whose replicas the chart
// fixes at 1, to 0: nothing runs pods on the bench control plane, so they would never be
// Available (P10 does the same to its bundle).
func p8Copy(chart, dir string) (string, error) {
	_ = os.RemoveAll(dir)
	if err := os.CopyFS(dir, os.DirFS(chart)); err != nil {
		return "", fmt.Errorf("copy %s: %w", chart, err)
	}
	for _, f := range []string{"backend-deployment.yaml", "frontend-deployment.yaml"} {
		p := filepath.Join(dir, "templates", "kueueviz", f)
		data, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("%s@%s: %w", p8Module, p8Version, err)
		}
		scaled := strings.Replace(string(data), "\n  replicas: 1\n", "\n  replicas: 0\n", 1)
		if scaled == string(data) {
			return "", fmt.Errorf("%s@%s: %s has no \"replicas: 1\" to set to 0", p8Module, p8Version, f)
		}
		if err := os.WriteFile(p, []byte(scaled), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// p8Run starts a fresh control plane, runs the chart child on it and stops it.
func p8Run(ctx context.Context, p *params, self, chart string, rep int) (*childSync, error) {
	cl, err := startCluster(ctx, p, fmt.Sprintf("cluster-p8-%d", rep))
	if err != nil {
		return nil, err
	}
	defer cl.Stop()
	actx, acancel := context.WithTimeout(ctx, p.Sync.Timeout)
	defer acancel()
	return ferrySyncChild(actx, self, childSyncArgs{Kubeconfig: cl.Kubeconfig, Dir: chart, App: "kueue", Timeout: p.Sync.Timeout,
		Values: p8Values, Renders: p8Renders})
}
