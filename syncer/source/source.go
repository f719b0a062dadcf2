// Package source is ferry's Git side: a cache of bare repositories, one per configured repo,
// that fetches exactly the commits jobs name and serves their trees without a checkout.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
)

// ErrCommitNotFound means the remote does not serve the commit (yet): a hook can arrive
// before its commit is fetchable, so the caller retries for a bounded time.
var ErrCommitNotFound = errors.New("commit not found on the remote")

// Repo is a Git repository as the fetcher needs it.
type Repo struct {
	Name string
	URL  string
	// Token authenticates over HTTPS as the forge expects; empty for public repositories.
	Token string
	// Provider picks the basic-auth user name the forge expects with a token.
	Provider string
}

func (r Repo) auth() transport.AuthMethod {
	if r.Token == "" {
		return nil
	}
	user := map[string]string{"github": "x-access-token", "gitlab": "oauth2", "gitea": "ferry"}[r.Provider]
	if user == "" {
		user = "ferry"
	}
	return &githttp.BasicAuth{Username: user, Password: r.Token}
}

// Options configures the cache.
type Options struct {
	// Dir holds one bare repository per Repo.Name.
	Dir    string
	Logger *slog.Logger
}

// Cache is the set of local bare repositories. It is safe for concurrent use; operations on
// one repository are serialised, since go-git's storage is not safe for concurrent writers.
type Cache struct {
	opts  Options
	mu    sync.Mutex
	repos map[string]*cached
}

type cached struct {
	mu   sync.Mutex
	repo *git.Repository
}

// New opens the cache directory, creating it if needed.
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
	return &Cache{opts: opts, repos: map[string]*cached{}}, nil
}

// open returns the repository's cache entry, opening or creating the bare repository once.
func (c *Cache) open(r Repo) (*cached, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.repos[r.Name]; ok {
		return e, nil
	}
	if r.Name == "" || strings.ContainsAny(r.Name, `/\`) || r.Name == "." || r.Name == ".." {
		return nil, fmt.Errorf("git cache: repo name %q cannot name a directory", r.Name)
	}
	dir := filepath.Join(c.opts.Dir, r.Name+".git")
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("git cache for %s: %w", r.Name, err)
	}
	e := &cached{repo: repo}
	c.repos[r.Name] = e
	return e, nil
}

// Fetch makes sure commit sha is in the cache, fetching refs from the remote only when it is
// missing. Without refs it fetches every branch. It returns an error wrapping
// ErrCommitNotFound when the remote does not have the commit.
func (c *Cache) Fetch(ctx context.Context, r Repo, sha string, refs ...string) error {
	if !plumbing.IsHash(sha) {
		return fmt.Errorf("fetch %s: %q is not a commit sha: %w", r.Name, sha, errPermanent)
	}
	e, err := c.open(r)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h := plumbing.NewHash(sha)
	if _, err := e.repo.CommitObject(h); err == nil {
		return nil
	}
	specs := []config.RefSpec{"+refs/heads/*:refs/ferry/heads/*"}
	if len(refs) > 0 {
		specs = specs[:0]
		for _, ref := range refs {
			if ref == "" {
				continue
			}
			if !strings.HasPrefix(ref, "refs/") {
				ref = "refs/heads/" + ref
			}
			specs = append(specs, config.RefSpec("+"+ref+":refs/ferry/"+strings.TrimPrefix(ref, "refs/")))
		}
	}
	if err := e.remote(r.URL); err != nil {
		return fmt.Errorf("fetch %s: %w", r.Name, err)
	}
	err = e.repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: specs, Auth: r.auth(), Tags: git.NoTags, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) && !isMissingRef(err) {
		return fmt.Errorf("fetch %s: %w", r.Name, classify(err))
	}
	if _, err := e.repo.CommitObject(h); err != nil {
		return fmt.Errorf("fetch %s: commit %s: %w", r.Name, sha, ErrCommitNotFound)
	}
	c.opts.Logger.Debug("fetched", "repo", r.Name, "sha", sha)
	return nil
}

// remote points the cache's origin at url, which the config may have changed since the last run.
func (e *cached) remote(url string) error {
	if rem, err := e.repo.Remote("origin"); err == nil {
		if urls := rem.Config().URLs; len(urls) == 1 && urls[0] == url {
			return nil
		}
		if err := e.repo.DeleteRemote("origin"); err != nil {
			return fmt.Errorf("reset remote: %w", err)
		}
	}
	if _, err := e.repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		return fmt.Errorf("set remote: %w", err)
	}
	return nil
}

// isMissingRef is a fetch of a ref the remote does not have (a deleted pull request ref).
func isMissingRef(err error) bool {
	var nf git.NoMatchingRefSpecError
	return errors.As(err, &nf)
}

// Head resolves a branch (or tag, or full ref) on the remote with a ref listing, no fetch: the
// cheap question a poller asks every few minutes.
func (c *Cache) Head(ctx context.Context, r Repo, ref string) (string, error) {
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	list, err := rem.ListContext(ctx, &git.ListOptions{Auth: r.auth()})
	if err != nil {
		return "", fmt.Errorf("list refs of %s: %w", r.Name, classify(err))
	}
	want := []string{ref}
	if !strings.HasPrefix(ref, "refs/") {
		want = []string{"refs/heads/" + ref, "refs/tags/" + ref + "^{}", "refs/tags/" + ref}
	}
	for _, w := range want {
		for _, x := range list {
			if x.Name().String() == w && x.Type() == plumbing.HashReference {
				return x.Hash().String(), nil
			}
		}
	}
	return "", fmt.Errorf("repo %s has no ref %q: %w", r.Name, ref, errPermanent)
}

// commit reads a fetched commit.
func (e *cached) commit(sha string) (*object.Commit, error) {
	c, err := e.repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return nil, fmt.Errorf("commit %s is not fetched: %w", sha, ErrCommitNotFound)
	}
	return c, nil
}

// IsAncestor reports whether commit a is an ancestor of (or equal to) commit b; both must be
// fetched.
func (c *Cache) IsAncestor(ctx context.Context, r Repo, a, b string) (bool, error) {
	e, err := c.open(r)
	if err != nil {
		return false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ca, err := e.commit(a)
	if err != nil {
		return false, err
	}
	cb, err := e.commit(b)
	if err != nil {
		return false, err
	}
	ok, err := ca.IsAncestor(cb)
	if err != nil {
		return false, fmt.Errorf("is %s an ancestor of %s: %w", a, b, err)
	}
	return ok, nil
}

// Changed lists the paths that differ between two fetched commits; from "" lists every file of to.
func (c *Cache) Changed(ctx context.Context, r Repo, from, to string) ([]string, error) {
	e, err := c.open(r)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ct, err := e.commit(to)
	if err != nil {
		return nil, err
	}
	toTree, err := ct.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of %s: %w", to, err)
	}
	var fromTree *object.Tree
	if from != "" {
		cf, err := e.commit(from)
		if err != nil {
			return nil, err
		}
		if fromTree, err = cf.Tree(); err != nil {
			return nil, fmt.Errorf("tree of %s: %w", from, err)
		}
	}
	changes, err := object.DiffTreeWithOptions(ctx, fromTree, toTree, nil)
	if err != nil {
		return nil, fmt.Errorf("diff %s..%s: %w", from, to, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, ch := range changes {
		for _, p := range []string{ch.From.Name, ch.To.Name} {
			if p != "" && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// errPermanent marks errors that retrying cannot fix.
var errPermanent = errors.New("permanent")

// classify wraps a go-git error so IsTransient can tell: authentication and a missing
// repository are permanent, the network and the server's 5xx are not.
func classify(err error) error {
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrInvalidAuthMethod),
		errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("%w (%w)", err, errPermanent)
	}
	return err
}

// IsTransient reports whether a fetch error may go away by itself: network failures, time-outs,
// the server's 5xx. Authentication failures and missing repositories are permanent, and so is a
// commit the remote does not serve: the caller decides how long to wait for that one.
func IsTransient(err error) bool {
	return err != nil && !errors.Is(err, errPermanent) && !errors.Is(err, ErrCommitNotFound) && !errors.Is(err, ErrBadTree)
}
