// Package sqlite is the embedded Store that ships with dirsync: one SQLite
// file, through the CGO-free driver modernc.org/sqlite.
//
// The database runs in WAL mode with foreign keys on and a busy timeout, so
// readers never wait for a sync and other processes (the CLI next to the
// daemon) wait for a writer instead of failing. Its schema is created on Open
// and migrated forward; PRAGMA user_version holds the schema version.
// OpenReadOnly opens an existing store for commands that only read: it never
// creates, migrates or writes the file.
//
// A domain's lease is a row of the leases table, taken, renewed and released
// in short transactions of their own, with times from this process's clock;
// processes sharing the file see one another's leases. Each domain also
// carries a generation that every write to it bumps (a sync's Apply and every
// hand-made change), so that Apply can refuse a run computed from a state
// that has changed since.
//
// The settings of store-kept domains are rows of the settings table, one per
// version, written once and never updated; the latest row of a domain is its
// current settings, unless it marks the domain removed. Runs are deleted only
// by PruneRuns; AUTOINCREMENT keeps their ids from being reused. The
// directory state of a domain (store.DirState) is one row of dir_state,
// replaced or deleted in the transaction of every Apply; a state in chunks
// (store.ChunkStore) has its chunks' summaries in dir_state_summaries and
// their data in dir_state_chunks, a row of each per chunk, which the same
// Apply replaces or patches.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/dirsync/dirsync/host/store"
)

// Store is a store.Store kept in one SQLite database.
type Store struct {
	db *sql.DB
	// writer lets one write transaction of this process run at a time, so
	// writers queue here rather than in SQLite's busy handler; a writer
	// waits only as long as its context allows (a first sync that writes
	// while it reads holds it for the read).
	writer chan struct{}
}

// lockWriter takes the store's writer, waiting as long as ctx allows.
func (s *Store) lockWriter(ctx context.Context) error {
	select {
	case s.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) unlockWriter() { <-s.writer }

var _ store.Store = (*Store)(nil)

// busyTimeoutMS is how long a connection waits for another process's lock.
const busyTimeoutMS = 10000

// Open opens (creating it and its parent directories if needed) the SQLite
// database named by dsn and brings its schema up to date.
//
// dsn is a file path ("var/dirsync.db") or a "file:" URI, optionally with
// modernc.org/sqlite query parameters; ":memory:" gives a private in-memory
// store, for tests.
func Open(dsn string) (*Store, error) {
	path, query, memory := splitDSN(dsn)
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	if !memory {
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("sqlite: create directory of %s: %w", path, err)
			}
		}
	}

	params := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMS),
		"_pragma=foreign_keys(1)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		// Statement journals in memory: a multi-row INSERT (bulk.go) and a
		// savepoint journal the pages they change, which in a temporary
		// file costs a first sync a fifth of its write.
		"_pragma=temp_store(MEMORY)",
		"_txlock=immediate", // write transactions take the write lock at BEGIN
	}
	if query != "" {
		params = append(params, query)
	}
	name := dsn
	if i := strings.IndexByte(name, '?'); i >= 0 {
		name = name[:i]
	}
	db, err := sql.Open("sqlite", name+"?"+strings.Join(params, "&"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if memory {
		// Every connection to ":memory:" is a database of its own.
		db.SetMaxOpenConns(1)
	}
	s := &Store{db: db, writer: make(chan struct{}, 1)}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", path, err)
	}
	return s, nil
}

// OpenReadOnly opens the existing SQLite database named by dsn (as for Open)
// for reading only: it never creates the file or its directory (a missing
// file is a store.ErrNoStore), never migrates, and every write on the
// returned Store fails. A store whose schema is older than this dirsync's is
// refused with a message that says how to upgrade it.
func OpenReadOnly(dsn string) (*Store, error) {
	path, query, memory := splitDSN(dsn)
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	if memory {
		return nil, errors.New("sqlite: an in-memory store cannot be opened read-only")
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sqlite: %w at %s", store.ErrNoStore, path)
		}
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	// Only a "file:" URI passes mode=ro on to SQLite. No journal_mode here:
	// setting it would write.
	params := []string{
		"mode=ro",
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMS),
		"_pragma=foreign_keys(1)",
	}
	if query != "" {
		params = append(params, query)
	}
	db, err := sql.Open("sqlite", "file:"+uriPath(path)+"?"+strings.Join(params, "&"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %s: read schema version: %w", path, err)
	}
	switch {
	case version < len(migrations):
		db.Close()
		return nil, fmt.Errorf("the store at %s has schema version %d, this dirsync needs %d: any command that writes (dirsync sync …) upgrades it",
			path, version, len(migrations))
	case version > len(migrations):
		db.Close()
		return nil, fmt.Errorf("sqlite: %s: schema version %d is newer than this dirsync knows (%d)", path, version, len(migrations))
	}
	return &Store{db: db, writer: make(chan struct{}, 1)}, nil
}

// uriPath escapes the characters of a file path that a SQLite URI would
// read otherwise.
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// splitDSN returns the file path of dsn, its query string, and whether it
// names an in-memory database.
func splitDSN(dsn string) (path, query string, memory bool) {
	path = dsn
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	path = strings.TrimPrefix(path, "file:")
	memory = path == ":memory:" || strings.Contains(query, "mode=memory")
	return path, query, memory
}

// Close closes the database.
func (s *Store) Close() error {
	return s.db.Close()
}

// migrations are the schema steps; migrations[i] brings user_version i to
// i+1. Append new steps, never edit old ones.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE domains (
	name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE mailboxes (
	id              INTEGER PRIMARY KEY AUTOINCREMENT, -- stable, never reused
	domain          TEXT NOT NULL REFERENCES domains(name),
	primary_address TEXT NOT NULL,                     -- also in addresses
	kind            TEXT NOT NULL,
	display_name    TEXT NOT NULL DEFAULT '',
	source          TEXT NOT NULL,
	dir_id          TEXT NOT NULL DEFAULT '',
	dn              TEXT NOT NULL DEFAULT ''
);
CREATE INDEX mailboxes_domain ON mailboxes(domain, primary_address);
CREATE UNIQUE INDEX mailboxes_dir_id ON mailboxes(domain, dir_id) WHERE source = 'ldap';

-- Every address, primary or alias, lower case; one mailbox owns it.
CREATE TABLE addresses (
	address    TEXT PRIMARY KEY,
	domain     TEXT NOT NULL, -- the part after '@'
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	is_primary INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX addresses_mailbox ON addresses(mailbox_id);
CREATE INDEX addresses_domain ON addresses(domain, mailbox_id);

-- Group names are byte-exact (BINARY collation): "Sales" is not "sales".
CREATE TABLE groups (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	domain TEXT NOT NULL REFERENCES domains(name),
	name   TEXT NOT NULL,
	source TEXT NOT NULL,
	UNIQUE (domain, name)
);

CREATE TABLE memberships (
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	group_id   INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
	source     TEXT NOT NULL,
	PRIMARY KEY (mailbox_id, group_id)
) WITHOUT ROWID;
CREATE INDEX memberships_group ON memberships(group_id);

CREATE TABLE runs (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	domain  TEXT NOT NULL REFERENCES domains(name),
	started TEXT NOT NULL, -- UTC, fixed width, so it sorts as text
	ended   TEXT NOT NULL,
	outcome TEXT NOT NULL,
	error   TEXT NOT NULL DEFAULT '',
	server  TEXT NOT NULL DEFAULT '',
	counts  TEXT NOT NULL, -- JSON of store.Counts
	changes BLOB           -- gzip of the JSON array of store.RunChange; NULL if none
);
CREATE INDEX runs_domain ON runs(domain, started);
`,
	// 2: leases, the domain's write generation, and the run record of a run
	// that is started before it ends.
	`
-- One lease per domain: while it lasts, only its holder syncs the domain.
CREATE TABLE leases (
	domain TEXT PRIMARY KEY REFERENCES domains(name),
	holder TEXT NOT NULL,
	run_id INTEGER NOT NULL DEFAULT 0, -- the holder's running run, once started
	since  TEXT NOT NULL,              -- UTC, fixed width, like run times
	expiry TEXT NOT NULL
) WITHOUT ROWID;

-- Bumped by every write to the domain (a sync's Apply, any hand-made change).
ALTER TABLE domains ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;

-- runs.ended is '' while a run is running.
ALTER TABLE runs ADD COLUMN stage    TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN holder   TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN settings TEXT; -- JSON of the settings the run used; NULL if none
ALTER TABLE runs ADD COLUMN intended TEXT; -- JSON of store.Counts; NULL if none
ALTER TABLE runs ADD COLUMN refs     TEXT; -- JSON array of continuation references; NULL if none
CREATE INDEX runs_running ON runs(domain) WHERE outcome = 'running';
`,
	// 3: versioned settings of store-kept domains, the settings version a
	// run used, and indexes for paging and pruning runs.
	`
-- Every saved version of a store-kept domain's settings; never updated.
CREATE TABLE settings (
	domain   TEXT NOT NULL REFERENCES domains(name),
	version  INTEGER NOT NULL,           -- 1, 2, … per domain, never reused
	settings BLOB NOT NULL,              -- the host's JSON, kept as given
	secret   BLOB,                       -- the sealed bind password; NULL if none
	author   TEXT NOT NULL,
	created  TEXT NOT NULL,              -- UTC, fixed width, like run times
	removed  INTEGER NOT NULL DEFAULT 0, -- 1: this version removed the domain
	PRIMARY KEY (domain, version)
) WITHOUT ROWID;

-- The settings version a run used; 0 for a domain of the config file.
ALTER TABLE runs ADD COLUMN settings_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_domain_id ON runs(domain, id);
CREATE INDEX runs_ended ON runs(ended);
`,
	// 4: the number of a run's changes, so that a run is listed without
	// decoding them; countChanges fills it for the runs already kept.
	`
ALTER TABLE runs ADD COLUMN change_count INTEGER NOT NULL DEFAULT 0;
`,
	// 5: the directory state a domain's last applied sync left, for a
	// delta read, and how each run read the directory.
	`
-- One row per domain: store.DirState, replaced by every Apply (see
-- writeDirState). A table with rowids, not WITHOUT ROWID: entries may be
-- tens of megabytes. entries comes last: the columns before it are read
-- without its overflow pages (DirStateHead).
CREATE TABLE dir_state (
	domain  TEXT PRIMARY KEY REFERENCES domains(name),
	key     TEXT NOT NULL,
	cookie  BLOB,          -- NULL if empty
	full_at TEXT NOT NULL, -- UTC, fixed width, like run times
	head    BLOB,          -- the host's summary of entries, kept as given; NULL if empty
	entries BLOB           -- the host's encoding, kept as given; NULL if empty
);

-- store.ReadFull or store.ReadDelta; '' for a run that was only started.
ALTER TABLE runs ADD COLUMN read TEXT NOT NULL DEFAULT '';
`,
	// 6: a directory state in chunks (store.ChunkStore).
	`
-- The chunks of a domain's chunked store.DirState, whose dir_state row
-- then has entries NULL: a row of each table per chunk, written by Apply
-- with the dir_state row (see writeDirState). The summaries are a table of
-- their own, so that a delta reads all of them (about 15,000 of 1.3 KB at
-- a million users) without a page of the data (3.5 KB a chunk).
--
-- Tables with rowids, not WITHOUT ROWID: a WITHOUT ROWID table is a
-- B-tree of index pages, whose cells hold at most about 1,000 bytes of a
-- row on a 4 KB page (a fourth of the page, less a header) before the rest
-- goes to an overflow page; a 1.3 KB summary would take an overflow page
-- of its own, and a summary read twice the pages. A rowid table's leaf
-- cell holds up to the page less 35 bytes, so that a summary (three to a
-- page) and a chunk's data (one to a page) are read from the table's own
-- pages; the primary key's index is small rows of (domain, seq, rowid),
-- and the rows of a full write, inserted in seq order, lie in that order.
CREATE TABLE dir_state_summaries (
	domain  TEXT NOT NULL REFERENCES domains(name),
	seq     INTEGER NOT NULL,
	summary BLOB, -- the host's, kept as given; NULL if empty
	PRIMARY KEY (domain, seq)
);
CREATE TABLE dir_state_chunks (
	domain TEXT NOT NULL REFERENCES domains(name),
	seq    INTEGER NOT NULL,
	data   BLOB, -- the host's, kept as given; NULL if empty
	PRIMARY KEY (domain, seq)
);
`,
}

// migrationFills are the steps of a migration that SQL cannot take:
// migrationFills[v] runs after migrations[v-1] (the step to version v), in
// the same transaction.
var migrationFills = map[int]func(ctx context.Context, tx *sql.Tx) error{
	4: countChanges,
}

// countChanges sets runs.change_count from the change list of every run
// that has one. It decodes one list at a time, counting its elements
// without keeping them.
func countChanges(ctx context.Context, tx *sql.Tx) error {
	type count struct{ id, n int64 }
	var counts []count
	rows, err := tx.QueryContext(ctx, `SELECT id, changes FROM runs WHERE changes IS NOT NULL`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var c count
		var blob []byte
		if err := rows.Scan(&c.id, &blob); err != nil {
			rows.Close()
			return err
		}
		if c.n, err = countEncoded(blob); err != nil {
			rows.Close()
			return fmt.Errorf("count the changes of run %d: %w", c.id, err)
		}
		counts = append(counts, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE runs SET change_count = ? WHERE id = ?`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, c := range counts {
		if _, err := stmt.ExecContext(ctx, c.n, c.id); err != nil {
			return err
		}
	}
	return nil
}

// migrate brings the schema to the newest version, in one transaction.
func (s *Store) migrate(ctx context.Context) error {
	if err := s.lockWriter(ctx); err != nil {
		return err
	}
	defer s.unlockWriter()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this dirsync knows (%d)", version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		if fill := migrationFills[v+1]; fill != nil {
			if err := fill(ctx, tx); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return tx.Commit()
}

// writeTx runs fn in a write transaction and commits it if fn succeeds.
func (s *Store) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if err := s.lockWriter(ctx); err != nil {
		return err
	}
	defer s.unlockWriter()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	err = fn(tx)
	if err == nil {
		err = tx.Commit()
	}
	if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
		// database/sql rolled the transaction back when ctx ended.
		return ctx.Err()
	}
	return err
}

// readTx runs fn in a read transaction, so that it sees one consistent state.
func (s *Store) readTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// isUnique reports whether err is a violated UNIQUE or PRIMARY KEY constraint.
func isUnique(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
