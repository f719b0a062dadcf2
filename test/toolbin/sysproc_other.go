//go:build unix && !linux

package toolbin

import "syscall"

// SysProcAttr puts a child in its own process group. Without Pdeathsig outside Linux, a child
// outlives a test binary that is killed without running Stop.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
