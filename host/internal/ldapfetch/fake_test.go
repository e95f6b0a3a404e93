package ldapfetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/sdk"
)

// A scripted LDAP server for the failures a real slapd cannot be made to
// produce: a page without a paging control, a garbled control, a server
// that repeats its cookie, stalls or drops the connection mid-page, sends
// far more than a page or values that are not UTF-8, and AD-style binary
// objectGUIDs and continuation references.

// fakePage answers the n-th search request (1-based) of a connection.
type fakePage func(w *fakeConn, n int)

type fakeConn struct {
	w  io.Writer
	c  net.Conn // nil when w is not a connection
	id int64
	// req is the search request being answered.
	req fakeSearch
	// err is the first write error; later sends do nothing.
	err error
}

// fakeSearch is what a fake page sees of a search request.
type fakeSearch struct {
	base  string
	scope int64
	attrs []string
}

func parseSearch(op *ber.Packet) fakeSearch {
	var s fakeSearch
	if len(op.Children) < 8 {
		return s
	}
	s.base, _ = op.Children[0].Value.(string)
	s.scope, _ = op.Children[1].Value.(int64)
	for _, a := range op.Children[7].Children {
		if v, ok := a.Value.(string); ok {
			s.attrs = append(s.attrs, v)
		}
	}
	return s
}

func (w *fakeConn) send(op *ber.Packet, controls ...ldap.Control) {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, w.id, "MessageID"))
	p.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, c := range controls {
			cs.AppendChild(c.Encode())
		}
		p.AppendChild(cs)
	}
	if w.err == nil {
		_, w.err = w.w.Write(p.Bytes())
	}
}

func result(tag ber.Tag, code int) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "Result")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnosticMessage"))
	return op
}

// entry sends a SearchResultEntry.
func (w *fakeConn) entry(dn string, attrs map[string][]string) {
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
	w.send(op)
}

// reference sends a SearchResultReference with one or more URLs.
func (w *fakeConn) reference(urls ...string) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultReference, nil, "Reference")
	for _, url := range urls {
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, url, "URI"))
	}
	w.send(op)
}

// referral sends SearchResultDone with result code 10 and the URLs in
// its referral field.
func (w *fakeConn) referral(urls ...string) {
	op := result(ldap.ApplicationSearchResultDone, ldap.LDAPResultReferral)
	ref := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "Referral")
	for _, url := range urls {
		ref.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, url, "URI"))
	}
	op.AppendChild(ref)
	w.send(op)
}

// noticeOfDisconnection sends the unsolicited notification of a server
// that is about to close the connection.
func (w *fakeConn) noticeOfDisconnection() {
	op := result(ldap.ApplicationExtendedResponse, ldap.LDAPResultUnavailable)
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, oidNoticeOfDisco, "responseName"))
	id := w.id
	w.id = 0
	w.send(op)
	w.id = id
}

// done sends SearchResultDone with the given code and controls.
func (w *fakeConn) done(code int, controls ...ldap.Control) {
	w.send(result(ldap.ApplicationSearchResultDone, code), controls...)
}

func cookie(c string) ldap.Control { return &ldap.ControlPaging{Cookie: []byte(c)} }

// garbledPaging is a paging control whose value is not the RFC 2696 sequence.
type garbledPaging struct{}

func (garbledPaging) GetControlType() string { return ldap.ControlTypePaging }
func (garbledPaging) String() string         { return "garbled" }
func (garbledPaging) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, ldap.ControlTypePaging, "Type"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "\x04\x02zz", "Value"))
	return p
}

// startFake serves page on a loopback port and returns its URL.
func startFake(t *testing.T, page fakePage) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serveFake(t, c, page)
			}()
		}
	}()
	return "ldap://" + l.Addr().String()
}

func serveFake(t *testing.T, c net.Conn, page fakePage) {
	searches := 0
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, err := ber.ReadPacket(c)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		w := &fakeConn{w: c, c: c, id: id}
		switch p.Children[1].Tag {
		case ldap.ApplicationBindRequest:
			w.send(result(ldap.ApplicationBindResponse, 0))
		case ldap.ApplicationSearchRequest:
			searches++
			w.req = parseSearch(p.Children[1])
			page(w, searches)
		case ldap.ApplicationUnbindRequest:
			return
		}
	}
}

var guidBytes = string([]byte{0xff, 0x19, 0x96, 0x6f, 0x86, 0x8b, 0x11, 0xd0, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff})

func adUser(w *fakeConn, i int) {
	g := []byte(guidBytes)
	g[15] = byte(i)
	w.entry("CN=User"+string(rune('A'+i))+",OU=People,DC=ad,DC=test", map[string][]string{
		"objectGUID":     {string(g)},
		"objectSid":      {"\x01\x05\x00\x00"},
		"sAMAccountType": {"805306368"},
		"proxyAddresses": {"SMTP:u@ad.test"},
	})
}

func TestFetchFakeServer(t *testing.T) {
	// A server that streams one page without end: the fetch must stop it.
	var runawaySent atomic.Int64
	runawayDone := make(chan struct{})
	runaway := func(w *fakeConn, n int) {
		defer close(runawayDone)
		for i := 0; w.err == nil && i < 1_000_000; i++ {
			adUser(w, i%200)
			runawaySent.Add(1)
		}
	}
	refs := make([]string, 0, 110)
	for i := range cap(refs) {
		refs = append(refs, fmt.Sprintf("ldap://dc%d.ad.test/DC=Zone%d,DC=ad,DC=test", i, i))
	}

	tests := []struct {
		name       string
		cfg        func(*Config)
		page       fakePage
		want       []string // error parts; nil = success
		entries    int      // handed to the callback, also on error
		referrals  int
		references []string
		omitted    int
		check      func(t *testing.T, got []sdk.Entry)
	}{
		{
			name: "AD entries over two pages, a reference skipped",
			page: func(w *fakeConn, n int) {
				adUser(w, n*2)
				adUser(w, n*2+1)
				if n == 1 {
					w.reference("ldap://ForestDnsZones.ad.test/DC=ForestDnsZones,DC=ad,DC=test")
					w.done(0, cookie("next"))
					return
				}
				w.done(0, cookie(""))
			},
			entries: 4, referrals: 1,
			references: []string{"ldap://ForestDnsZones.ad.test/DC=ForestDnsZones,DC=ad,DC=test"},
		},
		{
			name: "references listed once each, in order of arrival",
			page: func(w *fakeConn, n int) {
				if n == 1 {
					adUser(w, 1)
					w.reference("ldap://ad.test/CN=Configuration,DC=ad,DC=test")
					w.reference("ldap://DomainDnsZones.ad.test/DC=DomainDnsZones,DC=ad,DC=test",
						"ldap://dc2.ad.test/DC=DomainDnsZones,DC=ad,DC=test")
					w.done(0, cookie("next"))
					return
				}
				w.reference("ldap://ad.test/CN=Configuration,DC=ad,DC=test")
				w.reference("ldap://ForestDnsZones.ad.test/DC=ForestDnsZones,DC=ad,DC=test")
				adUser(w, 2)
				w.done(0, cookie(""))
			},
			entries: 2, referrals: 4,
			references: []string{
				"ldap://ad.test/CN=Configuration,DC=ad,DC=test",
				"ldap://DomainDnsZones.ad.test/DC=DomainDnsZones,DC=ad,DC=test",
				"ldap://dc2.ad.test/DC=DomainDnsZones,DC=ad,DC=test",
				"ldap://ForestDnsZones.ad.test/DC=ForestDnsZones,DC=ad,DC=test",
			},
		},
		{
			name: "references beyond the cap are counted",
			cfg:  func(c *Config) { c.PageSize = 100 },
			page: func(w *fakeConn, n int) {
				adUser(w, 1)
				for _, r := range refs {
					w.reference(r)
				}
				w.reference(refs[0], refs[105], refs[109]) // seen before: not counted again
				w.done(0, cookie(""))
			},
			entries: 1, referrals: len(refs) + 1,
			references: refs[:MaxReferences], omitted: len(refs) - MaxReferences,
		},
		{
			name: "value not UTF-8: replaced in that value alone",
			page: func(w *fakeConn, n int) {
				g := []byte(guidBytes)
				w.entry("CN=J\xfcrgen,OU=People,DC=ad,DC=test", map[string][]string{
					"objectGUID":     {string(g)},
					"objectSid":      {"\x01\x05\x00\x00"},
					"displayName":    {"J\xfcrgen M\xfcller"},
					"proxyAddresses": {"SMTP:juergen@ad.test", "smtp:j\xfcrgen@ad.test", "smtp:jm@ad.test", "X500:/o=\xff\xfe"},
				})
				w.done(0, cookie(""))
			},
			entries: 1,
			check: func(t *testing.T, got []sdk.Entry) {
				e := got[0]
				if want := []string{"SMTP:juergen@ad.test", "smtp:j\uFFFDrgen@ad.test", "smtp:jm@ad.test", "X500:/o=\uFFFD"}; !slices.Equal(e.Attributes["proxyaddresses"], want) {
					t.Errorf("proxyaddresses = %q, want %q", e.Attributes["proxyaddresses"], want)
				}
				if got, want := e.Get("displayname"), "J\uFFFDrgen M\uFFFDller"; got != want {
					t.Errorf("displayname = %q, want %q", got, want)
				}
				if e.DN != "CN=J\xfcrgen,OU=People,DC=ad,DC=test" {
					t.Errorf("DN = %q, want it as sent", e.DN)
				}
			},
		},
		{
			name:    "page without paging control",
			page:    func(w *fakeConn, n int) { adUser(w, 1); w.done(0) },
			want:    []string{"search page 1 (after 1 entries)", "without a paging control"},
			entries: 1,
		},
		{
			name:    "garbled paging control",
			page:    func(w *fakeConn, n int) { adUser(w, 1); w.done(0, garbledPaging{}) },
			want:    []string{"search page 1", "malformed"},
			entries: 1,
		},
		{
			name: "connection dropped mid-page",
			page: func(w *fakeConn, n int) {
				if n == 1 {
					adUser(w, 1)
					w.done(0, cookie("c1"))
					return
				}
				adUser(w, 2)
				w.c.Close()
			},
			want:    []string{"search page 2 (after 2 entries)", "closed the connection before the page was complete"},
			entries: 2,
		},
		{
			name: "connection closed after the entries, before the done message",
			page: func(w *fakeConn, n int) {
				adUser(w, 1)
				adUser(w, 2)
				w.c.Close()
			},
			want:    []string{"search page 1 (after 2 entries)", "closed the connection before the page was complete"},
			entries: 2,
		},
		{
			name: "connection closed in the middle of a message",
			page: func(w *fakeConn, n int) {
				adUser(w, 1)
				var b bytes.Buffer
				(&fakeConn{w: &b, id: w.id}).entry("CN=Half,DC=ad,DC=test", map[string][]string{"cn": {"Half"}})
				w.c.Write(b.Bytes()[:b.Len()/2])
				w.c.Close()
			},
			want:    []string{"search page 1 (after 1 entries)", "closed the connection before the page was complete"},
			entries: 1,
		},
		{
			name: "connection closed before any answer",
			page: func(w *fakeConn, n int) { w.c.Close() },
			want: []string{"search page 1 (after 0 entries)", "closed the connection before the page was complete"},
		},
		{
			name: "notice of disconnection mid-page",
			page: func(w *fakeConn, n int) {
				adUser(w, 1)
				w.noticeOfDisconnection()
			},
			want:    []string{"search page 1 (after 1 entries)", "notice of disconnection", "LDAP result 52"},
			entries: 1,
		},
		{
			name: "done message of page 2 never comes",
			page: func(w *fakeConn, n int) {
				adUser(w, n)
				if n == 1 {
					w.done(0, cookie("c1"))
				}
			},
			want:    []string{"search page 2 (after 2 entries)", "no complete answer within"},
			entries: 2,
		},
		{
			name:    "size limit exceeded",
			page:    func(w *fakeConn, n int) { adUser(w, 1); w.done(ldap.LDAPResultSizeLimitExceeded) },
			want:    []string{"search page 1 (after 1 entries)", "LDAP result 4 (Size Limit Exceeded)", "size limit", "the result is incomplete"},
			entries: 1,
		},
		{
			name:    "time limit exceeded",
			page:    func(w *fakeConn, n int) { adUser(w, 1); w.done(ldap.LDAPResultTimeLimitExceeded) },
			want:    []string{"LDAP result 3 (Time Limit Exceeded)", "time limit", "the result is incomplete"},
			entries: 1,
		},
		{
			name: "admin limit exceeded",
			page: func(w *fakeConn, n int) { w.done(ldap.LDAPResultAdminLimitExceeded) },
			want: []string{"LDAP result 11 (Admin Limit Exceeded)", "administrative limit", "nothing was read"},
		},
		{
			name: "server busy",
			page: func(w *fakeConn, n int) { w.done(ldap.LDAPResultBusy) },
			want: []string{"LDAP result 51 (Busy)", "nothing was read"},
		},
		{
			name: "paging not supported",
			page: func(w *fakeConn, n int) { w.done(ldap.LDAPResultUnavailableCriticalExtension) },
			want: []string{"does not support paged results", "nothing was read"},
		},
		{
			name: "cookie repeated without entries",
			page: func(w *fakeConn, n int) { w.done(0, cookie("same")) },
			want: []string{"repeats the paging cookie"},
		},
		{
			name: "referral instead of the result",
			page: func(w *fakeConn, n int) { w.referral("ldap://elsewhere.test/DC=ad,DC=test") },
			want: []string{`search page 1 (after 0 entries): the server answered the search of "DC=ad,DC=test" with a referral to ldap://elsewhere.test/DC=ad,DC=test instead of its entries: nothing was read`},
		},
		{
			name: "referral with two URLs",
			page: func(w *fakeConn, n int) { w.referral("ldap://a.test/DC=ad,DC=test", "ldap://b.test/DC=ad,DC=test") },
			want: []string{"with a referral to ldap://a.test/DC=ad,DC=test or ldap://b.test/DC=ad,DC=test instead of its entries"},
		},
		{
			name: "referral on a later page",
			page: func(w *fakeConn, n int) {
				if n == 1 {
					adUser(w, 1)
					w.done(0, cookie("c1"))
					return
				}
				w.referral("ldap://elsewhere.test/DC=ad,DC=test")
			},
			want:    []string{"search page 2 (after 1 entries)", "with a referral to ldap://elsewhere.test/DC=ad,DC=test", "the result is incomplete"},
			entries: 1,
		},
		{
			name: "referral without a URL",
			page: func(w *fakeConn, n int) { w.done(ldap.LDAPResultReferral) },
			want: []string{"with a referral instead of its entries: nothing was read"},
		},
		{
			name:    "stall mid-page",
			page:    func(w *fakeConn, n int) { adUser(w, 1) },
			want:    []string{"search page 1 (after 1 entries)", "no complete answer within"},
			entries: 1,
		},
		{
			name:    "a page that does not end is stopped at 10 times the page size",
			page:    runaway,
			want:    []string{"search page 1 (after 20 entries)", "the server sent more than 20 entries in one page of 2"},
			entries: 20,
			check: func(t *testing.T, _ []sdk.Entry) {
				select {
				case <-runawayDone:
				case <-time.After(10 * time.Second):
					t.Fatal("the server is still sending")
				}
				if n := runawaySent.Load(); n >= 1_000_000 {
					t.Errorf("the server sent all its %d entries: the fetch read to the end", n)
				}
			},
		},
		{
			name: "a page of references that does not end",
			page: func(w *fakeConn, n int) {
				for i := 0; w.err == nil && i < 1_000_000; i++ {
					w.reference(fmt.Sprintf("ldap://x%d.test/DC=ad,DC=test", i))
				}
			},
			want:      []string{"search page 1 (after 0 entries)", "more than 20 continuation references in one page of 2"},
			referrals: 20,
		},
		{
			name: "ten times the page size is still a page",
			page: func(w *fakeConn, n int) {
				for i := range 20 {
					adUser(w, i)
				}
				w.done(0, cookie(""))
			},
			entries: 20,
		},
		{
			name: "more entries than max entries",
			cfg:  func(c *Config) { c.MaxEntries = 5 },
			page: func(w *fakeConn, n int) {
				adUser(w, 2*n)
				adUser(w, 2*n+1)
				w.done(0, cookie(fmt.Sprint("c", n)))
			},
			want:    []string{"search page 3 (after 5 entries)", "the result holds more than 5 entries: raise [domain.ldap] max_entries if the directory is really that large"},
			entries: 5,
		},
		{
			name: "exactly max entries",
			cfg:  func(c *Config) { c.MaxEntries = 6 },
			page: func(w *fakeConn, n int) {
				adUser(w, 2*n)
				adUser(w, 2*n+1)
				c := ""
				if n < 3 {
					c = fmt.Sprint("c", n)
				}
				w.done(0, cookie(c))
			},
			entries: 6,
		},
		{
			name: "objectGUID of the wrong size",
			page: func(w *fakeConn, n int) {
				w.entry("CN=X,DC=ad,DC=test", map[string][]string{"objectGUID": {"short"}})
				w.done(0, cookie(""))
			},
			want: []string{"objectGUID has 5 bytes, want 16"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := startFake(t, tt.page)
			cfg := Config{URLs: []string{url}, BindDN: "CN=reader,DC=ad,DC=test", Password: "fake-secret", BaseDN: "DC=ad,DC=test",
				PageSize: 2, Timeout: 500 * time.Millisecond}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			var got []sdk.Entry
			res, err := Fetch(context.Background(), cfg, defaultFilter, policyAttrs, func(e sdk.Entry) error {
				got = append(got, e)
				return nil
			})
			if res.Entries != tt.entries || len(got) != tt.entries || res.Referrals != tt.referrals {
				t.Errorf("result %+v with %d entries; want %d entries, %d referrals", res, len(got), tt.entries, tt.referrals)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
			if tt.want != nil {
				if err == nil {
					t.Fatalf("Fetch succeeded: %+v", res)
				}
				checkError(t, err, cfg.Password, append(tt.want, url)...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.References, tt.references) || res.ReferencesOmitted != tt.omitted {
				t.Errorf("references %q and %d more, want %q and %d more", res.References, res.ReferencesOmitted, tt.references, tt.omitted)
			}
			for _, e := range got {
				if !isUUID(e.ID) || e.ID[:8] != "6f9619ff" {
					t.Errorf("ID %q is not the formatted objectGUID", e.ID)
				}
				if e.Get("objectsid") != "AQUAAA==" {
					t.Errorf("objectsid = %q", e.Get("objectsid"))
				}
			}
		})
	}
}

// TestFetchResultErrorUnwraps checks that a search result other than
// success still unwraps to the *ldap.Error of the result.
func TestFetchResultErrorUnwraps(t *testing.T) {
	url := startFake(t, func(w *fakeConn, n int) { w.done(ldap.LDAPResultSizeLimitExceeded) })
	cfg := Config{URLs: []string{url}, BaseDN: "DC=ad,DC=test", Timeout: time.Second}
	_, _, err := FetchAll(context.Background(), cfg, defaultFilter, nil)
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultSizeLimitExceeded {
		t.Fatalf("err = %v, want one that wraps LDAP result 4", err)
	}
}
