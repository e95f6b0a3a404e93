//go:build !linux

package slapd

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
