package memstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Apply makes all changes to domain and records run, as one transaction
// (S3): all of it lands or none.
//
// It keeps these rules of the contract:
//
//   - Generation: the domain must still be at run.Generation, the generation
//     of the snapshot the changes were computed from; else
//     store.ErrStoreChanged and nothing is written. A successful Apply bumps
//     the generation, so of several runs computed from one snapshot only the
//     first applies.
//   - All or nothing: the changes are made to a copy of the domain and of the
//     address index, which replaces the store's state only once every change
//     has succeeded. A failing change leaves the store as it was, and no run
//     is recorded; the error names the change.
//   - Order: deletes, then updates and adopts, then creates, then membership
//     changes, whatever the order given, so that an address freed by a
//     delete or an update can be taken by a later change of the same run.
//     Every update releases its old addresses before any takes its new ones,
//     so two mailboxes may swap aliases.
//   - Addresses are unique in the whole store (store.ErrExists); a create's
//     directory id is unique among the domain's LDAP mailboxes; a group must
//     exist (store.ErrNotFound); only mailboxes of domain are touched.
//   - The run record: a run with an ID (from StartRun) has its row finished;
//     one without gets a new row. If run.Changes is nil it is filled from
//     changes. Apply sets run.ID and run.ChangeCount, and run.Domain if
//     empty.
//   - The directory state: the domain's becomes a copy of run.DirState
//     (none if nil), with the rest of the commit, its chunks patched into
//     the old ones if run.DirState.Patch; a failed Apply keeps the old one.
func (s *Store) Apply(ctx context.Context, domain string, changes []store.Change, run *store.Run) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if run == nil {
		return fmt.Errorf("apply to %s: no run record", domain)
	}
	if run.Domain == "" {
		run.Domain = domain
	} else if d, err := store.NormDomain(run.Domain); err != nil || d != domain {
		return fmt.Errorf("apply to %s: run record is for domain %q", domain, run.Domain)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()

	cur := s.domain(domain)
	if cur.generation != run.Generation {
		return fmt.Errorf("apply to %s: the domain is at generation %d, the run read generation %d: %w",
			domain, cur.generation, run.Generation, store.ErrStoreChanged)
	}
	if run.ID != 0 && s.runIndex(domain, run.ID) < 0 {
		return fmt.Errorf("apply to %s: run %d: %w", domain, run.ID, store.ErrNotFound)
	}

	tx := &applyTx{
		domain:  domain,
		d:       cur.clone(),
		owners:  maps.Clone(s.owners),
		lastID:  s.lastMailbox,
		dirIDs:  make(map[string]int64),
		created: make(map[string]int64),
	}
	for _, m := range tx.d.mailboxes {
		if m.Source == sdk.SourceLDAP {
			tx.dirIDs[m.DirID] = m.ID
		}
	}
	if err := tx.apply(changes); err != nil {
		return fmt.Errorf("apply to %s: %w", domain, err)
	}

	// Every change succeeded: commit by swapping the copies in.
	tx.d.generation++
	s.domains[domain], s.owners, s.lastMailbox = tx.d, tx.owners, tx.lastID
	if next := nextDirState(s.dirStates[domain], run.DirState); next == nil {
		delete(s.dirStates, domain)
	} else {
		s.dirStates[domain] = next
	}
	if run.Changes == nil && len(changes) > 0 {
		run.Changes = store.RunChanges(changes)
	}
	s.writeRun(run)
	return nil
}

// applyTx is the working state of one Apply: copies that the changes are
// made to, and that replace the store's state if all of them succeed.
type applyTx struct {
	domain string
	d      *domainState     // a copy of the domain
	owners map[string]owner // a copy of the store's address index
	lastID int64            // the last mailbox id given out
	// dirIDs maps the directory id of every LDAP mailbox of the domain to
	// its id: one LDAP mailbox per directory id (R3).
	dirIDs map[string]int64
	// created maps the directory id of each mailbox created in this Apply to
	// its new id, for the membership changes that name it.
	created map[string]int64
}

// apply makes the changes in the order deletes, updates and adopts,
// creates, memberships.
func (tx *applyTx) apply(changes []store.Change) error {
	var deletes, updates, creates, members []*store.Change
	for i := range changes {
		c := &changes[i]
		switch c.Kind {
		case sdk.ChangeDelete:
			deletes = append(deletes, c)
		case sdk.ChangeUpdate, sdk.ChangeAdopt:
			updates = append(updates, c)
		case sdk.ChangeCreate:
			creates = append(creates, c)
		case sdk.ChangeAddMember, sdk.ChangeRemoveMember:
			members = append(members, c)
		default:
			return fmt.Errorf("change %d: unknown kind %s", i, c.Kind)
		}
	}
	steps := []struct {
		changes []*store.Change
		do      func(*store.Change) error
	}{
		{deletes, tx.delete},
		{updates, tx.update},        // changes the mailboxes and releases their addresses,
		{updates, tx.takeAddresses}, // and only then takes the new ones
		{creates, tx.create},
		{members, tx.membership},
	}
	for _, step := range steps {
		for _, c := range step.changes {
			if err := step.do(c); err != nil {
				return fmt.Errorf("%s %s: %w", c.Kind, changeAddress(c), err)
			}
		}
	}
	return nil
}

// delete removes the mailbox c.Before names, with its addresses and
// memberships.
func (tx *applyTx) delete(c *store.Change) error {
	if c.Before == nil {
		return errors.New("delete without Before")
	}
	m, err := tx.mailbox(c.Before.ID)
	if err != nil {
		return err
	}
	for _, a := range mailboxAddresses(m) {
		delete(tx.owners, a)
	}
	if m.Source == sdk.SourceLDAP {
		delete(tx.dirIDs, m.DirID)
	}
	tx.d.drop(m)
	delete(tx.d.mailboxes, m.ID)
	return nil
}

// update sets the fields of the mailbox from c.After and releases its
// addresses; takeAddresses gives it its new ones. An update keeps the
// mailbox's source, an adopt makes it an LDAP mailbox; neither touches its
// memberships.
func (tx *applyTx) update(c *store.Change) error {
	if c.After == nil {
		return fmt.Errorf("%s without After", c.Kind)
	}
	m, err := tx.mailbox(changeID(c))
	if err != nil {
		return err
	}
	addrs, err := addresses(c.After)
	if err != nil {
		return err
	}
	kind, err := store.NormKind(c.After.Kind)
	if err != nil {
		return err
	}
	source := m.Source
	if c.Kind == sdk.ChangeAdopt {
		source = sdk.SourceLDAP
	}
	if source == sdk.SourceLDAP {
		if err := tx.dirIDFree(c.After.DirID, m.ID); err != nil {
			return err
		}
	}
	for _, a := range mailboxAddresses(m) {
		delete(tx.owners, a)
	}
	if m.Source == sdk.SourceLDAP {
		delete(tx.dirIDs, m.DirID)
	}
	m.Primary, m.Aliases = addrs[0], sortedSet(addrs[1:])
	m.Kind, m.DisplayName, m.DN, m.DirID, m.Source = kind, c.After.DisplayName, c.After.DN, c.After.DirID, source
	if m.Source == sdk.SourceLDAP {
		tx.dirIDs[m.DirID] = m.ID
	}
	return nil
}

// takeAddresses gives the mailbox of an update or adopt the addresses
// update set on it.
func (tx *applyTx) takeAddresses(c *store.Change) error {
	return tx.take(tx.d.mailboxes[changeID(c)])
}

// create makes a new LDAP mailbox from c.After, with its groups.
func (tx *applyTx) create(c *store.Change) error {
	if c.After == nil {
		return errors.New("create without After")
	}
	addrs, err := addresses(c.After)
	if err != nil {
		return err
	}
	kind, err := store.NormKind(c.After.Kind)
	if err != nil {
		return err
	}
	if err := tx.dirIDFree(c.After.DirID, 0); err != nil {
		return err
	}
	for _, g := range c.After.Groups {
		if !tx.d.groups[g] {
			return fmt.Errorf("group %q in %s: %w", g, tx.domain, store.ErrNotFound)
		}
	}
	tx.lastID++
	m := &store.Mailbox{
		ID: tx.lastID, DirID: c.After.DirID, DN: c.After.DN, Kind: kind,
		Primary: addrs[0], Aliases: sortedSet(addrs[1:]), DisplayName: c.After.DisplayName,
		Source: sdk.SourceLDAP,
	}
	if err := tx.take(m); err != nil {
		return err
	}
	for _, g := range c.After.Groups {
		tx.d.join(m, g, sdk.SourceLDAP)
	}
	tx.d.mailboxes[m.ID] = m
	tx.dirIDs[m.DirID] = m.ID
	tx.created[m.DirID] = m.ID
	return nil
}

// membership adds the mailbox to c.Group (a membership of source ldap) or
// removes it. The mailbox is c.Before (by id), or c.After (by directory id)
// for one created in this Apply. Adding a member that is one already is no
// error and makes its membership an LDAP one, also one made by hand;
// removing one that is not is store.ErrNotFound.
func (tx *applyTx) membership(c *store.Change) error {
	if !tx.d.groups[c.Group] {
		return fmt.Errorf("group %q in %s: %w", c.Group, tx.domain, store.ErrNotFound)
	}
	var m *store.Mailbox
	switch {
	case c.Before != nil && c.Before.ID != 0:
		var err error
		if m, err = tx.mailbox(c.Before.ID); err != nil {
			return err
		}
	case c.After != nil:
		id, ok := tx.created[c.After.DirID]
		if !ok {
			return fmt.Errorf("mailbox with directory id %q created in this run: %w", c.After.DirID, store.ErrNotFound)
		}
		m = tx.d.mailboxes[id]
	default:
		return errors.New("membership change names no mailbox")
	}
	if c.Kind == sdk.ChangeAddMember {
		tx.d.join(m, c.Group, sdk.SourceLDAP)
		return nil
	}
	if !slices.Contains(m.Groups, c.Group) {
		return fmt.Errorf("membership of mailbox %d in group %q: %w", m.ID, c.Group, store.ErrNotFound)
	}
	tx.d.leave(m, c.Group)
	return nil
}

// mailbox returns the domain's mailbox id (in the working copy), or
// store.ErrNotFound: a change never touches a mailbox of another domain.
func (tx *applyTx) mailbox(id int64) (*store.Mailbox, error) {
	m := tx.d.mailboxes[id]
	if m == nil {
		return nil, fmt.Errorf("mailbox %d in %s: %w", id, tx.domain, store.ErrNotFound)
	}
	return m, nil
}

// take gives m its addresses; one that another mailbox owns is
// store.ErrExists.
func (tx *applyTx) take(m *store.Mailbox) error {
	for _, a := range mailboxAddresses(m) {
		if o, ok := tx.owners[a]; ok {
			return takenError(a, o)
		}
		tx.owners[a] = owner{tx.domain, m.ID}
	}
	return nil
}

// dirIDFree checks that no LDAP mailbox of the domain other than mailbox
// self has directory id dirID (store.ErrExists).
func (tx *applyTx) dirIDFree(dirID string, self int64) error {
	if id, ok := tx.dirIDs[dirID]; ok && id != self {
		return fmt.Errorf("directory id %q is taken by mailbox %s: %w", dirID, tx.d.mailboxes[id].Primary, store.ErrExists)
	}
	return nil
}

// changeID is the id of the mailbox an update or adopt changes: After.ID,
// else Before.ID.
func changeID(c *store.Change) int64 {
	if c.After != nil && c.After.ID != 0 {
		return c.After.ID
	}
	if c.Before != nil {
		return c.Before.ID
	}
	return 0
}

// changeAddress is the address a change is about, for error messages.
func changeAddress(c *store.Change) string {
	if c.After != nil && c.After.Primary != "" {
		return c.After.Primary
	}
	if c.Before != nil {
		return c.Before.Primary
	}
	return ""
}
