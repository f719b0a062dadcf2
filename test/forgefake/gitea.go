package forgefake

import (
	"fmt"
	"net/http"
)

// giteaVersion is what GET /api/v1/version reports, for clients that check it first.
const giteaVersion = "1.24.0"

// giteaStates are the commit status states Gitea accepts.
var giteaStates = map[string]bool{"pending": true, "success": true, "error": true, "failure": true, "warning": true}

// giteaAPI is Gitea's (and Forgejo's) create-a-commit-status endpoint.
type giteaAPI struct{}

var _ providerAPI = giteaAPI{}

func (giteaAPI) name() string { return Gitea }

// authorized accepts "token <t>", Gitea's documented form, and "Bearer <t>", which it also takes.
func (giteaAPI) authorized(r *http.Request, token string) bool {
	return tokenEqual(schemeToken(r, "token", "Bearer"), token)
}

func (giteaAPI) unauthorized(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "token is required", "url": "/api/swagger"})
}

func (giteaAPI) repo(r *http.Request) string { return r.PathValue("owner") + "/" + r.PathValue("repo") }

func (giteaAPI) parse(r *http.Request, s *Status) (int, error) {
	var in statusFields
	if code, err := decodeJSON(r, &in); err != nil {
		return code, err
	}
	s.State, s.TargetURL, s.Description, s.Context = in.State, in.TargetURL, in.Description, in.Context
	return 0, nil
}

func (giteaAPI) accept(w http.ResponseWriter, s Status, id int64, _ []Status) bool {
	if !giteaStates[s.State] {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{
			"message": fmt.Sprintf("[State]: invalid commit status state %q", s.State),
			"url":     "/api/swagger",
		})
		return false
	}
	now := timestamp()
	// Gitea names the state "status" in its answer.
	writeJSON(w, http.StatusCreated, map[string]any{
		"id":          id,
		"status":      s.State,
		"target_url":  s.TargetURL,
		"description": s.Description,
		"url":         fmt.Sprintf("/api/v1/repos/%s/statuses/%s", s.Repo, s.SHA),
		"context":     s.Context,
		"creator":     map[string]any{"id": 1, "login": "ferry-bot"},
		"created_at":  now,
		"updated_at":  now,
	})
	return true
}
