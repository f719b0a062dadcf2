package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/queue"
)

// p9InProcess profiles the hook path at the largest app count in this process: handlers.Hooks
// with every app routed, onto a fresh embedded JetStream, for pushes touching every app of mono.
// Its CPU profile is what RESULTS.md quotes for where the time of a large push goes.
func p9InProcess(ctx context.Context, p *params, res *results, logf func(string, ...any)) error {
	n := 0
	for _, a := range p.P9.Apps {
		n = max(n, a)
	}
	layout := p9Apps(n)
	secret := []byte(e2eHookSecret)
	var repos []handlers.Repo
	for name, apps := range layout.repos {
		r := handlers.Repo{Name: name, Provider: "github", Branch: p9GlobBranch, Secret: secret}
		for _, a := range apps {
			r.Apps = append(r.Apps, handlers.App{Name: a.Name, Path: a.Path})
		}
		repos = append(repos, r)
	}
	e, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: filepath.Join(p.Work, "p9-inproc-nats")})
	if err != nil {
		return err
	}
	defer e.Shutdown()
	nc, err := e.Connect("p9")
	if err != nil {
		return err
	}
	defer nc.Close()
	q, err := queue.New(ctx, nc, queue.Options{})
	if err != nil {
		return err
	}
	t0 := time.Now()
	hooks := handlers.NewHooks(repos, q, handlers.HooksOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), NewID: queue.NewID})
	built := time.Since(t0)
	mux := chi.NewRouter()
	mux.Method(http.MethodPost, "/hooks/{repo}", hooks)

	var changed []string
	for _, a := range layout.mono {
		changed = append(changed, a.Path+"/config.yaml")
	}
	sha := "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c"
	body, err := json.Marshal(map[string]any{"ref": "refs/heads/main", "before": "3c4e9f2a1b0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f", "after": sha,
		"repository": map[string]any{"full_name": "acme/mono"},
		"commits":    []map[string]any{{"id": sha, "added": []string{}, "removed": []string{}, "modified": changed}}})
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	send := func(i int) (time.Duration, error) {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/hooks/mono", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("p9-inproc-%d", i))
		req.Header.Set("X-Hub-Signature-256", sig)
		w := httptest.NewRecorder()
		t := time.Now()
		mux.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			return 0, fmt.Errorf("status %d: %s", w.Code, w.Body)
		}
		return time.Since(t), nil
	}
	for i := range 3 { // warm-up
		if _, err := send(-1 - i); err != nil {
			return err
		}
	}
	prof := filepath.Join(p.Work, "p9-hooks-cpu.pprof")
	f, err := os.Create(prof)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	var lat []time.Duration
	for i := range max(p.P9.ManyPushes*2, 20) {
		d, err := send(i)
		if err != nil {
			pprof.StopCPUProfile()
			return err
		}
		lat = append(lat, d)
	}
	pprof.StopCPUProfile()
	logf("P9 in-process: %d apps routed (hooks built in %s); push touching %d apps p50 %s p99 %s", n, fmtDur(built), len(changed), fmtDur(medianDur(lat)), fmtDur(percentile(lat, 99)))
	res.add(row{ID: "P9", Measure: fmt.Sprintf("in process: handlers.Hooks → embedded JetStream, push touching %d of %d apps, p99 (p50)", len(changed), n),
		Ferry: fmtDur(percentile(lat, 99)) + " (" + fmtDur(medianDur(lat)) + ")", Target: "< 50 ms", Met: verdict(percentile(lat, 99) < p9MaxHookP99)})
	res.addProfile(fmt.Sprintf("P9 in process, %d pushes touching %d of %d apps", len(lat), len(changed), n), prof, 30)
	return nil
}
