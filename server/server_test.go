package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/go-cmp/cmp"
)

// fakeRecords is a hand-written Records with function fields.
type fakeRecords struct {
	get      func(ctx context.Context, id string) (queue.Record, error)
	history  func(ctx context.Context, app string, limit int) ([]queue.Record, error)
	fullDiff func(id string) ([]byte, error)
}

func (f fakeRecords) Get(ctx context.Context, id string) (queue.Record, error) { return f.get(ctx, id) }
func (f fakeRecords) History(ctx context.Context, app string, limit int) ([]queue.Record, error) {
	return f.history(ctx, app, limit)
}

func sampleRecord() queue.Record {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	end := start.Add(1400 * time.Millisecond)
	return queue.Record{ID: "0abc", App: "api", Repo: "platform", Kind: queue.KindDeploy, Trigger: queue.TriggerPush,
		SHA: "0123456789abcdef0123456789abcdef01234567", State: queue.StateFailed, EnqueuedAt: start, StartedAt: &start, FinishedAt: &end,
		Message: "Deployment api/web: spec.replicas: Invalid value: -1",
		Error:   &queue.RecordError{Stage: "apply", Object: "Deployment api/web", File: "apps/api/deploy.yaml", Message: "spec.replicas: Invalid value: -1 <script>"},
		Objects: []queue.ObjectRecord{{Kind: "ConfigMap", Namespace: "api", Name: "settings", Action: "created"}}}
}

func newTestServer(t *testing.T, ready []Check) *httptest.Server {
	t.Helper()
	rec := sampleRecord()
	records := fakeRecords{
		get: func(_ context.Context, id string) (queue.Record, error) {
			if id == rec.ID {
				return rec, nil
			}
			return queue.Record{}, fmt.Errorf("sync %s: %w", id, queue.ErrNotFound)
		},
		history: func(_ context.Context, app string, limit int) ([]queue.Record, error) {
			if app == "api" {
				return []queue.Record{rec}, nil
			}
			return nil, nil
		},
	}
	s := New(Config{Records: records, Ready: ready, Logger: nil,
		Apps: []AppInfo{{Name: "api", Repo: "platform", Path: "apps/api", Branch: "main"}, {Name: "db", Repo: "platform", Path: "apps/db", Branch: "main"}}})
	ts := httptest.NewServer(s.Routes())
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPI(t *testing.T) {
	ts := newTestServer(t, nil)
	code, body := get(t, ts.URL+"/api/v1/syncs/0abc")
	if code != http.StatusOK {
		t.Fatalf("GET sync: %d %s", code, body)
	}
	var got queue.Record
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleRecord(), got); diff != "" {
		t.Errorf("sync record (-want +got):\n%s", diff)
	}
	if code, _ := get(t, ts.URL+"/api/v1/syncs/nope"); code != http.StatusNotFound {
		t.Errorf("unknown sync: %d, want 404", code)
	}

	code, body = get(t, ts.URL+"/api/v1/apps")
	if code != http.StatusOK {
		t.Fatalf("GET apps: %d", code)
	}
	var apps struct {
		Apps []appView `json:"apps"`
	}
	if err := json.Unmarshal([]byte(body), &apps); err != nil {
		t.Fatal(err)
	}
	if len(apps.Apps) != 2 || apps.Apps[0].Name != "api" || apps.Apps[0].LastSync == nil || apps.Apps[0].LastSync.ID != "0abc" || apps.Apps[1].LastSync != nil {
		t.Errorf("apps = %+v", apps.Apps)
	}
	if code, _ := get(t, ts.URL+"/api/v1/apps/api"); code != http.StatusOK {
		t.Errorf("GET app: %d", code)
	}
	if code, _ := get(t, ts.URL+"/api/v1/apps/missing"); code != http.StatusNotFound {
		t.Errorf("unknown app: %d, want 404", code)
	}
}

func TestSyncPageExplainsFailure(t *testing.T) {
	ts := newTestServer(t, nil)
	code, body := get(t, ts.URL+"/syncs/0abc")
	if code != http.StatusOK {
		t.Fatalf("page: %d", code)
	}
	for _, want := range []string{"Deployment api/web", "apps/api/deploy.yaml", "spec.replicas: Invalid value: -1 &lt;script&gt;", "0123456789abcdef0123456789abcdef01234567", "1.4s", "settings"} {
		if !strings.Contains(body, want) {
			t.Errorf("page does not show %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("page does not escape the apiserver's message")
	}
	if code, _ := get(t, ts.URL+"/syncs/nope"); code != http.StatusNotFound {
		t.Errorf("unknown sync page: %d, want 404", code)
	}
	if code, body := get(t, ts.URL+"/"); code != http.StatusOK || !strings.Contains(body, "/syncs/0abc") {
		t.Errorf("index: %d, links to the last sync: %v", code, strings.Contains(body, "/syncs/0abc"))
	}
}

func TestReadiness(t *testing.T) {
	healthy := newTestServer(t, []Check{{Name: "nats", Run: func(context.Context) error { return nil }}})
	if code, _ := get(t, healthy.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("readyz with every check passing: %d", code)
	}
	broken := newTestServer(t, []Check{
		{Name: "nats", Run: func(context.Context) error { return errors.New("nats is RECONNECTING") }},
		{Name: "kubernetes", Run: func(context.Context) error { return nil }},
	})
	code, body := get(t, broken.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "RECONNECTING") {
		t.Errorf("readyz with nats down: %d %s", code, body)
	}
	if code, _ := get(t, broken.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("healthz must not depend on peers: %d", code)
	}
	if code, _ := get(t, healthy.URL+"/metrics"); code != http.StatusOK {
		t.Errorf("metrics: %d", code)
	}
}

// TestAccessLog checks the debug access line (request id, proxied client address) and that
// without debug logging requests pass through untouched.
func TestAccessLog(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		t.Run(level.String(), func(t *testing.T) {
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))
			var sawID string
			hooks := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sawID = middleware.GetReqID(r.Context())
				w.WriteHeader(http.StatusAccepted)
			})
			s := New(Config{Hooks: hooks, Logger: log})
			req := httptest.NewRequest(http.MethodPost, "/hooks/platform", nil)
			req.Header.Set("X-Request-Id", "req-7f3a")
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			w := httptest.NewRecorder()
			s.Routes().ServeHTTP(w, req)
			if w.Code != http.StatusAccepted {
				t.Fatalf("status %d", w.Code)
			}
			line := logs.String()
			if level == slog.LevelInfo {
				if line != "" || sawID != "" {
					t.Fatalf("info level: log %q, request id %q; want neither", line, sawID)
				}
				return
			}
			for _, want := range []string{"msg=http", "method=POST", "path=/hooks/platform", "status=202", "req=req-7f3a", "remote=203.0.113.9"} {
				if !strings.Contains(line, want) {
					t.Errorf("access line %q lacks %q", line, want)
				}
			}
			if sawID != "req-7f3a" {
				t.Errorf("handler saw request id %q, want req-7f3a", sawID)
			}
		})
	}
}

// TestPagesSecurityHeaders holds every page to a strict policy the page itself fits: the policy
// allows no inline style or script, so a page must carry none, and the stylesheet it links is
// served by ferry (style-src 'self').
func TestPagesSecurityHeaders(t *testing.T) {
	ts := newTestServer(t, nil)
	inline := regexp.MustCompile(`(?i)<style|\sstyle\s*=|\son[a-z]+\s*=|javascript:`)
	// A script may only be ferry's own file, loaded by address, with nothing inline.
	scripts := regexp.MustCompile(`(?i)<script[^>]*>[^<]*</script>|<script`)
	ownScript := regexp.MustCompile(`^<script src="/static/ferry\.js\?v=[0-9a-f]+" defer></script>$`)
	stylesheet := regexp.MustCompile(`<link rel="stylesheet" href="([^"]+)">`)
	for _, path := range []string{"/", "/apps/api", "/apps/nope", "/login", "/syncs/0abc", "/syncs/nope", "/api/v1/apps", "/healthz"} {
		t.Run(path, func(t *testing.T) {
			resp, err := http.Get(ts.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for name, want := range map[string]string{
				"Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
				"X-Frame-Options":         "DENY",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "same-origin",
			} {
				if got := resp.Header.Values(name); len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				return
			}
			if m := inline.FindString(string(body)); m != "" {
				t.Errorf("page carries %q, which the policy blocks", m)
			}
			for _, tag := range scripts.FindAllString(string(body), -1) {
				if !ownScript.MatchString(tag) {
					t.Errorf("page carries script %q; only ferry's own file, by address, may run", tag)
				}
			}
			links := stylesheet.FindAllStringSubmatch(string(body), -1)
			if len(links) != 1 {
				t.Fatalf("page links %d stylesheets, want 1", len(links))
			}
			href := links[0][1]
			if !strings.HasPrefix(href, "/") || strings.HasPrefix(href, "//") {
				t.Fatalf("stylesheet %q is not served by ferry itself", href)
			}
			css, err := http.Get(ts.URL + href)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(css.Body)
			css.Body.Close()
			if css.StatusCode != http.StatusOK || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") || !strings.Contains(string(b), ".state{") {
				t.Fatalf("stylesheet %s: %d %s, %d bytes", href, css.StatusCode, css.Header.Get("Content-Type"), len(b))
			}
		})
	}
}
