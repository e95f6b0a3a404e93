package ldapfetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Ranged attribute retrieval (MS-ADTS 3.1.1.3.1.3.3). Active Directory
// answers a multi-valued attribute with more values than its MaxValRange
// (1500 by default) — typically the member attribute of a large group — with
// the first values only, under the name "member;range=0-1499" (and an empty
// "member"). The rest must be asked for, by reading the same entry again
// with "member;range=1500-*", then "member;range=3000-*" and so on, until
// an answer's range ends in "*". Reading only the first range would drop
// members silently; here any failure to read every range fails the fetch
// (S1).
//
// The follow-up reads are base-scope searches on the same connection. An
// LDAP connection carries one paged search page at a time here, so an entry
// with open ranges is held back until its page is complete; from then on
// the page's entries are held too, so that the callback still sees them in
// the server's order. The reads happen before the next page is asked for.

// maxRangeReads bounds the follow-up reads of one attribute of one entry:
// with AD's 1500 values per range, 10 million values.
const maxRangeReads = 7000

// attrRange is the range option of an attribute description.
type attrRange struct {
	base      string // the description without the range option
	low, high int    // high is -1 for "*"
}

// parseRange finds the range option in an attribute description such as
// "member;range=0-1499" or "member;Range=1500-*". ok is false when there is
// none; err is set when there is one that does not parse.
func parseRange(name string) (r attrRange, ok bool, err error) {
	if strings.IndexByte(name, ';') < 0 {
		return r, false, nil
	}
	parts := strings.Split(name, ";")
	idx := -1
	for i, p := range parts[1:] {
		if len(p) >= 6 && strings.EqualFold(p[:6], "range=") {
			if idx >= 0 {
				return r, true, fmt.Errorf("attribute %s has two range options", name)
			}
			idx = i + 1
		}
	}
	if idx < 0 {
		return r, false, nil
	}
	spec := parts[idx][6:]
	lowS, highS, found := strings.Cut(spec, "-")
	bad := func() (attrRange, bool, error) {
		return r, true, fmt.Errorf("attribute %s: malformed range %q (want LOW-HIGH or LOW-*)", name, spec)
	}
	if !found {
		return bad()
	}
	if r.low, err = strconv.Atoi(lowS); err != nil || r.low < 0 {
		return bad()
	}
	if highS == "*" {
		r.high = -1
	} else if r.high, err = strconv.Atoi(highS); err != nil || r.high < r.low-1 {
		return bad()
	}
	r.base = strings.Join(append(parts[:idx:idx], parts[idx+1:]...), ";")
	return r, true, nil
}

// hasRange reports whether any attribute of an entry is ranged. It is
// called for every entry, so it looks for the ';' first.
func hasRange(attrs []rawAttr) bool {
	for _, a := range attrs {
		if strings.IndexByte(a.name, ';') >= 0 {
			if _, ok, _ := parseRange(a.name); ok {
				return true
			}
		}
	}
	return false
}

// heldEntry is an entry waiting for its page to end.
type heldEntry struct {
	dn     string
	attrs  []rawAttr
	ranged bool
}

// rangeReader does the follow-up reads on one connection.
type rangeReader struct {
	ctx     context.Context
	c       *client
	timeout time.Duration
	filter  *ber.Packet
	raw     []rawAttr
	reads   int
}

func newRangeReader(ctx context.Context, c *client, timeout time.Duration) (*rangeReader, error) {
	f, err := ldap.CompileFilter("(objectClass=*)")
	if err != nil {
		return nil, err
	}
	return &rangeReader{ctx: ctx, c: c, timeout: timeout, filter: f}, nil
}

// complete returns attrs with every ranged attribute replaced by the whole
// attribute under its base name, reading the missing ranges of the entry
// dn. The plain attribute that AD sends beside the first range must be
// empty.
func (rr *rangeReader) complete(dn string, attrs []rawAttr) ([]rawAttr, error) {
	ranges := make([]attrRange, len(attrs))
	isRanged := make([]bool, len(attrs))
	bases := map[string]bool{} // lower-case base names of the ranged attributes
	for i, a := range attrs {
		r, ok, err := parseRange(a.name)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", dn, err)
		}
		if !ok {
			continue
		}
		key := strings.ToLower(r.base)
		if bases[key] {
			return nil, fmt.Errorf("entry %q: attribute %s came back in more than one range", dn, r.base)
		}
		bases[key] = true
		ranges[i], isRanged[i] = r, true
	}
	out := make([]rawAttr, 0, len(attrs))
	for i, a := range attrs {
		if !isRanged[i] {
			if bases[strings.ToLower(a.name)] {
				// The plain attribute AD sends beside the first range.
				if len(a.vals) > 0 {
					return nil, fmt.Errorf("entry %q: attribute %s came back both whole (%d values) and in ranges", dn, a.name, len(a.vals))
				}
				continue
			}
			out = append(out, a)
			continue
		}
		vals, err := rr.rest(dn, a.name, ranges[i], a.vals)
		if err != nil {
			return nil, err
		}
		out = append(out, rawAttr{name: ranges[i].base, vals: vals})
	}
	return out, nil
}

// rest returns first (the values of the range r, named name) followed by
// the values of every later range of the attribute.
func (rr *rangeReader) rest(dn, name string, r attrRange, first []string) ([]string, error) {
	if r.low != 0 {
		return nil, fmt.Errorf("entry %q: attribute %s starts at value %d, not 0", dn, name, r.low)
	}
	if err := checkCount(dn, name, r, len(first)); err != nil {
		return nil, err
	}
	vals := append([]string(nil), first...)
	for reads := 0; r.high >= 0; reads++ {
		next := r.high + 1
		ask := fmt.Sprintf("%s;range=%d-*", r.base, next)
		if reads == maxRangeReads {
			return nil, fmt.Errorf("entry %q: %s: more than %d ranges", dn, ask, maxRangeReads)
		}
		got, gotName, gotRange, err := rr.read(dn, ask, r.base)
		if err != nil {
			return nil, fmt.Errorf("entry %q: reading %s: %w", dn, ask, rr.explain(err))
		}
		if gotRange.low != next {
			return nil, fmt.Errorf("entry %q: reading %s: the server answered with %s, want values from %d", dn, ask, gotName, next)
		}
		if err := checkCount(dn, gotName, gotRange, len(got)); err != nil {
			return nil, err
		}
		vals = append(vals, got...)
		r = gotRange
	}
	return vals, nil
}

// explain words the errors of a connection (search words them for a page).
func (rr *rangeReader) explain(err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("no complete answer within %v", rr.timeout)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the server closed the connection")
	}
	return err
}

// checkCount checks that a closed range holds as many values as it says
// and at least one (or no read would make progress).
func checkCount(dn, name string, r attrRange, n int) error {
	if r.high < 0 {
		return nil
	}
	if want := r.high - r.low + 1; n != want || n == 0 {
		return fmt.Errorf("entry %q: attribute %s holds %d values, want %d", dn, name, n, want)
	}
	return nil
}

// read runs one base-scope search of dn for the attribute description ask
// and returns the values of the ranged attribute with the given base name.
func (rr *rangeReader) read(dn, ask, base string) (vals []string, name string, r attrRange, err error) {
	rr.reads++
	_ = rr.c.nc.SetDeadline(time.Now().Add(rr.timeout))
	if err := rr.ctx.Err(); err != nil { // a cancel whose deadline that overrode
		return nil, "", r, err
	}
	id, err := rr.c.send(readRequest(dn, rr.filter, ask))
	if err != nil {
		return nil, "", r, err
	}
	entries := 0
	found := false
	for {
		m, err := rr.c.response(id)
		if err != nil {
			return nil, "", r, err
		}
		switch m.op {
		case opSearchEntry:
			entries++
			var edn string
			if edn, rr.raw, err = decodeEntry(m.body, rr.raw); err != nil {
				return nil, "", r, err
			}
			if entries > 1 {
				return nil, "", r, fmt.Errorf("a base-scope read returned a second entry %q", edn)
			}
			for _, a := range rr.raw {
				ar, ok, err := parseRange(a.name)
				if err != nil {
					return nil, "", r, err
				}
				if ok && strings.EqualFold(ar.base, base) {
					if found {
						return nil, "", r, fmt.Errorf("the answer holds %s in more than one range", base)
					}
					vals, name, r, found = a.vals, a.name, ar, true
				}
			}
		case opSearchRef, opIntermediate:
		case opSearchDone:
			res, _, err := parseResult(m.body)
			if err != nil {
				return nil, "", r, err
			}
			if err := res.err(); err != nil {
				return nil, "", r, errors.New(describe(err))
			}
			switch {
			case entries == 0:
				return nil, "", r, errors.New("the entry was not returned")
			case !found:
				return nil, "", r, fmt.Errorf("the answer holds no range of %s", base)
			}
			return vals, name, r, nil
		default:
			return nil, "", r, malformed("unexpected operation 0x%02x in a search", m.op)
		}
	}
}
