package status

import (
	"fmt"
	"strings"
	"testing"
)

// bigPreview is a preview of n objects, each with lines field changes of width bytes.
func bigPreview(n, lines, width int) Status {
	s := previewStatus(Success, fmt.Sprintf("%d changed", n), PhaseDone)
	d := s.Detail
	d.Counts = Counts{Changed: n}
	d.Objects, d.Diff = nil, nil
	for i := range n {
		d.Objects = append(d.Objects, Object{Action: "changed", Kind: "ConfigMap", Namespace: "api", Name: fmt.Sprintf("cm-%04d", i)})
		od := ObjectDiff{Header: fmt.Sprintf("~ ConfigMap api/cm-%04d  (apps/api/cm-%04d.yaml)  change", i, i)}
		for j := range lines {
			od.Lines = append(od.Lines, fmt.Sprintf("~ /data/k%d: %q → %q", j, strings.Repeat("a", width), strings.Repeat("b", width)))
		}
		d.Diff = append(d.Diff, od)
	}
	return s
}

func TestRenderReportCutsTheDiffToTheLimit(t *testing.T) {
	tests := []struct {
		name  string
		s     Status
		limit int
		// wantWhole is how many objects' diffs must be shown whole; -1 for all.
		wantWhole int
		wantCut   bool
	}{
		{"fits", bigPreview(3, 2, 10), MaxCheckOutput, -1, false},
		{"many objects, whole ones first", bigPreview(400, 4, 40), MaxCheckOutput, 0, true},
		{"one object larger than the limit is cut by lines", bigPreview(1, 2000, 100), MaxCheckOutput, 0, true},
		{"a note's larger limit", bigPreview(400, 4, 40), MaxNoteBody, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := renderReport(tt.s, tt.limit)
			if len(r.Text) > tt.limit || len(r.Summary) > tt.limit {
				t.Fatalf("text %d, summary %d bytes: over %d", len(r.Text), len(r.Summary), tt.limit)
			}
			if got := strings.Contains(r.Text, "The diff is cut here"); got != tt.wantCut {
				t.Fatalf("cut note shown = %v, want %v", got, tt.wantCut)
			}
			if strings.Count(r.Text, "```")%2 != 0 {
				t.Error("a code fence is left open")
			}
			if tt.wantCut {
				if !strings.Contains(r.Text, "[whole diff](https://ferry.example.com/syncs/sync-7)") {
					t.Error("the cut does not link to the sync page")
				}
				// Every object block shown is whole, except a single object cut by lines.
				blocks := strings.Count(r.Text, "```diff")
				whole := blocks
				if strings.Contains(r.Text, "… cut") {
					whole--
				}
				if !strings.Contains(r.Text, fmt.Sprintf("(%d of %d objects shown in full)", whole, len(tt.s.Detail.Diff))) {
					t.Errorf("cut note does not say %d of %d objects are whole:\n%s", whole, len(tt.s.Detail.Diff), r.Text[len(r.Text)-400:])
				}
				if blocks == 0 {
					t.Error("no diff shown at all")
				}
			} else if n := strings.Count(r.Text, "```diff"); n != len(tt.s.Detail.Diff) {
				t.Errorf("%d diff blocks, want %d", n, len(tt.s.Detail.Diff))
			}
		})
	}
}

func TestRenderReportLinksTheWholeDiffWhenTheRecordCutIt(t *testing.T) {
	s := bigPreview(400, 4, 40)
	s.Detail.DiffCut, s.Detail.FullDiffURL = true, "https://ferry.example.com/syncs/sync-7/diff"
	r := renderReport(s, MaxCheckOutput)
	if !strings.Contains(r.Text, "[whole diff](https://ferry.example.com/syncs/sync-7/diff)") {
		t.Errorf("no link to the whole diff:\n%s", r.Text[len(r.Text)-400:])
	}
}

func TestRenderReportKeepsCountsAndFailureWhenCutting(t *testing.T) {
	s := bigPreview(2000, 4, 40)
	s.State = Failure
	s.Detail.Failure = &FailureDetail{Stage: "plan", Object: "ConfigMap api/cm-0001", File: "apps/api/cm-0001.yaml", Message: "admission webhook denied the request"}
	r := renderReport(s, MaxCheckOutput)
	for _, want := range []string{"**2000** to change", "- **Stage:** plan", "`apps/api/cm-0001.yaml`", "admission webhook denied the request", "more not listed here", "[Sync sync-7]"} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("text lacks %q", want)
		}
	}
	if r.Title != "Failed at plan: ConfigMap api/cm-0001" {
		t.Errorf("title = %q", r.Title)
	}
	if len(r.Annotations) != 1 || r.Annotations[0].Path != "apps/api/cm-0001.yaml" {
		t.Errorf("annotations = %+v", r.Annotations)
	}
}

func TestRenderReportShowsMaskedSecretsAsMasked(t *testing.T) {
	// The plan masks Secret values where it is made (syncer/apply); the report shows the masked
	// values and which keys changed, and nothing else of the Secret.
	s := previewStatus(Success, "1 changed", PhaseDone)
	s.Detail.Diff = []ObjectDiff{{Header: "~ Secret api/db  (apps/api/db.yaml)  change", Lines: []string{`~ /data/password: "***" → "***"`, `+ /data/token: "***"`}}}
	r := renderReport(s, MaxCheckOutput)
	for _, want := range []string{"~ Secret api/db", `~   /data/password: "***" → "***"`, `+   /data/token: "***"`} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, r.Text)
		}
	}
}

func TestRenderReportEscapesWhatItQuotes(t *testing.T) {
	s := failedDeploy("apps/api/web.yaml")
	s.Detail.Failure.Message = "line one\n```\n# injected heading\n```"
	s.Detail.Objects = []Object{{Action: "created", Kind: "ConfigMap", Namespace: "api", Name: "a|b"}}
	s.Description = "bad *thing* <script>"
	r := renderReport(s, MaxCheckOutput)
	if !strings.Contains(r.Text, "````text\nline one\n```\n# injected heading\n```\n````") {
		t.Errorf("message not fenced beyond its own backticks:\n%s", r.Text)
	}
	if !strings.Contains(r.Text, `| a\|b |`) {
		t.Errorf("pipe in a cell not escaped:\n%s", r.Text)
	}
	if !strings.Contains(r.Summary, `bad \*thing\* &lt;script&gt;`) {
		t.Errorf("summary not escaped: %s", r.Summary)
	}
}

func TestRenderReportWithoutDetail(t *testing.T) {
	r := renderReport(Status{SHA: testSHA, Context: "ferry/api", State: Success, Description: "applied 3 objects"}, MaxCheckOutput)
	if r.Title != "Applied 3 objects" || r.Text != "" || len(r.Annotations) != 0 {
		t.Errorf("report = %+v", r)
	}
}
