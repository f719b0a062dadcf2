package notify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

// slackFormat is a Slack incoming webhook's message: a plain text fallback (what a phone's
// notification shows) and Block Kit blocks, a section in mrkdwn with the app, what happened, the
// commit linked to its forge and the sync's message, then a context line linking the sync page.
type slackFormat struct{}

var _ format = slackFormat{}

// slackSectionLimit is Slack's bound on a section's text; longer sections are refused
// (invalid_blocks), so the message is cut well before it.
const slackSectionLimit = 3000

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

var slackIcon = map[queue.EventKind]string{
	queue.EventFailed: ":x:", queue.EventRecovered: ":white_check_mark:", queue.EventSucceeded: ":white_check_mark:", queue.EventSuperseded: ":fast_forward:",
}

func (slackFormat) request(ev queue.Event, _ time.Time) ([]byte, string, http.Header, error) {
	commit := "`" + slackEscape(shortSHA(ev.SHA)) + "`"
	if u := commitURL(ev); u != "" {
		commit = "<" + u + "|" + slackEscape(shortSHA(ev.SHA)) + ">"
	}
	head := fmt.Sprintf("%s *%s* at %s", slackIcon[ev.Kind], slackEscape(headline(ev)), commit)
	text := head
	if ev.Message != "" {
		text += "\n" + quoteLines(slackEscape(ev.Message))
	}
	text = cutText(text, slackSectionLimit)
	fields := []slackText{
		{Type: "mrkdwn", Text: "*App*\n" + slackEscape(ev.App)},
		{Type: "mrkdwn", Text: "*State*\n" + slackEscape(string(ev.Kind))},
		{Type: "mrkdwn", Text: "*Repository*\n" + slackEscape(ev.Repo) + " " + slackEscape(branch(ev.Ref))},
		{Type: "mrkdwn", Text: "*Commit*\n" + commit},
	}
	msg := slackMessage{
		Text: fmt.Sprintf("%s at %s: %s", slackEscape(headline(ev)), slackEscape(shortSHA(ev.SHA)), slackEscape(firstLine(ev.Message))),
		Blocks: []slackBlock{
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: text}},
			{Type: "section", Fields: fields},
			{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: "<" + ev.URL + "|View sync " + slackEscape(ev.SyncID) + "> · " + slackEscape(string(ev.Trigger))}}},
		},
	}
	body, err := json.Marshal(msg)
	return body, "application/json", nil, err
}

// slackEscape escapes what Slack's mrkdwn reads as control characters: &, < and >.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// quoteLines makes s a mrkdwn block quote.
func quoteLines(s string) string {
	return "&gt;" + strings.ReplaceAll(s, "\n", "\n&gt;")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
