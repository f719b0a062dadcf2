package render

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// originAnnotation is where kustomize records which file a resource came from when the
// kustomization's buildMetadata asks for originAnnotations.
const originAnnotation = "config.kubernetes.io/origin"

// renderKustomization builds the kustomization in dir. Before the build, every kustomization
// reachable from dir is checked (see walkKustomizations) so that remote bases, plugins and Helm
// are refused with a message naming the entry, instead of kustomize trying the network or failing
// obscurely. What that walk reached (the kustomization directories and the files they name) is
// copied into an in-memory filesystem mounted at "/", so kustomize cannot read anything but the
// commit's files, and a render reads its app's part of a monorepo, not all of it. Should the build
// fail, it runs once more on a copy of the whole commit, in case kustomize wanted a file the walk
// did not foresee; not when it went past a bound, which the retry could only go past again.
// Both builds and the walk share the render's budget b.
func renderKustomization(fsys fs.FS, dir, kfile string, opts Options, b *budget) ([]Object, error) {
	inputs, err := walkKustomizations(fsys, dir, b)
	if err != nil {
		return nil, err
	}
	objs, err := buildKustomization(fsys, inputs, dir, kfile, opts, b)
	if err == nil || errors.Is(err, ErrBound) {
		return objs, err
	}
	// A broken kustomization fails both ways; its first error is the one to report (the whole
	// commit may also exceed what one render may read).
	if all, err2 := buildKustomization(fsys, nil, dir, kfile, opts, b); err2 == nil {
		return all, nil
	}
	return nil, err
}

// buildKustomization runs kustomize on a copy of the inputs, or of the whole commit when inputs
// is nil. The copy, every file kustomize reads from it and what it produces are charged to b.
func buildKustomization(fsys fs.FS, inputs map[string]bool, dir, kfile string, opts Options, b *budget) ([]Object, error) {
	copied, err := memoryCopy(fsys, inputs, opts, b)
	if err != nil {
		return nil, err
	}
	mem := guardedFS{FileSystem: copied, budget: b}
	userWantsOrigin, err := requestOrigins(mem, kfile)
	if err != nil {
		return nil, err
	}
	kopts := krusty.MakeDefaultOptions()
	// The whole filesystem is the repository, so no restriction is needed for containment; the
	// default (root only) would refuse common layouts such as a patch file in ../common.
	kopts.LoadRestrictions = types.LoadRestrictionsNone
	kopts.PluginConfig = types.DisabledPluginConfig()
	kopts.Reorder = krusty.ReorderOptionNone
	m, err := krusty.MakeKustomizer(kopts).Run(mem, "/"+dir)
	if b.exceeded != nil {
		return nil, b.exceeded // it names the file kustomize was reading
	}
	if err != nil {
		return nil, fmt.Errorf("%s: kustomize build: %w", kfile, err)
	}
	if err := b.produce(kfile, m.Size()); err != nil {
		return nil, err
	}
	objs := make([]Object, 0, m.Size())
	for i, r := range m.Resources() {
		// Through JSON rather than r.Map(): kustomize's maps hold Go ints, which unstructured objects
		// cannot deep-copy; utiljson yields int64.
		j, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: kustomize output %d: %w", kfile, i+1, err)
		}
		if err := b.charge(kfile, int64(len(j))); err != nil {
			return nil, err
		}
		var om map[string]any
		if err := utiljson.Unmarshal(j, &om); err != nil {
			return nil, fmt.Errorf("%s: kustomize output %d: %w", kfile, i+1, err)
		}
		u := &unstructured.Unstructured{Object: om}
		file := originFile(u, dir, kfile, !userWantsOrigin)
		if err := validObject(u); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		objs = append(objs, Object{Unstructured: u, File: file})
	}
	return objs, nil
}

// memoryCopy copies regular files of the commit into an in-memory kustomize filesystem: everything
// under each input directory and each input file, or every file when inputs is nil. YAML and
// JSON files have opts.Variables substituted on the way. The bytes copied are charged to b.
func memoryCopy(fsys fs.FS, inputs map[string]bool, opts Options, b *budget) (filesys.FileSystem, error) {
	mem := filesys.MakeFsInMemory()
	roots := []string{"."}
	if inputs != nil {
		roots = slices.Sorted(maps.Keys(inputs))
	}
	copied := map[string]bool{}
	for _, root := range roots {
		err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == root && errors.Is(err, fs.ErrNotExist) {
					return nil // a file the kustomization names but the commit lacks: kustomize says so
				}
				return fmt.Errorf("render: read repository: %w", err)
			}
			if copied[p] {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			copied[p] = true
			if d.IsDir() {
				if p != "." {
					return mem.MkdirAll("/" + p)
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			data, err := readLimited(fsys, p, opts.MaxFileSize)
			if err != nil {
				return err
			}
			switch ext := strings.ToLower(path.Ext(p)); ext {
			case ".yaml", ".yml", ".json":
				if data, err = opts.Variables.substitute(p, data, ext == ".json"); err != nil {
					return err
				}
			}
			if err := b.charge(p, int64(len(data))); err != nil {
				return err
			}
			if parent := path.Dir(p); parent != "." {
				if err := mem.MkdirAll("/" + parent); err != nil {
					return err
				}
			}
			return mem.WriteFile("/"+p, data)
		})
		if err != nil {
			return nil, err
		}
	}
	return mem, nil
}

// requestOrigins makes kustomize annotate each resource with its source file by adding
// originAnnotations to the top kustomization's buildMetadata in the in-memory copy. It reports
// whether the user had asked for the annotation themselves, in which case it is kept on the objects.
func requestOrigins(mem filesys.FileSystem, kfile string) (bool, error) {
	data, err := mem.ReadFile("/" + kfile)
	if err != nil {
		return false, fmt.Errorf("%s: %w", kfile, err)
	}
	var k map[string]any
	if err := yaml.Unmarshal(data, &k); err != nil {
		return false, fmt.Errorf("%s: invalid kustomization: %w", kfile, err)
	}
	if k == nil {
		k = map[string]any{}
	}
	bm, _ := k["buildMetadata"].([]any)
	for _, v := range bm {
		if v == types.OriginAnnotations {
			return true, nil
		}
	}
	k["buildMetadata"] = append(bm, types.OriginAnnotations)
	out, err := yaml.Marshal(k)
	if err != nil {
		return false, fmt.Errorf("%s: %w", kfile, err)
	}
	return false, mem.WriteFile("/"+kfile, out)
}

// originFile reads the origin annotation into a repository-relative file name, removing the
// annotation when ferry added it. Generated objects point at the kustomization that generated them.
func originFile(u *unstructured.Unstructured, dir, kfile string, strip bool) string {
	ann := u.GetAnnotations()
	raw, ok := ann[originAnnotation]
	if !ok {
		return kfile
	}
	if strip {
		delete(ann, originAnnotation)
		if len(ann) == 0 {
			unstructured.RemoveNestedField(u.Object, "metadata", "annotations")
		} else {
			u.SetAnnotations(ann)
		}
	}
	var o struct {
		Path         string `json:"path"`
		ConfiguredIn string `json:"configuredIn"`
		Repo         string `json:"repo"`
	}
	if err := yaml.Unmarshal([]byte(raw), &o); err != nil || o.Repo != "" {
		return kfile
	}
	switch {
	case o.Path != "":
		return path.Join(dir, o.Path)
	case o.ConfiguredIn != "":
		return path.Join(dir, o.ConfiguredIn)
	}
	return kfile
}

// isRemote reports whether a kustomization entry names something outside the repository: a URL,
// a git address, or a go-getter style reference. Any of these would make kustomize use the network.
func isRemote(entry string) bool {
	e := strings.TrimSpace(entry)
	if strings.Contains(e, "://") || strings.HasPrefix(e, "git@") || strings.HasPrefix(e, "git::") {
		return true
	}
	for _, q := range []string{"?ref=", "?version=", "?timeout=", "?submodules=", "&ref="} {
		if strings.Contains(e, q) {
			return true
		}
	}
	for _, host := range []string{"github.com/", "gitlab.com/", "bitbucket.org/", "dev.azure.com/", "ssh.dev.azure.com/"} {
		if strings.HasPrefix(e, host) {
			return true
		}
	}
	return false
}

// joinRepo resolves entry relative to the directory kdir, reporting false if it leaves the repo.
func joinRepo(kdir, entry string) (string, bool) {
	if path.IsAbs(entry) {
		return "", false
	}
	p := path.Join(kdir, entry)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}
