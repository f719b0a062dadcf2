//go:build unix && !linux

package cluster

import "syscall"

// sysProcAttr puts a child in its own process group. Without Pdeathsig outside Linux, a child
// outlives a test binary that is killed without running Stop.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
