//go:build !unix

package processrt

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup does nothing: the plugin process itself is killed by its
// *os.Process.
func killGroup(int) {}

// limitMemory is a no-op here: only GOMEMLIMIT asks the plugin to keep
// its heap small.
func limitMemory(int, uint64) error { return nil }
