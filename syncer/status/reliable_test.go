package status

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeReporter is a hand-written Reporter whose answer a test chooses.
type fakeReporter struct {
	report func(ctx context.Context, s Status) error

	mu    sync.Mutex
	posts []Status
}

func (f *fakeReporter) Report(ctx context.Context, s Status) error {
	f.mu.Lock()
	f.posts = append(f.posts, s)
	f.mu.Unlock()
	if f.report == nil {
		return nil
	}
	return f.report(ctx, s)
}

func (f *fakeReporter) posted() []Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Status(nil), f.posts...)
}

// fakeClock records the waits Retry asks for and advances a fake clock by them, so budgets are
// tested without waiting.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// testRetryOptions uses the fake clock and writes the log to buf as JSON.
func testRetryOptions(c *fakeClock, buf *bytes.Buffer) RetryOptions {
	opts := DefaultRetryOptions()
	opts.Sleep = c.Sleep
	opts.Now = c.Now
	opts.Logger = slog.New(slog.NewJSONHandler(buf, nil))
	return opts
}

var okStatus = Status{SHA: testSHA, Context: "ferry/api", State: Success, Description: "synced", TargetURL: "https://ferry.example.com/syncs/1"}

func TestRetryServerErrorsThenSuccess(t *testing.T) {
	srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, n int) {
		switch n {
		case 0:
			answer(w, http.StatusBadGateway, `{"message":"Server Error"}`)
		case 1:
			answer(w, http.StatusServiceUnavailable, `{"message":"Service Unavailable"}`)
		default:
			answer(w, http.StatusCreated, `{"id":1}`)
		}
	})
	clock := newFakeClock()
	var logs bytes.Buffer
	r := Retry(newTestGitHub(t, srv.URL), testRetryOptions(clock, &logs))
	if err := r.Report(t.Context(), okStatus); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if got := len(f.requests()); got != 3 {
		t.Errorf("got %d requests, want 3", got)
	}
	// Jittered exponential backoff: between half and all of 1s, then of 2s.
	waits := clock.slept()
	if len(waits) != 2 {
		t.Fatalf("waits = %v, want 2", waits)
	}
	for i, full := range []time.Duration{time.Second, 2 * time.Second} {
		if waits[i] < full/2 || waits[i] > full {
			t.Errorf("wait %d = %s, want within [%s, %s]", i, waits[i], full/2, full)
		}
	}
	if n := strings.Count(logs.String(), "commit status post failed, retrying"); n != 2 {
		t.Errorf("logged %d retries, want 2:\n%s", n, logs.String())
	}
}

func TestRetryDoesNotRetryStatusCap(t *testing.T) {
	srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, _ int) {
		answer(w, http.StatusUnprocessableEntity, `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","message":"This SHA and context has reached the maximum number of statuses."}]}`)
	})
	clock := newFakeClock()
	var logs bytes.Buffer
	r := Retry(newTestGitHub(t, srv.URL), testRetryOptions(clock, &logs))
	err := r.Report(t.Context(), okStatus)
	if !errors.Is(err, ErrStatusLimit) || !IsPermanent(err) {
		t.Errorf("Report = %v, want a permanent ErrStatusLimit", err)
	}
	if got := len(f.requests()); got != 1 {
		t.Errorf("got %d requests, want 1", got)
	}
	if waits := clock.slept(); len(waits) != 0 {
		t.Errorf("waited %v, want no wait", waits)
	}
	if !strings.Contains(logs.String(), "not retrying") {
		t.Errorf("log does not say the refusal is not retried:\n%s", logs.String())
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 0 {
			answer(w, http.StatusTooManyRequests, `{"message":"slow down"}`, "Retry-After", "20")
			return
		}
		answer(w, http.StatusCreated, `{"id":1}`)
	})
	clock := newFakeClock()
	var logs bytes.Buffer
	r := Retry(newTestGitHub(t, srv.URL), testRetryOptions(clock, &logs))
	if err := r.Report(t.Context(), okStatus); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if got := len(f.requests()); got != 2 {
		t.Errorf("got %d requests, want 2", got)
	}
	waits := clock.slept()
	if len(waits) != 1 || waits[0] < 20*time.Second || waits[0] > 22*time.Second {
		t.Errorf("waits = %v, want one of 20s plus at most 10%% jitter", waits)
	}
}

func TestRetryGivesUpWhenRetryAfterExceedsBudget(t *testing.T) {
	inner := &fakeReporter{report: func(context.Context, Status) error {
		return &RetryAfterError{Wait: time.Hour, Err: &HTTPError{Forge: "github", StatusCode: 403}}
	}}
	clock := newFakeClock()
	var logs bytes.Buffer
	err := Retry(inner, testRetryOptions(clock, &logs)).Report(t.Context(), okStatus)
	ra, ok := errors.AsType[*RetryAfterError](err)
	if !ok || ra.Wait != time.Hour {
		t.Errorf("Report = %v, want the forge's RetryAfterError", err)
	}
	if got := len(inner.posted()); got != 1 {
		t.Errorf("got %d posts, want 1", got)
	}
	if waits := clock.slept(); len(waits) != 0 {
		t.Errorf("waited %v, want no wait", waits)
	}
}

func TestRetryBoundsAttemptsAndBackoff(t *testing.T) {
	inner := &fakeReporter{report: func(context.Context, Status) error {
		return &HTTPError{Forge: "gitea", StatusCode: http.StatusInternalServerError}
	}}
	clock := newFakeClock()
	var logs bytes.Buffer
	opts := testRetryOptions(clock, &logs)
	opts.MaxAttempts = 5
	opts.BaseDelay = 10 * time.Second
	opts.MaxDelay = 25 * time.Second
	opts.MaxElapsed = time.Hour
	err := Retry(inner, opts).Report(t.Context(), okStatus)
	if err == nil || !strings.Contains(err.Error(), "gave up after 5 attempts") {
		t.Errorf("Report = %v, want it to give up after 5 attempts", err)
	}
	if got := len(inner.posted()); got != 5 {
		t.Errorf("got %d posts, want 5", got)
	}
	waits := clock.slept()
	full := []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second, 25 * time.Second}
	if len(waits) != len(full) {
		t.Fatalf("waits = %v, want %d", waits, len(full))
	}
	for i := range full {
		if waits[i] < full[i]/2 || waits[i] > full[i] {
			t.Errorf("wait %d = %s, want within [%s, %s]", i, waits[i], full[i]/2, full[i])
		}
	}
}

func TestRetryBoundsTotalTime(t *testing.T) {
	inner := &fakeReporter{report: func(context.Context, Status) error {
		return errors.New("connection reset by peer")
	}}
	clock := newFakeClock()
	var logs bytes.Buffer
	opts := testRetryOptions(clock, &logs)
	opts.MaxAttempts = 100
	opts.BaseDelay = time.Minute
	opts.MaxDelay = time.Minute
	opts.MaxElapsed = 3 * time.Minute
	err := Retry(inner, opts).Report(t.Context(), okStatus)
	if err == nil || !strings.Contains(err.Error(), "exceeds budget") {
		t.Errorf("Report = %v, want it to stop at the time budget", err)
	}
	var total time.Duration
	for _, w := range clock.slept() {
		total += w
	}
	if total > opts.MaxElapsed {
		t.Errorf("waited %s in total, more than the %s budget", total, opts.MaxElapsed)
	}
	if n := len(inner.posted()); n < 4 || n > 7 {
		t.Errorf("got %d posts, want between 4 and 7 in a 3m budget of 30-60s waits", n)
	}
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	inner := &fakeReporter{report: func(context.Context, Status) error {
		cancel()
		return &HTTPError{Forge: "github", StatusCode: http.StatusBadGateway}
	}}
	opts := DefaultRetryOptions()
	opts.BaseDelay = time.Hour // the real timer: only the context can end this wait
	opts.MaxDelay = time.Hour
	opts.MaxElapsed = 2 * time.Hour
	start := time.Now()
	err := Retry(inner, opts).Report(ctx, okStatus)
	if err == nil {
		t.Fatal("Report succeeded, want an error")
	}
	if got := len(inner.posted()); got != 1 {
		t.Errorf("got %d posts, want 1", got)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Report took %s after the context ended", elapsed)
	}
}

func TestRetryDefaultSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	inner := &fakeReporter{report: func(context.Context, Status) error {
		return &HTTPError{Forge: "github", StatusCode: http.StatusBadGateway}
	}}
	opts := DefaultRetryOptions()
	opts.BaseDelay = time.Hour
	opts.MaxDelay = time.Hour
	opts.MaxElapsed = 2 * time.Hour
	err := Retry(inner, opts).Report(ctx, okStatus)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Report = %v, want it to end with the context's deadline", err)
	}
	if he, ok := errors.AsType[*HTTPError](err); !ok || he.StatusCode != http.StatusBadGateway {
		t.Errorf("Report = %v, want it to keep the last failure too", err)
	}
}

func TestRetryNeverLogsToken(t *testing.T) {
	srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, r *http.Request, n int) {
		if n < 2 {
			answer(w, http.StatusInternalServerError, `{"message":"upstream rejected `+r.Header.Get("Authorization")+`"}`)
			return
		}
		answer(w, http.StatusUnauthorized, `{"message":"Bad credentials `+r.Header.Get("Authorization")+`"}`)
	})
	clock := newFakeClock()
	var logs bytes.Buffer
	err := Retry(newTestGitHub(t, srv.URL), testRetryOptions(clock, &logs)).Report(t.Context(), okStatus)
	if err == nil {
		t.Fatal("Report succeeded, want an error")
	}
	if got := len(f.requests()); got != 3 {
		t.Errorf("got %d requests, want 3", got)
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("error holds the token: %v", err)
	}
	out := logs.String()
	if strings.Count(out, "\n") != 3 || !strings.Contains(out, "upstream rejected") || !strings.Contains(out, testSHA) {
		t.Errorf("want 3 log lines with the failures and the sha, got:\n%s", out)
	}
	if strings.Contains(out, testToken) {
		t.Errorf("log holds the token:\n%s", out)
	}
}

func TestDedupSkipsIdenticalRepeat(t *testing.T) {
	inner := &fakeReporter{}
	d := Dedup(inner)
	changed := okStatus
	changed.Description = "synced again, 1 object changed"
	preview := okStatus
	preview.Context = "ferry/api/preview"
	otherSHA := okStatus
	otherSHA.SHA = strings.Repeat("f", 40)

	for _, s := range []Status{okStatus, okStatus, changed, changed, okStatus, preview, otherSHA, otherSHA} {
		if err := d.Report(t.Context(), s); err != nil {
			t.Fatalf("Report(%+v): %v", s, err)
		}
	}
	want := []Status{okStatus, changed, okStatus, preview, otherSHA}
	if diff := cmp.Diff(want, inner.posted()); diff != "" {
		t.Errorf("posted (-want +got):\n%s", diff)
	}
}

func TestDedupForgetsAfterFailure(t *testing.T) {
	pending := okStatus
	pending.State = Pending
	inner := &fakeReporter{report: func(_ context.Context, s Status) error {
		if s.State == Pending {
			return errors.New("connection reset by peer") // may or may not have landed
		}
		return nil
	}}
	d := Dedup(inner)
	if err := d.Report(t.Context(), okStatus); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if err := d.Report(t.Context(), pending); err == nil {
		t.Fatal("Report(pending) succeeded, want the inner error")
	}
	// The forge may now show pending: success must be posted again, not skipped.
	if err := d.Report(t.Context(), okStatus); err != nil {
		t.Fatalf("Report: %v", err)
	}
	want := []Status{okStatus, pending, okStatus}
	if diff := cmp.Diff(want, inner.posted()); diff != "" {
		t.Errorf("posted (-want +got):\n%s", diff)
	}
}

func TestDedupEvictsLeastRecentlyUsed(t *testing.T) {
	inner := &fakeReporter{}
	d := newDedup(inner, 2)
	mk := func(app string) Status {
		s := okStatus
		s.Context = "ferry/" + app
		return s
	}
	a, b, c := mk("a"), mk("b"), mk("c")
	for _, s := range []Status{a, b, a, c, a, b, c} {
		if err := d.Report(t.Context(), s); err != nil {
			t.Fatalf("Report: %v", err)
		}
	}
	// a, b posted; a skipped (now most recent); c posted, evicting b; a skipped (c now oldest);
	// b posted again, evicting c; c posted again.
	want := []Status{a, b, c, b, c}
	if diff := cmp.Diff(want, inner.posted()); diff != "" {
		t.Errorf("posted (-want +got):\n%s", diff)
	}
	if n := d.order.Len(); n != 2 || len(d.byKey) != 2 {
		t.Errorf("remembers %d (%d keys), want at most 2", n, len(d.byKey))
	}
}

func TestDedupConcurrentUse(t *testing.T) {
	inner := &fakeReporter{}
	d := Dedup(inner)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				s := okStatus
				s.Context = fmt.Sprintf("ferry/app-%d", (g+i)%20)
				if err := d.Report(t.Context(), s); err != nil {
					t.Errorf("Report: %v", err)
				}
			}
		})
	}
	wg.Wait()
	// 20 distinct statuses; concurrent first posts of one may both go out, nothing more.
	if n := len(inner.posted()); n < 20 || n > 20*8 {
		t.Errorf("posted %d statuses, want between 20 and 160", n)
	}
	seen := map[string]bool{}
	for _, s := range inner.posted() {
		seen[s.Context] = true
	}
	if len(seen) != 20 {
		t.Errorf("posted %d distinct contexts, want 20", len(seen))
	}
}

// TestDedupSerialisesPostsOfOneContext: a pending and a final status of one commit and context
// posted at once reach the forge one after the other, in the order Dedup remembers them, so the
// final status posted again afterwards is skipped only when the forge's last status is final.
func TestDedupSerialisesPostsOfOneContext(t *testing.T) {
	pending := okStatus
	pending.State = Pending
	var mu sync.Mutex
	var forge []Status // what the forge holds, in the order it took them
	take := func(s Status) {
		mu.Lock()
		defer mu.Unlock()
		forge = append(forge, s)
	}
	enteredPending, releasePending := make(chan struct{}), make(chan struct{})
	enteredFinal, releaseFinal := make(chan struct{}), make(chan struct{})
	inner := &fakeReporter{report: func(_ context.Context, s Status) error {
		if s.State == Pending {
			close(enteredPending)
			<-releasePending // the pending post is slow to arrive
			take(s)
			return nil
		}
		take(s)
		select {
		case <-enteredFinal:
		default:
			close(enteredFinal)
		}
		<-releaseFinal // and the final one slow to answer
		return nil
	}}
	d := Dedup(inner)
	done := make(chan error, 2)
	go func() { done <- d.Report(t.Context(), pending) }()
	<-enteredPending
	go func() { done <- d.Report(t.Context(), okStatus) }()
	select {
	case <-enteredFinal:
		// Posted while the pending post was under way: the forge takes final, then pending.
	case <-time.After(200 * time.Millisecond):
	}
	close(releasePending)
	if err := <-done; err != nil { // the pending post is answered first
		t.Fatal(err)
	}
	close(releaseFinal)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The worker's final status is posted once more after the late pending notice.
	if err := d.Report(t.Context(), okStatus); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if last := forge[len(forge)-1]; last.State != Success {
		t.Fatalf("the forge's last status is %s (posted %d), want success", last.State, len(forge))
	}
}
