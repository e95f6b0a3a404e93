// Package storetest is the conformance suite every store.Store must pass:
// the SQLite store that ships with dirsync, a PostgreSQL one, or a vendor's
// own. Call Run from a test of the store's package:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := mystore.Open(...)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Domains the suite uses.
const (
	domain      = "example.com"
	aliasDomain = "example.org"
	otherDomain = "other.com"
)

// Run runs the suite. open must return a new, empty store for each call and
// close it when the test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"EmptyDomain", testEmptyDomain},
		{"Create", testCreate},
		{"Update", testUpdate},
		{"Adopt", testAdopt},
		{"Delete", testDelete},
		{"AddressReuseInOneApply", testAddressReuse},
		{"Memberships", testMemberships},
		{"Atomicity", testAtomicity},
		{"AddressUniqueness", testAddressUniqueness},
		{"ManyCreatesInOneApply", testManyCreates},
		{"PrewriteKeptOrUndone", testPrewrite},
		{"OwnersAndForeign", testOwnersAndForeign},
		{"SnapshotPart", testSnapshotPart},
		{"DomainIsolation", testDomainIsolation},
		{"GroupNamesCaseExact", testGroupNamesCaseExact},
		{"Resolve", testResolve},
		{"Runs", testRuns},
		{"ManualMailboxes", testManualMailboxes},
		{"ManualGroups", testManualGroups},
		{"GroupMembersWithSources", testGroupMembers},
		{"Concurrent", testConcurrent},
		{"LeaseBusy", testLeaseBusy},
		{"LeaseTakenOverAfterExpiry", testLeaseTakeover},
		{"LeaseRenew", testLeaseRenew},
		{"LeaseRelease", testLeaseRelease},
		{"LeaseRaceOneWinner", testLeaseRace},
		{"StartRunThenFinishIsOneRow", testStartRunOneRow},
		{"StartRunAbandonsOlderRunning", testStartRunAbandons},
		{"ApplyRefusesStaleGeneration", testStaleGeneration},
		{"ApplyRaceSameGenerationOneWinner", testApplyRace},
		{"RunFieldsRoundTrip", testRunFields},
		{"RunsPageNewestFirstByIDWithoutChanges", testRunsPage},
		{"RunsPageLimits", testRunsPageLimits},
		{"RunOneOfItsDomainOnly", testRunOne},
		{"RunChangesPagedInOrder", testRunChanges},
		{"RunChangesLimits", testRunChangesLimits},
		{"RunReadRoundTrip", testRunRead},
		{"DirStateRoundTrip", testDirStateRoundTrip},
		{"DirStateApplyNilDeletes", testDirStateApplyNilDeletes},
		{"DirStateFailedApplyKeepsIt", testDirStateFailedApplyKeeps},
		{"DirStateRecordRunStartRunIgnoreIt", testDirStateRunWritersIgnore},
		{"DirStateGeneration", testDirStateGeneration},
		{"DirStateHead", testDirStateHead},
		{"MoveCookie", testMoveCookie},
		{"ChunksRoundTrip", testChunksRoundTrip},
		{"ChunksPatch", testChunksPatch},
		{"ChunksAndEntries", testChunksAndEntries},
		{"ChunksApplyNilDeletes", testChunksNilDeletes},
		{"ChunksMoveCookieKeepsThem", testChunksMoveCookie},
		{"ChunksFailedApplyKeepsThem", testChunksFailedApplyKeeps},
		{"ChunksGeneration", testChunksGeneration},
		{"ChunksPrewrite", testChunksPrewrite},
		{"PruneRunsKeepsRunningAndRecent", testPruneRuns},
		{"SettingsVersionsNumberedPerDomain", testSettingsVersions},
		{"PutSettingsStaleExpectConflicts", testSettingsConflict},
		{"PutSettingsRefusesInvalidInput", testPutSettingsInvalid},
		{"PutSettingsRaceOneWinner", testSettingsRace},
		{"SettingsNotFound", testSettingsNotFound},
		{"SettingsHistoryNewestFirstWithoutSecrets", testSettingsHistory},
		{"StoredDomainsLatestLiveSorted", testStoredDomains},
		{"RemoveSettingsKeepsDataAndNumbers", testRemoveSettings},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func testEmptyDomain(t *testing.T, s store.Store) {
	ctx := t.Context()
	for range 2 {
		if err := s.EnsureDomain(ctx, domain); err != nil {
			t.Fatalf("EnsureDomain: %v", err)
		}
	}
	snap := snapshot(t, s, domain, aliasDomain)
	if snap.Domain != domain || len(snap.Mailboxes) != 0 || len(snap.Groups) != 0 ||
		len(snap.Owners) != 0 || len(snap.Foreign) != 0 {
		t.Errorf("Snapshot of an empty domain = %+v, want it empty", snap)
	}
	if ms, err := s.Mailboxes(ctx, domain); err != nil || len(ms) != 0 {
		t.Errorf("Mailboxes = %v, %v; want none", ms, err)
	}
	if gs, err := s.Groups(ctx, domain); err != nil || len(gs) != 0 {
		t.Errorf("Groups = %v, %v; want none", gs, err)
	}
	if rs, err := s.RunsPage(ctx, domain, 0, 0); err != nil || len(rs) != 0 {
		t.Errorf("RunsPage = %v, %v; want none", rs, err)
	}
}

func testCreate(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales", "All")
	alice := create("guid-a", "alice@example.com", []string{"al@example.org", "a.smith@example.com"}, "Sales", "All")
	alice.After.DisplayName = "Alice Smith"
	folder := create("guid-f", "shared@example.com", nil)
	folder.After.Kind = sdk.KindPublicFolder
	folder.After.DN = "cn=shared,ou=folders,dc=example,dc=com"
	apply(t, s, domain, alice, folder)

	snap := snapshot(t, s, domain, aliasDomain)
	if len(snap.Mailboxes) != 2 {
		t.Fatalf("Snapshot has %d mailboxes, want 2: %+v", len(snap.Mailboxes), snap.Mailboxes)
	}
	a := find(t, snap, "alice@example.com")
	f := find(t, snap, "shared@example.com")
	if a.ID == 0 || f.ID == 0 || a.ID == f.ID {
		t.Fatalf("ids %d and %d: want distinct non-zero ids", a.ID, f.ID)
	}
	wantMailbox(t, a, store.Mailbox{
		ID: a.ID, DirID: "guid-a", DN: "cn=guid-a,dc=example,dc=com", Kind: sdk.KindUser,
		Primary: "alice@example.com", Aliases: []string{"a.smith@example.com", "al@example.org"},
		DisplayName: "Alice Smith", Source: sdk.SourceLDAP, Groups: []string{"All", "Sales"},
	})
	wantMailbox(t, f, store.Mailbox{
		ID: f.ID, DirID: "guid-f", DN: "cn=shared,ou=folders,dc=example,dc=com", Kind: sdk.KindPublicFolder,
		Primary: "shared@example.com", Source: sdk.SourceLDAP,
	})
	wantOwners(t, snap, map[string]int64{
		"alice@example.com": a.ID, "a.smith@example.com": a.ID, "al@example.org": a.ID,
		"shared@example.com": f.ID,
	})
	if snap.Mailboxes[0].Primary != "alice@example.com" {
		t.Errorf("mailboxes not sorted by primary: %+v", snap.Mailboxes)
	}
	ms, err := s.Mailboxes(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ms, snap.Mailboxes) {
		t.Errorf("Mailboxes = %+v\nwant the snapshot's %+v", ms, snap.Mailboxes)
	}
	wantResolve(t, s, "al@example.org", "alice@example.com")

	// Addresses are stored in lower case.
	apply(t, s, domain, create("guid-b", "Bob@Example.COM", []string{"B.Jones@Example.COM"}))
	b := find(t, snapshot(t, s, domain), "bob@example.com")
	if !reflect.DeepEqual(b.Aliases, []string{"b.jones@example.com"}) {
		t.Errorf("aliases %v, want them in lower case", b.Aliases)
	}
}

func testUpdate(t *testing.T, s store.Store) {
	addGroups(t, s, domain, "Sales")
	apply(t, s, domain, create("guid-a", "alice@example.com", []string{"al@example.com", "a.smith@example.com"}, "Sales"))
	before := find(t, snapshot(t, s, domain), "alice@example.com")

	// A rename and a move: new primary, new DN, one alias kept, one dropped,
	// one added. The id stays; memberships are not touched by an update.
	after := before
	after.Primary = "alice.jones@example.com"
	after.DN = "cn=Alice Jones,ou=moved,dc=example,dc=com"
	after.Aliases = []string{"al@example.com", "alice@example.com"}
	after.DisplayName = "Alice Jones"
	after.Groups = nil
	apply(t, s, domain, store.Change{Kind: sdk.ChangeUpdate, Before: &before, After: &after})

	snap := snapshot(t, s, domain)
	got := find(t, snap, "alice.jones@example.com")
	wantMailbox(t, got, store.Mailbox{
		ID: before.ID, DirID: "guid-a", DN: "cn=Alice Jones,ou=moved,dc=example,dc=com", Kind: sdk.KindUser,
		Primary: "alice.jones@example.com", Aliases: []string{"al@example.com", "alice@example.com"},
		DisplayName: "Alice Jones", Source: sdk.SourceLDAP, Groups: []string{"Sales"},
	})
	wantOwners(t, snap, map[string]int64{
		"alice.jones@example.com": before.ID, "al@example.com": before.ID, "alice@example.com": before.ID,
	})
	wantResolve(t, s, "alice@example.com", "alice.jones@example.com")
	wantResolveNotFound(t, s, "a.smith@example.com")

	// An update never changes the source.
	id := addMailbox(t, s, domain, store.Mailbox{Primary: "carol@example.com"})
	carol := find(t, snapshot(t, s, domain), "carol@example.com")
	changed := carol
	changed.DisplayName = "Carol"
	apply(t, s, domain, store.Change{Kind: sdk.ChangeUpdate, Before: &carol, After: &changed})
	if got := find(t, snapshot(t, s, domain), "carol@example.com"); got.Source != sdk.SourceManual || got.ID != id || got.DisplayName != "Carol" {
		t.Errorf("after update: %+v, want source manual, id %d, display name Carol", got, id)
	}
}

func testAdopt(t *testing.T, s store.Store) {
	addGroups(t, s, domain, "Sales")
	id := addMailbox(t, s, domain, store.Mailbox{Primary: "bob@example.com", Aliases: []string{"bobby@example.com"}, Groups: []string{"Sales"}})
	before := find(t, snapshot(t, s, domain), "bob@example.com")
	after := before
	after.DirID = "guid-b"
	after.DN = "cn=bob,dc=example,dc=com"
	after.Aliases = []string{"b@example.com"}
	after.DisplayName = "Bob"
	apply(t, s, domain, store.Change{Kind: sdk.ChangeAdopt, Before: &before, After: &after})

	got := find(t, snapshot(t, s, domain), "bob@example.com")
	wantMailbox(t, got, store.Mailbox{
		ID: id, DirID: "guid-b", DN: "cn=bob,dc=example,dc=com", Kind: sdk.KindUser,
		Primary: "bob@example.com", Aliases: []string{"b@example.com"},
		DisplayName: "Bob", Source: sdk.SourceLDAP, Groups: []string{"Sales"},
	})
	wantResolveNotFound(t, s, "bobby@example.com")
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales")
	apply(t, s, domain,
		create("guid-a", "alice@example.com", []string{"al@example.com"}, "Sales"),
		create("guid-b", "bob@example.com", nil, "Sales"))
	alice := find(t, snapshot(t, s, domain), "alice@example.com")
	apply(t, s, domain, store.Change{Kind: sdk.ChangeDelete, Before: &alice})

	snap := snapshot(t, s, domain)
	if len(snap.Mailboxes) != 1 || snap.Mailboxes[0].Primary != "bob@example.com" {
		t.Errorf("after delete: %+v, want only bob", snap.Mailboxes)
	}
	wantOwners(t, snap, map[string]int64{"bob@example.com": snap.Mailboxes[0].ID})
	wantResolveNotFound(t, s, "al@example.com")
	if gs, err := s.Groups(ctx, domain); err != nil || len(gs) != 1 {
		t.Errorf("Groups = %v, %v; a delete must keep the groups", gs, err)
	}

	err := applyErr(t, s, domain, store.Change{Kind: sdk.ChangeDelete, Before: &alice})
	wantErr(t, err, store.ErrNotFound, "delete", "alice@example.com")

	// The id of a deleted mailbox is never given again.
	apply(t, s, domain, create("guid-a", "alice@example.com", nil))
	if again := find(t, snapshot(t, s, domain), "alice@example.com"); again.ID == alice.ID {
		t.Errorf("a new mailbox got the id %d of a deleted one", again.ID)
	}
}

func testAddressReuse(t *testing.T, s store.Store) {
	apply(t, s, domain,
		create("guid-a", "alice@example.com", []string{"sales@example.com"}),
		create("guid-b", "bob@example.com", []string{"support@example.com"}),
		create("guid-c", "carol@example.com", []string{"info@example.com"}))
	snap := snapshot(t, s, domain)
	alice := find(t, snap, "alice@example.com")
	bob := find(t, snap, "bob@example.com")
	carol := find(t, snap, "carol@example.com")

	// Listed in the "wrong" order on purpose: the store applies deletes, then
	// updates, then creates.
	aliceAfter := alice
	aliceAfter.Aliases = []string{"support@example.com"} // bob's, released below
	bobAfter := bob
	bobAfter.Aliases = []string{"sales@example.com"} // alice's: a swap
	apply(t, s, domain,
		create("guid-d", "carol@example.com", []string{"info@example.com"}), // carol's, deleted below
		create("guid-e", "eve@example.com", nil),
		store.Change{Kind: sdk.ChangeUpdate, Before: &alice, After: &aliceAfter},
		store.Change{Kind: sdk.ChangeUpdate, Before: &bob, After: &bobAfter},
		store.Change{Kind: sdk.ChangeDelete, Before: &carol},
	)

	snap = snapshot(t, s, domain)
	d := find(t, snap, "carol@example.com")
	if d.ID == carol.ID || d.DirID != "guid-d" {
		t.Errorf("carol@example.com = %+v, want the new mailbox guid-d", d)
	}
	wantOwners(t, snap, map[string]int64{
		"alice@example.com": alice.ID, "support@example.com": alice.ID,
		"bob@example.com": bob.ID, "sales@example.com": bob.ID,
		"carol@example.com": d.ID, "info@example.com": d.ID,
		"eve@example.com": find(t, snap, "eve@example.com").ID,
	})
}

func testMemberships(t *testing.T, s store.Store) {
	addGroups(t, s, domain, "Sales", "Support")
	apply(t, s, domain, create("guid-a", "alice@example.com", nil, "Sales"))
	alice := find(t, snapshot(t, s, domain), "alice@example.com")

	newcomer := create("guid-n", "nina@example.com", nil)
	apply(t, s, domain,
		store.Change{Kind: sdk.ChangeAddMember, Before: &alice, After: &alice, Group: "Support"},
		store.Change{Kind: sdk.ChangeRemoveMember, Before: &alice, After: &alice, Group: "Sales"},
		// A mailbox created in the same Apply is named by its directory id.
		store.Change{Kind: sdk.ChangeAddMember, After: &store.Mailbox{DirID: "guid-n", Primary: "nina@example.com"}, Group: "Sales"},
		newcomer,
	)
	snap := snapshot(t, s, domain)
	if got := find(t, snap, "alice@example.com").Groups; !reflect.DeepEqual(got, []string{"Support"}) {
		t.Errorf("alice's groups = %v, want [Support]", got)
	}
	if got := find(t, snap, "nina@example.com").Groups; !reflect.DeepEqual(got, []string{"Sales"}) {
		t.Errorf("nina's groups = %v, want [Sales]", got)
	}

	tests := []struct {
		name    string
		change  store.Change
		want    error
		mention []string
	}{
		{"RemoveNonMember", store.Change{Kind: sdk.ChangeRemoveMember, Before: &alice, Group: "Sales"},
			store.ErrNotFound, []string{"remove_member", "alice@example.com"}},
		{"UnknownGroup", store.Change{Kind: sdk.ChangeAddMember, Before: &alice, Group: "Nobody"},
			store.ErrNotFound, []string{"add_member", "alice@example.com", `"Nobody"`}},
		{"UnknownMailbox", store.Change{Kind: sdk.ChangeAddMember, Before: &store.Mailbox{ID: 99999, Primary: "ghost@example.com"}, Group: "Sales"},
			store.ErrNotFound, []string{"add_member", "ghost@example.com"}},
		{"NotCreatedInThisApply", store.Change{Kind: sdk.ChangeAddMember, After: &store.Mailbox{DirID: "guid-x", Primary: "x@example.com"}, Group: "Sales"},
			store.ErrNotFound, []string{"add_member", "x@example.com"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := applyErr(t, s, domain, tc.change)
			wantErr(t, err, tc.want, tc.mention...)
		})
	}
}

func testAtomicity(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales")
	apply(t, s, domain,
		create("guid-a", "alice@example.com", []string{"al@example.com"}, "Sales"),
		create("guid-b", "bob@example.com", nil),
		create("guid-c", "carol@example.com", nil, "Sales"))
	addMailbox(t, s, otherDomain, store.Mailbox{Primary: "olga@other.com", Aliases: []string{"olga@example.com"}})
	snap := snapshot(t, s, domain)
	alice := find(t, snap, "alice@example.com")
	bob := find(t, snap, "bob@example.com")
	carol := find(t, snap, "carol@example.com")

	// Each case applies good changes of every kind and then one that fails.
	good := func() []store.Change {
		aliceAfter := alice
		aliceAfter.Primary = "alice.smith@example.com"
		aliceAfter.Aliases = []string{"as@example.com"}
		return []store.Change{
			{Kind: sdk.ChangeDelete, Before: &carol},
			{Kind: sdk.ChangeUpdate, Before: &alice, After: &aliceAfter},
			create("guid-d", "dave@example.com", []string{"al@example.com"}, "Sales"),
			{Kind: sdk.ChangeAddMember, Before: &bob, Group: "Sales"},
			{Kind: sdk.ChangeRemoveMember, Before: &alice, Group: "Sales"},
		}
	}
	ghost := store.Mailbox{ID: 99999, DirID: "guid-g", Primary: "ghost@example.com", Kind: sdk.KindUser}
	tests := []struct {
		name    string
		last    store.Change
		want    error
		mention []string
	}{
		{"AddressOfAnotherMailbox", create("guid-e", "eve@example.com", []string{"bob@example.com"}),
			store.ErrExists, []string{"create", "eve@example.com", "bob@example.com"}},
		{"AddressOfAnotherDomain", create("guid-e", "eve@example.com", []string{"olga@example.com"}),
			store.ErrExists, []string{"create", "eve@example.com", "olga@example.com"}},
		{"AddressTakenInThisApply", create("guid-e", "eve@example.com", []string{"as@example.com"}),
			store.ErrExists, []string{"create", "eve@example.com", "as@example.com"}},
		{"DuplicateDirID", create("guid-b", "eve@example.com", nil),
			store.ErrExists, []string{"create", "eve@example.com"}},
		{"UnknownGroup", create("guid-e", "eve@example.com", nil, "sales"),
			store.ErrNotFound, []string{"create", "eve@example.com", `"sales"`}},
		{"UpdateUnknownMailbox", store.Change{Kind: sdk.ChangeUpdate, Before: &ghost, After: &ghost},
			store.ErrNotFound, []string{"update", "ghost@example.com"}},
		{"AdoptUnknownMailbox", store.Change{Kind: sdk.ChangeAdopt, Before: &ghost, After: &ghost},
			store.ErrNotFound, []string{"adopt", "ghost@example.com"}},
		{"DeleteUnknownMailbox", store.Change{Kind: sdk.ChangeDelete, Before: &ghost},
			store.ErrNotFound, []string{"delete", "ghost@example.com"}},
		{"RemoveNonMember", store.Change{Kind: sdk.ChangeRemoveMember, Before: &alice, Group: "Sales"},
			store.ErrNotFound, []string{"remove_member", "alice@example.com"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, s, domain, aliasDomain)
			runsBefore := runsOf(t, s, domain)
			run := runAt(t, s, domain)
			err := s.Apply(ctx, domain, append(good(), tc.last), run)
			wantErr(t, err, tc.want, tc.mention...)

			after := snapshot(t, s, domain, aliasDomain)
			if !reflect.DeepEqual(before, after) {
				t.Errorf("a failed Apply changed the store:\nbefore %+v\nafter  %+v", before, after)
			}
			if runsAfter := runsOf(t, s, domain); len(runsAfter) != len(runsBefore) {
				t.Errorf("a failed Apply recorded a run: %d runs, had %d", len(runsAfter), len(runsBefore))
			}
			wantResolveNotFound(t, s, "dave@example.com")
			wantResolve(t, s, "carol@example.com", "carol@example.com")
		})
	}
	// The good changes alone apply.
	apply(t, s, domain, good()...)
	wantResolve(t, s, "al@example.com", "dave@example.com")
}

func testAddressUniqueness(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales")
	apply(t, s, domain, create("guid-a", "alice@example.com", []string{"al@example.com"}))
	addMailbox(t, s, otherDomain, store.Mailbox{Primary: "olga@other.com", Aliases: []string{"olga@example.org"}})

	tests := []struct {
		name string
		m    store.Mailbox
	}{
		{"PrimaryIsAnotherPrimary", store.Mailbox{Primary: "alice@example.com"}},
		{"PrimaryIsAnotherAlias", store.Mailbox{Primary: "al@example.com"}},
		{"AliasIsAnotherPrimary", store.Mailbox{Primary: "x@example.com", Aliases: []string{"alice@example.com"}}},
		{"AliasOfAnotherDomain", store.Mailbox{Primary: "x@example.com", Aliases: []string{"olga@example.org"}}},
		{"OtherCase", store.Mailbox{Primary: "x@example.com", Aliases: []string{"AL@Example.COM"}}},
		{"WithGroups", store.Mailbox{Primary: "x@example.com", Aliases: []string{"al@example.com"}, Groups: []string{"Sales"}}},
	}
	for _, tc := range tests {
		t.Run("AddMailbox/"+tc.name, func(t *testing.T) {
			_, err := s.AddMailbox(ctx, domain, tc.m)
			wantErr(t, err, store.ErrExists)
			wantResolveNotFound(t, s, "x@example.com")
		})
		t.Run("Create/"+tc.name, func(t *testing.T) {
			c := create("guid-x", tc.m.Primary, tc.m.Aliases, tc.m.Groups...)
			err := applyErr(t, s, domain, c)
			wantErr(t, err, store.ErrExists, "create")
			wantResolveNotFound(t, s, "x@example.com")
		})
	}
	t.Run("TwoCreatesOneAlias", func(t *testing.T) {
		err := applyErr(t, s, domain,
			create("guid-x", "x@example.com", []string{"shared@example.com"}),
			create("guid-y", "y@example.com", []string{"shared@example.com"}))
		wantErr(t, err, store.ErrExists, "shared@example.com")
		wantResolveNotFound(t, s, "x@example.com")
	})
	t.Run("UpdateTakesAnotherAlias", func(t *testing.T) {
		addMailbox(t, s, domain, store.Mailbox{Primary: "bob@example.com"})
		bob := find(t, snapshot(t, s, domain), "bob@example.com")
		after := bob
		after.Aliases = []string{"al@example.com"}
		err := applyErr(t, s, domain, store.Change{Kind: sdk.ChangeUpdate, Before: &bob, After: &after})
		wantErr(t, err, store.ErrExists, "update", "bob@example.com", "al@example.com")
		wantResolve(t, s, "al@example.com", "alice@example.com")
	})
}

func testOwnersAndForeign(t *testing.T, s store.Store) {
	addGroups(t, s, otherDomain, "Staff")
	apply(t, s, domain, create("guid-a", "alice@example.com", []string{"alice@example.org"}))
	olga := addMailbox(t, s, otherDomain, store.Mailbox{
		Primary: "olga@other.com", Aliases: []string{"olga@example.org", "o@other.com", "olga@example.com"},
		DisplayName: "Olga", Groups: []string{"Staff"},
	})
	addMailbox(t, s, otherDomain, store.Mailbox{Primary: "oscar@other.com"})

	snap := snapshot(t, s, domain, aliasDomain)
	alice := find(t, snap, "alice@example.com")
	if len(snap.Mailboxes) != 1 {
		t.Errorf("Snapshot lists mailboxes of another domain: %+v", snap.Mailboxes)
	}
	wantOwners(t, snap, map[string]int64{
		"alice@example.com": alice.ID, "alice@example.org": alice.ID,
		"olga@example.org": olga, "olga@example.com": olga,
	})
	want := map[int64]store.Mailbox{olga: {
		ID: olga, Kind: sdk.KindUser, Primary: "olga@other.com",
		Aliases:     []string{"o@other.com", "olga@example.com", "olga@example.org"},
		DisplayName: "Olga", Source: sdk.SourceManual, Groups: []string{"Staff"},
	}}
	if !reflect.DeepEqual(snap.Foreign, want) {
		t.Errorf("Foreign = %+v\nwant     %+v", snap.Foreign, want)
	}

	// Without alias domains, only the domain's own addresses.
	snap = snapshot(t, s, domain)
	wantOwners(t, snap, map[string]int64{"alice@example.com": alice.ID, "olga@example.com": olga})
	if _, ok := snap.Foreign[olga]; !ok || len(snap.Foreign) != 1 {
		t.Errorf("Foreign = %+v, want olga only", snap.Foreign)
	}
}

func testDomainIsolation(t *testing.T, s store.Store) {
	addGroups(t, s, domain, "Sales")
	addGroups(t, s, otherDomain, "Sales")
	apply(t, s, otherDomain, create("guid-o", "olga@other.com", nil, "Sales"))
	olga := find(t, snapshot(t, s, otherDomain), "olga@other.com")
	before := snapshot(t, s, otherDomain)

	renamed := olga
	renamed.Primary = "olga2@other.com"
	tests := []struct {
		name   string
		change store.Change
	}{
		{"Update", store.Change{Kind: sdk.ChangeUpdate, Before: &olga, After: &renamed}},
		{"Adopt", store.Change{Kind: sdk.ChangeAdopt, Before: &olga, After: &renamed}},
		{"Delete", store.Change{Kind: sdk.ChangeDelete, Before: &olga}},
		{"AddMember", store.Change{Kind: sdk.ChangeAddMember, Before: &olga, Group: "Sales"}},
		{"RemoveMember", store.Change{Kind: sdk.ChangeRemoveMember, Before: &olga, Group: "Sales"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := applyErr(t, s, domain, tc.change)
			wantErr(t, err, store.ErrNotFound)
			if after := snapshot(t, s, otherDomain); !reflect.DeepEqual(before, after) {
				t.Errorf("an Apply to %s changed %s:\nbefore %+v\nafter  %+v", domain, otherDomain, before, after)
			}
		})
	}
	t.Run("AssignMailboxOfAnotherDomain", func(t *testing.T) {
		err := s.Assign(t.Context(), domain, "Sales", "olga@other.com")
		wantErr(t, err, store.ErrNotFound)
	})
	t.Run("SameDirIDInTwoDomains", func(t *testing.T) {
		apply(t, s, domain, create("guid-o", "olga@example.com", nil))
	})
}

func testGroupNamesCaseExact(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "sales", "Sales")
	gs, err := s.Groups(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Group{{Name: "Sales", Source: sdk.SourceManual}, {Name: "sales", Source: sdk.SourceManual}}
	if !reflect.DeepEqual(gs, want) {
		t.Errorf("Groups = %+v, want %+v", gs, want)
	}
	wantErr(t, s.AddGroup(ctx, domain, "Sales"), store.ErrExists, `"Sales"`)
	wantErr(t, s.RemoveGroup(ctx, domain, "SALES"), store.ErrNotFound, `"SALES"`)
	if err := s.AddGroup(ctx, otherDomain, "Sales"); err != nil {
		t.Errorf("the same group name in another domain: %v", err)
	}

	err = applyErr(t, s, domain, create("guid-a", "alice@example.com", nil, "SALES"))
	wantErr(t, err, store.ErrNotFound, `"SALES"`)

	apply(t, s, domain, create("guid-a", "alice@example.com", nil, "Sales"))
	if err := s.Assign(ctx, domain, "sales", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unassign(ctx, domain, "Sales", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if got := find(t, snapshot(t, s, domain), "alice@example.com").Groups; !reflect.DeepEqual(got, []string{"sales"}) {
		t.Errorf("groups = %v, want [sales]", got)
	}
}

func testResolve(t *testing.T, s store.Store) {
	apply(t, s, domain, create("guid-a", "alice@example.com", []string{"al@example.com", "alice@example.org"}))
	for _, addr := range []string{"alice@example.com", "al@example.com", "ALICE@Example.ORG"} {
		wantResolve(t, s, addr, "alice@example.com")
	}
	wantResolveNotFound(t, s, "bob@example.com")
}

func testRuns(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales")
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 123456000, time.UTC)

	alice := create("guid-a", "alice@example.com", []string{"al@example.com"}, "Sales")
	alice.After.DisplayName = "Alice"
	first := newRun(domain, t0)
	first.Server = "ldap://dc1.example.com"
	first.Counts = store.Counts{Created: 1, Entries: 3, Skipped: 1, Unmatched: 1}
	first.Changes = []store.RunChange{{
		Kind: "create", Address: "alice@example.com",
		After: &store.MailboxView{Primary: "alice@example.com", Aliases: []string{"al@example.com"},
			DisplayName: "Alice", Kind: sdk.KindUser, DN: "cn=guid-a,dc=example,dc=com", Groups: []string{"Sales"}},
	}}
	first.Generation = snapshot(t, s, domain).Generation
	if err := s.Apply(ctx, domain, []store.Change{alice}, first); err != nil {
		t.Fatal(err)
	}
	if first.ID == 0 {
		t.Fatal("Apply did not set run.ID")
	}

	stopped := newRun(domain, t0.Add(2*time.Hour))
	stopped.Outcome = store.OutcomeStopped
	stopped.Error = "would delete 600 mailboxes"
	if err := s.RecordRun(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	// Recorded after, but started before: runs are listed by id, not by
	// start time.
	failed := newRun(domain, t0.Add(time.Hour))
	failed.Outcome = store.OutcomeFailed
	failed.Error = "ldap: bind failed"
	if err := s.RecordRun(ctx, failed); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRun(ctx, newRun(otherDomain, t0)); err != nil {
		t.Fatal(err)
	}
	if stopped.ID == 0 || failed.ID == 0 || stopped.ID == first.ID || failed.ID == stopped.ID {
		t.Errorf("run ids %d, %d, %d: want distinct and non-zero", first.ID, stopped.ID, failed.ID)
	}

	if first.ChangeCount != 1 || stopped.ChangeCount != 0 {
		t.Errorf("ChangeCount after Apply %d, after RecordRun %d; want 1 and 0", first.ChangeCount, stopped.ChangeCount)
	}
	runs := runsOf(t, s, domain)
	want := []store.Run{*failed, *stopped, *first}
	want[2].Generation = 0 // not part of the record
	if len(runs) != len(want) {
		t.Fatalf("Runs = %d runs, want %d: %+v", len(runs), len(want), runs)
	}
	for i := range want {
		got := runs[i]
		if !got.Started.Equal(want[i].Started) || !got.Ended.Equal(want[i].Ended) {
			t.Errorf("run %d: started %v ended %v, want %v and %v", i, got.Started, got.Ended, want[i].Started, want[i].Ended)
		}
		got.Started, got.Ended = want[i].Started, want[i].Ended
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("run %d = %+v\nwant    %+v", i, got, want[i])
		}
	}
	if runs[2].Changes == nil || runs[2].Changes[0].After == nil {
		t.Errorf("the applied run lost its changes: %+v", runs[2])
	}
}

func testManualMailboxes(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales", "Support")
	id, err := s.AddMailbox(ctx, domain, store.Mailbox{
		Primary: "Carol@Example.COM", Aliases: []string{"C@Example.com"}, DisplayName: "Carol",
		Groups: []string{"Support", "Sales"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if id == 0 {
		t.Fatal("AddMailbox returned id 0")
	}
	ms, err := s.Mailboxes(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Mailbox{{
		ID: id, Kind: sdk.KindUser, Primary: "carol@example.com", Aliases: []string{"c@example.com"},
		DisplayName: "Carol", Source: sdk.SourceManual, Groups: []string{"Sales", "Support"},
	}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("Mailboxes = %+v\nwant        %+v", ms, want)
	}

	errTests := []struct {
		name    string
		m       store.Mailbox
		want    error
		mention []string
	}{
		{"TakenPrimary", store.Mailbox{Primary: "CAROL@example.com"}, store.ErrExists, []string{"carol@example.com"}},
		{"TakenAlias", store.Mailbox{Primary: "dan@example.com", Aliases: []string{"c@example.com"}}, store.ErrExists, []string{"c@example.com"}},
		{"UnknownGroup", store.Mailbox{Primary: "dan@example.com", Groups: []string{"sales"}}, store.ErrNotFound, []string{`"sales"`}},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.AddMailbox(ctx, domain, tc.m)
			wantErr(t, err, tc.want, tc.mention...)
			wantResolveNotFound(t, s, "dan@example.com")
		})
	}

	wantErr(t, s.RemoveMailbox(ctx, domain, "c@example.com"), store.ErrNotFound, "c@example.com")
	wantErr(t, s.RemoveMailbox(ctx, domain, "nobody@example.com"), store.ErrNotFound, "nobody@example.com")
	wantErr(t, s.RemoveMailbox(ctx, otherDomain, "carol@example.com"), store.ErrNotFound)
	if err := s.RemoveMailbox(ctx, domain, "Carol@example.com"); err != nil {
		t.Fatalf("RemoveMailbox: %v", err)
	}
	wantResolveNotFound(t, s, "c@example.com")
	if ms, err := s.Mailboxes(ctx, domain); err != nil || len(ms) != 0 {
		t.Errorf("Mailboxes after remove = %+v, %v", ms, err)
	}
	// Its addresses are free again.
	addMailbox(t, s, domain, store.Mailbox{Primary: "c@example.com"})
}

func testManualGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales", "Support")
	apply(t, s, domain, create("guid-a", "alice@example.com", []string{"al@example.com"}))

	if err := s.Assign(ctx, domain, "Sales", "AL@example.com"); err != nil {
		t.Fatalf("Assign by alias: %v", err)
	}
	if err := s.Assign(ctx, domain, "Support", "alice@example.com"); err != nil {
		t.Fatalf("Assign by primary: %v", err)
	}
	if got := find(t, snapshot(t, s, domain), "alice@example.com").Groups; !reflect.DeepEqual(got, []string{"Sales", "Support"}) {
		t.Errorf("groups = %v, want [Sales Support]", got)
	}

	errTests := []struct {
		name    string
		call    func() error
		want    error
		mention []string
	}{
		{"AssignTwice", func() error { return s.Assign(ctx, domain, "Sales", "alice@example.com") },
			store.ErrExists, []string{`"Sales"`}},
		{"AssignUnknownGroup", func() error { return s.Assign(ctx, domain, "Nobody", "alice@example.com") },
			store.ErrNotFound, []string{`"Nobody"`, domain}},
		{"AssignUnknownAddress", func() error { return s.Assign(ctx, domain, "Sales", "ghost@example.com") },
			store.ErrNotFound, []string{"ghost@example.com"}},
		{"UnassignUnknownGroup", func() error { return s.Unassign(ctx, domain, "Nobody", "alice@example.com") },
			store.ErrNotFound, []string{`"Nobody"`}},
		{"UnassignUnknownAddress", func() error { return s.Unassign(ctx, domain, "Sales", "ghost@example.com") },
			store.ErrNotFound, []string{"ghost@example.com"}},
		{"AddGroupTwice", func() error { return s.AddGroup(ctx, domain, "Sales") },
			store.ErrExists, []string{`"Sales"`, domain}},
		{"RemoveUnknownGroup", func() error { return s.RemoveGroup(ctx, domain, "Nobody") },
			store.ErrNotFound, []string{`"Nobody"`, domain}},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.call(), tc.want, tc.mention...) })
	}

	if err := s.Unassign(ctx, domain, "Support", "al@example.com"); err != nil {
		t.Fatalf("Unassign by alias: %v", err)
	}
	wantErr(t, s.Unassign(ctx, domain, "Support", "alice@example.com"), store.ErrNotFound)

	// Removing a group removes its memberships.
	if err := s.RemoveGroup(ctx, domain, "Sales"); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, s, domain)
	if got := find(t, snap, "alice@example.com").Groups; len(got) != 0 {
		t.Errorf("groups after RemoveGroup = %v, want none", got)
	}
	if want := []store.Group{{Name: "Support", Source: sdk.SourceManual}}; !reflect.DeepEqual(snap.Groups, want) {
		t.Errorf("snapshot groups = %+v, want %+v", snap.Groups, want)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales")
	const workers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				addr := fmt.Sprintf("user%d.%d@example.com", w, i)
				if _, err := s.AddMailbox(ctx, domain, store.Mailbox{Primary: addr, Groups: []string{"Sales"}}); err != nil {
					errs <- err
				}
				c := create(fmt.Sprintf("guid-%d-%d", w, i), fmt.Sprintf("ldap%d.%d@example.com", w, i), nil, "Sales")
				if err := applyRetry(ctx, s, c); err != nil {
					errs <- err
				}
				if _, err := s.Snapshot(ctx, domain, nil); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if snap := snapshot(t, s, domain); len(snap.Mailboxes) != 2*workers*each {
		t.Errorf("%d mailboxes, want %d", len(snap.Mailboxes), 2*workers*each)
	}
}

// leaseTTL is long enough that a lease taken in a test does not expire
// while the test runs.
const leaseTTL = time.Hour

// shortTTL is a lease a test waits out.
const shortTTL = 50 * time.Millisecond

func testLeaseBusy(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := acquire(t, s, domain, "host-a", leaseTTL)
	_, err := s.AcquireLease(ctx, domain, "host-b", leaseTTL)
	if got := wantBusy(t, err, domain, "host-a"); !sameTime(got.Since, a.Since) || got.RunID != 0 {
		t.Errorf("busy lease = %+v, want since %v and no run", got, a.Since)
	}

	// Once the holder has started its run, the busy error names it.
	run := &store.Run{Domain: domain, Started: time.Now(), Holder: "host-a"}
	if err := s.StartRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	_, err = s.AcquireLease(ctx, domain, "host-b", leaseTTL)
	if got := wantBusy(t, err, domain, "host-a"); got.RunID != run.ID {
		t.Errorf("busy lease names run %d, want %d", got.RunID, run.ID)
	}

	// A lease is per domain.
	acquire(t, s, otherDomain, "host-b", leaseTTL)
}

func testLeaseTakeover(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := acquire(t, s, domain, "host-a", shortTTL)
	waitPast(a.Expiry)
	b := acquire(t, s, domain, "host-b", leaseTTL)
	if !b.Since.After(a.Since) || b.RunID != 0 {
		t.Errorf("taken-over lease = %+v, want a new one (the old one was %+v)", b, a)
	}
	// The old holder has lost it: it cannot renew it, and its release
	// leaves the new holder's lease alone.
	wantErr(t, s.RenewLease(ctx, domain, "host-a", leaseTTL), store.ErrLeaseLost)
	if err := s.ReleaseLease(ctx, domain, "host-a"); err != nil {
		t.Errorf("ReleaseLease of a lost lease: %v", err)
	}
	_, err := s.AcquireLease(ctx, domain, "host-c", leaseTTL)
	wantBusy(t, err, domain, "host-b")
}

func testLeaseRenew(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := acquire(t, s, domain, "host-a", time.Minute)
	run := &store.Run{Domain: domain, Started: time.Now(), Holder: "host-a"}
	if err := s.StartRun(ctx, run); err != nil {
		t.Fatal(err)
	}

	// Acquiring a lease one holds renews it: same lease, later expiry.
	again := acquire(t, s, domain, "host-a", leaseTTL)
	if !sameTime(again.Since, a.Since) || !again.Expiry.After(a.Expiry) || again.RunID != run.ID {
		t.Errorf("re-acquired lease = %+v, want since %v, run %d and an expiry after %v", again, a.Since, run.ID, a.Expiry)
	}

	if err := s.RenewLease(ctx, domain, "host-a", 2*leaseTTL); err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	_, err := s.AcquireLease(ctx, domain, "host-b", leaseTTL)
	if got := wantBusy(t, err, domain, "host-a"); got.Expiry.Before(time.Now().Add(leaseTTL)) {
		t.Errorf("lease expires %v after RenewLease by %v, want later", got.Expiry, 2*leaseTTL)
	}

	// Nobody holds a lease on otherDomain.
	wantErr(t, s.RenewLease(ctx, otherDomain, "host-a", leaseTTL), store.ErrLeaseLost)
}

func testLeaseRelease(t *testing.T, s store.Store) {
	ctx := t.Context()
	acquire(t, s, domain, "host-a", leaseTTL)
	if err := s.ReleaseLease(ctx, domain, "host-a"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	// Released: another holder gets it at once, and the old one cannot
	// renew it.
	acquire(t, s, domain, "host-b", leaseTTL)
	wantErr(t, s.RenewLease(ctx, domain, "host-a", leaseTTL), store.ErrLeaseLost)

	// Releasing a lease one does not hold is no error and changes nothing.
	if err := s.ReleaseLease(ctx, domain, "host-a"); err != nil {
		t.Errorf("ReleaseLease of a lease not held: %v", err)
	}
	if err := s.ReleaseLease(ctx, otherDomain, "host-a"); err != nil {
		t.Errorf("ReleaseLease on a domain without a lease: %v", err)
	}
	_, err := s.AcquireLease(ctx, domain, "host-c", leaseTTL)
	wantBusy(t, err, domain, "host-b")
}

func testLeaseRace(t *testing.T, s store.Store) {
	const rounds, racers = 5, 8
	for r := range rounds {
		d := fmt.Sprintf("race%d.example.com", r)
		errs := make([]error, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = s.AcquireLease(t.Context(), d, fmt.Sprintf("host-%d", i), leaseTTL)
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
			case !errors.Is(err, store.ErrDomainBusy):
				t.Errorf("%s: holder %d: %v", d, i, err)
			}
		}
		if winners != 1 {
			t.Errorf("%s: %d of %d racing holders got the lease, want exactly 1", d, winners, racers)
		}
	}
}

func testStartRunOneRow(t *testing.T, s store.Store) {
	ctx := t.Context()
	tests := []struct {
		name    string
		domain  string
		outcome string
		finish  func(t *testing.T, run *store.Run) error
	}{
		{"RecordRun", domain, store.OutcomeFailed, func(t *testing.T, run *store.Run) error {
			run.Outcome, run.Stage, run.Error = store.OutcomeFailed, "fetch", "ldap: size limit exceeded"
			return s.RecordRun(ctx, run)
		}},
		{"Apply", otherDomain, store.OutcomeOK, func(t *testing.T, run *store.Run) error {
			run.Outcome = store.OutcomeOK
			run.Generation = snapshot(t, s, otherDomain).Generation
			return s.Apply(ctx, otherDomain, []store.Change{create("guid-o", "olga@other.com", nil)}, run)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acquire(t, s, tc.domain, "host-a", leaseTTL)
			run := &store.Run{Domain: tc.domain, Started: time.Now(), Holder: "host-a", Server: "ldap://dc1.example.com",
				SettingsVersion: 5}
			if err := s.StartRun(ctx, run); err != nil {
				t.Fatalf("StartRun: %v", err)
			}
			id := run.ID
			if id == 0 {
				t.Fatal("StartRun did not set run.ID")
			}
			runs := runsOf(t, s, tc.domain)
			if len(runs) != 1 || runs[0].ID != id || runs[0].Outcome != store.OutcomeRunning || !runs[0].Ended.IsZero() ||
				runs[0].Holder != "host-a" || runs[0].SettingsVersion != 5 {
				t.Fatalf("Runs after StartRun = %+v, want run %d running, not ended, holder host-a, settings version 5", runs, id)
			}

			run.Ended = time.Now()
			if err := tc.finish(t, run); err != nil {
				t.Fatalf("finishing the run: %v", err)
			}
			if run.ID != id {
				t.Errorf("finishing run %d gave it id %d", id, run.ID)
			}
			runs = runsOf(t, s, tc.domain)
			if len(runs) != 1 || runs[0].ID != id || runs[0].Outcome != tc.outcome || !sameTime(runs[0].Ended, run.Ended) ||
				runs[0].Stage != run.Stage || runs[0].Error != run.Error || runs[0].Server != run.Server ||
				runs[0].SettingsVersion != 5 {
				t.Errorf("Runs after finishing = %+v\nwant the one row %+v", runs, *run)
			}
		})
	}
}

func testStartRunAbandons(t *testing.T, s store.Store) {
	ctx := t.Context()
	// A run of another domain is none of its business.
	acquire(t, s, otherDomain, "host-c", leaseTTL)
	other := &store.Run{Domain: otherDomain, Started: time.Now(), Holder: "host-c"}
	if err := s.StartRun(ctx, other); err != nil {
		t.Fatal(err)
	}

	// host-a starts a run, dies; its lease expires and host-b takes over.
	a := acquire(t, s, domain, "host-a", shortTTL)
	old := &store.Run{Domain: domain, Started: time.Now(), Holder: "host-a"}
	if err := s.StartRun(ctx, old); err != nil {
		t.Fatal(err)
	}
	waitPast(a.Expiry)
	acquire(t, s, domain, "host-b", leaseTTL)
	cur := &store.Run{Domain: domain, Started: time.Now(), Holder: "host-b"}
	if err := s.StartRun(ctx, cur); err != nil {
		t.Fatal(err)
	}

	// A holder without the lease (host-a, whose lease host-b took) may not
	// start a run, nor mark host-b's run abandoned.
	late := &store.Run{Domain: domain, Started: time.Now(), Holder: "host-a"}
	if err := s.StartRun(ctx, late); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("StartRun by a holder without the lease = %v, want ErrLeaseLost", err)
	}

	runs := runsOf(t, s, domain)
	if len(runs) != 2 || runs[0].ID != cur.ID || runs[1].ID != old.ID {
		t.Fatalf("Runs = %+v, want runs %d and %d", runs, cur.ID, old.ID)
	}
	if runs[0].Outcome != store.OutcomeRunning {
		t.Errorf("the new run is %q, want running", runs[0].Outcome)
	}
	if got := runs[1]; got.Outcome != store.OutcomeAbandoned || got.Ended.IsZero() || got.Error == "" {
		t.Errorf("the dead holder's run = %+v, want abandoned, ended, with an error saying why", got)
	}
	if runs := runsOf(t, s, otherDomain); len(runs) != 1 || runs[0].Outcome != store.OutcomeRunning {
		t.Errorf("Runs of %s = %+v, want its run still running", otherDomain, runs)
	}
}

func testStaleGeneration(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales")
	apply(t, s, domain, create("guid-a", "alice@example.com", nil, "Sales"))

	// Each write happens between a run's Snapshot and its Apply; the cases
	// run in order, each on what the one before left.
	tests := []struct {
		name  string
		write func() error
	}{
		{"AddMailbox", func() error {
			_, err := s.AddMailbox(ctx, domain, store.Mailbox{Primary: "dan@example.com"})
			return err
		}},
		{"RemoveMailbox", func() error { return s.RemoveMailbox(ctx, domain, "dan@example.com") }},
		{"AddGroup", func() error { return s.AddGroup(ctx, domain, "Staff") }},
		{"Assign", func() error { return s.Assign(ctx, domain, "Staff", "alice@example.com") }},
		{"Unassign", func() error { return s.Unassign(ctx, domain, "Staff", "alice@example.com") }},
		{"RemoveGroup", func() error { return s.RemoveGroup(ctx, domain, "Staff") }},
		{"ApplyOfAnotherRun", func() error {
			return s.Apply(ctx, domain, []store.Change{create("guid-e", "eve@example.com", nil)}, runAt(t, s, domain))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapshot(t, s, domain)
			if err := tc.write(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if now := snapshot(t, s, domain); now.Generation == snap.Generation {
				t.Errorf("%s left the generation at %d", tc.name, now.Generation)
			}
			before := mailboxes(t, s, domain)
			runsBefore := runsOf(t, s, domain)

			run := newRun(domain, time.Now())
			run.Generation = snap.Generation
			err := s.Apply(ctx, domain, []store.Change{create("guid-z", "zed@example.com", nil, "Sales")}, run)
			wantErr(t, err, store.ErrStoreChanged)
			if after := mailboxes(t, s, domain); !reflect.DeepEqual(before, after) {
				t.Errorf("a stale Apply changed the store:\nbefore %+v\nafter  %+v", before, after)
			}
			if runs := runsOf(t, s, domain); len(runs) != len(runsBefore) {
				t.Errorf("a stale Apply recorded a run: %d runs, had %d", len(runs), len(runsBefore))
			}
			wantResolveNotFound(t, s, "zed@example.com")
		})
	}

	t.Run("WriteToAnotherDomain", func(t *testing.T) {
		snap := snapshot(t, s, domain)
		addGroups(t, s, otherDomain, "Sales")
		addMailbox(t, s, otherDomain, store.Mailbox{Primary: "olga@other.com", Groups: []string{"Sales"}})
		run := newRun(domain, time.Now())
		run.Generation = snap.Generation
		if err := s.Apply(ctx, domain, []store.Change{create("guid-z", "zed@example.com", nil)}, run); err != nil {
			t.Errorf("writes to %s made a run of %s stale: %v", otherDomain, domain, err)
		}
	})
	t.Run("NewDomainIsAtGenerationZero", func(t *testing.T) {
		const fresh = "fresh.example.net"
		if err := s.Apply(ctx, fresh, []store.Change{create("guid-f", "f@fresh.example.net", nil)}, newRun(fresh, time.Now())); err != nil {
			t.Errorf("Apply to a domain the store has never seen, at generation 0: %v", err)
		}
	})
}

func testApplyRace(t *testing.T, s store.Store) {
	addGroups(t, s, domain, "Sales")
	gen := snapshot(t, s, domain).Generation
	const racers = 6
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := newRun(domain, time.Now())
			run.Generation = gen
			c := create(fmt.Sprintf("guid-%d", i), fmt.Sprintf("user%d@example.com", i), nil, "Sales")
			<-start
			errs[i] = s.Apply(t.Context(), domain, []store.Change{c}, run)
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
		case !errors.Is(err, store.ErrStoreChanged):
			t.Errorf("run %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Errorf("%d of %d runs computed from one snapshot applied, want exactly 1", winners, racers)
	}
	if ms := mailboxes(t, s, domain); len(ms) != 1 {
		t.Errorf("%d mailboxes, want the one of the run that applied", len(ms))
	}
}

func testRunFields(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 123456000, time.UTC)
	settings := `{"name":"example.com","sync":true,"ldap":{"urls":["ldap://dc1.example.com"],"base_dn":"dc=example,dc=com"}}`
	refs := []string{"ldap://dc2.example.com/OU=Branch,DC=example,DC=com", "ldap://dc3.example.com/DC=sub,DC=example,DC=com"}
	bob := &store.MailboxView{Primary: "bob@example.com", Kind: sdk.KindUser, DN: "cn=bob,dc=example,dc=com"}

	tests := []struct {
		name   string
		run    store.Run
		record func(run *store.Run) error
	}{
		{"StoppedWithIntended", store.Run{
			Domain: domain, Started: t0, Ended: t0.Add(2 * time.Second), Outcome: store.OutcomeStopped,
			Stage: "guard", Error: "would delete 600 of 1000 LDAP mailboxes", Server: "ldap://dc1.example.com",
			Holder: "gw1:4242:7", SettingsVersion: 7, Settings: settings, Counts: store.Counts{Entries: 400, Held: 2},
			Intended:   &store.Counts{Deleted: 600, MembersRemoved: 3},
			References: refs, Read: store.ReadFull,
			Changes: []store.RunChange{{Kind: "delete", Address: "bob@example.com", Before: bob}},
		}, func(run *store.Run) error { return s.RecordRun(ctx, run) }},
		{"FailedWithoutIntended", store.Run{
			Domain: domain, Started: t0.Add(time.Hour), Ended: t0.Add(time.Hour + time.Second), Outcome: store.OutcomeFailed,
			Stage: "fetch", Error: "ldap: bind failed", Holder: "gw1:4242:8",
		}, func(run *store.Run) error { return s.RecordRun(ctx, run) }},
		{"CancelledAfterStartRun", store.Run{
			Domain: domain, Started: t0.Add(2 * time.Hour), Ended: t0.Add(2*time.Hour + time.Second), Outcome: store.OutcomeCancelled,
			Stage: "policy", Error: "context canceled", Holder: "gw2:99:1", SettingsVersion: 3, Settings: settings,
			Intended: &store.Counts{}, References: refs[:1], Read: store.ReadDelta,
		}, func(run *store.Run) error {
			acquire(t, s, run.Domain, run.Holder, leaseTTL)
			defer s.ReleaseLease(ctx, run.Domain, run.Holder)
			started := store.Run{Domain: run.Domain, Started: run.Started, Holder: run.Holder}
			if err := s.StartRun(ctx, &started); err != nil {
				return err
			}
			run.ID = started.ID
			return s.RecordRun(ctx, run)
		}},
		{"Applied", store.Run{
			Domain: domain, Started: t0.Add(3 * time.Hour), Ended: t0.Add(3*time.Hour + time.Second), Outcome: store.OutcomeOK,
			Holder: "gw1:4242:9", SettingsVersion: 12, Settings: settings, Counts: store.Counts{Created: 1, Entries: 1},
			References: refs, Read: store.ReadDelta,
			DirState: &store.DirState{Key: "k", Cookie: []byte("c"), FullAt: t0, Entries: []byte("e")},
		}, func(run *store.Run) error {
			run.Generation = snapshot(t, s, domain).Generation
			return s.Apply(ctx, domain, []store.Change{create("guid-c", "carol@example.com", nil)}, run)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := tc.run
			if err := tc.record(&run); err != nil {
				t.Fatal(err)
			}
			want := run
			want.Generation, want.DirState = 0, nil // not part of the record
			for _, got := range runsOf(t, s, domain) {
				if got.ID != run.ID {
					continue
				}
				if !sameTime(got.Started, want.Started) || !sameTime(got.Ended, want.Ended) {
					t.Errorf("started %v ended %v, want %v and %v", got.Started, got.Ended, want.Started, want.Ended)
				}
				got.Started, got.Ended = want.Started, want.Ended
				if !reflect.DeepEqual(got, want) {
					t.Errorf("run = %+v\nwant  %+v", got, want)
				}
				return
			}
			t.Errorf("Runs has no run %d", run.ID)
		})
	}
}

// create is a create change for an LDAP entry with the given groups.
func create(dirID, primary string, aliases []string, groups ...string) store.Change {
	return store.Change{Kind: sdk.ChangeCreate, After: &store.Mailbox{
		DirID: dirID, DN: "cn=" + dirID + ",dc=example,dc=com", Kind: sdk.KindUser,
		Primary: primary, Aliases: aliases, Source: sdk.SourceLDAP, Groups: groups,
	}}
}

// newRun is a successful run record starting at start.
func newRun(domain string, start time.Time) *store.Run {
	return &store.Run{Domain: domain, Started: start, Ended: start.Add(1500 * time.Millisecond), Outcome: store.OutcomeOK}
}

// runAt is a successful run record starting now, computed from the
// domain's current generation.
func runAt(t *testing.T, s store.Store, domain string) *store.Run {
	t.Helper()
	run := newRun(domain, time.Now())
	run.Generation = snapshot(t, s, domain).Generation
	return run
}

func apply(t *testing.T, s store.Store, domain string, changes ...store.Change) {
	t.Helper()
	if err := s.Apply(t.Context(), domain, changes, runAt(t, s, domain)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func applyErr(t *testing.T, s store.Store, domain string, changes ...store.Change) error {
	t.Helper()
	return s.Apply(t.Context(), domain, changes, runAt(t, s, domain))
}

// applyRetry applies changes to domain as a run does while other writers
// work on it: read, apply, and read again if the domain changed in between.
func applyRetry(ctx context.Context, s store.Store, changes ...store.Change) error {
	for range 1000 {
		snap, err := s.Snapshot(ctx, domain, nil)
		if err != nil {
			return err
		}
		run := newRun(domain, time.Now())
		run.Generation = snap.Generation
		err = s.Apply(ctx, domain, changes, run)
		if !errors.Is(err, store.ErrStoreChanged) {
			return err
		}
	}
	return errors.New("Apply: the domain changed before every one of 1000 tries")
}

func runsOf(t *testing.T, s store.Store, domain string) []store.Run {
	t.Helper()
	runs, err := AllRuns(t.Context(), s, domain)
	if err != nil {
		t.Fatalf("AllRuns: %v", err)
	}
	return runs
}

// AllRuns reads every run of a domain, newest first by id, each with its
// changes: RunsPage a page of runs at a time, RunChanges a page of changes
// at a time. It is for tests, which keep a few small runs; a program pages
// instead (a domain may keep years of runs of 100,000 changes).
func AllRuns(ctx context.Context, s store.Store, domain string) ([]store.Run, error) {
	const page = 1000
	var runs []store.Run
	for before := int64(0); ; {
		p, err := s.RunsPage(ctx, domain, page, before)
		if err != nil {
			return nil, err
		}
		runs = append(runs, p...)
		if len(p) < page {
			break
		}
		before = p[len(p)-1].ID
	}
	for i := range runs {
		rcs, err := AllRunChanges(ctx, s, domain, runs[i].ID)
		if err != nil {
			return nil, err
		}
		runs[i].Changes = rcs
	}
	return runs, nil
}

// AllRunChanges reads every change of run id of a domain, in order, a page
// of RunChanges at a time; nil if it has none.
func AllRunChanges(ctx context.Context, s store.Store, domain string, id int64) ([]store.RunChange, error) {
	const page = 10000
	var all []store.RunChange
	for {
		p, err := s.RunChanges(ctx, domain, id, len(all), page)
		if err != nil {
			return nil, err
		}
		all = append(all, p...)
		if len(p) < page {
			return all, nil
		}
	}
}

func mailboxes(t *testing.T, s store.Store, domain string) []store.Mailbox {
	t.Helper()
	ms, err := s.Mailboxes(t.Context(), domain)
	if err != nil {
		t.Fatalf("Mailboxes: %v", err)
	}
	return ms
}

func acquire(t *testing.T, s store.Store, domain, holder string, ttl time.Duration) store.Lease {
	t.Helper()
	l, err := s.AcquireLease(t.Context(), domain, holder, ttl)
	if err != nil {
		t.Fatalf("AcquireLease(%s, %s): %v", domain, holder, err)
	}
	if l.Domain != domain || l.Holder != holder || l.Since.IsZero() || !l.Expiry.After(l.Since) {
		t.Errorf("AcquireLease(%s, %s) = %+v", domain, holder, l)
	}
	return l
}

// wantBusy checks that err is a *store.BusyError for holder's lease on
// domain, and returns that lease.
func wantBusy(t *testing.T, err error, domain, holder string) store.Lease {
	t.Helper()
	var busy *store.BusyError
	if !errors.As(err, &busy) || !errors.Is(err, store.ErrDomainBusy) {
		t.Fatalf("error = %v, want a *store.BusyError", err)
	}
	if busy.Lease.Domain != domain || busy.Lease.Holder != holder {
		t.Errorf("busy lease = %+v, want %s's lease on %s", busy.Lease, holder, domain)
	}
	return busy.Lease
}

// waitPast sleeps until t has passed, with a margin.
func waitPast(t time.Time) {
	time.Sleep(time.Until(t) + 20*time.Millisecond)
}

// sameTime reports whether a and b are the same instant, give or take what
// a store may round away.
func sameTime(a, b time.Time) bool {
	return a.Sub(b).Abs() < time.Millisecond
}

func addGroups(t *testing.T, s store.Store, domain string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := s.AddGroup(t.Context(), domain, n); err != nil {
			t.Fatalf("AddGroup %q: %v", n, err)
		}
	}
}

func addMailbox(t *testing.T, s store.Store, domain string, m store.Mailbox) int64 {
	t.Helper()
	id, err := s.AddMailbox(t.Context(), domain, m)
	if err != nil {
		t.Fatalf("AddMailbox %s: %v", m.Primary, err)
	}
	return id
}

func snapshot(t *testing.T, s store.Store, domain string, aliasDomains ...string) *store.Snapshot {
	t.Helper()
	snap, err := s.Snapshot(t.Context(), domain, aliasDomains)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return snap
}

// find returns the mailbox of snap with that primary address.
func find(t *testing.T, snap *store.Snapshot, primary string) store.Mailbox {
	t.Helper()
	for _, m := range snap.Mailboxes {
		if m.Primary == primary {
			return m
		}
	}
	t.Fatalf("no mailbox %s in snapshot of %s: %+v", primary, snap.Domain, snap.Mailboxes)
	return store.Mailbox{}
}

func wantMailbox(t *testing.T, got, want store.Mailbox) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mailbox = %+v\nwant      %+v", got, want)
	}
}

func wantOwners(t *testing.T, snap *store.Snapshot, want map[string]int64) {
	t.Helper()
	if !reflect.DeepEqual(snap.Owners, want) {
		t.Errorf("Owners = %v\nwant     %v", snap.Owners, want)
	}
}

func wantResolve(t *testing.T, s store.Store, addr, primary string) {
	t.Helper()
	got, err := s.Resolve(t.Context(), addr)
	if err != nil || got != primary {
		t.Errorf("Resolve(%q) = %q, %v; want %q", addr, got, err, primary)
	}
}

func wantResolveNotFound(t *testing.T, s store.Store, addr string) {
	t.Helper()
	got, err := s.Resolve(t.Context(), addr)
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Resolve(%q) = %q, %v; want ErrNotFound", addr, got, err)
	}
}

// wantErr checks that err is target and that its message names every one of
// mention (the failing change, the object).
func wantErr(t *testing.T, err, target error, mention ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error = %v, want %v", err, target)
		return
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %s", err, m)
		}
	}
}
