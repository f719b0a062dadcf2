package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

const (
	// StreamIdleTimeout is how long a stream may stay silent before it is taken for dead and
	// opened again; ferry sends a keep-alive comment every 15 seconds.
	StreamIdleTimeout = 45 * time.Second
	// MaxReconnects bounds the streams opened again in a row without news of the sync; the
	// count starts over whenever a stream brings an event.
	MaxReconnects = 5
	// DefaultRetry is the wait before opening a stream again when ferry named none.
	DefaultRetry = 3 * time.Second
	// maxRetry caps the wait the server may ask for.
	maxRetry = 30 * time.Second
	// PollInterval is how often a sync is read again on a server without live updates.
	PollInterval = 2 * time.Second
	// RecordWait bounds the wait for a sync's record to appear: ferry answers 202 once the job
	// is stored, and its record is written a moment later (by the replica that takes it).
	RecordWait = 30 * time.Second
	// recordPoll is how often a record not there yet is read again.
	recordPoll = 250 * time.Millisecond
)

// errStreamEnded is a stream that ended before its sync did.
var errStreamEnded = errors.New("event stream ended")

// errNoStreams is a server that serves no live updates (501).
var errNoStreams = errors.New("live updates not served")

// Follow follows sync id until it is over and returns its last record. fn, if not nil, is
// called with the record as it is now and at each change. A stream that drops is recovered
// by reading the record again and opening a new stream (ferry keeps no event ids to resume
// from), at most MaxReconnects times in a row without news; a server without live updates is
// polled. ctx bounds the whole wait.
func (c *Client) Follow(ctx context.Context, id string, fn func(queue.Record)) (queue.Record, error) {
	var (
		last    queue.Record
		seen    bool
		retries int
		retry   = DefaultRetry
		poll    bool
	)
	report := func(rec queue.Record) {
		if seen && recordEqual(last, rec) {
			return
		}
		last, seen = rec, true
		if fn != nil {
			fn(rec)
		}
	}
	if err := c.awaitRecord(ctx, id); err != nil {
		return last, err
	}
	for {
		rec, _, err := c.Sync(ctx, id)
		switch {
		case err == nil:
			report(rec)
			if rec.State.Terminal() {
				return rec, nil
			}
		case Temporary(err) && ctx.Err() == nil:
			// Read again below, within the bound.
		default:
			return last, err
		}
		if err == nil && !poll {
			var progressed bool
			progressed, err = c.stream(ctx, id, func(r queue.Record) { report(r) }, &retry)
			if err == nil && last.State.Terminal() {
				return last, nil
			}
			if errors.Is(err, errNoStreams) {
				poll, err = true, nil
			}
			if progressed {
				retries = 0
			}
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			if err != nil && !Temporary(err) && !errors.Is(err, errStreamEnded) {
				return last, err
			}
		}
		wait := retry
		if poll {
			wait = PollInterval
		} else {
			retries++
			if retries > MaxReconnects {
				return last, fmt.Errorf("following sync %s: the event stream dropped %d times in a row: %w", id, retries, err)
			}
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// awaitRecord waits, at most RecordWait, until sync id has a record: 404 until then.
func (c *Client) awaitRecord(ctx context.Context, id string) error {
	deadline := time.Now().Add(RecordWait)
	for {
		_, _, err := c.Sync(ctx, id)
		if StatusOf(err) != http.StatusNotFound || time.Now().After(deadline) {
			// Found, or any other answer: Follow reads it again and judges.
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(recordPoll):
		}
	}
}

// recordEqual compares records by their JSON, the form a reader sees.
func recordEqual(a, b queue.Record) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// stream reads GET /api/v1/syncs/{id}/events until its "end" event (nil error), the stream
// drops (errStreamEnded or the read's error) or ctx ends. progressed tells whether an event
// came; retry takes the delay the server asked for.
func (c *Client) stream(ctx context.Context, id string, fn func(queue.Record), retry *time.Duration) (progressed bool, err error) {
	err = c.events(ctx, syncPath(id)+"/events", nil, retry, func(ev Event) (bool, error) {
		switch ev.Name {
		case "record":
			var rec queue.Record
			if err := json.Unmarshal(ev.Data, &rec); err != nil {
				return false, fmt.Errorf("sync %s: decode event: %w", id, err)
			}
			progressed = true
			fn(rec)
		case "end":
			progressed = true
			return false, nil
		}
		return true, nil
	})
	return progressed, err
}

// Watch calls fn with every sync's changes as ferry stores them (app non-empty: that app's
// only) until fn returns false or ctx ends. It does not reconnect: a dropped stream is an error
// the caller may retry on.
func (c *Client) Watch(ctx context.Context, app string, fn func(SyncEvent) bool) error {
	var q url.Values
	if app != "" {
		q = url.Values{"app": {app}}
	}
	var retry time.Duration
	err := c.events(ctx, "/api/v1/events", q, &retry, func(ev Event) (bool, error) {
		if ev.Name != "sync" {
			return true, nil
		}
		var se SyncEvent
		if err := json.Unmarshal(ev.Data, &se); err != nil {
			return false, fmt.Errorf("decode sync event: %w", err)
		}
		return fn(se), nil
	})
	if errors.Is(err, errNoStreams) {
		return fmt.Errorf("GET /api/v1/events: %w", err)
	}
	return err
}

// SyncEvent is a sync as GET /api/v1/events tells of it: where it stands, without its objects.
type SyncEvent = queue.SyncSummary

// events opens an event stream at path and hands each event to fn until fn says stop (nil
// error), the stream ends (errStreamEnded), stays silent past StreamIdleTimeout, or ctx ends.
func (c *Client) events(ctx context.Context, path string, query url.Values, retry *time.Duration, fn func(Event) (bool, error)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := c.request(ctx, http.MethodGet, path, query, nil, "")
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, redact(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotImplemented {
		return errNoStreams
	}
	if resp.StatusCode != http.StatusOK {
		return apiError(req, resp)
	}
	idle := time.AfterFunc(StreamIdleTimeout, func() {
		cancel(fmt.Errorf("GET %s: no event or keep-alive for %s", path, StreamIdleTimeout))
	})
	defer idle.Stop()
	er := NewEventReader(resp.Body)
	er.Activity = func() { idle.Reset(StreamIdleTimeout) }
	for {
		ev, err := er.Next()
		if er.Retry > 0 {
			*retry = min(er.Retry, maxRetry)
		}
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				return cause
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errStreamEnded
			}
			return fmt.Errorf("GET %s: %w", path, err)
		}
		more, err := fn(ev)
		if err != nil || !more {
			return err
		}
	}
}
