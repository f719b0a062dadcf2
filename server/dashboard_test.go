package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/queue"
)

const dashToken = "dashboard-test-token"

// fakeSteering records what the buttons asked, with function fields for the answers.
type fakeSteering struct {
	sync    func(app, revision string, force bool, by string) (string, error)
	suspend func(app, by, reason string) error
	resume  func(app, by string) (string, error)
	sus     map[string]queue.Suspension
}

func (f *fakeSteering) Sync(_ context.Context, app, revision string, force bool, by string) (string, error) {
	return f.sync(app, revision, force, by)
}
func (f *fakeSteering) Suspend(_ context.Context, app, by, reason string) error {
	return f.suspend(app, by, reason)
}
func (f *fakeSteering) Resume(_ context.Context, app, by string) (string, error) {
	return f.resume(app, by)
}

// fakeSuspensions is the suspension store the dashboard reads, by app.
type fakeSuspensions map[string]queue.Suspension

func (f fakeSuspensions) Get(_ context.Context, app string) (queue.Suspension, error) {
	return f[app], nil
}
func (f fakeSuspensions) List(context.Context) (map[string]queue.Suspension, error) { return f, nil }

var _ Steering = (*fakeSteering)(nil)

func dashServer(t *testing.T, st *fakeSteering, mod func(*Config)) *httptest.Server {
	t.Helper()
	users := handlers.NewAuth([]handlers.Token{{Name: "ci", Value: []byte(dashToken)}},
		&handlers.ProxyAuth{UserHeader: "X-Forwarded-User", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	failed := sampleRecord()
	ok := sampleRecord()
	ok.ID, ok.App, ok.State, ok.Error, ok.Message = "0def", "db", queue.StateSucceeded, nil, ""
	records := fakeRecords{
		get: func(_ context.Context, id string) (queue.Record, error) {
			return queue.Record{}, fmt.Errorf("sync %s: %w", id, queue.ErrNotFound)
		},
		history: func(_ context.Context, app string, _ int) ([]queue.Record, error) {
			switch app {
			case "api":
				return []queue.Record{failed}, nil
			case "db":
				return []queue.Record{ok}, nil
			}
			return nil, nil
		},
	}
	cfg := Config{Records: records, Steering: st, Suspensions: fakeSuspensions(st.sus), Users: users, SessionKey: SessionKey([]byte(dashToken)),
		Apps: []AppInfo{
			{Name: "api", Repo: "platform", Path: "apps/api", Branch: "main", DependsOn: []string{"db"}},
			{Name: "db", Repo: "data", Path: "apps/db", Namespace: "database", Branch: "main"},
			{Name: "web", Repo: "platform", Path: "apps/web", Branch: "main", DependsOn: []string{"api"}},
		}}
	if mod != nil {
		mod(&cfg)
	}
	ts := httptest.NewServer(New(cfg).Routes())
	t.Cleanup(ts.Close)
	return ts
}

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func postForm(t *testing.T, ts *httptest.Server, path string, form url.Values, origin string, cookie *http.Cookie) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func getWith(t *testing.T, ts *httptest.Server, path string, cookie *http.Cookie) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+path, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// signIn posts the token and returns the session cookie.
func signIn(t *testing.T, ts *httptest.Server, token string) *http.Cookie {
	t.Helper()
	resp, body := postForm(t, ts, "/login", url.Values{"token": {token}, "next": {"/apps/api"}}, ts.URL, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/apps/api" {
		t.Fatalf("sign-in: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	t.Fatal("sign-in set no session cookie")
	return nil
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, ts *httptest.Server, c *http.Cookie) string {
	t.Helper()
	_, body := getWith(t, ts, "/apps/api", c)
	m := csrfInput.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the signed-in app page carries no CSRF token:\n%s", body)
	}
	return m[1]
}

func TestSignIn(t *testing.T) {
	ts := dashServer(t, &fakeSteering{}, func(c *Config) { c.ExternalURL = "https://ferry.example.com" })

	resp, body := postForm(t, ts, "/login", url.Values{"token": {"not-the-token"}}, ts.URL, nil)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "is not one of ferry") {
		t.Errorf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if strings.Contains(body, "not-the-token") {
		t.Error("the refused token is shown back on the page")
	}
	resp, _ = postForm(t, ts, "/login", url.Values{"token": {""}}, ts.URL, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("empty token: %d, want 401", resp.StatusCode)
	}
	resp, _ = postForm(t, ts, "/login", url.Values{"token": {dashToken}}, "https://evil.example", nil)
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-origin sign-in: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	c := signIn(t, ts, dashToken)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || !c.Secure || c.MaxAge != int(SessionLifetime.Seconds()) {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, Secure (external URL is https), Max-Age %v", c, SessionLifetime)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(c.Value, ".")[0])
	if strings.Contains(c.Value, dashToken) || strings.Contains(string(raw), dashToken) {
		t.Error("the session cookie holds the token")
	}
	_, body = getWith(t, ts, "/", c)
	if !strings.Contains(body, "signed in as") {
		t.Error("the dashboard does not say who is signed in")
	}
	// A redirect after sign-in stays on ferry.
	resp, _ = postForm(t, ts, "/login", url.Values{"token": {dashToken}, "next": {"//evil.example/x"}}, ts.URL, nil)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Errorf("next=//evil.example/x redirected to %q, want /", loc)
	}
}

func TestSessionTamperingRefused(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clock := &now
	ts := dashServer(t, &fakeSteering{}, func(c *Config) { c.Now = func() time.Time { return *clock } })
	c := signIn(t, ts, dashToken)
	signedIn := func(c *http.Cookie) bool {
		_, body := getWith(t, ts, "/apps/api", c)
		return strings.Contains(body, "signed in as")
	}
	if !signedIn(c) {
		t.Fatal("a fresh session is not accepted")
	}
	body, sig, _ := strings.Cut(c.Value, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(body)
	forged := strings.Replace(string(raw), `"u":"ci"`, `"u":"admin"`, 1)
	if forged == string(raw) {
		t.Fatalf("session payload %s does not name its user as expected", raw)
	}
	otherKey := New(Config{SessionKey: SessionKey([]byte("another-token"))})
	otherBody := base64.RawURLEncoding.EncodeToString(raw)
	for name, value := range map[string]string{
		"changed payload, old signature": base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + sig,
		"no signature":                   body,
		"empty signature":                body + ".",
		"signature cut short":            body + "." + sig[:10],
		"signed with another key":        otherBody + "." + base64.RawURLEncoding.EncodeToString(otherKey.sign("session", otherBody)),
		"csrf token as signature":        body + "." + base64.RawURLEncoding.EncodeToString(otherKey.sign("csrf", body)),
	} {
		if signedIn(&http.Cookie{Name: SessionCookie, Value: value}) {
			t.Errorf("%s: accepted", name)
		}
	}
	later := now.Add(SessionLifetime + time.Second)
	clock = &later
	if signedIn(c) {
		t.Error("an expired session is accepted")
	}
}

func TestActionsNeedSessionOriginAndCSRF(t *testing.T) {
	var asked []string
	st := &fakeSteering{sync: func(app, revision string, force bool, by string) (string, error) {
		asked = append(asked, fmt.Sprintf("%s@%s force=%v by=%s", app, revision, force, by))
		return "0new", nil
	}}
	ts := dashServer(t, st, nil)
	c := signIn(t, ts, dashToken)
	token := csrfOf(t, ts, c)
	_, page := getWith(t, ts, "/apps/api", c)
	if !strings.Contains(page, `action="/apps/api/sync"`) || !strings.Contains(page, `action="/apps/api/suspend"`) {
		t.Errorf("the signed-in app page lacks its sync and suspend forms")
	}
	_, page = getWith(t, ts, "/apps/api", nil)
	if strings.Contains(page, `action="/apps/api/sync"`) || !strings.Contains(page, "Sign in</a> with an API token") {
		t.Errorf("an anonymous app page offers the sync form, or no sign-in")
	}
	otherSession := signIn(t, ts, dashToken)

	for _, tc := range []struct {
		name   string
		form   url.Values
		origin string
		cookie *http.Cookie
	}{
		{"no session", url.Values{"csrf": {token}}, ts.URL, nil},
		{"no csrf token", url.Values{}, ts.URL, c},
		{"wrong csrf token", url.Values{"csrf": {"AAAA" + token[4:]}}, ts.URL, c},
		{"another session's csrf token", url.Values{"csrf": {csrfOf(t, ts, otherSession)}}, ts.URL, c},
		{"cross-origin", url.Values{"csrf": {token}}, "https://evil.example", c},
		{"origin null", url.Values{"csrf": {token}}, "null", c},
		{"no origin nor referer", url.Values{"csrf": {token}}, "", c},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := postForm(t, ts, "/apps/api/sync", tc.form, tc.origin, tc.cookie)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403\n%s", resp.StatusCode, body)
			}
		})
	}
	if len(asked) != 0 {
		t.Fatalf("refused requests reached the steering: %v", asked)
	}
	resp, _ := postForm(t, ts, "/apps/api/sync", url.Values{"csrf": {token}, "revision": {"v1.2.0"}}, ts.URL, c)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/syncs/0new" {
		t.Errorf("sync: %d → %s, want 303 → /syncs/0new", resp.StatusCode, resp.Header.Get("Location"))
	}
	if len(asked) != 1 || asked[0] != "api@v1.2.0 force=false by=ci" {
		t.Errorf("steering asked %v", asked)
	}
	// A same-origin Referer stands in for a missing Origin.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/apps/api/sync", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Referer", ts.URL+"/apps/api")
	req.AddCookie(c)
	if r, err := noRedirects.Do(req); err != nil || r.StatusCode != http.StatusSeeOther {
		t.Errorf("same-origin Referer: %v %v", r.StatusCode, err)
	}
	// Sign-out needs the token too, then the session is gone from the browser.
	if resp, _ := postForm(t, ts, "/logout", url.Values{}, ts.URL, c); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without csrf: %d, want 403", resp.StatusCode)
	}
	resp, _ = postForm(t, ts, "/logout", url.Values{"csrf": {token}}, ts.URL, c)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("sign-out: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}

func TestActionErrorsShown(t *testing.T) {
	st := &fakeSteering{
		sync: func(app, _ string, force bool, _ string) (string, error) {
			if !force {
				return "", fmt.Errorf("sync %s: %w", app, ErrSuspended)
			}
			return "0forced", nil
		},
		suspend: func(string, string, string) error { return ErrUnavailable },
		resume:  func(string, string) (string, error) { return "", fmt.Errorf("%w: branch gone", ErrRefused) },
		sus:     map[string]queue.Suspension{"api": {App: "api", Suspended: true, By: "ops", Reason: "incident 42", At: time.Now()}},
	}
	ts := dashServer(t, st, nil)
	c := signIn(t, ts, dashToken)
	token := csrfOf(t, ts, c)
	_, page := getWith(t, ts, "/apps/api", c)
	if !strings.Contains(page, "incident 42") || !strings.Contains(page, `action="/apps/api/resume"`) || !strings.Contains(page, `name="force"`) {
		t.Errorf("a suspended app's page lacks its reason, the resume form or the force box")
	}
	for _, tc := range []struct {
		path string
		form url.Values
		code int
		say  string
	}{
		{"/apps/api/sync", url.Values{}, http.StatusConflict, "suspended"},
		{"/apps/api/sync", url.Values{"force": {"on"}}, http.StatusSeeOther, ""},
		{"/apps/api/suspend", url.Values{"reason": {"x"}}, http.StatusNotImplemented, "not available in this build"},
		{"/apps/api/resume", url.Values{}, http.StatusBadRequest, "branch gone"},
		{"/apps/nope/sync", url.Values{}, http.StatusNotFound, "nope"},
		{"/apps/api/sync", url.Values{"revision": {strings.Repeat("a", maxRevision+1)}}, http.StatusBadRequest, "too long"},
	} {
		tc.form.Set("csrf", token)
		resp, body := postForm(t, ts, tc.path, tc.form, ts.URL, c)
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.say) {
			t.Errorf("%s %v: %d, want %d saying %q\n%s", tc.path, tc.form, resp.StatusCode, tc.code, tc.say, body)
		}
	}
	resp, _ := postForm(t, ts, "/apps/api/sync", url.Values{"csrf": {token}, "revision": {strings.Repeat("a", MaxFormBytes)}}, ts.URL, c)
	if resp.StatusCode != http.StatusRequestEntityTooLarge && resp.StatusCode != http.StatusForbidden {
		t.Errorf("oversize form: %d, want 413 or 403", resp.StatusCode)
	}
}

func TestProxyUser(t *testing.T) {
	var by string
	st := &fakeSteering{sync: func(_, _ string, _ bool, b string) (string, error) { by = b; return "0p", nil }}
	ts := dashServer(t, st, nil)
	get := func(user string) string {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/apps/api", nil)
		if user != "" {
			req.Header.Set("X-Forwarded-User", user)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	page := get("alice@example.com")
	m := csrfInput.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "alice@example.com") || strings.Contains(page, `action="/logout"`) {
		t.Fatalf("proxy user's page: no CSRF token, no name, or a sign-out ferry cannot do")
	}
	post := func(user, csrf string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/apps/api/sync", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", ts.URL)
		if user != "" {
			req.Header.Set("X-Forwarded-User", user)
		}
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("mallory@example.com", m[1]); code != http.StatusForbidden {
		t.Errorf("another user with alice's CSRF token: %d, want 403", code)
	}
	if code := post("", m[1]); code != http.StatusForbidden {
		t.Errorf("no proxy user: %d, want 403", code)
	}
	if code := post("alice@example.com", m[1]); code != http.StatusSeeOther || by != "alice@example.com" {
		t.Errorf("alice's sync: %d by %q", code, by)
	}
	// From an address that is not the proxy's, the header means nothing.
	plain := dashServer(t, st, func(c *Config) {
		c.Users = handlers.NewAuth([]handlers.Token{{Name: "ci", Value: []byte(dashToken)}},
			&handlers.ProxyAuth{UserHeader: "X-Forwarded-User", Trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}})
	})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, plain.URL+"/apps/api", nil)
	req.Header.Set("X-Forwarded-User", "alice@example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "alice@example.com") {
		t.Error("a proxy header is trusted from an address that is not the proxy's")
	}
}

func TestAppListFilters(t *testing.T) {
	ts := dashServer(t, &fakeSteering{sus: map[string]queue.Suspension{"web": {App: "web", Suspended: true, At: time.Now()}}}, nil)
	rowApp := regexp.MustCompile(`<tr data-app="([^"]+)"`)
	for _, tc := range []struct {
		query string
		want  string
	}{
		{"", "api db web"},
		{"?state=failed", "api"},
		{"?state=succeeded", "db"},
		{"?state=never", "web"},
		{"?state=suspended", "web"},
		{"?repo=platform", "api web"},
		{"?repo=platform&state=succeeded", ""},
		{"?q=DATABASE", "db"},
		{"?q=apps%2Fw", "web"},
		{"?q=%3Cscript%3E", ""},
	} {
		code, body := getWith(t, ts, "/"+tc.query, nil)
		var got []string
		for _, m := range rowApp.FindAllStringSubmatch(body, -1) {
			got = append(got, m[1])
		}
		if code != http.StatusOK || strings.Join(got, " ") != tc.want {
			t.Errorf("%s: %d, rows %q, want %q", tc.query, code, got, tc.want)
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("%s: the filter text is not escaped", tc.query)
		}
	}
	_, body := getWith(t, ts, "/", nil)
	for _, want := range []string{`href="/syncs/0abc"><code>0123456</code>`, "⏸ suspended", "<svg", "web</a> depends on <a href=\"/apps/api\">api</a>"} {
		if !strings.Contains(body, want) {
			t.Errorf("the dashboard lacks %q", want)
		}
	}
}

func TestGraphLayout(t *testing.T) {
	apps := []AppInfo{
		{Name: "web", DependsOn: []string{"api", "cache"}},
		{Name: "api", DependsOn: []string{"db"}},
		{Name: "db"},
		{Name: "cache"},
		{Name: "worker", DependsOn: []string{"db", "gone"}},
		{Name: "a-very-long-application-name-indeed"},
	}
	g := layoutGraph(apps, func(string) string { return "succeeded" })
	layer := map[string]int{}
	for _, n := range g.Nodes {
		layer[n.Name] = n.Layer
	}
	want := map[string]int{"db": 0, "cache": 0, "a-very-long-application-name-indeed": 0, "api": 1, "worker": 1, "web": 2}
	for n, l := range want {
		if layer[n] != l {
			t.Errorf("%s in layer %d, want %d", n, layer[n], l)
		}
	}
	if len(g.Nodes) != len(apps) || len(g.Edges) != 4 {
		t.Errorf("%d nodes, %d edges; want %d, 4 (a dependency that is no app draws nothing)", len(g.Nodes), len(g.Edges), len(apps))
	}
	for i, a := range g.Nodes {
		if a.X < 0 || a.Y < 0 || a.X+a.W > g.Width || a.Y+a.H > g.Height {
			t.Errorf("%s at %d,%d lies outside %dx%d", a.Name, a.X, a.Y, g.Width, g.Height)
		}
		for _, b := range g.Nodes[i+1:] {
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("%s and %s overlap", a.Name, b.Name)
			}
		}
	}
	for _, n := range g.Nodes {
		if len([]rune(n.Label)) > graphLabelRunes {
			t.Errorf("label %q is longer than %d", n.Label, graphLabelRunes)
		}
	}
	// Every edge points right: a dependency sits left of the app that needs it.
	for _, e := range g.Edges {
		if layer[e.From] >= layer[e.To] {
			t.Errorf("edge %s → %s does not point right", e.From, e.To)
		}
	}
	// A cycle (which config validation refuses) still ends, within the apps' count of layers.
	cyc := layoutGraph([]AppInfo{{Name: "x", DependsOn: []string{"y"}}, {Name: "y", DependsOn: []string{"x"}}}, func(string) string { return "never" })
	if len(cyc.Nodes) != 2 {
		t.Errorf("cycle: %d nodes", len(cyc.Nodes))
	}
	if empty := layoutGraph(nil, nil); len(empty.Nodes) != 0 || empty.Width != 0 {
		t.Errorf("no apps: %+v", empty)
	}
}

func TestAssetsVersioned(t *testing.T) {
	ts := dashServer(t, &fakeSteering{}, nil)
	_, page := getWith(t, ts, "/", nil)
	m := regexp.MustCompile(`src="(/static/ferry\.js\?v=([0-9a-f]+))"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the page links no versioned script")
	}
	resp, err := http.Get(ts.URL + m[1])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(string(b), "EventSource") {
		t.Errorf("versioned script: %s, %s", resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Type"))
	}
	resp, err = http.Get(ts.URL + "/static/ferry.js?v=old")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Error("an old version is cached as immutable")
	}
}

func TestDiffLines(t *testing.T) {
	got := diffLines("+ ConfigMap a/b  created\n~ Service a/c  changed\n    - spec.x: 1\n    + spec.y: 2\n= Secret a/d  unchanged\n")
	want := []string{"add", "change", "del", "add", "same"}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Kind != w {
			t.Errorf("line %d %q: %s, want %s", i, got[i].Text, got[i].Kind, w)
		}
	}
}
