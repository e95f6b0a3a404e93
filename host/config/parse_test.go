package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Parse reads bytes as Load reads a file: the same Config, the same errors.
func TestParseIsLoad(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*", "*.toml"))
	if len(files) < 10 {
		t.Fatalf("only %d testdata files", len(files))
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want, werr := Load(path)
			got, gerr := Parse(path, data)
			if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
				t.Fatalf("Load: %v; Parse: %v", werr, gerr)
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("Parse = %+v\nLoad  = %+v", got, want)
			}
		})
	}
}

// Validate fills a Config built in code as Load fills the same keys
// written in a file; a domain made with NewDomain gets the file's
// default safety limits.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dirsync.toml")
	manifest := []byte("[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
	if err := os.WriteFile(filepath.Join(dir, "plugin.toml"), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := Parse(path, []byte(`
[store]
dsn = "var/dirsync.db"
[plugins]
manifest = "plugin.toml"
[[domain]]
name = "Example.COM"
policy = "standard"
  [domain.ldap]
  urls = ["ldap://127.0.0.1:3890"]
  base_dn = "dc=example,dc=com"
`))
	if err != nil {
		t.Fatal(err)
	}

	d := NewDomain("Example.COM")
	d.Policy = "standard"
	d.LDAP.URLs, d.LDAP.BaseDN = []string{"ldap://127.0.0.1:3890"}, "dc=example,dc=com"
	m, err := ParseManifest(filepath.Join(dir, "plugin.toml"), manifest)
	if err != nil {
		t.Fatal(err)
	}
	code := &Config{Path: path, Store: Store{DSN: "var/dirsync.db"}, Manifest: m, Domains: []Domain{d}}
	if err := code.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !reflect.DeepEqual(code.Store, file.Store) || !reflect.DeepEqual(code.Serve, file.Serve) ||
		!reflect.DeepEqual(code.API, file.API) || !reflect.DeepEqual(code.Domains, file.Domains) {
		t.Errorf("Validate gave\n%+v\nLoad gives\n%+v", code, file)
	}

	// Plugins.Manifest set and no Manifest: Validate loads it.
	byPath := &Config{Path: path, Store: Store{DSN: "x.db"}, Plugins: Plugins{Manifest: "plugin.toml"}, Domains: []Domain{NewDomain("example.org")}}
	byPath.Domains[0].Policy, byPath.Domains[0].LDAP.URLs, byPath.Domains[0].LDAP.BaseDN = "standard", []string{"ldap://h"}, "dc=x"
	if err := byPath.Validate(); err != nil || byPath.Manifest == nil || byPath.Manifest.Policy("standard") == nil {
		t.Errorf("Validate with Plugins.Manifest: %v, manifest %+v", err, byPath.Manifest)
	}

	// Errors name the key, as in a file.
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		key  string
	}{
		{"no urls", func(c *Config) { c.Domains[0].LDAP.URLs = nil }, "domain.ldap.urls"},
		{"unknown policy", func(c *Config) { c.Domains[0].Policy = "other" }, "domain.policy"},
		{"no dsn", func(c *Config) { c.Store.DSN = "" }, "store.dsn"},
		{"bad driver", func(c *Config) { c.Store.Driver = "mysql" }, "store.driver"},
		{"no manifest", func(c *Config) { c.Manifest = nil }, "plugins.manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDomain("example.com")
			d.Policy, d.LDAP.URLs, d.LDAP.BaseDN = "standard", []string{"ldap://h"}, "dc=x"
			c := &Config{Path: path, Store: Store{DSN: "x.db"}, Manifest: m, Domains: []Domain{d}}
			tc.edit(c)
			var e *Error
			if err := c.Validate(); !errors.As(err, &e) || e.Key != tc.key {
				t.Errorf("Validate = %v, want an *Error naming %s", err, tc.key)
			}
		})
	}

	// A limit set to 0 in code stays 0: the strictest.
	strict := NewDomain("example.net")
	strict.Policy, strict.LDAP.URLs, strict.LDAP.BaseDN = "standard", []string{"ldap://h"}, "dc=x"
	strict.Safety.MaxDeletes = 0
	c := &Config{Path: path, Store: Store{DSN: "x.db"}, Manifest: m, Domains: []Domain{strict}}
	if err := c.Validate(); err != nil || c.Domains[0].Safety.MaxDeletes != 0 || c.Domains[0].Safety.PercentFloor != DefaultPercentFloor {
		t.Errorf("Validate: %v, safety %+v; want max_deletes 0 kept, the rest defaults", err, c.Domains[0].Safety)
	}
}
