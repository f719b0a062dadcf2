package toolbin

import "syscall"

// SysProcAttr puts a child in its own process group and has the kernel SIGKILL it when the
// thread that started it (and so, in practice, the test binary) dies.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
