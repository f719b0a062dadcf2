package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
)

// Stages named in Error.Stage.
const (
	StageRender    = "render"
	StagePrepare   = "prepare"
	StageInventory = "inventory"
	StageApply     = "apply"
	StagePrune     = "prune"
	StageHealth    = "health"
	// StageHooks is a Helm hook that could not be run, or ran and failed.
	StageHooks = "hooks"
)

// Error is a failure about one object, carrying what a user needs to fix it: the object, the
// repository file that declares it and the apiserver's own message. It is what a commit status or
// the sync page shows.
type Error struct {
	// Stage is the phase that failed: apply, prune, health, hooks, prepare, inventory.
	Stage string
	// Object names the object the way kubectl does, e.g. "Deployment db/api".
	Object string
	// File is the repository file that declares the object, when known.
	File string
	// Message is the apiserver's (or kstatus's) message, without Go wrapping.
	Message string
	// Err is the underlying error, for classification with IsTransient and errors.As.
	Err error
}

// Error implements error: "apply: Deployment db/api (apps/api/deploy.yaml): <message>".
func (e *Error) Error() string {
	s := e.Stage + ": " + e.Object
	if e.File != "" {
		s += " (" + e.File + ")"
	}
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return s + ": " + msg
}

// Unwrap exposes the cause to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// objectError wraps an apiserver error about obj, keeping the apiserver's message.
func objectError(stage string, obj string, file string, err error) *Error {
	msg := err.Error()
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Message != "" {
		msg = st.Status().Message
	}
	return &Error{Stage: stage, Object: obj, File: file, Message: msg, Err: err}
}

// ConflictError reports an object ferry was asked to apply but does not own for this app. Nothing is
// written when one is found: ferry never takes over what it did not create.
//
// Classification: with Owner == "" (an object made by someone else) the conflict is permanent.
// With Owner set (another ferry app holds it) it is transient, because the usual cause is an object
// moving between two apps in one commit: the app that receives it may sync before the app that
// gives it up has pruned it. Retrying after the other app synced resolves that; a real double
// declaration keeps failing, and the retry budget of the job ends it.
type ConflictError struct {
	// Object names the object, e.g. "ConfigMap db/settings".
	Object string
	// File is the repository file that declares it in this app.
	File string
	// App is the app that tried to apply it.
	App string
	// Owner is the ferry app that owns it, or "" if ferry does not manage it.
	Owner string
}

// Error implements error.
func (e *ConflictError) Error() string {
	where := e.Object
	if e.File != "" {
		where += " (" + e.File + ")"
	}
	if e.Owner == "" {
		return fmt.Sprintf("apply: %s exists and is not managed by ferry (app %s): remove it from the cluster or from Git", where, e.App)
	}
	return fmt.Sprintf("apply: %s is managed by app %s, not by app %s: declare it in one app only", where, e.Owner, e.App)
}

// typedPatchRefusal is how the apiserver words a server-side apply of an object that does not
// fit its kind's schema (a number where a string belongs). It answers 500, as if it had failed
// itself, but refuses the same object every time: the object is invalid, and retrying it only
// delays the failure by minutes.
const typedPatchRefusal = "failed to create typed patch object"

// IsTransient reports whether retrying the same sync later may succeed: the apiserver was
// unreachable, overloaded (429, 5xx), timed out, or an optimistic-concurrency conflict lost a race;
// or another ferry app still holds an object (see ConflictError). Invalid objects, forbidden
// requests, unknown kinds and objects owned by someone else are permanent. An error joining several
// failures is transient only if every one of them is.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		if len(errs) == 0 {
			return false
		}
		for _, e := range errs {
			if !IsTransient(e) {
				return false
			}
		}
		return true
	}
	var ce *ConflictError
	if errors.As(err, &ce) {
		return ce.Owner != ""
	}
	var oe *Error
	if errors.As(err, &oe) && oe.Err != nil && oe.Err != err {
		if (oe.Stage == StageHealth || oe.Stage == StageHooks) && errors.Is(oe.Err, context.DeadlineExceeded) {
			// The app's timeout ran out (waiting for objects, or for a hook to complete): waiting
			// longer is the caller's decision, not a retry's.
			// Other health errors (the apiserver unreachable while polling) classify by cause.
			return false
		}
		return IsTransient(oe.Err)
	}
	switch {
	case meta.IsNoMatchError(err):
		return false
	case apierrors.IsInternalError(err) && strings.Contains(err.Error(), typedPatchRefusal):
		return false
	case apierrors.IsConflict(err), apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err),
		apierrors.IsTimeout(err), apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err),
		apierrors.IsUnexpectedServerError(err):
		return true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return true
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Code >= 500
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// joinErrs joins errs, returning nil for none and the error itself for one, so a single failure
// keeps its type for callers that do not unwrap joined errors.
func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errors.Join(errs...)
}
