package host

import (
	"errors"
	"strings"
)

// CheckGroupName checks the name of a gateway group an operator makes: not
// blank and without control characters. It is kept otherwise as given,
// byte for byte, since a sync matches directory groups to it exactly (R4).
func CheckGroupName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("a group needs a name")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("a group name cannot hold control characters")
	}
	return nil
}
