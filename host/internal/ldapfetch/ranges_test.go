package ldapfetch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/testpeer/ldaptest"
	"github.com/dirsync/dirsync/sdk"
)

// Ranged attribute retrieval against a scripted server that answers the way
// Windows AD does; no real peer here sends ranges unasked (Samba sends all
// values of an attribute at once), so this is the one place a stand-in is
// right.

const bigGroupDN = "CN=Big,OU=Groups,DC=ad,DC=test"

// rangedAD is a fake AD with a MaxValRange of 1500. Its paged search sends,
// on page 1, a user, the group Big with its members in ranges and a second
// user, and on page 2 a third user. A base-scope read of Big for
// "member;range=LOW-*" answers the next range: member;range=LOW-HIGH, or
// member;range=LOW-* for the last one.
type rangedAD struct {
	members []string
	// first replaces the attributes of Big in the paged search.
	first map[string][]string
	// fault, when it returns true, has answered the n-th range read
	// (1-based) instead of the fake.
	fault func(w *ldaptest.Conn, n int) bool

	mu    sync.Mutex
	reads []ldaptest.Request
}

const maxValRange = 1500

func newRangedAD(members int) *rangedAD {
	ad := &rangedAD{}
	for i := range members {
		ad.members = append(ad.members, fmt.Sprintf("CN=Member %04d,OU=People,DC=ad,DC=test", i))
	}
	return ad
}

func (ad *rangedAD) page(w *ldaptest.Conn, n int) {
	if w.Request().Scope == ldap.ScopeBaseObject {
		ad.read(w)
		return
	}
	if n > 1 {
		adUser(w, 3)
		w.Done(0, ldaptest.Cookie(""))
		return
	}
	adUser(w, 1)
	attrs := ad.first
	if attrs == nil {
		attrs = map[string][]string{"cn": {"Big"}, "sAMAccountType": {"268435456"}}
		if len(ad.members) <= maxValRange {
			attrs["member"] = ad.members
		} else {
			attrs["member"] = nil // AD sends the plain attribute empty
			attrs[fmt.Sprintf("member;range=0-%d", maxValRange-1)] = ad.members[:maxValRange]
		}
	}
	g := []byte(guidBytes)
	g[15] = 0xb1
	attrs["objectGUID"] = []string{string(g)}
	w.Entry(bigGroupDN, attrs)
	adUser(w, 2)
	w.Done(0, ldaptest.Cookie("page2"))
}

func (ad *rangedAD) read(w *ldaptest.Conn) {
	ad.mu.Lock()
	ad.reads = append(ad.reads, w.Request())
	n := len(ad.reads)
	ad.mu.Unlock()
	if ad.fault != nil && ad.fault(w, n) {
		return
	}
	var low int
	if len(w.Request().Attributes) != 1 || w.Request().BaseDN != bigGroupDN {
		w.Done(ldap.LDAPResultProtocolError)
		return
	}
	if _, err := fmt.Sscanf(w.Request().Attributes[0], "member;range=%d-*", &low); err != nil || low > len(ad.members) {
		w.Done(ldap.LDAPResultProtocolError)
		return
	}
	high := min(low+maxValRange, len(ad.members))
	name := fmt.Sprintf("member;range=%d-%d", low, high-1)
	if high == len(ad.members) {
		name = fmt.Sprintf("member;range=%d-*", low)
	}
	w.Entry(bigGroupDN, map[string][]string{name: ad.members[low:high]})
	w.Done(0)
}

func (ad *rangedAD) fetch(t *testing.T, timeout time.Duration) ([]sdk.Entry, Result, error, string) {
	t.Helper()
	url := startFake(t, ad.page)
	cfg := Config{URLs: []string{url}, BindDN: "CN=reader,DC=ad,DC=test", Password: "fake-secret", BaseDN: "DC=ad,DC=test",
		Timeout: timeout}
	var got []sdk.Entry
	res, err := Fetch(context.Background(), cfg, defaultFilter, policyAttrs, func(e sdk.Entry) error {
		got = append(got, e)
		return nil
	})
	return got, res, err, url
}

func dns(entries []sdk.Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, strings.SplitN(e.DN, ",", 2)[0])
	}
	return out
}

func TestFetchRanges(t *testing.T) {
	tests := []struct {
		name    string
		members int
		first   map[string][]string // Big's attributes in the paged search; nil: AD's
		reads   []string            // the attribute each range read asks for
	}{
		{name: "3700 members in three ranges", members: 3700, reads: []string{"member;range=1500-*", "member;range=3000-*"}},
		{name: "1501 members in two ranges", members: 1501, reads: []string{"member;range=1500-*"}},
		{name: "3000 members: the last range is empty", members: 3000, reads: []string{"member;range=1500-*", "member;range=3000-*"}},
		{name: "1500 members: no ranges", members: 1500},
		{name: "a whole range at once", members: 20, first: map[string][]string{"cn": {"Big"}, "Member;Range=0-*": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ad := newRangedAD(tt.members)
			if tt.first != nil {
				ad.first = tt.first
				for k, v := range tt.first {
					if v == nil {
						ad.first[k] = ad.members
					}
				}
			}
			if tt.members == 3000 {
				// 0-1499, 1500-2999, then AD answers 3000-* without values.
				ad.fault = func(w *ldaptest.Conn, n int) bool {
					if n != 1 {
						return false
					}
					w.Entry(bigGroupDN, map[string][]string{"member;range=1500-2999": ad.members[1500:3000]})
					w.Done(0)
					return true
				}
			}
			got, res, err, _ := ad.fetch(t, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			// Order kept: the entries after Big in its page wait for it.
			if want := []string{"CN=UserB", "CN=Big", "CN=UserC", "CN=UserD"}; !slices.Equal(dns(got), want) {
				t.Fatalf("entries %q, want %q", dns(got), want)
			}
			big := got[1]
			if !slices.Equal(big.Attributes["member"], ad.members) {
				t.Errorf("member has %d values, want all %d in order", len(big.Attributes["member"]), len(ad.members))
			}
			for name := range big.Attributes {
				if strings.Contains(name, "range") {
					t.Errorf("attribute %q left in the entry", name)
				}
			}
			if big.ID[:8] != "6f9619ff" || big.Get("cn") != "Big" {
				t.Errorf("Big = id %s cn %q", big.ID, big.Get("cn"))
			}
			var asked []string
			for _, r := range ad.reads {
				if r.BaseDN != bigGroupDN || r.Scope != ldap.ScopeBaseObject || len(r.Attributes) != 1 {
					t.Errorf("range read %+v, want a base-scope read of %s for one attribute", r, bigGroupDN)
				}
				asked = append(asked, r.Attributes...)
			}
			if !slices.Equal(asked, tt.reads) {
				t.Errorf("range reads asked for %q, want %q", asked, tt.reads)
			}
			if res.RangeReads != len(tt.reads) || res.Entries != 4 || res.Pages != 2 {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// TestFetchRangeFailures: a fetch that cannot read every range of an
// attribute fails (S1), and the incomplete entry never reaches the
// callback.
func TestFetchRangeFailures(t *testing.T) {
	entry := func(attrs map[string][]string) func(*ldaptest.Conn) {
		return func(w *ldaptest.Conn) { w.Entry(bigGroupDN, attrs); w.Done(0) }
	}
	tests := []struct {
		name   string
		read   int                    // the range read that fails (1 = 1500-2999, 2 = 3000-*)
		answer func(w *ldaptest.Conn) // its answer
		first  map[string][]string    // instead: Big's attributes in the paged search
		want   []string
	}{
		{name: "busy in the middle range", read: 1, answer: func(w *ldaptest.Conn) { w.Done(ldap.LDAPResultBusy) },
			want: []string{"reading member;range=1500-*", "LDAP result 51 (Busy)"}},
		{name: "busy in the last range", read: 2, answer: func(w *ldaptest.Conn) { w.Done(ldap.LDAPResultBusy) },
			want: []string{"reading member;range=3000-*", "LDAP result 51 (Busy)"}},
		{name: "connection dropped in the middle range", read: 1, answer: func(w *ldaptest.Conn) { w.Close() },
			want: []string{"reading member;range=1500-*", "closed the connection"}},
		{name: "no answer to the middle range", read: 1, answer: func(w *ldaptest.Conn) {},
			want: []string{"reading member;range=1500-*", "no complete answer within"}},
		{name: "entry gone", read: 1, answer: func(w *ldaptest.Conn) { w.Done(ldap.LDAPResultNoSuchObject) },
			want: []string{"reading member;range=1500-*", "LDAP result 32 (No Such Object)"}},
		{name: "entry not returned", read: 1, answer: func(w *ldaptest.Conn) { w.Done(0) },
			want: []string{"the entry was not returned"}},
		{name: "answer without the range", read: 1, answer: entry(map[string][]string{"cn": {"Big"}}),
			want: []string{"holds no range of member"}},
		{name: "answer with the whole attribute", read: 1, answer: entry(map[string][]string{"member": {"CN=x"}}),
			want: []string{"holds no range of member"}},
		{name: "gap", read: 1, answer: entry(map[string][]string{"member;range=1600-2999": make([]string, 1400)}),
			want: []string{"answered with member;range=1600-2999, want values from 1500"}},
		{name: "fewer values than the range says", read: 1, answer: entry(map[string][]string{"member;range=1500-2999": {"CN=x"}}),
			want: []string{"member;range=1500-2999 holds 1 values, want 1500"}},
		{name: "malformed range", read: 1, answer: entry(map[string][]string{"member;range=1500-": {"CN=x"}}),
			want: []string{`malformed range "1500-"`}},
		{name: "first range not at 0", first: map[string][]string{"member;range=5-1504": make([]string, 1500)},
			want: []string{"starts at value 5, not 0"}},
		{name: "first range short", first: map[string][]string{"member;range=0-1499": {"CN=x"}},
			want: []string{"member;range=0-1499 holds 1 values, want 1500"}},
		{name: "whole and ranged", first: map[string][]string{"member": {"CN=x"}, "member;range=0-1499": make([]string, 1500)},
			want: []string{"member came back both whole (1 values) and in ranges"}},
		{name: "two ranges of one attribute", first: map[string][]string{"member;range=0-1499": make([]string, 1500), "member;range=1500-*": {"CN=x"}},
			want: []string{"member came back in more than one range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ad := newRangedAD(3700)
			if tt.first != nil {
				ad.first = tt.first
			}
			ad.fault = func(w *ldaptest.Conn, n int) bool {
				if n != tt.read {
					return false
				}
				tt.answer(w)
				return true
			}
			got, res, err, url := ad.fetch(t, 500*time.Millisecond)
			if err == nil {
				t.Fatalf("Fetch succeeded: %+v, entries %q", res, dns(got))
			}
			checkError(t, err, "fake-secret", append(tt.want, url, "search page 1", bigGroupDN)...)
			// Only the user before Big was handed on.
			if !slices.Equal(dns(got), []string{"CN=UserB"}) {
				t.Errorf("entries %q reached the callback", dns(got))
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in        string
		ok        bool
		base      string
		low, high int
		err       string
	}{
		{in: "member"},
		{in: "userCertificate;binary"},
		{in: "member;range=0-1499", ok: true, base: "member", low: 0, high: 1499},
		{in: "member;Range=1500-*", ok: true, base: "member", low: 1500, high: -1},
		{in: "member;RANGE=3000-2999", ok: true, base: "member", low: 3000, high: 2999},
		{in: "foo;binary;range=0-9", ok: true, base: "foo;binary", low: 0, high: 9},
		{in: "member;range=a-9", ok: true, err: "malformed range"},
		{in: "member;range=10-5", ok: true, err: "malformed range"},
		{in: "member;range=-1-5", ok: true, err: "malformed range"},
		{in: "member;range=0", ok: true, err: "malformed range"},
		{in: "member;range=0-*;range=0-*", ok: true, err: "two range options"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, ok, err := parseRange(tt.in)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok && (r.base != tt.base || r.low != tt.low || r.high != tt.high) {
				t.Errorf("got %+v, want base %q %d-%d", r, tt.base, tt.low, tt.high)
			}
		})
	}
}
