package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	if err := ensureDomain(ctx, s.pool, domain); err != nil {
		return fmt.Errorf("ensure domain %s: %w", domain, ctxErr(ctx, err))
	}
	return nil
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
	return s.writeTx(ctx, func(tx pgx.Tx) error {
		if _, err := bumpGeneration(ctx, tx, domain); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO groups (domain, name, source) VALUES ($1, $2, $3)`, domain, name, sdk.SourceManual)
		if isUnique(err) {
			return fmt.Errorf("group %q in %s: %w", name, domain, store.ErrExists)
		}
		return err
	})
}

// RemoveGroup deletes a gateway group and its memberships.
func (s *Store) RemoveGroup(ctx context.Context, domain, name string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, func(tx pgx.Tx) error {
		if _, err := bumpGeneration(ctx, tx, domain); err != nil {
			return err
		}
		var n int
		err := tx.QueryRow(ctx, `
			WITH g AS (DELETE FROM groups WHERE domain = $1 AND name = $2 RETURNING id),
			ms AS (DELETE FROM memberships WHERE group_id IN (SELECT id FROM g))
			SELECT count(*) FROM g`, domain, name).Scan(&n)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("group %q in %s: %w", name, domain, store.ErrNotFound)
		}
		return nil
	})
}

// Assign adds the mailbox owning address (primary or alias) to group, by hand
// (membership source manual). The mailbox must belong to domain; ErrExists if
// it already is in the group.
func (s *Store) Assign(ctx context.Context, domain, group, address string) error {
	return s.membership(ctx, domain, group, address, func(tx pgx.Tx, mailbox, gid int64, primary string) error {
		_, err := tx.Exec(ctx, `INSERT INTO memberships (mailbox_id, group_id, source) VALUES ($1, $2, $3)`,
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
	return s.membership(ctx, domain, group, address, func(tx pgx.Tx, mailbox, gid int64, primary string) error {
		tag, err := tx.Exec(ctx, `DELETE FROM memberships WHERE mailbox_id = $1 AND group_id = $2`, mailbox, gid)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("mailbox %s in group %q: %w", primary, group, store.ErrNotFound)
		}
		return nil
	})
}

// membership looks up the group and the mailbox of address in domain and
// calls fn with them in a write transaction that bumps the domain's
// generation.
func (s *Store) membership(ctx context.Context, domain, group, address string,
	fn func(tx pgx.Tx, mailbox, gid int64, primary string) error) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	addr, _, err := store.NormAddress(address)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, func(tx pgx.Tx) error {
		if _, err := bumpGeneration(ctx, tx, domain); err != nil {
			return err
		}
		var gid int64
		err := tx.QueryRow(ctx, `SELECT id FROM groups WHERE domain = $1 AND name = $2`, domain, group).Scan(&gid)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("group %q in %s: %w", group, domain, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var id int64
		var primary string
		err = tx.QueryRow(ctx, `
			SELECT m.id, m.primary_address FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
			WHERE a.address = $1 AND m.domain = $2`, addr, domain).Scan(&id, &primary)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("mailbox with address %q in %s: %w", addr, domain, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		return fn(tx, id, gid, primary)
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
	err = s.writeTx(ctx, func(tx pgx.Tx) error {
		if _, err := bumpGeneration(ctx, tx, domain); err != nil {
			return err
		}
		// An address taken is named with its owner; a failed INSERT would
		// end the transaction before the owner could be read.
		if err := checkFree(ctx, tx, set); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `
			INSERT INTO mailboxes (domain, primary_address, kind, display_name, source, dir_id, dn)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			domain, set[0].addr, kind, m.DisplayName, sdk.SourceManual, m.DirID, m.DN).Scan(&id); err != nil {
			return err
		}
		addrs, domains, primary := make([]string, len(set)), make([]string, len(set)), make([]bool, len(set))
		for i, ad := range set {
			addrs[i], domains[i], primary[i] = ad.addr, ad.domain, i == 0
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO addresses (address, domain, mailbox_id, is_primary)
			SELECT a, d, $3, p FROM unnest($1::text[], $2::text[], $4::boolean[]) AS t (a, d, p)`,
			addrs, domains, id, primary)
		if isUnique(err) {
			// Taken by a writer of another domain meanwhile.
			return fmt.Errorf("an address of the mailbox was taken meanwhile: %w", store.ErrExists)
		}
		if err != nil {
			return err
		}
		seen := make(map[string]bool)
		for _, g := range m.Groups {
			if seen[g] {
				continue
			}
			seen[g] = true
			tag, err := tx.Exec(ctx, `
				INSERT INTO memberships (mailbox_id, group_id, source)
				SELECT $1, id, $2 FROM groups WHERE domain = $3 AND name = $4`, id, sdk.SourceManual, domain, g)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("group %q in %s: %w", g, domain, store.ErrNotFound)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("add mailbox %s to %s: %w", set[0].addr, domain, err)
	}
	return id, nil
}

// RemoveMailbox deletes the mailbox of domain whose primary address is
// address, with its addresses and memberships.
func (s *Store) RemoveMailbox(ctx context.Context, domain, address string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	addr, _, err := store.NormAddress(address)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, func(tx pgx.Tx) error {
		if _, err := bumpGeneration(ctx, tx, domain); err != nil {
			return err
		}
		var ids []int64
		rows, err := tx.Query(ctx, `DELETE FROM mailboxes WHERE domain = $1 AND primary_address = $2 RETURNING id`, domain, addr)
		if err == nil {
			ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		}
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			return deleteMailboxRefs(ctx, tx, ids)
		}
		var primary string
		err = tx.QueryRow(ctx, `
			SELECT m.primary_address FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
			WHERE a.address = $1 AND m.domain = $2`, addr, domain).Scan(&primary)
		if err == nil {
			return fmt.Errorf("mailbox %s in %s: %w (it is an alias of %s)", addr, domain, store.ErrNotFound, primary)
		}
		return fmt.Errorf("mailbox %s in %s: %w", addr, domain, store.ErrNotFound)
	})
}

// checkFree returns an ErrExists naming the owner of the first address of
// set that a mailbox owns.
func checkFree(ctx context.Context, tx pgx.Tx, set []address) error {
	addrs := make([]string, len(set))
	for i, ad := range set {
		addrs[i] = ad.addr
	}
	owners, err := addressOwners(ctx, tx, addrs)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if o, ok := owners[a]; ok {
			return o.takenError(a)
		}
	}
	return nil
}

// owner is the mailbox that owns an address.
type owner struct {
	id              int64
	primary, domain string
}

func (o owner) takenError(addr string) error {
	return fmt.Errorf("address %q belongs to mailbox %d (%s in %s): %w", addr, o.id, o.primary, o.domain, store.ErrExists)
}

// addressOwners returns the owners of those of addrs that a mailbox owns.
func addressOwners(ctx context.Context, tx pgx.Tx, addrs []string) (map[string]owner, error) {
	rows, err := tx.Query(ctx, `
		SELECT a.address, m.id, m.primary_address, m.domain FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
		WHERE a.address = ANY($1::text[])`, addrs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	owners := make(map[string]owner)
	for rows.Next() {
		var a string
		var o owner
		if err := rows.Scan(&a, &o.id, &o.primary, &o.domain); err != nil {
			return nil, err
		}
		owners[a] = o
	}
	return owners, rows.Err()
}

// deleteMailboxRefs deletes the addresses and memberships of the mailboxes
// ids, which the transaction has deleted.
func deleteMailboxRefs(ctx context.Context, tx pgx.Tx, ids []int64) error {
	_, err := tx.Exec(ctx, `
		WITH a AS (DELETE FROM addresses WHERE mailbox_id = ANY($1::bigint[]))
		DELETE FROM memberships WHERE mailbox_id = ANY($1::bigint[])`, ids)
	return err
}

// execer runs a statement: a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// ensureDomain creates domain if it does not exist.
func ensureDomain(ctx context.Context, q execer, domain string) error {
	_, err := q.Exec(ctx, `INSERT INTO domains (name) VALUES ($1) ON CONFLICT DO NOTHING`, domain)
	return err
}

// bumpGeneration creates domain if needed, notes a write to it and returns
// its generation before the write. The UPDATE locks the domain's row until
// the transaction ends: the writers of one domain go one at a time, while
// readers and other domains' writers go on.
func bumpGeneration(ctx context.Context, tx pgx.Tx, domain string) (int64, error) {
	if err := ensureDomain(ctx, tx, domain); err != nil {
		return 0, err
	}
	var gen int64
	err := tx.QueryRow(ctx, `UPDATE domains SET generation = generation + 1 WHERE name = $1 RETURNING generation - 1`, domain).Scan(&gen)
	return gen, err
}
