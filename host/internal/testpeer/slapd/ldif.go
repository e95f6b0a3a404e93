package slapd

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// This file holds a small LDIF (RFC 2849) reader: enough for fixtures and
// generated directories (records separated by blank lines, folded lines,
// comments, base64 values, file:// URLs, changetype add/delete/modify).

// rawRecord is one LDIF record as logical lines: unfolded, comments removed.
type rawRecord struct {
	line    int      // 1-based line of the record's first line in its source
	lines   []string // logical lines
	lineNos []int    // where each logical line starts
}

// ldifScanner splits an LDIF stream into raw records.
type ldifScanner struct {
	name     string // source name for errors
	sc       *bufio.Scanner
	lineNo   int
	started  bool // a record has been returned or skipped (for version:)
	finished bool
}

func newLDIFScanner(name string, r io.Reader) *ldifScanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	return &ldifScanner{name: name, sc: sc}
}

// next returns the next record; ok is false at the end of the input or on
// an error (returned as err).
func (s *ldifScanner) next() (rec rawRecord, ok bool, err error) {
	for {
		rec, ok, err = s.nextRaw()
		if err != nil || !ok {
			return rec, ok, err
		}
		if !s.started {
			s.started = true
			if len(rec.lines) > 0 && hasPrefixFold(rec.lines[0], "version:") {
				rec.lines, rec.lineNos = rec.lines[1:], rec.lineNos[1:]
				if len(rec.lines) == 0 {
					continue
				}
				rec.line = rec.lineNos[0]
			}
		}
		return rec, true, nil
	}
}

func (s *ldifScanner) nextRaw() (rawRecord, bool, error) {
	var (
		rec       rawRecord
		cur       strings.Builder
		haveCur   bool
		inComment bool
	)
	flush := func() {
		if haveCur {
			rec.lines = append(rec.lines, cur.String())
			cur.Reset()
			haveCur = false
		}
	}
	if s.finished {
		return rec, false, nil
	}
	for s.sc.Scan() {
		s.lineNo++
		l := strings.TrimSuffix(s.sc.Text(), "\r")
		switch {
		case strings.HasPrefix(l, " "):
			if inComment {
				continue
			}
			if !haveCur {
				return rec, false, fmt.Errorf("%s:%d: continuation line without a line to continue", s.name, s.lineNo)
			}
			cur.WriteString(l[1:])
		case l == "":
			flush()
			inComment = false
			if len(rec.lines) > 0 {
				return rec, true, nil
			}
		case strings.HasPrefix(l, "#"):
			flush()
			inComment = true
		default:
			flush()
			inComment = false
			if len(rec.lines) == 0 {
				rec.line = s.lineNo
			}
			rec.lineNos = append(rec.lineNos, s.lineNo)
			cur.WriteString(l)
			haveCur = true
		}
	}
	if err := s.sc.Err(); err != nil {
		return rec, false, fmt.Errorf("%s:%d: %w", s.name, s.lineNo, err)
	}
	s.finished = true
	flush()
	return rec, len(rec.lines) > 0, nil
}

// record is a parsed LDIF record.
type record struct {
	source     string
	line       int
	dn         string
	changeType string // add, delete or modify
	attrs      []ldap.Attribute
	changes    []ldap.Change
}

func (r *record) where() string { return fmt.Sprintf("%s:%d", r.source, r.line) }

// values returns the values of attribute name (case-insensitive) of an add record.
func (r *record) values(name string) []string {
	for _, a := range r.attrs {
		if strings.EqualFold(a.Type, name) {
			return a.Vals
		}
	}
	return nil
}

// hasObjectClass reports whether an add record has objectClass oc.
func (r *record) hasObjectClass(oc string) bool {
	for _, v := range r.values("objectClass") {
		if strings.EqualFold(v, oc) {
			return true
		}
	}
	return false
}

// parseRecord parses the logical lines of one record.
func parseRecord(source string, raw rawRecord) (*record, error) {
	rec := &record{source: source, line: raw.line, changeType: "add"}
	p := recordLines{source: source, raw: raw}
	name, dn, err := parseLDIFLine(raw.lines[0])
	if err != nil {
		return nil, p.errAt(0, "%v", err)
	}
	if !strings.EqualFold(name, "dn") {
		return nil, p.errAt(0, "record does not start with dn: (found %q)", name)
	}
	rec.dn = dn
	i := 1
	if i < len(raw.lines) && hasPrefixFold(raw.lines[i], "control:") {
		return nil, p.errAt(i, "LDIF controls are not supported")
	}
	if i < len(raw.lines) && hasPrefixFold(raw.lines[i], "changetype:") {
		_, ct, err := parseLDIFLine(raw.lines[i])
		if err != nil {
			return nil, p.errAt(i, "%v", err)
		}
		rec.changeType = strings.ToLower(ct)
		i++
	}
	switch rec.changeType {
	case "add":
		err = p.parseAdd(rec, i)
	case "delete":
		if i < len(raw.lines) {
			err = p.errAt(i, "a delete record has no further lines")
		}
	case "modify":
		err = p.parseModify(rec, i)
	default:
		err = p.errAt(1, "changetype %q is not supported (add, delete, modify)", rec.changeType)
	}
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// recordLines are the logical lines of one record and where they come
// from.
type recordLines struct {
	source string
	raw    rawRecord
}

// errAt is an error at logical line i, naming its source line.
func (p recordLines) errAt(i int, format string, a ...any) error {
	line := p.raw.line
	if i < len(p.raw.lineNos) {
		line = p.raw.lineNos[i]
	}
	return fmt.Errorf("%s:%d: %s", p.source, line, fmt.Sprintf(format, a...))
}

// parseAdd reads the attributes of an add record from line i on; the
// values of an attribute named more than once are joined.
func (p recordLines) parseAdd(rec *record, i int) error {
	idx := map[string]int{}
	for ; i < len(p.raw.lines); i++ {
		name, v, err := parseLDIFLine(p.raw.lines[i])
		if err != nil {
			return p.errAt(i, "%v", err)
		}
		k := strings.ToLower(name)
		if j, ok := idx[k]; ok {
			rec.attrs[j].Vals = append(rec.attrs[j].Vals, v)
			continue
		}
		idx[k] = len(rec.attrs)
		rec.attrs = append(rec.attrs, ldap.Attribute{Type: name, Vals: []string{v}})
	}
	if len(rec.attrs) == 0 {
		return p.errAt(0, "entry %q has no attributes", rec.dn)
	}
	return nil
}

// parseModify reads the changes of a modify record from line i on: an
// operation line, the values of its attribute, and a "-" line each.
func (p recordLines) parseModify(rec *record, i int) error {
	lines := p.raw.lines
	for i < len(lines) {
		opName, attr, err := parseLDIFLine(lines[i])
		if err != nil {
			return p.errAt(i, "%v", err)
		}
		var op uint
		switch strings.ToLower(opName) {
		case "add":
			op = ldap.AddAttribute
		case "delete":
			op = ldap.DeleteAttribute
		case "replace":
			op = ldap.ReplaceAttribute
		case "increment":
			op = ldap.IncrementAttribute
		default:
			return p.errAt(i, "unknown modify operation %q (want add, delete, replace or increment)", opName)
		}
		i++
		ch := ldap.Change{Operation: op, Modification: ldap.PartialAttribute{Type: attr}}
		for ; i < len(lines) && lines[i] != "-"; i++ {
			n, v, err := parseLDIFLine(lines[i])
			if err != nil {
				return p.errAt(i, "%v", err)
			}
			if !strings.EqualFold(n, attr) {
				return p.errAt(i, "value of %q inside a %s of %q (missing \"-\" line?)", n, opName, attr)
			}
			ch.Modification.Vals = append(ch.Modification.Vals, v)
		}
		i++ // the "-" separator (or the end)
		rec.changes = append(rec.changes, ch)
	}
	return nil
}

// parseLDIFLine splits "name: value", "name:: base64" or "name:< file://path".
func parseLDIFLine(l string) (name, value string, err error) {
	i := strings.IndexByte(l, ':')
	if i <= 0 {
		return "", "", fmt.Errorf("line %q is not \"attribute: value\"", truncate(l, 60))
	}
	name, rest := l[:i], l[i+1:]
	switch {
	case strings.HasPrefix(rest, ":"):
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest[1:]))
		if err != nil {
			return "", "", fmt.Errorf("attribute %s: bad base64 value: %v", name, err)
		}
		return name, string(b), nil
	case strings.HasPrefix(rest, "<"):
		u := strings.TrimSpace(rest[1:])
		path, ok := strings.CutPrefix(u, "file://")
		if !ok {
			return "", "", fmt.Errorf("attribute %s: only file:// URLs are supported, got %q", name, u)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", "", fmt.Errorf("attribute %s: %v", name, err)
		}
		return name, string(b), nil
	default:
		return name, strings.TrimLeft(rest, " "), nil
	}
}

// ldifLine renders one attribute value as an LDIF line, base64 when the
// value is not a SAFE-STRING (RFC 2849).
func ldifLine(name, value string) string {
	if isSafeString(value) {
		return name + ": " + value
	}
	return name + ":: " + base64.StdEncoding.EncodeToString([]byte(value))
}

func isSafeString(s string) bool {
	if s == "" {
		return true
	}
	if c := s[0]; c == ' ' || c == ':' || c == '<' {
		return false
	}
	if s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\n' || c == '\r' || c >= 0x80 {
			return false
		}
	}
	return true
}

// normDN returns a comparison key for a DN: attribute types and values
// lower-cased, escaping and spacing normalized. A DN that does not parse is
// compared by its lower-cased text.
func normDN(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	var b strings.Builder
	for i, rdn := range parsed.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn.Attributes {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strings.ToLower(a.Type))
			b.WriteByte('=')
			b.WriteString(strings.ToLower(a.Value))
		}
	}
	return b.String()
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
