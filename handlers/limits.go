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

// MaxUnverifiedBytes bounds the memory all webhook bodies not yet verified may hold at once,
// whoever sends them: without it, a few dozen unsigned 25 MiB bodies held GiBs before each got
// its 401. A delivery reserves its declared Content-Length (a body sent without one reserves as
// it arrives) before a byte of it is read, and gives the reservation back once its signature
// is checked. A delivery that does not fit gets 503 with Retry-After (BusyRetryAfter) without
// its body being read; one without Content-Length that outgrows what is left gets it mid-read.
const MaxUnverifiedBytes = 64 << 20

// SmallBodyReserve is the part of MaxUnverifiedBytes only bodies of at most SmallBodyBytes may
// use: a flood of large bodies can take at most MaxUnverifiedBytes-SmallBodyReserve (48 MiB,
// one maximal body and some), so ordinary deliveries, a few KiB each, are still read and
// answered while it lasts.
const SmallBodyReserve = 16 << 20

// SmallBodyBytes is the largest body that may use SmallBodyReserve. Push and pull request
// payloads are a few KiB to a few hundred KiB.
const SmallBodyBytes = 1 << 20

// BusyRetryAfter is the Retry-After, in seconds, of a 503 for a delivery that did not fit in
// MaxUnverifiedBytes.
const BusyRetryAfter = 5

// unknownLengthStart is what a body sent without Content-Length reserves before it is read; the
// reservation doubles as the body arrives.
const unknownLengthStart = 64 << 10

// bodyPrealloc caps the buffer allocated up front from a request's Content-Length when no
// reservation covers it: a sender may declare up to the limit, but only bytes that actually
// arrive make it grow further.
const bodyPrealloc = 1 << 20

// errBusy means a body did not fit in MaxUnverifiedBytes: 503 with Retry-After.
var errBusy = errors.New("too many unverified webhook bytes in flight")

// readBody reads a request body of at most limit bytes (a *http.MaxBytesError beyond). It sizes
// its buffer from Content-Length, so a typical delivery is read into one allocation instead of
// the dozen reallocations and copies of io.ReadAll. With hold set, the buffer never grows past
// what hold has reserved of MaxUnverifiedBytes (errBusy when the reservation cannot grow).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, hold *reservation) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, limit)
	size := int64(512)
	switch {
	case hold != nil:
		size = hold.bytes() + 1 // the declared length, or unknownLengthStart
	case r.ContentLength > 0:
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
			if hold != nil {
				// Grow to twice the size (limit + 1 at most, enough to see an oversize body).
				next := min(2*int64(cap(b)), limit+1)
				if !hold.grow(next) {
					return b, errBusy
				}
				b = append(make([]byte, 0, next), b...)
				continue
			}
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
