package queue

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits of the deploy dispatcher.
const (
	// MaxHeldPerApp bounds the jobs of one app that one process holds behind the app's running
	// or next job: its memory and heartbeats in a burst of pushes to one app. A job beyond it is
	// handed back to the stream for heldOverflowDelay, which counts as one delivery.
	MaxHeldPerApp = 64
	// heldOverflowDelay is how long a job beyond MaxHeldPerApp stays with the stream before it
	// is delivered again. Long, so that waiting behind a long sync spends few of the job's
	// MaxDeliver deliveries (DefaultMaxDeliver of them last hours).
	heldOverflowDelay = 30 * time.Second
	// heldRecheck is how often a process looks again at the oldest stored job of each app whose
	// later jobs it holds, for an earlier job that ended on another replica or waits out a retry
	// delay with the stream. A job ending in this process is followed at once by the next one.
	heldRecheck = time.Second
	// ackSettleReads and ackSettlePause: how often, and how far apart, the oldest job of an app
	// is read again while the job this process just ended still shows there (see promote).
	// Past them, the recheck finds the next job.
	ackSettleReads = 20
	ackSettlePause = 10 * time.Millisecond
	// fetchWait is how long the pull request of an idle worker waits for a job. One worker of a
	// process pulls at a time, so an idle replica sends one request per fetchWait.
	fetchWait = time.Second
)

// dispatcher runs the deploy jobs of every app on Workers goroutines, one job per app at a time
// across all replicas, in the order the jobs were stored.
//
// The shared consumer hands out jobs in stream order to whichever worker asks, so two jobs of one
// app can be out at once. A job runs only when it is the oldest stored on its app's subject: in a
// work-queue stream an ended job is deleted, so that oldest job is the one running or next, and it
// is out to one worker at most. A later job is held: kept in memory with heartbeats from one
// goroutine for all, on no worker, and run when the worker that ran the job before it (in this process)
// finds it is the oldest now, or when the periodic recheck does. Holding costs no delivery, so a
// job waiting behind a long sync does not run down its MaxDeliver budget; beyond MaxHeldPerApp per
// app, jobs go back to the stream for a while instead.
//
// A job waiting out a retry delay (dependencies, a transient failure) is with the stream, not
// on a worker: it still counts against the consumer's MaxAckPending, but JetStream delivers due
// retries before new jobs even when MaxAckPending is reached, so it cannot lock itself out.
//
// Why this and not something else:
//   - One consumer per app serialised by MaxAckPending 1, as before, hits JetStream's consumer
//     limit (about 1,000) and costs goroutines and server state per idle app.
//   - A fixed set of consumers over hashed partitions of the apps would serialise unrelated apps
//     behind each other's long syncs.
//   - Handing a later job back with a delay instead of holding it spends a delivery every time
//     (a job behind a 10-minute sync would reach MaxDeliver while merely waiting), and it frees
//     no MaxAckPending room: JetStream counts a job waiting out a delay as pending.
//
// A burst for one app cannot starve the others: workers fetch only when free and a later job is
// set aside at once, so other apps' jobs keep flowing; what a burst fills is MaxAckPending,
// which is far larger than any one app's backlog should get (DefaultDeployMaxAckPending).
//
// Slow syncs of many apps cannot take every worker either when the apps are put in lanes
// (ConsumeOptions.Lane; ferry's lanes are clusters): a job about to run takes a slot of its lane
// as well, and one whose lane is full waits beside the held jobs, kept alive the same way, until
// a job of its lane ends here (lanes.go).
type dispatcher struct {
	q      *Queue
	stream jetstream.Stream
	cons   jetstream.Consumer
	h      Handler
	opts   ConsumeOptions

	// fetchTurn lets one worker of this process pull at a time.
	fetchTurn chan struct{}
	// wake tells an idle worker that a held job is ready.
	wake chan struct{}

	mu sync.Mutex
	// held are the jobs waiting behind an earlier one, by subject, in stream order.
	held map[string][]*delivered
	// ready are held jobs found oldest of their app, for the next free worker.
	ready []*delivered
	// lanes are the lane slots in use here and the jobs waiting for one, by lane (lanes.go).
	lanes  map[string]*laneState
	closed bool
}

func newDispatcher(q *Queue, stream jetstream.Stream, cons jetstream.Consumer, h Handler, opts ConsumeOptions) *dispatcher {
	return &dispatcher{q: q, stream: stream, cons: cons, h: h, opts: opts,
		fetchTurn: make(chan struct{}, 1), wake: make(chan struct{}, 1), held: map[string][]*delivered{}, lanes: map[string]*laneState{}}
}

// start runs the workers and the keepers of held jobs until ctx ends; wg counts them.
func (d *dispatcher) start(ctx, work context.Context, wg *sync.WaitGroup) {
	for range d.opts.Workers {
		wg.Go(func() { d.worker(ctx, work) })
	}
	wg.Go(func() { d.keepHeld(ctx) })
	wg.Go(func() { d.recheckHeld(ctx) })
}

// worker runs ready held jobs first, then jobs it fetches, until ctx ends.
func (d *dispatcher) worker(ctx, work context.Context) {
	for ctx.Err() == nil {
		if j := d.takeReady(); j != nil {
			d.runReady(ctx, work, j)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
			continue
		case d.fetchTurn <- struct{}{}:
		}
		msg, err := d.cons.Next(jetstream.FetchMaxWait(fetchWait))
		<-d.fetchTurn
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || ctx.Err() != nil {
				continue
			}
			d.opts.Logger.Warn("queue: next deploy job", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		j, ok := decode(msg, d.opts)
		if !ok {
			continue
		}
		if ctx.Err() != nil {
			_ = j.msg.Nak()
			return
		}
		if j.seq == 0 {
			// Without its stream sequence the job cannot be placed among its app's.
			j.log.Warn("queue: delivered job carries no stream sequence; handing it back")
			_ = j.msg.NakWithDelay(d.opts.overflowDelay)
			continue
		}
		switch d.oldest(ctx, j) {
		case jobNext:
			if d.admit(j) {
				d.runChain(ctx, work, j)
			}
		case jobBehind:
			d.hold(j)
		case jobGone:
			j.log.Info("queue: job delivered again after it ended elsewhere")
			_ = j.msg.Ack()
		}
	}
}

// Where a delivered job stands among its app's stored jobs.
const (
	jobNext   = iota // the oldest: it runs now
	jobBehind        // an earlier job is stored: it waits
	jobGone          // no longer stored: it ended elsewhere after its lease lapsed here
)

// oldest tells where j stands. A job whose standing cannot be read waits and is looked at again.
func (d *dispatcher) oldest(ctx context.Context, j *delivered) int {
	head, found, err := d.head(ctx, j.msg.Subject())
	switch {
	case err != nil:
		j.log.Warn("queue: oldest job of the app not read; the job waits", "err", err)
		return jobBehind
	case !found || head > j.seq:
		return jobGone
	case head == j.seq:
		return jobNext
	}
	return jobBehind
}

// head returns the sequence of the oldest job stored on subject.
func (d *dispatcher) head(ctx context.Context, subject string) (uint64, bool, error) {
	m, err := d.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return m.Sequence, true, nil
}

// runChain runs j, then the jobs of its app this process holds, each once it is the oldest. The
// later jobs run on j's lane slot, which is given back when the chain ends.
func (d *dispatcher) runChain(ctx, work context.Context, j *delivered) {
	defer d.leave(j)
	for j != nil {
		d.forget(j)
		var ended uint64
		if d.q.run(ctx, work, j, d.h, d.opts) {
			ended = j.seq
		}
		if ctx.Err() != nil {
			return
		}
		j = d.promote(ctx, j.msg.Subject(), ended)
	}
}

// hold keeps j until the jobs before it have ended; beyond MaxHeldPerApp it goes back to the
// stream for a while.
func (d *dispatcher) hold(j *delivered) {
	subj := j.msg.Subject()
	d.mu.Lock()
	list := d.held[subj]
	i, found := slices.BinarySearchFunc(list, j.seq, func(h *delivered, seq uint64) int { return cmp.Compare(h.seq, seq) })
	switch {
	case d.closed:
		d.mu.Unlock()
		_ = j.msg.Nak()
		return
	case found:
		// Delivered again (a lease that lapsed here): the new delivery is the live one.
		list[i] = j
	case len(list) >= d.opts.maxHeld:
		d.mu.Unlock()
		j.log.Info("queue: too many jobs of the app waiting here; handing this one back for a while", "held", len(list))
		_ = j.msg.NakWithDelay(d.opts.overflowDelay)
		return
	default:
		d.held[subj] = slices.Insert(list, i, j)
	}
	d.mu.Unlock()
}

// forget drops an earlier delivery of j that this process still holds (its lease lapsed here and
// the job came back), so that it cannot be run a second time.
func (d *dispatcher) forget(j *delivered) {
	subj := j.msg.Subject()
	d.mu.Lock()
	defer d.mu.Unlock()
	list := d.held[subj]
	if i, found := slices.BinarySearchFunc(list, j.seq, func(h *delivered, seq uint64) int { return cmp.Compare(h.seq, seq) }); found {
		list = slices.Delete(list, i, i+1)
		if len(list) == 0 {
			delete(d.held, subj)
		} else {
			d.held[subj] = list
		}
	}
	d.forgetLaneLocked(j)
}

// promote returns the held job of subject that is now the oldest stored, taking it out of held;
// held jobs found ended elsewhere are dropped. ended, when set, is the sequence of the job of
// subject this process just ended: on a NATS cluster the stream leader may remove it a moment
// after the consumer confirmed the ack, so it is read again a few times while it still shows.
func (d *dispatcher) promote(ctx context.Context, subject string, ended uint64) *delivered {
	d.mu.Lock()
	empty := len(d.held[subject]) == 0
	d.mu.Unlock()
	if empty {
		return nil
	}
	head, found, err := d.head(ctx, subject)
	for try := 0; err == nil && found && ended != 0 && head == ended && try < ackSettleReads; try++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(ackSettlePause):
		}
		head, found, err = d.head(ctx, subject)
	}
	if err != nil {
		d.opts.Logger.Warn("queue: oldest job of the app not read; its held jobs wait", "subject", subject, "err", err)
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	list := d.held[subject]
	for len(list) > 0 && (!found || list[0].seq < head) {
		// Ended elsewhere: its lease lapsed here and another worker ran it.
		_ = list[0].msg.Ack()
		list = list[1:]
	}
	var next *delivered
	if len(list) > 0 && found && list[0].seq == head {
		next, list = list[0], list[1:]
	}
	if len(list) == 0 {
		delete(d.held, subject)
	} else {
		d.held[subject] = list
	}
	return next
}

// takeReady returns a held job the recheck found next, if any.
func (d *dispatcher) takeReady() *delivered {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ready) == 0 {
		return nil
	}
	j := d.ready[0]
	d.ready = d.ready[1:]
	if len(d.ready) > 0 {
		d.signal()
	}
	return j
}

func (d *dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// keepHeld keeps the held jobs alive with a heartbeat every AckWait/4. When NATS stays
// unreachable for half the ack wait it gives every held job up (JetStream hands them out again);
// at shutdown it hands them back at once.
func (d *dispatcher) keepHeld(ctx context.Context) {
	t := time.NewTicker(d.opts.AckWait / heartbeatsPerAckWait)
	defer t.Stop()
	lastConnected := time.Now()
	for {
		select {
		case <-ctx.Done():
			// Shutdown: held jobs go back to the stream at once, for another replica.
			for _, j := range d.drain(true) {
				_ = j.msg.Nak()
			}
			return
		case now := <-t.C:
			if !d.q.nc.IsConnected() {
				if now.Sub(lastConnected) >= d.opts.AckWait/2 {
					for _, j := range d.drain(false) {
						j.log.Warn("queue: held job given up: NATS unreachable", "err", errLeaseLost)
					}
				}
				continue
			}
			lastConnected = now
			d.beat()
		}
	}
}

// recheckHeld looks every heldRecheck at whether a held job became the oldest of its app. It
// runs apart from the heartbeats, which a slow round of reads must not hold up.
func (d *dispatcher) recheckHeld(ctx context.Context) {
	t := time.NewTicker(heldRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.recheck(ctx)
		}
	}
}

// drain takes every held, ready and lane-waiting job out; once closing, later deliveries are
// handed back at once.
func (d *dispatcher) drain(closing bool) []*delivered {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = d.closed || closing
	all := d.drainLanesLocked()
	all = append(all, d.ready...)
	d.ready = nil
	for _, list := range d.held {
		all = append(all, list...)
	}
	clear(d.held)
	return all
}

// beat sends a heartbeat for every held, ready and lane-waiting job.
func (d *dispatcher) beat() {
	d.mu.Lock()
	all := append(slices.Clone(d.ready), d.laneWaitingLocked()...)
	for _, list := range d.held {
		all = append(all, list...)
	}
	d.mu.Unlock()
	for _, j := range all {
		_ = j.msg.InProgress()
	}
}

// recheck moves held jobs that became the oldest of their app to ready.
func (d *dispatcher) recheck(ctx context.Context) {
	d.mu.Lock()
	subjects := make([]string, 0, len(d.held))
	for s := range d.held {
		subjects = append(subjects, s)
	}
	d.mu.Unlock()
	for _, s := range subjects {
		if ctx.Err() != nil {
			return
		}
		if j := d.promote(ctx, s, 0); j != nil {
			d.mu.Lock()
			closed := d.closed
			if !closed {
				d.ready = append(d.ready, j)
				d.signal()
			}
			d.mu.Unlock()
			if closed {
				_ = j.msg.Nak()
			}
		}
	}
}
