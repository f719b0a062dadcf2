// Package queuetest runs ferry's queue and stores on a real, embedded NATS server for tests of
// the packages that use them.
package queuetest

import (
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

// Start runs an embedded NATS server with JetStream in a directory of t's own, until t ends,
// and returns the job queue on it.
func Start(t testing.TB) *queue.Queue {
	t.Helper()
	e, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := e.Connect("test")
	if err != nil {
		e.Shutdown()
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	q, err := queue.New(t.Context(), nc, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// Records is the sync record store on a server of t's own.
func Records(t testing.TB) *queue.Records {
	t.Helper()
	recs, err := queue.NewRecords(t.Context(), Start(t).JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Suspensions is the suspension store on a server of t's own, on now's clock (nil: time.Now).
func Suspensions(t testing.TB, now func() time.Time) *queue.Suspensions {
	t.Helper()
	s, err := queue.NewSuspensions(t.Context(), Start(t).JetStream(), 1, now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
