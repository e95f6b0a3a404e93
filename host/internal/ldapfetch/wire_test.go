package ldapfetch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/testpeer/ldaptest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
)

// messages returns LDAP messages as a server would send them.
func messages(write func(w *ldaptest.Conn)) []byte {
	return ldaptest.Messages(2, write)
}

// decodeAll runs every decoder of this package over an input stream.
func decodeAll(data []byte) (entries int, err error) {
	c := &client{br: bufio.NewReader(bytes.NewReader(data))}
	conv := newConverter()
	var raw []rawAttr
	for {
		m, err := c.read()
		if err != nil {
			return entries, err
		}
		switch m.op {
		case opSearchEntry:
			var dn string
			if dn, raw, err = decodeEntry(m.body, raw); err != nil {
				return entries, err
			}
			if _, err := conv.entry(dn, raw); err != nil {
				return entries, err
			}
			entries++
		case opSearchRef:
			if _, err := decodeReference(m.body, nil); err != nil {
				return entries, err
			}
		default:
			if _, _, err := parseResult(m.body); err != nil {
				return entries, err
			}
			if _, _, err := pagingCookie(m.controls); err != nil {
				return entries, err
			}
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	good := messages(func(w *ldaptest.Conn) { adUser(w, 1) })
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"truncated message", good[:len(good)-3], "unexpected EOF"},
		{"not a sequence", append(slices.Clip(good), 0x04, 0x00), "message starts with tag 0x04"},
		{"first answer not LDAP", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), `is this an LDAP server? (it answered with bytes that are not LDAP: "HTTP/1.1 400 Bad Request")`},
		{"first answer a TLS alert", []byte{0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46}, "it answered with a TLS record, not LDAP"},
		{"first answer binary", []byte{0x04, 0x00}, "not LDAP: 04 00"},
		{"indefinite length", []byte{0x30, 0x80}, "length with 0 octets"},
		{"huge length", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, "exceeds the limit"},
		{"element longer than message", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x64, 0x09}, "element of 9 bytes in 0"},
		{"value not an octet string", []byte{0x30, 0x0e, 0x02, 0x01, 0x02, 0x64, 0x09, 0x04, 0x01, 'x', 0x30, 0x04, 0x30, 0x02, 0x02, 0x00}, "attribute type has tag 0x02"},
		{"bad result code", messages(func(w *ldaptest.Conn) { w.Done(300) }), "result code 300"},
		{"referral URI not an octet string", badReferral(), "referral URI has tag 0x02"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeAll(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if n, err := decodeAll(good); n != 1 || !errors.Is(err, io.EOF) {
		t.Fatalf("good entry: %d entries, err %v", n, err)
	}
}

// badReferral is a SearchResultDone whose referral holds an integer.
func badReferral() []byte {
	return messages(func(w *ldaptest.Conn) {
		op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultDone, nil, "Result")
		op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, ldap.LDAPResultReferral, "resultCode"))
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnosticMessage"))
		ref := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "Referral")
		ref.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 7, "URI"))
		op.AppendChild(ref)
		w.Send(op)
	})
}

func TestParseResultReferral(t *testing.T) {
	data := messages(func(w *ldaptest.Conn) { w.Referral("ldap://a.test/dc=x", "ldap://b.test/dc=x") })
	c := &client{br: bufio.NewReader(bytes.NewReader(data))}
	m, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	res, rest, err := parseResult(m.body)
	if err != nil {
		t.Fatal(err)
	}
	if res.code != ldap.LDAPResultReferral || rest != "" || !slices.Equal(res.referral, []string{"ldap://a.test/dc=x", "ldap://b.test/dc=x"}) {
		t.Fatalf("result %+v, rest %q", res, rest)
	}
}

func TestDecodeReference(t *testing.T) {
	data := messages(func(w *ldaptest.Conn) { w.Reference("ldap://a.test/dc=x??sub", "ldap://b.test/dc=x??sub") })
	c := &client{br: bufio.NewReader(bytes.NewReader(data))}
	m, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	uris, err := decodeReference(m.body, []string{"kept"})
	if err != nil || !slices.Equal(uris, []string{"kept", "ldap://a.test/dc=x??sub", "ldap://b.test/dc=x??sub"}) {
		t.Fatalf("decodeReference = %q, %v", uris, err)
	}
	if _, err := decodeReference("", nil); err == nil {
		t.Error("an empty reference decoded")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(messages(func(w *ldaptest.Conn) {
		adUser(w, 1)
		w.Reference("ldap://x/dc=x")
		w.Done(0, ldaptest.Cookie("abc"))
	}))
	f.Add(messages(func(w *ldaptest.Conn) { w.Done(4, ldaptest.GarbledPaging()) }))
	f.Add(messages(func(w *ldaptest.Conn) { w.Referral("ldap://a/dc=x", "ldap://b/dc=x") }))
	f.Add(messages(func(w *ldaptest.Conn) {
		w.Entry("cn=a", map[string][]string{"cn": {"a"}, "member;range=0-1": {"x"}, "jpegPhoto": {"\xff\xd8"}})
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = decodeAll(data) // must not panic or hang
	})
}

// TestDecoderMatchesGoLDAP reads the same directory with Fetch and with
// go-ldap and compares every value, byte for byte.
func TestDecoderMatchesGoLDAP(t *testing.T) {
	srv := startSample(t, 120, slapd.Options{})
	if err := srv.Add("cn=Photo,ou=People,dc=example,dc=com", map[string][]string{
		"objectClass":    {"inetOrgPerson", "adUser"},
		"cn":             {"Photo"},
		"sn":             {"Ünïcödé"},
		"sAMAccountType": {"805306368"},
		// Bigger than the read buffer: the message is read in pieces.
		"jpegPhoto":   {"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + strings.Repeat("\x00\x01\xfe\xff", 200_000)},
		"description": {strings.Repeat("long value ", 2000)},
	}); err != nil {
		t.Fatal(err)
	}
	cfg := readerConfig(srv)
	cfg.PageSize = 25
	attrs := append([]string{"sn", "jpegPhoto", "description"}, policyAttrs...)
	ours, _, err := FetchAll(context.Background(), cfg, defaultFilter, attrs)
	if err != nil {
		t.Fatal(err)
	}

	c := dialBindGoLDAP(t, srv.URL)
	theirs, err := c.SearchWithPaging(ldap.NewSearchRequest(srv.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		defaultFilter, requestAttributes(attrs), nil), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != len(theirs.Entries) || len(ours) != sampleMatches+120+1+1 {
		t.Fatalf("Fetch read %d entries, go-ldap %d", len(ours), len(theirs.Entries))
	}
	byDN := map[string]int{}
	for i, e := range ours {
		byDN[e.DN] = i
	}
	checked := 0
	for _, te := range theirs.Entries {
		i, ok := byDN[te.DN]
		if !ok {
			t.Errorf("Fetch lacks %s", te.DN)
			continue
		}
		oe := ours[i]
		if len(oe.Attributes) != len(te.Attributes) {
			t.Errorf("%s: %d attributes, go-ldap %d", te.DN, len(oe.Attributes), len(te.Attributes))
		}
		for _, a := range te.Attributes {
			got := oe.Attributes[strings.ToLower(a.Name)]
			if len(got) != len(a.ByteValues) {
				t.Errorf("%s %s: %d values, go-ldap %d", te.DN, a.Name, len(got), len(a.ByteValues))
				continue
			}
			for j, want := range a.ByteValues {
				v := got[j]
				if strings.EqualFold(a.Name, "jpegPhoto") {
					b, err := base64.StdEncoding.DecodeString(v)
					if err != nil {
						t.Fatal(err)
					}
					v = string(b)
				}
				if v != string(want) {
					t.Errorf("%s %s[%d] = %q, go-ldap %q", te.DN, a.Name, j, truncate(v), truncate(string(want)))
				}
				checked++
			}
		}
	}
	if checked < 1000 {
		t.Errorf("compared only %d values", checked)
	}
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func dialBindGoLDAP(t *testing.T, url string) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Bind(readerDN, readerPassword); err != nil {
		t.Fatal(err)
	}
	return c
}
