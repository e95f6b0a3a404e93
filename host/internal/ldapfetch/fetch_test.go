package ldapfetch

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/sdk"
)

// Integration tests against a real slapd (host/internal/testpeer/slapd)
// loaded with the demo's sample directory and generated users.

const (
	sampleLDIF     = "../../../examples/directory/sample.ldif"
	readerDN       = "cn=reader,dc=example,dc=com"
	readerPassword = "reader-secret"
	defaultFilter  = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"
	// sampleMatches is what defaultFilter finds in sample.ldif: 9 users,
	// 4 groups, 1 public folder.
	sampleMatches = 14
)

var policyAttrs = []string{"cn", "displayName", "mail", "proxyAddresses", "memberOf", "member", "sAMAccountType", "userAccountControl", "objectClass"}

// startSample starts slapd with sample.ldif plus users generated users.
func startSample(t testing.TB, users int, opts slapd.Options) *slapd.Server {
	t.Helper()
	opts.LDIF = []string{sampleLDIF}
	if users > 0 {
		gen := filepath.Join(t.TempDir(), "gen.ldif")
		writeGenerated(t, gen, users)
		opts.LDIF = append(opts.LDIF, gen)
	}
	return peertest.Slapd(t, opts)
}

func readerConfig(srv *slapd.Server) Config {
	return Config{
		URLs:     []string{srv.URL},
		BindDN:   readerDN,
		Password: readerPassword,
		BaseDN:   srv.BaseDN,
	}
}

// closedURL returns an ldap:// URL on a loopback port nobody listens on.
func closedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ldap://" + addr
}

func TestFetchPaged(t *testing.T) {
	srv := startSample(t, 250, slapd.Options{})
	cfg := readerConfig(srv)
	cfg.PageSize = 50
	entries, res, err := FetchAll(context.Background(), cfg, defaultFilter, policyAttrs)
	if err != nil {
		t.Fatal(err)
	}
	// 250 generated users in 2 groups.
	want := sampleMatches + 250 + 2
	if res.Entries != want || len(entries) != want {
		t.Fatalf("got %d entries (result says %d), want %d", len(entries), res.Entries, want)
	}
	if wantPages := (want + 49) / 50; res.Pages != wantPages {
		t.Errorf("pages = %d, want %d", res.Pages, wantPages)
	}
	if res.URL != srv.URL || res.Referrals != 0 {
		t.Errorf("result = %+v", res)
	}

	allowed := map[string]bool{"entryuuid": true}
	for _, a := range policyAttrs {
		allowed[strings.ToLower(a)] = true
	}
	ids := map[string]bool{}
	byDN := map[string]sdk.Entry{}
	for _, e := range entries {
		if !isUUID(e.ID) || e.ID != e.Get("entryuuid") {
			t.Errorf("%s: ID %q is not its entryUUID %q", e.DN, e.ID, e.Get("entryuuid"))
		}
		if ids[e.ID] {
			t.Errorf("duplicate ID %s", e.ID)
		}
		ids[e.ID] = true
		for name := range e.Attributes {
			if !allowed[name] {
				t.Errorf("%s: attribute %q was not requested", e.DN, name)
			}
		}
		byDN[e.DN] = e
	}
	alice := byDN["cn=Alice Anders,ou=People,dc=example,dc=com"]
	wantPA := []string{"SMTP:alice@example.com", "smtp:a.anders@example.com", "smtp:alice@example.org",
		"X500:/o=Example/ou=Exchange Administrative Group/cn=Recipients/cn=alice"}
	if got := alice.Attributes["proxyaddresses"]; !slices.Equal(got, wantPA) {
		t.Errorf("alice proxyaddresses = %q, want %q", got, wantPA)
	}
	memberOf := slices.Sorted(slices.Values(alice.Attributes["memberof"]))
	if len(memberOf) != 3 || !strings.HasPrefix(memberOf[0], "cn=All Staff,") {
		t.Errorf("alice memberof = %q", memberOf)
	}
	if grace := byDN["cn=Grace Green,ou=People,dc=example,dc=com"]; grace.Get("useraccountcontrol") != "514" {
		t.Errorf("grace useraccountcontrol = %q", grace.Get("useraccountcontrol"))
	}
	if e := byDN["cn=Support Inbox,ou=Folders,dc=example,dc=com"]; !slices.Contains(e.Attributes["objectclass"], "publicFolder") {
		t.Errorf("public folder objectclass = %q", e.Attributes["objectclass"])
	}
}

func TestFetchAllUserAttributes(t *testing.T) {
	srv := startSample(t, 0, slapd.Options{})
	entries, _, err := FetchAll(context.Background(), readerConfig(srv), "(sAMAccountName=alice)", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d entries", len(entries))
	}
	e := entries[0]
	for _, a := range []string{"cn", "sn", "givenname", "title", "samaccountname", "objectclass", "entryuuid"} {
		if len(e.Attributes[a]) == 0 {
			t.Errorf("attribute %s missing from %v", a, e.Attributes)
		}
	}
	if _, ok := e.Attributes["entrycsn"]; ok {
		t.Error("operational attribute entrycsn returned without being asked for")
	}
}

func TestFetchFailover(t *testing.T) {
	srv := startSample(t, 0, slapd.Options{})

	// A server that accepts connections but never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	tests := []struct {
		name string
		urls []string
	}{
		{"first refuses", []string{closedURL(t), srv.URL}},
		{"first hangs", []string{"ldap://" + hang.Addr().String(), srv.URL}},
		{"two down", []string{closedURL(t), closedURL(t), srv.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := readerConfig(srv)
			cfg.URLs = tt.urls
			cfg.Timeout = 300 * time.Millisecond
			cfg.ConnectTimeout = 300 * time.Millisecond
			_, res, err := FetchAll(context.Background(), cfg, defaultFilter, policyAttrs)
			if err != nil {
				t.Fatal(err)
			}
			if res.URL != srv.URL || res.Entries != sampleMatches {
				t.Errorf("result = %+v, want %d entries from %s", res, sampleMatches, srv.URL)
			}
		})
	}
}

func TestFetchErrors(t *testing.T) {
	srv := startSample(t, 30, slapd.Options{SizeLimit: 20})
	down1, down2 := closedURL(t), closedURL(t)
	cbErr := errors.New("callback says stop")

	tests := []struct {
		name    string
		cfg     func(*Config)
		filter  string
		fn      func(sdk.Entry) error
		want    []string
		wantErr error
	}{
		{
			name: "wrong password",
			cfg:  func(c *Config) { c.Password = "Wr0ng-Passw0rd" },
			want: []string{srv.URL, "bind as " + readerDN, "LDAP result 49 (Invalid Credentials)"},
		},
		{
			name: "wrong password is not retried on the next server",
			cfg:  func(c *Config) { c.Password = "Wr0ng-Passw0rd"; c.URLs = []string{srv.URL, down1} },
			want: []string{srv.URL, "LDAP result 49"},
		},
		{
			name: "all servers down",
			cfg:  func(c *Config) { c.URLs = []string{down1, down2} },
			want: []string{"no server reachable", down1, down2, "connection refused"},
		},
		{
			name: "only server down",
			cfg:  func(c *Config) { c.URLs = []string{down1} },
			want: []string{down1, "connect", "connection refused"},
		},
		{
			name: "size limit",
			want: []string{srv.URL, "search page", "LDAP result 4 (Size Limit Exceeded)", "size limit", "the result is incomplete"},
		},
		{
			name:   "no such base",
			cfg:    func(c *Config) { c.BaseDN = "ou=Nowhere,dc=example,dc=com" },
			filter: "(objectClass=*)",
			want:   []string{srv.URL, "LDAP result 32 (No Such Object)", "nothing was read"},
		},
		{
			name:    "callback error",
			filter:  "(objectClass=*)",
			fn:      func(sdk.Entry) error { return cbErr },
			want:    []string{srv.URL, "search page 1 (after 0 entries)", "callback says stop"},
			wantErr: cbErr,
		},
		{
			name:   "bad filter",
			filter: "(&(cn=a)",
			want:   []string{"config", "filter"},
		},
		{
			name: "no URLs",
			cfg:  func(c *Config) { c.URLs = nil },
			want: []string{"no server URL"},
		},
		{
			name: "bad URL scheme",
			cfg:  func(c *Config) { c.URLs = []string{"http://127.0.0.1:1"} },
			want: []string{"scheme must be ldap or ldaps"},
		},
		{
			name: "empty password",
			cfg:  func(c *Config) { c.Password = "" },
			want: []string{"empty password"},
		},
		{
			name: "negative max entries",
			cfg:  func(c *Config) { c.MaxEntries = -1 },
			want: []string{"config", "max entries -1 is negative"},
		},
		{
			name: "more entries than max entries",
			cfg:  func(c *Config) { c.MaxEntries = 10 },
			want: []string{srv.URL, "search page 2 (after 10 entries)", "more than 10 entries", "max_entries"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := readerConfig(srv)
			cfg.PageSize = 7
			cfg.ConnectTimeout = 2 * time.Second
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			filter := tt.filter
			if filter == "" {
				filter = defaultFilter
			}
			fn := tt.fn
			if fn == nil {
				fn = func(sdk.Entry) error { return nil }
			}
			_, err := Fetch(context.Background(), cfg, filter, policyAttrs, fn)
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			checkError(t, err, cfg.Password, tt.want...)
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			}
		})
	}
}

// checkError checks that err is one line, has no password and names want.
func checkError(t *testing.T, err error, password string, want ...string) {
	t.Helper()
	msg := err.Error()
	t.Logf("error: %s", msg)
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, pw := range []string{password, readerPassword, "Wr0ng-Passw0rd"} {
		if pw != "" && strings.Contains(msg, pw) {
			t.Errorf("error contains the password %q: %s", pw, msg)
		}
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
}

// TestFetchServerGoesAway stops or kills slapd in the middle of a paged
// search: the fetch must fail, never end quietly with part of the entries.
func TestFetchServerGoesAway(t *testing.T) {
	tests := []struct {
		name string
		stop func(*slapd.Server) error
	}{
		{"stop", (*slapd.Server).Stop},
		{"kill", (*slapd.Server).Kill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSample(t, 500, slapd.Options{})
			cfg := readerConfig(srv)
			cfg.PageSize = 20
			n := 0
			res, err := Fetch(context.Background(), cfg, defaultFilter, policyAttrs, func(sdk.Entry) error {
				n++
				if n == 30 { // in the second page
					if err := tt.stop(srv); err != nil {
						t.Error(err)
					}
				}
				return nil
			})
			if err == nil {
				t.Fatalf("Fetch succeeded with %d entries after slapd stopped", res.Entries)
			}
			checkError(t, err, cfg.Password, srv.URL, "search page")
			if res.Entries >= sampleMatches+500+5 {
				t.Errorf("got all %d entries", res.Entries)
			}
		})
	}
}

func TestFetchCancel(t *testing.T) {
	srv := startSample(t, 100, slapd.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := readerConfig(srv)
	cfg.PageSize = 10
	n := 0
	_, err := Fetch(ctx, cfg, defaultFilter, policyAttrs, func(sdk.Entry) error {
		if n++; n == 15 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	checkError(t, err, cfg.Password, srv.URL)

	// Cancelled before the start.
	_, err = Fetch(ctx, cfg, defaultFilter, policyAttrs, func(sdk.Entry) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestFetchReferrals: referral objects inside the subtree come back as
// continuation references, listed in the result; a referral object as the
// base of the search fails the fetch, since nothing of the result was read.
func TestFetchReferrals(t *testing.T) {
	srv := startSample(t, 0, slapd.Options{})
	for _, r := range []struct{ ou, ref string }{
		{"Remote", "ldap://127.0.0.1:1/ou=Remote,dc=example,dc=com"},
		{"Staff", "ldap://elsewhere/ou=Staff,dc=example,dc=com"},
	} {
		if err := srv.Add("ou="+r.ou+",dc=example,dc=com", map[string][]string{
			"objectClass": {"referral", "extensibleObject"},
			"ou":          {r.ou},
			"ref":         {r.ref},
		}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := readerConfig(srv)
	_, res, err := FetchAll(context.Background(), cfg, defaultFilter, policyAttrs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != sampleMatches || res.Referrals != 2 {
		t.Errorf("result = %+v, want %d entries and 2 referrals", res, sampleMatches)
	}
	// slapd adds the scope of the search to the URLs.
	wantRefs := []string{"ldap://127.0.0.1:1/ou=Remote,dc=example,dc=com??sub", "ldap://elsewhere/ou=Staff,dc=example,dc=com??sub"}
	if got := slices.Sorted(slices.Values(res.References)); !slices.Equal(got, wantRefs) || res.ReferencesOmitted != 0 {
		t.Errorf("references = %q and %d more, want %q", res.References, res.ReferencesOmitted, wantRefs)
	}

	tests := []struct {
		base string
		want string
	}{
		{
			// The base is a referral object: the server answers with
			// result code 10 instead of entries.
			base: "ou=Staff,dc=example,dc=com",
			want: `the server answered the search of "ou=Staff,dc=example,dc=com" with a referral to ldap://elsewhere/ou=Staff,dc=example,dc=com`,
		},
		{
			// The base lies below one.
			base: "ou=People,ou=Staff,dc=example,dc=com",
			want: `the server answered the search of "ou=People,ou=Staff,dc=example,dc=com" with a referral to ldap://elsewhere/ou=People,ou=Staff,dc=example,dc=com`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.base, func(t *testing.T) {
			cfg := readerConfig(srv)
			cfg.BaseDN = tt.base
			n := 0
			res, err := Fetch(context.Background(), cfg, defaultFilter, policyAttrs, func(sdk.Entry) error { n++; return nil })
			if err == nil {
				t.Fatalf("Fetch succeeded: %+v", res)
			}
			checkError(t, err, cfg.Password, srv.URL, "search page 1 (after 0 entries)", tt.want, "instead of its entries: nothing was read")
			if n != 0 || res.Entries != 0 {
				t.Errorf("%d entries handed on", n)
			}
		})
	}
}

func TestFetchTLS(t *testing.T) {
	srv := startSample(t, 0, slapd.Options{TLS: true})
	tests := []struct {
		name string
		cfg  func(*Config)
		want []string // error parts; none = success
	}{
		{"ldaps with CA", func(c *Config) { c.URLs = []string{srv.LDAPSURL}; c.CAFile = srv.CAFile }, nil},
		{"StartTLS with CA", func(c *Config) { c.StartTLS = true; c.CAFile = srv.CAFile }, nil},
		{"ldaps insecure", func(c *Config) { c.URLs = []string{srv.LDAPSURL}; c.InsecureSkipVerify = true }, nil},
		{"ldaps unknown CA", func(c *Config) { c.URLs = []string{srv.LDAPSURL} }, []string{srv.LDAPSURL, "connect", "certificate"}},
		{"StartTLS unknown CA", func(c *Config) { c.StartTLS = true }, []string{srv.URL, "StartTLS", "certificate"}},
		{"StartTLS on ldaps", func(c *Config) { c.URLs = []string{srv.LDAPSURL}; c.StartTLS = true }, []string{"ldaps:// is already TLS"}},
		{"bad CA file", func(c *Config) { c.URLs = []string{srv.LDAPSURL}; c.CAFile = sampleLDIF }, []string{"no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := readerConfig(srv)
			tt.cfg(&cfg)
			_, res, err := FetchAll(context.Background(), cfg, defaultFilter, policyAttrs)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if res.Entries != sampleMatches {
					t.Errorf("%d entries", res.Entries)
				}
				return
			}
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			checkError(t, err, cfg.Password, tt.want...)
		})
	}
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdef", c) {
				return false
			}
		}
	}
	return true
}
