package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dirsync/dirsync/host/internal/pgtest"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/storetest"
	"github.com/dirsync/dirsync/sdk"
)

// srv is the package's throwaway server.
var srv *pgtest.Server

func TestMain(m *testing.M) {
	s, stop, err := pgtest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	stop()
	os.Exit(code)
}

// open opens a store in a new, empty schema: Open migrates it. (A schema
// per test costs a tenth of a database per test.)
func open(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(tb.Context(), srv.NewSchema(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// The schema is made on an empty database, recorded in schema_migrations,
// and found up to date on the next Open.
func TestMigrateEmptyDatabase(t *testing.T) {
	ctx := t.Context()
	dsn := srv.NewDatabase(t)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if gs, err := s.Groups(ctx, "example.com"); err != nil || len(gs) != 1 {
		t.Errorf("Groups after reopen = %v, %v", gs, err)
	}
	wantVersions(t, s, latestVersion())
}

// Replicas that open one empty database at once migrate it once.
func TestMigrateConcurrentOpens(t *testing.T) {
	dsn := srv.NewDatabase(t)
	const replicas = 6
	errs := make([]error, replicas)
	stores := make([]*Store, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = Open(t.Context(), dsn)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		} else {
			defer stores[i].Close()
		}
	}
	if t.Failed() {
		return
	}
	wantVersions(t, stores[0], latestVersion())
	// Every replica works on the one schema.
	for i, s := range stores {
		if err := s.AddGroup(t.Context(), "example.com", fmt.Sprintf("G%d", i)); err != nil {
			t.Errorf("replica %d: AddGroup: %v", i, err)
		}
	}
}

// wantVersions checks that schema_migrations holds versions 1 to n, each
// once.
func wantVersions(t *testing.T, s *Store, n int) {
	t.Helper()
	rows, err := s.pool.Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int32, n)
	for i := range want {
		want[i] = int32(i + 1)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schema_migrations has versions %v, want %v", got, want)
	}
}

// A database whose schema is newer than the code is refused by both opens,
// and left as it was.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	dsn := srv.NewSchema(t)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	newer := latestVersion() + 1
	if _, err := s.pool.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, newer); err != nil {
		t.Fatal(err)
	}
	s.Close()

	want := fmt.Sprintf("schema version %d is newer than this dirsync knows (%d)", newer, latestVersion())
	if s, err := Open(ctx, dsn); err == nil {
		s.Close()
		t.Error("Open accepted a schema newer than it knows")
	} else if !strings.Contains(err.Error(), want) {
		t.Errorf("Open: %v\nwant it to say %q", err, want)
	}
	if s, err := OpenReadOnly(ctx, dsn); err == nil {
		s.Close()
		t.Error("OpenReadOnly accepted a schema newer than it knows")
	} else if !strings.Contains(err.Error(), want) {
		t.Errorf("OpenReadOnly: %v\nwant it to say %q", err, want)
	}
}

// A wrong password fails Open with an error that names the database and
// says why, and shows neither the wrong password nor the right one; nor
// does an invalid DSN show its password.
func TestPasswordNotInErrors(t *testing.T) {
	ctx := t.Context()
	const wrong = "Wr0ng-pa55word-XYZ"
	dsn := srv.NewSchema(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	right, _ := u.User.Password()
	u.User = url.UserPassword(u.User.Username(), wrong)
	keyValue := fmt.Sprintf("host=%s port=%d user=%s password='%s' dbname=%s sslmode=disable",
		srv.Host, srv.Port, srv.User, wrong, strings.TrimPrefix(u.Path, "/"))
	noPassword := *u
	noPassword.User = url.User(u.User.Username())

	tests := []struct {
		name string
		dsn  string
		opts []Option
		want string // a part of the message
	}{
		{"URL", u.String(), nil, "password authentication failed"},
		{"KeyValue", keyValue, nil, "password authentication failed"},
		{"WithPassword", noPassword.String(), []Option{WithPassword(wrong)}, "password authentication failed"},
		{"WithPasswordOverDSN", dsn, []Option{WithPassword(wrong)}, "password authentication failed"},
		{"InvalidURL", "postgres://" + srv.User + ":" + wrong + "@" + srv.Host + ":notaport/db", nil, "invalid DSN"},
		{"InvalidKeyValue", "host=" + srv.Host + " password=" + wrong + " port=notaport", nil, "invalid DSN"},
		{"NoServer", "host=" + srv.Host + " port=1 user=dirsync password=" + wrong, nil, "failed to connect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, o := range []struct {
				name string
				open func(context.Context, string, ...Option) (*Store, error)
			}{{"Open", Open}, {"OpenReadOnly", OpenReadOnly}} {
				s, err := o.open(ctx, tc.dsn, tc.opts...)
				if err == nil {
					s.Close()
					t.Fatalf("%s with a wrong password succeeded", o.name)
				}
				msg := fmt.Sprintf("%v %+v %#v", err, err, err)
				for _, pw := range []string{wrong, right} {
					if strings.Contains(msg, pw) {
						t.Errorf("%s: error shows a password: %s", o.name, msg)
					}
				}
				if !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n") {
					t.Errorf("%s: error %q does not say %q on one line", o.name, err, tc.want)
				}
			}
		})
	}

	// The right password given apart from the DSN connects.
	s, err := Open(ctx, noPassword.String(), WithPassword(right))
	if err != nil {
		t.Fatalf("Open with WithPassword: %v", err)
	}
	s.Close()
	if got := RedactDSN(u.String()); strings.Contains(got, wrong) || !strings.Contains(got, srv.Host) {
		t.Errorf("RedactDSN = %q", got)
	}
	if got := RedactDSN(keyValue); strings.Contains(got, wrong) || !strings.Contains(got, "dbname=") {
		t.Errorf("RedactDSN = %q", got)
	}
}

// A read-only store reads what Open wrote, while the writer has it open,
// and refuses to write.
func TestOpenReadOnly(t *testing.T) {
	ctx := t.Context()
	dsn := srv.NewSchema(t)
	w, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddMailbox(ctx, "example.com", store.Mailbox{Primary: "carol@example.com", Aliases: []string{"c@example.com"},
		Groups: []string{"Sales"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.RecordRun(ctx, &store.Run{Domain: "example.com", Started: time.Now(), Ended: time.Now(),
		Outcome: store.OutcomeFailed, Stage: "fetch", SettingsVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.PutSettings(ctx, &store.SettingsVersion{Domain: "example.com", Settings: []byte(`{"sync":true}`),
		Secret: []byte{1, 2, 3}, Author: "cli"}, 0); err != nil {
		t.Fatal(err)
	}

	r, err := OpenReadOnly(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if ms, err := r.Mailboxes(ctx, "example.com"); err != nil || len(ms) != 1 || ms[0].Primary != "carol@example.com" ||
		!reflect.DeepEqual(ms[0].Groups, []string{"Sales"}) {
		t.Errorf("Mailboxes = %+v, %v", ms, err)
	}
	if runs, err := storetest.AllRuns(ctx, r, "example.com"); err != nil || len(runs) != 1 || runs[0].Stage != "fetch" {
		t.Errorf("Runs = %+v, %v", runs, err)
	}
	if p, err := r.Resolve(ctx, "c@example.com"); err != nil || p != "carol@example.com" {
		t.Errorf("Resolve = %q, %v", p, err)
	}
	if snap, err := r.Snapshot(ctx, "example.com", nil); err != nil || len(snap.Mailboxes) != 1 || snap.Generation == 0 {
		t.Errorf("Snapshot = %+v, %v", snap, err)
	}
	if ds, err := r.StoredDomains(ctx); err != nil || len(ds) != 1 || string(ds[0].Secret) != "\x01\x02\x03" {
		t.Errorf("StoredDomains = %+v, %v", ds, err)
	}
	writes := []struct {
		name string
		call func() error
	}{
		{"EnsureDomain", func() error { return r.EnsureDomain(ctx, "new.example.com") }},
		{"AddGroup", func() error { return r.AddGroup(ctx, "example.com", "Support") }},
		{"PutSettings", func() error {
			return r.PutSettings(ctx, &store.SettingsVersion{Domain: "example.com", Settings: []byte(`{}`), Author: "cli"}, 1)
		}},
		{"PruneRuns", func() error { _, err := r.PruneRuns(ctx, time.Now()); return err }},
		{"AcquireLease", func() error { _, err := r.AcquireLease(ctx, "example.com", "host-a", time.Minute); return err }},
		{"Apply", func() error {
			return r.Apply(ctx, "example.com", nil, &store.Run{Outcome: store.OutcomeOK, Generation: 2})
		}},
	}
	for _, w := range writes {
		if err := w.call(); err == nil {
			t.Errorf("%s on a read-only store succeeded", w.name)
		}
	}
	// The writer goes on writing.
	if err := w.AddGroup(ctx, "example.com", "Staff"); err != nil {
		t.Errorf("AddGroup after a read-only open: %v", err)
	}
}

// A read-only open of a database without the schema is a store.ErrNoStore
// and creates nothing; one with an older schema says how to upgrade it.
func TestOpenReadOnlyNoOrOldSchema(t *testing.T) {
	ctx := t.Context()
	dsn := srv.NewSchema(t)
	s, err := OpenReadOnly(ctx, dsn)
	if err == nil {
		s.Close()
		t.Fatal("OpenReadOnly of an empty database succeeded")
	}
	if !errors.Is(err, store.ErrNoStore) || !strings.Contains(err.Error(), srv.Host) {
		t.Errorf("OpenReadOnly of an empty database = %v, want ErrNoStore naming the server", err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var tables int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("OpenReadOnly left %d tables (%v)", tables, err)
	}

	// A schema_migrations table without the versions of this code: an
	// older schema.
	if _, err := c.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	s, err = OpenReadOnly(ctx, dsn)
	if err == nil {
		s.Close()
		t.Fatal("OpenReadOnly of an older schema succeeded")
	}
	want := fmt.Sprintf("has schema version 0, this dirsync needs %d: any command that writes (dirsync sync …) upgrades it", latestVersion())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("OpenReadOnly of an older schema = %v\nwant it to say %q", err, want)
	}
}

// Lease times come from the database's clock: a lease taken with a TTL
// expires TTL after the database's now, whatever the process's clock says.
func TestLeaseUsesDatabaseClock(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	l, err := s.AcquireLease(ctx, "example.com", "host-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var dbNow time.Time
	if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&dbNow); err != nil {
		t.Fatal(err)
	}
	if d := l.Expiry.Sub(l.Since); d != time.Minute {
		t.Errorf("expiry - since = %v, want the TTL", d)
	}
	if l.Since.After(dbNow) || dbNow.Sub(l.Since) > 10*time.Second {
		t.Errorf("since %v, database now %v", l.Since, dbNow)
	}
	// A lease whose expiry the database's clock has passed is taken over.
	if _, err := s.pool.Exec(ctx, `UPDATE leases SET expiry = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLease(ctx, "example.com", "host-b", time.Minute); err != nil {
		t.Errorf("AcquireLease of a lease expired by the database's clock: %v", err)
	}
}

// Apply records the changes it made when the caller leaves run.Changes nil.
func TestApplyFillsRunChanges(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	if err := s.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Fatal(err)
	}
	alice := &store.Mailbox{DirID: "g1", DN: "cn=alice", Kind: sdk.KindUser, Primary: "alice@example.com",
		Aliases: []string{"al@example.com"}, Groups: []string{"Sales"}}
	run := newRun(t, s)
	changes := []store.Change{
		{Kind: sdk.ChangeCreate, After: alice},
		{Kind: sdk.ChangeAddMember, After: &store.Mailbox{DirID: "g1", Primary: "alice@example.com"}, Group: "Sales"},
	}
	if err := s.Apply(ctx, "example.com", changes, run); err != nil {
		t.Fatal(err)
	}
	want := []store.RunChange{
		{Kind: "create", Address: "alice@example.com", After: &store.MailboxView{
			Primary: "alice@example.com", Aliases: []string{"al@example.com"}, Kind: sdk.KindUser,
			DN: "cn=alice", Groups: []string{"Sales"}}},
		{Kind: "add_member", Address: "alice@example.com", Group: "Sales"},
	}
	runs, err := storetest.AllRuns(ctx, s, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != run.ID || runs[0].Domain != "example.com" || !reflect.DeepEqual(runs[0].Changes, want) {
		t.Errorf("Runs = %+v\nwant one run %d with changes %+v", runs, run.ID, want)
	}
}

// A cancelled Apply writes nothing.
func TestApplyCancelled(t *testing.T) {
	s := storeWithGroups(t)
	changes := createChanges(100_000)
	run := newRun(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := s.Apply(ctx, "example.com", changes, run)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply = %v, want context.Canceled", err)
	}
	if ms, err := s.Mailboxes(t.Context(), "example.com"); err != nil || len(ms) != 0 {
		t.Errorf("a cancelled Apply left %d mailboxes (%v)", len(ms), err)
	}
	if runs, err := storetest.AllRuns(t.Context(), s, "example.com"); err != nil || len(runs) != 0 {
		t.Errorf("a cancelled Apply recorded %d runs (%v)", len(runs), err)
	}
}

// When a COPY of an Apply hits a taken address, the error names the change
// that takes it first in the order of the phases, and nothing is written.
func TestApplyCopyConflictNamesChange(t *testing.T) {
	ctx := t.Context()
	s := storeWithGroups(t)
	if _, err := s.AddMailbox(ctx, "other.com", store.Mailbox{Primary: "olga@other.com", Aliases: []string{"u000500@example.org"}}); err != nil {
		t.Fatal(err)
	}
	changes := createChanges(1000)
	err := s.Apply(ctx, "example.com", changes, newRun(t, s))
	if !errors.Is(err, store.ErrExists) || !strings.Contains(err.Error(), "create user000500@example.com") ||
		!strings.Contains(err.Error(), "olga@other.com") {
		t.Errorf("Apply = %v, want ErrExists naming the create of user000500@example.com and olga@other.com", err)
	}
	if ms, err := s.Mailboxes(ctx, "example.com"); err != nil || len(ms) != 0 {
		t.Errorf("a failed Apply left %d mailboxes (%v)", len(ms), err)
	}
	// Without the conflict it applies; ids are distinct and new.
	if err := s.RemoveMailbox(ctx, "other.com", "olga@other.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, "example.com", changes, newRun(t, s)); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx, "example.com", []string{"example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Mailboxes) != 1000 || len(snap.Owners) != 2000 {
		t.Errorf("%d mailboxes, %d owners; want 1000 and 2000", len(snap.Mailboxes), len(snap.Owners))
	}
	m := snap.Mailboxes[7]
	want := *changes[7].After
	want.ID = m.ID
	if !reflect.DeepEqual(m, want) {
		t.Errorf("mailbox = %+v\nwant      %+v", m, want)
	}
}

// PruneRuns deletes more runs than fit in one of its statements, and
// keeps the running one among them.
func TestPruneRunsInBatches(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	const old = 2*pruneBatch + 1
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	if err := s.EnsureDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO runs (domain, started, ended, outcome, counts)
		SELECT 'example.com', $1::timestamptz, CASE WHEN i = $3 THEN NULL ELSE $1::timestamptz + i * interval '1 second' END,
			CASE WHEN i = $3 THEN 'running' ELSE 'ok' END, '{}'
		FROM generate_series(0, $2) AS i`, t0, old, old/2)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneRuns(ctx, t0.Add(time.Hour))
	if err != nil || n != old {
		t.Errorf("PruneRuns = %d, %v; want %d", n, err, old)
	}
	if runs, err := storetest.AllRuns(ctx, s, "example.com"); err != nil || len(runs) != 1 || runs[0].Outcome != store.OutcomeRunning {
		t.Errorf("Runs after pruning = %+v, %v; want the running one", runs, err)
	}
}

// newRun is a successful run of example.com computed from its current
// generation.
func newRun(tb testing.TB, s *Store) *store.Run {
	tb.Helper()
	snap, err := s.Snapshot(tb.Context(), "example.com", nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &store.Run{Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK, Generation: snap.Generation}
}

// createChanges returns n creates with one alias and one group each, as
// the SQLite store's benchmarks make them.
func createChanges(n int) []store.Change {
	changes := make([]store.Change, n)
	for i := range changes {
		changes[i] = store.Change{Kind: sdk.ChangeCreate, After: &store.Mailbox{
			DirID:       fmt.Sprintf("0b5c3f9e-%04x-4e2b-9d1a-%012x", i%0x10000, i),
			DN:          fmt.Sprintf("CN=User %d,OU=Staff,DC=example,DC=com", i),
			Kind:        sdk.KindUser,
			Primary:     fmt.Sprintf("user%06d@example.com", i),
			Aliases:     []string{fmt.Sprintf("u%06d@example.org", i)},
			DisplayName: fmt.Sprintf("User %d", i),
			Source:      sdk.SourceLDAP,
			Groups:      []string{fmt.Sprintf("Group %d", i%20)},
		}}
	}
	return changes
}

// storeWithGroups opens a new store with the 20 groups createChanges uses.
func storeWithGroups(tb testing.TB) *Store {
	s := open(tb)
	for g := range 20 {
		if err := s.AddGroup(tb.Context(), "example.com", fmt.Sprintf("Group %d", g)); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// BenchmarkApply100k applies the first sync of a 100,000-user domain:
// 100,000 creates with one alias and one group each, in one Apply. It is
// the SQLite store's BenchmarkApplyCreate100k, on PostgreSQL.
func BenchmarkApply100k(b *testing.B) {
	changes := createChanges(100_000)
	for b.Loop() {
		b.StopTimer()
		s := storeWithGroups(b)
		run := newRun(b, s)
		b.StartTimer()
		if err := s.Apply(b.Context(), "example.com", changes, run); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshot100k reads a 100,000-mailbox domain.
func BenchmarkSnapshot100k(b *testing.B) {
	s := storeWithGroups(b)
	run := newRun(b, s)
	if err := s.Apply(b.Context(), "example.com", createChanges(100_000), run); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(b.Context(), `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		snap, err := s.Snapshot(b.Context(), "example.com", []string{"example.org"})
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Mailboxes) != 100_000 || len(snap.Owners) != 200_000 {
			b.Fatalf("%d mailboxes, %d owners", len(snap.Mailboxes), len(snap.Owners))
		}
	}
}

// Open upgrades a schema of version 1: the runs kept get the number of
// their changes, which read back as before.
func TestUpgradeFromV1(t *testing.T) {
	ctx := t.Context()
	dsn := srv.NewSchema(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
		migrations[0].sql,
		`INSERT INTO schema_migrations (version) VALUES (1)`,
		`INSERT INTO domains (name) VALUES ('example.com')`,
		`INSERT INTO runs (id, domain, started, ended, outcome, counts) VALUES
			(1, 'example.com', now(), now(), 'ok', '{}'), (2, 'example.com', now(), now(), 'failed', '{}')`,
		`INSERT INTO run_changes (run_id, seq, kind, address, grp, before, after) VALUES
			(1, 0, 'create', 'a@example.com', '', NULL, '{"primary":"a@example.com","kind":"user"}'),
			(1, 1, 'add_member', 'a@example.com', 'Sales', NULL, NULL),
			(1, 2, 'delete', 'b@example.com', '', '{"primary":"b@example.com","kind":"user"}', NULL)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantVersions(t, s, latestVersion())
	page, err := s.RunsPage(ctx, "example.com", 0, 0)
	if err != nil || len(page) != 2 || page[0].ChangeCount != 0 || page[1].ChangeCount != 3 {
		t.Fatalf("RunsPage after the upgrade = %+v, %v; want runs 2 and 1 with 0 and 3 changes", page, err)
	}
	want := []store.RunChange{
		{Kind: "add_member", Address: "a@example.com", Group: "Sales"},
		{Kind: "delete", Address: "b@example.com", Before: &store.MailboxView{Primary: "b@example.com", Kind: sdk.KindUser}},
	}
	if rcs, err := s.RunChanges(ctx, "example.com", 1, 1, 0); err != nil || !reflect.DeepEqual(rcs, want) {
		t.Errorf("RunChanges(1, offset 1) after the upgrade = %+v, %v; want %+v", rcs, err, want)
	}
}
