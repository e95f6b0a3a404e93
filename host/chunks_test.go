package host_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// partReads records, of each run that patched part of a state kept in
// chunks, how many chunks it read and how many the state has.
type partReads struct {
	mu   sync.Mutex
	read [][2]int64
}

func (p *partReads) Enabled(context.Context, slog.Level) bool { return true }
func (p *partReads) Handle(_ context.Context, r slog.Record) error {
	var read, all int64 = -1, -1
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "chunks_read":
			read = a.Value.Int64()
		case "chunks":
			all = a.Value.Int64()
		}
		return true
	})
	if read >= 0 {
		p.mu.Lock()
		p.read = append(p.read, [2]int64{read, all})
		p.mu.Unlock()
	}
	return nil
}
func (p *partReads) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *partReads) WithGroup(string) slog.Handler      { return p }

// last returns the chunks the last run read and the state's chunks, and
// forgets them; -1s when the last run read the whole state.
func (p *partReads) last() (read, all int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.read) == 0 {
		return -1, -1
	}
	r := p.read[len(p.read)-1]
	p.read = nil
	return r[0], r[1]
}

// TestDeltaReadsPartOfTheState: a directory of 600 users kept in chunks
// (the SQLite store is a store.ChunkStore). A delta that changes a user
// reads a few chunks of the state and writes back the one it changed; an
// add too. A delete that only the present phase tells (this slapd keeps no
// session log) needs every key: the run patches the whole state. After
// each, the store is what a full read makes of the directory. (Every
// delta's decision is also checked against one on the whole domain:
// DIRSYNC_CHECK_REACH, main_test.go.)
func TestDeltaReadsPartOfTheState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var ldif strings.Builder
	const users = 600
	for i := range users {
		fmt.Fprintf(&ldif, "dn: cn=user%03d,ou=People,dc=example,dc=com\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nobjectClass: adUser\ncn: user%03d\nsn: U\nsAMAccountType: 805306368\nproxyAddresses: SMTP:user%03d@example.com\n\n", i, i, i)
	}
	more := filepath.Join(dir, "users.ldif")
	if err := os.WriteFile(more, []byte(ldif.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	sample, _ := filepath.Abs(filepath.Join("..", "examples", "directory", "sample.ldif"))
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{sample, more}, LogLevel: "none"})
	pw := filepath.Join(dir, "admin.pw")
	if err := os.WriteFile(pw, []byte(srv.AdminPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	d := config.NewDomain("example.com")
	d.Sync, d.Policy, d.AliasDomains = true, "standard", []string{"example.org"}
	d.LDAP.URLs, d.LDAP.BaseDN, d.LDAP.BindDN, d.LDAP.PasswordFile = []string{srv.URL}, srv.BaseDN, srv.AdminDN, pw
	cfg := &config.Config{Path: filepath.Join(dir, "dirsync.toml"),
		Manifest: &config.Manifest{Policies: []config.Policy{{Name: "standard", Runtime: "builtin"}}},
		Domains:  []config.Domain{d}}
	st := openSQLite(t)
	reads := &partReads{}
	h, err := host.New(host.Options{Config: cfg, Store: st, Logger: slog.New(reads), Builtins: map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	run := func(o host.RunOptions) *host.Report {
		t.Helper()
		rep, err := h.Run(ctx, "example.com", o)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// The store after a delta is the one a full read makes: a full run
	// then changes nothing.
	asFull := func(what string) {
		t.Helper()
		if rep := run(host.RunOptions{Full: true}); rep.Counts.Created+rep.Counts.Updated+rep.Counts.Deleted+rep.Counts.MembersAdded+rep.Counts.MembersRemoved != 0 {
			t.Errorf("%s: a full run after the delta changes %+v", what, rep.Counts)
		}
		reads.last()
	}
	run(host.RunOptions{})
	reads.last()
	const people = "ou=People,dc=example,dc=com"
	steps := []struct {
		name   string
		change func() error
		part   bool // patched in part
		check  func(map[string]store.Mailbox) bool
	}{
		{"modify", func() error { return srv.Replace("cn=user123,"+people, "displayName", "Changed") }, true,
			func(m map[string]store.Mailbox) bool { return m["user123@example.com"].DisplayName == "Changed" }},
		{"add", func() error {
			return srv.Add("cn=user900,"+people, map[string][]string{
				"objectClass": {"top", "person", "organizationalPerson", "inetOrgPerson", "adUser"},
				"cn":          {"user900"}, "sn": {"U"}, "sAMAccountType": {"805306368"}, "proxyAddresses": {"SMTP:user900@example.com"},
			})
		}, true, func(m map[string]store.Mailbox) bool { _, ok := m["user900@example.com"]; return ok }},
		{"address taken from another", func() error {
			if err := srv.Replace("cn=user007,"+people, "proxyAddresses", "SMTP:user007@example.com"); err != nil {
				return err
			}
			return srv.Replace("cn=user500,"+people, "proxyAddresses", "SMTP:user500@example.com", "smtp:seven@example.com")
		}, true, func(m map[string]store.Mailbox) bool { return len(m["user500@example.com"].Aliases) == 1 }},
		{"delete, told only by the present phase", func() error { return srv.Delete("cn=user321," + people) }, false,
			func(m map[string]store.Mailbox) bool { _, ok := m["user321@example.com"]; return !ok }},
	}
	for _, step := range steps {
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		rep := run(host.RunOptions{})
		if rep.Read != store.ReadDelta {
			t.Errorf("%s: read %q, want a delta", step.name, rep.Read)
		}
		read, all := reads.last()
		switch {
		case step.part && (read < 1 || read*3 > all):
			t.Errorf("%s: read %d of %d chunks, want a few", step.name, read, all)
		case !step.part && read >= 0:
			t.Errorf("%s: read %d of %d chunks, want the whole state", step.name, read, all)
		}
		ms, err := st.Mailboxes(ctx, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		byAddr := map[string]store.Mailbox{}
		for _, m := range ms {
			byAddr[m.Primary] = m
		}
		if !step.check(byAddr) {
			t.Errorf("%s: the store does not show the change", step.name)
		}
		asFull(step.name)
	}
}

// writeBeforePart is a store whose SnapshotPart, once armed, first writes
// the domain (a hand-made mailbox): the part then is of a newer generation
// than the kept state, as when an operator writes while a delta reads.
type writeBeforePart struct {
	*sqlite.Store
	armed bool
}

func (w *writeBeforePart) SnapshotPart(ctx context.Context, domain string, aliasDomains []string, dirIDs, addresses []string) (*store.Snapshot, int, error) {
	if w.armed {
		w.armed = false
		if _, err := w.AddMailbox(ctx, domain, store.Mailbox{Primary: "hand@example.com"}); err != nil {
			return nil, 0, err
		}
	}
	return w.Store.SnapshotPart(ctx, domain, aliasDomains, dirIDs, addresses)
}

// TestPartThenWholeDomain: a delta read part of the kept state, and then
// the domain was written: the run decides on the whole domain, with the
// whole state patched (with only the part, every mailbox outside it would
// go).
func TestPartThenWholeDomain(t *testing.T) {
	ctx := context.Background()
	srv, dir, d := liveDomain(t)
	d.Live = false
	cfg := &config.Config{Path: filepath.Join(dir, "dirsync.toml"),
		Manifest: &config.Manifest{Policies: []config.Policy{{Name: "standard", Runtime: "builtin"}}},
		Domains:  []config.Domain{d}}
	st := &writeBeforePart{Store: openSQLite(t)}
	h, err := host.New(host.Options{Config: cfg, Store: st, Builtins: map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Run(ctx, "example.com", host.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := st.Mailboxes(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Replace("cn=Alice Anders,ou=People,dc=example,dc=com", "displayName", "Alice A."); err != nil {
		t.Fatal(err)
	}
	st.armed = true
	rep, err := h.Run(ctx, "example.com", host.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.armed {
		t.Fatal("the run read no part: the case is not the one tested")
	}
	if rep.Counts.Deleted != 0 || rep.Counts.Updated != 1 || rep.Counts.Reached != 0 {
		t.Errorf("the run after the write: %+v; want alice updated, nothing deleted, on the whole domain", rep.Counts)
	}
	after, err := st.Mailboxes(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before)+1 {
		t.Errorf("%d mailboxes, want the %d there were and the hand-made one", len(after), len(before))
	}
}

// TestDeltaFromAnEmptyState: a domain whose base holds no entry yet keeps
// a state of no chunk; the next change is still read as a delta (a state
// of no chunk read back as none read in full every time).
func TestDeltaFromAnEmptyState(t *testing.T) {
	ctx := context.Background()
	srv, dir, d := liveDomain(t)
	d.Live = false
	if err := srv.Add("ou=Empty,"+srv.BaseDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"Empty"}}); err != nil {
		t.Fatal(err)
	}
	d.LDAP.BaseDN = "ou=Empty," + srv.BaseDN
	h, st := standardHost(t, dir, d)
	if rep, err := h.Run(ctx, "example.com", host.RunOptions{}); err != nil || rep.Counts.Entries != 0 {
		t.Fatalf("first sync: %v, %+v", err, rep)
	}
	if err := srv.Add("cn=zed,ou=Empty,"+srv.BaseDN, map[string][]string{"objectClass": {"top", "person", "organizationalPerson", "inetOrgPerson", "adUser"},
		"cn": {"zed"}, "sn": {"U"}, "sAMAccountType": {"805306368"}, "proxyAddresses": {"SMTP:zed@example.com"}}); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Run(ctx, "example.com", host.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Read != store.ReadDelta || rep.Counts.Created != 1 {
		t.Errorf("the sync after the first entry came: read %q, created %d; want a delta that creates it", rep.Read, rep.Counts.Created)
	}
	if ms, _ := st.Mailboxes(ctx, "example.com"); len(ms) != 1 {
		t.Errorf("%d mailboxes, want zed's", len(ms))
	}
}
