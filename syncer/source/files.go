package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing/fstest"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

const (
	// MaxTreeBytes bounds what one commit's tree may hold in memory when it is read for
	// rendering; a repository of manifests is far smaller.
	MaxTreeBytes = 256 << 20
	// maxSymlinkHops bounds chains of symbolic links.
	maxSymlinkHops = 16
)

// ErrBadTree means the commit's tree cannot be rendered as it is: a path that escapes the
// repository, a symbolic link out of it, a missing app directory.
var ErrBadTree = errors.New("repository tree refused")

// Files returns the files of commit sha as a read-only file system rooted at the repository
// root, so that kustomize bases elsewhere in the repository resolve. dir, the app's path, must
// exist in the commit. Symbolic links are followed inside the repository; one that leads out
// of it is refused.
func (c *Cache) Files(ctx context.Context, r Repo, sha, dir string) (fs.FS, error) {
	e, err := c.open(r)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	commit, err := e.commit(sha)
	if err != nil {
		return nil, err
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of %s: %w", sha, err)
	}
	clean := path.Clean(strings.TrimPrefix(dir, "/"))
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, fmt.Errorf("path %q leaves the repository: %w", dir, ErrBadTree)
	}
	if clean != "." {
		if _, err := tree.Tree(clean); err != nil {
			return nil, fmt.Errorf("path %q is not a directory in commit %s: %w", clean, short(sha), ErrBadTree)
		}
	}
	out := fstest.MapFS{}
	var total int64
	mtime := commit.Committer.When
	err = tree.Files().ForEach(func(f *object.File) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := readEntry(tree, f, 0)
		if err != nil {
			return err
		}
		total += int64(len(data))
		if total > MaxTreeBytes {
			return fmt.Errorf("commit %s holds more than %d MiB of files: %w", short(sha), MaxTreeBytes>>20, ErrBadTree)
		}
		out[f.Name] = &fstest.MapFile{Data: data, Mode: 0o444, ModTime: mtime}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", short(sha), err)
	}
	if clean != "." {
		if _, ok := out[clean]; ok {
			return nil, fmt.Errorf("path %q is a file, not a directory: %w", clean, ErrBadTree)
		}
	}
	return out, nil
}

// readEntry returns a file's content, following symbolic links that stay in the repository.
func readEntry(tree *object.Tree, f *object.File, hops int) ([]byte, error) {
	if f.Mode == filemode.Submodule {
		return nil, nil
	}
	data, err := blob(f)
	if err != nil {
		return nil, err
	}
	if f.Mode != filemode.Symlink {
		return data, nil
	}
	if hops >= maxSymlinkHops {
		return nil, fmt.Errorf("symbolic link %s: too many hops: %w", f.Name, ErrBadTree)
	}
	target := string(data)
	if path.IsAbs(target) {
		return nil, fmt.Errorf("symbolic link %s points to an absolute path: %w", f.Name, ErrBadTree)
	}
	resolved := path.Join(path.Dir(f.Name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return nil, fmt.Errorf("symbolic link %s leaves the repository: %w", f.Name, ErrBadTree)
	}
	next, err := tree.File(resolved)
	if err != nil {
		return nil, fmt.Errorf("symbolic link %s points to %s, which is not a file in the commit: %w", f.Name, resolved, ErrBadTree)
	}
	return readEntry(tree, next, hops+1)
}

func blob(f *object.File) ([]byte, error) {
	rd, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name, err)
	}
	defer rd.Close()
	data, err := io.ReadAll(io.LimitReader(rd, MaxTreeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name, err)
	}
	return data, nil
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
