package handlers

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/queue/queuetest"
)

// newQueueHooks serves repos' hooks onto a real embedded JetStream in a temporary directory,
// the queue ferry runs, so that de-duplication is the stream's own.
func newQueueHooks(t *testing.T, repos []Repo, now func() time.Time) (*Hooks, http.Handler) {
	t.Helper()
	q := queuetest.Start(t)
	h := NewHooks(repos, q, HooksOptions{Logger: slog.New(slog.DiscardHandler), Now: now, NewID: queue.NewID})
	r := chi.NewRouter()
	r.Method(http.MethodPost, "/hooks/{repo}", h)
	return h, r
}

func postTo(t *testing.T, srv http.Handler, repo string, h http.Header, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/hooks/"+repo, bytes.NewReader(body))
	req.Header = h
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

// TestGitLabSigningDeduplicatesOnSignedID replays a delivery signed with a GitLab signing token
// with new unsigned ids (Idempotency-Key, X-Gitlab-Event-UUID) inside the de-duplication
// window: the stream must see the same delivery, so no new job is made. A new signed
// webhook-id is a new delivery.
func TestGitLabSigningDeduplicatesOnSignedID(t *testing.T) {
	_, srv := newQueueHooks(t, testRepos("gitlab", gitlabSigning), func() time.Time { return testNow })
	body := readTestdata(t, "gitlab/push.json")
	ts := testNow.Add(-30 * time.Second)
	send := func(webhookID, unsigned string) stored {
		t.Helper()
		h := gitlabSigningHeaders(t, "Push Hook", webhookID, ts, gitlabSigning, body)
		h.Set("Idempotency-Key", unsigned)
		h.Set("X-Gitlab-Event-UUID", unsigned)
		rec := postTo(t, srv, "platform", h, body)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status %d, want 202: %s", rec.Code, rec.Body)
		}
		var got stored
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Jobs) == 0 {
			t.Fatalf("no jobs: %s", rec.Body)
		}
		return got
	}
	first := send("msg_1", "uuid-1")
	for _, j := range first.Jobs {
		if j.Duplicate {
			t.Fatalf("first delivery marked duplicate: %+v", first.Jobs)
		}
	}
	replay := send("msg_1", "uuid-replayed")
	for _, j := range replay.Jobs {
		if !j.Duplicate {
			t.Fatalf("a replay with new unsigned ids made job %+v", j)
		}
	}
	again := send("msg_2", "uuid-replayed")
	for _, j := range again.Jobs {
		if j.Duplicate {
			t.Fatalf("a new signed webhook-id was taken for a duplicate: %+v", again.Jobs)
		}
	}
}

// TestGitLabTokenModeDeliveryID keeps GitLab's idempotency key as the id of secret-token hooks,
// where nothing is signed.
func TestGitLabTokenModeDeliveryID(t *testing.T) {
	h := gitlabTokenHeaders("Push Hook", "uuid-7", gitlabToken)
	h.Set("webhook-id", "msg_other")
	ev, err := (gitlabProvider{}).parse(h, readTestdata(t, "gitlab/push.json"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.DeliveryID != "uuid-7" {
		t.Fatalf("delivery id %q, want the Idempotency-Key uuid-7", ev.DeliveryID)
	}
}
