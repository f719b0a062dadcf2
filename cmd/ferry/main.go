// Command ferry is a GitOps server: a push webhook makes it apply that exact commit to a
// Kubernetes cluster and report back on the commit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, errHelpShown) {
		fmt.Fprintln(os.Stderr, "ferry:", err)
	}
	stop()
	os.Exit(exitCode(err))
}

const usage = `usage: ferry <command> [flags]

server commands:
  serve     run the server (webhooks, API, workers)
  check     validate a config file and its secrets, then exit
  version   print the version
` + clientUsage

// run is main without the process: it parses args, runs the command and returns its error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageErr("no command given")
	}
	args = commandFirst(args)
	if cmd, ok := clientCommands()[args[0]]; ok {
		return runClient(ctx, cmd, args[1:], getenv, stdout, stderr)
	}
	switch args[0] {
	case "serve":
		opts, err := parseServeFlags(args[1:], getenv, stderr)
		if err != nil {
			return flagErr(err)
		}
		return serve(ctx, opts, getenv, stderr)
	case "check":
		opts, err := parseServeFlags(args[1:], getenv, stderr)
		if err != nil {
			return flagErr(err)
		}
		cfg, _, err := LoadConfig(opts.Config, getenv)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "config ok: %d repos, %d apps\n", len(cfg.Repos), len(cfg.Apps))
		return nil
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "ferry", buildVersion())
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageErr("unknown command %q", args[0])
}

// flagErr is a command line the flags refused: --help is no error, anything else exit 2.
func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return errHelpShown
	}
	return withCode(exitUsage, err)
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// serveOptions are the command-line settings of ferry serve.
type serveOptions struct {
	Config       string
	Listen       string
	NATSURL      string
	NATSReplicas int
	DataDir      string
	Kubeconfig   string
	Workers      int
	LogLevel     string
	LogFormat    string
	Worker       string
}

// parseServeFlags reads flags, each with an FERRY_* environment default.
func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (serveOptions, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var o serveOptions
	fs := flag.NewFlagSet("ferry serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Config, "config", env("FERRY_CONFIG", "ferry.yaml"), "config file (env FERRY_CONFIG)")
	fs.StringVar(&o.Listen, "listen", env("FERRY_LISTEN", ":8080"), "HTTP listen address (env FERRY_LISTEN)")
	fs.StringVar(&o.NATSURL, "nats-url", env("FERRY_NATS_URL", ""), "external NATS server or cluster URLs; empty runs NATS embedded (env FERRY_NATS_URL)")
	fs.IntVar(&o.NATSReplicas, "nats-replicas", atoiOr(getenv("FERRY_NATS_REPLICAS"), 1), "JetStream replicas for ferry's stream and records on an external cluster (env FERRY_NATS_REPLICAS)")
	fs.StringVar(&o.DataDir, "data-dir", env("FERRY_DATA_DIR", "data"), "directory for the embedded NATS store and the Git cache (env FERRY_DATA_DIR)")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", env("FERRY_KUBECONFIG", getenv("KUBECONFIG")), "kubeconfig; empty uses the in-cluster service account (env FERRY_KUBECONFIG, KUBECONFIG)")
	fs.IntVar(&o.Workers, "workers", atoiOr(getenv("FERRY_WORKERS"), 0), "syncs run at once by this replica; 0 takes the config's workers (env FERRY_WORKERS)")
	fs.StringVar(&o.LogLevel, "log-level", env("FERRY_LOG_LEVEL", "info"), "debug, info, warn or error (env FERRY_LOG_LEVEL)")
	fs.StringVar(&o.LogFormat, "log-format", env("FERRY_LOG_FORMAT", "text"), "text or json (env FERRY_LOG_FORMAT)")
	fs.StringVar(&o.Worker, "worker-name", env("FERRY_WORKER_NAME", hostname()), "this replica's name on sync records (env FERRY_WORKER_NAME)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

func atoiOr(s string, def int) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return def
	}
	return n
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "ferry"
	}
	return h
}
