// Package notify tells chats and webhooks how deploys ended: Slack incoming webhooks, Microsoft
// Teams Workflows (Adaptive Cards) and a generic webhook carrying a CloudEvents event signed per
// Standard Webhooks. Events reach it through JetStream (queue.Notifications): the Publisher
// takes them from the syncer without making a sync wait, the Dispatcher sends them, one
// consumer per target, retried with backoff and rate-limited per target.
package notify

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/ferrygitops/ferry/queue"
)

// Type is the kind of receiver a target is: it decides the request's shape.
type Type string

// The receivers ferry speaks to.
const (
	// Slack is a Slack incoming webhook.
	Slack Type = "slack"
	// Teams is a Microsoft Teams Workflows webhook ("When a Teams webhook request is received"),
	// which takes Adaptive Cards.
	Teams Type = "msteams"
	// Webhook is any HTTP receiver: a CloudEvents event signed per Standard Webhooks.
	Webhook Type = "webhook"
)

// Types lists the target types, for config validation and messages.
func Types() []Type { return []Type{Slack, Teams, Webhook} }

// Target is one configured receiver. URL and Key are secrets: they are never logged, and errors
// name the target by Name.
type Target struct {
	Name string
	Type Type
	URL  string
	// Key is the webhook's HMAC key (SigningKey of its secret); only type webhook has one.
	Key []byte
	// Events are the kinds the target wants; succeeded takes recoveries too.
	Events []queue.EventKind
	// Apps are globs (path.Match) over app names; none means every app.
	Apps []string
}

// Kinds are the event kinds the target's consumer takes: its Events, with recovered added
// to succeeded (a recovery is a success).
func (t Target) Kinds() []queue.EventKind {
	var out []queue.EventKind
	for _, k := range queue.EventKinds() {
		if slices.Contains(t.Events, k) || (k == queue.EventRecovered && slices.Contains(t.Events, queue.EventSucceeded)) {
			out = append(out, k)
		}
	}
	return out
}

// Wants reports whether the target is told of ev: its kind is one of Kinds and its app matches
// one of Apps (or Apps is empty).
func (t Target) Wants(ev queue.Event) bool {
	if !slices.Contains(t.Kinds(), ev.Kind) {
		return false
	}
	if len(t.Apps) == 0 {
		return true
	}
	for _, g := range t.Apps {
		if ok, _ := path.Match(g, ev.App); ok {
			return true
		}
	}
	return false
}

// signingSecretPrefix marks a Standard Webhooks secret: whsec_ followed by the key in base64.
const signingSecretPrefix = "whsec_"

// MinKeyBytes is the shortest HMAC key a webhook target may have: 128 bits. Standard Webhooks
// asks for 24 to 64 bytes; shorter keys can be guessed offline from one captured delivery.
const MinKeyBytes = 16

// SigningKey turns a webhook target's secret into its HMAC key: the base64-decoded bytes after
// whsec_ (the form Standard Webhooks libraries take), or the secret's own bytes otherwise.
// Errors never quote the secret.
func SigningKey(secret []byte) ([]byte, error) {
	key := secret
	if enc, ok := strings.CutPrefix(string(secret), signingSecretPrefix); ok {
		var err error
		if key, err = base64.StdEncoding.DecodeString(enc); err != nil {
			return nil, fmt.Errorf("the key after %s is not base64 (offset %d)", signingSecretPrefix, offset(err))
		}
	}
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("the key is %d bytes; at least %d are required", len(key), MinKeyBytes)
	}
	return key, nil
}

func offset(err error) int64 {
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		return int64(ce)
	}
	return -1
}
