//go:build unix

package samba

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockFile is the machine-wide lock that lets one Server run at a time
// (Samba's ports are fixed). It is held from Start to Close.
func LockFile() string { return filepath.Join(os.TempDir(), "dirsync-samba.lock") }

// acquireLock waits for the exclusive lock on LockFile. The lock goes away
// with the process that holds it, so a crashed test does not block others.
func acquireLock(ctx context.Context) (*os.File, error) {
	f, err := os.OpenFile(LockFile(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("samba: lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("samba: lock %s: %w", LockFile(), err)
		}
		select {
		case <-ctx.Done():
			holder := "another process"
			if b, _ := os.ReadFile(LockFile()); len(strings.TrimSpace(string(b))) > 0 {
				holder = "pid " + strings.TrimSpace(string(b))
			}
			f.Close()
			return nil, fmt.Errorf("samba: waiting for %s, held by %s (only one Samba DC runs at a time: its port is fixed): %w",
				LockFile(), holder, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Say who holds it, for the error above.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" ("+filepath.Base(os.Args[0])+")\n"), 0)
	return f, nil
}

func releaseLock(f *os.File) {
	_ = f.Truncate(0)
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_ = f.Close()
}
