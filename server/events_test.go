package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/queue/queuetest"
)

// natsRecords is the real record store on an embedded NATS server.
func natsRecords(t *testing.T) *queue.Records {
	t.Helper()
	return queuetest.Records(t)
}

type sse struct{ name, data string }

// readEvents reads server-sent events from the stream at url until it ends or n were read.
func readEvents(t *testing.T, ctx context.Context, url string, n int, opened chan<- struct{}) ([]sse, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if opened != nil {
		close(opened)
	}
	var out []sse
	var cur sse
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" {
				out = append(out, cur)
			}
			cur = sse{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return out, resp
}

// TestSyncEventsFollowASyncToItsEnd: the stream of one sync sends its record now and at each
// change, ends with "end" once the sync is over, and carries the headers a browser and a proxy
// need.
func TestSyncEventsFollowASyncToItsEnd(t *testing.T) {
	recs := natsRecords(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	id := queue.NewID()
	rec := queue.Record{ID: id, App: "api", Kind: queue.KindDeploy, SHA: strings.Repeat("a", 40), State: queue.StateQueued}
	if err := recs.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Config{Records: recs, Watch: recs, Apps: []AppInfo{{Name: "api"}}}).Routes())
	defer ts.Close()

	opened, written := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(written)
		<-opened
		time.Sleep(200 * time.Millisecond)
		for _, st := range []queue.State{queue.StateRunning, queue.StateSucceeded} {
			rec.State = st
			if err := recs.Put(ctx, rec); err != nil {
				t.Error(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	events, resp := readEvents(t, ctx, ts.URL+"/api/v1/syncs/"+id+"/events", 10, opened)
	<-written // the last record is streamed before its Put has finished updating the history
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	if len(events) < 2 {
		t.Fatalf("events = %v, want records and an end", events)
	}
	var states []queue.State
	for _, e := range events[:len(events)-1] {
		if e.name != "record" {
			t.Fatalf("event %q before the end, want record", e.name)
		}
		var r queue.Record
		if err := json.Unmarshal([]byte(e.data), &r); err != nil || r.ID != id {
			t.Fatalf("record event %q: %v", e.data, err)
		}
		states = append(states, r.State)
	}
	if states[0] != queue.StateQueued || states[len(states)-1] != queue.StateSucceeded {
		t.Errorf("states streamed = %v, want queued first and succeeded last", states)
	}
	if last := events[len(events)-1]; last.name != "end" || !strings.Contains(last.data, `"succeeded"`) {
		t.Errorf("last event = %+v, want end with the final state", last)
	}
}

// TestAllSyncEventsFilterByApp: the all-syncs stream sends a short form of each new record,
// only the asked app's when ?app= is given; an unknown app is 404 and an unknown sync 404.
func TestAllSyncEventsFilterByApp(t *testing.T) {
	recs := natsRecords(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ts := httptest.NewServer(New(Config{Records: recs, Watch: recs, Apps: []AppInfo{{Name: "api"}, {Name: "db"}}}).Routes())
	defer ts.Close()

	opened, written := make(chan struct{}), make(chan struct{})
	api := queue.Record{ID: queue.NewID(), App: "api", State: queue.StateFailed, Message: "boom", Diff: "secret-looking diff"}
	go func() {
		defer close(written)
		<-opened
		time.Sleep(200 * time.Millisecond)
		if err := recs.Put(ctx, queue.Record{ID: queue.NewID(), App: "db", State: queue.StateQueued}); err != nil {
			t.Error(err)
		}
		if err := recs.Put(ctx, api); err != nil {
			t.Error(err)
		}
	}()
	events, _ := readEvents(t, ctx, ts.URL+"/api/v1/events?app=api", 1, opened)
	<-written // the record is streamed before its Put has finished updating the history
	if len(events) != 1 || events[0].name != "sync" {
		t.Fatalf("events = %v, want one sync event", events)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(events[0].data), &got); err != nil {
		t.Fatal(err)
	}
	if got["id"] != api.ID || got["app"] != "api" || got["state"] != "failed" || got["message"] != "boom" {
		t.Errorf("sync event = %v", got)
	}
	if _, ok := got["diff"]; ok {
		t.Errorf("sync event carries the diff: %v", got)
	}

	for _, path := range []string{"/api/v1/events?app=nope", "/api/v1/syncs/" + queue.NewID() + "/events", "/api/v1/syncs/..%2Fx/events"} {
		if code, _ := get(t, ts.URL+path); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
	}
}

// TestEventStreamsAreBounded: past MaxEventStreams open streams a new one is refused with 503
// and Retry-After, and a server without a watcher says it has no live updates.
func TestEventStreamsAreBounded(t *testing.T) {
	recs := natsRecords(t)
	s := New(Config{Records: recs, Watch: recs, Apps: []AppInfo{{Name: "api"}}})
	for range MaxEventStreams {
		s.streams <- struct{}{}
	}
	ts := httptest.NewServer(s.Routes())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("stream past the bound = %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	bare := httptest.NewServer(New(Config{Records: recs, Apps: []AppInfo{{Name: "api"}}}).Routes())
	defer bare.Close()
	if code, _ := get(t, bare.URL+"/api/v1/events"); code != http.StatusNotImplemented {
		t.Errorf("stream without a watcher = %d, want 501", code)
	}
}
