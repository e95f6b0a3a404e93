package guard

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

func TestDeletes(t *testing.T) {
	def := Limits{MaxDeletes: 500, MaxDeletePercent: 10, PercentFloor: 10}
	zero := Limits{}
	for _, tc := range []struct {
		name           string
		l              Limits
		n, total, kept int
		confirmed      bool
		stop           string // part of the reason, "" = passes
		advice         string // part of the message saying what to do
	}{
		{"nothing to delete", def, 0, 100, 100, false, "", ""},
		{"few deletes above percent but under floor", def, 10, 20, 10, false, "", ""},
		{"above floor and percent", def, 11, 100, 89, false, "max_delete_percent", "--confirm-deletes"},
		{"above floor and percent, confirmed", def, 11, 100, 89, true, "", ""},
		{"above floor, under percent", def, 11, 1000, 989, false, "", ""},
		{"above max deletes", def, 501, 100000, 99499, false, "max_deletes", "--confirm-deletes"},
		{"above max deletes, confirmed", def, 501, 100000, 99499, true, "", ""},
		{"empty result with LDAP mailboxes", def, 1, 1, 0, false, "no valid entry", "never deletes"},
		{"empty result with LDAP mailboxes, confirmed", def, 6, 6, 0, true, "no valid entry", "never deletes"},
		{"empty result, limits 0, confirmed", zero, 6, 6, 0, true, "no valid entry", "never deletes"},
		{"empty result, empty store", def, 0, 0, 0, false, "", ""},
		{"max_deletes 0 stops the first delete", Limits{MaxDeletes: 0, MaxDeletePercent: 100, PercentFloor: 1000}, 1, 1000, 999, false, "max_deletes = 0", "--confirm-deletes"},
		{"max_deletes 0, nothing to delete", zero, 0, 1000, 1000, false, "", ""},
		{"percent 0 and floor 0 stop the first delete", Limits{MaxDeletes: 1000, MaxDeletePercent: 0, PercentFloor: 0}, 1, 1000, 999, false, "max_delete_percent = 0%", "--confirm-deletes"},
		{"floor 0 applies the share from the first delete", Limits{MaxDeletes: 1000, MaxDeletePercent: 10, PercentFloor: 0}, 2, 10, 8, false, "max_delete_percent = 10%", "--confirm-deletes"},
		{"all limits 0, confirmed", zero, 3, 10, 7, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Deletes(tc.n, tc.total, tc.kept, tc.l, tc.confirmed)
			if tc.stop == "" {
				if err != nil {
					t.Fatalf("stopped: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.stop) || !strings.Contains(err.Error(), tc.advice) {
				t.Fatalf("err = %v, want a stop naming %q and %q", err, tc.stop, tc.advice)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	dom := sdk.Domain{Name: "example.com", AliasDomains: []string{"example.org"}}
	ldapM := sdk.Mailbox{ID: 1, DirID: "a", Primary: "a@example.com", Source: sdk.SourceLDAP, Kind: sdk.KindUser}
	hand := sdk.Mailbox{ID: 2, Primary: "hand@example.com", Source: sdk.SourceManual, Kind: sdk.KindUser}
	ldapX := sdk.Mailbox{ID: 3, DirID: "x", Primary: "x@example.com", Aliases: []string{"xa@example.com"}, Source: sdk.SourceLDAP, Kind: sdk.KindUser}
	ldapY := sdk.Mailbox{ID: 4, DirID: "y", Primary: "y@example.com", Aliases: []string{"ya@example.com"}, Source: sdk.SourceLDAP, Kind: sdk.KindUser}
	snap := &store.Snapshot{Domain: "example.com", Mailboxes: []sdk.Mailbox{ldapM, hand, ldapX, ldapY},
		Groups: []store.Group{{Name: "Sales"}}, Owners: map[string]int64{"a@example.com": 1, "hand@example.com": 2,
			"x@example.com": 3, "xa@example.com": 3, "y@example.com": 4, "ya@example.com": 4}}
	update := func(m sdk.Mailbox, primary string, aliases ...string) sdk.Change {
		after := m
		after.Primary, after.Aliases = primary, aliases
		return sdk.Change{Kind: sdk.ChangeUpdate, Before: &m, After: &after}
	}
	// X's new primary is a hand-made mailbox's; X's alias goes to Y, Y's
	// alias to a new mailbox.
	xConflict := update(ldapX, "hand@example.com")
	xConflict.Conflicts = []sdk.Conflict{{Address: "hand@example.com", MailboxID: 2, Source: sdk.SourceManual}}
	yTakes := update(ldapY, "y@example.com", "xa@example.com")
	veto0 := sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 0, Action: sdk.Veto, Reason: "conflict"}}}
	// Y drops its alias, X picks it up; the policy keeps it on Y.
	yDrops := update(ldapY, "y@example.com")
	xTakesYa := update(ldapX, "x@example.com", "xa@example.com", "ya@example.com")
	keepYa := func(i int, primary, alias string) sdk.ReconcileResponse {
		return sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: i, Action: sdk.Replace,
			Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, After: &sdk.Mailbox{Primary: primary, Aliases: []string{alias}}}}}}
	}
	nConflict := sdk.Change{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{DirID: "n", Primary: "n@example.com", Source: sdk.SourceLDAP,
		Aliases: []string{"xa@example.com", "hand@example.com"}}, Conflicts: []sdk.Conflict{{Address: "hand@example.com", MailboxID: 2, Source: sdk.SourceManual}}}
	create := func(primary string, groups ...string) sdk.Change {
		return sdk.Change{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{DirID: "n", Primary: primary, Source: sdk.SourceLDAP, Groups: groups}}
	}
	conflicting := create("hand@example.com")
	conflicting.Conflicts = []sdk.Conflict{{Address: "hand@example.com", MailboxID: 2, Source: sdk.SourceManual}}

	for _, tc := range []struct {
		name     string
		proposed []sdk.Change
		at       []int // where the asked changes are among proposed (nil: all)
		resp     sdk.ReconcileResponse
		final    int
		vetoed   int
		waits    []string // reasons of the changes held back, in order
		err      string
	}{
		{name: "accept all", proposed: []sdk.Change{create("n@example.com", "Sales"), create("n2@example.org")}, final: 2},
		{name: "veto a conflict", proposed: []sdk.Change{conflicting},
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 0, Action: sdk.Veto, Reason: "conflict"}}}, vetoed: 1},
		{name: "accepting a conflict takes over an address", proposed: []sdk.Change{conflicting}, err: "belongs to another mailbox"},
		{name: "adopt the conflicting mailbox", proposed: []sdk.Change{conflicting}, final: 1,
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 0, Action: sdk.Replace,
				Replacement: &sdk.Change{Kind: sdk.ChangeAdopt, After: &sdk.Mailbox{ID: 2, Primary: "hand@example.com"}}}}}},
		{name: "adopt an unrelated mailbox", proposed: []sdk.Change{create("n@example.com")}, err: "not a conflicting mailbox",
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 0, Action: sdk.Replace,
				Replacement: &sdk.Change{Kind: sdk.ChangeAdopt, After: &sdk.Mailbox{ID: 1, Primary: "a@example.com"}}}}}},
		{name: "create a group", proposed: []sdk.Change{create("n@example.com", "Nope")}, err: "never created"},
		{name: "address outside the domain", proposed: []sdk.Change{create("n@other.net")}, err: "outside domain"},
		{name: "delete a hand-made mailbox", proposed: []sdk.Change{{Kind: sdk.ChangeDelete, Before: &hand}}, err: "never touches"},
		{name: "delete a mailbox of another domain", proposed: []sdk.Change{{Kind: sdk.ChangeDelete, Before: &sdk.Mailbox{ID: 99, Primary: "x@other.net"}}}, err: "not in domain"},
		{name: "membership of a hand-made mailbox", proposed: []sdk.Change{{Kind: sdk.ChangeRemoveMember, Before: &hand, Group: "Sales"}}, err: "never touches"},
		{name: "decision out of range", proposed: []sdk.Change{create("n@example.com")}, err: "only 1 changes",
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 3, Action: sdk.Veto}}}},
		{name: "replace a delete by a create", proposed: []sdk.Change{{Kind: sdk.ChangeDelete, Before: &ldapM}}, err: "cannot be replaced",
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 0, Action: sdk.Replace, Replacement: &sdk.Change{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{Primary: "z@example.com"}}}}}},
		{name: "delete frees an address for a create", proposed: []sdk.Change{{Kind: sdk.ChangeDelete, Before: &ldapM}, create("a@example.com")}, final: 2},
		{name: "a decision of an asked change lands on it", proposed: []sdk.Change{create("n@example.com"), conflicting}, at: []int{1},
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 0, Action: sdk.Veto, Reason: "conflict"}}}, final: 1, vetoed: 1},
		{name: "a decision beyond the asked changes", proposed: []sdk.Change{create("n@example.com"), conflicting}, at: []int{1}, err: "only 1 changes",
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 1, Action: sdk.Veto}}}},
		{name: "a vetoed update holds back the change that takes its address", proposed: []sdk.Change{xConflict, yTakes},
			resp: veto0, vetoed: 2, waits: []string{"address xa@example.com stays with mailbox x@example.com"}},
		{name: "and what waits on that in turn", proposed: []sdk.Change{xConflict, create("ya@example.com"), yTakes, create("n@example.com")},
			resp: veto0, final: 1, vetoed: 3, waits: []string{"address xa@example.com stays with mailbox x@example.com", "address ya@example.com stays with mailbox y@example.com"}},
		{name: "a replacement that keeps the address holds back the change that takes it", proposed: []sdk.Change{update(ldapX, "x@example.com"), yTakes},
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 0, Action: sdk.Replace,
				Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, After: &sdk.Mailbox{Primary: "x@example.com", Aliases: []string{"xa@example.com"}}}}}},
			final: 1, vetoed: 1, waits: []string{"address xa@example.com stays with mailbox x@example.com"}},
		{name: "a replacement that takes an address its owner keeps breaks the rules", proposed: []sdk.Change{update(ldapX, "x@example.com", "xa@example.com"), update(ldapY, "y@example.com")},
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 1, Action: sdk.Replace,
				Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, After: &sdk.Mailbox{Primary: "y@example.com", Aliases: []string{"xa@example.com"}}}}}},
			err: "belongs to another mailbox"},
		{name: "a kept address holds back its taker, the taker first", proposed: []sdk.Change{xTakesYa, yDrops},
			resp: keepYa(1, "y@example.com", "ya@example.com"), final: 1, vetoed: 1, waits: []string{"address ya@example.com stays with mailbox y@example.com"}},
		{name: "a kept address holds back its taker, the keeper first", proposed: []sdk.Change{yDrops, xTakesYa},
			resp: keepYa(0, "y@example.com", "ya@example.com"), final: 1, vetoed: 1, waits: []string{"address ya@example.com stays with mailbox y@example.com"}},
		{name: "a replacement's addresses compare as the store keeps them", proposed: []sdk.Change{xTakesYa, yDrops},
			resp: keepYa(1, " Y@Example.com", "YA@example.COM"), final: 1, vetoed: 1, waits: []string{"address ya@example.com stays with mailbox y@example.com"}},
		{name: "a replacement that takes what a vetoed change kept breaks the rules", proposed: []sdk.Change{update(ldapX, "x@example.com"), update(ldapY, "y@example.com", "ya@example.com")},
			resp: sdk.ReconcileResponse{Decisions: []sdk.Decision{{Index: 0, Action: sdk.Veto, Reason: "no"}, {Index: 1, Action: sdk.Replace,
				Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, After: &sdk.Mailbox{Primary: "y@example.com", Aliases: []string{"ya@example.com", "xa@example.com"}}}}}},
			err: "xa@example.com, which belongs to another mailbox"},
		{name: "an accepted conflict beside a waiting address breaks the rules", proposed: []sdk.Change{xConflict, nConflict},
			resp: veto0, err: "hand@example.com, which belongs to another mailbox"},
		{name: "an accepted update that releases the address lets the change take it", proposed: []sdk.Change{update(ldapX, "x@example.com"), yTakes}, final: 2},
		{name: "an unasked conflict is accepted and checked", proposed: []sdk.Change{create("n@example.com"), conflicting}, at: []int{0},
			err: "belongs to another mailbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			final, vetoed, err := Decide("test", dom, snap, tc.proposed, tc.at, tc.resp)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), `policy "test"`) {
					t.Fatalf("err = %v, want one naming the policy and %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(final) != tc.final || len(vetoed) != tc.vetoed {
				t.Fatalf("final %d vetoed %d, want %d and %d", len(final), len(vetoed), tc.final, tc.vetoed)
			}
			var waits []string
			for _, v := range vetoed {
				if strings.HasPrefix(v.Reason, "waits on") {
					waits = append(waits, v.Reason)
				}
			}
			if len(waits) != len(tc.waits) {
				t.Fatalf("held back: %q, want %d", waits, len(tc.waits))
			}
			for i, w := range tc.waits {
				if !strings.Contains(waits[i], w) {
					t.Errorf("held back #%d: %q, want it to say %q", i, waits[i], w)
				}
			}
		})
	}
}

func TestAsked(t *testing.T) {
	mb := &sdk.Mailbox{ID: 1, Primary: "a@example.com", Source: sdk.SourceLDAP}
	proposed := []sdk.Change{
		{Kind: sdk.ChangeCreate, After: mb},
		{Kind: sdk.ChangeUpdate, Before: mb, After: mb, Conflicts: []sdk.Conflict{{Address: "a@example.com"}}},
		{Kind: sdk.ChangeDelete, Before: mb},
		{Kind: sdk.ChangeAdopt, After: mb},
		{Kind: sdk.ChangeAddMember, Before: mb, After: mb, Group: "Sales"},
	}
	for _, tc := range []struct {
		scope sdk.ReconcileScope
		at    []int
	}{
		{sdk.ReconcileAll, nil},
		{sdk.ReconcileScope(7), nil}, // unknown: all
		{sdk.ReconcileConflicts, []int{1, 3}},
	} {
		asked, at := Asked(tc.scope, proposed)
		if !slices.Equal(at, tc.at) || (at == nil) != (tc.at == nil) {
			t.Errorf("scope %d: at = %v, want %v", tc.scope, at, tc.at)
		}
		if want := len(proposed); tc.at != nil {
			want = len(tc.at)
			if len(asked) != want {
				t.Errorf("scope %d: %d asked, want %d", tc.scope, len(asked), want)
			}
			for i, j := range at {
				if asked[i].Kind != proposed[j].Kind {
					t.Errorf("scope %d: asked[%d] is a %v, want %v", tc.scope, i, asked[i].Kind, proposed[j].Kind)
				}
			}
		} else if len(asked) != want {
			t.Errorf("scope %d: %d asked, want %d", tc.scope, len(asked), want)
		}
	}
	if asked, at := Asked(sdk.ReconcileConflicts, proposed[:1]); len(asked) != 0 || at == nil {
		t.Errorf("nothing to ask: asked %v, at %v; want none, and at not nil", asked, at)
	}
}

// TestEmptyReadNamesTheSearch: a stop for an empty read, and the note for a
// read of nothing, say which filter and base were searched and where to
// look; the Active Directory hint comes only with an AD filter.
func TestEmptyReadNamesTheSearch(t *testing.T) {
	const base = "dc=example,dc=com"
	const ad = "(|(sAMAccountType=805306368)(sAMAccountType=268435456))"
	const ol = "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))"
	stop := func(read int, filter string) string {
		err := Deletes(3, 3, 0, Limits{MaxDeletes: 500, MaxDeletePercent: 10, PercentFloor: 10}, true)
		se, ok := err.(*StopError)
		if !ok || !se.Empty {
			t.Fatalf("Deletes = %v, want an empty-read stop", err)
		}
		se.Filter, se.BaseDN, se.Read = filter, base, read
		return se.Error()
	}
	for _, tc := range []struct {
		name   string
		msg    string
		want   []string
		hasAD  bool
		noWant []string
	}{
		{name: "stop, nothing read, AD filter", msg: stop(0, ad), hasAD: true, want: []string{
			"stopped before writing: the directory returned 0 entries for filter " + ad + " under base " + base,
			"while the store holds 3 LDAP mailboxes", "an empty read never deletes",
			"check [domain.ldap] filter and base_dn"}},
		{name: "stop, nothing read, OpenLDAP filter", msg: stop(0, ol), want: []string{
			"the directory returned 0 entries for filter " + ol + " under base " + base, "check [domain.ldap] filter and base_dn"}},
		{name: "stop, entries read, none valid", msg: stop(7, ol), want: []string{
			"the directory returned 7 entries for filter " + ol + " under base " + base + ", no valid entry among them"}},
		{name: "note, AD filter", msg: EmptyRead(0, ad, base), hasAD: true, want: []string{
			"the directory returned 0 entries for filter " + ad + " under base " + base + "; check [domain.ldap] filter and base_dn"},
			noWant: []string{"stopped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !strings.Contains(tc.msg, w) {
					t.Errorf("message lacks %q:\n%s", w, tc.msg)
				}
			}
			for _, w := range tc.noWant {
				if strings.Contains(tc.msg, w) {
					t.Errorf("message has %q:\n%s", w, tc.msg)
				}
			}
			if got := strings.Contains(tc.msg, "such as OpenLDAP, needs a filter for its own classes, e.g. inetOrgPerson and groupOfNames"); got != tc.hasAD {
				t.Errorf("Active Directory hint present = %v, want %v:\n%s", got, tc.hasAD, tc.msg)
			}
		})
	}
}

// BenchmarkDecide100k is the guard's check of a first sync's changes:
// 100,000 creates, none asked about.
func BenchmarkDecide100k(b *testing.B) {
	dom := sdk.Domain{Name: "example.com", Groups: []string{"Sales"}}
	snap := &store.Snapshot{Domain: "example.com", Groups: []store.Group{{Name: "Sales"}}}
	var proposed []sdk.Change
	for i := range 100_000 {
		mb := &sdk.Mailbox{Primary: fmt.Sprintf("user%06d@example.com", i), Aliases: []string{fmt.Sprintf("u%06d@example.com", i)},
			Kind: sdk.KindUser, Source: sdk.SourceLDAP, DirID: fmt.Sprint(i), Groups: []string{"Sales"}}
		proposed = append(proposed, sdk.Change{Kind: sdk.ChangeCreate, After: mb})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decide("standard", dom, snap, proposed, []int{}, sdk.ReconcileResponse{}); err != nil {
			b.Fatal(err)
		}
	}
}
