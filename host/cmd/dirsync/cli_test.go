package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
)

// repoRoot is the module's root folder.
func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

const readerPassword = "reader-secret"

// env is one test's directory, config and store.
type env struct {
	t      *testing.T
	srv    *slapd.Server
	dir    string
	config string
}

// newEnv starts slapd with the sample directory and writes a config whose
// domain reads it with the builtin standard policy (or the given manifest).
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvLDIF(t)
}

// newEnvLDIF is newEnv with more entries in the directory.
func newEnvLDIF(t *testing.T, ldif ...string) *env {
	t.Helper()
	ldif = append([]string{filepath.Join(repoRoot(t), "examples", "directory", "sample.ldif")}, ldif...)
	srv := peertest.Slapd(t, slapd.Options{LDIF: ldif, LogLevel: "none"})
	e := &env{t: t, srv: srv, dir: t.TempDir()}
	e.write("reader.pw", readerPassword+"\n")
	e.write("plugin.toml", `
[[policy]]
name    = "standard"
runtime = "builtin"
`)
	e.writeConfig("", "")
	return e
}

func (e *env) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// writeConfig writes dirsync.toml; filter "" is the default filter, urls ""
// the test server.
func (e *env) writeConfig(filter, urls string) {
	if urls == "" {
		urls = fmt.Sprintf("%q", e.srv.URL)
	}
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
  urls          = [%s]
  bind_dn       = "cn=reader,dc=example,dc=com"
  password_file = "reader.pw"
  base_dn       = "dc=example,dc=com"
  filter        = %q
  timeout       = "20s"
`, urls, filter))
}

// run runs the CLI and returns the exit status, stdout and stderr.
func (e *env) run(args ...string) (int, string, string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"--config", e.config}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs the CLI and fails the test unless it exits 0.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	code, out, errs := e.run(args...)
	if code != 0 {
		e.t.Fatalf("dirsync %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs the CLI, wants exit status code and an error line containing want.
func (e *env) fails(code int, want string, args ...string) string {
	e.t.Helper()
	got, out, errs := e.run(args...)
	if got != code || !strings.Contains(errs, want) {
		e.t.Fatalf("dirsync %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, want, out, errs)
	}
	return errs
}

type mailbox struct {
	ID          int64    `json:"id"`
	Address     string   `json:"address"`
	Kind        string   `json:"kind"`
	Source      string   `json:"source"`
	DisplayName string   `json:"display_name"`
	DN          string   `json:"dn"`
	Aliases     []string `json:"aliases"`
	Groups      []string `json:"groups"`
}

func (e *env) mailboxes() map[string]mailbox {
	e.t.Helper()
	var list []mailbox
	if err := json.Unmarshal([]byte(e.ok("mailbox", "list", "--domain", "example.com", "--json")), &list); err != nil {
		e.t.Fatal(err)
	}
	if !slices.IsSortedFunc(list, func(a, b mailbox) int { return strings.Compare(a.Address, b.Address) }) {
		e.t.Errorf("mailbox list is not sorted by address")
	}
	m := map[string]mailbox{}
	for _, x := range list {
		m[x.Address] = x
	}
	return m
}

// state is everything a sync may change, as text, to compare before/after.
func (e *env) state() string {
	e.t.Helper()
	return e.ok("mailbox", "list", "--domain", "example.com", "--json") + e.ok("group", "list", "--domain", "example.com", "--json")
}

func (e *env) runCount() int {
	e.t.Helper()
	var runs []json.RawMessage
	if err := json.Unmarshal([]byte(e.ok("runs", "--domain", "example.com", "--json")), &runs); err != nil {
		e.t.Fatal(err)
	}
	return len(runs)
}

func jsonOut(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func want[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantList(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// TestSyncLifecycle runs two syncs against a real slapd with directory and
// hand-made changes in between (R3–R8, R10), a preview and a dry run that
// write nothing (R9), and the failures of S1 and S2.
func TestSyncLifecycle(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"

	// Gateway groups are made by hand; "engineering" differs from the
	// directory's "Engineering" in case only, so that group stays unmatched (R4).
	e.ok("group", "add", "--domain", D, "Sales")
	e.ok("group", "add", "--domain", D, "All Staff")
	e.ok("group", "add", "--domain", D, "engineering")
	// Hand-made mailboxes: one untouched by every sync, one whose address
	// Frank's entry claims (a conflict, R10).
	e.ok("mailbox", "add", "--domain", D, "postmaster@example.com", "--group", "Sales")
	e.ok("mailbox", "add", "--domain", D, "frank@example.com")
	before := e.state()

	// Preview (R9) shows what would come in and writes nothing.
	var prev struct {
		Users []struct {
			Address string   `json:"address"`
			Groups  []string `json:"groups"`
		} `json:"users"`
		Unmatched []string `json:"unmatched_groups"`
		Conflicts []struct {
			DN     string `json:"dn"`
			Reason string `json:"reason"`
		} `json:"conflicts"`
		Skipped []struct {
			DN      string `json:"dn"`
			Address string `json:"address"`
			Reason  string `json:"reason"`
		} `json:"skipped"`
		Changes []struct {
			Kind    string `json:"kind"`
			Address string `json:"address"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(e.ok("preview", "--domain", D, "--json")), &prev); err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, u := range prev.Users {
		users = append(users, u.Address)
	}
	wantList(t, "preview users", users, "alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com",
		"erin@example.com", "grace@example.com", "heidi@example.com", "support@example.com")
	wantList(t, "unmatched groups", prev.Unmatched, "Engineering", "Marketing")
	if len(prev.Conflicts) != 1 || !strings.Contains(prev.Conflicts[0].DN, "Frank") || !strings.Contains(prev.Conflicts[0].Reason, "frank@example.com") {
		t.Errorf("conflicts = %+v, want Frank's entry", prev.Conflicts)
	}
	skipped := map[string]bool{}
	for _, s := range prev.Skipped {
		skipped[s.Address+"|"+strings.SplitN(s.DN, ",", 2)[0]] = true
	}
	if !skipped["bob@other.net|cn=Bob Brown"] || !skipped["|cn=Ivan Ito"] {
		t.Errorf("skipped = %+v, want bob@other.net and Ivan (no address)", prev.Skipped)
	}
	if len(prev.Changes) != 8 {
		t.Errorf("preview changes = %d, want 8 creates", len(prev.Changes))
	}
	out := e.ok("sync", "--domain", D, "--dry-run")
	if !strings.Contains(out, "created 8") {
		t.Errorf("dry run output lacks the counts:\n%s", out)
	}
	want(t, "state after preview and dry run", e.state(), before)
	want(t, "runs after preview and dry run", e.runCount(), 0)

	// First sync.
	out = e.ok("sync", "--domain", D)
	for _, s := range []string{"created 8", "conflicts 1", "unmatched groups 2", "skipped 2"} {
		if !strings.Contains(out, s) {
			t.Errorf("sync output lacks %q:\n%s", s, out)
		}
	}
	mb := e.mailboxes()
	alice := mb["alice@example.com"]
	want(t, "alice source", alice.Source, "ldap")
	want(t, "alice kind", alice.Kind, "user")
	wantList(t, "alice aliases", alice.Aliases, "a.anders@example.com", "alice@example.org") // X500 ignored (R7)
	wantList(t, "alice groups", alice.Groups, "All Staff", "Sales")
	wantList(t, "bob aliases", mb["bob@example.com"].Aliases, "bob.brown@example.com") // other.net skipped
	want(t, "support kind", mb["support@example.com"].Kind, "public_folder")
	want(t, "frank stays manual", mb["frank@example.com"].Source, "manual")
	wantList(t, "postmaster groups", mb["postmaster@example.com"].Groups, "Sales")
	if _, ok := mb["ivan@example.com"]; ok {
		t.Error("Ivan has no address and must not get a mailbox")
	}
	// R8: any address resolves to its primary; report recipients are primaries.
	want(t, "resolve alias", strings.TrimSpace(e.ok("resolve", "alice@example.org")), "alice@example.com")
	want(t, "resolve alias (case)", strings.TrimSpace(e.ok("resolve", "A.Anders@Example.COM")), "alice@example.com")
	e.fails(1, "not found", "resolve", "nobody@example.com")
	var recips []struct {
		Address string   `json:"address"`
		Covers  []string `json:"covers"`
	}
	json.Unmarshal([]byte(e.ok("report-recipients", "--domain", D, "--json")), &recips)
	want(t, "report recipients", len(recips), len(mb))

	// Directory changes: Alice renamed and moved, Carol's primary changes,
	// Dave leaves, Zed joins, Bob leaves Sales.
	conn, err := e.srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.srv.Add("ou=Moved,dc=example,dc=com", map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"Moved"}}))
	must(conn.ModifyDN(ldap.NewModifyDNRequest("cn=Alice Anders,ou=People,dc=example,dc=com", "cn=Alice Smith", true, "ou=Moved,dc=example,dc=com")))
	must(e.srv.Replace("cn=Carol Clark,ou=People,dc=example,dc=com", "proxyAddresses", "SMTP:carol.clark@example.com", "smtp:carol@example.org"))
	must(e.srv.Delete("cn=Dave Dunn,ou=People,dc=example,dc=com"))
	must(e.srv.Add("cn=Zed Zimmer,ou=People,dc=example,dc=com", map[string][]string{
		"objectClass": {"inetOrgPerson", "adUser"}, "cn": {"Zed Zimmer"}, "sn": {"Zimmer"},
		"sAMAccountType": {"805306368"}, "proxyAddresses": {"SMTP:zed@example.com"}}))
	must(e.srv.Add("cn=Sales2,ou=Groups,dc=example,dc=com", map[string][]string{ // memberOf path
		"objectClass": {"groupOfNames", "adGroup"}, "cn": {"Sales"}, "sAMAccountType": {"268435456"},
		"member": {"cn=Zed Zimmer,ou=People,dc=example,dc=com"}}))
	must(conn.Modify(&ldap.ModifyRequest{DN: "cn=Sales,ou=Groups,dc=example,dc=com",
		Changes: []ldap.Change{{Operation: ldap.DeleteAttribute, Modification: ldap.PartialAttribute{Type: "member", Vals: []string{"cn=Bob Brown,ou=People,dc=example,dc=com"}}}}}))
	// Hand-made changes: an LDAP mailbox put in a group by hand (R5 removes
	// it), a manual one (R5 leaves it).
	e.ok("group", "assign", "--domain", D, "engineering", "alice@example.com")
	e.ok("group", "assign", "--domain", D, "All Staff", "postmaster@example.com")

	out = e.ok("sync", "--domain", D)
	for _, s := range []string{"created 1", "deleted 1", "updated 2"} {
		if !strings.Contains(out, s) {
			t.Errorf("second sync output lacks %q:\n%s", s, out)
		}
	}
	mb2 := e.mailboxes()
	a2 := mb2["alice@example.com"]
	want(t, "alice id after rename and move (R3)", a2.ID, alice.ID)
	want(t, "alice DN", a2.DN, "cn=Alice Smith,ou=Moved,dc=example,dc=com")
	wantList(t, "alice groups (hand-made engineering removed, R5)", a2.Groups, "All Staff", "Sales")
	c2, ok := mb2["carol.clark@example.com"]
	if !ok {
		t.Fatalf("carol's new primary is missing: %v", mb2)
	}
	want(t, "carol id after new primary", c2.ID, mb["carol@example.com"].ID)
	wantList(t, "carol aliases", c2.Aliases, "carol@example.org")
	e.fails(1, "not found", "resolve", "c.clark@example.com")
	if _, ok := mb2["dave@example.com"]; ok {
		t.Error("dave left the directory and must be deleted (R6)")
	}
	wantList(t, "zed groups (via memberOf and member)", mb2["zed@example.com"].Groups, "Sales")
	wantList(t, "bob groups", mb2["bob@example.com"].Groups, "All Staff")
	wantList(t, "postmaster groups (manual, untouched)", mb2["postmaster@example.com"].Groups, "All Staff", "Sales")
	want(t, "frank stays manual", mb2["frank@example.com"].Source, "manual")
	want(t, "runs recorded", e.runCount(), 2)

	// An unchanged directory changes nothing.
	out = e.ok("sync", "--domain", D)
	if !strings.Contains(out, "created 0, updated 0, deleted 0, memberships added 0, removed 0") {
		t.Errorf("third sync changed something:\n%s", out)
	}

	// Run records carry the per-object changes (S5); runs lists them
	// without, runs show has them.
	var list []struct {
		ID int64 `json:"id"`
	}
	json.Unmarshal([]byte(e.ok("runs", "--domain", D, "--json")), &list)
	var run struct {
		Outcome string `json:"outcome"`
		Changes []struct {
			Kind    string `json:"kind"`
			Address string `json:"address"`
			Before  *struct {
				DN string `json:"dn"`
			} `json:"before"`
			After *struct {
				DN string `json:"dn"`
			} `json:"after"`
		} `json:"changes"`
	}
	json.Unmarshal([]byte(e.ok("runs", "show", "--domain", D, fmt.Sprint(list[1].ID), "--json")), &run)
	found := false
	for _, c := range run.Changes {
		if c.Kind == "update" && c.Address == "alice@example.com" && c.Before != nil && c.After != nil &&
			strings.Contains(c.Before.DN, "Alice Anders") && strings.Contains(c.After.DN, "Alice Smith") {
			found = true
		}
	}
	if !found {
		t.Errorf("the second run's record lacks alice's update with before and after: %+v", run.Changes)
	}

	// S2: a filter that matches nothing stops before writing.
	state := e.state()
	e.writeConfig("(sAMAccountName=nobody-at-all)", "")
	e.fails(1, "stopped before writing", "sync", "--domain", D)
	want(t, "state after a stopped run", e.state(), state)

	// S1: the directory goes away; the run fails and changes nothing.
	e.writeConfig("", "")
	must(e.srv.Stop())
	e.fails(1, e.srv.URL, "sync", "--domain", D)
	want(t, "state after an unreachable directory", e.state(), state)
	must(e.srv.Restart(context.Background()))
	e.ok("sync", "--domain", D)
	want(t, "state after a resync", e.state(), state)
}

// TestBadInput checks that each bad input gets a one-line error and the
// right exit status, and leaves the store as it was.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("group", "add", "--domain", D, "Sales")
	e.ok("sync", "--domain", D)
	good := e.state()
	goodConfig, _ := os.ReadFile(e.config)

	tests := []struct {
		name  string
		setup func()
		args  []string
		code  int
		want  string
	}{
		{name: "invalid filter", setup: func() { e.writeConfig("(|(cn=a)", "") }, args: []string{"sync", "--domain", D}, code: 1, want: "position"},
		{name: "empty OR", setup: func() { e.writeConfig("(|)", "") }, args: []string{"sync", "--domain", D}, code: 1, want: "position 2"},
		{name: "filter check", args: []string{"filter", "check", "(cn=a))"}, code: 1, want: "position 6"},
		{name: "unknown domain", args: []string{"sync", "--domain", "nope.example"}, code: 2, want: `unknown domain "nope.example"`},
		{name: "unreachable directory", setup: func() { e.writeConfig("", `"ldap://127.0.0.1:1"`) }, args: []string{"sync", "--domain", D}, code: 1, want: "ldap://127.0.0.1:1"},
		{name: "wrong password", setup: func() { e.write("reader.pw", "wrong-password-xyz") }, args: []string{"sync", "--domain", D}, code: 1, want: "Invalid Credentials"},
		{name: "bad TOML key", setup: func() {
			os.WriteFile(e.config, append(append([]byte{}, goodConfig...), []byte("  colour = \"blue\"\n")...), 0o600)
		}, args: []string{"sync", "--domain", D}, code: 2, want: `key "domain.ldap.colour"`},
		{name: "missing wasm", setup: func() {
			e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = \"missing.wasm\"\n")
		}, args: []string{"sync", "--domain", D}, code: 2, want: "missing.wasm"},
		{name: "corrupt wasm", setup: func() {
			e.write("corrupt.wasm", "\x00asm garbage")
			e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = \"corrupt.wasm\"\n")
		}, args: []string{"sync", "--domain", D}, code: 2, want: "corrupt.wasm"},
		{name: "plugin refuses its config", setup: func() {
			e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n[policy.config]\nnested = 1\n")
		}, args: []string{"sync", "--domain", D}, code: 2, want: "nested"},
		{name: "usage", args: []string{"sync"}, code: 2, want: "--domain is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			if tc.setup != nil {
				tc.setup()
			}
			errs := e.fails(tc.code, tc.want, tc.args...)
			if n := strings.Count(strings.TrimSpace(errs), "\n"); n > 0 && tc.code != 2 {
				t.Errorf("error is %d lines, want one:\n%s", n+1, errs)
			}
			if strings.Contains(errs, "wrong-password-xyz") || strings.Contains(errs, readerPassword) {
				t.Errorf("the password leaked into the error: %s", errs)
			}
			// Restore the good setup and check that nothing changed.
			os.WriteFile(e.config, goodConfig, 0o600)
			e.write("reader.pw", readerPassword+"\n")
			e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
			want(t, "state", e.state(), good)
		})
	}
}

// TestSyncWasmEqualsBuiltin syncs the sample directory with the standard
// policy as a wasm module, as a plugin process and linked in, into three
// stores, and requires the
// same mailboxes, aliases and groups — also after a directory change, when
// the wasm run maps only the changed entry and takes the others from its
// map cache.
func TestSyncWasmEqualsBuiltin(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	wasm := filepath.Join(e.dir, "standard.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", wasm, "./plugins/standard/cmd/standard")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building standard.wasm: %v\n%s", err, b)
	}
	native := exec.Command("go", "build", "-o", filepath.Join(e.dir, "standard"), "./plugins/standard/cmd/standard")
	native.Dir = repoRoot(t)
	if b, err := native.CombinedOutput(); err != nil {
		t.Fatalf("building the standard plugin program: %v\n%s", err, b)
	}
	base, _ := os.ReadFile(e.config)
	use := func(rt string) {
		manifest := "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"
		switch rt {
		case "wasm":
			manifest = "[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = \"standard.wasm\"\ntimeout = \"30s\"\n"
		case "process":
			manifest = "[[policy]]\nname = \"standard\"\nruntime = \"process\"\npath = \"standard\"\ntimeout = \"30s\"\n"
		}
		e.write("plugin.toml", manifest)
		e.write("dirsync.toml", strings.Replace(string(base), "var/dirsync.db", "var/"+rt+".db", 1))
	}
	type counts struct {
		Counts struct {
			Entries int `json:"entries"`
			Created int `json:"created"`
			Updated int `json:"updated"`
			Cached  int `json:"cached_entries"`
		} `json:"counts"`
		Conflicts []json.RawMessage `json:"conflicts"`
	}
	// Full reads: the map cache is what a full read of unchanged entries
	// skips (a delta does not read them at all).
	sync := func() counts {
		var c counts
		if err := jsonOut(e.ok("sync", "--domain", D, "--json", "--full"), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	states := map[string]string{}
	for _, rt := range []string{"builtin", "process", "wasm"} {
		use(rt)
		e.ok("group", "add", "--domain", D, "Sales")
		e.ok("group", "add", "--domain", D, "All Staff")
		e.ok("mailbox", "add", "--domain", D, "frank@example.com")
		if c := sync(); c.Counts.Created != 8 || len(c.Conflicts) != 1 || c.Counts.Cached != 0 {
			t.Errorf("%s first sync: %+v", rt, c)
		}
		states[rt] = e.state()
	}
	want(t, "wasm store equals builtin store", states["wasm"], states["builtin"])
	want(t, "process store equals builtin store", states["process"], states["builtin"])

	// Unchanged: every entry comes from the cache.
	c := sync()
	want(t, "cached entries of an unchanged resync", c.Counts.Cached, c.Counts.Entries)
	want(t, "updates of an unchanged resync", c.Counts.Updated, 0)

	// One entry changes: only it is mapped again, and the outcome equals
	// the builtin policy's.
	if err := e.srv.Replace("cn=Carol Clark,ou=People,dc=example,dc=com", "proxyAddresses", "SMTP:carol.clark@example.com"); err != nil {
		t.Fatal(err)
	}
	c = sync()
	want(t, "cached entries after one change", c.Counts.Cached, c.Counts.Entries-1)
	want(t, "updates after one change", c.Counts.Updated, 1)
	states["wasm"] = e.state()
	use("builtin")
	sync()
	want(t, "wasm store equals builtin store after a change", states["wasm"], e.state())

	// A new gateway group changes what every group maps to: nothing cached.
	use("wasm")
	e.ok("group", "add", "--domain", D, "Engineering")
	if c := sync(); c.Counts.Cached != 0 {
		t.Errorf("after a new gateway group %d entries came from the cache, want 0", c.Counts.Cached)
	}

	// A delta that finds nothing changed answers from the policy's kept
	// facts (its Info, the filter it accepted) without loading the
	// module; one with a change to map loads it. (Frank's conflict goes
	// first: a run that left one decides again each time.)
	t.Setenv("DIRSYNC_LOG", "debug")
	const loading = `msg="loading the policy"`
	e.ok("mailbox", "remove", "--domain", D, "frank@example.com")
	e.ok("sync", "--domain", D)
	if _, out, errs := e.run("sync", "--domain", D); !strings.Contains(out, "nothing changed") || strings.Contains(errs, loading) {
		t.Errorf("an unchanged delta with a wasm policy: want it unchanged without loading the module\nstdout: %s\nstderr: %s", out, errs)
	}
	if err := e.srv.Replace("cn=Carol Clark,ou=People,dc=example,dc=com", "displayName", "Carol C."); err != nil {
		t.Fatal(err)
	}
	if _, out, errs := e.run("sync", "--domain", D); !strings.Contains(out, "updated 1") || !strings.Contains(errs, loading) {
		t.Errorf("a delta with a change, wasm policy: want the module loaded and one update\nstdout: %s\nstderr: %s", out, errs)
	}
	e.write("dirsync.toml", string(base))
}
