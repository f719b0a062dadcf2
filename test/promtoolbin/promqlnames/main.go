// Command promqlnames reads PromQL expressions, one per line, from stdin and prints the metric
// names each selects, one per line, sorted and unique. A line that does not parse is an error
// naming it. ferry's tests use it to check that its alert rules and dashboard read only metrics
// ferry serves.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// maxLine bounds one expression.
const maxLine = 1 << 20

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "promqlnames:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	// The parser as Prometheus itself is configured by default.
	p := parser.NewParser(parser.Options{})
	var names []string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		expr, err := p.ParseExpr(line)
		if err != nil {
			return fmt.Errorf("line %d: %q: %w", n, line, err)
		}
		for _, vs := range parser.ExtractSelectors(expr) {
			found := false
			for _, m := range vs {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					names, found = append(names, m.Value), true
				}
			}
			if !found {
				return fmt.Errorf("line %d: %q: a selector without an exact metric name", n, line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		fmt.Fprintln(out, name)
	}
	return nil
}
