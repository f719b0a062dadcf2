package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// With ReadAuth, the read API and the pages need a token, a session or the proxy's user;
// health, readiness, metrics, the sign-in page and the assets stay open.
func TestReadAuth(t *testing.T) {
	ts := dashServer(t, &fakeSteering{}, func(c *Config) { c.ReadAuth = true })
	get := func(path string, set func(*http.Request)) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if set != nil {
			set(req)
		}
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	for _, p := range []string{"/api/v1/apps", "/api/v1/apps/api", "/api/v1/syncs/0abc", "/api/v1/events", "/api/v1/syncs/0abc/events"} {
		resp := get(p, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
			resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s without credentials: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp := get(p, bearer("not-the-token")); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d", p, resp.StatusCode)
		}
	}
	if resp := get("/api/v1/apps", bearer(dashToken)); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/apps with the token: %d", resp.StatusCode)
	}
	if resp := get("/api/v1/apps", func(r *http.Request) { r.Header.Set("X-Forwarded-User", "alice") }); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/apps as the proxy's user: %d", resp.StatusCode)
	}
	for _, p := range []string{"/", "/apps/api", "/syncs/0abc?x=1", "/syncs/0abc/diff"} {
		resp := get(p, nil)
		want := "/login?next=" + url.QueryEscape(p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("GET %s without a session: %d to %q, want 303 to %q", p, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	cookie := signIn(t, ts, dashToken)
	if code, body := getWith(t, ts, "/apps/api", cookie); code != http.StatusOK || !strings.Contains(body, "apps/api") {
		t.Errorf("GET /apps/api signed in: %d", code)
	}
	if code, _ := getWith(t, ts, "/api/v1/apps", cookie); code != http.StatusOK {
		t.Errorf("GET /api/v1/apps with the session (the pages' event streams): %d", code)
	}
	for _, p := range []string{"/healthz", "/metrics", "/login", "/static/ferry.css"} {
		if resp := get(p, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without credentials: %d, want it open", p, resp.StatusCode)
		}
	}

	open := dashServer(t, &fakeSteering{}, nil)
	if code, _ := getWith(t, open, "/api/v1/apps", nil); code != http.StatusOK {
		t.Errorf("without ReadAuth the read API is closed: %d", code)
	}
}
