package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/server/client"
)

// stateSuspended is the end of a sync not applied because its app is suspended, on servers
// that suspend apps.
const stateSuspended queue.State = "suspended"

// waitFlags are --wait and --timeout.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&w.wait, "wait", false, "follow the sync to its end; the exit code tells how it ended")
	fs.DurationVar(&w.timeout, "timeout", DefaultWaitTimeout, "with --wait, give up after this long (exit 4)")
}

func syncCommand() *command {
	var (
		revision string
		force    bool
		w        waitFlags
	)
	return &command{name: "sync", args: "NAME", nargs: 1, write: true,
		help: "Sync an app at its branch head or --revision (a full commit sha, the branch or a tag).\nWith --wait, print the sync's progress and exit 0 only if it succeeded.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&revision, "revision", "", "commit sha, branch or tag to sync; empty: the branch head")
			fs.BoolVar(&force, "force", false, "sync even if the app is suspended")
			w.add(fs)
		},
		run: func(ctx context.Context, c *cli, cl *client.Client, args []string) error {
			q, err := cl.TriggerSync(ctx, args[0], client.SyncOptions{Revision: revision, Force: force})
			if client.StatusOf(err) == http.StatusConflict {
				return withCode(exitNotApplied, fmt.Errorf("%w (ferry sync --force syncs it anyway)", err))
			}
			if err != nil {
				return apiErr(err)
			}
			return c.queued(ctx, cl, q, w)
		}}
}

func resumeCommand() *command {
	var w waitFlags
	return &command{name: "resume", args: "NAME", nargs: 1, write: true,
		help:  "Resume a suspended app: pushes, polls and drift sync it again, and its branch head is synced now.",
		flags: w.add,
		run: func(ctx context.Context, c *cli, cl *client.Client, args []string) error {
			q, err := cl.Resume(ctx, args[0])
			if err != nil {
				return apiErr(err)
			}
			return c.queued(ctx, cl, q, w)
		}}
}

func suspendCommand() *command {
	var reason string
	return &command{name: "suspend", args: "NAME", nargs: 1, write: true,
		help: "Suspend an app: nothing syncs it (pushes get a \"suspended, not applied\" status) until it is resumed;\nferry sync --force still does.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&reason, "reason", "", "why, shown with the app (e.g. \"incident 42\")")
		},
		run: func(ctx context.Context, c *cli, cl *client.Client, args []string) error {
			s, err := cl.Suspend(ctx, args[0], reason)
			if err != nil {
				return apiErr(err)
			}
			if c.json() {
				return c.printRaw(s.Raw)
			}
			line := "app " + cmpOr(s.App, args[0]) + " suspended"
			if s.By != "" {
				line += " by " + s.By
			}
			if s.Reason != "" {
				line += ": " + s.Reason
			}
			fmt.Fprintln(c.stdout, line)
			return nil
		}}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// queued reports a stored sync and, with --wait, follows it to its end.
func (c *cli) queued(ctx context.Context, cl *client.Client, q client.Queued, w waitFlags) error {
	if !w.wait {
		if c.json() {
			return c.printRaw(q.Raw)
		}
		at := ""
		if q.SHA != "" {
			at = " at " + shortSHA(q.SHA)
		}
		fmt.Fprintf(c.stdout, "sync %s of %s%s queued: %s\n", q.ID, q.App, at, q.URL)
		return nil
	}
	fmt.Fprintf(c.progress(), "sync %s of %s queued: %s\n", q.ID, q.App, q.URL)
	if w.timeout <= 0 {
		return usageErr("--timeout must be positive")
	}
	wctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	p := &progress{w: c.progress()}
	rec, err := cl.Follow(wctx, q.ID, p.update)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			state := "not started"
			if rec.State != "" {
				state = string(rec.State)
			}
			return withCode(exitTimeout, fmt.Errorf("sync %s still %s after %s; follow it at %s", q.ID, state, w.timeout, q.URL))
		}
		return apiErr(fmt.Errorf("following sync %s: %w", q.ID, err))
	}
	if c.json() {
		_, raw, err := cl.Sync(ctx, q.ID)
		if err != nil {
			raw = mustJSONIndent(rec)
		}
		if err := c.printRaw(raw); err != nil {
			return err
		}
	}
	switch rec.State {
	case queue.StateSucceeded:
		return nil
	case queue.StateFailed:
		return withCode(exitFailed, fmt.Errorf("sync %s failed: %s", rec.ID, failureOf(rec)))
	case queue.StateSkipped, stateSuspended:
		return withCode(exitNotApplied, fmt.Errorf("sync %s was not applied: %s", rec.ID, cmpOr(oneLine(rec.Message), string(rec.State))))
	}
	return withCode(exitFailed, fmt.Errorf("sync %s ended as %q", rec.ID, rec.State))
}

func failureOf(r queue.Record) string {
	if r.Error != nil {
		return failure(r.Error)
	}
	return cmpOr(oneLine(r.Message), "no reason given")
}

// progress writes a line for each step a followed sync takes: its state, each phase as it
// completes, its message, and at its end the counts and the failure.
type progress struct {
	w      io.Writer
	state  queue.State
	msg    string
	phases map[string]bool
}

func (p *progress) update(r queue.Record) {
	if p.phases == nil {
		p.phases = map[string]bool{}
	}
	if r.State != p.state && !r.State.Terminal() {
		line := string(r.State)
		if r.State == queue.StateRunning {
			line = fmt.Sprintf("running %s at %s", r.App, shortSHA(r.SHA))
			if r.Worker != "" {
				line += " on " + r.Worker
			}
		}
		fmt.Fprintln(p.w, line)
	}
	names := make([]string, 0, len(r.Phases))
	for n := range r.Phases {
		if !p.phases[n] {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool { return phaseOrder(names[i]) < phaseOrder(names[j]) })
	for _, n := range names {
		p.phases[n] = true
		fmt.Fprintf(p.w, "  %-8s %s\n", n, (time.Duration(r.Phases[n]) * time.Millisecond).String())
	}
	if r.Message != "" && r.Message != p.msg && !r.State.Terminal() {
		fmt.Fprintln(p.w, "  "+oneLine(r.Message))
	}
	p.msg = r.Message
	if r.State.Terminal() && r.State != p.state {
		line := string(r.State)
		if r.Message != "" {
			line += ": " + oneLine(r.Message)
		}
		fmt.Fprintln(p.w, line)
		if len(r.Counts) > 0 {
			fmt.Fprintln(p.w, "  objects: "+counts(r.Counts))
		}
		if e := r.Error; e != nil {
			for _, kv := range [][2]string{{"stage", e.Stage}, {"object", e.Object}, {"file", e.File}, {"error", e.Message}} {
				if kv[1] != "" {
					fmt.Fprintf(p.w, "  %-7s %s\n", kv[0]+":", kv[1])
				}
			}
		}
	}
	p.state = r.State
}

// phaseOrder puts a sync's phases in the order they run.
func phaseOrder(name string) int {
	for i, n := range []string{"fetch", "render", "apply", "prune", "health"} {
		if n == name {
			return i
		}
	}
	return 100
}

// counts writes object counts in a stable order: "2 created, 1 changed, 5 unchanged".
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}

func mustJSONIndent(v any) []byte {
	b, _ := json.MarshalIndent(v, "", "  ")
	return b
}
