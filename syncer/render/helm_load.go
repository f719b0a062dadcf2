package render

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/ignore"
)

// chartFile is the file that makes a directory a Helm chart.
const chartFile = "Chart.yaml"

// MaxChartDepth bounds how deeply subcharts may nest (charts/a/charts/b/…). Real charts vendor
// one or two levels; a deeper tree is more likely a packaging accident than a design.
const MaxChartDepth = 10

// loadedChart is a chart and where each of its files came from, so that every rendered object
// and every error can name a repository path (or a path under a remote chart's reference).
type loadedChart struct {
	chart *chart.Chart
	// origin maps each template and crds/ file of the chart and its subcharts to its path.
	origin map[*common.File]string
}

// isChartDir reports whether dir holds a Chart.yaml.
func isChartDir(fsys fs.FS, dir string) bool {
	st, err := fs.Stat(fsys, path.Join(dir, chartFile))
	return err == nil && st.Mode().IsRegular()
}

// loadChartDir reads the chart in dir of a commit, .helmignore honoured and subcharts vendored
// under charts/ (directories or .tgz archives) included. Only regular files are read: symlinks
// are skipped, so nothing outside the tree is reached. Every file is charged to the budget.
func loadChartDir(fsys fs.FS, dir string, opts Options, b *budget) (*loadedChart, error) {
	rules := ignore.Empty()
	if data, err := fs.ReadFile(fsys, path.Join(dir, ignore.HelmIgnore)); err == nil {
		r, err := ignore.Parse(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path.Join(dir, ignore.HelmIgnore), err)
		}
		rules = r
	}
	rules.AddDefaults()
	var files []*archive.BufferedFile
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("render %s: %w", p, err)
		}
		if p == dir {
			return nil
		}
		rel := strings.TrimPrefix(p, dir+"/")
		if dir == "." {
			rel = p
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("render %s: %w", p, err)
		}
		if rules.Ignore(rel, info) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		data, err := readLimited(fsys, p, opts.MaxFileSize)
		if err != nil {
			return err
		}
		if err := chargeChartFile(b, p, rel, data); err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: rel, Data: bytes.TrimPrefix(data, utf8BOM)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	lc := &loadedChart{origin: map[*common.File]string{}}
	lc.chart, err = lc.build(files, dir, 0, b)
	if err != nil {
		return nil, err
	}
	return lc, nil
}

// loadChartArchive reads a packaged chart (.tgz); ref names it in files and errors.
func loadChartArchive(data []byte, ref string, b *budget) (*loadedChart, error) {
	files, err := readArchive(data, ref, b)
	if err != nil {
		return nil, err
	}
	lc := &loadedChart{origin: map[*common.File]string{}}
	lc.chart, err = lc.build(files, ref, 0, b)
	if err != nil {
		return nil, err
	}
	return lc, nil
}

// utf8BOM is stripped from chart files, as Helm does.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// chargeChartFile charges one chart file to the budget. Files parsed as YAML before templating
// (Chart.yaml, values.yaml, CRDs) are admitted, aliases bounded; templates only count their
// bytes, since what they render is admitted in turn.
func chargeChartFile(b *budget, file, rel string, data []byte) error {
	if isTemplate(rel) {
		return b.charge(file, int64(len(data)))
	}
	switch strings.ToLower(path.Ext(rel)) {
	case ".yaml", ".yml", ".json":
		return b.admit(file, data)
	}
	return b.charge(file, int64(len(data)))
}

// isTemplate reports whether a chart-relative path is a template of the chart or of a subchart.
func isTemplate(rel string) bool {
	for {
		if strings.HasPrefix(rel, "templates/") {
			return true
		}
		rest, ok := strings.CutPrefix(rel, "charts/")
		if !ok {
			return false
		}
		_, rel, ok = strings.Cut(rest, "/")
		if !ok {
			return false
		}
	}
}

// build loads one chart from its files (names relative to the chart, base its path for
// messages) with the SDK's loader, and its subcharts under charts/ one by one, so that every
// template keeps the path it was read from whatever name or alias its chart takes.
func (lc *loadedChart) build(files []*archive.BufferedFile, base string, depth int, b *budget) (*chart.Chart, error) {
	if depth > MaxChartDepth {
		return nil, &BoundError{File: base, Bound: "MaxChartDepth", Limit: MaxChartDepth, What: "levels of subcharts under charts/"}
	}
	var own []*archive.BufferedFile
	subs := map[string][]*archive.BufferedFile{}
	for _, f := range files {
		rest, ok := strings.CutPrefix(f.Name, "charts/")
		if !ok || path.Ext(f.Name) == ".prov" {
			own = append(own, f)
			continue
		}
		name, inner, _ := strings.Cut(rest, "/")
		subs[name] = append(subs[name], &archive.BufferedFile{Name: inner, Data: f.Data})
	}
	if !slices.ContainsFunc(own, func(f *archive.BufferedFile) bool { return f.Name == chartFile }) {
		return nil, fmt.Errorf("%s: no %s", base, chartFile)
	}
	c, err := loader.LoadFiles(own)
	if err != nil {
		return nil, chartLoadError(base, err)
	}
	for _, t := range c.Templates {
		lc.origin[t] = under(base, t.Name)
	}
	for _, f := range c.Files {
		if strings.HasPrefix(f.Name, "crds/") {
			lc.origin[f] = under(base, f.Name)
		}
	}
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		// Helm skips entries starting with _ or . under charts/.
		if strings.IndexAny(n, "_.") == 0 {
			continue
		}
		subBase := under(base, "charts/"+n)
		var subFiles []*archive.BufferedFile
		if path.Ext(n) == ".tgz" {
			tgz := subs[n]
			if len(tgz) != 1 || tgz[0].Name != "" {
				return nil, fmt.Errorf("%s: a subchart archive must be a file", subBase)
			}
			if subFiles, err = readArchive(tgz[0].Data, subBase, b); err != nil {
				return nil, err
			}
		} else {
			for _, f := range subs[n] {
				if f.Name != "" {
					subFiles = append(subFiles, f)
				}
			}
			if len(subFiles) == 0 {
				continue // a plain file under charts/ (a README) is no chart
			}
		}
		sc, err := lc.build(subFiles, subBase, depth+1, b)
		if err != nil {
			return nil, err
		}
		c.AddDependency(sc)
	}
	return c, nil
}

// chartLoadError names the chart file the SDK's loader failed on: "cannot load values.yaml: …"
// names values.yaml, a metadata validation error names Chart.yaml.
func chartLoadError(base string, err error) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "cannot load "); ok {
		if name, _, ok := strings.Cut(rest, ":"); ok && !strings.Contains(name, " ") {
			return fmt.Errorf("%s: %w", under(base, name), err)
		}
	}
	return fmt.Errorf("%s: %w", under(base, chartFile), err)
}

// readArchive reads a gzipped tar of one chart (every entry under one top directory) into
// files named relative to the chart, charging what it unpacks to the budget as it goes so that
// a compression bomb stops at the bound, not in memory.
func readArchive(data []byte, ref string, b *budget) ([]*archive.BufferedFile, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not a chart archive (.tgz): %w", ref, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var files []*archive.BufferedFile
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading chart archive: %w", ref, err)
		}
		if hd.Typeflag != tar.TypeReg {
			continue // directories, links and extended headers carry no chart file
		}
		name := strings.ReplaceAll(hd.Name, "\\", "/")
		_, rel, ok := strings.Cut(name, "/")
		if !ok {
			return nil, fmt.Errorf("%s: chart archive entry %q is not under the chart's directory", ref, hd.Name)
		}
		if rel = path.Clean(rel); !fs.ValidPath(rel) || rel == "." {
			return nil, fmt.Errorf("%s: chart archive entry %q leaves the chart's directory", ref, hd.Name)
		}
		file := ref + "/" + rel
		if err := b.charge(file, hd.Size); err != nil {
			return nil, err
		}
		buf, err := io.ReadAll(io.LimitReader(tr, hd.Size))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if !isTemplate(rel) {
			// Admit (aliases bounded, nodes counted) what is parsed as YAML; the bytes were
			// charged above.
			if ext := strings.ToLower(path.Ext(rel)); ext == ".yaml" || ext == ".yml" || ext == ".json" {
				b.read -= int64(len(buf))
				if err := b.admit(file, buf); err != nil {
					return nil, err
				}
			}
		}
		files = append(files, &archive.BufferedFile{Name: rel, Data: bytes.TrimPrefix(buf, utf8BOM)})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: empty chart archive", ref)
	}
	return files, nil
}

// under joins a chart-relative path to the chart's path. Unlike path.Join it keeps a remote
// chart's reference as written ("oci://…" stays "oci://…").
func under(base, rel string) string {
	if base == "." || base == "" {
		return rel
	}
	return strings.TrimSuffix(base, "/") + "/" + rel
}
