// Package config reads dirsync.toml and the policy manifest plugin.toml.
//
// Reading is strict: an unknown key, a value of the wrong type or a missing
// required key is an error that names the file, the key and its line.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is a parsed dirsync.toml.
type Config struct {
	// Path is the file the config was read from; relative paths in it are
	// resolved against its folder.
	Path    string   `toml:"-"`
	Store   Store    `toml:"store"`
	Plugins Plugins  `toml:"plugins"`
	Serve   Serve    `toml:"serve"`
	API     API      `toml:"api"`
	Secrets Secrets  `toml:"secrets"`
	Domains []Domain `toml:"domain"`
	// Manifest is the policy manifest named by [plugins] manifest.
	Manifest *Manifest `toml:"-"`
}

// Store selects the mailbox store.
type Store struct {
	Driver string `toml:"driver"` // "sqlite" (the default) or "postgres"
	// DSN names the database: for sqlite a file path, relative to the
	// config; for postgres a libpq connection string, URL or key=value.
	DSN string `toml:"dsn"`
	// PasswordFile (relative to the config) or PasswordEnv (the name of an
	// environment variable) holds the password of a postgres DSN, which the
	// DSN then need not hold; never logged. Read it with StorePassword.
	PasswordFile string `toml:"password_file"`
	PasswordEnv  string `toml:"password_env"`
	// WriteWhileReading (default true) lets a full read that is about to
	// create many mailboxes (a first sync) write them while it reads, in
	// its one transaction, where the store can (store.Prewriter: sqlite,
	// postgres). In SQLite that transaction holds the one writer from then
	// on, so other writes to the store (other domains' runs, the API) wait
	// for the read; in PostgreSQL other writes to the domain do. false
	// writes every run after its read.
	WriteWhileReading *bool `toml:"write_while_reading"`
}

// WritesWhileReading reports write_while_reading, true when unset.
func (s Store) WritesWhileReading() bool {
	return s.WriteWhileReading == nil || *s.WriteWhileReading
}

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Plugins locates the policy manifest and the wasm compilation cache.
type Plugins struct {
	Manifest string `toml:"manifest"`
	// CacheDir holds compiled wasm modules; default: the user cache dir.
	CacheDir string `toml:"cache_dir"`
}

// Serve holds the settings of running syncs: the lease every run takes,
// and the schedule of `dirsync serve`.
type Serve struct {
	// LeaseTTL is how long a run's lease on its domain lasts unless the run
	// renews it (default 30s): the time a domain stays blocked after the
	// process running it died.
	LeaseTTL Duration `toml:"lease_ttl"`
	// MaxConcurrentRuns is how many runs dirsync serve starts at once
	// (default 2).
	MaxConcurrentRuns int `toml:"max_concurrent_runs"`
	// KeepRuns is how long run records are kept (default 90 days).
	KeepRuns Duration `toml:"keep_runs"`
}

// API is the [api] table of dirsync serve's HTTP listener.
type API struct {
	// Listen is the address (default 127.0.0.1:8425).
	Listen string `toml:"listen"`
	// CertFile and KeyFile turn TLS on (both or neither).
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Tokens are the API tokens.
	Tokens []Token `toml:"token"`
}

// Token is one [[api.token]]: the SHA-256 of a bearer token (the token
// itself is never stored), its role and the domains it may see.
type Token struct {
	Name    string   `toml:"name"`
	SHA256  string   `toml:"sha256"`  // hex
	Role    string   `toml:"role"`    // "admin" | "viewer"
	Domains []string `toml:"domains"` // ["*"] or names
}

// Secrets is the [secrets] table.
type Secrets struct {
	// KeyFile holds the 32-byte key (64 hex digits) that encrypts the bind
	// passwords of store-kept domains; without it the API refuses to store
	// passwords.
	KeyFile string `toml:"key_file"`
}

// Domain is one [[domain]] table.
type Domain struct {
	Name         string   `toml:"name" json:"name"`
	Sync         bool     `toml:"sync" json:"sync"`
	Policy       string   `toml:"policy" json:"policy"`
	AliasDomains []string `toml:"alias_domains" json:"alias_domains,omitempty"`
	// Interval is how often dirsync serve syncs the domain (default 1h).
	Interval Duration `toml:"interval" json:"interval"`
	// FullInterval is how often a run reads the whole directory although
	// it could read only what changed since the last (default 24h): a
	// full read catches drift that a delta cannot see.
	FullInterval Duration `toml:"full_interval" json:"full_interval"`
	// Live keeps a search open in dirsync serve that the directory tells
	// each change as it happens (OpenLDAP's refreshAndPersist), applied
	// within seconds in small runs; the scheduled runs go on.
	Live   bool   `toml:"live" json:"live"`
	LDAP   LDAP   `toml:"ldap" json:"ldap"`
	Safety Safety `toml:"safety" json:"safety"`
}

// LDAP is a domain's [domain.ldap] table.
type LDAP struct {
	URLs               []string `toml:"urls" json:"urls"`
	BindDN             string   `toml:"bind_dn" json:"bind_dn,omitempty"`
	PasswordFile       string   `toml:"password_file" json:"password_file,omitempty"`
	PasswordEnv        string   `toml:"password_env" json:"password_env,omitempty"`
	BaseDN             string   `toml:"base_dn" json:"base_dn"`
	Filter             string   `toml:"filter" json:"filter"`
	StartTLS           bool     `toml:"start_tls" json:"start_tls"`
	CAFile             string   `toml:"ca_file" json:"ca_file,omitempty"`
	InsecureSkipVerify bool     `toml:"insecure_skip_verify" json:"insecure_skip_verify"`
	PageSize           int      `toml:"page_size" json:"page_size"`
	Timeout            Duration `toml:"timeout" json:"timeout"`
	// ConnectTimeout bounds connecting to one URL before the next is tried.
	ConnectTimeout Duration `toml:"connect_timeout" json:"connect_timeout"`
	// MaxEntries fails a run whose result holds more entries (default
	// 5,000,000): a server that streams without end stops there.
	MaxEntries int `toml:"max_entries" json:"max_entries"`
	// AllowCleartextBind lets a simple bind send its password over ldap://
	// without StartTLS to a server that is not on loopback.
	AllowCleartextBind bool `toml:"allow_cleartext_bind" json:"allow_cleartext_bind"`
}

// Safety holds the deletion limits of rule S2. Load puts in the defaults
// for keys left out; a key written as 0 keeps 0, the strictest value. A
// Config built in code gets no defaults: zero values are strict there too.
type Safety struct {
	// MaxDeletes stops a run that would delete more mailboxes (default 500;
	// 0: every delete needs a confirmation).
	MaxDeletes int `toml:"max_deletes" json:"max_deletes"`
	// MaxDeletePercent stops a run that would delete more than this share of
	// the domain's LDAP mailboxes (default 10) ...
	MaxDeletePercent float64 `toml:"max_delete_percent" json:"max_delete_percent"`
	// PercentFloor ... while deleting more than this many (default 10; 0:
	// the share counts from the first delete).
	PercentFloor int `toml:"percent_floor" json:"percent_floor"`
}

// Manifest is a parsed plugin.toml.
type Manifest struct {
	Path     string   `toml:"-"`
	Policies []Policy `toml:"policy"`
}

// Policy is one [[policy]] of the manifest.
type Policy struct {
	Name          string         `toml:"name"`
	Runtime       string         `toml:"runtime"` // "wasm" | "process" | "builtin"
	Path          string         `toml:"path"`    // resolved against the manifest's folder
	SHA256        string         `toml:"sha256"`
	MemoryLimitMB uint32         `toml:"memory_limit_mb"`
	Timeout       Duration       `toml:"timeout"`
	Config        map[string]any `toml:"config"`
}

// Duration is a TOML string such as "60s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
// A whole number of days ("90d") is accepted too.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 100000 {
			d.Duration = time.Duration(n) * 24 * time.Hour
			return nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"30s\", \"2m\", \"90d\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as UnmarshalText reads it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Error is a config error: the file, the line (0 if unknown), the key.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %q", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Defaults.
const (
	DefaultMaxDeletes       = 500
	DefaultMaxDeletePercent = 10
	DefaultPercentFloor     = 10
	DefaultMemoryLimitMB    = 256
	DefaultPolicyTimeout    = 60 * time.Second
	DefaultLDAPTimeout      = 120 * time.Second
	DefaultPageSize         = 1000
	DefaultConnectTimeout   = 10 * time.Second
	DefaultMaxEntries       = 5_000_000
	DefaultLeaseTTL         = 30 * time.Second
	DefaultInterval         = time.Hour
	DefaultFullInterval     = 24 * time.Hour
	DefaultMaxConcurrent    = 2
	DefaultKeepRuns         = 90 * 24 * time.Hour
	DefaultListen           = "127.0.0.1:8425"
)

var tokenHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkServe checks [serve], [api] and [secrets] and fills their defaults.
func (c *Config) checkServe(data []byte) error {
	bad := func(key, msg string) error {
		return &Error{File: c.Path, Line: findLine(data, key), Key: key, Msg: msg}
	}
	s := &c.Serve
	switch {
	case s.MaxConcurrentRuns < 0:
		return bad("serve.max_concurrent_runs", "must be 1 or more")
	case s.MaxConcurrentRuns == 0:
		s.MaxConcurrentRuns = DefaultMaxConcurrent
	}
	switch {
	case s.KeepRuns.Duration < 0:
		return bad("serve.keep_runs", "must be positive")
	case s.KeepRuns.Duration == 0:
		s.KeepRuns.Duration = DefaultKeepRuns
	}
	a := &c.API
	if a.Listen == "" {
		a.Listen = DefaultListen
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return bad("api.cert_file", "set cert_file and key_file together")
	}
	a.CertFile, a.KeyFile = c.Rel(a.CertFile), c.Rel(a.KeyFile)
	names := map[string]bool{}
	for i := range a.Tokens {
		t := &a.Tokens[i]
		at := func(key string) string { return fmt.Sprintf("api.token[%d].%s", i, key) }
		line := func(key string) int { return findLine(data, at(key)) }
		switch {
		case t.Name == "":
			return &Error{File: c.Path, Line: line("name"), Key: "api.token.name", Msg: "required key is missing"}
		case names[t.Name]:
			return &Error{File: c.Path, Line: line("name"), Key: "api.token.name", Msg: fmt.Sprintf("token %q is declared twice", t.Name)}
		case !tokenHashRE.MatchString(strings.ToLower(t.SHA256)):
			// Not echoed: a token pasted here by mistake must not be logged.
			return &Error{File: c.Path, Line: line("sha256"), Key: "api.token.sha256",
				Msg: fmt.Sprintf("token %q: must be the 64 hex digits of the token's SHA-256 (sha256sum), never the token", t.Name)}
		case t.Role != "admin" && t.Role != "viewer":
			return &Error{File: c.Path, Line: line("role"), Key: "api.token.role", Msg: fmt.Sprintf("token %q: role must be \"admin\" or \"viewer\"", t.Name)}
		case len(t.Domains) == 0:
			return &Error{File: c.Path, Line: line("domains"), Key: "api.token.domains", Msg: fmt.Sprintf("token %q: list its domains, or [\"*\"] for all", t.Name)}
		}
		names[t.Name] = true
		t.SHA256 = strings.ToLower(t.SHA256)
		for j, d := range t.Domains {
			t.Domains[j] = strings.ToLower(d)
		}
	}
	c.Secrets.KeyFile = c.Rel(c.Secrets.KeyFile)
	return nil
}

// Load reads a dirsync.toml and the manifest it names.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: oneLine(err.Error())}
	}
	return Parse(path, data)
}

// Parse reads a dirsync.toml from data, as Load reads it from a file:
// the same checks, the same defaults, the same errors. path names the file
// in errors, and relative paths in it (the store's file, the manifest,
// password and key files) are taken from its folder; "" takes them from
// the working folder. The manifest it names is read from its file.
func Parse(path string, data []byte) (*Config, error) {
	cfg := &Config{Path: path}
	if err := decodeStrict(path, data, cfg, false); err != nil {
		return nil, err
	}
	if err := cfg.check(data); err != nil {
		return nil, err
	}
	if cfg.Plugins.Manifest != "" {
		mpath := cfg.Rel(cfg.Plugins.Manifest)
		mdata, err := os.ReadFile(mpath)
		if err != nil {
			// Name the key that points at the missing file, not only the file.
			return nil, &Error{File: path, Line: findLine(data, "plugins.manifest"), Key: "plugins.manifest", Msg: oneLine(err.Error())}
		}
		m, err := parseManifest(mpath, mdata)
		if err != nil {
			return nil, err
		}
		cfg.Manifest = m
	}
	if err := cfg.checkPolicies(data); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkPolicies checks that each domain names a policy of the manifest.
func (c *Config) checkPolicies(data []byte) error {
	if c.Manifest == nil {
		return nil
	}
	for i, d := range c.Domains {
		if c.Manifest.Policy(d.Policy) == nil {
			return &Error{File: c.Path, Line: findLine(data, fmt.Sprintf("domain[%d].policy", i)), Key: "domain.policy",
				Msg: fmt.Sprintf("domain %q names policy %q, which %s does not declare", d.Name, d.Policy, c.Manifest.Path)}
		}
	}
	return nil
}

// Validate checks a Config built in code and fills in its defaults as
// Load does for a file: the store's driver, [serve], [api], each domain's
// interval, LDAP timeouts and sizes, names in lower case; relative paths
// are taken from the folder of c.Path (the working folder when it is
// empty). It reads no file: set c.Manifest yourself (ParseManifest, or a
// Manifest built in code) and the domains' policies are checked against
// it; with Plugins.Manifest set and c.Manifest nil, Validate loads it.
//
// One difference from a file cannot be helped: Go cannot tell a safety
// limit left out from one set to 0, and Validate keeps 0, the strictest
// limit (every delete needs a confirmation). Make each domain with
// NewDomain to start from the file's default limits.
//
// Errors are *Error values naming the key; they have no line.
func (c *Config) Validate() error {
	if err := c.checkWith(nil, true); err != nil {
		return err
	}
	if c.Manifest == nil {
		m, err := LoadManifest(c.Rel(c.Plugins.Manifest))
		if err != nil {
			return err
		}
		c.Manifest = m
	}
	return c.checkPolicies(nil)
}

// ParseManifest reads a plugin.toml from data, as LoadManifest reads it
// from a file; path names it in errors and is the folder its relative
// paths are taken from.
func ParseManifest(path string, data []byte) (*Manifest, error) { return parseManifest(path, data) }

// LoadManifest reads a plugin.toml.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: oneLine(err.Error())}
	}
	return parseManifest(path, data)
}

func parseManifest(path string, data []byte) (*Manifest, error) {
	m := &Manifest{Path: path}
	if err := decodeStrict(path, data, m, true); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i := range m.Policies {
		p := &m.Policies[i]
		at := func(key string) int { return findLine(data, fmt.Sprintf("policy[%d].%s", i, key)) }
		if p.Name == "" {
			return nil, &Error{File: path, Line: findLine(data, fmt.Sprintf("policy[%d]", i)), Key: "policy.name", Msg: "required key is missing"}
		}
		if seen[p.Name] {
			return nil, &Error{File: path, Line: at("name"), Key: "policy.name", Msg: fmt.Sprintf("policy %q is declared twice", p.Name)}
		}
		seen[p.Name] = true
		switch p.Runtime {
		case "wasm", "process":
			if p.Path == "" {
				return nil, &Error{File: path, Line: findLine(data, fmt.Sprintf("policy[%d]", i)), Key: "policy.path", Msg: fmt.Sprintf("policy %q: required key is missing for runtime %q", p.Name, p.Runtime)}
			}
			p.Path = relTo(path, p.Path)
		case "builtin":
		case "":
			return nil, &Error{File: path, Line: findLine(data, fmt.Sprintf("policy[%d]", i)), Key: "policy.runtime", Msg: fmt.Sprintf("policy %q: required key is missing (\"wasm\", \"process\" or \"builtin\")", p.Name)}
		default:
			return nil, &Error{File: path, Line: at("runtime"), Key: "policy.runtime", Msg: fmt.Sprintf("policy %q: unknown runtime %q (want \"wasm\", \"process\" or \"builtin\")", p.Name, p.Runtime)}
		}
		if p.MemoryLimitMB == 0 {
			p.MemoryLimitMB = DefaultMemoryLimitMB
		}
		if p.Timeout.Duration < 0 {
			return nil, &Error{File: path, Line: at("timeout"), Key: "policy.timeout", Msg: fmt.Sprintf("policy %q: the timeout must be positive", p.Name)}
		}
		if p.Timeout.Duration == 0 {
			p.Timeout.Duration = DefaultPolicyTimeout
		}
	}
	return m, nil
}

// Policy returns the named policy, or nil.
func (m *Manifest) Policy(name string) *Policy {
	for i := range m.Policies {
		if m.Policies[i].Name == name {
			return &m.Policies[i]
		}
	}
	return nil
}

// Domain returns the named domain, or nil.
func (c *Config) Domain(name string) *Domain {
	for i := range c.Domains {
		if c.Domains[i].Name == name {
			return &c.Domains[i]
		}
	}
	return nil
}

// ErrUnknownDomain is returned by Lookup for a domain the config does not
// declare.
var ErrUnknownDomain = errors.New("unknown domain")

// Lookup returns the named domain, or an error wrapping ErrUnknownDomain
// that lists the declared ones.
func (c *Config) Lookup(name string) (*Domain, error) {
	if d := c.Domain(strings.ToLower(name)); d != nil {
		return d, nil
	}
	names := make([]string, 0, len(c.Domains))
	for _, d := range c.Domains {
		names = append(names, d.Name)
	}
	return nil, fmt.Errorf("%w %q (the config declares %s)", ErrUnknownDomain, name, strings.Join(names, ", "))
}

// Owns reports whether an address (lower case) lies in the domain or one
// of its alias domains.
func (d *Domain) Owns(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return false
	}
	return slices.Contains(d.AliasDomains, addr[at+1:]) || addr[at+1:] == d.Name
}

// Rel resolves a path of the config against the config's folder.
func (c *Config) Rel(p string) string { return relTo(c.Path, p) }

// Password reads a domain's bind password from its file or variable.
func (c *Config) Password(d *Domain) (string, error) {
	switch {
	case d.LDAP.PasswordFile != "":
		b, err := os.ReadFile(c.Rel(d.LDAP.PasswordFile))
		if err != nil {
			return "", fmt.Errorf("domain %q: password_file: %w", d.Name, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case d.LDAP.PasswordEnv != "":
		v, ok := os.LookupEnv(d.LDAP.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("domain %q: password_env: variable %s is not set", d.Name, d.LDAP.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// StorePassword reads the password of the store's DSN from [store]
// password_file or password_env; "" if neither is set. Like Password, it
// trims the line ends after a password read from a file.
func (c *Config) StorePassword() (string, error) {
	switch s := c.Store; {
	case s.PasswordFile != "":
		b, err := os.ReadFile(c.Rel(s.PasswordFile))
		if err != nil {
			return "", fmt.Errorf("store: password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case s.PasswordEnv != "":
		v, ok := os.LookupEnv(s.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("store: password_env: variable %s is not set", s.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func relTo(file, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(file), p)
}

func (c *Config) check(data []byte) error { return c.checkWith(data, false) }

// checkWith checks c and fills its defaults; data is the file it was read
// from (nil for a Config built in code), and allWritten counts every
// domain key as written (a zero safety limit stays zero).
func (c *Config) checkWith(data []byte, allWritten bool) error {
	missing := func(key, table string) error {
		return &Error{File: c.Path, Line: findLine(data, table), Key: key, Msg: "required key is missing"}
	}
	if err := c.checkStore(data); err != nil {
		return err
	}
	if c.Plugins.Manifest == "" && c.Manifest == nil { // a Manifest built in code names no file
		return missing("plugins.manifest", "plugins")
	}
	if c.Plugins.CacheDir != "" {
		c.Plugins.CacheDir = c.Rel(c.Plugins.CacheDir)
	}
	if ttl := c.Serve.LeaseTTL.Duration; ttl < 0 || (ttl > 0 && ttl < time.Second) {
		return &Error{File: c.Path, Line: findLine(data, "serve.lease_ttl"), Key: "serve.lease_ttl", Msg: "must be 1s or more"}
	}
	if c.Serve.LeaseTTL.Duration == 0 {
		c.Serve.LeaseTTL.Duration = DefaultLeaseTTL
	}
	if err := c.checkServe(data); err != nil {
		return err
	}
	seen := map[string]bool{}
	raw := domainKeys(data)
	for i := range c.Domains {
		d := &c.Domains[i]
		tbl := fmt.Sprintf("domain[%d]", i)
		var keys map[string]any
		if i < len(raw) {
			keys = raw[i]
		}
		if d.Name == "" {
			return missing("domain.name", tbl)
		}
		name := strings.ToLower(d.Name)
		if seen[name] {
			return &Error{File: c.Path, Line: findLine(data, tbl+".name"), Key: "domain.name", Msg: fmt.Sprintf("domain %q is declared twice", name)}
		}
		seen[name] = true
		if fe := d.check(func(path ...string) bool { return allWritten || written(keys, path...) }); fe != nil {
			line := findLine(data, tbl+"."+fe.path)
			if fe.missing { // the line of the table that lacks it
				table := tbl
				if i := strings.LastIndexByte(fe.path, '.'); i > 0 {
					table += "." + fe.path[:i]
				}
				line = findLine(data, table)
			}
			return &Error{File: c.Path, Line: line, Key: "domain." + fe.path, Msg: fe.msg}
		}
	}
	return nil
}

// checkStore checks [store] and fills its defaults.
func (c *Config) checkStore(data []byte) error {
	bad := func(key, msg string) error {
		return &Error{File: c.Path, Line: findLine(data, key), Key: key, Msg: msg}
	}
	st := &c.Store
	switch st.Driver {
	case DriverSQLite, DriverPostgres:
	case "":
		st.Driver = DriverSQLite
	default:
		return bad("store.driver", fmt.Sprintf("unknown driver %q (want \"sqlite\" or \"postgres\")", st.Driver))
	}
	if st.DSN == "" {
		return &Error{File: c.Path, Line: findLine(data, "store"), Key: "store.dsn", Msg: "required key is missing"}
	}
	switch {
	case st.PasswordFile != "" && st.PasswordEnv != "":
		return bad("store.password_env", "set password_file or password_env, not both")
	case st.PasswordEnv != "" && !envNameRE.MatchString(st.PasswordEnv):
		// Not echoed: a password pasted here by mistake must not be logged.
		return bad("store.password_env", "must name an environment variable (letters, digits and _), not hold the password")
	case st.Driver != DriverPostgres && st.PasswordFile != "":
		return bad("store.password_file", fmt.Sprintf("only driver \"postgres\" takes a password (driver is %q)", st.Driver))
	case st.Driver != DriverPostgres && st.PasswordEnv != "":
		return bad("store.password_env", fmt.Sprintf("only driver \"postgres\" takes a password (driver is %q)", st.Driver))
	}
	if st.Driver == DriverSQLite {
		st.DSN = c.Rel(st.DSN)
	}
	return nil
}

// NewDomain returns a domain with the defaults that a [[domain]] table gets
// for keys it leaves out, safety limits included, to be filled (say by
// decoding JSON over it) and checked with Check.
func NewDomain(name string) Domain {
	return Domain{Name: name, Interval: Duration{DefaultInterval}, FullInterval: Duration{DefaultFullInterval},
		LDAP:   LDAP{PageSize: DefaultPageSize, Timeout: Duration{DefaultLDAPTimeout}, ConnectTimeout: Duration{DefaultConnectTimeout}, MaxEntries: DefaultMaxEntries},
		Safety: Safety{MaxDeletes: DefaultMaxDeletes, MaxDeletePercent: DefaultMaxDeletePercent, PercentFloor: DefaultPercentFloor}}
}

// fieldError is a domain key that check refused: its path below the
// domain ("ldap.urls") and why; missing marks a required key left out.
type fieldError struct {
	path, msg string
	missing   bool
}

// Check normalizes a domain built in code or read from the store, as Load
// does for a [[domain]] of dirsync.toml: names lower case, defaults for
// keys left zero, and the same checks. Unlike Load, it cannot tell a
// safety number written as 0 from one left out: zero values stay zero
// (the strictest limits). The error is an *Error whose Key names the key
// ("domain.ldap.urls"); File and Line are empty.
func (d *Domain) Check() error {
	if fe := d.check(func(...string) bool { return true }); fe != nil {
		return &Error{Key: "domain." + fe.path, Msg: fe.msg}
	}
	return nil
}

// check is Check with written telling which keys the source wrote.
func (d *Domain) check(written func(path ...string) bool) *fieldError {
	bad := func(path, msg string) *fieldError { return &fieldError{path: path, msg: msg} }
	missing := func(path string) *fieldError {
		return &fieldError{path: path, msg: "required key is missing", missing: true}
	}
	if d.Name == "" {
		return missing("name")
	}
	d.Name = strings.ToLower(d.Name)
	for j, a := range d.AliasDomains {
		d.AliasDomains[j] = strings.ToLower(a)
	}
	if d.Policy == "" {
		return missing("policy")
	}
	if iv := d.Interval.Duration; iv < 0 || (iv > 0 && iv < time.Second) {
		return bad("interval", "must be 1s or more")
	}
	if d.Interval.Duration == 0 {
		d.Interval.Duration = DefaultInterval
	}
	if iv := d.FullInterval.Duration; iv < 0 || (iv > 0 && iv < time.Second) {
		return bad("full_interval", "must be 1s or more")
	}
	if d.FullInterval.Duration == 0 {
		d.FullInterval.Duration = DefaultFullInterval
	}
	l := &d.LDAP
	if len(l.URLs) == 0 {
		return missing("ldap.urls")
	}
	for _, u := range l.URLs {
		if !strings.HasPrefix(u, "ldap://") && !strings.HasPrefix(u, "ldaps://") {
			return bad("ldap.urls", fmt.Sprintf("%q is not an ldap:// or ldaps:// URL", u))
		}
	}
	if l.BaseDN == "" {
		return missing("ldap.base_dn")
	}
	if l.PasswordFile != "" && l.PasswordEnv != "" {
		return bad("ldap.password_env", "set password_file or password_env, not both")
	}
	if l.PasswordEnv != "" && !envNameRE.MatchString(l.PasswordEnv) {
		// Not echoed: a password pasted here by mistake must not be logged.
		return bad("ldap.password_env", "must name an environment variable (letters, digits and _), not hold the password")
	}
	if l.PageSize < 0 {
		return bad("ldap.page_size", "must be positive")
	}
	if l.PageSize == 0 {
		l.PageSize = DefaultPageSize
	}
	if l.Timeout.Duration < 0 {
		return bad("ldap.timeout", "must be positive")
	}
	if l.Timeout.Duration == 0 {
		l.Timeout.Duration = DefaultLDAPTimeout
	}
	if l.ConnectTimeout.Duration < 0 {
		return bad("ldap.connect_timeout", "must be positive")
	}
	if l.ConnectTimeout.Duration == 0 {
		l.ConnectTimeout.Duration = DefaultConnectTimeout
	}
	if l.MaxEntries < 0 {
		return bad("ldap.max_entries", "must be positive")
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	// A safety number left out takes its default; one written as 0 means
	// 0: the strictest setting, never the default.
	sf := &d.Safety
	if !written("safety", "max_deletes") {
		sf.MaxDeletes = DefaultMaxDeletes
	}
	if !written("safety", "max_delete_percent") {
		sf.MaxDeletePercent = DefaultMaxDeletePercent
	}
	if !written("safety", "percent_floor") {
		sf.PercentFloor = DefaultPercentFloor
	}
	switch {
	case sf.MaxDeletes < 0:
		return bad("safety.max_deletes", "must be 0 or more (0: every delete needs --confirm-deletes)")
	case sf.MaxDeletePercent < 0 || sf.MaxDeletePercent > 100:
		return bad("safety.max_delete_percent", "must be between 0 and 100")
	case sf.PercentFloor < 0:
		return bad("safety.percent_floor", "must be 0 or more")
	}
	return nil
}

// decodeStrict decodes data into v and refuses keys v does not know. The
// keys under [policy.config] of a manifest belong to the plugin, which
// checks them; they are refused nowhere else.
func decodeStrict(path string, data []byte, v any, manifest bool) error {
	s := string(data)
	// A syntax error shows when decoding into a generic map; anything that
	// fails after that is a value that does not fit the type of its key.
	var raw map[string]any
	if _, err := toml.Decode(s, &raw); err != nil {
		return syntaxError(path, data, err)
	}
	md, err := toml.Decode(s, v)
	if err != nil {
		return typeError(path, data, v, err)
	}
	for _, k := range md.Undecoded() {
		if manifest && len(k) >= 2 && k[0] == "policy" && k[1] == "config" {
			continue
		}
		return &Error{File: path, Line: findKeyLine(data, k), Key: strings.Join(k, "."), Msg: "unknown key"}
	}
	return nil
}

// syntaxError turns a TOML parse error into an *Error. The parser's last
// key is kept only when it is set on the line of the error: otherwise it
// is the key before the mistake and would point at the wrong thing.
func syntaxError(path string, data []byte, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: path, Msg: oneLine(strings.TrimPrefix(err.Error(), "toml: "))}
	}
	e := &Error{File: path, Line: pe.Position.Line, Msg: oneLine(pe.Message)}
	if pe.LastKey != "" && e.Line > 0 {
		for _, en := range scanKeys(data) {
			if en.line == e.Line && stripIndex(en.key) == pe.LastKey {
				e.Key = pe.LastKey
				break
			}
		}
	}
	return e
}

var lastKeyRE = regexp.MustCompile(`^toml: (?:line \d+ )?\(last key ("(?:[^"\\]|\\.)*")\): `)

// typeError turns an error of the decoding step (a value of the wrong type,
// an invalid duration) into an *Error. The toml package reports the line of
// the last table of an array that sets the key, not of the one that failed,
// so the line is found here: the element that fails is decoded again alone.
func typeError(path string, data []byte, v any, err error) error {
	var key, msg string
	var pe toml.ParseError
	if errors.As(err, &pe) {
		key, msg = pe.LastKey, pe.Message
	} else {
		msg = err.Error()
		if m := lastKeyRE.FindStringSubmatch(msg); m != nil {
			key, _ = strconv.Unquote(m[1])
			msg = msg[len(m[0]):]
		} else {
			msg = strings.TrimPrefix(msg, "toml: ")
		}
	}
	return &Error{File: path, Line: locate(data, v, key), Key: key, Msg: oneLine(msg)}
}

// locate returns the line of key, which failed to decode into v. When the
// key lives in an array of tables ([[domain]], [[policy]]) the element that
// fails is found by decoding each element on its own.
func locate(data []byte, v any, key string) int {
	if key == "" {
		return 0
	}
	first, rest, _ := strings.Cut(key, ".")
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || rest == "" {
		return findLine(data, key)
	}
	var elem reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("toml"), ","); name == first && f.Type.Kind() == reflect.Slice {
			elem = f.Type.Elem()
		}
	}
	if elem == nil || elem.Kind() != reflect.Struct {
		return findLine(data, key)
	}
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return findLine(data, key)
	}
	var elems []toml.Primitive
	if err := md.PrimitiveDecode(top[first], &elems); err != nil {
		return findLine(data, key)
	}
	for i, p := range elems {
		if md.PrimitiveDecode(p, reflect.New(elem).Interface()) != nil {
			return findLine(data, fmt.Sprintf("%s[%d].%s", first, i, rest))
		}
	}
	return findLine(data, key)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// keyLine is a header or an assignment of a TOML file, with its full dotted
// name; elements of arrays of tables carry their index: "domain[1].ldap.urls".
type keyLine struct {
	line int
	key  string
}

// scanKeys lists the headers and assignments of a TOML file in order. It
// skips comments and the inside of values that span lines (arrays, inline
// tables, multi-line strings), so a line there is never taken for a key.
func scanKeys(data []byte) []keyLine {
	var out []keyLine
	counts := map[string]int{} // array of tables (indexed path) -> elements seen
	cur := ""                  // indexed name of the current table
	depth, delim := 0, ""      // state of a value that spans lines
	for n, raw := range strings.Split(string(data), "\n") {
		n++
		line := strings.TrimSpace(raw)
		if delim != "" || depth > 0 {
			depth, delim = scanValue(line, depth, delim)
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			array := strings.HasPrefix(line, "[[")
			parts, ok := splitKey(strings.TrimLeft(line, "["), ']')
			if !ok {
				continue
			}
			cur = ""
			for i, p := range parts {
				if cur != "" {
					cur += "."
				}
				cur += p
				if i == len(parts)-1 && array {
					counts[cur]++
				}
				if c, ok := counts[cur]; ok {
					cur += fmt.Sprintf("[%d]", c-1)
				}
			}
			out = append(out, keyLine{n, cur})
			continue
		}
		parts, ok := splitKey(line, '=')
		if !ok {
			continue
		}
		key := strings.Join(parts, ".")
		if cur != "" {
			key = cur + "." + key
		}
		out = append(out, keyLine{n, key})
		_, rhs, _ := strings.Cut(rawAfterKey(line), "=")
		depth, delim = scanValue(rhs, 0, "")
	}
	return out
}

// splitKey reads a dotted key (bare or quoted parts) up to the stop byte.
func splitKey(s string, stop byte) ([]string, bool) {
	var parts []string
	var b strings.Builder
	part := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && s[j] != c {
				if c == '"' && s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, false
			}
			b.WriteString(s[i+1 : j])
			part, i = true, j
		case c == '.' || c == stop:
			if !part {
				return nil, false
			}
			parts = append(parts, b.String())
			b.Reset()
			part = false
			if c == stop {
				return parts, true
			}
		case c == ' ' || c == '\t':
		case c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			b.WriteByte(c)
			part = true
		default:
			return nil, false
		}
	}
	return nil, false
}

// rawAfterKey returns line from the '=' that ends its key on.
func rawAfterKey(line string) string {
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case '"', '\'':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				return ""
			}
			i += j + 1
		case '=':
			return line[i:]
		}
	}
	return ""
}

// scanValue follows a value through one line: it returns how many arrays
// or inline tables are still open and the delimiter of a multi-line string
// still open ("" if none).
func scanValue(s string, depth int, delim string) (int, string) {
	for i := 0; i < len(s); i++ {
		if delim != "" {
			j := strings.Index(s[i:], delim)
			if j < 0 {
				return depth, delim
			}
			i += j + len(delim) - 1
			delim = ""
			continue
		}
		switch c := s[i]; c {
		case '#':
			return depth, ""
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '"', '\'':
			q := string(c)
			if strings.HasPrefix(s[i:], q+q+q) {
				delim = q + q + q
				i += 2
				continue
			}
			j := i + 1
			for j < len(s) && s[j] != c {
				if c == '"' && s[j] == '\\' {
					j++
				}
				j++
			}
			i = j
		}
	}
	return depth, delim
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func stripIndex(key string) string { return indexRE.ReplaceAllString(key, "") }

// findKeyLine finds the line of a key the decoder did not use (a
// toml.Key carries no array index): its first header or assignment, else
// the first line that sets something under it (a table made by dotted keys).
func findKeyLine(data []byte, k toml.Key) int {
	want := strings.Join(k, ".")
	keys := scanKeys(data)
	for _, e := range keys {
		if stripIndex(e.key) == want {
			return e.line
		}
	}
	for _, e := range keys {
		if s := stripIndex(e.key); strings.HasPrefix(s, want+".") {
			return e.line
		}
	}
	return 0
}

// domainKeys returns, for each [[domain]] of data, the keys written in it
// as nested maps (a key left out is absent, whatever way the file writes
// its tables).
func domainKeys(data []byte) []map[string]any {
	var raw struct {
		Domain []map[string]any `toml:"domain"`
	}
	toml.Decode(string(data), &raw) // decoded before without error
	return raw.Domain
}

// written reports whether the key path (such as "safety", "max_deletes")
// is written in a domain's keys.
func written(keys map[string]any, path ...string) bool {
	var v any = keys
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[k]; !ok {
			return false
		}
	}
	return true
}

// findLine finds the line of path, written with array indexes:
// "store.dsn", "domain[1]" (the header of the second [[domain]]),
// "domain[1].ldap.urls". When path is not in the file (a missing key), it
// gives the line of the nearest table above it that is: "domain[1].ldap"
// falls back to "domain[1]"; 0 when none is.
func findLine(data []byte, path string) int {
	keys := scanKeys(data)
	for p := path; p != ""; {
		for _, e := range keys {
			if e.key == p {
				return e.line
			}
		}
		// A table written only through dotted keys: "ldap.urls = [...]".
		for _, e := range keys {
			if strings.HasPrefix(e.key, p+".") {
				return e.line
			}
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}
