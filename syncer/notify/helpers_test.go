package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"

	"github.com/ferrygitops/ferry/queue"
)

var update = flag.Bool("update", false, "rewrite the captured payloads under testdata/")

// waitFor bounds every wait of these tests.
const waitFor = 20 * time.Second

// testAckWait is how soon an event a stopped replica held goes to the next one.
const testAckWait = 2 * time.Second

// eventually waits, bounded, until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, waitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testKey is a webhook target's HMAC key; testSecret its whsec_ form.
var (
	testKey    = []byte("ferry-notify-test-key-0123456789")
	testSecret = "whsec_" + base64.StdEncoding.EncodeToString(testKey)
)

// testEvent is a failed deploy of app at sha.
func testEvent(app, syncID string, kind queue.EventKind) queue.Event {
	state := queue.StateSucceeded
	msg := "applied 4 objects in 1.2s"
	switch kind {
	case queue.EventFailed:
		state, msg = queue.StateFailed, "Deployment api/web: admission webhook \"policy\" denied the request: image tag <latest> & unpinned"
	case queue.EventSuperseded:
		state, msg = queue.StateSkipped, "superseded by 9f8e7d6"
	}
	return queue.Event{SyncID: syncID, Kind: kind, App: app, Repo: "platform", RepoURL: "https://github.com/acme/platform.git",
		Provider: "github", Ref: "refs/heads/main", SHA: "4f2a9c1d3b5e7f90a1b2c3d4e5f60718293a4b5c", SyncKind: queue.KindDeploy,
		Trigger: queue.TriggerPush, State: state, Message: msg, URL: "https://ferry.example.com/syncs/" + syncID,
		At: time.Date(2026, 12, 3, 19, 4, 5, 0, time.UTC)}
}

// nats starts an embedded JetStream in dir and returns a connection maker and a stopper.
type natsServer struct {
	e   *queue.Embedded
	dir string
}

func startNATS(t *testing.T, dir string) *natsServer {
	t.Helper()
	e, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s := &natsServer{e: e, dir: dir}
	t.Cleanup(e.Shutdown)
	return s
}

// stream opens a connection of its own (a replica) and the notification stream on it.
func (s *natsServer) stream(t *testing.T) (*queue.Notifications, *nats.Conn) {
	t.Helper()
	nc, err := s.e.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n, err := queue.NewNotifications(t.Context(), js, queue.NotifyOptions{AckWait: testAckWait, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return n, nc
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// request is what a receiver was sent.
type request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
	// Status is what the receiver answered.
	Status int
}

// receiver is an httptest target that records every request and answers as answer says
// (200 when nil). n counts the requests before this one.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []request
	answer func(n int, w http.ResponseWriter) bool
	notify chan struct{}
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter) bool) *receiver {
	t.Helper()
	r := &receiver{answer: answer, notify: make(chan struct{}, 1000)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		got := request{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone(), Body: body, At: time.Now()}
		r.mu.Lock()
		defer r.mu.Unlock()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if r.answer == nil || !r.answer(len(r.got), sw) {
			sw.WriteHeader(http.StatusOK)
			_, _ = sw.Write([]byte("ok"))
		}
		got.Status = sw.status
		r.got = append(r.got, got)
		r.notify <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

// waitRequests waits until the receiver had at least n requests.
func (r *receiver) waitRequests(t *testing.T, n int) []request {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		if got := r.requests(); len(got) >= n {
			return got
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("receiver had %d requests after %s, want %d", len(r.requests()), waitFor, n)
		}
	}
}

// testOptions retry fast: a target down for many attempts costs milliseconds.
func testOptions(reg prometheus.Registerer) Options {
	o := DefaultOptions()
	o.RetryMin, o.RetryMax = time.Millisecond, 5*time.Millisecond
	o.Rates = map[Type]rate.Limit{} // no limit: a type without a rate has none
	o.Logger = quietLog()
	o.Source = "https://ferry.example.com"
	o.UserAgent = "ferry/test"
	o.Metrics = NewMetrics(reg)
	return o
}

// run starts d until the test ends, and returns a stopper that waits for it.
func run(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("dispatcher: %v", err)
				}
			case <-time.After(waitFor):
				t.Errorf("dispatcher did not stop within %s", waitFor)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func counted(m *Metrics, target, result string) float64 {
	return testutil.ToFloat64(m.attempts.WithLabelValues(target, result))
}

// golden compares got with testdata/name, or writes it there with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := indentJSON(&buf, got); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, got)
	}
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to capture it)", err)
	}
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("%s differs from what was captured:\n--- want\n%s\n--- got\n%s", name, want, buf.Bytes())
	}
}

func indentJSON(w *bytes.Buffer, data []byte) error {
	if err := json.Indent(w, data, "", "  "); err != nil {
		return err
	}
	w.WriteByte('\n')
	return nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// delivered are the event ids a webhook receiver answered 200 to, in order.
func delivered(reqs []request) []string {
	var out []string
	for _, r := range reqs {
		if r.Status == http.StatusOK {
			out = append(out, r.Header.Get(HeaderWebhookID))
		}
	}
	return out
}

// syncBuffer is a log sink safe for the dispatcher's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeClock moves only when the dispatcher sleeps, and records each sleep.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.sleeps = append(c.sleeps, d)
	return nil
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}
