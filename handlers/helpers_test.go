package handlers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Secrets used across the tests. They are distinctive so that a test can assert they never
// appear in a response or a log line.
var (
	githubSecret = []byte("gh-Secret-7d1f0a93be2c")
	giteaSecret  = []byte("gitea-Secret-51c9e07a44")
	gitlabToken  = []byte("glpat-Token-0f3e8d2c1b")
	// gitlabSigning is a Standard Webhooks signing token: whsec_ + base64 of the HMAC key.
	gitlabSigning = []byte("whsec_" + base64.StdEncoding.EncodeToString([]byte("gitlab-signing-key-9a8b7c6d5e4f")))
)

// testNow is the clock of every test that checks GitLab signing timestamps.
var testNow = time.Date(2025, 3, 5, 12, 4, 0, 0, time.UTC)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signGitHub(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func signGitea(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// signStandard signs the Standard Webhooks way, independently of the code under test.
func signStandard(t testing.TB, secret []byte, id string, ts time.Time, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(secret), "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// githubHeaders are the headers GitHub sends with a JSON delivery, signed with secret.
func githubHeaders(event, delivery string, secret, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "GitHub-Hookshot/7f3a2c1")
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Hook-ID", "498812345")
	if delivery != "" {
		h.Set("X-GitHub-Delivery", delivery)
	}
	h.Set("X-Hub-Signature-256", signGitHub(secret, body))
	return h
}

// gitlabTokenHeaders are the headers of a GitLab delivery from a hook with a secret token.
func gitlabTokenHeaders(event, uuid string, token []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "GitLab/17.9.1")
	h.Set("X-Gitlab-Event", event)
	h.Set("X-Gitlab-Instance", "https://gitlab.acme.example")
	h.Set("X-Gitlab-Webhook-UUID", "5c0a7d1e-3f7b-4b4e-9d55-2f8e1e0c4a11")
	if uuid != "" {
		h.Set("X-Gitlab-Event-UUID", uuid)
		h.Set("Idempotency-Key", uuid)
	}
	h.Set("X-Gitlab-Token", string(token))
	return h
}

// gitlabSigningHeaders are the headers of a GitLab delivery from a hook with a signing token.
func gitlabSigningHeaders(t testing.TB, event, id string, ts time.Time, secret, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "GitLab/18.3.0")
	h.Set("X-Gitlab-Event", event)
	h.Set("X-Gitlab-Instance", "https://gitlab.acme.example")
	h.Set("Idempotency-Key", id)
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", signStandard(t, secret, id, ts, body))
	return h
}

// giteaHeaders are the headers Gitea sends, signed with secret.
func giteaHeaders(event, delivery string, secret, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Go-http-client/1.1")
	h.Set("X-Gitea-Event", event)
	h.Set("X-Gitea-Event-Type", event)
	h.Set("X-Gitea-Delivery", delivery)
	h.Set("X-Gitea-Signature", signGitea(secret, body))
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Delivery", delivery)
	return h
}

// patchJSON returns raw with edit applied to its decoded top-level object, for variations of
// a captured payload (a deleted branch, a tag, a truncated commit list).
func patchJSON(t testing.TB, raw []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
