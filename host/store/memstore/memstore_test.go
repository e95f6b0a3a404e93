package memstore_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/memstore"
	"github.com/dirsync/dirsync/host/store/storetest"
	"github.com/dirsync/dirsync/sdk"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestCopies checks that the store shares no memory with its callers: what
// they change after handing a value in, or in a value handed out, leaves the
// store as it was.
func TestCopies(t *testing.T) {
	ctx := t.Context()
	s := memstore.New()
	defer s.Close()
	for _, g := range []string{"Sales", "Staff"} {
		if err := s.AddGroup(ctx, "example.com", g); err != nil {
			t.Fatal(err)
		}
	}

	// In: a hand-made mailbox, a created one and a run record.
	m := store.Mailbox{Primary: "alice@example.com", Aliases: []string{"al@example.com"}, Groups: []string{"Sales"}}
	if _, err := s.AddMailbox(ctx, "example.com", m); err != nil {
		t.Fatal(err)
	}
	m.Aliases[0], m.Groups[0] = "x@example.com", "Staff"
	created := store.Mailbox{DirID: "guid-b", Kind: sdk.KindUser, Primary: "bob@example.com",
		Aliases: []string{"b@example.com"}, Groups: []string{"Sales"}}
	snap, err := s.Snapshot(ctx, "example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	run := &store.Run{Domain: "example.com", Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK,
		Generation: snap.Generation, References: []string{"ldap://dc2.example.com/"}}
	if err := s.Apply(ctx, "example.com", []store.Change{{Kind: sdk.ChangeCreate, After: &created}}, run); err != nil {
		t.Fatal(err)
	}
	created.Aliases[0], created.Groups[0] = "x@example.com", "Staff"
	run.References[0] = "changed"
	run.Changes[0].After.Aliases[0] = "changed"

	want, err := s.Mailboxes(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 2 || want[0].Aliases[0] != "al@example.com" || want[0].Groups[0] != "Sales" ||
		want[1].Aliases[0] != "b@example.com" || want[1].Groups[0] != "Sales" {
		t.Fatalf("the store kept the callers' slices: %+v", want)
	}
	wantRun, err := s.Run(ctx, "example.com", run.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantChanges, err := s.RunChanges(ctx, "example.com", run.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if wantRun.References[0] != "ldap://dc2.example.com/" || wantChanges[0].After.Aliases[0] != "b@example.com" {
		t.Fatalf("the store kept the run's slices: %+v, %+v", wantRun, wantChanges)
	}

	// Out: change everything handed out, then read again.
	for _, ms := range [][]store.Mailbox{want, snapshot(t, s).Mailboxes} {
		for i := range ms {
			ms[i].Aliases[0], ms[i].Groups[0] = "x@example.com", "Staff"
		}
	}
	r := *wantRun
	r.References[0], wantChanges[0].After.Aliases[0] = "changed", "changed"
	if got, _ := s.Mailboxes(ctx, "example.com"); reflect.DeepEqual(got, want) {
		t.Errorf("changing the mailboxes handed out changed the store: %+v", got)
	}
	if got, _ := s.Run(ctx, "example.com", run.ID); reflect.DeepEqual(got, &r) {
		t.Errorf("changing the run handed out changed the store: %+v", got)
	}
	if got, _ := s.RunChanges(ctx, "example.com", run.ID, 0, 0); reflect.DeepEqual(got, wantChanges) {
		t.Errorf("changing the changes handed out changed the store: %+v", got)
	}
}

func snapshot(t *testing.T, s store.Store) *store.Snapshot {
	t.Helper()
	snap, err := s.Snapshot(t.Context(), "example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestClosed(t *testing.T) {
	s := memstore.New()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureDomain(t.Context(), "example.com"); err == nil {
		t.Error("EnsureDomain after Close succeeded")
	}
	if _, err := s.Resolve(t.Context(), "alice@example.com"); err == nil {
		t.Error("Resolve after Close succeeded")
	}
}
