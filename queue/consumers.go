package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// startConsumers replaces the consumers of older versions and creates or updates the shared
// deploy and preview consumers.
func (q *Queue) startConsumers(ctx context.Context, opts ConsumeOptions) (jetstream.Stream, jetstream.Consumer, jetstream.Consumer, error) {
	stream, err := q.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	if err := q.dropLegacyConsumers(ctx, stream, opts.Logger); err != nil {
		return nil, nil, nil, err
	}
	// CreateOrUpdate: a consumer made by an older ferry with another ack wait or bound takes
	// these settings.
	dcfg := q.deployConsumerConfig(opts)
	deploys, err := q.createShared(ctx, stream, dcfg, opts.Logger)
	if limit, ok := maxAckPendingLimit(err); ok && limit < dcfg.MaxAckPending {
		// The NATS server, account or stream caps MaxAckPending below ferry's bound: take the cap.
		opts.Logger.Warn("queue: NATS caps the deploy jobs handed out at once below ferry's bound", "limit", limit, "bound", dcfg.MaxAckPending)
		dcfg.MaxAckPending = limit
		deploys, err = q.createShared(ctx, stream, dcfg, opts.Logger)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create consumer for %s: %w", dcfg.Description, err)
	}
	pcfg := q.previewConsumerConfig(opts)
	previews, err := q.createShared(ctx, stream, pcfg, opts.Logger)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create consumer for %s: %w", pcfg.Description, err)
	}
	return stream, deploys, previews, nil
}

// errCodeNotUnique is JetStream's refusal of a consumer whose filter overlaps another's on a
// work-queue stream.
const errCodeNotUnique jetstream.ErrorCode = 10100

// Bounds of createShared's wait for older versions' consumers to be gone.
const (
	legacySettleAttempts = 10
	legacySettlePause    = 200 * time.Millisecond
)

// createShared creates or updates one of the shared consumers. Replicas starting together each
// delete the per-app consumers of older versions. A second deletion of a consumer whose first is
// still under way returns at once, before the server has taken the consumer off its stream (the
// NATS server marks it closed first and removes it later), so the shared consumer can be refused
// as "not unique" for a moment: a refusal of that kind deletes what is left again and tries
// again, a bounded number of times. A per-app
// consumer that keeps coming back (an older replica still running) still ends the start.
func (q *Queue) createShared(ctx context.Context, stream jetstream.Stream, cfg jetstream.ConsumerConfig, log *slog.Logger) (jetstream.Consumer, error) {
	for attempt := 1; ; attempt++ {
		c, err := stream.CreateOrUpdateConsumer(ctx, cfg)
		var apiErr *jetstream.APIError
		if err == nil || attempt == legacySettleAttempts || !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeNotUnique {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(legacySettlePause):
		}
		if derr := q.dropLegacyConsumers(ctx, stream, log); derr != nil {
			return nil, derr
		}
	}
}

// errCodeMaxAckPendingExcess is JetStream's error for a consumer whose MaxAckPending exceeds
// what the server, account or stream allows; its description ends with the limit.
const errCodeMaxAckPendingExcess jetstream.ErrorCode = 10121

// maxAckPendingLimit returns the limit a consumer creation was refused for, if that was the reason.
func maxAckPendingLimit(err error) (int, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeMaxAckPendingExcess {
		return 0, false
	}
	fields := strings.Fields(apiErr.Description)
	if len(fields) == 0 {
		return 0, false
	}
	n, perr := strconv.Atoi(fields[len(fields)-1])
	return n, perr == nil && n > 0
}

// deployConsumerConfig is the one consumer of every app's deploy jobs. It redelivers a job
// without bound (MaxDeliver -1): a work-queue stream keeps a job that ran out of deliveries,
// where it would stand forever before every later job of its app. Delivery.Last is decided by
// the worker from the delivery count instead, and a last delivery cut short by a crash comes
// again as the last one.
func (q *Queue) deployConsumerConfig(opts ConsumeOptions) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       deployConsumer,
		Description:   "deploy jobs of every app",
		FilterSubject: subjectPrefix + "." + string(KindDeploy) + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: opts.MaxAckPending,
		Replicas:      q.opts.Replicas,
	}
}

func (q *Queue) previewConsumerConfig(opts ConsumeOptions) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       previewConsumer,
		Description:   "preview jobs of every app",
		FilterSubject: subjectPrefix + "." + string(KindPreview) + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxDeliver:    opts.MaxDeliver,
		MaxAckPending: opts.PreviewConcurrency,
		Replicas:      q.opts.Replicas,
	}
}

// legacyDeleteConcurrency bounds the consumer deletions in flight while a start replaces the
// per-app consumers of older versions (a thousand of them on a large installation).
const legacyDeleteConcurrency = 16

// dropLegacyConsumers deletes the per-app consumers older versions made (deploy-<app>,
// preview-<app>). A work-queue stream refuses a consumer whose filter overlaps another's, so they
// must go before the shared ones are made. Deleting a consumer deletes none of the jobs stored on
// the stream: the shared consumers deliver them, in order, from the first stored.
func (q *Queue) dropLegacyConsumers(ctx context.Context, stream jetstream.Stream, log *slog.Logger) error {
	names := stream.ConsumerNames(ctx)
	var legacy []string
	for name := range names.Name() {
		if strings.HasPrefix(name, deployConsumer+"-") || strings.HasPrefix(name, previewConsumer+"-") {
			legacy = append(legacy, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list consumers: %w", err)
	}
	if len(legacy) == 0 {
		return nil
	}
	log.Info("queue: replacing the per-app consumers of an older version", "consumers", len(legacy))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, legacyDeleteConcurrency)
	)
	for _, name := range legacy {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("delete consumer %s of an older version: %w", name, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}
