//go:build !linux

package registry

import "syscall"

// sysProcAttr puts the registry in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
