package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
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
	run := &store.Run{Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK}
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
	runs, err := s.Runs(ctx, "example.com")
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
	run := &store.Run{Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := s.Apply(ctx, "example.com", changes, run)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply = %v, want context.Canceled", err)
	}
	if ms, err := s.Mailboxes(t.Context(), "example.com"); err != nil || len(ms) != 0 {
		t.Errorf("a cancelled Apply left %d mailboxes (%v)", len(ms), err)
	}
	if runs, err := s.Runs(t.Context(), "example.com"); err != nil || len(runs) != 0 {
		t.Errorf("a cancelled Apply recorded %d runs (%v)", len(runs), err)
	}
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
		run := &store.Run{Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK}
		b.StartTimer()
		if err := s.Apply(b.Context(), "example.com", changes, run); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshot100k reads a 100,000-mailbox domain.
func BenchmarkSnapshot100k(b *testing.B) {
	s := storeWithGroups(b)
	run := &store.Run{Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK}
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
