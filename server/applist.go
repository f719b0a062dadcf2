package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

const (
	// listWait bounds how long a list request waits, after start, for the in-memory index of
	// app states to have read every stored record; past it the request gets 503 and Retry-After.
	listWait = 10 * time.Second
	// indexRetry is the pause before the index follows the records again after the store ended
	// its watch (NATS lost for good); the index keeps serving what it had meanwhile.
	indexRetry = 2 * time.Second
	// MaxListLimit bounds GET /api/v1/apps?limit=: a client wanting more follows continue.
	MaxListLimit = 1000
	// DashboardPageSize is how many apps a page of the dashboard's list shows (?page=).
	DashboardPageSize = 100
)

// errIndexLoading is a list asked for before the index of app states has read every record.
var errIndexLoading = errors.New("app states are still loading; retry shortly")

// syncFollower replays every stored sync record and then follows those stored later: what the
// app list's in-memory index feeds on, so that listing thousands of apps reads no record.
type syncFollower interface {
	FollowSyncs(ctx context.Context, caughtUp func(), fn func(queue.SyncSummary)) error
}

var _ syncFollower = (*queue.Records)(nil)

// appLast is where one app stands: its newest sync and its newest deploy.
type appLast struct {
	newest, deploy *queue.SyncSummary
}

// appIndex keeps every app's newest sync and newest deploy in memory, fed by one watch of the
// record bucket that any replica's writes reach. It starts when the server serves (or on the
// first list request) and stops when the server shuts down.
type appIndex struct {
	src    syncFollower
	log    *slog.Logger
	closed <-chan struct{}
	start  sync.Once
	ready  chan struct{}
	// readyOnce closes ready after the first full replay (a later re-watch replays again).
	readyOnce sync.Once

	mu   sync.RWMutex
	last map[string]*appLast
}

func newAppIndex(src syncFollower, log *slog.Logger, closed <-chan struct{}) *appIndex {
	return &appIndex{src: src, log: log, closed: closed, ready: make(chan struct{}), last: map[string]*appLast{}}
}

// begin starts following the records, once: when the server starts serving, so that the first
// list after a start finds the index loaded, or at the first list of a server that only routes.
func (x *appIndex) begin() { x.start.Do(func() { go x.run() }) }

// wait starts the index if it is not running and waits until it has read every stored record,
// at most listWait.
func (x *appIndex) wait(ctx context.Context) error {
	x.begin()
	t := time.NewTimer(listWait)
	defer t.Stop()
	select {
	case <-x.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errIndexLoading
	}
}

// run follows the records until the server shuts down. The server's lifetime, not a request's,
// bounds it, hence a context of its own ended by Shutdown.
func (x *appIndex) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-x.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	for ctx.Err() == nil {
		err := x.src.FollowSyncs(ctx, func() { x.readyOnce.Do(func() { close(x.ready) }) }, x.add)
		if ctx.Err() != nil {
			return
		}
		x.log.Warn("app list: following sync records stopped; following them again", "err", err, "retry_in", indexRetry)
		t := time.NewTimer(indexRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// add takes in one record's summary: it becomes its app's newest sync (and newest deploy) when
// it is a new version of that sync or was enqueued no earlier.
func (x *appIndex) add(s queue.SyncSummary) {
	x.mu.Lock()
	defer x.mu.Unlock()
	l := x.last[s.App]
	if l == nil {
		l = &appLast{}
		x.last[s.App] = l
	}
	if supersedes(s, l.newest) {
		l.newest = &s
	}
	if s.Kind == queue.KindDeploy && supersedes(s, l.deploy) {
		l.deploy = &s
	}
}

func supersedes(s queue.SyncSummary, cur *queue.SyncSummary) bool {
	return cur == nil || s.ID == cur.ID || !s.EnqueuedAt.Before(cur.EnqueuedAt)
}

// get returns copies of an app's newest sync and newest deploy, nil when it has none.
func (x *appIndex) get(app string) (newest, deploy *queue.Record) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l := x.last[app]
	if l == nil {
		return nil, nil
	}
	return recordOf(l.newest), recordOf(l.deploy)
}

// recordOf is a summary as the list shows it: a record without its objects, diff and error,
// which GET /api/v1/syncs/{id} has.
func recordOf(s *queue.SyncSummary) *queue.Record {
	if s == nil {
		return nil
	}
	return &queue.Record{ID: s.ID, App: s.App, Kind: s.Kind, Trigger: s.Trigger, SHA: s.SHA, PR: s.PR, State: s.State,
		Message: s.Message, Counts: s.Counts, EnqueuedAt: s.EnqueuedAt, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt}
}

// lastSyncsFunc tells an app's newest sync and newest deploy (nil when none).
type lastSyncsFunc func(app string) (newest, deploy *queue.Record, err error)

// lastSyncs is how the list learns where apps stand: from the in-memory index when the record
// store can be followed (ferry's own can), else by reading each app's recent history (stores
// that cannot be followed, such as test doubles).
func (s *Server) lastSyncs(ctx context.Context) (lastSyncsFunc, error) {
	if s.index != nil {
		if err := s.index.wait(ctx); err != nil {
			return nil, err
		}
		return func(app string) (*queue.Record, *queue.Record, error) {
			n, d := s.index.get(app)
			return n, d, nil
		}, nil
	}
	return func(app string) (newest, deploy *queue.Record, err error) {
		hist, err := s.cfg.Records.History(ctx, app, rowHistory)
		if err != nil || len(hist) == 0 {
			return nil, nil, err
		}
		newest = &hist[0]
		for i := range hist {
			if hist[i].Kind == queue.KindDeploy {
				return newest, &hist[i], nil
			}
		}
		return newest, nil, nil
	}, nil
}

// appNames is every configured app's name, sorted: the list's order and paging key.
func appNames(apps map[string]AppInfo) []string {
	names := make([]string, 0, len(apps))
	for n := range apps {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// listPage is the API list's paging: ?limit= (1 to MaxListLimit; absent: every app) and
// ?continue=, the token a previous page ended with (the last app name it listed).
type listPage struct {
	limit int
	after string
}

func listPageOf(q url.Values) (listPage, error) {
	p := listPage{after: q.Get("continue")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return p, fmt.Errorf("limit %s is not a number from 1 to %d", quote(v), MaxListLimit)
		}
		p.limit = n
	}
	return p, nil
}

// dashboardPage is the dashboard list's ?page= (from 1); anything else is the first page.
func dashboardPage(q url.Values) int {
	n, err := strconv.Atoi(q.Get("page"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}
