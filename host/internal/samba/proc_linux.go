package samba

import "syscall"

// sysProcAttr makes the kernel kill Samba when the thread that started it
// dies, so a crashed or killed test binary leaves no DC behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
