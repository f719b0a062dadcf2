package ghapp_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/syncer/ghapp"
	"github.com/ferrygitops/ferry/syncer/ghapp/ghapptest"
)

const (
	appID        = 4242
	installation = 777
	owner, name  = "acme", "platform"
)

// clock is a settable time for token renewal.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newApp(t *testing.T, gh *ghapptest.GitHub, cfg ghapp.Config, now func() time.Time) *ghapp.App {
	t.Helper()
	if cfg.Repo == "" {
		cfg.Repo = "platform"
	}
	if cfg.APIURL == "" {
		cfg.APIURL = gh.URL()
	}
	cfg.Owner, cfg.Name = owner, name
	a, err := ghapp.New(cfg, ghapp.Options{Now: now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// TestVerifyKeys: GitHub's PKCS#1 download and its PKCS#8 conversion both sign a JWT GitHub
// accepts, with the installation configured or found from the repository.
func TestVerifyKeys(t *testing.T) {
	key := ghapptest.NewKey(t)
	c := &clock{t: time.Now()}
	gh := ghapptest.New(t, appID, key, installation, owner, name, c.Now)
	for _, tt := range []struct {
		name         string
		pem          []byte
		installation int64
	}{
		{"pkcs1 with installation", key.PKCS1(), installation},
		{"pkcs8 with installation", key.PKCS8(t), installation},
		{"pkcs1, installation found", key.PKCS1(), 0},
		{"pkcs8, installation found", key.PKCS8(t), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, gh, ghapp.Config{AppID: appID, InstallationID: tt.installation, PrivateKey: tt.pem}, c.Now)
			if err := a.Verify(t.Context()); err != nil {
				t.Fatalf("Verify: %v (fake refused: %v)", err, gh.Refusals())
			}
			tok, err := a.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !gh.Live(tok) {
				t.Errorf("token %q is not one the fake minted", tok)
			}
		})
	}
}

// TestBadKeysRefused: what is not an RSA private key of GitHub's size is refused before any
// request, with a message naming the repository and none of the key.
func TestBadKeysRefused(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := ghapptest.NewKey(t).PKCS1()
	corrupt := bytes.Replace(good, []byte("\n"), []byte("\nAAAA"), 3)
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&small.PublicKey)})
	for _, tt := range []struct {
		name string
		key  []byte
		want string
	}{
		{"not pem", []byte("ghp_notakeyatall"), "not a PEM-encoded private key"},
		{"corrupt pkcs1", corrupt, "private key"},
		{"ec key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), "GitHub Apps sign with RSA"},
		{"public key", pub, `"PUBLIC KEY" is not a private key`},
		{"small key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}), "1024 bits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ghapp.New(ghapp.Config{Repo: "platform", AppID: appID, PrivateKey: tt.key, Owner: owner, Name: name}, ghapp.Options{})
			if err == nil {
				t.Fatal("New accepted the key")
			}
			msg := err.Error()
			if !strings.Contains(msg, "repo platform") || !strings.Contains(msg, "privateKey") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q should name repo platform, privateKey and say %q", msg, tt.want)
			}
			for _, line := range strings.Split(string(tt.key), "\n") {
				if len(line) > 16 && strings.Contains(msg, line) {
					t.Errorf("error quotes the key: %q", msg)
				}
			}
		})
	}
}

// TestVerifyRefusals: a wrong app id, another App's key or a wrong installation is a
// permanent error naming the repository and what to check; GitHub unreachable is transient.
func TestVerifyRefusals(t *testing.T) {
	key := ghapptest.NewKey(t)
	c := &clock{t: time.Now()}
	gh := ghapptest.New(t, appID, key, installation, owner, name, c.Now)
	down := ghapptest.New(t, appID, key, installation, owner, name, c.Now)
	downURL := down.URL()
	for _, tt := range []struct {
		name      string
		cfg       ghapp.Config
		permanent bool
		want      string
	}{
		{"wrong app id", ghapp.Config{AppID: appID + 1, InstallationID: installation, PrivateKey: key.PKCS1()}, true, "check appID"},
		{"another app's key", ghapp.Config{AppID: appID, InstallationID: installation, PrivateKey: ghapptest.NewKey(t).PKCS1()}, true, "privateKey"},
		{"wrong installation", ghapp.Config{AppID: appID, InstallationID: installation + 1, PrivateKey: key.PKCS8(t)}, true, "check installationID"},
		{"github down", ghapp.Config{AppID: appID, InstallationID: installation, PrivateKey: key.PKCS1(), APIURL: downURL}, false, "get the app"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.APIURL == downURL {
				closeServer(t, down)
			}
			a := newApp(t, gh, tt.cfg, c.Now)
			err := a.Verify(t.Context())
			if err == nil {
				t.Fatal("Verify accepted it")
			}
			if got := ghapp.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v (%v)", got, tt.permanent, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "repo platform") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q should name repo platform and say %q", msg, tt.want)
			}
		})
	}
	t.Run("not installed on the repository", func(t *testing.T) {
		other := ghapptest.New(t, appID, key, installation, owner, "elsewhere", c.Now)
		a := newApp(t, other, ghapp.Config{AppID: appID, PrivateKey: key.PKCS1()}, c.Now)
		err := a.Verify(t.Context())
		if !ghapp.IsPermanent(err) || !strings.Contains(err.Error(), "not installed") {
			t.Errorf("Verify = %v, want a permanent 'not installed' error", err)
		}
	})
}

// closeServer stops the fake now, so its address refuses connections.
func closeServer(t *testing.T, gh *ghapptest.GitHub) {
	t.Helper()
	gh.Close()
}

// TestTokenRenewedBeforeExpiry: a token is reused until RenewBefore its expiry, then a new one
// is minted, on the injected clock.
func TestTokenRenewedBeforeExpiry(t *testing.T) {
	key := ghapptest.NewKey(t)
	c := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	gh := ghapptest.New(t, appID, key, installation, owner, name, c.Now)
	a := newApp(t, gh, ghapp.Config{AppID: appID, InstallationID: installation, PrivateKey: key.PKCS1()}, c.Now)
	first, err := a.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c.Add(time.Hour - ghapp.RenewBefore - time.Second)
	if again, err := a.Token(t.Context()); err != nil || again != first {
		t.Fatalf("before the renewal time: token changed or failed (%v)", err)
	}
	c.Add(2 * time.Second)
	second, err := a.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("token not renewed RenewBefore its expiry")
	}
	if diff := cmp.Diff([]string{first, second}, gh.Minted()); diff != "" {
		t.Errorf("minted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{second, first}, a.Secrets()); diff != "" {
		t.Errorf("Secrets (-want +got):\n%s", diff)
	}
}

// TestTransportRetriesAfter401: a token GitHub stops accepting before its expiry (revoked, or
// expired on GitHub's clock) is replaced once, and the request, body included, sent again.
func TestTransportRetriesAfter401(t *testing.T) {
	key := ghapptest.NewKey(t)
	c := &clock{t: time.Now()}
	gh := ghapptest.New(t, appID, key, installation, owner, name, c.Now)
	a := newApp(t, gh, ghapp.Config{AppID: appID, InstallationID: installation, PrivateKey: key.PKCS8(t)}, c.Now)
	hc := a.Client(10 * time.Second)
	post := func(state string) int {
		t.Helper()
		body := strings.NewReader(`{"state":"` + state + `","context":"ferry/api"}`)
		resp, err := hc.Post(gh.URL()+"repos/acme/platform/statuses/"+strings.Repeat("a", 40), "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("pending"); code != http.StatusCreated {
		t.Fatalf("first status: http %d (%v)", code, gh.Refusals())
	}
	gh.Expire()
	if code := post("success"); code != http.StatusCreated {
		t.Fatalf("status after the token expired: http %d, want 201 after one renewal (%v)", code, gh.Refusals())
	}
	minted := gh.Minted()
	if len(minted) != 2 {
		t.Fatalf("minted %d tokens, want 2", len(minted))
	}
	var got []ghapptest.Status
	for _, s := range gh.Statuses() {
		got = append(got, ghapptest.Status{State: s.State, Token: s.Token})
	}
	want := []ghapptest.Status{{State: "pending", Token: minted[0]}, {State: "success", Token: minted[1]}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}

	// A token refused again right after renewal is GitHub's final word: one retry, not a loop.
	gh.Expire()
	gh.RefuseMinted(true)
	if code := post("failure"); code != http.StatusUnauthorized {
		t.Errorf("status with every token refused: http %d, want 401", code)
	}
	if n := len(gh.Minted()); n != 3 {
		t.Errorf("minted %d tokens in all, want 3 (one retry)", n)
	}
}

// onlyOnce is a request body that cannot be produced again (no GetBody).
type onlyOnce struct{ *strings.Reader }

// TestTransportUnreplayableBody: a request whose body cannot be sent again gets GitHub's 401,
// but the next request already carries a new token.
func TestTransportUnreplayableBody(t *testing.T) {
	key := ghapptest.NewKey(t)
	c := &clock{t: time.Now()}
	gh := ghapptest.New(t, appID, key, installation, owner, name, c.Now)
	a := newApp(t, gh, ghapp.Config{AppID: appID, InstallationID: installation, PrivateKey: key.PKCS1()}, c.Now)
	hc := a.Client(10 * time.Second)
	if _, err := a.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	gh.Expire()
	post := func() int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, gh.URL()+"repos/acme/platform/statuses/"+strings.Repeat("b", 40),
			onlyOnce{strings.NewReader(`{"state":"pending","context":"ferry/api"}`)})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(); code != http.StatusUnauthorized {
		t.Fatalf("unreplayable request: http %d, want GitHub's 401", code)
	}
	if code := post(); code != http.StatusCreated {
		t.Fatalf("next request: http %d, want 201 with a new token (%v)", code, gh.Refusals())
	}
	if n := len(gh.Minted()); n != 2 {
		t.Errorf("minted %d tokens, want 2", n)
	}
}
