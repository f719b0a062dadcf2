package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/server"
)

// P1 targets.
const (
	p1MinRate     = 5000.0
	p1MaxP99      = 20 * time.Millisecond
	p1MinFraction = 0.5
	// p1MinDurable is ferry's rate as a fraction of the physical limit of a durable hook: a
	// bare handler that checks the HMAC and publishes one message to JetStream.
	p1MinDurable = 0.8
	// p1Secret is the bench's webhook secret; it signs nothing outside this process.
	p1Secret = "bench-hook-secret-3f9a"
	// p1MaxBody mirrors handlers.MaxBodyBytes in the baseline, so both read bodies the same way.
	p1MaxBody = handlers.MaxBodyBytes
)

// p1Params are the knobs of P1.
type p1Params struct {
	Clients  int
	Requests int
	Duration time.Duration
	Warmup   int
	Reps     int
	Payload  string
	Profile  string
}

// runP1 measures signed GitHub push hooks accepted durably by ferry's real HTTP stack (server
// routes, handlers.Hooks, queue.Queue on an embedded JetStream in a temporary directory) side by
// side with two bare handlers, all three in each repetition: one that only checks the HMAC, and
// the physical limit of a durable hook, one that checks the HMAC and publishes one message with
// a message id to the same kind of embedded JetStream (ferry's stream) and waits for its ack.
func runP1(ctx context.Context, p p1Params, work string, res *results, logf func(string, ...any)) error {
	body, err := os.ReadFile(p.Payload)
	if err != nil {
		return fmt.Errorf("p1: read payload: %w", err)
	}
	mac := hmac.New(sha256.New, []byte(p1Secret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	var ferryRates, baseRates, durRates, durRatios []float64
	var ferryP99s, baseP99s, ferryP50s, baseP50s, durP50s, durP99s []time.Duration
	for rep := range p.Reps {
		// Delivery ids are unique across repetitions and variants, so no request is a duplicate.
		prefix := fmt.Sprintf("bench-%d-%d-", time.Now().UnixNano(), rep)
		header := func(i int64, h http.Header) {
			h.Set("Content-Type", "application/json")
			h.Set("X-GitHub-Event", "push")
			h.Set("X-GitHub-Delivery", prefix+strconv.FormatInt(i, 10))
			h.Set("X-Hub-Signature-256", sig)
		}
		base, err := p1Baseline(ctx, p, body, header)
		if err != nil {
			return err
		}
		dur, err := p1Durable(ctx, p, filepath.Join(work, fmt.Sprintf("p1-durable-%d", rep)), body, header)
		if err != nil {
			return err
		}
		profile := ""
		if p.Profile != "" && rep == p.Reps-1 {
			profile = filepath.Join(work, p.Profile)
		}
		fr, err := p1Ferry(ctx, p, filepath.Join(work, fmt.Sprintf("p1-nats-%d", rep)), body, header, profile)
		if err != nil {
			return err
		}
		logf("P1 rep %d: ferry %.0f/s p50 %s p99 %s (%d ok, %d failed%s); HMAC baseline %.0f/s p50 %s p99 %s (%d ok, %d failed); durable baseline %.0f/s p50 %s p99 %s (%d ok, %d failed), ratio %.2f",
			rep+1, fr.Rate(), fmtDur(percentile(fr.Latencies, 50)), fmtDur(percentile(fr.Latencies, 99)), fr.OK, fr.Failed, failure(fr),
			base.Rate(), fmtDur(percentile(base.Latencies, 50)), fmtDur(percentile(base.Latencies, 99)), base.OK, base.Failed,
			dur.Rate(), fmtDur(percentile(dur.Latencies, 50)), fmtDur(percentile(dur.Latencies, 99)), dur.OK, dur.Failed, fr.Rate()/dur.Rate())
		if fr.Failed > 0 || base.Failed > 0 || dur.Failed > 0 {
			return fmt.Errorf("p1: failed requests (ferry %d, HMAC baseline %d, durable baseline %d): %s%s%s",
				fr.Failed, base.Failed, dur.Failed, fr.FirstFailure, base.FirstFailure, dur.FirstFailure)
		}
		durRates, durRatios = append(durRates, dur.Rate()), append(durRatios, fr.Rate()/dur.Rate())
		durP50s, durP99s = append(durP50s, percentile(dur.Latencies, 50)), append(durP99s, percentile(dur.Latencies, 99))
		ferryRates, baseRates = append(ferryRates, fr.Rate()), append(baseRates, base.Rate())
		ferryP99s, baseP99s = append(ferryP99s, percentile(fr.Latencies, 99)), append(baseP99s, percentile(base.Latencies, 99))
		ferryP50s, baseP50s = append(ferryP50s, percentile(fr.Latencies, 50)), append(baseP50s, percentile(base.Latencies, 50))
	}
	fRate, bRate, dRate := median(ferryRates), median(baseRates), median(durRates)
	fP99 := medianDur(ferryP99s)
	ratio := fRate / bRate
	// The durable ratio is the median of each repetition's ratio: the two ran back to back on the
	// same cores, which cancels much of what else those cores were running.
	durRatio := median(durRatios)
	res.add(row{ID: "P1", Measure: "hooks accepted durably (202 after JetStream ack), rate vs a bare durable hook (HMAC + one JetStream publish with a message id, acked)",
		Ferry: fmt.Sprintf("%.0f /s", fRate), Baseline: fmt.Sprintf("%.0f /s", dRate), Ratio: fmt.Sprintf("%.2f", durRatio),
		Target: "≥ 5,000/s and ≥ 0.80× the durable hook", Met: verdict(fRate >= p1MinRate && durRatio >= p1MinDurable)})
	res.add(row{ID: "P1", Measure: "hooks accepted durably, rate vs a bare handler that only checks the HMAC (no storage)",
		Ferry: fmt.Sprintf("%.0f /s", fRate), Baseline: fmt.Sprintf("%.0f /s", bRate), Ratio: fmt.Sprintf("%.2f", ratio),
		Target: "≥ 0.50×", Met: verdict(ratio >= p1MinFraction)})
	res.add(row{ID: "P1", Measure: "hooks accepted durably, latency p50 / p99 (baseline: the durable hook)",
		Ferry:    fmtDur(medianDur(ferryP50s)) + " / " + fmtDur(fP99),
		Baseline: fmtDur(medianDur(durP50s)) + " / " + fmtDur(medianDur(durP99s)),
		Target:   "p99 < 20 ms", Met: verdict(fP99 < p1MaxP99)})
	if durRatio < p1MinDurable {
		res.note("P1 durable ratio: %.2f× the bare durable hook, target 0.80×.", durRatio)
	}
	if fRate < p1MinRate || ratio < p1MinFraction || durRatio < p1MinDurable || fP99 >= p1MaxP99 {
		res.addProfile("P1 ferry, last repetition, CPU", filepath.Join(work, p.Profile), 30)
	}
	if fRate < p1MinRate {
		res.note("P1 rate: %.0f/s is %.0f%% of the 5,000/s target.", fRate, 100*fRate/p1MinRate)
	}
	if ratio < p1MinFraction {
		res.note("P1 ratio: %.2f× the bare HMAC handler, target 0.50×.", ratio)
	}
	if fP99 >= p1MaxP99 {
		res.note("P1 p99: %s, target < 20 ms (%.1f× over).", fmtDur(fP99), float64(fP99)/float64(p1MaxP99))
	}
	return nil
}

func failure(r loadResult) string {
	if r.FirstFailure == "" {
		return ""
	}
	return ", first failure: " + r.FirstFailure
}

// p1Ferry serves ferry's router with real hooks on a fresh embedded JetStream and loads it.
func p1Ferry(ctx context.Context, p p1Params, dir string, body []byte, header func(int64, http.Header), profile string) (loadResult, error) {
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: dir})
	if err != nil {
		return loadResult{}, fmt.Errorf("p1: %w", err)
	}
	defer func() {
		emb.Shutdown()
		_ = os.RemoveAll(dir)
	}()
	nc, err := emb.Connect("bench-p1")
	if err != nil {
		return loadResult{}, fmt.Errorf("p1: %w", err)
	}
	defer nc.Close()
	q, err := queue.New(ctx, nc, queue.Options{})
	if err != nil {
		return loadResult{}, fmt.Errorf("p1: %w", err)
	}
	// ferry logs one line per delivery and per request at info; formatting them is part of the
	// cost, writing them to a terminal is not.
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	repos := []handlers.Repo{{
		Name: "platform", Provider: "github", Branch: "main", Secret: []byte(p1Secret),
		// One app under the path the captured push changes: one job per hook.
		Apps: []handlers.App{{Name: "database", Path: "apps/database"}},
	}}
	// The queue itself, without cmd/ferry's notifier (which only starts pending statuses
	// asynchronously).
	hooks := handlers.NewHooks(repos, q, handlers.HooksOptions{Logger: log, NewID: queue.NewID})
	srv := server.New(server.Config{Hooks: hooks, Logger: log})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loadResult{}, fmt.Errorf("p1: listen: %w", err)
	}
	go func() { _ = srv.Serve(l) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	url := "http://" + l.Addr().String() + "/hooks/platform"
	return loadWithWarmup(ctx, p, url, body, header, http.StatusAccepted, profile)
}

// p1Baseline serves the floor: read the body with the same limit and as cheaply, check the HMAC,
// answer 202.
func p1Baseline(ctx context.Context, p p1Params, body []byte, header func(int64, http.Header)) (loadResult, error) {
	secret := []byte(p1Secret)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := p1ReadVerified(w, r, secret); ok {
			w.WriteHeader(http.StatusAccepted)
		}
	})
	return p1Serve(ctx, p, "p1 baseline", h, body, header)
}

// p1Durable serves the physical limit of a durable hook: read the body as the HMAC baseline
// does, check the HMAC, publish one job-sized message with a message id (the delivery's) to
// ferry's stream on a fresh embedded JetStream, wait for the ack, answer 202.
func p1Durable(ctx context.Context, p p1Params, dir string, body []byte, header func(int64, http.Header)) (loadResult, error) {
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: dir})
	if err != nil {
		return loadResult{}, fmt.Errorf("p1 durable: %w", err)
	}
	defer func() {
		emb.Shutdown()
		_ = os.RemoveAll(dir)
	}()
	nc, err := emb.Connect("bench-p1-durable")
	if err != nil {
		return loadResult{}, fmt.Errorf("p1 durable: %w", err)
	}
	defer nc.Close()
	q, err := queue.New(ctx, nc, queue.Options{}) // the same stream, created the same way
	if err != nil {
		return loadResult{}, fmt.Errorf("p1 durable: %w", err)
	}
	js := q.JetStream()
	// A message the size of the job ferry stores for this push.
	msg, err := json.Marshal(queue.Job{ID: queue.NewID(), Kind: queue.KindDeploy, Trigger: queue.TriggerPush, Repo: "platform",
		App: "database", Ref: "refs/heads/main", SHA: strings.Repeat("9", 40), Before: strings.Repeat("8", 40),
		DeliveryID: "bench-0000000000000000000-0-00000", EnqueuedAt: time.Now().UTC()})
	if err != nil {
		return loadResult{}, fmt.Errorf("p1 durable: %w", err)
	}
	subject := queue.Subject(queue.KindDeploy, "database")
	secret := []byte(p1Secret)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := p1ReadVerified(w, r, secret); !ok {
			return
		}
		_, err := js.PublishMsg(r.Context(), &nats.Msg{Subject: subject, Data: msg},
			jetstream.WithMsgID(r.Header.Get("X-GitHub-Delivery")), jetstream.WithExpectStream(queue.StreamName))
		if err != nil {
			http.Error(w, "publish", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	return p1Serve(ctx, p, "p1 durable", h, body, header)
}

// p1ReadVerified reads the body as ferry does (one buffer sized from Content-Length, not
// io.ReadAll's growth) and checks its HMAC, answering the failures itself.
func p1ReadVerified(w http.ResponseWriter, r *http.Request, secret []byte) ([]byte, bool) {
	var buf bytes.Buffer
	buf.Grow(int(min(max(r.ContentLength, 0), p1MaxBody)) + bytes.MinRead)
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, p1MaxBody))
	b := buf.Bytes()
	if err != nil {
		http.Error(w, "body", http.StatusBadRequest)
		return nil, false
	}
	got, err := hex.DecodeString(strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256="))
	m := hmac.New(sha256.New, secret)
	m.Write(b)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		http.Error(w, "signature", http.StatusUnauthorized)
		return nil, false
	}
	return b, true
}

// p1Serve serves h on 127.0.0.1 with ferry's header timeout and loads it.
func p1Serve(ctx context.Context, p p1Params, name string, h http.Handler, body []byte, header func(int64, http.Header)) (loadResult, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loadResult{}, fmt.Errorf("%s: listen: %w", name, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: server.ReadHeaderTimeout}
	go func() { _ = hs.Serve(l) }()
	defer hs.Close()
	return loadWithWarmup(ctx, p, "http://"+l.Addr().String()+"/hooks/platform", body, header, http.StatusAccepted, "")
}

// loadWithWarmup sends p.Warmup requests (not measured), then the measured run, with a CPU
// profile of the measured run written to profile when it is set.
func loadWithWarmup(ctx context.Context, p p1Params, url string, body []byte, header func(int64, http.Header), want int, profile string) (loadResult, error) {
	var offset int64
	hdr := func(i int64, h http.Header) { header(offset+i, h) }
	if p.Warmup > 0 {
		w, err := runLoad(ctx, loadSpec{URL: url, Clients: p.Clients, Requests: p.Warmup, MaxDuration: p.Duration, Body: body, Header: hdr, Want: want})
		if err != nil {
			return loadResult{}, err
		}
		if w.Failed > 0 {
			return loadResult{}, fmt.Errorf("warm-up of %s: %d failed: %s", url, w.Failed, w.FirstFailure)
		}
	}
	offset = int64(p.Warmup) + 1
	runtime.GC()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return loadResult{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return loadResult{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	r, err := runLoad(ctx, loadSpec{URL: url, Clients: p.Clients, Requests: p.Requests, MaxDuration: p.Duration, Body: body, Header: hdr, Want: want})
	if err != nil {
		return r, err
	}
	if r.OK == 0 {
		return r, errors.New("no request succeeded: " + r.FirstFailure)
	}
	return r, nil
}
