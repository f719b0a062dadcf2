package source

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// ErrCommitNotFound means the remote does not serve the commit (yet). A webhook can arrive
// before its commit is fetchable, so the caller waits and retries for a bounded time instead of
// failing at once; IsTransient leaves that choice to it by answering false.
var ErrCommitNotFound = errors.New("commit not found on the remote")

// ErrRefNotFound means the remote has no such branch or tag: a typo in the config or a branch
// that was deleted, which retrying does not fix.
var ErrRefNotFound = errors.New("ref not found on the remote")

// ErrBadTree means the commit's tree cannot be rendered as it is: a path that leaves the
// repository, a symbolic link out of it or in a loop, a missing app directory. Only a new
// commit fixes it.
var ErrBadTree = errors.New("repository tree refused")

// ErrFetchTooLarge means a fetch would receive more than MaxFetchBytes: a commit carrying that
// much is refused rather than held, and fetching it again cannot succeed.
var ErrFetchTooLarge = errors.New("fetch too large")

// classified records, once at the boundary with go-git, whether an error may pass by itself.
type classified struct {
	err       error
	transient bool
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

// permanent marks err as one that retrying cannot fix.
func permanent(err error) error { return &classified{err: err} }

// classify sorts a go-git transport error: authentication, authorization and a missing
// repository are permanent, and so is any other 4xx; the network, time-outs, 408, 429 and 5xx
// may pass.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrInvalidAuthMethod):
		return permanent(err)
	}
	if code, ok := httpStatus(err); ok {
		transient := code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
		return &classified{err: err, transient: transient}
	}
	return &classified{err: err, transient: true}
}

// httpStatus digs the HTTP status out of go-git's error, which hides it inside an
// UnexpectedError that does not unwrap.
func httpStatus(err error) (int, bool) {
	for err != nil {
		var herr *githttp.Err
		if errors.As(err, &herr) && herr.Response != nil {
			return herr.StatusCode(), true
		}
		var uerr *plumbing.UnexpectedError
		if !errors.As(err, &uerr) {
			return 0, false
		}
		err = uerr.Err
	}
	return 0, false
}

// IsTransient reports whether a source error may go away by itself, so the caller retries it
// within its budget: network failures, time-outs, the server's 5xx and 429. Authentication
// failures, a missing repository or ref, a refused tree and bad arguments are permanent; so is
// ErrCommitNotFound, on which the caller decides how long to wait. An error this package did
// not classify counts as transient: a few needless retries cost less than failing a sync over a
// passing fault.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrCommitNotFound) || errors.Is(err, ErrRefNotFound) || errors.Is(err, ErrBadTree) ||
		errors.Is(err, ErrFetchTooLarge) {
		return false
	}
	var c *classified
	if errors.As(err, &c) {
		return c.transient
	}
	return true
}

// redacted hides a secret that a remote's error message might echo (a URL with credentials, a
// server that quotes the Authorization header) while keeping the error chain for errors.Is.
type redacted struct {
	err    error
	secret string
}

func (r *redacted) Error() string {
	return strings.ReplaceAll(r.err.Error(), r.secret, "[redacted]")
}
func (r *redacted) Unwrap() error { return r.err }

// redact wraps err so that its message never contains secrets.
func redact(err error, secrets ...string) error {
	for _, s := range secrets {
		if err != nil && s != "" && strings.Contains(err.Error(), s) {
			err = &redacted{err: err, secret: s}
		}
	}
	return err
}
