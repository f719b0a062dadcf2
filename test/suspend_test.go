package test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// steer posts to f's write API (suspend, resume, sync) with the API token and returns the
// status code and the answer.
func (f *ferry) steer(t *testing.T, app, action, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL+"/api/v1/apps/"+app+"/"+action, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// appSuspension reads whether app is suspended, and by whom, from f's API.
func (f *ferry) appSuspension(t *testing.T, app string) (bool, *queue.Suspension) {
	t.Helper()
	var v struct {
		Suspended  bool              `json:"suspended"`
		Suspension *queue.Suspension `json:"suspension"`
	}
	if code := f.getJSON(t, "/api/v1/apps/"+app, &v); code != http.StatusOK {
		t.Fatalf("GET app %s: %d", app, code)
	}
	return v.Suspended, v.Suspension
}

// metric returns the line of /metrics that starts with series, or "".
func (f *ferry) metric(t *testing.T, series string) string {
	t.Helper()
	resp, err := http.Get(f.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return line
		}
	}
	return ""
}

// waitLog waits until f's log holds n lines containing every one of subs.
func waitLog(t *testing.T, f *ferry, n int, within time.Duration, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := 0
		for _, line := range strings.Split(f.logs.String(), "\n") {
			if contains(line, subs...) {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry's log has %d lines with %q after %s, want %d", got, subs, within, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSuspendAndResume: a suspended app takes a push without applying it: its commit gets the
// final status "suspended, not applied", in the state each forge shows as no failure, and the
// cluster keeps what it had, through polls, self-heal and a restart of ferry. A manual sync is
// refused unless forced. Resuming applies the branch head, and that commit's status follows.
func TestSuspendAndResume(t *testing.T) {
	for _, tc := range []struct {
		provider, state string
		push            func(t *testing.T, delivery, before, sha string) hook
	}{
		// GitHub and Gitea have no neutral state: success with the description; GitLab skipped.
		{"github", "success", func(t *testing.T, d, b, s string) hook {
			return githubPush(t, hookSecret, d, b, s, "apps/web/config.yaml")
		}},
		{"gitlab", "skipped", func(t *testing.T, d, b, s string) hook {
			return gitlabPush(t, hookSecret, d, b, s, "apps/web/config.yaml")
		}},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			ns := "e2e-suspend-" + tc.provider
			cs := kube(t)
			git := gitserver.New(t)
			repo := git.CreateRepo(t, "acme/platform")
			first := repo.Commit(t, "main", "web: first", webApp(ns, "hello"))
			forge := forgefake.New(t, forgeToken)
			// Polled every 2s and self-healing, so that both would sync the app were it not
			// suspended.
			cfg := forgeConfig(tc.provider, repo.CloneURL(), forge.URL(), "2s", e2eApp{name: "web", path: "apps/web", ns: ns, selfHeal: true})
			f := startFerry(t, cfg, ferryEnv, "")
			if st := finalStatus(t, forge, first, "ferry/web"); st.State != "success" {
				t.Fatalf("start-up sync: %+v", st)
			}
			greeting := func() string {
				cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return cm.Data["greeting"]
			}

			code, v := f.steer(t, "web", "suspend", `{"reason": "incident 7"}`)
			if code != http.StatusOK || v["suspended"] != true || v["by"] != "API_TOKEN" || v["reason"] != "incident 7" {
				t.Fatalf("suspend: %d %v", code, v)
			}
			// The gauge follows a watch of the shared store.
			waitMetric(t, f, `ferry_app_suspended{app="web"}`, "1")

			// A push: pending, then the final "suspended, not applied"; nothing applied.
			second := repo.Commit(t, "main", "web: second", webApp(ns, "bonjour"))
			if code, body := f.send(t, "platform", tc.push(t, "d-suspend-2", first, second)); code != http.StatusAccepted {
				t.Fatalf("push hook: %d %s", code, body)
			}
			st := waitFinal(t, forge, second, "ferry/web")
			last := st[len(st)-1]
			if last.State != tc.state || last.Description != "suspended, not applied" {
				t.Fatalf("status on the pushed commit: %+v, want %s \"suspended, not applied\"", last, tc.state)
			}
			rec := waitRecord(t, f, "web", 30*time.Second, "suspended", func(r queue.Record) bool { return r.SHA == second && r.State.Terminal() })
			if rec.State != queue.StateSuspended {
				t.Errorf("record of the push: %+v", rec)
			}
			if g := greeting(); g != "hello" {
				t.Fatalf("a suspended app was applied: greeting %q", g)
			}
			// Polls (the head moved) and self-heal pass it over, several times.
			waitLog(t, f, 3, 60*time.Second, "app suspended; not queued", "app=web")

			// A manual sync is refused, saying why.
			if code, v := f.steer(t, "web", "sync", ""); code != http.StatusConflict || !strings.Contains(v["error"].(string), "suspended by API_TOKEN") {
				t.Errorf("manual sync while suspended: %d %v", code, v)
			}

			if tc.provider == "github" {
				// Restarted on the same data directory, ferry still holds the suspension: start-up
				// passes the app over.
				f.Stop(t)
				f = startFerry(t, cfg, ferryEnv, f.DataDir)
				waitLog(t, f, 1, 60*time.Second, "app suspended; not queued", "app=web")
				if suspended, sus := f.appSuspension(t, "web"); !suspended || sus.By != "API_TOKEN" || sus.Reason != "incident 7" {
					t.Fatalf("after restart: suspended=%v %+v", suspended, sus)
				}
				waitMetric(t, f, `ferry_app_suspended{app="web"}`, "1")
				if g := greeting(); g != "hello" {
					t.Fatalf("start-up applied a suspended app: greeting %q", g)
				}
				for _, r := range f.history(t, "web") {
					if r.Trigger == queue.TriggerStartup && r.StartedAt != nil && r.SHA == second {
						t.Errorf("start-up ran a sync of the suspended app: %+v", r)
					}
				}
			}

			// Resume: the head is applied, and the pushed commit's status follows.
			code, v = f.steer(t, "web", "resume", "")
			id, _ := v["id"].(string)
			if code != http.StatusAccepted || v["app"] != "web" || v["sha"] != second || id == "" {
				t.Fatalf("resume: %d %v", code, v)
			}
			if rec := waitSync(t, f, id); rec.State != queue.StateSucceeded || rec.Trigger != queue.TriggerResume || rec.SHA != second {
				t.Fatalf("resume's sync: %+v", rec)
			}
			if g := greeting(); g != "bonjour" {
				t.Errorf("after resume: greeting %q, want bonjour", g)
			}
			if st := finalStatus(t, forge, second, "ferry/web"); st.State != "success" || !strings.HasPrefix(st.Description, "applied ") {
				t.Errorf("status on the head after resume: %+v", st)
			}
			if suspended, _ := f.appSuspension(t, "web"); suspended {
				t.Error("still suspended after resume")
			}
			waitMetric(t, f, `ferry_app_suspended{app="web"}`, "0")
			assertAllFinal(t, forge)
		})
	}
}

// TestSuspendAcrossReplicas: two replicas on a three-node NATS cluster (buckets with three
// copies) share one suspension: made on one, it holds at once for a push taken by the other,
// and resumed on the other, the head is applied.
func TestSuspendAcrossReplicas(t *testing.T) {
	ns := "e2e-suspend-replicas"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hello"))
	forge := forgefake.New(t, forgeToken)
	nodes := startNATSCluster(t, 3)
	cfg := appsConfig(repo.CloneURL(), forge.URL(), "1h", e2eApp{name: "web", path: "apps/web", ns: ns})
	a := startFerry(t, cfg, ferryEnv, "", "--nats-url", natsURLs(nodes[0], nodes[1], nodes[2]), "--nats-replicas", "3", "--worker-name", "replica-a")
	b := startFerry(t, cfg, ferryEnv, "", "--nats-url", natsURLs(nodes[2], nodes[1], nodes[0]), "--nats-replicas", "3", "--worker-name", "replica-b")
	if st := finalStatus(t, forge, first, "ferry/web"); st.State != "success" {
		t.Fatalf("start-up sync: %+v", st)
	}

	if code, v := a.steer(t, "web", "suspend", `{"reason": "freeze"}`); code != http.StatusOK || v["suspended"] != true {
		t.Fatalf("suspend on a: %d %v", code, v)
	}
	// Read through the bucket's leader: the other replica sees it as soon as a answered.
	if suspended, sus := b.appSuspension(t, "web"); !suspended || sus.Reason != "freeze" {
		t.Fatalf("b sees suspended=%v %+v right after a suspended", suspended, sus)
	}
	if code, v := b.steer(t, "web", "sync", ""); code != http.StatusConflict {
		t.Errorf("manual sync on b: %d %v, want 409", code, v)
	}
	waitMetric(t, b, `ferry_app_suspended{app="web"}`, "1")

	second := repo.Commit(t, "main", "web: second", webApp(ns, "bonjour"))
	if code, body := b.send(t, "platform", githubPush(t, hookSecret, "d-replicas-2", first, second, "apps/web/config.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook to b: %d %s", code, body)
	}
	if st := finalStatus(t, forge, second, "ferry/web"); st.State != "success" || st.Description != "suspended, not applied" {
		t.Fatalf("status on the pushed commit: %+v", st)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "hello" {
		t.Fatalf("ConfigMap %v %v, want it untouched", cm.Data, err)
	}

	code, v := b.steer(t, "web", "resume", "")
	id, _ := v["id"].(string)
	if code != http.StatusAccepted || id == "" {
		t.Fatalf("resume on b: %d %v", code, v)
	}
	if rec := waitSync(t, a, id); rec.State != queue.StateSucceeded || rec.SHA != second {
		t.Fatalf("resume's sync, read on a: %+v", rec)
	}
	cm, err = cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "bonjour" {
		t.Errorf("after resume: ConfigMap %v %v", cm.Data, err)
	}
	if suspended, _ := a.appSuspension(t, "web"); suspended {
		t.Error("a still sees the app suspended")
	}
	waitMetric(t, a, `ferry_app_suspended{app="web"}`, "0")
	assertAllFinal(t, forge)
}

// waitMetric waits until the series of /metrics has value.
func waitMetric(t *testing.T, f *ferry, series, value string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		line := f.metric(t, series)
		if strings.HasSuffix(line, " "+value) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q after 30s, want %s", series, line, value)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
