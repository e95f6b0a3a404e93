package slapd

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/dirsync/dirsync/host/internal/testpeer"
	"github.com/go-ldap/ldap/v3"
)

// origin maps a line of the generated slapadd input back to its source.
type origin struct {
	out    int // first line of the record in the slapadd input
	source string
	line   int
}

type origins []origin

var slapaddLine = regexp.MustCompile(`line=(\d+)`)

// explain turns slapadd's "line=N" into the source file and line.
func (o origins) explain(msg string) string {
	m := slapaddLine.FindAllStringSubmatch(msg, -1)
	if len(m) == 0 {
		return ""
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	i := sort.Search(len(o), func(i int) bool { return o[i].out > n }) - 1
	if i < 0 {
		return ""
	}
	return fmt.Sprintf("(slapadd input line %d is the record at %s:%d)", n, o[i].source, o[i].line+n-o[i].out)
}

// prepareSlapadd writes the slapadd input for files to w: the base entry
// when no file has it, then every record, with memberOf values added to the
// members of each groupOfNames (slapadd does not run the memberof overlay).
func prepareSlapadd(w io.Writer, baseDN string, files []string) (origins, error) {
	normBase := normDN(baseDN)
	baseFound := false
	memberOf := map[string][]string{} // member key -> group DNs
	err := eachRecord(files, func(rec *record, _ rawRecord) error {
		if rec.changeType != "add" {
			return fmt.Errorf("%s: changetype %s: files loaded at start may only add entries", rec.where(), rec.changeType)
		}
		if normDN(rec.dn) == normBase {
			baseFound = true
		}
		if rec.hasObjectClass("groupOfNames") {
			for _, m := range rec.values("member") {
				k := normDN(m)
				memberOf[k] = append(memberOf[k], rec.dn)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	bw := bufio.NewWriterSize(w, 256<<10)
	var (
		orig []origin
		out  = 1
	)
	if !baseFound {
		lines, err := baseEntry(baseDN)
		if err != nil {
			return nil, err
		}
		orig = append(orig, origin{out: out, source: "(generated base entry)", line: 1})
		for _, l := range lines {
			bw.WriteString(l)
			bw.WriteByte('\n')
		}
		bw.WriteByte('\n')
		out += len(lines) + 1
	}
	err = eachRecord(files, func(rec *record, raw rawRecord) error {
		orig = append(orig, origin{out: out, source: rec.source, line: rec.line})
		for _, l := range raw.lines {
			bw.WriteString(l)
			bw.WriteByte('\n')
		}
		out += len(raw.lines)
		if groups := memberOf[normDN(rec.dn)]; len(groups) > 0 {
			have := map[string]bool{}
			for _, v := range rec.values("memberOf") {
				have[normDN(v)] = true
			}
			for _, g := range groups {
				if k := normDN(g); !have[k] {
					have[k] = true
					bw.WriteString(ldifLine("memberOf", g))
					bw.WriteByte('\n')
					out++
				}
			}
		}
		bw.WriteByte('\n')
		out++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return orig, bw.Flush()
}

// eachRecord parses the records of files in order.
func eachRecord(files []string, fn func(*record, rawRecord) error) error {
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = eachRecordIn(name, f, fn)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func eachRecordIn(name string, r io.Reader, fn func(*record, rawRecord) error) error {
	sc := newLDIFScanner(name, r)
	for {
		raw, ok, err := sc.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		rec, err := parseRecord(name, raw)
		if err != nil {
			return err
		}
		if err := fn(rec, raw); err != nil {
			return err
		}
	}
}

// baseEntry returns the LDIF lines of a base entry for dn.
func baseEntry(dn string) ([]string, error) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) != 1 {
		return nil, fmt.Errorf("base DN %q: cannot generate a base entry; put one in the LDIF", dn)
	}
	a := parsed.RDNs[0].Attributes[0]
	lines := []string{ldifLine("dn", dn)}
	switch strings.ToLower(a.Type) {
	case "dc":
		lines = append(lines, "objectClass: dcObject", "objectClass: organization", ldifLine("dc", a.Value), ldifLine("o", a.Value))
	case "o":
		lines = append(lines, "objectClass: organization", ldifLine("o", a.Value))
	case "ou":
		lines = append(lines, "objectClass: organizationalUnit", ldifLine("ou", a.Value))
	case "c":
		lines = append(lines, "objectClass: country", ldifLine("c", a.Value))
	default:
		return nil, fmt.Errorf("base DN %q: cannot generate a base entry for RDN type %s; put one in the LDIF", dn, a.Type)
	}
	return lines, nil
}

// admin writes as the rootdn.
func (s *Server) admin() testpeer.Admin {
	return testpeer.Admin{Name: "slapd", URL: s.URL, DN: s.AdminDN, Password: s.AdminPassword}
}

// Dial connects to the server and binds as the rootdn.
func (s *Server) Dial() (*ldap.Conn, error) { return s.admin().Dial() }

// Load applies the LDIF records read from r over LDAP as the rootdn: adds
// (the default), and changetype delete and modify. The memberof overlay
// maintains memberOf. For large directories use Options.LDIF instead.
func (s *Server) Load(r io.Reader) error {
	return s.load("(ldif)", r)
}

// LoadFile is Load for a file.
func (s *Server) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.load(path, f)
}

func (s *Server) load(name string, r io.Reader) error {
	c, err := s.Dial()
	if err != nil {
		return err
	}
	defer c.Close()
	return eachRecordIn(name, r, func(rec *record, _ rawRecord) error {
		var err error
		switch rec.changeType {
		case "add":
			err = c.Add(&ldap.AddRequest{DN: rec.dn, Attributes: rec.attrs})
		case "delete":
			err = c.Del(ldap.NewDelRequest(rec.dn, nil))
		case "modify":
			err = c.Modify(&ldap.ModifyRequest{DN: rec.dn, Changes: rec.changes})
		}
		if err != nil {
			return fmt.Errorf("%s: %s %q: %w", rec.where(), rec.changeType, rec.dn, err)
		}
		return nil
	})
}

// Add adds an entry as the rootdn. Attributes are added in name order;
// those without values are left out.
func (s *Server) Add(dn string, attrs map[string][]string) error { return s.admin().Add(dn, attrs) }

// Modify applies a modify request as the rootdn.
func (s *Server) Modify(req *ldap.ModifyRequest) error { return s.admin().Modify(req) }

// Replace replaces all values of attr of the entry dn (no values deletes
// the attribute).
func (s *Server) Replace(dn, attr string, values ...string) error {
	return s.admin().Replace(dn, attr, values...)
}

// Delete deletes the entry dn as the rootdn.
func (s *Server) Delete(dn string) error { return s.admin().Delete(dn) }
