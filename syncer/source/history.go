package source

import (
	"context"
	"fmt"
	"slices"

	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// ctxCheckEvery is how many commits or files a walk handles between looks at its context.
const ctxCheckEvery = 256

// commit reads a commit that must already be in the cache; a missing one wraps
// ErrCommitNotFound, since a Fetch is what brings it.
func (e *cached) commit(r Repo, sha string) (*object.Commit, error) {
	h, err := parseSHA(sha)
	if err != nil {
		return nil, fmt.Errorf("repo %s: %w", r.Name, err)
	}
	c, err := e.repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("repo %s: commit %s is not fetched: %w", r.Name, short(sha), ErrCommitNotFound)
	}
	return c, nil
}

// IsAncestor reports whether commit a is an ancestor of commit b, or b itself: then b already
// contains a's changes, and a sync of a can be skipped in favour of b. Both must be fetched.
func (c *Cache) IsAncestor(ctx context.Context, r Repo, a, b string) (bool, error) {
	e, err := c.acquire(ctx, r)
	if err != nil {
		return false, err
	}
	defer e.unlock()
	ca, err := e.commit(r, a)
	if err != nil {
		return false, err
	}
	cb, err := e.commit(r, b)
	if err != nil {
		return false, err
	}
	found, n := false, 0
	err = object.NewCommitPreorderIter(cb, nil, nil).ForEach(func(x *object.Commit) error {
		if x.Hash == ca.Hash {
			found = true
			return storer.ErrStop
		}
		if n++; n%ctxCheckEvery == 0 {
			return ctx.Err()
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("repo %s: is %s an ancestor of %s: %w", r.Name, short(a), short(b), err)
	}
	return found, nil
}

// Changed lists, sorted, the paths that differ between two fetched commits: added, modified
// and removed files, a rename as both its names. from "" lists every file of to, for a first
// sync. It lets a caller tell whether a commit touches an app when the webhook's list of
// changed files was cut short.
func (c *Cache) Changed(ctx context.Context, r Repo, from, to string) ([]string, error) {
	e, err := c.acquire(ctx, r)
	if err != nil {
		return nil, err
	}
	defer e.unlock()
	toTree, err := e.tree(r, to)
	if err != nil {
		return nil, err
	}
	var fromTree *object.Tree
	if from != "" {
		if fromTree, err = e.tree(r, from); err != nil {
			return nil, err
		}
	}
	changes, err := object.DiffTreeWithOptions(ctx, fromTree, toTree, nil)
	if err != nil {
		return nil, fmt.Errorf("repo %s: diff %s..%s: %w", r.Name, short(from), short(to), err)
	}
	out := []string{}
	for _, ch := range changes {
		for _, p := range []string{ch.From.Name, ch.To.Name} {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// tree reads the root tree of a fetched commit.
func (e *cached) tree(r Repo, sha string) (*object.Tree, error) {
	cm, err := e.commit(r, sha)
	if err != nil {
		return nil, err
	}
	t, err := cm.Tree()
	if err != nil {
		return nil, fmt.Errorf("repo %s: tree of %s: %w", r.Name, short(sha), err)
	}
	return t, nil
}

// short abbreviates a sha for messages.
func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
