package handlers

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func tokens(values ...string) []Token {
	var out []Token
	for i, v := range values {
		out = append(out, Token{Name: "token-" + string(rune('a'+i)), Value: []byte(v)})
	}
	return out
}

func bearer(tok string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/apps/api/sync", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return req
}

// TestAuthTokens: only a configured token, exactly, authenticates, and names its holder.
func TestAuthTokens(t *testing.T) {
	const tok = "api-Token-1b2c3d4e5f"
	a := NewAuth(tokens("other-token-of-another-length", tok, ""), nil)
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
			id, got := a.Identify(req)
			if got != c.want {
				t.Fatalf("Identify = %v, want %v", got, c.want)
			}
			if got && (id.Name != "token-b" || id.Via != ViaToken) {
				t.Errorf("identity %+v, want token-b by token", id)
			}
		})
	}
	if _, ok := NewAuth(nil, nil).Identify(bearer("")); ok {
		t.Fatal("no configured token must refuse everything")
	}
	if _, ok := NewAuth(tokens(""), nil).Identify(bearer("x")); ok {
		t.Fatal("an empty configured token must refuse everything")
	}
	if id, ok := NewAuth(tokens("first", "second"), nil).Identify(bearer("first")); !ok || id.Name != "token-a" {
		t.Fatalf("the first token: %+v %v", id, ok)
	}
}

// TestAuthRefusalTimeIgnoresTokenLength holds the comparison to fixed-length digests: a wrong
// token the length of the configured one must take as long to refuse as one of another length.
// A comparison of the raw tokens returns at once on a length mismatch and walks the whole token
// otherwise, a difference of orders of magnitude with a 256 KiB token.
func TestAuthRefusalTimeIgnoresTokenLength(t *testing.T) {
	secret := strings.Repeat("s", 256<<10)
	guess := strings.Repeat("g", len(secret)) // same length as the secret, wrong
	sameLength := NewAuth(tokens(secret), nil)
	otherLength := NewAuth(tokens(secret[:16]), nil)
	req := bearer(guess)
	measure := func(a *Auth) time.Duration {
		start := time.Now()
		if _, ok := a.Identify(req); ok {
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

// TestAuthProxy: the user header counts only on a request whose own peer is a trusted proxy;
// from anywhere else, and through forwarding headers any client can write, it is ignored.
func TestAuthProxy(t *testing.T) {
	proxy := &ProxyAuth{UserHeader: "X-Forwarded-User", Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	a := NewAuth(tokens("tok"), proxy)
	req := func(remote string, headers ...string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/apps/api/suspend", nil)
		r.RemoteAddr = remote
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Add(headers[i], headers[i+1])
		}
		return r
	}
	for _, c := range []struct {
		name string
		r    *http.Request
		want string // "" for refused
	}{
		{"trusted proxy", req("10.1.2.3:5555", "X-Forwarded-User", "alice"), "alice"},
		{"trusted proxy over IPv6", req("[::1]:5555", "X-Forwarded-User", "alice"), "alice"},
		{"trusted proxy, IPv4-mapped", req("[::ffff:10.1.2.3]:5555", "X-Forwarded-User", "alice"), "alice"},
		{"header name in other case", req("10.1.2.3:5555", "x-forwarded-user", "alice"), "alice"},
		{"untrusted address", req("192.0.2.7:5555", "X-Forwarded-User", "alice"), ""},
		{"untrusted address claiming a trusted one", req("192.0.2.7:5555", "X-Forwarded-User", "alice", "X-Forwarded-For", "10.1.2.3", "X-Real-IP", "10.1.2.3"), ""},
		{"trusted proxy without the header", req("10.1.2.3:5555"), ""},
		{"trusted proxy, empty user", req("10.1.2.3:5555", "X-Forwarded-User", ""), ""},
		{"trusted proxy, two users", req("10.1.2.3:5555", "X-Forwarded-User", "alice", "X-Forwarded-User", "mallory"), ""},
		{"trusted proxy, control character", req("10.1.2.3:5555", "X-Forwarded-User", "alice\x1b[31m"), ""},
		{"trusted proxy, overlong user", req("10.1.2.3:5555", "X-Forwarded-User", strings.Repeat("a", MaxUserName+1)), ""},
		{"trusted proxy, a wrong token wins over the header", req("10.1.2.3:5555", "X-Forwarded-User", "alice", "Authorization", "Bearer nope"), ""},
		{"trusted proxy, a good token names its holder", req("10.1.2.3:5555", "X-Forwarded-User", "alice", "Authorization", "Bearer tok"), "token-a"},
		{"malformed peer", req("nonsense", "X-Forwarded-User", "alice"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, ok := a.Identify(c.r)
			if got := map[bool]string{true: id.Name, false: ""}[ok]; got != c.want {
				t.Fatalf("Identify = %+v %v, want %q", id, ok, c.want)
			}
		})
	}
	// Without a proxy configured the header is nobody.
	if _, ok := NewAuth(tokens("tok"), nil).Identify(req("10.1.2.3:5555", "X-Forwarded-User", "alice")); ok {
		t.Error("the user header authenticated with no proxy configured")
	}
}

// TestRequire: Require answers 401 with a challenge, and lets the caller through to the handler
// behind it with its identity.
func TestRequire(t *testing.T) {
	var seen Identity
	h := NewAuth(tokens("tok"), nil).Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = Caller(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, bearer("wrong"))
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" || strings.Contains(rec.Body.String(), "wrong") {
		t.Fatalf("wrong token: %d %q %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, bearer("tok"))
	if rec.Code != http.StatusNoContent || seen != (Identity{Name: "token-a", Via: ViaToken}) {
		t.Fatalf("good token: %d, caller %+v", rec.Code, seen)
	}
}
