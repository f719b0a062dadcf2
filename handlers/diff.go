package handlers

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/syncer"
	"github.com/go-chi/chi/v5"
)

const (
	// MaxDiffArchive bounds the body of a diff request: a gzip-compressed tar of an app's
	// directory. Manifests compress well; a directory needing more is not an app's path.
	MaxDiffArchive = 8 << 20
	// MaxDiffBytes bounds the files of a diff archive once decompressed, counted while the
	// archive is read, so that an archive that inflates without end (a "zip bomb") is refused
	// after MaxDiffBytes, not after it was held.
	MaxDiffBytes = 64 << 20
	// MaxDiffFiles bounds the entries (files and directories) of a diff archive.
	MaxDiffFiles = 10_000
	// MaxDiffPath bounds the name of one entry of a diff archive, in bytes.
	MaxDiffPath = 1024
	// MaxConcurrentDiffs bounds the diffs one replica renders and dry-runs at once; more are
	// answered 503 with Retry-After before their archive is read.
	MaxConcurrentDiffs = 4
	// diffRetryAfter is the Retry-After, in seconds, of a diff refused as busy.
	diffRetryAfter = 10
)

// Differ renders files as an app's path and dry-runs them against its cluster (the syncer).
type Differ interface {
	Diff(ctx context.Context, app string, files fs.FS) (syncer.DiffResult, error)
}

var _ Differ = (*syncer.Syncer)(nil)

// Diff serves POST /api/v1/apps/{app}/diff: the body is a gzip-compressed tar of a directory,
// rendered as the app's path and dry-run against its cluster; the answer is the diff a preview
// would show. It takes the write API's token, as a manual sync does.
type Diff struct {
	auth   *Resync
	differ Differ
	slots  chan struct{}
	log    *slog.Logger
}

// NewDiff builds the handler; auth is the manual sync handler, whose apps it knows.
func NewDiff(auth *Resync, d Differ, log *slog.Logger) (*Diff, error) {
	if auth == nil || d == nil {
		return nil, errors.New("diff needs the resync handler and a differ")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Diff{auth: auth, differ: d, slots: make(chan struct{}, MaxConcurrentDiffs), log: log}, nil
}

// errArchive is an archive refused for what it holds (400); errArchiveSize one past a bound (413).
var (
	errArchive     = errors.New("bad archive")
	errArchiveSize = errors.New("archive too large")
)

// ServeHTTP answers 401 without a valid token, 404 for an unknown app, 400 for an archive that
// is not a gzip-compressed tar of regular files with relative names, 413 past a bound, 422 with
// the stage, object, file and message when the render or dry-run fails, 503 when busy or when the
// cluster cannot be reached, and 200 with {"diff", "summary", "counts", "objects"} otherwise.
func (d *Diff) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	who, ok := Caller(req.Context())
	if !ok {
		unauthorized(w)
		return
	}
	name := chi.URLParam(req, "app")
	if _, ok := d.auth.apps[name]; !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no app named %q", truncateName(name))})
		return
	}
	select {
	case d.slots <- struct{}{}:
		defer func() { <-d.slots }()
	default:
		w.Header().Set("Retry-After", fmt.Sprint(diffRetryAfter))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "too many diffs at once; try again later"})
		return
	}
	if req.ContentLength > MaxDiffArchive {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("the archive is larger than %d bytes", MaxDiffArchive)})
		return
	}
	files, err := readArchive(http.MaxBytesReader(w, req.Body, MaxDiffArchive))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("the archive is larger than %d bytes", MaxDiffArchive)})
		case errors.Is(err, errArchiveSize):
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		}
		return
	}
	res, err := d.differ.Diff(req.Context(), name, files)
	var de *syncer.DiffError
	switch {
	case err == nil:
		d.log.Info("diff", "app", name, "summary", res.Summary, "by", who.Name, "via", who.Via)
		writeJSON(w, http.StatusOK, res)
	case errors.As(err, &de):
		code := http.StatusUnprocessableEntity
		if de.Transient {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]string{"error": de.Message, "stage": de.Stage, "object": de.Object, "file": de.File})
	case errors.Is(err, syncer.ErrUnknownApp):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no app named %q", truncateName(name))})
	default:
		d.log.Warn("diff failed", "app", name, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the diff could not be made; try again"})
	}
}

// readArchive reads a gzip-compressed tar into memory, refusing while it reads anything past
// the bounds (MaxDiffBytes, MaxDiffFiles, MaxDiffPath), names that are absolute or climb out
// with "..", and entries other than files and directories (links, devices).
func readArchive(r io.Reader) (fs.FS, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, passBodyError(err, fmt.Errorf("%w: the body must be a gzip-compressed tar: %v", errArchive, err))
	}
	tr := tar.NewReader(zr)
	m := newMemFS()
	var total int64
	entries := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, passBodyError(err, fmt.Errorf("%w: %v", errArchive, err))
		}
		if entries++; entries > MaxDiffFiles {
			return nil, fmt.Errorf("%w: more than %d entries", errArchiveSize, MaxDiffFiles)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := m.mkdir(name); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			if hdr.Size > MaxDiffBytes-total {
				return nil, fmt.Errorf("%w: the files hold more than %d bytes uncompressed", errArchiveSize, MaxDiffBytes)
			}
			data, err := io.ReadAll(io.LimitReader(tr, MaxDiffBytes-total+1))
			if err != nil {
				return nil, passBodyError(err, fmt.Errorf("%w: %s: %v", errArchive, name, err))
			}
			if total += int64(len(data)); total > MaxDiffBytes {
				return nil, fmt.Errorf("%w: the files hold more than %d bytes uncompressed", errArchiveSize, MaxDiffBytes)
			}
			if err := m.add(name, data); err != nil {
				return nil, err
			}
		case tar.TypeSymlink, tar.TypeLink:
			return nil, fmt.Errorf("%w: %s is a link; send the file it names instead", errArchive, name)
		default:
			return nil, fmt.Errorf("%w: %s is not a regular file or a directory", errArchive, name)
		}
	}
}

// passBodyError keeps a request body's own error (too large) and otherwise returns bad.
func passBodyError(err, bad error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return bad
}

// entryName checks and cleans an archive entry's name: relative, without "..", within MaxDiffPath.
func entryName(raw string) (string, error) {
	if len(raw) > MaxDiffPath {
		return "", fmt.Errorf("%w: an entry's name is longer than %d bytes", errArchive, MaxDiffPath)
	}
	shown := truncateName(raw)
	if strings.HasPrefix(raw, "/") || strings.Contains(raw, "\\") || strings.ContainsRune(raw, 0) {
		return "", fmt.Errorf("%w: %q is not a relative path", errArchive, shown)
	}
	for _, part := range strings.Split(raw, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q leaves the directory", errArchive, shown)
		}
	}
	name := path.Clean(raw)
	if !fs.ValidPath(name) {
		return "", fmt.Errorf("%w: %q is not a valid path", errArchive, shown)
	}
	return name, nil
}

// memFS is a read-only tree of files held in memory; "." is the root.
type memFS struct {
	nodes map[string]*memNode
}

// memNode is a file (data) or a directory (its children's names).
type memNode struct {
	dir      bool
	data     []byte
	children []string
}

var _ fs.FS = (*memFS)(nil)

func newMemFS() *memFS { return &memFS{nodes: map[string]*memNode{".": {dir: true}}} }

func (m *memFS) mkdir(name string) error {
	if name == "." {
		return nil
	}
	if n, ok := m.nodes[name]; ok {
		if !n.dir {
			return fmt.Errorf("%w: %s is both a file and a directory", errArchive, name)
		}
		return nil
	}
	if err := m.mkdir(path.Dir(name)); err != nil {
		return err
	}
	m.nodes[name] = &memNode{dir: true}
	parent := m.nodes[path.Dir(name)]
	parent.children = append(parent.children, path.Base(name))
	return nil
}

func (m *memFS) add(name string, data []byte) error {
	if name == "." {
		return fmt.Errorf("%w: a file has no name", errArchive)
	}
	if _, ok := m.nodes[name]; ok {
		return fmt.Errorf("%w: %s appears twice", errArchive, name)
	}
	if err := m.mkdir(path.Dir(name)); err != nil {
		return err
	}
	m.nodes[name] = &memNode{data: data}
	parent := m.nodes[path.Dir(name)]
	parent.children = append(parent.children, path.Base(name))
	return nil
}

// Open opens a file or a directory of the tree.
func (m *memFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	n, ok := m.nodes[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	info := memInfo{name: path.Base(name), node: n}
	if !n.dir {
		return &memFile{info: info, r: bytes.NewReader(n.data)}, nil
	}
	names := append([]string(nil), n.children...)
	sort.Strings(names)
	entries := make([]fs.DirEntry, 0, len(names))
	for _, c := range names {
		entries = append(entries, fs.FileInfoToDirEntry(memInfo{name: c, node: m.nodes[path.Join(name, c)]}))
	}
	return &memDir{info: info, entries: entries}, nil
}

type memInfo struct {
	name string
	node *memNode
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return int64(len(i.node.data)) }
func (i memInfo) Mode() fs.FileMode {
	if i.node.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.node.dir }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	info memInfo
	r    *bytes.Reader
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *memFile) Close() error               { return nil }

type memDir struct {
	info    memInfo
	entries []fs.DirEntry
	off     int
}

var _ fs.ReadDirFile = (*memDir)(nil)

func (d *memDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}
func (d *memDir) Close() error { return nil }

// ReadDir lists the directory's entries in order, as fs.ReadDirFile asks.
func (d *memDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return rest[:n], nil
}
