package host_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// partFailing is a store whose part reads fail, as when the database goes
// away between the kept state's read and the part's.
type partFailing struct{ *sqlite.Store }

var errGone = errors.New("the database went away")

func (partFailing) SnapshotPart(context.Context, string, []string, []string, []string) (*store.Snapshot, int, error) {
	return nil, 0, errGone
}

// TestPartReadFails: a delta whose read of the store's part fails is a
// failed run at stage "store", recorded, that changes nothing.
func TestPartReadFails(t *testing.T) {
	ctx := context.Background()
	root, _ := filepath.Abs("..")
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{filepath.Join(root, "examples", "directory", "sample.ldif")}, LogLevel: "none"})
	dir := t.TempDir()
	pw := filepath.Join(dir, "admin.pw")
	if err := os.WriteFile(pw, []byte(srv.AdminPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	st := openSQLite(t)
	d := config.NewDomain("example.com")
	d.Sync, d.Policy, d.AliasDomains = true, "standard", []string{"example.org"}
	d.LDAP.URLs, d.LDAP.BaseDN, d.LDAP.BindDN, d.LDAP.PasswordFile = []string{srv.URL}, srv.BaseDN, srv.AdminDN, pw
	cfg := &config.Config{
		Path:     filepath.Join(dir, "dirsync.toml"),
		Manifest: &config.Manifest{Policies: []config.Policy{{Name: "standard", Runtime: "builtin"}}},
		Domains:  []config.Domain{d},
	}
	h, err := host.New(host.Options{Config: cfg, Store: partFailing{st}, Builtins: map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if rep, err := h.Run(ctx, "example.com", host.RunOptions{}); err != nil || rep.Read != store.ReadFull {
		t.Fatalf("first sync: %v (read %q)", err, rep.Read)
	}
	before, err := st.Mailboxes(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Replace("cn=Alice Anders,ou=People,dc=example,dc=com", "displayName", "Alice A."); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Run(ctx, "example.com", host.RunOptions{})
	var re *host.RunError
	if !errors.As(err, &re) || re.Stage != "store" || !errors.Is(err, errGone) || rep.Read != store.ReadDelta {
		t.Fatalf("delta whose part read fails: %v (read %q), want a failure at stage store", err, rep.Read)
	}
	after, err := st.Mailboxes(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("the failed run changed the store")
	}
	runs, err := st.RunsPage(ctx, "example.com", 0, 0)
	if err != nil || len(runs) != 2 || runs[0].Outcome != store.OutcomeFailed || runs[0].Stage != "store" {
		t.Fatalf("runs = %+v, %v; want the failed delta recorded at stage store", runs, err)
	}
}
