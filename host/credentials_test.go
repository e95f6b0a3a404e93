package host_test

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/testpeer/ldaptest"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/memstore"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// panelSecrets is a program's own keeper of bind passwords, as a
// multi-tenant panel has in its database.
type panelSecrets struct {
	mu        sync.Mutex
	passwords map[string]string
	asked     []string
}

func (p *panelSecrets) BindPassword(_ context.Context, d *config.Domain) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, d.Name)
	pw, ok := p.passwords[d.Name]
	if !ok {
		return "", errors.New("the panel keeps no password for " + d.Name)
	}
	return pw, nil
}

func (p *panelSecrets) RootCAs(context.Context, *config.Domain) (*x509.CertPool, error) {
	return nil, nil
}

func adUser(name string) ldaptest.Entry {
	return ldaptest.Entry{DN: "cn=" + name + ",dc=example,dc=com", Attrs: map[string][]string{
		"objectClass":    {"top", "person", "user"},
		"entryUUID":      {"00000000-0000-0000-0000-0000000000" + name[:2]},
		"sAMAccountType": {"805306368"},
		"displayName":    {name},
		"proxyAddresses": {"SMTP:" + name + "@example.com"},
	}}
}

// TestCredentialsAndOnApplied: a program hands the host the bind password
// from its own keeper (no password_file, no password_env), the host asks
// on each run, a keeper's error fails the run at its config stage, and
// OnApplied hears of each committed sync, not of a dry run or a failed
// one.
func TestCredentialsAndOnApplied(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Script{BindDN: "cn=reader,dc=example,dc=com", Password: "kept-by-the-panel",
		Entries: []ldaptest.Entry{adUser("alice"), adUser("bob")}})
	cfg := &config.Config{
		Path:     filepath.Join(t.TempDir(), "dirsync.toml"),
		Manifest: &config.Manifest{Policies: []config.Policy{{Name: "standard", Runtime: "builtin"}}},
		Domains: []config.Domain{{Name: "example.com", Sync: true, Policy: "standard", LDAP: config.LDAP{
			URLs: []string{srv.URL}, BindDN: "cn=reader,dc=example,dc=com", BaseDN: "dc=example,dc=com"}}},
	}
	secrets := &panelSecrets{passwords: map[string]string{"example.com": "kept-by-the-panel"}}
	var applied []*host.Report
	h, err := host.New(host.Options{Config: cfg, Store: memstore.New(), Credentials: secrets,
		OnApplied: func(rep *host.Report) { applied = append(applied, rep) },
		Builtins:  map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := t.Context()

	if _, err := h.Run(ctx, "example.com", host.RunOptions{DryRun: true}); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if len(applied) != 0 {
		t.Errorf("OnApplied was called for a dry run")
	}
	rep, err := h.Run(ctx, "example.com", host.RunOptions{})
	if err != nil {
		t.Fatalf("sync with the panel's password: %v", err)
	}
	if len(applied) != 1 || applied[0] != rep || rep.RunID == 0 || rep.Outcome != store.OutcomeOK || rep.Counts.Created != 2 {
		t.Fatalf("OnApplied got %d reports (want the sync's, run id set, 2 created): %+v", len(applied), rep)
	}
	if len(secrets.asked) != 2 {
		t.Errorf("the keeper was asked %d times, want once a run (2)", len(secrets.asked))
	}

	// The keeper loses the password: the run fails at its config stage with
	// the keeper's words, and OnApplied hears nothing.
	delete(secrets.passwords, "example.com")
	_, err = h.Run(ctx, "example.com", host.RunOptions{})
	var re *host.RunError
	if !errors.As(err, &re) || re.Stage != "config" || !strings.Contains(err.Error(), "keeps no password") {
		t.Fatalf("Run without the keeper's password = %v, want a config-stage failure naming it", err)
	}
	// A wrong password is the directory's refusal, at the fetch stage.
	secrets.passwords["example.com"] = "wrong"
	if _, err = h.Run(ctx, "example.com", host.RunOptions{}); !errors.As(err, &re) || re.Stage != "fetch" {
		t.Fatalf("Run with a wrong password = %v, want a fetch-stage failure", err)
	}
	if len(applied) != 1 {
		t.Errorf("OnApplied was called for a failed run (%d calls)", len(applied))
	}

	// Without Credentials the host reads the settings' own forms: none
	// here, so it binds without a password and the directory refuses.
	plain, err := host.New(host.Options{Config: cfg, Store: memstore.New(), Builtins: map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Run(ctx, "example.com", host.RunOptions{DryRun: true}); err == nil {
		t.Errorf("a run without the panel's password bound anyway")
	}
}
