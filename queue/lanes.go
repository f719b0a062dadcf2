package queue

import (
	"context"
	"slices"
)

// Lanes bound the share of a replica's deploy workers that the jobs of one group of apps may
// hold. ferry makes one lane per target cluster: a cluster that answers, but slowly (each request
// close to its timeout), would otherwise fill every worker of a replica with its apps' syncs while
// the jobs of other clusters wait behind them.
//
// A job takes a slot of its lane when it is about to run (it is the oldest stored job of its app)
// and keeps it while the later jobs of its app run after it on the same worker. A job whose lane
// is full waits like a held job: in memory, with heartbeats, on no worker and spending no
// delivery, and it is handed the slot of the next job of its lane that ends here, in the order
// the jobs came to wait.

// MaxWaitingPerLane bounds the jobs of one lane that one process keeps waiting for a slot of
// their lane: their memory and heartbeats, and their share of the consumer's MaxAckPending,
// while a slow cluster holds its slots. A job beyond it is handed back to the stream for
// heldOverflowDelay, which counts as one delivery.
const MaxWaitingPerLane = 256

// DefaultLaneLimit is how many of a replica's workers one lane may hold when its limit is not
// set: all of them but one, so that another lane always finds a worker, and at least one.
func DefaultLaneLimit(workers int) int { return max(workers-1, 1) }

// laneState is one lane's slots in use in this process and the jobs waiting for one.
type laneState struct {
	running int
	waiting []*delivered
}

// laneLimit is how many workers lane may hold here: ConsumeOptions.LaneLimit's answer,
// DefaultLaneLimit when it gives none, never more than Workers.
func (d *dispatcher) laneLimit(lane string) int {
	n := 0
	if d.opts.LaneLimit != nil {
		n = d.opts.LaneLimit(lane)
	}
	if n <= 0 {
		n = DefaultLaneLimit(d.opts.Workers)
	}
	return min(n, d.opts.Workers)
}

// admit gives j a slot of its lane, or keeps it waiting for one; it returns whether j may run
// now. A job of no lane always may.
func (d *dispatcher) admit(j *delivered) bool {
	if j.slot || d.opts.Lane == nil {
		return true
	}
	lane := d.opts.Lane(j.job.App)
	if lane == "" {
		return true
	}
	j.lane = lane
	limit := d.laneLimit(lane)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = j.msg.Nak()
		return false
	}
	st := d.lanes[lane]
	if st == nil {
		st = &laneState{}
		d.lanes[lane] = st
	}
	if st.running < limit {
		st.running++
		j.slot = true
		d.mu.Unlock()
		return true
	}
	subj := j.msg.Subject()
	for i, w := range st.waiting {
		if w.seq == j.seq && w.msg.Subject() == subj {
			// Delivered again (a lease that lapsed here): the new delivery is the live one.
			st.waiting[i] = j
			d.mu.Unlock()
			return false
		}
	}
	if len(st.waiting) >= d.opts.maxLaneWaiting {
		d.mu.Unlock()
		j.log.Info("queue: too many jobs of the lane waiting here; handing this one back for a while", "lane", lane, "waiting", d.opts.maxLaneWaiting)
		_ = j.msg.NakWithDelay(d.opts.overflowDelay)
		return false
	}
	st.waiting = append(st.waiting, j)
	d.mu.Unlock()
	j.log.Info("queue: the job's lane holds all the workers it may; the job waits for one of them", "lane", lane, "limit", limit)
	return false
}

// leave gives back the lane slot j holds, if any.
func (d *dispatcher) leave(j *delivered) {
	if !j.slot {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	j.slot = false
	d.releaseLocked(j.lane)
}

// releaseLocked frees one slot of lane: it goes to the lane's first waiting job, which is made
// ready for the next free worker, unless the dispatcher is closing. d.mu is held.
func (d *dispatcher) releaseLocked(lane string) {
	st := d.lanes[lane]
	if st == nil {
		return
	}
	if !d.closed && len(st.waiting) > 0 && st.running <= d.laneLimit(lane) {
		next := st.waiting[0]
		st.waiting = st.waiting[1:]
		next.slot, next.waited = true, true
		d.ready = append(d.ready, next)
		d.signal()
		return
	}
	st.running--
	if st.running <= 0 && len(st.waiting) == 0 {
		delete(d.lanes, lane)
	}
}

// laneWaitingLocked lists every job waiting for a lane slot. d.mu is held.
func (d *dispatcher) laneWaitingLocked() []*delivered {
	var all []*delivered
	for _, st := range d.lanes {
		all = append(all, st.waiting...)
	}
	return all
}

// drainLanesLocked takes every job waiting for a lane slot out and frees the slots ready jobs
// were handed, which will not run now. d.mu is held.
func (d *dispatcher) drainLanesLocked() []*delivered {
	for _, j := range d.ready {
		if j.slot {
			j.slot = false
			if st := d.lanes[j.lane]; st != nil {
				st.running--
			}
		}
	}
	all := d.laneWaitingLocked()
	for lane, st := range d.lanes {
		st.waiting = nil
		if st.running <= 0 {
			delete(d.lanes, lane)
		}
	}
	return all
}

// forgetLaneLocked drops earlier deliveries of j (same subject and sequence, another delivery)
// waiting for a lane slot or ready with one, freeing the slot. d.mu is held.
func (d *dispatcher) forgetLaneLocked(j *delivered) {
	subj := j.msg.Subject()
	same := func(r *delivered) bool { return r != j && r.seq == j.seq && r.msg.Subject() == subj }
	for _, st := range d.lanes {
		st.waiting = slices.DeleteFunc(st.waiting, same)
	}
	var freed []string
	d.ready = slices.DeleteFunc(d.ready, func(r *delivered) bool {
		if !same(r) {
			return false
		}
		if r.slot {
			r.slot = false
			freed = append(freed, r.lane)
		}
		return true
	})
	for _, lane := range freed {
		d.releaseLocked(lane)
	}
}

// runReady runs a job a free worker took from ready. A job that waited for a lane slot is first
// looked at again: it may have ended elsewhere meanwhile, or (its app's order unreadable) wait
// again behind an earlier job.
func (d *dispatcher) runReady(ctx, work context.Context, j *delivered) {
	if j.waited {
		j.waited = false
		switch d.oldest(ctx, j) {
		case jobGone:
			d.leave(j)
			j.log.Info("queue: job delivered again after it ended elsewhere")
			_ = j.msg.Ack()
			return
		case jobBehind:
			d.leave(j)
			d.hold(j)
			return
		}
	}
	if d.admit(j) {
		d.runChain(ctx, work, j)
	}
}
