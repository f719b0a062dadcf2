package charts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"sigs.k8s.io/yaml"
)

const (
	// MaxChartBytes bounds a chart archive as downloaded (compressed). The largest public charts
	// are a few hundred KiB; 16 MiB leaves room for vendored dependencies without letting a
	// source fill the memory of a sync.
	MaxChartBytes = 16 << 20
	// MaxChartUnpackedBytes bounds what an archive may expand to while it is checked, so a
	// compression bomb is refused without being unpacked. Helm's loader refuses more than 100 MiB.
	MaxChartUnpackedBytes = 100 << 20
	// MaxChartfileBytes bounds the Chart.yaml read from an archive.
	MaxChartfileBytes = 1 << 20
)

// chartfile is the part of Chart.yaml that the fetch checks.
type chartfile struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// verifyArchive checks that archive is a gzip tar whose top directory holds a Chart.yaml, reading
// at most unpackedLimit bytes of content, and returns that Chart.yaml's name and version. Helm
// packages a chart as <name>/Chart.yaml, <name>/templates/...; the top directory is taken from the
// first entry, as Helm's loader does.
func verifyArchive(archive []byte, unpackedLimit int64) (chartfile, error) {
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return chartfile{}, fmt.Errorf("%w: not gzip: %v", ErrNotChart, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var (
		top      string
		unpacked int64
		found    *chartfile
	)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return chartfile{}, fmt.Errorf("%w: not a tar archive: %v", ErrNotChart, err)
		}
		name := strings.TrimPrefix(path.Clean(strings.ReplaceAll(h.Name, `\`, "/")), "/")
		if h.Typeflag == tar.TypeXGlobalHeader || h.Typeflag == tar.TypeXHeader {
			continue
		}
		dir, rest, _ := strings.Cut(name, "/")
		if top == "" {
			top = dir
		}
		unpacked += h.Size
		if unpacked > unpackedLimit {
			return chartfile{}, fmt.Errorf("%w: archive unpacks to more than %d bytes (MaxChartUnpackedBytes)", ErrTooLarge, unpackedLimit)
		}
		if dir != top || rest != "Chart.yaml" || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > MaxChartfileBytes {
			return chartfile{}, fmt.Errorf("%w: %s is larger than %d bytes (MaxChartfileBytes)", ErrTooLarge, name, MaxChartfileBytes)
		}
		data, err := io.ReadAll(io.LimitReader(tr, MaxChartfileBytes))
		if err != nil {
			return chartfile{}, fmt.Errorf("%w: read %s: %v", ErrNotChart, name, err)
		}
		var cf chartfile
		if err := yaml.Unmarshal(data, &cf); err != nil {
			return chartfile{}, fmt.Errorf("%w: %s: %v", ErrNotChart, name, err)
		}
		if cf.Name == "" || cf.Version == "" {
			return chartfile{}, fmt.Errorf("%w: %s has no name or no version", ErrNotChart, name)
		}
		found = &cf
	}
	if found == nil {
		return chartfile{}, fmt.Errorf("%w: no Chart.yaml in the archive's top directory", ErrNotChart)
	}
	return *found, nil
}
