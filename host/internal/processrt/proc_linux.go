package processrt

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts the plugin in a process group of its own, so that a
// failure can kill whatever it started too, and makes the kernel kill it
// when the host dies (Pdeathsig), so that a crashed or killed host leaves
// no plugin behind. (Pdeathsig fires when the thread that started the
// plugin ends; Go ends a thread only when a goroutine locked to it exits,
// and the plugin is not started from such a goroutine. The sdk's plugin
// side also exits when its parent changes, as a backstop.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the process group of a plugin started with sysProcAttr.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// limitMemory caps the data segment of process pid, which on Linux counts
// every writable private mapping: a Go program's heap.
func limitMemory(pid int, bytes uint64) error {
	return unix.Prlimit(pid, unix.RLIMIT_DATA, &unix.Rlimit{Cur: bytes, Max: bytes}, nil)
}
