package apply

import "time"

// Action is what a sync did to one object.
type Action string

// Actions reported per object.
const (
	// ActionCreated: the object did not exist and was created.
	ActionCreated Action = "created"
	// ActionConfigured: the object existed and the apply changed it.
	ActionConfigured Action = "configured"
	// ActionUnchanged: nothing needed applying, or the apply changed nothing.
	ActionUnchanged Action = "unchanged"
	// ActionPruned: the object left Git and was deleted.
	ActionPruned Action = "pruned"
	// ActionHook: a Helm hook was run; ObjectResult.Outcome says how it ended.
	ActionHook Action = "hook"
)

// ObjectResult is the outcome for one object, for the sync page and logs.
type ObjectResult struct {
	ID     ID
	Action Action
	// File is the repository file that declares the object ("" for pruned objects).
	File string
	// Outcome is set for a hook: its phase and how it ended, e.g. "pre-install hook succeeded".
	Outcome string `json:",omitempty"`
}

// Durations are the wall-clock times of a sync's phases.
type Durations struct {
	// Apply covers preparing, reading the inventory and live state, and applying all stages.
	Apply time.Duration
	// Prune covers deleting objects that left Git and writing the inventory.
	Prune time.Duration
	// Health covers waiting for applied objects to become Current, and for new CRDs to be
	// established when no later stage needed them (that wait starts during Apply).
	Health time.Duration
	// Hooks covers running Helm hooks, pre and post (included in Apply for pre hooks).
	Hooks time.Duration `json:",omitempty"`
}

// Result summarises a sync. It is returned, partially filled, with an error too, so a failed sync
// can still show what it did before failing.
type Result struct {
	Revision                               string
	Created, Configured, Unchanged, Pruned int
	// Hooks counts the Helm hooks run, whatever their outcome.
	Hooks int `json:",omitempty"`
	// Objects lists every desired object and every pruned one, in ID order per phase, and the
	// hooks run, in the order they ran.
	Objects   []ObjectResult
	Durations Durations
}

func (r *Result) add(id ID, a Action, file string) {
	switch a {
	case ActionCreated:
		r.Created++
	case ActionConfigured:
		r.Configured++
	case ActionUnchanged:
		r.Unchanged++
	case ActionPruned:
		r.Pruned++
	}
	r.Objects = append(r.Objects, ObjectResult{ID: id, Action: a, File: file})
}
