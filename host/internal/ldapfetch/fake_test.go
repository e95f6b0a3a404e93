package ldapfetch

import (
	"context"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/sdk"
)

// A scripted LDAP server for the failures a real slapd cannot be made to
// produce: a page without a paging control, a garbled control, a server
// that repeats its cookie, stalls or drops the connection mid-page, and
// AD-style binary objectGUIDs.

// fakePage answers the n-th search request (1-based) of a connection.
type fakePage func(w *fakeConn, n int)

type fakeConn struct {
	w  io.Writer
	c  net.Conn // nil when w is not a connection
	id int64
	// req is the search request being answered.
	req fakeSearch
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
	w.w.Write(p.Bytes())
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

// reference sends a SearchResultReference.
func (w *fakeConn) reference(url string) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultReference, nil, "Reference")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, url, "URI"))
	w.send(op)
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
	tests := []struct {
		name      string
		page      fakePage
		want      []string // error parts; nil = success
		entries   int
		referrals int
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
		},
		{
			name: "page without paging control",
			page: func(w *fakeConn, n int) { adUser(w, 1); w.done(0) },
			want: []string{"search page 1 (after 1 entries)", "without a paging control"},
		},
		{
			name: "garbled paging control",
			page: func(w *fakeConn, n int) { adUser(w, 1); w.done(0, garbledPaging{}) },
			want: []string{"search page 1", "malformed"},
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
			want: []string{"search page 2 (after 2 entries)"},
		},
		{
			name: "time limit exceeded",
			page: func(w *fakeConn, n int) { adUser(w, 1); w.done(ldap.LDAPResultTimeLimitExceeded) },
			want: []string{"LDAP result 3 (Time Limit Exceeded)", "time limit"},
		},
		{
			name: "admin limit exceeded",
			page: func(w *fakeConn, n int) { w.done(ldap.LDAPResultAdminLimitExceeded) },
			want: []string{"LDAP result 11"},
		},
		{
			name: "paging not supported",
			page: func(w *fakeConn, n int) { w.done(ldap.LDAPResultUnavailableCriticalExtension) },
			want: []string{"does not support paged results"},
		},
		{
			name: "cookie repeated without entries",
			page: func(w *fakeConn, n int) { w.done(0, cookie("same")) },
			want: []string{"repeats the paging cookie"},
		},
		{
			name: "referral on a later page",
			page: func(w *fakeConn, n int) {
				if n == 1 {
					adUser(w, 1)
					w.done(0, cookie("c1"))
					return
				}
				w.done(ldap.LDAPResultReferral)
			},
			want: []string{"search page 2", "LDAP result 10"},
		},
		{
			name: "stall mid-page",
			page: func(w *fakeConn, n int) { adUser(w, 1) },
			want: []string{"search page 1 (after 1 entries)", "no complete answer within"},
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
			var got []sdk.Entry
			res, err := Fetch(context.Background(), cfg, defaultFilter, policyAttrs, func(e sdk.Entry) error {
				got = append(got, e)
				return nil
			})
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
			if res.Entries != tt.entries || len(got) != tt.entries || res.Referrals != tt.referrals {
				t.Errorf("result %+v with %d entries; want %d entries, %d referrals", res, len(got), tt.entries, tt.referrals)
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
