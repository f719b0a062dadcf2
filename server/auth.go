package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Signing in to the dashboard: a person pastes an API token once on /login; ferry checks it as
// the API does (Users) and answers with a session cookie that holds no token, only who
// signed in, until when, and a random nonce, signed with a key every replica derives alike
// (SessionKey). State-changing forms carry a CSRF token derived from the session's nonce, and
// are refused unless their Origin (or Referer) is ferry's own. An authenticating proxy in front
// of ferry may instead name the user in a header, believed only from the proxy's own addresses
// (Users.ProxyUser).
const (
	// SessionLifetime bounds a dashboard session; the person signs in again after it.
	SessionLifetime = 12 * time.Hour
	// SessionCookie is the name of the session cookie.
	SessionCookie = "ferry_session"
	// MaxFormBytes bounds the body of a dashboard form (sign-in, sync, suspend, resume).
	MaxFormBytes = 8 << 10
	// maxCookieBytes bounds a session cookie ferry reads before checking its signature.
	maxCookieBytes = 1 << 10
	// csrfField is the hidden form field that carries the CSRF token.
	csrfField = "csrf"
)

// Users tells who a person is, as the write API does (handlers.Auth is one): the name of an API
// token pasted on the sign-in page (compared in constant time), or the user an authenticating
// proxy names on a request that came from the proxy's own address.
type Users interface {
	TokenUser(token string) (name string, ok bool)
	ProxyUser(r *http.Request) (name string, ok bool)
}

// SessionKey derives the dashboard's session signing key from the configured API tokens: every
// replica with the same tokens derives the same key, so any of them accepts a session another
// signed, and changing the tokens ends every session. No tokens derive no key (no sign-in).
func SessionKey(tokens ...[]byte) []byte {
	var digests []string
	for _, t := range tokens {
		if len(t) > 0 {
			d := sha256.Sum256(t)
			digests = append(digests, string(d[:]))
		}
	}
	if len(digests) == 0 {
		return nil
	}
	sort.Strings(digests)
	mac := hmac.New(sha256.New, []byte("ferry dashboard session key v1"))
	for _, d := range digests {
		mac.Write([]byte(d))
	}
	return mac.Sum(nil)
}

// session is who is signed in. Proxy sessions come from the proxy's header on each request.
type session struct {
	User    string `json:"u"`
	Expires int64  `json:"e"`
	Nonce   string `json:"n"`
	proxy   bool
}

// errNoSession is a request that carries no valid session.
var errNoSession = errors.New("not signed in")

// sessionOf returns the request's session: the authenticating proxy's user when configured and
// present, otherwise a valid, unexpired, correctly signed session cookie.
func (s *Server) sessionOf(r *http.Request) (*session, error) {
	if len(s.cfg.SessionKey) == 0 {
		return nil, errNoSession
	}
	if s.cfg.Users != nil {
		if u, ok := s.cfg.Users.ProxyUser(r); ok {
			return &session{User: u, proxy: true}, nil
		}
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || len(c.Value) > maxCookieBytes {
		return nil, errNoSession
	}
	body, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return nil, errNoSession
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.sign("session", body)) {
		return nil, errNoSession
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, errNoSession
	}
	var sess session
	if err := json.Unmarshal(raw, &sess); err != nil || sess.Nonce == "" || sess.User == "" {
		return nil, errNoSession
	}
	if s.now().Unix() >= sess.Expires {
		return nil, errNoSession
	}
	return &sess, nil
}

// sign is the HMAC of msg under the session key, for one purpose (session, csrf, proxy).
func (s *Server) sign(purpose, msg string) []byte {
	mac := hmac.New(sha256.New, s.cfg.SessionKey)
	mac.Write([]byte(purpose))
	mac.Write([]byte{0})
	mac.Write([]byte(msg))
	return mac.Sum(nil)
}

// csrfToken is the token a session's forms carry: derived from the session's nonce (or, for a
// proxy user, the user's name), so every replica computes it and no store is needed.
func (s *Server) csrfToken(sess *session) string {
	if sess == nil {
		return ""
	}
	if sess.proxy {
		return base64.RawURLEncoding.EncodeToString(s.sign("csrf-proxy", sess.User))
	}
	return base64.RawURLEncoding.EncodeToString(s.sign("csrf", sess.Nonce))
}

// newSessionCookie signs a new session for user.
func (s *Server) newSessionCookie(r *http.Request, user string) (*http.Cookie, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	expires := s.now().Add(SessionLifetime)
	raw, err := json.Marshal(session{User: user, Expires: expires.Unix(), Nonce: base64.RawURLEncoding.EncodeToString(nonce)})
	if err != nil {
		return nil, err
	}
	body := base64.RawURLEncoding.EncodeToString(raw)
	value := body + "." + base64.RawURLEncoding.EncodeToString(s.sign("session", body))
	return &http.Cookie{Name: SessionCookie, Value: value, Path: "/", Expires: expires, MaxAge: int(SessionLifetime.Seconds()),
		HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteStrictMode}, nil
}

// secure tells whether cookies must be Secure: the request came over TLS, or ferry's external
// address is https (TLS ends at a proxy in front of it).
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(strings.ToLower(s.cfg.ExternalURL), "https://")
}

// sameOrigin tells whether a state-changing request comes from ferry's own pages: its Origin
// (or, without one, its Referer) names this host or ferry's external address. A request with
// neither is refused: every browser that can submit the forms sends Origin on a POST.
func (s *Server) sameOrigin(r *http.Request) bool {
	from := r.Header.Get("Origin")
	if from == "" || from == "null" {
		from = r.Header.Get("Referer")
	}
	if from == "" || from == "null" {
		return false
	}
	u, err := url.Parse(from)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	if ext, err := url.Parse(s.cfg.ExternalURL); err == nil && ext.Host != "" {
		return strings.EqualFold(u.Scheme, ext.Scheme) && strings.EqualFold(u.Host, ext.Host)
	}
	return false
}

// errForbidden explains a refused state-changing request.
type errForbidden string

func (e errForbidden) Error() string { return string(e) }

// checkPost admits a state-changing form: a signed-in session, ferry's own origin and the
// session's CSRF token. It returns the session, or why the request is refused.
func (s *Server) checkPost(w http.ResponseWriter, r *http.Request) (*session, error) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if !s.sameOrigin(r) {
		return nil, errForbidden("this form was not sent from ferry's own pages")
	}
	sess, err := s.sessionOf(r)
	if err != nil {
		return nil, errForbidden("sign in to do this")
	}
	if err := r.ParseForm(); err != nil {
		return nil, errForbidden("the form could not be read")
	}
	got, want := r.PostForm.Get(csrfField), s.csrfToken(sess)
	if got == "" || !hmac.Equal([]byte(got), []byte(want)) {
		return nil, errForbidden("the form's security token is missing or stale: reload the page and try again")
	}
	return sess, nil
}

// loginPage shows the sign-in form.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.sessionOf(r)
	s.renderLogin(w, r, http.StatusOK, sess, "")
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, sess *session, problem string) {
	s.render(w, r, code, "login.html", map[string]any{
		"Enabled":  len(s.cfg.SessionKey) > 0 && s.cfg.Users != nil,
		"Next":     localPath(r.FormValue("next")),
		"Problem":  problem,
		"Hours":    int(SessionLifetime.Hours()),
		"ReadAuth": s.cfg.ReadAuth,
	}, sess)
}

// login checks a pasted API token in constant time (TokenChecker) and starts a session. The
// token is neither kept, nor logged, nor shown again.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if len(s.cfg.SessionKey) == 0 || s.cfg.Users == nil {
		s.renderLogin(w, r, http.StatusNotFound, nil, "Sign-in is off: ferry has no apiTokens configured.")
		return
	}
	if !s.sameOrigin(r) {
		s.renderLogin(w, r, http.StatusForbidden, nil, "This form was not sent from ferry's own pages.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.renderLogin(w, r, http.StatusBadRequest, nil, "The form could not be read.")
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	user, ok := s.cfg.Users.TokenUser(tok)
	if !ok {
		s.cfg.Logger.Info("dashboard sign-in refused", "remote", r.RemoteAddr)
		s.renderLogin(w, r, http.StatusUnauthorized, nil, "That is not one of ferry's API tokens.")
		return
	}
	c, err := s.newSessionCookie(r, user)
	if err != nil {
		s.renderLogin(w, r, http.StatusInternalServerError, nil, "No session could be made; try again.")
		return
	}
	http.SetCookie(w, c)
	s.cfg.Logger.Info("dashboard sign-in", "user", user)
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
}

// logout ends the session: the cookie is cleared (a copy kept elsewhere stays valid until it
// expires, which SessionLifetime bounds; changing the API tokens ends every session).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if _, err := s.checkPost(w, r); err != nil {
		s.refuse(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// localPath keeps a redirect target on ferry: a path on this host, or "/".
func localPath(p string) string {
	if p == "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return p
}

// Proxy tells whether the session is an authenticating proxy's user, who signs out at the proxy.
func (s *session) Proxy() bool { return s != nil && s.proxy }

// reader tells whether r may read records and pages: always without Config.ReadAuth; with it,
// when r carries a dashboard session, comes from a trusted proxy with its user header, or holds
// one of the API tokens as a bearer token (compared in constant time, as the write API does).
func (s *Server) reader(r *http.Request) bool {
	if !s.cfg.ReadAuth {
		return true
	}
	if s.cfg.Users == nil {
		return false
	}
	if _, err := s.sessionOf(r); err == nil {
		return true
	}
	if _, ok := s.cfg.Users.ProxyUser(r); ok {
		return true
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		_, ok = s.cfg.Users.TokenUser(tok)
		return ok
	}
	return false
}

// requireReader guards the read API and its event streams (Config.ReadAuth): a request that
// is not a reader gets 401 with a bearer challenge, as the write API answers.
func (s *Server) requireReader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.reader(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
			writeError(w, http.StatusUnauthorized, "sign in, or send a valid bearer token, to read ferry's records")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireReaderPage guards the pages (Config.ReadAuth): a person who is not signed in is sent
// to the sign-in page, which brings them back to the page they asked for.
func (s *Server) requireReaderPage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.reader(r) {
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r)
	})
}
