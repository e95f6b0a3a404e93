package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dirsync/dirsync/host/internal/testpeer/ldaptest"
	"github.com/dirsync/dirsync/host/store"
)

// End-to-end tests of bad data from the directory: a scripted LDAP server
// (host/internal/testpeer/ldaptest) sends an AD-like directory, the CLI
// syncs it with the builtin standard policy, then the server sends values
// that are not UTF-8, control characters, or breaks off the search, and the
// CLI syncs again. What a real server cannot be made to send is sent here.

const (
	badDataBindDN = "cn=reader,dc=example,dc=com" // as writeConfig binds
	aliceDN       = "CN=Alice Anders,OU=People,DC=example,DC=com"
	bobDN         = "CN=Bob Brown,OU=People,DC=example,DC=com"
	salesDN       = "CN=Sales,OU=Groups,DC=example,DC=com"
)

// objectGUID is a binary objectGUID, 16 raw bytes, one per n.
func objectGUID(n byte) string {
	return string([]byte{0xff, 0x19, 0x96, 0x6f, 0x86, 0x8b, 0x11, 0xd0, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, n})
}

// adUser is an AD user entry (sAMAccountType 805306368).
func adUser(dn string, id byte, displayName string, proxyAddresses ...string) ldaptest.Entry {
	return ldaptest.Entry{DN: dn, Attrs: map[string][]string{
		"objectGUID":     {objectGUID(id)},
		"sAMAccountType": {"805306368"},
		"displayName":    {displayName},
		"proxyAddresses": proxyAddresses,
	}}
}

// adGroup is an AD security group entry (sAMAccountType 268435456).
func adGroup(dn string, id byte, cn string, members ...string) ldaptest.Entry {
	return ldaptest.Entry{DN: dn, Attrs: map[string][]string{
		"objectGUID":     {objectGUID(id)},
		"sAMAccountType": {"268435456"},
		"cn":             {cn},
		"member":         members,
	}}
}

// goodDirectory is Alice and Bob, both in Sales.
func goodDirectory() []ldaptest.Entry {
	return []ldaptest.Entry{
		adUser(aliceDN, 1, "Alice Anders",
			"SMTP:alice@example.com", "smtp:a.anders@example.com", "smtp:alice@example.org", "X500:/o=Example/cn=alice"),
		adUser(bobDN, 2, "Bob Brown", "SMTP:bob@example.com", "smtp:bob.brown@example.com"),
		adGroup(salesDN, 3, "Sales", aliceDN, bobDN),
	}
}

// script serves entries to the reader that writeConfig binds as.
func script(entries []ldaptest.Entry) ldaptest.Script {
	return ldaptest.Script{BindDN: badDataBindDN, Password: readerPassword, Entries: entries}
}

// badDataReport is what these tests read of a sync's or preview's --json
// report.
type badDataReport struct {
	Outcome  string        `json:"outcome"`
	Error    string        `json:"error"`
	Counts   store.Counts  `json:"counts"`
	Intended *store.Counts `json:"intended"`
	Skipped  []struct {
		DN, Address, Reason string
	} `json:"skipped"`
	Held []struct {
		DN, Address, Reason string
	} `json:"held"`
	Users []struct {
		Address     string `json:"address"`
		DisplayName string `json:"display_name"`
		DN          string `json:"dn"`
	} `json:"users"`
	Unmatched []string `json:"unmatched_groups"`
}

// newBadDataEnv starts a scripted server with goodDirectory, points the
// config at it, makes the gateway group Sales and a hand-made mailbox, and
// syncs once. It returns the env, the server and the store's state.
func newBadDataEnv(t *testing.T) (*env, *ldaptest.Server, string) {
	t.Helper()
	srv := ldaptest.Start(t, script(goodDirectory()))
	e := &env{t: t, dir: t.TempDir()}
	e.write("reader.pw", readerPassword+"\n")
	e.write("plugin.toml", "[[policy]]\nname    = \"standard\"\nruntime = \"builtin\"\n")
	e.writeConfig("", fmt.Sprintf("%q", srv.URL))
	e.ok("group", "add", "--domain", "example.com", "Sales")
	e.ok("mailbox", "add", "--domain", "example.com", "postmaster@example.com")
	r := e.syncReport(0)
	if r.Counts.Created != 2 || r.Counts.Entries != 3 {
		t.Fatalf("the good sync: %+v", r.Counts)
	}
	mb := e.mailboxes()
	alice := mb["alice@example.com"]
	wantList(t, "alice aliases after the good sync", alice.Aliases, "a.anders@example.com", "alice@example.org")
	wantList(t, "alice groups after the good sync", alice.Groups, "Sales")
	want(t, "alice display name after the good sync", alice.DisplayName, "Alice Anders")
	wantList(t, "bob groups after the good sync", mb["bob@example.com"].Groups, "Sales")
	return e, srv, e.state()
}

// syncReport runs `dirsync sync --json`, wants exit status code and
// decodes the report.
func (e *env) syncReport(code int) badDataReport {
	e.t.Helper()
	got, out, errs := e.run("sync", "--domain", "example.com", "--json")
	if got != code {
		e.t.Fatalf("sync: exit %d, want %d\nstdout: %s\nstderr: %s", got, code, out, errs)
	}
	var r badDataReport
	if err := jsonOut(out, &r); err != nil {
		e.t.Fatalf("sync --json: %v\n%s", err, out)
	}
	return r
}

// noDeletes fails if a sync deleted or would have deleted anything.
func noDeletes(t *testing.T, r badDataReport) {
	t.Helper()
	if r.Counts.Deleted != 0 || (r.Intended != nil && r.Intended.Deleted != 0) {
		t.Errorf("the sync deleted: counts %+v, intended %+v", r.Counts, r.Intended)
	}
}

// TestBadDataAliasDroppedAlone: an alias with a byte that is not UTF-8 is
// dropped alone, with a reason; the mailbox keeps its id, its primary, its
// other aliases, its name and its groups (sdk/WRITING.md: "one alias is
// bad data: mailbox, without it").
func TestBadDataAliasDroppedAlone(t *testing.T) {
	e, srv, _ := newBadDataEnv(t)
	before := e.mailboxes()
	dir := goodDirectory()
	dir[0] = adUser(aliceDN, 1, "Alice Anders",
		"SMTP:alice@example.com", "smtp:a.and\xffers@example.com", "smtp:alice@example.org", "X500:/o=Example/cn=alice")
	srv.Set(script(dir))

	r := e.syncReport(0)
	want(t, "outcome", r.Outcome, "ok")
	noDeletes(t, r)
	want(t, "updated", r.Counts.Updated, 1)
	want(t, "memberships removed", r.Counts.MembersRemoved, 0)
	if len(r.Held) != 0 {
		t.Errorf("held = %+v, want none: the primary is good", r.Held)
	}
	found := false
	for _, s := range r.Skipped {
		if s.DN == aliceDN && s.Address == "a.and\uFFFDers@example.com" && strings.Contains(s.Reason, "invalid UTF-8") {
			found = true
		}
	}
	if !found {
		t.Errorf("skipped = %+v, want alice's a.and\\uFFFDers@example.com with a reason", r.Skipped)
	}

	after := e.mailboxes()
	alice, was := after["alice@example.com"], before["alice@example.com"]
	want(t, "alice id", alice.ID, was.ID)
	want(t, "alice source", alice.Source, "ldap")
	want(t, "alice display name", alice.DisplayName, was.DisplayName)
	wantList(t, "alice aliases", alice.Aliases, "alice@example.org")
	wantList(t, "alice groups", alice.Groups, "Sales")
	for addr, m := range before {
		if addr == "alice@example.com" {
			continue
		}
		a := after[addr]
		if a.ID != m.ID || !slices.Equal(a.Aliases, m.Aliases) || !slices.Equal(a.Groups, m.Groups) || a.DisplayName != m.DisplayName {
			t.Errorf("%s changed: %+v, was %+v", addr, a, m)
		}
	}
	want(t, "mailboxes", len(after), len(before))
}

// TestBadDataPrimaryHoldsMailbox: a primary address with a byte that is
// not UTF-8 holds the entry: reported under held with the reason, its
// mailbox kept exactly as it was (aliases, display name, groups), though
// the same sync also brings a new display name and drops the entry from
// its group; nothing is deleted.
func TestBadDataPrimaryHoldsMailbox(t *testing.T) {
	e, srv, state := newBadDataEnv(t)
	dir := goodDirectory()
	dir[0] = adUser(aliceDN, 1, "Alice Changed",
		"SMTP:alice\xff@example.com", "smtp:a.anders@example.com", "smtp:alice@example.org")
	dir[2] = adGroup(salesDN, 3, "Sales", bobDN)
	srv.Set(script(dir))

	r := e.syncReport(0)
	want(t, "outcome", r.Outcome, "ok")
	noDeletes(t, r)
	if c := r.Counts; c.Created+c.Updated+c.MembersAdded+c.MembersRemoved != 0 {
		t.Errorf("the sync changed something: %+v", c)
	}
	want(t, "counts.held", r.Counts.Held, 1)
	if len(r.Held) != 1 || r.Held[0].DN != aliceDN ||
		!strings.Contains(r.Held[0].Reason, "primary address \"alice\uFFFD@example.com\" is not usable: invalid UTF-8") {
		t.Errorf("held = %+v, want alice's entry with the bad primary as the reason", r.Held)
	}
	want(t, "state after the held sync", e.state(), state)

	// Once the directory is right again, the changes it holds apply.
	dir[0] = adUser(aliceDN, 1, "Alice Changed",
		"SMTP:alice@example.com", "smtp:a.anders@example.com", "smtp:alice@example.org")
	srv.Set(script(dir))
	r = e.syncReport(0)
	noDeletes(t, r)
	alice := e.mailboxes()["alice@example.com"]
	want(t, "alice display name after the fix", alice.DisplayName, "Alice Changed")
	wantList(t, "alice groups after the fix", alice.Groups)
}

// TestBadDataDisplayNameKeptWithReplacementChar: a display name with a
// byte that is not UTF-8 is stored with U+FFFD in its place (not base64),
// and the report notes it.
func TestBadDataDisplayNameKeptWithReplacementChar(t *testing.T) {
	e, srv, _ := newBadDataEnv(t)
	before := e.mailboxes()["alice@example.com"]
	dir := goodDirectory()
	dir[0].Attrs["displayName"] = []string{"Alice \xffAnders"}
	srv.Set(script(dir))

	r := e.syncReport(0)
	want(t, "outcome", r.Outcome, "ok")
	noDeletes(t, r)
	want(t, "updated", r.Counts.Updated, 1)
	found := false
	for _, s := range r.Skipped {
		if s.DN == aliceDN && s.Address == "Alice \uFFFDAnders" && strings.Contains(s.Reason, "displayName has invalid UTF-8") {
			found = true
		}
	}
	if !found {
		t.Errorf("skipped = %+v, want a note on alice's display name", r.Skipped)
	}
	alice := e.mailboxes()["alice@example.com"]
	want(t, "alice display name", alice.DisplayName, "Alice \uFFFDAnders")
	want(t, "alice id", alice.ID, before.ID)
	wantList(t, "alice aliases", alice.Aliases, before.Aliases...)
	wantList(t, "alice groups", alice.Groups, before.Groups...)
}

// TestBadDataEndlessPageFailsAtFetch protects S1 from a server that
// streams one page without end: the sync stops reading at ten times the
// page size (1000 by default), fails at once, changes nothing and is
// recorded as failed at fetch.
func TestBadDataEndlessPageFailsAtFetch(t *testing.T) {
	e, srv, state := newBadDataEnv(t)
	s := script(goodDirectory()[:1]) // Alice alone: a sync that applied would delete Bob
	s.EndlessPage = true
	srv.Set(s)
	runs := len(e.runs())

	start := time.Now()
	code, out, errs := e.run("sync", "--domain", "example.com")
	took := time.Since(start)
	if code != 1 || !strings.Contains(errs, "the server sent more than 10000 entries in one page of 1000") || !strings.Contains(errs, srv.URL) {
		t.Fatalf("sync: exit %d, want 1 with the page size error naming the server\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if took > 10*time.Second {
		t.Errorf("the sync took %v to stop an endless page (timeout 20s)", took)
	}
	want(t, "state after an endless page", e.state(), state)
	rs := e.runs()
	want(t, "runs", len(rs), runs+1)
	if r := rs[0]; r.Outcome != "failed" || r.Stage != "fetch" || !strings.Contains(r.Error, "more than 10000 entries in one page") ||
		r.Counts.Deleted != 0 {
		t.Errorf("the run is recorded as %s at %s (%q), counts %+v; want failed at fetch", r.Outcome, r.Stage, r.Error, r.Counts)
	}
}

// TestBadDataSearchWithoutDoneFailsAtFetch protects S1 from a search that
// ends without its done message (the connection closed after the entries):
// the sync fails, changes nothing — though the entries it did get lack
// Bob — and is recorded as failed at fetch.
func TestBadDataSearchWithoutDoneFailsAtFetch(t *testing.T) {
	e, srv, state := newBadDataEnv(t)
	dir := goodDirectory()
	s := script([]ldaptest.Entry{dir[0], adGroup(salesDN, 3, "Sales", aliceDN)}) // Bob missing
	s.CloseBeforeDone = true
	srv.Set(s)

	r := e.syncReport(1)
	want(t, "outcome", r.Outcome, "failed")
	noDeletes(t, r)
	if !strings.Contains(r.Error, "closed the connection before the page was complete") || !strings.Contains(r.Error, srv.URL) {
		t.Errorf("report error %q, want the closed connection and the server", r.Error)
	}
	e.fails(1, "closed the connection before the page was complete", "sync", "--domain", "example.com")
	want(t, "state after a search without its done message", e.state(), state)
	for i, r := range e.runs()[:2] {
		if r.Outcome != "failed" || r.Stage != "fetch" || !strings.Contains(r.Error, "closed the connection") {
			t.Errorf("run %d is recorded as %s at %s (%q), want failed at fetch", i, r.Outcome, r.Stage, r.Error)
		}
	}
}

// TestBadDataEscapeSequencesNeverReachTerminal: a DN, a display name and a
// group name with terminal escape sequences (ESC [2J clears the screen;
// U+009B is a one-character CSI) reach the plain-text preview and sync
// output only escaped (\u001b, \u009b); the JSON report keeps them exactly.
func TestBadDataEscapeSequencesNeverReachTerminal(t *testing.T) {
	e, srv, _ := newBadDataEnv(t)
	const (
		malloryDN   = "CN=Mallory\x1b[2J\u009b31m,OU=People,DC=example,DC=com"
		malloryName = "Mallory\x1b]0;owned\x07\u009b2J\xff" // the bad byte puts the name in the report
		aliceName   = "Alice\x1b[2J\u009bA"
		groupName   = "Evil\x1b[2J\u009b"
	)
	dir := goodDirectory()
	dir[0].Attrs["displayName"] = []string{aliceName}
	dir = append(dir,
		adUser(malloryDN, 4, malloryName, "SMTP:mallory@example.com", "smtp:mallory@other.net"),
		adGroup("CN=Evil\x1b[2J\u009b,OU=Groups,DC=example,DC=com", 5, groupName, malloryDN))
	srv.Set(script(dir))

	// clean fails unless out is UTF-8 without control characters but
	// newline and tab: no ESC, no C1 control such as U+009B.
	clean := func(what, out string) {
		t.Helper()
		if !utf8.ValidString(out) {
			t.Errorf("%s is not UTF-8 (a lone 0x9b is a CSI to some terminals):\n%q", what, out)
		}
		for i, r := range out {
			if r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r <= 0x9f {
				t.Errorf("%s holds the control character %U: %q", what, r, out[max(0, i-30):min(len(out), i+30)])
				return
			}
		}
	}

	out := e.ok("preview", "--domain", "example.com")
	clean("preview", out)
	for _, s := range []string{
		`CN=Mallory\u001b[2J\u009b31m,OU=People,DC=example,DC=com: mallory@other.net:`, // a skipped address
		`Mallory\u001b]0;owned\u0007\u009b2J` + "\uFFFD",                               // the display name note
		`Evil\u001b[2J\u009b`, // an unmatched group
	} {
		if !strings.Contains(out, s) {
			t.Errorf("preview lacks %q:\n%s", s, out)
		}
	}

	// JSON: escaped on the terminal, the same text once decoded.
	js := e.ok("preview", "--domain", "example.com", "--json")
	clean("preview --json", js)
	var r badDataReport
	if err := jsonOut(js, &r); err != nil {
		t.Fatalf("preview --json does not decode: %v\n%s", err, js)
	}
	dns := map[string]string{}
	for _, u := range r.Users {
		dns[u.Address] = u.DN
		if u.Address == "alice@example.com" {
			want(t, "alice's display name in the JSON preview", u.DisplayName, aliceName)
		}
	}
	want(t, "mallory's DN in the JSON preview", dns["mallory@example.com"], malloryDN)
	wantList(t, "unmatched groups in the JSON preview", r.Unmatched, groupName)

	sync := e.ok("sync", "--domain", "example.com")
	clean("sync", sync)
	if !strings.Contains(sync, `CN=Mallory\u001b[2J\u009b31m`) {
		t.Errorf("sync output lacks mallory's escaped DN:\n%s", sync)
	}
	mb := e.mailboxes()
	want(t, "alice's display name in the store", mb["alice@example.com"].DisplayName, aliceName)
	want(t, "mallory's DN in the store", mb["mallory@example.com"].DN, malloryDN)
}

// TestBadDataDNNotUTF8SyncsInEveryRuntime: a DN with a byte that is not
// UTF-8 (Latin-1 ü) reaches every policy runtime repaired (U+FFFD), so one
// such entry cannot stop a domain's syncs on a runtime whose ABI carries
// UTF-8; the group member naming it still matches it.
func TestBadDataDNNotUTF8SyncsInEveryRuntime(t *testing.T) {
	const juergenDN = "CN=J\xfcrgen Anders,OU=People,DC=example,DC=com"
	dir := t.TempDir()
	wasm := filepath.Join(dir, "standard.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", wasm, "./plugins/standard/cmd/standard")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building standard.wasm: %v\n%s", err, b)
	}
	for _, manifest := range []string{
		"[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n",
		fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = %q\n", wasm),
	} {
		t.Run(strings.Trim(strings.Fields(manifest)[6], `"`), func(t *testing.T) {
			e, srv, _ := newBadDataEnv(t)
			e.write("plugin.toml", manifest)
			d := goodDirectory()
			d[0] = adUser(juergenDN, 1, "Jürgen Anders", "SMTP:alice@example.com")
			d[2] = adGroup(salesDN, 3, "Sales", juergenDN, bobDN)
			srv.Set(script(d))
			r := e.syncReport(0)
			noDeletes(t, r)
			alice := e.mailboxes()["alice@example.com"]
			want(t, "dn", alice.DN, "CN=J\uFFFDrgen Anders,OU=People,DC=example,DC=com")
			wantList(t, "groups", alice.Groups, "Sales")
		})
	}
}
