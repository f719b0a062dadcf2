package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestIsPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"network error", &url.Error{Op: "Post", URL: "https://api.github.com", Err: errors.New("connection refused")}, false},
		{"context canceled", context.Canceled, false},
		{"bad request", &HTTPError{Forge: "gitea", StatusCode: 400}, true},
		{"unauthorized", &HTTPError{Forge: "github", StatusCode: 401}, true},
		{"not found, wrapped", fmt.Errorf("post: %w", &HTTPError{Forge: "github", StatusCode: 404}), true},
		{"request timeout", &HTTPError{Forge: "gitea", StatusCode: 408}, false},
		{"too many requests", &HTTPError{Forge: "gitlab", StatusCode: 429}, false},
		{"server error", &HTTPError{Forge: "github", StatusCode: 500}, false},
		{"bad gateway", &HTTPError{Forge: "github", StatusCode: 502}, false},
		{"status cap", &HTTPError{Forge: "github", StatusCode: 422, Err: ErrStatusLimit}, true},
		{"rate limit over a 403", &RetryAfterError{Wait: time.Second, Err: &HTTPError{Forge: "github", StatusCode: 403}}, false},
		{"invalid status", fmt.Errorf("github: %w", permanent(errors.New("no sha"))), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRateLimitWait(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	unix := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	tests := []struct {
		name    string
		headers http.Header
		wait    time.Duration
		ok      bool
	}{
		{"nothing", http.Header{}, 0, false},
		{"Retry-After seconds", http.Header{"Retry-After": {"17"}}, 17 * time.Second, true},
		{"Retry-After date", http.Header{"Retry-After": {now.Add(2 * time.Minute).Format(http.TimeFormat)}}, 2 * time.Minute, true},
		{"Retry-After date past", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0, true},
		{"Retry-After garbage", http.Header{"Retry-After": {"soon"}}, 0, false},
		{"GitHub quota exhausted", http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {unix(5 * time.Minute)}}, 5 * time.Minute, true},
		{"GitHub quota left", http.Header{"X-Ratelimit-Remaining": {"12"}, "X-Ratelimit-Reset": {unix(5 * time.Minute)}}, 0, false},
		{"GitLab quota exhausted", http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {unix(45 * time.Second)}}, 45 * time.Second, true},
		{"reset already passed", http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {unix(-time.Minute)}}, 0, true},
		{"Retry-After wins", http.Header{"Retry-After": {"3"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {unix(time.Hour)}}, 3 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, ok := rateLimitWait(tt.headers, now)
			if wait != tt.wait || ok != tt.ok {
				t.Errorf("rateLimitWait = %s, %v; want %s, %v", wait, ok, tt.wait, tt.ok)
			}
		})
	}
}

func TestCutDescription(t *testing.T) {
	exact := strings.Repeat("ü", MaxDescription)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"short", "synced 3 objects", "synced 3 objects"},
		{"exactly the limit, in runes not bytes", exact, exact},
		{"one over", exact + "x", strings.Repeat("ü", MaxDescription-1) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, cutDescription(tt.in)); diff != "" {
				t.Errorf("cutDescription (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCleanMessage(t *testing.T) {
	got := cleanMessage("bad token "+testToken+"\n\tfor  "+testToken, testToken)
	if diff := cmp.Diff("bad token [redacted] for [redacted]", got); diff != "" {
		t.Errorf("cleanMessage (-want +got):\n%s", diff)
	}
	long := cleanMessage(strings.Repeat("a", 5000), testToken)
	if n := len([]rune(long)); n != maxErrorMessage {
		t.Errorf("long message cut to %d runes, want %d", n, maxErrorMessage)
	}
}
