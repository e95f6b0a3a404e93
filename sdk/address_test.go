package sdk_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
)

func TestCheckAddress(t *testing.T) {
	local64 := strings.Repeat("a", 64)
	label63 := strings.Repeat("d", 63)
	// 64 + 1 + 189 = 254 octets.
	domain189 := label63 + "." + label63 + "." + strings.Repeat("d", 61)
	for _, tc := range []struct {
		addr string
		want string // substring of the reason; "" for a valid address
	}{
		{"john@example.com", ""},
		{"John.Smith+tag@Example.COM", ""},
		{"jürgen.müller@example.com", ""},
		{"a@b", ""},
		{"o'brien@xn--bcher-kva.example", ""},
		{"x@müller.de", ""},
		{local64 + "@example.com", ""},
		{local64 + "@" + domain189, ""},
		{"a@" + label63 + ".com", ""},

		{"", "empty address"},
		{"j\uFFFDrgen@example.com", "invalid UTF-8"},
		{"j\xfcrgen@example.com", "invalid UTF-8"},
		{"jo hn@example.com", "white space"},
		{" john@example.com", "white space"},
		{"john@example.com\n", "white space"},
		{"jo\x00hn@example.com", "control character"},
		{"jo\x7fhn@example.com", "control character ('\\x7f')"},
		{"jo\thn@example.com", "white space or a control character ('\\t')"},
		{"john@example.com\x1f", "control character ('\\x1f')"},
		{"jo\u0085hn@example.com", "white space"},
		{"jo\u00a0hn@example.com", "white space"},
		{"not-an-address", "no '@'"},
		{"two@@example.com", "more than one '@'"},
		{"a@b@example.com", "more than one '@'"},
		{"@example.com", "empty local part"},
		{"john@", "empty domain"},
		{"a" + local64 + "@example.com", "local part of 65 octets, more than 64"},
		{local64 + "@" + domain189 + "d", "255 octets, more than 254"},
		{"jo<hn@example.com", "'<' in the local part"},
		{`"john"@example.com`, `'"' in the local part`},
		{"john@exa_mple.com", "'_' in the domain"},
		{"john@example..com", "empty label"},
		{"john@example.com.", "empty label"},
		{"john@.example.com", "empty label"},
		{"john@-example.com", "starts or ends with '-'"},
		{"john@example-.com", "starts or ends with '-'"},
		{"a@d" + label63 + ".com", "domain label of 64 octets"},
	} {
		err := sdk.CheckAddress(tc.addr)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckAddress(%q) = %v, want nil", tc.addr, err)
		case tc.want != "" && err == nil:
			t.Errorf("CheckAddress(%q) = nil, want an error containing %q", tc.addr, tc.want)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("CheckAddress(%q) = %v, want an error containing %q", tc.addr, err, tc.want)
		case err != nil && (strings.Contains(err.Error(), "\n") || tc.addr != "" && len(tc.addr) > 3 && strings.Contains(err.Error(), tc.addr)):
			t.Errorf("CheckAddress(%q) = %q: not a one-line reason without the address", tc.addr, err)
		}
	}
}

// ExampleCheckAddress checks addresses as the standard policy checks each
// address it reads from the directory: an address that fails is dropped
// with the reason.
func ExampleCheckAddress() {
	for _, addr := range []string{
		"john.smith@example.com",
		"j\uFFFDrgen@example.com", // a byte of the directory that was not UTF-8
		"john.smith@example..com",
		strings.Repeat("x", 65) + "@example.com",
		"john smith@example.com",
	} {
		if err := sdk.CheckAddress(addr); err != nil {
			fmt.Println("invalid:", err)
			continue
		}
		fmt.Println("valid:", addr)
	}
	// Output:
	// valid: john.smith@example.com
	// invalid: invalid UTF-8 (U+FFFD)
	// invalid: empty label in the domain (a leading, trailing or double dot)
	// invalid: local part of 65 octets, more than 64 (RFC 5321)
	// invalid: white space or a control character (' ')
}
