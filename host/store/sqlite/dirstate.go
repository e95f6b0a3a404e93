package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"

	"github.com/dirsync/dirsync/host/store"
)

// DirState returns the directory state that the domain's last applied run
// left; nil (and no error) when there is none or the domain is unknown. An
// empty cookie, entries or head reads back nil.
func (s *Store) DirState(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, true)
}

// DirStateHead is DirState without the entries: it does not read the
// entries column, whose overflow pages are most of the cost of DirState.
func (s *Store) DirStateHead(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, false)
}

// dirState reads the directory state of domain, its entries only if
// withEntries.
func (s *Store) dirState(ctx context.Context, domain string, withEntries bool) (*store.DirState, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	var ds store.DirState
	var fullAt string
	// The entries column is named only when they are read: SQLite reads a
	// column's overflow pages only for a query that names it.
	entriesCol := "NULL"
	if withEntries {
		entriesCol = "s.entries"
	}
	// Rows and RawBytes, not QueryRow: database/sql would copy the blob
	// (tens of megabytes) once more.
	rows, err := s.db.QueryContext(ctx, `SELECT s.key, s.cookie, s.full_at, s.head, `+entriesCol+`, d.generation
		FROM dir_state s JOIN domains d ON d.name = s.domain WHERE s.domain = ?`, domain)
	if err != nil {
		return nil, fmt.Errorf("directory state of %s: %w", domain, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("directory state of %s: %w", domain, err)
		}
		return nil, nil
	}
	var entries sql.RawBytes
	if err := rows.Scan(&ds.Key, &ds.Cookie, &fullAt, &ds.Head, &entries, &ds.Generation); err != nil {
		return nil, fmt.Errorf("directory state of %s: %w", domain, err)
	}
	ds.Entries = bytes.Clone(entries)
	if ds.FullAt, err = parseTime(fullAt); err != nil {
		return nil, fmt.Errorf("directory state of %s: full_at: %w", domain, err)
	}
	if len(ds.Cookie) == 0 {
		ds.Cookie = nil
	}
	if len(ds.Head) == 0 {
		ds.Head = nil
	}
	if len(ds.Entries) == 0 {
		ds.Entries = nil
	}
	return &ds, nil
}

// writeDirState replaces the directory state of domain with ds, or deletes
// it if ds is nil. It runs in Apply's transaction.
func writeDirState(ctx context.Context, tx *sql.Tx, domain string, ds *store.DirState) error {
	if ds == nil {
		if _, err := tx.ExecContext(ctx, `DELETE FROM dir_state WHERE domain = ?`, domain); err != nil {
			return fmt.Errorf("delete the directory state: %w", err)
		}
		return nil
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO dir_state (domain, key, cookie, full_at, head, entries) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (domain) DO UPDATE SET
			key = excluded.key, cookie = excluded.cookie, full_at = excluded.full_at,
			head = excluded.head, entries = excluded.entries`,
		domain, ds.Key, blobOrNull(ds.Cookie), formatTime(ds.FullAt), blobOrNull(ds.Head), blobOrNull(ds.Entries))
	if err != nil {
		return fmt.Errorf("write the directory state: %w", err)
	}
	return nil
}

// blobOrNull is b as a BLOB parameter: NULL if it is empty.
func blobOrNull(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// MoveCookie replaces the kept state's cookie from by to
// (store.CookieMover).
func (s *Store) MoveCookie(ctx context.Context, domain string, from, to []byte) (bool, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return false, err
	}
	var moved bool
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE dir_state SET cookie = ? WHERE domain = ? AND cookie = ?`, to, domain, from)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		moved = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("moving the cookie of %s: %w", domain, err)
	}
	return moved, nil
}
