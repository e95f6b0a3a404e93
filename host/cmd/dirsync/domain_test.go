package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/secrets"
)

// TestStoreKeptDomain: a domain made and changed with `dirsync domain`
// syncs like one of dirsync.toml; each change is a new settings version
// that the next run uses and records; its bind password is kept sealed and
// never shown; a domain of dirsync.toml is shown but never changed.
func TestStoreKeptDomain(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.write("secret.key", secrets.NewKey()+"\n")
	// The config declares another domain; example.com lives in the store.
	e.config = e.write("dirsync.toml", fmt.Sprintf(`
[store]
dsn = "var/dirsync.db"
[plugins]
manifest = "plugin.toml"
[secrets]
key_file = "secret.key"
[[domain]]
name = "config.example"
policy = "standard"
  [domain.ldap]
  urls = [%q]
  base_dn = "dc=example,dc=com"
`, e.srv.URL))
	pw := filepath.Join(e.dir, "reader.pw")
	e.ok("domain", "add", D, "policy=standard", "sync=true", "alias_domains=['example.org']",
		fmt.Sprintf("ldap.urls=[%q]", e.srv.URL), "ldap.bind_dn=cn=reader,dc=example,dc=com",
		"ldap.base_dn=dc=example,dc=com", "--password-file", pw)
	e.fails(2, "unknown key", "domain", "set", D, "ldap.colour=blue")
	e.fails(2, "position", "domain", "set", D, "ldap.filter=(|(cn=a)")
	e.fails(2, "--password-stdin", "domain", "set", D, "ldap.password=x")
	e.fails(2, "set in dirsync.toml", "domain", "set", "config.example", "sync=true")

	var list []struct {
		Name      string `json:"name"`
		ManagedBy string `json:"managed_by"`
		Version   int64  `json:"version"`
	}
	if err := json.Unmarshal([]byte(e.ok("domain", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "config.example" || list[0].ManagedBy != "config" ||
		list[1].Name != D || list[1].ManagedBy != "store" || list[1].Version != 1 {
		t.Errorf("domain list = %+v", list)
	}

	e.ok("group", "add", "--domain", D, "Sales")
	if out := e.ok("sync", "--domain", D); !strings.Contains(out, "created 9,") {
		t.Errorf("the first sync of a store-kept domain: %s", out)
	}
	// A new version: a filter that leaves out the public folder.
	e.ok("domain", "set", D, "ldap.filter=(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457))")
	if out := e.ok("sync", "--domain", D); !strings.Contains(out, "deleted 1,") {
		t.Errorf("the sync after the filter change: %s", out)
	}
	runs := e.runs()
	if runs[0].SettingsVersion != 2 || runs[1].SettingsVersion != 1 {
		t.Errorf("runs recorded settings versions %d and %d, want 2 and 1", runs[0].SettingsVersion, runs[1].SettingsVersion)
	}

	show := e.ok("domain", "show", D, "--json")
	if !strings.Contains(show, `"password_set": true`) || !strings.Contains(show, `"version": 2`) {
		t.Errorf("domain show: %s", show)
	}
	var seen strings.Builder
	for _, args := range [][]string{{"domain", "show", D}, {"domain", "list"}, {"runs", "--domain", D, "--json"}, {"runs", "show", "--domain", D, "2", "--json"}} {
		seen.WriteString(e.ok(args...))
	}
	seen.WriteString(show)
	db, _ := os.ReadFile(e.dbPath())
	wal, _ := os.ReadFile(e.dbPath() + "-wal")
	for what, text := range map[string]string{"output": seen.String(), "store": string(db) + string(wal)} {
		if strings.Contains(text, readerPassword) {
			t.Errorf("the bind password appears in the %s", what)
		}
	}

	e.ok("domain", "remove", D)
	e.fails(2, "unknown domain", "sync", "--domain", D)
}
