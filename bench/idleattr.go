package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

// queueIdleCost measures, in this process, what the queue alone costs when idle with apps
// configured: an embedded JetStream and queue.Consume's two durable consumers per app with a
// handler that does nothing. It attributes part of ferry's idle RSS to the queue without a heap
// profile of the ferry binary, which serves no pprof endpoint.
func queueIdleCost(ctx context.Context, dir string, apps int) (string, error) {
	before := heapNow()
	g0 := runtime.NumGoroutine()
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: dir})
	if err != nil {
		return "", err
	}
	defer func() {
		emb.Shutdown()
		_ = os.RemoveAll(dir)
	}()
	nc, err := emb.Connect("bench-idle")
	if err != nil {
		return "", err
	}
	defer nc.Close()
	q, err := queue.New(ctx, nc, queue.Options{})
	if err != nil {
		return "", err
	}
	afterServer := heapNow()
	names := make([]string, apps)
	for i := range names {
		names[i] = fmt.Sprintf("idle-%03d", i)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		opts := queue.DefaultConsumeOptions()
		opts.Grace = time.Second
		done <- q.Consume(cctx, names, func(context.Context, queue.Job, queue.Delivery) error { return nil }, opts)
	}()
	time.Sleep(5 * time.Second)
	afterConsumers := heapNow()
	g1 := runtime.NumGoroutine()
	cancel()
	if err := <-done; err != nil {
		return "", fmt.Errorf("consume: %w", err)
	}
	return fmt.Sprintf("embedded JetStream + stream: +%s heap in use; %d apps' consumers (queue.Consume): +%s heap in use and +%d goroutines",
		fmtMB(afterServer-min(before, afterServer)), apps, fmtMB(afterConsumers-min(afterServer, afterConsumers)), g1-g0), nil
}

// heapNow is HeapInuse after a collection.
func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
