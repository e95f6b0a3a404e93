package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/storetest"
	"github.com/dirsync/dirsync/sdk"
)

// open opens a new store in a file under a directory that does not exist yet.
func open(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(filepath.Join(tb.TempDir(), "var", "dirsync.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(":memory:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "dirsync.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open("file:" + path + "?_pragma=cache_size(-4000)")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version int
	var mode string
	var fk int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) || mode != "wal" || fk != 1 {
		t.Errorf("user_version %d, journal_mode %s, foreign_keys %d; want %d, wal, 1", version, mode, fk, len(migrations))
	}
	gs, err := s.Groups(ctx, "example.com")
	if err != nil || len(gs) != 1 {
		t.Errorf("Groups after reopen = %v, %v", gs, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dirsync.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open accepted a schema newer than it knows")
	}
}

// Apply records the changes it made when the caller leaves run.Changes nil.
func TestApplyFillsRunChanges(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	if err := s.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Fatal(err)
	}
	alice := &store.Mailbox{DirID: "g1", DN: "cn=alice", Kind: sdk.KindUser, Primary: "alice@example.com",
		Aliases: []string{"al@example.com"}, Groups: []string{"Sales"}}
	run := newRun(t, s)
	changes := []store.Change{
		{Kind: sdk.ChangeCreate, After: alice},
		{Kind: sdk.ChangeAddMember, After: &store.Mailbox{DirID: "g1", Primary: "alice@example.com"}, Group: "Sales"},
	}
	if err := s.Apply(ctx, "example.com", changes, run); err != nil {
		t.Fatal(err)
	}
	want := []store.RunChange{
		{Kind: "create", Address: "alice@example.com", After: &store.MailboxView{
			Primary: "alice@example.com", Aliases: []string{"al@example.com"}, Kind: sdk.KindUser,
			DN: "cn=alice", Groups: []string{"Sales"}}},
		{Kind: "add_member", Address: "alice@example.com", Group: "Sales"},
	}
	runs, err := storetest.AllRuns(ctx, s, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != run.ID || runs[0].Domain != "example.com" || !reflect.DeepEqual(runs[0].Changes, want) {
		t.Errorf("Runs = %+v\nwant one run %d with changes %+v", runs, run.ID, want)
	}
}

// A cancelled Apply stops between changes and writes nothing.
func TestApplyCancelled(t *testing.T) {
	s := storeWithGroups(t)
	changes := createChanges(100_000)
	run := newRun(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := s.Apply(ctx, "example.com", changes, run)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply = %v, want context.Canceled", err)
	}
	if ms, err := s.Mailboxes(t.Context(), "example.com"); err != nil || len(ms) != 0 {
		t.Errorf("a cancelled Apply left %d mailboxes (%v)", len(ms), err)
	}
	if runs, err := storetest.AllRuns(t.Context(), s, "example.com"); err != nil || len(runs) != 0 {
		t.Errorf("a cancelled Apply recorded %d runs (%v)", len(runs), err)
	}
}

// newRun is a successful run of example.com computed from its current
// generation.
func newRun(tb testing.TB, s *Store) *store.Run {
	tb.Helper()
	snap, err := s.Snapshot(tb.Context(), "example.com", nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &store.Run{Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK, Generation: snap.Generation}
}

// createChanges returns n creates with one alias and one group each.
func createChanges(n int) []store.Change {
	changes := make([]store.Change, n)
	for i := range changes {
		changes[i] = store.Change{Kind: sdk.ChangeCreate, After: &store.Mailbox{
			DirID:       fmt.Sprintf("0b5c3f9e-%04x-4e2b-9d1a-%012x", i%0x10000, i),
			DN:          fmt.Sprintf("CN=User %d,OU=Staff,DC=example,DC=com", i),
			Kind:        sdk.KindUser,
			Primary:     fmt.Sprintf("user%06d@example.com", i),
			Aliases:     []string{fmt.Sprintf("u%06d@example.org", i)},
			DisplayName: fmt.Sprintf("User %d", i),
			Source:      sdk.SourceLDAP,
			Groups:      []string{fmt.Sprintf("Group %d", i%20)},
		}}
	}
	return changes
}

// storeWithGroups opens a new store with the 20 groups createChanges uses.
func storeWithGroups(tb testing.TB) *Store {
	s := open(tb)
	for g := range 20 {
		if err := s.AddGroup(tb.Context(), "example.com", fmt.Sprintf("Group %d", g)); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// BenchmarkApplyCreate100k applies the first sync of a 100,000-user domain:
// 100,000 creates with one alias and one group each, in one Apply.
func BenchmarkApplyCreate100k(b *testing.B) {
	changes := createChanges(100_000)
	for b.Loop() {
		b.StopTimer()
		s := storeWithGroups(b)
		run := newRun(b, s)
		b.StartTimer()
		if err := s.Apply(b.Context(), "example.com", changes, run); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshot100k reads a 100,000-mailbox domain.
func BenchmarkSnapshot100k(b *testing.B) {
	s := storeWithGroups(b)
	run := newRun(b, s)
	if err := s.Apply(b.Context(), "example.com", createChanges(100_000), run); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		snap, err := s.Snapshot(b.Context(), "example.com", []string{"example.org"})
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Mailboxes) != 100_000 || len(snap.Owners) != 200_000 {
			b.Fatalf("%d mailboxes, %d owners", len(snap.Mailboxes), len(snap.Owners))
		}
	}
}

// copyV1 copies testdata/v1.db, a store written by the release with schema
// version 1, to a new directory and returns the copy's path.
//
// v1.db holds example.com with the groups Sales and Support; the hand-made
// mailboxes carol@example.com (alias c@example.com, in Support) and
// info@example.com (a public folder); the LDAP mailboxes alice@example.com
// (aliases al@example.com, alice@example.org; in Sales by the directory and
// in Support by hand) and bob@example.com (alias b@example.com; in Sales and
// Support); an ok run that created alice and bob, and a failed run.
func copyV1(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dirsync.db")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Open upgrades a store written by the previous release in place: all of it
// reads back, and a sync applies to it.
func TestUpgradeFromV1(t *testing.T) {
	ctx := t.Context()
	s, err := Open(copyV1(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("user_version = %d, %v; want %d", version, err, len(migrations))
	}

	const d = "example.com"
	alice := store.Mailbox{ID: 3, DirID: "guid-a", DN: "cn=alice,dc=example,dc=com", Kind: sdk.KindUser,
		Primary: "alice@example.com", Aliases: []string{"al@example.com", "alice@example.org"}, DisplayName: "Alice",
		Source: sdk.SourceLDAP, Groups: []string{"Sales", "Support"}}
	bob := store.Mailbox{ID: 4, DirID: "guid-b", DN: "cn=bob,dc=example,dc=com", Kind: sdk.KindUser,
		Primary: "bob@example.com", Aliases: []string{"b@example.com"}, DisplayName: "Bob",
		Source: sdk.SourceLDAP, Groups: []string{"Sales", "Support"}}
	wantMailboxes := []store.Mailbox{
		alice, bob,
		{ID: 1, Kind: sdk.KindUser, Primary: "carol@example.com", Aliases: []string{"c@example.com"}, DisplayName: "Carol",
			Source: sdk.SourceManual, Groups: []string{"Support"}},
		{ID: 2, Kind: sdk.KindPublicFolder, Primary: "info@example.com", Source: sdk.SourceManual},
	}
	ms, err := s.Mailboxes(ctx, d)
	if err != nil || !reflect.DeepEqual(ms, wantMailboxes) {
		t.Errorf("Mailboxes = %+v, %v\nwant        %+v", ms, err, wantMailboxes)
	}
	wantGroups := []store.Group{{Name: "Sales", Source: sdk.SourceManual}, {Name: "Support", Source: sdk.SourceManual}}
	if gs, err := s.Groups(ctx, d); err != nil || !reflect.DeepEqual(gs, wantGroups) {
		t.Errorf("Groups = %+v, %v; want %+v", gs, err, wantGroups)
	}
	if p, err := s.Resolve(ctx, "alice@example.org"); err != nil || p != "alice@example.com" {
		t.Errorf("Resolve = %q, %v", p, err)
	}

	t0 := time.Date(2025, 3, 1, 10, 0, 0, 123456000, time.UTC)
	view := func(m store.Mailbox) *store.MailboxView {
		return &store.MailboxView{Primary: m.Primary, Aliases: m.Aliases, DisplayName: m.DisplayName, Kind: m.Kind, DN: m.DN,
			Groups: []string{"Sales"}}
	}
	wantBob := view(bob)
	wantBob.Groups = []string{"Sales", "Support"}
	wantRuns := []store.Run{
		{ID: 2, Domain: d, Started: t0.Add(time.Hour), Ended: t0.Add(time.Hour + time.Second), Outcome: store.OutcomeFailed,
			Error: "ldap: bind failed", Server: "ldap://dc1.example.com"},
		// The change count of a run kept before there was one is
		// counted by the upgrade.
		{ID: 1, Domain: d, Started: t0, Ended: t0.Add(1500 * time.Millisecond), Outcome: store.OutcomeOK,
			Server: "ldap://dc1.example.com", Counts: store.Counts{Created: 2, Entries: 3, Skipped: 1}, ChangeCount: 2,
			Changes: []store.RunChange{
				{Kind: "create", Address: "alice@example.com", After: view(alice)},
				{Kind: "create", Address: "bob@example.com", After: wantBob},
			}},
	}
	runs, err := storetest.AllRuns(ctx, s, d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range runs {
		runs[i].Started, runs[i].Ended = runs[i].Started.UTC(), runs[i].Ended.UTC()
	}
	if !reflect.DeepEqual(runs, wantRuns) {
		t.Errorf("Runs = %+v\nwant   %+v", runs, wantRuns)
	}

	// A sync runs on it: lease, start, apply.
	if _, err := s.AcquireLease(ctx, d, "host-a", time.Minute); err != nil {
		t.Fatal(err)
	}
	run := &store.Run{Domain: d, Started: time.Now(), Holder: "host-a"}
	if err := s.StartRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx, d, []string{"example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Generation != 0 || len(snap.Mailboxes) != 4 || snap.Owners["alice@example.org"] != 3 {
		t.Errorf("Snapshot = %+v, want generation 0, 4 mailboxes and alice@example.org owned by 3", snap)
	}
	renamed := bob
	renamed.DisplayName = "Robert"
	changes := []store.Change{
		{Kind: sdk.ChangeUpdate, Before: &bob, After: &renamed},
		{Kind: sdk.ChangeRemoveMember, Before: &alice, Group: "Support"},
		{Kind: sdk.ChangeCreate, After: &store.Mailbox{DirID: "guid-d", Kind: sdk.KindUser, Primary: "dave@example.com",
			Groups: []string{"Sales"}}},
	}
	run.Ended, run.Outcome, run.Generation = time.Now(), store.OutcomeOK, snap.Generation
	if err := s.Apply(ctx, d, changes, run); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if run.ID != 3 {
		t.Errorf("new run id %d, want 3", run.ID)
	}
	snap, err = s.Snapshot(ctx, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Mailboxes[1]; got.DisplayName != "Robert" || got.ID != 4 {
		t.Errorf("bob after the sync = %+v", got)
	}
	if got := snap.Mailboxes[0].Groups; !reflect.DeepEqual(got, []string{"Sales"}) {
		t.Errorf("alice's groups after the sync = %v, want [Sales]", got)
	}
	if got := snap.Mailboxes[3]; got.Primary != "dave@example.com" || got.ID != 5 {
		t.Errorf("the new mailbox = %+v, want dave@example.com with id 5", got)
	}
	if snap.Generation != 1 {
		t.Errorf("generation after the sync = %d, want 1", snap.Generation)
	}
	if runs, err := storetest.AllRuns(ctx, s, d); err != nil || len(runs) != 3 || runs[0].ID != 3 || runs[0].Outcome != store.OutcomeOK ||
		len(runs[0].Changes) != 3 || runs[0].Holder != "host-a" {
		t.Errorf("Runs after the sync = %+v, %v", runs, err)
	}

	// The tables, columns and indexes of later versions are there, and work
	// on the old rows.
	for _, name := range []string{"settings", "leases", "runs_domain_id", "runs_ended", "runs_running", "dir_state"} {
		var n int
		if err := s.db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = ?`, name).Scan(&n); err != nil || n != 1 {
			t.Errorf("%s after the upgrade: %d, %v; want it made", name, n, err)
		}
	}
	for _, col := range []string{"settings_version", "change_count", "read"} {
		var n int
		if err := s.db.QueryRow(`SELECT count(*) FROM pragma_table_info('runs') WHERE name = ?`, col).Scan(&n); err != nil || n != 1 {
			t.Errorf("runs.%s after the upgrade: %d, %v", col, n, err)
		}
	}
	if ds, err := s.DirState(ctx, d); err != nil || ds != nil {
		t.Errorf("DirState after the upgrade = %+v, %v; want none", ds, err)
	}
	page, err := s.RunsPage(ctx, d, 2, 0)
	if err != nil || len(page) != 2 || page[0].ID != 3 || page[1].ID != 2 || page[0].Changes != nil || page[0].ChangeCount != 3 {
		t.Errorf("RunsPage after the upgrade = %+v, %v; want runs 3 and 2 without changes, 3 of run 3's counted", page, err)
	}
	first, err := s.Run(ctx, d, 1)
	if err != nil || first.SettingsVersion != 0 || first.ChangeCount != 2 || first.Changes != nil {
		t.Errorf("Run(1) after the upgrade = %+v, %v; want settings version 0 and 2 changes counted", first, err)
	}
	if rcs, err := s.RunChanges(ctx, d, 1, 1, 1); err != nil || !reflect.DeepEqual(rcs, wantRuns[1].Changes[1:]) {
		t.Errorf("RunChanges(1, offset 1, limit 1) after the upgrade = %+v, %v; want its second change", rcs, err)
	}
	v := &store.SettingsVersion{Domain: "new.example.com", Settings: []byte(`{"sync":true}`), Author: "cli"}
	if err := s.PutSettings(ctx, v, 0); err != nil || v.Version != 1 {
		t.Errorf("PutSettings after the upgrade: version %d, %v", v.Version, err)
	}
	if ds, err := s.StoredDomains(ctx); err != nil || len(ds) != 1 || ds[0].Domain != "new.example.com" {
		t.Errorf("StoredDomains after the upgrade = %+v, %v; want new.example.com only", ds, err)
	}
	if n, err := s.PruneRuns(ctx, t0.Add(2*time.Hour)); err != nil || n != 2 {
		t.Errorf("PruneRuns of the old runs after the upgrade = %d, %v; want 2", n, err)
	}
}

// PruneRuns deletes more runs than fit in one of its transactions, and
// keeps the running one among them.
func TestPruneRunsInBatches(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	const old = 2*pruneBatch + 1
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO domains (name) VALUES ('example.com')`); err != nil {
		t.Fatal(err)
	}
	for i := range old + 1 {
		ended, outcome := formatTime(t0.Add(time.Duration(i)*time.Second)), store.OutcomeOK
		if i == old/2 {
			ended, outcome = "", store.OutcomeRunning
		}
		if _, err := tx.Exec(`INSERT INTO runs (domain, started, ended, outcome, counts) VALUES ('example.com', ?, ?, ?, '{}')`,
			formatTime(t0), ended, outcome); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneRuns(ctx, t0.Add(time.Hour))
	if err != nil || n != old {
		t.Errorf("PruneRuns = %d, %v; want %d", n, err, old)
	}
	if runs, err := storetest.AllRuns(ctx, s, "example.com"); err != nil || len(runs) != 1 || runs[0].Outcome != store.OutcomeRunning {
		t.Errorf("Runs after pruning = %+v, %v; want the running one", runs, err)
	}
}

func TestOpenReadOnlyMissing(t *testing.T) {
	dir := t.TempDir()
	for _, dsn := range []string{
		filepath.Join(dir, "var", "dirsync.db"),
		"file:" + filepath.Join(dir, "var", "dirsync.db") + "?_pragma=cache_size(-4000)",
		filepath.Join(dir, "dirsync.db"),
	} {
		s, err := OpenReadOnly(dsn)
		if err == nil {
			s.Close()
			t.Fatalf("OpenReadOnly(%s) of a missing store succeeded", dsn)
		}
		path, _, _ := splitDSN(dsn)
		if !errors.Is(err, store.ErrNoStore) || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenReadOnly(%s) = %v, want ErrNoStore naming %s", dsn, err, path)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("OpenReadOnly of missing stores left %v (%v) behind", entries, err)
	}
}

// A read-only store reads what Open wrote, while the writer has it open
// and after it closed it, and refuses to write.
func TestOpenReadOnly(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "dirsync.db")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddMailbox(ctx, "example.com", store.Mailbox{Primary: "carol@example.com", Aliases: []string{"c@example.com"},
		Groups: []string{"Sales"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.RecordRun(ctx, &store.Run{Domain: "example.com", Started: time.Now(), Ended: time.Now(),
		Outcome: store.OutcomeFailed, Stage: "fetch", SettingsVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.PutSettings(ctx, &store.SettingsVersion{Domain: "example.com", Settings: []byte(`{"sync":true}`),
		Secret: []byte{1, 2, 3}, Author: "cli"}, 0); err != nil {
		t.Fatal(err)
	}

	read := func(t *testing.T) {
		r, err := OpenReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if ms, err := r.Mailboxes(ctx, "example.com"); err != nil || len(ms) != 1 || ms[0].Primary != "carol@example.com" ||
			!reflect.DeepEqual(ms[0].Groups, []string{"Sales"}) {
			t.Errorf("Mailboxes = %+v, %v", ms, err)
		}
		if gs, err := r.Groups(ctx, "example.com"); err != nil || len(gs) != 1 {
			t.Errorf("Groups = %+v, %v", gs, err)
		}
		if runs, err := storetest.AllRuns(ctx, r, "example.com"); err != nil || len(runs) != 1 || runs[0].Stage != "fetch" {
			t.Errorf("Runs = %+v, %v", runs, err)
		}
		if p, err := r.Resolve(ctx, "c@example.com"); err != nil || p != "carol@example.com" {
			t.Errorf("Resolve = %q, %v", p, err)
		}
		if snap, err := r.Snapshot(ctx, "example.com", nil); err != nil || len(snap.Mailboxes) != 1 || snap.Generation == 0 {
			t.Errorf("Snapshot = %+v, %v", snap, err)
		}
		if page, err := r.RunsPage(ctx, "example.com", 0, 0); err != nil || len(page) != 1 || page[0].SettingsVersion != 1 {
			t.Errorf("RunsPage = %+v, %v", page, err)
		}
		if ds, err := r.StoredDomains(ctx); err != nil || len(ds) != 1 || !bytes.Equal(ds[0].Secret, []byte{1, 2, 3}) {
			t.Errorf("StoredDomains = %+v, %v", ds, err)
		}
		if err := r.AddGroup(ctx, "example.com", "Support"); err == nil {
			t.Error("AddGroup on a read-only store succeeded")
		}
		if err := r.PutSettings(ctx, &store.SettingsVersion{Domain: "example.com", Settings: []byte(`{}`), Author: "cli"}, 1); err == nil {
			t.Error("PutSettings on a read-only store succeeded")
		}
		if _, err := r.PruneRuns(ctx, time.Now()); err == nil {
			t.Error("PruneRuns on a read-only store succeeded")
		}
		if _, err := r.AcquireLease(ctx, "example.com", "host-a", time.Minute); err == nil {
			t.Error("AcquireLease on a read-only store succeeded")
		}
	}
	t.Run("WhileWriterOpen", func(t *testing.T) {
		read(t)
		// The writer goes on writing.
		if err := w.AddGroup(ctx, "example.com", "Staff"); err != nil {
			t.Errorf("AddGroup after a read-only open: %v", err)
		}
		if err := w.RemoveGroup(ctx, "example.com", "Staff"); err != nil {
			t.Error(err)
		}
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	t.Run("AfterWriterClosed", read)
}

// A read-only open of a store with an older schema says how to upgrade it,
// and leaves the file as it was.
func TestOpenReadOnlyOldSchema(t *testing.T) {
	path := copyV1(t)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenReadOnly(path)
	if err == nil {
		s.Close()
		t.Fatal("OpenReadOnly accepted a store of schema version 1")
	}
	want := fmt.Sprintf("the store at %s has schema version 1, this dirsync needs %d: any command that writes (dirsync sync …) upgrades it",
		path, len(migrations))
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
		t.Errorf("OpenReadOnly changed the file (%v)", err)
	}
}

// StartRun marks a run left running abandoned, with the time and a reason;
// lease and run times are stored in UTC at fixed width.
func TestAbandonedRunRecord(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	if _, err := s.AcquireLease(ctx, "example.com", "host-a", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	old := &store.Run{Domain: "example.com", Started: time.Now(), Holder: "host-a"}
	if err := s.StartRun(ctx, old); err != nil {
		t.Fatal(err)
	}
	var ended string
	if err := s.db.QueryRow(`SELECT ended FROM runs WHERE id = ?`, old.ID).Scan(&ended); err != nil || ended != "" {
		t.Fatalf("ended of a running run = %q, %v; want empty", ended, err)
	}
	time.Sleep(10 * time.Millisecond) // host-a's lease expires
	if _, err := s.AcquireLease(ctx, "example.com", "host-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.StartRun(ctx, &store.Run{Domain: "example.com", Started: time.Now(), Holder: "host-b"}); err != nil {
		t.Fatal(err)
	}
	runs, err := storetest.AllRuns(ctx, s, "example.com")
	if err != nil || len(runs) != 2 {
		t.Fatalf("Runs = %+v, %v", runs, err)
	}
	got := runs[1]
	if got.Outcome != store.OutcomeAbandoned || got.Error != abandonedError || time.Since(got.Ended) > time.Minute {
		t.Errorf("abandoned run = %+v", got)
	}
	var since, expiry string
	if err := s.db.QueryRow(`SELECT since, expiry FROM leases WHERE domain = 'example.com'`).Scan(&since, &expiry); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{since, expiry, formatTime(got.Ended)} {
		if len(v) != len(timeFormat) || !strings.HasSuffix(v, "Z") {
			t.Errorf("time %q is not UTC at fixed width", v)
		}
	}
}

// TestWriterWaitsAsLongAsItsContext: a write behind a run that holds the
// store's one writer (a first sync that writes while it reads) gives up
// with its context's error when that ends, instead of waiting for the run;
// once the run lets go, writes go through again.
func TestWriterWaitsAsLongAsItsContext(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	if err := s.EnsureDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx, "example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Prewrite(ctx, "example.com", snap.Generation)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.AddGroup(wctx, "example.com", "Sales"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a write behind the prewrite: %v, want the deadline's error", err)
	}
	if _, err := s.Prewrite(wctx, "example.com", snap.Generation); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a second prewrite: %v, want the deadline's error", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Errorf("a write after the prewrite's Close: %v", err)
	}
}
