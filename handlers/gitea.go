package handlers

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Gitea's webhook headers. Forgejo sends both its own X-Forgejo-* headers and the Gitea
// spelling; either is accepted, the Gitea one first.
const (
	giteaSignatureHeader   = "X-Gitea-Signature" // hex HMAC-SHA256 of the raw body, no prefix
	forgejoSignatureHeader = "X-Forgejo-Signature"
	giteaEventHeader       = "X-Gitea-Event"
	forgejoEventHeader     = "X-Forgejo-Event"
	giteaDeliveryHeader    = "X-Gitea-Delivery"
	forgejoDeliveryHeader  = "X-Forgejo-Delivery"
)

// giteaProvider reads Gitea and Forgejo repository webhooks (the "Gitea" hook type).
type giteaProvider struct{}

var _ provider = giteaProvider{}

func (giteaProvider) verify(h http.Header, body, secret []byte, _ time.Time) error {
	name := giteaSignatureName(h)
	return verifyHexMAC(name, h.Get(name), body, secret)
}

// precheck refuses a delivery without a well-formed signature header before its body is read.
func (giteaProvider) precheck(h http.Header, secret []byte, _ time.Time) error {
	name := giteaSignatureName(h)
	_, err := hexMAC(name, h.Get(name), secret)
	return err
}

// giteaSignatureName is the signature header a delivery carries: Gitea's, else Forgejo's.
func giteaSignatureName(h http.Header) string {
	if h.Get(giteaSignatureHeader) == "" && h.Get(forgejoSignatureHeader) != "" {
		return forgejoSignatureHeader
	}
	return giteaSignatureHeader
}

// giteaPush is the part of a Gitea push payload ferry reads.
type giteaPush struct {
	Ref          string        `json:"ref"`
	Before       string        `json:"before"`
	After        string        `json:"after"`
	Commits      []*pushCommit `json:"commits"`
	TotalCommits int           `json:"total_commits"`
}

// giteaBranch is a pull request's head or base.
type giteaBranch struct {
	Ref string `json:"ref"`
	SHA string `json:"sha"`
}

// giteaPullRequest is the part of a Gitea pull_request payload ferry reads.
type giteaPullRequest struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest *struct {
		Number int         `json:"number"`
		Head   giteaBranch `json:"head"`
		Base   giteaBranch `json:"base"`
	} `json:"pull_request"`
}

// giteaPRActions are the pull_request actions that put a new head in front of ferry. Gitea
// says "synchronized" where GitHub says "synchronize".
var giteaPRActions = map[string]bool{"opened": true, "synchronized": true, "reopened": true}

// parse reads push and pull_request deliveries; every other event is acknowledged and ignored.
func (giteaProvider) parse(h http.Header, body []byte) (Event, error) {
	id, err := deliveryID(h, giteaDeliveryHeader, forgejoDeliveryHeader)
	if err != nil {
		return Event{}, err
	}
	name := firstHeader(h, giteaEventHeader, forgejoEventHeader)
	switch name {
	case "":
		return Event{}, fmt.Errorf("missing %s header: %w", giteaEventHeader, ErrPayload)
	case "push":
		return giteaParsePush(id, body)
	case "pull_request":
		return giteaParsePullRequest(id, body)
	default:
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: fmt.Sprintf("gitea event %q is not acted on", name)}, nil
	}
}

func giteaParsePush(id string, body []byte) (Event, error) {
	var p giteaPush
	if err := decodePayload(body, &p); err != nil {
		return Event{}, fmt.Errorf("gitea push payload: %w: %w", ErrPayload, err)
	}
	if p.Ref == "" || p.After == "" {
		return Event{}, fmt.Errorf("gitea push without ref or after: %w", ErrPayload)
	}
	return giteaPushEvent(id, p), nil
}

// giteaPushEvent is the event of a decoded push.
func giteaPushEvent(id string, p giteaPush) Event {
	ev := Event{
		Kind:       EventPush,
		DeliveryID: id,
		Ref:        p.Ref,
		Before:     p.Before,
		After:      p.After,
		Deleted:    isZeroSHA(p.After),
	}
	changed := pathSet{}
	for _, c := range p.Commits {
		if c != nil {
			changed.add(c.Added, c.Modified, c.Removed)
		}
	}
	ev.Changed = changed.sorted()
	// Gitea caps the listed commits (its feed limit) but counts them all in total_commits; a
	// ref moved onto existing commits lists none.
	ev.Truncated = p.TotalCommits > len(p.Commits) ||
		(len(p.Commits) == 0 && !ev.Deleted && ev.Before != ev.After)
	return ev
}

func giteaParsePullRequest(id string, body []byte) (Event, error) {
	var p giteaPullRequest
	if err := decodePayload(body, &p); err != nil {
		return Event{}, fmt.Errorf("gitea pull_request payload: %w: %w", ErrPayload, err)
	}
	if !giteaPRActions[p.Action] {
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: fmt.Sprintf("pull request action %q brings no new commits", p.Action)}, nil
	}
	if p.PullRequest == nil {
		return Event{}, fmt.Errorf("gitea pull_request without pull_request object: %w", ErrPayload)
	}
	n := p.Number
	if n == 0 {
		n = p.PullRequest.Number
	}
	head, base := p.PullRequest.Head, p.PullRequest.Base
	if n <= 0 || head.SHA == "" || base.Ref == "" {
		return Event{}, fmt.Errorf("gitea pull_request without number, head sha or base ref: %w", ErrPayload)
	}
	return Event{
		Kind:       EventPullRequest,
		DeliveryID: id,
		PR: &PullRequest{
			Number:     n,
			Action:     p.Action,
			HeadSHA:    head.SHA,
			HeadRef:    "refs/pull/" + strconv.Itoa(n) + "/head",
			BaseBranch: base.Ref,
			BaseSHA:    base.SHA,
		},
	}, nil
}
