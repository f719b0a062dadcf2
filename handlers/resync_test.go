package handlers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/syncer/source"
)

// headFunc is a HeadResolver with a function field.
type headFunc func(ctx context.Context, repo source.Repo, ref string) (string, error)

func (f headFunc) Head(ctx context.Context, repo source.Repo, ref string) (string, error) {
	return f(ctx, repo, ref)
}

func newTestResync(t *testing.T, tokens ...string) *Resync {
	t.Helper()
	var raw [][]byte
	for _, tok := range tokens {
		raw = append(raw, []byte(tok))
	}
	r, err := NewResync([]ResyncApp{{Name: "api", Repo: "platform", Branch: "main"}}, raw,
		headFunc(func(context.Context, source.Repo, string) (string, error) { return strings.Repeat("a", 40), nil }),
		&fakeQueue{}, ResyncOptions{Repos: map[string]source.Repo{"platform": {}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func bearer(tok string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/apps/api/sync", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return req
}

func TestResyncAuthorized(t *testing.T) {
	const tok = "api-Token-1b2c3d4e5f"
	r := newTestResync(t, "other-token-of-another-length", tok, "")
	for _, c := range []struct {
		name, header string
		want         bool
	}{
		{"the token", "Bearer " + tok, true},
		{"a prefix of it", "Bearer " + tok[:len(tok)-1], false},
		{"it extended", "Bearer " + tok + "x", false},
		{"same length, last byte differs", "Bearer " + tok[:len(tok)-1] + "g", false},
		{"empty", "Bearer ", false},
		{"no scheme", tok, false},
		{"basic", "Basic " + tok, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/apps/api/sync", nil)
			req.Header.Set("Authorization", c.header)
			if got := r.authorized(req); got != c.want {
				t.Fatalf("authorized = %v, want %v", got, c.want)
			}
		})
	}
	if newTestResync(t).authorized(bearer("")) || newTestResync(t, "").authorized(bearer("x")) {
		t.Fatal("no configured token must refuse everything")
	}
}

// TestResyncRefusalTimeIgnoresTokenLength holds the comparison to fixed-length digests: a wrong
// token the length of the configured one must take as long to refuse as one of another length.
// A comparison of the raw tokens returns at once on a length mismatch and walks the whole token
// otherwise, a difference of orders of magnitude with a 256 KiB token.
func TestResyncRefusalTimeIgnoresTokenLength(t *testing.T) {
	secret := strings.Repeat("s", 256<<10)
	guess := strings.Repeat("g", len(secret)) // same length as the secret, wrong
	sameLength := newTestResync(t, secret)
	otherLength := newTestResync(t, secret[:16])
	req := bearer(guess)
	measure := func(r *Resync) time.Duration {
		start := time.Now()
		if r.authorized(req) {
			t.Fatal("a wrong token was authorized")
		}
		return time.Since(start)
	}
	var same, other []time.Duration
	for range 101 { // interleaved, so that load on the machine hits both alike
		same = append(same, measure(sameLength))
		other = append(other, measure(otherLength))
	}
	slices.Sort(same)
	slices.Sort(other)
	ms, mo := same[len(same)/2], other[len(other)/2]
	if ms > 3*mo || mo > 3*ms {
		t.Fatalf("median refusal time %s with a secret of the guess's length, %s with another: the comparison shows the length", ms, mo)
	}
}
