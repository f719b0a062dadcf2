package ghapptest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxCheckRunBody bounds a check run request the fake reads; GitHub's own limits are on the
// output's fields (65,535 characters each), far below it.
const maxCheckRunBody = 4 << 20

// Annotation is one annotation of a check run's output.
type Annotation struct {
	Path            string `json:"path"`
	StartLine       int    `json:"start_line"`
	EndLine         int    `json:"end_line"`
	AnnotationLevel string `json:"annotation_level"`
	Message         string `json:"message"`
	Title           string `json:"title,omitempty"`
}

// CheckRun is a check run as the fake holds it: its latest state, and how often it was
// written.
type CheckRun struct {
	ID          int64
	Name        string
	HeadSHA     string
	Status      string
	Conclusion  string
	DetailsURL  string
	ExternalID  string
	Title       string
	Summary     string
	Text        string
	Annotations []Annotation
	// Writes counts the create and every update.
	Writes int
}

// checkRunRequest is the body of POST /repos/{o}/{r}/check-runs and of its PATCH, as GitHub
// documents them.
type checkRunRequest struct {
	Name        string  `json:"name"`
	HeadSHA     string  `json:"head_sha"`
	Status      *string `json:"status"`
	Conclusion  *string `json:"conclusion"`
	DetailsURL  *string `json:"details_url"`
	ExternalID  *string `json:"external_id"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
	Output      *struct {
		Title       string       `json:"title"`
		Summary     string       `json:"summary"`
		Text        string       `json:"text"`
		Annotations []Annotation `json:"annotations"`
	} `json:"output"`
}

// outputLimit is GitHub's bound on each of a check run output's summary and text.
const outputLimit = 65535

// CheckRuns are the check runs created so far, in order of creation.
func (g *GitHub) CheckRuns() []CheckRun {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]CheckRun, len(g.runs))
	for i, r := range g.runs {
		out[i] = *r
		out[i].Annotations = append([]Annotation(nil), r.Annotations...)
	}
	return out
}

// authorized checks a repository request's installation token and repository, answering the
// refusal itself.
func (g *GitHub) authorized(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := InstallationToken(r.Header.Get("Authorization"))
	if !ok || !g.Live(tok) {
		g.refuse(w, http.StatusUnauthorized, "Bad credentials")
		return false
	}
	if r.PathValue("owner") != g.Owner || r.PathValue("repo") != g.Repo {
		g.refuse(w, http.StatusNotFound, "Not Found")
		return false
	}
	return true
}

func (g *GitHub) createCheckRun(w http.ResponseWriter, r *http.Request) {
	if !g.authorized(w, r) {
		return
	}
	var body checkRunRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxCheckRunBody)).Decode(&body); err != nil || body.Name == "" || len(body.HeadSHA) != 40 {
		g.refuse(w, http.StatusUnprocessableEntity, "Invalid request: name and head_sha are required")
		return
	}
	g.mu.Lock()
	run := &CheckRun{ID: int64(len(g.runs) + 1), Name: body.Name, HeadSHA: body.HeadSHA, Status: "queued"}
	why := apply(run, body)
	if why == "" {
		g.runs = append(g.runs, run)
	}
	view := checkRunJSON(run, g.srv.URL, g.AppID)
	g.mu.Unlock()
	if why != "" {
		g.refuse(w, http.StatusUnprocessableEntity, why)
		return
	}
	writeJSON(w, http.StatusCreated, view)
}

func (g *GitHub) updateCheckRun(w http.ResponseWriter, r *http.Request) {
	if !g.authorized(w, r) {
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var body checkRunRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxCheckRunBody)).Decode(&body); err != nil {
		g.refuse(w, http.StatusUnprocessableEntity, "Invalid request")
		return
	}
	g.mu.Lock()
	var run *CheckRun
	if id >= 1 && int(id) <= len(g.runs) {
		run = g.runs[id-1]
	}
	why := "Not Found"
	if run != nil {
		copied := *run
		if why = apply(&copied, body); why == "" {
			*run = copied
		}
	}
	var view map[string]any
	if run != nil {
		view = checkRunJSON(run, g.srv.URL, g.AppID)
	}
	g.mu.Unlock()
	switch {
	case run == nil:
		g.refuse(w, http.StatusNotFound, why)
	case why != "":
		g.refuse(w, http.StatusUnprocessableEntity, why)
	default:
		writeJSON(w, http.StatusOK, view)
	}
}

// listCheckRuns answers GET /repos/{o}/{r}/commits/{ref}/check-runs[?check_name=], newest first.
func (g *GitHub) listCheckRuns(w http.ResponseWriter, r *http.Request) {
	if !g.authorized(w, r) {
		return
	}
	name := r.URL.Query().Get("check_name")
	g.mu.Lock()
	runs := []map[string]any{}
	for i := len(g.runs) - 1; i >= 0; i-- {
		if run := g.runs[i]; run.HeadSHA == r.PathValue("ref") && (name == "" || run.Name == name) {
			runs = append(runs, checkRunJSON(run, g.srv.URL, g.AppID))
		}
	}
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(runs), "check_runs": runs})
}

// apply changes run as body asks, or says why GitHub would refuse it (422).
func apply(run *CheckRun, body checkRunRequest) string {
	if body.Status != nil {
		switch *body.Status {
		case "queued", "in_progress", "completed":
			run.Status = *body.Status
		default:
			return "Invalid request: status " + strconv.Quote(*body.Status)
		}
	}
	if body.Conclusion != nil {
		switch *body.Conclusion {
		case "success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required":
			run.Conclusion, run.Status = *body.Conclusion, "completed"
		default:
			return "Invalid request: conclusion " + strconv.Quote(*body.Conclusion)
		}
	}
	if run.Status == "completed" && run.Conclusion == "" {
		return "Invalid request: conclusion is required when status is completed"
	}
	if body.DetailsURL != nil {
		run.DetailsURL = *body.DetailsURL
	}
	if body.ExternalID != nil {
		run.ExternalID = *body.ExternalID
	}
	if o := body.Output; o != nil {
		if o.Title == "" || o.Summary == "" {
			return "Invalid request: output needs a title and a summary"
		}
		if len([]rune(o.Summary)) > outputLimit || len([]rune(o.Text)) > outputLimit {
			return "Invalid request: output is longer than 65535 characters"
		}
		if len(o.Annotations) > 50 {
			return "Invalid request: more than 50 annotations"
		}
		for _, a := range o.Annotations {
			if a.Path == "" || a.StartLine < 1 || a.EndLine < a.StartLine || a.Message == "" {
				return "Invalid request: annotation needs path, start_line, end_line and message"
			}
			switch a.AnnotationLevel {
			case "notice", "warning", "failure":
			default:
				return "Invalid request: annotation_level " + strconv.Quote(a.AnnotationLevel)
			}
		}
		run.Title, run.Summary, run.Text = o.Title, o.Summary, o.Text
		run.Annotations = append(run.Annotations, o.Annotations...)
	}
	run.Writes++
	return ""
}

func checkRunJSON(run *CheckRun, base string, appID int64) map[string]any {
	v := map[string]any{
		"id": run.ID, "name": run.Name, "head_sha": run.HeadSHA, "status": run.Status,
		"details_url": run.DetailsURL, "external_id": run.ExternalID,
		"url":    base + "/repos/check-runs/" + strconv.FormatInt(run.ID, 10),
		"output": map[string]any{"title": run.Title, "summary": run.Summary, "annotations_count": len(run.Annotations)},
		"app":    map[string]any{"id": appID},
	}
	if run.Conclusion != "" {
		v["conclusion"] = run.Conclusion
		v["completed_at"] = time.Now().UTC().Format(time.RFC3339)
	}
	return v
}
