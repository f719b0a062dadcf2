package main

import (
	"fmt"
	"os"
	"sync"
)

// demoEnv gives the git server what it asks of a test: temporary directories, clean-ups and a
// way to fail.
type demoEnv struct {
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

func (e *demoEnv) Helper() {}

func (e *demoEnv) Fatalf(format string, args ...any) {
	e.cleanup()
	fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
	os.Exit(1)
}

func (e *demoEnv) TempDir() string {
	d, err := os.MkdirTemp("", "ferry-demo-")
	if err != nil {
		e.Fatalf("temp dir: %v", err)
	}
	e.mu.Lock()
	e.dirs = append(e.dirs, d)
	e.mu.Unlock()
	return d
}

func (e *demoEnv) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

// cleanup runs the clean-ups in reverse order, then removes the temporary directories.
func (e *demoEnv) cleanup() {
	e.mu.Lock()
	fs, dirs := e.cleanups, e.dirs
	e.cleanups, e.dirs = nil, nil
	e.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}
