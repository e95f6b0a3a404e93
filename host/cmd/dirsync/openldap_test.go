package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
)

// openLDAPConfig is the dirsync.toml of the README's OpenLDAP section,
// byte for byte; TestOpenLDAP checks that the README still shows it and
// runs it, with the test server's URL in place of openLDAPExampleURL.
const openLDAPConfig = `[store]
driver = "sqlite"
dsn    = "var/dirsync.db"

[plugins]
manifest = "plugin.toml"

[[domain]]
name   = "example.com"
sync   = true
policy = "standard"
  [domain.ldap]
  urls          = ["ldaps://ldap.example.com"]
  bind_dn       = "cn=reader,dc=example,dc=com"
  password_file = "reader.pw"
  base_dn       = "dc=example,dc=com"
  filter        = "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
`

const openLDAPExampleURL = `"ldaps://ldap.example.com"`

// TestOpenLDAP syncs a plain OpenLDAP directory (testdata/openldap.ldif:
// inetOrgPerson users with mail, groupOfNames and groupOfUniqueNames
// groups, no Active Directory attribute) with the README's OpenLDAP config
// and the standard policy: the users become mailboxes, the group Sales
// fills the gateway group of that name, the groupOfUniqueNames Engineering
// fills its own through uniqueMember alone (a value with an optional UID,
// #'0101'B, included), a rename keeps the mailbox (entryUUID is the stable
// id), a member taken out of the group leaves the gateway group, and the
// default (Active Directory) filter reads nothing and stops.
func TestOpenLDAP(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```toml\n"+openLDAPConfig+"```\n") {
		t.Fatalf("README.md no longer shows the OpenLDAP dirsync.toml this test runs:\n%s", openLDAPConfig)
	}

	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{filepath.Join("testdata", "openldap.ldif")}, LogLevel: "none"})
	e := &env{t: t, srv: srv, dir: t.TempDir()}
	e.write("reader.pw", readerPassword+"\n")
	e.write("plugin.toml", "[[policy]]\nname    = \"standard\"\nruntime = \"builtin\"\n")
	config := strings.Replace(openLDAPConfig, openLDAPExampleURL, strconv.Quote(srv.URL), 1)
	e.config = e.write("dirsync.toml", config)
	const D = "example.com"

	e.ok("group", "add", "--domain", D, "Sales")
	e.ok("group", "add", "--domain", D, "Engineering")

	// The preview: three users, Sales and Engineering matched, Marketing
	// unmatched, Ivan (no mail) and carol@other.net skipped.
	var prev struct {
		Users []struct {
			Address string   `json:"address"`
			Aliases []string `json:"aliases"`
			Groups  []string `json:"groups"`
		} `json:"users"`
		Groups []struct {
			Name   string `json:"name"`
			Target string `json:"target"`
		} `json:"groups"`
		Unmatched []string `json:"unmatched_groups"`
		Skipped   []struct {
			DN      string `json:"dn"`
			Address string `json:"address"`
			Reason  string `json:"reason"`
		} `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(e.ok("preview", "--domain", D, "--json")), &prev); err != nil {
		t.Fatal(err)
	}
	var users []string
	prevGroups := map[string][]string{}
	for _, u := range prev.Users {
		users = append(users, u.Address)
		prevGroups[u.Address] = u.Groups
	}
	wantList(t, "preview users", users, "alice@example.com", "bob@example.com", "carol@example.com")
	wantList(t, "unmatched groups", prev.Unmatched, "Marketing")
	if len(prev.Groups) != 2 || prev.Groups[0].Name != "Engineering" || prev.Groups[0].Target != "Engineering" ||
		prev.Groups[1].Name != "Sales" || prev.Groups[1].Target != "Sales" {
		t.Errorf("matched groups = %+v, want Engineering → Engineering, Sales → Sales", prev.Groups)
	}
	wantList(t, "bob's groups in the preview (Engineering by uniqueMember)", prevGroups["bob@example.com"], "Engineering", "Sales")
	wantList(t, "carol's groups in the preview (Engineering by uniqueMember with a UID)", prevGroups["carol@example.com"], "Engineering")
	skipped := map[string]bool{}
	for _, s := range prev.Skipped {
		skipped[s.Address+"|"+strings.SplitN(s.DN, ",", 2)[0]] = true
	}
	if !skipped["|cn=Ivan Ito"] || !skipped["carol@other.net|cn=Carol Clark"] {
		t.Errorf("skipped = %+v, want Ivan (no mail) and carol@other.net", prev.Skipped)
	}

	// The sync: mailboxes from mail, Sales and Engineering filled from the
	// directory.
	e.ok("sync", "--domain", D)
	mb := e.mailboxes()
	if len(mb) != 3 {
		t.Fatalf("mailboxes = %v, want alice, bob and carol", mb)
	}
	alice, bob, carol := mb["alice@example.com"], mb["bob@example.com"], mb["carol@example.com"]
	for _, m := range []mailbox{alice, bob, carol} {
		want(t, m.Address+" source", m.Source, "ldap")
		want(t, m.Address+" kind", m.Kind, "user")
	}
	wantList(t, "alice's aliases", alice.Aliases, "alice.anders@example.com")
	wantList(t, "carol's aliases", carol.Aliases)
	want(t, "alice's display name", alice.DisplayName, "Alice Anders")
	want(t, "bob's display name (cn, no displayName)", bob.DisplayName, "Bob Brown")
	wantList(t, "alice's groups", alice.Groups, "Sales")
	wantList(t, "bob's groups", bob.Groups, "Engineering", "Sales")
	wantList(t, "carol's groups (Marketing is unmatched)", carol.Groups, "Engineering")
	var groups []struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
	}
	if err := json.Unmarshal([]byte(e.ok("group", "list", "--domain", D, "--json")), &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].Name != "Engineering" || groups[1].Name != "Sales" {
		t.Fatalf("gateway groups = %+v, want Engineering and Sales only (a sync creates none)", groups)
	}
	wantList(t, "members of Engineering", groups[0].Members, "bob@example.com", "carol@example.com")
	wantList(t, "members of Sales", groups[1].Members, "alice@example.com", "bob@example.com")

	// entryUUID is the stable id: a rename is an update of the same mailbox.
	conn, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.ModifyDN(ldap.NewModifyDNRequest("cn=Alice Anders,ou=People,dc=example,dc=com", "cn=Alice Smith", true, "")); err != nil {
		t.Fatal(err)
	}
	// Bob leaves the directory group; the memberof overlay drops his memberOf.
	del := ldap.NewModifyRequest("cn=Sales,ou=Groups,dc=example,dc=com", nil)
	del.Delete("member", []string{"cn=Bob Brown,ou=People,dc=example,dc=com"})
	if err := conn.Modify(del); err != nil {
		t.Fatal(err)
	}
	e.ok("sync", "--domain", D)
	mb = e.mailboxes()
	alice2 := mb["alice@example.com"]
	want(t, "alice's mailbox id after the rename", alice2.ID, alice.ID)
	want(t, "alice's DN after the rename", alice2.DN, "cn=Alice Smith,ou=People,dc=example,dc=com")
	wantList(t, "alice's groups after the rename", alice2.Groups, "Sales")
	wantList(t, "bob's groups after he left Sales", mb["bob@example.com"].Groups, "Engineering")
	want(t, "bob's mailbox id", mb["bob@example.com"].ID, bob.ID)

	// Without a filter the default is Active Directory's: nothing in a
	// plain OpenLDAP directory matches it, and that empty read stops.
	state := e.state()
	e.write("dirsync.toml", strings.Replace(config, `"(|(objectClass=inetOrgPerson)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"`, `""`, 1))
	e.fails(1, "OpenLDAP, needs a filter", "sync", "--domain", D, "--confirm-deletes")
	want(t, "state after the default filter's empty read", e.state(), state)
}
