package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

// webhookFormat is the generic webhook: a CloudEvents 1.0 event in structured JSON mode, signed
// per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature: v1,<base64 of
// HMAC-SHA256 over "id.timestamp.body">). The id is the event's own, the same on every retry,
// so that a receiver can drop a delivery it already had.
type webhookFormat struct {
	key    []byte
	source string
}

var _ format = webhookFormat{}

// EventTypePrefix starts every CloudEvents type ferry sends: dev.ferry.sync.failed, ….
const EventTypePrefix = "dev.ferry.sync."

// The Standard Webhooks headers.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// cloudEvent is a CloudEvents 1.0 event in structured mode.
type cloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            string    `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            eventData `json:"data"`
}

// eventData is the event's data: what happened to which commit of which app.
type eventData struct {
	App       string          `json:"app"`
	Repo      string          `json:"repo"`
	Ref       string          `json:"ref,omitempty"`
	SHA       string          `json:"sha"`
	CommitURL string          `json:"commitUrl,omitempty"`
	Event     queue.EventKind `json:"event"`
	State     queue.State     `json:"state"`
	Message   string          `json:"message,omitempty"`
	Stage     string          `json:"stage,omitempty"`
	Object    string          `json:"object,omitempty"`
	Kind      queue.Kind      `json:"kind"`
	Trigger   queue.Trigger   `json:"trigger,omitempty"`
	SyncID    string          `json:"syncId"`
	URL       string          `json:"url"`
}

func (f webhookFormat) request(ev queue.Event, now time.Time) ([]byte, string, http.Header, error) {
	ce := cloudEvent{
		SpecVersion: "1.0", ID: ev.ID(), Source: f.source, Type: EventTypePrefix + string(ev.Kind), Subject: ev.App,
		Time: ev.At.UTC().Format(time.RFC3339Nano), DataContentType: "application/json",
		Data: eventData{App: ev.App, Repo: ev.Repo, Ref: ev.Ref, SHA: ev.SHA, CommitURL: commitURL(ev), Event: ev.Kind, State: ev.State,
			Message: ev.Message, Stage: ev.Stage, Object: ev.Object, Kind: ev.SyncKind, Trigger: ev.Trigger, SyncID: ev.SyncID, URL: ev.URL},
	}
	body, err := json.Marshal(ce)
	if err != nil {
		return nil, "", nil, err
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	h := http.Header{}
	h.Set(HeaderWebhookID, ce.ID)
	h.Set(HeaderWebhookTimestamp, ts)
	h.Set(HeaderWebhookSignature, "v1,"+sign(f.key, ce.ID, ts, body))
	return body, "application/cloudevents+json; charset=utf-8", h, nil
}

// sign is the Standard Webhooks v1 signature: base64 of HMAC-SHA256 over "id.timestamp.body".
func sign(key []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
