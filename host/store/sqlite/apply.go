package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Apply makes all changes and records run in one transaction (S3): all of it
// lands or none. The order inside is fixed, so that an address freed by a
// delete or an update can be taken by a create of the same run:
//
//  1. deletes,
//  2. updates and adopts (all addresses of the changed mailboxes are released
//     before any is taken again, so two mailboxes may swap aliases),
//  3. creates,
//  4. membership changes.
//
// An add_member for a mailbox already in the group makes that membership an
// LDAP one; a remove_member for a mailbox not in the group is an error
// (store.ErrNotFound), as are an unknown group or mailbox. Only mailboxes of
// domain are touched.
//
// Before any of it, Apply checks that the domain's generation is still
// run.Generation, the one of the snapshot the changes were computed from
// (store.ErrStoreChanged if not), and bumps it. A run that StartRun wrote
// (run.ID set) has its row finished; another gets a new row. The domain's
// directory state becomes run.DirState (deleted if nil).
//
// If run.Changes is nil, Apply fills it from changes, in their given order.
// It sets run.ID and run.ChangeCount (and run.Domain if empty). On error
// nothing is written and the error names the change that failed.
func (s *Store) Apply(ctx context.Context, domain string, changes []store.Change, run *store.Run) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if run == nil {
		return errors.New("apply: no run record")
	}
	if err := runDomain(run, domain); err != nil {
		return err
	}

	enc, filled := startRecord(run, changes)
	var id int64
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		if err := checkGeneration(ctx, tx, domain, run.Generation); err != nil {
			return err
		}
		a, err := newApplier(ctx, tx, domain)
		if err != nil {
			return err
		}
		defer a.close()
		id, err = a.finish(changes, run, enc)
		return err
	})
	if err != nil {
		if filled {
			run.Changes = nil
		}
		return fmt.Errorf("apply to %s: %w", domain, err)
	}
	run.ID, run.ChangeCount = id, len(run.Changes)
	return nil
}

// encoded is a run's change list as the runs table keeps it.
type encoded struct {
	blob []byte
	err  error
}

// startRecord fills run.Changes from changes when it is nil (filled says
// so, for the caller to undo on error) and encodes it beside the write.
func startRecord(run *store.Run, changes []store.Change) (enc <-chan encoded, filled bool) {
	if run.Changes == nil && len(changes) > 0 {
		run.Changes = store.RunChanges(changes)
		filled = true
	}
	ch := make(chan encoded, 1)
	go func(rcs []store.RunChange) {
		b, err := encodeChanges(rcs)
		ch <- encoded{b, err}
	}(run.Changes)
	return ch, filled
}

// finish writes an Apply in a's transaction, whose generation the caller
// checked: it bumps the generation, writes changes, the run's record (its
// change list from enc) and the directory state, and returns the run's id.
func (a *applier) finish(changes []store.Change, run *store.Run, enc <-chan encoded) (int64, error) {
	if err := bumpGeneration(a.ctx, a.tx, a.domain); err != nil {
		return 0, err
	}
	if err := a.apply(changes); err != nil {
		return 0, err
	}
	e := <-enc
	if e.err != nil {
		return 0, fmt.Errorf("encode run changes: %w", e.err)
	}
	id, err := writeRun(a.ctx, a.tx, run, e.blob)
	if err != nil {
		return 0, err
	}
	return id, writeDirState(a, run.DirState)
}

// applier writes the changes of one Apply with statements prepared once.
type applier struct {
	done   context.Context // the caller's, checked between changes
	ctx    context.Context // for statements, never done
	tx     *sql.Tx
	domain string
	groups map[string]int64 // group name → id, in domain
	// created maps the directory id of each mailbox created in this Apply
	// to its new id, for membership changes that name it.
	created map[string]int64
	// kept are the directory ids of the creates a prewrite wrote already
	// (prewrite.go): creates then adds only their groups.
	kept map[string]bool

	insMailbox, updMailbox, delMailbox, inDomain *sql.Stmt
	insAddress, delAddresses                     *sql.Stmt
	addMember, delMember                         *sql.Stmt

	// For creates (bulk.go): the id the next mailbox gets (0: not read
	// yet) and the rows of a batch of creates.
	nextID                               int64
	mailboxRows, addressRows, memberRows multiInsert
}

func newApplier(ctx context.Context, tx *sql.Tx, domain string) (*applier, error) {
	// The statements run with a context that is never done: the driver
	// would otherwise start a watcher per statement, which costs more than
	// the statement. apply checks ctx between changes instead.
	a := &applier{done: ctx, ctx: context.WithoutCancel(ctx), tx: tx, domain: domain, created: make(map[string]int64)}
	var err error
	a.groups, err = groupIDs(ctx, tx, domain)
	if err != nil {
		return nil, err
	}
	stmts := []struct {
		p *(*sql.Stmt)
		q string
	}{
		{&a.insMailbox, `INSERT INTO mailboxes (id, domain, primary_address, kind, display_name, source, dir_id, dn)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		// A NULL source keeps the mailbox's source (update); adopt sets one.
		{&a.updMailbox, `UPDATE mailboxes SET primary_address = ?, kind = ?, display_name = ?, dn = ?, dir_id = ?,
			source = COALESCE(?, source) WHERE id = ? AND domain = ?`},
		{&a.delMailbox, `DELETE FROM mailboxes WHERE id = ? AND domain = ?`},
		{&a.inDomain, `SELECT 1 FROM mailboxes WHERE id = ? AND domain = ?`},
		{&a.insAddress, `INSERT INTO addresses (address, domain, mailbox_id, is_primary) VALUES (?, ?, ?, ?)`},
		{&a.delAddresses, `DELETE FROM addresses WHERE mailbox_id = ?`},
		{&a.addMember, `INSERT INTO memberships (mailbox_id, group_id, source) VALUES (?, ?, ?)
			ON CONFLICT (mailbox_id, group_id) DO UPDATE SET source = excluded.source`},
		{&a.delMember, `DELETE FROM memberships WHERE mailbox_id = ? AND group_id = ?`},
	}
	for _, st := range stmts {
		if *st.p, err = tx.PrepareContext(ctx, st.q); err != nil {
			a.close()
			return nil, fmt.Errorf("prepare %q: %w", st.q, err)
		}
	}
	a.mailboxRows = multiInsert{table: "mailboxes",
		cols: []string{"id", "domain", "primary_address", "kind", "display_name", "source", "dir_id", "dn"}}
	a.addressRows = multiInsert{table: "addresses", cols: []string{"address", "domain", "mailbox_id", "is_primary"}}
	a.memberRows = multiInsert{table: "memberships", cols: []string{"mailbox_id", "group_id", "source"},
		tail: " ON CONFLICT (mailbox_id, group_id) DO UPDATE SET source = excluded.source"}
	return a, nil
}

// forget drops what the applier knows of the creates it wrote, and the
// rows it queued, once they are rolled back.
func (a *applier) forget() {
	a.nextID, a.created = 0, map[string]int64{}
	for _, m := range []*multiInsert{&a.mailboxRows, &a.addressRows, &a.memberRows} {
		m.args = m.args[:0]
	}
}

func (a *applier) close() {
	for _, st := range []*sql.Stmt{a.insMailbox, a.updMailbox, a.delMailbox, a.inDomain,
		a.insAddress, a.delAddresses, a.addMember, a.delMember} {
		if st != nil {
			st.Close()
		}
	}
	for _, m := range []*multiInsert{&a.mailboxRows, &a.addressRows, &a.memberRows} {
		m.close()
	}
}

// apply writes changes in the order deletes, updates/adopts, creates,
// memberships.
func (a *applier) apply(changes []store.Change) error {
	var deletes, updates, creates, members []int
	for i, c := range changes {
		switch c.Kind {
		case sdk.ChangeDelete:
			deletes = append(deletes, i)
		case sdk.ChangeUpdate, sdk.ChangeAdopt:
			updates = append(updates, i)
		case sdk.ChangeCreate:
			creates = append(creates, i)
		case sdk.ChangeAddMember, sdk.ChangeRemoveMember:
			members = append(members, i)
		default:
			return fmt.Errorf("change %d: unknown kind %s", i, c.Kind)
		}
	}

	phases := []struct {
		changes []int
		do      func(*store.Change) error
	}{
		{deletes, a.delete},
		{updates, a.update},        // changes the mailboxes, releases their addresses,
		{updates, a.takeAddresses}, // and only then takes the new ones
		{nil, nil},                 // creates, in batches
		{members, a.membership},
	}
	for _, p := range phases {
		if p.do == nil {
			if err := a.creates(changes, creates); err != nil {
				return err
			}
			continue
		}
		for _, i := range p.changes {
			if err := a.done.Err(); err != nil {
				return err
			}
			if err := p.do(&changes[i]); err != nil {
				return changeError(&changes[i], err)
			}
		}
	}
	return nil
}

// creates writes the creates of changes at indexes idx, bulkRows at a
// time (the rest one at a time). A create that a prewrite wrote (kept)
// gets its groups only.
func (a *applier) creates(changes []store.Change, idx []int) error {
	if len(a.kept) > 0 {
		rest := idx[:0:0]
		for k, i := range idx {
			if k%bulkRows == 0 {
				if err := a.done.Err(); err != nil {
					return err
				}
			}
			if c := &changes[i]; c.After != nil && a.kept[c.After.DirID] {
				if err := a.keptGroups(c); err != nil {
					return changeError(c, err)
				}
				continue
			}
			rest = append(rest, i)
		}
		if err := a.memberRows.flush(a); err != nil {
			return err
		}
		idx = rest
	}
	batch := make([]*store.Change, 0, bulkRows)
	for k, i := range idx {
		batch = append(batch, &changes[i])
		if len(batch) < bulkRows && k < len(idx)-1 {
			continue
		}
		if err := a.done.Err(); err != nil {
			return err
		}
		if len(batch) == bulkRows && bulkCreates {
			if err := a.createBatch(batch); err != nil {
				return err
			}
		} else {
			for _, c := range batch {
				if err := a.create(c); err != nil {
					return changeError(c, err)
				}
			}
		}
		batch = batch[:0]
	}
	return nil
}

func (a *applier) delete(c *store.Change) error {
	if c.Before == nil {
		return errors.New("delete without Before")
	}
	changed, err := a.exec(a.delMailbox, c.Before.ID, a.domain)
	if err == nil && !changed {
		err = fmt.Errorf("mailbox %d in %s: %w", c.Before.ID, a.domain, store.ErrNotFound)
	}
	return err
}

// update changes the mailbox row and releases its addresses; takeAddresses
// gives it the new ones once every update has released its own.
func (a *applier) update(c *store.Change) error {
	if c.After == nil {
		return fmt.Errorf("%s without After", c.Kind)
	}
	id := changeID(c)
	set, err := addressSet(c.After)
	if err != nil {
		return err
	}
	kind, err := store.NormKind(c.After.Kind)
	if err != nil {
		return err
	}
	var source any // NULL: keep
	if c.Kind == sdk.ChangeAdopt {
		source = sdk.SourceLDAP
	}
	changed, err := a.exec(a.updMailbox,
		set[0].addr, kind, c.After.DisplayName, c.After.DN, c.After.DirID, source, id, a.domain)
	switch {
	case isUnique(err):
		return fmt.Errorf("directory id %q is taken by another mailbox of %s: %w", c.After.DirID, a.domain, store.ErrExists)
	case err != nil:
		return err
	case !changed:
		return fmt.Errorf("mailbox %d in %s: %w", id, a.domain, store.ErrNotFound)
	}
	_, err = a.delAddresses.ExecContext(a.ctx, id)
	return err
}

func (a *applier) takeAddresses(c *store.Change) error {
	set, err := addressSet(c.After)
	if err != nil {
		return err
	}
	return a.insertAddresses(changeID(c), set)
}

func (a *applier) create(c *store.Change) error {
	r, err := a.newMailbox(c)
	if err != nil {
		return err
	}
	m, id := c.After, r.id
	if _, err := a.insMailbox.ExecContext(a.ctx, id, a.domain, r.set[0].addr, r.kind, m.DisplayName, sdk.SourceLDAP, m.DirID, m.DN); err != nil {
		delete(a.created, m.DirID)
		if isUnique(err) {
			return fmt.Errorf("directory id %q is taken by another mailbox of %s: %w", m.DirID, a.domain, store.ErrExists)
		}
		return err
	}
	if err := a.insertAddresses(id, r.set); err != nil {
		return err
	}
	for _, g := range m.Groups {
		gid, err := a.group(g)
		if err != nil {
			return err
		}
		if _, err := a.addMember.ExecContext(a.ctx, id, gid, sdk.SourceLDAP); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) membership(c *store.Change) error {
	gid, err := a.group(c.Group)
	if err != nil {
		return err
	}
	var id int64
	switch {
	case c.Before != nil && c.Before.ID != 0:
		id = c.Before.ID
		if err := a.inDomain.QueryRowContext(a.ctx, id, a.domain).Scan(new(int)); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("mailbox %d in %s: %w", id, a.domain, store.ErrNotFound)
			}
			return err
		}
	case c.After != nil:
		var ok bool
		if id, ok = a.created[c.After.DirID]; !ok {
			return fmt.Errorf("mailbox with directory id %q created in this run: %w", c.After.DirID, store.ErrNotFound)
		}
	default:
		return errors.New("membership change names no mailbox")
	}
	if c.Kind == sdk.ChangeAddMember {
		_, err := a.addMember.ExecContext(a.ctx, id, gid, sdk.SourceLDAP)
		return err
	}
	changed, err := a.exec(a.delMember, id, gid)
	if err == nil && !changed {
		err = fmt.Errorf("membership of mailbox %d in group %q: %w", id, c.Group, store.ErrNotFound)
	}
	return err
}

// insertAddresses gives the addresses to mailbox id; an address that another
// mailbox owns is an ErrExists naming that mailbox.
func (a *applier) insertAddresses(id int64, set []address) error {
	for i, ad := range set {
		if _, err := a.insAddress.ExecContext(a.ctx, ad.addr, ad.domain, id, i == 0); err != nil {
			if isUnique(err) {
				return takenError(a.ctx, a.tx, ad.addr)
			}
			return err
		}
	}
	return nil
}

// group returns the id of the domain's group name (byte-exact).
func (a *applier) group(name string) (int64, error) {
	id, ok := a.groups[name]
	if !ok {
		return 0, fmt.Errorf("group %q in %s: %w", name, a.domain, store.ErrNotFound)
	}
	return id, nil
}

// exec runs a statement and reports whether it changed a row.
func (a *applier) exec(st *sql.Stmt, args ...any) (changed bool, err error) {
	res, err := st.ExecContext(a.ctx, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// changeID is the id of the mailbox an update or adopt changes.
func changeID(c *store.Change) int64 {
	if c.After != nil && c.After.ID != 0 {
		return c.After.ID
	}
	if c.Before != nil {
		return c.Before.ID
	}
	return 0
}

// changeError says which change failed.
func changeError(c *store.Change, err error) error {
	return fmt.Errorf("%s %s: %w", c.Kind, changeAddress(c), err)
}

// changeAddress is the address a change is about, for messages and records.
func changeAddress(c *store.Change) string {
	if c.After != nil && c.After.Primary != "" {
		return c.After.Primary
	}
	if c.Before != nil {
		return c.Before.Primary
	}
	return ""
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

// takenError reports that addr belongs to another mailbox, and to which.
func takenError(ctx context.Context, tx *sql.Tx, addr string) error {
	var id int64
	var primary, domain string
	err := tx.QueryRowContext(ctx, `
		SELECT m.id, m.primary_address, m.domain FROM addresses a JOIN mailboxes m ON m.id = a.mailbox_id
		WHERE a.address = ?`, addr).Scan(&id, &primary, &domain)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, store.ErrExists)
	}
	return fmt.Errorf("address %q belongs to mailbox %d (%s in %s): %w", addr, id, primary, domain, store.ErrExists)
}

// groupIDs maps the names of a domain's groups to their ids.
func groupIDs(ctx context.Context, tx *sql.Tx, domain string) (map[string]int64, error) {
	ids := make(map[string]int64)
	err := eachPair(ctx, tx, `SELECT id, name FROM groups WHERE domain = ?`, []any{domain},
		func(id int64, name string) { ids[name] = id })
	return ids, err
}

// checkGeneration returns a store.ErrStoreChanged if the generation of
// domain is not want. A domain that does not exist is at generation 0.
func checkGeneration(ctx context.Context, tx *sql.Tx, domain string, want int64) error {
	gen, err := generation(ctx, tx, domain)
	if err != nil {
		return err
	}
	if gen != want {
		return fmt.Errorf("%s is at generation %d, the run read generation %d: %w", domain, gen, want, store.ErrStoreChanged)
	}
	return nil
}

// generation reads the generation of domain; 0 if it does not exist.
func generation(ctx context.Context, tx *sql.Tx, domain string) (int64, error) {
	var gen int64
	err := tx.QueryRowContext(ctx, `SELECT generation FROM domains WHERE name = ?`, domain).Scan(&gen)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return gen, err
}

// bumpGeneration notes a write to domain. It must run in the transaction
// that writes.
func bumpGeneration(ctx context.Context, tx *sql.Tx, domain string) error {
	_, err := tx.ExecContext(ctx, `UPDATE domains SET generation = generation + 1 WHERE name = ?`, domain)
	return err
}

// ensureDomain creates domain if it does not exist.
func ensureDomain(ctx context.Context, tx *sql.Tx, domain string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO domains (name) VALUES (?) ON CONFLICT DO NOTHING`, domain)
	return err
}
