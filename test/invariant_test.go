package test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/test/forgefake"
)

// Bounds of the final-status invariant check: how long ferry may take to become idle, and how
// long the statuses must stay unchanged to count as idle.
const (
	idleWithin = 90 * time.Second
	idleSettle = 2 * time.Second
)

// assertAllFinal checks the rule ferry holds everywhere: once ferry is idle, the last status
// of every commit and context that got any status is final (never pending). It waits until no
// status has arrived for idleSettle with the rule holding, and fails after idleWithin listing
// every commit and context left pending.
func assertAllFinal(t *testing.T, forges ...*forgefake.Forge) {
	t.Helper()
	deadline := time.Now().Add(idleWithin)
	seen, since := -1, time.Now()
	for {
		n, open := 0, []string(nil)
		for _, f := range forges {
			all := f.All()
			n += len(all)
			open = append(open, pendingAtEnd(all)...)
		}
		if n != seen {
			seen, since = n, time.Now()
		}
		if len(open) == 0 && time.Since(since) >= idleSettle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d commit statuses are left pending:\n%s", idleWithin, len(open), strings.Join(open, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pendingAtEnd lists the commits and contexts whose last status is not final.
func pendingAtEnd(all []forgefake.Status) []string {
	type key struct{ sha, context string }
	last := map[key]forgefake.Status{}
	for _, s := range all {
		last[key{s.SHA, s.Context}] = s
	}
	var out []string
	for k, s := range last {
		if s.State == "pending" || s.State == "running" {
			out = append(out, fmt.Sprintf("%s %s: %s %q (%s)", short7(k.sha), k.context, s.State, s.Description, s.TargetURL))
		}
	}
	sort.Strings(out)
	return out
}

func TestPendingAtEnd(t *testing.T) {
	all := []forgefake.Status{
		{SHA: "a", Context: "ferry/api", State: "pending"}, {SHA: "a", Context: "ferry/api", State: "success"},
		{SHA: "b", Context: "ferry/api", State: "success"}, {SHA: "b", Context: "ferry/api", State: "pending", Description: "queued"},
		{SHA: "b", Context: "ferry/db", State: "failure"},
	}
	got := pendingAtEnd(all)
	if len(got) != 1 || !strings.HasPrefix(got[0], "b ferry/api: pending \"queued\"") {
		t.Errorf("pendingAtEnd = %q", got)
	}
}
