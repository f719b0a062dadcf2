package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// healthConfig is a valid config with health rules appended.
func healthConfig(t *testing.T, rules string) []byte {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("ghp_secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(validConfig, "TOKEN_FILE", tokenFile) + rules)
}

var healthEnv = env(map[string]string{"HOOK_SECRET": "s3cret", "API_TOKEN": "tok"})

func TestHealthChecksConfig(t *testing.T) {
	cfg, _, err := ParseConfig(healthConfig(t, `
healthChecks:
  - apiVersion: example.com/v1
    kind: Foo
    failed: status.?phase.orValue('') == 'Failed'
    current: status.?phase.orValue('') == 'Ready'
  - apiVersion: cert-manager.io/*
    kind: Certificate
    current: "true"
`), healthEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.HealthChecks) != 2 || cfg.HealthChecks[0].Failed != "status.?phase.orValue('') == 'Failed'" || cfg.health == nil {
		t.Fatalf("health checks not read and compiled: %+v", cfg.HealthChecks)
	}
	cfg, _, err = ParseConfig(healthConfig(t, ""), healthEnv)
	if err != nil || cfg.health == nil {
		t.Fatalf("without healthChecks the built-in rules are compiled: %v", err)
	}
}

func TestHealthChecksConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name, rules string
		want        []string
	}{
		{"syntax", "healthChecks:\n  - {apiVersion: example.com/v1, kind: Foo, current: \"status.phase ==\"}\n",
			[]string{"healthChecks", "example.com/v1 Foo", `current expression "status.phase =="`}},
		{"type", "healthChecks:\n  - {apiVersion: example.com/*, kind: Foo, current: \"true\", inProgress: \"1 + 1\"}\n",
			[]string{"example.com/* Foo", `inProgress expression "1 + 1" yields int`}},
		{"no current", "healthChecks:\n  - {apiVersion: example.com/v1, kind: Foo}\n", []string{"current is required"}},
		{"unknown key", "healthChecks:\n  - {apiVersion: example.com/v1, kind: Foo, current: \"true\", healthy: \"true\"}\n",
			[]string{`unknown key "healthy"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseConfig(healthConfig(t, tc.rules), healthEnv)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestServeRefusesBadHealthCheck: ferry serve stops at start, before it connects to anything.
func TestServeRefusesBadHealthCheck(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(file, healthConfig(t, "healthChecks:\n  - {apiVersion: example.com/v1, kind: Foo, current: \"status.ready &&\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	err := serve(t.Context(), serveOptions{Config: file, LogLevel: "info", DataDir: t.TempDir()}, healthEnv, &stderr)
	if err == nil || !strings.Contains(err.Error(), `example.com/v1 Foo`) || !strings.Contains(err.Error(), `"status.ready &&"`) {
		t.Fatalf("serve with a bad health expression: %v", err)
	}
}
