// Package ghapp authenticates ferry to GitHub (and GitHub Enterprise Server) as a GitHub App
// installation instead of with a personal token: it signs the App's JSON Web Token with the App's
// private key, mints installation tokens (valid one hour), caches them and mints the next one
// before the last expires. The same token serves Git over HTTPS (Token, Refused) and the REST
// API (Transport, Client), so cloning, commit statuses and check runs share one identity.
package ghapp

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	jwt "github.com/golang-jwt/jwt/v4"
	"github.com/google/go-github/v92/github"
)

// RenewBefore is how long before an installation token's expiry the next one is minted: long
// enough that a clone or a status started with the old token does not meet its expiry midway
// (GitHub tokens live an hour), short enough to mint only once an hour.
const RenewBefore = 5 * time.Minute

// DefaultTimeout bounds one request to GitHub's App endpoints (minting a token, finding the
// installation) when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// rememberedTokens is how many past installation tokens Secrets still returns for scrubbing: a
// message about a request made with the token before last may arrive after a renewal.
const rememberedTokens = 3

// minKeyBits is the smallest RSA key accepted; GitHub generates 2048-bit keys.
const minKeyBits = 2048

// userAgent names ferry to GitHub.
const userAgent = "ferry"

// Config is one repository's App identity, as the config loader resolved it.
type Config struct {
	// Repo is the repository's name in ferry's config; every error names it.
	Repo string
	// AppID is the App's numeric id (its settings page, "App ID").
	AppID int64
	// InstallationID is the installation on the repository's owner; zero finds it from
	// Owner/Name with GET /repos/{owner}/{repo}/installation on first use.
	InstallationID int64
	// PrivateKey is the App's private key in PEM: PKCS#1 ("RSA PRIVATE KEY", as GitHub
	// generates it) or PKCS#8 ("PRIVATE KEY").
	PrivateKey []byte
	// APIURL is empty for github.com, or the Enterprise Server address
	// (https://ghe.example.com, with or without /api/v3/).
	APIURL string
	// Owner and Name are the repository on GitHub, for finding the installation.
	Owner, Name string
}

// Options are App's optional collaborators; zero values get working defaults.
type Options struct {
	// Base carries every request to GitHub; nil is http.DefaultTransport.
	Base http.RoundTripper
	// Timeout bounds each request to the App endpoints; zero is DefaultTimeout.
	Timeout time.Duration
	// Now tells the time tokens are renewed by; nil is time.Now.
	Now func() time.Time
}

// App is one repository's GitHub App installation. It is safe for concurrent use; tokens are
// minted lazily, once for all callers.
type App struct {
	cfg  Config
	opts Options
	// apps calls the App endpoints authenticated with the App's JWT.
	apps *github.Client

	mu             sync.Mutex
	installationID int64
	token          string
	renewAt        time.Time
	// past are the last tokens replaced, newest last, kept for Secrets.
	past []string
}

// New parses the private key and prepares the App; it makes no request (see Verify). Its
// errors name the repository and never hold the key.
func New(cfg Config, opts Options) (*App, error) {
	if cfg.AppID <= 0 {
		return nil, fmt.Errorf("repo %s: githubApp: appID must be a positive number", cfg.Repo)
	}
	if cfg.InstallationID < 0 {
		return nil, fmt.Errorf("repo %s: githubApp: installationID must not be negative", cfg.Repo)
	}
	if cfg.Owner == "" || cfg.Name == "" {
		return nil, fmt.Errorf("repo %s: githubApp: the repository's owner and name are required", cfg.Repo)
	}
	key, err := ParsePrivateKey(cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("repo %s: githubApp: privateKey: %w", cfg.Repo, err)
	}
	if opts.Base == nil {
		opts.Base = http.DefaultTransport
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	atr, err := ghinstallation.NewAppsTransportWithOptions(opts.Base, cfg.AppID,
		ghinstallation.WithSigner(ghinstallation.NewRSASigner(jwt.SigningMethodRS256, key)))
	if err != nil {
		return nil, fmt.Errorf("repo %s: githubApp: %w", cfg.Repo, err)
	}
	copts := []github.ClientOptionsFunc{
		github.WithHTTPClient(&http.Client{Transport: atr, Timeout: opts.Timeout}),
		github.WithUserAgent(userAgent),
		// GitHub's answers decide; go-github's local bookkeeping would refuse on its own clock.
		github.WithDisableRateLimitCheck(),
	}
	if cfg.APIURL != "" {
		if err := checkAPIURL(cfg.APIURL); err != nil {
			return nil, fmt.Errorf("repo %s: githubApp: %w", cfg.Repo, err)
		}
		copts = append(copts, github.WithEnterpriseURLs(cfg.APIURL, cfg.APIURL))
	}
	c, err := github.NewClient(copts...)
	if err != nil {
		return nil, fmt.Errorf("repo %s: githubApp: %w", cfg.Repo, err)
	}
	return &App{cfg: cfg, opts: opts, apps: c, installationID: cfg.InstallationID}, nil
}

// ParsePrivateKey reads an RSA private key in PEM, PKCS#1 or PKCS#8. Its errors say what is
// wrong with the key without quoting any of it.
func ParsePrivateKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("is not a PEM-encoded private key (expected -----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)")
	}
	var key *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("PKCS#1 RSA private key is malformed")
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("PKCS#8 private key is malformed")
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PKCS#8 private key is a %T, but GitHub Apps sign with RSA", k)
		}
		key = rk
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (expected RSA PRIVATE KEY or PRIVATE KEY)", block.Type)
	}
	if key.N.BitLen() < minKeyBits {
		return nil, fmt.Errorf("RSA key has %d bits; GitHub App keys have at least %d", key.N.BitLen(), minKeyBits)
	}
	if err := key.Validate(); err != nil {
		return nil, errors.New("RSA private key is inconsistent")
	}
	return key, nil
}

// AppID is the App's id, for callers that tell the App's own check runs from others'.
func (a *App) AppID() int64 { return a.cfg.AppID }

// Secrets are the installation tokens minted lately, newest first, for scrubbing from messages
// a forge or a proxy sends back. The slice is the caller's.
func (a *App) Secrets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.past)+1)
	if a.token != "" {
		out = append(out, a.token)
	}
	for i := len(a.past) - 1; i >= 0; i-- {
		out = append(out, a.past[i])
	}
	return out
}

// checkAPIURL refuses an API address that is not an absolute http(s) URL, without repeating it
// (it may hold user info).
func checkAPIURL(apiURL string) error {
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("apiURL must be an absolute http or https url")
	}
	return nil
}

// Error is GitHub refusing or failing to authenticate the App, classified where it is made.
type Error struct {
	// Repo is the repository in ferry's config.
	Repo string
	// Op says what was asked: "get the app", "find the installation", "mint an installation token".
	Op string
	// StatusCode is GitHub's answer; zero when no answer came (network, timeout).
	StatusCode int
	// Reason explains the refusal for an operator (what to check); never a secret.
	Reason string
	// Err is the cause when no answer came, for errors.Is (context.DeadlineExceeded).
	Err error
	// permanent is set when GitHub answered and retrying cannot help.
	permanent bool
}

// Error names the repository, the operation and the reason.
func (e *Error) Error() string {
	msg := fmt.Sprintf("repo %s: github app: %s", e.Repo, e.Op)
	if e.StatusCode != 0 {
		msg += fmt.Sprintf(": http %d", e.StatusCode)
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes the cause.
func (e *Error) Unwrap() error { return e.Err }

// Transient reports whether the failure may pass by itself (GitHub unreachable, 5xx, rate
// limits), as opposed to a wrong app id, key or installation. Callers test it through an
// interface, so that they need not import this package.
func (e *Error) Transient() bool { return !e.permanent }

// IsPermanent reports whether err is a GitHub App failure that retrying cannot fix.
func IsPermanent(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.permanent
}

// classify turns go-github's error for op into an *Error, copying only the status: the
// library's values hold the whole response.
func (a *App) classify(op string, err error, reasons map[int]string) error {
	e := &Error{Repo: a.cfg.Repo, Op: op}
	if rle, ok := errors.AsType[*github.RateLimitError](err); ok && rle.Response != nil {
		e.StatusCode, e.Reason = rle.Response.StatusCode, "rate limited"
		return e
	}
	if are, ok := errors.AsType[*github.AbuseRateLimitError](err); ok && are.Response != nil {
		e.StatusCode, e.Reason = are.Response.StatusCode, "secondary rate limit"
		return e
	}
	if er, ok := errors.AsType[*github.ErrorResponse](err); ok && er.Response != nil {
		code := er.Response.StatusCode
		e.StatusCode = code
		e.Reason = reasons[code]
		if e.Reason == "" {
			e.Reason = strings.Join(strings.Fields(cut(er.Message, maxReason)), " ")
		}
		e.permanent = code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
		return e
	}
	// No answer: the network, a timeout, a cancelled context. go-github strips secrets from URLs.
	e.Err = err
	return e
}

// maxReason bounds how much of GitHub's own message goes into an error.
const maxReason = 200

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
