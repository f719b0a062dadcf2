package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5"
)

const (
	// MaxEventStreams bounds the server-sent event streams open at once on one replica; past it
	// a new stream is answered 503 and the browser's EventSource tries again later.
	MaxEventStreams = 256
	// EventStreamLifetime bounds one stream: a client then reconnects (EventSource does so by
	// itself), so a forgotten tab does not hold a stream and a NATS watch for days.
	EventStreamLifetime = time.Hour
	// eventHeartbeat is how often an idle stream sends a comment, so proxies keep it open and a
	// client that went away is noticed by the next write.
	eventHeartbeat = 15 * time.Second
	// eventWriteTimeout bounds one write of a stream; the server's WriteTimeout would otherwise
	// end every stream after a minute.
	eventWriteTimeout = 10 * time.Second
	// eventBuffer is how many updates wait between the NATS watch and a slow client.
	eventBuffer = 16
	// eventRetryMillis tells EventSource how long to wait before it reconnects.
	eventRetryMillis = 3000
)

// Watcher follows sync records as every replica stores them, for the event streams.
type Watcher interface {
	// WatchSync calls fn with the sync's record and each later version until fn returns false.
	WatchSync(ctx context.Context, id string, fn func(queue.Record) bool) error
	// WatchSyncs calls fn with every record stored from now on until fn returns false.
	WatchSyncs(ctx context.Context, fn func(queue.Record) bool) error
}

// syncEvents streams one sync (GET /api/v1/syncs/{id}/events): a "record" event with the
// whole record now and at each change, then an "end" event once the sync is over.
func (s *Server) syncEvents(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if _, err := s.cfg.Records.Get(r.Context(), id); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no sync with id "+quote(id))
			return
		}
		writeError(w, http.StatusServiceUnavailable, "sync records unavailable: "+err.Error())
		return
	}
	s.stream(w, r, func(ctx context.Context, send func(event string, v any) bool) error {
		return s.cfg.Watch.WatchSync(ctx, id, func(rec queue.Record) bool {
			if !send("record", rec) {
				return false
			}
			if rec.State.Terminal() {
				send("end", map[string]string{"id": rec.ID, "state": string(rec.State)})
				return false
			}
			return true
		})
	})
}

// allSyncEvents streams every sync's changes (GET /api/v1/events, ?app= for one app's) as
// "sync" events (queue.SyncSummary), for a dashboard that shows syncs as they happen.
func (s *Server) allSyncEvents(w http.ResponseWriter, r *http.Request) {
	app := r.URL.Query().Get("app")
	if _, ok := s.apps[app]; app != "" && !ok {
		writeError(w, http.StatusNotFound, "no app named "+quote(app))
		return
	}
	s.stream(w, r, func(ctx context.Context, send func(event string, v any) bool) error {
		return s.cfg.Watch.WatchSyncs(ctx, func(rec queue.Record) bool {
			if app != "" && rec.App != app {
				return true
			}
			return send("sync", rec.Summary())
		})
	})
}

// stream serves a server-sent event stream fed by watch until watch ends, the client leaves, the
// stream's lifetime is over or the server shuts down.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, watch func(ctx context.Context, send func(event string, v any) bool) error) {
	if s.cfg.Watch == nil {
		writeError(w, http.StatusNotImplemented, "live updates are not available on this server")
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "too many live update streams; try again later")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), EventStreamLifetime)
	defer cancel()

	type event struct {
		name string
		data []byte
	}
	events := make(chan event, eventBuffer)
	watchErr := make(chan error, 1)
	go func() {
		defer close(events)
		watchErr <- watch(ctx, func(name string, v any) bool {
			data, err := json.Marshal(v)
			if err != nil {
				return false
			}
			select {
			case events <- event{name, data}:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx would otherwise hold events back
	write := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write("retry: %d\n\n", eventRetryMillis) {
		return
	}
	heartbeat := time.NewTicker(eventHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			if !write(": keep-alive\n\n") {
				return
			}
		case e, ok := <-events:
			if !ok {
				if err := <-watchErr; err != nil {
					s.cfg.Logger.Warn("live update stream ended", "path", r.URL.Path, "err", err)
					write("event: error\ndata: %s\n\n", mustJSON(map[string]string{"error": "live updates interrupted; reconnecting"}))
				}
				return
			}
			if !write("event: %s\ndata: %s\n\n", e.name, e.data) {
				return
			}
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
