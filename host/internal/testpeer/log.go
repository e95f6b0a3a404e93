package testpeer

import (
	"io"
	"os"
	"strings"
)

// tailLines is how many lines of a server's log an error shows.
const tailLines = 40

// Tail returns the last 40 lines of log, or "(log is empty)".
func Tail(log string) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "(log is empty)"
	}
	return strings.Join(lines, "\n")
}

// FileTail returns up to the last 40 lines written to path after offset
// (of the last 8 KiB at most).
func FileTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const max = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > max {
		offset = fi.Size() - max
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	b, _ := io.ReadAll(f)
	return Tail(string(b))
}
