package storetest

import (
	"reflect"
	"slices"
	"testing"

	"github.com/dirsync/dirsync/host/store"
)

// testSnapshotPart checks SnapshotPart against the whole Snapshot: the
// same mailboxes (those of the directory ids, and the owners of the
// addresses, of any domain and source), their addresses in the domains,
// the groups and generation, and the count of LDAP mailboxes.
func testSnapshotPart(t *testing.T, s store.Store) {
	pr, ok := s.(store.PartReader)
	if !ok {
		t.Fatalf("%T is no store.PartReader", s)
	}
	addGroups(t, s, domain, "Sales", "Staff")
	addGroups(t, s, otherDomain, "Staff")
	apply(t, s, domain,
		create("guid-a", "alice@example.com", []string{"alice@example.org", "a@example.com"}, "Sales"),
		create("guid-b", "bob@example.com", nil, "Staff"),
		create("guid-c", "carol@example.com", []string{"c@example.org"}, "Sales", "Staff"))
	addMailbox(t, s, domain, store.Mailbox{Primary: "hand@example.com", Aliases: []string{"hand@example.org"}, Groups: []string{"Sales"}})
	addMailbox(t, s, otherDomain, store.Mailbox{
		Primary: "olga@other.com", Aliases: []string{"olga@example.org", "o@other.com"}, Groups: []string{"Staff"},
	})
	const ldapCount = 3

	tests := []struct {
		name      string
		dirIDs    []string
		addresses []string
		want      []string // primaries of the mailboxes in the part
	}{
		{"Nothing", nil, nil, nil},
		{"ByDirectoryID", []string{"guid-a", "guid-c", "guid-gone"}, nil, []string{"alice@example.com", "carol@example.com"}},
		{"ByAliasOfAnother", []string{"guid-b"}, []string{"c@example.org"}, []string{"bob@example.com", "carol@example.com"}},
		{"HandMadeAndForeignOwners", nil, []string{"hand@example.org", "olga@example.org", "nobody@example.com"},
			[]string{"hand@example.com", "olga@other.com"}},
		{"BothWaysOnce", []string{"guid-a"}, []string{"a@example.com", "alice@example.com"}, []string{"alice@example.com"}},
		// A hand-made mailbox has no directory id to be found by.
		{"NotHandMadeByEmptyID", []string{""}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			full := snapshot(t, s, domain, aliasDomain)
			got, ldap, err := pr.SnapshotPart(t.Context(), domain, []string{aliasDomain}, tc.dirIDs, tc.addresses)
			if err != nil {
				t.Fatalf("SnapshotPart: %v", err)
			}
			if ldap != ldapCount {
				t.Errorf("ldap = %d, want %d", ldap, ldapCount)
			}
			want := &store.Snapshot{Domain: domain, Groups: full.Groups, Generation: full.Generation,
				Owners: map[string]int64{}, Foreign: map[int64]store.Mailbox{}}
			take := func(m store.Mailbox) {
				if !slices.Contains(tc.want, m.Primary) {
					return
				}
				for a, id := range full.Owners {
					if id == m.ID {
						want.Owners[a] = id
					}
				}
			}
			for _, m := range full.Mailboxes {
				take(m)
				if slices.Contains(tc.want, m.Primary) {
					want.Mailboxes = append(want.Mailboxes, m)
				}
			}
			for id, m := range full.Foreign {
				take(m)
				if slices.Contains(tc.want, m.Primary) {
					want.Foreign[id] = m
				}
			}
			if len(got.Mailboxes) == 0 {
				got.Mailboxes = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("SnapshotPart =\n %+v\nwant the Snapshot's part\n %+v", got, want)
			}
		})
	}
	// The count is of LDAP mailboxes of the domain only.
	apply(t, s, otherDomain, create("guid-o", "oscar@other.com", nil))
	if _, ldap, err := pr.SnapshotPart(t.Context(), domain, nil, nil, nil); err != nil || ldap != ldapCount {
		t.Errorf("SnapshotPart after another domain's sync: ldap = %d, %v; want %d", ldap, err, ldapCount)
	}
}
