package handlers

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Properties checked by every verify fuzz target: verify never panics, a body signed with a
// non-empty secret verifies, and a body that differs from the signed one never does.

func seedBodies(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, name := range []string{
		"github/push.json", "github/push.form", "github/ping.json", "github/pull_request.json",
		"gitlab/push.json", "gitlab/merge_request.json", "gitlab/tag_push.json",
		"gitea/push.json", "gitea/pull_request.json",
	} {
		out = append(out, readTestdata(f, name))
	}
	return out
}

func FuzzGitHubVerify(f *testing.F) {
	for _, b := range seedBodies(f) {
		f.Add(githubSecret, b, append(bytes.Clone(b), ' '), "sha256=00")
	}
	f.Add([]byte("It's a Secret to Everybody"), []byte("Hello, World!"), []byte("Hello, World?"),
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	f.Fuzz(func(t *testing.T, secret, body, other []byte, forged string) {
		p := githubProvider{}
		h := http.Header{}
		h.Set("X-Hub-Signature-256", signGitHub(secret, body))
		err := p.verify(h, body, secret, testNow)
		if len(secret) == 0 {
			if err == nil {
				t.Fatal("empty secret verified")
			}
		} else if err != nil {
			t.Fatalf("signed body refused: %v", err)
		}
		if !bytes.Equal(body, other) && p.verify(h, other, secret, testNow) == nil {
			t.Fatalf("a different body verified: signed %q, got %q", body, other)
		}
		h.Set("X-Hub-Signature-256", forged)
		checkPrecheck(t, p, h, body, secret)
		if err := p.verify(h, body, secret, testNow); err == nil && !strings.EqualFold(forged, signGitHub(secret, body)) {
			t.Fatalf("forged signature %q verified", forged)
		} else if err != nil && !errors.Is(err, ErrSignature) {
			t.Fatalf("verify error %v does not wrap ErrSignature", err)
		}
	})
}

func FuzzGiteaVerify(f *testing.F) {
	for _, b := range seedBodies(f) {
		f.Add(giteaSecret, b, b[:len(b)/2], "deadbeef")
	}
	f.Fuzz(func(t *testing.T, secret, body, other []byte, forged string) {
		p := giteaProvider{}
		h := http.Header{}
		h.Set("X-Gitea-Signature", signGitea(secret, body))
		err := p.verify(h, body, secret, testNow)
		if (len(secret) == 0) != (err != nil) {
			t.Fatalf("secret %q, signed body: verify = %v", secret, err)
		}
		if !bytes.Equal(body, other) && p.verify(h, other, secret, testNow) == nil {
			t.Fatalf("a different body verified: signed %q, got %q", body, other)
		}
		h.Del("X-Gitea-Signature")
		h.Set("X-Forgejo-Signature", forged)
		checkPrecheck(t, p, h, body, secret)
		if err := p.verify(h, body, secret, testNow); err == nil && !strings.EqualFold(forged, signGitea(secret, body)) {
			t.Fatalf("forged signature %q verified", forged)
		}
	})
}

func FuzzGitLabVerify(f *testing.F) {
	for _, b := range seedBodies(f) {
		f.Add([]byte("gitlab-signing-key"), "msg_2f9c", int64(-30), b, append([]byte{' '}, b...), "glpat-guess")
	}
	f.Add([]byte("secret"), "msg_p5jXN8AQM9LWM0D4loKWxJek", int64(0), []byte(`{"test": 2432232314}`), []byte(`{"test": 2432232315}`), "")
	f.Fuzz(func(t *testing.T, key []byte, id string, offset int64, body, other []byte, token string) {
		p := gitlabProvider{}
		secret := []byte("whsec_" + base64.StdEncoding.EncodeToString(key))
		ts := testNow.Add(time.Duration(offset%3600) * time.Second)
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
		h.Set("webhook-signature", signStandard(t, secret, id, ts, body))
		checkPrecheck(t, p, h, body, secret)
		err := p.verify(h, body, secret, testNow)
		within := testNow.Sub(ts).Abs() <= SignatureTolerance
		if want := len(key) > 0 && id != "" && within; want != (err == nil) {
			t.Fatalf("key %q id %q skew %s: verify = %v", key, id, testNow.Sub(ts), err)
		}
		if !bytes.Equal(body, other) && p.verify(h, other, secret, testNow) == nil {
			t.Fatalf("a different body verified: signed %q, got %q", body, other)
		}
		// Token mode: only the exact token verifies, and a signing secret never accepts a token.
		h = http.Header{}
		h.Set("X-Gitlab-Token", token)
		checkPrecheck(t, p, h, body, key)
		if err := p.verify(h, body, key, testNow); err == nil && (token != string(key) || len(key) == 0) {
			t.Fatalf("token %q verified against secret %q", token, key)
		}
		if p.verify(h, body, secret, testNow) == nil {
			t.Fatal("a plain token verified against a signing secret")
		}
	})
}

// checkPrecheck is precheck's property: it never refuses a delivery verify accepts, and a
// delivery it refuses verify refuses too.
func checkPrecheck(t *testing.T, p provider, h http.Header, body, secret []byte) {
	t.Helper()
	pre, err := p.precheck(h, secret, testNow), p.verify(h, body, secret, testNow)
	if pre != nil && err == nil {
		t.Fatalf("precheck refused a delivery verify accepts: %v", pre)
	}
	if pre != nil && !errors.Is(pre, ErrSignature) {
		t.Fatalf("precheck error %v does not wrap ErrSignature", pre)
	}
}

// checkParsed is the parse property: no panic, failures wrap ErrPayload, and a successful
// parse yields an event routing can act on without further checks.
func checkParsed(t *testing.T, ev Event, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrPayload) {
			t.Fatalf("parse error %v does not wrap ErrPayload", err)
		}
		return
	}
	switch ev.Kind {
	case EventPing:
	case EventIgnored:
		if ev.Ignored == "" {
			t.Fatal("ignored event without a reason")
		}
	case EventPush:
		if ev.Ref == "" || (ev.After == "" && !ev.Deleted) {
			t.Fatalf("push without ref or after: %+v", ev)
		}
	case EventPullRequest:
		if ev.PR == nil || ev.PR.Number <= 0 || ev.PR.HeadSHA == "" || ev.PR.HeadRef == "" || ev.PR.BaseBranch == "" {
			t.Fatalf("incomplete pull request: %+v", ev.PR)
		}
	case EventRerun:
		if ev.Rerun == nil || ev.Rerun.HeadSHA == "" {
			t.Fatalf("re-run without a commit: %+v", ev.Rerun)
		}
		for _, pr := range ev.Rerun.PRs {
			if pr.Number <= 0 || pr.HeadRef == "" {
				t.Fatalf("re-run lists an incomplete pull request: %+v", pr)
			}
		}
	default:
		t.Fatalf("unknown kind %q", ev.Kind)
	}
	if len(ev.DeliveryID) > maxDeliveryIDBytes {
		t.Fatalf("delivery id of %d bytes", len(ev.DeliveryID))
	}
}

func FuzzParseGitHub(f *testing.F) {
	f.Add("push", "application/json", readTestdata(f, "github/push.json"))
	f.Add("push", "application/x-www-form-urlencoded", readTestdata(f, "github/push.form"))
	f.Add("ping", "application/json", readTestdata(f, "github/ping.json"))
	f.Add("pull_request", "application/json; charset=utf-8", readTestdata(f, "github/pull_request.json"))
	f.Add("pull_request", "", []byte(`{"action":"opened","number":1,"pull_request":{"head":{"sha":"a"},"base":{"ref":"main"}}}`))
	f.Add("check_run", "application/json", readTestdata(f, "github/check_run_rerequested.json"))
	f.Add("check_run", "application/json", readTestdata(f, "github/check_run_rerequested_preview.json"))
	f.Add("check_suite", "application/json", readTestdata(f, "github/check_suite_rerequested.json"))
	f.Add("check_run", "", []byte(`{"action":"rerequested","check_run":{"name":"ferry/a","head_sha":"`+strings.Repeat("a", 40)+`","pull_requests":[{"number":0}]}}`))
	f.Fuzz(func(t *testing.T, event, contentType string, body []byte) {
		h := http.Header{}
		h.Set("X-GitHub-Event", event)
		h.Set("Content-Type", contentType)
		h.Set("X-GitHub-Delivery", "d")
		ev, err := githubProvider{}.parse(h, body)
		checkParsed(t, ev, err)
	})
}

func FuzzParseGitLab(f *testing.F) {
	f.Add("Push Hook", readTestdata(f, "gitlab/push.json"))
	f.Add("Merge Request Hook", readTestdata(f, "gitlab/merge_request.json"))
	f.Add("Tag Push Hook", readTestdata(f, "gitlab/tag_push.json"))
	f.Add("Merge Request Hook", []byte(`{"object_attributes":{"action":"open","iid":1,"target_branch":"main","last_commit":{"id":"a"}}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := http.Header{}
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Event-UUID", "u")
		ev, err := gitlabProvider{}.parse(h, body)
		checkParsed(t, ev, err)
	})
}

func FuzzParseGitea(f *testing.F) {
	f.Add("push", readTestdata(f, "gitea/push.json"))
	f.Add("pull_request", readTestdata(f, "gitea/pull_request.json"))
	f.Add("pull_request", []byte(`{"action":"opened","number":3,"pull_request":{"head":{"sha":"a"},"base":{"ref":"main"}}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := http.Header{}
		h.Set("X-Forgejo-Event", event)
		h.Set("X-Forgejo-Delivery", "d")
		ev, err := giteaProvider{}.parse(h, body)
		checkParsed(t, ev, err)
	})
}
