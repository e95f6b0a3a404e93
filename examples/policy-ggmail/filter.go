package ggmail

import (
	"strings"
	"unicode/utf8"

	"github.com/dirsync/dirsync/sdk"
)

// DefaultFilter returns the filter used when a domain configures none: AD
// user accounts, mail-enabled public folders, and the security and
// distribution groups whose cn starts with prefix. Groups without the
// prefix are never fetched, so they do not clutter the unmatched list.
// Special characters of the prefix are escaped (RFC 4515).
func DefaultFilter(prefix string) string {
	return "(|(sAMAccountType=805306368)(objectClass=publicFolder)" +
		"(&(|(sAMAccountType=268435456)(sAMAccountType=268435457))(cn=" + escapeValue(prefix) + "*)))"
}

// escapeValue escapes the bytes RFC 4515 does not allow in a value.
func escapeValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '(', ')', '\\', 0:
			const hex = "0123456789abcdef"
			b.WriteByte('\\')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Filter checks the domain's filter against the grammar of RFC 4515 and
// returns it without the white space around it. An empty filter stands for
// DefaultFilter of the configured prefix. A broken filter is a
// *sdk.FilterError whose Position is the byte offset, in req.Filter, of the
// first byte the grammar does not allow.
func (p *Policy) Filter(req sdk.FilterRequest) (sdk.FilterResponse, error) {
	s := req.Filter
	start, end := 0, len(s)
	for start < end && isSpace(s[start]) {
		start++
	}
	for end > start && isSpace(s[end-1]) {
		end--
	}
	if start == end {
		return sdk.FilterResponse{Filter: DefaultFilter(p.set.GroupPrefix)}, nil
	}
	fp := filterParser{s: s[:end], pos: start}
	if err := fp.filter(); err != nil {
		return sdk.FilterResponse{}, err
	}
	if fp.pos < end {
		if s[fp.pos] == '(' {
			return sdk.FilterResponse{}, fp.fail("trailing characters after the filter: join several filters with (&...) or (|...)")
		}
		return sdk.FilterResponse{}, fp.fail("trailing characters after the filter")
	}
	return sdk.FilterResponse{Filter: s[start:end]}, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// maxDepth bounds the nesting of a filter, so that a hostile filter cannot
// exhaust the stack (a WebAssembly guest's is small).
const maxDepth = 64

// filterParser is a recursive-descent parser of RFC 4515 section 3:
//
//	filter     = "(" filtercomp ")"
//	filtercomp = and / or / not / item
//	and        = "&" 1*filter
//	or         = "|" 1*filter
//	not        = "!" filter
//	item       = attr ("=" / "~=" / ">=" / "<=") value   ; "=" also presence and substrings
//	           / [attr] [":dn"] [":" oid] ":=" value     ; extensible match
type filterParser struct {
	s     string
	pos   int
	depth int
}

func (p *filterParser) fail(reason string) error {
	return &sdk.FilterError{Position: p.pos, Reason: reason}
}

func (p *filterParser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

func (p *filterParser) filter() error {
	if p.pos >= len(p.s) {
		return p.fail("unexpected end of the filter: expected '('")
	}
	if p.s[p.pos] != '(' {
		return p.fail("a filter must be wrapped in parentheses: expected '('")
	}
	if p.depth++; p.depth > maxDepth {
		return p.fail("filter nested too deeply")
	}
	p.pos++
	var err error
	switch p.peek() {
	case '&', '|':
		op := p.s[p.pos]
		p.pos++
		if p.peek() != '(' {
			return p.fail("'" + string(op) + "' needs at least one filter in parentheses")
		}
		for err == nil && p.peek() == '(' {
			err = p.filter()
		}
	case '!':
		p.pos++
		err = p.filter()
	default:
		err = p.item()
	}
	if err != nil {
		return err
	}
	if p.pos >= len(p.s) {
		return p.fail("unbalanced parentheses: expected ')' before the end of the filter")
	}
	if p.s[p.pos] != ')' {
		return p.fail("expected ')'")
	}
	p.pos++
	p.depth--
	return nil
}

func (p *filterParser) item() error {
	if p.peek() != ':' {
		if err := p.attr(); err != nil {
			return err
		}
	}
	switch p.peek() {
	case '=':
		p.pos++
		return p.value(true)
	case '~', '>', '<':
		p.pos++
		if p.peek() != '=' {
			return p.fail("expected '=' after '" + string(p.s[p.pos-1]) + "'")
		}
		p.pos++
		return p.value(false)
	case ':':
		return p.extensible()
	case 0:
		if p.pos >= len(p.s) {
			return p.fail("unexpected end of the filter: expected a comparison such as '='")
		}
	}
	return p.fail("expected a comparison ('=', '~=', '>=', '<=' or ':=')")
}

// attr reads an attribute description: a name (letters, digits, '-',
// starting with a letter) or a numeric OID, then options (";lang-de").
func (p *filterParser) attr() error {
	if err := p.oid("attribute name"); err != nil {
		return err
	}
	for p.peek() == ';' {
		p.pos++
		start := p.pos
		for isKeyChar(p.peek()) {
			p.pos++
		}
		if p.pos == start {
			return p.fail("empty attribute option after ';'")
		}
	}
	return nil
}

// oid reads a descriptor (a name) or a numeric OID.
func (p *filterParser) oid(what string) error {
	c := p.peek()
	switch {
	case isAlpha(c):
		for isKeyChar(p.peek()) {
			p.pos++
		}
		return nil
	case isDigit(c):
		for {
			start := p.pos
			for isDigit(p.peek()) {
				p.pos++
			}
			if p.pos == start {
				return p.fail("invalid numeric OID in " + what + ": expected a digit")
			}
			if p.s[start] == '0' && p.pos-start > 1 {
				return &sdk.FilterError{Position: start, Reason: "invalid numeric OID in " + what + ": a number has a leading zero"}
			}
			if p.peek() != '.' {
				return nil
			}
			p.pos++
		}
	case c == 0 && p.pos >= len(p.s):
		return p.fail("unexpected end of the filter: expected an " + what)
	case c == '=' || c == ')' || c == '(':
		return p.fail("empty " + what)
	}
	return p.fail("invalid character in " + what)
}

// extensible reads the rest of an extensible match after its optional
// attribute: [":dn"] [":" rule] ":=" value.
func (p *filterParser) extensible() error {
	hasAttr := p.pos > 0 && p.s[p.pos-1] != '('
	hasRule := false
	if rest := p.s[p.pos:]; len(rest) >= 4 && strings.EqualFold(rest[:4], ":dn:") {
		p.pos += 3
	}
	if p.peek() == ':' && p.pos+1 < len(p.s) && p.s[p.pos+1] != '=' {
		p.pos++
		if err := p.oid("matching rule"); err != nil {
			return err
		}
		hasRule = true
	}
	if !strings.HasPrefix(p.s[p.pos:], ":=") {
		return p.fail("expected ':=' in an extensible match")
	}
	if !hasAttr && !hasRule {
		return p.fail("an extensible match needs an attribute or a matching rule")
	}
	p.pos += 2
	return p.value(false)
}

// value reads an assertion value up to the closing ')'. Unescaped '*' is
// allowed only after "=" (presence and substrings), and never twice in a
// row; '(' and NUL must be escaped, and '\' starts a two-digit hex escape.
func (p *filterParser) value(stars bool) error {
	lastStar := false
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == ')':
			return nil
		case c == '(':
			return p.fail("unescaped '(' in a value: write it as \\28")
		case c == 0:
			return p.fail("NUL byte in a value: write it as \\00")
		case c == '*':
			if !stars {
				return p.fail("unescaped '*' in a value: write it as \\2a")
			}
			if lastStar {
				return p.fail("empty substring: '**' is not allowed")
			}
			lastStar = true
			p.pos++
			continue
		case c == '\\':
			if p.pos+2 >= len(p.s) || !isHex(p.s[p.pos+1]) || !isHex(p.s[p.pos+2]) {
				return p.fail("bad escape: '\\' must be followed by two hex digits")
			}
			p.pos += 3
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(p.s[p.pos:])
			if r == utf8.RuneError && n <= 1 {
				return p.fail("invalid UTF-8 in a value; write raw bytes as \\XX")
			}
			p.pos += n
		default:
			p.pos++
		}
		lastStar = false
	}
	return nil // filter() reports the missing ')'
}

func isAlpha(c byte) bool   { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }
func isKeyChar(c byte) bool { return isAlpha(c) || isDigit(c) || c == '-' }
func isHex(c byte) bool     { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
