package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestEscaperKeepsEscapeSequencesFromTheTerminal protects the terminal from
// text a directory sends: no control character but newline and tab gets
// through, in one write or split across writes.
func TestEscaperKeepsEscapeSequencesFromTheTerminal(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"plain text", []string{"cn=Åsa,ou=staff\tok\n"}, "cn=Åsa,ou=staff\tok\n"},
		{"ESC sequence", []string{"Bob\x1b[2J\x1b]0;owned\x07"}, `Bob\u001b[2J\u001b]0;owned\u0007`},
		{"carriage return hides what precedes", []string{"evil\rgood"}, `evil\u000dgood`},
		{"DEL", []string{"a\x7fb"}, `a\u007fb`},
		{"C1 CSI", []string{"a\u009b2Jb"}, `a\u009b2Jb`},
		{"C1 split across writes", []string{"a\xc2", "\x9bb"}, `a\u009bb`},
		{"Â is not a control", []string{"\u00c2\u00a0x"}, "\u00c2\u00a0x"},
		{"lone lead byte at the end", []string{"x\xc2"}, `x\xc2`},
		{"raw 0x9b, CSI in 8-bit mode", []string{"a\x9b2Jb"}, `a\x9b2Jb`},
		{"Latin-1 byte", []string{"J\xfcrgen"}, `J\xfcrgen`},
		{"four-byte rune split in three writes", []string{"a\xf0\x9f", "\x98", "\x80b"}, "a\U0001F600b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			e := newEscaper(&buf)
			for _, w := range tc.writes {
				e.Write([]byte(w))
			}
			e.Flush()
			if buf.String() != tc.want {
				t.Errorf("got %q, want %q", buf.String(), tc.want)
			}
		})
	}
	// JSON through the escaper stays JSON and keeps the value.
	var buf bytes.Buffer
	e := newEscaper(&buf)
	json.NewEncoder(e).Encode(map[string]string{"dn": "a\u009b\x7f\x1bz"})
	e.Flush()
	var back map[string]string
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back["dn"] != "a\u009b\x7f\x1bz" {
		t.Errorf("JSON through the escaper: %q, %v", buf.String(), err)
	}
}
