// Package ghapptest is a fake of GitHub's App endpoints for ferry's tests, on 127.0.0.1: it
// checks the App's RS256 JSON Web Token against the App's public key as GitHub does, mints
// installation tokens, finds a repository's installation, and accepts commit statuses only with
// a live installation token. It also makes keys, PKCS#1 and PKCS#8, as GitHub hands them out.
package ghapptest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxJWTLife is the longest a JWT may live by GitHub's documentation (exp at most ten minutes
// after iat); clockSkew is how far in the future iat may be.
const (
	maxJWTLife = 10 * time.Minute
	clockSkew  = time.Minute
)

// Key is an App's key pair.
type Key struct {
	Private *rsa.PrivateKey
}

// NewKey makes a 2048-bit RSA key, the size GitHub generates.
func NewKey(t testing.TB) Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return Key{Private: k}
}

// PKCS1 is the key as GitHub's "Generate a private key" downloads it.
func (k Key) PKCS1() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.Private)})
}

// PKCS8 is the key converted with openssl pkcs8 -topk8 -nocrypt, as some secret stores hold it.
func (k Key) PKCS8(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatalf("marshal pkcs8: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Status is a commit status the fake received.
type Status struct {
	SHA, State, Context, Description string
	// Token is the installation token the request carried.
	Token string
}

// GitHub is the fake. Its fields are set before requests are made; its methods are safe for
// concurrent use.
type GitHub struct {
	// AppID, Key, InstallationID and Owner/Repo describe the one App installation it knows.
	AppID          int64
	Key            Key
	InstallationID int64
	Owner, Repo    string

	srv *httptest.Server

	mu sync.Mutex
	// now is the clock expires_at is computed from; Lifetime is how long tokens live.
	now      func() time.Time
	lifetime time.Duration
	minted   []string
	live     map[string]bool
	statuses []Status
	runs     []*CheckRun
	refusals []string
	// refuseNew makes tokens minted from now on refused at once, as if revoked.
	refuseNew bool
}

// New starts the fake for App appID with key, installed as installation on owner/repo. Tokens
// live an hour of now's clock.
func New(t testing.TB, appID int64, key Key, installation int64, owner, repo string, now func() time.Time) *GitHub {
	t.Helper()
	g := &GitHub{AppID: appID, Key: key, InstallationID: installation, Owner: owner, Repo: repo,
		now: now, lifetime: time.Hour, live: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /app", g.app)
	mux.HandleFunc("GET /api/v3/app", g.app)
	mux.HandleFunc("POST /app/installations/{id}/access_tokens", g.accessTokens)
	mux.HandleFunc("POST /api/v3/app/installations/{id}/access_tokens", g.accessTokens)
	mux.HandleFunc("GET /repos/{owner}/{repo}/installation", g.installation)
	mux.HandleFunc("GET /api/v3/repos/{owner}/{repo}/installation", g.installation)
	mux.HandleFunc("POST /repos/{owner}/{repo}/statuses/{sha}", g.status)
	mux.HandleFunc("POST /api/v3/repos/{owner}/{repo}/statuses/{sha}", g.status)
	for _, root := range []string{"", "/api/v3"} {
		mux.HandleFunc("POST "+root+"/repos/{owner}/{repo}/check-runs", g.createCheckRun)
		mux.HandleFunc("PATCH "+root+"/repos/{owner}/{repo}/check-runs/{id}", g.updateCheckRun)
		mux.HandleFunc("GET "+root+"/repos/{owner}/{repo}/commits/{ref}/check-runs", g.listCheckRuns)
	}
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

// URL is the fake's API root, as apiURL for github.com-like paths (/app, /repos/…).
func (g *GitHub) URL() string { return g.srv.URL + "/" }

// Expire makes every token minted so far refused with 401, as GitHub does once a token
// expired or its installation's tokens were revoked.
func (g *GitHub) Expire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.live)
}

// RefuseMinted makes tokens minted from now on refused at once (on) or accepted (off).
func (g *GitHub) RefuseMinted(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuseNew = on
}

// Close stops the fake before the test ends, so its address refuses connections.
func (g *GitHub) Close() { g.srv.Close() }

// Minted are the installation tokens handed out, in order.
func (g *GitHub) Minted() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.minted...)
}

// Statuses are the commit statuses accepted, in order.
func (g *GitHub) Statuses() []Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Status(nil), g.statuses...)
}

// Refusals say why requests were refused, in order, for test failure messages.
func (g *GitHub) Refusals() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.refusals...)
}

// Live reports whether tok is an installation token the fake accepts now.
func (g *GitHub) Live(tok string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live[tok]
}

func (g *GitHub) refuse(w http.ResponseWriter, code int, why string) {
	g.mu.Lock()
	g.refusals = append(g.refusals, why)
	g.mu.Unlock()
	writeJSON(w, code, map[string]string{"message": why, "documentation_url": "https://docs.github.com/rest"})
}

func (g *GitHub) app(w http.ResponseWriter, r *http.Request) {
	if why := g.checkJWT(r); why != "" {
		g.refuse(w, http.StatusUnauthorized, why)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": g.AppID, "slug": "ferry", "name": "ferry"})
}

func (g *GitHub) installation(w http.ResponseWriter, r *http.Request) {
	if why := g.checkJWT(r); why != "" {
		g.refuse(w, http.StatusUnauthorized, why)
		return
	}
	if r.PathValue("owner") != g.Owner || r.PathValue("repo") != g.Repo {
		g.refuse(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": g.InstallationID, "app_id": g.AppID})
}

func (g *GitHub) accessTokens(w http.ResponseWriter, r *http.Request) {
	if why := g.checkJWT(r); why != "" {
		g.refuse(w, http.StatusUnauthorized, why)
		return
	}
	if r.PathValue("id") != strconv.FormatInt(g.InstallationID, 10) {
		g.refuse(w, http.StatusNotFound, "Not Found")
		return
	}
	var b [20]byte
	_, _ = rand.Read(b[:])
	tok := "ghs_" + hex.EncodeToString(b[:])
	g.mu.Lock()
	g.minted = append(g.minted, tok)
	g.live[tok] = !g.refuseNew
	expires := g.now().Add(g.lifetime).UTC().Truncate(time.Second)
	g.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"token": tok, "expires_at": expires.Format(time.RFC3339),
		"permissions":          map[string]string{"contents": "read", "statuses": "write", "checks": "write", "metadata": "read"},
		"repository_selection": "selected",
	})
}

// status takes a commit status as POST /repos/{owner}/{repo}/statuses/{sha} does, with
// "Authorization: Bearer <token>" or the older "token <token>".
func (g *GitHub) status(w http.ResponseWriter, r *http.Request) {
	tok, ok := InstallationToken(r.Header.Get("Authorization"))
	if !ok || !g.Live(tok) {
		g.refuse(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if r.PathValue("owner") != g.Owner || r.PathValue("repo") != g.Repo {
		g.refuse(w, http.StatusNotFound, "Not Found")
		return
	}
	var body struct {
		State, Context, Description string
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.State == "" {
		g.refuse(w, http.StatusUnprocessableEntity, "Invalid request")
		return
	}
	g.mu.Lock()
	g.statuses = append(g.statuses, Status{SHA: r.PathValue("sha"), State: body.State, Context: body.Context, Description: body.Description, Token: tok})
	g.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"id": 1, "state": body.State, "context": body.Context})
}

// InstallationToken reads an Authorization header of the two forms GitHub accepts for an
// installation token.
func InstallationToken(h string) (string, bool) {
	for _, p := range []string{"Bearer ", "token "} {
		if t, ok := strings.CutPrefix(h, p); ok && t != "" {
			return t, true
		}
	}
	return "", false
}

// checkJWT verifies the App's JWT as GitHub documents it: RS256 over header.payload with the
// App's public key, iss the App's id, iat not in the future (beyond clock skew), exp after now
// and at most ten minutes after iat. It returns why it refuses, or "". The JWT is checked
// against the wall clock, as GitHub's is.
func (g *GitHub) checkJWT(r *http.Request) string {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "A JSON web token could not be decoded"
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "A JSON web token could not be decoded"
	}
	var header struct{ Alg, Typ string }
	if err := decodeSegment(parts[0], &header); err != nil || header.Alg != "RS256" {
		return "'alg' must be RS256"
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "A JSON web token could not be decoded"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&g.Key.Private.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return "A JSON web token could not be decoded"
	}
	var claims struct {
		Iss json.RawMessage `json:"iss"`
		Iat int64           `json:"iat"`
		Exp int64           `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "A JSON web token could not be decoded"
	}
	iss := strings.Trim(string(claims.Iss), `"`)
	if iss != strconv.FormatInt(g.AppID, 10) {
		return fmt.Sprintf("'Issuer' claim ('iss') must be an Integer or String of the App ID (got %s)", iss)
	}
	now := time.Now()
	iat, exp := time.Unix(claims.Iat, 0), time.Unix(claims.Exp, 0)
	switch {
	case claims.Iat == 0 || iat.After(now.Add(clockSkew)):
		return "'Issued at' claim ('iat') must be an Integer representing a time in the past"
	case claims.Exp == 0 || !exp.After(now):
		return "'Expiration time' claim ('exp') must be a numeric value representing the future time"
	case exp.Sub(iat) > maxJWTLife:
		return "'Expiration time' claim ('exp') is too far in the future"
	}
	return ""
}

func decodeSegment(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
