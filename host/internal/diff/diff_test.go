package diff

import (
	"fmt"
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
	nested := func(r Ref, it sdk.Intent) in { it.Group.Nested = true; return in{r, it} }
	innerDN := "cn=Inner,ou=groups,dc=example,dc=com"
	tests = append(tests, []struct {
		name      string
		entries   []in
		snap      *store.Snapshot
		want      string
		unmatched string
		skipped   int
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
		})
	}
}

func BenchmarkCompute100k(b *testing.B) {
	const n = 100000
	refs := make([]Ref, 0, n+n/100)
	intents := make([]sdk.Intent, 0, n+n/100)
	for i := 0; i < n; i++ {
		r, it := user(fmt.Sprintf("u%06d", i), fmt.Sprintf("u%06d@example.com", i), []string{fmt.Sprintf("alias%06d@example.com", i)})
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
