package status

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// MaxFailureMessage bounds the apiserver's words quoted in a report: enough for any admission or
// validation message, not a whole HTML error page from a proxy.
const MaxFailureMessage = 8 << 10

// MaxTitle bounds a report's title, a single line: GitHub shows it as the check run's heading.
const MaxTitle = 200

// report is a status rendered for people, as check runs and merge request notes show it.
type report struct {
	// Title is one line: what happened, e.g. "Failed at apply: Deployment api/web".
	Title string
	// Summary is the first paragraph: the status's description and a link to the sync page.
	Summary string
	// Text is the markdown body: counts, failure, objects table, diff, links.
	Text string
	// Annotations point at the repository files that failed.
	Annotations []annotation
}

// annotation is a failure attached to a repository file.
type annotation struct {
	// Path is repository-relative, as GitHub wants it.
	Path    string
	Title   string
	Message string
}

// renderReport renders s in at most limit bytes of Summary and of Text each (bytes are at least
// as strict as characters, whichever a forge counts). What does not fit is cut in this order: diff
// objects from the last (whole objects first; a single object too large for the room left is cut
// by lines), then rows of the objects table; counts, the failure and the links always stay. A cut
// says so and links to the page that has everything.
func renderReport(s Status, limit int) report {
	d := s.Detail
	r := report{Title: cutRunes(title(s), MaxTitle)}
	r.Summary = cutBytes(summaryLine(s), limit)
	if d == nil {
		return r
	}

	var head, foot strings.Builder
	if line := countsLine(d); line != "" {
		head.WriteString(line + "\n\n")
	}
	if f := d.Failure; f != nil {
		head.WriteString(failureBlock(f))
		if p := f.File; p != "" && repoRelative(p) {
			msg := f.Message
			if f.Object != "" {
				msg = f.Object + ": " + msg
			}
			r.Annotations = append(r.Annotations, annotation{Path: p, Title: "ferry: " + orUnknown(f.Stage) + " failed", Message: cutBytes(msg, MaxFailureMessage)})
		}
	}
	if d.SyncURL != "" {
		fmt.Fprintf(&foot, "[Sync %s](%s)", d.SyncID, d.SyncURL)
		if d.FullDiffURL != "" {
			fmt.Fprintf(&foot, " · [whole diff](%s)", d.FullDiffURL)
		}
		foot.WriteString("\n")
	}

	// The room left for the table and the diff, keeping space for the notes that say what was cut.
	const notes = 512
	room := limit - head.Len() - foot.Len() - notes
	var body strings.Builder
	body.WriteString(objectsTable(d, &room))
	if d.Kind == KindPreview {
		body.WriteString(diffSection(d, &room))
	}
	r.Text = cutBytes(head.String()+body.String()+foot.String(), limit)
	return r
}

// title is the report's heading.
func title(s Status) string {
	d := s.Detail
	if s.State == Failure && d != nil && d.Failure != nil {
		t := "Failed at " + orUnknown(d.Failure.Stage)
		if d.Failure.Object != "" {
			t += ": " + d.Failure.Object
		}
		return t
	}
	if s.State == Success && d != nil && d.Kind == KindPreview && d.Counts.Changes() == 0 {
		return "No changes"
	}
	return upperFirst(firstLine(s.Description))
}

// summaryLine is the first paragraph: the one-line description, and where to read more.
func summaryLine(s Status) string {
	line := "**" + escapeInline(firstLine(s.Description)) + "**"
	if s.TargetURL != "" {
		line += " · [details](" + s.TargetURL + ")"
	}
	return line
}

// countsLine is "**1** created · **2** changed · **0** pruned · **7** unchanged" once the sync has
// counted anything.
func countsLine(d *Detail) string {
	c := d.Counts
	if c == (Counts{}) {
		return ""
	}
	verb := map[Kind][4]string{
		KindDeploy:  {"created", "changed", "pruned", "unchanged"},
		KindPreview: {"to create", "to change", "to prune", "unchanged"},
	}[d.Kind]
	if verb[0] == "" {
		verb = [4]string{"created", "changed", "pruned", "unchanged"}
	}
	return fmt.Sprintf("**%d** %s · **%d** %s · **%d** %s · **%d** %s", c.Created, verb[0], c.Changed, verb[1], c.Pruned, verb[2], c.Unchanged, verb[3])
}

// failureBlock is the stage, object, file and the apiserver's words, the latter verbatim in a
// code block so that no markdown in them is interpreted.
func failureBlock(f *FailureDetail) string {
	var b strings.Builder
	b.WriteString("#### Failure\n\n")
	fmt.Fprintf(&b, "- **Stage:** %s\n", escapeInline(orUnknown(f.Stage)))
	if f.Object != "" {
		fmt.Fprintf(&b, "- **Object:** %s\n", codeSpan(f.Object))
	}
	if f.File != "" {
		fmt.Fprintf(&b, "- **File:** %s\n", codeSpan(f.File))
	}
	b.WriteString("\n")
	b.WriteString(codeBlock("text", []string{cutBytes(f.Message, MaxFailureMessage)}))
	b.WriteString("\n")
	return b.String()
}

// objectsTable lists the objects the sync touched, within *room bytes (which it lowers).
func objectsTable(d *Detail, room *int) string {
	if len(d.Objects) == 0 {
		return ""
	}
	var b strings.Builder
	head := "#### Objects\n\n| Action | Kind | Namespace | Name |\n|---|---|---|---|\n"
	if *room < len(head) {
		return ""
	}
	b.WriteString(head)
	*room -= len(head)
	shown := 0
	for _, o := range d.Objects {
		row := fmt.Sprintf("| %s | %s | %s | %s |\n", cell(o.Action), cell(o.Kind), cell(o.Namespace), cell(o.Name))
		if len(row) > *room {
			break
		}
		b.WriteString(row)
		*room -= len(row)
		shown++
	}
	var more []string
	if n := len(d.Objects) - shown + d.ObjectsCut; n > 0 {
		more = append(more, fmt.Sprintf("%d more not listed here", n))
	}
	if d.Counts.Unchanged > 0 {
		more = append(more, fmt.Sprintf("%d unchanged not listed", d.Counts.Unchanged))
	}
	if len(more) > 0 {
		b.WriteString("\n" + strings.Join(more, "; ") + ".\n")
	}
	b.WriteString("\n")
	return b.String()
}

// diffSection is a preview's per-object diff, one ```diff block per object, within *room bytes:
// whole objects first; if not even the first fits, as many of its lines as do.
func diffSection(d *Detail, room *int) string {
	if len(d.Diff) == 0 {
		return ""
	}
	const head = "#### Diff\n\n"
	var b strings.Builder
	b.WriteString(head)
	*room -= len(head)
	shown := 0
	cut := d.DiffCut
	for _, od := range d.Diff {
		block := objectBlock(od, -1)
		if len(block) > *room {
			if shown == 0 {
				if part := objectBlock(od, *room); part != "" {
					b.WriteString(part)
					*room -= len(part)
				}
			}
			cut = true
			break
		}
		b.WriteString(block)
		*room -= len(block)
		shown++
	}
	if cut {
		link := d.FullDiffURL
		if link == "" {
			link = d.SyncURL
		}
		fmt.Fprintf(&b, "_The diff is cut here (%d of %d objects shown in full); the [whole diff](%s) is on the sync's page._\n\n", shown, len(d.Diff), link)
	}
	return b.String()
}

// objectBlock renders one object's diff as a fenced diff block whose header line names it. With
// room ≥ 0 it keeps only the lines that fit in room bytes, and returns "" if not even the header
// does.
func objectBlock(od ObjectDiff, room int) string {
	lines := make([]string, 0, 1+len(od.Lines))
	lines = append(lines, od.Header)
	for _, l := range od.Lines {
		// "+ /path: v" → "+   /path: v": the sign in the first column colours the line, the
		// indent sets it under its object.
		if len(l) > 1 && strings.ContainsRune("+-~", rune(l[0])) && l[1] == ' ' {
			l = l[:1] + "   " + l[2:]
		} else {
			l = "    " + l
		}
		lines = append(lines, l)
	}
	if room < 0 {
		return codeBlock("diff", lines) + "\n"
	}
	// The fence is at most as long as the whole block's; count it once, then keep lines while
	// they fit with it and the cut mark.
	const mark = "  … cut"
	fence := max(3, longestRun(strings.Join(lines, "\n"), '`')+1)
	size := 2*fence + len("diff") + 3 + len(mark) + 1
	n := 0
	for _, l := range lines {
		if size+len(l)+1 > room {
			break
		}
		size += len(l) + 1
		n++
	}
	if n == 0 {
		return ""
	}
	return codeBlock("diff", append(lines[:n:n], mark)) + "\n"
}

// codeBlock fences lines with more backticks than any run inside them, so that content can never
// close the block early.
func codeBlock(lang string, lines []string) string {
	body := strings.Join(lines, "\n")
	fence := strings.Repeat("`", max(3, longestRun(body, '`')+1))
	return fence + lang + "\n" + body + "\n" + fence + "\n"
}

// codeSpan puts s in an inline code span that its own backticks cannot end.
func codeSpan(s string) string {
	s = firstLine(s)
	ticks := strings.Repeat("`", longestRun(s, '`')+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return ticks + " " + s + " " + ticks
	}
	return ticks + s + ticks
}

func longestRun(s string, c byte) int {
	best, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}

// cell makes s safe inside a table cell: one line, pipes escaped.
func cell(s string) string {
	if s == "" {
		return " "
	}
	return escapeInline(firstLine(s))
}

// escapeInline keeps text from a sync (names, descriptions) from being read as markdown or HTML.
func escapeInline(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "`", "\\`", "[", `\[`, "]", `\]`, "<", "&lt;", ">", "&gt;", "|", `\|`)
	return r.Replace(s)
}

// repoRelative reports whether p can name a file in the repository for an annotation: relative,
// clean, inside the repository. A remote chart's template ("oci://…/templates/x.yaml") is not.
func repoRelative(p string) bool {
	return p != "" && !strings.Contains(p, "://") && !strings.HasPrefix(p, "/") && !strings.Contains(p, `\`) &&
		path.Clean(p) == p && p != "." && p != ".." && !strings.HasPrefix(p, "../")
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return strings.ToUpper(string(r)) + s[n:]
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown stage"
	}
	return s
}

// cutBytes returns at most n bytes of s, not splitting a character, ending a cut one with "…".
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	n -= len(ell)
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + ell
}

// cutRunes returns at most n runes of s, ending a cut one with "…".
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
