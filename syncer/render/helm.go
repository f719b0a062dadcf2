package render

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/yaml"
)

// ReleaseService is .Release.Service in ferry's renders (helm install says "Helm"): a chart
// that labels its objects app.kubernetes.io/managed-by with it tells who applies them.
const ReleaseService = "ferry"

// MaxTemplateRange bounds the lists `until` and `untilStep` build and the copies `repeat`
// makes in one call. A template renders in one go, before any of its output is counted, so
// these are the amplifiers that could otherwise build gigabytes out of one short line; charts
// iterate over a few replicas or ports.
const MaxTemplateRange = 10_000

// renderChart renders the Helm chart of dir (or opts.Helm.Archive) with the SDK's loader and
// template engine, with no release, cluster or network, and turns the output into objects
// through the same bounded parsing as plain manifests. CRDs from crds/ come first, then the
// templates' objects in template path order; hooks carry their Hook.
func renderChart(fsys fs.FS, dir string, opts Options, b *budget) (objs []Object, err error) {
	var h Helm
	if opts.Helm != nil {
		h = *opts.Helm
	}
	where := dir
	if h.Archive != nil {
		where = archiveRef(h)
	}
	defer func() {
		// The SDK is not written for hostile input; a panic in it is this chart's failure.
		if r := recover(); r != nil {
			objs, err = nil, fmt.Errorf("render chart %s: %v", where, r)
		}
	}()
	var lc *loadedChart
	if h.Archive != nil {
		lc, err = loadChartArchive(h.Archive, where, b)
	} else {
		lc, err = loadChartDir(fsys, dir, opts, b)
	}
	if err != nil {
		return nil, err
	}
	c := lc.chart
	vals, err := chartValues(fsys, dir, h, opts, b)
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(h.Capabilities)
	if err != nil {
		return nil, err
	}
	chartYAML := under(where, chartFile)
	if kv := c.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("%s: the chart requires Kubernetes %s and the cluster runs %s", chartYAML, kv, caps.KubeVersion.String())
	}
	if err := checkVendored(c, vals, where); err != nil {
		return nil, err
	}
	if err := chartutil.ProcessDependencies(c, vals); err != nil {
		return nil, fmt.Errorf("%s: dependencies: %w", chartYAML, err)
	}
	release := common.ReleaseOptions{Name: h.ReleaseName, Namespace: h.Namespace, Revision: 1, IsInstall: true}
	if release.Name == "" {
		release.Name = c.Name()
	}
	top, err := util.ToRenderValuesWithSchemaValidation(c, vals, release, caps, true)
	if err != nil {
		return nil, fmt.Errorf("chart %s: values: %w", where, err)
	}
	if err := validateSchemas(c, top["Values"], lc); err != nil {
		return nil, err
	}
	if rel, ok := top["Release"].(map[string]any); ok {
		rel["Service"] = ReleaseService
	}
	origin := map[string]string{}
	lc.templatePaths(c, origin)
	// No client is given to the engine, so `lookup` finds nothing and the context is unused.
	eng := engine.Engine{CustomTemplateFuncs: boundedFuncs()}
	rendered, err := eng.RenderWithContext(context.Background(), c, top)
	if err != nil {
		return nil, templateError(where, origin, err)
	}
	if !h.SkipCRDs {
		for _, crd := range c.CRDObjects() {
			file := lc.origin[crd.File]
			got, err := decodeFile(file, crd.File.Data, strings.EqualFold(path.Ext(file), ".json"))
			if err != nil {
				return nil, err
			}
			if err := b.produce(file, len(got)); err != nil {
				return nil, err
			}
			objs = append(objs, got...)
		}
	}
	keys := make([]string, 0, len(rendered))
	for k := range rendered {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out := rendered[k]
		if path.Base(k) == "NOTES.txt" || strings.TrimSpace(out) == "" {
			continue
		}
		file, ok := origin[k]
		if !ok {
			file = under(where, k)
		}
		data, err := opts.Variables.substitute(file, []byte(out), false)
		if err != nil {
			return nil, err
		}
		if err := b.admit(file, data); err != nil {
			return nil, err
		}
		got, err := decodeFile(file, data, false)
		if err != nil {
			return nil, err
		}
		kept := got[:0]
		for _, o := range got {
			hook, keep, err := hookOf(o)
			if err != nil {
				return nil, err
			}
			if keep {
				o.Hook = hook
				kept = append(kept, o)
			}
		}
		if err := b.produce(file, len(kept)); err != nil {
			return nil, err
		}
		objs = append(objs, kept...)
	}
	return objs, nil
}

// IsChart reports whether dir, rendered with opts, is a Helm chart: a remote one (its archive, or
// only its reference before it is fetched), or a Chart.yaml in dir. A caller that prepares what
// only a chart needs (the cluster's capabilities) asks it before rendering.
func IsChart(fsys fs.FS, dir string, opts Options) bool {
	return (opts.Helm != nil && (opts.Helm.Archive != nil || opts.Helm.Ref != "")) || isChartDir(fsys, dir)
}

// chartInputs are what a chart app's render reads from the commit: the app's directory (the
// chart, or where a remote chart's values live) and the values files.
func chartInputs(fsys fs.FS, dir string, opts Options) ([]string, error) {
	in := []string{dir}
	if opts.Helm != nil {
		for _, f := range opts.Helm.ValuesFiles {
			p, err := valuesPath(dir, f)
			if err != nil {
				return nil, err
			}
			in = append(in, p)
		}
	}
	slices.Sort(in)
	return slices.Compact(in), nil
}

// checkVendored refuses a chart that declares an enabled dependency missing from its charts/
// directory: rendering offline cannot fetch it, and leaving it out would apply a different
// stack than the chart describes. A dependency its condition or tags disable may be missing
// (charts in their source repository often declare optional ones vendored only at release).
func checkVendored(c *chart.Chart, vals map[string]any, where string) error {
	cvals, err := util.CoalesceValues(c, vals)
	if err != nil {
		return fmt.Errorf("%s: values: %w", under(where, chartFile), err)
	}
	var missing []string
	for _, d := range c.Metadata.Dependencies {
		if d == nil || !dependencyEnabled(d, cvals) {
			continue
		}
		found := slices.ContainsFunc(c.Dependencies(), func(sub *chart.Chart) bool { return sub.Name() == d.Name })
		if !found && !slices.Contains(missing, d.Name) {
			missing = append(missing, d.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: dependencies %s are not vendored under charts/ (run helm dependency build and commit charts/)", under(where, chartFile), strings.Join(missing, ", "))
	}
	return nil
}

// dependencyEnabled evaluates a dependency's condition (the first of its comma-separated value
// paths that holds a boolean) and, when none decides, its tags (enabled if any is true), as
// Helm does; with neither it is enabled.
func dependencyEnabled(d *chart.Dependency, vals common.Values) bool {
	for _, p := range strings.Split(d.Condition, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if v, err := vals.PathValue(p); err == nil {
			if b, ok := v.(bool); ok {
				return b
			}
		}
	}
	if len(d.Tags) == 0 {
		return true
	}
	for _, tag := range d.Tags {
		if v, err := vals.PathValue("tags." + tag); err == nil {
			if b, ok := v.(bool); ok && b {
				return true
			}
		}
	}
	return false
}

// archiveRef names a remote chart in files and errors.
func archiveRef(h Helm) string {
	if h.Ref != "" {
		return strings.TrimSuffix(h.Ref, "/")
	}
	return "chart.tgz"
}

// templatePaths maps the engine's name of every template ("chart/charts/sub/templates/x.yaml",
// with aliases) to the path the template was read from.
func (lc *loadedChart) templatePaths(c *chart.Chart, m map[string]string) {
	full := c.ChartFullPath()
	for _, t := range c.Templates {
		if p, ok := lc.origin[t]; ok {
			m[path.Join(full, t.Name)] = p
		}
	}
	for _, d := range c.Dependencies() {
		lc.templatePaths(d, m)
	}
}

// templateError names the template an engine error is about by its repository path (the
// engine names it "chart/templates/x.yaml"), keeping the SDK's words.
func templateError(where string, origin map[string]string, err error) error {
	msg := err.Error()
	best := ""
	for k := range origin {
		if len(k) > len(best) && strings.Contains(msg, k) {
			best = k
		}
	}
	if best == "" {
		return fmt.Errorf("chart %s: %w", where, err)
	}
	return fmt.Errorf("%s: %w", origin[best], err)
}

// capabilities builds .Capabilities: the cluster's version and API versions where known, the
// SDK's defaults for what is not.
func capabilities(in Capabilities) (*common.Capabilities, error) {
	caps := common.DefaultCapabilities.Copy()
	if in.KubeVersion != "" {
		kv, err := common.ParseKubeVersion(in.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("helm capabilities: Kubernetes version %q: %w", in.KubeVersion, err)
		}
		caps.KubeVersion = *kv
	}
	if len(in.APIVersions) > 0 {
		caps.APIVersions = common.VersionSet(slices.Clone(in.APIVersions))
	}
	return caps, nil
}

// chartValues merges the user's values, lowest priority first: each of ValuesFiles in order,
// then Values. The chart's own values.yaml goes under them when the SDK coalesces.
func chartValues(fsys fs.FS, dir string, h Helm, opts Options, b *budget) (map[string]any, error) {
	vals := map[string]any{}
	for _, f := range h.ValuesFiles {
		p, err := valuesPath(dir, f)
		if err != nil {
			return nil, err
		}
		data, err := readLimited(fsys, p, opts.MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("helm values file %s: %w", p, err)
		}
		if err := b.admit(p, data); err != nil {
			return nil, err
		}
		m, err := parseValues(p, data)
		if err != nil {
			return nil, err
		}
		vals = loader.MergeMaps(vals, m)
	}
	if len(h.Values) > 0 {
		vals = loader.MergeMaps(vals, h.Values)
	}
	return vals, nil
}

// valuesPath resolves a values file: relative to the app's directory, or to the repository
// root when it starts with "/"; either way it must stay inside the repository.
func valuesPath(dir, f string) (string, error) {
	f = strings.TrimSpace(f)
	var p string
	if rest, ok := strings.CutPrefix(f, "/"); ok {
		p = path.Clean(strings.TrimLeft(rest, "/"))
	} else {
		p = path.Join(dir, f)
	}
	if f == "" || p == "." || p == ".." || strings.HasPrefix(p, "../") || !fs.ValidPath(p) {
		return "", &RefusedError{File: dir, Entry: fmt.Sprintf("helm valuesFiles %q", f), Reason: "a values file must be a file inside the repository"}
	}
	return p, nil
}

// parseValues reads a values file: one YAML mapping (an empty file is no values).
func parseValues(file string, data []byte) (map[string]any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("helm values file %s: invalid YAML: %w", file, err)
	}
	switch m := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return m, nil
	default:
		return nil, fmt.Errorf("helm values file %s: not a YAML mapping (a %T)", file, v)
	}
}

// boundedFuncs replaces the template functions that build large values from small arguments
// with versions bounded by MaxTemplateRange.
func boundedFuncs() map[string]any {
	tooMany := func(fn string, n int) error {
		return fmt.Errorf("%s: %d is over MaxTemplateRange (%d)", fn, n, MaxTemplateRange)
	}
	return map[string]any{
		"until": func(n int) ([]int, error) {
			if n > MaxTemplateRange || n < -MaxTemplateRange {
				return nil, tooMany("until", n)
			}
			step := 1
			if n < 0 {
				step = -1
			}
			var out []int
			for i := 0; i != n; i += step {
				out = append(out, i)
			}
			return out, nil
		},
		"untilStep": func(start, stop, step int) ([]int, error) {
			var out []int
			if step == 0 || (step > 0 && start >= stop) || (step < 0 && start <= stop) {
				return out, nil
			}
			for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
				if len(out) == MaxTemplateRange {
					return nil, tooMany("untilStep", (stop-start)/step)
				}
				out = append(out, i)
			}
			return out, nil
		},
		"repeat": func(n int, s string) (string, error) {
			if n > MaxTemplateRange {
				return "", tooMany("repeat", n)
			}
			if n <= 0 {
				return "", nil
			}
			if int64(n)*int64(len(s)) > MaxRenderBytes {
				return "", fmt.Errorf("repeat: %d copies of %d bytes are over MaxRenderBytes (%d)", n, len(s), MaxRenderBytes)
			}
			return strings.Repeat(s, n), nil
		},
	}
}
