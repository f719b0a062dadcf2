package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
)

// TestWriteJSONMatchesEncoder holds writeJSON to the bytes encoding/json's Encoder writes, for
// the shapes of body the hooks answer with.
func TestWriteJSONMatchesEncoder(t *testing.T) {
	for _, v := range []any{
		map[string]string{"error": `payload refused: "ref" <script>&` + "\u2028"},
		map[string]string{"b": "2", "a": "1", "c": "\x01é"},
		stored{Jobs: []jobView{{ID: "0abc", App: "api", SHA: "9e2d"}, {ID: "0abd", App: "db", SHA: "9e2d"}}},
		stored{},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(v); err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		writeJSON(w, http.StatusAccepted, v)
		if diff := cmp.Diff(want.String(), w.Body.String()); diff != "" {
			t.Errorf("writeJSON(%v) (-encoding/json +got):\n%s", v, diff)
		}
		if got := w.Header().Get("Content-Type"); got != "application/json; charset=utf-8" {
			t.Errorf("content type %q", got)
		}
	}
}

// ghPushAfter is the commit github/push.json pushes.
const ghPushAfter = "9e2d5a8c4b7f61e0d3c2b1a09f8e7d6c5b4a3928"

// TestHooksRedelivery answers a redelivered hook whose jobs the queue stored before, in part or
// in whole: those jobs are marked duplicates without an id of their own (it would name no
// sync), and the log line says so.
func TestHooksRedelivery(t *testing.T) {
	body := readTestdata(t, "github/push.json") // changes apps/database: database, api, web
	for _, tt := range []struct {
		name    string
		fresh   map[string]bool
		want    []jobView
		outcome string
	}{
		{"all stored before", map[string]bool{},
			[]jobView{{App: "database", SHA: ghPushAfter, Duplicate: true}, {App: "api", SHA: ghPushAfter, Duplicate: true}, {App: "web", SHA: ghPushAfter, Duplicate: true}},
			"outcome=duplicate"},
		{"one new", map[string]bool{"api": true},
			[]jobView{{App: "database", SHA: ghPushAfter, Duplicate: true}, {ID: "job-2", App: "api", SHA: ghPushAfter}, {App: "web", SHA: ghPushAfter, Duplicate: true}},
			"outcome=enqueued"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hh := newHarness(t, testRepos("github", githubSecret))
			hh.queue.enqueue = func(_ context.Context, jobs []queue.Job) ([]queue.Job, error) {
				var fresh []queue.Job
				for _, j := range jobs {
					if tt.fresh[j.App] {
						fresh = append(fresh, j)
					}
				}
				return fresh, nil
			}
			rec := hh.post(t, "platform", githubHeaders("push", "d1", githubSecret, body), body)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body)
			}
			var got stored
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Jobs); diff != "" {
				t.Errorf("202 jobs (-want +got):\n%s", diff)
			}
			if !strings.Contains(hh.logs.String(), tt.outcome) {
				t.Errorf("log %q lacks %s", hh.logs, tt.outcome)
			}
		})
	}
}
