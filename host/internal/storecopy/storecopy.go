// Package storecopy copies a dirsync store from SQLite to PostgreSQL: the
// work of `dirsync store migrate`, for a deployment that moves to several
// `dirsync serve` replicas.
//
// Copy reads the SQLite store in one read transaction (a consistent state
// of it) and writes the PostgreSQL store in one transaction, with COPY for
// every table: the target has all of it or nothing. The target must have
// the current schema (postgres.Open migrates it) and be empty; Copy locks
// its tables against writers first, so that it stays empty until the copy
// commits. Before committing, Copy counts the rows of each table in the
// target and compares them with the source's; any difference rolls the
// whole copy back.
//
// Everything is copied but the leases: a lease belongs to a process that is
// running on the source store, and none is running on the target. Ids are
// kept — mailbox ids appear in `mailbox list --json` and stay a mailbox's
// for its life, and run and group ids are referred to — and the target's
// sequences are moved past the highest id the source ever gave out (the
// larger of the table's highest id and its AUTOINCREMENT counter in
// sqlite_sequence), so that no id is given out twice, also an id of a
// deleted row. (PostgreSQL never rolls a sequence back: a copy that fails
// after moving them leaves them moved, which skips ids and reuses none.)
//
// The mapping, SQLite (schema version 6, host/store/sqlite) to PostgreSQL
// (schema version 4, host/store/postgres/migrations):
//
//	domains      name, generation                → domains: the same
//	mailboxes    id, domain, primary_address, kind, display_name, source, dir_id, dn
//	                                             → mailboxes: the same, ids kept
//	addresses    address, domain, mailbox_id, is_primary (integer 0/1)
//	                                             → addresses: is_primary boolean
//	groups       id, domain, name, source        → groups: the same, ids kept
//	memberships  mailbox_id, group_id, source    → memberships: the same
//	runs         id, domain, outcome, stage, error, server, holder,
//	             settings_version, settings, change_count, read
//	                                             → runs: the same, ids kept
//	             started (text, UTC)             → started timestamptz
//	             ended (text, '' if none)        → ended timestamptz, NULL if none
//	             counts (JSON text)              → counts jsonb
//	             intended (JSON text or NULL)    → intended jsonb or NULL
//	             refs (JSON array or NULL)       → refs text[], NULL if none
//	             changes (gzip of the JSON array of store.RunChange, or NULL)
//	                                             → run_changes: one row per change,
//	                                               (run_id, seq = its index from 0,
//	                                               kind, address, grp = group,
//	                                               before, after = the views as JSON);
//	                                               a list whose length is not the
//	                                               run's change_count stops the copy
//	settings     domain, version, settings (bytes), secret (bytes or NULL),
//	             author                          → settings: the same, byte for byte
//	             created (text, UTC)             → created timestamptz
//	             removed (integer 0/1)           → removed boolean
//	dir_state    domain, key, cookie (bytes or NULL), head (bytes or NULL),
//	             entries (bytes or NULL)         → dir_state: the same, byte for byte
//	             full_at (text, UTC)             → full_at timestamptz
//	dir_state_summaries  domain, seq, summary (bytes or NULL)
//	                                             → dir_state_summaries: the same, byte for byte
//	dir_state_chunks     domain, seq, data (bytes or NULL)
//	                                             → dir_state_chunks: the same, byte for byte
//	leases                                       → not copied
//	sqlite_sequence (mailboxes, groups, runs)    → the id sequences of those tables
//
// The SQLite store keeps times to the nanosecond, PostgreSQL to the
// microsecond: times are truncated to the microsecond. JSON is decoded into
// the store's types and written as the PostgreSQL store writes it, so that a
// damaged value stops the copy, naming its row, instead of reaching the
// target.
package storecopy

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/postgres"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

// Count is the number of rows of one table in the source and in the
// target.
type Count struct {
	// Table is the PostgreSQL table (run_changes, settings, …).
	Table string `json:"table"`
	// What names the rows for people: "run changes", "settings versions".
	What   string `json:"-"`
	Source int64  `json:"source"`
	Target int64  `json:"target"`
}

// Result is what a copy did.
type Result struct {
	// Counts are the row counts of every table copied, in the order
	// copied.
	Counts []Count
	// Held names the domains whose lease was held (not expired) in the
	// source when it was read: a sync was running on them, and what it
	// writes after the read is not in the copy.
	Held []store.Lease
	// Took is the time of the whole copy, verification included.
	Took time.Duration
}

// Progress reports one table copied: its rows and the time it took.
type Progress struct {
	Table string
	What  string
	Rows  int64
	Took  time.Duration
}

// Options tune a copy.
type Options struct {
	// Progress, if set, is called after each table is copied.
	Progress func(Progress)
	// LockTimeout bounds the wait for the locks on the target's tables
	// (another process writing them); 0 means 30 seconds.
	LockTimeout time.Duration
}

// ErrTargetNotEmpty is the error of a copy into a store that holds rows
// already; nothing was written.
var ErrTargetNotEmpty = errors.New("the target store is not empty")

// MismatchError is the error of a copy whose target counts differ from
// the source's after the copy; it was rolled back.
type MismatchError struct{ Counts []Count }

func (e *MismatchError) Error() string {
	var diffs []string
	for _, c := range e.Counts {
		if c.Source != c.Target {
			diffs = append(diffs, fmt.Sprintf("%s: %d in the source, %d in the target", c.What, c.Source, c.Target))
		}
	}
	return "verify: the counts differ (" + strings.Join(diffs, "; ") + "); the copy was rolled back, nothing was written"
}

// tables are the tables copied, in the order copied: domains first, which
// groups, runs, settings and the dir_state tables refer to by a foreign key
// (the bulk tables have none). what names the rows in messages.
var tables = []struct{ name, what string }{
	{"domains", "domains"},
	{"mailboxes", "mailboxes"},
	{"addresses", "addresses"},
	{"groups", "groups"},
	{"memberships", "memberships"},
	{"runs", "runs"},
	{"run_changes", "run changes"},
	{"settings", "settings versions"},
	{"dir_state", "directory states"},
	{"dir_state_summaries", "state summaries"},
	{"dir_state_chunks", "state chunks"},
}

// lockedTables are the target's tables that Copy locks: those it writes
// and leases, which refer to domains.
const lockedTables = "domains, mailboxes, addresses, groups, memberships, leases, runs, run_changes, settings, dir_state, " +
	"dir_state_summaries, dir_state_chunks"

// sequenced are the tables whose ids come from a sequence in the target and
// an AUTOINCREMENT counter in the source.
var sequenced = []string{"groups", "mailboxes", "runs"}

// beforeVerify, when set (by tests), runs in the target's transaction after
// the copy and before the counts are compared.
var beforeVerify func(ctx context.Context, tx pgx.Tx) error

// Copy copies the store src into the empty store dst, in one transaction of
// dst, and verifies the counts (see the package documentation). src should
// be opened with sqlite.OpenReadOnly, which refuses a store of an older
// schema, and dst with postgres.Open, which brings its schema up to date. A
// dst that holds any row is refused with ErrTargetNotEmpty; counts that
// differ after the copy are a *MismatchError, returned with the Result. On
// any error nothing is written to dst.
func Copy(ctx context.Context, src *sqlite.Store, dst *postgres.Store, opts Options) (*Result, error) {
	start := time.Now()
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 30 * time.Second
	}

	// The source: one read transaction, so that every table is read from
	// the same state.
	stx, err := src.DB().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read the source: %w", err)
	}
	defer stx.Rollback()

	dtx, err := dst.Pool().BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("write the target: %w", err)
	}
	defer dtx.Rollback(context.WithoutCancel(ctx))

	if err := lockTarget(ctx, dtx, opts.LockTimeout); err != nil {
		return nil, err
	}
	if err := checkEmpty(ctx, dtx); err != nil {
		return nil, err
	}

	c := &copier{ctx: ctx, src: stx, dst: dtx}
	res := &Result{}
	if res.Held, err = heldLeases(ctx, stx); err != nil {
		return nil, fmt.Errorf("read the source's leases: %w", err)
	}
	for _, t := range tables {
		began := time.Now()
		n, err := c.copyTable(t.name)
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", t.what, err)
		}
		source := n
		if t.name != "run_changes" {
			// The changes are counted as they are decoded; every other
			// table is counted on its own.
			if source, err = sourceCount(ctx, stx, t.name); err != nil {
				return nil, fmt.Errorf("count the source's %s: %w", t.what, err)
			}
		}
		res.Counts = append(res.Counts, Count{Table: t.name, What: t.what, Source: source})
		if opts.Progress != nil {
			opts.Progress(Progress{Table: t.name, What: t.what, Rows: n, Took: time.Since(began)})
		}
	}
	if err := c.setSequences(); err != nil {
		return nil, err
	}
	if beforeVerify != nil {
		if err := beforeVerify(ctx, dtx); err != nil {
			return nil, err
		}
	}
	for i := range res.Counts {
		cnt := &res.Counts[i]
		if err := dtx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{cnt.Table}.Sanitize()).Scan(&cnt.Target); err != nil {
			return nil, fmt.Errorf("verify: count the target's %s: %w", cnt.What, err)
		}
	}
	for _, cnt := range res.Counts {
		if cnt.Source != cnt.Target {
			res.Took = time.Since(start)
			return res, &MismatchError{Counts: res.Counts}
		}
	}
	if err := dtx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit the copy: %w", err)
	}
	res.Took = time.Since(start)
	return res, nil
}

// lockTarget locks the target's tables against every writer (readers go
// on) until the copy ends, waiting at most timeout for writers that hold
// them.
func lockTarget(ctx context.Context, tx pgx.Tx, timeout time.Duration) error {
	ms := timeout.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, ms)); err != nil {
		return fmt.Errorf("lock the target's tables: %w", err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+lockedTables+` IN EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("lock the target's tables (is a dirsync using the target store?): %w", err)
	}
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = 0`); err != nil {
		return fmt.Errorf("lock the target's tables: %w", err)
	}
	return nil
}

// checkEmpty returns ErrTargetNotEmpty, naming what the target holds,
// unless every table copied into (and leases) is empty.
func checkEmpty(ctx context.Context, tx pgx.Tx) error {
	var held []string
	for _, t := range append(tables[:len(tables):len(tables)], struct{ name, what string }{"leases", "leases"}) {
		var n int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{t.name}.Sanitize()).Scan(&n); err != nil {
			return fmt.Errorf("check that the target is empty: %w", err)
		}
		if n > 0 {
			held = append(held, fmt.Sprintf("%d %s", n, t.what))
		}
	}
	if len(held) > 0 {
		return fmt.Errorf("%w: it holds %s; a store is migrated into an empty database only, nothing was written",
			ErrTargetNotEmpty, strings.Join(held, ", "))
	}
	return nil
}

// sourceCount counts the rows of the source's table.
func sourceCount(ctx context.Context, tx *sql.Tx, table string) (int64, error) {
	var n int64
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM "`+table+`"`).Scan(&n)
	return n, err
}

// heldLeases returns the source's leases that have not expired.
func heldLeases(ctx context.Context, tx *sql.Tx) ([]store.Lease, error) {
	rows, err := tx.QueryContext(ctx, `SELECT domain, holder, run_id, since, expiry FROM leases ORDER BY domain`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	now := time.Now()
	var held []store.Lease
	for rows.Next() {
		var l store.Lease
		var since, expiry string
		if err := rows.Scan(&l.Domain, &l.Holder, &l.RunID, &since, &expiry); err != nil {
			return nil, err
		}
		if l.Since, err = parseTime(since); err != nil {
			return nil, fmt.Errorf("lease of %s: since: %w", l.Domain, err)
		}
		if l.Expiry, err = parseTime(expiry); err != nil {
			return nil, fmt.Errorf("lease of %s: expiry: %w", l.Domain, err)
		}
		if l.Expiry.After(now) {
			held = append(held, l)
		}
	}
	return held, rows.Err()
}

// copier copies the tables of one source transaction into one target
// transaction.
type copier struct {
	ctx context.Context
	src *sql.Tx
	dst pgx.Tx
}

// copyTable copies one table (a PostgreSQL table name of tables) and
// returns the number of rows written.
func (c *copier) copyTable(table string) (int64, error) {
	switch table {
	case "domains":
		return c.copyRows(table, `SELECT name, generation FROM domains ORDER BY name`,
			[]string{"name", "generation"},
			func(r *sql.Rows) ([]any, error) {
				var name string
				var gen int64
				err := r.Scan(&name, &gen)
				return []any{name, gen}, err
			})
	case "groups":
		return c.copyRows(table, `SELECT id, domain, name, source FROM groups ORDER BY id`,
			[]string{"id", "domain", "name", "source"},
			func(r *sql.Rows) ([]any, error) {
				var id int64
				var domain, name, source string
				err := r.Scan(&id, &domain, &name, &source)
				return []any{id, domain, name, source}, err
			})
	case "mailboxes":
		return c.copyRows(table, `SELECT id, domain, primary_address, kind, display_name, source, dir_id, dn FROM mailboxes ORDER BY id`,
			[]string{"id", "domain", "primary_address", "kind", "display_name", "source", "dir_id", "dn"},
			func(r *sql.Rows) ([]any, error) {
				var id int64
				var domain, primary, kind, display, source, dirID, dn string
				err := r.Scan(&id, &domain, &primary, &kind, &display, &source, &dirID, &dn)
				return []any{id, domain, primary, kind, display, source, dirID, dn}, err
			})
	case "addresses":
		return c.copyRows(table, `SELECT address, domain, mailbox_id, is_primary FROM addresses ORDER BY mailbox_id, address`,
			[]string{"address", "domain", "mailbox_id", "is_primary"},
			func(r *sql.Rows) ([]any, error) {
				var addr, domain string
				var id int64
				var primary bool // 0 or 1; anything else is an error of Scan
				err := r.Scan(&addr, &domain, &id, &primary)
				return []any{addr, domain, id, primary}, err
			})
	case "memberships":
		return c.copyRows(table, `SELECT mailbox_id, group_id, source FROM memberships ORDER BY mailbox_id, group_id`,
			[]string{"mailbox_id", "group_id", "source"},
			func(r *sql.Rows) ([]any, error) {
				var mailbox, group int64
				var source string
				err := r.Scan(&mailbox, &group, &source)
				return []any{mailbox, group, source}, err
			})
	case "runs":
		return c.copyRows(table, `SELECT id, domain, started, ended, outcome, stage, error, server, holder, settings_version,
				settings, counts, intended, refs, change_count, read FROM runs ORDER BY id`,
			[]string{"id", "domain", "started", "ended", "outcome", "stage", "error", "server", "holder", "settings_version",
				"settings", "counts", "intended", "refs", "change_count", "read"},
			runRow)
	case "run_changes":
		return c.copyChanges()
	case "settings":
		return c.copyRows(table, `SELECT domain, version, settings, secret, author, created, removed FROM settings ORDER BY domain, version`,
			[]string{"domain", "version", "settings", "secret", "author", "created", "removed"},
			settingsRow)
	case "dir_state":
		return c.copyRows(table, `SELECT domain, key, cookie, full_at, head, entries FROM dir_state ORDER BY domain`,
			[]string{"domain", "key", "cookie", "full_at", "head", "entries"},
			dirStateRow)
	case "dir_state_summaries":
		return c.copyRows(table, `SELECT domain, seq, summary FROM dir_state_summaries ORDER BY domain, seq`,
			[]string{"domain", "seq", "summary"}, chunkRow)
	case "dir_state_chunks":
		return c.copyRows(table, `SELECT domain, seq, data FROM dir_state_chunks ORDER BY domain, seq`,
			[]string{"domain", "seq", "data"}, chunkRow)
	}
	return 0, fmt.Errorf("no table %s", table)
}

// copyRows copies the rows of a source query into the target's table with
// COPY, each converted by row into the values of columns.
func (c *copier) copyRows(table, query string, columns []string, row func(*sql.Rows) ([]any, error)) (int64, error) {
	rows, err := c.src.QueryContext(c.ctx, query)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	defer rows.Close()
	src := &rowSource{rows: rows, row: row}
	n, err := c.dst.CopyFrom(c.ctx, pgx.Identifier{table}, columns, src)
	if src.err != nil {
		return 0, src.err // the reason the copy was cut short
	}
	if err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	return n, nil
}

// rowSource feeds the rows of a source query to COPY.
type rowSource struct {
	rows *sql.Rows
	row  func(*sql.Rows) ([]any, error)
	vals []any
	err  error
}

func (s *rowSource) Next() bool {
	if s.err != nil || !s.rows.Next() {
		if s.err == nil {
			if err := s.rows.Err(); err != nil {
				s.err = fmt.Errorf("read: %w", err)
			}
		}
		return false
	}
	s.vals, s.err = s.row(s.rows)
	return s.err == nil
}

func (s *rowSource) Values() ([]any, error) { return s.vals, nil }
func (s *rowSource) Err() error             { return s.err }

// runRow converts a row of the source's runs.
func runRow(r *sql.Rows) ([]any, error) {
	var id, settingsVersion int64
	var changeCount int32
	var domain, started, ended, outcome, stage, errText, server, holder, counts, read string
	var settings, intended, refs sql.NullString
	if err := r.Scan(&id, &domain, &started, &ended, &outcome, &stage, &errText, &server, &holder, &settingsVersion,
		&settings, &counts, &intended, &refs, &changeCount, &read); err != nil {
		return nil, err
	}
	fail := func(what string, err error) ([]any, error) {
		return nil, fmt.Errorf("run %d: %s: %w", id, what, err)
	}
	start, err := parseTime(started)
	if err != nil {
		return fail("started", err)
	}
	var end any // NULL: running, or recorded without an end
	if ended != "" {
		t, err := parseTime(ended)
		if err != nil {
			return fail("ended", err)
		}
		end = t
	}
	var set any // NULL: none
	if settings.Valid {
		set = settings.String
	}
	var k store.Counts
	if err := json.Unmarshal([]byte(counts), &k); err != nil {
		return fail("counts", err)
	}
	countsJSON, err := json.Marshal(k)
	if err != nil {
		return fail("counts", err)
	}
	var intendedJSON []byte // nil: NULL
	if intended.Valid {
		var k store.Counts
		if err := json.Unmarshal([]byte(intended.String), &k); err != nil {
			return fail("intended counts", err)
		}
		if intendedJSON, err = json.Marshal(k); err != nil {
			return fail("intended counts", err)
		}
	}
	var references []string // nil: NULL, as the PostgreSQL store writes no references
	if refs.Valid {
		if err := json.Unmarshal([]byte(refs.String), &references); err != nil {
			return fail("references", err)
		}
		if len(references) == 0 {
			references = nil
		}
	}
	return []any{id, domain, start, end, outcome, stage, errText, server, holder, settingsVersion,
		set, countsJSON, intendedJSON, references, changeCount, read}, nil
}

// dirStateRow converts a row of the source's dir_state. The bytes are
// copied as they are, an empty value (which the SQLite store writes as
// NULL) as NULL, as the PostgreSQL store writes it.
func dirStateRow(r *sql.Rows) ([]any, error) {
	var domain, key, fullAt string
	var cookie, head, entries []byte
	if err := r.Scan(&domain, &key, &cookie, &fullAt, &head, &entries); err != nil {
		return nil, err
	}
	t, err := parseTime(fullAt)
	if err != nil {
		return nil, fmt.Errorf("directory state of %s: full_at: %w", domain, err)
	}
	if len(cookie) == 0 {
		cookie = nil
	}
	if len(head) == 0 {
		head = nil
	}
	if len(entries) == 0 {
		entries = nil
	}
	return []any{domain, key, cookie, t, head, entries}, nil
}

// chunkRow converts a row of the source's dir_state_summaries or
// dir_state_chunks (domain, seq, bytes): the bytes as they are, an empty
// value as NULL, as the PostgreSQL store writes it.
func chunkRow(r *sql.Rows) ([]any, error) {
	var domain string
	var seq int64
	var b []byte
	if err := r.Scan(&domain, &seq, &b); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		b = nil
	}
	return []any{domain, seq, b}, nil
}

// settingsRow converts a row of the source's settings.
func settingsRow(r *sql.Rows) ([]any, error) {
	var domain, author, created string
	var version int64
	var settings, secret []byte // secret nil: NULL
	var removed bool
	if err := r.Scan(&domain, &version, &settings, &secret, &author, &created, &removed); err != nil {
		return nil, err
	}
	t, err := parseTime(created)
	if err != nil {
		return nil, fmt.Errorf("version %d of the settings of %s: created: %w", version, domain, err)
	}
	if settings == nil {
		settings = []byte{} // NOT NULL in both schemas; an empty value stays empty
	}
	return []any{domain, version, settings, secret, author, t, removed}, nil
}

// copyChanges writes the change lists of the source's runs as rows of the
// target's run_changes, one per change, in their order.
func (c *copier) copyChanges() (int64, error) {
	rows, err := c.src.QueryContext(c.ctx, `SELECT id, changes, change_count FROM runs WHERE changes IS NOT NULL ORDER BY id`)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	defer rows.Close()
	src := &changeSource{rows: rows}
	n, err := c.dst.CopyFrom(c.ctx, pgx.Identifier{"run_changes"},
		[]string{"run_id", "seq", "kind", "address", "grp", "before", "after"}, src)
	if src.err != nil {
		return 0, src.err
	}
	if err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	return n, nil
}

// changeSource feeds COPY the changes of the runs of a source query (id,
// changes, change_count), decoding one run's list at a time and checking
// its length against the run's count.
type changeSource struct {
	rows *sql.Rows
	run  int64
	list []store.RunChange
	next int // index in list of the next change
	vals []any
	err  error
}

func (s *changeSource) Next() bool {
	for s.err == nil && s.next == len(s.list) {
		if !s.rows.Next() {
			if err := s.rows.Err(); err != nil {
				s.err = fmt.Errorf("read: %w", err)
			}
			return false
		}
		var blob []byte
		var count int
		if err := s.rows.Scan(&s.run, &blob, &count); err != nil {
			s.err = fmt.Errorf("read: %w", err)
			return false
		}
		s.list, s.next = nil, 0
		if s.list, s.err = decodeChanges(blob); s.err != nil {
			s.err = fmt.Errorf("run %d: changes: %w", s.run, s.err)
		} else if len(s.list) != count {
			s.err = fmt.Errorf("run %d: changes: %d in its list, %d by its count", s.run, len(s.list), count)
		}
	}
	if s.err != nil {
		return false
	}
	rc := &s.list[s.next]
	before, err := viewJSON(rc.Before)
	if err == nil {
		var after []byte
		if after, err = viewJSON(rc.After); err == nil {
			s.vals = []any{s.run, int32(s.next), rc.Kind, rc.Address, rc.Group, before, after}
		}
	}
	if err != nil {
		s.err = fmt.Errorf("run %d: change %d: %w", s.run, s.next, err)
		return false
	}
	s.next++
	return true
}

func (s *changeSource) Values() ([]any, error) { return s.vals, nil }
func (s *changeSource) Err() error             { return s.err }

// viewJSON is a change's mailbox view as run_changes keeps it: its JSON,
// nil (NULL) for none.
func viewJSON(v *store.MailboxView) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}

// decodeChanges reads a change list as the SQLite store keeps it: the
// gzip-compressed JSON array of store.RunChange.
func decodeChanges(blob []byte) ([]store.RunChange, error) {
	if len(blob) == 0 {
		return nil, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var rcs []store.RunChange
	if err := json.Unmarshal(data, &rcs); err != nil {
		return nil, err
	}
	return rcs, nil
}

// setSequences moves the target's id sequences past the highest id the
// source gave out in each table: its highest row, or its AUTOINCREMENT
// counter if a row with a higher id was deleted. A sequence already further
// (a target whose rows were all deleted) stays where it is.
func (c *copier) setSequences() error {
	for _, table := range sequenced {
		var high int64
		err := c.src.QueryRowContext(c.ctx, `
			SELECT max(COALESCE((SELECT max(id) FROM "`+table+`"), 0),
			           COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?), 0))`, table).Scan(&high)
		if err != nil {
			return fmt.Errorf("read the highest id of the source's %s: %w", table, err)
		}
		if high == 0 {
			continue // nothing given out: the sequence starts at 1
		}
		_, err = c.dst.Exec(c.ctx, `
			SELECT setval(seq, GREATEST($2::bigint, COALESCE(pg_sequence_last_value(seq), 0)))
			FROM (SELECT pg_get_serial_sequence($1, 'id')::regclass AS seq) AS s`, table, high)
		if err != nil {
			return fmt.Errorf("set the id sequence of %s past %d: %w", table, high, err)
		}
	}
	return nil
}

// sqliteTime is the SQLite store's format of times: UTC, fixed width.
const sqliteTime = "2006-01-02T15:04:05.000000000Z"

// parseTime reads a time of the SQLite store, truncated to the microsecond
// that PostgreSQL keeps.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(sqliteTime, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.Truncate(time.Microsecond), nil
}
