package handlers

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// MaxBodyBytes bounds a webhook body. GitHub caps its payloads at 25 MiB and drops larger
// deliveries, so nothing genuine is bigger; anything above is refused with 413 before it is
// verified, keeping an unauthenticated sender from making ferry buffer arbitrary amounts.
const MaxBodyBytes = 25 << 20

// bodyPrealloc caps the buffer allocated up front from a request's Content-Length: an unverified
// sender may declare up to MaxBodyBytes, but only bytes that actually arrive make it grow further.
const bodyPrealloc = 1 << 20

// readBody reads a request body of at most limit bytes (a *http.MaxBytesError beyond). It sizes
// its buffer from Content-Length, so a typical delivery is read into one allocation instead of
// the dozen reallocations and copies of io.ReadAll.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, limit)
	size := int64(512)
	if r.ContentLength > 0 {
		size = min(r.ContentLength, limit, bodyPrealloc) + 1
	}
	b := make([]byte, 0, size)
	for {
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// SignatureTolerance is how far a signed timestamp (GitLab signing tokens, Standard Webhooks)
// may be from ferry's clock, either way. It bounds how long a captured delivery can be
// replayed while allowing for clock skew and the forge's own retry delay.
const SignatureTolerance = 5 * time.Minute

// githubCommitCap is the most commits GitHub lists in a push payload. A push that lists this
// many may have more, so its changed paths are incomplete.
const githubCommitCap = 20

// maxSignatures bounds how many space-separated signatures a webhook-signature header may
// carry, so a forged header cannot make ferry compute an unbounded number of comparisons.
const maxSignatures = 16

// maxDeliveryIDBytes bounds a delivery id taken from a header: it becomes part of every job's
// JetStream message id and of log lines, where an unbounded attacker-chosen string is unwelcome.
const maxDeliveryIDBytes = 200
