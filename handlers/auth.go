package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"unicode"
)

// MaxUserName bounds the user name an authenticating proxy may pass; a longer one, or one
// holding control characters, is refused (401).
const MaxUserName = 256

// Token is an API token and the name that logs and suspensions know its holder by (never the
// token itself).
type Token struct {
	Name  string
	Value []byte
}

// ProxyAuth trusts an authenticating proxy in front of ferry (oauth2-proxy, an ingress with
// single sign-on): a request that comes straight from one of Trusted, carrying UserHeader, is
// made by that user. The header of a request from any other address is ignored, so that nobody
// can name themselves.
type ProxyAuth struct {
	// UserHeader names the header holding the authenticated user, e.g. X-Forwarded-User.
	UserHeader string
	// Trusted are the proxies' addresses. Only the connection's own peer address counts, never
	// X-Forwarded-For or X-Real-IP, which any client can write.
	Trusted []netip.Prefix
}

// Via says how a caller was authenticated.
type Via string

const (
	ViaToken Via = "token"
	ViaProxy Via = "proxy"
	// ViaDashboard is a person signed in to the dashboard (with a token, or through the proxy).
	ViaDashboard Via = "dashboard"
)

// Identity is who made an API request: a token's name or the proxy's user.
type Identity struct {
	Name string
	Via  Via
}

// Auth authenticates the write API (manual sync, suspend, resume) and anything else, such as
// the dashboard, that must know who asks: a bearer token, compared in constant time, or an
// authenticating proxy's user header. With no token and no proxy it refuses everything: nothing
// configured never means open.
type Auth struct {
	names   []string
	digests [][sha256.Size]byte // digests of the tokens, never the tokens
	proxy   *ProxyAuth
}

// NewAuth returns the authenticator of tokens (empty ones are dropped) and, when proxy is not
// nil, of proxy's users.
func NewAuth(tokens []Token, proxy *ProxyAuth) *Auth {
	a := &Auth{}
	for _, t := range tokens {
		if len(t.Value) > 0 {
			a.names = append(a.names, t.Name)
			a.digests = append(a.digests, sha256.Sum256(t.Value))
		}
	}
	if proxy != nil && proxy.UserHeader != "" && len(proxy.Trusted) > 0 {
		a.proxy = proxy
	}
	return a
}

// Identify returns who made r. A request with an Authorization header is judged by its token
// alone, whoever forwarded it; one without is the proxy's user when it comes from a trusted
// proxy with the user header.
func (a *Auth) Identify(r *http.Request) (Identity, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		return a.token(h)
	}
	return a.proxyUser(r)
}

// token compares the bearer token with every configured one in constant time, lengths
// included: it compares fixed-length digests of both sides (the configured ones computed once),
// so the time a refusal takes says nothing about a token's length or content, nor which token
// matched.
func (a *Auth) token(header string) (Identity, bool) {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return Identity{}, false
	}
	return a.tokenIdentity(tok)
}

// TokenUser returns the name of tok when it is one of the API tokens, compared as a bearer
// token is: the dashboard's sign-in.
func (a *Auth) TokenUser(tok string) (string, bool) {
	id, ok := a.tokenIdentity(tok)
	return id.Name, ok
}

// ProxyUser returns the user a trusted authenticating proxy names on r: the dashboard's
// sessions of proxy users.
func (a *Auth) ProxyUser(r *http.Request) (string, bool) {
	id, ok := a.proxyUser(r)
	return id.Name, ok
}

func (a *Auth) tokenIdentity(tok string) (Identity, bool) {
	if tok == "" {
		return Identity{}, false
	}
	got := sha256.Sum256([]byte(tok))
	match, which := 0, 0
	for i, want := range a.digests {
		eq := subtle.ConstantTimeCompare(got[:], want[:])
		which = subtle.ConstantTimeSelect(eq, i, which)
		match |= eq
	}
	if match != 1 {
		return Identity{}, false
	}
	return Identity{Name: a.names[which], Via: ViaToken}, true
}

func (a *Auth) proxyUser(r *http.Request) (Identity, bool) {
	if a.proxy == nil {
		return Identity{}, false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return Identity{}, false
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return Identity{}, false
	}
	peer = peer.Unmap()
	trusted := false
	for _, p := range a.proxy.Trusted {
		if p.Contains(peer) {
			trusted = true
			break
		}
	}
	if !trusted {
		return Identity{}, false
	}
	users := r.Header.Values(a.proxy.UserHeader)
	if len(users) != 1 || !validUser(users[0]) {
		return Identity{}, false
	}
	return Identity{Name: users[0], Via: ViaProxy}, true
}

// validUser accepts a non-empty, bounded user name without control characters.
func validUser(u string) bool {
	if u == "" || len(u) > MaxUserName || strings.TrimSpace(u) != u {
		return false
	}
	for _, c := range u {
		if unicode.IsControl(c) || c == unicode.ReplacementChar {
			return false
		}
	}
	return true
}

type callerKey struct{}

// Require serves next only to authenticated requests, which then carry their Identity (see
// Caller); others get 401 with a WWW-Authenticate challenge.
func (a *Auth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := a.Identify(r)
		if !ok {
			unauthorized(w)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), id)))
	})
}

// WithCaller returns ctx carrying id, as Require leaves it for the handlers behind it.
func WithCaller(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// Caller returns who made the request whose context ctx is, if Require let it through.
func Caller(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(callerKey{}).(Identity)
	return id, ok
}

// unauthorized answers a request that is not authenticated.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required"})
}
