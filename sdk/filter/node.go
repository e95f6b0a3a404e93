package filter

import (
	"strings"
	"unicode/utf8"

	"github.com/dirsync/dirsync/sdk"
)

// Filter is a parsed filter: the root of its syntax tree. A Filter is not
// changed by String, Match or Attributes, so one Filter can serve concurrent
// Map calls.
type Filter struct {
	// Root is the outermost filter: one of the node types of this package.
	Root Node
}

// String returns the filter in normalized form: what Parse read, without the
// white space around the filter and between its components. Attribute names,
// matching rules, values and their escapes are kept as written (a
// (cn=\2A) stays so, and so does the case of sAMAccountType), so the
// directory receives what the operator wrote. A value changed after Parse is
// written with EscapeValue. A nil Root gives "".
func (f *Filter) String() string {
	if f == nil || f.Root == nil {
		return ""
	}
	return f.Root.String()
}

// Attributes returns the attribute descriptions the filter names, lower
// cased, each once, in the order they first appear: what Match reads of an
// entry, and so what a policy that matches entries with the filter lists in
// Info.Attributes. Options are kept (cn;lang-de). An extensible match
// without an attribute, as in (:caseExactMatch:=x), reads every attribute
// of an entry but adds nothing here.
func (f *Filter) Attributes() []string {
	var out []string
	if f == nil || f.Root == nil {
		return out
	}
	seen := map[string]bool{}
	walk(f.Root, func(n Node) {
		var a string
		switch n := n.(type) {
		case *Equality:
			a = n.Attribute
		case *Substring:
			a = n.Attribute
		case *Present:
			a = n.Attribute
		case *GreaterOrEqual:
			a = n.Attribute
		case *LessOrEqual:
			a = n.Attribute
		case *Approx:
			a = n.Attribute
		case *Extensible:
			a = n.Attribute
		}
		if a == "" {
			return
		}
		a = strings.ToLower(a)
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	})
	return out
}

// walk calls fn for n and every node under it, parents first.
func walk(n Node, fn func(Node)) {
	if n == nil {
		return
	}
	fn(n)
	switch n := n.(type) {
	case *And:
		for _, c := range n.Filters {
			walk(c, fn)
		}
	case *Or:
		for _, c := range n.Filters {
			walk(c, fn)
		}
	case *Not:
		walk(n.Filter, fn)
	}
}

// Node is one filter of the syntax tree: *And, *Or, *Not, *Equality,
// *Substring, *Present, *GreaterOrEqual, *LessOrEqual, *Approx or
// *Extensible. Use a type switch to take a tree apart. The set is closed:
// only this package implements Node.
//
// Attribute descriptions are kept as written, options included. Values are
// the decoded assertion values: the escape \2a is the byte '*', and
// \01\ab is two bytes that need not be UTF-8.
type Node interface {
	// String returns the node and its subtree as a filter (see
	// Filter.String).
	String() string

	write(b *strings.Builder)
	eval(e *sdk.Entry) result
}

// And is (&(f1)(f2)…): true when every filter is.
type And struct {
	Filters []Node
}

// Or is (|(f1)(f2)…): true when any filter is.
type Or struct {
	Filters []Node
}

// Not is (!(f)): true when f is false.
type Not struct {
	Filter Node
}

// Equality is (attr=value).
type Equality struct {
	Attribute string
	Value     string
	w         written
}

// Substring is (attr=initial*any1*any2*…*final): Initial and Final may be
// empty, Any holds the non-empty middle parts in order. At least one '*' is
// always there; (attr=*) is a Present.
type Substring struct {
	Attribute string
	Initial   string
	Any       []string
	Final     string
	w         writtenSubstring
}

// Present is (attr=*): the entry has a value of the attribute.
type Present struct {
	Attribute string
}

// GreaterOrEqual is (attr>=value).
type GreaterOrEqual struct {
	Attribute string
	Value     string
	w         written
}

// LessOrEqual is (attr<=value).
type LessOrEqual struct {
	Attribute string
	Value     string
	w         written
}

// Approx is (attr~=value).
type Approx struct {
	Attribute string
	Value     string
	w         written
}

// Extensible is (attr:dn:rule:=value): Attribute or MatchingRule may be
// empty (not both), DNAttributes is the ":dn" flag, and MatchingRule is a
// name or a numeric OID as written (1.2.840.113556.1.4.803, caseExactMatch).
type Extensible struct {
	Attribute    string
	DNAttributes bool
	MatchingRule string
	Value        string
	w            written
	dn           string // ":dn" as written: "dn", "DN", …
}

// written is a value as Parse read it: raw, with its escapes, is printed
// for as long as the node's value is still value.
type written struct {
	raw, value string
}

func (w written) text(v string) string {
	if w.raw != "" && w.value == v {
		return w.raw
	}
	return EscapeValue(v)
}

// writtenSubstring is written for the parts of a substring filter.
type writtenSubstring struct {
	raw            string
	initial, final string
	any            []string
}

// String returns the filter (&…) with its subtree (see Filter.String).
func (n *And) String() string { return str(n) }

// String returns the filter (|…) with its subtree (see Filter.String).
func (n *Or) String() string { return str(n) }

// String returns the filter (!…) with its subtree (see Filter.String).
func (n *Not) String() string { return str(n) }

// String returns the filter (attr=value) (see Filter.String).
func (n *Equality) String() string { return str(n) }

// String returns the filter (attr=initial*any*final) (see Filter.String).
func (n *Substring) String() string { return str(n) }

// String returns the filter (attr=*).
func (n *Present) String() string { return str(n) }

// String returns the filter (attr>=value) (see Filter.String).
func (n *GreaterOrEqual) String() string { return str(n) }

// String returns the filter (attr<=value) (see Filter.String).
func (n *LessOrEqual) String() string { return str(n) }

// String returns the filter (attr~=value) (see Filter.String).
func (n *Approx) String() string { return str(n) }

// String returns the filter (attr:dn:rule:=value) (see Filter.String).
func (n *Extensible) String() string { return str(n) }

func str(n Node) string {
	var b strings.Builder
	n.write(&b)
	return b.String()
}

func writeList(b *strings.Builder, op byte, list []Node) {
	b.WriteByte('(')
	b.WriteByte(op)
	for _, n := range list {
		if n != nil {
			n.write(b)
		}
	}
	b.WriteByte(')')
}

func writeItem(b *strings.Builder, attr, op, value string) {
	b.WriteByte('(')
	b.WriteString(attr)
	b.WriteString(op)
	b.WriteString(value)
	b.WriteByte(')')
}

func (n *And) write(b *strings.Builder) { writeList(b, '&', n.Filters) }
func (n *Or) write(b *strings.Builder)  { writeList(b, '|', n.Filters) }

func (n *Not) write(b *strings.Builder) {
	b.WriteString("(!")
	if n.Filter != nil {
		n.Filter.write(b)
	}
	b.WriteByte(')')
}

func (n *Equality) write(b *strings.Builder) {
	writeItem(b, n.Attribute, "=", n.w.text(n.Value))
}

func (n *Substring) write(b *strings.Builder) {
	w := n.w
	if w.raw != "" && w.initial == n.Initial && w.final == n.Final && equalStrings(w.any, n.Any) {
		writeItem(b, n.Attribute, "=", w.raw)
		return
	}
	b.WriteByte('(')
	b.WriteString(n.Attribute)
	b.WriteByte('=')
	b.WriteString(EscapeValue(n.Initial))
	b.WriteByte('*')
	for _, a := range n.Any {
		if a != "" {
			b.WriteString(EscapeValue(a))
			b.WriteByte('*')
		}
	}
	b.WriteString(EscapeValue(n.Final))
	b.WriteByte(')')
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (n *Present) write(b *strings.Builder) { writeItem(b, n.Attribute, "=", "*") }

func (n *GreaterOrEqual) write(b *strings.Builder) {
	writeItem(b, n.Attribute, ">=", n.w.text(n.Value))
}

func (n *LessOrEqual) write(b *strings.Builder) {
	writeItem(b, n.Attribute, "<=", n.w.text(n.Value))
}

func (n *Approx) write(b *strings.Builder) {
	writeItem(b, n.Attribute, "~=", n.w.text(n.Value))
}

func (n *Extensible) write(b *strings.Builder) {
	b.WriteByte('(')
	b.WriteString(n.Attribute)
	if n.DNAttributes {
		b.WriteByte(':')
		if n.dn != "" {
			b.WriteString(n.dn)
		} else {
			b.WriteString("dn")
		}
	}
	if n.MatchingRule != "" {
		b.WriteByte(':')
		b.WriteString(n.MatchingRule)
	}
	b.WriteString(":=")
	b.WriteString(n.w.text(n.Value))
	b.WriteByte(')')
}

// EscapeValue escapes s for use as an assertion value in a filter (RFC 4515):
// '*', '(', ')', '\' and NUL become \2a, \28, \29, \5c and \00, and each
// byte that is not part of valid UTF-8 becomes \XX; everything else is kept.
//
//	"(cn=" + filter.EscapeValue("GG-Mail-(EU)") + "*)"  // (cn=GG-Mail-\28EU\29*)
func EscapeValue(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	escaped := false // b holds s up to i, escaped
	for i := 0; i < len(s); {
		c := s[i]
		size := 1
		escape := false
		switch {
		case c == '*' || c == '(' || c == ')' || c == '\\' || c == 0:
			escape = true
		case c >= utf8.RuneSelf:
			var r rune
			r, size = utf8.DecodeRuneInString(s[i:])
			escape = r == utf8.RuneError && size == 1
		}
		switch {
		case escape:
			if !escaped {
				escaped = true
				b.Grow(len(s) + 8)
				b.WriteString(s[:i])
			}
			b.WriteByte('\\')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		case escaped:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if !escaped {
		return s
	}
	return b.String()
}
