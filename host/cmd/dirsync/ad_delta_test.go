package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/testpeer/samba"
)

// TestADDelta changes a Samba AD DC step by step and syncs it into three
// stores after each step: one always reads in full (--full); one reads
// deltas as an ordinary domain user (uSNChanged polling and the list of
// ids); one as a reader with "Replicating Directory Changes" (the DirSync
// control). After every step the three stores are byte-identical and the
// delta stores' runs say they read a delta. The domain's base is an OU, so
// that an entry can move out of it.
func TestADDelta(t *testing.T) {
	full := newADEnv(t, "")
	dc := full.dc
	b, err := os.ReadFile(full.config)
	if err != nil {
		t.Fatal(err)
	}
	full.write("dirsync.toml", strings.Replace(string(b), "base_dn       = \""+dc.BaseDN+"\"", "base_dn       = \""+full.people+"\"", 1))
	usn := full.twin()
	repl := full.twin()
	dn, pw, err := dc.AddReader(context.Background(), samba.Reader{Name: "dirsync-repl", GetChanges: true})
	if err != nil {
		t.Fatal(err)
	}
	repl.write("reader.pw", pw+"\n")
	b, _ = os.ReadFile(repl.config)
	repl.write("dirsync.toml", strings.Replace(string(b), "bind_dn       = \""+dc.ReaderDN+"\"", "bind_dn       = \""+dn+"\"", 1))
	stores := []*env{full.env, usn, repl}
	for _, e := range stores {
		e.ok("group", "add", "--domain", "example.com", "Sales")
	}
	alice := full.addUser(samba.User{CN: "Alice Anders", ProxyAddresses: []string{"SMTP:alice@example.com", "smtp:a.anders@example.com"}})
	bob := full.addUser(samba.User{CN: "Bob Brown", ProxyAddresses: []string{"SMTP:bob@example.com"}})
	carol := full.addUser(samba.User{CN: "Carol Clark", ProxyAddresses: []string{"SMTP:carol@example.com"}})
	sales, err := dc.AddGroup(samba.Group{CN: "Sales", Parent: full.people, Members: []string{alice, bob}})
	full.must(err)
	elsewhere, err := dc.AddOU("Elsewhere")
	full.must(err)
	var dave string

	steps := []struct {
		name   string
		change func() error
	}{
		{"first sync", nil},
		{"nothing changed", nil},
		{"add", func() error {
			dave = full.addUser(samba.User{CN: "Dave Dunn", ProxyAddresses: []string{"SMTP:dave@example.com"}})
			return nil
		}},
		{"modify address", func() error {
			return dc.Replace(alice, "proxyAddresses", "SMTP:alice@example.com", "smtp:alice.anders@example.com")
		}},
		{"group membership", func() error {
			if err := dc.AddMembers(sales, carol); err != nil {
				return err
			}
			return dc.RemoveMembers(sales, bob)
		}},
		{"rename", func() error {
			var err error
			carol, err = dc.Rename(carol, "Carol King")
			return err
		}},
		{"move out of the base", func() error {
			_, err := dc.Move(alice, elsewhere)
			return err
		}},
		{"delete", func() error { return dc.Delete(dave) }},
	}
	for i, step := range steps {
		if step.change != nil {
			if err := step.change(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		if got := full.syncRead("--full"); got != "full" {
			t.Errorf("%s: sync --full read %q", step.name, got)
		}
		for _, e := range stores[1:] {
			wantRead := "delta"
			if i == 0 {
				wantRead = "full"
			}
			if got := e.syncRead(); got != wantRead {
				t.Errorf("%s: sync by %s read %q, want %q", step.name, e.dir, got, wantRead)
			}
		}
		f := full.state()
		for _, e := range stores[1:] {
			if d := e.state(); d != f {
				t.Fatalf("%s: the stores differ\nfull:  %s\ndelta: %s", step.name, f, d)
			}
		}
	}
	m := usn.mailboxes()
	if len(m) != 2 || len(m["carol@example.com"].Groups) != 1 {
		t.Errorf("mailboxes after the steps: %+v", m)
	}
}
