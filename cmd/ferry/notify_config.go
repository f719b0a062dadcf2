package main

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/notify"
)

// NotifyConf is one notification target: a Slack or Microsoft Teams channel, or a webhook.
type NotifyConf struct {
	// Name names the target in logs and metrics (its URL never is): a DNS label.
	Name string `json:"name"`
	// Type is slack, msteams or webhook.
	Type string `json:"type"`
	// URL is the incoming webhook's URL. It is a secret (Slack's and Teams' carry their token).
	URL *SecretRef `json:"url"`
	// Secret signs a webhook's deliveries (whsec_<base64> or any string of 16 bytes or more);
	// required for type webhook, refused for the others.
	Secret *SecretRef `json:"secret,omitempty"`
	// Events are the event kinds sent; defaultNotifyEvents when empty.
	Events []string `json:"events,omitempty"`
	// Apps are globs over app names; every app when empty.
	Apps []string `json:"apps,omitempty"`
}

// defaultNotifyEvents are the events a target without `events` gets: what a team wants to hear
// in chat, a deploy that broke and its fix.
var defaultNotifyEvents = []string{string(queue.EventFailed), string(queue.EventRecovered)}

// validateNotify checks the notification targets as far as it can without their secrets.
func (c *Config) validateNotify(bad func(string, ...any)) {
	names := map[string]bool{}
	var kinds, types []string
	for _, k := range queue.EventKinds() {
		kinds = append(kinds, string(k))
	}
	for _, t := range notify.Types() {
		types = append(types, string(t))
	}
	apps := map[string]bool{}
	for _, a := range c.Apps {
		apps[a.Name] = true
	}
	for i, n := range c.Notify {
		where := checkName(bad, "notify", "notify target", i, n.Name, names[n.Name])
		names[n.Name] = true
		if !slices.Contains(types, n.Type) {
			bad("%s: type %q is not supported (%s)", where, n.Type, strings.Join(types, ", "))
		}
		if n.URL == nil {
			bad("%s: url is required (env or file: it is a secret)", where)
		}
		switch {
		case n.Type == string(notify.Webhook) && n.Secret == nil:
			bad("%s: secret is required for type webhook (deliveries are signed with it)", where)
		case n.Type != string(notify.Webhook) && n.Secret != nil:
			bad("%s: secret is used by type webhook only; %s deliveries are not signed", where, n.Type)
		}
		if len(n.Events) == 0 {
			c.Notify[i].Events = defaultNotifyEvents
		}
		for _, e := range n.Events {
			if !slices.Contains(kinds, e) {
				bad("%s: event %q is not known (%s)", where, e, strings.Join(kinds, ", "))
			}
		}
		for _, g := range n.Apps {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				bad("%s: apps: glob %q is not valid", where, g)
			} else if !strings.ContainsAny(g, `*?[\`) && !apps[g] {
				bad("%s: apps: %q names no configured app", where, g)
			}
		}
	}
}

// resolveNotify reads the targets' URLs and secrets into the dispatcher's targets. A URL is
// checked here, once read; errors name the target and where the URL comes from, never its value.
func resolveNotify(c *Config, getenv func(string) string) ([]notify.Target, error) {
	var out []notify.Target
	var errs []error
	for _, n := range c.Notify {
		t := notify.Target{Name: n.Name, Type: notify.Type(n.Type), Apps: n.Apps}
		for _, e := range n.Events {
			t.Events = append(t.Events, queue.EventKind(e))
		}
		v, err := n.URL.resolve(getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("notify target %s: url: %w", n.Name, err))
		} else if u, perr := url.Parse(strings.TrimSpace(string(v))); perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("notify target %s: url (from %s) is not an absolute http(s) URL", n.Name, n.URL.where()))
		} else {
			t.URL = u.String()
		}
		if n.Secret != nil {
			s, err := n.Secret.resolve(getenv)
			if err == nil {
				t.Key, err = notify.SigningKey(s)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("notify target %s: secret: %w", n.Name, err))
			}
		}
		out = append(out, t)
	}
	return out, errors.Join(errs...)
}

// where names a secret's source for messages: "env SLACK_URL" or "file /secrets/slack".
func (s *SecretRef) where() string {
	if s.Env != "" {
		return "env " + s.Env
	}
	return "file " + s.File
}
