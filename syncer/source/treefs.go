package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// treeFS is one commit's files as an fs.FS, laid out when Files builds it and read lazily: a
// file's content is read from the cache only when it is opened, and kept for the next open. A
// render reads its app's directory and the bases it names, not the whole repository, so a
// monorepo costs what its app costs. Opening a link the commit refused says why it is missing
// instead of just saying it does not exist.
type treeFS struct {
	nodes   map[string]*treeNode // "." is the root
	refused map[string]error
	mtime   time.Time
	// read reads a blob of at most limit bytes from the cache, under the repository's lock.
	read func(h plumbing.Hash, limit int64) ([]byte, error)

	mu    sync.Mutex
	blobs map[plumbing.Hash][]byte
	// cached is the distinct content read from the cache; served is what opens handed out,
	// each open counted, so that one blob at many paths costs what reading it many times costs.
	// Both are bounded by MaxTreeBytes.
	cached, served int64
}

// treeNode is a directory (its entries' names, sorted) or a file (its blob).
type treeNode struct {
	dir      bool
	children []string
	hash     plumbing.Hash
}

var _ fs.FS = (*treeFS)(nil)

func newTreeFS(mtime time.Time, read func(plumbing.Hash, int64) ([]byte, error)) *treeFS {
	return &treeFS{
		nodes: map[string]*treeNode{".": {dir: true}}, refused: map[string]error{}, mtime: mtime,
		read: read, blobs: map[plumbing.Hash][]byte{},
	}
}

// addFile lays out a file at name (its parent directories too); it reads nothing.
func (t *treeFS) addFile(name string, h plumbing.Hash) {
	t.nodes[name] = &treeNode{hash: h}
	for child := name; child != "."; {
		parent := path.Dir(child)
		p, ok := t.nodes[parent]
		if !ok {
			p = &treeNode{dir: true}
			t.nodes[parent] = p
		}
		base := path.Base(child)
		i, found := slices.BinarySearch(p.children, base)
		if found {
			return // the parent and its ancestors are laid out already
		}
		p.children = slices.Insert(p.children, i, base)
		if ok {
			return
		}
		child = parent
	}
}

// content returns a blob's bytes, reading it once. serve counts them as handed out by an open.
func (t *treeFS) content(name string, h plumbing.Hash, serve bool) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	data, ok := t.blobs[h]
	if !ok {
		var err error
		data, err = t.read(h, MaxTreeBytes-t.cached)
		if errors.Is(err, errTooLarge) {
			return nil, t.tooMuch(name)
		} else if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		t.blobs[h] = data
		t.cached += int64(len(data))
	}
	if serve {
		if t.served+int64(len(data)) > MaxTreeBytes {
			return nil, t.tooMuch(name)
		}
		t.served += int64(len(data))
	}
	return data, nil
}

// tooMuch is the error of a read past MaxTreeBytes.
func (t *treeFS) tooMuch(name string) error {
	return fmt.Errorf("reading %s: the files read for one render exceed MaxTreeBytes (%d MiB, each read counted): %w", name, MaxTreeBytes>>20, ErrBadTree)
}

// Open opens a file or directory of the commit.
func (t *treeFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	for p := name; p != "."; p = path.Dir(p) {
		if err, ok := t.refused[p]; ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
	n, ok := t.nodes[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if n.dir {
		return &treeDir{t: t, name: name, node: n}, nil
	}
	data, err := t.content(name, n.hash, true)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &treeFile{info: t.info(name, n, int64(len(data))), r: bytes.NewReader(data)}, nil
}

func (t *treeFS) info(name string, n *treeNode, size int64) treeInfo {
	return treeInfo{name: path.Base(name), dir: n.dir, size: size, mtime: t.mtime}
}

// treeFile is an open file of the tree.
type treeFile struct {
	info treeInfo
	r    *bytes.Reader
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *treeFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *treeFile) Close() error               { return nil }

// Seek and ReadAt let readers that want them avoid a copy.
func (f *treeFile) Seek(offset int64, whence int) (int64, error) { return f.r.Seek(offset, whence) }
func (f *treeFile) ReadAt(p []byte, off int64) (int, error)      { return f.r.ReadAt(p, off) }

// treeDir is an open directory of the tree.
type treeDir struct {
	t    *treeFS
	name string
	node *treeNode
	off  int
}

func (d *treeDir) Stat() (fs.FileInfo, error) { return d.t.info(d.name, d.node, 0), nil }
func (d *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: fs.ErrInvalid}
}
func (d *treeDir) Close() error { return nil }

// ReadDir lists the directory in name order, as fs.ReadDirFile asks.
func (d *treeDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.node.children[d.off:]
	if n > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if n > 0 && len(rest) > n {
		rest = rest[:n]
	}
	out := make([]fs.DirEntry, len(rest))
	for i, base := range rest {
		full := path.Join(d.name, base)
		out[i] = treeEntry{t: d.t, name: full, node: d.t.nodes[full]}
	}
	d.off += len(rest)
	return out, nil
}

// treeEntry is a directory entry; its Info reads a file's content only when asked, for the size.
type treeEntry struct {
	t    *treeFS
	name string
	node *treeNode
}

func (e treeEntry) Name() string { return path.Base(e.name) }
func (e treeEntry) IsDir() bool  { return e.node.dir }
func (e treeEntry) Type() fs.FileMode {
	if e.node.dir {
		return fs.ModeDir
	}
	return 0
}

func (e treeEntry) Info() (fs.FileInfo, error) {
	if e.node.dir {
		return e.t.info(e.name, e.node, 0), nil
	}
	data, err := e.t.content(e.name, e.node.hash, false)
	if err != nil {
		return nil, err
	}
	return e.t.info(e.name, e.node, int64(len(data))), nil
}

// treeInfo describes a file (read-only) or directory of the tree.
type treeInfo struct {
	name  string
	dir   bool
	size  int64
	mtime time.Time
}

func (i treeInfo) Name() string       { return i.name }
func (i treeInfo) Size() int64        { return i.size }
func (i treeInfo) ModTime() time.Time { return i.mtime }
func (i treeInfo) IsDir() bool        { return i.dir }
func (i treeInfo) Sys() any           { return nil }
func (i treeInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
