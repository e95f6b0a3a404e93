package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/dirsync/dirsync/host/store"
)

// PutSettings saves v as the next version of v.Domain's settings if the
// domain's current version (its latest, or 0 if it has none or the latest
// removed it) is expect; else store.ErrConflict. It fills v.Version and
// v.Created (the database's clock) and sets v.Domain to the name in lower
// case. Of several writers that race to save the same next version, the
// primary key lets one win; the others get store.ErrConflict.
func (s *Store) PutSettings(ctx context.Context, v *store.SettingsVersion, expect int64) error {
	domain, err := store.CheckSettingsVersion(v, expect)
	if err != nil {
		return err
	}
	nv := *v
	nv.Domain = domain
	err = s.writeTx(ctx, func(tx pgx.Tx) error {
		last, removed, err := latestSettings(ctx, tx, domain)
		if err != nil {
			return err
		}
		current := last
		if removed {
			current = 0
		}
		if current != expect {
			return store.ConflictError(last, removed, expect)
		}
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		nv.Version = last + 1
		return insertSettings(ctx, tx, &nv)
	})
	if err != nil {
		return fmt.Errorf("save settings of %s: %w", domain, err)
	}
	*v = nv
	return nil
}

// RemoveSettings saves, by author, a version of domain's settings that
// removes it, carrying the settings of the version it removes and no
// secret; store.ErrNotFound if the domain has no settings or is removed.
func (s *Store) RemoveSettings(ctx context.Context, domain, author string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return fmt.Errorf("remove settings: %w", err)
	}
	if author == "" {
		return fmt.Errorf("remove settings of %s: no author", domain)
	}
	err = s.writeTx(ctx, func(tx pgx.Tx) error {
		last, err := readSettings(ctx, tx, domain, 0)
		if err != nil {
			return err
		}
		if last == nil || last.Removed {
			return fmt.Errorf("no settings: %w", store.ErrNotFound)
		}
		return insertSettings(ctx, tx, &store.SettingsVersion{
			Domain: domain, Version: last.Version + 1, Settings: last.Settings, Author: author, Removed: true,
		})
	})
	if err != nil {
		return fmt.Errorf("remove settings of %s: %w", domain, err)
	}
	return nil
}

// Settings returns version of domain's settings, 0 meaning the latest,
// with its secret; store.ErrNotFound if there is none, or for 0 if the
// latest removed the domain.
func (s *Store) Settings(ctx context.Context, domain string, version int64) (*store.SettingsVersion, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	what := "settings of " + domain
	if version != 0 {
		what = fmt.Sprintf("version %d of the settings of %s", version, domain)
	}
	if version < 0 {
		return nil, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	v, err := readSettings(ctx, s.pool, domain, version)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, ctxErr(ctx, err))
	case v == nil:
		return nil, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	case version == 0 && v.Removed:
		return nil, fmt.Errorf("%s: removed by version %d: %w", what, v.Version, store.ErrNotFound)
	}
	return v, nil
}

// SettingsHistory lists every version of domain's settings, newest first,
// without their secrets.
func (s *Store) SettingsHistory(ctx context.Context, domain string) ([]store.SettingsVersion, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("settings history: %w", err)
	}
	vs, err := querySettings(ctx, s.pool, false, `WHERE domain = $1 ORDER BY version DESC`, domain)
	if err != nil {
		return nil, fmt.Errorf("settings history of %s: %w", domain, ctxErr(ctx, err))
	}
	return vs, nil
}

// StoredDomains returns the latest settings, with their secrets, of every
// domain whose latest version did not remove it, sorted by name.
func (s *Store) StoredDomains(ctx context.Context) ([]store.SettingsVersion, error) {
	vs, err := querySettings(ctx, s.pool, true, `
		WHERE NOT removed AND version = (SELECT max(version) FROM settings AS l WHERE l.domain = settings.domain)
		ORDER BY domain`)
	if err != nil {
		return nil, fmt.Errorf("stored domains: %w", ctxErr(ctx, err))
	}
	return vs, nil
}

// latestSettings returns the number of domain's latest settings version (0
// if it has none) and whether it removed the domain.
func latestSettings(ctx context.Context, tx pgx.Tx, domain string) (version int64, removed bool, err error) {
	err = tx.QueryRow(ctx, `SELECT version, removed FROM settings WHERE domain = $1 ORDER BY version DESC LIMIT 1`, domain).
		Scan(&version, &removed)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return version, removed, err
}

// readSettings reads version of domain's settings (0: the latest) with its
// secret; nil if there is none.
func readSettings(ctx context.Context, q queryer, domain string, version int64) (*store.SettingsVersion, error) {
	where, args := `WHERE domain = $1 ORDER BY version DESC LIMIT 1`, []any{domain}
	if version != 0 {
		where, args = `WHERE domain = $1 AND version = $2`, []any{domain, version}
	}
	vs, err := querySettings(ctx, q, true, where, args...)
	if err != nil || len(vs) == 0 {
		return nil, err
	}
	return &vs[0], nil
}

// insertSettings writes v as a new row and sets v.Created to the
// database's now.
func insertSettings(ctx context.Context, tx pgx.Tx, v *store.SettingsVersion) error {
	err := tx.QueryRow(ctx, `
		INSERT INTO settings (domain, version, settings, secret, author, removed) VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING created`,
		v.Domain, v.Version, v.Settings, v.Secret, v.Author, v.Removed).Scan(&v.Created)
	if isUnique(err) {
		// Another writer saved this version first.
		return fmt.Errorf("version %d was saved meanwhile: %w", v.Version, store.ErrConflict)
	}
	return err
}

// settingsSelect are the columns querySettings reads, secret excluded.
const settingsSelect = `SELECT domain, version, settings, author, created, removed`

// querySettings reads the settings versions that where (the rest of the
// query after FROM settings) selects, with their secrets if withSecret.
func querySettings(ctx context.Context, q queryer, withSecret bool, where string, args ...any) ([]store.SettingsVersion, error) {
	sel := settingsSelect
	if withSecret {
		sel += ", secret"
	}
	rows, err := q.Query(ctx, sel+" FROM settings "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var vs []store.SettingsVersion
	for rows.Next() {
		var v store.SettingsVersion
		dest := []any{&v.Domain, &v.Version, &v.Settings, &v.Author, &v.Created, &v.Removed}
		if withSecret {
			dest = append(dest, &v.Secret)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, rows.Err()
}
