package ldaptest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

const (
	bindDN   = "CN=reader,DC=ad,DC=test"
	password = "reader-secret"
)

func entries(n int, prefix string) []Entry {
	var out []Entry
	for i := range n {
		out = append(out, Entry{DN: fmt.Sprintf("CN=%s%d,DC=ad,DC=test", prefix, i), Attrs: map[string][]string{
			"cn":         {fmt.Sprintf("%s%d", prefix, i)},
			"objectGUID": {string([]byte{0xff, 0, 0x80, byte(i), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})},
			"bad":        {"caf\xe9", "ok"},
		}})
	}
	return out
}

func dial(t *testing.T, url string) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(5 * time.Second)
	t.Cleanup(func() { c.Close() })
	return c
}

func search() *ldap.SearchRequest {
	return ldap.NewSearchRequest("DC=ad,DC=test", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", nil, nil)
}

func dns(r *ldap.SearchResult) []string {
	var out []string
	for _, e := range r.Entries {
		out = append(out, e.DN)
	}
	return out
}

func wantDNs(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.DN)
	}
	return out
}

// TestScriptPagesEntriesByteForByte: the entries come back in order, in
// the pages the client asks for, with their values exactly as scripted.
func TestScriptPagesEntriesByteForByte(t *testing.T) {
	es := entries(5, "U")
	srv := Start(t, Script{BindDN: bindDN, Password: password, Entries: es})
	c := dial(t, srv.URL)
	if err := c.Bind(bindDN, password); err != nil {
		t.Fatal(err)
	}
	var pages int
	paging := ldap.NewControlPaging(2)
	req := search()
	req.Controls = []ldap.Control{paging}
	var got []*ldap.Entry
	for {
		res, err := c.Search(req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, res.Entries...)
		pc, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if !ok {
			t.Fatalf("page %d has no paging control", pages)
		}
		if len(pc.Cookie) == 0 {
			break
		}
		if len(res.Entries) != 2 {
			t.Errorf("page %d holds %d entries, want 2", pages, len(res.Entries))
		}
		paging.SetCookie(pc.Cookie)
	}
	if pages != 3 || len(got) != 5 {
		t.Fatalf("%d entries in %d pages, want 5 in 3", len(got), pages)
	}
	for i, e := range got {
		if e.DN != es[i].DN {
			t.Errorf("entry %d is %s, want %s", i, e.DN, es[i].DN)
		}
		if g := e.GetRawAttributeValue("objectGUID"); string(g) != es[i].Attrs["objectGUID"][0] {
			t.Errorf("%s objectGUID = % x", e.DN, g)
		}
		if v := e.GetRawAttributeValues("bad"); len(v) != 2 || string(v[0]) != "caf\xe9" || string(v[1]) != "ok" {
			t.Errorf("%s bad = %q, want the bytes as scripted", e.DN, v)
		}
	}

	// Without a paging control: everything in one answer.
	res, err := c.Search(search())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dns(res), wantDNs(es)) {
		t.Errorf("unpaged search = %q", dns(res))
	}
}

// TestScriptBind: only the scripted credentials bind, and a search needs
// them.
func TestScriptBind(t *testing.T) {
	srv := Start(t, Script{BindDN: bindDN, Password: password, Entries: entries(1, "U")})
	c := dial(t, srv.URL)
	if _, err := c.Search(search()); !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		t.Errorf("search before bind: %v, want result 50", err)
	}
	if err := c.Bind(bindDN, "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("wrong password: %v, want result 49", err)
	}
	if _, err := c.Search(search()); !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		t.Errorf("search after a failed bind: %v, want result 50", err)
	}
	if err := c.Bind(bindDN, password); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Search(search()); err != nil || len(res.Entries) != 1 {
		t.Errorf("search after bind: %v", err)
	}

	open := Start(t, Script{Entries: entries(1, "U")})
	if res, err := dial(t, open.URL).Search(search()); err != nil || len(res.Entries) != 1 {
		t.Errorf("search without BindDN in the script: %v", err)
	}
}

// TestScriptSet: a new script answers the next request, on an open
// connection too.
func TestScriptSet(t *testing.T) {
	srv := Start(t, Script{Entries: entries(2, "Old")})
	c := dial(t, srv.URL)
	if res, err := c.Search(search()); err != nil || len(res.Entries) != 2 {
		t.Fatalf("first search: %v", err)
	}
	next := entries(3, "New")
	srv.Set(Script{Entries: next})
	res, err := c.Search(search())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dns(res), wantDNs(next)) {
		t.Errorf("after Set: %q, want %q", dns(res), wantDNs(next))
	}
}

// TestScriptEndlessPage: the page goes on past any size, without a done
// message, and the server stops when the client goes.
func TestScriptEndlessPage(t *testing.T) {
	var closed time.Time
	t.Cleanup(func() { // after Start's cleanup, which waits for the server
		if d := time.Since(closed); d > 5*time.Second {
			t.Errorf("the server went on sending for %v after the client closed", d)
		}
	})
	srv := Start(t, Script{Entries: entries(3, "U"), EndlessPage: true})
	nc, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "ldap://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(rawSearch(1)); err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		p, err := ber.ReadPacket(nc)
		if err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
		if tag := p.Children[1].Tag; tag != ldap.ApplicationSearchResultEntry {
			t.Fatalf("message %d has tag %d, want an entry", i+1, tag)
		}
	}
	closed = time.Now()
	nc.Close()
}

// rawSearch is a subtree search request for everything, without controls.
func rawSearch(id int64) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "DC=ad,DC=test", "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, ldap.ScopeWholeSubtree, "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, ldap.NeverDerefAliases, "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types Only"))
	f, _ := ldap.CompileFilter("(objectClass=*)")
	op.AppendChild(f)
	op.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes"))
	p.AppendChild(op)
	return p.Bytes()
}

// TestScriptCloseBeforeDone: the entries of the page come, then the
// connection closes instead of the done message.
func TestScriptCloseBeforeDone(t *testing.T) {
	srv := Start(t, Script{Entries: entries(3, "U"), CloseBeforeDone: true})
	c := dial(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp := c.SearchAsync(ctx, search(), 0)
	n := 0
	for resp.Next() {
		n++
	}
	err := resp.Err()
	if n != 3 || err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("%d entries, then %v; want 3 and the connection closed", n, err)
	}
}

// TestScriptAnswer: Answer sees each request and answers it.
func TestScriptAnswer(t *testing.T) {
	var reqs []Request
	srv := Start(t, Script{Answer: func(c *Conn, n int) {
		reqs = append(reqs, c.Request())
		c.Entry(fmt.Sprintf("CN=Answer%d", n), map[string][]string{"cn": {"x"}})
		c.Reference("ldap://elsewhere.test/DC=x")
		c.Done(ldap.LDAPResultSuccess)
	}})
	c := dial(t, srv.URL)
	req := ldap.NewSearchRequest("CN=Big,DC=ad,DC=test", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(cn=x)", []string{"member;range=0-*"}, []ldap.Control{ldap.NewControlPaging(7)})
	for range 2 {
		res, err := c.Search(req)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Entries) != 1 || len(res.Referrals) != 1 {
			t.Errorf("answer: %d entries, referrals %q", len(res.Entries), res.Referrals)
		}
	}
	if len(reqs) != 2 {
		t.Fatalf("%d requests seen, want 2", len(reqs))
	}
	r := reqs[1]
	if r.BaseDN != "CN=Big,DC=ad,DC=test" || r.Scope != ldap.ScopeBaseObject || r.Filter != "(cn=x)" ||
		!slices.Equal(r.Attributes, []string{"member;range=0-*"}) || r.Paging == nil || r.Paging.PagingSize != 7 {
		t.Errorf("request seen as %+v", r)
	}
}
