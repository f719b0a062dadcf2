package status

import (
	"crypto/sha256"
	"encoding/json"
)

// Kind says whether a status is about a deploy or a preview of a pull/merge request.
type Kind string

// The kinds of sync a Detail describes.
const (
	KindDeploy  Kind = "deploy"
	KindPreview Kind = "preview"
)

// Phase is where the sync behind a status stands. A pending status is queued or in progress; a
// final one is done. Check runs show it as their own status.
type Phase string

// The phases of a sync.
const (
	PhaseQueued     Phase = "queued"
	PhaseInProgress Phase = "in_progress"
	PhaseDone       Phase = "done"
)

// Detail is what a sync did or would do, for the reporters that can show more than one line: check
// runs and merge request notes. Commit-status reporters ignore it. It is owned by this package so
// that reporters need not know the syncer's records; the syncer fills it from its record.
type Detail struct {
	// App is the app synced or previewed.
	App string
	// Kind is deploy or preview.
	Kind Kind
	// Phase is queued, in progress or done.
	Phase Phase
	// SyncID names the sync: a check run's external_id.
	SyncID string
	// PR is the pull or merge request a preview is for (its number, GitLab's iid); 0 for deploys.
	PR int
	// Counts are the objects per action, every object counted.
	Counts Counts
	// Objects are the objects created, changed, pruned or run as hooks, in the record's order;
	// unchanged objects are only counted.
	Objects []Object
	// ObjectsCut counts the objects the sync record itself had to leave out (Counts has them all).
	ObjectsCut int
	// Diff is a preview's difference against the cluster, one entry per object. Secret values are
	// already masked where the plan is made (syncer/apply), so reporters show it as it is.
	Diff []ObjectDiff
	// DiffCut is true when the record holds only the start of the diff.
	DiffCut bool
	// Failure is what failed; nil unless the sync failed.
	Failure *FailureDetail
	// SyncURL is the sync's page, where everything about it is.
	SyncURL string
	// FullDiffURL serves the whole diff when the record holds it cut; empty otherwise (the sync
	// page then has all of it).
	FullDiffURL string
}

// Counts are a sync's objects per action. A deploy's "configured" objects are Changed.
type Counts struct {
	Created, Changed, Unchanged, Pruned int
}

// Changes is how many objects the sync changes in the cluster.
func (c Counts) Changes() int { return c.Created + c.Changed + c.Pruned }

// Object is one object of a sync.
type Object struct {
	// Action is created, changed, pruned or hook.
	Action    string
	Kind      string
	Namespace string
	Name      string
}

// ObjectDiff is the diff of one object: a header line naming it, its file and what happens to it,
// and the field changes under it.
type ObjectDiff struct {
	// Header is e.g. "~ Deployment api/web  (apps/web/deploy.yaml)  change".
	Header string
	// Lines are the field changes, e.g. "~ /spec/replicas: 2 → 3", without indentation.
	Lines []string
}

// FailureDetail is why a sync failed, in terms a user can act on.
type FailureDetail struct {
	// Stage is the step that failed: fetch, render, apply, plan, health…
	Stage string
	// Object names the object, e.g. "Deployment api/web", when one is to blame.
	Object string
	// File is the repository-relative file that declares the object (or that failed to render),
	// when known: check runs annotate it.
	File string
	// Message is the apiserver's (or renderer's) own words.
	Message string
}

// fingerprint is a digest of d, so that Dedup can compare details without keeping them (a
// preview's diff may be hundreds of kilobytes). A nil detail has the zero fingerprint.
func (d *Detail) fingerprint() [sha256.Size]byte {
	if d == nil {
		return [sha256.Size]byte{}
	}
	data, err := json.Marshal(d)
	if err != nil {
		// Detail holds only strings, numbers and slices of them: Marshal cannot fail. Should it,
		// a fingerprint that matches nothing makes Dedup post rather than skip.
		return [sha256.Size]byte{0xff}
	}
	return sha256.Sum256(data)
}
