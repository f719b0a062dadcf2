package cluster

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
)

// buildScript is the script, relative to the repository root, that builds the control plane from
// the Go module proxy into a cache and prints the cache directory.
const buildScript = "test/k8sbin/build.sh"

// ensureBinaries returns the directory holding tools: binDir itself when set (after checking
// that every tool is there), else whatever build.sh prints after building the missing ones. A
// cold build takes about 20 minutes on 2 cores; it is bounded by ctx.
func ensureBinaries(ctx context.Context, binDir string, tools []string, logf func(string, ...any)) (string, error) {
	if binDir == "" {
		script, err := findBuildScript()
		if err != nil {
			return "", err
		}
		if binDir, err = runBuildScript(ctx, script, tools, logf); err != nil {
			return "", err
		}
	}
	for _, t := range tools {
		st, err := os.Stat(filepath.Join(binDir, t))
		if err != nil {
			return "", fmt.Errorf("control plane binary: %w", err)
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("control plane binary %s is not an executable file", filepath.Join(binDir, t))
		}
	}
	return binDir, nil
}

// findBuildScript locates build.sh next to this source file, or, when the source path is not a
// real path (a -trimpath build), by walking up from the working directory, which for `go test`
// is the package directory inside the repository.
func findBuildScript() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		// file is <root>/test/cluster/bin.go.
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for {
			candidate := filepath.Join(dir, filepath.FromSlash(buildScript))
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
	return "", errors.New("cannot find " + buildScript + " above the source or working directory; set Options.BinDir")
}

// runBuildScript runs build.sh for tools, forwarding its progress lines to logf, and returns the
// directory it prints last.
func runBuildScript(ctx context.Context, script string, tools []string, logf func(string, ...any)) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, tools...)...)
	cmd.Dir = filepath.Dir(script)
	// Cancel the whole group: killing bash alone would leave `go build` holding the pipes.
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killWait
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
			logf("build.sh: %s", line)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-copied
	if err != nil {
		tail := stderr.String()
		if len(tail) > logTailBytes {
			tail = tail[len(tail)-logTailBytes:]
		}
		return "", fmt.Errorf("build control plane with %s: %w\n%s", script, err, tail)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if dir == "" {
		return "", fmt.Errorf("build control plane with %s: it printed no directory", script)
	}
	return dir, nil
}
