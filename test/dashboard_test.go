package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// browserStep bounds one step of the browser test (a navigation, a click, a wait).
const browserStep = 2 * time.Minute

// chromium finds Debian's Chromium: $FERRY_CHROMIUM (which CI sets, so a missing browser fails
// there), else /usr/bin/chromium; without either the test is skipped.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FERRY_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("FERRY_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no Chromium here: install Debian's chromium package (apt-get install chromium) or set FERRY_CHROMIUM to run the dashboard's browser test")
	return ""
}

// newBrowser starts a headless Chromium for the test, as root needs it (no sandbox) and with
// nothing that reaches past this machine (no background networking, QUIC, component updates).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.WithoutCancel(t.Context()), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no deadline on it
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// do runs browser steps within browserStep.
func do(t *testing.T, browser context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, browserStep)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page within browserStep.
func eval[T any](t *testing.T, browser context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits, within browserStep, until the page's expression is true, without reloading it.
func waitFor(t *testing.T, browser context.Context, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, browserStep+10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(browserStep))); err != nil {
		body, _ := chromedp.Run(context.WithoutCancel(browser), chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\npage:\n%s", what, err, body)
	}
}

// TestDashboardInBrowser drives the dashboard in a real Chromium against the ferry binary, a real
// apiserver and git: the app list and graph, sign-in, the sync button, a sync followed live from
// queued to success over server-sent events, and the refusals of forged requests.
func TestDashboardInBrowser(t *testing.T) {
	browser := newBrowser(t)
	ns := "e2e-dashboard"
	cs := kube(t)
	ensureNamespace(t, cs, ns)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	files := gatedApp("one", false)
	for k, v := range webApp("e2e-dashboard-web", "hi") {
		files[k] = v
	}
	first := repo.Commit(t, "main", "slow and web: first", files)
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, appsConfig(repo.CloneURL(), forge.URL(), "1h",
		e2eApp{name: "slow", path: "apps/slow", ns: ns, timeout: "4m"},
		e2eApp{name: "web", path: "apps/web", ns: "e2e-dashboard-web", dependsOn: []string{"slow"}}), ferryEnv, "")
	waitFinal(t, forge, first, "ferry/slow")
	waitFinal(t, forge, first, "ferry/web")

	// Anyone may read: the list with states and last commits, and the graph.
	do(t, browser, "load the dashboard", chromedp.Navigate(f.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#apps`)))
	if st := eval[string](t, browser, `document.querySelector('#apps tr[data-app="slow"] .cell-state').textContent`); !strings.Contains(st, "succeeded") {
		t.Errorf("slow's state on the dashboard: %q, want succeeded", st)
	}
	if sha := eval[string](t, browser, `document.querySelector('#apps tr[data-app="slow"] .cell-commit').textContent`); sha != first[:7] {
		t.Errorf("slow's last commit: %q, want %s", sha, first[:7])
	}
	if n := eval[int](t, browser, `document.querySelectorAll('svg a.node').length + document.querySelectorAll('svg path.edge').length`); n != 3 {
		t.Errorf("the graph draws %d nodes and edges, want 2 apps and 1 edge", n)
	}
	// On a phone the list fits the screen: nothing scrolls sideways.
	do(t, browser, "phone viewport", chromedp.EmulateViewport(375, 740), chromedp.Navigate(f.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#apps`)))
	if wide := eval[int](t, browser, `document.documentElement.scrollWidth - window.innerWidth`); wide > 0 {
		t.Errorf("on a 375px-wide screen the dashboard scrolls %dpx sideways", wide)
	}
	// FERRY_SCREENSHOTS=<dir> keeps a phone-sized and a desktop-sized picture of the dashboard there.
	if os.Getenv("FERRY_SCREENSHOTS") != "" {
		for _, w := range []int64{375, 1200} {
			do(t, browser, "viewport", chromedp.EmulateViewport(w, 900), chromedp.Navigate(f.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#apps`)))
			ctx, cancel := context.WithTimeout(browser, browserStep)
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			cancel()
			if err == nil {
				_ = os.WriteFile(fmt.Sprintf("%s/dashboard-%d.png", os.Getenv("FERRY_SCREENSHOTS"), w), png, 0o644)
			}
		}
	}
	do(t, browser, "desktop viewport", chromedp.EmulateViewport(1200, 900), chromedp.Navigate(f.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#apps`)))

	// The filter works in the page, without a round trip, and keeps its address.
	do(t, browser, "filter", chromedp.SendKeys(chromedp.CSS(`#f-q`), "web"))
	waitFor(t, browser, "the filter hides slow", `document.querySelector('#apps tr[data-app="slow"]').hidden && !document.querySelector('#apps tr[data-app="web"]').hidden && location.search === "?q=web"`)

	// Without signing in there are no buttons, and a POST is refused.
	do(t, browser, "open the app page", chromedp.Navigate(f.URL+"/apps/slow"), chromedp.WaitVisible(chromedp.CSS(`#steer-title`)))
	if n := eval[int](t, browser, `document.querySelectorAll('form[action="/apps/slow/sync"], #suspend-button').length`); n != 0 {
		t.Errorf("an anonymous page offers %d buttons", n)
	}
	anon := postDashboard(t, f.URL+"/apps/slow/sync", f.URL, "")
	if anon != http.StatusForbidden {
		t.Errorf("anonymous sync POST: %d, want 403", anon)
	}

	// Sign in with the API token.
	do(t, browser, "sign in",
		chromedp.Navigate(f.URL+"/login?next=/apps/slow"),
		chromedp.SendKeys(chromedp.CSS(`#token`), apiToken),
		chromedp.Click(chromedp.CSS(`main button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#sync-button`)))
	if who := eval[string](t, browser, `document.querySelector('.who').textContent`); !strings.Contains(who, "signed in as") {
		t.Errorf("after sign-in the header says %q", who)
	}
	if strings.Contains(eval[string](t, browser, `document.cookie`), "ferry_session") {
		t.Error("the session cookie is readable by script (HttpOnly missing)")
	}
	before := len(f.history(t, "slow"))

	// A forged POST from a page of ferry's origin, with the session but without the CSRF token,
	// and one from another origin (same site: the session cookie goes along) are refused.
	if code := eval[int](t, browser, `fetch("/apps/slow/sync", {method: "POST", body: new URLSearchParams({revision: ""}), redirect: "manual"}).then(r => r.status)`, chromedp.EvalAwaitPromise); code != http.StatusForbidden {
		t.Errorf("same-origin POST without the CSRF token: %d, want 403", code)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/apps/slow/sync"><input name="csrf" value="forged"></form><script>document.forms[0].submit()</script>`, f.URL)
	}))
	t.Cleanup(evil.Close)
	do(t, browser, "visit a forging page", chromedp.Navigate(evil.URL))
	waitFor(t, browser, "the forged form is refused", `location.href.endsWith("/apps/slow/sync") && document.body.innerText.includes("not sent from ferry")`)
	if after := len(f.history(t, "slow")); after != before {
		t.Fatalf("forged requests made %d syncs", after-before)
	}

	// A second tab keeps the dashboard open: its list follows the syncs below as they happen.
	board, closeBoard := chromedp.NewContext(browser)
	t.Cleanup(closeBoard)
	if err := chromedp.Do(board); err != nil { // opens the tab, with no deadline on it
		t.Fatalf("open a tab: %v", err)
	}
	do(t, board, "keep the dashboard open", chromedp.Navigate(f.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#apps`)))
	waitFor(t, board, "the dashboard listens for syncs", `!document.querySelector('#live-note').hidden`)
	eval[bool](t, board, `(window.ferryTestMark = "no reload", true)`)

	// A commit that adds a Pod which stays unready until the test says so: press sync and follow
	// the sync live on its page, from queued (or running) to success, without a reload.
	second := repo.Commit(t, "main", "slow: add the gated pod", gatedApp("two", true))
	do(t, browser, "press sync",
		chromedp.Navigate(f.URL+"/apps/slow"),
		chromedp.WaitVisible(chromedp.CSS(`#sync-button`)),
		chromedp.Click(chromedp.CSS(`#sync-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#sync[data-id]`)))
	id := eval[string](t, browser, `document.querySelector('#sync').dataset.id`)
	if loc := eval[string](t, browser, `location.pathname`); loc != "/syncs/"+id {
		t.Fatalf("sync pressed: landed on %s", loc)
	}
	rec := waitRecord(t, f, "slow", 30*time.Second, "made by the button", func(r queue.Record) bool { return r.ID == id })
	if rec.Trigger != queue.TriggerManual || rec.SHA != second {
		t.Errorf("the button's sync: trigger %s sha %s, want manual %s", rec.Trigger, short7(rec.SHA), short7(second))
	}
	initial := eval[string](t, browser, `document.querySelector('#sync-state').textContent.trim()`)
	if !strings.Contains(initial, "queued") && !strings.Contains(initial, "running") {
		t.Fatalf("the sync page loaded with state %q; the gated sync cannot have ended", initial)
	}
	t.Logf("sync page loaded with state %q", initial)
	eval[bool](t, browser, `(window.ferryTestMark = "no reload", true)`)
	waitFor(t, browser, "the page follows the sync live", `document.querySelector('#live-status').textContent.includes("live")`)
	waitPod(t, cs, ns, "gate")
	waitFor(t, browser, "the page shows the sync running", `document.querySelector('#sync-state').textContent.includes("running")`)

	// web depends on slow: its sync, pressed now, waits queued until slow's ends. Its page
	// follows it from queued to success, live.
	tab := browser
	do(t, tab, "press sync of web",
		chromedp.Navigate(f.URL+"/apps/web"),
		chromedp.WaitVisible(chromedp.CSS(`#sync-button`)),
		chromedp.Click(chromedp.CSS(`#sync-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#sync[data-id]`)))
	// Every state the page shows from now on, in order, as the page's own script changes it.
	eval[bool](t, tab, `(window.ferryTestMark = "no reload", window.ferryStates = [document.querySelector('#sync-state').textContent.trim()], new MutationObserver(() => window.ferryStates.push(document.querySelector('#sync-state').textContent.trim())).observe(document.querySelector('#sync-state'), {childList: true, subtree: true, characterData: true}), true)`)
	if initial := eval[string](t, tab, `window.ferryStates[0]`); !strings.Contains(initial, "queued") {
		t.Fatalf("web's sync page loaded with state %q, want queued behind slow", initial)
	}

	markPodReady(t, cs, ns, "gate")
	waitFor(t, tab, "web's page shows its sync succeeded", `document.querySelector('#sync-state').textContent.includes("succeeded") && document.querySelector('#live-status').textContent.includes("ended")`)
	if mark := eval[string](t, tab, `String(window.ferryTestMark)`); mark != "no reload" {
		t.Errorf("web's sync page was reloaded (mark %q): the update did not come live", mark)
	}
	states := eval[[]string](t, tab, `window.ferryStates`)
	t.Logf("web's sync page showed, live: %q", states)
	if !strings.Contains(states[0], "queued") || !strings.Contains(states[len(states)-1], "succeeded") {
		t.Errorf("web's sync page went %q, want queued … succeeded", states)
	}
	if phases := eval[string](t, tab, `document.querySelector('#sync-phases').innerText`); !strings.Contains(phases, "apply") {
		t.Errorf("the live page's phases lack apply: %q", phases)
	}
	if objs := eval[string](t, tab, `document.querySelector('#sync-objects').innerText`); !strings.Contains(objs, "web-settings") {
		t.Errorf("the live page's objects lack web-settings: %q", objs)
	}
	waitRecord(t, f, "slow", 90*time.Second, "succeeded "+short7(second), func(r queue.Record) bool { return r.ID == id && r.State == queue.StateSucceeded })

	// Meanwhile the open dashboard showed both apps' new syncs, without a reload.
	waitFor(t, board, "the open dashboard shows the new commit", `document.querySelector('#apps tr[data-app="slow"] .cell-commit').textContent === "`+second[:7]+`" && document.querySelector('#apps tr[data-app="slow"] .cell-state').textContent.includes("succeeded") && document.querySelector('#apps tr[data-app="web"] .cell-commit').textContent === "`+second[:7]+`"`)
	if mark := eval[string](t, board, `String(window.ferryTestMark)`); mark != "no reload" {
		t.Errorf("the dashboard was reloaded (mark %q): its list did not update live", mark)
	}

	// Suspend and resume from their buttons.
	t.Run("suspend and resume", func(t *testing.T) {
		do(t, browser, "press suspend",
			chromedp.Navigate(f.URL+"/apps/slow"),
			chromedp.WaitVisible(chromedp.CSS(`#suspend-button`)),
			chromedp.SendKeys(chromedp.CSS(`#reason`), "e2e incident"),
			chromedp.Click(chromedp.CSS(`#suspend-button`)),
			// The answer: the app page with its suspended badge, or a refusal.
			chromedp.WaitVisible(chromedp.CSS(`div[role=alert], h1 .badge.suspended`)))
		text := eval[string](t, browser, `document.body.innerText`)
		if !strings.Contains(text, "suspended") || !strings.Contains(text, "e2e incident") {
			t.Fatalf("after suspend the app page says:\n%s", text)
		}
		if sus := appSuspension(t, f.URL, "slow"); !sus.Suspended || sus.Reason != "e2e incident" || sus.By == "" {
			t.Fatalf("after the suspend button the API says %+v, want suspended for \"e2e incident\" by the signed-in user", sus)
		}
		do(t, browser, "press resume",
			chromedp.WaitVisible(chromedp.CSS(`#resume-button`)),
			chromedp.Click(chromedp.CSS(`#resume-button`)),
			chromedp.WaitVisible(chromedp.CSS(`#sync[data-id]`)))
		sus := appSuspension(t, f.URL, "slow")
		if sus.Suspended || sus.By == "" {
			t.Fatalf("after the resume button the API says %+v, want not suspended, resumed by the signed-in user", sus)
		}
		if page := eval[string](t, browser, `document.body.innerText`); !strings.Contains(page, "resume by "+sus.By) {
			t.Errorf("resume's sync page does not say who resumed (%s):\n%s", sus.By, page)
		}
	})
}

// appSuspension reads app's suspension from the API.
func appSuspension(t *testing.T, base, app string) queue.Suspension {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/apps/" + app)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Suspension *queue.Suspension `json:"suspension"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET /api/v1/apps/%s: %v", app, err)
	}
	if v.Suspension == nil {
		return queue.Suspension{}
	}
	return *v.Suspension
}

// postDashboard posts a sync form as a browser without a session would, from origin.
func postDashboard(t *testing.T, target, origin, csrf string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, target, strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
