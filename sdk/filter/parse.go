// Package filter parses, prints and evaluates LDAP search filters (RFC 4515),
// for sync policies.
//
// Parse checks a filter against the grammar of RFC 4515 section 3 and returns
// its syntax tree; every error is a *sdk.FilterError with the 0-based byte
// position of the problem, which is what a policy's Filter stage reports:
//
//	f, err := filter.Parse(req.Filter)
//	if err != nil {
//		return sdk.FilterResponse{}, err // a *sdk.FilterError
//	}
//	return sdk.FilterResponse{Filter: f.String()}, nil
//
// String gives the filter back normalized: without white space around it and
// between its components, everything else (attribute names, values and their
// escapes) exactly as written. Match evaluates a filter against an entry the
// host handed to Map, with the matching rules described at Filter.Match, and
// Attributes lists the attributes a filter reads, for Info.
//
// The package imports only package sdk and the standard library; the parser
// and String add about 0.08 MB to a WebAssembly module.
package filter

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dirsync/dirsync/sdk"
)

// MaxDepth is the deepest nesting of filters Parse accepts: (!(!(cn=a))) is
// three levels. It bounds the stack a hostile filter can use.
const MaxDepth = 128

// Parse parses s with the grammar of RFC 4515 section 3:
//
//	filter     = "(" filtercomp ")"
//	filtercomp = and / or / not / item
//	and        = "&" filterlist        ; at least one filter (no "(&)")
//	or         = "|" filterlist        ; at least one filter (no "(|)")
//	not        = "!" filter
//	item       = simple / present / substring / extensible
//
// Attribute descriptions are RFC 4512 names or numeric OIDs with options
// (cn;lang-de); values are UTF-8 with \XX escapes. White space (space, tab,
// CR, LF) around the filter and between components (after "&", "|", "!" and
// between a ")" and the next "(" or ")") is allowed and dropped by String;
// white space anywhere else is part of a value or an error. An empty filter,
// or one of white space only, is an error: a policy that gives the empty
// filter a meaning (its default) checks for it before it calls Parse, with
// strings.Trim(s, " \t\r\n") == "".
//
// Every error is a *sdk.FilterError whose Position is the byte offset in s of
// the first byte the grammar does not allow there (len(s) when s ends early),
// and whose Reason says what is wrong in a sentence for the operator.
func Parse(s string) (*Filter, error) {
	start, end := 0, len(s)
	for start < end && isSpace(s[start]) {
		start++
	}
	for end > start && isSpace(s[end-1]) {
		end--
	}
	if start == end {
		return nil, &sdk.FilterError{Position: start, Reason: "the filter is empty: expected '('"}
	}
	p := parser{s: s[:end], pos: start, full: len(s)}
	if s[start] != '(' {
		return nil, p.errf(start, "a filter must be wrapped in parentheses: expected '(', found %s", p.describe(start))
	}
	root, err := p.filter()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < end {
		switch s[p.pos] {
		case ')':
			return nil, p.errf(p.pos, "unbalanced parentheses: ')' after the end of the filter")
		case '(':
			return nil, p.errf(p.pos, "trailing characters after the filter: join several filters with (&...) or (|...)")
		default:
			return nil, p.errf(p.pos, "trailing characters after the filter")
		}
	}
	return &Filter{Root: root}, nil
}

// parser is a recursive-descent parser over s. s is the filter without its
// trailing white space; full is the length of the original filter, so that
// "ends early" errors point at its end.
type parser struct {
	s     string
	pos   int
	depth int
	full  int
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *parser) errf(pos int, format string, args ...any) error {
	return &sdk.FilterError{Position: pos, Reason: fmt.Sprintf(format, args...)}
}

// eof reports an error for a filter that ends where more was expected.
func (p *parser) eof(what string) error {
	return &sdk.FilterError{Position: p.full, Reason: what}
}

// describe names the byte at pos for an error message.
func (p *parser) describe(pos int) string {
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

// skipSpace skips white space between components.
func (p *parser) skipSpace() {
	for p.pos < len(p.s) && isSpace(p.s[p.pos]) {
		p.pos++
	}
}

func (p *parser) unclosed(open int) error {
	return p.eof(fmt.Sprintf("unbalanced parentheses: missing ')' to close the '(' at position %d", open))
}

// filter parses "(" filtercomp ")" at p.pos, which holds '('.
func (p *parser) filter() (Node, error) {
	open := p.pos
	p.depth++
	if p.depth > MaxDepth {
		return nil, p.errf(open, "filter nested deeper than %d levels", MaxDepth)
	}
	p.pos++ // '('
	if p.pos >= len(p.s) {
		return nil, p.unclosed(open)
	}
	var n Node
	switch c := p.s[p.pos]; c {
	case '&', '|':
		p.pos++
		p.skipSpace()
		if p.pos >= len(p.s) {
			return nil, p.unclosed(open)
		}
		if p.s[p.pos] == ')' {
			return nil, p.errf(p.pos, "'%c' must hold at least one filter, found ')'", c)
		}
		if p.s[p.pos] != '(' {
			return nil, p.errf(p.pos, "expected '(' after '%c', found %s", c, p.describe(p.pos))
		}
		var list []Node
		for p.pos < len(p.s) && p.s[p.pos] == '(' {
			sub, err := p.filter()
			if err != nil {
				return nil, err
			}
			list = append(list, sub)
			p.skipSpace()
		}
		if c == '&' {
			n = &And{Filters: list}
		} else {
			n = &Or{Filters: list}
		}
	case '!':
		p.pos++
		p.skipSpace()
		if p.pos >= len(p.s) {
			return nil, p.unclosed(open)
		}
		if p.s[p.pos] != '(' {
			return nil, p.errf(p.pos, "expected '(' after '!', found %s", p.describe(p.pos))
		}
		sub, err := p.filter()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos < len(p.s) && p.s[p.pos] == '(' {
			return nil, p.errf(p.pos, "'!' must hold exactly one filter")
		}
		n = &Not{Filter: sub}
	case ')':
		return nil, p.errf(p.pos, "empty filter: expected '&', '|', '!' or an attribute after '('")
	default:
		var err error
		if n, err = p.item(); err != nil {
			return nil, err
		}
	}
	if p.pos >= len(p.s) {
		return nil, p.unclosed(open)
	}
	if p.s[p.pos] != ')' {
		return nil, p.errf(p.pos, "expected ')' to close the '(' at position %d, found %s", open, p.describe(p.pos))
	}
	p.pos++
	p.depth--
	return n, nil
}

// item parses simple / present / substring / extensible, up to the ')'.
func (p *parser) item() (Node, error) {
	attrStart := p.pos
	if p.s[p.pos] != ':' {
		if err := p.attributeDescription(); err != nil {
			return nil, err
		}
	}
	attr := p.s[attrStart:p.pos]
	if p.pos >= len(p.s) {
		return nil, p.eof(fmt.Sprintf("the filter ends early: expected a filter type (=, ~=, >=, <=, :=) after %q", attr))
	}
	switch c := p.s[p.pos]; c {
	case '=':
		p.pos++
		raw, err := p.value(true)
		if err != nil {
			return nil, err
		}
		return equalityOrSubstring(attr, raw), nil
	case '~', '>', '<':
		p.pos++
		if p.pos >= len(p.s) {
			return nil, p.eof(fmt.Sprintf("the filter ends early: expected '=' after '%c'", c))
		}
		if p.s[p.pos] != '=' {
			return nil, p.errf(p.pos, "expected '=' after '%c', found %s", c, p.describe(p.pos))
		}
		p.pos++
		raw, err := p.value(false)
		if err != nil {
			return nil, err
		}
		v := written{raw: raw, value: unescape(raw)}
		switch c {
		case '~':
			return &Approx{Attribute: attr, Value: v.value, w: v}, nil
		case '>':
			return &GreaterOrEqual{Attribute: attr, Value: v.value, w: v}, nil
		default:
			return &LessOrEqual{Attribute: attr, Value: v.value, w: v}, nil
		}
	case ':':
		return p.extensible(attr)
	default:
		return nil, p.errf(p.pos, "expected a filter type (=, ~=, >=, <=, :=) after %q, found %s", attr, p.describe(p.pos))
	}
}

// equalityOrSubstring makes the node of "attr=raw": presence for "*",
// substrings when raw has an unescaped '*', equality otherwise.
func equalityOrSubstring(attr, raw string) Node {
	if raw == "*" {
		return &Present{Attribute: attr}
	}
	if !strings.Contains(raw, "*") { // an escaped star is \2a: no '*' byte
		v := written{raw: raw, value: unescape(raw)}
		return &Equality{Attribute: attr, Value: v.value, w: v}
	}
	parts := strings.Split(raw, "*")
	n := &Substring{Attribute: attr, Initial: unescape(parts[0]), Final: unescape(parts[len(parts)-1])}
	for _, a := range parts[1 : len(parts)-1] {
		n.Any = append(n.Any, unescape(a))
	}
	n.w = writtenSubstring{raw: raw, initial: n.Initial, any: append([]string(nil), n.Any...), final: n.Final}
	return n
}

// attributeDescription parses an RFC 4512 attributedescription:
// attributetype *( ";" option ), the type being a descr or a numericoid.
func (p *parser) attributeDescription() error {
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
func (p *parser) oid(pos int, s, what string) error {
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
func (p *parser) extensible(attr string) (Node, error) {
	n := &Extensible{Attribute: attr}
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
				return nil, p.eof("the filter ends early: expected 'dn', a matching rule or '=' after ':'")
			}
			return nil, p.errf(p.pos, "expected 'dn', a matching rule or '=' after ':', found %s", p.describe(p.pos))
		case !n.DNAttributes && n.MatchingRule == "" && strings.EqualFold(tok, "dn"):
			n.DNAttributes, n.dn = true, tok
		case n.MatchingRule == "":
			if err := p.oid(start, tok, "matching rule"); err != nil {
				return nil, err
			}
			n.MatchingRule = tok
		default:
			return nil, p.errf(start, "unexpected %q after the matching rule; expected ':='", tok)
		}
		if p.pos >= len(p.s) {
			return nil, p.eof("the filter ends early: expected ':=' in extensible match")
		}
		if p.s[p.pos] != ':' {
			return nil, p.errf(p.pos, "expected ':' in extensible match, found %s", p.describe(p.pos))
		}
	}
	if attr == "" && n.MatchingRule == "" {
		return nil, p.errf(p.pos, "an extensible match without an attribute needs a matching rule, as in (:1.2.3:=value)")
	}
	p.pos += 2 // ":="
	raw, err := p.value(false)
	if err != nil {
		return nil, err
	}
	n.w = written{raw: raw, value: unescape(raw)}
	n.Value = n.w.value
	return n, nil
}

// value parses an assertion value up to the closing ')' and returns it as
// written. With substrings set, unescaped '*' separate the parts of a
// substring (or present) filter.
func (p *parser) value(substrings bool) (string, error) {
	start := p.pos
	prevStar := false
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == ')':
			return p.s[start:p.pos], nil
		case c == '(':
			return "", p.errf(p.pos, "unescaped '(' in value; write it as \\28")
		case c == '*':
			if !substrings {
				return "", p.errf(p.pos, "unescaped '*' in value; write it as \\2a (wildcards only work with '=')")
			}
			if prevStar {
				return "", p.errf(p.pos, "empty substring: two '*' in a row")
			}
			prevStar = true
			p.pos++
			continue
		case c == '\\':
			if p.pos+2 >= len(p.s) || !isHex(p.s[p.pos+1]) || !isHex(p.s[p.pos+2]) {
				bad := p.s[p.pos:min(p.pos+3, len(p.s))]
				return "", p.errf(p.pos, "invalid escape %q: '\\' must be followed by two hex digits (a backslash is \\5c)", bad)
			}
			p.pos += 3
		case c == 0:
			return "", p.errf(p.pos, "NUL byte in value; write it as \\00")
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, size := utf8.DecodeRuneInString(p.s[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errf(p.pos, "invalid UTF-8 in value (byte 0x%x); write raw bytes as \\XX", c)
			}
			p.pos += size
		}
		prevStar = false
	}
	return "", p.eof("unbalanced parentheses: missing ')' after the value")
}

// unescape decodes the \XX escapes of a value that value() accepted.
func unescape(raw string) string {
	i := strings.IndexByte(raw, '\\')
	if i < 0 {
		return raw
	}
	b := make([]byte, 0, len(raw))
	for ; i >= 0; i = strings.IndexByte(raw, '\\') {
		b = append(b, raw[:i]...)
		b = append(b, unhex(raw[i+1])<<4|unhex(raw[i+2]))
		raw = raw[i+3:]
	}
	return string(append(b, raw...))
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func isAlpha(c byte) bool   { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }
func isKeychar(c byte) bool { return isAlpha(c) || isDigit(c) || c == '-' }
func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
