// Package queue stores ferry's sync jobs durably on NATS JetStream and hands them to workers.
package queue

import (
	"fmt"
	"strings"
	"time"
)

// Kind says what a job does with its commit.
type Kind string

const (
	// KindDeploy applies the commit to the cluster and reports on it.
	KindDeploy Kind = "deploy"
	// KindPreview dry-runs a pull/merge request head against the cluster; it writes nothing.
	KindPreview Kind = "preview"
)

// Trigger says why a job exists; it is shown on sync records and pages.
type Trigger string

const (
	TriggerPush    Trigger = "push"
	TriggerPR      Trigger = "pull_request"
	TriggerManual  Trigger = "manual"
	TriggerPoll    Trigger = "poll"
	TriggerStartup Trigger = "startup"
	TriggerDrift   Trigger = "drift"
	// TriggerRerun is GitHub's Re-run button on one of ferry's check runs or its check suite.
	TriggerRerun Trigger = "rerun"
)

// Job is one app at one commit: the wire type stored on the stream. It is self-contained so
// that any replica can run it after a restart without the hook that made it.
type Job struct {
	// ID names the sync: its record key and the last part of its page URL.
	ID      string  `json:"id"`
	Kind    Kind    `json:"kind"`
	Trigger Trigger `json:"trigger"`
	Repo    string  `json:"repo"`
	App     string  `json:"app"`
	// Ref is the full ref the commit was seen on: refs/heads/main, refs/pull/7/head.
	Ref string `json:"ref"`
	// SHA is the exact commit to sync.
	SHA string `json:"sha"`
	// Before is the branch head before a push, when the forge said; used to tell what changed.
	Before string `json:"before,omitempty"`
	// Unfiltered is set on push jobs made for every app because the forge's list of changed
	// paths was incomplete; the worker then diffs Before..SHA and passes over apps it leaves alone.
	Unfiltered bool `json:"unfiltered,omitzero"`
	// DeliveryID is the forge's id of the hook delivery (or the API request) that made the job.
	DeliveryID string `json:"deliveryId,omitempty"`
	// PR is the pull/merge request number of a preview job.
	PR int `json:"pr,omitzero"`
	// BaseSHA is the target branch head a preview is compared with, when the forge said.
	BaseSHA    string    `json:"baseSha,omitempty"`
	EnqueuedAt time.Time `json:"enqueuedAt"`

	// Force makes a manual sync run even while its app is suspended; any other job of a
	// suspended app ends without being applied.
	Force bool `json:"force,omitzero"`
	// By names who asked for a manual sync or a resume: an API token's name, an authenticating
	// proxy's user or the person signed in to the dashboard. Empty for forge and ferry's own jobs.
	By string `json:"by,omitempty"`
}

// MsgID is the JetStream de-duplication id: the same delivery of the same hook for the same app
// and kind is stored once, however often the forge redelivers it.
func (j Job) MsgID() string {
	if j.DeliveryID == "" {
		return j.ID
	}
	return j.DeliveryID + "/" + string(j.Kind) + "/" + j.App
}

// Validate rejects a job no worker could run.
func (j Job) Validate() error {
	var missing []string
	for _, f := range [][2]string{{"id", j.ID}, {"kind", string(j.Kind)}, {"repo", j.Repo}, {"app", j.App}, {"sha", j.SHA}} {
		if f[1] == "" {
			missing = append(missing, f[0])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("job is missing %s", strings.Join(missing, ", "))
	}
	if j.Kind != KindDeploy && j.Kind != KindPreview {
		return fmt.Errorf("job kind %q is not deploy or preview", j.Kind)
	}
	return nil
}
