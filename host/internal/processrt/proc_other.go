//go:build !unix

package processrt

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup does nothing: the plugin process itself is killed by its
// *os.Process.
func killGroup(int) {}
