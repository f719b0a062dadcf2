package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/server/client"
)

const (
	// messageWidth cuts messages in tables, so that a line stays a line.
	messageWidth = 72
	// recentOnAppPage is how many past syncs ferry app shows (ferry history shows all ferry keeps).
	recentOnAppPage = 5
)

func appsCommand() *command {
	return &command{name: "apps", args: "", help: "List the apps with the state, revision and age of their last sync.",
		run: func(ctx context.Context, c *cli, cl *client.Client, _ []string) error {
			l, err := cl.Apps(ctx)
			if err != nil {
				return apiErr(err)
			}
			if c.json() {
				return c.printRaw(l.Raw)
			}
			clusters := false
			for _, a := range l.Apps {
				clusters = clusters || a.Cluster != ""
			}
			tw := table(c.stdout)
			head := []string{"NAME", "STATE"}
			if clusters {
				head = append(head, "CLUSTER")
			}
			row(tw, append(head, "REVISION", "AGE", "MESSAGE")...)
			for _, a := range l.Apps {
				cells := []string{a.Name, appState(a)}
				if clusters {
					cells = append(cells, dash(a.Cluster))
				}
				rev, age, msg := "-", "-", ""
				if s := a.LastSync; s != nil {
					rev, age, msg = shortSHA(s.SHA), c.age(when(*s)), oneLine(s.Message)
				}
				if a.Suspended() && a.Suspension.Reason != "" {
					msg = "suspended: " + oneLine(a.Suspension.Reason)
				}
				row(tw, append(cells, rev, age, msg)...)
			}
			return tw.Flush()
		}}
}

func appCommand() *command {
	return &command{name: "app", args: "NAME", nargs: 1, help: "Show one app: its settings, state, recent syncs and the objects of its last sync.",
		run: func(ctx context.Context, c *cli, cl *client.Client, args []string) error {
			a, err := cl.App(ctx, args[0])
			if err != nil {
				return apiErr(err)
			}
			if c.json() {
				return c.printRaw(a.Raw)
			}
			tw := table(c.stdout)
			row(tw, "Name:", a.Name)
			row(tw, "Repo:", fmt.Sprintf("%s (branch %s)", a.Repo, a.Branch))
			row(tw, "Path:", a.Path)
			if a.Cluster != "" {
				row(tw, "Cluster:", a.Cluster)
			}
			row(tw, "Namespace:", dash(a.Namespace))
			row(tw, "Prune:", fmt.Sprint(a.Prune))
			if len(a.DependsOn) > 0 {
				row(tw, "Depends on:", strings.Join(a.DependsOn, ", "))
			}
			if a.Suspended() {
				s := a.Suspension
				line := "yes"
				if s.By != "" {
					line += ", by " + s.By
				}
				if !s.At.IsZero() {
					line += ", " + c.age(s.At) + " ago"
				}
				if s.Reason != "" {
					line += ": " + oneLine(s.Reason)
				}
				row(tw, "Suspended:", line)
			}
			row(tw, "State:", appState(a))
			if s := a.LastSync; s != nil {
				row(tw, "Last sync:", fmt.Sprintf("%s %s at %s, %s ago (%s)", s.ID, s.State, shortSHA(s.SHA), c.age(when(*s)), s.Trigger))
				if s.Message != "" {
					row(tw, "Message:", oneLine(s.Message))
				}
				if s.Error != nil {
					row(tw, "Error:", failure(s.Error))
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(a.History) > 0 {
				fmt.Fprintln(c.stdout, "\nRecent syncs:")
				c.historyTable(a.History[:min(len(a.History), recentOnAppPage)])
			}
			if s := a.LastSync; s != nil && len(s.Objects) > 0 {
				fmt.Fprintf(c.stdout, "\nObjects of sync %s:\n", s.ID)
				tw := table(c.stdout)
				row(tw, "KIND", "NAMESPACE", "NAME", "ACTION")
				objs := append([]queue.ObjectRecord(nil), s.Objects...)
				sort.SliceStable(objs, func(i, j int) bool { return objs[i].Kind < objs[j].Kind })
				for _, o := range objs {
					row(tw, o.Kind, dash(o.Namespace), o.Name, o.Action)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if s.ObjectsCut > 0 {
					fmt.Fprintf(c.stdout, "(%d more not kept in the record)\n", s.ObjectsCut)
				}
			}
			return nil
		}}
}

func historyCommand() *command {
	return &command{name: "history", args: "NAME", nargs: 1, help: "List an app's past syncs, newest first.",
		run: func(ctx context.Context, c *cli, cl *client.Client, args []string) error {
			a, err := cl.App(ctx, args[0])
			if err != nil {
				return apiErr(err)
			}
			if c.json() {
				var v struct {
					History json.RawMessage `json:"history"`
				}
				if err := json.Unmarshal(a.Raw, &v); err != nil || len(v.History) == 0 {
					v.History = json.RawMessage("[]")
				}
				return c.printRaw(v.History)
			}
			if len(a.History) == 0 {
				fmt.Fprintf(c.stdout, "no syncs of %s yet\n", a.Name)
				return nil
			}
			return c.historyTable(a.History)
		}}
}

// historyTable writes syncs as a table.
func (c *cli) historyTable(recs []queue.Record) error {
	tw := table(c.stdout)
	row(tw, "ID", "STATE", "KIND", "TRIGGER", "REVISION", "AGE", "DURATION", "MESSAGE")
	for _, r := range recs {
		kind := string(r.Kind)
		if r.PR > 0 {
			kind = fmt.Sprintf("%s #%d", r.Kind, r.PR)
		}
		msg := oneLine(r.Message)
		if r.Error != nil && msg == "" {
			msg = failure(r.Error)
		}
		row(tw, r.ID, string(r.State), kind, string(r.Trigger), shortSHA(r.SHA), c.age(when(r)), duration(r), msg)
	}
	return tw.Flush()
}

// appState is the state of an app's last sync, and whether it is suspended.
func appState(a client.App) string {
	st := "never synced"
	if a.LastSync != nil {
		st = string(a.LastSync.State)
	}
	if a.Suspended() {
		st += " (suspended)"
	}
	return st
}

// when is the time a sync last moved: its end, start or enqueueing.
func when(r queue.Record) time.Time {
	switch {
	case r.FinishedAt != nil:
		return *r.FinishedAt
	case r.StartedAt != nil:
		return *r.StartedAt
	}
	return r.EnqueuedAt
}

// age is how long ago t was, as kubectl writes it: 45s, 12m, 5h, 3d.
func (c *cli) age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := c.now().Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// duration is how long a finished sync ran.
func duration(r queue.Record) string {
	if r.StartedAt == nil || r.FinishedAt == nil {
		return "-"
	}
	return r.FinishedAt.Sub(*r.StartedAt).Round(100 * time.Millisecond).String()
}

// failure is a sync's error in one line: "stage: object (file): message".
func failure(e *queue.RecordError) string {
	var b strings.Builder
	if e.Stage != "" {
		b.WriteString(e.Stage + ": ")
	}
	switch {
	case e.Object != "" && e.File != "":
		b.WriteString(e.Object + " (" + e.File + "): ")
	case e.Object != "":
		b.WriteString(e.Object + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	}
	return b.String() + oneLine(e.Message)
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return dash(s)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine is the first line of s, cut to messageWidth.
func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if r := []rune(s); len(r) > messageWidth {
		s = string(r[:messageWidth-1]) + "…"
	}
	return s
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func row(tw *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}
