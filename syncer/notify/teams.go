package notify

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

// teamsFormat is what a Microsoft Teams Workflows webhook takes: a message whose one attachment
// is an Adaptive Card (1.4): a headline, the sync's message, the facts (app, state, repository,
// commit, trigger) and buttons to the sync page and the commit.
type teamsFormat struct{}

var _ format = teamsFormat{}

// teamsCardVersion is the Adaptive Card schema version sent; Teams renders up to 1.5.
const teamsCardVersion = "1.4"

type teamsMessage struct {
	Type        string            `json:"type"`
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string    `json:"contentType"`
	ContentURL  *string   `json:"contentUrl"`
	Content     teamsCard `json:"content"`
}

type teamsCard struct {
	Schema  string        `json:"$schema"`
	Type    string        `json:"type"`
	Version string        `json:"version"`
	Body    []teamsBlock  `json:"body"`
	Actions []teamsAction `json:"actions,omitempty"`
	MSTeams *teamsWidth   `json:"msteams,omitempty"`
}

type teamsWidth struct {
	Width string `json:"width"`
}

type teamsBlock struct {
	Type   string      `json:"type"`
	Text   string      `json:"text,omitempty"`
	Size   string      `json:"size,omitempty"`
	Weight string      `json:"weight,omitempty"`
	Color  string      `json:"color,omitempty"`
	Wrap   bool        `json:"wrap,omitempty"`
	Facts  []teamsFact `json:"facts,omitempty"`
}

type teamsFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

type teamsAction struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
}

var teamsColor = map[queue.EventKind]string{
	queue.EventFailed: "Attention", queue.EventRecovered: "Good", queue.EventSucceeded: "Good", queue.EventSuperseded: "Warning",
}

func (teamsFormat) request(ev queue.Event, _ time.Time) ([]byte, string, http.Header, error) {
	body := []teamsBlock{{Type: "TextBlock", Text: headline(ev), Size: "Medium", Weight: "Bolder", Color: teamsColor[ev.Kind], Wrap: true}}
	if ev.Message != "" {
		body = append(body, teamsBlock{Type: "TextBlock", Text: ev.Message, Wrap: true})
	}
	body = append(body, teamsBlock{Type: "FactSet", Facts: []teamsFact{
		{Title: "App", Value: ev.App},
		{Title: "State", Value: string(ev.Kind)},
		{Title: "Repository", Value: ev.Repo + " " + branch(ev.Ref)},
		{Title: "Commit", Value: shortSHA(ev.SHA)},
		{Title: "Trigger", Value: string(ev.Trigger)},
	}})
	actions := []teamsAction{{Type: "Action.OpenUrl", Title: "View sync", URL: ev.URL}}
	if u := commitURL(ev); u != "" {
		actions = append(actions, teamsAction{Type: "Action.OpenUrl", Title: "View commit " + shortSHA(ev.SHA), URL: u})
	}
	msg := teamsMessage{Type: "message", Attachments: []teamsAttachment{{
		ContentType: "application/vnd.microsoft.card.adaptive",
		Content: teamsCard{Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Type: "AdaptiveCard", Version: teamsCardVersion,
			Body: body, Actions: actions, MSTeams: &teamsWidth{Width: "Full"}},
	}}}
	data, err := json.Marshal(msg)
	return data, "application/json", nil, err
}
