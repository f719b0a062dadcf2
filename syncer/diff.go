package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
)

// DiffResult is what applying a set of files as an app's path would do to its cluster, as a
// preview tells it: the diff (Secrets masked), counts and the objects with their action.
type DiffResult struct {
	Diff    string               `json:"diff"`
	Summary string               `json:"summary"`
	Counts  map[string]int       `json:"counts"`
	Objects []queue.ObjectRecord `json:"objects"`
}

// DiffError is a diff that failed, in a sync record's words: the stage, object, file and the
// renderer's or apiserver's message. Transient is true when trying again may help.
type DiffError struct {
	queue.RecordError
	Transient bool
}

func (e *DiffError) Error() string {
	var b strings.Builder
	if e.Stage != "" {
		b.WriteString(e.Stage + ": ")
	}
	if e.Object != "" {
		b.WriteString(e.Object + ": ")
	}
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ErrUnknownApp is returned by Diff for an app that is not configured.
var ErrUnknownApp = errors.New("no such app")

// Diff renders files as the app's path, the way a sync renders it (chart with the app's values,
// variables, SOPS with the app's keys), and dry-runs the result against the app's cluster, as a
// preview does. files holds the directory's content at its root. It writes nothing to the
// cluster and nothing to the sync records. A render or plan failure is a *DiffError.
func (s *Syncer) Diff(ctx context.Context, appName string, files fs.FS) (DiffResult, error) {
	app, ok := s.apps[appName]
	if !ok {
		return DiffResult{}, fmt.Errorf("app %q: %w", appName, ErrUnknownApp)
	}
	dir := path.Clean(strings.Trim(app.Path, "/"))
	tree := fs.FS(mounted{dir: dir, fsys: files})
	if dir == "." {
		tree = files
	}
	p, err := s.prepare(ctx, app, tree)
	if err != nil {
		return DiffResult{}, diffError(ctx, err)
	}
	objs, err := render.Render(p.files, app.Path, p.opts)
	if err != nil {
		return DiffResult{}, diffError(ctx, at(StageRender, err))
	}
	t, err := s.target(app)
	if err != nil {
		return DiffResult{}, diffError(ctx, at(StagePlan, err))
	}
	plan, err := t.Plan(ctx, s.applyApp(app), objs)
	if err != nil {
		return DiffResult{}, diffError(ctx, at(StagePlan, err))
	}
	counts, objects := planAccount(plan)
	return DiffResult{Diff: plan.Text(), Summary: plan.Summary(), Counts: counts, Objects: objects}, nil
}

// diffError classifies err as a sync's would be; an error of ctx's end stays as it is.
func diffError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	return &DiffError{RecordError: *describe(err), Transient: transient(err)}
}

// planAccount is a plan as records keep it: counts by action and each object's action.
func planAccount(plan *apply.Plan) (map[string]int, []queue.ObjectRecord) {
	counts := map[string]int{"changed": plan.Changed, "created": plan.Created, "unchanged": plan.Unchanged, "pruned": plan.Pruned}
	objects := make([]queue.ObjectRecord, 0, len(plan.Entries))
	for _, en := range plan.Entries {
		objects = append(objects, queue.ObjectRecord{Kind: en.ID.Kind, Namespace: en.ID.Namespace, Name: en.ID.Name, Action: string(en.Action)})
	}
	return counts, objects
}

// mounted shows fsys at dir: the parents of dir are directories holding only the next step
// towards it, and nothing else exists.
type mounted struct {
	dir  string
	fsys fs.FS
}

var _ fs.FS = mounted{}

func (m mounted) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == m.dir {
		f, err := m.fsys.Open(".")
		if err != nil {
			return nil, err
		}
		return &mountRoot{File: f, name: path.Base(m.dir)}, nil
	}
	if rel, ok := strings.CutPrefix(name, m.dir+"/"); ok {
		return m.fsys.Open(rel)
	}
	if name == "." {
		return &parentDir{name: ".", child: strings.SplitN(m.dir, "/", 2)[0]}, nil
	}
	if rest, ok := strings.CutPrefix(m.dir, name+"/"); ok {
		return &parentDir{name: path.Base(name), child: strings.SplitN(rest, "/", 2)[0]}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// mountRoot is the mounted tree's root, named as its place in the tree.
type mountRoot struct {
	fs.File
	name string
}

var _ fs.ReadDirFile = (*mountRoot)(nil)

func (r *mountRoot) Stat() (fs.FileInfo, error) {
	st, err := r.File.Stat()
	if err != nil {
		return nil, err
	}
	return renamedInfo{st, r.name}, nil
}

// ReadDir lists the root, which must be a directory.
func (r *mountRoot) ReadDir(n int) ([]fs.DirEntry, error) {
	d, ok := r.File.(fs.ReadDirFile)
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: r.name, Err: errors.New("not a directory")}
	}
	return d.ReadDir(n)
}

type renamedInfo struct {
	fs.FileInfo
	name string
}

func (i renamedInfo) Name() string { return i.name }

// parentDir is a directory on the way to a mounted tree, holding one directory.
type parentDir struct {
	name, child string
	read        bool
}

var _ fs.ReadDirFile = (*parentDir)(nil)

func (d *parentDir) Stat() (fs.FileInfo, error) { return dirInfo(d.name), nil }
func (d *parentDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: errors.New("is a directory")}
}
func (d *parentDir) Close() error { return nil }

func (d *parentDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if d.read {
		if n > 0 {
			return nil, io.EOF
		}
		return nil, nil
	}
	d.read = true
	return slices.Clip([]fs.DirEntry{fs.FileInfoToDirEntry(dirInfo(d.child))}), nil
}

// dirInfo describes a directory made up by mounted.
type dirInfo string

func (i dirInfo) Name() string       { return string(i) }
func (i dirInfo) Size() int64        { return 0 }
func (i dirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o555 }
func (i dirInfo) ModTime() time.Time { return time.Time{} }
func (i dirInfo) IsDir() bool        { return true }
func (i dirInfo) Sys() any           { return nil }
