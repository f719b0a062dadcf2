// Package source is ferry's Git side: a cache of bare repositories on disk, one per configured
// repository, that fetches exactly the commits jobs name and serves their trees without a
// checkout. It speaks Git over HTTPS with go-git; there is no git binary in ferry's image.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// DefaultTimeout bounds one exchange with a remote (a fetch or a ref listing) when
// Options.Timeout is zero: long enough for the first fetch of a large repository, short
// enough that a stalled forge does not hold a worker for ever.
const DefaultTimeout = 5 * time.Minute

// Repo is a Git repository as the fetcher needs it.
type Repo struct {
	// Name is the repository's name in ferry's config; it names the cache directory, so it
	// must be usable as one path element.
	Name string
	// URL is the clone URL. Credentials in it are moved into the request's authentication, so
	// they are never stored in the cache, logged or quoted in an error.
	URL string
	// Token authenticates over HTTPS as the forge expects; empty for public repositories.
	Token string
	// Credentials, when set, gives the token per exchange instead of Token: a GitHub App's
	// installation token, which changes every hour.
	Credentials Credentials
	// Provider (github, gitlab or gitea) picks the basic-auth user name that goes with a token,
	// since each forge documents its own convention.
	Provider string
}

// Credentials is a source of short-lived tokens (a GitHub App installation's). The fetcher asks
// for the token before each exchange with the remote, and reports one the remote refused so
// that the next is a new one; it then tries once more.
type Credentials interface {
	// Token returns the token to use now. Its error may tell whether it is transient through a
	// Transient() bool method; without one it counts as transient.
	Token(ctx context.Context) (string, error)
	// Refused says the remote answered 401 to token.
	Refused(token string)
}

// tokenUsers is each forge's documented basic-auth user name for an access token.
var tokenUsers = map[string]string{"github": "x-access-token", "gitlab": "oauth2", "gitea": "token"}

// remote returns the URL without credentials, the authentication to use, and the secrets that
// must not appear in messages. The token comes from Credentials when the repository has them.
func (r Repo) remote(ctx context.Context) (string, transport.AuthMethod, []string, error) {
	u, err := url.Parse(r.URL)
	if err != nil || u.Host == "" {
		// url.Parse quotes its input, which may hold credentials.
		return "", nil, nil, permanent(fmt.Errorf("repo %s: clone url is not a valid url", r.Name))
	}
	if r.Credentials != nil {
		tok, err := r.Credentials.Token(ctx)
		if err != nil {
			return "", nil, nil, fmt.Errorf("repo %s: credentials: %w", r.Name, credentialError(err))
		}
		r.Token = tok
	}
	secrets := []string{r.Token}
	user, pass := "", ""
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
		secrets = append(secrets, pass, u.User.String())
		u.User = nil
	}
	if r.Token != "" {
		user, pass = tokenUsers[r.Provider], r.Token
		if user == "" {
			user = "x-access-token"
		}
	}
	var auth transport.AuthMethod
	if user != "" || pass != "" {
		auth = &githttp.BasicAuth{Username: user, Password: pass}
	}
	return u.String(), auth, secrets, nil
}

// Options configures the cache.
type Options struct {
	// Dir holds one bare repository per Repo.Name; it survives restarts so fetches stay
	// incremental.
	Dir string
	// Logger receives debug lines about fetches and a warning when a broken cache is started
	// again; nil discards them.
	Logger *slog.Logger
	// Timeout bounds one exchange with a remote; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxFetchBytes bounds the pack data one fetch receives; zero means MaxFetchBytes.
	MaxFetchBytes int64
	// PreviewRefTTL is how long a preview's ref and the objects only it reaches stay in the
	// cache after its last use; zero means DefaultPreviewRefTTL.
	PreviewRefTTL time.Duration
	// Now tells the time for PreviewRefTTL; nil means time.Now.
	Now func() time.Time
	// Metrics times fetches from remotes; nil records nothing.
	Metrics *Metrics
}

// Cache is the set of local bare repositories. It is safe for concurrent use. Operations on
// one repository are serialised: go-git's filesystem storage is not safe for concurrent use,
// not even for reads, as it builds its pack index map lazily without a lock.
type Cache struct {
	opts  Options
	mu    sync.Mutex
	repos map[string]*cached
}

// cached is one repository of the cache.
type cached struct {
	// sem is the repository's lock: a channel rather than a mutex, so that a caller queued
	// behind a long fetch can give up when its context ends.
	sem  chan struct{}
	repo *git.Repository
	// dir is the bare repository's directory.
	dir string
	// used is when each preview ref was last fetched or asked for, and wanted when each commit
	// was last asked for, for PreviewRefTTL.
	used   map[plumbing.ReferenceName]time.Time
	wanted map[plumbing.Hash]time.Time
}

// lock takes the repository's lock, or gives up with ctx.
func (e *cached) lock(ctx context.Context) error {
	select {
	case e.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the git cache: %w", ctx.Err())
	}
}

func (e *cached) unlock() { <-e.sem }

// New opens the cache directory, creating it if needed. Repositories are opened on first use.
func New(opts Options) (*Cache, error) {
	if opts.Dir == "" {
		return nil, errors.New("git cache: a directory is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("git cache: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxFetchBytes <= 0 {
		opts.MaxFetchBytes = MaxFetchBytes
	}
	if opts.PreviewRefTTL <= 0 {
		opts.PreviewRefTTL = DefaultPreviewRefTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{opts: opts, repos: map[string]*cached{}}, nil
}

// acquire opens r's cache entry and takes its lock; the caller unlocks it.
func (c *Cache) acquire(ctx context.Context, r Repo) (*cached, error) {
	e, err := c.open(r)
	if err != nil {
		return nil, err
	}
	if err := e.lock(ctx); err != nil {
		return nil, fmt.Errorf("repo %s: %w", r.Name, err)
	}
	return e, nil
}

// open returns the repository's cache entry, opening or creating the bare repository once and
// keeping it for the life of the cache.
func (c *Cache) open(r Repo) (*cached, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.repos[r.Name]; ok {
		return e, nil
	}
	if r.Name == "" || r.Name == "." || r.Name == ".." || strings.ContainsAny(r.Name, "/\\\x00") {
		return nil, permanent(fmt.Errorf("git cache: repo name %q cannot name a directory", r.Name))
	}
	dir := filepath.Join(c.opts.Dir, r.Name+".git")
	repo, err := openRepo(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if _, err = git.PlainInit(dir, true); err == nil {
			repo, err = openRepo(dir)
		}
	}
	if err != nil {
		// It is only a cache: start it again rather than fail every sync of the repository.
		c.opts.Logger.Warn("git cache unreadable, starting it again", "repo", r.Name, "err", err)
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("git cache for %s: %w", r.Name, err)
		}
		if _, err = git.PlainInit(dir, true); err == nil {
			repo, err = openRepo(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("git cache for %s: %w", r.Name, err)
		}
	}
	e := &cached{sem: make(chan struct{}, 1), repo: repo, dir: dir, used: map[plumbing.ReferenceName]time.Time{},
		wanted: map[plumbing.Hash]time.Time{}}
	c.repos[r.Name] = e
	return e, nil
}

// openRepo opens the bare repository at dir keeping its pack files open: without
// KeepDescriptors go-git opens a pack file again for every object it reads, which was most of
// the time of reading a commit's files (BenchmarkFilesManyApps). The descriptors are closed when
// collect deletes packs, and every read holds the repository's lock, so no file is read by two
// goroutines at once.
func openRepo(dir string) (*git.Repository, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, git.ErrRepositoryNotExists
	}
	st := filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRUDefault(), filesystem.Options{KeepDescriptors: true})
	return git.Open(st, nil)
}

// Fetch makes sure commit sha is in the cache. Only when it is missing does it ask the remote,
// for refs: branch names (main), or full refs such as refs/pull/7/head or
// refs/merge-requests/7/head for previews; without refs it fetches every branch. Fetches are
// full and incremental: the remote sends only objects the cache lacks. When the remote does
// not have the commit (yet), the error wraps ErrCommitNotFound.
func (c *Cache) Fetch(ctx context.Context, r Repo, sha string, refs ...string) error {
	h, err := parseSHA(sha)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", r.Name, err)
	}
	specs, err := refSpecs(refs)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", r.Name, err)
	}
	e, err := c.acquire(ctx, r)
	if err != nil {
		return err
	}
	defer e.unlock()
	dsts := destinations(specs)
	e.touch(c.opts.Now(), h, dsts)
	// Once the fetch is done, with the refs it moved, collect what expired previews leave.
	defer c.collect(ctx, e, r)
	if _, err := e.repo.CommitObject(h); err == nil {
		return nil
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	err = withAuth(ctx, r, func(remoteURL string, auth transport.AuthMethod) error {
		fetchStart := time.Now()
		err := fetch(ctx, git.NewRemote(boundedStorer{Storer: e.repo.Storer, limit: c.opts.MaxFetchBytes}, remoteConfig(remoteURL)), auth, specs)
		c.opts.Metrics.observeFetch(r.Name, time.Since(fetchStart), err)
		if errors.Is(err, ErrFetchTooLarge) {
			if rerr := removePartialPacks(e.dir); rerr != nil {
				c.opts.Logger.Warn("git cache: partial pack not removed", "repo", r.Name, "err", rerr)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("fetch %s: %w", r.Name, err)
	}
	e.touch(c.opts.Now(), h, dsts)
	if _, err := e.repo.CommitObject(h); err != nil {
		return fmt.Errorf("fetch %s: commit %s: %w", r.Name, sha, ErrCommitNotFound)
	}
	c.opts.Logger.Debug("fetched", "repo", r.Name, "sha", sha, "refs", refs, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// withAuth runs one exchange with r's remote, authenticated, and returns its error classified
// and with every secret it used scrubbed. When the remote refuses a token from r.Credentials as
// unauthenticated (revoked, expired early), the token is reported and the exchange runs once
// more with the next.
func withAuth(ctx context.Context, r Repo, exchange func(remoteURL string, auth transport.AuthMethod) error) error {
	var secrets []string
	for attempt := 0; ; attempt++ {
		remoteURL, auth, used, err := r.remote(ctx)
		if err != nil {
			return redact(err, secrets...)
		}
		secrets = append(secrets, used...)
		err = exchange(remoteURL, auth)
		if err == nil {
			return nil
		}
		if r.Credentials != nil && attempt == 0 && errors.Is(err, transport.ErrAuthenticationRequired) {
			if ba, ok := auth.(*githttp.BasicAuth); ok {
				r.Credentials.Refused(ba.Password)
				continue
			}
		}
		return redact(classify(err), secrets...)
	}
}

// credentialError keeps what a token source says of its error: permanent when it says it is
// not transient (a wrong App configuration), transient otherwise.
func credentialError(err error) error {
	if t, ok := errors.AsType[interface {
		error
		Transient() bool
	}](err); ok && !t.Transient() {
		return permanent(err)
	}
	return &classified{err: err, transient: true}
}
