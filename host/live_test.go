package host_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// TestLiveRunsTakeNoScheduledTurn: a scheduled run skips its turn when
// another run of the domain started within SkipIfStartedWithin, but not
// for a run of a live search's changes, or a domain whose directory changes
// often would never have a scheduled run (nor its full read on
// full_interval).
func TestLiveRunsTakeNoScheduledTurn(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "dirsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := &config.Config{
		Path:     filepath.Join(t.TempDir(), "dirsync.toml"),
		Manifest: &config.Manifest{Policies: []config.Policy{{Name: "standard", Runtime: "builtin"}}},
		Domains: []config.Domain{{Name: "example.com", Sync: true, Policy: "standard",
			LDAP: config.LDAP{URLs: []string{"ldap://127.0.0.1:1"}, BaseDN: "dc=example,dc=com"}}},
	}
	h, err := host.New(host.Options{Config: cfg, Store: st, Builtins: map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	record := func(holder string) {
		t.Helper()
		r := &store.Run{Domain: "example.com", Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK, Holder: holder, Read: store.ReadDelta}
		if err := st.RecordRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	scheduled := func() error {
		_, err := h.Run(ctx, "example.com", host.RunOptions{SkipIfStartedWithin: time.Hour})
		return err
	}
	record("vm pid 1 #7 (live)")
	if err := scheduled(); errors.Is(err, host.ErrRecentRun) {
		t.Errorf("a live run took the scheduled turn: %v", err)
	}
	record("vm pid 1 #8")
	if err := scheduled(); !errors.Is(err, host.ErrRecentRun) {
		t.Errorf("after a scheduled run moments ago: %v, want ErrRecentRun", err)
	}
}
