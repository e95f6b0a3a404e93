package ldapfetch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// This file is a minimal LDAPv3 client for the one job of this package:
// StartTLS, simple bind, a paged search and the base-scope reads of ranged
// attributes (ranges.go), read straight off the socket.
//
// go-ldap decodes every message into a tree of ber.Packet values (each with
// a copy of its bytes and a description) and passes it through three
// goroutines; reading 100k entries that way takes three to four times as
// long as the server needs to send them (see BenchmarkFetch). Here a
// message is read into one string and decoded in place: the DN, attribute
// names and values are substrings of it. Requests are still encoded with
// go-ldap and asn1-ber (including the filter), and server results are
// reported as *ldap.Error.
//
// The decoder is strict: anything that is not well-formed BER of the
// expected shape is an error, never a skipped entry (rule S1).

// maxMessage bounds one LDAP message (an entry with all its values).
const maxMessage = 256 << 20

// BER tags (one byte; LDAP uses no high tag numbers).
const (
	tagBoolean     = 0x01
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagEnumerated  = 0x0a
	tagSequence    = 0x30
	tagSet         = 0x31
	tagControls    = 0xa0 // [0] constructed, in LDAPMessage
	tagReferral    = 0xa3 // [3] constructed, in LDAPResult

	opBindResponse   = 0x61 // [APPLICATION 1]
	opSearchEntry    = 0x64 // [APPLICATION 4]
	opSearchDone     = 0x65 // [APPLICATION 5]
	opSearchRef      = 0x73 // [APPLICATION 19]
	opExtendedResp   = 0x78 // [APPLICATION 24]
	opIntermediate   = 0x79 // [APPLICATION 25]
	tagResponseName  = 0x8a // [10] in ExtendedResponse
	oidNoticeOfDisco = "1.3.6.1.4.1.1466.20036"
	oidStartTLS      = "1.3.6.1.4.1.1466.20037"
)

// errMalformed marks a message that does not decode.
var errMalformed = errors.New("malformed LDAP message")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, a...))
}

// notLDAPError is a peer whose first answer is not an LDAP message at all:
// a web server, a port that speaks TLS reached with ldap://, a mail or SSH
// server. It unwraps to errMalformed.
type notLDAPError struct {
	tls  bool   // the answer is a TLS record
	head string // the answer's first line when it is printable text
	hex  string // else its first bytes in hex
}

func (e *notLDAPError) Error() string {
	switch {
	case e.tls:
		return "is this an LDAP server? (it answered with a TLS record, not LDAP: a port that speaks TLS from the start needs an ldaps:// URL)"
	case e.head != "":
		return fmt.Sprintf("is this an LDAP server? (it answered with bytes that are not LDAP: %q)", e.head)
	}
	return fmt.Sprintf("is this an LDAP server? (it answered with bytes that are not LDAP: %s)", e.hex)
}

func (e *notLDAPError) Unwrap() error { return errMalformed }

// notLDAP describes the first answer of a peer that does not speak LDAP
// from what of it is buffered in br (which still holds its first byte).
func notLDAP(br *bufio.Reader) error {
	b, _ := br.Peek(min(br.Buffered(), 64))
	if len(b) >= 2 && (b[0] == 0x15 || b[0] == 0x16) && b[1] == 0x03 {
		return &notLDAPError{tls: true}
	}
	line := b
	if i := slices.IndexFunc(line, func(c byte) bool { return c == '\r' || c == '\n' }); i >= 0 {
		line = line[:i]
	}
	printable := len(line) > 0 && !slices.ContainsFunc(line, func(c byte) bool { return c < 0x20 || c > 0x7e })
	if printable {
		return &notLDAPError{head: string(line)}
	}
	return &notLDAPError{hex: fmt.Sprintf("% x", b[:min(len(b), 8)])}
}

// client speaks LDAP on one connection, one operation at a time.
type client struct {
	nc  net.Conn
	br  *bufio.Reader
	id  int64
	buf []byte
	// answered: a whole LDAP message came from the peer, which then
	// speaks LDAP; bad bytes after that are a malformed message.
	answered bool
}

func newClient(nc net.Conn) *client {
	return &client{nc: nc, br: bufio.NewReaderSize(nc, 256<<10)}
}

// message is one decoded LDAPMessage envelope.
type message struct {
	id       int64
	op       byte   // protocolOp tag
	body     string // protocolOp content
	controls string // content of [0] controls; "" when absent
}

// send writes one request and returns its message ID.
func (c *client) send(op *ber.Packet, controls ...ldap.Control) (int64, error) {
	c.id++
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, c.id, "MessageID"))
	p.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, ctl := range controls {
			cs.AppendChild(ctl.Encode())
		}
		p.AppendChild(cs)
	}
	_, err := c.nc.Write(p.Bytes())
	return c.id, err
}

// read reads the next message.
func (c *client) read() (message, error) {
	var m message
	tag, err := c.br.ReadByte()
	if err != nil {
		return m, err
	}
	if tag != tagSequence {
		if !c.answered {
			_ = c.br.UnreadByte()
			return m, notLDAP(c.br)
		}
		return m, malformed("message starts with tag 0x%02x", tag)
	}
	n, err := readLength(c.br)
	if err != nil {
		return m, err
	}
	var s string
	if n <= c.br.Size() {
		b, err := c.br.Peek(n)
		if err != nil {
			return m, unexpectedEOF(err)
		}
		s = string(b)
		_, _ = c.br.Discard(n)
	} else {
		// Grow with the data that actually arrives, not with the length
		// the message claims.
		buf := c.buf[:0]
		for len(buf) < n {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, min(n-len(buf), max(len(buf), 1<<20)))
			}
			k, err := c.br.Read(buf[len(buf):min(cap(buf), n)])
			buf = buf[:len(buf)+k]
			if err != nil && len(buf) < n {
				return m, unexpectedEOF(err)
			}
		}
		s = string(buf)
		if cap(buf) <= 4<<20 {
			c.buf = buf // keep a moderate buffer for the next large entry
		}
	}
	idContent, rest, err := expect(s, tagInteger, "messageID")
	if err != nil {
		return m, err
	}
	if m.id, err = parseInt(idContent); err != nil {
		return m, err
	}
	var optag byte
	if optag, m.body, rest, err = readTLV(rest); err != nil {
		return m, err
	}
	m.op = optag
	if rest != "" {
		var ctag byte
		if ctag, m.controls, _, err = readTLV(rest); err != nil {
			return m, err
		}
		if ctag != tagControls {
			return m, malformed("unexpected element 0x%02x after the protocol operation", ctag)
		}
	}
	c.answered = true
	return m, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLength reads a BER definite length.
func readLength(br *bufio.Reader) (int, error) {
	b, err := br.ReadByte()
	if err != nil {
		return 0, unexpectedEOF(err)
	}
	if b < 0x80 {
		return int(b), nil
	}
	k := int(b & 0x7f)
	if k == 0 || k > 4 {
		return 0, malformed("length with %d octets", k)
	}
	n := 0
	for range k {
		b, err := br.ReadByte()
		if err != nil {
			return 0, unexpectedEOF(err)
		}
		n = n<<8 | int(b)
	}
	if n > maxMessage {
		return 0, malformed("message of %d bytes exceeds the limit of %d", n, maxMessage)
	}
	return n, nil
}

// readTLV splits the first element off s.
func readTLV(s string) (tag byte, content, rest string, err error) {
	if len(s) < 2 {
		return 0, "", "", malformed("truncated element")
	}
	tag = s[0]
	if tag&0x1f == 0x1f {
		return 0, "", "", malformed("high tag number")
	}
	n, i := int(s[1]), 2
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(s) < 2+k {
			return 0, "", "", malformed("bad length")
		}
		n = 0
		for j := range k {
			n = n<<8 | int(s[2+j])
		}
		i = 2 + k
	}
	if n > len(s)-i {
		return 0, "", "", malformed("element of %d bytes in %d", n, len(s)-i)
	}
	return tag, s[i : i+n], s[i+n:], nil
}

// expect splits off an element that must have tag want.
func expect(s string, want byte, what string) (content, rest string, err error) {
	tag, content, rest, err := readTLV(s)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", what, err)
	}
	if tag != want {
		return "", "", malformed("%s has tag 0x%02x, want 0x%02x", what, tag, want)
	}
	return content, rest, nil
}

// parseInt decodes a BER INTEGER or ENUMERATED of up to 8 bytes.
func parseInt(s string) (int64, error) {
	if len(s) == 0 || len(s) > 8 {
		return 0, malformed("integer of %d bytes", len(s))
	}
	v := int64(int8(s[0]))
	for i := 1; i < len(s); i++ {
		v = v<<8 | int64(s[i])
	}
	return v, nil
}

// ldapResult is an LDAPResult of a response.
type ldapResult struct {
	code          uint16
	matched, diag string
	referral      []string // the URIs of the referral field (result code 10)
}

// err returns the result as an *ldap.Error, nil for success.
func (r ldapResult) err() error {
	if r.code == 0 {
		return nil
	}
	return &ldap.Error{ResultCode: r.code, MatchedDN: r.matched, Err: errors.New(r.diag)}
}

// parseResult decodes the LDAPResult at the start of a response body and
// returns the rest of the body.
func parseResult(body string) (res ldapResult, rest string, err error) {
	codeS, rest, err := expect(body, tagEnumerated, "resultCode")
	if err != nil {
		return res, "", err
	}
	code, err := parseInt(codeS)
	if err != nil {
		return res, "", err
	}
	// go-ldap uses the codes from 200 for its own errors; 4096 is RFC
	// 4533's e-syncRefreshRequired.
	if code < 0 || code >= ldap.ErrorNetwork && code != resultSyncRefreshRequired {
		return res, "", malformed("result code %d", code)
	}
	res.code = uint16(code)
	if res.matched, rest, err = expect(rest, tagOctetString, "matchedDN"); err != nil {
		return res, "", err
	}
	if res.diag, rest, err = expect(rest, tagOctetString, "diagnosticMessage"); err != nil {
		return res, "", err
	}
	if rest != "" && rest[0] == tagReferral {
		var list string
		if list, rest, err = expect(rest, tagReferral, "referral"); err != nil {
			return res, "", err
		}
		for list != "" {
			var uri string
			if uri, list, err = expect(list, tagOctetString, "referral URI"); err != nil {
				return res, "", err
			}
			res.referral = append(res.referral, uri)
		}
	}
	return res, rest, nil
}

// response reads the response to request id, failing on a notice of
// disconnection or a message for another request.
func (c *client) response(id int64) (message, error) {
	m, err := c.read()
	if err != nil {
		return m, err
	}
	if m.id == id {
		return m, nil
	}
	if m.id == 0 && m.op == opExtendedResp {
		// Unsolicited notification: the server is closing the connection.
		res, rest, err := parseResult(m.body)
		if err == nil {
			if name, _, err := expect(rest, tagResponseName, "responseName"); err == nil && name == oidNoticeOfDisco {
				msg := "the server closed the connection (notice of disconnection)"
				if e := res.err(); e != nil {
					msg += ": " + describe(e)
				}
				return m, errors.New(msg)
			}
		}
		return m, fmt.Errorf("unsolicited notification from the server")
	}
	return m, malformed("response to message %d while waiting for %d", m.id, id)
}

// startTLS runs the StartTLS operation and the TLS handshake.
func (c *client) startTLS(ctx context.Context, cfg *tls.Config) error {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Start TLS")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidStartTLS, "TLS Extended Command"))
	id, err := c.send(op)
	if err != nil {
		return err
	}
	m, err := c.response(id)
	if err != nil {
		return err
	}
	if m.op != opExtendedResp {
		return malformed("StartTLS answered with operation 0x%02x", m.op)
	}
	res, _, err := parseResult(m.body)
	if err != nil {
		return err
	}
	if err := res.err(); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		return malformed("data after the StartTLS response")
	}
	tc := tls.Client(c.nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	c.nc = tc
	c.br.Reset(tc)
	return nil
}

// bind runs a simple bind.
func (c *client) bind(dn, password string) error {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "Bind Request")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "Version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "User Name"))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, "Password"))
	id, err := c.send(op)
	if err != nil {
		return err
	}
	m, err := c.response(id)
	if err != nil {
		return err
	}
	if m.op != opBindResponse {
		return malformed("bind answered with operation 0x%02x", m.op)
	}
	res, _, err := parseResult(m.body)
	if err != nil {
		return err
	}
	return res.err()
}

// searchRequest encodes a subtree search of all entries matching filter.
func searchRequest(base string, filter *ber.Packet, attrs []string) *ber.Packet {
	return searchOp(base, ldap.ScopeWholeSubtree, filter, attrs)
}

// readRequest encodes a base-scope search that reads one attribute of the
// entry dn.
func readRequest(dn string, filter *ber.Packet, attr string) *ber.Packet {
	return searchOp(dn, ldap.ScopeBaseObject, filter, []string{attr})
}

func searchOp(base string, scope int, filter *ber.Packet, attrs []string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(scope), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(ldap.NeverDerefAliases), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types Only"))
	op.AppendChild(filter)
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range attrs {
		list.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	op.AppendChild(list)
	return op
}

// unbind tells the server goodbye; errors do not matter.
func (c *client) unbind() {
	_, _ = c.send(ber.Encode(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationUnbindRequest, nil, "Unbind Request"))
}

// rawAttr is one attribute of an entry as decoded: substrings of the message.
type rawAttr struct {
	name string
	vals []string
}

// decodeEntry decodes a SearchResultEntry body into its DN and attributes.
// attrs is reused between calls; the value slices are fresh for each entry
// and may be kept.
func decodeEntry(body string, attrs []rawAttr) (dn string, _ []rawAttr, err error) {
	dn, rest, err := expect(body, tagOctetString, "objectName")
	if err != nil {
		return "", attrs, err
	}
	list, _, err := expect(rest, tagSequence, "attributes")
	if err != nil {
		return "", attrs, err
	}
	// First pass: validate and count, so that all values of the entry share
	// one backing array.
	nvals := 0
	for s := list; s != ""; {
		var pa string
		if pa, s, err = expect(s, tagSequence, "attribute"); err != nil {
			return "", attrs, err
		}
		_, r, err := expect(pa, tagOctetString, "attribute type")
		if err != nil {
			return "", attrs, err
		}
		set, _, err := expect(r, tagSet, "attribute values")
		if err != nil {
			return "", attrs, err
		}
		for set != "" {
			if _, set, err = expect(set, tagOctetString, "attribute value"); err != nil {
				return "", attrs, err
			}
			nvals++
		}
	}
	all := make([]string, 0, nvals)
	attrs = attrs[:0]
	for s := list; s != ""; {
		// Well-formed: checked above.
		pa, r, _ := expect(s, tagSequence, "")
		s = r
		name, r, _ := expect(pa, tagOctetString, "")
		set, _, _ := expect(r, tagSet, "")
		start := len(all)
		for set != "" {
			var v string
			v, set, _ = expect(set, tagOctetString, "")
			all = append(all, v)
		}
		attrs = append(attrs, rawAttr{name: name, vals: all[start:len(all):len(all)]})
	}
	return dn, attrs, nil
}

// decodeReference appends the URIs of a SearchResultReference to uris.
func decodeReference(body string, uris []string) ([]string, error) {
	if body == "" {
		return uris, malformed("empty search result reference")
	}
	for s := body; s != ""; {
		var uri string
		var err error
		if uri, s, err = expect(s, tagOctetString, "reference URI"); err != nil {
			return uris, err
		}
		uris = append(uris, uri)
	}
	return uris, nil
}

// pagingCookie finds the paged-results control among controls.
func pagingCookie(controls string) (cookie string, found bool, err error) {
	for s := controls; s != ""; {
		var ctl string
		if ctl, s, err = expect(s, tagSequence, "control"); err != nil {
			return "", false, err
		}
		oid, r, err := expect(ctl, tagOctetString, "control type")
		if err != nil {
			return "", false, err
		}
		if oid != ldap.ControlTypePaging {
			continue
		}
		if r != "" && r[0] == tagBoolean {
			if _, r, err = expect(r, tagBoolean, "criticality"); err != nil {
				return "", false, err
			}
		}
		val, _, err := expect(r, tagOctetString, "paging control value")
		if err != nil {
			return "", false, err
		}
		seq, _, err := expect(val, tagSequence, "paging control value")
		if err != nil {
			return "", false, err
		}
		size, r, err := expect(seq, tagInteger, "paging size")
		if err != nil {
			return "", false, err
		}
		if _, err := parseInt(size); err != nil {
			return "", false, err
		}
		cookie, _, err := expect(r, tagOctetString, "paging cookie")
		if err != nil {
			return "", false, err
		}
		return cookie, true, nil
	}
	return "", false, nil
}

// findControl returns the value of the control oid among controls (the
// content of a message's [0] controls). found is false when the control is
// absent; a control that appears twice, or any control that is not a
// well-formed Control SEQUENCE, is an error.
func findControl(controls, oid string) (value string, found bool, err error) {
	for s := controls; s != ""; {
		var ctl string
		if ctl, s, err = expect(s, tagSequence, "control"); err != nil {
			return "", false, err
		}
		typ, r, err := expect(ctl, tagOctetString, "control type")
		if err != nil {
			return "", false, err
		}
		if r != "" && r[0] == tagBoolean {
			var crit string
			if crit, r, err = expect(r, tagBoolean, "criticality"); err != nil {
				return "", false, err
			}
			if _, err := parseBool(crit); err != nil {
				return "", false, err
			}
		}
		var v string
		if r != "" {
			if v, r, err = expect(r, tagOctetString, "control value"); err != nil {
				return "", false, err
			}
		}
		if r != "" {
			return "", false, malformed("control %s: data after its value", typ)
		}
		if typ != oid {
			continue
		}
		if found {
			return "", false, malformed("control %s appears twice", oid)
		}
		value, found = v, true
	}
	return value, found, nil
}

// parseBool decodes the content of a BER BOOLEAN.
func parseBool(s string) (bool, error) {
	if len(s) != 1 {
		return false, malformed("boolean of %d bytes", len(s))
	}
	return s[0] != 0, nil
}

// optional splits off an element with tag want when s starts with one.
func optional(s string, want byte, what string) (content string, present bool, rest string, err error) {
	if s == "" || s[0] != want {
		return "", false, s, nil
	}
	content, rest, err = expect(s, want, what)
	return content, err == nil, rest, err
}

// decodeIntermediate decodes an IntermediateResponse body: its
// responseName [0] and responseValue [1], both optional.
func decodeIntermediate(body string) (name string, value string, hasValue bool, err error) {
	name, _, rest, err := optional(body, 0x80, "responseName")
	if err != nil {
		return "", "", false, err
	}
	value, hasValue, rest, err = optional(rest, 0x81, "responseValue")
	if err != nil {
		return "", "", false, err
	}
	if rest != "" {
		return "", "", false, malformed("data after the intermediate response value")
	}
	return name, value, hasValue, nil
}
