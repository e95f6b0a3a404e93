package storetest

import (
	"errors"
	"reflect"
	"testing"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// testGroupMembers checks the source of each membership that GroupMembers
// shows: a sync's (a create's groups, an add_member) is ldap, one made by
// hand (Assign, AddMailbox's groups) is manual, whatever the mailbox's
// source; an add_member of a hand-made membership makes it ldap (the sync
// takes it over); an Assign of a member of either kind is ErrExists and
// changes nothing.
func testGroupMembers(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales", "Support", "Empty")
	addGroups(t, s, otherDomain, "Sales", "Staff")
	addMailbox(t, s, otherDomain, store.Mailbox{Primary: "olga@other.com", Groups: []string{"Sales"}})

	apply(t, s, domain,
		create("guid-a", "alice@example.com", []string{"al@example.com"}, "Sales"),
		create("guid-b", "bob@example.com", nil))
	addMailbox(t, s, domain, store.Mailbox{Primary: "carol@example.com", Groups: []string{"Sales"}})
	addMailbox(t, s, domain, store.Mailbox{Primary: "dan@example.com"})
	// A hand-made assignment of a mailbox from the directory, by an alias
	// or in any case.
	if err := s.Assign(ctx, domain, "Support", "BOB@example.com"); err != nil {
		t.Fatalf("Assign bob: %v", err)
	}
	if err := s.Assign(ctx, domain, "Support", "dan@example.com"); err != nil {
		t.Fatalf("Assign dan: %v", err)
	}
	wantErr(t, s.Assign(ctx, domain, "Sales", "al@example.com"), store.ErrExists, `"Sales"`)
	wantErr(t, s.Assign(ctx, domain, "Sales", "carol@example.com"), store.ErrExists, `"Sales"`)

	ldap, manual := sdk.SourceLDAP, sdk.SourceManual
	wantMembers(t, s, "Sales", []store.Member{
		{Address: "alice@example.com", Source: ldap, MailboxSource: ldap},
		{Address: "carol@example.com", Source: manual, MailboxSource: manual},
	})
	wantMembers(t, s, "Support", []store.Member{
		{Address: "bob@example.com", Source: manual, MailboxSource: ldap},
		{Address: "dan@example.com", Source: manual, MailboxSource: manual},
	})
	wantMembers(t, s, "Empty", nil)

	// A sync adds bob to Support, where he is by hand already, and alice:
	// both memberships are the sync's now. The adopt of dan makes his
	// mailbox an LDAP one and keeps his hand-made membership.
	snap := snapshot(t, s, domain)
	alice, bob, dan := find(t, snap, "alice@example.com"), find(t, snap, "bob@example.com"), find(t, snap, "dan@example.com")
	adopted := dan
	adopted.DirID, adopted.DN = "guid-d", "cn=dan,dc=example,dc=com"
	apply(t, s, domain,
		store.Change{Kind: sdk.ChangeAddMember, Before: &bob, After: &bob, Group: "Support"},
		store.Change{Kind: sdk.ChangeAddMember, Before: &alice, After: &alice, Group: "Support"},
		store.Change{Kind: sdk.ChangeAdopt, Before: &dan, After: &adopted})
	wantMembers(t, s, "Support", []store.Member{
		{Address: "alice@example.com", Source: ldap, MailboxSource: ldap},
		{Address: "bob@example.com", Source: ldap, MailboxSource: ldap},
		{Address: "dan@example.com", Source: manual, MailboxSource: ldap},
	})
	wantErr(t, s.Assign(ctx, domain, "Support", "bob@example.com"), store.ErrExists, `"Support"`)

	// Taken away and assigned again by hand, bob's membership is hand-made
	// again; a remove_member, the deletion of a mailbox and the removal of
	// a group leave nothing of theirs behind.
	if err := s.Unassign(ctx, domain, "Support", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.Assign(ctx, domain, "Support", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	snap = snapshot(t, s, domain)
	alice = find(t, snap, "alice@example.com")
	apply(t, s, domain, store.Change{Kind: sdk.ChangeRemoveMember, Before: &alice, After: &alice, Group: "Support"})
	if err := s.RemoveMailbox(ctx, domain, "carol@example.com"); err != nil {
		t.Fatal(err)
	}
	wantMembers(t, s, "Support", []store.Member{
		{Address: "bob@example.com", Source: manual, MailboxSource: ldap},
		{Address: "dan@example.com", Source: manual, MailboxSource: ldap},
	})
	wantMembers(t, s, "Sales", []store.Member{{Address: "alice@example.com", Source: ldap, MailboxSource: ldap}})
	if err := s.RemoveGroup(ctx, domain, "Sales"); err != nil {
		t.Fatal(err)
	}
	addGroups(t, s, domain, "Sales")
	wantMembers(t, s, "Sales", nil)
	apply(t, s, domain, create("guid-c", "carol@example.com", nil, "Sales"))
	wantMembers(t, s, "Sales", []store.Member{{Address: "carol@example.com", Source: ldap, MailboxSource: ldap}})

	// Another domain's group of the same name is its own.
	if got, err := s.GroupMembers(ctx, otherDomain, "Sales"); err != nil ||
		!reflect.DeepEqual(got, []store.Member{{Address: "olga@other.com", Source: manual, MailboxSource: manual}}) {
		t.Errorf("GroupMembers(%s, Sales) = %+v, %v; want olga only", otherDomain, got, err)
	}

	notFound := []struct {
		name, domain, group string
	}{
		{"OtherCase", domain, "sales"},
		{"NoSuchGroup", domain, "Nobody"},
		{"GroupOfAnotherDomain", domain, "Staff"},
		{"UnknownDomain", "unknown.example.com", "Sales"},
	}
	for _, tc := range notFound {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.GroupMembers(ctx, tc.domain, tc.group)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GroupMembers(%s, %q) = %+v, %v; want ErrNotFound", tc.domain, tc.group, got, err)
			}
		})
	}
}

// wantMembers checks GroupMembers of a group of domain.
func wantMembers(t *testing.T, s store.Store, group string, want []store.Member) {
	t.Helper()
	got, err := s.GroupMembers(t.Context(), domain, group)
	if err != nil {
		t.Fatalf("GroupMembers(%q): %v", group, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GroupMembers(%q) = %+v\nwant %+v", group, got, want)
	}
}
