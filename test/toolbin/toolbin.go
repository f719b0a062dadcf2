// Package toolbin finds and runs the scripts that build the tools tests run beside ferry (the
// control plane, the OCI registry, the sops CLI) from the Go module proxy into a cache, and
// starts such tools in process groups of their own.
package toolbin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// KillWait bounds the wait for a killed process group's pipes to close.
const KillWait = 10 * time.Second

// errTailBytes bounds the script output quoted in an error.
const errTailBytes = 4 << 10

// Find locates rel, a path from the repository root such as "test/sopsbin/build.sh", above this
// source file or, when the source path is not a real one (a -trimpath build), above the working
// directory, which for `go test` is a package directory inside the repository.
func Find(rel string) (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for {
			candidate := filepath.Join(dir, filepath.FromSlash(rel))
			if _, err := os.Stat(candidate); err == nil {
				return candidate, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find " + rel + " above the source or working directory")
}

// Build runs the build script with args, forwarding its progress (standard error) line by line
// to logf, and returns the last line it prints on standard output: where the tool is. ctx bounds
// the build; cancelling it kills the script's whole process group, go build included.
func Build(ctx context.Context, script string, args []string, logf func(string, ...any)) (string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.Dir = filepath.Dir(script)
	// Cancel the whole group: killing bash alone would leave `go build` holding the pipes.
	cmd.SysProcAttr = SysProcAttr()
	cmd.Cancel = func() error { return SignalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = KillWait
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	var stderr bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			stderr.WriteString(line + "\n")
			logf("%s: %s", filepath.Base(filepath.Dir(script))+"/"+filepath.Base(script), line)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-copied
	if err != nil {
		tail := stderr.String()
		if len(tail) > errTailBytes {
			tail = tail[len(tail)-errTailBytes:]
		}
		return "", fmt.Errorf("%s: %w\n%s", script, err, tail)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	out := strings.TrimSpace(lines[len(lines)-1])
	if out == "" {
		return "", fmt.Errorf("%s printed nothing", script)
	}
	return out, nil
}

// SignalGroup sends sig to the process group led by pgid; ESRCH (already gone) is not an error.
func SignalGroup(pgid int, sig syscall.Signal) error {
	err := syscall.Kill(-pgid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
