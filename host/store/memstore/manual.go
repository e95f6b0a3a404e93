package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// The hand-made changes below each check everything first and change the
// store only when nothing can fail any more, so that a refused change leaves
// the store as it was. Each bumps the domain's generation, so that a run
// computed before it cannot apply over it (store.ErrStoreChanged).

// AddGroup creates a gateway group (source manual); store.ErrExists if the
// domain has one of that exact name. Names are byte-exact.
func (s *Store) AddGroup(ctx context.Context, domain, name string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if name == "" {
		return errors.New("add group: empty group name")
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	d := s.ensureDomain(domain)
	if d.groups[name] {
		return fmt.Errorf("group %q in %s: %w", name, domain, store.ErrExists)
	}
	d.groups[name] = true
	d.generation++
	return nil
}

// RemoveGroup deletes a gateway group and every membership in it.
func (s *Store) RemoveGroup(ctx context.Context, domain, name string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	d := s.domain(domain)
	if !d.groups[name] {
		return fmt.Errorf("group %q in %s: %w", name, domain, store.ErrNotFound)
	}
	delete(d.groups, name)
	for _, m := range d.mailboxes {
		d.leave(m, name)
	}
	d.generation++
	return nil
}

// Assign adds the mailbox of domain that owns address (primary or alias) to
// group, by hand (a membership of source manual); store.ErrExists if it is a
// member already, whatever made the membership.
func (s *Store) Assign(ctx context.Context, domain, group, address string) error {
	return s.membership(ctx, domain, group, address, func(d *domainState, m *store.Mailbox) error {
		if slices.Contains(m.Groups, group) {
			return fmt.Errorf("mailbox %s in group %q: %w", m.Primary, group, store.ErrExists)
		}
		d.join(m, group, sdk.SourceManual)
		return nil
	})
}

// Unassign removes the mailbox of domain that owns address (primary or
// alias) from group, whoever made the membership; store.ErrNotFound if it
// is not a member.
func (s *Store) Unassign(ctx context.Context, domain, group, address string) error {
	return s.membership(ctx, domain, group, address, func(d *domainState, m *store.Mailbox) error {
		if !slices.Contains(m.Groups, group) {
			return fmt.Errorf("mailbox %s in group %q: %w", m.Primary, group, store.ErrNotFound)
		}
		d.leave(m, group)
		return nil
	})
}

// membership finds the group and the mailbox of address in domain, calls
// change with the domain and the mailbox, and bumps the domain's generation
// if change succeeds. change must fail without changing anything.
func (s *Store) membership(ctx context.Context, domain, group, address string, change func(*domainState, *store.Mailbox) error) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	addr, err := normAddress(address)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	d := s.domain(domain)
	if !d.groups[group] {
		return fmt.Errorf("group %q in %s: %w", group, domain, store.ErrNotFound)
	}
	o, ok := s.owners[addr]
	if !ok || o.domain != domain {
		return fmt.Errorf("mailbox with address %q in %s: %w", addr, domain, store.ErrNotFound)
	}
	if err := change(d, d.mailboxes[o.id]); err != nil {
		return err
	}
	d.generation++
	return nil
}

// AddMailbox creates a hand-made mailbox (source manual) with its aliases
// and groups (memberships of source manual), and returns its id. Addresses are kept in lower case; one that
// any mailbox of any domain owns is store.ErrExists, an unknown group
// store.ErrNotFound, and then nothing is created.
func (s *Store) AddMailbox(ctx context.Context, domain string, m store.Mailbox) (int64, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return 0, err
	}
	addrs, err := addresses(&m)
	if err != nil {
		return 0, fmt.Errorf("add mailbox: %w", err)
	}
	kind, err := store.NormKind(m.Kind)
	if err != nil {
		return 0, fmt.Errorf("add mailbox %s: %w", addrs[0], err)
	}
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()

	// Check everything first.
	for _, a := range addrs {
		if o, ok := s.owners[a]; ok {
			return 0, fmt.Errorf("add mailbox %s to %s: %w", addrs[0], domain, takenError(a, o))
		}
	}
	for _, g := range m.Groups {
		if !s.domain(domain).groups[g] {
			return 0, fmt.Errorf("add mailbox %s to %s: group %q in %s: %w", addrs[0], domain, g, domain, store.ErrNotFound)
		}
	}

	// Then change the store.
	d := s.ensureDomain(domain)
	s.lastMailbox++
	nm := &store.Mailbox{
		ID: s.lastMailbox, DirID: m.DirID, DN: m.DN, Kind: kind,
		Primary: addrs[0], Aliases: sortedSet(addrs[1:]), DisplayName: m.DisplayName,
		Source: sdk.SourceManual,
	}
	for _, g := range m.Groups {
		d.join(nm, g, sdk.SourceManual)
	}
	d.mailboxes[nm.ID] = nm
	for _, a := range addrs {
		s.owners[a] = owner{domain, nm.ID}
	}
	d.generation++
	return nm.ID, nil
}

// RemoveMailbox deletes the mailbox of domain whose primary address is
// address, with its aliases and memberships. An alias is not enough:
// store.ErrNotFound.
func (s *Store) RemoveMailbox(ctx context.Context, domain, address string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	addr, err := normAddress(address)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	o, ok := s.owners[addr]
	if !ok || o.domain != domain {
		return fmt.Errorf("mailbox %s in %s: %w", addr, domain, store.ErrNotFound)
	}
	d := s.domains[domain]
	m := d.mailboxes[o.id]
	if m.Primary != addr {
		return fmt.Errorf("mailbox %s in %s: %w (it is an alias of %s)", addr, domain, store.ErrNotFound, m.Primary)
	}
	for _, a := range mailboxAddresses(m) {
		delete(s.owners, a)
	}
	d.drop(m)
	delete(d.mailboxes, m.ID)
	d.generation++
	return nil
}
