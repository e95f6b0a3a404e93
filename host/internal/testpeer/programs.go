package testpeer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// NotFoundError says that a program is neither on $PATH nor in Dirs.
type NotFoundError struct {
	Name string
	Dirs []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s not found in $PATH or %s", e.Name, strings.Join(e.Dirs, ", "))
}

// FindProgram locates a peer's program: explicit when it is set (an error
// when it does not exist), else name on $PATH, else name in the first of
// dirs that has it (a *NotFoundError when none has).
func FindProgram(explicit, name string, dirs []string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("%s program: %w", name, err)
		}
		return explicit, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", &NotFoundError{Name: name, Dirs: dirs}
}
