package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/syncer/ghapp/ghapptest"
)

// appConfig is a config whose platform repository authenticates as a GitHub App; APIURL and
// AUTH are filled in per test.
const appConfig = `
externalURL: https://ferry.example.com
repos:
  - name: platform
    url: https://github.com/acme/platform.git
    provider: PROVIDER
    apiURL: APIURL
    webhookSecret: {env: HOOK_SECRET}
AUTH
  - name: docs
    url: https://github.com/acme/docs.git
    provider: github
    webhookSecret: {env: HOOK_SECRET}
    token: {env: DOCS_TOKEN}
apps:
  - name: api
    repo: platform
    path: apps/api
`

func appDoc(provider, apiURL, auth string) []byte {
	r := strings.NewReplacer("PROVIDER", provider, "APIURL", apiURL, "AUTH", auth)
	return []byte(r.Replace(appConfig))
}

func writeKey(t *testing.T, pem []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(f, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestGitHubAppConfig: a repository authenticates with a token or an App, not both; the App's
// key is read from a file or the environment, PKCS#1 or PKCS#8, and a key that cannot sign is
// refused at load with a message naming the repository and not the key.
func TestGitHubAppConfig(t *testing.T) {
	key := ghapptest.NewKey(t)
	pkcs1 := writeKey(t, key.PKCS1())
	env := map[string]string{"HOOK_SECRET": "s3cret", "DOCS_TOKEN": "ghp_docs", "APP_KEY": string(key.PKCS8(t))}
	getenv := func(k string) string { return env[k] }
	bad := writeKey(t, []byte("-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END RSA PRIVATE KEY-----\n"))

	for _, tt := range []struct {
		name, provider, auth string
		want                 string // substring of the error; empty for success
	}{
		{"pkcs1 file", "github", "    githubApp: {appID: 123, installationID: 456, privateKey: {file: " + pkcs1 + "}}", ""},
		{"pkcs8 env, installation found", "github", "    githubApp: {appID: 123, privateKey: {env: APP_KEY}}", ""},
		{"token and app", "github", "    token: {env: DOCS_TOKEN}\n    githubApp: {appID: 123, privateKey: {env: APP_KEY}}", "repo platform: give either token or githubApp, not both"},
		{"not github", "gitlab", "    githubApp: {appID: 123, privateKey: {env: APP_KEY}}", `repo platform: githubApp is for provider github, not "gitlab"`},
		{"no app id", "github", "    githubApp: {privateKey: {env: APP_KEY}}", "repo platform: githubApp.appID is required"},
		{"negative installation", "github", "    githubApp: {appID: 1, installationID: -4, privateKey: {env: APP_KEY}}", "installationID must not be negative"},
		{"no key", "github", "    githubApp: {appID: 123}", "repo platform: githubApp.privateKey is required"},
		{"key env unset", "github", "    githubApp: {appID: 123, privateKey: {env: NOPE}}", "repo platform: githubApp.privateKey: environment variable NOPE"},
		{"bad key", "github", "    githubApp: {appID: 123, privateKey: {file: " + bad + "}}", "repo platform: githubApp: privateKey: PKCS#1 RSA private key is malformed"},
		{"unknown field", "github", "    githubApp: {appID: 123, key: {env: APP_KEY}}", `repo platform.githubApp: unknown key "key"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, sec, err := ParseConfig(appDoc(tt.provider, "https://ghe.acme.example/api/v3/", tt.auth), getenv)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error = %v, want it to say %q", err, tt.want)
				}
				if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), "bm90IGEga2V5") {
					t.Errorf("error quotes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sec.Apps["platform"] == nil || sec.Forges["platform"] == nil {
				t.Fatalf("platform has app %v, forge %v; want both", sec.Apps["platform"], sec.Forges["platform"])
			}
			if _, ok := sec.Tokens["platform"]; ok {
				t.Error("platform has a token")
			}
			if sec.Apps["docs"] != nil || sec.Forges["docs"] == nil {
				t.Error("docs should keep its token forge and have no app")
			}
		})
	}
}

// TestGitHubAppWiring: the App is the fetcher's token source and routing knows its id and the
// repository's full name; a token repository gets neither (and no nil App in an interface).
func TestGitHubAppWiring(t *testing.T) {
	key := ghapptest.NewKey(t)
	env := map[string]string{"HOOK_SECRET": "s3cret", "DOCS_TOKEN": "ghp_docs", "APP_KEY": string(key.PKCS1())}
	cfg, sec, err := ParseConfig(appDoc("github", "", "    githubApp: {appID: 123, privateKey: {env: APP_KEY}}"), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	repos := syncerRepos(cfg, sec, slog.New(slog.DiscardHandler), nil)
	if repos[0].Source.Credentials == nil || repos[0].Source.Token != "" {
		t.Errorf("platform source = %+v, want the App's credentials and no token", repos[0].Source)
	}
	if repos[1].Source.Credentials != nil || repos[1].Source.Token != "ghp_docs" {
		t.Errorf("docs source has credentials %v, token %q; want only its token", repos[1].Source.Credentials, repos[1].Source.Token)
	}
	hooks := hookRepos(cfg, sec)
	if hooks[0].GitHubApp != 123 || hooks[0].FullName != "acme/platform" {
		t.Errorf("platform hook repo: app %d, full name %q", hooks[0].GitHubApp, hooks[0].FullName)
	}
	if hooks[1].GitHubApp != 0 {
		t.Errorf("docs hook repo has app %d", hooks[1].GitHubApp)
	}
}

// TestVerifyGitHubApps: at start, a wrong app id or installation stops the server with the
// repository named; GitHub unreachable only warns, so a short outage does not keep ferry down.
func TestVerifyGitHubApps(t *testing.T) {
	key := ghapptest.NewKey(t)
	gh := ghapptest.New(t, 123, key, 456, "acme", "platform", time.Now)
	down := ghapptest.New(t, 123, key, 456, "acme", "platform", time.Now)
	downURL := down.URL()
	down.Close()
	env := map[string]string{"HOOK_SECRET": "s3cret", "DOCS_TOKEN": "ghp_docs", "APP_KEY": string(key.PKCS8(t))}
	for _, tt := range []struct {
		name, apiURL, auth string
		want               string // error substring; empty for a start
		log                string
	}{
		{"right app", gh.URL(), "    githubApp: {appID: 123, privateKey: {env: APP_KEY}}", "", "github app verified"},
		{"wrong app id", gh.URL(), "    githubApp: {appID: 124, installationID: 456, privateKey: {env: APP_KEY}}", "repo platform: github app: get the app (GET /app): http 401", ""},
		{"wrong installation", gh.URL(), "    githubApp: {appID: 123, installationID: 457, privateKey: {env: APP_KEY}}", "repo platform: github app: mint a token for installation 457: http 404", ""},
		{"github unreachable", downURL, "    githubApp: {appID: 123, privateKey: {env: APP_KEY}}", "", "github app not verified at start"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, sec, err := ParseConfig(appDoc("github", tt.apiURL, tt.auth), func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			err = verifyGitHubApps(t.Context(), sec.Apps, slog.New(slog.NewTextHandler(&logs, nil)))
			if tt.want == "" && err != nil {
				t.Fatalf("verify: %v", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("verify = %v, want %q", err, tt.want)
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log %q lacks %q", logs.String(), tt.log)
			}
		})
	}
}
