//go:build !linux

package samba

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
