package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// embeddedStartTimeout bounds how long an in-process NATS server may take to become ready,
// which includes recovering the stream from disk after a restart.
const embeddedStartTimeout = 60 * time.Second

// EmbeddedOptions configures the in-process NATS server ferry runs when no external one is given.
type EmbeddedOptions struct {
	// DataDir holds JetStream's file store, so queued jobs and sync records survive a restart.
	DataDir string
	Logger  *slog.Logger
}

// Embedded is a NATS server with JetStream running inside the ferry process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts the in-process NATS server and waits until it accepts connections.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.DataDir == "" {
		return nil, errors.New("embedded nats: a data directory is required to store jobs durably")
	}
	sopts := &server.Options{
		ServerName: "ferry",
		JetStream:  true,
		StoreDir:   filepath.Join(opts.DataDir, "jetstream"),
		// In-process only: the embedded server opens no port.
		DontListen:         true,
		NoSigs:             true,
		JetStreamMaxMemory: 64 << 20,
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if opts.Logger != nil {
		srv.SetLoggerV2(natsLogger{opts.Logger}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(embeddedStartTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s", embeddedStartTimeout)
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens an in-process client connection to the embedded server.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server after its clients are gone, flushing JetStream to disk.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// natsLogger forwards the NATS server's log lines to ferry's logger.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  {}
