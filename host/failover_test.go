package host_test

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// flakyProxy forwards TCP connections to target while up; while down its
// port refuses connections; cut closes those it forwards.
type flakyProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  int
	open   map[net.Conn]bool
	onConn func(n int) // called after accepting connection n (from 1)
}

func newFlakyProxy(t *testing.T, target string) *flakyProxy {
	p := &flakyProxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *flakyProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns++
			n, hook := p.conns, p.onConn
			if p.open == nil {
				p.open = map[net.Conn]bool{}
			}
			p.open[c] = true
			p.mu.Unlock()
			go func() {
				defer func() {
					p.mu.Lock()
					delete(p.open, c)
					p.mu.Unlock()
				}()
				u, err := net.Dial("tcp", p.target)
				if err != nil {
					c.Close()
					return
				}
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
				c.Close()
			}()
			if hook != nil {
				hook(n)
			}
		}
	}()
}

func (p *flakyProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
}

// cut closes the connections it forwards, as a network that drops them.
func (p *flakyProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.open {
		c.Close()
	}
}

func (p *flakyProxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

// exportLDIF writes every entry of srv, with entryUUID and entryCSN, as
// slapadd input (memberOf left out: the loader derives it).
func exportLDIF(t *testing.T, srv *slapd.Server, path string) {
	c, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(srv.AdminDN, srv.AdminPassword); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest(srv.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"*", "entryUUID", "entryCSN", "createTimestamp", "modifyTimestamp", "creatorsName", "modifiersName"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	// parents first
	entries := res.Entries
	for depth := 1; depth < 10; depth++ {
		for _, e := range entries {
			if strings.Count(e.DN, ",") != depth {
				continue
			}
			b.WriteString("dn: " + e.DN + "\n")
			for _, a := range e.Attributes {
				if strings.EqualFold(a.Name, "memberOf") {
					continue
				}
				for _, v := range a.Values {
					b.WriteString(a.Name + ":: " + base64.StdEncoding.EncodeToString([]byte(v)) + "\n")
				}
			}
			b.WriteString("\n")
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// failoverHost is a Host over a fresh SQLite store whose domain example.com
// reads urls in turn, with the builtin standard policy.
func failoverHost(t *testing.T, baseDN string, urls ...string) (*host.Host, *sqlite.Store) {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "reader.pw")
	if err := os.WriteFile(pw, []byte("reader-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := config.NewDomain("example.com")
	d.Sync, d.Policy, d.AliasDomains = true, "standard", []string{"example.org"}
	d.LDAP.URLs, d.LDAP.BaseDN, d.LDAP.BindDN, d.LDAP.PasswordFile = urls, baseDN, "cn=reader,dc=example,dc=com", pw
	return standardHost(t, dir, d)
}

// standardHost is a Host over a fresh SQLite store with the one domain d,
// its config in dir, and the builtin standard policy.
func standardHost(t *testing.T, dir string, d config.Domain) (*host.Host, *sqlite.Store) {
	t.Helper()
	cfg := &config.Config{Path: filepath.Join(dir, "dirsync.toml"),
		Manifest: &config.Manifest{Policies: []config.Policy{{Name: "standard", Runtime: "builtin"}}},
		Domains:  []config.Domain{d}}
	st := openSQLite(t)
	h, err := host.New(host.Options{Config: cfg, Store: st, Builtins: map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, st
}

// TestFailoverKeepsNoCookieOfAnotherServer: a full run takes its cookie
// from the first server, A, which then goes away, and reads the entries
// from the second, B, a replica that lags behind A. A delta from A's
// cookie would never read what A had and B had not; so the run keeps no
// cookie, and the next run, A back, reads in full and gets it.
func TestFailoverKeepsNoCookieOfAnotherServer(t *testing.T) {
	ctx := context.Background()
	sample, _ := filepath.Abs(filepath.Join("..", "examples", "directory", "sample.ldif"))
	a := peertest.Slapd(t, slapd.Options{LDIF: []string{sample}, LogLevel: "none"})
	snap := filepath.Join(t.TempDir(), "a.ldif")
	exportLDIF(t, a, snap)
	b := peertest.Slapd(t, slapd.Options{LDIF: []string{snap}, LogLevel: "none"}) // A as it was
	if err := a.Replace("cn=Alice Anders,ou=People,dc=example,dc=com", "displayName", "Alice A."); err != nil {
		t.Fatal(err)
	}
	p := newFlakyProxy(t, strings.TrimPrefix(a.URL, "ldap://"))
	p.onConn = func(n int) {
		if n == 1 { // the cookie came through; then A is away
			p.down()
		}
	}
	h, st := failoverHost(t, a.BaseDN, "ldap://"+p.addr, b.URL)
	rep, err := h.Run(ctx, "example.com", host.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Server != b.URL || len(rep.FailedOver) != 1 {
		t.Fatalf("the first run read from %s (failed over: %v), want B", rep.Server, rep.FailedOver)
	}
	if ds, err := st.DirStateHead(ctx, "example.com"); err != nil || ds != nil && len(ds.Cookie) > 0 {
		t.Fatalf("kept state %+v (%v): a cookie of A with B's entries", ds, err)
	}
	p.onConn = nil
	p.up()
	rep, err = h.Run(ctx, "example.com", host.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Read != store.ReadFull || rep.Server != "ldap://"+p.addr {
		t.Errorf("the run after read %q from %s, want a full read from A", rep.Read, rep.Server)
	}
	ms, err := st.Mailboxes(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Primary == "alice@example.com" && m.DisplayName != "Alice A." {
			t.Errorf("alice's display name is %q, A's %q", m.DisplayName, "Alice A.")
		}
	}
	if rep, err = h.Run(ctx, "example.com", host.RunOptions{}); err != nil || rep.Read != store.ReadDelta {
		t.Errorf("then: read %q (%v), want a delta from A's cookie", rep.Read, err)
	}
}

// TestDeltaFailsOverToAServerWithoutSync: the kept cookie is A's; A goes
// down, and B serves the same entries without content synchronization (no
// syncprov). The delta cannot be read from B; the run reads B in full.
func TestDeltaFailsOverToAServerWithoutSync(t *testing.T) {
	ctx := context.Background()
	sample, _ := filepath.Abs(filepath.Join("..", "examples", "directory", "sample.ldif"))
	a := peertest.Slapd(t, slapd.Options{LDIF: []string{sample}, LogLevel: "none"})
	b := peertest.Slapd(t, slapd.Options{LDIF: []string{sample}, LogLevel: "none", NoSyncProv: true})
	h, _ := failoverHost(t, a.BaseDN, a.URL, b.URL)
	if _, err := h.Run(ctx, "example.com", host.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Run(ctx, "example.com", host.RunOptions{})
	if err != nil || rep.Read != store.ReadFull || rep.Server != b.URL {
		t.Errorf("with A down: read %q from %s (%v), want a full read from B", rep.Read, rep.Server, err)
	}
}
