package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// signedGitLab signs h as a GitLab signing token does (Standard Webhooks: HMAC-SHA256 of
// "id.timestamp.body" with the key behind whsec_), and sets the unsigned ids to unsigned.
func signedGitLab(h hook, secret, id, unsigned string, at time.Time) hook {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(h.body)
	return hook{body: h.body, headers: map[string]string{
		"X-Gitlab-Event":      "Push Hook",
		"webhook-id":          id,
		"webhook-timestamp":   ts,
		"webhook-signature":   "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)),
		"Idempotency-Key":     unsigned,
		"X-Gitlab-Event-UUID": unsigned,
	}}
}

// TestHostileHTTPEndToEnd: on a running ferry, a captured GitLab delivery (signing token) sent
// again with new unsigned ids stores nothing new; pages carry a strict policy against framing
// and sniffing; a resync token of another length is refused like any wrong one; and an app that
// declares a look-alike of another app's inventory in ferry's namespace fails, naming the file
// and the object, without applying it.
func TestHostileHTTPEndToEnd(t *testing.T) {
	ns := "e2e-hostile-http"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hello"))
	forge := forgefake.New(t, forgeToken)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("e2e-signing-key-of-32-bytes-long"))
	env := map[string]string{"HOOK_SECRET": secret, "FORGE_TOKEN": forgeToken, "API_TOKEN": apiToken}
	f := startFerry(t, config("gitlab", repo.CloneURL(), forge.URL(), ns), env, "")
	if last := finalStatus(t, forge, first, "ferry/web"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}

	// #12.12: only the signed webhook-id de-duplicates.
	second := repo.Commit(t, "main", "web: second", webApp(ns, "bonjour"))
	push := gitlabPush(t, "", "", first, second, "apps/web/config.yaml")
	now := time.Now()
	if code, body := f.send(t, "platform", signedGitLab(push, secret, "msg-1", "key-1", now)); code != http.StatusAccepted || strings.Contains(body, "duplicate") {
		t.Fatalf("signed push: %d %s", code, body)
	}
	code, body := f.send(t, "platform", signedGitLab(push, secret, "msg-1", "key-2", now))
	var answer struct {
		Jobs []struct {
			ID        string `json:"id"`
			Duplicate bool   `json:"duplicate"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(body), &answer); code != http.StatusAccepted || err != nil || len(answer.Jobs) != 1 || !answer.Jobs[0].Duplicate || answer.Jobs[0].ID != "" {
		t.Fatalf("the captured delivery with new unsigned ids: %d %s, want a duplicate", code, body)
	}
	if last := finalStatus(t, forge, second, "ferry/web"); last.State != "success" {
		t.Fatalf("push: %+v", last)
	}

	// #12.11: pages and API answers carry the security headers.
	for _, path := range []string{"/", "/api/v1/apps"} {
		resp, err := http.Get(f.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src") || strings.Contains(csp, "unsafe-inline") || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s headers: %v", path, resp.Header)
		}
	}

	// #12.13: a token of another length is refused; the right one is taken.
	for _, tt := range []struct {
		token string
		want  int
	}{{"x", http.StatusUnauthorized}, {apiToken + "-and-more", http.StatusUnauthorized}, {apiToken, http.StatusAccepted}} {
		req, _ := http.NewRequest(http.MethodPost, f.URL+"/api/v1/apps/web/sync", nil)
		req.Header.Set("Authorization", "Bearer "+tt.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("resync with a token of %d bytes: %d, want %d", len(tt.token), resp.StatusCode, tt.want)
		}
	}

	// #12.9: a look-alike inventory in ferry's namespace is refused, naming file and object.
	files := webApp(ns, "bonjour")
	files["apps/web/ghost.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ferry-inventory-ghost\n  namespace: ferry-system\ndata:\n  revision: \"0\"\n"
	third := repo.Commit(t, "main", "web: a ghost inventory", files)
	if code, body := f.send(t, "platform", signedGitLab(gitlabPush(t, "", "", second, third, "apps/web/ghost.yaml"), secret, "msg-3", "key-3", time.Now())); code != http.StatusAccepted {
		t.Fatalf("push of the ghost: %d %s", code, body)
	}
	last := finalStatus(t, forge, third, "ferry/web")
	if last.State != "failed" || !strings.Contains(last.Description, "ConfigMap ferry-system/ferry-inventory-ghost") {
		t.Fatalf("the ghost inventory's status %+v, want failed naming the object", last)
	}
	if _, err := kube(t).CoreV1().ConfigMaps("ferry-system").Get(t.Context(), "ferry-inventory-ghost", metav1.GetOptions{}); err == nil {
		t.Errorf("the ghost inventory was applied")
	}
	assertAllFinal(t, forge)
}
