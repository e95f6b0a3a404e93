package standard

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dirsync/dirsync/sdk"
)

// maxFilterDepth bounds the nesting of filters, so that a hostile filter
// cannot exhaust the guest's stack.
const maxFilterDepth = 128

// normalizeFilter parses s with the grammar of RFC 4515 section 3 and returns
// the filter the host sends:
//
//	filter     = "(" filtercomp ")"
//	filtercomp = and / or / not / item
//	and        = "&" filterlist        ; at least one filter (no "(&)")
//	or         = "|" filterlist        ; at least one filter (no "(|)")
//	not        = "!" filter
//	item       = simple / present / substring / extensible
//
// White space around the filter and between components (after "&", "|", "!"
// and between a ")" and the next "(" or ")") is tolerated and removed; white
// space anywhere else is part of a value or an error. The empty filter (or
// one of white space only) stands for DefaultFilter.
//
// Every error is a *sdk.FilterError whose Position is the byte offset in s of
// the first byte the grammar does not allow there (len(s) when s ends early).
func normalizeFilter(s string) (string, error) {
	start, end := 0, len(s)
	for start < end && isSpace(s[start]) {
		start++
	}
	for end > start && isSpace(s[end-1]) {
		end--
	}
	if start == end {
		return DefaultFilter, nil
	}
	p := filterParser{s: s[:end], pos: start, mark: start, full: len(s)}
	if s[start] != '(' {
		return "", p.errf(start, "a filter must be wrapped in parentheses: expected '(', found %s", p.describe(start))
	}
	if err := p.filter(); err != nil {
		return "", err
	}
	p.skipSpace()
	if p.pos < end {
		switch s[p.pos] {
		case ')':
			return "", p.errf(p.pos, "unbalanced parentheses: ')' after the end of the filter")
		case '(':
			return "", p.errf(p.pos, "trailing characters after the filter: join several filters with (&...) or (|...)")
		default:
			return "", p.errf(p.pos, "trailing characters after the filter")
		}
	}
	if !p.dropped {
		return s[start:end], nil
	}
	return string(append(p.out, s[p.mark:end]...)), nil
}

// filterParser is a recursive-descent parser over s. s is the filter without
// its trailing white space; full is the length of the original filter, so that
// "ends early" errors point at its end.
type filterParser struct {
	s     string
	pos   int
	depth int
	full  int
	// out collects the normalized filter once white space has been dropped
	// from between components; s[mark:pos] is not yet copied to it.
	out     []byte
	mark    int
	dropped bool // white space was dropped: out holds the filter so far
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *filterParser) errf(pos int, format string, args ...any) error {
	return &sdk.FilterError{Position: pos, Reason: fmt.Sprintf(format, args...)}
}

// eof reports an error for a filter that ends where more was expected.
func (p *filterParser) eof(what string) error {
	return &sdk.FilterError{Position: p.full, Reason: what}
}

// describe names the byte at pos for an error message.
func (p *filterParser) describe(pos int) string {
	if pos >= len(p.s) {
		return "the end of the filter"
	}
	c := p.s[pos]
	if c < 0x20 || c == 0x7f {
		return "byte 0x" + strconv.FormatUint(uint64(c), 16)
	}
	if c >= 0x80 {
		r, _ := utf8.DecodeRuneInString(p.s[pos:])
		if r == utf8.RuneError {
			return "byte 0x" + strconv.FormatUint(uint64(c), 16)
		}
		return strconv.QuoteRune(r)
	}
	return "'" + string(c) + "'"
}

// skipSpace skips white space between components, dropping it from the
// normalized filter.
func (p *filterParser) skipSpace() {
	if p.pos >= len(p.s) || !isSpace(p.s[p.pos]) {
		return
	}
	p.out = append(p.out, p.s[p.mark:p.pos]...)
	p.dropped = true
	for p.pos < len(p.s) && isSpace(p.s[p.pos]) {
		p.pos++
	}
	p.mark = p.pos
}

// filter parses "(" filtercomp ")" at p.pos, which holds '('.
func (p *filterParser) filter() error {
	open := p.pos
	p.depth++
	if p.depth > maxFilterDepth {
		return p.errf(open, "filter nested deeper than %d levels", maxFilterDepth)
	}
	p.pos++ // '('
	if p.pos >= len(p.s) {
		return p.eof(fmt.Sprintf("unbalanced parentheses: missing ')' to close the '(' at position %d", open))
	}
	switch c := p.s[p.pos]; c {
	case '&', '|':
		p.pos++
		p.skipSpace()
		if p.pos >= len(p.s) {
			return p.eof(fmt.Sprintf("unbalanced parentheses: missing ')' to close the '(' at position %d", open))
		}
		if p.s[p.pos] == ')' {
			return p.errf(p.pos, "'%c' must hold at least one filter, found ')'", c)
		}
		if p.s[p.pos] != '(' {
			return p.errf(p.pos, "expected '(' after '%c', found %s", c, p.describe(p.pos))
		}
		for p.pos < len(p.s) && p.s[p.pos] == '(' {
			if err := p.filter(); err != nil {
				return err
			}
			p.skipSpace()
		}
	case '!':
		p.pos++
		p.skipSpace()
		if p.pos >= len(p.s) {
			return p.eof(fmt.Sprintf("unbalanced parentheses: missing ')' to close the '(' at position %d", open))
		}
		if p.s[p.pos] != '(' {
			return p.errf(p.pos, "expected '(' after '!', found %s", p.describe(p.pos))
		}
		if err := p.filter(); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos < len(p.s) && p.s[p.pos] == '(' {
			return p.errf(p.pos, "'!' must hold exactly one filter")
		}
	case ')':
		return p.errf(p.pos, "empty filter: expected '&', '|', '!' or an attribute after '('")
	default:
		if err := p.item(); err != nil {
			return err
		}
	}
	if p.pos >= len(p.s) {
		return p.eof(fmt.Sprintf("unbalanced parentheses: missing ')' to close the '(' at position %d", open))
	}
	if p.s[p.pos] != ')' {
		return p.errf(p.pos, "expected ')' to close the '(' at position %d, found %s", open, p.describe(p.pos))
	}
	p.pos++
	p.depth--
	return nil
}

// item parses simple / present / substring / extensible, up to the ')'.
func (p *filterParser) item() error {
	attrStart := p.pos
	if p.s[p.pos] != ':' {
		if err := p.attributeDescription(); err != nil {
			return err
		}
	}
	attr := p.s[attrStart:p.pos]
	if p.pos >= len(p.s) {
		return p.eof(fmt.Sprintf("the filter ends early: expected a filter type (=, ~=, >=, <=, :=) after %q", attr))
	}
	switch c := p.s[p.pos]; c {
	case '=':
		p.pos++
		return p.value(true)
	case '~', '>', '<':
		p.pos++
		if p.pos >= len(p.s) {
			return p.eof(fmt.Sprintf("the filter ends early: expected '=' after '%c'", c))
		}
		if p.s[p.pos] != '=' {
			return p.errf(p.pos, "expected '=' after '%c', found %s", c, p.describe(p.pos))
		}
		p.pos++
		return p.value(false)
	case ':':
		return p.extensible(attr != "")
	default:
		return p.errf(p.pos, "expected a filter type (=, ~=, >=, <=, :=) after %q, found %s", attr, p.describe(p.pos))
	}
}

// attributeDescription parses an RFC 4512 attributedescription:
// attributetype *( ";" option ), the type being a descr or a numericoid.
func (p *filterParser) attributeDescription() error {
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if isKeychar(c) || c == '.' || c == ';' {
			p.pos++
			continue
		}
		if c == '=' || c == '~' || c == '>' || c == '<' || c == ':' || c == ')' {
			break
		}
		return p.errf(p.pos, "invalid character %s in attribute description", p.describe(p.pos))
	}
	if p.pos == start {
		return p.errf(start, "empty attribute description before %s", p.describe(p.pos))
	}
	typ, opts, _ := strings.Cut(p.s[start:p.pos], ";")
	if err := p.oid(start, typ, "attribute type"); err != nil {
		return err
	}
	if len(typ) == len(p.s[start:p.pos]) {
		return nil
	}
	at := start + len(typ) + 1
	for {
		opt, rest, more := strings.Cut(opts, ";")
		if opt == "" {
			return p.errf(at, "empty attribute option")
		}
		for i := 0; i < len(opt); i++ {
			if !isKeychar(opt[i]) {
				return p.errf(at+i, "invalid character %s in attribute option", p.describe(at+i))
			}
		}
		if !more {
			return nil
		}
		at += len(opt) + 1
		opts = rest
	}
}

// oid checks that s (found at pos) is a descr (ALPHA *keychar) or a
// numericoid (number 1*( "." number ), no leading zeros).
func (p *filterParser) oid(pos int, s, what string) error {
	if s == "" {
		return p.errf(pos, "empty %s", what)
	}
	if isAlpha(s[0]) {
		for i := 1; i < len(s); i++ {
			if !isKeychar(s[i]) {
				return p.errf(pos+i, "invalid character %s in %s %q", p.describe(pos+i), what, s)
			}
		}
		return nil
	}
	if !isDigit(s[0]) {
		return p.errf(pos, "%s must start with a letter or a digit, found %s", what, p.describe(pos))
	}
	numbers := 0
	for i := 0; i <= len(s); {
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		switch {
		case j == i:
			return p.errf(pos+i, "invalid numeric OID %q: empty number", s)
		case s[i] == '0' && j-i > 1:
			return p.errf(pos+i, "invalid numeric OID %q: leading zero", s)
		case j < len(s) && s[j] != '.':
			return p.errf(pos+j, "invalid character %s in numeric OID %q", p.describe(pos+j), s)
		}
		numbers++
		i = j + 1
	}
	if numbers < 2 {
		return p.errf(pos, "invalid numeric OID %q: needs at least two numbers", s)
	}
	return nil
}

// extensible parses [":dn"] [":" matchingrule] ":=" assertionvalue, at ':'.
func (p *filterParser) extensible(hasAttr bool) error {
	dn, rule := false, false
	for {
		// p.s[p.pos] == ':'
		if p.pos+1 < len(p.s) && p.s[p.pos+1] == '=' {
			break
		}
		p.pos++
		start := p.pos
		for p.pos < len(p.s) && (isKeychar(p.s[p.pos]) || p.s[p.pos] == '.') {
			p.pos++
		}
		tok := p.s[start:p.pos]
		switch {
		case tok == "":
			if p.pos >= len(p.s) {
				return p.eof("the filter ends early: expected 'dn', a matching rule or '=' after ':'")
			}
			return p.errf(p.pos, "expected 'dn', a matching rule or '=' after ':', found %s", p.describe(p.pos))
		case !dn && !rule && strings.EqualFold(tok, "dn"):
			dn = true
		case !rule:
			if err := p.oid(start, tok, "matching rule"); err != nil {
				return err
			}
			rule = true
		default:
			return p.errf(start, "unexpected %q after the matching rule; expected ':='", tok)
		}
		if p.pos >= len(p.s) {
			return p.eof("the filter ends early: expected ':=' in extensible match")
		}
		if p.s[p.pos] != ':' {
			return p.errf(p.pos, "expected ':' in extensible match, found %s", p.describe(p.pos))
		}
	}
	if !hasAttr && !rule {
		return p.errf(p.pos, "an extensible match without an attribute needs a matching rule, as in (:1.2.3:=value)")
	}
	p.pos += 2 // ":="
	return p.value(false)
}

// value parses an assertion value up to the closing ')'. With substrings set,
// unescaped '*' separate the parts of a substring (or present) filter.
func (p *filterParser) value(substrings bool) error {
	prevStar := false
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == ')':
			return nil
		case c == '(':
			return p.errf(p.pos, "unescaped '(' in value; write it as \\28")
		case c == '*':
			if !substrings {
				return p.errf(p.pos, "unescaped '*' in value; write it as \\2a (wildcards only work with '=')")
			}
			if prevStar {
				return p.errf(p.pos, "empty substring: two '*' in a row")
			}
			prevStar = true
			p.pos++
			continue
		case c == '\\':
			if p.pos+2 >= len(p.s) || !isHex(p.s[p.pos+1]) || !isHex(p.s[p.pos+2]) {
				bad := p.s[p.pos:min(p.pos+3, len(p.s))]
				return p.errf(p.pos, "invalid escape %q: '\\' must be followed by two hex digits (a backslash is \\5c)", bad)
			}
			p.pos += 3
		case c == 0:
			return p.errf(p.pos, "NUL byte in value; write it as \\00")
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, size := utf8.DecodeRuneInString(p.s[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return p.errf(p.pos, "invalid UTF-8 in value (byte 0x%x); write raw bytes as \\XX", c)
			}
			p.pos += size
		}
		prevStar = false
	}
	return p.eof("unbalanced parentheses: missing ')' after the value")
}

func isAlpha(c byte) bool   { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }
func isKeychar(c byte) bool { return isAlpha(c) || isDigit(c) || c == '-' }
func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
