package notify

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrygitops/ferry/queue"
)

// TestClassify: which answers pass, which are retried (and after how long) and which drop the
// event; Retry-After dates are read on the injected clock.
func TestClassify(t *testing.T) {
	now := time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name       string
		code       int
		retryAfter string
		permanent  bool
		wait       time.Duration
		ok         bool
	}{
		{"200", 200, "", false, 0, true},
		{"202 (Teams Workflows)", 202, "", false, 0, true},
		{"204", 204, "", false, 0, true},
		{"400 invalid_payload", 400, "", true, 0, false},
		{"403 action_prohibited", 403, "", true, 0, false},
		{"404 no_service", 404, "", true, 0, false},
		{"410 channel_is_archived", 410, "", true, 0, false},
		{"408", 408, "", false, 0, false},
		{"429 seconds", 429, "30", false, 30 * time.Second, false},
		{"429 date", 429, now.Add(90 * time.Second).Format(http.TimeFormat), false, 90 * time.Second, false},
		{"429 date in the past", 429, now.Add(-time.Minute).Format(http.TimeFormat), false, 0, false},
		{"429 beyond the cap", 429, "86400", false, MaxRetryAfter, false},
		{"429 unreadable", 429, "soon", false, 0, false},
		{"429 without", 429, "", false, 0, false},
		{"503 with Retry-After", 503, "5", false, 5 * time.Second, false},
		{"500", 500, "", false, 0, false},
		{"502", 502, "", false, 0, false},
		{"301", 301, "", true, 0, false},
		{"307", 307, "", true, 0, false},
	} {
		resp := &http.Response{StatusCode: c.code, Header: http.Header{}}
		if c.retryAfter != "" {
			resp.Header.Set("Retry-After", c.retryAfter)
		}
		err := classify(resp, []byte("  some\n reason "), now)
		if c.ok {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var se *SendError
		if !errors.As(err, &se) {
			t.Fatalf("%s: %v, want a SendError", c.name, err)
		}
		if se.Permanent != c.permanent || se.RetryAfter != c.wait || se.Status != c.code {
			t.Errorf("%s: %+v, want permanent %v, retry after %s", c.name, se, c.permanent, c.wait)
		}
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for a := 1; a <= 10; a++ {
		got = append(got, Backoff(a, 2*time.Second, time.Minute))
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute, time.Minute, time.Minute, time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff %v, want %v", got, want)
		}
	}
}

func TestSigningKey(t *testing.T) {
	if k, err := SigningKey([]byte(testSecret)); err != nil || string(k) != string(testKey) {
		t.Errorf("whsec_ secret: %q, %v", k, err)
	}
	if k, err := SigningKey([]byte("a plain secret of 24 bytes")); err != nil || string(k) != "a plain secret of 24 bytes" {
		t.Errorf("plain secret: %q, %v", k, err)
	}
	for _, bad := range []string{"whsec_!!!notbase64", "whsec_c2hvcnQ=", "short", ""} {
		if _, err := SigningKey([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// blockingStream never answers until released: JetStream unreachable.
type blockingStream struct{ release chan struct{} }

func (b blockingStream) Publish(ctx context.Context, _ queue.Event) error {
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestPublisherNeverBlocks: with JetStream stuck, Notify still returns at once; past the buffer
// it drops events, counted.
func TestPublisherNeverBlocks(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	stuck := blockingStream{release: make(chan struct{})}
	p := NewPublisher(stuck, quietLog(), m)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	var dropped int
	for i := range PublishBuffer + 10 {
		if err := p.Notify(t.Context(), testEvent("api", "s", queue.EventFailed)); errors.Is(err, ErrBacklog) {
			dropped++
		} else if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	// The runner holds one event, the buffer the next PublishBuffer.
	if dropped < 9 || dropped > 10 {
		t.Errorf("%d events dropped, want 9 or 10", dropped)
	}
	if got := testutil.ToFloat64(m.publishErrors); int(got) != dropped {
		t.Errorf("publish errors %v, want %d", got, dropped)
	}
	close(stuck.release)
	cancel()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("publisher did not drain and stop")
	}
	if err := p.Notify(t.Context(), testEvent("api", "late", queue.EventFailed)); !errors.Is(err, ErrStopped) {
		t.Errorf("Notify after stop: %v", err)
	}
}
