package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/queue/queuetest"
	"github.com/ferrygitops/ferry/server"
)

// natsRecords is the real record store on an embedded NATS server.
func natsRecords(t *testing.T) *queue.Records {
	t.Helper()
	return queuetest.Records(t)
}

// ferryServer serves the real API over recs; wrap, if set, stands between it and the client.
func ferryServer(t *testing.T, recs *queue.Records, watch bool, wrap func(http.Handler) http.Handler) *Client {
	t.Helper()
	cfg := server.Config{Records: recs, Apps: []server.AppInfo{{Name: "api", Repo: "platform", Path: "apps/api", Branch: "main"}, {Name: "db", Repo: "platform", Path: "apps/db", Branch: "main"}}}
	if watch {
		cfg.Watch = recs
	}
	var h http.Handler = server.New(cfg).Routes()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	c, err := New(ts.URL, Options{Token: "s3cret-token"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestReadsAgainstTheServer: apps, one app with its history and one sync are read from the
// real API over real records; an unknown app or sync is an *Error with 404 and ferry's words.
func TestReadsAgainstTheServer(t *testing.T) {
	ctx := testCtx(t)
	recs := natsRecords(t)
	old := queue.Record{ID: queue.NewID(), App: "api", SHA: strings.Repeat("a", 40), State: queue.StateFailed, EnqueuedAt: time.Now().Add(-time.Hour),
		Error: &queue.RecordError{Stage: "apply", Object: "ConfigMap/x", Message: "invalid"}}
	cur := queue.Record{ID: queue.NewID(), App: "api", SHA: strings.Repeat("b", 40), State: queue.StateSucceeded, EnqueuedAt: time.Now(),
		Objects: []queue.ObjectRecord{{Kind: "ConfigMap", Namespace: "web", Name: "x", Action: "configured"}}}
	for _, r := range []queue.Record{old, cur} {
		if err := recs.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	c := ferryServer(t, recs, true, nil)

	l, err := c.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Apps) != 2 || l.Apps[0].Name != "api" || l.Apps[0].LastSync == nil || l.Apps[0].LastSync.ID != cur.ID || l.Apps[1].LastSync != nil {
		t.Errorf("apps = %+v", l.Apps)
	}
	if !strings.Contains(string(l.Raw), `"apps"`) {
		t.Errorf("raw answer %s", l.Raw)
	}
	a, err := c.App(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	if a.Path != "apps/api" || len(a.History) != 2 || a.History[0].ID != cur.ID || a.History[1].Error == nil || a.History[1].Error.Object != "ConfigMap/x" {
		t.Errorf("app = %+v", a)
	}
	rec, raw, err := c.Sync(ctx, cur.ID)
	if err != nil || rec.State != queue.StateSucceeded || len(rec.Objects) != 1 || !strings.Contains(string(raw), cur.ID) {
		t.Errorf("sync = %+v, %v", rec, err)
	}

	_, err = c.App(ctx, "nope")
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Message != `no app named "nope"` {
		t.Errorf("unknown app: %#v", err)
	}
	if _, _, err := c.Sync(ctx, queue.NewID()); StatusOf(err) != http.StatusNotFound || Temporary(err) {
		t.Errorf("unknown sync: %v", err)
	}
}

// TestFollowStreamsASyncToItsEnd: Follow hands over the record as it is and at each change,
// and returns the final one.
func TestFollowStreamsASyncToItsEnd(t *testing.T) {
	ctx := testCtx(t)
	recs := natsRecords(t)
	rec := queue.Record{ID: queue.NewID(), App: "api", SHA: strings.Repeat("c", 40), State: queue.StateQueued}
	if err := recs.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var streams atomic.Int32
	c := ferryServer(t, recs, true, countStreams(&streams))
	var once sync.Once
	var states []queue.State
	final, err := c.Follow(ctx, rec.ID, func(r queue.Record) {
		states = append(states, r.State)
		once.Do(func() { go advance(t, ctx, recs, rec, queue.StateRunning, queue.StateSucceeded) })
	})
	if err != nil {
		t.Fatal(err)
	}
	if final.State != queue.StateSucceeded || states[0] != queue.StateQueued || states[len(states)-1] != queue.StateSucceeded {
		t.Errorf("final %s, states seen %v", final.State, states)
	}
	if streams.Load() < 1 {
		t.Errorf("no event stream was opened")
	}
}

// advance stores rec in each state in turn, a little apart, as a worker would; the test waits
// for it to be done before it ends.
func advance(t *testing.T, ctx context.Context, recs *queue.Records, rec queue.Record, states ...queue.State) {
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	defer close(done)
	for _, st := range states {
		time.Sleep(100 * time.Millisecond)
		rec.State = st
		if st.Terminal() {
			rec.Counts = map[string]int{"created": 2}
		}
		// The put is finished even if the test saw what it waited for meanwhile.
		if err := recs.Put(context.WithoutCancel(ctx), rec); err != nil {
			t.Error(err)
		}
	}
}

func countStreams(n *atomic.Int32) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/events") {
				n.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	}
}

// dropper ends the first event stream after its first event, as a proxy restarting would.
type dropper struct {
	http.ResponseWriter
	cancel context.CancelFunc
	buf    strings.Builder
}

func (d *dropper) Write(p []byte) (int, error) {
	d.buf.Write(p)
	return d.ResponseWriter.Write(p)
}

func (d *dropper) Flush() {
	d.ResponseWriter.(http.Flusher).Flush()
	if strings.Contains(d.buf.String(), "event: record") {
		d.cancel()
	}
}

// TestFollowRecoversADroppedStream: a stream that ends before its sync is followed again: the
// record is read again and a new stream opened, and the sync is followed to its end.
func TestFollowRecoversADroppedStream(t *testing.T) {
	ctx := testCtx(t)
	recs := natsRecords(t)
	rec := queue.Record{ID: queue.NewID(), App: "api", SHA: strings.Repeat("d", 40), State: queue.StateRunning}
	if err := recs.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var streams atomic.Int32
	c := ferryServer(t, recs, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/events") {
				h.ServeHTTP(w, r)
				return
			}
			if streams.Add(1) > 1 {
				// The sync ends only once it is followed again.
				go advance(t, ctx, recs, rec, queue.StateSucceeded)
				h.ServeHTTP(w, r)
				return
			}
			rctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			h.ServeHTTP(&dropper{ResponseWriter: w, cancel: cancel}, r.WithContext(rctx))
		})
	})
	final, err := c.Follow(ctx, rec.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != queue.StateSucceeded {
		t.Errorf("final state %s", final.State)
	}
	if streams.Load() < 2 {
		t.Errorf("streams opened = %d, want the dropped one and another", streams.Load())
	}
}

// TestFollowGivesUpAfterBoundedReconnects: a stream that keeps ending without news is opened
// again at most MaxReconnects times, after the delay the server's "retry:" asks for.
func TestFollowGivesUpAfterBoundedReconnects(t *testing.T) {
	ctx := testCtx(t)
	recs := natsRecords(t)
	rec := queue.Record{ID: queue.NewID(), App: "api", State: queue.StateRunning}
	if err := recs.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var streams atomic.Int32
	c := ferryServer(t, recs, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/events") {
				h.ServeHTTP(w, r)
				return
			}
			streams.Add(1)
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("retry: 10\n\n: keep-alive\n\n"))
		})
	})
	_, err := c.Follow(ctx, rec.ID, nil)
	if err == nil || !strings.Contains(err.Error(), "dropped") {
		t.Fatalf("Follow = %v, want an error saying the stream kept dropping", err)
	}
	if n := streams.Load(); n != MaxReconnects+1 {
		t.Errorf("streams opened = %d, want %d", n, MaxReconnects+1)
	}
}

// TestFollowPollsAServerWithoutLiveUpdates: a server that serves no event streams (501) is
// read again every PollInterval until the sync is over.
func TestFollowPollsAServerWithoutLiveUpdates(t *testing.T) {
	ctx := testCtx(t)
	recs := natsRecords(t)
	rec := queue.Record{ID: queue.NewID(), App: "api", State: queue.StateQueued}
	if err := recs.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	c := ferryServer(t, recs, false, nil)
	var once sync.Once
	final, err := c.Follow(ctx, rec.ID, func(queue.Record) {
		once.Do(func() { go advance(t, ctx, recs, rec, queue.StateFailed) })
	})
	if err != nil || final.State != queue.StateFailed {
		t.Fatalf("Follow = %s, %v; want failed", final.State, err)
	}
}

// TestErrorsNeverCarryTheToken: a refusal is an *Error with ferry's message and status, and
// neither it nor a transport error quotes the token.
func TestErrorsNeverCarryTheToken(t *testing.T) {
	ctx := testCtx(t)
	const token = "s3cret-token-value"
	var gotAuth string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error": "a valid bearer token is required"}`))
	}))
	defer ts.Close()
	c, err := New(ts.URL, Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.TriggerSync(ctx, "api", SyncOptions{Revision: "main"})
	if StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "a valid bearer token is required") || strings.Contains(err.Error(), token) {
		t.Errorf("refusal: %v", err)
	}
	if gotAuth != "Bearer "+token {
		t.Errorf("Authorization sent = %q", gotAuth)
	}
	ts.Close()
	_, err = c.TriggerSync(ctx, "api", SyncOptions{})
	if err == nil || strings.Contains(err.Error(), token) || !Temporary(err) {
		t.Errorf("transport error: %v", err)
	}
	if _, err := New("https://user:"+token+"@ferry.example.com", Options{}); err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("token in the address: %v", err)
	}
	noToken, _ := New(ts.URL, Options{})
	if _, err := noToken.Suspend(ctx, "api", ""); err == nil || !strings.Contains(err.Error(), "FERRY_TOKEN") {
		t.Errorf("suspend without a token: %v", err)
	}
}

// TestWatchTellsOfOneAppsSyncs: Watch with an app hands over that app's syncs as they are
// stored, in the short form, and stops when told to.
func TestWatchTellsOfOneAppsSyncs(t *testing.T) {
	ctx := testCtx(t)
	recs := natsRecords(t)
	var streams atomic.Int32
	c := ferryServer(t, recs, true, countStreams(&streams))
	api := queue.Record{ID: queue.NewID(), App: "api", State: queue.StateSucceeded, Message: "applied 2 objects", Counts: map[string]int{"created": 2}}
	go func() {
		// Store once the stream is open: the watch tells only of what is stored from then on.
		for i := 0; i < 100 && streams.Load() == 0; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		advance(t, ctx, recs, queue.Record{ID: queue.NewID(), App: "db"}, queue.StateQueued)
		advance(t, ctx, recs, api, queue.StateSucceeded)
	}()
	var got []SyncEvent
	err := c.Watch(ctx, "api", func(e SyncEvent) bool {
		got = append(got, e)
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != api.ID || got[0].App != "api" || got[0].State != queue.StateSucceeded || got[0].Counts["created"] != 2 {
		t.Errorf("events = %+v", got)
	}
	if err := c.Watch(ctx, "nope", func(SyncEvent) bool { return false }); StatusOf(err) != http.StatusNotFound {
		t.Errorf("Watch of an unknown app = %v, want 404", err)
	}
}

// TestFollowWaitsForTheRecord: a sync just accepted (202) may have no record for a moment;
// Follow waits for it rather than taking the 404 for an answer.
func TestFollowWaitsForTheRecord(t *testing.T) {
	ctx := testCtx(t)
	recs := natsRecords(t)
	c := ferryServer(t, recs, true, nil)
	rec := queue.Record{ID: queue.NewID(), App: "api", State: queue.StateQueued}
	go func() {
		time.Sleep(600 * time.Millisecond)
		advance(t, ctx, recs, rec, queue.StateSucceeded)
	}()
	final, err := c.Follow(ctx, rec.ID, nil)
	if err != nil || final.State != queue.StateSucceeded {
		t.Fatalf("Follow = %s, %v; want succeeded", final.State, err)
	}
}
