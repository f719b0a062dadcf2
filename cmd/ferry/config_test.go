package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if got := time.Duration(cfg.Apps[0].Timeout); got != 5*time.Minute {
		t.Errorf("default timeout = %s", got)
	}
	if got := time.Duration(cfg.Repos[0].Interval); got != 5*time.Minute {
		t.Errorf("default interval = %s", got)
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
