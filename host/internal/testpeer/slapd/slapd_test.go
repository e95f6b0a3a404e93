package slapd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/go-ldap/ldap/v3"
)

const (
	sampleLDIF     = "../../../../examples/directory/sample.ldif"
	readerDN       = "cn=reader,dc=example,dc=com"
	readerPassword = "reader-secret"
	defaultFilter  = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"
)

func search(t *testing.T, c *ldap.Conn, base, filter string, attrs ...string) map[string]*ldap.Entry {
	t.Helper()
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil), 100)
	if err != nil {
		t.Fatalf("search %s: %v", filter, err)
	}
	m := map[string]*ldap.Entry{}
	for _, e := range res.Entries {
		m[e.GetAttributeValue("cn")] = e
	}
	return m
}

// TestSampleDirectory starts slapd with the demo's sample directory and
// reads it as the reader account, the way dirsync does.
func TestSampleDirectory(t *testing.T) {
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{sampleLDIF}})
	c := peertest.Bind(t, srv.URL, readerDN, readerPassword)

	got := search(t, c, srv.BaseDN, defaultFilter, "cn", "memberOf", "entryUUID", "proxyAddresses", "mail", "sAMAccountType", "userAccountControl", "userPassword")
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"Alice Anders", "All Staff", "Bob Brown", "Carol Clark", "Dave Dunn", "Engineering", "Erin Evans",
		"Frank Fischer", "Grace Green", "Heidi Hall", "Ivan Ito", "Marketing", "Sales", "Support Inbox"}
	if !slices.Equal(names, want) {
		t.Fatalf("default filter returned\n%q\nwant\n%q", names, want)
	}

	alice := got["Alice Anders"]
	memberOf := alice.GetAttributeValues("memberOf")
	slices.Sort(memberOf)
	wantMemberOf := []string{"cn=All Staff,ou=Groups,dc=example,dc=com", "cn=Marketing,ou=Groups,dc=example,dc=com", "cn=Sales,ou=Groups,dc=example,dc=com"}
	if !slices.Equal(memberOf, wantMemberOf) {
		t.Errorf("alice memberOf = %q, want %q", memberOf, wantMemberOf)
	}
	if id := alice.GetAttributeValue("entryUUID"); len(id) != 36 {
		t.Errorf("alice entryUUID = %q, want a UUID", id)
	}
	pa := alice.GetAttributeValues("proxyAddresses")
	if !slices.Contains(pa, "SMTP:alice@example.com") || !slices.Contains(pa, "smtp:a.anders@example.com") {
		t.Errorf("alice proxyAddresses lost their prefix case: %q", pa)
	}
	if v := got["Grace Green"].GetAttributeValue("userAccountControl"); v != "514" {
		t.Errorf("grace userAccountControl = %q, want 514", v)
	}
	if v := got["Ivan Ito"].GetAttributeValues("memberOf"); !slices.Equal(v, []string{"cn=All Staff,ou=Groups,dc=example,dc=com"}) {
		t.Errorf("ivan memberOf = %q", v)
	}

	// The reader reads everything except passwords.
	r := search(t, c, srv.BaseDN, "(cn=reader)", "userPassword", "cn")
	if pw := r["reader"].GetAttributeValues("userPassword"); len(pw) != 0 {
		t.Errorf("reader can read userPassword: %q", pw)
	}

	// Anonymous users cannot read.
	anon, err := ldap.DialURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	res, err := anon.Search(ldap.NewSearchRequest(srv.BaseDN, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", nil, nil))
	if err == nil && len(res.Entries) > 0 {
		t.Errorf("anonymous search returned %d entries", len(res.Entries))
	}

	// Stop simulates an outage; Restart brings the same data back.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if srv.Running() {
		t.Fatal("Running after Stop")
	}
	if _, err := ldap.DialURL(srv.URL); err == nil {
		t.Fatal("dial succeeded after Stop")
	}
	if err := srv.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	c2 := peertest.Bind(t, srv.URL, readerDN, readerPassword)
	if n := len(search(t, c2, srv.BaseDN, defaultFilter, "cn")); n != len(want) {
		t.Errorf("after restart: %d entries, want %d", n, len(want))
	}
}

// TestLoadOverLDAP checks Load, Add, Replace and Delete and that the
// memberof overlay maintains memberOf on LDAP writes.
func TestLoadOverLDAP(t *testing.T) {
	srv := peertest.Slapd(t, slapd.Options{BaseDN: "dc=test,dc=org", AdminPassword: "s3cret"})
	if srv.AdminDN != "cn=admin,dc=test,dc=org" || srv.AdminPassword != "s3cret" {
		t.Fatalf("admin = %q / %q", srv.AdminDN, srv.AdminPassword)
	}
	if err := srv.LoadFile("testdata/small.ldif"); err != nil {
		t.Fatal(err)
	}
	c := peertest.Bind(t, srv.URL, srv.AdminDN, srv.AdminPassword)
	memberOf := func(cn string) []string {
		t.Helper()
		e := search(t, c, srv.BaseDN, "(cn="+cn+")", "cn", "memberOf")[cn]
		if e == nil {
			t.Fatalf("%s not found", cn)
		}
		v := e.GetAttributeValues("memberOf")
		slices.Sort(v)
		return v
	}
	if got := memberOf("u1"); !slices.Equal(got, []string{"cn=g1,ou=Groups,dc=test,dc=org"}) {
		t.Errorf("u1 memberOf after Load = %q", got)
	}
	// small.ldif's last record is a modify that adds u2 to g1.
	if got := memberOf("u2"); !slices.Equal(got, []string{"cn=g1,ou=Groups,dc=test,dc=org"}) {
		t.Errorf("u2 memberOf after Load = %q", got)
	}
	if err := srv.Add("cn=g2,ou=Groups,dc=test,dc=org", map[string][]string{
		"objectClass":    {"groupOfNames", "adGroup"},
		"cn":             {"g2"},
		"sAMAccountType": {"268435457"},
		"member":         {"cn=u1,ou=People,dc=test,dc=org"},
	}); err != nil {
		t.Fatal(err)
	}
	if got := memberOf("u1"); !slices.Equal(got, []string{"cn=g1,ou=Groups,dc=test,dc=org", "cn=g2,ou=Groups,dc=test,dc=org"}) {
		t.Errorf("u1 memberOf after Add = %q", got)
	}
	if err := srv.Replace("cn=g1,ou=Groups,dc=test,dc=org", "member", "cn=u2,ou=People,dc=test,dc=org"); err != nil {
		t.Fatal(err)
	}
	if got := memberOf("u1"); !slices.Equal(got, []string{"cn=g2,ou=Groups,dc=test,dc=org"}) {
		t.Errorf("u1 memberOf after Replace = %q", got)
	}
	if err := srv.Delete("cn=g2,ou=Groups,dc=test,dc=org"); err != nil {
		t.Fatal(err)
	}
	if got := memberOf("u1"); len(got) != 0 {
		t.Errorf("u1 memberOf after Delete = %q", got)
	}

	// Deleting a member removes it from its groups, as in AD.
	if err := srv.Add("cn=g3,ou=Groups,dc=test,dc=org", map[string][]string{
		"objectClass": {"groupOfNames"},
		"cn":          {"g3"},
		"member":      {"cn=u1,ou=People,dc=test,dc=org", "cn=u2,ou=People,dc=test,dc=org"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Delete("cn=u1,ou=People,dc=test,dc=org"); err != nil {
		t.Fatal(err)
	}
	g3 := search(t, c, srv.BaseDN, "(cn=g3)", "cn", "member")["g3"]
	if got := g3.GetAttributeValues("member"); !slices.Equal(got, []string{"cn=u2,ou=People,dc=test,dc=org"}) {
		t.Errorf("g3 member after deleting u1 = %q", got)
	}
	err := srv.Load(strings.NewReader("dn: cn=x,dc=test,dc=org\nobjectClass: inetOrgPerson\ncn: x\n"))
	if err == nil || !strings.Contains(err.Error(), "(ldif):1") || !strings.Contains(err.Error(), "sn") {
		t.Errorf("Load of an entry without sn: err = %v, want the record's line and the missing attribute", err)
	}
}

// TestLimits checks Options.SizeLimit: it limits paged searches of normal
// users in total, not the rootdn.
func TestLimits(t *testing.T) {
	gen := filepath.Join(t.TempDir(), "gen.ldif")
	writeGenerated(t, gen, slapd.GenOptions{Users: 20})
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{sampleLDIF, gen}, SizeLimit: 5})
	filter := "(sAMAccountType=805306368)"

	reader := peertest.Bind(t, srv.URL, readerDN, readerPassword)
	_, err := reader.SearchWithPaging(ldap.NewSearchRequest(srv.BaseDN, ldap.ScopeWholeSubtree, 0, 0, 0, false, filter, []string{"cn"}, nil), 3)
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		t.Errorf("paged search as reader: err = %v, want size limit exceeded", err)
	}
	admin := peertest.Bind(t, srv.URL, srv.AdminDN, srv.AdminPassword)
	if n := len(search(t, admin, srv.BaseDN, filter, "cn")); n != 29 {
		t.Errorf("admin found %d users, want 29", n)
	}
}

func TestTLS(t *testing.T) {
	srv := peertest.Slapd(t, slapd.Options{TLS: true})
	if srv.LDAPSURL == "" || srv.CAFile == "" {
		t.Fatalf("LDAPSURL %q, CAFile %q", srv.LDAPSURL, srv.CAFile)
	}
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	c, err := ldap.DialURL(srv.LDAPSURL, ldap.DialWithTLSConfig(cfg))
	if err != nil {
		t.Fatalf("ldaps: %v", err)
	}
	defer c.Close()
	if err := c.Bind(srv.AdminDN, srv.AdminPassword); err != nil {
		t.Fatalf("bind over ldaps: %v", err)
	}

	c2, err := ldap.DialURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.StartTLS(cfg); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if err := c2.Bind(srv.AdminDN, srv.AdminPassword); err != nil {
		t.Fatalf("bind after StartTLS: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badSchema := write("bad-schema.ldif", "dn: cn=u1,dc=example,dc=com\nobjectClass: inetOrgPerson\ncn: u1\nsn: u\n\n"+
		"# a comment\ndn: cn=u2,dc=example,dc=com\nobjectClass: inetOrgPerson\ncn: u2\n")
	badSyntax := write("bad-syntax.ldif", "dn: cn=u1,dc=example,dc=com\nobjectClass inetOrgPerson\n")
	modify := write("modify.ldif", "dn: cn=u1,dc=example,dc=com\nchangetype: delete\n")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name string
		opts slapd.Options
		want []string
	}{
		{"slapd missing", slapd.Options{SlapdPath: "/nonexistent/slapd"}, []string{"/nonexistent/slapd"}},
		{"schema violation names the source line", slapd.Options{LDIF: []string{badSchema}}, []string{"slapadd", "sn", "bad-schema.ldif:7"}},
		{"LDIF syntax", slapd.Options{LDIF: []string{badSyntax}}, []string{"bad-syntax.ldif:2", "attribute: value"}},
		{"not an add", slapd.Options{LDIF: []string{modify}}, []string{"modify.ldif:1", "only add"}},
		{"missing file", slapd.Options{LDIF: []string{filepath.Join(dir, "nope.ldif")}}, []string{"nope.ldif"}},
		{"port in use shows the log", slapd.Options{Port: busy.Addr().(*net.TCPAddr).Port}, []string{"Address already in use"}},
		{"bad base DN", slapd.Options{BaseDN: "cn=x=y"}, []string{"base DN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peertest.StartFails(t, func(ctx context.Context) (*slapd.Server, error) { return slapd.Start(ctx, tt.opts) }, tt.want...)
		})
	}
}

// TestSlapdNotInstalled checks the error when slapd is nowhere to be found.
func TestSlapdNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	defer slapd.SetProgramDirs([]string{t.TempDir()})()
	_, err := slapd.Start(context.Background(), slapd.Options{})
	if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "apt-get install slapd") {
		t.Fatalf("err = %v, want a not-found error that says what to install", err)
	}
}

func TestStopIsIdempotentAndKill(t *testing.T) {
	srv := peertest.Slapd(t, slapd.Options{})
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(context.Background()); err != nil {
		t.Fatalf("restart after kill: %v", err)
	}
	c := peertest.Bind(t, srv.URL, srv.AdminDN, srv.AdminPassword)
	if n := len(search(t, c, srv.BaseDN, "(objectClass=*)", "dc")); n != 1 {
		t.Errorf("%d entries, want the base entry", n)
	}
	dir := srv.Dir
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s: %v", dir, err)
	}
}

func writeGenerated(t testing.TB, path string, o slapd.GenOptions) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := slapd.GenerateDirectory(f, o); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGeneratedDirectory loads a generated directory with slapadd and checks
// its shape.
func TestGeneratedDirectory(t *testing.T) {
	gen := filepath.Join(t.TempDir(), "gen.ldif")
	writeGenerated(t, gen, slapd.GenOptions{Users: 250})
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{gen}})
	c := peertest.Bind(t, srv.URL, srv.AdminDN, srv.AdminPassword)
	got := search(t, c, srv.BaseDN, defaultFilter, "cn", "memberOf", "member", "proxyAddresses")
	var users, groups int
	for cn, e := range got {
		switch {
		case strings.HasPrefix(cn, "user"):
			users++
			if n := len(e.GetAttributeValues("memberOf")); n != 1 {
				t.Errorf("%s has %d memberOf values, want 1", cn, n)
			}
			if n := len(e.GetAttributeValues("proxyAddresses")); n != 2 {
				t.Errorf("%s has %d proxyAddresses, want 2", cn, n)
			}
		case strings.HasPrefix(cn, "group"):
			groups++
		}
	}
	if users != 250 || groups != 2 {
		t.Errorf("%d users, %d groups; want 250, 2", users, groups)
	}
	if n := len(got["group00000"].GetAttributeValues("member")) + len(got["group00001"].GetAttributeValues("member")); n != 250 {
		t.Errorf("groups have %d members in all, want 250", n)
	}
}
