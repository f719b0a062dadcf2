package render

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
)

// schemaFile is a chart's JSON schema for its values.
const schemaFile = "values.schema.json"

// validateSchemas checks the coalesced values against the values.schema.json of the chart and
// of each subchart (on the subchart's part of the values), as helm install does. The SDK's own
// validation resolves "$ref"s over HTTP and from the local disk; here a schema may only refer
// within itself, so rendering reads nothing but the chart.
func validateSchemas(c *chart.Chart, vals any, lc *loadedChart) error {
	m, _ := vals.(common.Values)
	return validateSchema(c, m, lc, chartDir(c, lc))
}

func validateSchema(c *chart.Chart, vals common.Values, lc *loadedChart, dir string) error {
	if len(c.Schema) > 0 {
		file := under(dir, schemaFile)
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(c.Schema))
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		comp := jsonschema.NewCompiler()
		comp.UseLoader(jsonschema.SchemeURLLoader{}) // no $ref leaves the schema
		const url = "file:///" + schemaFile
		if err := comp.AddResource(url, doc); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		sch, err := comp.Compile(url)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		// The validator wants JSON types (float64 numbers, []any, map[string]any).
		j, err := common.Values(vals).YAML()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		inst, err := parseValues(file, []byte(j))
		if err != nil {
			return err
		}
		if err := sch.Validate(map[string]any(inst)); err != nil {
			// The validator's first line only names the schema; the reasons follow, one a line.
			lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
			if len(lines) > 1 {
				lines = lines[1:]
			}
			for i := range lines {
				lines[i] = strings.TrimSpace(lines[i])
			}
			return fmt.Errorf("%s: the values do not match the chart's schema: %s", file, strings.Join(lines, "; "))
		}
	}
	for _, d := range c.Dependencies() {
		sub, ok := vals[d.Name()].(map[string]any)
		if !ok {
			continue
		}
		if err := validateSchema(d, sub, lc, chartDir(d, lc)); err != nil {
			return err
		}
	}
	return nil
}

// chartDir is the path a chart was read from, told by where its first template or CRD came
// from; a chart with neither is named by its place in the chart tree.
func chartDir(c *chart.Chart, lc *loadedChart) string {
	for _, t := range c.Templates {
		if p, ok := lc.origin[t]; ok {
			return path.Dir(path.Dir(p))
		}
	}
	return c.ChartFullPath()
}
