package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/ldapfetch"
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

	// A DirSync cookie the DC refuses, and a USN of another DC (a
	// failover, or the DC's database restored): each run reads in full,
	// says why, changes nothing, and the next one reads a delta again.
	f := full.state()
	for _, c := range []struct {
		e      *env
		cookie func([]byte) []byte
		why    string
	}{
		{repl, func([]byte) []byte { return []byte("dnot a cookie the DC gave") }, "refused the DirSync cookie"},
		{usn, func(b []byte) []byte {
			var st ldapfetch.USNState
			full.must(json.Unmarshal(b[1:], &st))
			st.DSServiceName = strings.Replace(st.DSServiceName, "CN=NTDS Settings,", "CN=NTDS Settings,CN=OTHERDC,", 1)
			nb, err := json.Marshal(st)
			full.must(err)
			return append([]byte{'u'}, nb...)
		}, "another domain controller answers"},
	} {
		db, err := sql.Open("sqlite", filepath.Join(c.e.dir, "var", "dirsync.db"))
		full.must(err)
		var cookie []byte
		full.must(db.QueryRow(`SELECT cookie FROM dir_state`).Scan(&cookie))
		_, err = db.Exec(`UPDATE dir_state SET cookie = ?`, c.cookie(cookie))
		full.must(err)
		db.Close()
		t.Setenv("DIRSYNC_LOG", "debug")
		code, out, errs := c.e.run("sync", "--domain", "example.com", "--json")
		t.Setenv("DIRSYNC_LOG", "")
		var rep deltaReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Read != "full" || !strings.Contains(errs, c.why) {
			t.Errorf("sync by %s with a cookie that does not fit: exit %d, read %q, want full, because %q\n%s\n%s", c.e.dir, code, rep.Read, c.why, out, errs)
		}
		if got := c.e.syncRead(); got != "delta" {
			t.Errorf("sync by %s after that read %q", c.e.dir, got)
		}
		if d := c.e.state(); d != f {
			t.Errorf("sync by %s: the stores differ after a full read from a refused cookie\nfull:  %s\ndelta: %s", c.e.dir, f, d)
		}
	}
}
