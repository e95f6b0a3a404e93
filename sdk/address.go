package sdk

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of RFC 5321 (section 4.5.3.1) on the octets of an address.
const (
	maxLocalPart = 64
	maxAddress   = 254 // a path is at most 256 octets, with its angle brackets
	maxLabel     = 63  // RFC 1035
)

// CheckAddress checks that addr is an address a mailbox can have, as it is
// given (no trimming; case does not matter): exactly one '@' between a
// non-empty local part and a non-empty domain; at most 64 octets in the
// local part and 254 in the whole address (RFC 5321); no white space or
// control characters; none of <>()[],;:\" in the local part; a domain of
// dot-separated labels of letters, digits and inner hyphens, up to 63
// octets each (non-ASCII letters allowed); valid UTF-8 without U+FFFD, the
// replacement character that stands for bytes the directory held that were
// not UTF-8. It returns nil for a valid address, else an error whose text
// is a one-line reason that does not repeat the address.
//
// The standard policy drops a directory address that fails it; a host can
// check an address typed by an operator with it too.
func CheckAddress(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	if !printableASCII(addr) { // the usual address needs none of the Unicode checks
		if !utf8.ValidString(addr) || strings.ContainsRune(addr, utf8.RuneError) {
			return errors.New("invalid UTF-8 (U+FFFD)")
		}
		for _, r := range addr {
			if unicode.IsSpace(r) || unicode.IsControl(r) {
				return errors.New("white space or a control character (" + strconv.QuoteRune(r) + ")")
			}
		}
	}
	at := strings.IndexByte(addr, '@')
	switch {
	case at < 0:
		return errors.New("no '@' (want local@domain)")
	case strings.IndexByte(addr[at+1:], '@') >= 0:
		return errors.New("more than one '@' (want local@domain)")
	case at == 0:
		return errors.New("empty local part (want local@domain)")
	case at == len(addr)-1:
		return errors.New("empty domain (want local@domain)")
	}
	local, domain := addr[:at], addr[at+1:]
	if len(local) > maxLocalPart {
		return errors.New("local part of " + strconv.Itoa(len(local)) + " octets, more than " + strconv.Itoa(maxLocalPart) + " (RFC 5321)")
	}
	if len(addr) > maxAddress {
		return errors.New(strconv.Itoa(len(addr)) + " octets, more than " + strconv.Itoa(maxAddress) + " (RFC 5321)")
	}
	if i := strings.IndexAny(local, `<>()[],;:\"`); i >= 0 {
		return errors.New(strconv.QuoteRune(rune(local[i])) + " in the local part")
	}
	start := 0
	for i := 0; i <= len(domain); i++ {
		if i < len(domain) && domain[i] != '.' {
			c := domain[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c >= 0x80) {
				return errors.New(strconv.QuoteRune(rune(c)) + " in the domain")
			}
			continue
		}
		switch label := domain[start:i]; {
		case label == "":
			return errors.New("empty label in the domain (a leading, trailing or double dot)")
		case label[0] == '-' || label[len(label)-1] == '-':
			return errors.New("domain label " + strconv.Quote(label) + " starts or ends with '-'")
		case len(label) > maxLabel:
			return errors.New("domain label of " + strconv.Itoa(len(label)) + " octets, more than " + strconv.Itoa(maxLabel))
		}
		start = i + 1
	}
	return nil
}

// printableASCII reports whether s is ASCII without white space or control
// characters, which is all the Unicode checks of CheckAddress would find
// in it. (A policy checks every address of every entry, in a wasm guest
// several times slower than native code.)
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
