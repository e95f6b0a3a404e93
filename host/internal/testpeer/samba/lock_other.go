//go:build !unix

package samba

import (
	"context"
	"errors"
	"os"
	"path/filepath"
)

// errNoLock is returned when the lock cannot be had on this platform.
var errNoLock = errors.New("samba: the machine-wide lock needs a Unix system")

// LockFile is the machine-wide lock that lets one Server run at a time.
func LockFile() string { return filepath.Join(os.TempDir(), "dirsync-samba.lock") }

func acquireLock(context.Context) (*os.File, error) { return nil, errNoLock }

func releaseLock(*os.File) {}
