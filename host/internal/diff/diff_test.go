package diff

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

func TestNormDN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"cn=a,dc=example,dc=com", "cn=a,dc=example,dc=com"},
		{"CN=Ann Lee, OU=People,DC=Example,DC=com", "cn=ann lee,ou=people,dc=example,dc=com"},
		{"cn = x , dc=y", "cn=x,dc=y"},
		{"CN=Jörg,DC=x", "cn=jörg,dc=x"},
	} {
		if got := NormDN(tc.in); got != tc.want {
			t.Errorf("NormDN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// entry builds a ref and intent for a user.
func user(id, primary string, aliases []string, memberOf ...string) (Ref, sdk.Intent) {
	return Ref{ID: id, DN: "cn=" + id + ",ou=people,dc=example,dc=com"}, sdk.Intent{Kind: sdk.IntentMailbox,
		Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: primary, Aliases: aliases, MemberOf: memberOf, DisplayName: id}}
}

func group(id, name, target string, members ...string) (Ref, sdk.Intent) {
	return Ref{ID: id, DN: "cn=" + name + ",ou=groups,dc=example,dc=com"}, sdk.Intent{Kind: sdk.IntentGroup,
		Group: &sdk.GroupIntent{Name: name, Target: target, Members: members}}
}

func summary(res *Result) string {
	var b []string
	for _, c := range res.Changes {
		m := c.After
		if m == nil {
			m = c.Before
		}
		s := c.Kind.String() + " " + m.Primary
		if c.Group != "" {
			s += " " + c.Group
		}
		if c.Kind == sdk.ChangeCreate && len(m.Groups) > 0 {
			s += " [" + strings.Join(m.Groups, ",") + "]"
		}
		for _, x := range c.Conflicts {
			s += " conflict:" + x.Address
		}
		b = append(b, s)
	}
	return strings.Join(b, "; ")
}

func TestCompute(t *testing.T) {
	snapOf := func(ms ...sdk.Mailbox) *store.Snapshot {
		s := &store.Snapshot{Domain: "example.com", Owners: map[string]int64{}, Groups: []store.Group{{Name: "Sales"}, {Name: "Eng"}}}
		for _, m := range ms {
			s.Mailboxes = append(s.Mailboxes, m)
			s.Owners[m.Primary] = m.ID
			for _, a := range m.Aliases {
				s.Owners[a] = m.ID
			}
		}
		return s
	}
	ldap := func(id int64, dirID, primary string, groups ...string) sdk.Mailbox {
		return sdk.Mailbox{ID: id, DirID: dirID, DN: "cn=" + dirID + ",ou=people,dc=example,dc=com", Kind: sdk.KindUser,
			Primary: primary, DisplayName: dirID, Source: sdk.SourceLDAP, Groups: groups}
	}
	manual := func(id int64, primary string, groups ...string) sdk.Mailbox {
		return sdk.Mailbox{ID: id, Kind: sdk.KindUser, Primary: primary, Source: sdk.SourceManual, Groups: groups}
	}
	type in struct {
		ref    Ref
		intent sdk.Intent
	}
	mk := func(r Ref, i sdk.Intent) in { return in{r, i} }
	salesDN := "cn=Sales,ou=groups,dc=example,dc=com"
	tests := []struct {
		name      string
		entries   []in
		snap      *store.Snapshot
		want      string
		unmatched string
		skipped   int
		held      int
	}{
		{
			name:    "empty store: creates with groups from member and memberOf",
			entries: []in{mk(user("a", "a@example.com", nil)), mk(user("b", "b@example.com", []string{"b2@example.com"}, salesDN)), mk(group("g1", "Sales", "Sales", "CN=a,OU=People,DC=example,DC=com"))},
			snap:    snapOf(),
			want:    "create a@example.com [Sales]; create b@example.com [Sales]",
		},
		{
			name:      "unmatched group is listed, not created",
			entries:   []in{mk(user("a", "a@example.com", nil)), mk(group("g1", "Marketing", "", "cn=a,ou=people,dc=example,dc=com"))},
			snap:      snapOf(),
			want:      "create a@example.com",
			unmatched: "Marketing",
		},
		{
			name:    "nothing changed: no changes",
			entries: []in{mk(user("a", "a@example.com", nil, salesDN)), mk(group("g1", "Sales", "Sales"))},
			snap:    snapOf(ldap(1, "a", "a@example.com", "Sales")),
			want:    "",
		},
		{
			name:    "rename keeps the mailbox: update, not delete+create",
			entries: []in{mk(user("a", "new@example.com", nil))},
			snap:    snapOf(ldap(1, "a", "a@example.com")),
			want:    "update new@example.com",
		},
		{
			name:    "dropped entry is deleted, manual mailbox untouched",
			entries: []in{mk(user("a", "a@example.com", nil))},
			snap:    snapOf(ldap(1, "a", "a@example.com"), ldap(2, "gone", "gone@example.com"), manual(3, "hand@example.com", "Eng")),
			want:    "delete gone@example.com",
		},
		{
			name:    "hand-made membership of an LDAP mailbox is removed (R5)",
			entries: []in{mk(user("a", "a@example.com", nil))},
			snap:    snapOf(ldap(1, "a", "a@example.com", "Eng")),
			want:    "remove_member a@example.com Eng",
		},
		{
			name:    "address of a manual mailbox is a conflict (R10)",
			entries: []in{mk(user("a", "hand@example.com", nil))},
			snap:    snapOf(manual(3, "hand@example.com")),
			want:    "create hand@example.com conflict:hand@example.com",
		},
		{
			name:    "alias claimed twice: smaller id wins, other reported",
			entries: []in{mk(user("b", "b@example.com", []string{"x@example.com"})), mk(user("a", "a@example.com", []string{"x@example.com"}))},
			snap:    snapOf(),
			want:    "create a@example.com; create b@example.com",
			skipped: 1,
		},
		{
			name:    "alias claimed twice: the current owner keeps it",
			entries: []in{mk(user("b", "b@example.com", []string{"x@example.com"})), mk(user("a", "a@example.com", []string{"x@example.com"}))},
			snap:    snapOf(ldap(1, "a", "a@example.com"), sdk.Mailbox{ID: 2, DirID: "b", DN: "cn=b,ou=people,dc=example,dc=com", Kind: sdk.KindUser, Primary: "b@example.com", DisplayName: "b", Source: sdk.SourceLDAP, Aliases: []string{"x@example.com"}}),
			want:    "",
			skipped: 1,
		},
	}
	hold := func(id, reason string) in {
		return in{Ref{ID: id, DN: "cn=" + id + ",ou=people,dc=example,dc=com"}, sdk.Intent{Kind: sdk.IntentHold, Reason: reason,
			Skipped: []sdk.SkippedAddress{{Address: id + "\uFFFD@example.com", Reason: "invalid UTF-8 from the directory"}}}}
	}
	skipOf := func(id, reason string) in {
		return in{Ref{ID: id, DN: "cn=" + id + ",ou=people,dc=example,dc=com"}, sdk.Intent{Kind: sdk.IntentSkip, Reason: reason}}
	}
	withAliases := func(m sdk.Mailbox, aliases ...string) sdk.Mailbox { m.Aliases = aliases; return m }
	tests = append(tests, []struct {
		name      string
		entries   []in
		snap      *store.Snapshot
		want      string
		unmatched string
		skipped   int
		held      int
	}{
		{
			name: "held entry with a mailbox in groups: no change at all",
			entries: []in{hold("a", "primary address not usable"), mk(user("b", "b@example.com", nil, salesDN)),
				mk(group("g1", "Sales", "Sales")), mk(group("g2", "Eng", "Eng", "cn=b,ou=people,dc=example,dc=com"))},
			snap: snapOf(withAliases(ldap(1, "a", "a@example.com", "Eng", "Sales"), "a2@example.com"),
				ldap(2, "b", "b@example.com", "Eng", "Sales")),
			want:    "",
			skipped: 1, // the held entry's bad address
			held:    1,
		},
		{
			name: "held entry's addresses stay its own: no other entry takes them",
			entries: []in{hold("a", "bad"), mk(user("b", "a@example.com", nil)),
				mk(user("c", "c@example.com", []string{"a2@example.com", "c2@example.com"}))},
			snap:    snapOf(withAliases(ldap(1, "a", "a@example.com"), "a2@example.com")),
			want:    "create c@example.com",
			skipped: 3, // the held entry's bad address, b's primary, c's alias
			held:    1,
		},
		{
			// Each claimed the mailbox's addresses, the later one last:
			// the first, which gets the id, lost its primary, and the
			// mailbox was deleted.
			name:    "the same entry twice: its mailbox stays",
			entries: []in{mk(user("a", "a@example.com", nil)), mk(user("a", "a@example.com", nil))},
			snap:    snapOf(ldap(1, "a", "a@example.com")),
			want:    "",
			skipped: 1,
		},
		{
			name: "two entries of one directory id: the first by DN keeps the mailbox",
			entries: []in{mk(Ref{ID: "a", DN: "cn=z,ou=people,dc=example,dc=com"}, sdk.Intent{Kind: sdk.IntentMailbox,
				Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "a@example.com", DisplayName: "a"}}), mk(user("a", "a@example.com", nil))},
			snap:    snapOf(ldap(1, "a", "a@example.com")),
			want:    "",
			skipped: 1,
		},
		{
			name:    "held entry and a mailbox intent of the same directory id: the mailbox stays as it is",
			entries: []in{mk(user("a", "new@example.com", nil)), hold("a", "bad"), mk(user("c", "c@example.com", []string{"new@example.com"}))},
			snap:    snapOf(ldap(1, "a", "a@example.com", "Eng")),
			want:    "create c@example.com",
			skipped: 2, // the held entry's bad address, the duplicate id (c keeps its alias)
			held:    1,
		},
		{
			name:    "held entry without a mailbox: nothing",
			entries: []in{hold("a", "bad"), mk(group("g1", "Sales", "Sales", "cn=a,ou=people,dc=example,dc=com"))},
			snap:    snapOf(),
			want:    "",
			skipped: 1,
			held:    1,
		},
		{
			name:    "held entry without a mailbox, a manual mailbox with its address untouched",
			entries: []in{hold("a", "bad")},
			snap:    snapOf(manual(3, "a@example.com", "Sales")),
			want:    "",
			skipped: 1,
			held:    1,
		},
		{
			name:    "skipped entry (out of scope) with a mailbox: deleted as before",
			entries: []in{skipOf("a", "no address in domain example.com"), mk(group("g1", "Sales", "Sales", "cn=a,ou=people,dc=example,dc=com"))},
			snap:    snapOf(ldap(1, "a", "a@example.com", "Sales")),
			want:    "delete a@example.com",
			skipped: 1,
		},
		{
			name:    "unknown intent kind: held, not deleted",
			entries: []in{{Ref{ID: "a", DN: "cn=a,ou=people,dc=example,dc=com"}, sdk.Intent{Kind: 42, Reason: "future"}}},
			snap:    snapOf(ldap(1, "a", "a@example.com", "Eng")),
			want:    "",
			held:    1,
		},
	}...)
	nested := func(r Ref, it sdk.Intent) in { it.Group.Nested = true; return in{r, it} }
	innerDN := "cn=Inner,ou=groups,dc=example,dc=com"
	tests = append(tests, []struct {
		name      string
		entries   []in
		snap      *store.Snapshot
		want      string
		unmatched string
		skipped   int
		held      int
	}{
		{
			name:      "nested group: members of an unmatched inner group count when Nested",
			entries:   []in{mk(user("a", "a@example.com", nil)), nested(group("g1", "Sales", "Sales", innerDN)), mk(group("g2", "Inner", "", "cn=a,ou=people,dc=example,dc=com"))},
			snap:      snapOf(),
			want:      "create a@example.com [Sales]",
			unmatched: "Inner",
		},
		{
			name:      "nested group: without Nested only direct members count",
			entries:   []in{mk(user("a", "a@example.com", nil)), mk(group("g1", "Sales", "Sales", innerDN)), mk(group("g2", "Inner", "", "cn=a,ou=people,dc=example,dc=com"))},
			snap:      snapOf(),
			want:      "create a@example.com",
			unmatched: "Inner",
		},
		{
			name: "nested group: a cycle ends",
			entries: []in{mk(user("a", "a@example.com", nil)), nested(group("g1", "Sales", "Sales", innerDN)),
				nested(group("g2", "Inner", "", "cn=a,ou=people,dc=example,dc=com", "cn=Sales,ou=groups,dc=example,dc=com"))},
			snap:      snapOf(),
			want:      "create a@example.com [Sales]",
			unmatched: "Inner",
		},
	}...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var refs []Ref
			var intents []sdk.Intent
			for _, e := range tc.entries {
				refs = append(refs, e.ref)
				intents = append(intents, e.intent)
			}
			d := sdk.Domain{Name: "example.com"}
			res := Compute(d, refs, intents, tc.snap)
			if got := summary(res); got != tc.want {
				t.Errorf("changes:\n got %s\nwant %s", got, tc.want)
			}
			if got := strings.Join(res.Unmatched, ","); got != tc.unmatched {
				t.Errorf("unmatched = %q, want %q", got, tc.unmatched)
			}
			if len(res.Skipped) != tc.skipped {
				t.Errorf("skipped = %v, want %d", res.Skipped, tc.skipped)
			}
			if len(res.Held) != tc.held {
				t.Errorf("held = %v, want %d", res.Held, tc.held)
			}
			// A sync's diff proposes the same without listing the mailboxes.
			only := Changes(d, refs, intents, tc.snap)
			if got := summary(only); got != tc.want || only.Mailboxes != nil || only.Kept != len(res.Mailboxes) || res.Kept != len(res.Mailboxes) {
				t.Errorf("Changes: %s, %d mailboxes listed, kept %d; Compute listed %d, kept %d",
					got, len(only.Mailboxes), only.Kept, len(res.Mailboxes), res.Kept)
			}
		})
	}
}

// TestComputeHeld checks what a run reports of a held entry: the entry and
// its reason in Held (not in Skipped), the memberships of its mailbox
// counted as kept, and the entries that wanted its addresses told why.
func TestComputeHeld(t *testing.T) {
	heldRef := Ref{ID: "a", DN: "cn=a,ou=people,dc=example,dc=com"}
	bRef, bIntent := user("b", "a2@example.com", []string{"b@example.com"})
	gRef, gIntent := group("g1", "Sales", "Sales", "cn=a,ou=people,dc=example,dc=com", bRef.DN)
	refs := []Ref{heldRef, bRef, gRef, {ID: "c", DN: "cn=c,dc=example,dc=com"}}
	intents := []sdk.Intent{
		{Kind: sdk.IntentHold, Reason: `primary address "a\uFFFD@example.com" is not usable: invalid UTF-8 from the directory`},
		bIntent, gIntent,
		{Kind: sdk.IntentHold},
	}
	snap := &store.Snapshot{Domain: "example.com", Groups: []store.Group{{Name: "Sales"}},
		Owners: map[string]int64{"a@example.com": 1, "a2@example.com": 1},
		Mailboxes: []sdk.Mailbox{{ID: 1, DirID: "a", DN: heldRef.DN, Kind: sdk.KindUser, Primary: "a@example.com",
			Aliases: []string{"a2@example.com"}, Source: sdk.SourceLDAP, Groups: []string{"Sales"}}}}
	res := Compute(sdk.Domain{Name: "example.com", Groups: []string{"Sales"}}, refs, intents, snap)
	wantHeld := []Skip{
		{DN: heldRef.DN, Reason: `primary address "a\uFFFD@example.com" is not usable: invalid UTF-8 from the directory`},
		{DN: "cn=c,dc=example,dc=com", Reason: "held by the policy"},
	}
	if !reflect.DeepEqual(res.Held, wantHeld) {
		t.Errorf("Held = %+v, want %+v", res.Held, wantHeld)
	}
	wantSkipped := []Skip{{DN: bRef.DN, Address: "a2@example.com",
		Reason: "primary address also claimed by cn=a,ou=people,dc=example,dc=com, which is held (its mailbox keeps its addresses)"}}
	if !reflect.DeepEqual(res.Skipped, wantSkipped) {
		t.Errorf("Skipped = %+v, want %+v", res.Skipped, wantSkipped)
	}
	if len(res.Changes) != 0 || len(res.Mailboxes) != 0 {
		t.Errorf("changes %s, mailboxes %+v; want none", summary(res), res.Mailboxes)
	}
	if len(res.Groups) != 1 || res.Groups[0].Members != 1 {
		t.Errorf("groups %+v, want Sales with 1 member (the held entry's mailbox)", res.Groups)
	}
}

// BenchmarkCompute100k decides on 100,000 users in 1,000 groups, their
// DNs spelled as a directory gives them (OpenLDAP "ou=People", AD
// "CN=…,OU=…"): not in NormDN's form.
//
//	go test -run '^$' -bench Compute100k -benchmem ./host/internal/diff
func BenchmarkCompute100k(b *testing.B) {
	const n = 100000
	refs := make([]Ref, 0, n+n/100)
	intents := make([]sdk.Intent, 0, n+n/100)
	for i := 0; i < n; i++ {
		r, it := user(fmt.Sprintf("u%06d", i), fmt.Sprintf("u%06d@example.com", i), []string{fmt.Sprintf("alias%06d@example.com", i)})
		r.DN = fmt.Sprintf("cn=u%06d,ou=People,dc=example,dc=com", i)
		refs, intents = append(refs, r), append(intents, it)
	}
	for g := 0; g < n/100; g++ {
		var members []string
		for i := g * 100; i < g*100+100; i++ {
			members = append(members, refs[i].DN)
		}
		r, it := group(fmt.Sprintf("g%d", g), "Sales", "Sales", members...)
		r.DN = fmt.Sprintf("cn=g%d,ou=groups,dc=example,dc=com", g)
		refs, intents = append(refs, r), append(intents, it)
	}
	snap := &store.Snapshot{Owners: map[string]int64{}, Groups: []store.Group{{Name: "Sales"}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Compute(sdk.Domain{Name: "example.com", Groups: []string{"Sales"}}, refs, intents, snap)
	}
}

// TestCreated: the mailbox Created makes of an intent is the After of the
// create that Changes proposes for it, groups aside; an intent that makes
// no mailbox makes none.
func TestCreated(t *testing.T) {
	snap := &store.Snapshot{Domain: "example.com", Owners: map[string]int64{}, Groups: []store.Group{{Name: "Sales"}}}
	refs := []Ref{{ID: "a", DN: "cn=A,dc=example,dc=com"}, {ID: "f", DN: "cn=F,dc=example,dc=com"}, {ID: "s", DN: "cn=S,dc=example,dc=com"},
		{ID: "g", DN: "cn=Sales,dc=example,dc=com"}}
	intents := []sdk.Intent{
		{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Primary: "a@example.com", DisplayName: "A",
			Aliases: []string{"z@example.com", "a@example.com", "b@example.com"}, MemberOf: []string{"cn=Sales,dc=example,dc=com"}}},
		{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindPublicFolder, Primary: "f@example.com"}},
		{Kind: sdk.IntentSkip, Reason: "no"},
		{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "Sales", Target: "Sales"}},
	}
	res := Changes(sdk.Domain{Name: "example.com", Groups: []string{"Sales"}}, refs, intents, snap)
	creates := map[string]sdk.Mailbox{}
	for _, c := range res.Changes {
		if c.Kind == sdk.ChangeCreate {
			m := *c.After
			m.Groups = nil
			creates[m.DirID] = m
		}
	}
	if len(creates) != 2 {
		t.Fatalf("%d creates, want 2: %+v", len(creates), res.Changes)
	}
	for i := range intents {
		m, ok := Created(refs[i], &intents[i])
		want, wantOK := creates[refs[i].ID]
		if ok != wantOK || !reflect.DeepEqual(m, want) {
			t.Errorf("Created(%s) = %+v, %v; want %+v, %v", refs[i].ID, m, ok, want, wantOK)
		}
	}
}

// refNormDN is NormDN as first written (a lowered copy, then the blanks
// dropped), kept to check the one that appends into a buffer.
func refNormDN(dn string) string {
	var b strings.Builder
	lower := strings.ToLower(dn)
	for i := 0; i < len(lower); i++ {
		c := lower[i]
		if c == ' ' {
			prev := byte(',')
			if b.Len() > 0 {
				prev = b.String()[b.Len()-1]
			}
			j := i
			for j < len(lower) && lower[j] == ' ' {
				j++
			}
			next := byte(',')
			if j < len(lower) {
				next = lower[j]
			}
			if isSep(prev) || isSep(next) {
				i = j - 1
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

func TestAppendNormDN(t *testing.T) {
	for _, dn := range []string{
		"", " ", "cn=a,dc=example,dc=com", "CN=Ann Lee, OU=People,DC=Example,DC=com", "cn = x , dc=y",
		"CN=Jörg,DC=x", "  cn=a  ", "cn=a  b,o=x", "cn=A+sn=B , O=X", ",,", "cn=a,  ", "CN=Ä, O=Ü",
	} {
		if got, want := string(appendNormDN([]byte("prefix"), dn)), "prefix"+refNormDN(dn); got != want {
			t.Errorf("appendNormDN(%q) = %q, want %q", dn, got, want)
		}
		if got, want := NormDN(dn), refNormDN(dn); got != want {
			t.Errorf("NormDN(%q) = %q, want %q", dn, got, want)
		}
	}
}

func FuzzNormDN(f *testing.F) {
	f.Add("CN=Ann Lee, OU=People,DC=Example,DC=com")
	f.Add(" cn = x ,+ dc=Y ")
	f.Add("CN=Jörg , O=X")
	f.Fuzz(func(t *testing.T, dn string) {
		if got, want := NormDN(dn), refNormDN(dn); got != want {
			t.Errorf("NormDN(%q) = %q, want %q", dn, got, want)
		}
	})
}

// TestAliasTwice: an alias an intent gives twice, or the primary given
// again as an alias, is one address of the mailbox; once created, the
// entry proposes nothing more.
func TestAliasTwice(t *testing.T) {
	ref, it := user("a", "a@example.com", []string{"b@example.com", "a@example.com", "b@example.com"})
	res := Changes(sdk.Domain{Name: "example.com"}, []Ref{ref}, []sdk.Intent{it}, &store.Snapshot{Domain: "example.com", Owners: map[string]int64{}})
	if len(res.Changes) != 1 || !reflect.DeepEqual(res.Changes[0].After.Aliases, []string{"b@example.com"}) {
		t.Fatalf("changes = %s, want a create with the one alias", summary(res))
	}
	m := *res.Changes[0].After
	m.ID = 1
	snap := &store.Snapshot{Domain: "example.com", Mailboxes: []sdk.Mailbox{m},
		Owners: map[string]int64{"a@example.com": 1, "b@example.com": 1}}
	if res := Changes(sdk.Domain{Name: "example.com"}, []Ref{ref}, []sdk.Intent{it}, snap); len(res.Changes) != 0 {
		t.Errorf("once created: %s, want nothing", summary(res))
	}
}
