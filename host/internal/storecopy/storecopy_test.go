package storecopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dirsync/dirsync/host/internal/pgtest"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/postgres"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/host/store/storetest"
	"github.com/dirsync/dirsync/sdk"
)

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

// TestSchemasAreMapped: every table and column of both schemas is one the
// package documentation maps. A new migration of either store fails here
// until Copy (and its mapping) knows what it added.
func TestSchemasAreMapped(t *testing.T) {
	ctx := t.Context()
	sqliteCols := map[string]string{
		"domains":             "name generation",
		"mailboxes":           "id domain primary_address kind display_name source dir_id dn",
		"addresses":           "address domain mailbox_id is_primary",
		"groups":              "id domain name source",
		"memberships":         "mailbox_id group_id source",
		"runs":                "id domain started ended outcome error server counts changes stage holder settings intended refs settings_version change_count read",
		"leases":              "domain holder run_id since expiry",
		"settings":            "domain version settings secret author created removed",
		"dir_state":           "domain key cookie full_at head entries",
		"sqlite_sequence":     "name seq",
		"dir_state_summaries": "domain seq summary",
		"dir_state_chunks":    "domain seq data",
	}
	pgCols := map[string]string{
		"domains":             "name generation",
		"mailboxes":           "id domain primary_address kind display_name source dir_id dn",
		"addresses":           "address domain mailbox_id is_primary",
		"groups":              "id domain name source",
		"memberships":         "mailbox_id group_id source",
		"runs":                "id domain started ended outcome stage error server holder settings_version settings counts intended refs change_count read",
		"run_changes":         "run_id seq kind address grp before after",
		"leases":              "domain holder run_id since expiry",
		"settings":            "domain version settings secret author created removed",
		"dir_state":           "domain key cookie full_at head entries",
		"schema_migrations":   "version applied_at",
		"dir_state_summaries": "domain seq summary",
		"dir_state_chunks":    "domain seq data",
	}

	src, err := sqlite.Open(filepath.Join(t.TempDir(), "dirsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got := map[string]string{}
	rows, err := src.DB().QueryContext(ctx, `
		SELECT m.name, group_concat(c.name, ' ') FROM sqlite_master AS m, pragma_table_info(m.name) AS c
		WHERE m.type = 'table' GROUP BY m.name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table, cols string
		if err := rows.Scan(&table, &cols); err != nil {
			t.Fatal(err)
		}
		got[table] = cols
	}
	rows.Close()
	if !reflect.DeepEqual(got, sqliteCols) {
		t.Errorf("the SQLite schema changed: teach storecopy to copy it\n got %v\nwant %v", got, sqliteCols)
	}

	dst := openTarget(t)
	got = map[string]string{}
	prows, err := dst.Pool().Query(ctx, `
		SELECT table_name, string_agg(column_name, ' ' ORDER BY ordinal_position) FROM information_schema.columns
		WHERE table_schema = current_schema() GROUP BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	for prows.Next() {
		var table, cols string
		if err := prows.Scan(&table, &cols); err != nil {
			t.Fatal(err)
		}
		got[table] = cols
	}
	prows.Close()
	if !reflect.DeepEqual(got, pgCols) {
		t.Errorf("the PostgreSQL schema changed: teach storecopy to copy it\n got %v\nwant %v", got, pgCols)
	}
}

// openTarget opens a PostgreSQL store in an empty schema of its own.
func openTarget(t *testing.T) *postgres.Store {
	t.Helper()
	dst, err := postgres.Open(t.Context(), srv.NewSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	return dst
}

// fixture is a SQLite store with a bit of everything in it.
type fixture struct {
	path string
	// highest ids ever given out, deleted rows included.
	maxMailbox, maxRun int64
}

const (
	dom   = "example.com"
	alias = "example.org"
	other = "other.test"
)

// newFixture writes a SQLite store through the store's own methods: LDAP
// and hand-made mailboxes with aliases in two domains, groups with
// memberships of both sources, runs of every outcome with changes,
// intended counts, references and settings, a pruned run and a deleted
// mailbox (ids of the AUTOINCREMENT counters beyond the rows), settings
// versions with and without a sealed secret and a removal, directory
// states (one with an empty cookie and no entries, in chunks, patched
// since) and runs of both reads, and a lease held now.
func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "var", "dirsync.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"Sales", "sales", "All Staff"} {
		must(s.AddGroup(ctx, dom, g))
	}
	must(s.AddGroup(ctx, other, "Ops"))

	// A pruned run first: its id is given out and gone.
	old := time.Now().Add(-72 * time.Hour)
	must(s.RecordRun(ctx, &store.Run{Domain: dom, Started: old, Ended: old.Add(time.Second), Outcome: store.OutcomeFailed, Stage: "fetch", Error: "old"}))
	if n, err := s.PruneRuns(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("PruneRuns = %d, %v", n, err)
	}

	create := func(dirID, primary string, aliases []string, groups ...string) store.Change {
		return store.Change{Kind: sdk.ChangeCreate, After: &store.Mailbox{
			DirID: dirID, DN: "cn=" + dirID + ",dc=example,dc=com", Kind: sdk.KindUser, Primary: primary,
			Aliases: aliases, DisplayName: "Dir " + dirID + " ü", Source: sdk.SourceLDAP, Groups: groups,
		}}
	}
	apply := func(domain string, run *store.Run, changes ...store.Change) {
		t.Helper()
		snap, err := s.Snapshot(ctx, domain, nil)
		must(err)
		run.Domain, run.Generation = domain, snap.Generation
		must(s.Apply(ctx, domain, changes, run))
	}
	start := time.Now().Add(-time.Hour)
	folder := create("guid-f", "shared@example.com", nil)
	folder.After.Kind = sdk.KindPublicFolder
	apply(dom, &store.Run{Started: start, Ended: start.Add(1234567891 * time.Nanosecond), Outcome: store.OutcomeOK,
		Server: "ldap://dc1.example.com", Holder: "host pid 1 #1", SettingsVersion: 1, Settings: `{"name":"example.com"}`,
		Counts:     store.Counts{Created: 4, Entries: 9, Skipped: 2, Cached: 3},
		References: []string{"ldap://dc2.example.com/dc=sub,dc=example,dc=com"}, Read: store.ReadFull,
		DirState: &store.DirState{Key: "first key", Cookie: []byte("first"), FullAt: start, Entries: []byte("replaced"), Head: []byte("replaced head")}},
		create("guid-a", "alice@example.com", []string{"a.anders@example.com", "alice@example.org"}, "Sales", "All Staff"),
		create("guid-b", "bob@example.com", []string{"bob.b@example.com"}, "sales"),
		create("guid-z", "zed@example.com", nil),
		folder)
	apply(other, &store.Run{Started: start.Add(time.Minute), Ended: start.Add(2 * time.Minute), Outcome: store.OutcomeOK,
		Read: store.ReadFull, DirState: &store.DirState{Key: "other key", Cookie: []byte{}, Head: []byte{}, FullAt: start.Add(time.Minute),
			Chunks: fixtureChunks(0, 200)}},
		create("guid-o", "ops@other.test", []string{"ops@example.org"}, "Ops"))
	// A patch: 0–9 replaced, 10–19 deleted, 1000–1004 added.
	patch := append(fixtureChunks(0, 10), fixtureChunks(1000, 1005)...)
	for i := range patch[:10] {
		patch[i].Data = append(patch[i].Data, 'p')
	}
	for seq := int64(10); seq < 20; seq++ {
		patch = append(patch, store.StateChunk{Seq: seq})
	}
	apply(other, &store.Run{Started: start.Add(150 * time.Second), Ended: start.Add(160 * time.Second), Outcome: store.OutcomeOK,
		Read: store.ReadDelta, DirState: &store.DirState{Key: "other key", Cookie: []byte{}, Head: []byte{}, FullAt: start.Add(time.Minute),
			Chunks: patch, Patch: true}})
	_, err = s.AddMailbox(ctx, dom, store.Mailbox{Primary: "postmaster@example.com", Kind: sdk.KindUser,
		Source: sdk.SourceManual, Groups: []string{"Sales"}})
	must(err)
	must(s.Assign(ctx, dom, "All Staff", "postmaster@example.com"))
	must(s.Assign(ctx, dom, "sales", "alice@example.com")) // hand-made, of an LDAP mailbox
	// The highest mailbox goes: its id stays given out.
	last, err := s.AddMailbox(ctx, dom, store.Mailbox{Primary: "gone@example.com", Kind: sdk.KindUser, Source: sdk.SourceManual})
	must(err)
	must(s.RemoveMailbox(ctx, dom, "gone@example.com"))

	snap, err := s.Snapshot(ctx, dom, nil)
	must(err)
	var zed, bob *store.Mailbox
	for i := range snap.Mailboxes {
		switch snap.Mailboxes[i].Primary {
		case "zed@example.com":
			zed = &snap.Mailboxes[i]
		case "bob@example.com":
			bob = &snap.Mailboxes[i]
		}
	}
	upd := *bob
	upd.DisplayName, upd.Aliases = "Bob B.", []string{"bob.b@example.com", "bb@example.com"}
	entries := make([]byte, 3<<20) // every byte value, a few MB of them
	for i := range entries {
		entries[i] = byte(i * 7)
	}
	apply(dom, &store.Run{Started: start.Add(3 * time.Minute), Ended: start.Add(4 * time.Minute), Outcome: store.OutcomeOK,
		Counts: store.Counts{Updated: 1, Deleted: 1, MembersRemoved: 1}, Read: store.ReadDelta,
		DirState: &store.DirState{Key: "dc1|dc=example,dc=com|(objectClass=*)|standard", Cookie: []byte("rid=001,csn=x\x00\xff"),
			FullAt: start.Add(-time.Hour + 1234567891*time.Nanosecond), Entries: entries, Head: []byte("v1\x00\xff head")}},
		store.Change{Kind: sdk.ChangeUpdate, Before: bob, After: &upd},
		store.Change{Kind: sdk.ChangeDelete, Before: zed},
		store.Change{Kind: sdk.ChangeRemoveMember, Before: bob, Group: "sales"})

	// Runs that changed nothing: stopped with intended counts and its
	// would-be changes, failed, recorded without an end.
	must(s.RecordRun(ctx, &store.Run{Domain: dom, Started: start.Add(5 * time.Minute), Ended: start.Add(6 * time.Minute),
		Outcome: store.OutcomeStopped, Stage: "guard", Error: "would delete 3 mailboxes", Read: store.ReadDelta,
		Intended: &store.Counts{Deleted: 3}, Changes: []store.RunChange{
			{Kind: "delete", Address: "alice@example.com", Before: &store.MailboxView{Primary: "alice@example.com", Kind: sdk.KindUser, Groups: []string{"Sales"}}},
			{Kind: "add_member", Address: "bob@example.com", Group: "All Staff"},
		}}))
	must(s.RecordRun(ctx, &store.Run{Domain: dom, Started: start.Add(7 * time.Minute), Ended: start.Add(7 * time.Minute),
		Outcome: store.OutcomeFailed, Stage: "fetch", Error: "ldap: connection refused \x1b[31m", Intended: &store.Counts{}}))
	must(s.RecordRun(ctx, &store.Run{Domain: other, Started: start.Add(8 * time.Minute), Outcome: store.OutcomeCancelled}))
	// A run going on now, with its lease.
	if _, err := s.AcquireLease(ctx, other, "host pid 2 #7", time.Hour); err != nil {
		t.Fatal(err)
	}
	running := &store.Run{Domain: other, Started: time.Now(), Holder: "host pid 2 #7", Read: store.ReadFull}
	must(s.StartRun(ctx, running))

	// Settings: two versions with sealed secrets, then a removal; another
	// domain without a secret.
	v := &store.SettingsVersion{Domain: dom, Settings: []byte(`{"name":"example.com","sync":true}`),
		Secret: []byte{0, 1, 2, 0xff, 0xfe, 'x'}, Author: "cli"}
	must(s.PutSettings(ctx, v, 0))
	must(s.PutSettings(ctx, &store.SettingsVersion{Domain: dom, Settings: []byte(`{"name":"example.com","sync":false}` + "\n"),
		Secret: []byte("sealed-2"), Author: "admin token"}, 1))
	must(s.RemoveSettings(ctx, dom, "cli"))
	must(s.PutSettings(ctx, &store.SettingsVersion{Domain: "kept.test", Settings: []byte(`{}`), Author: "api"}, 0))

	return fixture{path: path, maxMailbox: last, maxRun: running.ID}
}

// fixtureChunks are chunks of seqs from to to (not included) of every byte
// value: chunk 3 has no summary, chunk 5 data of 20 KB, chunk 7 none.
func fixtureChunks(from, to int64) []store.StateChunk {
	var cs []store.StateChunk
	for seq := from; seq < to; seq++ {
		c := store.StateChunk{Seq: seq, Summary: make([]byte, 1300), Data: make([]byte, 3500)}
		switch seq {
		case 3:
			c.Summary = nil
		case 5:
			c.Data = make([]byte, 20<<10)
		case 7:
			c.Data = nil
		}
		for i := range c.Summary {
			c.Summary[i] = byte(int64(i) * (seq + 1))
		}
		for i := range c.Data {
			c.Data[i] = byte(int64(i) * (seq + 3))
		}
		cs = append(cs, c)
	}
	return cs
}

// copyFixture copies the fixture's store into a new target and returns it
// with the result.
func copyFixture(t *testing.T, f fixture) (*postgres.Store, *Result) {
	t.Helper()
	src, err := sqlite.OpenReadOnly(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := openTarget(t)
	var progress []string
	res, err := Copy(t.Context(), src, dst, Options{Progress: func(p Progress) { progress = append(progress, p.Table) }})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.name)
	}
	if !slices.Equal(progress, names) {
		t.Errorf("progress for %v, want %v", progress, names)
	}
	return dst, res
}

// TestCopy: everything the SQLite store holds reads back the same from the
// PostgreSQL store, through the Store methods, but the leases; ids are
// kept and new ones come after every id the source gave out.
func TestCopy(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	dst, res := copyFixture(t, f)

	// example.org holds addresses but is no domain of the store.
	want := map[string]int64{"domains": 3, "groups": 4, "mailboxes": 5, "addresses": 10, "memberships": 6,
		"runs": 8, "run_changes": 10, "settings": 4, "dir_state": 2, "dir_state_summaries": 195, "dir_state_chunks": 195}
	for _, c := range res.Counts {
		if c.Source != c.Target || c.Source != want[c.Table] {
			t.Errorf("%s: source %d, target %d, want %d", c.Table, c.Source, c.Target, want[c.Table])
		}
	}
	if len(res.Held) != 1 || res.Held[0].Domain != other || res.Held[0].Holder != "host pid 2 #7" {
		t.Errorf("held leases = %+v, want the one of %s", res.Held, other)
	}

	src, err := sqlite.OpenReadOnly(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	same := func(what string, a, b any) {
		t.Helper()
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s differs:\nsqlite   %+v\npostgres %+v", what, a, b)
		}
	}
	for _, d := range []string{dom, alias, other, "kept.test"} {
		for _, aliases := range [][]string{nil, {alias}, {dom}} {
			a, err1 := src.Snapshot(ctx, d, aliases)
			b, err2 := dst.Snapshot(ctx, d, aliases)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			same("snapshot of "+d, a, b)
		}
		a, err1 := storetest.AllRuns(ctx, src, d)
		b, err2 := storetest.AllRuns(ctx, dst, d)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		same("runs of "+d, utcRuns(a), utcRuns(b))
		da, err1 := src.DirState(ctx, d)
		db, err2 := dst.DirState(ctx, d)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		same("directory state of "+d, utcState(da), utcState(db))
		sa, err1 := src.DirStateHead(ctx, d)
		sb, err2 := dst.DirStateHead(ctx, d)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		same("directory state head of "+d, utcState(sa), utcState(sb))
		sa, err1 = src.DirStateSummaries(ctx, d)
		sb, err2 = dst.DirStateSummaries(ctx, d)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		same("directory state summaries of "+d, utcState(sa), utcState(sb))
		var seqs []int64
		if sb != nil {
			for _, c := range sb.Chunks {
				seqs = append(seqs, c.Seq)
			}
		}
		ca, err1 := src.DirStateChunks(ctx, d, append(seqs, 15, 2000))
		cb, err2 := dst.DirStateChunks(ctx, d, append(seqs, 15, 2000))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		same("directory state chunks of "+d, ca, cb)
		// The chunks the fixture left: 0–199 written, 0–9 replaced,
		// 10–19 deleted, 1000–1004 added.
		var wantChunks []store.StateChunk
		if d == other {
			wantChunks = append(fixtureChunks(0, 10), fixtureChunks(20, 200)...)
			for i := range wantChunks[:10] {
				wantChunks[i].Data = append(wantChunks[i].Data, 'p')
			}
			wantChunks = append(wantChunks, fixtureChunks(1000, 1005)...)
		}
		if db != nil && (len(db.Chunks) != len(wantChunks) || (d == other && db.Entries != nil)) {
			t.Errorf("directory state of %s in the target: %d chunks, %d bytes of entries; want %d chunks", d, len(db.Chunks), len(db.Entries), len(wantChunks))
		} else if db != nil {
			for i, c := range db.Chunks {
				w := wantChunks[i]
				if c.Seq != w.Seq || !bytes.Equal(c.Summary, w.Summary) || !bytes.Equal(c.Data, w.Data) {
					t.Errorf("directory state of %s in the target: chunk %d (seq %d) differs from the one written (seq %d)", d, i, c.Seq, w.Seq)
					break
				}
			}
		}
		// The states the fixture left: the last of each domain applied.
		var key string
		var entries int
		var head []byte
		if db != nil {
			key, entries, head = db.Key, len(db.Entries), db.Head
		}
		wantKey, wantEntries := map[string]string{dom: "dc1|dc=example,dc=com|(objectClass=*)|standard", other: "other key"}[d], 0
		var wantHead []byte
		if d == dom {
			wantEntries, wantHead = 3<<20, []byte("v1\x00\xff head")
		}
		if key != wantKey || entries != wantEntries || !bytes.Equal(head, wantHead) {
			t.Errorf("directory state of %s in the target: key %q, %d bytes of entries, head %q; want %q, %d bytes, %q",
				d, key, entries, head, wantKey, wantEntries, wantHead)
		}
		ha, err1 := src.SettingsHistory(ctx, d)
		hb, err2 := dst.SettingsHistory(ctx, d)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		same("settings history of "+d, utcSettings(ha), utcSettings(hb))
		for _, v := range ha {
			a, err1 := src.Settings(ctx, d, v.Version)
			b, err2 := dst.Settings(ctx, d, v.Version)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			same(fmt.Sprintf("settings %d of %s", v.Version, d), utcSettings([]store.SettingsVersion{*a}), utcSettings([]store.SettingsVersion{*b}))
		}
	}
	la, err1 := src.LastRuns(ctx)
	lb, err2 := dst.LastRuns(ctx)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	for d := range la {
		same("last run of "+d, utcRuns([]store.Run{la[d]}), utcRuns([]store.Run{lb[d]}))
	}
	same("last runs' domains", len(la), len(lb))
	sa, err1 := src.StoredDomains(ctx)
	sb, err2 := dst.StoredDomains(ctx)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	same("stored domains", utcSettings(sa), utcSettings(sb))
	if p, err := dst.Resolve(ctx, "ops@example.org"); err != nil || p != "ops@other.test" {
		t.Errorf("Resolve = %q, %v", p, err)
	}

	// No lease came along: the running run's domain is free on the target.
	if _, err := dst.AcquireLease(ctx, other, "new holder", time.Minute); err != nil {
		t.Errorf("AcquireLease on the target: %v", err)
	}
	// New ids come after every id the source gave out.
	id, err := dst.AddMailbox(ctx, dom, store.Mailbox{Primary: "new@example.com", Kind: sdk.KindUser, Source: sdk.SourceManual})
	if err != nil || id != f.maxMailbox+1 {
		t.Errorf("AddMailbox = %d, %v; want id %d", id, err, f.maxMailbox+1)
	}
	run := &store.Run{Domain: other, Holder: "new holder"}
	if err := dst.StartRun(ctx, run); err != nil || run.ID != f.maxRun+1 {
		t.Errorf("StartRun: id %d, %v; want id %d", run.ID, err, f.maxRun+1)
	}
	if err := dst.AddGroup(ctx, dom, "New"); err != nil {
		t.Fatal(err)
	}
	var gid, gmax int64
	if err := dst.Pool().QueryRow(ctx, `SELECT (SELECT id FROM groups WHERE name = 'New'), (SELECT max(id) FROM groups WHERE name <> 'New')`).Scan(&gid, &gmax); err != nil || gid != gmax+1 {
		t.Errorf("new group id %d after %d (%v)", gid, gmax, err)
	}
	var leases int
	if err := dst.Pool().QueryRow(ctx, `SELECT count(*) FROM leases WHERE holder <> 'new holder'`).Scan(&leases); err != nil || leases != 0 {
		t.Errorf("%d leases copied (%v)", leases, err)
	}

	// A second copy into the same target is refused and writes nothing.
	before := targetCounts(t, dst)
	_, err = Copy(ctx, src, dst, Options{})
	if !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), "domains") {
		t.Errorf("second Copy: %v, want ErrTargetNotEmpty", err)
	}
	if after := targetCounts(t, dst); !reflect.DeepEqual(after, before) {
		t.Errorf("the refused copy changed the target: %v, was %v", after, before)
	}
}

// utcRuns returns runs with their times in UTC and to the microsecond (the
// SQLite store keeps nanoseconds, PostgreSQL microseconds), for comparing
// runs read from the two stores.
func utcRuns(runs []store.Run) []store.Run {
	out := slices.Clone(runs)
	for i := range out {
		out[i].Started = micro(out[i].Started)
		if !out[i].Ended.IsZero() {
			out[i].Ended = micro(out[i].Ended)
		}
	}
	return out
}

// utcState does as utcRuns for a directory state.
func utcState(ds *store.DirState) *store.DirState {
	if ds == nil {
		return nil
	}
	c := *ds
	c.FullAt = micro(c.FullAt)
	return &c
}

// utcSettings does as utcRuns for settings versions.
func utcSettings(vs []store.SettingsVersion) []store.SettingsVersion {
	out := slices.Clone(vs)
	for i := range out {
		out[i].Created = micro(out[i].Created)
	}
	return out
}

func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// targetCounts counts the rows of every table of the target.
func targetCounts(t *testing.T, dst *postgres.Store) map[string]int64 {
	t.Helper()
	counts := map[string]int64{}
	for _, tb := range append(slices.Clone(tables), struct{ name, what string }{"leases", "leases"}) {
		var n int64
		if err := dst.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+tb.name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts[tb.name] = n
	}
	return counts
}

// TestCopyTimes: times lose their nanoseconds, nothing else.
func TestCopyTimes(t *testing.T) {
	got, err := parseTime("2026-01-02T03:04:05.123456789Z")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC); !got.Equal(want) {
		t.Errorf("parseTime = %v, want %v", got, want)
	}
	if _, err := parseTime("2026-01-02 03:04:05"); err == nil {
		t.Error("parseTime took a time of another format")
	}
}

// TestCopyEmpty: an empty store copies as one.
func TestCopyEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dirsync.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	dst, res := copyFixture(t, fixture{path: path})
	for _, c := range res.Counts {
		if c.Source != 0 || c.Target != 0 {
			t.Errorf("%s: %d, %d", c.Table, c.Source, c.Target)
		}
	}
	id, err := dst.AddMailbox(t.Context(), dom, store.Mailbox{Primary: "a@example.com", Kind: sdk.KindUser, Source: sdk.SourceManual})
	if err != nil || id != 1 {
		t.Errorf("first mailbox of the target: id %d, %v", id, err)
	}
}

// TestCopyMismatch: counts that differ after the copy roll the copy back.
func TestCopyMismatch(t *testing.T) {
	f := newFixture(t)
	beforeVerify = func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO addresses (address, domain, mailbox_id, is_primary) VALUES ('x@example.com', 'example.com', 1, false)`)
		return err
	}
	defer func() { beforeVerify = nil }()
	src, err := sqlite.OpenReadOnly(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := openTarget(t)
	res, err := Copy(t.Context(), src, dst, Options{})
	var me *MismatchError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "addresses: 10 in the source, 11 in the target") {
		t.Fatalf("Copy: %v, want a mismatch of the addresses", err)
	}
	if res == nil || len(res.Counts) != len(tables) {
		t.Errorf("result of a mismatch: %+v", res)
	}
	for table, n := range targetCounts(t, dst) {
		if n != 0 {
			t.Errorf("%d rows of %s left after the rollback", n, table)
		}
	}
}

// TestCopyDamagedChanges: a change list that does not decode, or whose
// length is not the run's change count, stops the copy, naming its run, and
// writes nothing.
func TestCopyDamagedChanges(t *testing.T) {
	tests := []struct {
		name, damage string
		want         func(id, n int64) string // n: the run's changes
	}{
		{"NotGzip", `UPDATE runs SET changes = x'1f8b00' WHERE id = ?`,
			func(id, _ int64) string { return fmt.Sprintf("copy run changes: run %d: changes:", id) }},
		{"CountDiffers", `UPDATE runs SET change_count = change_count + 1 WHERE id = ?`,
			func(id, n int64) string {
				return fmt.Sprintf("copy run changes: run %d: changes: %d in its list, %d by its count", id, n, n+1)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s, err := sqlite.Open(f.path)
			if err != nil {
				t.Fatal(err)
			}
			var id, n int64
			if err := s.DB().QueryRow(`SELECT id, change_count FROM runs WHERE changes IS NOT NULL ORDER BY id LIMIT 1`).Scan(&id, &n); err != nil {
				t.Fatal(err)
			}
			if _, err := s.DB().Exec(tc.damage, id); err != nil {
				t.Fatal(err)
			}
			s.Close()
			src, err := sqlite.OpenReadOnly(f.path)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			dst := openTarget(t)
			_, err = Copy(t.Context(), src, dst, Options{})
			if want := tc.want(id, n); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Copy: %v, want %q", err, want)
			}
			for table, n := range targetCounts(t, dst) {
				if n != 0 {
					t.Errorf("%d rows of %s left after the failed copy", n, table)
				}
			}
		})
	}
}
