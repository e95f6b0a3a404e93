package host_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// unrecordable is a store whose run records cannot be written, as when the
// database stays locked past its busy timeout.
type unrecordable struct{ store.Store }

var errLocked = errors.New("database is locked (SQLITE_BUSY)")

func (unrecordable) RecordRun(context.Context, *store.Run) error { return errLocked }

// TestUnrecordedRunFails protects S5: a run whose record cannot be written
// does not pass as a mere log line; Run fails naming both the run's own
// failure and the record's.
func TestUnrecordedRunFails(t *testing.T) {
	st := openSQLite(t)
	h := unreachableHost(t, unrecordable{st})
	_, err := h.Run(context.Background(), "example.com", host.RunOptions{})
	var re *host.RunError
	if !errors.As(err, &re) || re.Stage != "record" || !errors.Is(err, errLocked) || !strings.Contains(err.Error(), "ldap://127.0.0.1:1") {
		t.Fatalf("Run = %v, want a failure at stage record naming the unreachable server and the locked store", err)
	}
	// The run's start row is there, still running: the next run of the
	// domain marks it abandoned once the lease has gone.
	runs, err := st.RunsPage(context.Background(), "example.com", 0, 0)
	if err != nil || len(runs) != 1 || runs[0].Outcome != store.OutcomeRunning {
		t.Fatalf("runs = %+v, %v; want the one started row", runs, err)
	}
}

// openSQLite opens a new SQLite store that the test closes.
func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "dirsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// unreachableHost is a Host over st whose domain example.com reads a
// directory that is not there (a run fails at its fetch), with the
// builtin standard policy.
func unreachableHost(t *testing.T, st store.Store) *host.Host {
	t.Helper()
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
	t.Cleanup(func() { h.Close() })
	return h
}
