package handlers

import "sync"

// unverifiedBudget counts the bytes that bodies not yet verified hold, against
// MaxUnverifiedBytes; its zero value holds nothing. Both counts are kept under one lock so that
// a reservation takes its share of the whole budget and of the large bodies' part together.
type unverifiedBudget struct {
	mu sync.Mutex
	// all is held by every unverified body; large by those over SmallBodyBytes, which may not
	// use SmallBodyReserve.
	all, large int64
}

// reservation is one body's share of the budget.
type reservation struct {
	b          *unverifiedBudget
	all, large int64
}

// reserve takes n bytes for one body, or reports that they do not fit.
func (b *unverifiedBudget) reserve(n int64) (*reservation, bool) {
	r := &reservation{b: b}
	if !r.grow(n) {
		return nil, false
	}
	return r, true
}

// grow raises the reservation to n bytes, if they fit.
func (r *reservation) grow(n int64) bool {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	addAll, addLarge := n-r.all, int64(0)
	if n > SmallBodyBytes {
		addLarge = n - r.large
	}
	if b.all+addAll > MaxUnverifiedBytes || b.large+addLarge > MaxUnverifiedBytes-SmallBodyReserve {
		return false
	}
	b.all += addAll
	b.large += addLarge
	r.all += addAll
	r.large += addLarge
	return true
}

// bytes is what the reservation holds.
func (r *reservation) bytes() int64 {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	return r.all
}

// release gives the reservation back; calling it again does nothing.
func (r *reservation) release() {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all -= r.all
	b.large -= r.large
	r.all, r.large = 0, 0
}

// held reports the bytes reserved in all and by bodies over SmallBodyBytes, for the log line
// of a delivery refused for want of budget.
func (b *unverifiedBudget) held() (all, large int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.all, b.large
}
