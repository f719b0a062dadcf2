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

	"github.com/google/go-github/v92/github"
)

// MaxCheckOutput is GitHub's limit on a check run's output summary and on its text (65,535
// characters each). ferry counts bytes, which is never looser.
const MaxCheckOutput = 65535

// MaxAnnotationsPerRequest is how many annotations GitHub takes in one create or update of a check
// run; more go in further updates.
const MaxAnnotationsPerRequest = 50

// MaxAnnotations bounds the annotations of one check run: a failed sync names one file, so this is
// room to spare, never a reason to make hundreds of requests.
const MaxAnnotations = 4 * MaxAnnotationsPerRequest

// CheckRunCacheSize is how many check run ids (per commit and name) a Checks reporter remembers.
// A forgotten id costs one lookup on GitHub, never a second run: the lookup finds it again.
const CheckRunCacheSize = 10_000

// checkRunLookupPage bounds the lookup of an existing run: runs of one name on one commit are few,
// and the newest comes first.
const checkRunLookupPage = 100

// The check run statuses and conclusions ferry uses, as GitHub spells them.
const (
	checkQueued     = "queued"
	checkInProgress = "in_progress"
	checkCompleted  = "completed"
)

// Checks publishes ferry's statuses as GitHub check runs: one run per app and commit (named as
// the status context, ferry/<app> or ferry/<app>/preview), created once and then updated in place
// from queued through in progress to completed, with the sync's account as its output. GitHub
// never lets a completed run change its status again: another sync of the same commit (a manual
// resync, a re-run) gets a new run, which GitHub shows instead of the old one. It needs a GitHub
// App installation (only Apps may write check runs). Safe for concurrent use.
type Checks struct {
	client *github.Client
	owner  string
	repo   string
	now    func() time.Time
	// errs classifies GitHub's answers exactly as the commit-status reporter does.
	errs *GitHub

	locks keyLocks[checkKey]

	mu    sync.Mutex
	order *list.List // of *checkRun, most recently used first
	runs  map[checkKey]*list.Element
}

var _ Reporter = (*Checks)(nil)

type checkKey struct{ sha, name string }

// checkRun is what Checks remembers of a run: its id, the sync that last wrote it, and whether
// that sync completed it.
type checkRun struct {
	key       checkKey
	id        int64
	syncID    string
	completed bool
}

// NewChecks returns a check run Reporter for owner/repo. hc must authenticate every request as
// the GitHub App's installation (its transport adds the token); it is never modified, and a client
// without a timeout is copied with DefaultHTTPTimeout. apiURL is empty for github.com, or the
// Enterprise Server address. secrets returns the tokens hc may have sent, scrubbed from every
// message GitHub sends back; nil when there are none.
func NewChecks(hc *http.Client, apiURL string, secrets func() []string, owner, repo string) (*Checks, error) {
	if secrets == nil {
		secrets = func() []string { return nil }
	}
	if hc == nil {
		return nil, errors.New("github checks: no authenticated http client")
	}
	if owner == "" || repo == "" || strings.Contains(owner, "/") || strings.Contains(repo, "/") {
		return nil, fmt.Errorf("github checks: invalid repository %q/%q", owner, repo)
	}
	if hc.Timeout == 0 {
		// A forge that hangs must not hold a worker: the caller's client is copied with a bound.
		bounded := *hc
		bounded.Timeout = DefaultHTTPTimeout
		hc = &bounded
	}
	opts := []github.ClientOptionsFunc{
		github.WithHTTPClient(hc),
		github.WithUserAgent(userAgent),
		// Retry waits as long as GitHub asks; the library must not refuse requests on its own clock.
		github.WithDisableRateLimitCheck(),
	}
	if apiURL != "" {
		if err := checkAPIURL(apiURL); err != nil {
			return nil, fmt.Errorf("github checks: %w", err)
		}
		opts = append(opts, github.WithEnterpriseURLs(apiURL, apiURL))
	}
	c, err := github.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("github checks: create client: %w", err)
	}
	now := time.Now
	return &Checks{client: c, owner: owner, repo: repo, now: now, errs: &GitHub{now: now, secrets: secrets},
		order: list.New(), runs: map[checkKey]*list.Element{}}, nil
}

// Report creates or updates the check run of s's commit and context. A status of a sync whose run
// is already completed (a queued notice arriving late, a result posted again) changes nothing.
// Rate limits come back as *RetryAfterError, GitHub's refusals (422: an invalid annotation, say)
// as a permanent *HTTPError carrying its message.
func (c *Checks) Report(ctx context.Context, s Status) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("github checks: %w", err)
	}
	key := checkKey{s.SHA, s.Context}
	unlock := c.locks.lock(key)
	defer unlock()

	syncID := ""
	if s.Detail != nil {
		syncID = s.Detail.SyncID
	}
	run, known := c.cached(key)
	if !known {
		found, err := c.lookup(ctx, key)
		if err != nil {
			return fmt.Errorf("github checks: find run %s on %s: %w", s.Context, shortSHA(s.SHA), err)
		}
		run = found
	}
	if run != nil && run.completed {
		if run.syncID == syncID {
			// GitHub keeps a completed run's status and conclusion for good; its sync has said
			// all it had to (this is a queued notice arriving late, or a result posted again).
			return nil
		}
		// Another sync of the commit (a manual resync, a re-run): a fresh run, which GitHub
		// shows in place of the completed one.
		run = nil
	}

	rep := renderReport(s, MaxCheckOutput)
	anns := rep.Annotations
	if len(anns) > MaxAnnotations {
		anns = anns[:MaxAnnotations]
	}
	first := anns[:min(len(anns), MaxAnnotationsPerRequest)]
	state, conclusion := checkState(s)
	out := checkOutput(rep, first)
	var completedAt *github.Timestamp
	if conclusion != "" {
		completedAt = &github.Timestamp{Time: c.now()}
	}

	var id int64
	if run != nil {
		opt := github.UpdateCheckRunOptions{Name: s.Context, Status: github.Ptr(state), Output: out, CompletedAt: completedAt}
		c.fillCommon(&opt.DetailsURL, &opt.ExternalID, &opt.Conclusion, s, syncID, conclusion)
		err := c.withoutBadAnnotations(opt.Output, func() error {
			_, _, err := c.client.Checks.UpdateCheckRun(ctx, c.owner, c.repo, run.id, opt)
			return err
		})
		if he, ok := errors.AsType[*HTTPError](c.errs.classify(err)); ok && he.StatusCode == http.StatusNotFound {
			// The run is gone (deleted with its suite): make a new one below.
			c.forget(key)
			run, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("github checks: update run %s (%d) on %s: %w", s.Context, run.id, shortSHA(s.SHA), c.errs.classify(err))
		}
		if run != nil {
			id = run.id
		}
	}
	if run == nil {
		opt := github.CreateCheckRunOptions{Name: s.Context, HeadSHA: s.SHA, Status: github.Ptr(state), Output: out, CompletedAt: completedAt}
		if state != checkQueued {
			opt.StartedAt = &github.Timestamp{Time: c.now()}
		}
		c.fillCommon(&opt.DetailsURL, &opt.ExternalID, &opt.Conclusion, s, syncID, conclusion)
		var created *github.CheckRun
		err := c.withoutBadAnnotations(opt.Output, func() (err error) {
			created, _, err = c.client.Checks.CreateCheckRun(ctx, c.owner, c.repo, opt)
			return err
		})
		if err != nil {
			return fmt.Errorf("github checks: create run %s on %s: %w", s.Context, shortSHA(s.SHA), c.errs.classify(err))
		}
		id = created.GetID()
	}
	c.remember(&checkRun{key: key, id: id, syncID: syncID, completed: conclusion != ""})

	// Annotations past the first request's go in further updates, which GitHub appends.
	for rest := anns[len(first):]; len(rest) > 0; {
		n := min(len(rest), MaxAnnotationsPerRequest)
		opt := github.UpdateCheckRunOptions{Name: s.Context, Output: checkOutput(rep, rest[:n])}
		if _, _, err := c.client.Checks.UpdateCheckRun(ctx, c.owner, c.repo, id, opt); err != nil {
			return fmt.Errorf("github checks: annotate run %s (%d) on %s: %w", s.Context, id, shortSHA(s.SHA), c.errs.classify(err))
		}
		rest = rest[n:]
	}
	return nil
}

// withoutBadAnnotations sends a request and, if GitHub refuses it (422) while it carries
// annotations, sends it once more without them: an annotation on a path GitHub does not take must
// not cost the run its result. The text names the file all the same. Any other refusal, and a
// refusal of the request without annotations, is returned as it is.
func (c *Checks) withoutBadAnnotations(out *github.CheckRunOutput, send func() error) error {
	err := send()
	if err == nil || len(out.Annotations) == 0 {
		return err
	}
	if he, ok := errors.AsType[*HTTPError](c.errs.classify(err)); !ok || he.StatusCode != http.StatusUnprocessableEntity {
		return err
	}
	out.Annotations = nil
	return send()
}

// fillCommon sets what create and update share: the sync page, the sync id and the conclusion.
func (c *Checks) fillCommon(details, external, concl **string, s Status, syncID, conclusion string) {
	if s.TargetURL != "" {
		*details = github.Ptr(s.TargetURL)
	}
	if syncID != "" {
		*external = github.Ptr(syncID)
	}
	if conclusion != "" {
		*concl = github.Ptr(conclusion)
	}
}

// checkState maps a status onto a check run's status and, once completed, its conclusion.
// "No changes" is neutral; a commit that was superseded by, or included in, a newer one is
// cancelled: it was not synced itself.
func checkState(s Status) (state, conclusion string) {
	switch s.State {
	case Pending:
		if s.Detail != nil && s.Detail.Phase == PhaseInProgress {
			return checkInProgress, ""
		}
		return checkQueued, ""
	case Success:
		if d := s.Detail; d != nil && d.Counts.Changes() == 0 && (d.Kind == KindPreview || d.Counts == (Counts{})) {
			return checkCompleted, "neutral"
		}
		return checkCompleted, "success"
	case Failure:
		return checkCompleted, "failure"
	}
	return checkCompleted, "cancelled"
}

func checkOutput(rep report, anns []annotation) *github.CheckRunOutput {
	out := &github.CheckRunOutput{Title: github.Ptr(rep.Title), Summary: github.Ptr(rep.Summary)}
	if rep.Text != "" {
		out.Text = github.Ptr(rep.Text)
	}
	for _, a := range anns {
		out.Annotations = append(out.Annotations, &github.CheckRunAnnotation{
			Path:            github.Ptr(a.Path),
			StartLine:       github.Ptr(1),
			EndLine:         github.Ptr(1),
			AnnotationLevel: github.Ptr("failure"),
			Title:           github.Ptr(a.Title),
			Message:         github.Ptr(a.Message),
		})
	}
	return out
}

// lookup finds the newest run of key's name on its commit, made before this process knew of it
// (a restart, another replica). nil means there is none yet.
func (c *Checks) lookup(ctx context.Context, key checkKey) (*checkRun, error) {
	opt := &github.ListCheckRunsOptions{CheckName: github.Ptr(key.name), Filter: github.Ptr("latest"), ListOptions: github.ListOptions{PerPage: checkRunLookupPage}}
	res, _, err := c.client.Checks.ListCheckRunsForRef(ctx, c.owner, c.repo, key.sha, opt)
	if err != nil {
		return nil, c.errs.classify(err)
	}
	var best *github.CheckRun
	for _, r := range res.CheckRuns {
		if r.GetName() != key.name || r.GetHeadSHA() != "" && r.GetHeadSHA() != key.sha {
			continue
		}
		if best == nil || r.GetID() > best.GetID() {
			best = r
		}
	}
	if best == nil {
		return nil, nil
	}
	run := &checkRun{key: key, id: best.GetID(), syncID: best.GetExternalID(), completed: best.GetStatus() == checkCompleted}
	c.remember(run)
	return run, nil
}

func (c *Checks) cached(key checkKey) (*checkRun, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.runs[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	run := *e.Value.(*checkRun)
	return &run, true
}

func (c *Checks) remember(run *checkRun) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.runs[run.key]; ok {
		e.Value = run
		c.order.MoveToFront(e)
		return
	}
	c.runs[run.key] = c.order.PushFront(run)
	for c.order.Len() > CheckRunCacheSize {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.runs, oldest.Value.(*checkRun).key)
	}
}

func (c *Checks) forget(key checkKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.runs[key]; ok {
		c.order.Remove(e)
		delete(c.runs, key)
	}
}
