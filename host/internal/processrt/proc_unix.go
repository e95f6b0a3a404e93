//go:build unix && !linux

package processrt

import "syscall"

// sysProcAttr puts the plugin in a process group of its own, so that a
// failure can kill whatever it started too. There is no Pdeathsig outside
// Linux: a plugin whose host died notices that its parent changed and
// exits (the sdk's plugin side polls for it).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the process group of a plugin started with sysProcAttr.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// limitMemory is a no-op here: only GOMEMLIMIT asks the plugin to keep
// its heap small.
func limitMemory(int, uint64) error { return nil }
