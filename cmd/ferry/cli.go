package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/server/client"
)

// Exit codes of the client commands, documented in the README; scripts and CI jobs rely on them.
const (
	// exitOK: done; with --wait, the sync succeeded.
	exitOK = 0
	// exitFailed: the sync failed, or a diff's render or dry-run failed; also any other error.
	exitFailed = 1
	// exitUsage: bad command line, missing server or token, or a local directory that cannot be sent.
	exitUsage = 2
	// exitAPI: ferry refused the request or could not be reached (unknown app, bad token, 5xx).
	exitAPI = 3
	// exitTimeout: --timeout passed before the sync was over.
	exitTimeout = 4
	// exitNotApplied: the sync ended without being applied (superseded by a newer commit, or
	// the app is suspended).
	exitNotApplied = 5
)

// DefaultWaitTimeout bounds --wait when no --timeout is given.
const DefaultWaitTimeout = 15 * time.Minute

// exitError is an error with the process's exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode gives err an exit code; nil stays nil.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageErr is a command line mistake: exit 2.
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode is the process's exit code for what run returned.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	}
	return exitFailed
}

// errHelpShown is --help of a command: its usage was printed, nothing else to do.
var errHelpShown = errors.New("help shown")

// apiErr classifies a client error: ferry's refusal or no answer is exit 3, a timeout exit 4.
func apiErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return withCode(exitTimeout, err)
	}
	return withCode(exitAPI, err)
}

// cli is what every client command works with: the parsed global settings and the process's
// streams and clock.
type cli struct {
	server, token, output string
	tokenFromFlag         bool
	stdout, stderr        io.Writer
	now                   func() time.Time
}

// command is one client command.
type command struct {
	name, args, help string
	// flags adds the command's own flags to fs.
	flags func(fs *flag.FlagSet)
	// nargs is how many positional arguments the command takes.
	nargs int
	run   func(ctx context.Context, c *cli, cl *client.Client, args []string) error
	// write tells that the command needs the API token.
	write bool
}

// clientUsage lists the client commands for ferry's usage text.
const clientUsage = `
client commands (talk to a running ferry; --server or FERRY_SERVER, token in FERRY_TOKEN):
  apps      list apps with their last sync
  app       show one app: state, recent syncs, objects of the last sync
  history   list an app's past syncs
  sync      sync an app (--revision, --force), --wait for the result
  suspend   stop syncing an app until it is resumed
  resume    resume an app and sync its branch head
  diff      dry-run a local directory as an app's path and print the diff

Run 'ferry <command> --help' for a command's flags. Exit codes: 0 ok, 1 failed,
2 usage, 3 API error, 4 timeout, 5 not applied (superseded or suspended).
`

// clientCommands are the client commands by name.
func clientCommands() map[string]*command {
	cmds := []*command{appsCommand(), appCommand(), historyCommand(), syncCommand(), suspendCommand(), resumeCommand(), diffCommand()}
	m := make(map[string]*command, len(cmds))
	for _, c := range cmds {
		m[c.name] = c
	}
	return m
}

// runClient parses a client command's flags (global ones anywhere on the line), builds the
// API client and runs the command.
func runClient(ctx context.Context, cmd *command, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c := &cli{stdout: stdout, stderr: stderr, now: time.Now}
	fs := flag.NewFlagSet("ferry "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.server, "server", getenv("FERRY_SERVER"), "ferry's address, e.g. https://ferry.example.com (env FERRY_SERVER)")
	var flagToken string
	fs.StringVar(&flagToken, "token", "", "API token; prefer env FERRY_TOKEN: a flag shows in the process list")
	fs.StringVar(&c.output, "o", "table", "output: table or json (the API's JSON, for scripts)")
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ferry %s %s\n\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return errHelpShown
	}
	if err != nil {
		return withCode(exitUsage, err)
	}
	if len(pos) != cmd.nargs {
		fs.Usage()
		if cmd.nargs == 0 {
			return usageErr("ferry %s takes no arguments, got %q", cmd.name, strings.Join(pos, " "))
		}
		return usageErr("ferry %s needs %s", cmd.name, cmd.args)
	}
	if c.output != "table" && c.output != "json" {
		return usageErr("-o must be table or json, not %q", c.output)
	}
	c.token = getenv("FERRY_TOKEN")
	if flagToken != "" {
		c.token, c.tokenFromFlag = flagToken, true
		fmt.Fprintln(stderr, "ferry: warning: --token shows in the process list; prefer the FERRY_TOKEN environment variable")
	}
	if c.server == "" {
		return usageErr("no server: give --server or set FERRY_SERVER (e.g. https://ferry.example.com)")
	}
	if cmd.write && c.token == "" {
		return usageErr("ferry %s needs an API token: set FERRY_TOKEN (one of apiTokens in ferry.yaml)", cmd.name)
	}
	cl, err := client.New(c.server, client.Options{Token: c.token, UserAgent: "ferry-cli/" + buildVersion()})
	if err != nil {
		return withCode(exitUsage, err)
	}
	return cmd.run(ctx, c, cl, pos)
}

// commandFirst moves a client command named after global flags ("ferry --server URL apps") to
// the front, where run looks for it; anything else is left as it is.
func commandFirst(args []string) []string {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return args
	}
	cmds := clientCommands()
	for i, a := range args {
		if _, ok := cmds[a]; ok {
			return append([]string{a}, append(append([]string(nil), args[:i]...), args[i+1:]...)...)
		}
	}
	return args
}

// parseInterspersed parses flags before, between and after positional arguments, as users of
// git and kubectl expect ("ferry sync api --wait"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" (dropped) or at the first positional argument.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// json tells whether the output is the API's JSON.
func (c *cli) json() bool { return c.output == "json" }

// printRaw writes the API's answer as it came, ending with a newline.
func (c *cli) printRaw(raw []byte) error {
	s := strings.TrimRight(string(raw), "\n")
	_, err := fmt.Fprintln(c.stdout, s)
	return err
}

// progress is where --wait writes its lines: stdout for people, stderr when stdout is JSON.
func (c *cli) progress() io.Writer {
	if c.json() {
		return c.stderr
	}
	return c.stdout
}
