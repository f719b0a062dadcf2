package handlers

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v92/github"
)

// GitHub's webhook headers. X-Hub-Signature (SHA-1) is deliberately not read: every delivery
// also carries the SHA-256 one, and accepting the weaker MAC would only widen what verifies.
const (
	githubSignatureHeader = github.SHA256SignatureHeader // "sha256=" + hex HMAC-SHA256 of the raw body
	githubEventHeader     = github.EventTypeHeader
	githubDeliveryHeader  = github.DeliveryIDHeader
	githubSignaturePrefix = "sha256="
)

// githubProvider reads GitHub (and GitHub Enterprise Server) repository webhooks.
type githubProvider struct{}

var _ provider = githubProvider{}

// verify checks X-Hub-Signature-256 over the raw body, form-encoded or JSON alike: GitHub signs
// the bytes it sends, before any decoding.
func (githubProvider) verify(h http.Header, body, secret []byte, _ time.Time) error {
	sig, err := githubSignature(h)
	if err != nil {
		return err
	}
	return verifyHexMAC(githubSignatureHeader, sig, body, secret)
}

// precheck refuses a delivery without a well-formed X-Hub-Signature-256 before its body is read.
func (githubProvider) precheck(h http.Header, secret []byte, _ time.Time) error {
	sig, err := githubSignature(h)
	if err != nil {
		return err
	}
	_, err = hexMAC(githubSignatureHeader, sig, secret)
	return err
}

// githubSignature is X-Hub-Signature-256 without its sha256= prefix.
func githubSignature(h http.Header) (string, error) {
	sig := h.Get(githubSignatureHeader)
	if sig != "" && !strings.HasPrefix(sig, githubSignaturePrefix) {
		return "", fmt.Errorf("%s header lacks the %s prefix: %w", githubSignatureHeader, githubSignaturePrefix, ErrSignature)
	}
	return strings.TrimPrefix(sig, githubSignaturePrefix), nil
}

// parse reads ping, push, pull_request, check_run and check_suite deliveries; every other event
// is acknowledged and ignored.
func (githubProvider) parse(h http.Header, body []byte) (Event, error) {
	id, err := deliveryID(h, githubDeliveryHeader)
	if err != nil {
		return Event{}, err
	}
	name := h.Get(githubEventHeader)
	switch name {
	case "":
		return Event{}, fmt.Errorf("missing %s header: %w", githubEventHeader, ErrPayload)
	case "ping", "push", "pull_request", "check_run", "check_suite":
	default:
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: fmt.Sprintf("github event %q is not acted on", name)}, nil
	}
	payload, err := githubPayload(h.Get("Content-Type"), body)
	if err != nil {
		return Event{}, err
	}
	if name == "push" {
		// Read only the fields ferry needs, not the whole document into go-github's types
		// (most of a push payload is repository and user detail).
		var p githubPushPayload
		if err := decodePayload(payload, &p); err != nil {
			return Event{}, fmt.Errorf("github push payload: %w: %w", ErrPayload, err)
		}
		return githubPush(id, &p)
	}
	if name == "check_run" || name == "check_suite" {
		var p githubCheckPayload
		if err := decodePayload(payload, &p); err != nil {
			return Event{}, fmt.Errorf("github %s payload: %w: %w", name, ErrPayload, err)
		}
		return githubRerun(id, name, &p)
	}
	parsed, err := github.ParseWebHook(name, payload)
	if err != nil {
		return Event{}, fmt.Errorf("github %s payload: %w: %w", name, ErrPayload, err)
	}
	switch e := parsed.(type) {
	case *github.PingEvent:
		return Event{Kind: EventPing, DeliveryID: id}, nil
	case *github.PullRequestEvent:
		return githubPullRequest(id, e)
	default:
		return Event{}, fmt.Errorf("github %s payload parsed as %T: %w", name, parsed, ErrPayload)
	}
}

// githubPayload returns the JSON document of a delivery. A hook created with content type
// application/x-www-form-urlencoded sends it in the form field "payload".
func githubPayload(contentType string, body []byte) ([]byte, error) {
	mediaType := "application/json"
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, fmt.Errorf("content type: %w: %w", ErrPayload, err)
		}
		mediaType = mt
	}
	switch mediaType {
	case "application/json":
		return body, nil
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("form body: %w: %w", ErrPayload, err)
		}
		p := form.Get("payload")
		if p == "" {
			return nil, fmt.Errorf("form body has no payload field: %w", ErrPayload)
		}
		return []byte(p), nil
	default:
		return nil, fmt.Errorf("content type %q is neither JSON nor a form: %w", mediaType, ErrPayload)
	}
}

// githubPushPayload is the part of GitHub's push event ferry reads.
type githubPushPayload struct {
	Ref     string        `json:"ref"`
	Before  string        `json:"before"`
	After   *string       `json:"after"`
	Deleted bool          `json:"deleted"`
	Forced  bool          `json:"forced"`
	Commits []*pushCommit `json:"commits"`
	// Repository is read for its full name only.
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// pushCommit is the part of a pushed commit ferry reads, GitHub's and Gitea's alike: the
// files it touched.
type pushCommit struct {
	Added    []string `json:"added"`
	Removed  []string `json:"removed"`
	Modified []string `json:"modified"`
}

func githubPush(id string, e *githubPushPayload) (Event, error) {
	after := ""
	if e.After != nil {
		after = *e.After
	}
	ev := Event{
		Kind:       EventPush,
		DeliveryID: id,
		Ref:        e.Ref,
		Before:     e.Before,
		After:      after,
		Deleted:    e.Deleted || (e.After != nil && isZeroSHA(after)),
		Repository: e.Repository.FullName,
	}
	if ev.Ref == "" || (ev.After == "" && !ev.Deleted) {
		return Event{}, fmt.Errorf("github push without ref or after: %w", ErrPayload)
	}
	changed := pathSet{}
	for _, c := range e.Commits {
		if c != nil {
			changed.add(c.Added, c.Modified, c.Removed)
		}
	}
	ev.Changed = changed.sorted()
	// GitHub lists at most 20 commits; a forced push does not list what it dropped; a ref moved
	// onto existing commits lists none. In each case what changed is not fully known.
	ev.Truncated = len(e.Commits) >= githubCommitCap || e.Forced ||
		(len(e.Commits) == 0 && !ev.Deleted && ev.Before != ev.After)
	return ev, nil
}

// githubPRActions are the pull_request actions that put a new head in front of ferry.
var githubPRActions = map[string]bool{"opened": true, "synchronize": true, "reopened": true}

func githubPullRequest(id string, e *github.PullRequestEvent) (Event, error) {
	action := e.GetAction()
	if !githubPRActions[action] {
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: fmt.Sprintf("pull request action %q brings no new commits", action)}, nil
	}
	pr := e.GetPullRequest()
	n := e.GetNumber()
	if n == 0 {
		n = pr.GetNumber()
	}
	head, base := pr.GetHead(), pr.GetBase()
	if n <= 0 || head.GetSHA() == "" || base.GetRef() == "" {
		return Event{}, fmt.Errorf("github pull_request without number, head sha or base ref: %w", ErrPayload)
	}
	return Event{
		Kind:       EventPullRequest,
		DeliveryID: id,
		Repository: e.GetRepo().GetFullName(),
		PR: &PullRequest{
			Number:     n,
			Action:     action,
			HeadSHA:    head.GetSHA(),
			HeadRef:    "refs/pull/" + strconv.Itoa(n) + "/head",
			BaseBranch: base.GetRef(),
			BaseSHA:    base.GetSHA(),
		},
	}, nil
}

// githubCheckPayload is the part of GitHub's check_run and check_suite deliveries ferry reads.
type githubCheckPayload struct {
	Action     string       `json:"action"`
	CheckRun   *githubCheck `json:"check_run"`
	CheckSuite *githubCheck `json:"check_suite"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// githubCheck is a check run or a check suite: a run has a name and its suite, a suite a head
// branch.
type githubCheck struct {
	Name       string  `json:"name"`
	HeadSHA    string  `json:"head_sha"`
	HeadBranch *string `json:"head_branch"`
	App        struct {
		ID int64 `json:"id"`
	} `json:"app"`
	CheckSuite   *githubCheck        `json:"check_suite"`
	PullRequests []githubCheckPRLink `json:"pull_requests"`
}

// githubCheckPRLink is a pull request as check payloads list it: number, head and base only.
type githubCheckPRLink struct {
	Number int            `json:"number"`
	Head   githubCheckRef `json:"head"`
	Base   githubCheckRef `json:"base"`
}

type githubCheckRef struct {
	Ref string `json:"ref"`
	SHA string `json:"sha"`
}

// githubRerun reads a check_run or check_suite delivery: only "rerequested", someone pressing
// Re-run, asks something of ferry. created, completed and requested_action (check_run), and
// requested and completed (check_suite) are ferry's own doing or GitHub's bookkeeping.
func githubRerun(id, name string, p *githubCheckPayload) (Event, error) {
	if p.Action != "rerequested" {
		return Event{Kind: EventIgnored, DeliveryID: id, Ignored: fmt.Sprintf("github %s action %q is not a Re-run request", name, p.Action)}, nil
	}
	c := p.CheckSuite
	if name == "check_run" {
		c = p.CheckRun
	}
	if c == nil || !shaPattern.MatchString(c.HeadSHA) || (name == "check_run" && c.Name == "") {
		return Event{}, fmt.Errorf("github %s without %s, a full head_sha or a name: %w", name, name, ErrPayload)
	}
	r := &Rerun{AppID: c.App.ID, HeadSHA: c.HeadSHA}
	suite := c
	if name == "check_run" {
		r.Check = c.Name
		suite = c.CheckSuite
		if suite != nil && r.AppID == 0 {
			r.AppID = suite.App.ID
		}
	}
	if suite != nil && suite.HeadBranch != nil {
		r.HeadBranch = *suite.HeadBranch
	}
	for _, pr := range c.PullRequests {
		if pr.Number <= 0 {
			return Event{}, fmt.Errorf("github %s lists a pull request without a number: %w", name, ErrPayload)
		}
		r.PRs = append(r.PRs, PullRequest{
			Number: pr.Number, Action: "rerequested", HeadSHA: c.HeadSHA,
			HeadRef:    "refs/pull/" + strconv.Itoa(pr.Number) + "/head",
			BaseBranch: pr.Base.Ref, BaseSHA: pr.Base.SHA,
		})
	}
	return Event{Kind: EventRerun, DeliveryID: id, Repository: p.Repository.FullName, Rerun: r}, nil
}
