// Package cachedir checks the directories where the host keeps what it
// trusts later without checking it again: wazero's compiled modules (native
// code the host runs) and the map caches (intents the host applies). Such a
// directory must be the host's own: owned by the process's effective user
// and writable by nobody else, or whoever can write there chooses the code
// the host runs.
package cachedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Ensure makes sure that dir is a directory fit to hold a cache the host
// trusts. A missing dir is created, with any missing parents, with mode
// 0700. An existing one is refused when it is not a directory, when group
// or others may write to it, or when another user than the process's
// effective user owns it; the error names the directory and the fix.
//
// Only dir itself is checked, not its parents: a directory of someone else
// that replaced it would be refused for its owner.
func Ensure(dir string) error {
	if dir == "" {
		return errors.New("no cache directory given")
	}
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating the cache directory: %w", err)
		}
		st, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	return Check(dir, st)
}

// Check applies Ensure's rules to dir, whose os.Stat is st.
func Check(dir string, st fs.FileInfo) error {
	if !st.IsDir() {
		return fmt.Errorf("cache directory %s is not a directory", dir)
	}
	if err := checkOwner(dir, st); err != nil {
		return err
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 && writeBitsMatter {
		who := "group and others"
		switch perm & 0o022 {
		case 0o020:
			who = "its group"
		case 0o002:
			who = "others"
		}
		return fmt.Errorf("cache directory %s is writable by %s (mode %04o), it holds compiled code and cached results the host trusts: refusing it; fix: chmod go-w %s",
			dir, who, perm, dir)
	}
	return nil
}
