package storetest

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// manyCreates is n creates of user000…, each with an alias and, but every
// third, a group of groups.
func manyCreates(n int, groups ...string) []store.Change {
	cs := make([]store.Change, n)
	for i := range cs {
		var g []string
		if i%3 != 0 {
			g = []string{groups[i%len(groups)]}
		}
		cs[i] = create(fmt.Sprintf("guid-%04d", i), fmt.Sprintf("user%04d@example.com", i),
			[]string{fmt.Sprintf("u%04d@example.com", i)}, g...)
	}
	return cs
}

// testManyCreates applies more creates than a store may write in one
// statement (a first sync writes 100,000): every mailbox, address and
// membership lands, ids are distinct and never reused; one bad create
// among them fails the whole Apply, named in the error.
func testManyCreates(t *testing.T, s store.Store) {
	const n = 301
	addGroups(t, s, domain, "Sales", "Staff")
	manual := addMailbox(t, s, domain, store.Mailbox{Primary: "hand@example.com", Aliases: []string{"taken@example.com"}})

	t.Run("OneBadCreateFailsAll", func(t *testing.T) {
		for _, bad := range []int{0, 150, n - 1} {
			before := snapshot(t, s, domain)
			cs := manyCreates(n, "Sales", "Staff")
			cs[bad].After.Aliases = []string{"taken@example.com"}
			err := applyErr(t, s, domain, cs...)
			wantErr(t, err, store.ErrExists, "create", cs[bad].After.Primary, "taken@example.com")
			if after := snapshot(t, s, domain); !reflect.DeepEqual(before, after) {
				t.Errorf("create %d failed, yet the store changed", bad)
			}
		}
	})

	apply(t, s, domain, manyCreates(n, "Sales", "Staff")...)
	snap := snapshot(t, s, domain)
	if got := len(snap.Mailboxes); got != n+1 {
		t.Fatalf("%d mailboxes after %d creates and one by hand, want %d", got, n, n+1)
	}
	ids := map[int64]bool{manual: true}
	maxID := manual
	for i, c := range manyCreates(n, "Sales", "Staff") {
		m := find(t, snap, c.After.Primary)
		if m.ID == manual || ids[m.ID] {
			t.Errorf("create %d got id %d, which another mailbox has", i, m.ID)
		}
		ids[m.ID], maxID = true, max(maxID, m.ID)
		want := *c.After
		want.ID, want.Source = m.ID, sdk.SourceLDAP
		if want.Groups == nil {
			want.Groups = m.Groups
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("create %d:\n got %+v\nwant %+v", i, m, want)
		}
		wantResolve(t, s, fmt.Sprintf("u%04d@example.com", i), c.After.Primary)
	}

	// The highest id deleted is not given again.
	last := find(t, snap, "user0300@example.com")
	if last.ID != maxID {
		t.Fatalf("the last create has id %d, the highest is %d", last.ID, maxID)
	}
	apply(t, s, domain, store.Change{Kind: sdk.ChangeDelete, Before: &last})
	apply(t, s, domain, create("guid-new", "new@example.com", nil))
	if got := find(t, snapshot(t, s, domain), "new@example.com").ID; got <= maxID {
		t.Errorf("a mailbox created after the highest id (%d) was deleted got id %d", maxID, got)
	}
}
