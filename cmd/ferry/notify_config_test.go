package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/notify"
)

const notifyConfig = `
notify:
  - name: ops-slack
    type: slack
    url: {env: SLACK_URL}
    events: [failed, recovered]
    apps: ["api", "data*"]
  - name: teams
    type: msteams
    url: {file: TEAMS_FILE}
  - name: audit
    type: webhook
    url: {env: AUDIT_URL}
    secret: {env: AUDIT_SECRET}
    events: [failed, succeeded, superseded]
`

var signingSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("audit-signing-key-of-32-bytes!!!"))

func notifyDoc(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile, teamsFile := filepath.Join(dir, "token"), filepath.Join(dir, "teams")
	if err := os.WriteFile(tokenFile, []byte("ghp_secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(teamsFile, []byte("https://prod.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=TEAMS-SIG\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := strings.ReplaceAll(validConfig, "TOKEN_FILE", tokenFile) + strings.ReplaceAll(notifyConfig, "TEAMS_FILE", teamsFile)
	return doc, map[string]string{"HOOK_SECRET": "s3cret", "API_TOKEN": "tok",
		"SLACK_URL": "https://hooks.slack.com/services/T000/B000/SLACK-TOKEN", "AUDIT_URL": "https://audit.example.com/ferry", "AUDIT_SECRET": signingSecret}
}

func TestParseNotifyConfig(t *testing.T) {
	doc, vars := notifyDoc(t)
	_, sec, err := ParseConfig([]byte(doc), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	want := []notify.Target{
		{Name: "ops-slack", Type: notify.Slack, URL: vars["SLACK_URL"], Events: []queue.EventKind{queue.EventFailed, queue.EventRecovered}, Apps: []string{"api", "data*"}},
		{Name: "teams", Type: notify.Teams, URL: "https://prod.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=TEAMS-SIG",
			Events: []queue.EventKind{queue.EventFailed, queue.EventRecovered}},
		{Name: "audit", Type: notify.Webhook, URL: vars["AUDIT_URL"], Key: []byte("audit-signing-key-of-32-bytes!!!"),
			Events: []queue.EventKind{queue.EventFailed, queue.EventSucceeded, queue.EventSuperseded}},
	}
	if diff := cmp.Diff(want, sec.Notify); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
}

func TestParseNotifyConfigRefuses(t *testing.T) {
	doc, vars := notifyDoc(t)
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range vars {
			m[a] = b
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		want []string
	}{
		{"unknown type", strings.Replace(doc, "type: slack", "type: discord", 1), vars, []string{"notify target ops-slack", `type "discord" is not supported (slack, msteams, webhook)`}},
		{"unknown event", strings.Replace(doc, "[failed, recovered]", "[failed, exploded]", 1), vars, []string{"notify target ops-slack", `event "exploded" is not known`}},
		{"bad glob", strings.Replace(doc, `"data*"`, `"data["`, 1), vars, []string{"notify target ops-slack: apps", `glob "data["`}},
		{"unknown app", strings.Replace(doc, `"api", `, `"apx", `, 1), vars, []string{"notify target ops-slack: apps", `"apx" names no configured app`}},
		{"duplicate name", strings.Replace(doc, "name: teams", "name: ops-slack", 1), vars, []string{"notify target ops-slack: duplicate"}},
		{"name not a DNS label", strings.Replace(doc, "name: teams", "name: Teams_Channel", 1), vars, []string{"DNS label"}},
		{"webhook without secret", strings.Replace(doc, "    secret: {env: AUDIT_SECRET}\n", "", 1), vars, []string{"notify target audit: secret is required for type webhook"}},
		{"secret on slack", strings.Replace(doc, "url: {env: SLACK_URL}", "url: {env: SLACK_URL}\n    secret: {env: AUDIT_SECRET}", 1), vars, []string{"notify target ops-slack: secret is used by type webhook only"}},
		{"no url", strings.Replace(doc, "    url: {env: AUDIT_URL}\n", "", 1), vars, []string{"notify target audit: url is required"}},
		{"url not set", doc, with("SLACK_URL", ""), []string{"notify target ops-slack: url", "SLACK_URL"}},
		{"url not http", doc, with("SLACK_URL", "ftp://hooks.slack.com/services/T000/B000/SLACK-TOKEN"), []string{"notify target ops-slack: url (from env SLACK_URL) is not an absolute http(s) URL"}},
		{"url relative", doc, with("AUDIT_URL", "/services/SLACK-TOKEN"), []string{"notify target audit: url (from env AUDIT_URL)"}},
		{"secret not base64", doc, with("AUDIT_SECRET", "whsec_SLACK-TOKEN*"), []string{"notify target audit: secret", "not base64"}},
		{"secret too short", doc, with("AUDIT_SECRET", "short-TOKEN"), []string{"notify target audit: secret", "at least 16"}},
		{"unknown key", strings.Replace(doc, "type: msteams", "type: msteams\n    channel: ops", 1), vars, []string{"notify teams", `unknown key "channel"`}},
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
			// URLs and secrets are secrets: no error quotes them.
			for _, secret := range []string{"TOKEN", "TEAMS-SIG", "hooks.slack.com", "audit.example.com"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds a secret (%s)", err, secret)
				}
			}
		})
	}
}
