package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/syncer/render"
)

const validConfig = `
externalURL: https://ferry.example.com
repos:
  - name: platform
    url: https://github.com/acme/platform.git
    provider: github
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    token: {file: TOKEN_FILE}
apps:
  - name: database
    repo: platform
    path: apps/database
    namespace: db
    prune: true
  - name: api
    repo: platform
    path: ./apps/api/
    dependsOn: [database]
    timeout: 90s
apiTokens: [{env: API_TOKEN}]
`

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfig(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("ghp_secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := strings.ReplaceAll(validConfig, "TOKEN_FILE", tokenFile)
	cfg, sec, err := ParseConfig([]byte(doc), env(map[string]string{"HOOK_SECRET": "s3cret", "API_TOKEN": "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(sec.WebhookSecrets["platform"]); got != "s3cret" {
		t.Errorf("webhook secret = %q", got)
	}
	if got := sec.Tokens["platform"]; got != "ghp_secret" {
		t.Errorf("token = %q, want the file's content without its newline", got)
	}
	if got := cfg.Apps[1].Path; got != "apps/api" {
		t.Errorf("path = %q, want it cleaned to apps/api", got)
	}
	if got := time.Duration(cfg.Apps[1].Timeout); got != 90*time.Second {
		t.Errorf("timeout = %s", got)
	}
	if sec.Forges["platform"] == nil {
		t.Error("no commit-status client built for a repo with a token")
	}
}

// TestParseConfigDefaults: the config fills in only what no package defines (the branch);
// the health timeout and the poll interval stay 0, which their packages read as their own
// default, so each default is written once.
func TestParseConfigDefaults(t *testing.T) {
	doc := `
externalURL: https://ferry.example.com
repos:
  - {name: platform, url: "https://gitea.example.com/acme/platform.git", provider: gitea, webhookSecret: {env: HOOK_SECRET}}
apps:
  - {name: api, repo: platform, path: apps/api}
`
	cfg, sec, err := ParseConfig([]byte(doc), env(map[string]string{"HOOK_SECRET": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Repos[0].Branch; got != "main" {
		t.Errorf("branch = %q, want main", got)
	}
	if got, want := syncerApps(cfg, sec)[0].Timeout, time.Duration(0); got != want {
		t.Errorf("health timeout handed to the syncer = %s, want 0 (apply.DefaultTimeout)", got)
	}
	if got := pollIntervals(cfg)["platform"]; got != 0 {
		t.Errorf("poll interval handed to the poller = %s, want 0 (syncer.DefaultPollInterval)", got)
	}
	if _, ok := sec.Forges["platform"]; ok {
		t.Error("a commit-status client was built for a repo without a token")
	}
	if got := cfg.RenderLimits.render(); got != (render.Limits{}) {
		t.Errorf("render limits = %+v, want zero (the renderer's defaults)", got)
	}

	raised := strings.Replace(doc, "repos:", "maxFetchMiB: 1024\nrenderLimits: {maxMiB: 128, maxNodes: 1000000, maxObjects: 20000}\nrepos:", 1)
	cfg, _, err = ParseConfig([]byte(raised), env(map[string]string{"HOOK_SECRET": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.RenderLimits.render(), (render.Limits{Bytes: 128 << 20, Nodes: 1_000_000, Objects: 20_000}); got != want {
		t.Errorf("render limits = %+v, want %+v", got, want)
	}
	if cfg.MaxFetchMiB != 1024 {
		t.Errorf("maxFetchMiB = %d", cfg.MaxFetchMiB)
	}
}

func TestParseConfigRefuses(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("ghp_secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := strings.ReplaceAll(validConfig, "TOKEN_FILE", tokenFile)
	goodEnv := map[string]string{"HOOK_SECRET": "s3cret", "API_TOKEN": "tok"}
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		want []string
	}{
		{"unknown key", strings.Replace(base, "prune: true", "prune: true\n    prnue: false", 1), goodEnv, []string{"app database", `unknown key "prnue"`}},
		{"unknown repo key", strings.Replace(base, "branch: main", "branch: main\n    tokn: {env: X}", 1), goodEnv, []string{"repo platform", `unknown key "tokn"`}},
		{"unknown secret key", strings.Replace(base, "{env: HOOK_SECRET}", "{environment: HOOK_SECRET}", 1), goodEnv, []string{"repo platform.webhookSecret", `unknown key "environment"`}},
		{"missing secret", base, map[string]string{"API_TOKEN": "tok"}, []string{"repo platform", "webhookSecret", "HOOK_SECRET"}},
		{"unknown repo", strings.Replace(base, "repo: platform\n    path: apps/database", "repo: infra\n    path: apps/database", 1), goodEnv, []string{"app database", `repo "infra"`}},
		{"duplicate app", strings.Replace(base, "name: api", "name: database", 1), goodEnv, []string{"app database", "duplicate"}},
		{"unsupported provider", strings.Replace(base, "provider: github", "provider: bitbucket", 1), goodEnv, []string{"repo platform", "bitbucket"}},
		{"unknown dependency", strings.Replace(base, "dependsOn: [database]", "dependsOn: [cache]", 1), goodEnv, []string{"app api", `"cache"`}},
		{"cycle", strings.Replace(base, "prune: true", "prune: true\n    dependsOn: [api]", 1), goodEnv, []string{"cycle", "database → api → database"}},
		{"path escapes", strings.Replace(base, "path: apps/database", "path: ../etc", 1), goodEnv, []string{"app database", "path"}},
		{"missing token file", strings.Replace(base, tokenFile, "/nonexistent/token", 1), goodEnv, []string{"repo platform", "token", "/nonexistent/token"}},
		{"credentials in url", strings.Replace(base, "https://github.com/", "https://bot:hunter2@github.com/", 1), goodEnv, []string{"repo platform", "must not carry credentials"}},
		{"ssh url", strings.Replace(base, "https://github.com/acme/platform.git", "git@github.com:acme/platform.git", 1), goodEnv, []string{"repo platform", "http(s) clone URL"}},
		{"app name not a DNS label", strings.Replace(base, "name: api", "name: API_v2", 1), goodEnv, []string{"app API_v2", "DNS label"}},
		{"repo without a name", strings.Replace(base, "- name: platform", "- name: \"\"", 1), goodEnv, []string{"repos[0]: name is required"}},
		{"no external url", strings.Replace(base, "externalURL: https://ferry.example.com", "", 1), goodEnv, []string{"externalURL"}},
		{"relative external url", strings.Replace(base, "https://ferry.example.com", "ferry.example.com", 1), goodEnv, []string{"externalURL", "not an absolute URL"}},
		{"negative workers", strings.Replace(base, "repos:", "workers: -1\nrepos:", 1), goodEnv, []string{"workers must not be negative"}},
		{"fetch bound too large", strings.Replace(base, "repos:", "maxFetchMiB: 100000\nrepos:", 1), goodEnv, []string{"maxFetchMiB must be between 0 (the default, 256) and 8192"}},
		{"negative fetch bound", strings.Replace(base, "repos:", "maxFetchMiB: -1\nrepos:", 1), goodEnv, []string{"maxFetchMiB"}},
		{"render nodes too many", strings.Replace(base, "repos:", "renderLimits: {maxNodes: 9000000}\nrepos:", 1), goodEnv, []string{"renderLimits.maxNodes must be between 0 (the default, 250000) and 5000000"}},
		{"negative render objects", strings.Replace(base, "repos:", "renderLimits: {maxObjects: -1}\nrepos:", 1), goodEnv, []string{"renderLimits.maxObjects"}},
		{"unknown render limit", strings.Replace(base, "repos:", "renderLimits: {maxBytes: 1}\nrepos:", 1), goodEnv, []string{`unknown key "maxBytes"`}},
		{"empty repo list", "externalURL: https://ferry.example.com\nrepos: []\n", goodEnv, []string{"repos: at least one repository is required"}},
		{"repo without url", strings.Replace(base, "url: https://github.com/acme/platform.git", "", 1), goodEnv, []string{"repo platform: url is required"}},
		{"bad branch glob", strings.Replace(base, "branch: main", "branch: release-[", 1), goodEnv, []string{"repo platform", `branch "release-["`}},
		{"duplicate repo", strings.Replace(base, "apps:", "  - {name: platform, url: https://github.com/acme/x.git, provider: github, webhookSecret: {env: HOOK_SECRET}}\napps:", 1), goodEnv, []string{"repo platform: duplicate repo name"}},
		{"no webhook secret", strings.Replace(base, "    webhookSecret: {env: HOOK_SECRET}\n", "", 1), goodEnv, []string{"repo platform: webhookSecret is required"}},
		{"secret names env and file", strings.Replace(base, "{env: HOOK_SECRET}", "{env: HOOK_SECRET, file: /etc/hostname}", 1), goodEnv, []string{"repo platform: webhookSecret", "both env and file"}},
		{"gitlab signing secret not base64", strings.Replace(base, "provider: github", "provider: gitlab", 1), map[string]string{"HOOK_SECRET": "whsec_not*base64", "API_TOKEN": "tok"}, []string{"repo platform: webhookSecret", "not base64"}},
		{"api url not absolute", strings.Replace(base, "branch: main", "branch: main\n    apiURL: ghe.example.com/api/v3", 1), goodEnv, []string{"repo platform", "api url must be an absolute"}},
		{"url without owner", strings.Replace(base, "https://github.com/acme/platform.git", "https://github.com/platform.git", 1), goodEnv, []string{"repo platform: url", "needs an owner and a name"}},
		{"app without repo", strings.Replace(base, "repo: platform\n    path: apps/database", "path: apps/database", 1), goodEnv, []string{"app database: repo is required"}},
		{"app without path", strings.Replace(base, "path: apps/database", "path: \"\"", 1), goodEnv, []string{"app database", `path ""`}},
		{"bad exclude glob", strings.Replace(base, "prune: true", "prune: true\n    exclude: [\"a/[x\"]", 1), goodEnv, []string{"app database: exclude", `glob "a/[x"`}},
		{"empty include glob", strings.Replace(base, "prune: true", "prune: true\n    include: [\"\"]", 1), goodEnv, []string{"app database: include", `glob ""`}},
		{"depends on itself", strings.Replace(base, "dependsOn: [database]", "dependsOn: [api]", 1), goodEnv, []string{"app api: depends on itself"}},
		{"three-app cycle", strings.Replace(strings.Replace(base, "prune: true", "prune: true\n    dependsOn: [web]", 1), "apiTokens:", "  - {name: web, repo: platform, path: apps/web, dependsOn: [api]}\napiTokens:", 1), goodEnv, []string{"cycle", "database → web → api → database"}},
		{"bad duration", strings.Replace(base, "timeout: 90s", "timeout: 90", 1), goodEnv, []string{"duration"}},
		{"negative duration", strings.Replace(base, "timeout: 90s", "timeout: -1s", 1), goodEnv, []string{"negative"}},
		{"token names twice", strings.Replace(base, "apiTokens: [{env: API_TOKEN}]", "apiTokens: [{env: API_TOKEN, name: ci}, {env: API_TOKEN, name: ci}]", 1), goodEnv, []string{"apiTokens[1]", `name "ci" is used twice`}},
		{"unknown token key", strings.Replace(base, "apiTokens: [{env: API_TOKEN}]", "apiTokens: [{env: API_TOKEN, nmae: ci}]", 1), goodEnv, []string{`unknown key "nmae"`}},
		{"proxy without addresses", strings.Replace(base, "repos:", "authProxy: {userHeader: X-Forwarded-User}\nrepos:", 1), goodEnv, []string{"authProxy: trustedProxies is required"}},
		{"proxy header not a header", strings.Replace(base, "repos:", "authProxy: {userHeader: \"X Forwarded User\", trustedProxies: [10.0.0.1]}\nrepos:", 1), goodEnv, []string{"authProxy: userHeader", "not a header name"}},
		{"proxy address not an address", strings.Replace(base, "repos:", "authProxy: {userHeader: X-Forwarded-User, trustedProxies: [proxy.internal]}\nrepos:", 1), goodEnv, []string{`"proxy.internal" is neither an address nor a CIDR range`}},
		{"proxy trusts everyone", strings.Replace(base, "repos:", "authProxy: {userHeader: X-Forwarded-User, trustedProxies: [10.0.0.0/8, 0.0.0.0/0]}\nrepos:", 1), goodEnv, []string{`"0.0.0.0/0" would let any client name its own user`}},
		{"unknown proxy key", strings.Replace(base, "repos:", "authProxy: {userHeader: X-Forwarded-User, trustedProxy: [10.0.0.1]}\nrepos:", 1), goodEnv, []string{`unknown key "trustedProxy"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseConfig([]byte(tt.doc), env(tt.env))
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "not*base64") {
				t.Errorf("error %q holds a secret", err)
			}
		})
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	doc := strings.ReplaceAll(validConfig, "TOKEN_FILE", "/nonexistent")
	_, _, err := ParseConfig([]byte(doc), env(map[string]string{"HOOK_SECRET": "hunter2-very-secret", "API_TOKEN": "tok"}))
	if err == nil {
		t.Fatal("config with a missing token file accepted")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks a secret: %v", err)
	}
}
