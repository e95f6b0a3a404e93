// Package ldaptest is a scripted LDAP server for tests. It answers binds
// and searches from a Script instead of a directory, and it can misbehave
// in the ways a real server cannot be made to: values that are not UTF-8,
// a page that never ends, a search that stops without its done message, a
// page without a paging control or with a garbled one, a connection closed
// in the middle of a message.
//
// A Script either lists Entries, which the server pages as the client's
// paged-results control asks, or answers each search itself (Script.Answer)
// with the methods of Conn. The server ignores the search filter, the base
// and the requested attributes: every search returns the script's entries,
// whole and in order. Values are sent byte for byte: a Go string may hold
// any bytes ("\xff" is the single byte 0xff), so a value that is not UTF-8,
// or a binary one such as a 16-byte objectGUID, is written as is.
//
//	srv := ldaptest.Start(t, ldaptest.Script{
//		BindDN: "CN=reader,DC=ad,DC=test", Password: "secret",
//		Entries: []ldaptest.Entry{{DN: "CN=A,DC=ad,DC=test", Attrs: map[string][]string{"cn": {"A"}}}},
//	})
//	// ... point the client at srv.URL; later srv.Set(another script).
package ldaptest

import (
	"bytes"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Entry is a directory entry as the server sends it. Attrs maps attribute
// descriptions to their values, each sent byte for byte.
type Entry struct {
	DN    string
	Attrs map[string][]string
}

// Script says how the server answers.
type Script struct {
	// BindDN and Password are the simple-bind credentials the server
	// accepts; any other bind gets result 49 (invalid credentials), and a
	// search on a connection not bound as BindDN gets result 50
	// (insufficient access rights). With BindDN empty every bind succeeds
	// and searches need none.
	BindDN, Password string

	// Entries are what every search returns, in order. With a
	// paged-results control in the request they come in pages of the size
	// it asks for (0: all in one page), each page ending with a done
	// message whose paging control carries the cookie of the next page
	// ("" after the last); without one, all come in one answer.
	Entries []Entry

	// EndlessPage answers each search with a page that never ends: the
	// entries are sent over and over, up to a million of them, until a
	// write fails (the client closed the connection), and no done message
	// follows.
	EndlessPage bool

	// CloseBeforeDone closes the connection after the entries of the
	// first page, where its done message should come.
	CloseBeforeDone bool

	// Answer, when set, answers each search instead of the above: n counts
	// the searches of the connection, from 1. It runs on the connection's
	// goroutine and may send anything, or nothing, or close the connection.
	Answer func(c *Conn, n int)
}

// endlessMax bounds an endless page, should the client never stop reading.
const endlessMax = 1_000_000

// Server is a running scripted server.
type Server struct {
	// URL is the server's ldap:// URL, on a loopback port.
	URL string

	mu     sync.Mutex
	script Script
	conns  map[net.Conn]bool
	closed bool
}

// Start serves script on a loopback port until the test ends.
func Start(t testing.TB, script Script) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: "ldap://" + l.Addr().String(), script: script, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = true
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				s.serve(c)
			}()
		}
	}()
	return s
}

// Set replaces the script. Requests read after it returns are answered by
// the new one, on connections already open too.
func (s *Server) Set(script Script) {
	s.mu.Lock()
	s.script = script
	s.mu.Unlock()
}

func (s *Server) current() Script {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.script
}

// serve answers the requests of one connection until it closes or the
// client unbinds. Requests other than bind, search and unbind go
// unanswered.
func (s *Server) serve(nc net.Conn) {
	searches := 0
	bound := ""
	for {
		p, err := ber.ReadPacket(nc)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		c := &Conn{w: nc, nc: nc, id: id}
		script := s.current()
		op := p.Children[1]
		switch op.Tag {
		case ldap.ApplicationBindRequest:
			dn, password := bindCredentials(op)
			code := ldap.LDAPResultSuccess
			if script.BindDN != "" && (dn != script.BindDN || password != script.Password) {
				code = ldap.LDAPResultInvalidCredentials
			}
			bound = ""
			if code == ldap.LDAPResultSuccess {
				bound = dn
			}
			c.Send(result(ldap.ApplicationBindResponse, code))
		case ldap.ApplicationSearchRequest:
			searches++
			c.req = parseSearch(p)
			switch {
			case script.BindDN != "" && bound != script.BindDN:
				c.Done(ldap.LDAPResultInsufficientAccessRights)
			case script.Answer != nil:
				script.Answer(c, searches)
			default:
				script.answer(c)
			}
		case ldap.ApplicationUnbindRequest:
			return
		}
	}
}

// answer sends the script's entries for one search request.
func (s *Script) answer(c *Conn) {
	paging := c.req.Paging
	if s.EndlessPage {
		for i := 0; len(s.Entries) > 0 && c.err == nil && i < endlessMax; i++ {
			e := s.Entries[i%len(s.Entries)]
			c.Entry(e.DN, e.Attrs)
		}
		return
	}
	start, end := 0, len(s.Entries)
	if paging != nil {
		if len(paging.Cookie) > 0 {
			n, err := strconv.Atoi(string(paging.Cookie))
			if err != nil || n < 0 || n > len(s.Entries) {
				c.Done(ldap.LDAPResultUnwillingToPerform)
				return
			}
			start = n
		}
		if paging.PagingSize > 0 {
			end = min(start+int(paging.PagingSize), end)
		}
	}
	for _, e := range s.Entries[start:end] {
		c.Entry(e.DN, e.Attrs)
	}
	switch {
	case s.CloseBeforeDone:
		c.Close()
	case paging == nil:
		c.Done(ldap.LDAPResultSuccess)
	case end < len(s.Entries):
		c.Done(ldap.LDAPResultSuccess, Cookie(strconv.Itoa(end)))
	default:
		c.Done(ldap.LDAPResultSuccess, Cookie(""))
	}
}

// Request is what the server read of a search request.
type Request struct {
	BaseDN     string
	Scope      int // ldap.ScopeBaseObject, ldap.ScopeSingleLevel or ldap.ScopeWholeSubtree
	Filter     string
	Attributes []string
	// Paging is the request's paged-results control; nil without one.
	Paging *ldap.ControlPaging
}

func parseSearch(p *ber.Packet) Request {
	var r Request
	op := p.Children[1]
	if len(op.Children) < 8 {
		return r
	}
	r.BaseDN, _ = op.Children[0].Value.(string)
	scope, _ := op.Children[1].Value.(int64)
	r.Scope = int(scope)
	r.Filter, _ = ldap.DecompileFilter(op.Children[6])
	for _, a := range op.Children[7].Children {
		if v, ok := a.Value.(string); ok {
			r.Attributes = append(r.Attributes, v)
		}
	}
	if len(p.Children) > 2 {
		for _, cp := range p.Children[2].Children {
			if ctl, err := ldap.DecodeControl(cp); err == nil {
				if pc, ok := ctl.(*ldap.ControlPaging); ok {
					r.Paging = pc
				}
			}
		}
	}
	return r
}

func bindCredentials(op *ber.Packet) (dn, password string) {
	if len(op.Children) < 3 {
		return "", ""
	}
	dn, _ = op.Children[1].Value.(string)
	if op.Children[2].Data != nil {
		password = op.Children[2].Data.String()
	}
	return dn, password
}

// Conn sends the answer to one request. Its methods write LDAP messages
// with the request's message ID; after the first write error they do
// nothing (Err says why).
type Conn struct {
	w   io.Writer
	nc  net.Conn // nil when w is not a connection (Messages)
	id  int64
	req Request
	err error
}

// Request is the search request being answered.
func (c *Conn) Request() Request { return c.req }

// MessageID is the ID of the request being answered.
func (c *Conn) MessageID() int64 { return c.id }

// Err is the first write error, nil while writes succeed: a loop that
// sends without end stops when the client has gone.
func (c *Conn) Err() error { return c.err }

// Send sends op, with the controls, as a message of its own: for a message
// the other methods do not make.
func (c *Conn) Send(op *ber.Packet, controls ...ldap.Control) {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, c.id, "MessageID"))
	p.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, ctl := range controls {
			cs.AppendChild(ctl.Encode())
		}
		p.AppendChild(cs)
	}
	c.Raw(p.Bytes())
}

// Raw writes b as it is, e.g. part of a message.
func (c *Conn) Raw(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// Close closes the connection, whatever the client is waiting for.
func (c *Conn) Close() {
	if c.nc != nil {
		c.nc.Close()
	}
}

func result(tag ber.Tag, code int) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "Result")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnosticMessage"))
	return op
}

// Entry sends a SearchResultEntry, its attributes in the order of their
// names and each value byte for byte. An attribute with no values is sent
// with an empty set.
func (c *Conn) Entry(dn string, attrs map[string][]string) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "Entry")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "DN"))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attribute")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, n, "Type"))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "Values")
		for _, v := range attrs[n] {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "Value"))
		}
		a.AppendChild(set)
		list.AppendChild(a)
	}
	op.AppendChild(list)
	c.Send(op)
}

// Reference sends a SearchResultReference (a continuation reference) with
// one or more URLs.
func (c *Conn) Reference(urls ...string) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultReference, nil, "Reference")
	for _, u := range urls {
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, u, "URI"))
	}
	c.Send(op)
}

// Referral sends a SearchResultDone with result code 10 (referral) and the
// URLs in its referral field.
func (c *Conn) Referral(urls ...string) {
	op := result(ldap.ApplicationSearchResultDone, ldap.LDAPResultReferral)
	ref := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "Referral")
	for _, u := range urls {
		ref.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, u, "URI"))
	}
	op.AppendChild(ref)
	c.Send(op)
}

// Done sends a SearchResultDone with the result code and controls, e.g.
// Done(0, Cookie("next")) or Done(ldap.LDAPResultSizeLimitExceeded).
func (c *Conn) Done(code int, controls ...ldap.Control) {
	c.Send(result(ldap.ApplicationSearchResultDone, code), controls...)
}

// oidNoticeOfDisconnection is the responseName of RFC 4511's unsolicited
// notice of disconnection.
const oidNoticeOfDisconnection = "1.3.6.1.4.1.1466.20036"

// NoticeOfDisconnection sends the unsolicited notification (message ID 0,
// result 52 unavailable) of a server that is about to close the
// connection. The connection stays open.
func (c *Conn) NoticeOfDisconnection() {
	op := result(ldap.ApplicationExtendedResponse, ldap.LDAPResultUnavailable)
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, oidNoticeOfDisconnection, "responseName"))
	id := c.id
	c.id = 0
	c.Send(op)
	c.id = id
}

// Cookie is a paged-results control with the cookie c; "" marks the last
// page.
func Cookie(c string) ldap.Control { return &ldap.ControlPaging{Cookie: []byte(c)} }

// GarbledPaging is a paged-results control whose value is not the RFC 2696
// sequence.
func GarbledPaging() ldap.Control { return garbledPaging{} }

type garbledPaging struct{}

func (garbledPaging) GetControlType() string { return ldap.ControlTypePaging }
func (garbledPaging) String() string         { return "garbled" }
func (garbledPaging) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, ldap.ControlTypePaging, "Type"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "\x04\x02zz", "Value"))
	return p
}

// Messages returns the bytes of the messages write sends, as the server
// would send them in answer to request id, without a connection: input
// for a decoder's tests. Close does nothing there.
func Messages(id int64, write func(c *Conn)) []byte {
	var b bytes.Buffer
	write(&Conn{w: &b, id: id})
	return b.Bytes()
}
