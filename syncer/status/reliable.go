package status

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// DedupSize is how many SHA+context pairs Dedup remembers. A pair is forgotten only after this
// many newer ones were posted, long after its sync ended, and forgetting costs one extra post.
const DedupSize = 10_000

// Dedup puts r behind a memory of the last status posted for each SHA and context, and skips a
// post identical to it: a redelivered webhook or a resync of an unchanged commit then costs no API
// call (and no entry toward GitHub's per-context cap). A failed post forgets the pair, since the
// forge may or may not have taken it, so the next post is never skipped wrongly. Put Dedup outside
// Retry, so a skipped post skips the retries too. Safe for concurrent use: posts for one SHA and
// context go out one at a time, so the forge receives them in the order the memory records them
// and a final status posted after a pending one is never skipped as already there.
func Dedup(r Reporter) Reporter {
	return newDedup(r, DedupSize)
}

type dedupKey struct{ sha, context string }

// posted is what Dedup remembers of a post: the status without its detail, and a digest of the
// detail, so that 10,000 remembered previews do not keep 10,000 diffs.
type posted struct {
	status Status
	detail [32]byte
}

func postedOf(s Status) posted {
	fp := s.Detail.fingerprint()
	s.Detail = nil
	return posted{status: s, detail: fp}
}

type dedup struct {
	next Reporter
	size int

	mu    sync.Mutex
	order *list.List // of posted, most recently used first
	byKey map[dedupKey]*list.Element
	// busy serialises the posts of one SHA and context.
	busy keyLocks[dedupKey]
}

var _ Reporter = (*dedup)(nil)

func newDedup(r Reporter, size int) *dedup {
	return &dedup{next: r, size: size, order: list.New(), byKey: make(map[dedupKey]*list.Element)}
}

// Report posts s unless the last successful post for its SHA and context was identical, detail
// included (compared by content).
func (d *dedup) Report(ctx context.Context, s Status) error {
	key := dedupKey{s.SHA, s.Context}
	unlock := d.busy.lock(key)
	defer unlock()
	p := postedOf(s)
	d.mu.Lock()
	if e, ok := d.byKey[key]; ok && e.Value.(posted) == p {
		d.order.MoveToFront(e)
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()

	err := d.next.Report(ctx, s)

	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.forget(key)
		return err
	}
	d.remember(key, p)
	return nil
}

func (d *dedup) forget(key dedupKey) {
	if e, ok := d.byKey[key]; ok {
		d.order.Remove(e)
		delete(d.byKey, key)
	}
}

func (d *dedup) remember(key dedupKey, p posted) {
	if e, ok := d.byKey[key]; ok {
		e.Value = p
		d.order.MoveToFront(e)
		return
	}
	d.byKey[key] = d.order.PushFront(p)
	for d.order.Len() > d.size {
		oldest := d.order.Back()
		old := oldest.Value.(posted).status
		d.order.Remove(oldest)
		delete(d.byKey, dedupKey{old.SHA, old.Context})
	}
}

// RetryOptions bound how hard Retry tries. Zero fields take the values of DefaultRetryOptions.
type RetryOptions struct {
	// MaxAttempts counts every post of one status, the first included.
	MaxAttempts int
	// BaseDelay is the backoff before the second attempt; it doubles for each later one, and
	// each wait is jittered between half and all of it so replicas do not retry in step.
	BaseDelay time.Duration
	// MaxDelay caps one backoff wait. A forge's Retry-After is not capped by it, only by MaxElapsed.
	MaxDelay time.Duration
	// MaxElapsed bounds the time spent on one status, waits included: a worker must not hang on a
	// forge that is down, and a wait that would end past it is not started at all.
	MaxElapsed time.Duration
	// Logger receives one line per failed attempt. Nil discards them.
	Logger *slog.Logger
	// Sleep waits d or until ctx is done, whichever is first. Nil uses a timer; tests pass a
	// fake to run without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now reads the clock that MaxElapsed is measured on. Nil uses time.Now.
	Now func() time.Time
}

// DefaultRetryOptions tries up to 6 times within 3 minutes, backing off from 1s to at most 30s.
// Together that rides out a forge's brief outage or a rate limit reset within the budget, and
// still lets a worker move on when the forge is down for longer.
func DefaultRetryOptions() RetryOptions {
	return RetryOptions{
		MaxAttempts: 6,
		BaseDelay:   time.Second,
		MaxDelay:    30 * time.Second,
		MaxElapsed:  3 * time.Minute,
	}
}

// Retry puts r behind retries of transient failures (network errors, 5xx, rate limits), waiting as
// long as a forge asks when it says so and backing off exponentially otherwise. Permanent failures
// (see IsPermanent) are returned at once. Every failure is logged with the status's SHA, context
// and state; errors from this package never hold the token, so neither do the logs.
func Retry(r Reporter, opts RetryOptions) Reporter {
	def := DefaultRetryOptions()
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = def.MaxAttempts
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = def.BaseDelay
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = def.MaxDelay
	}
	if opts.MaxElapsed <= 0 {
		opts.MaxElapsed = def.MaxElapsed
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &retrier{next: r, opts: opts}
}

type retrier struct {
	next Reporter
	opts RetryOptions
}

var _ Reporter = (*retrier)(nil)

// Report posts s, retrying transient failures within the options' bounds. The error returned is
// the last attempt's, wrapped; a *RetryAfterError in it means the forge asked for a longer wait
// than the budget had left.
func (r *retrier) Report(ctx context.Context, s Status) error {
	start := r.opts.Now()
	log := r.opts.Logger.With("sha", s.SHA, "context", s.Context, "state", string(s.State))
	for attempt := 1; ; attempt++ {
		err := r.next.Report(ctx, s)
		if err == nil {
			if attempt > 1 {
				log.Info("commit status posted after retries", "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("post commit status: %w", err)
		}
		if IsPermanent(err) {
			log.Warn("commit status refused, not retrying", "attempt", attempt, "error", err)
			return fmt.Errorf("post commit status: %w", err)
		}
		if attempt >= r.opts.MaxAttempts {
			log.Warn("commit status post failed, giving up", "attempt", attempt, "error", err)
			return fmt.Errorf("post commit status: gave up after %d attempts: %w", attempt, err)
		}
		wait := r.delay(attempt, err)
		if elapsed := r.opts.Now().Sub(start); elapsed+wait > r.opts.MaxElapsed {
			log.Warn("commit status post failed, giving up: next wait exceeds the time budget",
				"attempt", attempt, "wait", wait, "elapsed", elapsed, "error", err)
			return fmt.Errorf("post commit status: gave up after %d attempts, next wait %s exceeds budget: %w", attempt, wait, err)
		}
		log.Warn("commit status post failed, retrying", "attempt", attempt, "wait", wait, "error", err)
		if serr := r.opts.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("post commit status: %w (while waiting to retry after: %w)", serr, err)
		}
	}
}

// delay is the wait before the attempt after attempt: what the forge asked, plus up to a tenth
// of it so replicas limited at once do not return at once, or else the jittered backoff.
func (r *retrier) delay(attempt int, err error) time.Duration {
	if ra, ok := errors.AsType[*RetryAfterError](err); ok && ra.Wait > 0 {
		return ra.Wait + jitter(ra.Wait/10)
	}
	d := r.opts.BaseDelay
	for i := 1; i < attempt && d < r.opts.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, r.opts.MaxDelay)
	return d/2 + jitter(d/2)
}

// jitter is a random duration in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
