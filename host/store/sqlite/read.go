package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/dirsync/dirsync/host/store"
)

// Snapshot reads the state of a domain in one read transaction, with a
// handful of bulk queries, and the domain's generation. An unknown domain has
// an empty snapshot at generation 0.
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
	err = s.readTx(ctx, func(tx *sql.Tx) error {
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
		foreign := make(map[string]int64)
		if err := foreignAddresses(ctx, tx, domain, domains, foreign); err != nil {
			return err
		}
		for addr, id := range foreign {
			snap.Owners[addr] = id
			if _, done := snap.Foreign[id]; done {
				continue
			}
			m, err := mailboxByID(ctx, tx, id)
			if err != nil {
				return err
			}
			snap.Foreign[id] = m
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
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if snap.Generation, err = generation(ctx, tx, domain); err != nil {
			return err
		}
		if snap.Groups, err = domainGroups(ctx, tx, domain); err != nil {
			return err
		}
		// On the partial index of LDAP mailboxes.
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM mailboxes WHERE domain = ? AND source = 'ldap'`,
			domain).Scan(&ldap); err != nil {
			return err
		}
		ids := map[int64]bool{}
		err = eachChunk(dirIDs, func(args []any, marks string) error {
			return eachPair(ctx, tx, `SELECT id, dir_id FROM mailboxes WHERE domain = ? AND source = 'ldap' AND dir_id IN (`+marks+`)`,
				append([]any{domain}, args...), func(id int64, _ string) { ids[id] = true })
		})
		if err != nil {
			return err
		}
		err = eachChunk(addresses, func(args []any, marks string) error {
			return eachPair(ctx, tx, `SELECT mailbox_id, address FROM addresses WHERE address IN (`+marks+`)`,
				args, func(id int64, _ string) { ids[id] = true })
		})
		if err != nil {
			return err
		}
		ms, err := mailboxesByID(ctx, tx, slices.Sorted(maps.Keys(ids)))
		if err != nil {
			return err
		}
		all := make([]store.Mailbox, len(ms))
		for i, m := range ms {
			all[i] = m.Mailbox
			if m.domain == domain {
				snap.Mailboxes = append(snap.Mailboxes, m.Mailbox)
			} else {
				snap.Foreign[m.ID] = m.Mailbox
			}
		}
		snap.Owners = ownAddresses(all, domains)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("part of the snapshot of %s: %w", domain, err)
	}
	slices.SortFunc(snap.Mailboxes, func(a, b store.Mailbox) int { return strings.Compare(a.Primary, b.Primary) })
	return snap, ldap, nil
}

// chunk is how many values one statement of eachChunk binds.
const chunk = 500

// eachChunk calls fn with the values as statement arguments, at most
// chunk at a time, and their placeholders.
func eachChunk(values []string, fn func(args []any, marks string) error) error {
	for len(values) > 0 {
		n := min(len(values), chunk)
		args := make([]any, n)
		for i, v := range values[:n] {
			args[i] = v
		}
		if err := fn(args, "?"+strings.Repeat(", ?", n-1)); err != nil {
			return err
		}
		values = values[n:]
	}
	return nil
}

// domainMailbox is a mailbox and its domain.
type domainMailbox struct {
	store.Mailbox
	domain string
}

// mailboxesByID reads the mailboxes of ids with their aliases and groups
// (sorted), in the order of ids.
func mailboxesByID(ctx context.Context, tx *sql.Tx, ids []int64) ([]domainMailbox, error) {
	ms := make([]domainMailbox, 0, len(ids))
	index := make(map[int64]int, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		ids = ids[n:]
		marks := "?" + strings.Repeat(", ?", n-1)
		rows, err := tx.QueryContext(ctx, `
			SELECT id, domain, dir_id, dn, kind, primary_address, display_name, source
			FROM mailboxes WHERE id IN (`+marks+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var m domainMailbox
			if err := rows.Scan(&m.ID, &m.domain, &m.DirID, &m.DN, &m.Kind, &m.Primary, &m.DisplayName, &m.Source); err != nil {
				rows.Close()
				return nil, err
			}
			index[m.ID] = len(ms)
			ms = append(ms, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		err = eachPair(ctx, tx, `SELECT mailbox_id, address FROM addresses WHERE mailbox_id IN (`+marks+`) AND is_primary = 0`, args,
			func(id int64, addr string) {
				if i, ok := index[id]; ok {
					ms[i].Aliases = append(ms[i].Aliases, addr)
				}
			})
		if err != nil {
			return nil, err
		}
		err = eachPair(ctx, tx, `
			SELECT ms.mailbox_id, g.name FROM memberships ms JOIN groups g ON g.id = ms.group_id
			WHERE ms.mailbox_id IN (`+marks+`)`, args,
			func(id int64, name string) {
				if i, ok := index[id]; ok {
					ms[i].Groups = append(ms[i].Groups, name)
				}
			})
		if err != nil {
			return nil, err
		}
	}
	for i := range ms {
		slices.Sort(ms[i].Aliases)
		slices.Sort(ms[i].Groups)
	}
	return ms, nil
}

// Mailboxes lists a domain's mailboxes sorted by primary address.
func (s *Store) Mailboxes(ctx context.Context, domain string) ([]store.Mailbox, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	var ms []store.Mailbox
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		ms, err = domainMailboxes(ctx, tx, domain)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mailboxes of %s: %w", domain, err)
	}
	return ms, nil
}

// Groups lists a domain's gateway groups sorted by name.
func (s *Store) Groups(ctx context.Context, domain string) ([]store.Group, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	var gs []store.Group
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		gs, err = domainGroups(ctx, tx, domain)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", domain, err)
	}
	return gs, nil
}

// GroupMembers lists the members of a domain's gateway group (name
// byte-exact) sorted by address, with the source of each membership and of
// its mailbox; store.ErrNotFound if the domain has no such group.
func (s *Store) GroupMembers(ctx context.Context, domain, group string) ([]store.Member, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	var members []store.Member
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		var gid int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM groups WHERE domain = ? AND name = ?`, domain, group).Scan(&gid)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("group %q in %s: %w", group, domain, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `
			SELECT m.primary_address, ms.source, m.source FROM memberships ms JOIN mailboxes m ON m.id = ms.mailbox_id
			WHERE ms.group_id = ? ORDER BY m.primary_address`, gid)
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
	err = s.db.QueryRowContext(ctx, `
		SELECT m.primary_address FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
		WHERE a.address = ?`, addr).Scan(&primary)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("address %q: %w", addr, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", addr, err)
	}
	return primary, nil
}

// domainMailboxes reads every mailbox of domain with its aliases and groups,
// sorted by primary address, aliases and groups sorted.
func domainMailboxes(ctx context.Context, tx *sql.Tx, domain string) ([]store.Mailbox, error) {
	rows, err := tx.QueryContext(ctx, `
		SELECT id, dir_id, dn, kind, primary_address, display_name, source
		FROM mailboxes WHERE domain = ? ORDER BY primary_address`, domain)
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
	index := make(map[int64]*store.Mailbox, len(ms))
	for i := range ms {
		index[ms[i].ID] = &ms[i]
	}

	// The primary address is in addresses too; comparing with it rather
	// than reading is_primary keeps the query on the covering index.
	err = eachPair(ctx, tx, `
		SELECT a.mailbox_id, a.address FROM mailboxes m JOIN addresses a ON a.mailbox_id = m.id
		WHERE m.domain = ? AND a.address <> m.primary_address`, []any{domain},
		func(id int64, addr string) {
			if m := index[id]; m != nil {
				m.Aliases = append(m.Aliases, addr)
			}
		})
	if err != nil {
		return nil, err
	}
	groups := make(map[int64]string)
	err = eachPair(ctx, tx, `SELECT id, name FROM groups WHERE domain = ?`, []any{domain},
		func(id int64, name string) { groups[id] = name })
	if err != nil {
		return nil, err
	}
	rows, err = tx.QueryContext(ctx, `
		SELECT ms.mailbox_id, ms.group_id FROM groups g JOIN memberships ms ON ms.group_id = g.id
		WHERE g.domain = ?`, domain)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var id, gid int64
	for rows.Next() {
		if err := rows.Scan(&id, &gid); err != nil {
			return nil, err
		}
		if m := index[id]; m != nil {
			m.Groups = append(m.Groups, groups[gid])
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range ms {
		sort.Strings(ms[i].Aliases)
		sort.Strings(ms[i].Groups)
	}
	return ms, nil
}

// mailboxByID reads one mailbox with its aliases and groups.
func mailboxByID(ctx context.Context, tx *sql.Tx, id int64) (store.Mailbox, error) {
	m := store.Mailbox{ID: id}
	err := tx.QueryRowContext(ctx, `
		SELECT dir_id, dn, kind, primary_address, display_name, source
		FROM mailboxes WHERE id = ?`, id).
		Scan(&m.DirID, &m.DN, &m.Kind, &m.Primary, &m.DisplayName, &m.Source)
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("mailbox %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return m, err
	}
	err = eachPair(ctx, tx, `SELECT mailbox_id, address FROM addresses WHERE mailbox_id = ? AND is_primary = 0`, []any{id},
		func(_ int64, addr string) { m.Aliases = append(m.Aliases, addr) })
	if err != nil {
		return m, err
	}
	err = eachPair(ctx, tx, `
		SELECT ms.mailbox_id, g.name FROM memberships ms JOIN groups g ON g.id = ms.group_id
		WHERE ms.mailbox_id = ?`, []any{id},
		func(_ int64, name string) { m.Groups = append(m.Groups, name) })
	if err != nil {
		return m, err
	}
	sort.Strings(m.Aliases)
	sort.Strings(m.Groups)
	return m, nil
}

// domainGroups reads a domain's groups sorted by name.
func domainGroups(ctx context.Context, tx *sql.Tx, domain string) ([]store.Group, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name, source FROM groups WHERE domain = ? ORDER BY name`, domain)
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
		part := addr[strings.LastIndexByte(addr, '@')+1:]
		for _, d := range domains {
			if part == d {
				return true
			}
		}
		return false
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

// foreignAddresses fills owners with the addresses in one of domains that
// mailboxes of other domains than domain own.
func foreignAddresses(ctx context.Context, tx *sql.Tx, domain string, domains []string, owners map[string]int64) error {
	args := []any{domain}
	for _, d := range domains {
		args = append(args, d)
	}
	q := `SELECT a.mailbox_id, a.address FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
		WHERE m.domain <> ? AND a.domain IN (?` + strings.Repeat(", ?", len(domains)-1) + `)`
	return eachPair(ctx, tx, q, args, func(id int64, addr string) { owners[addr] = id })
}

// eachPair runs a query returning (id, text) rows and calls fn for each.
func eachPair(ctx context.Context, tx *sql.Tx, query string, args []any, fn func(int64, string)) error {
	rows, err := tx.QueryContext(ctx, query, args...)
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
