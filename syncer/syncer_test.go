package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/ferrygitops/ferry/syncer/status"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// Hand-written fakes with function fields; nil fields answer as an idle, healthy world.

type fakeFetcher struct {
	fetch    func(sha string) error
	ancestor func(a, b string) bool
	changed  func(from, to string) []string
	// head is the branch head the remote reports; headErr, when set, its failure.
	head      string
	headErr   error
	manifests string
	// repo, when set, is the whole tree Files serves (paths from the repository root).
	repo       map[string]string
	fetchCalls int
}

func (f *fakeFetcher) Fetch(_ context.Context, _ source.Repo, sha string, _ ...string) error {
	f.fetchCalls++
	if f.fetch != nil {
		return f.fetch(sha)
	}
	return nil
}

func (f *fakeFetcher) Files(_ context.Context, _ source.Repo, _, dir string) (fs.FS, error) {
	if f.repo != nil {
		tree := fstest.MapFS{}
		for p, data := range f.repo {
			tree[p] = &fstest.MapFile{Data: []byte(data)}
		}
		return tree, nil
	}
	m := f.manifests
	if m == "" {
		m = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
	}
	return fstest.MapFS{dir + "/cm.yaml": {Data: []byte(m)}}, nil
}

func (f *fakeFetcher) IsAncestor(_ context.Context, _ source.Repo, a, b string) (bool, error) {
	if f.ancestor != nil {
		return f.ancestor(a, b), nil
	}
	// By default the history is a line, commits named in the order they were made.
	return a < b, nil
}

func (f *fakeFetcher) Changed(_ context.Context, _ source.Repo, from, to string) ([]string, error) {
	if f.changed != nil {
		return f.changed(from, to), nil
	}
	return nil, nil
}

// Head answers that every ref points at head ("head" when unset; ancestor decides what it
// contains), or headErr.
func (f *fakeFetcher) Head(context.Context, source.Repo, string) (string, error) {
	if f.headErr != nil {
		return "", f.headErr
	}
	if f.head == "" {
		return "head", nil
	}
	return f.head, nil
}

type fakeApplier struct {
	sync func(app apply.App, rev string, objs []render.Object) (*apply.Result, error)
	runs []string
}

func (a *fakeApplier) Sync(_ context.Context, app apply.App, rev string, objs []render.Object) (*apply.Result, error) {
	a.runs = append(a.runs, app.Name+"@"+rev)
	if a.sync != nil {
		return a.sync(app, rev, objs)
	}
	return &apply.Result{Created: len(objs)}, nil
}

func (a *fakeApplier) Plan(context.Context, apply.App, []render.Object) (*apply.Plan, error) {
	return &apply.Plan{Changed: 1}, nil
}

type memStore struct {
	mu     sync.Mutex
	recs   map[string]queue.Record
	states map[string]queue.AppState
	// inputs is every PutInputs call, in order.
	inputs []queue.Inputs
}

func newStore() *memStore {
	return &memStore{recs: map[string]queue.Record{}, states: map[string]queue.AppState{}}
}

func (m *memStore) PutInputs(_ context.Context, in queue.Inputs) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inputs = append(m.inputs, in)
	return nil
}

func (m *memStore) Put(_ context.Context, r queue.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[r.ID] = r
	return nil
}

func (m *memStore) Create(_ context.Context, r queue.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.recs[r.ID]; ok {
		return queue.ErrExists
	}
	m.recs[r.ID] = r
	return nil
}

func (m *memStore) Get(_ context.Context, id string) (queue.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[id]
	if !ok {
		return r, queue.ErrNotFound
	}
	return r, nil
}

func (m *memStore) AppState(_ context.Context, app string) (queue.AppState, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[app]
	return st, ok, nil
}

func (m *memStore) PutAppState(_ context.Context, st queue.AppState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[st.App] = st
	return nil
}

type fakeBacklog struct {
	backlog map[string]uint64
	newest  map[string]queue.Job
	// err, when set, is what the backlog answers (NATS unreachable).
	err error
}

func (b *fakeBacklog) Backlog(_ context.Context, _ queue.Kind, app string) (uint64, error) {
	return b.backlog[app], b.err
}

func (b *fakeBacklog) Newest(_ context.Context, _ queue.Kind, app string) (queue.Job, bool, error) {
	j, ok := b.newest[app]
	return j, ok, nil
}

type recorder struct {
	mu  sync.Mutex
	got []status.Status
}

func (r *recorder) Report(_ context.Context, s status.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, s)
	return nil
}

func (r *recorder) states(sha string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.got {
		if s.SHA == sha {
			out = append(out, string(s.State)+" "+s.Description)
		}
	}
	return out
}

type world struct {
	s       *Syncer
	fetch   *fakeFetcher
	applier *fakeApplier
	store   *memStore
	backlog *fakeBacklog
	rep     *recorder
}

func newWorld(t *testing.T, apps ...App) *world {
	t.Helper()
	w := &world{fetch: &fakeFetcher{}, applier: &fakeApplier{}, store: newStore(), backlog: &fakeBacklog{backlog: map[string]uint64{}, newest: map[string]queue.Job{}}, rep: &recorder{}}
	if len(apps) == 0 {
		apps = []App{{Name: "api", Repo: "platform", Path: "apps/api", Namespace: "api"}}
	}
	opts := DefaultOptions()
	opts.ExternalURL = "https://ferry.example.com"
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	w.s = New([]Repo{{Name: "platform", Branch: "main", Reporter: w.rep}}, apps,
		Parts{Fetch: w.fetch, Apply: w.applier, Store: w.store, Backlog: w.backlog, Metrics: NewMetrics(prometheus.NewRegistry())}, opts)
	return w
}

func job(app, sha string, enqueued time.Time) queue.Job {
	return queue.Job{ID: "id-" + app + "-" + sha, Kind: queue.KindDeploy, Trigger: queue.TriggerPush, Repo: "platform", App: app, SHA: sha, Ref: "refs/heads/main", EnqueuedAt: enqueued}
}

func TestDeployReportsPendingThenSuccess(t *testing.T) {
	w := newWorld(t)
	j := job("api", "aaa", time.Now())
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	got := w.rep.states("aaa")
	if len(got) != 2 || got[0] != "pending syncing aaa" || !strings.HasPrefix(got[1], "success applied 1 objects in ") {
		t.Fatalf("statuses %q", got)
	}
	if w.rep.got[1].TargetURL != "https://ferry.example.com/syncs/id-api-aaa" || w.rep.got[1].Context != "ferry/api" {
		t.Errorf("status %+v", w.rep.got[1])
	}
	st, _, _ := w.store.AppState(t.Context(), "api")
	if st.AppliedSHA != "aaa" || st.State != queue.StateSucceeded {
		t.Errorf("app state %+v", st)
	}
}

func TestOutOfOrderDeliveryIsSkipped(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	// The newer commit was applied first; the older one's hook arrives late.
	w.store.states["api"] = queue.AppState{App: "api", SHA: "new", State: queue.StateSucceeded, AppliedSHA: "new"}
	w.fetch.ancestor = func(a, b string) bool { return a == "old" && b == "new" }
	if err := w.s.Handle(t.Context(), job("api", "old", now), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"skipped included in new"}, w.rep.states("old")); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if len(w.applier.runs) != 0 {
		t.Errorf("the older commit was applied over the newer: %v", w.applier.runs)
	}
}

func TestNewerQueuedCommitWins(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	w.backlog.newest["api"] = job("api", "newer", now.Add(time.Second))
	// "unrelated" is not an ancestor of "newer": a force-push replaced it.
	w.fetch.ancestor = func(a, b string) bool { return false }
	if err := w.s.Handle(t.Context(), job("api", "unrelated", now), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"canceled superseded by newer"}, w.rep.states("unrelated")); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	rec, _ := w.store.Get(t.Context(), "id-api-unrelated")
	if rec.State != queue.StateSkipped || !rec.State.Terminal() {
		t.Errorf("record %+v", rec)
	}
	// A manual resync is never skipped.
	m := job("api", "unrelated", now)
	m.Trigger, m.ID = queue.TriggerManual, "manual"
	w.fetch.ancestor = func(a, b string) bool { return b == "head" }
	if err := w.s.Handle(t.Context(), m, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if len(w.applier.runs) != 1 {
		t.Errorf("manual resync not applied: %v", w.applier.runs)
	}
}

func TestDependencyGate(t *testing.T) {
	apps := []App{{Name: "db", Repo: "platform", Path: "apps/db"}, {Name: "api", Repo: "platform", Path: "apps/api", DependsOn: []string{"db"}}}
	w := newWorld(t, apps...)
	j := job("api", "aaa", time.Now())

	// db still has work queued: api waits, with a pending status saying why.
	w.backlog.backlog["db"] = 1
	err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1})
	var retry *queue.RetryError
	if !errors.As(err, &retry) {
		t.Fatalf("api ran before db finished: %v", err)
	}
	if got := w.rep.states("aaa"); len(got) != 1 || got[0] != "pending waiting for dependency db" {
		t.Errorf("statuses %q", got)
	}
	// db failed: api fails at once, saying so.
	w.backlog.backlog["db"] = 0
	w.store.states["db"] = queue.AppState{App: "db", SHA: "aaa", State: queue.StateFailed}
	err = w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 2})
	if err == nil || errors.As(err, &retry) {
		t.Fatalf("api after db failed: %v, want a final failure", err)
	}
	got := w.rep.states("aaa")
	if got[len(got)-1] != "failure dependency db failed" {
		t.Errorf("statuses %q", got)
	}
	// db succeeded: api runs.
	w.store.states["db"] = queue.AppState{App: "db", SHA: "aaa", State: queue.StateSucceeded, AppliedSHA: "aaa"}
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 3}); err != nil {
		t.Fatal(err)
	}
	if len(w.applier.runs) != 1 {
		t.Errorf("api not applied after db succeeded: %v", w.applier.runs)
	}
}

func TestRetriesAndFinalFailure(t *testing.T) {
	w := newWorld(t)
	unreachable := &apply.Error{Stage: apply.StageApply, Object: "ConfigMap api/x", Message: "connection refused", Err: fmt.Errorf("dial tcp 127.0.0.1:6443: %w", syscall.ECONNREFUSED)}
	w.applier.sync = func(apply.App, string, []render.Object) (*apply.Result, error) { return nil, unreachable }
	j := job("api", "aaa", time.Now())
	err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1})
	var retry *queue.RetryError
	if !errors.As(err, &retry) {
		t.Fatalf("a transient apiserver error was not retried: %v", err)
	}
	// The last delivery must leave a terminal status, not a pending one.
	err = w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 10, Last: true})
	if err == nil || errors.As(err, &retry) {
		t.Fatalf("last delivery: %v, want a final failure", err)
	}
	got := w.rep.states("aaa")
	if last := got[len(got)-1]; last != "failure ConfigMap api/x: connection refused" {
		t.Errorf("final status %q", last)
	}
	// A render error is not retried.
	w.fetch.manifests = "not: a kubernetes object\n"
	err = w.s.Handle(t.Context(), job("api", "bbb", time.Now()), queue.Delivery{Attempt: 1})
	if err == nil || errors.As(err, &retry) {
		t.Fatalf("bad manifest: %v, want a final failure", err)
	}
	if got := w.rep.states("bbb"); !strings.HasPrefix(got[len(got)-1], "failure render: ") || !strings.Contains(got[len(got)-1], "apps/api/cm.yaml") {
		t.Errorf("bad manifest status %q", got)
	}
}

func TestCommitNotServedYetIsWaitedFor(t *testing.T) {
	w := newWorld(t)
	w.fetch.fetch = func(string) error { return fmt.Errorf("fetch: %w", source.ErrCommitNotFound) }
	j := job("api", "late", time.Now())
	var retry *queue.RetryError
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); !errors.As(err, &retry) {
		t.Fatalf("a commit not served yet: %v, want a retry", err)
	}
	j.EnqueuedAt = time.Now().Add(-time.Minute)
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 5}); err == nil || errors.As(err, &retry) {
		t.Fatalf("a commit missing for a minute: %v, want a final failure", err)
	}
	got := w.rep.states("late")
	if !strings.HasPrefix(got[len(got)-1], "failure fetch: ") {
		t.Errorf("statuses %q", got)
	}
}

func TestLateQueuedNoticeDoesNotLeavePending(t *testing.T) {
	w := newWorld(t)
	j := job("api", "aaa", time.Now())
	// The worker finishes before the hook's notice is handled.
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	w.s.notifyQueued(t.Context(), j)
	got := w.rep.states("aaa")
	if !strings.HasPrefix(got[len(got)-1], "success ") {
		t.Fatalf("last status %q, want success", got)
	}
	// A notice handled first posts pending, and the worker's success follows it.
	j2 := job("api", "bbb", time.Now())
	w.s.notifyQueued(t.Context(), j2)
	if err := w.s.Handle(t.Context(), j2, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	got = w.rep.states("bbb")
	if got[0] != "pending queued" || !strings.HasPrefix(got[len(got)-1], "success ") {
		t.Fatalf("statuses %q", got)
	}
}

func TestTruncatedPushDiffsBeforeSyncing(t *testing.T) {
	apps := []App{{Name: "db", Repo: "platform", Path: "apps/db"}, {Name: "api", Repo: "platform", Path: "apps/api", DependsOn: []string{"db"}}, {Name: "docs", Repo: "platform", Path: "docs"}}
	w := newWorld(t, apps...)
	w.store.states["db"] = queue.AppState{App: "db", State: queue.StateSucceeded}
	w.fetch.changed = func(from, to string) []string { return []string{"apps/db/statefulset.yaml"} }
	for _, app := range []string{"db", "api", "docs"} {
		j := job(app, "new", time.Now())
		j.Before, j.Unfiltered = "old", true
		if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// db changed; api depends on it; docs was left alone.
	if diff := cmp.Diff([]string{"db@new", "api@new"}, w.applier.runs); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	var docs []string
	for _, s := range w.rep.got {
		if s.Context == "ferry/docs" {
			docs = append(docs, string(s.State)+" "+s.Description)
		}
	}
	if diff := cmp.Diff([]string{"success no changes under docs"}, docs); diff != "" {
		t.Errorf("docs statuses (-want +got):\n%s", diff)
	}
}

// sharedBaseRepo is a tree where api is an overlay of a base outside its path and docs is a
// plain directory.
var sharedBaseRepo = map[string]string{
	"base/kustomization.yaml":     "resources:\n- cm.yaml\n",
	"base/cm.yaml":                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n",
	"apps/api/kustomization.yaml": "resources:\n- ../../base\n",
	"docs/cm.yaml":                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: docs\n",
	"unrelated/notes.md":          "not rendered\n",
}

// TestChangesToSharedBases: a truncated push, and a pull request, whose only change is in a
// base an app's kustomization builds on still touch that app; a change nothing renders from
// touches nothing.
func TestChangesToSharedBases(t *testing.T) {
	apps := []App{{Name: "api", Repo: "platform", Path: "apps/api"}, {Name: "docs", Repo: "platform", Path: "docs"}}
	for _, tt := range []struct {
		changed  string
		want     []string
		noChange []string
	}{
		{"base/cm.yaml", []string{"api"}, []string{"docs"}},
		{"unrelated/notes.md", nil, []string{"api", "docs"}},
	} {
		for _, kind := range []queue.Kind{queue.KindDeploy, queue.KindPreview} {
			t.Run(string(kind)+" "+tt.changed, func(t *testing.T) {
				w := newWorld(t, apps...)
				w.fetch.repo = sharedBaseRepo
				w.fetch.changed = func(from, to string) []string { return []string{tt.changed} }
				for _, app := range []string{"api", "docs"} {
					j := job(app, "new", time.Now())
					if kind == queue.KindDeploy {
						j.Before, j.Unfiltered = "old", true
					} else {
						j.Kind, j.Trigger, j.Ref, j.PR, j.BaseSHA = queue.KindPreview, queue.TriggerPR, "refs/pull/7/head", 7, "old"
					}
					if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
						t.Fatal(err)
					}
				}
				var worked, noChange []string
				for _, st := range w.rep.got {
					app := strings.TrimSuffix(strings.TrimPrefix(st.Context, "ferry/"), "/preview")
					switch {
					case st.State != status.Success:
					case strings.HasPrefix(st.Description, "no changes under"):
						noChange = append(noChange, app)
					default:
						worked = append(worked, app)
					}
				}
				if diff := cmp.Diff(tt.want, worked); diff != "" {
					t.Errorf("apps synced or planned (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.noChange, noChange); diff != "" {
					t.Errorf("apps left alone (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestDeployRecordsInputs: a deploy records what the app's render read outside its path, once
// per change, and never from a preview.
func TestDeployRecordsInputs(t *testing.T) {
	w := newWorld(t, App{Name: "api", Repo: "platform", Path: "apps/api"}, App{Name: "docs", Repo: "platform", Path: "docs"})
	w.fetch.repo = sharedBaseRepo
	for _, j := range []queue.Job{job("api", "c1", time.Now()), job("docs", "c1", time.Now()), job("api", "c2", time.Now())} {
		if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	pr := job("api", "pr1", time.Now())
	pr.Kind, pr.Trigger, pr.Ref, pr.PR = queue.KindPreview, queue.TriggerPR, "refs/pull/7/head", 7
	w.fetch.repo = map[string]string{"apps/api/kustomization.yaml": "resources:\n- ../../other\n", "other/kustomization.yaml": "resources: []\n"}
	if err := w.s.Handle(t.Context(), pr, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	want := []queue.Inputs{{App: "api", SHA: "c1", Paths: []string{"base", "base/cm.yaml"}}, {App: "docs", SHA: "c1", Paths: []string{}}}
	if diff := cmp.Diff(want, w.store.inputs); diff != "" {
		t.Errorf("recorded inputs (-want +got):\n%s", diff)
	}
	// The base moves: the next deploy records it.
	w.fetch.repo = map[string]string{"apps/api/kustomization.yaml": "resources:\n- ../../other\n", "other/kustomization.yaml": "resources: []\n"}
	if err := w.s.Handle(t.Context(), job("api", "c3", time.Now()), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if got := w.store.inputs[len(w.store.inputs)-1]; !cmp.Equal(got, queue.Inputs{App: "api", SHA: "c3", Paths: []string{"other"}}) {
		t.Errorf("after the base moved, recorded %+v", got)
	}
}

func TestTransientFailuresAreBoundedAcrossDeliveries(t *testing.T) {
	w := newWorld(t)
	w.applier.sync = func(apply.App, string, []render.Object) (*apply.Result, error) {
		return nil, &apply.Error{Stage: apply.StageApply, Object: "ConfigMap api/x", Message: "apiserver unreachable", Err: fmt.Errorf("dial: %w", syscall.ECONNREFUSED)}
	}
	j := job("api", "aaa", time.Now())
	var retry *queue.RetryError
	attempts := 0
	for attempt := 1; attempt <= 50; attempt++ {
		attempts = attempt
		if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: attempt}); !errors.As(err, &retry) {
			break
		}
	}
	if want := DefaultOptions().TransientAttempts; attempts != want {
		t.Fatalf("gave up after %d deliveries, want %d", attempts, want)
	}
	got := w.rep.states("aaa")
	if last := got[len(got)-1]; !strings.HasPrefix(last, "failure ") {
		t.Fatalf("last status %q, want a failure", last)
	}
}

func TestRestartDoesNotPostAgain(t *testing.T) {
	w := newWorld(t)
	// Start-up recovery finds the cluster as Git says: no status at all.
	w.applier.sync = func(apply.App, string, []render.Object) (*apply.Result, error) {
		return &apply.Result{Unchanged: 1}, nil
	}
	start := job("api", "aaa", time.Now())
	start.Trigger, start.ID = queue.TriggerStartup, "startup"
	w.s.notifyQueued(t.Context(), start)
	if err := w.s.Handle(t.Context(), start, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if got := w.rep.states("aaa"); len(got) != 0 {
		t.Fatalf("a no-op start-up sync posted %q", got)
	}
	// On a new cluster it changes things, and says so.
	w.applier.sync = func(apply.App, string, []render.Object) (*apply.Result, error) { return &apply.Result{Created: 1}, nil }
	start.ID = "startup-2"
	if err := w.s.Handle(t.Context(), start, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if got := w.rep.states("aaa"); len(got) != 1 || !strings.HasPrefix(got[0], "success applied") {
		t.Fatalf("a start-up sync that created objects posted %q", got)
	}
	// The push job of the same commit, redelivered after a crash, finds it applied: no second final status.
	push := job("api", "aaa", time.Now())
	if err := w.s.Handle(t.Context(), push, queue.Delivery{Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	if got := w.rep.states("aaa"); len(got) != 1 {
		t.Fatalf("statuses after the redelivered push job: %q", got)
	}
	if len(w.applier.runs) != 2 {
		t.Errorf("the redelivered push job applied again: %v", w.applier.runs)
	}
}
