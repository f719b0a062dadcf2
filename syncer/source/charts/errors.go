package charts

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
)

// Sentinel causes a caller may test with errors.Is; each is wrapped in an *Error that names the
// chart reference.
var (
	// ErrVersionNotFound means no version of the chart matches what the app asks for; the error
	// lists some of the versions the source offers.
	ErrVersionNotFound = errors.New("version not found")
	// ErrDigestMismatch means the archive received is not the one the index or manifest names.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrTooLarge means an index, a manifest or an archive exceeds its limit (MaxIndexBytes,
	// MaxChartBytes, MaxChartUnpackedBytes).
	ErrTooLarge = errors.New("too large")
	// ErrNotChart means what was fetched is not a Helm chart: not a gzip tar, no Chart.yaml, or a
	// Chart.yaml naming another chart or version, or an OCI artifact without a chart layer.
	ErrNotChart = errors.New("not a Helm chart")
	// ErrBadRef means the reference itself is unusable (a malformed URL or OCI name, credentials
	// inside a URL, an invalid version constraint).
	ErrBadRef = errors.New("bad chart reference")
)

// Error is a fetch failure. It names the chart reference (never credentials) and says, once,
// where the failure is made, whether retrying may help.
type Error struct {
	Ref       string // the chart reference as the app names it, without credentials
	Op        string // what failed: "get index", "download", "resolve tag", ...
	Transient bool   // the network, a time-out, 408, 429 or 5xx: may pass by itself
	Err       error
}

func (e *Error) Error() string {
	kind := "permanent"
	if e.Transient {
		kind = "transient"
	}
	return fmt.Sprintf("chart %s: %s (%s): %v", e.Ref, e.Op, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsTransient reports whether a Fetch error may go away by itself, so the caller retries it:
// network failures, time-outs, 408, 429 and 5xx from the repository or registry. 401, 403, 404,
// a missing version, a digest mismatch, a size limit and an archive that is no chart are
// permanent: only a change of configuration or of the source fixes them.
func IsTransient(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Transient
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// permanentErr wraps err for ref as a failure retrying does not fix.
func permanentErr(ref, op string, err error) *Error {
	return &Error{Ref: ref, Op: op, Err: err}
}

// transportErr wraps an error from the HTTP client below the status line: the network, a
// time-out, a reset or a body cut short may pass; a certificate the client does not trust is the
// configuration's fault and does not.
func transportErr(ref, op string, err error) *Error {
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var invalid x509.CertificateInvalidError
	transient := !errors.As(err, &unknownCA) && !errors.As(err, &badHost) && !errors.As(err, &invalid)
	return &Error{Ref: ref, Op: op, Transient: transient, Err: err}
}

// statusErr classifies an HTTP status that is not 200: 408, 429 and 5xx may pass, any other
// answer is the server's decision.
func statusErr(ref, op string, code int) *Error {
	return &Error{Ref: ref, Op: op, Transient: transientStatus(code),
		Err: fmt.Errorf("HTTP %d %s", code, http.StatusText(code))}
}

func transientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}
