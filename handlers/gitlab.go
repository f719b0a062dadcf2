package handlers

import (
	"crypto/hmac"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// GitLab's webhook headers. A hook has either a secret token, sent back verbatim in
// X-Gitlab-Token, or a signing token, used to sign each delivery the Standard Webhooks way
// (webhook-id, webhook-timestamp, webhook-signature). A signing token starts with whsec_.
const (
	gitlabTokenHeader      = "X-Gitlab-Token"
	gitlabEventHeader      = "X-Gitlab-Event"
	gitlabEventUUIDHeader  = "X-Gitlab-Event-UUID"
	gitlabIdempotencyKey   = "Idempotency-Key"
	webhookIDHeader        = "webhook-id"
	webhookTimestampHeader = "webhook-timestamp"
	webhookSignatureHeader = "webhook-signature"
	signingSecretPrefix    = "whsec_"
	signatureVersion       = "v1,"
)

// gitlabProvider reads GitLab (gitlab.com and self-managed) project webhooks.
type gitlabProvider struct{}

var _ provider = gitlabProvider{}

// verify checks the signing-token signature when the configured secret is a signing token,
// and the secret token otherwise. A hook configured for signing never falls back to the plain
// token: that would let a leaked token, or a replay, through without the timestamp check.
func (p gitlabProvider) verify(h http.Header, body, secret []byte, now time.Time) error {
	if len(secret) > 0 && strings.HasPrefix(string(secret), signingSecretPrefix) {
		return verifyStandardWebhook(h, body, secret, now)
	}
	return p.precheck(h, secret, now) // a secret token is checked from the headers alone
}

// precheck does all of a secret token's check, and a signing token's checks that need no body
// (headers present, timestamp fresh, signature count), so such deliveries are refused unread.
func (gitlabProvider) precheck(h http.Header, secret []byte, now time.Time) error {
	if len(secret) == 0 {
		return fmt.Errorf("no webhook secret is configured: %w", ErrSignature)
	}
	if strings.HasPrefix(string(secret), signingSecretPrefix) {
		_, err := standardHeaders(h, secret, now)
		return err
	}
	tok := h.Get(gitlabTokenHeader)
	if tok == "" {
		return fmt.Errorf("missing %s header: %w", gitlabTokenHeader, ErrSignature)
	}
	if !equalToken(tok, secret) {
		return fmt.Errorf("%s header does not match: %w", gitlabTokenHeader, ErrSignature)
	}
	return nil
}

// signingKey decodes a whsec_ secret into its HMAC key. It is also used to check the
// configuration up front, so a mistyped secret fails at start-up rather than on every hook.
func signingKey(secret []byte) ([]byte, error) {
	enc := strings.TrimPrefix(string(secret), signingSecretPrefix)
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		// The decoder's error names the offending byte offset only, never the secret.
		return nil, fmt.Errorf("signing secret after %s is not base64: %w", signingSecretPrefix, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("signing secret after %s is empty", signingSecretPrefix)
	}
	return key, nil
}

// standardSigned is what a Standard Webhooks delivery's headers say, checked as far as they
// can be without the body.
type standardSigned struct {
	key, id, ts []byte
	sigs        []string
}

// standardHeaders reads webhook-id, webhook-timestamp and webhook-signature: all present, the
// timestamp within SignatureTolerance of now (so a captured delivery cannot be replayed later),
// at most maxSignatures signatures.
func standardHeaders(h http.Header, secret []byte, now time.Time) (standardSigned, error) {
	key, err := signingKey(secret)
	if err != nil {
		return standardSigned{}, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	id, ts, sigs := h.Get(webhookIDHeader), h.Get(webhookTimestampHeader), h.Get(webhookSignatureHeader)
	if id == "" || ts == "" || sigs == "" {
		return standardSigned{}, fmt.Errorf("missing %s, %s or %s header: %w", webhookIDHeader, webhookTimestampHeader, webhookSignatureHeader, ErrSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return standardSigned{}, fmt.Errorf("%s header is not unix seconds: %w", webhookTimestampHeader, ErrSignature)
	}
	if skew := now.Sub(time.Unix(sec, 0)); skew > SignatureTolerance || skew < -SignatureTolerance {
		return standardSigned{}, fmt.Errorf("%s is more than %s from now: %w", webhookTimestampHeader, SignatureTolerance, ErrSignature)
	}
	fields := strings.Fields(sigs)
	if len(fields) > maxSignatures {
		return standardSigned{}, fmt.Errorf("%s header carries more than %d signatures: %w", webhookSignatureHeader, maxSignatures, ErrSignature)
	}
	return standardSigned{key: key, id: []byte(id), ts: []byte(ts), sigs: fields}, nil
}

// verifyStandardWebhook checks webhook-signature: HMAC-SHA256 over "{id}.{timestamp}.{body}",
// base64, prefixed v1, possibly several space-separated (one per active key while keys rotate).
func verifyStandardWebhook(h http.Header, body, secret []byte, now time.Time) error {
	s, err := standardHeaders(h, secret, now)
	if err != nil {
		return err
	}
	want := hmacSHA256(s.key, s.id, []byte("."), s.ts, []byte("."), body)
	for _, f := range s.sigs {
		enc, ok := strings.CutPrefix(f, signatureVersion)
		if !ok {
			continue // another scheme (e.g. v1a, asymmetric) this verifier does not hold a key for
		}
		got, err := base64.StdEncoding.DecodeString(enc)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no v1 signature in %s matches: %w", webhookSignatureHeader, ErrSignature)
}

// parse reads Push Hook and Merge Request Hook deliveries; every other event is acknowledged
// and ignored (tag pushes included: ferry deploys branches).
func (gitlabProvider) parse(h http.Header, body []byte) (Event, error) {
	id, err := gitlabDeliveryID(h)
	if err != nil {
		return Event{}, err
	}
	name := gitlab.EventType(h.Get(gitlabEventHeader))
	switch name {
	case "":
		return Event{}, fmt.Errorf("missing %s header: %w", gitlabEventHeader, ErrPayload)
	case gitlab.EventTypePush, gitlab.EventTypeMergeRequest:
	case gitlab.EventTypeTagPush:
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: "tag push: ferry deploys branches, not tags"}, nil
	default:
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: fmt.Sprintf("gitlab event %q is not acted on", name)}, nil
	}
	parsed, err := gitlab.ParseWebhook(name, body)
	if err != nil {
		return Event{}, fmt.Errorf("gitlab %s payload: %w: %w", name, ErrPayload, err)
	}
	switch e := parsed.(type) {
	case *gitlab.PushEvent:
		return gitlabPush(id, e)
	case *gitlab.MergeEvent:
		return gitlabMerge(id, e)
	default:
		return Event{}, fmt.Errorf("gitlab %s payload parsed as %T: %w", name, parsed, ErrPayload)
	}
}

// gitlabDeliveryID is the id a delivery is de-duplicated by. A delivery signed with a signing
// token reaches parse only once verify has checked webhook-signature over webhook-id, and only
// that id is bound to the body: Idempotency-Key and X-Gitlab-Event-UUID are unsigned, so a
// captured delivery replayed with new ones would otherwise become a new job. With a secret
// token nothing is signed and GitLab's own idempotency headers come first.
func gitlabDeliveryID(h http.Header) (string, error) {
	if h.Get(webhookSignatureHeader) != "" {
		return deliveryID(h, webhookIDHeader)
	}
	return deliveryID(h, gitlabIdempotencyKey, gitlabEventUUIDHeader, webhookIDHeader)
}

func gitlabPush(id string, e *gitlab.PushEvent) (Event, error) {
	if e.Ref == "" || e.After == "" {
		return Event{}, fmt.Errorf("gitlab push without ref or after: %w", ErrPayload)
	}
	ev := Event{
		Kind:       EventPush,
		DeliveryID: id,
		Ref:        e.Ref,
		Before:     e.Before,
		After:      e.After,
		Deleted:    isZeroSHA(e.After),
	}
	changed := pathSet{}
	for _, c := range e.Commits {
		if c != nil {
			changed.add(c.Added, c.Modified, c.Removed)
		}
	}
	ev.Changed = changed.sorted()
	// GitLab lists at most 20 commits but counts them all; a ref moved onto existing commits lists none.
	ev.Truncated = e.TotalCommitsCount > int64(len(e.Commits)) ||
		(len(e.Commits) == 0 && !ev.Deleted && ev.Before != ev.After)
	return ev, nil
}

func gitlabMerge(id string, e *gitlab.MergeEvent) (Event, error) {
	a := e.ObjectAttributes
	switch {
	case a.Action == "open" || a.Action == "reopen":
	case a.Action == "update" && a.OldRev != "":
		// oldrev is only sent when the update pushed commits; other updates are title, labels, etc.
	case a.Action == "update":
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: "merge request update without new commits"}, nil
	default:
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: fmt.Sprintf("merge request action %q brings no new commits", a.Action)}, nil
	}
	if a.IID <= 0 || a.LastCommit.ID == "" || a.TargetBranch == "" {
		return Event{}, fmt.Errorf("gitlab merge request without iid, last commit or target branch: %w", ErrPayload)
	}
	return Event{
		Kind:       EventPullRequest,
		DeliveryID: id,
		PR: &PullRequest{
			Number:     int(a.IID),
			Action:     a.Action,
			HeadSHA:    a.LastCommit.ID,
			HeadRef:    "refs/merge-requests/" + strconv.FormatInt(a.IID, 10) + "/head",
			BaseBranch: a.TargetBranch,
		},
	}, nil
}
