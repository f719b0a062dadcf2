package main

import (
	"net"
	"strconv"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"net/http"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/cluster"
)

// p7MaxTakeover is P7's target: a job held by a killed worker succeeds on another replica
// within this time of the kill.
const p7MaxTakeover = 15 * time.Second

// p7App is the app P7 syncs: a ConfigMap and, from the second commit on, a Pod named gate that
// nothing runs (no scheduler, no kubelet), so a sync waits for its health until the bench marks
// it ready: a sync that is mid-way for as long as the bench wants.
func p7App(value string, gate bool) map[string]string {
	files := map[string]string{
		"apps/slow/config.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: slow-settings\ndata:\n  value: %q\n", value),
	}
	if gate {
		files["apps/slow/pod.yaml"] = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gate\nspec:\n  automountServiceAccountToken: false\n  containers:\n    - name: app\n      image: registry.bench.invalid/gate:1\n"
	}
	return files
}

// takeover is one P7 repetition: from the SIGKILL to the survivor's start of the job (its
// second attempt) and to the success status.
type takeover struct {
	started, success time.Duration
}

// failover runs P7: two ferry replicas share one NATS server (an embedded one listening on
// 127.0.0.1, started by the bench); a push's sync is applied and waiting for its Pod's health
// when the replica running it is killed with SIGKILL, and the Pod becomes ready at that moment.
// The time runs from the kill to the success status the other replica posts. With
// -p7-baseline-bin the same runs with that ferry binary (an older build) for comparison.
func (e *e2e) failover(ctx context.Context, res *results) error {
	cl, err := startCluster(ctx, e.p, "cluster-p7")
	if err != nil {
		return err
	}
	defer cl.Stop()
	bins := []string{e.p.FerryBin}
	if e.p.P7BaselineBin != "" {
		bins = append(bins, e.p.P7BaselineBin)
	}
	took := make([][]takeover, len(bins))
	for rep := range e.p.Reps {
		for i, bin := range bins {
			t, err := e.failoverOnce(ctx, cl, bin, fmt.Sprintf("p7-%d-%d", i, rep))
			if err != nil {
				return fmt.Errorf("%s (rep %d): %w", bin, rep+1, err)
			}
			e.logf("P7 rep %d, %s: kill → attempt 2 started %s, → success %s", rep+1, bin, fmtDur(t.started), fmtDur(t.success))
			took[i] = append(took[i], t)
		}
	}
	med := func(ts []takeover) (started, success time.Duration) {
		var a, b []time.Duration
		for _, t := range ts {
			a, b = append(a, t.started), append(b, t.success)
		}
		return medianDur(a), medianDur(b)
	}
	started, success := med(took[0])
	r := row{ID: "P7", Measure: "SIGKILL of the replica running a sync (applied, waiting for health) → success status posted by the other replica",
		Ferry: fmtDur(success), Target: "< 15 s", Met: verdict(success < p7MaxTakeover)}
	if len(bins) > 1 {
		_, base := med(took[1])
		r.Baseline = fmtDur(base) + " (" + filepath.Base(bins[1]) + ")"
		r.Ratio = fmt.Sprintf("%.2f", float64(success)/float64(base))
	}
	res.add(r)
	if len(bins) == 1 {
		res.note("P7 baseline: none measured; -p7-baseline-bin runs a ferry built before the short ack wait (30 s, heartbeats every 10 s) side by side.")
	}
	res.note("P7: of the %s from kill to success, %s passed before the other replica started the job's second attempt (JetStream's ack wait %s after the dead worker's last heartbeat; heartbeats every %s), the rest is that replica's sync.",
		fmtDur(success), fmtDur(started), queue.DefaultConsumeOptions().AckWait, queue.DefaultConsumeOptions().AckWait/4)
	return nil
}

// failoverOnce runs one P7 repetition with the ferry binary bin in a namespace and repository
// of its own.
func (e *e2e) failoverOnce(ctx context.Context, cl *cluster.Cluster, bin, name string) (takeover, error) {
	var t takeover
	cs, err := kubernetes.NewForConfig(cl.Config)
	if err != nil {
		return t, fmt.Errorf("client: %w", err)
	}
	ns := name
	if err := createNamespace(ctx, cs, ns); err != nil {
		return t, err
	}
	dir := filepath.Join(e.p.Work, name)
	addr, err := freeLoopback()
	if err != nil {
		return t, err
	}
	nats, err := startSharedNATS(filepath.Join(dir, "nats"), addr)
	if err != nil {
		return t, err
	}
	defer nats.Shutdown()

	repo := e.git.CreateRepo(e.tb, "acme/"+name)
	first := repo.Commit(e.tb, "main", "slow: first", p7App("one", false))
	cfg := ferryConfig(repo.CloneURL(), e.forge.URL, []appConf{{Name: "slow", Path: "apps/slow", Namespace: ns}})
	replicas := map[string]*ferryProc{}
	for _, w := range []string{"replica-a", "replica-b"} {
		f, err := startFerry(ctx, bin, filepath.Join(dir, w), cfg, cl.Kubeconfig, "--nats-url", "nats://"+addr, "--worker-name", w)
		if err != nil {
			return t, err
		}
		defer f.stop()
		replicas[w] = f
	}
	a := replicas["replica-a"]
	wctx, cancel := context.WithTimeout(ctx, e.p.E2E.Timeout)
	defer cancel()
	if _, err := e.forge.waitFinal(wctx, time.Time{}, first, []string{"ferry/slow"}); err != nil {
		return t, fmt.Errorf("start-up sync (logs in %s): %w", dir, err)
	}

	second := repo.Commit(e.tb, "main", "slow: add the gated pod", p7App("two", true))
	body, hdr, err := pushHook(e.payload, "p7-"+name, first, second, []string{"apps/slow/pod.yaml"})
	if err != nil {
		return t, err
	}
	if err := a.sendHook(wctx, body, hdr); err != nil {
		return t, err
	}
	running, err := waitRecord(wctx, a, "slow", func(r queue.Record) bool { return r.SHA == second && r.State == queue.StateRunning })
	if err != nil {
		return t, fmt.Errorf("sync of the push never ran: %w", err)
	}
	if err := waitPod(wctx, cs, ns, "gate"); err != nil {
		return t, err
	}
	victim, ok := replicas[running.Worker]
	if !ok {
		return t, fmt.Errorf("sync %s runs on %q, not on a replica of this run", running.ID, running.Worker)
	}
	delete(replicas, running.Worker)
	var survivor *ferryProc
	for _, f := range replicas {
		survivor = f
	}

	killed := time.Now()
	victim.kill()
	if err := markPodReady(wctx, cs, ns, "gate"); err != nil {
		return t, err
	}
	got, err := e.forge.waitFinal(wctx, killed, second, []string{"ferry/slow"})
	if err != nil {
		return t, fmt.Errorf("after the kill (logs in %s): %w", dir, err)
	}
	t.success = got["ferry/slow"].At.Sub(killed)
	rec, err := waitRecord(wctx, survivor, "slow", func(r queue.Record) bool {
		return r.ID == running.ID && r.State == queue.StateSucceeded && r.StartedAt != nil
	})
	if err != nil {
		return t, fmt.Errorf("record of the taken-over sync: %w", err)
	}
	if rec.Attempts < 2 {
		return t, fmt.Errorf("sync %s succeeded at attempt %d, want the survivor's attempt 2 or later", rec.ID, rec.Attempts)
	}
	t.started = rec.StartedAt.Sub(killed)
	return t, nil
}

// kill ends the process with SIGKILL, as a crash or an OOM kill would, and waits for its end.
func (p *ferryProc) kill() {
	_ = p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err // stop then sees a finished process
}

// waitRecord polls f's API until one of app's sync records satisfies pred.
func waitRecord(ctx context.Context, f *ferryProc, app string, pred func(queue.Record) bool) (queue.Record, error) {
	for {
		var v struct {
			History []queue.Record `json:"history"`
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL+"/api/v1/apps/"+app, nil)
		if err != nil {
			return queue.Record{}, err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&v) == nil {
				for _, r := range v.History {
					if pred(r) {
						resp.Body.Close()
						return r, nil
					}
				}
			}
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
			return queue.Record{}, fmt.Errorf("records of %s: %w", app, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createNamespace creates ns and waits for its default ServiceAccount, without which the
// apiserver's admission refuses Pods.
func createNamespace(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return poll(ctx, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// waitPod waits until the Pod exists: ferry applied it and waits for its health.
func waitPod(ctx context.Context, cs *kubernetes.Clientset, ns, name string) error {
	return poll(ctx, func() error {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
}

// markPodReady writes the status a kubelet would write for a running, ready Pod.
func markPodReady(ctx context.Context, cs *kubernetes.Clientset, ns, name string) error {
	return poll(ctx, func() error {
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = nil
		for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
		}
		_, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
}

// poll calls fn every 100 ms until it succeeds or ctx ends.
func poll(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startSharedNATS runs a JetStream server on addr (127.0.0.1:port) that several ferry processes
// share, as an external NATS would be: ferry's embedded server opens no port.
func startSharedNATS(dir, addr string) (*natsserver.Server, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, err
	}
	srv, err := natsserver.NewServer(&natsserver.Options{ServerName: "bench", Host: host, Port: port, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats on %s not ready after 30s", addr)
	}
	return srv, nil
}
