package status

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// MaxNoteBody bounds a merge request note. GitLab takes up to 1,000,000 characters; a note that
// long helps nobody, so ferry keeps far below and links the sync page for the rest.
const MaxNoteBody = 200_000

// MaxNotePages bounds the search of a merge request's notes for ferry's own: at 100 notes a page,
// a merge request with more than 2,000 comments gets a new note rather than an endless scan.
const MaxNotePages = 20

// notesPerPage is the largest page GitLab serves.
const notesPerPage = 100

// NoteCacheSize is how many note ids (per merge request and app) a GitLabNotes remembers; a
// forgotten one costs a search of the merge request's notes, never a second note.
const NoteCacheSize = 10_000

// GitLabNotes keeps one note per app on each merge request that ferry previews, with the same
// summary and diff as a check run: created when the first preview of the merge request ends, then
// edited in place for every later one, never added again. The note is found after a restart by
// the hidden marker on its first line. Statuses of deploys leave notes alone; a preview that is
// starting, or that changes nothing, only updates a note that is already there.
type GitLabNotes struct {
	client  *gitlab.Client
	project string
	// token is kept only to scrub it from messages GitLab sends back.
	token string
	now   func() time.Time

	locks keyLocks[noteKey]

	mu    sync.Mutex
	order *list.List // of noteKey, most recently used first
	ids   map[noteKey]*list.Element
	id    map[noteKey]int64
}

var _ Reporter = (*GitLabNotes)(nil)

type noteKey struct {
	mr  int
	app string
}

// NewGitLabNotes returns a Reporter of merge request notes for project ("group/sub/proj"). apiURL
// and hc are as for NewGitLab; the token needs the api scope.
func NewGitLabNotes(hc *http.Client, apiURL, token, project string) (*GitLabNotes, error) {
	c, project, err := newGitLabClient("gitlab notes", hc, apiURL, token, project)
	if err != nil {
		return nil, err
	}
	return &GitLabNotes{client: c, project: project, token: token, now: time.Now,
		order: list.New(), ids: map[noteKey]*list.Element{}, id: map[noteKey]int64{}}, nil
}

// noteMarker is the hidden first line by which ferry finds its note for app again.
func noteMarker(app string) string {
	return "<!-- ferry:app=" + app + " -->"
}

// Report writes s into the app's note on the preview's merge request. Statuses without a preview's
// detail, and those of commits that were not previewed themselves (superseded), are ignored.
func (g *GitLabNotes) Report(ctx context.Context, s Status) error {
	d := s.Detail
	if d == nil || d.Kind != KindPreview || d.PR <= 0 || d.App == "" || s.State == Canceled || s.State == Skipped {
		return nil
	}
	if err := s.validate(); err != nil {
		return fmt.Errorf("gitlab notes: %w", err)
	}
	key := noteKey{d.PR, d.App}
	unlock := g.locks.lock(key)
	defer unlock()

	id, known := g.cached(key)
	if !known {
		found, err := g.find(ctx, key)
		if err != nil {
			return fmt.Errorf("gitlab notes: find note of %s on !%d: %w", d.App, d.PR, err)
		}
		id = found
	}
	if id == 0 && (s.State == Pending || s.State == Success && d.Counts.Changes() == 0) {
		// A note is left when there is something to say: a preview starting says nothing yet, and
		// a merge request that does not change the app needs no note about it. An existing note
		// is still updated, as the merge request may have stopped changing the app.
		return nil
	}
	body := noteBody(s)
	if id != 0 {
		_, _, err := g.client.Notes.UpdateMergeRequestNote(g.project, int64(d.PR), id, &gitlab.UpdateMergeRequestNoteOptions{Body: gitlab.Ptr(body)}, gitlab.WithContext(ctx))
		if err == nil {
			return nil
		}
		if he, ok := errors.AsType[*HTTPError](g.classify(err)); !ok || he.StatusCode != http.StatusNotFound {
			return fmt.Errorf("gitlab notes: update note %d of %s on !%d: %w", id, d.App, d.PR, g.classify(err))
		}
		// Someone deleted the note: leave a new one.
		g.forget(key)
	}
	n, _, err := g.client.Notes.CreateMergeRequestNote(g.project, int64(d.PR), &gitlab.CreateMergeRequestNoteOptions{Body: gitlab.Ptr(body)}, gitlab.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("gitlab notes: create note of %s on !%d: %w", d.App, d.PR, g.classify(err))
	}
	g.remember(key, n.ID)
	return nil
}

// noteBody is the marker, a heading naming the check and commit, then the report.
func noteBody(s Status) string {
	head := noteMarker(s.Detail.App) + "\n" + fmt.Sprintf("#### %s · %s\n\n", codeSpan(s.Context), escapeInline(title(s))) +
		fmt.Sprintf("Commit %s\n\n", codeSpan(shortSHA(s.SHA)))
	rep := renderReport(s, MaxNoteBody-len(head)-2)
	body := head + rep.Summary + "\n\n" + rep.Text
	return cutBytes(body, MaxNoteBody)
}

// find searches the merge request's notes, oldest first, for the one carrying app's marker; 0
// means none within MaxNotePages.
func (g *GitLabNotes) find(ctx context.Context, key noteKey) (int64, error) {
	marker := noteMarker(key.app)
	opt := &gitlab.ListMergeRequestNotesOptions{
		ListOptions: gitlab.ListOptions{PerPage: notesPerPage, Page: 1},
		OrderBy:     gitlab.Ptr("created_at"),
		Sort:        gitlab.Ptr("asc"),
	}
	for range MaxNotePages {
		notes, resp, err := g.client.Notes.ListMergeRequestNotes(g.project, int64(key.mr), opt, gitlab.WithContext(ctx))
		if err != nil {
			return 0, g.classify(err)
		}
		for _, n := range notes {
			if !n.System && strings.HasPrefix(n.Body, marker) {
				g.remember(key, n.ID)
				return n.ID, nil
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return 0, nil
		}
		opt.Page = resp.NextPage
	}
	return 0, nil
}

// classify is the commit-status reporter's, reading GitLab's answers the same way.
func (g *GitLabNotes) classify(err error) error {
	return (&GitLab{token: g.token, now: g.now}).classify(err)
}

func (g *GitLabNotes) cached(key noteKey) (int64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.ids[key]
	if !ok {
		return 0, false
	}
	g.order.MoveToFront(e)
	return g.id[key], true
}

func (g *GitLabNotes) remember(key noteKey, id int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.id[key] = id
	if e, ok := g.ids[key]; ok {
		g.order.MoveToFront(e)
		return
	}
	g.ids[key] = g.order.PushFront(key)
	for g.order.Len() > NoteCacheSize {
		oldest := g.order.Back()
		g.order.Remove(oldest)
		k := oldest.Value.(noteKey)
		delete(g.ids, k)
		delete(g.id, k)
	}
}

func (g *GitLabNotes) forget(key noteKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.ids[key]; ok {
		g.order.Remove(e)
		delete(g.ids, key)
		delete(g.id, key)
	}
}
