package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one line of the results table: a measure, ferry's value, the baseline's, their ratio,
// the target and whether it was met.
type row struct {
	ID       string
	Measure  string
	Ferry    string
	Baseline string
	Ratio    string
	Target   string
	// Met is "yes", "NO" or "" when the row is informative only.
	Met string
}

// results gathers rows and the notes that explain misses, in the order measures ran.
type results struct {
	rows  []row
	notes []string
	// profiles are excerpts of pprof output, by title, shown under the notes.
	profiles []profileExcerpt
}

// profileExcerpt is the head of `go tool pprof -top` for one profile.
type profileExcerpt struct {
	Title string
	Lines []string
}

// addProfile records the top of a CPU profile, sorted by cumulative time.
func (r *results) addProfile(title, path string, n int) {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", fmt.Sprintf("-nodecount=%d", n), path).Output()
	if err != nil {
		r.note("profile %s (%s) could not be read: %v", title, path, err)
		return
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		lines = append(lines, l)
	}
	r.profiles = append(r.profiles, profileExcerpt{Title: title + " (" + path + ")", Lines: lines})
}

func (r *results) add(x row) { r.rows = append(r.rows, x) }

func (r *results) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// verdict turns a comparison into the table's Met column.
func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// median returns the middle value of xs (the mean of the two middle ones for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

// medianDur is median for durations.
func medianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// fmtDur prints a duration with three significant figures' worth of precision.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}

func fmtMB(bytes uint64) string { return fmt.Sprintf("%.1f MB", float64(bytes)/(1<<20)) }

// writeTable prints the rows as an aligned text table.
func writeTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMEASURE\tFERRY\tBASELINE\tRATIO\tTARGET\tMET")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Measure, dash(r.Ferry), dash(r.Baseline), dash(r.Ratio), r.Target, dash(r.Met))
	}
	_ = tw.Flush()
}

// markdownTable renders the rows for RESULTS.md.
func markdownTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| ID | measure | ferry | baseline | ratio | target | met |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.ID, r.Measure, dash(r.Ferry), dash(r.Baseline), dash(r.Ratio), r.Target, dash(r.Met))
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// machine describes where the bench ran, for RESULTS.md: numbers mean little without it.
func machine() []string {
	out := []string{
		"date: " + time.Now().UTC().Format(time.RFC3339),
		"uname -a: " + commandLine("uname", "-a"),
		"nproc: " + commandLine("nproc"),
		"GOMAXPROCS: " + fmt.Sprint(runtime.GOMAXPROCS(0)),
		"cpu: " + procField("/proc/cpuinfo", "model name"),
		"memory: " + procField("/proc/meminfo", "MemTotal"),
		"go: " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		"load average at start: " + firstLine("/proc/loadavg"),
	}
	return out
}

func commandLine(name string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(b))
}

// procField returns the value of the first "key: value" line starting with key in a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// writeResults writes RESULTS.md: machine, parameters, the table and the notes on misses.
func writeResults(path string, mach, params []string, res *results, took time.Duration) error {
	var b strings.Builder
	b.WriteString("# ferry benchmark results\n\n")
	b.WriteString("Written by `make bench` (`go run ./bench`); rerun it to refresh. Values are medians over the\n")
	b.WriteString("repetitions listed under parameters; ratios are ferry / baseline.\n\n")
	b.WriteString("## Machine\n\n")
	for _, m := range mach {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	b.WriteString("\n## Parameters\n\n")
	for _, p := range params {
		fmt.Fprintf(&b, "- %s\n", p)
	}
	b.WriteString("\n## Results\n\n")
	b.WriteString(markdownTable(res.rows))
	fmt.Fprintf(&b, "\nWhole run: %s.\n", took.Round(time.Second))
	if len(res.notes) > 0 {
		b.WriteString("\n## Notes, misses and profiles\n\n")
		for _, n := range res.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	for _, p := range res.profiles {
		fmt.Fprintf(&b, "\n### Profile: %s\n\n```\n%s\n```\n", p.Title, strings.Join(p.Lines, "\n"))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
