package source

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// cacheRefPrefix is where fetched refs land in the cache. Keeping them apart from refs/heads
// means the cache never looks like a checkout, and their commits serve as "haves" so the next
// fetch only transfers what is new.
const cacheRefPrefix = "refs/ferry/"

// remoteConfig describes the remote without storing it in the cache's config: the URL comes
// from ferry's config on every call, so a changed URL needs no migration.
func remoteConfig(url string) *config.RemoteConfig {
	return &config.RemoteConfig{Name: "origin", URLs: []string{url}}
}

// parseSHA accepts a full hexadecimal commit id only: an abbreviated one could be ambiguous and
// could not be looked up without a fetch.
func parseSHA(sha string) (plumbing.Hash, error) {
	if !plumbing.IsHash(sha) {
		return plumbing.ZeroHash, permanent(fmt.Errorf("%q is not a full commit sha", sha))
	}
	return plumbing.NewHash(sha), nil
}

// refSpecs maps the refs a job names to forced refspecs into the cache's own namespace; none
// means every branch.
func refSpecs(refs []string) ([]config.RefSpec, error) {
	var specs []config.RefSpec
	for _, ref := range refs {
		if ref == "" {
			continue
		}
		full := ref
		if !strings.HasPrefix(full, "refs/") {
			full = "refs/heads/" + ref
		}
		if strings.ContainsAny(full, "*:^~?[\\ ") || strings.Contains(full, "..") || strings.HasSuffix(full, "/") {
			return nil, permanent(fmt.Errorf("%q is not a ref name", ref))
		}
		spec := config.RefSpec("+" + full + ":" + cacheRefPrefix + strings.TrimPrefix(full, "refs/"))
		if err := spec.Validate(); err != nil {
			return nil, permanent(fmt.Errorf("%q is not a ref name: %w", ref, err))
		}
		specs = append(specs, spec)
	}
	if len(specs) == 0 {
		specs = []config.RefSpec{"+refs/heads/*:" + cacheRefPrefix + "heads/*"}
	}
	return specs, nil
}

// destinations lists the cache refs that specs without wildcards write.
func destinations(specs []config.RefSpec) []plumbing.ReferenceName {
	var out []plumbing.ReferenceName
	for _, s := range specs {
		if !s.IsWildcard() {
			out = append(out, s.Dst(plumbing.ReferenceName(s.Src())))
		}
	}
	return out
}

// fetch fetches specs from rem. A ref the remote lacks (a closed pull request) is not an
// error: the commit check after it says whether what was wanted arrived. go-git aborts the
// whole fetch when one of several refs is missing, so then the refs are fetched one by one.
func fetch(ctx context.Context, rem *git.Remote, auth transport.AuthMethod, specs []config.RefSpec) error {
	err := fetchOnce(ctx, rem, auth, specs)
	if !errors.Is(err, git.NoMatchingRefSpecError{}) || len(specs) == 1 {
		return err
	}
	for _, spec := range specs {
		if err := fetchOnce(ctx, rem, auth, []config.RefSpec{spec}); err != nil && !errors.Is(err, git.NoMatchingRefSpecError{}) {
			return err
		}
	}
	return nil
}

// fetchOnce runs one fetch, counting "nothing new" and an empty remote as success.
func fetchOnce(ctx context.Context, rem *git.Remote, auth transport.AuthMethod, specs []config.RefSpec) error {
	err := rem.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Auth: auth, Tags: git.NoTags, Force: true})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate), errors.Is(err, transport.ErrEmptyRemoteRepository):
		return nil
	case len(specs) == 1 && errors.Is(err, git.NoMatchingRefSpecError{}):
		return nil
	}
	return err
}

// Head resolves a branch on the remote with one ref listing and no fetch: the cheap question
// a poller asks every few minutes. branch may also be a tag name (an annotated tag resolves to
// its commit) or a full ref name. A ref the remote lacks gives an error wrapping ErrRefNotFound.
func (c *Cache) Head(ctx context.Context, r Repo, branch string) (string, error) {
	if branch == "" {
		return "", permanent(fmt.Errorf("head of %s: no branch named", r.Name))
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var list []*plumbing.Reference
	err := withAuth(ctx, r, func(remoteURL string, auth transport.AuthMethod) error {
		rem := git.NewRemote(memory.NewStorage(), remoteConfig(remoteURL))
		var err error
		list, err = rem.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return nil
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("list refs of %s: %w", r.Name, err)
	}
	want := []string{branch}
	if !strings.HasPrefix(branch, "refs/") {
		want = []string{"refs/heads/" + branch, "refs/tags/" + branch + "^{}", "refs/tags/" + branch}
	} else if strings.HasPrefix(branch, "refs/tags/") {
		want = []string{branch + "^{}", branch}
	}
	for _, w := range want {
		for _, ref := range list {
			if ref.Name().String() == w && ref.Type() == plumbing.HashReference {
				return ref.Hash().String(), nil
			}
		}
	}
	return "", fmt.Errorf("repo %s has no ref %q: %w", r.Name, branch, ErrRefNotFound)
}
