package source

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/syncer/ghapp"
	"github.com/ferrygitops/ferry/syncer/ghapp/ghapptest"
	"github.com/ferrygitops/ferry/test/gitserver"
)

var _ Credentials = (*ghapp.App)(nil)

// githubGit puts GitHub's rule for installation tokens over Git in front of a real Git server:
// basic auth with user x-access-token and a live installation token as the password, 401
// otherwise. It records the user names it saw.
func githubGit(t *testing.T, srv *gitserver.Server, gh *ghapptest.GitHub) (string, func() []string) {
	t.Helper()
	target, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var users []string
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		mu.Lock()
		users = append(users, user)
		mu.Unlock()
		if !ok || user != "x-access-token" || !gh.Live(pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
			http.Error(w, "Invalid username or token.", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), users...)
	}
}

// TestFetchWithAppToken: a repository authenticated as a GitHub App clones and fetches over
// real Git HTTP with the installation token as x-access-token's password; when GitHub stops
// accepting the token (revoked, expired on its clock) the fetch mints a new one and succeeds.
func TestFetchWithAppToken(t *testing.T) {
	key := ghapptest.NewKey(t)
	gh := ghapptest.New(t, 11, key, 22, "acme", "platform", time.Now)
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/platform")
	first := gr.Commit(t, "main", "first", map[string]string{"apps/a/x.yaml": "x: 1\n"})
	front, users := githubGit(t, srv, gh)
	app, err := ghapp.New(ghapp.Config{Repo: "platform", AppID: 11, InstallationID: 22, PrivateKey: key.PKCS1(), APIURL: gh.URL(), Owner: "acme", Name: "platform"}, ghapp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	repo := Repo{Name: "platform", URL: front + "/acme/platform.git", Provider: "github", Credentials: app}
	c := newCache(t, t.TempDir())
	if err := c.Fetch(t.Context(), repo, first, "main"); err != nil {
		t.Fatalf("first fetch: %v (users %v)", err, users())
	}
	if got := readFile(t, mustFiles(t, c, repo, first), "apps/a/x.yaml"); got != "x: 1\n" {
		t.Errorf("x.yaml = %q", got)
	}

	gh.Expire()
	second := gr.Commit(t, "main", "second", map[string]string{"apps/a/x.yaml": "x: 2\n"})
	if err := c.Fetch(t.Context(), repo, second, "main"); err != nil {
		t.Fatalf("fetch after the token expired: %v", err)
	}
	head, err := c.Head(t.Context(), repo, "main")
	if err != nil || head != second {
		t.Errorf("Head = %s, %v; want %s", head, err, second)
	}
	if n := len(gh.Minted()); n != 2 {
		t.Errorf("minted %d tokens, want 2 (one renewal after the 401)", n)
	}
	for _, u := range users() {
		if u != "x-access-token" && u != "" {
			t.Errorf("git sent user %q, want x-access-token", u)
		}
	}
}

// fixedCredentials hands out tokens in turn and records refusals.
type fixedCredentials struct {
	tokens  []string
	err     error
	refused []string
}

func (f *fixedCredentials) Token(context.Context) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	return f.tokens[min(len(f.refused), len(f.tokens)-1)], nil
}

func (f *fixedCredentials) Refused(tok string) { f.refused = append(f.refused, tok) }

// TestCredentialErrors: a token source's error keeps its class, a refused token is tried once
// more with the next and no further, and no token reaches an error message.
func TestCredentialErrors(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/private")
	sha := gr.Commit(t, "main", "first", map[string]string{"a/x.yaml": "x: 1\n"})
	srv.RequireToken("good-token-value")

	t.Run("refused twice", func(t *testing.T) {
		cred := &fixedCredentials{tokens: []string{"old-token-value", "newer-token-value"}}
		err := newCache(t, t.TempDir()).Fetch(t.Context(), Repo{Name: "private", URL: gr.CloneURL(), Provider: "github", Credentials: cred}, sha, "main")
		if err == nil || IsTransient(err) {
			t.Fatalf("Fetch = %v, want a permanent authentication error", err)
		}
		if len(cred.refused) != 1 || cred.refused[0] != "old-token-value" {
			t.Errorf("refused %v, want the first token once", cred.refused)
		}
		if strings.Contains(err.Error(), "token-value") {
			t.Errorf("error quotes a token: %v", err)
		}
	})
	t.Run("refused then accepted", func(t *testing.T) {
		cred := &fixedCredentials{tokens: []string{"old-token-value", "good-token-value"}}
		if err := newCache(t, t.TempDir()).Fetch(t.Context(), Repo{Name: "private", URL: gr.CloneURL(), Provider: "github", Credentials: cred}, sha, "main"); err != nil {
			t.Fatal(err)
		}
	})
	for _, tt := range []struct {
		name      string
		transient bool
	}{
		{"wrong installation", false},
		{"github unreachable", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cred := &fixedCredentials{err: appError(t, tt.transient)}
			err := newCache(t, t.TempDir()).Fetch(t.Context(), Repo{Name: "private", URL: gr.CloneURL(), Credentials: cred}, sha, "main")
			if err == nil {
				t.Fatal("Fetch succeeded without a token")
			}
			if got := IsTransient(err); got != tt.transient {
				t.Errorf("IsTransient(%v) = %v, want %v", err, got, tt.transient)
			}
		})
	}
}

// appError is a real App's error of the wanted class: a wrong installation (404, permanent) or
// GitHub unreachable (transient).
func appError(t *testing.T, transient bool) error {
	t.Helper()
	key := ghapptest.NewKey(t)
	gh := ghapptest.New(t, 11, key, 22, "acme", "private", time.Now)
	installation := int64(23) // not the fake's: 404, permanent
	if transient {
		installation = 22
		gh.Close()
	}
	app, err := ghapp.New(ghapp.Config{Repo: "private", AppID: 11, InstallationID: installation, PrivateKey: key.PKCS1(), APIURL: gh.URL(), Owner: "acme", Name: "private"}, ghapp.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.Token(t.Context())
	if err == nil {
		t.Fatal("Token succeeded")
	}
	return err
}
