package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// builtinAPIVersion is the apiVersion of kustomize's built-in generator and transformer configs.
const builtinAPIVersion = "builtin"

// helmKind is the built-in generator that runs the helm binary; it is refused like a plugin.
const helmKind = "HelmChartInflationGenerator"

// functionAnnotations mark a generator or transformer config as a KRM function (a container or an
// executable), which ferry never runs.
var functionAnnotations = []string{"config.kubernetes.io/function", "config.k8s.io/function"}

// fieldEntries is one kustomization field and its entries, in file order.
type fieldEntries struct {
	field   string
	entries []string
}

// kustChecker walks every kustomization reachable from the app's directory.
type kustChecker struct {
	fsys    fs.FS
	budget  *budget
	visited map[string]bool
	// inputs collects the kustomization directories and the files the walk reaches.
	inputs map[string]bool
}

// walkKustomizations refuses, before kustomize runs, everything that would reach outside the
// commit or run code: remote resources, bases and components, URLs in file fields, paths leaving the
// repository, Helm charts, and generators/transformers/validators that are not kustomize builtins.
// kustomize itself is also run with plugins disabled; this check exists to say precisely which entry
// of which file is the problem, and to stop kustomize from trying a git clone for a missing base.
//
// It returns the inputs it reached. What it reads is admitted (aliases bounded) and charged to b
// before it is parsed.
func walkKustomizations(fsys fs.FS, dir string, b *budget) (map[string]bool, error) {
	c := &kustChecker{fsys: fsys, budget: b, visited: map[string]bool{}, inputs: map[string]bool{}}
	return c.inputs, c.check(dir, false)
}

// check validates the kustomization in dir. configsOnly is set when the kustomization is itself a
// source of generator/transformer configs, so its resources are checked as plugin configs too.
func (c *kustChecker) check(dir string, configsOnly bool) error {
	key := fmt.Sprintf("%s|%t", dir, configsOnly)
	if c.visited[key] {
		return nil
	}
	c.visited[key] = true
	c.inputs[dir] = true
	kfile := findKustomization(c.fsys, dir)
	if kfile == "" {
		return &RefusedError{File: dir, Entry: "directory", Reason: "referenced as a kustomization but has no kustomization.yaml"}
	}
	data, err := c.read(kfile)
	if err != nil {
		return fmt.Errorf("%s: %w", kfile, err)
	}
	var k types.Kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		return fmt.Errorf("%s: invalid kustomization: %w", kfile, err)
	}
	refuse := func(entry, reason string) error { return &RefusedError{File: kfile, Entry: entry, Reason: reason} }

	if len(k.HelmCharts) > 0 {
		return refuse(fmt.Sprintf("helmCharts %q", k.HelmCharts[0].Name), "kustomize's Helm inflation runs the helm binary, which ferry does not: make the chart an app of its own (a path holding its Chart.yaml, or helm.chart)")
	}
	if k.HelmGlobals != nil {
		return refuse("helmGlobals", "kustomize's Helm inflation runs the helm binary, which ferry does not: make the chart an app of its own")
	}
	if len(k.HelmChartInflationGenerator) > 0 {
		return refuse(fmt.Sprintf("helmChartInflationGenerator %q", k.HelmChartInflationGenerator[0].ChartName), "kustomize's Helm inflation runs the helm binary, which ferry does not: make the chart an app of its own")
	}

	for _, f := range []fieldEntries{{"resources", k.Resources}, {"bases", k.Bases}, {"components", k.Components}} {
		field := f.field
		for _, e := range f.entries {
			if err := c.resource(kfile, dir, field, e, configsOnly); err != nil {
				return err
			}
		}
	}
	for _, f := range []fieldEntries{{"generators", k.Generators}, {"transformers", k.Transformers}, {"validators", k.Validators}} {
		field := f.field
		for _, e := range f.entries {
			if err := c.pluginEntry(kfile, dir, field, e); err != nil {
				return err
			}
		}
	}

	var files []fieldEntries
	add := func(field string, e ...string) { files = append(files, fieldEntries{field, e}) }
	add("crds", k.Crds...)
	add("configurations", k.Configurations...)
	add("openapi.path", k.OpenAPI["path"])
	for _, p := range k.Patches {
		add("patches.path", p.Path)
	}
	for _, p := range k.PatchesJson6902 {
		add("patchesJson6902.path", p.Path)
	}
	for _, r := range k.Replacements {
		add("replacements.path", r.Path)
	}
	for _, p := range k.PatchesStrategicMerge {
		if s := string(p); !strings.Contains(s, "\n") && !strings.Contains(s, ": ") {
			add("patchesStrategicMerge", s)
		}
	}
	gen := func(field string, kv types.KvPairSources) {
		for _, f := range kv.FileSources {
			if i := strings.Index(f, "="); i >= 0 {
				f = f[i+1:]
			}
			add(field+".files", f)
		}
		add(field+".envs", kv.EnvSources...)
		add(field+".env", kv.EnvSource)
	}
	for _, g := range k.ConfigMapGenerator {
		gen("configMapGenerator", g.KvPairSources)
	}
	for _, g := range k.SecretGenerator {
		gen("secretGenerator", g.KvPairSources)
	}
	for _, f := range files {
		field := f.field
		for _, e := range f.entries {
			if e == "" {
				continue
			}
			if isRemote(e) {
				return refuse(fmt.Sprintf("%s %q", field, e), "remote files are refused: ferry renders only the commit's own files")
			}
			p, ok := joinRepo(dir, e)
			if !ok {
				return refuse(fmt.Sprintf("%s %q", field, e), "path escapes the repository")
			}
			c.inputs[p] = true
		}
	}
	return nil
}

// resource checks one resources/bases/components entry, recursing into directories.
func (c *kustChecker) resource(kfile, dir, field, e string, configsOnly bool) error {
	entry := fmt.Sprintf("%s %q", field, e)
	if isRemote(e) {
		return &RefusedError{File: kfile, Entry: entry, Reason: "remote bases and resources are refused: ferry renders only the commit's own files"}
	}
	p, ok := joinRepo(dir, e)
	if !ok {
		return &RefusedError{File: kfile, Entry: entry, Reason: "path escapes the repository"}
	}
	st, err := fs.Stat(c.fsys, p)
	if err != nil {
		// kustomize would take a missing local path for a remote one and try git: stop here.
		return &RefusedError{File: kfile, Entry: entry, Reason: "not found in the repository (ferry does not fetch remote bases)"}
	}
	if st.IsDir() {
		return c.check(p, configsOnly)
	}
	c.inputs[p] = true
	if configsOnly {
		return c.configFile(kfile, entry, p)
	}
	return nil
}

// pluginEntry checks one generators/transformers/validators entry: a file of configs, a
// kustomization producing configs, or an inline config.
func (c *kustChecker) pluginEntry(kfile, dir, field, e string) error {
	entry := fmt.Sprintf("%s %q", field, firstLine(e))
	if strings.Contains(strings.TrimSpace(e), "\n") {
		return checkConfigs(kfile, entry, []byte(e))
	}
	if isRemote(e) {
		return &RefusedError{File: kfile, Entry: entry, Reason: "remote configs are refused: ferry renders only the commit's own files"}
	}
	p, ok := joinRepo(dir, e)
	if !ok {
		return &RefusedError{File: kfile, Entry: entry, Reason: "path escapes the repository"}
	}
	st, err := fs.Stat(c.fsys, p)
	if err != nil {
		return checkConfigs(kfile, entry, []byte(e))
	}
	if st.IsDir() {
		return c.check(p, true)
	}
	c.inputs[p] = true
	return c.configFile(kfile, entry, p)
}

// configFile checks every document of a generator/transformer config file.
func (c *kustChecker) configFile(kfile, entry, p string) error {
	data, err := c.read(p)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", kfile, entry, err)
	}
	return checkConfigs(kfile, entry, data)
}

// read reads a file of the commit, at most DefaultMaxFileSize bytes, and admits it to the budget.
func (c *kustChecker) read(p string) ([]byte, error) {
	data, err := readLimited(c.fsys, p, DefaultMaxFileSize)
	if err != nil {
		return nil, err
	}
	if err := c.budget.admit(p, data); err != nil {
		return nil, err
	}
	return data, nil
}

// checkConfigs refuses any config that is not a kustomize builtin, or that is Helm.
func checkConfigs(kfile, entry string, data []byte) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %s: %w", kfile, entry, err)
		}
		var cfg struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &cfg); err != nil {
			return fmt.Errorf("%s: %s: invalid config: %w", kfile, entry, err)
		}
		if cfg.APIVersion == "" && cfg.Kind == "" {
			continue
		}
		for _, a := range functionAnnotations {
			if _, ok := cfg.Metadata.Annotations[a]; ok {
				return &RefusedError{File: kfile, Entry: entry, Reason: fmt.Sprintf("KRM function %s/%s refused: ferry does not run containers or executables while rendering", cfg.APIVersion, cfg.Kind)}
			}
		}
		if cfg.Kind == helmKind {
			return &RefusedError{File: kfile, Entry: entry, Reason: "kustomize's Helm inflation runs the helm binary, which ferry does not: make the chart an app of its own"}
		}
		if cfg.APIVersion != builtinAPIVersion {
			return &RefusedError{File: kfile, Entry: entry, Reason: fmt.Sprintf("plugin %s/%s refused: only kustomize's builtin generators and transformers are allowed", cfg.APIVersion, cfg.Kind)}
		}
	}
}

// firstLine shortens an inline config for an error message.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
