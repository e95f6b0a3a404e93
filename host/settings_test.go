package host_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/secrets"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// TestStoreKeptSettings: settings saved through the host are checked (the
// filter through the policy), versioned, used by the next run with their
// sealed password, previewed and connection-tested before they are saved,
// and never touch a domain of the config.
func TestStoreKeptSettings(t *testing.T) {
	ctx := context.Background()
	root, _ := filepath.Abs("..")
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{filepath.Join(root, "examples", "directory", "sample.ldif")}, LogLevel: "none"})
	dir := t.TempDir()
	key := filepath.Join(dir, "secret.key")
	os.WriteFile(key, []byte(secrets.NewKey()), 0o600)
	st, err := sqlite.Open(filepath.Join(dir, "dirsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := &config.Config{
		Path:     filepath.Join(dir, "dirsync.toml"),
		Manifest: &config.Manifest{Policies: []config.Policy{{Name: "standard", Runtime: "builtin"}}},
		Secrets:  config.Secrets{KeyFile: key},
		Domains: []config.Domain{{Name: "config.example", Policy: "standard",
			LDAP: config.LDAP{URLs: []string{srv.URL}, BaseDN: "dc=example,dc=com"}}},
	}
	h, err := host.New(host.Options{Config: cfg, Store: st, Builtins: map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	d := config.NewDomain("example.com")
	d.Sync, d.Policy, d.AliasDomains = true, "standard", []string{"example.org"}
	d.LDAP.URLs, d.LDAP.BaseDN, d.LDAP.BindDN = []string{srv.URL}, "dc=example,dc=com", "cn=reader,dc=example,dc=com"
	pw, wrong := "reader-secret", "wrong"

	// Before anything is saved: a connection test and a preview of the form.
	if _, err := h.TestConnection(ctx, d, &wrong); err == nil || !strings.Contains(err.Error(), "Invalid Credentials") {
		t.Errorf("connection test with a wrong password: %v", err)
	}
	conn, err := h.TestConnection(ctx, d, &pw)
	if err != nil || conn.Entries != 14 || conn.Server != srv.URL {
		t.Errorf("connection test = %+v, %v; want 14 entries from %s", conn, err, srv.URL)
	}
	rep, err := h.PreviewSettings(ctx, d, &pw)
	if err != nil || len(rep.Users) != 9 {
		t.Fatalf("preview of unsaved settings: %v (%d users)", err, len(rep.Users))
	}
	if _, err := h.Run(ctx, "example.com", host.RunOptions{}); !errors.Is(err, config.ErrUnknownDomain) {
		t.Errorf("a run before the settings are saved: %v, want unknown domain", err)
	}

	// Refusals: a bad filter (with its position), a domain of the config,
	// a stale version.
	bad := d
	bad.LDAP.Filter = "(|(cn=a)"
	var fe *sdk.FilterError
	if _, err := h.SaveSettings(ctx, bad, &pw, "test", 0); !errors.As(err, &fe) {
		t.Errorf("saving a bad filter: %v, want a filter error", err)
	}
	cd := cfg.Domains[0]
	if _, err := h.SaveSettings(ctx, cd, nil, "test", 0); !errors.Is(err, host.ErrManagedByConfig) {
		t.Errorf("saving a domain of the config: %v", err)
	}
	v1, err := h.SaveSettings(ctx, d, &pw, "test", 0)
	if err != nil || v1 != 1 {
		t.Fatalf("SaveSettings = %d, %v", v1, err)
	}
	if _, err := h.SaveSettings(ctx, d, nil, "test", 0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("saving over a newer version: %v, want a conflict", err)
	}

	// The run uses the saved settings, password included, and records the
	// version; a new version (password kept) is used by the next run.
	if rep, err := h.Run(ctx, "example.com", host.RunOptions{}); err != nil || rep.Counts.Created != 9 {
		t.Fatalf("run of the saved settings: %v", err)
	}
	d.LDAP.Filter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457))"
	if v, err := h.SaveSettings(ctx, d, nil, "test", v1); err != nil || v != 2 {
		t.Fatalf("second version: %d, %v", v, err)
	}
	if rep, err := h.Run(ctx, "example.com", host.RunOptions{}); err != nil || rep.Counts.Deleted != 1 {
		t.Fatalf("run of version 2: %v (%+v)", err, rep.Counts)
	}
	runs, _ := st.RunsPage(ctx, "example.com", 10, 0)
	if len(runs) != 2 || runs[0].SettingsVersion != 2 || runs[1].SettingsVersion != 1 {
		t.Errorf("runs = %+v, want versions 2 and 1", runs)
	}
	s, err := h.Settings(ctx, "example.com")
	if err != nil || !s.PasswordSet || s.Version != 2 || s.ManagedBy != host.ManagedByStore {
		t.Errorf("Settings = %+v, %v", s, err)
	}
	list, err := h.Domains(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "config.example" || list[1].Name != "example.com" {
		t.Errorf("Domains = %+v, %v", list, err)
	}
}
