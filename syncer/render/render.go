// Package render turns one app's directory of one commit into the Kubernetes objects Git declares.
//
// Three shapes are understood: a Helm chart (a directory holding a Chart.yaml, or a remote chart's
// archive fetched before the render), rendered with the Helm SDK's template engine and no release,
// cluster or network; a kustomization (built with kustomize's krusty, in memory, with no network,
// no plugins and no Helm); and a plain directory of YAML/JSON manifests. Rendering reads only the
// commit's own files (and a remote chart's archive, pinned by its reference): whatever the
// repository says is what gets applied, nothing fetched from elsewhere can change it.
package render

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// DefaultMaxFileSize bounds one manifest file. Manifests are text; a file larger than this is far more
// likely a mistake (a vendored binary, a dump) than something to apply, and reading it whole would
// only cost memory.
const DefaultMaxFileSize = 8 << 20

// Object is one rendered Kubernetes object and the repository file it came from, so an apply error
// can point the user at the line of Git they have to change.
type Object struct {
	*unstructured.Unstructured
	// File is the repository-relative path of the source file. For kustomize output it is the
	// resource file kustomize recorded as the origin, or the kustomization that generated the object.
	// For a chart it is the template's path (a remote chart's under its reference).
	File string
	// Hook is set on a Helm hook: an object applied in a stage of its own before or after the
	// app's other objects, and not kept with them. Nil for every other object.
	Hook *Hook
}

// Hook is what a Helm hook's annotations (helm.sh/hook, helm.sh/hook-weight,
// helm.sh/hook-delete-policy) ask of ferry. Test hooks and the delete and rollback events are
// dropped at render: ferry never uninstalls or rolls back a release.
type Hook struct {
	// Pre hooks (pre-install, pre-upgrade) run before the app's other objects are applied and
	// must become healthy first; the rest are post hooks (post-install, post-upgrade).
	Pre bool
	// Install and Upgrade say on which event the hook runs: install is an app's first sync
	// (its inventory is empty), upgrade every later sync that changes something.
	Install, Upgrade bool
	// Weight orders hooks of one phase, lowest first (helm.sh/hook-weight).
	Weight int
	// DeletePolicies are helm.sh/hook-delete-policy's values: before-hook-creation (the
	// default when none is given), hook-succeeded, hook-failed.
	DeletePolicies []string
}

// The hook delete policies Helm defines.
const (
	HookBeforeCreation = "before-hook-creation"
	HookSucceeded      = "hook-succeeded"
	HookFailed         = "hook-failed"
)

// Options tunes rendering. The zero value is usable; DefaultOptions documents the defaults.
type Options struct {
	// MaxFileSize is the largest manifest file read, in bytes; 0 means DefaultMaxFileSize.
	MaxFileSize int64
	// Limits bound what one render reads and produces; zero fields take the Max* defaults.
	Limits Limits
	// Variables are substituted in every object the render produces; nil substitutes nothing.
	Variables *Variables
	// Helm is how a chart is rendered: used when the app's directory holds a Chart.yaml or
	// Helm.Archive is set. Nil renders a chart with Helm's defaults: the release is named
	// after the chart, its namespace is empty and the capabilities are the SDK's. Values or
	// values files given for a directory that holds no chart are an error.
	Helm *Helm
}

// Helm is the rendering of one app's chart: Helm's template engine only, with no release,
// no cluster access and no network; a remote chart was fetched before the render.
type Helm struct {
	// ReleaseName is .Release.Name (the app's name unless configured). Every render is an
	// install to the templates: .Release.IsInstall is true, .Release.Revision 1 and
	// .Release.Service "ferry".
	ReleaseName string
	// Namespace is .Release.Namespace and the namespace of namespaced objects that name none.
	Namespace string
	// ValuesFiles are values files of the commit, merged in order over the chart's
	// values.yaml: relative to the app's directory ("../" allowed within the repository), or
	// to the repository root when they start with "/". Values are merged last.
	ValuesFiles []string
	Values      map[string]any
	// SkipCRDs leaves out the chart's crds/ directory (by default its CRDs are applied, in the
	// first stage, like every CRD).
	SkipCRDs bool
	// Archive is a remote chart's .tgz, fetched in the fetch stage; Ref names it in files and
	// errors (oci://registry/name:1.2.3). Nil: the chart is the app's directory in the commit.
	Archive []byte
	Ref     string
	// Capabilities are the target cluster's, as .Capabilities shows them to templates.
	Capabilities Capabilities
}

// Capabilities is what a chart may ask of the target cluster: read from its discovery.
type Capabilities struct {
	// KubeVersion is the apiserver's version, e.g. "v1.35.0".
	KubeVersion string
	// APIVersions lists the served group versions ("v1", "apps/v1", "policy/v1") and resources
	// by kind ("apps/v1/Deployment"), as .Capabilities.APIVersions.Has looks them up.
	APIVersions []string
}

// DefaultOptions returns the options ferry renders with.
func DefaultOptions() Options {
	return Options{MaxFileSize: DefaultMaxFileSize}
}

// ErrRefused marks a repository that asks for something ferry will not do while rendering (fetch a
// remote base, run a plugin, inflate a Helm chart, read outside the repository). Such an error is
// permanent: retrying the same commit cannot succeed.
var ErrRefused = errors.New("refused")

// RefusedError says which file asked for what, so the user knows which entry to remove.
type RefusedError struct {
	// File is the repository-relative kustomization (or directory) that made the request.
	File string
	// Entry names the offending field and value, e.g. `resources "github.com/x/y?ref=v1"`.
	Entry string
	// Reason explains the refusal.
	Reason string
}

// Error implements error.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.File, e.Entry, e.Reason)
}

// Is lets callers test errors.Is(err, ErrRefused).
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// kustomizationNames are the file names kustomize recognises, in its order of preference.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// Render returns the objects declared under dir in fsys, a commit's tree rooted at the repository
// root. The order is deterministic: source order for plain directories (files in lexical order,
// documents in file order), kustomize's resource order for kustomizations, for a Helm chart (dir
// holds a Chart.yaml, or opts.Helm.Archive is set) its CRDs and then its templates' objects in
// template path order. Two objects with the same
// group, kind, namespace and name are an error naming both files.
func Render(fsys fs.FS, dir string, opts Options) ([]Object, error) {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	clean, err := cleanDir(dir)
	if err != nil {
		return nil, err
	}
	var objs []Object
	b := newBudget(opts.Limits)
	if opts.Helm != nil && opts.Helm.Archive != nil {
		// A remote chart: the app's directory only holds values files, if anything.
		objs, err = renderChart(fsys, clean, opts, b)
		if err != nil {
			return nil, err
		}
		return objs, checkDuplicates(objs)
	}
	st, err := fs.Stat(fsys, clean)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("render %s: not a directory", dir)
	}
	switch kfile := findKustomization(fsys, clean); {
	case isChartDir(fsys, clean):
		objs, err = renderChart(fsys, clean, opts, b)
	case opts.Helm != nil && (len(opts.Helm.ValuesFiles) > 0 || len(opts.Helm.Values) > 0):
		return nil, fmt.Errorf("render %s: Helm values are set but the directory holds no %s", dir, chartFile)
	case kfile != "":
		objs, err = renderKustomization(fsys, clean, kfile, opts, b)
	default:
		objs, err = renderPlain(fsys, clean, opts, b)
	}
	if err != nil {
		return nil, err
	}
	if err := checkDuplicates(objs); err != nil {
		return nil, err
	}
	return objs, nil
}

// Inputs returns the repository paths, files and directories, that rendering dir reads: dir
// itself, and for a kustomization every kustomization directory and file it reaches, bases and
// components elsewhere in the repository included. A change under none of them cannot change
// what dir renders to, which is how a pull request or push that only touches a shared base is
// still seen to touch the apps built on it. A directory stands for everything under it, so the
// set may be larger than what kustomize reads, never smaller. For a chart they are the chart's
// directory (none for a remote chart, fixed by its reference) and its values files. An error is
// what Render would refuse (or fail to find) in the same tree.
func Inputs(fsys fs.FS, dir string, opts Options) ([]string, error) {
	clean, err := cleanDir(dir)
	if err != nil {
		return nil, err
	}
	if IsChart(fsys, clean, opts) {
		return chartInputs(fsys, clean, opts)
	}
	if findKustomization(fsys, clean) == "" {
		return []string{clean}, nil
	}
	in, err := walkKustomizations(fsys, clean, newBudget(Limits{}))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(in))
	for p := range in {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// Touched reports whether any of the changed repository paths lies in inputs (as returned by
// Inputs): equal to an input file or under an input directory.
func Touched(inputs, changed []string) bool {
	for _, in := range inputs {
		for _, p := range changed {
			p = strings.Trim(p, "/")
			if in == "." || p == in || strings.HasPrefix(p, in+"/") {
				return true
			}
		}
	}
	return false
}

// cleanDir normalises an app path to an fs.FS path and refuses anything that leaves the repository.
func cleanDir(dir string) (string, error) {
	d := strings.TrimSpace(dir)
	if d == "" || d == "/" {
		return ".", nil
	}
	if strings.HasPrefix(d, "/") {
		return "", &RefusedError{File: dir, Entry: "path", Reason: "absolute paths are refused: app paths are relative to the repository root"}
	}
	d = path.Clean(d)
	if d == ".." || strings.HasPrefix(d, "../") || !fs.ValidPath(d) {
		return "", &RefusedError{File: dir, Entry: "path", Reason: "path escapes the repository"}
	}
	return d, nil
}

// findKustomization returns the kustomization file in dir, or "" if there is none.
func findKustomization(fsys fs.FS, dir string) string {
	for _, n := range kustomizationNames {
		p := path.Join(dir, n)
		if st, err := fs.Stat(fsys, p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// ObjectID identifies an object the way the apiserver does for uniqueness: API group (not version),
// kind, namespace and name.
func ObjectID(u *unstructured.Unstructured) string {
	gvk := u.GroupVersionKind()
	return fmt.Sprintf("%s/%s/%s/%s", gvk.Group, gvk.Kind, u.GetNamespace(), u.GetName())
}

// checkDuplicates refuses two declarations of one object: applying both would make the cluster flip
// between them on every sync.
func checkDuplicates(objs []Object) error {
	seen := make(map[string]string, len(objs))
	for _, o := range objs {
		id := ObjectID(o.Unstructured)
		if first, ok := seen[id]; ok {
			return fmt.Errorf("duplicate object %s %s: declared in %s and in %s", o.GetKind(), describe(o.Unstructured), first, o.File)
		}
		seen[id] = o.File
	}
	return nil
}

// describe renders "namespace/name" or "name" for messages.
func describe(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return ns + "/" + u.GetName()
	}
	return u.GetName()
}
