package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/dirsync/dirsync/host/store"
)

// DirState returns the directory state that the domain's last applied run
// left; nil (and no error) when there is none or the domain is unknown. An
// empty cookie, entries or head reads back nil; FullAt is in UTC, to the
// microsecond.
func (s *Store) DirState(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, true)
}

// DirStateHead is DirState without the entries: it does not read the
// entries column (nor its TOAST chunks).
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
	entriesCol := "NULL::bytea"
	if withEntries {
		entriesCol = "s.entries"
	}
	var ds store.DirState
	err = s.pool.QueryRow(ctx, `SELECT s.key, s.cookie, s.full_at, s.head, `+entriesCol+`, d.generation
		FROM dir_state s JOIN domains d ON d.name = s.domain WHERE s.domain = $1`, domain).
		Scan(&ds.Key, &ds.Cookie, &ds.FullAt, &ds.Head, &ds.Entries, &ds.Generation)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("directory state of %s: %w", domain, ctxErr(ctx, err))
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
// it if ds is nil. It runs in Apply's transaction, which holds the lock of
// the domain's row.
func writeDirState(ctx context.Context, tx pgx.Tx, domain string, ds *store.DirState) error {
	if ds == nil {
		if _, err := tx.Exec(ctx, `DELETE FROM dir_state WHERE domain = $1`, domain); err != nil {
			return fmt.Errorf("delete the directory state: %w", err)
		}
		return nil
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO dir_state (domain, key, cookie, full_at, head, entries) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (domain) DO UPDATE SET
			key = excluded.key, cookie = excluded.cookie, full_at = excluded.full_at,
			head = excluded.head, entries = excluded.entries`,
		domain, ds.Key, byteaOrNull(ds.Cookie), ds.FullAt, byteaOrNull(ds.Head), byteaOrNull(ds.Entries))
	if err != nil {
		return fmt.Errorf("write the directory state: %w", err)
	}
	return nil
}

// byteaOrNull is b as a bytea parameter: NULL if it is empty.
func byteaOrNull(b []byte) []byte {
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
	tag, err := s.pool.Exec(ctx, `UPDATE dir_state SET cookie = $1 WHERE domain = $2 AND cookie = $3`, to, domain, from)
	if err != nil {
		return false, fmt.Errorf("moving the cookie of %s: %w", domain, err)
	}
	return tag.RowsAffected() == 1, nil
}
