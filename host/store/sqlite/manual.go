package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// EnsureDomain creates the domain if it does not exist. Domain names are
// kept in lower case.
func (s *Store) EnsureDomain(ctx context.Context, domain string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error { return ensureDomain(ctx, tx, domain) })
}

// AddGroup creates a gateway group (source manual). Names are byte-exact:
// "Sales" and "sales" are two groups.
func (s *Store) AddGroup(ctx context.Context, domain, name string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if name == "" {
		return errors.New("add group: empty group name")
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO groups (domain, name, source) VALUES (?, ?, ?)`,
			domain, name, sdk.SourceManual)
		if isUnique(err) {
			return fmt.Errorf("group %q in %s: %w", name, domain, store.ErrExists)
		}
		if err != nil {
			return err
		}
		return bumpGeneration(ctx, tx, domain)
	})
}

// RemoveGroup deletes a gateway group and its memberships.
func (s *Store) RemoveGroup(ctx context.Context, domain, name string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM groups WHERE domain = ? AND name = ?`, domain, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("group %q in %s: %w", name, domain, store.ErrNotFound)
		}
		return bumpGeneration(ctx, tx, domain)
	})
}

// Assign adds the mailbox owning address (primary or alias) to group, by hand
// (membership source manual). The mailbox must belong to domain; ErrExists if
// it already is in the group.
func (s *Store) Assign(ctx context.Context, domain, group, address string) error {
	return s.membership(ctx, domain, group, address, func(tx *sql.Tx, mailbox, gid int64, primary string) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO memberships (mailbox_id, group_id, source) VALUES (?, ?, ?)`,
			mailbox, gid, sdk.SourceManual)
		if isUnique(err) {
			return fmt.Errorf("mailbox %s in group %q: %w", primary, group, store.ErrExists)
		}
		return err
	})
}

// Unassign removes the mailbox owning address (primary or alias) from group,
// whatever made the membership; ErrNotFound if it is not in the group.
func (s *Store) Unassign(ctx context.Context, domain, group, address string) error {
	return s.membership(ctx, domain, group, address, func(tx *sql.Tx, mailbox, gid int64, primary string) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM memberships WHERE mailbox_id = ? AND group_id = ?`, mailbox, gid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("mailbox %s in group %q: %w", primary, group, store.ErrNotFound)
		}
		return nil
	})
}

// membership looks up the group and the mailbox of address in domain and
// calls fn with them in a write transaction, which bumps the domain's
// generation if fn succeeds.
func (s *Store) membership(ctx context.Context, domain, group, address string,
	fn func(tx *sql.Tx, mailbox, gid int64, primary string) error) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	addr, _, err := store.NormAddress(address)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		var gid int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM groups WHERE domain = ? AND name = ?`, domain, group).Scan(&gid)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("group %q in %s: %w", group, domain, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var id int64
		var primary string
		err = tx.QueryRowContext(ctx, `
			SELECT m.id, m.primary_address FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
			WHERE a.address = ? AND m.domain = ?`, addr, domain).Scan(&id, &primary)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mailbox with address %q in %s: %w", addr, domain, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := fn(tx, id, gid, primary); err != nil {
			return err
		}
		return bumpGeneration(ctx, tx, domain)
	})
}

// AddMailbox creates a hand-made mailbox (source manual) with its aliases
// and its groups (memberships source manual), and returns its id. Addresses
// are stored in lower case; one that another mailbox owns is an ErrExists,
// an unknown group an ErrNotFound, and then nothing is created.
func (s *Store) AddMailbox(ctx context.Context, domain string, m store.Mailbox) (int64, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return 0, err
	}
	set, err := addressSet(&m)
	if err != nil {
		return 0, fmt.Errorf("add mailbox: %w", err)
	}
	kind, err := store.NormKind(m.Kind)
	if err != nil {
		return 0, fmt.Errorf("add mailbox %s: %w", set[0].addr, err)
	}
	var id int64
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `
			INSERT INTO mailboxes (domain, primary_address, kind, display_name, source, dir_id, dn)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			domain, set[0].addr, kind, m.DisplayName, sdk.SourceManual, m.DirID, m.DN)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		for i, ad := range set {
			_, err := tx.ExecContext(ctx, `INSERT INTO addresses (address, domain, mailbox_id, is_primary) VALUES (?, ?, ?, ?)`,
				ad.addr, ad.domain, id, i == 0)
			if isUnique(err) {
				return takenError(ctx, tx, ad.addr)
			}
			if err != nil {
				return err
			}
		}
		seen := make(map[string]bool)
		for _, g := range m.Groups {
			if seen[g] {
				continue
			}
			seen[g] = true
			res, err := tx.ExecContext(ctx, `
				INSERT INTO memberships (mailbox_id, group_id, source)
				SELECT ?, id, ? FROM groups WHERE domain = ? AND name = ?`, id, sdk.SourceManual, domain, g)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("group %q in %s: %w", g, domain, store.ErrNotFound)
			}
		}
		return bumpGeneration(ctx, tx, domain)
	})
	if err != nil {
		return 0, fmt.Errorf("add mailbox %s to %s: %w", set[0].addr, domain, err)
	}
	return id, nil
}

// RemoveMailbox deletes the mailbox of domain whose primary address is
// address, with its aliases and memberships.
func (s *Store) RemoveMailbox(ctx context.Context, domain, address string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	addr, _, err := store.NormAddress(address)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM mailboxes WHERE domain = ? AND primary_address = ?`, domain, addr)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return bumpGeneration(ctx, tx, domain)
		}
		var primary string
		err = tx.QueryRowContext(ctx, `
			SELECT m.primary_address FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
			WHERE a.address = ? AND m.domain = ?`, addr, domain).Scan(&primary)
		if err == nil {
			return fmt.Errorf("mailbox %s in %s: %w (it is an alias of %s)", addr, domain, store.ErrNotFound, primary)
		}
		return fmt.Errorf("mailbox %s in %s: %w", addr, domain, store.ErrNotFound)
	})
}
