//go:build unix

package cachedir

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// writeBitsMatter: the mode's group and other write bits are what the
// kernel checks.
const writeBitsMatter = true

// checkOwner refuses a directory that the process's effective user does
// not own.
func checkOwner(dir string, st fs.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := os.Geteuid(); int(sys.Uid) != euid {
		return fmt.Errorf("cache directory %s is owned by uid %d, not by this process's user (uid %d), it holds compiled code and cached results the host trusts: refusing it; fix: chown %d %s, or choose another directory",
			dir, sys.Uid, euid, euid, dir)
	}
	return nil
}
