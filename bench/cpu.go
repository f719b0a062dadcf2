package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuUnder returns the user+system CPU time used so far by each process whose command line
// mentions dir, by executable name: the control plane of one bench cluster, whose flags all name
// its directory.
func cpuUnder(dir string) map[string]time.Duration {
	out := map[string]time.Duration{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cl), dir) {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name; utime and stime are the 14th and 15th.
		_, rest, ok := strings.Cut(string(st), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		name := filepath.Base(strings.SplitN(string(cl), "\x00", 2)[0])
		out[name] += time.Duration(u+s) * clockTick
	}
	return out
}

// cpuSince is what each process of after used since before.
func cpuSince(before, after map[string]time.Duration) map[string]time.Duration {
	out := map[string]time.Duration{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// fmtCPU prints CPU times by process, largest first, and their sum.
func fmtCPU(m map[string]time.Duration) string {
	names := make([]string, 0, len(m))
	var total time.Duration
	for k, v := range m {
		names = append(names, k)
		total += v
	}
	slices.SortFunc(names, func(a, b string) int { return int(m[b] - m[a]) })
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %s", k, fmtDur(m[k])))
	}
	return fmt.Sprintf("%s CPU (%s)", fmtDur(total), strings.Join(parts, ", "))
}

// selfCPU is the user+system CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
