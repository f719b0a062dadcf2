package main

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
)

// TestConsumeOptionsWorkers: the worker count is the queue's default unless the config or
// --workers sets one, the flag winning; the default is written only in the queue package.
func TestConsumeOptionsWorkers(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	def := queue.DefaultConsumeOptions().Workers
	for _, tt := range []struct {
		name      string
		cfg, flag int
		want      int
	}{
		{"neither", 0, 0, def},
		{"config", 2, 0, 2},
		{"flag beats config", 2, 7, 7},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := consumeOptions(&Config{Workers: tt.cfg}, serveOptions{Workers: tt.flag}, log)
			if got.Workers != tt.want {
				t.Errorf("workers = %d, want %d", got.Workers, tt.want)
			}
			if got.Grace != queue.DefaultConsumeOptions().Grace {
				t.Errorf("grace = %s, want the queue's default", got.Grace)
			}
		})
	}
}

// announced records what the enqueuer tells the syncer.
type announced struct {
	mu   sync.Mutex
	apps [][]string
}

func (a *announced) Stored(jobs []queue.Job) {
	var apps []string
	for _, j := range jobs {
		apps = append(apps, j.App)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.apps = append(a.apps, apps)
}

// TestEnqueuerAnnouncesOnlyStoredJobs: hooks and resyncs share one enqueuer in front of the
// real queue, and it announces (for the early pending status) exactly the jobs the queue
// stored: none of a redelivery, only the new ones of a partly new delivery, none on failure.
func TestEnqueuerAnnouncesOnlyStoredJobs(t *testing.T) {
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := emb.Connect("test")
	if err != nil {
		emb.Shutdown()
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); emb.Shutdown() })
	q, err := queue.New(t.Context(), nc, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	job := func(app, delivery string) queue.Job {
		return queue.Job{ID: queue.NewID(), Kind: queue.KindDeploy, Trigger: queue.TriggerPush, Repo: "platform", App: app,
			SHA: "aaa", Ref: "refs/heads/main", DeliveryID: delivery, EnqueuedAt: now}
	}
	got := &announced{}
	enq := &enqueuer{q: q, notify: got}
	for _, jobs := range [][]queue.Job{
		{job("api", "d1"), job("db", "d1")},
		{job("api", "d1"), job("db", "d1")},  // redelivered: nothing new
		{job("api", "d1"), job("web", "d1")}, // one new app
	} {
		if _, err := enq.Enqueue(t.Context(), jobs); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	if _, err := enq.Enqueue(t.Context(), []queue.Job{job("cron", "d2")}); err == nil {
		t.Error("enqueue on a closed connection succeeded")
	}
	if diff := cmp.Diff([][]string{{"api", "db"}, {"web"}}, got.apps); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
}
