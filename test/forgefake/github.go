package forgefake

import (
	"fmt"
	"net/http"
)

// gitHubMaxStatuses is GitHub's cap on statuses per SHA and context; the next one is refused
// with 422, which ferry must treat as permanent.
const gitHubMaxStatuses = 1000

// gitHubDocs is the documentation link GitHub puts in error answers.
const gitHubDocs = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"

// gitHubStates are the states GitHub accepts.
var gitHubStates = map[string]bool{"error": true, "failure": true, "pending": true, "success": true}

// gitHubAPI is GitHub's (and GitHub Enterprise's) create-a-commit-status endpoint.
type gitHubAPI struct{}

var _ providerAPI = gitHubAPI{}

func (gitHubAPI) name() string { return GitHub }

// authorized accepts both documented forms: "Bearer <token>" and the older "token <token>".
func (gitHubAPI) authorized(r *http.Request, token string) bool {
	return tokenEqual(schemeToken(r, "Bearer", "token"), token)
}

func (gitHubAPI) unauthorized(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, map[string]string{
		"message":           "Bad credentials",
		"documentation_url": "https://docs.github.com/rest",
	})
}

func (gitHubAPI) repo(r *http.Request) string {
	return r.PathValue("owner") + "/" + r.PathValue("repo")
}

func (gitHubAPI) parse(r *http.Request, s *Status) (int, error) {
	var in statusFields
	if code, err := decodeJSON(r, &in); err != nil {
		return code, err
	}
	s.State, s.TargetURL, s.Description, s.Context = in.State, in.TargetURL, in.Description, in.Context
	if s.Context == "" {
		s.Context = "default" // documented default
	}
	return 0, nil
}

func (gitHubAPI) accept(w http.ResponseWriter, s Status, id int64, seen []Status) bool {
	if !gitHubStates[s.State] {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"message":           "Validation Failed",
			"errors":            []map[string]string{{"resource": "Status", "field": "state", "code": "invalid"}},
			"documentation_url": gitHubDocs,
		})
		return false
	}
	n := 0
	for _, o := range seen {
		if o.Provider == GitHub && o.Repo == s.Repo && o.SHA == s.SHA && o.Context == s.Context {
			n++
		}
	}
	if n >= gitHubMaxStatuses {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"message": "Validation Failed",
			"errors": []map[string]string{{
				"resource": "Status", "code": "custom",
				"message": "This SHA and context has reached the maximum number of statuses.",
			}},
			"documentation_url": gitHubDocs,
		})
		return false
	}
	now := timestamp()
	writeJSON(w, http.StatusCreated, map[string]any{
		"url":         fmt.Sprintf("/repos/%s/statuses/%s", s.Repo, s.SHA),
		"avatar_url":  "https://github.com/images/error/hubot_happy.gif",
		"id":          id,
		"node_id":     fmt.Sprintf("SC_fake%d", id),
		"state":       s.State,
		"description": s.Description,
		"target_url":  s.TargetURL,
		"context":     s.Context,
		"created_at":  now,
		"updated_at":  now,
		"creator":     map[string]any{"login": "ferry-bot", "id": 1, "type": "Bot"},
	})
	return true
}
