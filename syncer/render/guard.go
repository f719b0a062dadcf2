package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The bounds of one render. Rendering is the one step that runs on what a pull request author
// wrote, so what it may cost is bounded by what it reads and what it produces, whatever the
// shape of the input: YAML aliases (a "billion laughs" file of a few hundred bytes expands to
// GiBs), one file read many times (a blob at many paths, a base reached through many overlays)
// and many objects.
const (
	// MaxAliasNodes bounds the YAML nodes that aliases add to one file once expanded. Anchors
	// that share a list of environment variables or a merge key between a few containers add
	// hundreds; past this, aliases are a bomb, not a convenience.
	MaxAliasNodes = 10_000
	// MaxAliasBytes bounds the scalar bytes that aliases add to one file once expanded: a large
	// anchor repeated a few hundred times costs as much as a bomb of many small nodes.
	MaxAliasBytes = 1 << 20
	// MaxRenderBytes bounds the bytes one render reads and parses: every file copied for
	// kustomize and every file parsed (by kustomize, by ferry's checks, or as a plain manifest),
	// each time it is read (a base reached through two overlays counts twice), with YAML aliases
	// counted expanded. The memory a render takes is a small multiple of it.
	MaxRenderBytes = 64 << 20
	// MaxRenderObjects bounds the objects one render produces.
	MaxRenderObjects = 10_000
	// MaxRenderNodes bounds the YAML nodes one render parses, estimated before parsing from the
	// marks that start a node (newlines, commas, colons, brackets, "- ") plus what aliases add.
	// Parsers hold hundreds of bytes per node (kustomize over a KiB), so a few MiB of dense
	// YAML ("[1,1,1,…]") would cost GiBs; real manifests have one mark per ~30 bytes (the
	// prometheus-operator bundle, 4 MiB, counts 130,000).
	MaxRenderNodes = 250_000
)

// ErrBound marks a render that went past one of its bounds. Such an error is permanent: the same
// commit renders the same way every time.
var ErrBound = errors.New("render bound exceeded")

// BoundError names the file and the bound it went past, so the author knows what to change.
type BoundError struct {
	// File is the repository-relative file (or the app directory) being read when the bound was
	// reached.
	File string
	// Bound names the constant, e.g. "MaxAliasNodes".
	Bound string
	// Limit is the bound's value, in the unit the message gives.
	Limit int64
	// What says what was counted, e.g. "YAML nodes added by aliases".
	What string
}

// Error implements error.
func (e *BoundError) Error() string {
	return fmt.Sprintf("%s: over %s (%d): %s", e.File, e.Bound, e.Limit, e.What)
}

// Is lets callers test errors.Is(err, ErrBound).
func (e *BoundError) Is(target error) bool { return target == ErrBound }

// Limits are the bounds of one render that a server may raise for repositories it trusts with
// larger stacks (a zero field takes its Max* default). The alias bounds stay fixed: aliases past
// them are an attack, not a large stack.
type Limits struct {
	// Bytes bounds what one render reads and parses (MaxRenderBytes).
	Bytes int64
	// Nodes bounds the YAML nodes one render parses (MaxRenderNodes).
	Nodes int64
	// Objects bounds the objects one render produces (MaxRenderObjects).
	Objects int
}

// withDefaults fills the zero fields of l with the Max* defaults.
func (l Limits) withDefaults() Limits {
	if l.Bytes <= 0 {
		l.Bytes = MaxRenderBytes
	}
	if l.Nodes <= 0 {
		l.Nodes = MaxRenderNodes
	}
	if l.Objects <= 0 {
		l.Objects = MaxRenderObjects
	}
	return l
}

// budget is what one render may still read; it is shared by every read of the render, its
// checks, the kustomize build and a retry of the build on the whole commit.
type budget struct {
	lim     Limits
	read    int64
	nodes   int64
	objects int
	// exceeded is the first bound gone past: kustomize flattens the errors of the files it
	// reads into text, so the render takes the typed error from here.
	exceeded error
}

// fail records the first bound gone past and returns err.
func (b *budget) fail(err error) error {
	var be *BoundError
	if b.exceeded == nil && errors.As(err, &be) {
		b.exceeded = err
	}
	return err
}

// charge counts n bytes read from file against MaxRenderBytes.
func (b *budget) charge(file string, n int64) error {
	b.read += n
	if b.read > b.lim.Bytes {
		return b.fail(&BoundError{File: file, Bound: "MaxRenderBytes", Limit: b.lim.Bytes, What: "bytes read by one render (each read counted, aliases expanded)"})
	}
	return nil
}

// produce counts n more objects against MaxRenderObjects.
func (b *budget) produce(file string, n int) error {
	b.objects += n
	if b.objects > b.lim.Objects {
		return b.fail(&BoundError{File: file, Bound: "MaxRenderObjects", Limit: int64(b.lim.Objects), What: "objects produced by one render"})
	}
	return nil
}

// admit checks the content of file before anything parses it: its YAML aliases must stay within
// MaxAliasNodes and MaxAliasBytes, and its size, aliases expanded, is charged to the budget.
func (b *budget) admit(file string, data []byte) error {
	added, err := aliasCost(file, data)
	if err != nil {
		return b.fail(err)
	}
	b.nodes += nodeMarks(data) + added.nodes
	if b.nodes > b.lim.Nodes {
		return b.fail(&BoundError{File: file, Bound: "MaxRenderNodes", Limit: b.lim.Nodes, What: "YAML nodes parsed by one render (estimated, each read counted)"})
	}
	return b.charge(file, int64(len(data))+added.bytes)
}

// nodeMarks counts what may start a YAML node: a node follows a newline, a comma, a colon, an
// opening bracket or brace, or a "- ". It may count more than the nodes (a colon in prose), never
// much fewer.
func nodeMarks(data []byte) int64 {
	var n int64
	for i, c := range data {
		switch c {
		case '\n', ',', ':', '[', '{':
			n++
		case '-':
			if i+1 < len(data) && (data[i+1] == ' ' || data[i+1] == '\n') {
				n++
			}
		}
	}
	return n
}

// aliasCost parses data as YAML documents, without expanding aliases, and returns the nodes and
// scalar bytes its aliases add once expanded, refusing a file past MaxAliasNodes or MaxAliasBytes or an
// alias that contains itself. A file without both '&' and '*' has no anchor or no alias and is
// not parsed. Content that is not YAML (a generator's input file) costs nothing more: whatever
// parses it as YAML fails.
func aliasCost(file string, data []byte) (expansion, error) {
	if !bytes.Contains(data, []byte("*")) || !bytes.Contains(data, []byte("&")) {
		return expansion{}, nil
	}
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var total expansion
	for {
		var doc yamlv3.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			break // not YAML past this point: the parser that reads it says so
		}
		s := &sizer{memo: map[*yamlv3.Node]expansion{}, active: map[*yamlv3.Node]bool{}}
		full, err := s.size(&doc)
		if err != nil {
			return expansion{}, fmt.Errorf("%s: %w", file, err)
		}
		total.nodes = satAdd(total.nodes, full.nodes-s.written.nodes)
		total.bytes = satAdd(total.bytes, full.bytes-s.written.bytes)
		if total.nodes > MaxAliasNodes {
			return expansion{}, &BoundError{File: file, Bound: "MaxAliasNodes", Limit: MaxAliasNodes, What: "YAML nodes added by aliases"}
		}
		if total.bytes > MaxAliasBytes {
			return expansion{}, &BoundError{File: file, Bound: "MaxAliasBytes", Limit: MaxAliasBytes, What: "YAML bytes added by aliases"}
		}
	}
	return total, nil
}

// expansion is the size of a YAML node once its aliases are expanded.
type expansion struct{ nodes, bytes int64 }

// sizer measures a document's expanded size in time linear in its written size: each node is
// measured once, and an alias costs what its anchor costs.
type sizer struct {
	memo    map[*yamlv3.Node]expansion
	active  map[*yamlv3.Node]bool
	written expansion // the nodes as written, each once
}

// errAliasLoop is a YAML alias inside the node it names, which expands for ever.
var errAliasLoop = errors.New("a YAML alias refers to a node that contains it")

func (s *sizer) size(n *yamlv3.Node) (expansion, error) {
	if e, ok := s.memo[n]; ok {
		return e, nil
	}
	if s.active[n] {
		return expansion{}, errAliasLoop
	}
	s.active[n] = true
	defer delete(s.active, n)
	var e expansion
	if n.Kind == yamlv3.AliasNode {
		if n.Alias == nil {
			return expansion{}, nil
		}
		sub, err := s.size(n.Alias)
		if err != nil {
			return expansion{}, err
		}
		e = sub
	} else {
		e = expansion{nodes: 1, bytes: int64(len(n.Value))}
		s.written.nodes++
		s.written.bytes += int64(len(n.Value))
		for _, c := range n.Content {
			sub, err := s.size(c)
			if err != nil {
				return expansion{}, err
			}
			e.nodes, e.bytes = satAdd(e.nodes, sub.nodes), satAdd(e.bytes, sub.bytes)
		}
	}
	s.memo[n] = e
	return e, nil
}

// satAdd adds without overflowing: a bomb's expanded size may not fit in an int64.
func satAdd(a, b int64) int64 {
	const top = 1 << 62
	if a > top-b {
		return top
	}
	return a + b
}

// guardedFS is the file system kustomize builds from: every file kustomize reads goes through the
// budget's admit, before kustomize parses it, whichever field named it (resources, patches,
// generator inputs, the kustomizations themselves).
type guardedFS struct {
	filesys.FileSystem
	budget *budget
}

// ReadFile reads a file and admits it.
func (g guardedFS) ReadFile(p string) ([]byte, error) {
	data, err := g.FileSystem.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if err := g.budget.admit(repoPath(p), data); err != nil {
		return nil, err
	}
	return data, nil
}

// Open admits a file before handing it out; kustomize reads through ReadFile, this keeps any
// other way in under the same check.
func (g guardedFS) Open(p string) (filesys.File, error) {
	if !g.FileSystem.IsDir(p) {
		if _, err := g.ReadFile(p); err != nil {
			return nil, err
		}
	}
	return g.FileSystem.Open(p)
}

// repoPath turns a path of the in-memory copy ("/apps/x.yaml") into a repository path.
func repoPath(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	if p == "" {
		return "."
	}
	return p
}

// newBudget is the budget of one render within lim (zero fields: the defaults).
func newBudget(lim Limits) *budget { return &budget{lim: lim.withDefaults()} }
