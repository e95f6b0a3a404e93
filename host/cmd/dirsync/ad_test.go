package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/ldapfetch"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/samba"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
)

// Integration tests against a real Active Directory: a Samba AD DC
// (host/internal/testpeer/samba), read with the default AD filter by an
// ordinary domain user, synced by the builtin standard policy into
// example.com.
// Each test gets a fresh domain; Samba runs one at a time on port 389.

// adEnv is one AD test's domain controller, config and store.
type adEnv struct {
	*env
	dc     *samba.Server
	people string // OU=People
}

// newADEnv starts a DC and writes a config whose domain example.com reads
// it as the reader account; policyConfig is added to the manifest's
// [[policy]] (e.g. "[policy.config]\nexclude_disabled = true\n").
func newADEnv(t *testing.T, policyConfig string) *adEnv {
	t.Helper()
	dc := peertest.Samba(t, samba.Options{})
	e := &adEnv{env: &env{t: t, dir: t.TempDir()}, dc: dc}
	e.write("reader.pw", dc.ReaderPassword+"\n")
	e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"+policyConfig)
	e.config = e.write("dirsync.toml", fmt.Sprintf(`
[store]
driver = "sqlite"
dsn    = "var/dirsync.db"

[plugins]
manifest  = "plugin.toml"
cache_dir = "var/cache"

[[domain]]
name          = "example.com"
sync          = true
policy        = "standard"
alias_domains = ["example.org"]
  [domain.ldap]
  urls          = [%q]
  bind_dn       = %q
  password_file = "reader.pw"
  base_dn       = %q
  timeout       = "60s"
`, dc.URL, dc.ReaderDN, dc.BaseDN))
	var err error
	if e.people, err = dc.AddOU("People"); err != nil {
		t.Fatal(err)
	}
	return e
}

// adReport is the part of `sync --json` and `preview --json` the tests read.
type adReport struct {
	Outcome string `json:"outcome"`
	Server  string `json:"server"`
	Counts  struct {
		Created, Updated, Deleted, Entries int
		MembersAdded                       int `json:"memberships_added"`
		MembersRemoved                     int `json:"memberships_removed"`
	} `json:"counts"`
	Users []struct {
		Address string   `json:"address"`
		Groups  []string `json:"groups"`
	} `json:"users"`
	Groups []struct {
		Name    string `json:"name"`
		Target  string `json:"target"`
		Members int    `json:"members"`
	} `json:"groups"`
	Skipped []struct {
		DN, Address, Reason string
	} `json:"skipped"`
	Changes []json.RawMessage `json:"changes"`
}

// sync runs `dirsync sync --json` (or another command that prints a
// report) and decodes the report.
func (e *adEnv) report(args ...string) adReport {
	e.t.Helper()
	var r adReport
	out := e.ok(append(args, "--domain", "example.com", "--json")...)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		e.t.Fatalf("%s: %v\n%s", args, err, out)
	}
	return r
}

func (e *adEnv) sync(args ...string) adReport {
	e.t.Helper()
	r := e.report(append([]string{"sync"}, args...)...)
	if r.Outcome != "ok" || r.Server != e.dc.URL {
		e.t.Fatalf("sync: outcome %q from %q", r.Outcome, r.Server)
	}
	return r
}

// dirIDs maps the primary address of each LDAP mailbox to its directory id
// as the store keeps it.
func (e *adEnv) dirIDs() map[string]string {
	e.t.Helper()
	st, err := sqlite.Open(filepath.Join(e.dir, "var", "dirsync.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	ms, err := st.Mailboxes(context.Background(), "example.com")
	if err != nil {
		e.t.Fatal(err)
	}
	ids := map[string]string{}
	for _, m := range ms {
		ids[m.Primary] = m.DirID
	}
	return ids
}

// guid is the objectGUID of dn, formatted the way the directory reader
// formats it.
func (e *adEnv) guid(dn string) string {
	e.t.Helper()
	b, err := e.dc.ObjectGUID(dn)
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := ldapfetch.FormatGUID(b)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *adEnv) addUser(u samba.User) string {
	e.t.Helper()
	if u.Parent == "" {
		u.Parent = e.people
	}
	dn, err := e.dc.AddUser(u)
	if err != nil {
		e.t.Fatal(err)
	}
	return dn
}

func (e *adEnv) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// unchanged fails unless a sync changed nothing.
func unchanged(t *testing.T, what string, r adReport) {
	t.Helper()
	if c := r.Counts; c.Created+c.Updated+c.Deleted+c.MembersAdded+c.MembersRemoved != 0 || len(r.Changes) != 0 {
		t.Errorf("%s changed something: %+v, %d changes", what, c, len(r.Changes))
	}
}

func TestActiveDirectory(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"rename and move keep the mailbox", testADRenameMove},
		{"referrals at the domain root are not errors", testADReferrals},
		{"disabled accounts are synced by default", testADDisabled},
		{"group of 1600 members", testADLargeGroup},
		{"alias claimed by two entries", testADAliasClaimedTwice},
		{"nested groups", testADNestedGroups},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// testADRenameMove: identity is the binary objectGUID (R3), so a new DN, a
// new CN and even a new primary address update the mailbox in place.
func testADRenameMove(t *testing.T) {
	e := newADEnv(t, "")
	e.ok("group", "add", "--domain", "example.com", "Sales")
	alice := e.addUser(samba.User{CN: "Alice Anders", DisplayName: "Alice Anders",
		ProxyAddresses: []string{"SMTP:alice@example.com", "smtp:a.anders@example.com", "X500:/o=Example/cn=alice"}})
	bob := e.addUser(samba.User{CN: "Bob Brown", ProxyAddresses: []string{"SMTP:bob@example.com"}})
	_, err := e.dc.AddGroup(samba.Group{CN: "Sales", Parent: e.people, Members: []string{alice, bob}})
	e.must(err)

	r := e.sync()
	want(t, "created", r.Counts.Created, 2)
	before := e.mailboxes()
	ids := e.dirIDs()
	aliceGUID, bobGUID := e.guid(alice), e.guid(bob)
	want(t, "alice's directory id", ids["alice@example.com"], aliceGUID)
	want(t, "bob's directory id", ids["bob@example.com"], bobGUID)
	want(t, "alice's DN", before["alice@example.com"].DN, alice)
	wantList(t, "alice's groups", before["alice@example.com"].Groups, "Sales")

	// Alice: renamed, moved and given a new primary (the old one stays as
	// an alias). Bob: a new CN in place.
	moved, err := e.dc.AddOU("Moved")
	e.must(err)
	alice2, err := e.dc.ModifyDN(alice, "CN=Alice Smith", moved)
	e.must(err)
	e.must(e.dc.Replace(alice2, "proxyAddresses", "SMTP:alice.smith@example.com", "smtp:alice@example.com"))
	bob2, err := e.dc.ModifyDN(bob, "CN=Robert Brown", "")
	e.must(err)

	r = e.sync()
	want(t, "created", r.Counts.Created, 0)
	want(t, "deleted", r.Counts.Deleted, 0)
	want(t, "updated", r.Counts.Updated, 2)
	after := e.mailboxes()
	a := after["alice.smith@example.com"]
	want(t, "alice's id after rename, move and new primary", a.ID, before["alice@example.com"].ID)
	want(t, "alice's new DN", a.DN, alice2)
	wantList(t, "alice's aliases", a.Aliases, "alice@example.com")
	wantList(t, "alice's groups (AD moved her member value along)", a.Groups, "Sales")
	b := after["bob@example.com"]
	want(t, "bob's id after rename", b.ID, before["bob@example.com"].ID)
	want(t, "bob's new DN", b.DN, bob2)
	wantList(t, "bob's groups", b.Groups, "Sales")
	ids = e.dirIDs()
	want(t, "alice's directory id after the move", ids["alice.smith@example.com"], aliceGUID)
	want(t, "bob's directory id after the rename", ids["bob@example.com"], bobGUID)
	want(t, "mailboxes", len(after), 2)
	want(t, "resolve the old primary", strings.TrimSpace(e.ok("resolve", "alice@example.com")), "alice.smith@example.com")
	unchanged(t, "a third sync", e.sync())
}

// testADReferrals: a search at the root of an AD domain returns search
// result references to the other naming contexts (Configuration, the DNS
// zones); they are skipped, and the run succeeds.
func testADReferrals(t *testing.T) {
	e := newADEnv(t, "")
	e.addUser(samba.User{CN: "Carol Clark", ProxyAddresses: []string{"SMTP:carol@example.com"}})

	cfg := ldapfetch.Config{URLs: []string{e.dc.URL}, BindDN: e.dc.ReaderDN, Password: e.dc.ReaderPassword, BaseDN: e.dc.BaseDN}
	entries, res, err := ldapfetch.FetchAll(context.Background(), cfg, standard.DefaultFilter, standard.New().Info().Attributes)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fetch: %v", res)
	if res.Referrals < 3 {
		t.Errorf("%d referrals, want at least 3 (CN=Configuration, DC=DomainDnsZones, DC=ForestDnsZones)", res.Referrals)
	}
	if len(entries) == 0 {
		t.Fatal("no entries")
	}

	r := e.sync()
	want(t, "created", r.Counts.Created, 1)
	want(t, "entries", r.Counts.Entries, len(entries))
	if _, ok := e.mailboxes()["carol@example.com"]; !ok {
		t.Error("carol was not synced")
	}
	// A run record says it succeeded.
	var runs []struct {
		Outcome string `json:"outcome"`
		Error   string `json:"error"`
	}
	e.must(json.Unmarshal([]byte(e.ok("runs", "--domain", "example.com", "--json")), &runs))
	if len(runs) != 1 || runs[0].Outcome != "ok" || runs[0].Error != "" {
		t.Errorf("runs = %+v", runs)
	}
}

// testADDisabled: an account with the ACCOUNTDISABLE bit of
// userAccountControl is still a mailbox by default (the default filter
// selects it); the exclude_disabled setting leaves it out.
func testADDisabled(t *testing.T) {
	e := newADEnv(t, "")
	dave := e.addUser(samba.User{CN: "Dave Dunn", ProxyAddresses: []string{"SMTP:dave@example.com"}, Disabled: true})
	e.addUser(samba.User{CN: "Erin Evans", Mail: []string{"erin@example.com"}, UserAccountControl: 66050}) // NORMAL|DONT_EXPIRE|DISABLE
	e.addUser(samba.User{CN: "Frank Fox", ProxyAddresses: []string{"SMTP:frank@example.com"}})
	d, err := e.dc.Entry(dave, "userAccountControl")
	e.must(err)
	want(t, "dave's userAccountControl in AD", d.GetAttributeValue("userAccountControl"), "514")

	r := e.sync()
	want(t, "created", r.Counts.Created, 3)
	mb := e.mailboxes()
	for _, a := range []string{"dave@example.com", "erin@example.com", "frank@example.com"} {
		if mb[a].Source != "ldap" {
			t.Errorf("%s: %+v, want an LDAP mailbox", a, mb[a])
		}
	}

	// exclude_disabled: a preview leaves Dave and Erin out, with a reason.
	e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n[policy.config]\nexclude_disabled = true\n")
	p := e.report("preview")
	var users []string
	for _, u := range p.Users {
		users = append(users, u.Address)
	}
	wantList(t, "preview users with exclude_disabled", users, "frank@example.com")
	skipped := map[string]string{}
	for _, s := range p.Skipped {
		skipped[strings.SplitN(s.DN, ",", 2)[0]] = s.Reason
	}
	for _, cn := range []string{"CN=Dave Dunn", "CN=Erin Evans"} {
		if !strings.Contains(skipped[cn], "disabled") {
			t.Errorf("%s: skip reason %q, want one that says disabled", cn, skipped[cn])
		}
	}
}

// testADLargeGroup: a group with more members than AD's MaxValRange (1500)
// fills its gateway group with every member. Samba sends all values at once
// (the ranged path, as Windows AD answers, is tested in ldapfetch).
func testADLargeGroup(t *testing.T) {
	const n = 1600
	e := newADEnv(t, "")
	e.ok("group", "add", "--domain", "example.com", "All Staff")
	users := make([]samba.User, n)
	for i := range users {
		users[i] = samba.User{CN: fmt.Sprintf("User %04d", i), Parent: e.people,
			ProxyAddresses: []string{fmt.Sprintf("SMTP:user%04d@example.com", i)}}
	}
	dns, err := e.dc.AddUsers(users)
	e.must(err)
	group, err := e.dc.AddGroup(samba.Group{CN: "All Staff", Parent: e.people, Members: dns})
	e.must(err)

	cfg := ldapfetch.Config{URLs: []string{e.dc.URL}, BindDN: e.dc.ReaderDN, Password: e.dc.ReaderPassword, BaseDN: e.dc.BaseDN}
	entries, res, err := ldapfetch.FetchAll(context.Background(), cfg, "(cn=All Staff)", []string{"member"})
	e.must(err)
	if len(entries) != 1 || len(entries[0].Attributes["member"]) != n {
		t.Fatalf("the reader got %d entries; want the group with %d members", len(entries), n)
	}
	t.Logf("group read: %v", res)

	r := e.sync()
	want(t, "created", r.Counts.Created, n)
	want(t, "memberships added", r.Counts.MembersAdded, n)
	found := false
	for _, g := range r.Groups {
		if g.Name == "All Staff" {
			found = true
			want(t, "All Staff members", g.Members, n)
		}
	}
	if !found {
		t.Errorf("groups %+v lack All Staff (%s)", r.Groups, group)
	}
	mb := e.mailboxes()
	missing := 0
	for i := range n {
		if g := mb[fmt.Sprintf("user%04d@example.com", i)].Groups; !slices.Equal(g, []string{"All Staff"}) {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d mailboxes are not in All Staff", missing, n)
	}
	var members []struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
	}
	e.must(json.Unmarshal([]byte(e.ok("group", "list", "--domain", "example.com", "--json")), &members))
	if len(members) != 1 || len(members[0].Members) != n {
		t.Errorf("group list: %d groups, want All Staff with %d members", len(members), n)
	}
	unchanged(t, "a second sync", e.sync())
}

// testADAliasClaimedTwice: two entries claim one alias. One owner, the
// entry with the smaller objectGUID, keeps it; the other is reported; later
// syncs do not move it back and forth. An owner keeps it even when an entry
// with a smaller objectGUID claims it later.
func testADAliasClaimedTwice(t *testing.T) {
	e := newADEnv(t, "")
	p := e.addUser(samba.User{CN: "Pat Post", ProxyAddresses: []string{"SMTP:pat@example.com", "smtp:shared@example.com"}})
	q := e.addUser(samba.User{CN: "Quinn Quick", ProxyAddresses: []string{"SMTP:quinn@example.com", "smtp:shared@example.com"}})
	type entry struct{ dn, primary string }
	small, large := entry{p, "pat@example.com"}, entry{q, "quinn@example.com"}
	if e.guid(q) < e.guid(p) {
		small, large = large, small
	}
	t.Logf("smaller objectGUID: %s", small.dn)

	// owner checks that the alias belongs to owner and that the other
	// entry is reported.
	owner := func(what string, r adReport, owner, other entry) {
		t.Helper()
		want(t, what+": resolve shared@", strings.TrimSpace(e.ok("resolve", "shared@example.com")), owner.primary)
		mb := e.mailboxes()
		wantList(t, what+": owner's aliases", mb[owner.primary].Aliases, "shared@example.com")
		wantList(t, what+": other's aliases", mb[other.primary].Aliases)
		reported := false
		for _, s := range r.Skipped {
			if s.DN == other.dn && s.Address == "shared@example.com" && strings.Contains(s.Reason, owner.dn) {
				reported = true
			}
		}
		if !reported {
			t.Errorf("%s: skipped %+v lacks %s's claim of shared@example.com", what, r.Skipped, other.dn)
		}
	}
	r := e.sync()
	want(t, "created", r.Counts.Created, 2)
	owner("first sync", r, small, large)
	// Full reads: a delta that finds nothing changed decides nothing and
	// reports no skipped entries at all.
	for i := 2; i <= 3; i++ {
		r = e.sync("--full")
		unchanged(t, fmt.Sprintf("sync %d", i), r)
		owner(fmt.Sprintf("sync %d", i), r, small, large)
	}

	// The owner drops the alias: the other entry gets it.
	e.must(e.dc.Replace(small.dn, "proxyAddresses", "SMTP:"+small.primary))
	r = e.sync()
	want(t, "updated after the owner dropped the alias", r.Counts.Updated, 2)
	wantList(t, "new owner's aliases", e.mailboxes()[large.primary].Aliases, "shared@example.com")

	// The smaller objectGUID claims it again: the current owner keeps it.
	e.must(e.dc.Replace(small.dn, "proxyAddresses", "SMTP:"+small.primary, "smtp:shared@example.com"))
	for i := 1; i <= 3; i++ {
		r = e.sync("--full")
		unchanged(t, fmt.Sprintf("sync %d after the claim", i), r)
		owner(fmt.Sprintf("sync %d after the claim", i), r, large, small)
	}
}

// testADNestedGroups: Staff holds the group Sales (not a gateway group),
// which holds Team, which holds Carol; Alice is in Sales. With
// nested_groups = true every one of them is in the gateway group Staff;
// by default only Staff's direct members are.
func testADNestedGroups(t *testing.T) {
	for _, tc := range []struct {
		name, policyConfig string
		want               []string
	}{
		{"off by default", "", []string{"dave@example.com"}},
		{"nested_groups = true", "[policy.config]\nnested_groups = true\n", []string{"alice@example.com", "carol@example.com", "dave@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newADEnv(t, tc.policyConfig)
			e.ok("group", "add", "--domain", "example.com", "Staff")
			alice := e.addUser(samba.User{CN: "Alice", ProxyAddresses: []string{"SMTP:alice@example.com"}})
			carol := e.addUser(samba.User{CN: "Carol", ProxyAddresses: []string{"SMTP:carol@example.com"}})
			dave := e.addUser(samba.User{CN: "Dave", ProxyAddresses: []string{"SMTP:dave@example.com"}})
			team, err := e.dc.AddGroup(samba.Group{CN: "Team", Parent: e.people, Members: []string{carol}})
			e.must(err)
			sales, err := e.dc.AddGroup(samba.Group{CN: "Sales", Parent: e.people, Members: []string{alice, team}})
			e.must(err)
			_, err = e.dc.AddGroup(samba.Group{CN: "Staff", Parent: e.people, Members: []string{sales, dave}})
			e.must(err)
			e.sync()
			var got []string
			for addr, m := range e.mailboxes() {
				if slices.Contains(m.Groups, "Staff") {
					got = append(got, addr)
				}
			}
			slices.Sort(got)
			wantList(t, "members of Staff", got, tc.want...)
			unchanged(t, "a second sync", e.sync())
		})
	}
}
