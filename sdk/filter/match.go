package filter

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dirsync/dirsync/sdk"
)

// result is the value of a filter for an entry, in the three-valued logic
// of RFC 4511 section 4.5.1.7.
type result int8

const (
	isFalse result = iota
	isTrue
	undefined
)

// Match reports whether the filter is true for the entry, deciding as a
// directory server would under the assumptions below. Filters have the
// three values of RFC 4511 (true, false, Undefined): (&…) is false if one
// filter is false, else Undefined if one is; (|…) is true if one filter is
// true, else Undefined if one is; (!…) of Undefined is Undefined. An entry
// matches only when the filter is true, so neither (x) nor (!(x)) matches
// when x is Undefined. A nil Filter matches nothing.
//
// Attributes. An attribute description is looked up with entry.Values in
// lower case, options included ("cn;lang-de"); a numeric OID (2.5.4.3) is
// not translated to a name. An attribute the entry does not carry has no
// values: an item on it is false. The host fetches only the attributes a
// policy names in Info.Attributes (see Attributes), so (objectClass=*) is
// false for an entry fetched without objectclass, where a directory would
// say true.
//
// Matching rules. Every attribute is taken to be a directory string with
// the caseIgnore rules, whatever its schema says:
//
//   - (a=v) and (a~=v) use caseIgnoreMatch: equal when the texts are,
//     ignoring case (Unicode simple folding) and insignificant space
//     (white space at either end is dropped, a run of white space inside
//     counts as one space; RFC 4518). ~= has no algorithm of its own: it is
//     equality, as on a directory without one.
//   - (a=in*any*fin) uses caseIgnoreSubstringsMatch: the same case folding
//     and runs of white space; the parts must appear in order, without
//     overlapping.
//   - (a=*) is true when the entry has at least one value of a.
//   - (a>=v) and (a<=v) use integerOrderingMatch when both the entry's value
//     and v are integers (an optional '-' and digits, any length: uSNChanged,
//     badPwdCount), else caseIgnoreOrderingMatch: the texts, lower cased,
//     compared byte by byte (right for GeneralizedTime values such as
//     whenChanged, which all have one format).
//   - (a:rule:=v) knows: no rule (the equality of a: caseIgnoreMatch),
//     caseIgnoreMatch (2.5.13.2), caseExactMatch (2.5.13.5, insignificant
//     space still ignored), caseIgnoreIA5Match, caseExactIA5Match,
//     integerMatch (2.5.13.14), and Active Directory's
//     LDAP_MATCHING_RULE_BIT_AND (1.2.840.113556.1.4.803, true when every
//     bit of v is set, as in userAccountControl) and
//     LDAP_MATCHING_RULE_BIT_OR (1.2.840.113556.1.4.804, true when any bit
//     is). An integer rule on a value that is no integer is Undefined. Any
//     other rule is Undefined, among them LDAP_MATCHING_RULE_IN_CHAIN
//     (1.2.840.113556.1.4.1941), which needs the directory. With ":dn" the
//     attribute values of the entry's DN count too (OU=Staff in
//     CN=x,OU=Staff,DC=example,DC=com). Without an attribute, every value
//     of the entry to which the rule applies counts.
//
// Binary values (objectGUID, objectSid, …) reach a policy base64-encoded,
// so an assertion written with \XX escapes never matches them.
func (f *Filter) Match(entry sdk.Entry) bool {
	if f == nil || f.Root == nil {
		return false
	}
	return f.Root.eval(&entry) == isTrue
}

func (n *And) eval(e *sdk.Entry) result {
	r := isTrue
	for _, f := range n.Filters {
		switch eval(f, e) {
		case isFalse:
			return isFalse
		case undefined:
			r = undefined
		}
	}
	return r
}

func (n *Or) eval(e *sdk.Entry) result {
	r := isFalse
	for _, f := range n.Filters {
		switch eval(f, e) {
		case isTrue:
			return isTrue
		case undefined:
			r = undefined
		}
	}
	return r
}

func (n *Not) eval(e *sdk.Entry) result {
	switch eval(n.Filter, e) {
	case isTrue:
		return isFalse
	case isFalse:
		return isTrue
	}
	return undefined
}

// eval evaluates a node that may be nil (in a tree built by hand): Undefined.
func eval(n Node, e *sdk.Entry) result {
	if n == nil {
		return undefined
	}
	return n.eval(e)
}

// anyValue is true when one value of the attribute passes ok, else false.
func anyValue(e *sdk.Entry, attr string, ok func(string) bool) result {
	for _, v := range values(e, attr) {
		if ok(v) {
			return isTrue
		}
	}
	return isFalse
}

func (n *Equality) eval(e *sdk.Entry) result {
	a := squeeze(n.Value, true)
	return anyValue(e, n.Attribute, func(v string) bool { return strings.EqualFold(squeeze(v, true), a) })
}

func (n *Approx) eval(e *sdk.Entry) result {
	a := squeeze(n.Value, true)
	return anyValue(e, n.Attribute, func(v string) bool { return strings.EqualFold(squeeze(v, true), a) })
}

func (n *Present) eval(e *sdk.Entry) result {
	if len(values(e, n.Attribute)) > 0 {
		return isTrue
	}
	return isFalse
}

func (n *Substring) eval(e *sdk.Entry) result {
	initial := strings.ToLower(squeeze(n.Initial, false))
	final := strings.ToLower(squeeze(n.Final, false))
	anys := make([]string, 0, len(n.Any))
	for _, a := range n.Any {
		anys = append(anys, strings.ToLower(squeeze(a, false)))
	}
	return anyValue(e, n.Attribute, func(v string) bool {
		v = strings.ToLower(squeeze(v, true))
		if !strings.HasPrefix(v, initial) {
			return false
		}
		v = v[len(initial):]
		if !strings.HasSuffix(v, final) {
			return false
		}
		v = v[:len(v)-len(final)]
		for _, a := range anys {
			i := strings.Index(v, a)
			if i < 0 {
				return false
			}
			v = v[i+len(a):]
		}
		return true
	})
}

func (n *GreaterOrEqual) eval(e *sdk.Entry) result {
	return anyValue(e, n.Attribute, func(v string) bool { return order(v, n.Value) >= 0 })
}

func (n *LessOrEqual) eval(e *sdk.Entry) result {
	return anyValue(e, n.Attribute, func(v string) bool { return order(v, n.Value) <= 0 })
}

// order compares an entry's value with an assertion value: as integers when
// both are, else as lower-cased text.
func order(v, a string) int {
	if c, ok := compareIntegers(v, a); ok {
		return c
	}
	return strings.Compare(strings.ToLower(squeeze(v, true)), strings.ToLower(squeeze(a, true)))
}

func (n *Extensible) eval(e *sdk.Entry) result {
	rule := rules[strings.ToLower(n.MatchingRule)]
	if rule == nil {
		return undefined
	}
	r := isFalse
	// try reports whether v matches; a value the rule cannot judge makes
	// the item Undefined when the attribute was named, and is passed over
	// when the rule applies to every attribute.
	try := func(v string) bool {
		switch rule(v, n.Value) {
		case isTrue:
			return true
		case undefined:
			if n.Attribute != "" {
				r = undefined
			}
		}
		return false
	}
	if n.Attribute != "" {
		for _, v := range values(e, n.Attribute) {
			if try(v) {
				return isTrue
			}
		}
	} else {
		// The answer does not depend on the order of the attributes.
		for _, vs := range e.All() {
			for _, v := range vs {
				if try(v) {
					return isTrue
				}
			}
		}
	}
	if n.DNAttributes {
		typ, _, _ := strings.Cut(n.Attribute, ";")
		for _, ava := range dnValues(e.DN) {
			if (typ == "" || strings.EqualFold(ava.typ, typ)) && try(ava.value) {
				return isTrue
			}
		}
	}
	return r
}

// rules are the matching rules of extensible matches, by lower-cased name
// and OID: each judges an entry's value against the assertion value.
var rules = map[string]func(v, a string) result{
	"":                           caseIgnore,
	"caseignorematch":            caseIgnore,
	"2.5.13.2":                   caseIgnore,
	"caseignoreia5match":         caseIgnore,
	"1.3.6.1.4.1.1466.109.114.2": caseIgnore,
	"caseexactmatch":             caseExact,
	"2.5.13.5":                   caseExact,
	"caseexactia5match":          caseExact,
	"1.3.6.1.4.1.1466.109.114.1": caseExact,
	"integermatch":               integerMatch,
	"2.5.13.14":                  integerMatch,
	"1.2.840.113556.1.4.803":     bitAnd,
	"1.2.840.113556.1.4.804":     bitOr,
}

func truth(b bool) result {
	if b {
		return isTrue
	}
	return isFalse
}

func caseIgnore(v, a string) result {
	return truth(strings.EqualFold(squeeze(v, true), squeeze(a, true)))
}

func caseExact(v, a string) result { return truth(squeeze(v, true) == squeeze(a, true)) }

func integerMatch(v, a string) result {
	c, ok := compareIntegers(v, a)
	if !ok {
		return undefined
	}
	return truth(c == 0)
}

func bitAnd(v, a string) result {
	x, ok1 := bits(v)
	y, ok2 := bits(a)
	if !ok1 || !ok2 {
		return undefined
	}
	return truth(x&y == y)
}

func bitOr(v, a string) result {
	x, ok1 := bits(v)
	y, ok2 := bits(a)
	if !ok1 || !ok2 {
		return undefined
	}
	return truth(x&y != 0)
}

// bits reads a 64-bit integer, signed (AD writes groupType as -2147483646)
// or unsigned.
func bits(s string) (uint64, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return uint64(n), true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// compareIntegers compares two decimal integers of any length; ok is false
// when either is not one.
func compareIntegers(a, b string) (c int, ok bool) {
	an, ad, ok1 := integer(a)
	bn, bd, ok2 := integer(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	if an != bn {
		if an {
			return -1, true
		}
		return 1, true
	}
	switch {
	case len(ad) != len(bd):
		c = len(ad) - len(bd)
	default:
		c = strings.Compare(ad, bd)
	}
	if c > 0 {
		c = 1
	} else if c < 0 {
		c = -1
	}
	if an {
		c = -c
	}
	return c, true
}

// integer splits an LDAP integer ("-"? digits) into its sign and its digits
// without leading zeros (zero is not negative).
func integer(s string) (neg bool, digits string, ok bool) {
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	if s == "" {
		return false, "", false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false, "", false
		}
	}
	s = strings.TrimLeft(s, "0")
	return neg && s != "", s, true
}

// values returns the values of attribute attr of e, looked up in lower case.
func values(e *sdk.Entry, attr string) []string {
	if v := e.Values(attr); v != nil {
		return v
	}
	var buf [64]byte
	if len(attr) > len(buf) {
		return e.Values(strings.ToLower(attr))
	}
	upper := false
	for i := 0; i < len(attr); i++ {
		c := attr[i]
		if c >= utf8.RuneSelf {
			return e.Values(strings.ToLower(attr))
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			upper = true
		}
		buf[i] = c
	}
	if !upper {
		return nil
	}
	return e.Values(string(buf[:len(attr)]))
}

// squeeze applies the insignificant space handling of RFC 4518 to s: runs
// of white space become one space and, with trim, white space at either end
// goes. It returns s itself when there is nothing to change.
func squeeze(s string, trim bool) string {
	if !needsSqueeze(s, trim) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && (b.Len() > 0 || !trim) {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	if space && !trim {
		b.WriteByte(' ')
	}
	return b.String()
}

func needsSqueeze(s string, trim bool) bool {
	prev := trim // at the start, with trim, any white space is leading
	for _, r := range s {
		sp := unicode.IsSpace(r)
		if sp && (prev || r != ' ') {
			return true
		}
		prev = sp
	}
	return trim && prev && s != ""
}

// ava is one attribute value of a DN.
type ava struct{ typ, value string }

// dnValues splits a DN (RFC 4514) into its attribute values, decoding the
// escapes (\, and \2c alike). Multi-valued RDNs (a=1+b=2) give one ava each.
func dnValues(dn string) []ava {
	var out []ava
	var b []byte
	typ, inValue := "", false
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		switch {
		case c == '\\' && i+1 < len(dn):
			if i+2 < len(dn) && isHex(dn[i+1]) && isHex(dn[i+2]) {
				b = append(b, unhex(dn[i+1])<<4|unhex(dn[i+2]))
				i += 2
			} else {
				b = append(b, dn[i+1])
				i++
			}
		case c == '=' && !inValue:
			typ, inValue = strings.TrimSpace(string(b)), true
			b = b[:0]
		case (c == ',' || c == '+') && inValue:
			out = append(out, ava{typ, strings.TrimSpace(string(b))})
			b, inValue = b[:0], false
		default:
			b = append(b, c)
		}
	}
	if inValue {
		out = append(out, ava{typ, strings.TrimSpace(string(b))})
	}
	return out
}
