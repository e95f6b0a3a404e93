package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/pgtest"
	"github.com/dirsync/dirsync/host/internal/secrets"
)

// migrateConfig writes a config file name whose [store] is store: the
// domain example.com is kept in the store (sealed bind password, key of
// secret.key); config.example is declared here, with its sync switch off.
func (e *env) migrateConfig(name, store string) string {
	e.t.Helper()
	return e.write(name, fmt.Sprintf(`
[store]
%s
[plugins]
manifest  = "plugin.toml"
cache_dir = "var/cache"
[secrets]
key_file = "secret.key"
[[domain]]
name   = "config.example"
policy = "standard"
  [domain.ldap]
  urls    = [%q]
  base_dn = "dc=example,dc=com"
`, store, e.srv.URL))
}

// timeRE matches the RFC 3339 times of JSON output.
var timeRE = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"`)

// microTimes rewrites every time of a JSON output in UTC and to the
// microsecond: the SQLite store keeps nanoseconds, PostgreSQL
// microseconds, and PostgreSQL's times come back in the local zone.
func microTimes(t *testing.T, out string) string {
	t.Helper()
	return timeRE.ReplaceAllStringFunc(out, func(s string) string {
		tm, err := time.Parse(time.RFC3339Nano, strings.Trim(s, `"`))
		if err != nil {
			t.Fatalf("time %s: %v", s, err)
		}
		return `"` + tm.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano) + `"`
	})
}

// TestStoreMigrate: a SQLite store filled by syncs of the sample
// directory and by hand (a store-kept domain with a sealed password,
// groups, memberships, runs of several outcomes) is migrated to PostgreSQL;
// the listings of both stores are the same, a sync against the new store
// opens the sealed password and changes nothing, new ids follow the copied
// ones, and a second migrate into the now full target is refused and
// changes nothing.
func TestStoreMigrate(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.write("secret.key", secrets.NewKey()+"\n")
	sqliteConfig := e.migrateConfig("sqlite.toml", `dsn = "var/dirsync.db"`)
	dbPath := filepath.Join(e.dir, "var", "dirsync.db")
	e.config = sqliteConfig

	// The store before the move.
	e.ok("domain", "add", D, "policy=standard", "sync=true", "alias_domains=['example.org']",
		fmt.Sprintf("ldap.urls=[%q]", e.srv.URL), "ldap.bind_dn=cn=reader,dc=example,dc=com",
		"ldap.base_dn=dc=example,dc=com", "--password-file", filepath.Join(e.dir, "reader.pw"))
	e.ok("group", "add", "--domain", D, "Sales")
	e.ok("group", "add", "--domain", D, "All Staff")
	e.ok("group", "add", "--domain", D, "engineering") // unmatched: the directory's is "Engineering"
	e.ok("mailbox", "add", "--domain", D, "postmaster@example.com", "--group", "Sales")
	e.ok("group", "assign", "--domain", D, "engineering", "postmaster@example.com")
	if out := e.ok("sync", "--domain", D); !strings.Contains(out, "created 9,") {
		t.Fatalf("first sync: %s", out)
	}
	highest := int64(0) // the highest mailbox id given out, the deleted folder's included
	for _, m := range e.mailboxes() {
		highest = max(highest, m.ID)
	}
	// A guard stop (intended counts, would-be changes), then the delete
	// confirmed; and a failed run of the config's domain (switch off).
	e.ok("domain", "set", D, "safety.max_deletes=0",
		"ldap.filter=(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457))")
	e.fails(1, "", "sync", "--domain", D)
	if out := e.ok("sync", "--domain", D, "--confirm-deletes"); !strings.Contains(out, "deleted 1,") {
		t.Fatalf("confirmed sync: %s", out)
	}
	e.fails(1, "", "sync", "--domain", "config.example")
	e.ok("mailbox", "add", "--domain", D, "helpdesk@example.org", "--group", "All Staff")
	for _, m := range e.mailboxes() {
		highest = max(highest, m.ID)
	}

	// What both stores must show alike.
	views := func() map[string]string {
		t.Helper()
		v := map[string]string{}
		for _, args := range [][]string{
			{"mailbox", "list", "--domain", D, "--json"},
			{"group", "list", "--domain", D, "--json"},
			{"report-recipients", "--domain", D, "--json"},
			{"runs", "--domain", D, "--limit", "1000", "--json"},
			{"runs", "--domain", "config.example", "--json"},
			{"domain", "show", D, "--json"},
			{"domain", "list", "--json"},
		} {
			v[strings.Join(args, " ")] = e.ok(args...)
		}
		var runs []struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal([]byte(v["runs --domain "+D+" --limit 1000 --json"]), &runs); err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			args := []string{"runs", "show", "--domain", D, strconv.FormatInt(r.ID, 10), "--json"}
			v[strings.Join(args, " ")] = e.ok(args...)
		}
		return v
	}
	before := views()
	if n := strings.Count(before["runs --domain "+D+" --limit 1000 --json"], `"id"`); n != 3 {
		t.Fatalf("%d runs of %s before the move, want 3", n, D)
	}

	// The move: the password from a file, the DSN without it.
	pg := pgtest.Start(t)
	full := pg.NewDatabase(t)
	u, err := url.Parse(full)
	if err != nil {
		t.Fatal(err)
	}
	password, _ := u.User.Password()
	u.User = url.User(u.User.Username())
	dsn := u.String()
	pwFile := e.write("store.pw", password+"\n")
	start := time.Now()
	code, out, errs := e.main("store", "migrate", "--from", "sqlite:"+dbPath, "--to", "postgres:"+dsn, "--to-password-file", pwFile)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("store migrate: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	t.Logf("store migrate took %s\nstdout:\n%sstderr:\n%s", took, out, errs)
	for _, w := range []string{"TABLE", "SOURCE", "TARGET", "mailboxes", "run changes", "settings versions", "directory states",
		"migrated sqlite:" + dbPath + " to postgres:" + dsn, "every count matches"} {
		if !strings.Contains(out, w) {
			t.Errorf("store migrate output lacks %q:\n%s", w, out)
		}
	}
	for _, table := range []string{"domains", "mailboxes", "addresses", "groups", "memberships", "runs", "run changes", "settings versions", "directory states"} {
		if !regexp.MustCompile(`(?m)^store migrate: copied ` + table + ` +\d+ in `).MatchString(errs) {
			t.Errorf("no progress line for %s:\n%s", table, errs)
		}
		if !regexp.MustCompile(`(?m)^` + table + ` +[1-9]\d* +[1-9]\d*$`).MatchString(out) {
			t.Errorf("no count line for %s:\n%s", table, out)
		}
	}
	if strings.Contains(out+errs, password) {
		t.Error("the store's password was printed")
	}

	// The same store, through a config that names the PostgreSQL one.
	e.write("store.pw", password+"\n")
	e.config = e.migrateConfig("postgres.toml", fmt.Sprintf("driver = \"postgres\"\ndsn = %q\npassword_file = \"store.pw\"", dsn))
	after := views()
	for what, b := range before {
		a := after[what]
		if strings.HasPrefix(what, "runs") || strings.HasPrefix(what, "domain") {
			// Run and settings times: the microseconds PostgreSQL keeps.
			b, a = microTimes(t, b), microTimes(t, a)
		}
		if a != b {
			t.Errorf("%s differs after the move:\nsqlite:\n%s\npostgres:\n%s", what, b, a)
		}
	}

	// A sync against the new store: the sealed password opens with the
	// same key, and there is nothing to change.
	out = e.ok("sync", "--domain", D)
	if !strings.Contains(out, "created 0, updated 0, deleted 0, memberships added 0, removed 0") || strings.Contains(out, " 0 entries read") {
		t.Errorf("sync against the migrated store: %s", out)
	}
	if got := e.ok("mailbox", "list", "--domain", D, "--json"); got != before["mailbox list --domain "+D+" --json"] {
		t.Errorf("the sync changed the mailboxes:\n%s", got)
	}
	var runs []struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.ok("runs", "--domain", D, "--json")), &runs); err != nil || len(runs) != 4 {
		t.Fatalf("runs after the sync: %d, %v", len(runs), err)
	}
	if runs[0].ID <= runs[1].ID {
		t.Errorf("the new run's id %d is not above the copied %d", runs[0].ID, runs[1].ID)
	}
	out = e.ok("mailbox", "add", "--domain", D, "new@example.com")
	m := regexp.MustCompile(`\(id (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("mailbox add: %s", out)
	}
	if id, _ := strconv.ParseInt(m[1], 10, 64); id <= highest {
		t.Errorf("a new mailbox got id %d, not above the highest copied %d", id, highest)
	}

	// A second migrate into the same, now full, target is refused and
	// writes nothing.
	state := views()
	code, out, errs = e.main("store", "migrate", "--from", "sqlite:"+dbPath, "--to", "postgres:"+dsn, "--to-password-file", pwFile)
	t.Logf("second migrate: exit %d\nstdout: %sstderr: %s", code, out, errs)
	if code != 1 || !strings.Contains(errs, "the target store is not empty") || !strings.Contains(errs, "nothing was written") {
		t.Errorf("second migrate: exit %d, want 1 with the target not empty\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if now := views(); fmt.Sprint(now) != fmt.Sprint(state) {
		t.Error("the refused migrate changed the target")
	}

	// --json, with the password in the DSN: it is masked.
	code, out, errs = e.main("store", "migrate", "--from", "sqlite:"+dbPath, "--to", pg.NewSchema(t), "--json")
	if code != 0 {
		t.Fatalf("store migrate --json: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	t.Logf("store migrate --json:\n%s", out)
	var res struct {
		From   string `json:"from"`
		To     string `json:"to"`
		Match  bool   `json:"match"`
		Counts []struct {
			Table  string `json:"table"`
			Source int64  `json:"source"`
			Target int64  `json:"target"`
		} `json:"counts"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("store migrate --json: %v\n%s", err, out)
	}
	if !res.Match || len(res.Counts) != 11 || res.From != "sqlite:"+dbPath || !strings.Contains(res.To, "xxxxx") {
		t.Errorf("store migrate --json: %s", out)
	}
	for _, c := range res.Counts {
		if c.Source != c.Target || c.Source == 0 {
			t.Errorf("count of %s: %d, %d", c.Table, c.Source, c.Target)
		}
	}
	if strings.Contains(out+errs, password) {
		t.Error("the store's password was printed")
	}
}

// TestStoreMigrateUsage: a wrong --from or --to is a usage error (exit 2)
// and touches nothing; a source that is no store, or of an older schema, is
// exit 1 with what to do; help is shown for the group and the command.
func TestStoreMigrateUsage(t *testing.T) {
	t.Setenv("DIRSYNC_CONFIG", filepath.Join(t.TempDir(), "none.toml")) // the command reads no config
	dir := t.TempDir()
	e := &env{t: t, dir: dir}
	db := filepath.Join(dir, "dirsync.db")
	const to = "postgres:postgres://dirsync@127.0.0.1:1/dirsync"
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --from", []string{"--to", to}, 2, "--from is required"},
		{"no --to", []string{"--from", "sqlite:" + db}, 2, "--to is required"},
		{"--from without driver", []string{"--from", db, "--to", to}, 2, "want sqlite:PATH"},
		{"--from of another driver", []string{"--from", "postgres:host=x password=hunter2", "--to", to}, 2, "want sqlite:PATH"},
		{"--from empty path", []string{"--from", "sqlite:", "--to", to}, 2, "want sqlite:PATH"},
		{"--to of another driver", []string{"--from", "sqlite:" + db, "--to", "mysql://x"}, 2, "want postgres:DSN"},
		{"--to empty DSN", []string{"--from", "sqlite:" + db, "--to", "postgres:"}, 2, "want postgres:DSN"},
		{"--to bad DSN", []string{"--from", "sqlite:" + db, "--to", "postgres:postgres://u:hunter2@h:notaport/db"}, 2, "invalid DSN"},
		{"unreadable password file", []string{"--from", "sqlite:" + db, "--to", to, "--to-password-file", filepath.Join(dir, "none.pw")}, 2, "--to-password-file"},
		{"argument", []string{"--from", "sqlite:" + db, "--to", to, "extra"}, 2, "want no arguments"},
		{"no store at --from", []string{"--from", "sqlite:" + db, "--to", to}, 1, "no store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			code, out, errs := e.main(append([]string{"store", "migrate"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tc.code, tc.want, out, errs)
			}
			if strings.Contains(out+errs, "hunter2") {
				t.Errorf("a password was printed: %s", errs)
			}
		})
	}
	e.t = t
	if _, err := os.Stat(db); err == nil {
		t.Error("a source store was created")
	}

	// A store of an older schema: refused, with how to upgrade it, and left
	// as it is.
	v1, err := os.ReadFile(filepath.Join(repoRoot(t), "host", "store", "sqlite", "testdata", "v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := e.write("old.db", string(v1))
	code, out, errs := e.main("store", "migrate", "--from", "sqlite:"+old, "--to", to)
	if code != 1 || !strings.Contains(errs, "has schema version 1") || !strings.Contains(errs, "upgrades it") {
		t.Errorf("older schema: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if now, _ := os.ReadFile(old); string(now) != string(v1) {
		t.Error("the older store was changed")
	}

	for _, args := range [][]string{{"help", "store", "migrate"}, {"store", "migrate", "--help"}, {"store", "help", "migrate"}} {
		code, out, errs := e.main(args...)
		if code != 0 || !strings.HasPrefix(out, "usage: dirsync store migrate --from sqlite:PATH --to postgres:DSN") ||
			!strings.Contains(out, "--to-password-file F") || !strings.Contains(out, "--json") {
			t.Errorf("dirsync %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
		}
	}
	for _, args := range [][]string{{"help", "store"}, {"store", "--help"}} {
		code, out, _ := e.main(args...)
		if code != 0 || !strings.Contains(out, "subcommands:") || !strings.Contains(out, "dirsync store migrate --from") {
			t.Errorf("dirsync %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	if code, _, errs := e.main("store"); code != 2 || !strings.Contains(errs, "store: no subcommand given") {
		t.Errorf("store: exit %d: %s", code, errs)
	}
	if code, _, errs := e.main("store", "bogus"); code != 2 || !strings.Contains(errs, `unknown subcommand "bogus"`) {
		t.Errorf("store bogus: exit %d: %s", code, errs)
	}
	if code, out, _ := e.main("help"); code != 0 || !strings.Contains(out, "store   migrate --from sqlite:PATH --to postgres:DSN") {
		t.Errorf("the usage lacks store migrate:\n%s", out)
	}
}
