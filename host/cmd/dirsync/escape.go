package main

import (
	"bufio"
	"fmt"
	"io"
	"unicode/utf8"
)

// escaper passes text to a terminal with its control characters escaped:
// C0 controls but newline and tab, DEL, and the C1 controls (U+0080 to
// U+009F, such as U+009B, a one-character CSI) are written as \u00XX, and
// a byte that is not part of valid UTF-8 (a lone 0x9B is CSI to a terminal
// in 8-bit mode) as \xNN. Text read from a directory — a DN, a display
// name, a group name — can then not move the cursor, retitle the window or
// hide what follows. JSON output stays valid: encoding/json escapes C0 and
// invalid UTF-8 itself, and \u00XX is what it would write for the rest.
type escaper struct {
	w       *bufio.Writer
	pending []byte // the start of a UTF-8 sequence a later write completes
}

func newEscaper(w io.Writer) *escaper { return &escaper{w: bufio.NewWriter(w)} }

func (e *escaper) Write(p []byte) (int, error) {
	n := len(p)
	if len(e.pending) > 0 {
		p = append(e.pending, p...)
		e.pending = nil
	}
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		switch {
		case r == utf8.RuneError && size <= 1:
			if !utf8.FullRune(p) {
				e.pending = append([]byte(nil), p...) // wait for the rest
				return n, e.w.Flush()
			}
			fmt.Fprintf(e.w, `\x%02x`, p[0])
		case r < 0x20 && r != '\n' && r != '\t', r >= 0x7f && r <= 0x9f:
			fmt.Fprintf(e.w, `\u%04x`, r)
		default:
			e.w.Write(p[:size])
		}
		p = p[size:]
	}
	// Flush per write: output and errors keep their order on a terminal.
	return n, e.w.Flush()
}

// Flush writes what is held: an unfinished sequence is escaped byte by
// byte.
func (e *escaper) Flush() error {
	for _, b := range e.pending {
		fmt.Fprintf(e.w, `\x%02x`, b)
	}
	e.pending = nil
	return e.w.Flush()
}
