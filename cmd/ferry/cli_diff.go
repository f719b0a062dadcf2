package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/server/client"
)

// diffLimits are the server's bounds on a diff archive, checked before anything is sent.
func diffLimits() client.ArchiveLimits {
	return client.ArchiveLimits{MaxCompressed: handlers.MaxDiffArchive, MaxBytes: handlers.MaxDiffBytes, MaxFiles: handlers.MaxDiffFiles}
}

func diffCommand() *command {
	var dir string
	return &command{name: "diff", args: "NAME --path DIR", nargs: 1, write: true,
		help: "Render a local directory as the app's path on the server (chart values, variables and SOPS keys\n" +
			"of the app), dry-run it against the app's cluster and print what would change. Nothing is applied.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "path", "", "the local directory to render in place of the app's path (required)")
		},
		run: func(ctx context.Context, c *cli, cl *client.Client, args []string) error {
			if dir == "" {
				return usageErr("ferry diff needs --path DIR")
			}
			archive, err := client.Archive(dir, diffLimits())
			if err != nil {
				return withCode(exitUsage, err)
			}
			res, err := cl.Diff(ctx, args[0], archive)
			if err != nil {
				var ae *client.Error
				if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity {
					return withCode(exitFailed, renderFailure(ae))
				}
				return apiErr(err)
			}
			if c.json() {
				return c.printRaw(res.Raw)
			}
			changed := res.Counts["changed"] + res.Counts["created"] + res.Counts["pruned"]
			if changed == 0 {
				fmt.Fprintf(c.stdout, "no changes: %s\n", counts(res.Counts))
				return nil
			}
			fmt.Fprint(c.stdout, diffOnly(res.Diff))
			fmt.Fprintln(c.stdout, res.Summary)
			return nil
		}}
}

// diffOnly drops the unchanged objects' lines ("= ..."), which say nothing about the change.
func diffOnly(text string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(line, "= ") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// renderFailure words a diff the server could not render or dry-run: stage, object, file.
func renderFailure(e *client.Error) error {
	var parts []string
	for _, k := range []string{"stage", "object", "file"} {
		if v := e.Detail[k]; v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	if len(parts) == 0 {
		return fmt.Errorf("the diff failed: %s", e.Message)
	}
	return fmt.Errorf("the diff failed (%s): %s", strings.Join(parts, ", "), e.Message)
}
