package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// Secrets that must never show in an error.
const (
	filePassword = "s3cret-Pa55"    // testdata/valid/secrets/reader.pw
	envPassword  = "env-Pa55w0rd"   // set in $DIRSYNC_TEST_PW
	badPassword  = "hunter2-Secret" // pasted into a config by mistake
	// storePassword is in testdata/postgres/secrets/store.pw.
	storePassword = "st0re-Pa55"
)

func TestLoadValid(t *testing.T) {
	path := filepath.Join("testdata", "valid", "dirsync.toml")
	dir := filepath.Dir(path)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Path != path {
		t.Errorf("Path = %q, want %q", cfg.Path, path)
	}
	if cfg.Store.Driver != "sqlite" {
		t.Errorf("Store.Driver = %q", cfg.Store.Driver)
	}
	if want := filepath.Join(dir, "var", "dirsync.db"); cfg.Store.DSN != want {
		t.Errorf("Store.DSN = %q, want %q (relative to the config)", cfg.Store.DSN, want)
	}
	if cfg.Plugins.CacheDir != "" {
		t.Errorf("Plugins.CacheDir = %q, want empty", cfg.Plugins.CacheDir)
	}
	if len(cfg.Domains) != 2 {
		t.Fatalf("%d domains, want 2", len(cfg.Domains))
	}

	d := cfg.Domain("example.com")
	if d == nil {
		t.Fatal(`Domain("example.com") = nil (names are lowercased)`)
	}
	if !d.Sync || d.Policy != "standard" {
		t.Errorf("domain 1: sync=%v policy=%q", d.Sync, d.Policy)
	}
	if got := strings.Join(d.AliasDomains, ","); got != "example.org,example.net" {
		t.Errorf("AliasDomains = %q", got)
	}
	l := d.LDAP
	if got := strings.Join(l.URLs, ","); got != "ldap://127.0.0.1:3890,ldaps://ldap2.example.com" {
		t.Errorf("URLs = %q", got)
	}
	if l.BindDN != "cn=reader,dc=example,dc=com" || l.BaseDN != "dc=example,dc=com" || l.StartTLS || l.InsecureSkipVerify {
		t.Errorf("LDAP = %+v", l)
	}
	if !strings.HasPrefix(l.Filter, "(|(sAMAccountType=805306368)") {
		t.Errorf("Filter = %q", l.Filter)
	}
	if l.PageSize != DefaultPageSize || l.Timeout.Duration != DefaultLDAPTimeout {
		t.Errorf("defaults: page_size=%d timeout=%v, want %d %v", l.PageSize, l.Timeout.Duration, DefaultPageSize, DefaultLDAPTimeout)
	}
	if d.Safety != (Safety{MaxDeletes: 50, MaxDeletePercent: 2.5, PercentFloor: 3}) {
		t.Errorf("Safety = %+v, want the [domain.safety] values", d.Safety)
	}

	d2 := cfg.Domain("second.test")
	if d2 == nil {
		t.Fatal(`Domain("second.test") = nil`)
	}
	if d2.Sync {
		t.Error("domain 2: sync defaults to false")
	}
	if len(d2.LDAP.URLs) != 2 || d2.LDAP.PageSize != 200 || d2.LDAP.Timeout.Duration != 30*time.Second {
		t.Errorf("domain 2 LDAP = %+v", d2.LDAP)
	}
	if want := (Safety{MaxDeletes: 500, MaxDeletePercent: 10, PercentFloor: 10}); d2.Safety != want {
		t.Errorf("default Safety = %+v, want %+v", d2.Safety, want)
	}
	if cfg.Domain("nosuch.test") != nil {
		t.Error(`Domain("nosuch.test") != nil`)
	}

	m := cfg.Manifest
	if m == nil {
		t.Fatal("Manifest = nil")
	}
	if want := filepath.Join(dir, "plugin.toml"); m.Path != want {
		t.Errorf("Manifest.Path = %q, want %q", m.Path, want)
	}
	if len(m.Policies) != 3 {
		t.Fatalf("%d policies, want 3", len(m.Policies))
	}
	std := m.Policy("standard")
	if std == nil || std.Runtime != "wasm" || std.MemoryLimitMB != 256 || std.Timeout.Duration != 60*time.Second {
		t.Fatalf("standard = %+v", std)
	}
	if want := filepath.Join(dir, "plugins", "standard", "standard.wasm"); std.Path != want {
		t.Errorf("standard.Path = %q, want %q (relative to the manifest)", std.Path, want)
	}
	// [policy.config] is the plugin's: kept whole, not refused.
	if v, ok := std.Config["nested_groups"]; !ok || v != false {
		t.Errorf("Config[nested_groups] = %v, %v", v, ok)
	}
	if _, ok := std.Config["anything_the_plugin_wants"]; !ok {
		t.Error("Config[anything_the_plugin_wants] missing")
	}
	if mp, ok := std.Config["mapping"].(map[string]any); !ok || mp["mail"] != "userPrincipalName" {
		t.Errorf("Config[mapping] = %#v", std.Config["mapping"])
	}
	legacy := m.Policy("legacy")
	if legacy == nil || legacy.Runtime != "process" || legacy.MemoryLimitMB != 64 || legacy.Timeout.Duration != 2*time.Minute {
		t.Fatalf("legacy = %+v", legacy)
	}
	if want := filepath.Join(dir, "bin", "legacy-policy"); legacy.Path != want {
		t.Errorf("legacy.Path = %q, want %q", legacy.Path, want)
	}
	plain := m.Policy("plain")
	if plain == nil || plain.MemoryLimitMB != DefaultMemoryLimitMB || plain.Timeout.Duration != DefaultPolicyTimeout || plain.Path != "" {
		t.Errorf("plain (defaults) = %+v", plain)
	}
	if m.Policy("nosuch") != nil {
		t.Error(`Policy("nosuch") != nil`)
	}
}

// TestLoadRelativeToFolder loads the same config from another working
// directory: relative paths follow the file, not the process.
func TestLoadRelativeToFolder(t *testing.T) {
	abs, err := filepath.Abs(filepath.Join("testdata", "valid", "dirsync.toml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	cfg, err := Load(abs)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(abs)
	if want := filepath.Join(dir, "var", "dirsync.db"); cfg.Store.DSN != want {
		t.Errorf("DSN = %q, want %q", cfg.Store.DSN, want)
	}
	if want := filepath.Join(dir, "plugins", "standard", "standard.wasm"); cfg.Manifest.Policy("standard").Path != want {
		t.Errorf("policy path = %q, want %q", cfg.Manifest.Policy("standard").Path, want)
	}
	if want := filepath.Join(dir, "secrets", "reader.pw"); cfg.Rel(cfg.Domain("example.com").LDAP.PasswordFile) != want {
		t.Errorf("Rel(password_file) = %q, want %q", cfg.Rel(cfg.Domain("example.com").LDAP.PasswordFile), want)
	}
	pw, err := cfg.Password(cfg.Domain("example.com"))
	if err != nil || pw != filePassword {
		t.Errorf("Password = %q, %v", pw, err)
	}
	// Absolute paths are kept.
	if got := cfg.Rel("/etc/ca.pem"); got != "/etc/ca.pem" {
		t.Errorf("Rel(abs) = %q", got)
	}
}

func TestPassword(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "valid", "dirsync.toml"))
	if err != nil {
		t.Fatal(err)
	}
	fromFile, fromEnv := cfg.Domain("example.com"), cfg.Domain("second.test")

	pw, err := cfg.Password(fromFile)
	if err != nil || pw != filePassword {
		t.Errorf("from file: %q, %v; want %q (trailing newline trimmed)", pw, err, filePassword)
	}

	t.Setenv("DIRSYNC_TEST_PW", envPassword)
	pw, err = cfg.Password(fromEnv)
	if err != nil || pw != envPassword {
		t.Errorf("from env: %q, %v; want %q", pw, err, envPassword)
	}

	os.Unsetenv("DIRSYNC_TEST_PW") // t.Setenv restores it after the test
	_, err = cfg.Password(fromEnv)
	if err == nil || !strings.Contains(err.Error(), "DIRSYNC_TEST_PW") || !strings.Contains(err.Error(), "second.test") {
		t.Errorf("unset variable: err = %v, want it to name DIRSYNC_TEST_PW and the domain", err)
	}

	// A missing password file names the domain and the file.
	d := *fromFile
	d.LDAP.PasswordFile = "secrets/nope.pw"
	_, err = cfg.Password(&d)
	if err == nil || !strings.Contains(err.Error(), "nope.pw") || strings.Contains(err.Error(), "\n") {
		t.Errorf("missing file: err = %v", err)
	}

	// No password source: anonymous.
	d = *fromFile
	d.LDAP.PasswordFile = ""
	if pw, err := cfg.Password(&d); pw != "" || err != nil {
		t.Errorf("no source: %q, %v", pw, err)
	}

	// CRLF and several trailing newlines are trimmed; inner ones are kept.
	dir := t.TempDir()
	for _, body := range []string{"pw\r\n", "pw\n\n", "pw"} {
		if err := os.WriteFile(filepath.Join(dir, "p"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c := &Config{Path: filepath.Join(dir, "dirsync.toml")}
		got, err := c.Password(&Domain{Name: "x", LDAP: LDAP{PasswordFile: "p"}})
		if err != nil || got != "pw" {
			t.Errorf("file %q: %q, %v", body, got, err)
		}
	}
}

// A postgres store keeps its DSN as written (no path to resolve) and its
// password apart from it.
func TestLoadPostgres(t *testing.T) {
	path := filepath.Join("testdata", "postgres", "dirsync.toml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Store{
		Driver:       DriverPostgres,
		DSN:          "postgres://dirsync@db.example.com:5433/dirsync?sslmode=verify-full",
		PasswordFile: "secrets/store.pw",
	}
	if cfg.Store != want {
		t.Errorf("Store = %+v, want %+v", cfg.Store, want)
	}
	if pw, err := cfg.StorePassword(); err != nil || pw != storePassword {
		t.Errorf("StorePassword = %q, %v; want %q", pw, err, storePassword)
	}
}

func TestStorePassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("crlf.pw", "pw\r\n")
	write("newlines.pw", "pw\n\n")
	write("bare.pw", "pw")
	write("inner.pw", "p\nw\n")
	t.Setenv("DIRSYNC_TEST_STORE_PW", envPassword)
	t.Setenv("DIRSYNC_TEST_STORE_UNSET", "")
	os.Unsetenv("DIRSYNC_TEST_STORE_UNSET") // t.Setenv restores it after the test

	tests := []struct {
		name  string
		store Store
		want  string
		// errs are parts of the error; none: no error.
		errs []string
	}{
		{"NoPassword", Store{Driver: DriverPostgres}, "", nil},
		{"FileCRLF", Store{Driver: DriverPostgres, PasswordFile: "crlf.pw"}, "pw", nil},
		{"FileNewlines", Store{Driver: DriverPostgres, PasswordFile: "newlines.pw"}, "pw", nil},
		{"FileBare", Store{Driver: DriverPostgres, PasswordFile: "bare.pw"}, "pw", nil},
		{"FileInnerNewlineKept", Store{Driver: DriverPostgres, PasswordFile: "inner.pw"}, "p\nw", nil},
		{"FileAbsolute", Store{Driver: DriverPostgres, PasswordFile: filepath.Join(dir, "bare.pw")}, "pw", nil},
		{"FileMissing", Store{Driver: DriverPostgres, PasswordFile: "nope.pw"}, "", []string{"store", "password_file", "nope.pw"}},
		{"Env", Store{Driver: DriverPostgres, PasswordEnv: "DIRSYNC_TEST_STORE_PW"}, envPassword, nil},
		{"EnvUnset", Store{Driver: DriverPostgres, PasswordEnv: "DIRSYNC_TEST_STORE_UNSET"}, "", []string{"store", "password_env", "DIRSYNC_TEST_STORE_UNSET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Path: filepath.Join(dir, "dirsync.toml"), Store: tt.store}
			got, err := c.StorePassword()
			if len(tt.errs) == 0 {
				if err != nil || got != tt.want {
					t.Errorf("StorePassword = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("StorePassword = %q, want an error", got)
			}
			for _, part := range tt.errs {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not name %s", err, part)
				}
			}
			if strings.ContainsAny(err.Error(), "\r\n") || strings.Contains(err.Error(), envPassword) {
				t.Errorf("error %q is not one line, or shows a password", err)
			}
		})
	}
}

// marker is the comment a bad testdata file puts on the line its error
// must name.
const marker = "# <- error"

func markedLine(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, marker) {
			if line != 0 {
				t.Fatalf("%s: two %q markers", path, marker)
			}
			line = i + 1
		}
	}
	return line
}

func TestLoadErrors(t *testing.T) {
	bad := func(name string) string { return filepath.Join("testdata", "bad", name+".toml") }
	man := func(name string) string { return filepath.Join("testdata", "bad", "manifests", name+".toml") }
	tests := []struct {
		name string
		load string // the dirsync.toml, or "" to load errFile as a manifest
		// errFile is the file the error must name (default: load); its
		// marked line is the line the error must name (0 if unmarked).
		errFile string
		key     string
		msg     string // a part of the message
	}{
		{name: "unknown top-level key", load: bad("unknown_top_key"), key: "verbose", msg: "unknown key"},
		{name: "unknown key in second [domain.ldap]", load: bad("unknown_ldap_key"), key: "domain.ldap.bind_password", msg: "unknown key"},
		{name: "unknown key in second [[domain]]", load: bad("unknown_domain_key"), key: "domain.synch", msg: "unknown key"},
		{name: "unknown table", load: bad("unknown_table"), key: "logging", msg: "unknown key"},
		{name: "unknown sub table", load: bad("unknown_subtable"), key: "domain.tls", msg: "unknown key"},
		{name: "unknown table of dotted keys", load: bad("unknown_dotted_table"), key: "plugins.logging.level", msg: "unknown key"},
		{name: "sync is a string", load: bad("wrong_type_sync"), key: "domain.sync", msg: "incompatible types"},
		{name: "urls is a string", load: bad("wrong_type_urls"), key: "domain.ldap.urls", msg: "incompatible types"},
		{name: "page_size is a string", load: bad("wrong_type_page_size"), key: "domain.ldap.page_size", msg: "incompatible types"},
		{name: "invalid duration", load: bad("invalid_duration"), key: "domain.ldap.timeout", msg: `invalid duration "soon"`},
		{name: "negative duration", load: bad("negative_duration"), key: "domain.ldap.timeout", msg: "must be positive"},
		{name: "negative page size", load: bad("negative_page_size"), key: "domain.ldap.page_size", msg: "must be positive"},
		{name: "missing store.dsn", load: bad("missing_dsn"), key: "store.dsn", msg: "required key is missing"},
		{name: "missing [store]", load: bad("missing_store"), key: "store.dsn", msg: "required key is missing"},
		{name: "missing plugins.manifest", load: bad("missing_manifest_key"), key: "plugins.manifest", msg: "required key is missing"},
		{name: "missing domain.name", load: bad("missing_domain_name"), key: "domain.name", msg: "required key is missing"},
		{name: "missing domain.policy", load: bad("missing_domain_policy"), key: "domain.policy", msg: "required key is missing"},
		{name: "missing domain.ldap.urls", load: bad("missing_ldap_urls"), key: "domain.ldap.urls", msg: "required key is missing"},
		{name: "missing [domain.ldap]", load: bad("missing_ldap_table"), key: "domain.ldap.urls", msg: "required key is missing"},
		{name: "missing domain.ldap.base_dn", load: bad("missing_base_dn"), key: "domain.ldap.base_dn", msg: "required key is missing"},
		{name: "missing base_dn, ldap as dotted keys", load: bad("missing_base_dn_dotted"), key: "domain.ldap.base_dn", msg: "required key is missing"},
		{name: "non-ldap URL", load: bad("non_ldap_url"), key: "domain.ldap.urls", msg: `"https://second.test" is not an ldap:// or ldaps:// URL`},
		{name: "duplicated domain", load: bad("duplicate_domain"), key: "domain.name", msg: `domain "example.com" is declared twice`},
		{name: "password_file and password_env", load: bad("both_passwords"), key: "domain.ldap.password_env", msg: "not both"},
		{name: "password pasted into password_env", load: bad("password_in_env_key"), key: "domain.ldap.password_env", msg: "must name an environment variable"},
		{name: "undeclared policy", load: bad("undeclared_policy"), key: "domain.policy", msg: `names policy "nosuch", which ` + filepath.Join("testdata", "bad", "plugin.toml") + " does not declare"},
		{name: "unknown store driver", load: bad("bad_driver"), key: "store.driver", msg: `unknown driver "mysql" (want "sqlite" or "postgres")`},
		{name: "store password_file and password_env", load: bad("store_both_passwords"), key: "store.password_env", msg: "not both"},
		{name: "password pasted into store.password_env", load: bad("store_password_in_env_key"), key: "store.password_env", msg: "must name an environment variable"},
		{name: "store password for sqlite", load: bad("store_password_sqlite"), key: "store.password_file", msg: `only driver "postgres" takes a password`},
		{name: "safety percent over 100", load: bad("safety_percent"), key: "domain.safety.max_delete_percent", msg: "between 0 and 100"},
		{name: "safety negative", load: bad("safety_negative"), key: "domain.safety.max_deletes", msg: "must be 0 or more"},
		{name: "syntax error in a value", load: bad("syntax_error_value"), key: "domain.sync", msg: `expected value but found "tru"`},
		{name: "syntax error, no '='", load: bad("syntax_error_no_equals"), key: "", msg: "expected '.' or '='"},
		{name: "manifest not found", load: bad("manifest_not_found"), key: "plugins.manifest", msg: filepath.Join("testdata", "bad", "nope", "plugin.toml") + ": no such file or directory"},
		{name: "manifest error through Load", load: bad("manifest_unknown_runtime"), errFile: man("unknown_runtime"), key: "policy.runtime", msg: `unknown runtime "docker"`},

		{name: "manifest: unknown runtime", errFile: man("unknown_runtime"), key: "policy.runtime", msg: `policy "legacy": unknown runtime "docker"`},
		{name: "manifest: wasm without path", errFile: man("wasm_without_path"), key: "policy.path", msg: `policy "legacy": required key is missing for runtime "wasm"`},
		{name: "manifest: missing runtime", errFile: man("missing_runtime"), key: "policy.runtime", msg: "required key is missing"},
		{name: "manifest: missing name", errFile: man("missing_name"), key: "policy.name", msg: "required key is missing"},
		{name: "manifest: duplicated policy", errFile: man("duplicate_policy"), key: "policy.name", msg: `policy "standard" is declared twice`},
		{name: "manifest: memory_limit_mb is a string", errFile: man("memory_big"), key: "policy.memory_limit_mb", msg: "incompatible types"},
		{name: "manifest: memory_limit_mb negative", errFile: man("memory_negative"), key: "policy.memory_limit_mb", msg: "out of range"},
		{name: "manifest: invalid duration", errFile: man("invalid_duration"), key: "policy.timeout", msg: `invalid duration "1 minute"`},
		{name: "manifest: unknown key next to config", errFile: man("unknown_key"), key: "policy.config_file", msg: "unknown key"},
		{name: "manifest: unknown table named like config", errFile: man("unknown_table_like_config"), key: "policy.configs", msg: "unknown key"},
		{name: "manifest: syntax error", errFile: man("syntax_error"), msg: "expected"},
	}
	t.Setenv("DIRSYNC_TEST_PW", envPassword)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.errFile
			if file == "" {
				file = tt.load
			}
			var err error
			if tt.load != "" {
				_, err = Load(tt.load)
			} else {
				_, err = LoadManifest(file)
			}
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %q is not a *config.Error", err, err)
			}
			line := markedLine(t, file)
			if ce.File != file || ce.Line != line || ce.Key != tt.key {
				t.Errorf("error %q\nnames file=%q line=%d key=%q\nwant  file=%q line=%d key=%q", err, ce.File, ce.Line, ce.Key, file, line, tt.key)
			}
			if !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", ce.Msg, tt.msg)
			}
			want := file
			if line > 0 {
				want += fmt.Sprintf(":%d", line)
			}
			if tt.key != "" {
				want += fmt.Sprintf(": key %q", tt.key)
			}
			if s := err.Error(); !strings.HasPrefix(s, want+": ") {
				t.Errorf("error %q does not start with %q", s, want+": ")
			}
			if s := err.Error(); strings.ContainsAny(s, "\r\n") {
				t.Errorf("error is not one line: %q", s)
			}
			for _, secret := range []string{filePassword, envPassword, badPassword, storePassword} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a password: %q", err)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join("testdata", "nope.toml")
	_, err := Load(path)
	var ce *Error
	if !errors.As(err, &ce) || ce.File != path || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Load(missing) = %v", err)
	}
	_, err = LoadManifest(path)
	if !errors.As(err, &ce) || ce.File != path {
		t.Errorf("LoadManifest(missing) = %v", err)
	}
}

func TestErrorString(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.toml", Line: 3, Key: "store.dsn", Msg: "m"}, `a.toml:3: key "store.dsn": m`},
		{Error{File: "a.toml", Key: "store.dsn", Msg: "m"}, `a.toml: key "store.dsn": m`},
		{Error{File: "a.toml", Line: 3, Msg: "m"}, `a.toml:3: m`},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
}

// TestFindLine covers the hand-written locators on the shapes TOML allows.
func TestFindLine(t *testing.T) {
	data := []byte(`top = 1                       # 1
[store]                       # 2
dsn = "x"                     # 3
[[domain]]                    # 4
name = "a"                    # 5
  [domain.ldap]               # 6
  urls = [                    # 7
    "ldap://a",               # 8
    "[not.a.header]",         # 9
  ]                           # 10
  filter = "(a=b)"            # 11
[[ domain ]]                  # 12
"name" = "b"                  # 13
ldap.urls = ["ldap://b"]      # 14
notes = """                   # 15
[domain.ldap]
base_dn = "fake"
"""                           # 18
  [ "domain" . 'safety' ]     # 19
  max_deletes = 3             # 20
`)
	for _, tt := range []struct {
		path string
		want int
	}{
		{"top", 1},
		{"store", 2},
		{"store.dsn", 3},
		{"store.driver", 2}, // missing: its table
		{"domain[0]", 4},
		{"domain[0].name", 5},
		{"domain[0].ldap", 6},
		{"domain[0].ldap.urls", 7},
		{"domain[0].ldap.filter", 11},
		{"domain[0].ldap.base_dn", 6},
		{"domain[0].policy", 4},
		{"domain[1]", 12},
		{"domain[1].name", 13},
		{"domain[1].ldap", 14},
		{"domain[1].ldap.urls", 14},
		{"domain[1].ldap.base_dn", 14},
		{"domain[1].notes", 15},
		{"domain[1].safety", 19},
		{"domain[1].safety.max_deletes", 20},
		{"domain[2]", 0},
		{"plugins.manifest", 0},
	} {
		if got := findLine(data, tt.path); got != tt.want {
			t.Errorf("findLine(%q) = %d, want %d", tt.path, got, tt.want)
		}
	}
	for _, tt := range []struct {
		key  toml.Key
		want int
	}{
		{toml.Key{"top"}, 1},
		{toml.Key{"domain", "ldap", "filter"}, 11},
		{toml.Key{"domain", "ldap", "base_dn"}, 0}, // only inside a string
		{toml.Key{"domain", "safety", "max_deletes"}, 20},
		{toml.Key{"domain", "safety"}, 19},
		{toml.Key{"not", "a", "header"}, 0},
	} {
		if got := findKeyLine(data, tt.key); got != tt.want {
			t.Errorf("findKeyLine(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

// TestSafetyZeroIsStrict protects S2's settings: a number written as 0
// keeps 0 (the strictest value), however the table is written; only a key
// left out takes the default.
func TestSafetyZeroIsStrict(t *testing.T) {
	const head = `
[store]
dsn = "x.db"
[plugins]
manifest = "plugin.toml"
[[domain]]
name = "example.com"
policy = "standard"
  [domain.ldap]
  urls = ["ldap://127.0.0.1:3890"]
  base_dn = "dc=example,dc=com"
`
	tests := []struct {
		name   string
		safety string
		want   Safety
	}{
		{"left out: defaults", "", Safety{DefaultMaxDeletes, DefaultMaxDeletePercent, DefaultPercentFloor}},
		{"all three 0", "[domain.safety]\nmax_deletes = 0\nmax_delete_percent = 0\npercent_floor = 0\n", Safety{}},
		{"max_deletes 0 alone", "[domain.safety]\nmax_deletes = 0\n", Safety{0, DefaultMaxDeletePercent, DefaultPercentFloor}},
		{"inline table", "safety = { percent_floor = 0 }\n", Safety{DefaultMaxDeletes, DefaultMaxDeletePercent, 0}},
		{"dotted keys", "safety.max_delete_percent = 0\n", Safety{DefaultMaxDeletes, 0, DefaultPercentFloor}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			text := head
			if strings.HasPrefix(tc.safety, "[") {
				text += tc.safety
			} else {
				// Keys of the [[domain]] table itself go before [domain.ldap].
				text = strings.Replace(text, "  [domain.ldap]", tc.safety+"  [domain.ldap]", 1)
			}
			os.WriteFile(filepath.Join(dir, "dirsync.toml"), []byte(text), 0o644)
			os.WriteFile(filepath.Join(dir, "plugin.toml"), []byte("[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"), 0o644)
			cfg, err := Load(filepath.Join(dir, "dirsync.toml"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Domains[0].Safety; got != tc.want {
				t.Errorf("Safety = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestServeKeys checks the keys of dirsync serve: defaults, days in
// durations, and tokens that must be hashes, never tokens.
func TestServeKeys(t *testing.T) {
	const head = "[store]\ndsn = \"x.db\"\n[plugins]\nmanifest = \"plugin.toml\"\n"
	const domain = "[[domain]]\nname = \"example.com\"\npolicy = \"standard\"\n  [domain.ldap]\n  urls = [\"ldap://127.0.0.1:3890\"]\n  base_dn = \"dc=example,dc=com\"\n"
	hash := strings.Repeat("ab", 32)
	tests := []struct {
		name, text string
		key        string // "" = loads
		check      func(*testing.T, *Config)
	}{
		{"defaults", head + domain, "", func(t *testing.T, c *Config) {
			if c.Serve.MaxConcurrentRuns != 2 || c.Serve.KeepRuns.Duration != 90*24*time.Hour || c.API.Listen != "127.0.0.1:8425" ||
				c.Domains[0].Interval.Duration != time.Hour || c.Serve.LeaseTTL.Duration != 30*time.Second {
				t.Errorf("defaults: serve %+v api %+v interval %v", c.Serve, c.API, c.Domains[0].Interval)
			}
		}},
		{"days and a token", head + "[serve]\nkeep_runs = \"7d\"\nmax_concurrent_runs = 8\n[[api.token]]\nname = \"panel\"\nsha256 = \"" + strings.ToUpper(hash) + "\"\nrole = \"admin\"\ndomains = [\"Example.com\"]\n" + domain + "interval = \"2s\"\n",
			"", func(t *testing.T, c *Config) {
				if c.Serve.KeepRuns.Duration != 7*24*time.Hour || c.Serve.MaxConcurrentRuns != 8 {
					t.Errorf("serve = %+v", c.Serve)
				}
				if tok := c.API.Tokens[0]; tok.SHA256 != hash || tok.Domains[0] != "example.com" {
					t.Errorf("token = %+v", tok)
				}
			}},
		{"a token instead of its hash", head + "[[api.token]]\nname = \"panel\"\nsha256 = \"s3cret-token\"\nrole = \"admin\"\ndomains = [\"*\"]\n", "api.token.sha256", nil},
		{"unknown role", head + "[[api.token]]\nname = \"panel\"\nsha256 = \"" + hash + "\"\nrole = \"root\"\ndomains = [\"*\"]\n", "api.token.role", nil},
		{"no domains", head + "[[api.token]]\nname = \"panel\"\nsha256 = \"" + hash + "\"\nrole = \"viewer\"\n", "api.token.domains", nil},
		{"cert without key", head + "[api]\ncert_file = \"c.pem\"\n", "api.cert_file", nil},
		{"interval under a second", head + domain + "interval = \"10ms\"\n", "domain.interval", nil},
		{"negative concurrency", head + "[serve]\nmax_concurrent_runs = -1\n", "serve.max_concurrent_runs", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			text := tc.text
			if i := strings.Index(text, "interval = "); i > 0 && strings.Contains(text, "[domain.ldap]") && i > strings.Index(text, "[domain.ldap]") {
				// interval belongs to [[domain]], before its [domain.ldap].
				line := text[i:]
				text = strings.Replace(text[:i], "  [domain.ldap]", line+"  [domain.ldap]", 1)
			}
			os.WriteFile(filepath.Join(dir, "dirsync.toml"), []byte(text), 0o644)
			os.WriteFile(filepath.Join(dir, "plugin.toml"), []byte("[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"), 0o644)
			cfg, err := Load(filepath.Join(dir, "dirsync.toml"))
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, cfg)
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tc.key || ce.Line == 0 {
				t.Fatalf("err = %v, want an error naming key %s and its line", err, tc.key)
			}
			if strings.Contains(err.Error(), "s3cret-token") {
				t.Errorf("the error echoes what may be a token: %v", err)
			}
		})
	}
}

// TestDomainCheck checks a domain built in code or read from the store:
// the same defaults and refusals as a [[domain]] of dirsync.toml, keys
// named, zero safety numbers kept as the strictest.
func TestDomainCheck(t *testing.T) {
	good := func() Domain {
		return Domain{Name: "Example.COM", Policy: "standard", AliasDomains: []string{"Example.ORG"},
			LDAP: LDAP{URLs: []string{"ldap://127.0.0.1:3890"}, BaseDN: "dc=example,dc=com"}}
	}
	d := good()
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	if d.Name != "example.com" || d.AliasDomains[0] != "example.org" || d.Interval.Duration != DefaultInterval ||
		d.LDAP.PageSize != DefaultPageSize || d.LDAP.MaxEntries != DefaultMaxEntries || d.Safety != (Safety{}) {
		t.Errorf("normalized = %+v", d)
	}
	for _, tc := range []struct {
		key  string
		edit func(*Domain)
	}{
		{"domain.name", func(d *Domain) { d.Name = "" }},
		{"domain.policy", func(d *Domain) { d.Policy = "" }},
		{"domain.ldap.urls", func(d *Domain) { d.LDAP.URLs = nil }},
		{"domain.ldap.urls", func(d *Domain) { d.LDAP.URLs = []string{"http://x"} }},
		{"domain.ldap.base_dn", func(d *Domain) { d.LDAP.BaseDN = "" }},
		{"domain.interval", func(d *Domain) { d.Interval.Duration = time.Millisecond }},
		{"domain.safety.max_deletes", func(d *Domain) { d.Safety.MaxDeletes = -1 }},
		{"domain.ldap.password_env", func(d *Domain) { d.LDAP.PasswordEnv = "not a name" }},
	} {
		d := good()
		tc.edit(&d)
		var ce *Error
		if err := d.Check(); !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("Check = %v, want an error naming %s", err, tc.key)
		}
	}
}
