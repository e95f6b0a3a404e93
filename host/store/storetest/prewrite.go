package storetest

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// testPrewrite checks a store.Prewriter (a store without one has nothing
// to check): mailboxes written while a run reads are kept, with their ids,
// when the run creates them exactly so; anything else undoes all of them
// and leaves the store as Apply alone would; Close without Apply, or
// after a failed Create, leaves no trace and frees the writer.
func testPrewrite(t *testing.T, s store.Store) {
	pw, ok := s.(store.Prewriter)
	if !ok {
		t.Logf("%T is no store.Prewriter: Apply writes every run", s)
		return
	}
	addGroups(t, s, domain, "Sales", "Staff")
	addMailbox(t, s, domain, store.Mailbox{Primary: "hand@example.com", Aliases: []string{"taken@example.com"}})
	const n = 150 // more than one statement's rows, and a rest
	// open starts a run: its prewrite, and the run record to apply with.
	open := func(t *testing.T) (store.Prewrite, *store.Run) {
		t.Helper()
		run := runAt(t, s, domain)
		p, err := pw.Prewrite(t.Context(), domain, run.Generation)
		if err != nil {
			t.Fatalf("Prewrite: %v", err)
		}
		t.Cleanup(func() { p.Close() })
		return p, run
	}
	// written writes the Afters of cs, last first: kept mailboxes have
	// ids that fall with their index, those Apply writes ids that rise.
	written := func(t *testing.T, p store.Prewrite, cs []store.Change) {
		t.Helper()
		var ms []*sdk.Mailbox
		for i := len(cs) - 1; i >= 0; i-- {
			m := *cs[i].After
			m.Groups = nil
			ms = append(ms, &m)
		}
		if err := p.Create(t.Context(), ms); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	// check finds every create of cs in the store as created, and says
	// whether their ids fall (kept) or rise (written by Apply).
	check := func(t *testing.T, cs []store.Change, wantKept bool) {
		t.Helper()
		snap := snapshot(t, s, domain)
		var ids []int64
		for i, c := range cs {
			m := find(t, snap, c.After.Primary)
			want := *c.After
			want.ID, want.Source = m.ID, sdk.SourceLDAP
			if !reflect.DeepEqual(m, want) {
				t.Errorf("create %d:\n got %+v\nwant %+v", i, m, want)
			}
			ids = append(ids, m.ID)
		}
		falling := slices.IsSortedFunc(ids, func(a, b int64) int { return int(b - a) })
		if rising := slices.IsSorted(ids); falling == rising || falling != wantKept {
			t.Errorf("ids %v: kept %v, want %v", ids, falling, wantKept)
		}
		for _, c := range cs {
			wantResolve(t, s, c.After.Aliases[0], c.After.Primary)
		}
	}
	// clear deletes the creates of cs again.
	clear := func(t *testing.T, cs []store.Change) {
		t.Helper()
		snap := snapshot(t, s, domain)
		var del []store.Change
		for _, c := range cs {
			if m, ok := findOK(snap, c.After.Primary); ok {
				del = append(del, store.Change{Kind: sdk.ChangeDelete, Before: &m})
			}
		}
		apply(t, s, domain, del...)
	}

	t.Run("KeptWhenCreatedAsWritten", func(t *testing.T) {
		cs := manyCreates(n, "Sales", "Staff")
		p, run := open(t)
		written(t, p, cs)
		if err := p.Apply(t.Context(), cs, run); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if run.ID == 0 || run.ChangeCount != n {
			t.Errorf("run id %d, %d changes; want an id and %d", run.ID, run.ChangeCount, n)
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close after Apply: %v", err)
		}
		check(t, cs, true)
		clear(t, cs)
	})
	// Undone: Apply writes as Store.Apply would, its first mailbox getting
	// the id that a mailbox created just before the prewrite would have
	// been followed by.
	for _, tc := range []struct {
		name   string
		change func([]store.Change) []store.Change
	}{
		{"UndoneWhenOneIsNotCreated", func(cs []store.Change) []store.Change {
			return slices.Delete(cs, 70, 71) // vetoed, say
		}},
		{"UndoneWhenOneDiffers", func(cs []store.Change) []store.Change {
			cs[3].After.Aliases = []string{"other@example.com"} // the alias went to another entry
			return cs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe := create("guid-probe", "probe@example.com", []string{"probe.alias@example.com"})
			apply(t, s, domain, probe)
			before := find(t, snapshot(t, s, domain), "probe@example.com").ID
			clear(t, []store.Change{probe})
			cs := manyCreates(n, "Sales", "Staff")
			p, run := open(t)
			written(t, p, cs)
			cs = tc.change(cs)
			if err := p.Apply(t.Context(), cs, run); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			check(t, cs, false)
			if m := find(t, snapshot(t, s, domain), cs[0].After.Primary); m.ID != before+1 {
				t.Errorf("the first create has id %d, want %d: the ids written ahead were not given back", m.ID, before+1)
			}
			if _, ok := findOK(snapshot(t, s, domain), "user0070@example.com"); ok != (len(cs) == n) {
				t.Errorf("user0070 in the store: %v, want %v", ok, len(cs) == n)
			}
			clear(t, cs)
		})
	}
	t.Run("FailedCreateUndoneByApply", func(t *testing.T) {
		cs := manyCreates(n, "Sales", "Staff")
		p, run := open(t)
		bad := *cs[5].After
		bad.Aliases = []string{"taken@example.com"} // a hand-made mailbox's
		if err := p.Create(t.Context(), []*sdk.Mailbox{cs[0].After, &bad}); !errors.Is(err, store.ErrExists) {
			t.Fatalf("Create of a taken address: %v, want ErrExists", err)
		}
		if err := p.Create(t.Context(), []*sdk.Mailbox{cs[1].After}); err == nil {
			t.Error("Create after a failed one: no error")
		}
		if err := p.Apply(t.Context(), cs, run); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		check(t, cs, false)
		clear(t, cs)
	})
	t.Run("CloseWithoutApplyLeavesNoTrace", func(t *testing.T) {
		before := snapshot(t, s, domain)
		cs := manyCreates(n, "Sales", "Staff")
		p, _ := open(t)
		written(t, p, cs)
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("a second Close: %v", err)
		}
		if after := snapshot(t, s, domain); !reflect.DeepEqual(before, after) {
			t.Error("the store changed")
		}
		apply(t, s, domain, cs...) // the writer is free
		check(t, cs, false)
		clear(t, cs)
	})
	t.Run("RefusedApplyEndsTheTransaction", func(t *testing.T) {
		before := snapshot(t, s, domain)
		cs := manyCreates(n, "Sales", "Staff")
		p, run := open(t)
		written(t, p, cs)
		run.Domain = "other.example" // not the prewrite's domain
		if err := p.Apply(t.Context(), cs, run); err == nil {
			t.Fatal("Apply of another domain's run: no error")
		}
		if after := snapshot(t, s, domain); !reflect.DeepEqual(before, after) {
			t.Error("the store changed")
		}
		apply(t, s, domain, cs...) // the writer is free
		check(t, cs, false)
		clear(t, cs)
	})
	t.Run("StaleGeneration", func(t *testing.T) {
		gen := snapshot(t, s, domain).Generation
		apply(t, s, domain) // another run wrote the domain since
		if p, err := pw.Prewrite(t.Context(), domain, gen); !errors.Is(err, store.ErrStoreChanged) {
			if p != nil {
				p.Close()
			}
			t.Fatalf("Prewrite of a stale generation: %v, want ErrStoreChanged", err)
		}
		apply(t, s, domain) // and the writer is free
	})
}

// findOK returns the mailbox of snap with that primary address, if any.
func findOK(snap *store.Snapshot, primary string) (store.Mailbox, bool) {
	for _, m := range snap.Mailboxes {
		if m.Primary == primary {
			return m, true
		}
	}
	return store.Mailbox{}, false
}
