package samba_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/samba"
	"github.com/go-ldap/ldap/v3"
)

const defaultFilter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"

// must returns v, or fails the test given to the function it returns:
// must(dc.AddOU("People"))(t).
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestDomainController creates users and groups through Samba and reads
// them back as the ordinary reader account, the way dirsync does: AD sets
// objectGUID, sAMAccountType and memberOf; a paged search at the domain
// root also returns references to the other naming contexts.
func TestDomainController(t *testing.T) {
	dc := peertest.Samba(t, samba.Options{})
	if dc.URL != "ldap://127.0.0.1:389" || dc.BaseDN != "DC=samdom,DC=example,DC=com" || dc.Realm != "SAMDOM.EXAMPLE.COM" {
		t.Errorf("server = %s %s %s", dc.URL, dc.BaseDN, dc.Realm)
	}
	people := must(dc.AddOU("People"))(t)
	alice := must(dc.AddUser(samba.User{CN: "Alice Anders", Parent: people, DisplayName: "Alice",
		ProxyAddresses: []string{"SMTP:alice@example.com", "smtp:a.anders@example.com", "X500:/o=Example/cn=alice"}}))(t)
	bob := must(dc.AddUser(samba.User{CN: "Bob Brown", Parent: people, Mail: []string{"bob@example.com"}, Disabled: true}))(t)
	sales := must(dc.AddGroup(samba.Group{CN: "Sales", Members: []string{alice, bob}}))(t)
	news := must(dc.AddGroup(samba.Group{CN: "News", Distribution: true, Members: []string{alice}, Mail: []string{"news@example.com"}}))(t)

	c := peertest.Bind(t, dc.URL, dc.ReaderDN, dc.ReaderPassword)
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		defaultFilter, []string{"objectGUID", "sAMAccountType", "memberOf", "member", "userAccountControl", "proxyAddresses", "mail", "sAMAccountName"}, nil), 100)
	if err != nil {
		t.Fatal(err)
	}
	byDN := map[string]*ldap.Entry{}
	for _, e := range res.Entries {
		byDN[e.DN] = e
		if g := e.GetRawAttributeValue("objectGUID"); len(g) != 16 {
			t.Errorf("%s: objectGUID of %d bytes", e.DN, len(g))
		}
	}
	// The referrals a search at the root of an AD domain returns.
	refs := strings.Join(res.Referrals, " ")
	for _, nc := range []string{"CN=Configuration,", "DC=DomainDnsZones,", "DC=ForestDnsZones,"} {
		if !strings.Contains(refs, nc) {
			t.Errorf("referrals %q lack %s", res.Referrals, nc)
		}
	}
	tests := []struct {
		dn, attr string
		want     []string
	}{
		{alice, "sAMAccountType", []string{"805306368"}},
		{alice, "userAccountControl", []string{"512"}},
		{alice, "sAMAccountName", []string{"alice.anders"}},
		{alice, "proxyAddresses", []string{"SMTP:alice@example.com", "X500:/o=Example/cn=alice", "smtp:a.anders@example.com"}},
		{alice, "memberOf", []string{news, sales}},
		{bob, "userAccountControl", []string{"514"}},
		{bob, "mail", []string{"bob@example.com"}},
		{bob, "memberOf", []string{sales}},
		{sales, "sAMAccountType", []string{"268435456"}},
		{sales, "member", []string{alice, bob}},
		{news, "sAMAccountType", []string{"268435457"}},
		{"CN=Administrator,CN=Users," + dc.BaseDN, "sAMAccountType", []string{"805306368"}},
	}
	for _, tt := range tests {
		e := byDN[tt.dn]
		if e == nil {
			t.Errorf("%s not found by the default filter", tt.dn)
			continue
		}
		got := slices.Sorted(slices.Values(e.GetAttributeValues(tt.attr)))
		if !slices.Equal(got, slices.Sorted(slices.Values(tt.want))) {
			t.Errorf("%s %s = %q, want %q", tt.dn, tt.attr, got, tt.want)
		}
	}

	// ldaps and StartTLS, verified with the DC's CA.
	pem := must(os.ReadFile(dc.CAFile))(t)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", dc.CAFile)
	}
	tc, err := ldap.DialURL(dc.LDAPSURL, ldap.DialWithTLSConfig(&tls.Config{RootCAs: roots}))
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Bind(dc.ReaderDN, dc.ReaderPassword); err != nil {
		t.Errorf("bind over ldaps: %v", err)
	}
	tc.Close()
	tc, err = ldap.DialURL(dc.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.StartTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}); err != nil {
		t.Errorf("StartTLS: %v", err)
	}
	tc.Close()

	// A rename and move keeps the objectGUID; memberOf follows.
	guid := must(dc.ObjectGUID(alice))(t)
	moved := must(dc.AddOU("Moved"))(t)
	alice2 := must(dc.ModifyDN(alice, "CN=Alice Smith", moved))(t)
	if want := "CN=Alice Smith," + moved; alice2 != want {
		t.Errorf("new DN %q, want %q", alice2, want)
	}
	if g := must(dc.ObjectGUID(alice2))(t); string(g) != string(guid) {
		t.Errorf("objectGUID changed with the rename: %x -> %x", guid, g)
	}
	e := must(dc.Entry(sales, "member"))(t)
	if got := slices.Sorted(slices.Values(e.GetAttributeValues("member"))); !slices.Equal(got, []string{alice2, bob}) {
		t.Errorf("Sales member after the rename = %q", got)
	}
	// Rename in place.
	bob2 := must(dc.ModifyDN(bob, "CN=Bob B", ""))(t)
	if bob2 != "CN=Bob B,"+people {
		t.Errorf("renamed DN %q", bob2)
	}
	if err := dc.Replace(bob2, "userAccountControl", "512"); err != nil {
		t.Fatal(err)
	}
	if err := dc.Delete(bob2); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Entry(bob2); !ldap.IsErrorWithCode(errors.Unwrap(err), ldap.LDAPResultNoSuchObject) {
		t.Errorf("read after delete: %v", err)
	}
	// Errors name the entry.
	_, err = dc.AddUser(samba.User{CN: "Alice Smith", Parent: moved})
	if err == nil || !strings.Contains(err.Error(), "CN=Alice Smith,"+moved) || !strings.Contains(err.Error(), "Already Exists") {
		t.Errorf("duplicate add: %v", err)
	}
}

// TestLargeGroup adds 1,600 users and a group of all of them: AD keeps
// every member and every memberOf (Samba sends all values unless asked for
// a range).
func TestLargeGroup(t *testing.T) {
	dc := peertest.Samba(t, samba.Options{})
	people := must(dc.AddOU("People"))(t)
	users := make([]samba.User, 1600)
	for i := range users {
		users[i] = samba.User{CN: fmt.Sprintf("User %04d", i), Parent: people, ProxyAddresses: []string{fmt.Sprintf("SMTP:user%04d@example.com", i)}}
	}
	start := time.Now()
	dns := must(dc.AddUsers(users))(t)
	t.Logf("1600 users added in %v", time.Since(start))
	g := must(dc.AddGroup(samba.Group{CN: "All Staff", Parent: people, Members: dns}))(t)
	e := must(dc.Entry(g, "member"))(t)
	if n := len(e.GetAttributeValues("member")); n != 1600 {
		t.Errorf("%d members, want 1600", n)
	}
	e = must(dc.Entry(dns[1599], "memberOf"))(t)
	if got := e.GetAttributeValues("memberOf"); !slices.Equal(got, []string{g}) {
		t.Errorf("memberOf = %q", got)
	}
}

// alive reports whether a process pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	return err == nil && p.Signal(syscall.Signal(0)) == nil
}

// processesIn lists the processes whose command line mentions dir.
func processesIn(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), dir) {
			out = append(out, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestStopRestartClose: Stop and Kill leave no process and free the port,
// Restart keeps the data, Close removes the folder and frees the lock.
func TestStopRestartClose(t *testing.T) {
	ctx := context.Background()
	dc, err := samba.Start(ctx, samba.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	dir := dc.Dir
	user := must(dc.AddUser(samba.User{CN: "Kept"}))(t)
	for _, stop := range []struct {
		name string
		fn   func() error
	}{{"stop", dc.Stop}, {"kill", dc.Kill}} {
		pid := dc.Pid()
		if err := stop.fn(); err != nil {
			t.Fatal(err)
		}
		if alive(pid) || dc.Running() {
			t.Fatalf("%s: samba (pid %d) still runs", stop.name, pid)
		}
		if ps := processesIn(dir); len(ps) > 0 {
			t.Fatalf("%s left processes: %q", stop.name, ps)
		}
		// (The lock is still held: no other test's DC can be there.)
		if c, err := net.DialTimeout("tcp", samba.Addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s: %s still accepts connections", stop.name, samba.Addr)
		}
		if err := stop.fn(); err != nil { // again: nothing to do
			t.Fatal(err)
		}
		if err := dc.Restart(ctx); err != nil {
			t.Fatalf("restart after %s: %v", stop.name, err)
		}
		if _, err := dc.Entry(user, "cn"); err != nil {
			t.Fatalf("after %s and restart: %v", stop.name, err)
		}
	}
	pid := dc.Pid()
	if err := dc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if alive(pid) || len(processesIn(dir)) > 0 {
		t.Fatalf("Close left samba running")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s: %v", dir, err)
	}
	// The lock is free and the template stays.
	dc2 := peertest.Samba(t, samba.Options{})
	if dc2.Timings.Provision != 0 {
		t.Errorf("second start: %v, want the cached template", dc2.Timings)
	}
}

// TestOneAtATime: a second Start waits for the first server's Close.
func TestOneAtATime(t *testing.T) {
	dc := peertest.Samba(t, samba.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := samba.Start(ctx, samba.Options{})
	if err == nil || !strings.Contains(err.Error(), "only one Samba DC runs at a time") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Start: %v", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("error does not name the holder: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		s, err := samba.Start(context.Background(), samba.Options{})
		if err == nil {
			err = s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("second Start returned while the first runs: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := dc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("second Start after Close: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		opts samba.Options
		want []string
	}{
		{"samba missing", samba.Options{SambaPath: "/nonexistent/samba"}, []string{"/nonexistent/samba", "apt-get install samba samba-ad-dc"}},
		{"samba-tool missing", samba.Options{SambaToolPath: "/nonexistent/samba-tool"}, []string{"/nonexistent/samba-tool"}},
		{"bad realm", samba.Options{Realm: "EXAMPLE COM"}, []string{"realm"}},
		{"bad config line", samba.Options{Config: []string{"log level = 1\n[share]"}}, []string{"line break"}},
		{"bad config option", samba.Options{Config: []string{"server services = no-such-service"}}, []string{"exited during start", "samba.log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peertest.StartFails(t, func(ctx context.Context) (*samba.Server, error) { return samba.Start(ctx, tt.opts) }, tt.want...)
		})
	}
}

func TestNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	defer samba.SetProgramDirs([]string{t.TempDir()})()
	_, err := samba.Start(context.Background(), samba.Options{})
	if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "apt-get install samba samba-ad-dc samba-ad-provision samba-dsdb-modules") {
		t.Fatalf("err = %v, want a not-found error that says what to install", err)
	}
}

// BenchmarkStart measures a start from the cached template and one that
// provisions the domain anew.
//
//	go test -run '^$' -bench Start -benchtime 3x ./host/internal/testpeer/samba
func BenchmarkStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts samba.Options
	}{{"template", samba.Options{}}, {"provision", samba.Options{NoTemplate: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			var sum samba.Timings
			for b.Loop() {
				s, err := samba.Start(context.Background(), bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				sum.Provision += s.Timings.Provision
				sum.Copy += s.Timings.Copy
				sum.Start += s.Timings.Start
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			n := float64(b.N)
			b.ReportMetric(sum.Provision.Seconds()/n, "provision-s/op")
			b.ReportMetric(sum.Copy.Seconds()/n, "copy-s/op")
			b.ReportMetric(sum.Start.Seconds()/n, "start-s/op")
		})
	}
}
