package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ferrygitops/ferry/queue"
)

var allKinds = []queue.EventKind{queue.EventFailed, queue.EventRecovered, queue.EventSucceeded, queue.EventSuperseded}

func newDispatcher(t *testing.T, n *queue.Notifications, targets []Target, o Options) *Dispatcher {
	t.Helper()
	d, err := NewDispatcher(t.Context(), n, targets, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func publish(t *testing.T, n *queue.Notifications, evs ...queue.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := n.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// ids are the event ids of requests to a webhook target, in order.
func ids(reqs []request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Header.Get(HeaderWebhookID))
	}
	return out
}

// TestEachTypeSendsItsDocumentedShape sends one failed event to a Slack, a Teams and a webhook
// target and checks each request: method, headers, and the body against the captured payload.
// The webhook's signature is checked with the Standard Webhooks library, with the whsec_ secret
// and with a plain one.
func TestEachTypeSendsItsDocumentedShape(t *testing.T) {
	s := startNATS(t, t.TempDir())
	n, _ := s.stream(t)
	slack, teams, hook, plain := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	plainSecret := []byte("a plain shared secret of enough bytes")
	key, err := SigningKey([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	plainKey, err := SigningKey(plainSecret)
	if err != nil {
		t.Fatal(err)
	}
	targets := []Target{
		{Name: "slack", Type: Slack, URL: slack.srv.URL + "/services/T0/B0/XXXX", Events: allKinds},
		{Name: "teams", Type: Teams, URL: teams.srv.URL + "/workflows/abc/triggers/manual/paths/invoke?sig=XXXX", Events: allKinds},
		{Name: "hook", Type: Webhook, URL: hook.srv.URL + "/ferry", Key: key, Events: allKinds},
		{Name: "plain", Type: Webhook, URL: plain.srv.URL + "/ferry", Key: plainKey, Events: allKinds},
	}
	o := testOptions(prometheus.NewRegistry())
	run(t, newDispatcher(t, n, targets, o))
	publish(t, n, testEvent("api", "06g1v8k2c9s0q3m5t7p1a2b3c4", queue.EventFailed), testEvent("api", "06g1v8k2c9s0q3m5t7p1a2b3c5", queue.EventRecovered),
		testEvent("api", "06g1v8k2c9s0q3m5t7p1a2b3c6", queue.EventSuperseded))

	for _, c := range []struct {
		name string
		r    *receiver
		path string
		ct   string
	}{
		{"slack", slack, "/services/T0/B0/XXXX", "application/json"},
		{"teams", teams, "/workflows/abc/triggers/manual/paths/invoke", "application/json"},
		{"webhook", hook, "/ferry", "application/cloudevents+json; charset=utf-8"},
	} {
		reqs := c.r.waitRequests(t, 3)
		for i, kind := range []queue.EventKind{queue.EventFailed, queue.EventRecovered, queue.EventSuperseded} {
			r := reqs[i]
			if r.Method != http.MethodPost || r.Path != c.path || r.Header.Get("Content-Type") != c.ct || r.Header.Get("User-Agent") != "ferry/test" {
				t.Errorf("%s: %s %s, Content-Type %q, User-Agent %q", c.name, r.Method, r.Path, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"))
			}
			golden(t, c.name+"-"+string(kind)+".json", r.Body)
		}
	}
	for i, r := range hook.requests() {
		wh, err := standardwebhooks.NewWebhook(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(r.Body, r.Header); err != nil {
			t.Errorf("webhook request %d: signature with the whsec_ secret: %v", i, err)
		}
		var ce map[string]any
		if err := json.Unmarshal(r.Body, &ce); err != nil {
			t.Fatal(err)
		}
		if ce["id"] != r.Header.Get(HeaderWebhookID) || ce["specversion"] != "1.0" || !strings.HasPrefix(ce["type"].(string), "dev.ferry.sync.") {
			t.Errorf("webhook request %d: CloudEvent %v with webhook-id %q", i, ce, r.Header.Get(HeaderWebhookID))
		}
	}
	for i, r := range plain.waitRequests(t, 3) {
		wh, err := standardwebhooks.NewWebhookRaw(plainSecret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(r.Body, r.Header); err != nil {
			t.Errorf("webhook request %d: signature with the plain secret: %v", i, err)
		}
		// Someone else's key does not verify it: the check above can fail.
		other, _ := standardwebhooks.NewWebhookRaw([]byte("another secret of enough bytes!!"))
		if other.Verify(r.Body, r.Header) == nil {
			t.Errorf("webhook request %d verifies with a wrong key", i)
		}
		// A body changed on the way does not verify either.
		if wh.Verify(bytes.Replace(r.Body, []byte(`"api"`), []byte(`"apx"`), 1), r.Header) == nil {
			t.Errorf("webhook request %d verifies with a changed body", i)
		}
	}
	for _, name := range []string{"slack", "teams", "hook", "plain"} {
		eventually(t, name+": 3 sent", func() bool { return counted(o.Metrics, name, resultSent) == 3 })
	}
}

// TestFiltersByEventAndApp: a target hears only the kinds it names (succeeded includes
// recovered) and only apps its globs match.
func TestFiltersByEventAndApp(t *testing.T) {
	s := startNATS(t, t.TempDir())
	n, _ := s.stream(t)
	failures, successes := newReceiver(t, nil), newReceiver(t, nil)
	targets := []Target{
		{Name: "failures", Type: Webhook, URL: failures.srv.URL, Key: testKey, Events: []queue.EventKind{queue.EventFailed}, Apps: []string{"pay-*", "web"}},
		{Name: "successes", Type: Webhook, URL: successes.srv.URL, Key: testKey, Events: []queue.EventKind{queue.EventSucceeded}},
	}
	run(t, newDispatcher(t, n, targets, testOptions(prometheus.NewRegistry())))
	publish(t, n,
		testEvent("pay-api", "s1", queue.EventFailed),
		testEvent("api", "s2", queue.EventFailed),
		testEvent("pay-api", "s3", queue.EventSucceeded),
		testEvent("pay-api", "s4", queue.EventRecovered),
		testEvent("web", "s5", queue.EventSuperseded),
		testEvent("web", "s6", queue.EventFailed),
		// The last one for each target: once it arrived, everything before it was decided.
		testEvent("pay-db", "s7", queue.EventFailed),
		testEvent("api", "s8", queue.EventSucceeded),
	)
	if diff := cmp.Diff([]string{"s1.failed", "s6.failed", "s7.failed"}, ids(failures.waitRequests(t, 3))); diff != "" {
		t.Errorf("failures target (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"s3.succeeded", "s4.recovered", "s8.succeeded"}, ids(successes.waitRequests(t, 3))); diff != "" {
		t.Errorf("successes target (-want +got):\n%s", diff)
	}
}

// TestTargetDownLosesNothingAndHoldsBackNoOther: one target answers 503 for many attempts
// while another works. The working one gets every event at once; the other, once up, gets every
// event exactly once, in order.
func TestTargetDownLosesNothingAndHoldsBackNoOther(t *testing.T) {
	s := startNATS(t, t.TempDir())
	n, _ := s.stream(t)
	var up atomic.Bool
	down := newReceiver(t, func(_ int, w http.ResponseWriter) bool {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	ok := newReceiver(t, nil)
	o := testOptions(prometheus.NewRegistry())
	targets := []Target{
		{Name: "down", Type: Webhook, URL: down.srv.URL, Key: testKey, Events: allKinds},
		{Name: "ok", Type: Webhook, URL: ok.srv.URL, Key: testKey, Events: allKinds},
	}
	run(t, newDispatcher(t, n, targets, o))
	var want []string
	for i := range 5 {
		ev := testEvent("api", fmt.Sprintf("s%d", i), queue.EventFailed)
		publish(t, n, ev)
		want = append(want, ev.ID())
	}
	// Publishing an event twice (a job delivered again) stores it once.
	publish(t, n, testEvent("api", "s0", queue.EventFailed))

	if diff := cmp.Diff(want, ids(ok.waitRequests(t, 5))); diff != "" {
		t.Errorf("the working target, while the other is down (-want +got):\n%s", diff)
	}
	// The target stays down for 30 attempts.
	const attempts = 30
	for _, r := range down.waitRequests(t, attempts) {
		if r.Status != http.StatusServiceUnavailable || r.Header.Get(HeaderWebhookID) != want[0] {
			t.Fatalf("while down, %s was answered %d (only %s may be tried, in vain)", r.Header.Get(HeaderWebhookID), r.Status, want[0])
		}
	}
	up.Store(true)
	deadline := time.Now().Add(waitFor)
	for len(delivered(down.requests())) < 5 && time.Now().Before(deadline) {
		down.waitRequests(t, len(down.requests())+1)
	}
	if diff := cmp.Diff(want, delivered(down.requests())); diff != "" {
		t.Errorf("the target that was down, once up (-want +got):\n%s", diff)
	}
	failures := len(down.requests()) - 5
	if got := counted(o.Metrics, "down", resultRetried); int(got) != failures || failures < attempts {
		t.Errorf("down: %v retried, %d failed requests (at least %d)", got, failures, attempts)
	}
	eventually(t, "down: 5 sent", func() bool { return counted(o.Metrics, "down", resultSent) == 5 })
	// Nothing more arrives: every event was acknowledged once.
	assertQuiet(t, n, "down", ok, down)
}

// assertQuiet checks that target's consumer holds nothing and no receiver gets more requests.
func assertQuiet(t *testing.T, n *queue.Notifications, target string, rs ...*receiver) {
	t.Helper()
	before := make([]int, len(rs))
	for i, r := range rs {
		before[i] = len(r.requests())
	}
	// A marker event delivered to every receiver after all the others proves none is pending.
	marker := testEvent("api", "marker", queue.EventSuperseded)
	publish(t, n, marker)
	for i, r := range rs {
		got := r.waitRequests(t, before[i]+1)
		if len(got) != before[i]+1 || !bytes.Contains(got[before[i]].Body, []byte(marker.SyncID)) {
			t.Errorf("receiver %d got %d requests after the %d before the marker, the first %s", i, len(got)-before[i], before[i], got[before[i]].Body)
		}
	}
}

// TestRetryAfterIsHonoured: a 429 with Retry-After holds the event that long, then it is sent once.
func TestRetryAfterIsHonoured(t *testing.T) {
	s := startNATS(t, t.TempDir())
	n, _ := s.stream(t)
	r := newReceiver(t, func(i int, w http.ResponseWriter) bool {
		if i == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	})
	o := testOptions(prometheus.NewRegistry())
	run(t, newDispatcher(t, n, []Target{{Name: "slack", Type: Slack, URL: r.srv.URL, Events: allKinds}}, o))
	publish(t, n, testEvent("api", "s1", queue.EventFailed))
	reqs := r.waitRequests(t, 2)
	if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
		t.Errorf("retried %s after a 429 with Retry-After: 1", gap)
	}
	if !bytes.Equal(reqs[0].Body, reqs[1].Body) {
		t.Error("the retry sent another body")
	}
	eventually(t, "one retried, one sent", func() bool {
		return counted(o.Metrics, "slack", resultRetried) == 1 && counted(o.Metrics, "slack", resultSent) == 1
	})
}

// TestPermanentRefusalIsDropped: a 400 drops that event for the target (counted, logged without
// the URL); the next event goes on.
func TestPermanentRefusalIsDropped(t *testing.T) {
	s := startNATS(t, t.TempDir())
	n, _ := s.stream(t)
	r := newReceiver(t, func(i int, w http.ResponseWriter) bool {
		if i == 0 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("invalid_payload"))
			return true
		}
		return false
	})
	var logs syncBuffer
	o := testOptions(prometheus.NewRegistry())
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	url := r.srv.URL + "/services/T0/B0/SECRET-TOKEN-IN-PATH"
	run(t, newDispatcher(t, n, []Target{{Name: "slack", Type: Slack, URL: url, Events: allKinds}}, o))
	publish(t, n, testEvent("api", "s1", queue.EventFailed), testEvent("api", "s2", queue.EventFailed))
	reqs := r.waitRequests(t, 2)
	if !strings.Contains(string(reqs[1].Body), "s2") {
		t.Errorf("second request was %s, want event s2 (s1 must not be sent again)", reqs[1].Body)
	}
	eventually(t, "one rejected, one sent", func() bool {
		return counted(o.Metrics, "slack", resultRejected) == 1 && counted(o.Metrics, "slack", resultSent) == 1
	})
	assertQuiet(t, n, "slack", r)
	if !strings.Contains(logs.String(), "invalid_payload") || !strings.Contains(logs.String(), "target=slack") {
		t.Errorf("the refusal is not logged with the target's name and reason:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "SECRET-TOKEN") {
		t.Errorf("logs hold the webhook URL:\n%s", logs.String())
	}
}

// TestUnreachableTargetLogsNoURL: a connection error is retried and logged without the URL.
func TestUnreachableTargetLogsNoURL(t *testing.T) {
	s := startNATS(t, t.TempDir())
	n, _ := s.stream(t)
	dead := newReceiver(t, nil)
	url := dead.srv.URL + "/services/T0/B0/SECRET-TOKEN-IN-PATH"
	dead.srv.Close()
	var logs syncBuffer
	o := testOptions(prometheus.NewRegistry())
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	run(t, newDispatcher(t, n, []Target{{Name: "gone", Type: Slack, URL: url, Events: allKinds}}, o))
	publish(t, n, testEvent("api", "s1", queue.EventFailed))
	deadline := time.Now().Add(waitFor)
	for counted(o.Metrics, "gone", resultRetried) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the unreachable target was not retried")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("logs do not say why:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "SECRET-TOKEN") {
		t.Errorf("logs hold the webhook URL:\n%s", logs.String())
	}
}

// TestReplicasDeliverOncePerTarget: two replicas (connections) run the same target's shared
// consumer; each event reaches the target once.
func TestReplicasDeliverOncePerTarget(t *testing.T) {
	s := startNATS(t, t.TempDir())
	n1, _ := s.stream(t)
	n2, _ := s.stream(t)
	r := newReceiver(t, nil)
	targets := []Target{{Name: "hook", Type: Webhook, URL: r.srv.URL, Key: testKey, Events: allKinds}}
	run(t, newDispatcher(t, n1, targets, testOptions(prometheus.NewRegistry())))
	run(t, newDispatcher(t, n2, targets, testOptions(prometheus.NewRegistry())))
	var want []string
	for i := range 20 {
		ev := testEvent("api", fmt.Sprintf("s%02d", i), queue.EventFailed)
		publish(t, []*queue.Notifications{n1, n2}[i%2], ev)
		want = append(want, ev.ID())
	}
	if diff := cmp.Diff(want, ids(r.waitRequests(t, 20))); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	assertQuiet(t, n1, "hook", r)
}

// TestRestartPicksUpUndelivered: a replica stops while its target is down; NATS itself
// restarts from its store; the next replica delivers every event once.
func TestRestartPicksUpUndelivered(t *testing.T) {
	dir := t.TempDir()
	s := startNATS(t, dir)
	n, nc := s.stream(t)
	var up atomic.Bool
	r := newReceiver(t, func(_ int, w http.ResponseWriter) bool {
		if !up.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return true
		}
		return false
	})
	targets := []Target{{Name: "hook", Type: Webhook, URL: r.srv.URL, Key: testKey, Events: allKinds}}
	stop := run(t, newDispatcher(t, n, targets, testOptions(prometheus.NewRegistry())))
	publish(t, n, testEvent("api", "s1", queue.EventFailed), testEvent("db", "s2", queue.EventFailed), testEvent("api", "s3", queue.EventRecovered))
	r.waitRequests(t, 3) // tried and failed, more than once
	stop()
	nc.Close()
	s.e.Shutdown()

	s2 := startNATS(t, dir)
	n2, _ := s2.stream(t)
	up.Store(true)
	before := len(r.requests())
	run(t, newDispatcher(t, n2, targets, testOptions(prometheus.NewRegistry())))
	got := r.waitRequests(t, before+3)[before:]
	if diff := cmp.Diff([]string{"s1.failed", "s2.failed", "s3.recovered"}, ids(got)); diff != "" {
		t.Errorf("after the restart (-want +got):\n%s", diff)
	}
	assertQuiet(t, n2, "hook", r)
}

// TestRateLimitSpacesRequests: a Slack target gets at most one request per second; the clock
// and the sleep are injected, so the spacing is read, not timed.
func TestRateLimitSpacesRequests(t *testing.T) {
	s := startNATS(t, t.TempDir())
	n, _ := s.stream(t)
	r := newReceiver(t, nil)
	o := testOptions(prometheus.NewRegistry())
	o.Rates = DefaultOptions().Rates
	clock := &fakeClock{now: time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC)}
	o.Now, o.Sleep = clock.Now, clock.Sleep
	run(t, newDispatcher(t, n, []Target{{Name: "slack", Type: Slack, URL: r.srv.URL, Events: allKinds}}, o))
	publish(t, n, testEvent("api", "s1", queue.EventFailed), testEvent("api", "s2", queue.EventFailed), testEvent("api", "s3", queue.EventFailed))
	r.waitRequests(t, 3)
	if diff := cmp.Diff([]time.Duration{time.Second, time.Second}, clock.slept()); diff != "" {
		t.Errorf("sleeps between requests (-want +got):\n%s", diff)
	}
}

// TestAnHourDownIsRetriedWithinTheStreamsKeep walks the default backoff through an outage of
// an hour on a simulated clock: the target is tried again and again, never more than
// DefaultRetryMax apart, and the event is still kept when the target is back.
func TestAnHourDownIsRetriedWithinTheStreamsKeep(t *testing.T) {
	var at time.Duration
	attempts := 0
	for at < time.Hour {
		attempts++
		d := Backoff(attempts, DefaultRetryMin, DefaultRetryMax)
		if d > DefaultRetryMax || d < DefaultRetryMin {
			t.Fatalf("attempt %d waits %s", attempts, d)
		}
		at += d
	}
	if attempts < 10 || attempts > 40 {
		t.Errorf("%d attempts in an hour, want between 10 and 40", attempts)
	}
	if at+DefaultRetryMax >= queue.NotifyMaxAge {
		t.Errorf("the first attempt after an hour's outage comes at %s, after the stream drops the event (%s)", at, queue.NotifyMaxAge)
	}
}
