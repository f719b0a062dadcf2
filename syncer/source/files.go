package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

const (
	// MaxTreeBytes bounds the file content read from one Files tree, that is, by one render,
	// counting every open (one blob at many paths, or a file opened twice, counts each time) and
	// also the distinct content held: an app's manifests are far smaller, and reading more is a
	// mistake or an attack. The rest of the commit is never read, so the repository itself may
	// be larger.
	MaxTreeBytes = 256 << 20
	// MaxTreeFiles bounds the files of one commit's tree, counting each copy that a link to
	// a directory makes, so that links cannot multiply a tree without bound.
	MaxTreeFiles = 100_000
	// maxSymlinkHops bounds the links followed to resolve one path, as the kernel's ELOOP does.
	maxSymlinkHops = 16
	// maxLinkTarget bounds a symbolic link's target; a longer one is not a path.
	maxLinkTarget = 4096
)

// Reasons a symbolic link is refused; they appear in ErrBadTree errors.
var (
	errLeaves   = errors.New("leaves the repository")
	errAbsolute = errors.New("points to an absolute path")
	errHops     = errors.New("too many levels of symbolic links")
	errLoop     = errors.New("makes a directory loop")
	errTooLarge = errors.New("too large")
)

// Files returns the regular files of commit sha as a read-only file system rooted at the
// repository root, so that kustomize bases elsewhere in the repository resolve. dir, the app's
// path, must be a directory of the commit (an error names it otherwise).
//
// Symbolic links are resolved inside the commit, to files and to directories; a link that
// leaves the repository, dangles or loops is refused: under dir, Files fails naming it;
// elsewhere the link is left out, and opening it gives that error, so one bad link does not
// break every app of the repository. Submodules are left out.
func (c *Cache) Files(ctx context.Context, r Repo, sha, dir string) (fs.FS, error) {
	clean, err := cleanDir(dir)
	if err != nil {
		return nil, fmt.Errorf("repo %s: %w", r.Name, err)
	}
	e, err := c.acquire(ctx, r)
	if err != nil {
		return nil, err
	}
	defer e.unlock()
	cm, err := e.commit(r, sha)
	if err != nil {
		return nil, err
	}
	tree, err := cm.Tree()
	if err != nil {
		return nil, fmt.Errorf("repo %s: tree of %s: %w", r.Name, short(sha), err)
	}
	// The tree reads a file's content when it is opened, after Files returns: it takes the
	// repository's lock again for each read, with the caller's context.
	tfs := newTreeFS(cm.Committer.When, func(h plumbing.Hash, limit int64) ([]byte, error) {
		if err := e.lock(ctx); err != nil {
			return nil, err
		}
		defer e.unlock()
		return readBlob(e.repo, h, limit)
	})
	b := &builder{ctx: ctx, repo: e.repo, tree: tfs, refused: tfs.refused}
	if err := b.load(tree); err != nil {
		return nil, fmt.Errorf("repo %s: read commit %s: %w", r.Name, short(sha), err)
	}
	if clean != "." {
		real, err := b.resolve(clean)
		if err != nil {
			return nil, fmt.Errorf("repo %s: app path %q in commit %s: %w (%w)", r.Name, clean, short(sha), err, ErrBadTree)
		}
		if !b.isDir(real) {
			return nil, fmt.Errorf("repo %s: app path %q in commit %s is not a directory: %w", r.Name, clean, short(sha), ErrBadTree)
		}
	}
	if err := b.expand("", "", nil); err != nil {
		return nil, fmt.Errorf("repo %s: read commit %s: %w", r.Name, short(sha), err)
	}
	var bad []string
	for p := range b.refused {
		if within(p, clean) {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return nil, fmt.Errorf("repo %s: commit %s, app path %q (%d refused): %w", r.Name, short(sha), clean, len(bad), b.refused[bad[0]])
	}
	return tfs, nil
}

// cleanDir turns an app path into an fs.FS path, refusing one that leaves the repository.
func cleanDir(dir string) (string, error) {
	if path.IsAbs(dir) || strings.ContainsAny(dir, "\\\x00") {
		return "", fmt.Errorf("app path %q must be relative to the repository root: %w", dir, ErrBadTree)
	}
	clean := path.Clean(dir)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("app path %q %w: %w", dir, errLeaves, ErrBadTree)
	}
	return clean, nil
}

// within reports whether p is dir or under it; "." and "" hold everything.
func within(p, dir string) bool {
	return dir == "." || dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// builder lays out a commit's tree as a treeFS.
type builder struct {
	ctx      context.Context
	repo     *git.Repository
	entries  map[string]object.TreeEntry // real path → entry; the root "" has none
	children map[string][]string         // real directory → its entries' names
	tree     *treeFS
	refused  map[string]error
	files    int // laid out, counting each copy a link to a directory makes
}

// load indexes every entry of the tree by path; git's own rules refuse names such as ".." and
// ".git" while walking.
func (b *builder) load(tree *object.Tree) error {
	b.entries, b.children = map[string]object.TreeEntry{}, map[string][]string{}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, entry, err := w.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("walk tree: %w (%w)", err, ErrBadTree)
		}
		if len(b.entries) >= MaxTreeFiles {
			return fmt.Errorf("more than %d entries: %w", MaxTreeFiles, ErrBadTree)
		}
		if len(b.entries)%ctxCheckEvery == 0 {
			if err := b.ctx.Err(); err != nil {
				return err
			}
		}
		b.entries[name] = entry
		parent := path.Dir(name)
		if parent == "." {
			parent = ""
		}
		b.children[parent] = append(b.children[parent], path.Base(name))
	}
}

func (b *builder) isDir(real string) bool {
	return real == "" || b.entries[real].Mode == filemode.Dir
}

// resolve follows symbolic links in every component of p, as the kernel would in a checkout,
// and returns the real path it ends at. A link's target is relative to the directory that
// holds the link.
func (b *builder) resolve(p string) (string, error) {
	var cur []string
	rest := strings.Split(p, "/")
	hops := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", errLeaves
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := join(strings.Join(cur, "/"), name)
		entry, ok := b.entries[next]
		if !ok {
			return "", fmt.Errorf("%s does not exist in the commit", next)
		}
		if entry.Mode == filemode.Symlink {
			if hops++; hops > maxSymlinkHops {
				return "", errHops
			}
			target, err := b.readLink(entry.Hash)
			if err != nil {
				return "", err
			}
			if path.IsAbs(target) {
				return "", errAbsolute
			}
			rest = append(strings.Split(target, "/"), rest...)
			continue
		}
		if entry.Mode != filemode.Dir && slices.ContainsFunc(rest, func(s string) bool { return s != "" }) {
			return "", fmt.Errorf("%s is not a directory", next)
		}
		cur = append(cur, name)
	}
	return strings.Join(cur, "/"), nil
}

// expand adds the files of the real directory realDir under the path shown. stack holds the
// directories that links are being expanded into, to refuse a link back into one of them.
func (b *builder) expand(realDir, shown string, stack []string) error {
	for _, name := range b.children[realDir] {
		real, at := join(realDir, name), join(shown, name)
		entry := b.entries[real]
		switch entry.Mode {
		case filemode.Dir:
			if err := b.expand(real, at, stack); err != nil {
				return err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			if err := b.add(at, entry.Hash); err != nil {
				return err
			}
		case filemode.Symlink:
			if err := b.link(real, at, stack); err != nil {
				return err
			}
		}
	}
	return nil
}

// link adds what the link at real points to under at, or records why it is refused.
func (b *builder) link(real, at string, stack []string) error {
	target, err := b.resolve(real)
	if err != nil {
		b.refuse(at, real, err)
		return nil
	}
	if b.isDir(target) {
		if within(real, target) || slices.ContainsFunc(stack, func(d string) bool { return within(d, target) }) {
			b.refuse(at, real, errLoop)
			return nil
		}
		return b.expand(target, at, append(slices.Clip(stack), target))
	}
	switch entry := b.entries[target]; entry.Mode {
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		return b.add(at, entry.Hash)
	}
	return nil // a link to a submodule: left out like the submodule
}

func (b *builder) refuse(at, real string, reason error) {
	target := ""
	if entry, ok := b.entries[real]; ok {
		target, _ = b.readLink(entry.Hash)
	}
	b.refused[at] = fmt.Errorf("symbolic link %s -> %s %w (%w)", at, target, reason, ErrBadTree)
}

// add lays out a file of the file system; its content is read when it is opened.
func (b *builder) add(at string, h plumbing.Hash) error {
	if b.files >= MaxTreeFiles {
		return fmt.Errorf("more than %d files, counting links to directories: %w", MaxTreeFiles, ErrBadTree)
	}
	if b.files%ctxCheckEvery == 0 {
		if err := b.ctx.Err(); err != nil {
			return err
		}
	}
	b.files++
	b.tree.addFile(at, h)
	return nil
}

// readBlob reads an object's content, failing past limit bytes. The caller holds the
// repository's lock.
func readBlob(repo *git.Repository, h plumbing.Hash, limit int64) ([]byte, error) {
	obj, err := repo.BlobObject(h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if obj.Size > limit {
		return nil, fmt.Errorf("blob %s: %w", h, errTooLarge)
	}
	rd, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	defer rd.Close()
	data, err := io.ReadAll(io.LimitReader(rd, obj.Size))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	return data, nil
}

// readLink reads a symbolic link's target.
func (b *builder) readLink(h plumbing.Hash) (string, error) {
	data, err := readBlob(b.repo, h, maxLinkTarget)
	if err != nil {
		return "", err
	}
	return string(data), nil
}
