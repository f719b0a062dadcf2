package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferrygitops/ferry/test/gitserver"
)

// P9: thousands of apps over many repositories, on the ferry binary.
const (
	// p9MaxHookP99 is the target for a push's answer, 1 app or 1,000 apps routed and stored.
	p9MaxHookP99 = 50 * time.Millisecond
	// p9MaxIdleRSS is the target for ferry's RSS, idle, with 5,000 apps configured.
	p9MaxIdleRSS = 200 << 20
	// p9Repos is how many repositories the apps are spread over; the first, "mono", holds a
	// fifth of them (1,000 of 5,000), one directory per app, for the push touching many apps.
	p9Repos = 50
	// p9MonoShare is the share of apps in mono: apps / p9MonoShare.
	p9MonoShare = 5
	// p9GlobBranch is the branch of the repositories whose apps are only routed: a pattern
	// names no single head, so ferry neither start-up-syncs nor polls them, and a push to main
	// matches it.
	p9GlobBranch = "mai[n]"
)

// p9Params are the knobs of P9.
type p9Params struct {
	// Apps are the configured app counts to run at; the first is the baseline of the ratios.
	Apps []int
	// OnePushes and ManyPushes are the pushes sent touching one app and every app of mono,
	// back to back: each 1,000-app push arrives while the syncs of the ones before run.
	OnePushes, ManyPushes int
	// IdlePushes are pushes touching every app of mono, each sent once ferry is quiet
	// (waitQuiet): the answer of a server that is not syncing anything else.
	IdlePushes int
	// Idle is how long ferry runs before its idle RSS is read.
	Idle time.Duration
	// SyncApps is how many small apps (one ConfigMap each) are synced at start-up on the local
	// control plane, whatever the number configured.
	SyncApps int
	Timeout  time.Duration
}

func parseP9Apps(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < p9Repos {
			return nil, fmt.Errorf("-p9-apps: %q is not a number of apps of at least %d", f, p9Repos)
		}
		out = append(out, n)
	}
	return out, nil
}

// p9Layout is where n routed apps live: mono gets n/p9MonoShare of them, the other
// repositories share the rest.
type p9Layout struct {
	repos map[string][]appConf
	mono  []appConf
}

func p9Apps(n int) p9Layout {
	l := p9Layout{repos: map[string][]appConf{}}
	for i := range n / p9MonoShare {
		name := fmt.Sprintf("m%04d", i)
		l.mono = append(l.mono, appConf{Name: name, Path: "apps/" + name, Namespace: "p9-routed"})
	}
	l.repos["mono"] = l.mono
	for i := range n - len(l.mono) {
		name := fmt.Sprintf("a%04d", i)
		r := fmt.Sprintf("repo%02d", 1+i%(p9Repos-1))
		l.repos[r] = append(l.repos[r], appConf{Name: name, Path: "apps/" + name, Namespace: "p9-routed"})
	}
	return l
}

// p9Repo is one repository of a generated configuration.
type p9Repo struct {
	name, url, branch string
	apps              []appConf
}

// p9Config writes ferry.yaml for several GitHub repositories.
func p9Config(apiURL string, repos []p9Repo) string {
	var b strings.Builder
	b.WriteString("externalURL: http://ferry.bench.invalid\nrepos:\n")
	for _, r := range repos {
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    provider: github\n    branch: %q\n    webhookSecret: {env: HOOK_SECRET}\n    token: {env: FORGE_TOKEN}\n    apiURL: %s\n    interval: 1h\n",
			r.name, r.url, r.branch, apiURL)
	}
	b.WriteString("apps:\n")
	for _, r := range repos {
		for _, a := range r.apps {
			fmt.Fprintf(&b, "  - name: %s\n    repo: %s\n    path: %s\n    namespace: %s\n", a.Name, r.name, a.Path, a.Namespace)
		}
	}
	return b.String()
}

// p9Result is one app count's measures.
type p9Result struct {
	apps      int
	one, many []time.Duration
	manyApps  int
	// manyTook and idleTook are ferry's own time for the many and idle pushes (the log's took);
	// idle are the idle-server pushes' answers, idleMissed how many found ferry still busy.
	manyTook, idle, idleTook []time.Duration
	idleMissed               int
	rss, hwm                 uint64
	started, syncStarted     time.Duration
	sync                     time.Duration
	mem                      string
}

// runP9 measures P9 at each configured app count: (a) the ferry binary with every app routed
// only (repositories on a branch pattern: no start-up sync, no poll; cluster unreachable, so the
// jobs the pushes make fail at apply and back off): its idle RSS, then the answer time of pushes
// touching one app and every app of mono (a fifth of them); (b) the ferry binary on the local
// control plane with SyncApps small apps on main and the rest routed only: the time from start to
// the last start-up sync's success status. Ratios are against the first app count.
func runP9(ctx context.Context, p *params, res *results, logf func(string, ...any)) error {
	if p.K8sBin == "" {
		return errors.New("FERRY_K8S_BIN (or -k8s-bin) must name the control-plane binaries; run via make bench")
	}
	h, err := newHarness(p, "p9")
	if err != nil {
		return err
	}
	defer h.close()
	if err := p9InProcess(ctx, p, res, logf); err != nil {
		res.note("P9 in-process profile: %v", err)
	}
	return guard(func() error {
		git := gitserver.New(h.tb)
		most := 0
		for _, n := range p.P9.Apps {
			most = max(most, n)
		}
		biggest := p9Apps(most)
		heads := map[string]string{}
		for name, apps := range biggest.repos {
			files := map[string]string{}
			for _, a := range apps {
				files[a.Path+"/config.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  v: \"1\"\n", a.Name)
			}
			heads[name] = git.CreateRepo(h.tb, "acme/"+name).Commit(h.tb, "main", "apps", files)
		}
		syncRepo := git.CreateRepo(h.tb, "acme/sync")
		syncFiles := map[string]string{}
		for i := range p.P9.SyncApps {
			syncFiles[fmt.Sprintf("apps/s%03d/config.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s%03d\ndata:\n  v: \"1\"\n", i)
		}
		syncHead := syncRepo.Commit(h.tb, "main", "small apps", syncFiles)
		cl, err := startCluster(ctx, p, "cluster-p9")
		if err != nil {
			return err
		}
		defer cl.Stop()
		cs, err := kubernetes.NewForConfig(cl.Config)
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}

		var all []p9Result
		var errs []error
		for _, n := range p.P9.Apps {
			r := p9Result{apps: n}
			layout := p9Apps(n)
			var routed []p9Repo
			for name, apps := range layout.repos {
				routed = append(routed, p9Repo{name: name, url: git.URL() + "/acme/" + name + ".git", branch: p9GlobBranch, apps: apps})
			}
			if err := p9Routing(ctx, p, h, routed, layout, heads["mono"], &r, logf); err != nil {
				errs = append(errs, fmt.Errorf("P9 routing at %d apps: %w", n, err))
				continue
			}
			ns := fmt.Sprintf("p9-sync-%d", n)
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("namespace: %w", err)
			}
			syncing := p9Repo{name: "sync", url: syncRepo.CloneURL(), branch: "main"}
			var contexts []string
			for i := range p.P9.SyncApps {
				name := fmt.Sprintf("s%03d", i)
				syncing.apps = append(syncing.apps, appConf{Name: name, Path: "apps/" + name, Namespace: ns})
				contexts = append(contexts, "ferry/"+name)
			}
			// The routed-only apps make up the rest of n, layout as above.
			rest := p9Apps(max(n-p.P9.SyncApps, 0))
			repos := []p9Repo{syncing}
			for name, apps := range rest.repos {
				if len(apps) > 0 {
					repos = append(repos, p9Repo{name: name, url: git.URL() + "/acme/" + name + ".git", branch: p9GlobBranch, apps: apps})
				}
			}
			t0 := time.Now()
			f, err := startFerry(ctx, p.FerryBin, filepath.Join(p.Work, fmt.Sprintf("ferry-p9-sync-%d", n)), p9Config(h.forge.URL, repos), cl.Kubeconfig)
			if err != nil {
				errs = append(errs, fmt.Errorf("P9 sync at %d apps: %w", n, err))
				continue
			}
			r.syncStarted = time.Since(t0)
			wctx, cancel := context.WithTimeout(ctx, p.P9.Timeout)
			_, err = h.forge.waitFinal(wctx, t0, syncHead, contexts)
			cancel()
			r.sync = time.Since(t0)
			f.stop()
			if err != nil {
				errs = append(errs, fmt.Errorf("P9 sync at %d apps (log %s): %w", n, f.Log, err))
				continue
			}
			logf("P9 at %d apps: %d start-up syncs in %s (ready after %s)", n, p.P9.SyncApps, fmtDur(r.sync), fmtDur(r.syncStarted))
			all = append(all, r)
		}
		p9Rows(p, res, all)
		return errors.Join(errs...)
	})
}

// p9Routing runs the routing-only ferry with repos and measures r's RSS and hook answers.
func p9Routing(ctx context.Context, p *params, h *harness, repos []p9Repo, layout p9Layout, monoHead string, r *p9Result, logf func(string, ...any)) error {
	dir := filepath.Join(p.Work, fmt.Sprintf("ferry-p9-route-%d", r.apps))
	kubeconfig, err := unreachableKubeconfig(dir)
	if err != nil {
		return err
	}
	t0 := time.Now()
	f, err := startFerryUntil(ctx, p.FerryBin, dir, p9Config(h.forge.URL, repos), kubeconfig, "/healthz")
	if err != nil {
		return err
	}
	defer f.stop()
	r.started = time.Since(t0)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(p.P9.Idle):
	}
	var samples []float64
	for range 3 {
		samples = append(samples, float64(procStatusBytes(f.pid(), "VmRSS")))
		time.Sleep(300 * time.Millisecond)
	}
	r.rss, r.hwm, r.mem = uint64(median(samples)), procStatusBytes(f.pid(), "VmHWM"), f.memMetrics(ctx)
	logf("P9 at %d apps: serving after %s, idle VmRSS %s (VmHWM %s); %s", r.apps, fmtDur(r.started), fmtMB(r.rss), fmtMB(r.hwm), r.mem)

	client := &http.Client{Timeout: 30 * time.Second}
	var many []string
	for _, a := range layout.mono {
		many = append(many, a.Path+"/config.yaml")
	}
	r.manyApps = len(many)
	send := func(kind string, changed []string, count int) ([]time.Duration, error) {
		var lat []time.Duration
		for i := range count {
			if kind == "idle" && !waitQuiet(ctx, f.pid()) {
				r.idleMissed++
			}
			body, hdr, err := pushHook(h.payload, fmt.Sprintf("p9-%d-%s-%d", r.apps, kind, i), monoHead, monoHead, changed)
			if err != nil {
				return nil, err
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+"/hooks/mono", bytes.NewReader(body))
			req.Header = hdr
			t := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return nil, fmt.Errorf("hook: %w", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			d := time.Since(t)
			if resp.StatusCode != http.StatusAccepted || bytes.Count(b, []byte(`"app":`)) != len(changed) {
				return nil, fmt.Errorf("hook touching %d apps: status %d, %d jobs", len(changed), resp.StatusCode, bytes.Count(b, []byte(`"app":`)))
			}
			lat = append(lat, d)
		}
		return lat, nil
	}
	if r.one, err = send("one", many[:1], p.P9.OnePushes); err != nil {
		return err
	}
	// The idle-server pushes first: the first of them finds no job of an earlier push running.
	if r.idle, err = send("idle", many, p.P9.IdlePushes); err != nil {
		return err
	}
	if r.many, err = send("many", many, p.P9.ManyPushes); err != nil {
		return err
	}
	// ferry's own time per delivery, from its log: the client's cost (encoding, the loopback,
	// reading the 202) is the rest of the answer time.
	took, err := hookTook(f.Log, fmt.Sprintf("p9-%d-", r.apps))
	if err != nil {
		return fmt.Errorf("ferry log: %w", err)
	}
	for kind, n := range map[string]int{"many": len(r.many), "idle": len(r.idle)} {
		for i := range n {
			if d, ok := took[fmt.Sprintf("p9-%d-%s-%d", r.apps, kind, i)]; ok && kind == "many" {
				r.manyTook = append(r.manyTook, d)
			} else if ok {
				r.idleTook = append(r.idleTook, d)
			}
		}
	}
	logf("P9 at %d apps: push touching 1 app p50 %s p99 %s; touching %d apps back to back p50 %s p99 %s (ferry's own p50 %s p99 %s), on an idle server p50 %s p99 %s (ferry's own p50 %s p99 %s; %d of %d sent before ferry was quiet)", r.apps,
		fmtDur(medianDur(r.one)), fmtDur(percentile(r.one, 99)), r.manyApps, fmtDur(medianDur(r.many)), fmtDur(percentile(r.many, 99)),
		fmtDur(medianDur(r.manyTook)), fmtDur(percentile(r.manyTook, 99)), fmtDur(medianDur(r.idle)), fmtDur(percentile(r.idle, 99)),
		fmtDur(medianDur(r.idleTook)), fmtDur(percentile(r.idleTook, 99)), r.idleMissed, len(r.idle))
	return nil
}

// p9Rows adds P9's rows: each measure at each app count, with its ratio to the first count's.
func p9Rows(p *params, res *results, all []p9Result) {
	if len(all) == 0 {
		return
	}
	base := all[0]
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, r := range all {
		at := fmt.Sprintf("%d apps / %d repos", r.apps, p9Repos)
		baseline := fmt.Sprintf("at %d apps", base.apps)
		one, bOne := percentile(r.one, 99), percentile(base.one, 99)
		res.add(row{ID: "P9", Measure: fmt.Sprintf("webhook answer p99 (p50), push touching 1 app; %s", at),
			Ferry: fmtDur(one) + " (" + fmtDur(medianDur(r.one)) + ")", Baseline: fmtDur(bOne) + " " + baseline, Ratio: ratio(float64(one), float64(bOne)),
			Target: "< 50 ms", Met: verdict(one < p9MaxHookP99)})
		many, bMany := percentile(r.many, 99), percentile(base.many, 99)
		res.add(row{ID: "P9", Measure: fmt.Sprintf("webhook answer p99 (p50), push touching %d apps (all of mono), jobs acked, %d pushes back to back (earlier pushes' syncs running); %s", r.manyApps, len(r.many), at),
			Ferry: fmtDur(many) + " (" + fmtDur(medianDur(r.many)) + ")", Baseline: fmtDur(bMany) + " " + baseline, Ratio: ratio(float64(many), float64(bMany)),
			Target: "< 50 ms", Met: verdict(many < p9MaxHookP99)})
		res.add(row{ID: "P9", Measure: fmt.Sprintf("  same, ferry's own time (handler, from its log), %d pushes back to back; %s", len(r.manyTook), at),
			Ferry: fmtDur(percentile(r.manyTook, 99)) + " (" + fmtDur(medianDur(r.manyTook)) + ")", Baseline: fmtDur(percentile(base.manyTook, 99)) + " " + baseline,
			Ratio: ratio(float64(percentile(r.manyTook, 99)), float64(percentile(base.manyTook, 99))), Target: "< 50 ms", Met: verdict(percentile(r.manyTook, 99) < p9MaxHookP99)})
		idle, bIdle := percentile(r.idle, 99), percentile(base.idle, 99)
		res.add(row{ID: "P9", Measure: fmt.Sprintf("webhook answer p99 (p50), push touching %d apps on an idle server (%d pushes, %d sent before ferry was quiet); %s", r.manyApps, len(r.idle), r.idleMissed, at),
			Ferry: fmtDur(idle) + " (" + fmtDur(medianDur(r.idle)) + ")", Baseline: fmtDur(bIdle) + " " + baseline, Ratio: ratio(float64(idle), float64(bIdle)),
			Target: "< 50 ms", Met: verdict(idle < p9MaxHookP99)})
		res.add(row{ID: "P9", Measure: fmt.Sprintf("  same, ferry's own time (handler, from its log); %s", at),
			Ferry: fmtDur(percentile(r.idleTook, 99)) + " (" + fmtDur(medianDur(r.idleTook)) + ")", Baseline: fmtDur(percentile(base.idleTook, 99)) + " " + baseline,
			Ratio: ratio(float64(percentile(r.idleTook, 99)), float64(percentile(base.idleTook, 99))), Target: "< 50 ms", Met: verdict(percentile(r.idleTook, 99) < p9MaxHookP99)})
		res.add(row{ID: "P9", Measure: fmt.Sprintf("RSS idle, apps routed only, %s after start; %s", p.P9.Idle, at),
			Ferry: fmtMB(r.rss) + " (VmHWM " + fmtMB(r.hwm) + ")", Baseline: fmtMB(base.rss) + " " + baseline, Ratio: ratio(float64(r.rss), float64(base.rss)),
			Target: "< 200 MB", Met: verdict(r.rss < p9MaxIdleRSS)})
		res.add(row{ID: "P9", Measure: fmt.Sprintf("start → %d small apps synced (success statuses) on the local control plane; %s", p.P9.SyncApps, at),
			Ferry: fmtDur(r.sync), Baseline: fmtDur(base.sync) + " " + baseline, Ratio: ratio(float64(r.sync), float64(base.sync))})
		res.note("P9 at %d apps: routing ferry served /healthz %s after start; its Go runtime: %s", r.apps, fmtDur(r.started), r.mem)
	}
}
