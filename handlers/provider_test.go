package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestGitHubPublishedVector checks verify against the example in GitHub's "Validating webhook
// deliveries" documentation.
func TestGitHubPublishedVector(t *testing.T) {
	secret := []byte("It's a Secret to Everybody")
	body := []byte("Hello, World!")
	const sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	h := http.Header{}
	h.Set("X-Hub-Signature-256", sig)
	if err := (githubProvider{}).verify(h, body, secret, time.Time{}); err != nil {
		t.Fatalf("published vector refused: %v", err)
	}
	if got := signGitHub(secret, body); got != sig {
		t.Fatalf("test signer disagrees with GitHub's vector: %s", got)
	}
	if err := (githubProvider{}).verify(h, []byte("Hello, World?"), secret, time.Time{}); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered body: got %v, want ErrSignature", err)
	}
}

// TestStandardWebhooksVector checks the GitLab signing-token path against the Standard
// Webhooks specification's example.
func TestStandardWebhooksVector(t *testing.T) {
	secret := []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	body := []byte(`{"test": 2432232314}`)
	const sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	ts := time.Unix(1614265330, 0)
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", sig)
	if err := (gitlabProvider{}).verify(h, body, secret, ts); err != nil {
		t.Fatalf("published vector refused: %v", err)
	}
	if got := signStandard(t, secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body); got != sig {
		t.Fatalf("test signer disagrees with the spec's vector: %s", got)
	}
	// Several signatures, one of them valid (key rotation), and unknown schemes are skipped.
	h.Set("webhook-signature", "v1a,c29tZXRoaW5nZWxzZQ== v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "+sig)
	if err := (gitlabProvider{}).verify(h, body, secret, ts); err != nil {
		t.Fatalf("valid signature among others refused: %v", err)
	}
	for name, now := range map[string]time.Time{
		"too old":       ts.Add(SignatureTolerance + time.Second),
		"in the future": ts.Add(-SignatureTolerance - time.Second),
	} {
		if err := (gitlabProvider{}).verify(h, body, secret, now); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: got %v, want ErrSignature", name, err)
		}
	}
	if err := (gitlabProvider{}).verify(h, body, secret, ts.Add(SignatureTolerance)); err != nil {
		t.Errorf("timestamp exactly at the tolerance refused: %v", err)
	}
}

func TestVerify(t *testing.T) {
	ghBody := readTestdata(t, "github/push.json")
	glBody := readTestdata(t, "gitlab/push.json")
	gtBody := readTestdata(t, "gitea/push.json")
	tampered := func(b []byte) []byte {
		return []byte(strings.Replace(string(b), "refs/heads/main", "refs/heads/mainx", 1))
	}
	del := func(h http.Header, names ...string) http.Header {
		h = h.Clone()
		for _, n := range names {
			h.Del(n)
		}
		return h
	}
	set := func(h http.Header, name, value string) http.Header {
		h = h.Clone()
		h.Set(name, value)
		return h
	}
	gh := githubHeaders("push", "d1", githubSecret, ghBody)
	gt := giteaHeaders("push", "d2", giteaSecret, gtBody)
	glt := gitlabTokenHeaders("Push Hook", "u1", gitlabToken)
	gls := gitlabSigningHeaders(t, "Push Hook", "id1", testNow, gitlabSigning, glBody)
	forgejo := del(gt, "X-Gitea-Signature")
	forgejo.Set("X-Forgejo-Signature", signGitea(giteaSecret, gtBody))

	tests := []struct {
		name   string
		p      provider
		h      http.Header
		body   []byte
		secret []byte
		now    time.Time
		ok     bool
	}{
		{"github good", githubProvider{}, gh, ghBody, githubSecret, testNow, true},
		{"github wrong secret", githubProvider{}, gh, ghBody, []byte("other"), testNow, false},
		{"github tampered body", githubProvider{}, gh, tampered(ghBody), githubSecret, testNow, false},
		{"github missing signature", githubProvider{}, del(gh, "X-Hub-Signature-256"), ghBody, githubSecret, testNow, false},
		{"github sha1 only", githubProvider{}, set(del(gh, "X-Hub-Signature-256"), "X-Hub-Signature", "sha1=0123"), ghBody, githubSecret, testNow, false},
		{"github no prefix", githubProvider{}, set(gh, "X-Hub-Signature-256", strings.TrimPrefix(signGitHub(githubSecret, ghBody), "sha256=")), ghBody, githubSecret, testNow, false},
		{"github not hex", githubProvider{}, set(gh, "X-Hub-Signature-256", "sha256=zz"), ghBody, githubSecret, testNow, false},
		{"github empty secret", githubProvider{}, githubHeaders("push", "d1", nil, ghBody), ghBody, nil, testNow, false},
		{"gitea good", giteaProvider{}, gt, gtBody, giteaSecret, testNow, true},
		{"forgejo header", giteaProvider{}, forgejo, gtBody, giteaSecret, testNow, true},
		{"gitea wrong secret", giteaProvider{}, gt, gtBody, []byte("other"), testNow, false},
		{"gitea tampered body", giteaProvider{}, gt, tampered(gtBody), giteaSecret, testNow, false},
		{"gitea missing signature", giteaProvider{}, del(gt, "X-Gitea-Signature"), gtBody, giteaSecret, testNow, false},
		{"gitea empty secret", giteaProvider{}, giteaHeaders("push", "d2", nil, gtBody), gtBody, []byte{}, testNow, false},
		{"gitlab token good", gitlabProvider{}, glt, glBody, gitlabToken, testNow, true},
		{"gitlab token wrong", gitlabProvider{}, glt, glBody, []byte("glpat-Token-0f3e8d2c1c"), testNow, false},
		{"gitlab token prefix only", gitlabProvider{}, set(glt, "X-Gitlab-Token", "glpat-Token"), glBody, gitlabToken, testNow, false},
		{"gitlab token missing", gitlabProvider{}, del(glt, "X-Gitlab-Token"), glBody, gitlabToken, testNow, false},
		{"gitlab empty secret, empty token", gitlabProvider{}, set(glt, "X-Gitlab-Token", ""), glBody, nil, testNow, false},
		{"gitlab signing good", gitlabProvider{}, gls, glBody, gitlabSigning, testNow, true},
		{"gitlab signing tampered body", gitlabProvider{}, gls, tampered(glBody), gitlabSigning, testNow, false},
		{"gitlab signing other id", gitlabProvider{}, set(gls, "webhook-id", "id2"), glBody, gitlabSigning, testNow, false},
		{"gitlab signing skew", gitlabProvider{}, gls, glBody, gitlabSigning, testNow.Add(6 * time.Minute), false},
		{"gitlab signing bad timestamp", gitlabProvider{}, set(gls, "webhook-timestamp", "yesterday"), glBody, gitlabSigning, testNow, false},
		{"gitlab signing missing headers", gitlabProvider{}, del(gls, "webhook-signature"), glBody, gitlabSigning, testNow, false},
		{"gitlab signing secret, token sent", gitlabProvider{}, set(del(gls, "webhook-signature"), "X-Gitlab-Token", string(gitlabSigning)), glBody, gitlabSigning, testNow, false},
		{"gitlab token secret, signature sent", gitlabProvider{}, gls, glBody, gitlabToken, testNow, false},
		{"gitlab signing too many signatures", gitlabProvider{}, set(gls, "webhook-signature", strings.Repeat("v1,AAAA ", maxSignatures)+gls.Get("webhook-signature")), glBody, gitlabSigning, testNow, false},
	}
	// Refusals the headers alone show, which precheck makes before the body is read.
	headerOnly := map[string]bool{
		"github missing signature": true, "github sha1 only": true, "github no prefix": true, "github not hex": true,
		"github empty secret": true, "gitea missing signature": true, "gitea empty secret": true,
		"gitlab token wrong": true, "gitlab token prefix only": true, "gitlab token missing": true,
		"gitlab empty secret, empty token": true, "gitlab signing skew": true, "gitlab signing bad timestamp": true,
		"gitlab signing missing headers": true, "gitlab signing secret, token sent": true,
		"gitlab token secret, signature sent": true, "gitlab signing too many signatures": true,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pre := tt.p.precheck(tt.h, tt.secret, tt.now)
			switch {
			case headerOnly[tt.name] && !errors.Is(pre, ErrSignature):
				t.Fatalf("precheck = %v, want an ErrSignature before the body is read", pre)
			case !headerOnly[tt.name] && pre != nil:
				t.Fatalf("precheck refused what only the body can refuse: %v", pre)
			}
			err := tt.p.verify(tt.h, tt.body, tt.secret, tt.now)
			if tt.ok {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("verify = %v, want an ErrSignature", err)
			}
			msg := err.Error()
			if len(tt.secret) > 0 && strings.Contains(msg, string(tt.secret)) {
				t.Errorf("error %q contains the secret", msg)
			}
			for _, k := range []string{"X-Hub-Signature-256", "X-Gitea-Signature", "X-Gitlab-Token", "webhook-signature"} {
				if v := tt.h.Get(k); len(v) > 8 && strings.Contains(msg, v) {
					t.Errorf("error %q contains the received %s", msg, k)
				}
			}
		})
	}
}

// TestEmptySecretNeverVerifies signs with an empty key, which is what a forge does for a hook
// without a secret: the MAC is well-formed, and must still be refused.
func TestEmptySecretNeverVerifies(t *testing.T) {
	body := readTestdata(t, "github/push.json")
	for name, p := range map[string]provider{"github": githubProvider{}, "gitea": giteaProvider{}, "gitlab": gitlabProvider{}} {
		h := http.Header{}
		h.Set("X-Hub-Signature-256", signGitHub(nil, body))
		h.Set("X-Gitea-Signature", signGitea(nil, body))
		h.Set("X-Gitlab-Token", "")
		for _, secret := range [][]byte{nil, {}} {
			if err := p.verify(h, body, secret, testNow); !errors.Is(err, ErrSignature) {
				t.Errorf("%s with secret %q: got %v, want ErrSignature", name, secret, err)
			}
		}
	}
}

func TestParse(t *testing.T) {
	ghPush := readTestdata(t, "github/push.json")
	ghForm := readTestdata(t, "github/push.form")
	ghPR := readTestdata(t, "github/pull_request.json")
	glPush := readTestdata(t, "gitlab/push.json")
	glMR := readTestdata(t, "gitlab/merge_request.json")
	gtPush := readTestdata(t, "gitea/push.json")
	gtPR := readTestdata(t, "gitea/pull_request.json")
	formHeaders := githubHeaders("push", "f1", githubSecret, ghForm)
	formHeaders.Set("Content-Type", "application/x-www-form-urlencoded")

	ghPushEvent := Event{
		Kind: EventPush, DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		Ref: "refs/heads/main", Before: "3c4e9f2a1b0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f", After: "9e2d5a8c4b7f61e0d3c2b1a09f8e7d6c5b4a3928",
		Changed:    []string{"apps/database/statefulset.yaml", "docs/runbook.md"},
		Repository: "acme/platform",
	}
	ghFormEvent := ghPushEvent
	ghFormEvent.DeliveryID = "f1"
	manyCommits := patchJSON(t, ghPush, func(m map[string]any) {
		c := m["commits"].([]any)
		for len(c) < githubCommitCap {
			c = append(c, c[0])
		}
		m["commits"] = c
	})
	ghTruncated := ghPushEvent
	ghTruncated.Truncated = true
	ghDeleted := patchJSON(t, ghPush, func(m map[string]any) {
		m["deleted"], m["after"], m["commits"], m["head_commit"] = true, strings.Repeat("0", 40), []any{}, nil
	})
	ghForced := patchJSON(t, ghPush, func(m map[string]any) { m["forced"] = true })

	tests := []struct {
		name string
		p    provider
		h    http.Header
		body []byte
		want Event
		err  bool
	}{
		{name: "github push", p: githubProvider{}, h: githubHeaders("push", ghPushEvent.DeliveryID, githubSecret, ghPush), body: ghPush, want: ghPushEvent},
		{name: "github push form-encoded", p: githubProvider{}, h: formHeaders, body: ghForm, want: ghFormEvent},
		{name: "github push 20 commits is truncated", p: githubProvider{}, h: githubHeaders("push", ghPushEvent.DeliveryID, githubSecret, nil), body: manyCommits, want: ghTruncated},
		{name: "github forced push is truncated", p: githubProvider{}, h: githubHeaders("push", ghPushEvent.DeliveryID, githubSecret, nil), body: ghForced, want: ghTruncated},
		{name: "github branch deleted", p: githubProvider{}, h: githubHeaders("push", "d", githubSecret, nil), body: ghDeleted, want: Event{
			Kind: EventPush, DeliveryID: "d", Ref: "refs/heads/main", Before: ghPushEvent.Before, After: strings.Repeat("0", 40), Deleted: true,
			Repository: "acme/platform",
		}},
		{name: "github ping", p: githubProvider{}, h: githubHeaders("ping", "p1", githubSecret, nil), body: readTestdata(t, "github/ping.json"), want: Event{Kind: EventPing, DeliveryID: "p1"}},
		{name: "github pull request", p: githubProvider{}, h: githubHeaders("pull_request", "pr1", githubSecret, nil), body: ghPR, want: Event{
			Kind: EventPullRequest, DeliveryID: "pr1", Repository: "acme/platform", PR: &PullRequest{
				Number: 42, Action: "synchronize", HeadSHA: "c0ffee1234567890abcdef1234567890abcdef12", HeadRef: "refs/pull/42/head",
				BaseBranch: "main", BaseSHA: "9e2d5a8c4b7f61e0d3c2b1a09f8e7d6c5b4a3928",
			},
		}},
		{name: "github pull request closed", p: githubProvider{}, h: githubHeaders("pull_request", "pr2", githubSecret, nil),
			body: patchJSON(t, ghPR, func(m map[string]any) { m["action"] = "closed" }),
			want: Event{Kind: EventIgnored, DeliveryID: "pr2", Ignored: `pull request action "closed" brings no new commits`}},
		{name: "github issues event", p: githubProvider{}, h: githubHeaders("issues", "i1", githubSecret, nil), body: []byte(`{}`),
			want: Event{Kind: EventIgnored, DeliveryID: "i1", Ignored: `github event "issues" is not acted on`}},
		{name: "github bad json", p: githubProvider{}, h: githubHeaders("push", "x", githubSecret, nil), body: []byte(`{"ref":`), err: true},
		{name: "github push without after", p: githubProvider{}, h: githubHeaders("push", "x", githubSecret, nil), body: []byte(`{"ref":"refs/heads/main"}`), err: true},
		{name: "github missing event header", p: githubProvider{}, h: http.Header{}, body: ghPush, err: true},
		{name: "github form without payload", p: githubProvider{}, h: formHeaders, body: []byte(url.Values{"other": {"1"}}.Encode()), err: true},

		{name: "gitlab push", p: gitlabProvider{}, h: gitlabTokenHeaders("Push Hook", "e1b2c3d4-0000-4000-8000-000000000001", gitlabToken), body: glPush, want: Event{
			Kind: EventPush, DeliveryID: "e1b2c3d4-0000-4000-8000-000000000001", Ref: "refs/heads/main",
			Before: "95790bf891e76fee5e1747ab589903a6a1f80f22", After: "0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c",
			Changed: []string{"apps/api/docs/notes.md", "apps/worker/deployment.yaml"},
		}},
		{name: "gitlab push counted more commits than listed", p: gitlabProvider{}, h: gitlabTokenHeaders("Push Hook", "u", gitlabToken),
			body: patchJSON(t, glPush, func(m map[string]any) { m["total_commits_count"] = 31 }), want: Event{
				Kind: EventPush, DeliveryID: "u", Ref: "refs/heads/main",
				Before: "95790bf891e76fee5e1747ab589903a6a1f80f22", After: "0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c",
				Changed: []string{"apps/api/docs/notes.md", "apps/worker/deployment.yaml"}, Truncated: true,
			}},
		{name: "gitlab merge request update with new commits", p: gitlabProvider{}, h: gitlabSigningHeaders(t, "Merge Request Hook", "msg_1", testNow, gitlabSigning, glMR), body: glMR, want: Event{
			Kind: EventPullRequest, DeliveryID: "msg_1", PR: &PullRequest{
				Number: 7, Action: "update", HeadSHA: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", HeadRef: "refs/merge-requests/7/head", BaseBranch: "main",
			},
		}},
		{name: "gitlab merge request update without oldrev", p: gitlabProvider{}, h: gitlabTokenHeaders("Merge Request Hook", "u", gitlabToken),
			body: patchJSON(t, glMR, func(m map[string]any) { delete(m["object_attributes"].(map[string]any), "oldrev") }),
			want: Event{Kind: EventIgnored, DeliveryID: "u", Ignored: "merge request update without new commits"}},
		{name: "gitlab merge request merged", p: gitlabProvider{}, h: gitlabTokenHeaders("Merge Request Hook", "u", gitlabToken),
			body: patchJSON(t, glMR, func(m map[string]any) { m["object_attributes"].(map[string]any)["action"] = "merge" }),
			want: Event{Kind: EventIgnored, DeliveryID: "u", Ignored: `merge request action "merge" brings no new commits`}},
		{name: "gitlab tag push", p: gitlabProvider{}, h: gitlabTokenHeaders("Tag Push Hook", "u", gitlabToken), body: readTestdata(t, "gitlab/tag_push.json"),
			want: Event{Kind: EventIgnored, DeliveryID: "u", Ignored: "tag push: ferry deploys branches, not tags"}},
		{name: "gitlab delivery id falls back to the event uuid", p: gitlabProvider{}, h: func() http.Header {
			h := gitlabTokenHeaders("Note Hook", "uuid-1", gitlabToken)
			h.Del("Idempotency-Key")
			return h
		}(), body: []byte(`{}`), want: Event{Kind: EventIgnored, DeliveryID: "uuid-1", Ignored: `gitlab event "Note Hook" is not acted on`}},
		{name: "gitlab bad json", p: gitlabProvider{}, h: gitlabTokenHeaders("Push Hook", "u", gitlabToken), body: []byte(`[1,2`), err: true},

		{name: "gitea push", p: giteaProvider{}, h: giteaHeaders("push", "a9b8c7d6-1111-4222-8333-444455556666", giteaSecret, gtPush), body: gtPush, want: Event{
			Kind: EventPush, DeliveryID: "a9b8c7d6-1111-4222-8333-444455556666", Ref: "refs/heads/main",
			Before: "1f2e3d4c5b6a79880716253443526170f9e8d7c6", After: "6a1e2f8b3c9d40e5f71a2b3c4d5e6f7089a1b2c3",
			Changed: []string{"apps/api/deployment-v2.yaml"},
		}},
		{name: "gitea pull request synchronized", p: giteaProvider{}, h: giteaHeaders("pull_request", "g2", giteaSecret, gtPR), body: gtPR, want: Event{
			Kind: EventPullRequest, DeliveryID: "g2", PR: &PullRequest{
				Number: 5, Action: "synchronized", HeadSHA: "f00dbabe0123456789abcdef0123456789abcdef", HeadRef: "refs/pull/5/head",
				BaseBranch: "main", BaseSHA: "6a1e2f8b3c9d40e5f71a2b3c4d5e6f7089a1b2c3",
			},
		}},
		{name: "gitea pull request labeled", p: giteaProvider{}, h: giteaHeaders("pull_request", "g3", giteaSecret, nil),
			body: patchJSON(t, gtPR, func(m map[string]any) { m["action"] = "label_updated" }),
			want: Event{Kind: EventIgnored, DeliveryID: "g3", Ignored: `pull request action "label_updated" brings no new commits`}},
		{name: "gitea bad json", p: giteaProvider{}, h: giteaHeaders("push", "g", giteaSecret, nil), body: []byte(`{"ref": 1}`), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.parse(tt.h, tt.body)
			if tt.err {
				if !errors.Is(err, ErrPayload) {
					t.Fatalf("parse = %+v, %v; want an ErrPayload", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeliveryIDTooLong(t *testing.T) {
	h := githubHeaders("ping", strings.Repeat("x", maxDeliveryIDBytes+1), githubSecret, nil)
	if _, err := (githubProvider{}).parse(h, []byte(`{}`)); !errors.Is(err, ErrPayload) {
		t.Fatalf("got %v, want ErrPayload", err)
	}
	h.Set("X-GitHub-Delivery", strings.Repeat("x", maxDeliveryIDBytes))
	if _, err := (githubProvider{}).parse(h, []byte(`{"zen":"ok","hook_id":`+strconv.Itoa(1)+`}`)); err != nil {
		t.Fatalf("id of the maximum length refused: %v", err)
	}
}
