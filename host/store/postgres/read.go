package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/dirsync/dirsync/host/store"
)

// Snapshot reads the state of a domain in one repeatable-read transaction,
// with a handful of bulk queries, and the domain's generation. An unknown
// domain has an empty snapshot at generation 0.
func (s *Store) Snapshot(ctx context.Context, domain string, aliasDomains []string) (*store.Snapshot, error) {
	domains, err := store.NormDomains(domain, aliasDomains)
	if err != nil {
		return nil, err
	}
	domain = domains[0]

	snap := &store.Snapshot{
		Domain:  domain,
		Foreign: make(map[int64]store.Mailbox),
	}
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		if snap.Generation, err = generation(ctx, tx, domain); err != nil {
			return err
		}
		if snap.Mailboxes, err = domainMailboxes(ctx, tx, domain); err != nil {
			return err
		}
		if snap.Groups, err = domainGroups(ctx, tx, domain); err != nil {
			return err
		}
		snap.Owners = ownAddresses(snap.Mailboxes, domains)
		// Addresses in these domains that mailboxes of other domains own.
		var ids []int64
		err = eachPair(ctx, tx, `
			SELECT a.mailbox_id, a.address FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
			WHERE m.domain <> $1 AND a.domain = ANY($2::text[])`, []any{domain, domains},
			func(id int64, addr string) {
				snap.Owners[addr] = id
				ids = append(ids, id)
			})
		if err != nil || len(ids) == 0 {
			return err
		}
		foreign, err := mailboxesWhere(ctx, tx, `id = ANY($1::bigint[])`, ids)
		if err != nil {
			return err
		}
		for _, m := range foreign {
			snap.Foreign[m.ID] = m
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", domain, err)
	}
	return snap, nil
}

// SnapshotPart is Snapshot restricted to the mailboxes of the directory
// ids and the owners of the addresses given (store.PartReader).
func (s *Store) SnapshotPart(ctx context.Context, domain string, aliasDomains []string, dirIDs, addresses []string) (*store.Snapshot, int, error) {
	domains, err := store.NormDomains(domain, aliasDomains)
	if err != nil {
		return nil, 0, err
	}
	domain = domains[0]
	snap := &store.Snapshot{Domain: domain, Foreign: make(map[int64]store.Mailbox)}
	ldap := 0
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		if snap.Generation, err = generation(ctx, tx, domain); err != nil {
			return err
		}
		if snap.Groups, err = domainGroups(ctx, tx, domain); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM mailboxes WHERE domain = $1 AND source = 'ldap'`, domain).Scan(&ldap); err != nil {
			return err
		}
		var ids []int64
		home := map[int64]bool{} // of the domain
		err = eachPair(ctx, tx, `
			SELECT id, domain FROM mailboxes WHERE domain = $1 AND source = 'ldap' AND dir_id = ANY($2::text[])
			UNION
			SELECT m.id, m.domain FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id WHERE a.address = ANY($3::text[])`,
			[]any{domain, dirIDs, addresses}, func(id int64, d string) {
				ids = append(ids, id)
				home[id] = d == domain
			})
		if err != nil || len(ids) == 0 {
			snap.Owners = map[string]int64{}
			return err
		}
		ms, err := mailboxesWhere(ctx, tx, `id = ANY($1::bigint[])`, ids)
		if err != nil {
			return err
		}
		snap.Owners = ownAddresses(ms, domains)
		for _, m := range ms {
			if home[m.ID] {
				snap.Mailboxes = append(snap.Mailboxes, m)
			} else {
				snap.Foreign[m.ID] = m
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("part of the snapshot of %s: %w", domain, err)
	}
	return snap, ldap, nil
}

// Mailboxes lists a domain's mailboxes sorted by primary address.
func (s *Store) Mailboxes(ctx context.Context, domain string) ([]store.Mailbox, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	var ms []store.Mailbox
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		ms, err = domainMailboxes(ctx, tx, domain)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mailboxes of %s: %w", domain, err)
	}
	return ms, nil
}

// Groups lists a domain's gateway groups sorted by name (byte order).
func (s *Store) Groups(ctx context.Context, domain string) ([]store.Group, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	gs, err := domainGroups(ctx, s.pool, domain)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", domain, ctxErr(ctx, err))
	}
	return gs, nil
}

// GroupMembers lists the members of a domain's gateway group (name
// byte-exact) sorted by address (byte order), with the source of each
// membership and of its mailbox; store.ErrNotFound if the domain has no
// such group.
func (s *Store) GroupMembers(ctx context.Context, domain, group string) ([]store.Member, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	var members []store.Member
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		var gid int64
		err := tx.QueryRow(ctx, `SELECT id FROM groups WHERE domain = $1 AND name = $2`, domain, group).Scan(&gid)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("group %q in %s: %w", group, domain, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT m.primary_address, ms.source, m.source FROM memberships ms JOIN mailboxes m ON m.id = ms.mailbox_id
			WHERE ms.group_id = $1 ORDER BY m.primary_address`, gid)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m store.Member
			if err := rows.Scan(&m.Address, &m.Source, &m.MailboxSource); err != nil {
				return err
			}
			members = append(members, m)
		}
		return rows.Err()
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("members of group %q in %s: %w", group, domain, err)
	}
	return members, nil
}

// Resolve returns the primary address of the mailbox that owns address.
func (s *Store) Resolve(ctx context.Context, address string) (string, error) {
	addr, _, err := store.NormAddress(address)
	if err != nil {
		return "", err
	}
	var primary string
	err = s.pool.QueryRow(ctx, `
		SELECT m.primary_address FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
		WHERE a.address = $1`, addr).Scan(&primary)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("address %q: %w", addr, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", addr, ctxErr(ctx, err))
	}
	return primary, nil
}

// queryer runs a query: a pool or a transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// generation reads the generation of domain; 0 if it does not exist.
func generation(ctx context.Context, q querier, domain string) (int64, error) {
	var gen int64
	err := q.QueryRow(ctx, `SELECT generation FROM domains WHERE name = $1`, domain).Scan(&gen)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return gen, err
}

// domainMailboxes reads every mailbox of domain with its aliases and
// groups, sorted by primary address, aliases and groups sorted.
func domainMailboxes(ctx context.Context, tx pgx.Tx, domain string) ([]store.Mailbox, error) {
	return mailboxesWhere(ctx, tx, `domain = $1`, domain)
}

// mailboxesWhere reads the mailboxes that cond (a condition on the
// mailboxes table, with one argument $1) selects, with their aliases and
// groups, sorted by primary address; aliases and groups sorted.
func mailboxesWhere(ctx context.Context, tx pgx.Tx, cond string, arg any) ([]store.Mailbox, error) {
	rows, err := tx.Query(ctx, `
		SELECT id, dir_id, dn, kind, primary_address, display_name, source
		FROM mailboxes WHERE `+cond+` ORDER BY primary_address`, arg)
	if err != nil {
		return nil, err
	}
	var ms []store.Mailbox
	for rows.Next() {
		var m store.Mailbox
		if err := rows.Scan(&m.ID, &m.DirID, &m.DN, &m.Kind, &m.Primary, &m.DisplayName, &m.Source); err != nil {
			rows.Close()
			return nil, err
		}
		ms = append(ms, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, nil
	}
	index := make(map[int64]*store.Mailbox, len(ms))
	for i := range ms {
		index[ms[i].ID] = &ms[i]
	}

	err = eachPair(ctx, tx, `
		SELECT a.mailbox_id, a.address FROM mailboxes m JOIN addresses a ON a.mailbox_id = m.id
		WHERE m.`+cond+` AND NOT a.is_primary`, []any{arg},
		func(id int64, addr string) {
			if m := index[id]; m != nil {
				m.Aliases = append(m.Aliases, addr)
			}
		})
	if err != nil {
		return nil, err
	}
	err = eachPair(ctx, tx, `
		SELECT ms.mailbox_id, g.name FROM mailboxes m JOIN memberships ms ON ms.mailbox_id = m.id
		JOIN groups g ON g.id = ms.group_id
		WHERE m.`+cond, []any{arg},
		func(id int64, name string) {
			if m := index[id]; m != nil {
				m.Groups = append(m.Groups, name)
			}
		})
	if err != nil {
		return nil, err
	}
	for i := range ms {
		slices.Sort(ms[i].Aliases)
		slices.Sort(ms[i].Groups)
	}
	return ms, nil
}

// domainGroups reads a domain's groups sorted by name.
func domainGroups(ctx context.Context, q queryer, domain string) ([]store.Group, error) {
	rows, err := q.Query(ctx, `SELECT name, source FROM groups WHERE domain = $1 ORDER BY name`, domain)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var gs []store.Group
	for rows.Next() {
		var g store.Group
		if err := rows.Scan(&g.Name, &g.Source); err != nil {
			return nil, err
		}
		gs = append(gs, g)
	}
	return gs, rows.Err()
}

// ownAddresses maps the addresses of ms that lie in one of domains to the
// mailbox that owns them.
func ownAddresses(ms []store.Mailbox, domains []string) map[string]int64 {
	in := func(addr string) bool {
		return slices.Contains(domains, addr[strings.LastIndexByte(addr, '@')+1:])
	}
	owners := make(map[string]int64, 2*len(ms))
	for _, m := range ms {
		if in(m.Primary) {
			owners[m.Primary] = m.ID
		}
		for _, a := range m.Aliases {
			if in(a) {
				owners[a] = m.ID
			}
		}
	}
	return owners
}

// eachPair runs a query returning (id, text) rows and calls fn for each.
func eachPair(ctx context.Context, q queryer, query string, args []any, fn func(int64, string)) error {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var id int64
	var text string
	for rows.Next() {
		if err := rows.Scan(&id, &text); err != nil {
			return err
		}
		fn(id, text)
	}
	return rows.Err()
}

// address is one address of a mailbox with its domain part.
type address struct{ addr, domain string }

// addressSet returns the addresses of m, lower case, the primary first, each
// once.
func addressSet(m *store.Mailbox) ([]address, error) {
	set := make([]address, 0, 1+len(m.Aliases))
	seen := make(map[string]bool, 1+len(m.Aliases))
	for i, raw := range append([]string{m.Primary}, m.Aliases...) {
		addr, domain, err := store.NormAddress(raw)
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("primary address: %w", err)
			}
			return nil, fmt.Errorf("alias: %w", err)
		}
		if seen[addr] {
			continue
		}
		seen[addr] = true
		set = append(set, address{addr, domain})
	}
	return set, nil
}
