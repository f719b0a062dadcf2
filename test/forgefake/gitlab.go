package forgefake

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// gitLabStates are the states GitLab's commit status API accepts, each with the state machine
// event it fires on the job behind the status ("running" enqueues first if needed).
var gitLabStates = map[string]string{
	"pending":  "enqueue",
	"running":  "run",
	"success":  "succeed",
	"failed":   "drop",
	"canceled": "cancel",
	"skipped":  "skip",
}

// gitLabAPI is GitLab's set-the-pipeline-status-of-a-commit endpoint.
type gitLabAPI struct{ f *Forge }

var _ providerAPI = gitLabAPI{}

func (gitLabAPI) name() string { return GitLab }

// authorized accepts the PRIVATE-TOKEN header and, as GitLab does for personal and OAuth
// tokens, "Authorization: Bearer <token>".
func (gitLabAPI) authorized(r *http.Request, token string) bool {
	if t := r.Header.Get("PRIVATE-TOKEN"); t != "" {
		return tokenEqual(t, token)
	}
	return tokenEqual(schemeToken(r, "Bearer"), token)
}

func (gitLabAPI) unauthorized(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "401 Unauthorized"})
}

// repo is the project id from the path: GitLab takes the numeric id or the URL-escaped path
// (group%2Fproject), which the router has already unescaped.
func (gitLabAPI) repo(r *http.Request) string { return r.PathValue("id") }

// parse takes the parameters from a JSON body, a form body or the query string: GitLab's API
// accepts all three and clients differ in which they use.
func (gitLabAPI) parse(r *http.Request, s *Status) (int, error) {
	var in statusFields
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		if code, err := decodeJSON(r, &in); err != nil {
			return code, err
		}
	}
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", maxBody)
		}
		return http.StatusBadRequest, fmt.Errorf("parse parameters: %w", err)
	}
	for _, p := range []struct {
		dst  *string
		name string
	}{
		{&in.State, "state"}, {&in.Name, "name"}, {&in.Context, "context"},
		{&in.TargetURL, "target_url"}, {&in.Description, "description"}, {&in.Ref, "ref"},
	} {
		if *p.dst == "" {
			*p.dst = r.Form.Get(p.name)
		}
	}
	if in.State == "" {
		return http.StatusBadRequest, errors.New("state is missing")
	}
	s.State, s.TargetURL, s.Description = in.State, in.TargetURL, in.Description
	// name wins over its alias context; both default to "default".
	s.Context = in.Name
	if s.Context == "" {
		s.Context = in.Context
	}
	if s.Context == "" {
		s.Context = "default"
	}
	return 0, nil
}

// accept runs GitLab's state machine. A status that is pending or running is updated in place,
// and GitLab refuses an update its state machine has no transition for, such as pending twice
// or running twice in a row for one sha and name, with 400 "Cannot transition status via :run
// from :running". A finished status (success, failed, canceled, skipped) is never updated: the
// next post starts a new job, so any state is accepted after it.
func (a gitLabAPI) accept(w http.ResponseWriter, s Status, id int64, seen []Status) bool {
	event, ok := gitLabStates[s.State]
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "state does not have a valid value"})
		return false
	}
	current := "created" // a new job
	for i := len(seen) - 1; i >= 0; i-- {
		o := seen[i]
		if o.Provider == GitLab && o.Repo == s.Repo && o.SHA == s.SHA && o.Context == s.Context {
			if o.State == "pending" || o.State == "running" {
				current = o.State
			}
			break
		}
	}
	if (s.State == "pending" && current != "created") || (s.State == "running" && current == "running") {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"message": fmt.Sprintf("Cannot transition status via :%s from :%s", event, current),
		})
		return false
	}
	now := timestamp()
	var started, finished any
	if s.State != "pending" {
		started = now
	}
	if s.State != "pending" && s.State != "running" {
		finished = now
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"id":            id,
		"sha":           s.SHA,
		"ref":           nil,
		"status":        s.State,
		"name":          s.Context,
		"target_url":    nullable(s.TargetURL),
		"description":   nullable(s.Description),
		"created_at":    now,
		"started_at":    started,
		"finished_at":   finished,
		"allow_failure": false,
		"coverage":      nil,
		"pipeline_id":   1,
		"author": map[string]any{
			"id": 1, "username": "ferry-bot", "name": "ferry", "state": "active",
			"web_url": strings.TrimSuffix(a.f.URL(), "/") + "/ferry-bot",
		},
	})
	return true
}

// nullable turns an empty string into JSON null, as GitLab answers absent optional fields.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
