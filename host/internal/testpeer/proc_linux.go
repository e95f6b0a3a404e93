package testpeer

import "syscall"

// sysProcAttr makes the kernel kill a peer's server when the thread that
// started it dies, so a crashed or killed test binary leaves no server
// behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
