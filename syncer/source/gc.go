package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// DefaultPreviewRefTTL is how long the cache keeps a ref fetched for a preview (a pull or merge
// request's head) after its last fetch when Options.PreviewRefTTL is zero: far longer than one
// preview takes, so a preview never loses its commit while it renders. After it, the ref is
// dropped and the objects only it reached are deleted, so the cache holds the branches' history
// plus the previews of the last PreviewRefTTL, each at most MaxFetchBytes.
const DefaultPreviewRefTTL = 30 * time.Minute

// previewRef reports whether a cache ref was fetched for a preview: everything the cache holds
// that is not a branch or a tag (refs/ferry/pull/7/head, refs/ferry/merge-requests/7/head).
func previewRef(name plumbing.ReferenceName) bool {
	n := name.String()
	return strings.HasPrefix(n, cacheRefPrefix) &&
		!strings.HasPrefix(n, cacheRefPrefix+"heads/") && !strings.HasPrefix(n, cacheRefPrefix+"tags/")
}

// touch records that commit h and the preview refs among the cache refs dsts were just asked
// for, so they are kept for another PreviewRefTTL: a job fetches, then reads the commit.
func (e *cached) touch(now time.Time, h plumbing.Hash, dsts []plumbing.ReferenceName) {
	e.wanted[h] = now
	for _, d := range dsts {
		if previewRef(d) {
			e.used[d] = now
		}
	}
}

// collect runs cached.collect and logs what it did; a failure costs only disk.
func (c *Cache) collect(ctx context.Context, e *cached, r Repo) {
	n, err := e.collect(ctx, c.opts.Now(), c.opts.PreviewRefTTL)
	if err != nil {
		c.opts.Logger.Warn("git cache: previews not collected", "repo", r.Name, "err", err)
	} else if n > 0 {
		c.opts.Logger.Debug("git cache: previews collected", "repo", r.Name, "refs", n)
	}
}

// collect drops the preview refs not used for ttl (or not used since this process started) and
// deletes the packs and loose objects that nothing left reaches: not the remaining refs, nor the
// commits asked for within ttl. The caller holds the lock.
func (e *cached) collect(ctx context.Context, now time.Time, ttl time.Duration) (dropped int, err error) {
	for h, at := range e.wanted {
		if now.Sub(at) >= ttl {
			delete(e.wanted, h)
		}
	}
	iter, err := e.repo.Storer.IterReferences()
	if err != nil {
		return 0, fmt.Errorf("list cache refs: %w", err)
	}
	var expired []plumbing.ReferenceName
	var roots []plumbing.Hash
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference {
			return nil
		}
		if used, ok := e.used[ref.Name()]; previewRef(ref.Name()) && (!ok || now.Sub(used) >= ttl) {
			expired = append(expired, ref.Name())
			return nil
		}
		roots = append(roots, ref.Hash())
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list cache refs: %w", err)
	}
	if len(expired) == 0 {
		return 0, nil
	}
	for _, name := range expired {
		if err := e.repo.Storer.RemoveReference(name); err != nil {
			return 0, fmt.Errorf("drop %s: %w", name, err)
		}
		delete(e.used, name)
	}
	for h := range e.wanted {
		if _, err := e.repo.CommitObject(h); err == nil {
			roots = append(roots, h)
		}
	}
	live, err := reachable(ctx, e.repo, roots)
	if err != nil {
		return len(expired), err
	}
	return len(expired), e.deleteUnreachable(live)
}

// reachable returns every object the roots reach: tags, commits and their history, trees, blobs.
func reachable(ctx context.Context, repo *git.Repository, roots []plumbing.Hash) (map[plumbing.Hash]bool, error) {
	seen := map[plumbing.Hash]bool{}
	var commits []plumbing.Hash
	for _, h := range roots {
		for {
			tag, err := repo.TagObject(h)
			if err != nil {
				break
			}
			seen[h] = true
			h = tag.Target
		}
		commits = append(commits, h)
	}
	var walkTree func(h plumbing.Hash) error
	walkTree = func(h plumbing.Hash) error {
		if seen[h] {
			return nil
		}
		seen[h] = true
		t, err := repo.TreeObject(h)
		if err != nil {
			return fmt.Errorf("tree %s: %w", h, err)
		}
		for _, entry := range t.Entries {
			switch entry.Mode {
			case filemode.Dir:
				if err := walkTree(entry.Hash); err != nil {
					return err
				}
			case filemode.Submodule:
			default:
				seen[entry.Hash] = true
			}
		}
		return nil
	}
	for n := 0; len(commits) > 0; n++ {
		h := commits[len(commits)-1]
		commits = commits[:len(commits)-1]
		if seen[h] {
			continue
		}
		if n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		c, err := repo.CommitObject(h)
		if err != nil {
			// A ref to a blob or a tree, or a commit missing from a broken cache: keep what it names.
			seen[h] = true
			continue
		}
		seen[h] = true
		if err := walkTree(c.TreeHash); err != nil {
			return nil, err
		}
		commits = append(commits, c.ParentHashes...)
	}
	return seen, nil
}

// deleteUnreachable deletes the packs none of whose objects is live and the loose objects that
// are not, then opens the repository again, as go-git's storage keeps the packs' indexes it read.
func (e *cached) deleteUnreachable(live map[plumbing.Hash]bool) error {
	pos, ok := e.repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return errors.New("the cache storage cannot list its packs")
	}
	packs, err := pos.ObjectPacks()
	if err != nil {
		return fmt.Errorf("list packs: %w", err)
	}
	var dead []plumbing.Hash
	for _, p := range packs {
		used, err := packUsed(filepath.Join(e.dir, "objects", "pack", "pack-"+p.String()+".idx"), live)
		if err != nil {
			return err
		}
		if !used {
			dead = append(dead, p)
		}
	}
	if los, ok := e.repo.Storer.(storer.LooseObjectStorer); ok {
		var loose []plumbing.Hash
		if err := los.ForEachObjectHash(func(h plumbing.Hash) error {
			if !live[h] {
				loose = append(loose, h)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("list loose objects: %w", err)
		}
		for _, h := range loose {
			if err := los.DeleteLooseObject(h); err != nil {
				return fmt.Errorf("delete object %s: %w", h, err)
			}
		}
	}
	if len(dead) == 0 {
		return nil
	}
	// Close the pack files go-git keeps open, so their space is given back when they are deleted;
	// whatever happens next, the repository is opened again.
	if c, ok := e.repo.Storer.(io.Closer); ok {
		_ = c.Close()
	}
	var errs []error
	for _, p := range dead {
		if err := pos.DeleteOldObjectPackAndIndex(p, time.Time{}); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete pack %s: %w", p, err))
			break
		}
	}
	repo, err := openRepo(e.dir)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("open the cache again: %w", err))...)
	}
	e.repo = repo
	return errors.Join(errs...)
}

// packUsed reports whether any object of the pack whose index is at idxPath is live.
func packUsed(idxPath string, live map[plumbing.Hash]bool) (bool, error) {
	f, err := os.Open(idxPath)
	if err != nil {
		return true, fmt.Errorf("read pack index: %w", err)
	}
	defer f.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(f).Decode(idx); err != nil {
		return true, fmt.Errorf("read pack index %s: %w", filepath.Base(idxPath), err)
	}
	entries, err := idx.Entries()
	if err != nil {
		return true, fmt.Errorf("read pack index %s: %w", filepath.Base(idxPath), err)
	}
	defer entries.Close()
	for {
		entry, err := entries.Next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return true, fmt.Errorf("read pack index %s: %w", filepath.Base(idxPath), err)
		}
		if live[entry.Hash] {
			return true, nil
		}
	}
}
