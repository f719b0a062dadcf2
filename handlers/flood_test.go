package handlers

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/metrics"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/server"
)

// Bounds of the flood test.
const (
	floodClients  = 48                // concurrent senders, as in the report
	floodRequests = 20 * floodClients // unsigned 25 MiB bodies at most
	// floodGenuine is how many genuine deliveries are sent during the flood, which lasts until
	// they are answered (or floodRequests ran out).
	floodGenuine = 10
	floodMaxTime = 30 * time.Second
	// floodMaxHeap is the most heap the test process may reach during the flood: the budget,
	// garbage the collector has not caught up with, the hooks, NATS and the test's own 25 MiB
	// body. Holding every flooding body would take 48 × 25 MiB = 1.2 GiB.
	floodMaxHeap = 4 * MaxUnverifiedBytes
)

// TestHooksUnsignedFlood floods ferry's HTTP server (server.New with these hooks) over TCP on 127.0.0.1 with concurrent 25 MiB
// bodies, half without a signature, half with a well-formed wrong one, while a genuine
// delivery is sent every 20 ms: every genuine delivery is accepted (202), the process's heap
// stays bounded, and every flooding body gets 401 or 503 (or the connection closed under it).
func TestHooksUnsignedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a few GiB over loopback")
	}
	ghPush := readTestdata(t, "github/push.json")
	hooks, _ := newQueueHooks(t, testRepos("github", githubSecret), time.Now)
	// ferry's own HTTP server: its routes, middlewares and timeouts.
	srv := server.New(server.Config{Hooks: hooks, Logger: slog.New(slog.DiscardHandler)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	url := "http://" + l.Addr().String() + "/hooks/platform"

	ctx, cancel := context.WithTimeout(t.Context(), floodMaxTime)
	defer cancel()
	peak := make(chan uint64, 1)
	sampled := make(chan struct{})
	go func() { peak <- sampleHeap(sampled) }()

	big := bytes.Repeat([]byte{' '}, MaxBodyBytes)
	var mu sync.Mutex
	floodStatus := map[string]int{}
	var flood sync.WaitGroup
	stopFlood := make(chan struct{})
	next := make(chan int, floodRequests)
	for i := range floodRequests {
		next <- i
	}
	close(next)
	for range floodClients {
		flood.Go(func() {
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for i := range next {
				select {
				case <-stopFlood:
					return
				default:
				}
				if ctx.Err() != nil {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(big))
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("flood-%d", i))
				if i%2 == 1 {
					req.Header.Set("X-Hub-Signature-256", "sha256="+string(bytes.Repeat([]byte("0f"), 32)))
				}
				outcome := "connection closed"
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					outcome = resp.Status
				}
				mu.Lock()
				floodStatus[outcome]++
				mu.Unlock()
			}
		})
	}

	// Genuine deliveries while the flood lasts.
	var latencies []time.Duration
	genuine := &http.Client{}
	floodDone := make(chan struct{})
	go func() { flood.Wait(); close(floodDone) }()
	for n := 0; ; n++ {
		select {
		case <-floodDone:
		case <-time.After(20 * time.Millisecond):
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ghPush))
			req.Header = githubHeaders("push", fmt.Sprintf("genuine-%d", n), githubSecret, ghPush)
			start := time.Now()
			resp, err := genuine.Do(req)
			if err != nil {
				t.Fatalf("genuine delivery %d: %v", n, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("genuine delivery %d during the flood: status %d: %s", n, resp.StatusCode, body)
			}
			latencies = append(latencies, time.Since(start))
			if len(latencies) == floodGenuine {
				close(stopFlood)
			}
			continue
		}
		break
	}
	close(sampled)
	maxHeap := <-peak
	if ctx.Err() != nil {
		t.Fatalf("the flood did not end within %s", floodMaxTime)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	t.Logf("flood outcomes %v; %d genuine deliveries accepted, p50 %s, max %s; peak heap %d MiB",
		floodStatus, len(latencies), latencies[len(latencies)/2], latencies[len(latencies)-1], maxHeap>>20)
	if len(latencies) < floodGenuine {
		t.Fatalf("only %d genuine deliveries were sent during the flood", len(latencies))
	}
	if floodStatus["202 Accepted"] > 0 {
		t.Fatalf("unsigned bodies were accepted: %v", floodStatus)
	}
	if maxHeap > floodMaxHeap {
		t.Fatalf("heap reached %d MiB during the flood, bound %d MiB", maxHeap>>20, floodMaxHeap>>20)
	}
}

// sampleHeap returns the largest heap (live and not yet swept objects) seen every 5 ms until
// stop is closed.
func sampleHeap(stop <-chan struct{}) uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		metrics.Read(s)
		peak = max(peak, s[0].Value.Uint64())
		select {
		case <-stop:
			return peak
		case <-tick.C:
		}
	}
}
