package host

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// Every delta and live run of the tests checks its decision on what
	// the changes reach against one on the whole domain.
	os.Setenv("DIRSYNC_CHECK_REACH", "1")
	os.Exit(m.Run())
}
