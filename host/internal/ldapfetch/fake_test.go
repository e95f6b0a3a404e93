package ldapfetch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/testpeer/ldaptest"
	"github.com/dirsync/dirsync/sdk"
)

// Tests against the scripted server of host/internal/testpeer/ldaptest, for
// the failures a real slapd cannot be made to produce: a page without a
// paging control, a garbled control, a server that repeats its cookie,
// stalls or drops the connection mid-page, sends far more than a page or
// values that are not UTF-8, and AD-style binary objectGUIDs and
// continuation references.

// startFake serves page, which answers the n-th search request (1-based)
// of a connection, and returns the server's URL.
func startFake(t *testing.T, page func(w *ldaptest.Conn, n int)) string {
	t.Helper()
	return ldaptest.Start(t, ldaptest.Script{Answer: page}).URL
}

var guidBytes = string([]byte{0xff, 0x19, 0x96, 0x6f, 0x86, 0x8b, 0x11, 0xd0, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff})

func adUser(w *ldaptest.Conn, i int) {
	g := []byte(guidBytes)
	g[15] = byte(i)
	w.Entry("CN=User"+string(rune('A'+i))+",OU=People,DC=ad,DC=test", map[string][]string{
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
	runaway := func(w *ldaptest.Conn, n int) {
		defer close(runawayDone)
		for i := 0; w.Err() == nil && i < 1_000_000; i++ {
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
		page       func(w *ldaptest.Conn, n int)
		want       []string // error parts; nil = success
		entries    int      // handed to the callback, also on error
		referrals  int
		references []string
		omitted    int
		check      func(t *testing.T, got []sdk.Entry)
	}{
		{
			name: "AD entries over two pages, a reference skipped",
			page: func(w *ldaptest.Conn, n int) {
				adUser(w, n*2)
				adUser(w, n*2+1)
				if n == 1 {
					w.Reference("ldap://ForestDnsZones.ad.test/DC=ForestDnsZones,DC=ad,DC=test")
					w.Done(0, ldaptest.Cookie("next"))
					return
				}
				w.Done(0, ldaptest.Cookie(""))
			},
			entries: 4, referrals: 1,
			references: []string{"ldap://ForestDnsZones.ad.test/DC=ForestDnsZones,DC=ad,DC=test"},
		},
		{
			name: "references listed once each, in order of arrival",
			page: func(w *ldaptest.Conn, n int) {
				if n == 1 {
					adUser(w, 1)
					w.Reference("ldap://ad.test/CN=Configuration,DC=ad,DC=test")
					w.Reference("ldap://DomainDnsZones.ad.test/DC=DomainDnsZones,DC=ad,DC=test",
						"ldap://dc2.ad.test/DC=DomainDnsZones,DC=ad,DC=test")
					w.Done(0, ldaptest.Cookie("next"))
					return
				}
				w.Reference("ldap://ad.test/CN=Configuration,DC=ad,DC=test")
				w.Reference("ldap://ForestDnsZones.ad.test/DC=ForestDnsZones,DC=ad,DC=test")
				adUser(w, 2)
				w.Done(0, ldaptest.Cookie(""))
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
			page: func(w *ldaptest.Conn, n int) {
				adUser(w, 1)
				for _, r := range refs {
					w.Reference(r)
				}
				w.Reference(refs[0], refs[105], refs[109]) // seen before: not counted again
				w.Done(0, ldaptest.Cookie(""))
			},
			entries: 1, referrals: len(refs) + 1,
			references: refs[:MaxReferences], omitted: len(refs) - MaxReferences,
		},
		{
			name: "value not UTF-8: replaced in that value alone",
			page: func(w *ldaptest.Conn, n int) {
				g := []byte(guidBytes)
				w.Entry("CN=J\xfcrgen,OU=People,DC=ad,DC=test", map[string][]string{
					"objectGUID":     {string(g)},
					"objectSid":      {"\x01\x05\x00\x00"},
					"displayName":    {"J\xfcrgen M\xfcller"},
					"proxyAddresses": {"SMTP:juergen@ad.test", "smtp:j\xfcrgen@ad.test", "smtp:jm@ad.test", "X500:/o=\xff\xfe"},
				})
				w.Done(0, ldaptest.Cookie(""))
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
				// The DN is repaired as the values naming it (member) are.
				if e.DN != "CN=J\uFFFDrgen,OU=People,DC=ad,DC=test" {
					t.Errorf("DN = %q, want its bad byte replaced", e.DN)
				}
			},
		},
		{
			name:    "page without paging control",
			page:    func(w *ldaptest.Conn, n int) { adUser(w, 1); w.Done(0) },
			want:    []string{"search page 1 (after 1 entries)", "without a paging control"},
			entries: 1,
		},
		{
			name:    "garbled paging control",
			page:    func(w *ldaptest.Conn, n int) { adUser(w, 1); w.Done(0, ldaptest.GarbledPaging()) },
			want:    []string{"search page 1", "malformed"},
			entries: 1,
		},
		{
			name: "connection dropped mid-page",
			page: func(w *ldaptest.Conn, n int) {
				if n == 1 {
					adUser(w, 1)
					w.Done(0, ldaptest.Cookie("c1"))
					return
				}
				adUser(w, 2)
				w.Close()
			},
			want:    []string{"search page 2 (after 2 entries)", "closed the connection before the page was complete"},
			entries: 2,
		},
		{
			name: "connection closed after the entries, before the done message",
			page: func(w *ldaptest.Conn, n int) {
				adUser(w, 1)
				adUser(w, 2)
				w.Close()
			},
			want:    []string{"search page 1 (after 2 entries)", "closed the connection before the page was complete"},
			entries: 2,
		},
		{
			name: "connection closed in the middle of a message",
			page: func(w *ldaptest.Conn, n int) {
				adUser(w, 1)
				b := ldaptest.Messages(w.MessageID(), func(c *ldaptest.Conn) {
					c.Entry("CN=Half,DC=ad,DC=test", map[string][]string{"cn": {"Half"}})
				})
				w.Raw(b[:len(b)/2])
				w.Close()
			},
			want:    []string{"search page 1 (after 1 entries)", "closed the connection before the page was complete"},
			entries: 1,
		},
		{
			name: "connection closed before any answer",
			page: func(w *ldaptest.Conn, n int) { w.Close() },
			want: []string{"search page 1 (after 0 entries)", "closed the connection before the page was complete"},
		},
		{
			name: "notice of disconnection mid-page",
			page: func(w *ldaptest.Conn, n int) {
				adUser(w, 1)
				w.NoticeOfDisconnection()
			},
			want:    []string{"search page 1 (after 1 entries)", "notice of disconnection", "LDAP result 52"},
			entries: 1,
		},
		{
			name: "done message of page 2 never comes",
			page: func(w *ldaptest.Conn, n int) {
				adUser(w, n)
				if n == 1 {
					w.Done(0, ldaptest.Cookie("c1"))
				}
			},
			want:    []string{"search page 2 (after 2 entries)", "no complete answer within"},
			entries: 2,
		},
		{
			name:    "size limit exceeded",
			page:    func(w *ldaptest.Conn, n int) { adUser(w, 1); w.Done(ldap.LDAPResultSizeLimitExceeded) },
			want:    []string{"search page 1 (after 1 entries)", "LDAP result 4 (Size Limit Exceeded)", "size limit", "the result is incomplete"},
			entries: 1,
		},
		{
			name:    "time limit exceeded",
			page:    func(w *ldaptest.Conn, n int) { adUser(w, 1); w.Done(ldap.LDAPResultTimeLimitExceeded) },
			want:    []string{"LDAP result 3 (Time Limit Exceeded)", "time limit", "the result is incomplete"},
			entries: 1,
		},
		{
			name: "admin limit exceeded",
			page: func(w *ldaptest.Conn, n int) { w.Done(ldap.LDAPResultAdminLimitExceeded) },
			want: []string{"LDAP result 11 (Admin Limit Exceeded)", "administrative limit", "nothing was read"},
		},
		{
			name: "server busy",
			page: func(w *ldaptest.Conn, n int) { w.Done(ldap.LDAPResultBusy) },
			want: []string{"LDAP result 51 (Busy)", "nothing was read"},
		},
		{
			name: "paging not supported",
			page: func(w *ldaptest.Conn, n int) { w.Done(ldap.LDAPResultUnavailableCriticalExtension) },
			want: []string{"does not support paged results", "nothing was read"},
		},
		{
			name: "cookie repeated without entries",
			page: func(w *ldaptest.Conn, n int) { w.Done(0, ldaptest.Cookie("same")) },
			want: []string{"repeats the paging cookie"},
		},
		{
			name: "referral instead of the result",
			page: func(w *ldaptest.Conn, n int) { w.Referral("ldap://elsewhere.test/DC=ad,DC=test") },
			want: []string{`search page 1 (after 0 entries): the server answered the search of "DC=ad,DC=test" with a referral to ldap://elsewhere.test/DC=ad,DC=test instead of its entries: nothing was read`},
		},
		{
			name: "referral with two URLs",
			page: func(w *ldaptest.Conn, n int) {
				w.Referral("ldap://a.test/DC=ad,DC=test", "ldap://b.test/DC=ad,DC=test")
			},
			want: []string{"with a referral to ldap://a.test/DC=ad,DC=test or ldap://b.test/DC=ad,DC=test instead of its entries"},
		},
		{
			name: "referral on a later page",
			page: func(w *ldaptest.Conn, n int) {
				if n == 1 {
					adUser(w, 1)
					w.Done(0, ldaptest.Cookie("c1"))
					return
				}
				w.Referral("ldap://elsewhere.test/DC=ad,DC=test")
			},
			want:    []string{"search page 2 (after 1 entries)", "with a referral to ldap://elsewhere.test/DC=ad,DC=test", "the result is incomplete"},
			entries: 1,
		},
		{
			name: "referral without a URL",
			page: func(w *ldaptest.Conn, n int) { w.Done(ldap.LDAPResultReferral) },
			want: []string{"with a referral instead of its entries: nothing was read"},
		},
		{
			name:    "stall mid-page",
			page:    func(w *ldaptest.Conn, n int) { adUser(w, 1) },
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
			page: func(w *ldaptest.Conn, n int) {
				for i := 0; w.Err() == nil && i < 1_000_000; i++ {
					w.Reference(fmt.Sprintf("ldap://x%d.test/DC=ad,DC=test", i))
				}
			},
			want:      []string{"search page 1 (after 0 entries)", "more than 20 continuation references in one page of 2"},
			referrals: 20,
		},
		{
			name: "ten times the page size is still a page",
			page: func(w *ldaptest.Conn, n int) {
				for i := range 20 {
					adUser(w, i)
				}
				w.Done(0, ldaptest.Cookie(""))
			},
			entries: 20,
		},
		{
			name: "more entries than max entries",
			cfg:  func(c *Config) { c.MaxEntries = 5 },
			page: func(w *ldaptest.Conn, n int) {
				adUser(w, 2*n)
				adUser(w, 2*n+1)
				w.Done(0, ldaptest.Cookie(fmt.Sprint("c", n)))
			},
			want:    []string{"search page 3 (after 5 entries)", "the result holds more than 5 entries: raise [domain.ldap] max_entries if the directory is really that large"},
			entries: 5,
		},
		{
			name: "exactly max entries",
			cfg:  func(c *Config) { c.MaxEntries = 6 },
			page: func(w *ldaptest.Conn, n int) {
				adUser(w, 2*n)
				adUser(w, 2*n+1)
				c := ""
				if n < 3 {
					c = fmt.Sprint("c", n)
				}
				w.Done(0, ldaptest.Cookie(c))
			},
			entries: 6,
		},
		{
			name: "objectGUID of the wrong size",
			page: func(w *ldaptest.Conn, n int) {
				w.Entry("CN=X,DC=ad,DC=test", map[string][]string{"objectGUID": {"short"}})
				w.Done(0, ldaptest.Cookie(""))
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
	url := startFake(t, func(w *ldaptest.Conn, n int) { w.Done(ldap.LDAPResultSizeLimitExceeded) })
	cfg := Config{URLs: []string{url}, BaseDN: "DC=ad,DC=test", Timeout: time.Second}
	_, _, err := FetchAll(context.Background(), cfg, defaultFilter, nil)
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultSizeLimitExceeded {
		t.Fatalf("err = %v, want one that wraps LDAP result 4", err)
	}
}
