package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// p9QuietWindow is how long ferry must stay quiet before an idle-server push is sent.
	p9QuietWindow = 300 * time.Millisecond
	// p9QuietCPU is the most CPU ferry may use in p9QuietWindow and count as idle: one tick of
	// /proc's clock (10 ms, about 3% of a core).
	p9QuietCPU = clockTick
	// p9QuietBound bounds the wait for quiet before each idle-server push; a push sent when it
	// ran out counts as not idle. With the routing ferry's cluster unreachable, the jobs of a
	// 1,000-app push retry with backoff for minutes, so after the first push ferry is seldom
	// quiet: the count of pushes that found it quiet is reported with the answers.
	p9QuietBound = 5 * time.Second
)

// pidCPU is the user+system CPU time process pid has used so far, 0 when it cannot be read.
func pidCPU(pid string) time.Duration {
	st, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are the 14th and 15th.
	_, rest, ok := strings.Cut(string(st), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * clockTick
}

// waitQuiet waits until process pid used at most p9QuietCPU over a p9QuietWindow, or
// p9QuietBound passed; it reports whether the process was quiet.
func waitQuiet(ctx context.Context, pid string) bool {
	deadline := time.Now().Add(p9QuietBound)
	for time.Now().Before(deadline) {
		before := pidCPU(pid)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(p9QuietWindow):
		}
		if pidCPU(pid)-before <= p9QuietCPU {
			return true
		}
	}
	return false
}

// hookTook reads ferry's log for the handler's own time (the webhook line's took) of each
// delivery whose id starts with prefix.
func hookTook(logPath, prefix string) (map[string]time.Duration, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]time.Duration{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20) // a 1,000-app line lists every app
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "msg=webhook ") {
			continue
		}
		d, t := logField(line, "delivery="), logField(line, "took=")
		if !strings.HasPrefix(d, prefix) || t == "" {
			continue
		}
		if took, err := time.ParseDuration(t); err == nil {
			out[d] = took
		}
	}
	return out, sc.Err()
}

// logField is the unquoted value of key (given with its '=') in a text-handler line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key)
	if i < 0 {
		return ""
	}
	v := line[i+1+len(key):]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}
