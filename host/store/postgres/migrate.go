package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrationFiles are the schema steps: migrations/NNNN_name.sql brings the
// schema from version NNNN-1 to NNNN. Add new files, never edit old ones.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the steps of migrationFiles, in order; loaded once.
var migrations = mustLoadMigrations(migrationFiles)

// migrationLock is the key of the transaction advisory lock that Open
// holds while it migrates, so that replicas starting together migrate
// once: the others wait, then find the schema up to date.
const migrationLock int64 = 0x6469727379_6e63 // "dirsync"

func mustLoadMigrations(fsys fs.FS) []migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic(err)
	}
	return ms
}

// loadMigrations reads the migrations/*.sql files of fsys; their versions
// must run 1, 2, … without a gap.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration file %s is not named NNNN_name.sql", base)
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(data)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migration %s: want version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// latestVersion is the schema version this code writes.
func latestVersion() int { return len(migrations) }

// querier is what reading the schema version needs: a pool, a connection
// or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// schemaVersion reads the newest version in schema_migrations; found is
// false when the table does not exist (no dirsync schema).
func (s *Store) schemaVersion(ctx context.Context, q querier) (version int, found bool, err error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, false, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, false, nil
	}
	if err := q.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return 0, false, fmt.Errorf("read schema version: %w", err)
	}
	return version, true, nil
}

// errNewerSchema is the error of a database whose schema is newer than
// this code.
var errNewerSchema = errors.New("is newer than this dirsync knows")

// migrate brings the schema to the newest version, in one transaction that
// holds the migration lock. A schema that is up to date is seen without
// taking the lock.
func (s *Store) migrate(ctx context.Context) error {
	want := latestVersion()
	version, _, err := s.schemaVersion(ctx, s.pool)
	if err != nil {
		return err
	}
	if version > want {
		return fmt.Errorf("schema version %d %w (%d)", version, errNewerSchema, want)
	}
	if version == want {
		return nil
	}
	return s.writeTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		// Read again under the lock: another replica may have migrated.
		version, _, err := s.schemaVersion(ctx, tx)
		if err != nil {
			return err
		}
		if version > want {
			return fmt.Errorf("schema version %d %w (%d)", version, errNewerSchema, want)
		}
		for _, m := range migrations[version:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migrate schema to version %d (%s): %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.version); err != nil {
				return fmt.Errorf("record schema version %d: %w", m.version, err)
			}
		}
		return nil
	})
}
