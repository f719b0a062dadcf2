// Command bench is ferry's benchmark harness (`make bench`, never part of `make test`). It runs
// each measure of issue #6 next to its baseline in the same run, on this machine, talking only to
// 127.0.0.1, prints one table of medians, p99s and ratios, and writes it with the machine's
// description to bench/RESULTS.md.
//
//	go run ./bench                      # everything
//	go run ./bench -only P1 -p1-reps 3  # one measure
//
// The same binary re-executes itself with -child to run ferry's apply engine in a process of its
// own, so that its peak RSS is ferry's alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferrygitops/ferry/handlers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// measures are the measure names -only accepts, in the order they run.
var measures = []string{"P1", "P3", "P4", "P5", "P8", "P2", "P6", "P7", "P10", "P11", "P11R", "P9"}

// params is every knob of the harness; all are printed before the run and written to RESULTS.md.
type params struct {
	Only     []string
	Reps     int
	P3Reps   int
	P1Reps   int
	Out      string
	Work     string
	K8sBin   string
	FerryBin string
	// P7BaselineBin, when set, is an older ferry binary P7 also runs, as its baseline.
	P7BaselineBin string
	Keep          bool
	MaxTotal      time.Duration
	P1            p1Params
	P10           p10Params
	P11           p11Params
	P9            p9Params
	Sync          syncParams
	E2E           e2eParams
	childMode     string
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*params, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	p := &params{}
	only := fs.String("only", strings.Join(measures, ","), "comma-separated measures to run (P5 sync is measured with P3)")
	fs.IntVar(&p.Reps, "reps", 3, "repetitions of each measure; the table shows medians")
	fs.IntVar(&p.P1Reps, "p1-reps", 9, "repetitions of P1, a few seconds each, whose ratio moves most with what else the shared cores run; 0 uses -reps")
	fs.IntVar(&p.P3Reps, "p3-reps", 5, "repetitions of P3/P4/P5 (sync), whose kubectl baseline varies most from run to run; 0 uses -reps")
	fs.StringVar(&p.Out, "out", "bench/RESULTS.md", "results file ('' to skip writing)")
	fs.StringVar(&p.Work, "work", "", "scratch directory (default: a new temporary directory, removed afterwards)")
	fs.StringVar(&p.K8sBin, "k8s-bin", getenv("FERRY_K8S_BIN"), "directory with etcd, kube-apiserver, kube-controller-manager and kubectl (FERRY_K8S_BIN)")
	fs.StringVar(&p.FerryBin, "ferry-bin", "bin/ferry", "the ferry binary for P2, P5 idle and P6 (make build)")
	fs.StringVar(&p.P7BaselineBin, "p7-baseline-bin", "", "P7: an older ferry binary (say, built before the short ack wait) to run side by side as the baseline")
	fs.BoolVar(&p.Keep, "keep", false, "keep the scratch directory (logs, profiles, cluster state)")
	fs.DurationVar(&p.MaxTotal, "max-total", 45*time.Minute, "upper bound on the whole run")

	fs.IntVar(&p.P1.Clients, "p1-clients", 32, "P1: concurrent keep-alive clients")
	fs.IntVar(&p.P1.Requests, "p1-requests", 30000, "P1: requests per measured run")
	fs.DurationVar(&p.P1.Duration, "p1-duration", 15*time.Second, "P1: time bound of each run")
	fs.IntVar(&p.P1.Warmup, "p1-warmup", 2000, "P1: unmeasured warm-up requests before each run")
	fs.StringVar(&p.P1.Payload, "p1-payload", "handlers/testdata/github/push.json", "P1: the signed push payload")

	fs.IntVar(&p.P11.Clients, "p11-clients", 48, "P11: concurrent senders of unauthenticated bodies")
	fs.IntVar(&p.P11.Bodies, "p11-bodies", 48*200, "P11: unauthenticated bodies sent at most (the flood ends earlier at -p11-duration)")
	fs.IntVar(&p.P11.BodyBytes, "p11-body-bytes", handlers.MaxBodyBytes, "P11: size of each unauthenticated body")
	fs.DurationVar(&p.P11.Duration, "p11-duration", 20*time.Second, "P11: time bound of the flood")
	fs.DurationVar(&p.P11.HookEvery, "p11-hook-every", 50*time.Millisecond, "P11: pace of the genuine hooks")
	fs.DurationVar(&p.P11.Idle, "p11-idle", 5*time.Second, "P11: how long ferry runs before its idle RSS is read")

	fs.IntVar(&p.Sync.Objects, "objects", 1000, "P3/P4/P5: objects per apply (10 of them Namespaces)")
	fs.IntVar(&p.Sync.Namespaces, "namespaces", 10, "P3/P4/P5: namespaces the objects spread over")
	fs.IntVar(&p.Sync.BareWorkers, "bare-workers", 4, "P3 (b): parallel SSA workers of the bare client-go loop")
	fs.Float64Var(&p.Sync.FerryQPS, "ferry-qps", 0, "P3: client QPS of the ferry engine; 0 keeps the engine's own default, as cmd/ferry does")
	variants := fs.String("p3-variants", "kubectl,bare,ferry", "P3: variants to run (kubectl, bare, ferry)")
	fs.DurationVar(&p.Sync.Timeout, "sync-timeout", 5*time.Minute, "P3/P4: bound of each apply")

	fs.IntVar(&p.E2E.Pushes, "p2-pushes", 30, "P2: pushes measured")
	fs.IntVar(&p.E2E.AppObjects, "p2-objects", 20, "P2: objects in the pushed app")
	fs.IntVar(&p.E2E.IdleApps, "p5-apps", 100, "P5: apps configured for the idle RSS")
	fs.DurationVar(&p.E2E.IdleWait, "p5-idle", 20*time.Second, "P5: how long ferry idles before its RSS is read")
	fs.BoolVar(&p.E2E.StaticCheck, "p5-static-check", true, "P5: when idle RSS misses, also build ferry with CGO_ENABLED=0 and measure it")
	fs.IntVar(&p.E2E.RestoreApps, "p6-apps", 50, "P6: apps restored")
	fs.IntVar(&p.E2E.ChainLen, "p6-chain", 5, "P6: length of each dependsOn chain")
	fs.DurationVar(&p.E2E.Timeout, "e2e-timeout", 3*time.Minute, "P2/P6: bound of each wait for statuses")

	fs.IntVar(&p.P10.Reps, "p10-reps", 5, "P10: repetitions (each starts two fresh control planes); 0 uses -reps")
	fs.DurationVar(&p.P10.Timeout, "p10-timeout", 3*time.Minute, "P10: bound of each apply, wait and sync")

	p9Apps := fs.String("p9-apps", "500,1000,5000", "P9: configured app counts (over 50 repositories) to measure at; the first is the baseline of the ratios")
	fs.IntVar(&p.P9.OnePushes, "p9-one-pushes", 50, "P9: pushes touching one app, per app count")
	fs.IntVar(&p.P9.ManyPushes, "p9-many-pushes", 100, "P9: pushes touching every app of one repository (a fifth of the apps), back to back, per app count")
	fs.IntVar(&p.P9.IdlePushes, "p9-idle-pushes", 10, "P9: pushes touching every app of one repository, each once ferry is quiet (or after 5 s), per app count, before the back-to-back ones")
	fs.DurationVar(&p.P9.Idle, "p9-idle", 10*time.Second, "P9: how long ferry runs before its idle RSS is read")
	fs.IntVar(&p.P9.SyncApps, "p9-sync-apps", 500, "P9: small apps synced at start-up on the local control plane, per app count")
	fs.DurationVar(&p.P9.Timeout, "p9-timeout", 5*time.Minute, "P9: bound of the wait for the start-up syncs")

	fs.StringVar(&p.childMode, "child", "", "internal: run as a child process (sync, flood)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, m := range strings.Split(*only, ",") {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" {
			continue
		}
		if !slices.Contains(measures, m) {
			return nil, fmt.Errorf("-only: unknown measure %q (known: %s)", m, strings.Join(measures, ","))
		}
		p.Only = append(p.Only, m)
	}
	for _, v := range strings.Split(*variants, ",") {
		switch strings.TrimSpace(v) {
		case "":
		case "kubectl":
			p.Sync.Variants = append(p.Sync.Variants, vKubectl)
		case "bare":
			p.Sync.Variants = append(p.Sync.Variants, vBare)
		case "ferry":
			p.Sync.Variants = append(p.Sync.Variants, vFerry)
		default:
			return nil, fmt.Errorf("-p3-variants: unknown variant %q", v)
		}
	}
	if p.Reps < 1 {
		return nil, errors.New("-reps must be at least 1")
	}
	var err error
	if p.P9.Apps, err = parseP9Apps(*p9Apps); err != nil {
		return nil, err
	}
	p.P1.Reps, p.Sync.Reps = p.Reps, p.Reps
	if p.P1Reps > 0 {
		p.P1.Reps = p.P1Reps
	}
	if p.P3Reps > 0 {
		p.Sync.Reps = p.P3Reps
	}
	if p.P10.Reps <= 0 {
		p.P10.Reps = p.Reps
	}
	p.P1.Profile = "p1-ferry-cpu.pprof"
	return p, nil
}

func (p *params) wants(m string) bool { return slices.Contains(p.Only, m) }

// describe lists the parameters the way RESULTS.md and the console show them.
func (p *params) describe() []string {
	return []string{
		fmt.Sprintf("measures: %s; repetitions: %d, P1 %d, P3/P4/P5 sync %d (medians reported)", strings.Join(p.Only, ","), p.Reps, p.P1.Reps, p.Sync.Reps),
		fmt.Sprintf("P1: %d keep-alive clients, %d requests or %s per run (whichever first) after %d warm-up requests; payload %s (%s), one app routed, one job per hook; embedded JetStream on a temp dir; ferry's routes (server.New) and handlers.Hooks with an info-level text logger to io.Discard; baselines, each repetition: a bare HMAC-checking handler, and a bare durable hook (HMAC, one publish with a message id to ferry's stream on a fresh embedded JetStream, ack awaited)",
			p.P1.Clients, p.P1.Requests, p.P1.Duration, p.P1.Warmup, p.P1.Payload, byteSize(p.P1.Payload)),
		fmt.Sprintf("P3/P4/P5: %d objects (%d Namespaces, then ConfigMaps, headless Services and Deployments with replicas 0) over %d namespaces; a fresh etcd + kube-apiserver + kube-controller-manager per variant and repetition; bare loop: %d workers; ferry engine: apply.DefaultOptions(), client QPS %s, in a child process; timeout %s",
			p.Sync.Objects, p.Sync.Namespaces, p.Sync.Namespaces, p.Sync.BareWorkers, qpsString(p.Sync.FerryQPS), p.Sync.Timeout),
		fmt.Sprintf("P2: %d pushes of a %d-object app; P5 idle: %d apps, RSS after %s; P6: %d apps in chains of %d; ferry binary %s; bound per wait %s",
			p.E2E.Pushes, p.E2E.AppObjects, p.E2E.IdleApps, p.E2E.IdleWait, p.E2E.RestoreApps, p.E2E.ChainLen, p.FerryBin, p.E2E.Timeout),
		fmt.Sprintf("P7: two ferry replicas on one NATS server (embedded in the bench, on 127.0.0.1), SIGKILL of the one running a sync; %d repetitions; baseline binary %s", p.Reps, dash(p.P7BaselineBin)),
		fmt.Sprintf("P11: ferry binary %s, its cluster unreachable; %d clients post %d bodies of %d bytes (even ones unsigned, odd ones with a wrong signature) for at most %s from a child process at nice 19; a genuine signed push every %s, 50 before the flood as the baseline; VmRSS sampled every %s",
			p.FerryBin, p.P11.Clients, p.P11.Bodies, p.P11.BodyBytes, p.P11.Duration, p.P11.HookEvery, p11Sample),
		fmt.Sprintf("P10: %s@%s %s (Deployment scaled to 0 replicas: no kubelet) pushed to an app of the ferry binary (%s), hook → success status, vs kubectl apply --server-side -f + kubectl wait --for=condition=established on its CRDs; %d repetitions, each variant on a fresh control plane, order rotating; bound %s",
			p10Module, p10Version, p10File, p.FerryBin, p.P10.Reps, p.P10.Timeout),
		fmt.Sprintf("P8: %s@%s %s (KueueViz's Deployments set to 0 replicas: no kubelet) with values %s, rendered %d times (the cluster's capabilities), applied to an empty control plane and re-synced by ferry's engine in a child process; %d repetitions, each on a fresh control plane",
			p8Module, p8Version, p8Chart, p8Values, p8Renders, p.Reps),
		fmt.Sprintf("P9: ferry binary %s with %s apps over %d repositories (a fifth in one, one directory each); routing: every repository on branch pattern %q (no start-up sync or poll), cluster unreachable, idle RSS after %s, %d pushes touching 1 app and %d touching all of that repository's apps, one at a time back to back, after %d such pushes each sent once ferry used at most %s CPU over %s (bound %s); ferry's own time from its log's took; sync: %d small apps (one ConfigMap each) on main plus the rest routed only, start → last success status on a fresh control plane namespace; in-process CPU profile of handlers.Hooks on an embedded JetStream",
			p.FerryBin, intsString(p.P9.Apps), p9Repos, p9GlobBranch, p.P9.Idle, p.P9.OnePushes, p.P9.ManyPushes, p.P9.IdlePushes, p9QuietCPU, p9QuietWindow, p9QuietBound, p.P9.SyncApps),
		fmt.Sprintf("k8s binaries: %s", p.K8sBin),
	}
}

func intsString(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

func qpsString(q float64) string {
	if q <= 0 {
		return "engine default"
	}
	return fmt.Sprintf("%.0f (burst %.0f)", q, 2*q)
}

func byteSize(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d bytes", st.Size())
}

// run is main without the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	p, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	switch p.childMode {
	case "":
	case "flood":
		return runFloodChild(ctx, fsArgs(args), stdout)
	default:
		return runChild(ctx, p.childMode, fsArgs(args), stdout)
	}
	ctx, cancel := context.WithTimeout(ctx, p.MaxTotal)
	defer cancel()
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	if p.Work == "" {
		if p.Work, err = os.MkdirTemp("", "ferry-bench-"); err != nil {
			return fmt.Errorf("scratch directory: %w", err)
		}
		if !p.Keep {
			defer os.RemoveAll(p.Work)
		}
	} else if err := os.MkdirAll(p.Work, 0o755); err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	mach := machine()
	fmt.Fprintln(stdout, "machine:")
	for _, m := range mach {
		fmt.Fprintln(stdout, "  "+m)
	}
	fmt.Fprintln(stdout, "parameters:")
	for _, d := range p.describe() {
		fmt.Fprintln(stdout, "  "+d)
	}
	fmt.Fprintln(stdout, "  scratch: "+p.Work)

	began := time.Now()
	res := &results{}
	var errs []error
	step := func(name string, fn func() error) {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: not run: %w", name, ctx.Err()))
			return
		}
		logf("%s: start", name)
		if err := fn(); err != nil {
			logf("%s: %v", name, err)
			res.note("%s could not be measured: %v", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if p.wants("P1") {
		step("P1", func() error { return runP1(ctx, p.P1, p.Work, res, logf) })
	}
	if (p.wants("P3") || p.wants("P4") || p.wants("P5")) && len(p.Sync.Variants) > 0 {
		step("P3/P4/P5 sync", func() error { return runSync(ctx, p, res, logf) })
	}
	if p.wants("P8") {
		step("P8", func() error { return runP8(ctx, p, res, logf) })
	}
	if p.wants("P2") || p.wants("P5") || p.wants("P6") || p.wants("P7") || p.wants("P10") || p.wants("P11R") {
		step("P2/P5 idle/P6/P7/P10/P11R", func() error { return runE2E(ctx, p, res, logf) })
	}
	if p.wants("P11") {
		step("P11", func() error { return runP11(ctx, p, res, logf) })
	}
	if p.wants("P9") {
		step("P9", func() error { return runP9(ctx, p, res, logf) })
	}
	took := time.Since(began)
	mach = append(mach, "load average at end: "+firstLine("/proc/loadavg")+" (the cores are shared with other work; see the spread in the log)")

	fmt.Fprintln(stdout)
	writeTable(stdout, res.rows)
	for _, n := range res.notes {
		fmt.Fprintln(stdout, "note: "+n)
	}
	if p.Out != "" {
		if err := writeResults(p.Out, mach, append(p.describe(), fmt.Sprintf("only: %s", strings.Join(p.Only, ","))), res, took); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintln(stdout, "wrote "+p.Out)
		}
	}
	return errors.Join(errs...)
}

// fsArgs returns the arguments after the flags, for child modes that take positional ones.
func fsArgs(args []string) []string {
	for i, a := range args {
		if a == "--" {
			return args[i+1:]
		}
	}
	return nil
}
