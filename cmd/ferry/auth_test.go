package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/handlers"
)

// TestAPIAuthFromConfig: the write API's authentication as ferry.yaml configures it: each token
// known by its name (or its variable's), and the proxy's user believed only from its addresses.
func TestAPIAuthFromConfig(t *testing.T) {
	doc := strings.Replace(validConfig, "apiTokens: [{env: API_TOKEN}]", `apiTokens:
  - {env: API_TOKEN}
  - {env: CI_TOKEN, name: ci}
authProxy:
  userHeader: X-Auth-Request-User
  trustedProxies: [10.8.0.0/16, "fd00::7"]
`, 1)
	doc = strings.ReplaceAll(doc, "token: {file: TOKEN_FILE}", "")
	cfg, sec, err := ParseConfig([]byte(doc), env(map[string]string{"HOOK_SECRET": "s3cret", "API_TOKEN": "tok-1", "CI_TOKEN": "tok-2"}))
	if err != nil {
		t.Fatal(err)
	}
	auth := apiAuth(cfg, sec)
	req := func(remote, header, value string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/apps/api/suspend", nil)
		r.RemoteAddr = remote
		if header != "" {
			r.Header.Set(header, value)
		}
		return r
	}
	for _, c := range []struct {
		name string
		r    *http.Request
		want handlers.Identity
		ok   bool
	}{
		{"unnamed token", req("192.0.2.1:1", "Authorization", "Bearer tok-1"), handlers.Identity{Name: "API_TOKEN", Via: handlers.ViaToken}, true},
		{"named token", req("192.0.2.1:1", "Authorization", "Bearer tok-2"), handlers.Identity{Name: "ci", Via: handlers.ViaToken}, true},
		{"proxy user", req("10.8.3.4:1", "X-Auth-Request-User", "alice"), handlers.Identity{Name: "alice", Via: handlers.ViaProxy}, true},
		{"proxy over IPv6", req("[fd00::7]:1", "X-Auth-Request-User", "alice"), handlers.Identity{Name: "alice", Via: handlers.ViaProxy}, true},
		{"user header from elsewhere", req("10.9.0.1:1", "X-Auth-Request-User", "alice"), handlers.Identity{}, false},
		{"another proxy's header", req("10.8.3.4:1", "X-Forwarded-User", "alice"), handlers.Identity{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, ok := auth.Identify(c.r)
			if ok != c.ok || id != c.want {
				t.Errorf("Identify = %+v %v, want %+v %v", id, ok, c.want, c.ok)
			}
		})
	}
}
