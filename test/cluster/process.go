package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/ferrygitops/ferry/test/toolbin"
)

// stopGrace is how long a stopped process gets to exit after SIGTERM before its whole process
// group is killed. Graceful exits only matter for tidy logs; the data is throwaway.
const stopGrace = 2 * time.Second

// killWait bounds the wait for a SIGKILLed process group to be reaped; past it something is
// badly wrong (a zombie held by the kernel) and Stop reports it instead of hanging a test run.
const killWait = 10 * time.Second

// logTailBytes is how much of a process's log an error carries: enough for the fatal lines
// (a port in use, a bad flag) without burying the test output in klog noise.
const logTailBytes = 4 << 10

// process is one running control-plane binary in its own process group, with its stderr and
// stdout appended to a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd.Wait has returned
	waitErr error         // cmd.Wait's result, readable after done is closed
}

// startProcess runs bin with args, its output appended to logPath. The process lives in a new
// process group (so Stop can take any children with it) and, on Linux, is SIGKILLed by the
// kernel if the test binary dies first, so no apiserver outlives a crashed or killed test.
func startProcess(name, bin, logPath string, args []string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	fmt.Fprintf(logFile, "==== %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	// Not exec.CommandContext: the process must outlive the start context and is ended only by stop.
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = os.Environ()
	cmd.SysProcAttr = toolbin.SysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has already ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after stopGrace. It is safe to call on a
// process that has already exited.
func (p *process) stop() error {
	if ok, _ := p.exited(); ok {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = toolbin.SignalGroup(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		// The leader is gone; take any stragglers in its group with it.
		_ = toolbin.SignalGroup(pgid, syscall.SIGKILL)
		return nil
	case <-time.After(stopGrace):
	}
	_ = toolbin.SignalGroup(pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d) did not exit %s after SIGKILL", p.name, pgid, killWait)
	}
}

// logTail returns the end of the process's log, for error messages.
func (p *process) logTail() string {
	return fileTail(p.logPath, logTailBytes)
}

// fileTail returns up to n bytes from the end of the file at path, starting on a line boundary.
func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(st.Size()-n, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return string(buf)
}

// failure wraps err with the process's log tail, so a test failure shows why the binary died.
func (p *process) failure(err error) error {
	return fmt.Errorf("%w\n---- last lines of %s ----\n%s", err, p.logPath, p.logTail())
}

// poll calls check every interval until it returns true or an error, the process exits, or
// timeout passes. It is how every wait in this package stays bounded.
func poll(ctx context.Context, p *process, timeout, interval time.Duration, what string, check func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		if p != nil {
			if ok, werr := p.exited(); ok {
				return p.failure(fmt.Errorf("%s exited while waiting for %s: %v", p.name, what, werr))
			}
		}
		ok, err := check(ctx)
		if err != nil {
			lastErr = err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("wait for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			if p != nil {
				return p.failure(err)
			}
			return err
		case <-time.After(interval):
		}
	}
}
