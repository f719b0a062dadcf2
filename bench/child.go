package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
)

// childSync is what the sync child reports on stdout, as one JSON document.
type childSync struct {
	Objects int `json:"objects"`
	// First is the apply to an empty cluster (P3), Resync the same revision again (P4).
	First  syncRun `json:"first"`
	Resync syncRun `json:"resync"`
	// RSS high-water marks (VmHWM) of the child: after start-up and rendering, after the first
	// sync, after the re-sync.
	HWMStart, HWMFirst, HWMResync uint64
	// HeapPeak is the largest HeapInuse sampled every 20 ms during the syncs.
	HeapPeak uint64
	// Renders are the wall times of rendering the manifests, each time from scratch (a chart
	// is rendered several times; plain manifests once).
	Renders []time.Duration
}

// syncRun is one Engine.Sync as the child timed it.
type syncRun struct {
	Wall                                   time.Duration
	Apply, Prune, Health                   time.Duration
	Created, Configured, Unchanged, Pruned int
}

// childSyncArgs are the positional arguments of `bench -child sync -- ...`.
type childSyncArgs struct {
	Kubeconfig, Dir, App string
	QPS                  float64
	Timeout              time.Duration
	CPUProfile           string
	// Values are a chart's values as JSON ("" for none; Dir is then not a chart or takes its
	// defaults), and Renders how many times it is rendered and timed.
	Values  string
	Renders int
}

func (a childSyncArgs) list() []string {
	return []string{a.Kubeconfig, a.Dir, a.App, strconv.FormatFloat(a.QPS, 'f', -1, 64), a.Timeout.String(), a.CPUProfile, a.Values, strconv.Itoa(a.Renders)}
}

func parseChildSyncArgs(args []string) (childSyncArgs, error) {
	if len(args) != 8 {
		return childSyncArgs{}, fmt.Errorf("child sync: want 8 arguments, got %d", len(args))
	}
	renders, err := strconv.Atoi(args[7])
	if err != nil {
		return childSyncArgs{}, fmt.Errorf("child sync: renders: %w", err)
	}
	qps, err := strconv.ParseFloat(args[3], 64)
	if err != nil {
		return childSyncArgs{}, fmt.Errorf("child sync: qps: %w", err)
	}
	to, err := time.ParseDuration(args[4])
	if err != nil {
		return childSyncArgs{}, fmt.Errorf("child sync: timeout: %w", err)
	}
	return childSyncArgs{Kubeconfig: args[0], Dir: args[1], App: args[2], QPS: qps, Timeout: to, CPUProfile: args[5], Values: args[6], Renders: renders}, nil
}

// runChild dispatches the child modes.
func runChild(ctx context.Context, mode string, args []string, stdout io.Writer) error {
	switch mode {
	case "sync":
		a, err := parseChildSyncArgs(args)
		if err != nil {
			return err
		}
		out, err := childSyncRun(ctx, a)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	return fmt.Errorf("unknown child mode %q", mode)
}

// childSyncRun renders the manifests as ferry does (a chart with the cluster's capabilities) and
// syncs them twice with ferry's engine, set up as cmd/ferry sets it up (client QPS and burst
// included).
func childSyncRun(ctx context.Context, a childSyncArgs) (*childSync, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", a.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 0, 0
	if a.QPS > 0 {
		cfg.QPS, cfg.Burst = float32(a.QPS), int(2*a.QPS)
	}
	eng, err := apply.New(cfg, apply.DefaultOptions())
	if err != nil {
		return nil, err
	}
	opts := render.DefaultOptions()
	opts.Helm = &render.Helm{ReleaseName: a.App, Namespace: "default"}
	if a.Values != "" {
		if err := json.Unmarshal([]byte(a.Values), &opts.Helm.Values); err != nil {
			return nil, fmt.Errorf("values: %w", err)
		}
	}
	if opts.Helm.Capabilities, err = eng.Capabilities(ctx); err != nil {
		return nil, err
	}
	var objs []render.Object
	out := &childSync{}
	for range max(a.Renders, 1) {
		t0 := time.Now()
		if objs, err = render.Render(os.DirFS(a.Dir), ".", opts); err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		out.Renders = append(out.Renders, time.Since(t0))
	}
	out.Objects = len(objs)
	runtime.GC()
	out.HWMStart = procStatusBytes("self", "VmHWM")

	var peak atomic.Uint64
	sctx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go sampleHeap(sctx, &peak)

	app := apply.App{Name: a.App, Namespace: "default", Prune: true, Timeout: a.Timeout}
	if a.CPUProfile != "" {
		f, err := os.Create(a.CPUProfile)
		if err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	out.First, err = timedSync(ctx, eng, app, objs, a.Timeout)
	if a.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return nil, fmt.Errorf("first sync: %w", err)
	}
	out.HWMFirst = procStatusBytes("self", "VmHWM")
	out.Resync, err = timedSync(ctx, eng, app, objs, a.Timeout)
	if err != nil {
		return nil, fmt.Errorf("re-sync: %w", err)
	}
	out.HWMResync = procStatusBytes("self", "VmHWM")
	stopSampling()
	out.HeapPeak = peak.Load()
	return out, nil
}

func timedSync(ctx context.Context, eng *apply.Engine, app apply.App, objs []render.Object, timeout time.Duration) (syncRun, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	r, err := eng.Sync(ctx, app, "0123456789abcdef0123456789abcdef01234567", objs)
	wall := time.Since(t0)
	if err != nil {
		return syncRun{}, err
	}
	return syncRun{Wall: wall, Apply: r.Durations.Apply, Prune: r.Durations.Prune, Health: r.Durations.Health,
		Created: r.Created, Configured: r.Configured, Unchanged: r.Unchanged, Pruned: r.Pruned}, nil
}

// sampleHeap records the largest HeapInuse seen until ctx ends.
func sampleHeap(ctx context.Context, peak *atomic.Uint64) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var ms runtime.MemStats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}
}

// procStatusBytes reads a "kB" field (VmRSS, VmHWM) of /proc/<pid>/status, in bytes; 0 if unknown.
func procStatusBytes(pid, field string) uint64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}
