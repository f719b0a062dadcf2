package status

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrStatusLimit marks GitHub's refusal to store more statuses for one SHA and context (it caps
// them per pair). Retrying cannot help, so the error is permanent; the caller logs it and moves on.
var ErrStatusLimit = errors.New("commit status limit reached for this sha and context")

// maxErrorMessage bounds how much of a forge's error message ends up in an error (and so in logs):
// enough to diagnose, not a whole HTML error page from a proxy.
const maxErrorMessage = 300

// maxErrorBody bounds how much of an error response is read at all.
const maxErrorBody = 64 << 10

// secondaryRateLimitWait is how long to wait after a GitHub secondary rate limit that gave no
// Retry-After: GitHub asks clients to wait at least a minute then.
const secondaryRateLimitWait = time.Minute

// HTTPError is a forge's refusal of a status, reduced to what classification and logs need. It
// carries the forge's message only after the token has been scrubbed from it, and never the
// library's own error value, so nothing reachable through it can leak a secret.
type HTTPError struct {
	// Forge is github, gitlab or gitea, for callers that count refusals per forge.
	Forge string
	// StatusCode decides, through IsPermanent, whether a retry can help.
	StatusCode int
	// Message is the forge's explanation, cut to a few hundred characters.
	Message string
	// Err is a kind the caller may test with errors.Is (ErrStatusLimit), or nil.
	Err error
}

// Error reports the HTTP status first, as it matters most when reading logs. The forge is left
// out: each Reporter already names it when wrapping.
func (e *HTTPError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("http %d", e.StatusCode)
	}
	return fmt.Sprintf("http %d: %s", e.StatusCode, e.Message)
}

// Unwrap exposes the kind, so errors.Is(err, ErrStatusLimit) works through wrapping.
func (e *HTTPError) Unwrap() error { return e.Err }

// RetryAfterError is a forge asking ferry to come back later (rate limits). Retry waits Wait
// before the next attempt instead of its own backoff, as long as that fits its time budget.
type RetryAfterError struct {
	// Wait is how long the forge asked to wait; zero means "now", and Retry then uses its backoff.
	Wait time.Duration
	// Err is the refusal itself, usually an *HTTPError.
	Err error
}

// Error says how long to wait, then why.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s: %v", e.Wait, e.Err)
}

// Unwrap exposes the refusal for errors.As.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// permanentError marks a failure that no retry can fix (an invalid status, a bad configuration).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err: err} }

// IsPermanent reports whether posting the same status again cannot succeed: the forge refused it
// for a reason that will not change by itself (4xx other than 408 and 429, the status cap), or it
// was invalid before any request. Network errors, 5xx and rate limits are transient. Retry uses it;
// callers may use it to decide how loudly to log.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[*RetryAfterError](err); ok {
		return false
	}
	if _, ok := errors.AsType[*permanentError](err); ok {
		return true
	}
	if errors.Is(err, ErrStatusLimit) {
		return true
	}
	if he, ok := errors.AsType[*HTTPError](err); ok {
		return permanentStatusCode(he.StatusCode)
	}
	return false
}

// permanentStatusCode classifies an HTTP status: client errors are permanent except the ones that
// mean "not now" (timeout, too early, too many requests).
func permanentStatusCode(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return code >= 400 && code < 500
}

// rateLimitWait reads how long a 403 or 429 answer asks to wait: Retry-After (seconds or an HTTP
// date), else the reset time of an exhausted quota (X-RateLimit-* on GitHub and Gitea, RateLimit-*
// on GitLab). ok is false when the answer says nothing about waiting, i.e. it is not a rate limit.
func rateLimitWait(h http.Header, now time.Time) (wait time.Duration, ok bool) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	for _, prefix := range []string{"X-RateLimit-", "RateLimit-"} {
		if strings.TrimSpace(h.Get(prefix+"Remaining")) != "0" {
			continue
		}
		reset, err := strconv.ParseInt(strings.TrimSpace(h.Get(prefix+"Reset")), 10, 64)
		if err != nil {
			continue
		}
		return max(time.Unix(reset, 0).Sub(now), 0), true
	}
	return 0, false
}

// forgeError turns a forge's non-2xx answer into an *HTTPError (or a *RetryAfterError around one
// when it is a rate limit), with the token scrubbed from the message.
func forgeError(forge string, code int, h http.Header, message, token string, now time.Time) error {
	he := &HTTPError{Forge: forge, StatusCode: code, Message: cleanMessage(message, token)}
	if code == http.StatusForbidden || code == http.StatusTooManyRequests {
		if wait, ok := rateLimitWait(h, now); ok {
			return &RetryAfterError{Wait: wait, Err: he}
		}
	}
	return he
}

// cleanMessage removes the token from a forge's message (a misconfigured proxy may echo request
// headers) and cuts it to maxErrorMessage runes.
func cleanMessage(msg, token string) string {
	if token != "" {
		msg = strings.ReplaceAll(msg, token, "[redacted]")
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if utf8.RuneCountInString(msg) > maxErrorMessage {
		msg = string([]rune(msg)[:maxErrorMessage-1]) + "…"
	}
	return msg
}
