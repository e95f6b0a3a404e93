package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMailboxRemoveFromDirectory: removing a mailbox that came from the
// directory is refused without --force, because the next sync makes it
// again; with --force it goes, and the command says it comes back. A
// hand-made mailbox is removed as asked.
func TestMailboxRemoveFromDirectory(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("sync", "--domain", D)
	e.ok("mailbox", "add", "--domain", D, "hand@example.com")
	tests := []struct {
		name string
		args []string
		code int
		want string // in stdout for exit 0, in stderr otherwise
		// gone and kept are mailboxes absent and present afterwards.
		gone, kept string
	}{
		{name: "from the directory, refused", args: []string{"alice@example.com"}, code: 1,
			want: "dirsync: mailbox remove: alice@example.com came from the directory (source ldap): the next sync would make it again; " +
				"take it out of the directory or the filter instead, or remove it anyway with --force\n",
			kept: "alice@example.com"},
		{name: "from the directory, refused whatever the case", args: []string{"Alice@Example.COM"}, code: 1,
			want: "alice@example.com came from the directory", kept: "alice@example.com"},
		{name: "hand-made", args: []string{"hand@example.com"},
			want: "mailbox hand@example.com removed from example.com\n", gone: "hand@example.com"},
		{name: "from the directory, forced", args: []string{"--force", "alice@example.com"},
			want: "mailbox alice@example.com removed from example.com; it came from the directory, so the next sync brings it back unless the directory changes\n",
			gone: "alice@example.com", kept: "bob@example.com"},
		{name: "force after the address", args: []string{"bob@example.com", "--force"},
			want: "the next sync brings it back", gone: "bob@example.com"},
		{name: "no such mailbox", args: []string{"nobody@example.com"}, code: 1, want: "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			args := append([]string{"mailbox", "remove", "--domain", D}, tc.args...)
			code, out, errs := e.run(args...)
			got := out
			if tc.code != 0 {
				got = errs
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Fatalf("dirsync %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, tc.code, tc.want, out, errs)
			}
			if tc.code == 0 && strings.Contains(tc.want, "hand@") && strings.Contains(out, "brings it back") {
				t.Errorf("a hand-made mailbox is said to come back: %s", out)
			}
			mb := e.mailboxes()
			if _, ok := mb[tc.gone]; tc.gone != "" && ok {
				t.Errorf("%s is still there", tc.gone)
			}
			if _, ok := mb[tc.kept]; tc.kept != "" && !ok {
				t.Errorf("%s is gone", tc.kept)
			}
		})
	}
	e.t = t
	// The next sync brings the directory's mailboxes back, not the hand-made one.
	if out := e.ok("sync", "--domain", D); !strings.Contains(out, "created 2") {
		t.Errorf("the sync after the forced removals does not create them again:\n%s", out)
	}
	mb := e.mailboxes()
	for _, a := range []string{"alice@example.com", "bob@example.com"} {
		if mb[a].Source != "ldap" {
			t.Errorf("%s after the sync: %+v, want it back from the directory", a, mb[a])
		}
	}
	if _, ok := mb["hand@example.com"]; ok {
		t.Error("the hand-made mailbox came back")
	}
}

// TestNotAnLDAPServer points the domain at a web server: the run fails
// (exit 1) with one line that names the URL and asks whether it is an LDAP
// server, not with a malformed LDAP message.
func TestNotAnLDAPServer(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer web.Close()
	url := "ldap://" + strings.TrimPrefix(web.URL, "http://")
	// Go's web server reads a request line up to a line feed: a password
	// of 10 bytes puts one (its length) in the bind request, and the
	// server answers 400 Bad Request as soon as the line is complete.
	e := newOfflineEnv(t, `"`+url+`"`, "0123456789")
	for _, args := range [][]string{
		{"sync", "--domain", "example.com"},
		{"preview", "--domain", "example.com"},
	} {
		errs := e.fails(1, url+": bind as cn=reader,dc=example,dc=com: is this an LDAP server? (it answered with bytes that are not LDAP: \"HTTP/1.1 400 Bad Request\")", args...)
		if strings.Count(strings.TrimSpace(errs), "\n") > 0 || strings.Contains(errs, "malformed") {
			t.Errorf("dirsync %s: want one line without 'malformed', got:\n%s", strings.Join(args, " "), errs)
		}
	}
}

// TestEmptyReadSaysWhatItSearched: a run that reads nothing says which
// filter and base it searched and where to look, whether it stops (the
// store holds mailboxes of the directory) or succeeds with nothing.
func TestEmptyReadSaysWhatItSearched(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	const none = "(cn=no-entry-has-this-name)"
	const check = "; check [domain.ldap] filter and base_dn, and the reader's rights"
	const adHint = "this filter selects Active Directory objects by sAMAccountType; a directory without that attribute, such as OpenLDAP, needs a filter for its own classes, e.g. inetOrgPerson and groupOfNames"
	if err := e.srv.Add("ou=Empty,dc=example,dc=com", map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"Empty"}}); err != nil {
		t.Fatal(err)
	}
	e.ok("sync", "--domain", D) // the store now holds the directory's mailboxes
	good, _ := os.ReadFile(e.config)
	// use writes the config with filter, base and a store: "fresh" is one
	// that holds nothing.
	use := func(filter, base, db string) {
		e.writeConfig(filter, "")
		b, _ := os.ReadFile(e.config)
		s := strings.Replace(string(b), `base_dn       = "dc=example,dc=com"`, `base_dn       = "`+base+`"`, 1)
		s = strings.Replace(s, "var/dirsync.db", "var/"+db+".db", 1)
		e.write("dirsync.toml", s)
	}
	tests := []struct {
		name                string
		filter, base, db    string
		args                []string
		code                int
		want                string // in stdout for exit 0, in stderr otherwise
		adHint              bool
		stateOfTheMainStore bool
	}{
		{name: "sync of nothing into an empty store", filter: none, base: "dc=example,dc=com", db: "fresh", args: []string{"sync"},
			want: "note: the directory returned 0 entries for filter " + none + " under base dc=example,dc=com" + check + "\n"},
		{name: "dry run of nothing", filter: none, base: "dc=example,dc=com", db: "fresh", args: []string{"sync", "--dry-run"},
			want: "note: the directory returned 0 entries for filter " + none + " under base dc=example,dc=com" + check + "\n"},
		{name: "preview of nothing", filter: none, base: "dc=example,dc=com", db: "fresh", args: []string{"preview"},
			want: "note: the directory returned 0 entries for filter " + none + " under base dc=example,dc=com" + check + "\n"},
		{name: "the default filter under an empty base", base: "ou=Empty,dc=example,dc=com", db: "fresh", args: []string{"sync"},
			want: " under base ou=Empty,dc=example,dc=com" + check + " (" + adHint + ")\n", adHint: true},
		{name: "a sync that stops", filter: none, base: "dc=example,dc=com", db: "dirsync", args: []string{"sync"}, code: 1,
			want: "stopped before writing: the directory returned 0 entries for filter " + none + " under base dc=example,dc=com while the store holds 9 LDAP mailboxes, " +
				"and an empty read never deletes, confirmed or not; nothing was changed — check [domain.ldap] filter and base_dn, and the reader's rights\n",
			stateOfTheMainStore: true},
		{name: "a sync that stops, AD filter", base: "ou=Empty,dc=example,dc=com", db: "dirsync", args: []string{"sync", "--confirm-deletes"}, code: 1,
			want: "the directory returned 0 entries for filter (|(sAMAccountType=805306368)", adHint: true, stateOfTheMainStore: true},
		{name: "a preview of a sync that would stop", filter: none, base: "dc=example,dc=com", db: "dirsync", args: []string{"preview"},
			want: "note: a sync would stop: stopped before writing: the directory returned 0 entries for filter " + none + " under base dc=example,dc=com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			os.WriteFile(e.config, good, 0o600)
			before := e.state()
			use(tc.filter, tc.base, tc.db)
			args := append(tc.args, "--domain", D)
			code, out, errs := e.run(args...)
			got := out
			if tc.code != 0 {
				got = errs
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Fatalf("dirsync %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, tc.code, tc.want, out, errs)
			}
			if strings.Contains(got, adHint) != tc.adHint {
				t.Errorf("Active Directory hint present = %v, want %v:\n%s", !tc.adHint, tc.adHint, got)
			}
			if n := strings.Count(got, "0 entries for filter"); n != 1 {
				t.Errorf("the empty read is told %d times, want once:\n%s", n, got)
			}
			os.WriteFile(e.config, good, 0o600)
			if tc.stateOfTheMainStore {
				want(t, "state after the stopped run", e.state(), before)
			}
		})
	}
	// The stopped run's record carries the message too.
	e.t = t
	os.WriteFile(e.config, good, 0o600)
	if r := e.runs()[0]; r.Outcome != "stopped" || !strings.Contains(r.Error, "under base ou=Empty,dc=example,dc=com") {
		t.Errorf("the last run = %s: %s, want stopped naming its base", r.Outcome, r.Error)
	}
}

// TestMapCacheAfterPreview: with a policy served out of process (which
// keeps a map cache), the first sync after a preview maps every entry and
// says nothing of unchanged entries; the next sync takes them from the
// cache and says since when.
func TestMapCacheAfterPreview(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	native := exec.Command("go", "build", "-o", filepath.Join(e.dir, "standard"), "./plugins/standard/cmd/standard")
	native.Dir = repoRoot(t)
	if b, err := native.CombinedOutput(); err != nil {
		t.Fatalf("building the standard plugin program: %v\n%s", err, b)
	}
	e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"process\"\npath = \"standard\"\ntimeout = \"30s\"\n")
	e.ok("group", "add", "--domain", D, "Sales")
	const cached = "unchanged since the last sync or dry run, not mapped again"
	read := regexp.MustCompile(`: (\d+) entries read;`)

	if out := e.ok("preview", "--domain", D); strings.Contains(out, cached) {
		t.Errorf("the first preview speaks of unchanged entries:\n%s", out)
	}
	if out := e.ok("sync", "--domain", D); strings.Contains(out, cached) || strings.Contains(out, "unchanged since") {
		t.Errorf("the first sync after a preview speaks of unchanged entries:\n%s", out)
	}
	out := e.ok("sync", "--domain", D, "--full") // a delta would not read the entries at all
	m := read.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "; "+m[1]+" entries "+cached) {
		t.Errorf("the second sync does not say that all it read is unchanged since the last sync:\n%s", out)
	}
	// A preview uses what the last sync mapped.
	if out := e.ok("preview", "--domain", D); !strings.Contains(out, cached) {
		t.Errorf("a preview after a sync does not use the map cache:\n%s", out)
	}
}
