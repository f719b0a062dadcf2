package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

const (
	// RequestTimeout bounds one request to a target, connection included: a receiver that hangs
	// costs one retry, never a stuck target.
	RequestTimeout = 10 * time.Second
	// MaxRetryAfter caps how long a target's Retry-After may hold its notifications back at once.
	MaxRetryAfter = 15 * time.Minute
	// maxRefusalBytes is how much of a refusal's body is quoted in logs ("invalid_payload",
	// "no_service"): enough for a receiver's reason, too little for a page.
	maxRefusalBytes = 256
	// maxResponseBytes bounds what is read of any answer, so that the connection can be reused.
	maxResponseBytes = 64 << 10
)

// SendError is a target's refusal or failure, classified where it is made: Permanent ones
// (4xx other than 408 and 429, a redirect) drop the event for that target; the others are
// retried, after RetryAfter when the target said so. It never holds the target's URL.
type SendError struct {
	// Status is the answer's HTTP status; 0 when there was none (the connection failed).
	Status     int
	Permanent  bool
	RetryAfter time.Duration
	// Reason is what went wrong, with at most maxRefusalBytes of the target's answer.
	Reason string
}

func (e *SendError) Error() string {
	if e.Status == 0 {
		return e.Reason
	}
	if e.Reason == "" {
		return fmt.Sprintf("answered %d", e.Status)
	}
	return fmt.Sprintf("answered %d: %s", e.Status, e.Reason)
}

// newClient is the HTTP client of notifications: bounded in time, and it follows no redirect (a
// webhook URL that moved is the user's to fix, and a redirected POST may turn into a GET).
func newClient() *http.Client {
	return &http.Client{
		Timeout:       RequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// send posts ev to t once.
func (d *Dispatcher) send(ctx context.Context, t *target, ev queue.Event) error {
	body, contentType, header, err := t.format.request(ev, d.opts.Now())
	if err != nil {
		return &SendError{Permanent: true, Reason: "event cannot be encoded: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		// The config loader checked the URL: only a bug gets here. The error quotes the URL.
		return &SendError{Permanent: true, Reason: "request cannot be made"}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", d.opts.UserAgent)
	resp, err := d.opts.Client.Do(req)
	if err != nil {
		return &SendError{Reason: withoutURL(err)}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	return classify(resp, answer, d.opts.Now())
}

// classify turns an answer into nil (2xx) or a SendError.
func classify(resp *http.Response, answer []byte, now time.Time) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	e := &SendError{Status: code, Reason: refusal(answer)}
	switch {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	case code == http.StatusRequestTimeout || code >= 500:
	case code >= 300 && code < 400:
		e.Permanent, e.Reason = true, "redirect not followed; configure the URL it points to"
	default:
		e.Permanent = true
	}
	return e
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date, capped at MaxRetryAfter.
// Zero means none was given (or it could not be read): the backoff decides.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		d = time.Duration(min(s, int64(MaxRetryAfter/time.Second))) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// refusal is the start of a target's answer, on one line, for the log.
func refusal(answer []byte) string {
	s := strings.Join(strings.Fields(string(answer)), " ")
	if len(s) > maxRefusalBytes {
		s = s[:maxRefusalBytes] + "…"
	}
	return s
}

// withoutURL is a transport error without the URL net/http puts in it: a webhook URL is a
// secret (Slack's and Teams' carry their token in the path).
func withoutURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return "no answer within " + RequestTimeout.String()
		}
		return strings.ToLower(ue.Op) + ": " + ue.Err.Error()
	}
	return err.Error()
}
