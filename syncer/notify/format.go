package notify

import (
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferrygitops/ferry/queue"
)

// format shapes an event into one receiver type's request: the body, and the headers beside
// Content-Type (which is given with it). One type per file: slack.go, teams.go, webhook.go.
type format interface {
	request(ev queue.Event, now time.Time) (body []byte, contentType string, header http.Header, err error)
}

// newFormat is target t's format; source is the CloudEvents source of generic webhooks.
func newFormat(t Target, source string) format {
	switch t.Type {
	case Slack:
		return slackFormat{}
	case Teams:
		return teamsFormat{}
	}
	return webhookFormat{key: t.Key, source: source}
}

// headline says what happened in a few words: "api failed", "api recovered".
func headline(ev queue.Event) string {
	switch ev.Kind {
	case queue.EventFailed:
		return ev.App + " failed to deploy"
	case queue.EventRecovered:
		return ev.App + " recovered"
	case queue.EventSuperseded:
		return ev.App + ": commit not applied"
	}
	return ev.App + " deployed"
}

// shortSHA is the 7 characters a commit is named by in messages.
func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// branch is the event's ref without refs/heads/ (a tag keeps refs/tags/ off too).
func branch(ref string) string {
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return b
	}
	return strings.TrimPrefix(ref, "refs/tags/")
}

// commitURL links the event's commit on its forge's web pages, or is empty when the clone URL
// does not say where they are.
func commitURL(ev queue.Event) string {
	u, err := url.Parse(ev.RepoURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || ev.SHA == "" || u.User != nil {
		return ""
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), ".git")
	u.RawQuery, u.Fragment, u.RawPath = "", "", ""
	sep := "/commit/"
	if ev.Provider == "gitlab" {
		sep = "/-/commit/"
	}
	return u.String() + sep + url.PathEscape(ev.SHA)
}

// cutText shortens s to at most n bytes on a rune boundary, marking the cut.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}
