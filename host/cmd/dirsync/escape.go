package main

import (
	"bufio"
	"fmt"
	"io"
)

// escaper passes text to a terminal with its control characters escaped:
// C0 controls but newline and tab, DEL, and the C1 controls (U+0080 to
// U+009F, such as U+009B, a one-character CSI) are written as \u00XX. Text
// read from a directory — a DN, a display name, a group name — can then
// not move the cursor, retitle the window or hide what follows. JSON output
// stays valid: encoding/json escapes C0 itself, and \u00XX is what it would
// write for the rest.
type escaper struct {
	w       *bufio.Writer
	pending bool // the last byte written was 0xC2, the lead byte of C1
}

func newEscaper(w io.Writer) *escaper { return &escaper{w: bufio.NewWriter(w)} }

func (e *escaper) Write(p []byte) (int, error) {
	for _, b := range p {
		if e.pending {
			e.pending = false
			if b >= 0x80 && b <= 0x9f {
				fmt.Fprintf(e.w, `\u%04x`, b)
				continue
			}
			e.w.WriteByte(0xc2)
		}
		switch {
		case b == 0xc2:
			e.pending = true
		case b < 0x20 && b != '\n' && b != '\t', b == 0x7f:
			fmt.Fprintf(e.w, `\u%04x`, b)
		default:
			e.w.WriteByte(b)
		}
	}
	// Flush per write: output and errors keep their order on a terminal.
	return len(p), e.flush()
}

func (e *escaper) flush() error {
	if e.pending {
		return nil // held until the next byte says what it leads
	}
	return e.w.Flush()
}

// Flush writes what is held, a lone 0xC2 included.
func (e *escaper) Flush() error {
	if e.pending {
		e.pending = false
		e.w.WriteByte(0xc2)
	}
	return e.w.Flush()
}
