package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

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
// Before any of it, Apply bumps the domain's generation, which locks the
// domain's row until the transaction ends, and checks that the generation
// was run.Generation, the one of the snapshot the changes were computed
// from (store.ErrStoreChanged if not). A run that StartRun wrote (run.ID set)
// has its row finished; another gets a new row. The domain's directory
// state becomes run.DirState (deleted if nil).
//
// Deletes, updates and membership changes go to the server as pipelined
// batches; the new mailboxes, all new addresses, the new mailboxes'
// memberships and the run's changes are written with COPY. Ids of new
// mailboxes are taken from their sequence in one query. Should a COPY hit
// an address or directory id that is taken, Apply rolls back to a savepoint
// taken before it and finds which change is at fault, so that the error
// names it as the SQLite store's does.
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
	return s.apply(ctx, domain, changes, run, nil)
}

// apply is Apply of a checked domain and run; spare are ids the applier
// hands out first (applier.spare).
func (s *Store) apply(ctx context.Context, domain string, changes []store.Change, run *store.Run, spare []int64) error {
	enc, filled := startRecord(run, changes)
	r := *run
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		if err := bumpFrom(ctx, tx, domain, run.Generation); err != nil {
			return err
		}
		a := &applier{ctx: ctx, tx: tx, domain: domain, changes: changes, spare: spare}
		return a.applyAndRecord(&r, enc)
	})
	if err != nil {
		if filled {
			run.Changes = nil
		}
		return fmt.Errorf("apply to %s: %w", domain, err)
	}
	run.ID, run.ChangeCount = r.ID, len(run.Changes)
	return nil
}

// encoded is a run's change list encoded for run_changes, or the error of
// encoding it.
type encoded struct {
	changes []encodedChange
	err     error
}

// startRecord fills run.Changes from changes if it is nil (filled says so:
// an Apply that fails empties it again) and starts encoding the list, so
// that it is encoded while the changes are written.
func startRecord(run *store.Run, changes []store.Change) (enc <-chan encoded, filled bool) {
	if run.Changes == nil && len(changes) > 0 {
		run.Changes = store.RunChanges(changes)
		filled = true
	}
	ch := make(chan encoded, 1) // the goroutine never waits for a reader
	go func(rcs []store.RunChange) {
		e, err := encodeChanges(rcs)
		ch <- encoded{e, err}
	}(run.Changes)
	return ch, filled
}

// bumpFrom bumps the domain's generation, which locks its row until the
// transaction ends, and checks that it was want, the generation the run's
// snapshot read.
func bumpFrom(ctx context.Context, tx pgx.Tx, domain string, want int64) error {
	gen, err := bumpGeneration(ctx, tx, domain)
	if err != nil {
		return err
	}
	return sameGeneration(domain, gen, want)
}

// sameGeneration is store.ErrStoreChanged if the domain's generation gen is
// not want, the one the run read.
func sameGeneration(domain string, gen, want int64) error {
	if gen != want {
		return fmt.Errorf("%s is at generation %d, the run read generation %d: %w", domain, gen, want, store.ErrStoreChanged)
	}
	return nil
}

// applyAndRecord makes a's changes, then records run with the encoded
// change list and replaces the domain's directory state by run.DirState,
// in a's transaction.
func (a *applier) applyAndRecord(run *store.Run, enc <-chan encoded) error {
	if err := a.apply(); err != nil {
		return err
	}
	e := <-enc
	if e.err != nil {
		return fmt.Errorf("encode run changes: %w", e.err)
	}
	if err := writeRun(a.ctx, a.tx, run, e.changes); err != nil {
		return err
	}
	return writeDirState(a.ctx, a.tx, a.domain, run.DirState)
}

// applier writes the changes of one Apply.
type applier struct {
	ctx     context.Context
	tx      pgx.Tx
	domain  string
	changes []store.Change
	groups  map[string]int64 // group name → id, in domain; apply reads them if nil

	// Set for a prewrite (prewrite.go). kept maps the directory id of each
	// create whose mailbox a prewrite wrote and this Apply keeps to the
	// mailbox's id: of such a create only the memberships are written.
	// spare are ids that a prewrite took from the sequence for mailboxes it
	// undid, ascending: allocateIDs hands them out before taking more.
	// bare is set for a prewrite's Create, whose caller rolls the whole
	// prewrite back on an error: take writes without a savepoint of its
	// own (see prewrite).
	kept  map[string]int64
	spare []int64
	bare  bool

	deletes, updates, creates, members []int // indexes into changes, by phase

	// Filled by take. The updates and the creates, in this order, are the
	// changes that take addresses; a change's position in that order is
	// its "pos": updates[pos], or creates[pos-len(updates)].
	newAddrs []newAddress   // every address taken, in the order of pos
	plans    []createPlan   // what each create writes, by pos-len(updates)
	dirIDs   map[string]int // directory id of each create → its pos
}

// newAddress is an address that an update or a create takes.
type newAddress struct {
	address
	pos     int // of the change that takes it
	primary bool
	id      int64 // the mailbox; 0 for a create until its id is known
}

// createPlan is what a create writes.
type createPlan struct {
	id     int64 // taken from the sequence by allocateIDs, or kept
	kept   bool  // a prewrite wrote the mailbox and its addresses
	kind   string
	set    []address
	groups []int64 // ids, each once
}

// change returns the index into changes of the update or create at pos.
func (a *applier) change(pos int) int {
	if pos < len(a.updates) {
		return a.updates[pos]
	}
	return a.creates[pos-len(a.updates)]
}

func (a *applier) apply() error {
	for i, c := range a.changes {
		switch c.Kind {
		case sdk.ChangeDelete:
			a.deletes = append(a.deletes, i)
		case sdk.ChangeUpdate, sdk.ChangeAdopt:
			a.updates = append(a.updates, i)
		case sdk.ChangeCreate:
			a.creates = append(a.creates, i)
		case sdk.ChangeAddMember, sdk.ChangeRemoveMember:
			a.members = append(a.members, i)
		default:
			return fmt.Errorf("change %d: unknown kind %s", i, c.Kind)
		}
	}
	if a.groups == nil {
		var err error
		if a.groups, err = groupIDs(a.ctx, a.tx, a.domain); err != nil {
			return err
		}
	}
	if err := a.delete(); err != nil {
		return err
	}
	if err := a.update(); err != nil {
		return err
	}
	if err := a.take(); err != nil {
		return err
	}
	return a.membership()
}

// fail is the error of change i.
func (a *applier) fail(i int, err error) error {
	return changeError(&a.changes[i], err)
}

// delete deletes the mailboxes of the deletes, in one batch, then their
// addresses and memberships.
func (a *applier) delete() error {
	if len(a.deletes) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, i := range a.deletes {
		c := &a.changes[i]
		if c.Before == nil {
			return a.fail(i, errors.New("delete without Before"))
		}
		b.Queue(`DELETE FROM mailboxes WHERE id = $1 AND domain = $2`, c.Before.ID, a.domain)
	}
	err := a.sendBatch(b, a.deletes, func(i int, br pgx.BatchResults) error {
		tag, err := br.Exec()
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("mailbox %d in %s: %w", a.changes[i].Before.ID, a.domain, store.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return err
	}
	ids := make([]int64, len(a.deletes))
	for k, i := range a.deletes {
		ids[k] = a.changes[i].Before.ID
	}
	return deleteMailboxRefs(a.ctx, a.tx, ids)
}

// update changes the mailbox rows of the updates and adopts in one batch,
// then releases all their addresses; take gives them the new ones.
func (a *applier) update() error {
	if len(a.updates) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	ids := make([]int64, 0, len(a.updates))
	for _, i := range a.updates {
		c := &a.changes[i]
		if c.After == nil {
			return a.fail(i, fmt.Errorf("%s without After", c.Kind))
		}
		set, err := addressSet(c.After)
		if err != nil {
			return a.fail(i, err)
		}
		kind, err := store.NormKind(c.After.Kind)
		if err != nil {
			return a.fail(i, err)
		}
		var source *string // NULL: keep
		if c.Kind == sdk.ChangeAdopt {
			ldap := sdk.SourceLDAP
			source = &ldap
		}
		id := changeID(c)
		ids = append(ids, id)
		b.Queue(`UPDATE mailboxes SET primary_address = $1, kind = $2, display_name = $3, dn = $4, dir_id = $5,
			source = COALESCE($6, source) WHERE id = $7 AND domain = $8`,
			set[0].addr, kind, c.After.DisplayName, c.After.DN, c.After.DirID, source, id, a.domain)
	}
	err := a.sendBatch(b, a.updates, func(i int, br pgx.BatchResults) error {
		c := &a.changes[i]
		tag, err := br.Exec()
		switch {
		case isUnique(err):
			return fmt.Errorf("directory id %q is taken by another mailbox of %s: %w", c.After.DirID, a.domain, store.ErrExists)
		case err != nil:
			return err
		case tag.RowsAffected() == 0:
			return fmt.Errorf("mailbox %d in %s: %w", changeID(c), a.domain, store.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = a.tx.Exec(a.ctx, `DELETE FROM addresses WHERE mailbox_id = ANY($1::bigint[])`, ids)
	return err
}

// sendBatch sends b, whose statements belong to the changes idx (one each,
// in order), and reads each result with read. The first error, in the
// order of the changes, is returned naming its change.
func (a *applier) sendBatch(b *pgx.Batch, idx []int, read func(i int, br pgx.BatchResults) error) error {
	br := a.tx.SendBatch(a.ctx, b)
	var first error
	for _, i := range idx {
		if err := read(i, br); err != nil {
			first = a.fail(i, err)
			break
		}
	}
	if err := br.Close(); first == nil && err != nil {
		return err
	}
	return first
}

// take gives the updated mailboxes their new addresses and writes the
// creates: their mailboxes, addresses and memberships (only the
// memberships of a kept create). Everything that can be checked without
// the database is checked first, kept creates included; then it all goes
// in three COPYs, behind a savepoint unless a.bare.
func (a *applier) take() error {
	n := len(a.updates)
	for _, i := range a.creates {
		if m := a.changes[i].After; m != nil {
			n += 1 + len(m.Aliases)
		}
	}
	// The updates' addresses, then the creates, as the SQLite store takes
	// them; taken maps each address to the pos of the first change that
	// takes it.
	taken := make(map[string]int, n)
	a.newAddrs = make([]newAddress, 0, n)
	a.plans = make([]createPlan, len(a.creates))
	a.dirIDs = make(map[string]int, len(a.creates))
	// A kept create's addresses are in the store already, its own: they
	// are checked against the others, not written.
	check := func(pos int, set []address, id int64, write bool) error {
		for k, ad := range set {
			if j, dup := taken[ad.addr]; dup {
				return a.takenInApply(ad.addr, j)
			}
			taken[ad.addr] = pos
			if write {
				a.newAddrs = append(a.newAddrs, newAddress{address: ad, pos: pos, primary: k == 0, id: id})
			}
		}
		return nil
	}
	refused, total := -1, len(a.updates)+len(a.creates)
	var planErr error
	for pos := 0; pos < total && planErr == nil; pos++ {
		i := a.change(pos)
		var err error
		if pos < len(a.updates) {
			set, _ := addressSet(a.changes[i].After) // checked by update
			err = check(pos, set, changeID(&a.changes[i]), true)
		} else if err = a.planCreate(pos); err == nil {
			p := &a.plans[pos-len(a.updates)]
			err = check(pos, p.set, 0, !p.kept)
		}
		if err != nil {
			planErr, refused = a.fail(i, err), pos
		}
	}
	if planErr != nil {
		// A change before the one refused may take an address or directory
		// id that the database knows: that error comes first.
		if err := a.diagnose(refused); err != nil {
			return err
		}
		return planErr
	}
	if len(a.newAddrs) == 0 && len(a.kept) == 0 {
		return nil // nothing created, no address taken
	}

	if err := a.allocateIDs(); err != nil {
		return err
	}
	if a.bare {
		return a.copyAll()
	}
	if _, err := a.tx.Exec(a.ctx, `SAVEPOINT take`); err != nil {
		return err
	}
	err := a.copyAll()
	if err == nil {
		_, err = a.tx.Exec(a.ctx, `RELEASE SAVEPOINT take`)
		return err
	}
	if !isUnique(err) {
		return err
	}
	if _, rerr := a.tx.Exec(a.ctx, `ROLLBACK TO SAVEPOINT take`); rerr != nil {
		return err
	}
	return a.copyError(err)
}

// copyError is the error of a COPY of take that hit an address or
// directory id that is taken (err), once the transaction is rolled back to
// before it: that of the change at fault as diagnose finds it.
func (a *applier) copyError(err error) error {
	if derr := a.diagnose(-1); derr != nil {
		return derr
	}
	// Taken by a writer of another domain that the diagnosis no longer
	// sees (or, in a prewrite, by a Create rolled back with this one);
	// name what PostgreSQL named.
	return fmt.Errorf("an address or directory id was taken meanwhile (%s): %w", constraintOf(err), store.ErrExists)
}

// planCreate checks the create at pos and fills its plan.
func (a *applier) planCreate(pos int) error {
	m := a.changes[a.change(pos)].After
	if m == nil {
		return errors.New("create without After")
	}
	set, err := addressSet(m)
	if err != nil {
		return err
	}
	kind, err := store.NormKind(m.Kind)
	if err != nil {
		return err
	}
	p := &a.plans[pos-len(a.updates)]
	p.kind, p.set = kind, set
	for _, g := range m.Groups {
		gid, err := a.group(g)
		if err != nil {
			return err
		}
		if !slices.Contains(p.groups, gid) {
			p.groups = append(p.groups, gid)
		}
	}
	if j, dup := a.dirIDs[m.DirID]; dup {
		return fmt.Errorf("directory id %q is taken by %s, created in this run: %w", m.DirID, changeAddress(&a.changes[a.change(j)]), store.ErrExists)
	}
	a.dirIDs[m.DirID] = pos
	if id, ok := a.kept[m.DirID]; ok {
		p.id, p.kept = id, true
	}
	return nil
}

// takenInApply is the error of an address that the change at pos j of
// this Apply takes already.
func (a *applier) takenInApply(addr string, j int) error {
	c := &a.changes[a.change(j)]
	if c.Kind == sdk.ChangeCreate {
		return fmt.Errorf("address %q is taken by %s, created in this run: %w", addr, changeAddress(c), store.ErrExists)
	}
	return owner{id: changeID(c), primary: changeAddress(c), domain: a.domain}.takenError(addr)
}

// diagnose returns the error of the first change, in the order of pos,
// whose new address another mailbox owns or whose directory id another
// LDAP mailbox of the domain has, as the database is now; nil if there is
// none. It looks at the changes that take has checked (all of them once
// the checks passed), but not at the one at pos exclude (-1: none).
func (a *applier) diagnose(exclude int) error {
	first, firstErr := -1, error(nil)
	note := func(pos int, err error) {
		if first < 0 || pos < first {
			first, firstErr = pos, a.fail(a.change(pos), err)
		}
	}

	// A create writes its mailbox, with the directory id, before its
	// addresses: that fault comes first. A kept create's directory id (as
	// its addresses, not in newAddrs) is its own mailbox's.
	var dirIDs []string
	for id, pos := range a.dirIDs {
		if pos != exclude && !a.plans[pos-len(a.updates)].kept {
			dirIDs = append(dirIDs, id)
		}
	}
	if len(dirIDs) > 0 {
		rows, err := a.tx.Query(a.ctx, `SELECT dir_id FROM mailboxes WHERE domain = $1 AND source = $2 AND dir_id = ANY($3::text[])`,
			a.domain, sdk.SourceLDAP, dirIDs)
		if err != nil {
			return err
		}
		taken, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, id := range taken {
			note(a.dirIDs[id], fmt.Errorf("directory id %q is taken by another mailbox of %s: %w", id, a.domain, store.ErrExists))
		}
	}
	var addrs []string
	for _, na := range a.newAddrs {
		if na.pos != exclude {
			addrs = append(addrs, na.addr)
		}
	}
	if len(addrs) > 0 {
		owners, err := addressOwners(a.ctx, a.tx, addrs)
		if err != nil {
			return err
		}
		for _, na := range a.newAddrs {
			if o, ok := owners[na.addr]; ok && na.pos != exclude {
				note(na.pos, o.takenError(na.addr))
			}
		}
	}
	return firstErr
}

// allocateIDs gives an id to every create that is not kept: the spare
// ids first, in their order, then ids from the mailboxes' sequence, taken
// in one query.
func (a *applier) allocateIDs() error {
	need := a.unkept()
	if len(need) == 0 {
		return nil
	}
	ids := slices.Clone(a.spare[:min(len(need), len(a.spare))])
	if more := len(need) - len(ids); more > 0 {
		rows, err := a.tx.Query(a.ctx, `SELECT nextval('mailboxes_id_seq') FROM generate_series(1, $1::integer)`, more)
		if err != nil {
			return err
		}
		taken, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if len(taken) != more {
			return fmt.Errorf("took %d mailbox ids, want %d", len(taken), more)
		}
		ids = append(ids, taken...)
	}
	for i, k := range need {
		a.plans[k].id = ids[i]
	}
	for k := range a.newAddrs {
		if na := &a.newAddrs[k]; na.id == 0 {
			na.id = a.plans[na.pos-len(a.updates)].id
		}
	}
	return nil
}

// unkept returns the indexes into plans of the creates that are not kept:
// those whose mailbox this Apply writes.
func (a *applier) unkept() []int {
	ks := make([]int, 0, len(a.plans))
	for k := range a.plans {
		if !a.plans[k].kept {
			ks = append(ks, k)
		}
	}
	return ks
}

// copyAll writes the new mailboxes, all new addresses and the new
// mailboxes' memberships (the kept ones' too) with COPY.
func (a *applier) copyAll() error {
	if ks := a.unkept(); len(ks) > 0 {
		_, err := a.tx.CopyFrom(a.ctx, pgx.Identifier{"mailboxes"},
			[]string{"id", "domain", "primary_address", "kind", "display_name", "source", "dir_id", "dn"},
			pgx.CopyFromSlice(len(ks), func(i int) ([]any, error) {
				m, p := a.changes[a.creates[ks[i]]].After, &a.plans[ks[i]]
				return []any{p.id, a.domain, p.set[0].addr, p.kind, m.DisplayName, sdk.SourceLDAP, m.DirID, m.DN}, nil
			}))
		if err != nil {
			return err
		}
	}
	if len(a.newAddrs) > 0 {
		_, err := a.tx.CopyFrom(a.ctx, pgx.Identifier{"addresses"},
			[]string{"address", "domain", "mailbox_id", "is_primary"},
			pgx.CopyFromSlice(len(a.newAddrs), func(k int) ([]any, error) {
				na := &a.newAddrs[k]
				return []any{na.addr, na.domain, na.id, na.primary}, nil
			}))
		if err != nil {
			return err
		}
	}
	type member struct{ mailbox, group int64 }
	var ms []member
	for k := range a.plans {
		for _, g := range a.plans[k].groups {
			ms = append(ms, member{a.plans[k].id, g})
		}
	}
	if len(ms) == 0 {
		return nil
	}
	_, err := a.tx.CopyFrom(a.ctx, pgx.Identifier{"memberships"},
		[]string{"mailbox_id", "group_id", "source"},
		pgx.CopyFromSlice(len(ms), func(k int) ([]any, error) {
			return []any{ms[k].mailbox, ms[k].group, sdk.SourceLDAP}, nil
		}))
	return err
}

// membership applies the membership changes in one batch, in their order.
// A change that names an unknown group or mailbox stops the batch there.
func (a *applier) membership() error {
	if len(a.members) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	var queued []int
	var refused error
	for _, i := range a.members {
		c := &a.changes[i]
		gid, id, err := a.memberTarget(c)
		if err != nil {
			refused = a.fail(i, err)
			break
		}
		if c.Kind == sdk.ChangeAddMember {
			b.Queue(`
				INSERT INTO memberships (mailbox_id, group_id, source)
				SELECT id, $2, $4 FROM mailboxes WHERE id = $1 AND domain = $3
				ON CONFLICT (mailbox_id, group_id) DO UPDATE SET source = excluded.source`,
				id, gid, a.domain, sdk.SourceLDAP)
		} else {
			b.Queue(`
				WITH m AS (SELECT id FROM mailboxes WHERE id = $1 AND domain = $3),
				d AS (DELETE FROM memberships WHERE mailbox_id IN (SELECT id FROM m) AND group_id = $2 RETURNING 1)
				SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM d)`,
				id, gid, a.domain)
		}
		queued = append(queued, i)
	}
	if len(queued) > 0 {
		err := a.sendBatch(b, queued, func(i int, br pgx.BatchResults) error {
			c := &a.changes[i]
			_, id, _ := a.memberTarget(c)
			notInDomain := fmt.Errorf("mailbox %d in %s: %w", id, a.domain, store.ErrNotFound)
			if c.Kind == sdk.ChangeAddMember {
				tag, err := br.Exec()
				if err == nil && tag.RowsAffected() == 0 {
					err = notInDomain
				}
				return err
			}
			var inDomain, deleted int64
			if err := br.QueryRow().Scan(&inDomain, &deleted); err != nil {
				return err
			}
			switch {
			case inDomain == 0:
				return notInDomain
			case deleted == 0:
				return fmt.Errorf("membership of mailbox %d in group %q: %w", id, c.Group, store.ErrNotFound)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return refused
}

// memberTarget returns the group and the mailbox of membership change c.
func (a *applier) memberTarget(c *store.Change) (gid, id int64, err error) {
	if gid, err = a.group(c.Group); err != nil {
		return 0, 0, err
	}
	switch {
	case c.Before != nil && c.Before.ID != 0:
		return gid, c.Before.ID, nil
	case c.After != nil:
		pos, ok := a.dirIDs[c.After.DirID]
		if !ok {
			return 0, 0, fmt.Errorf("mailbox with directory id %q created in this run: %w", c.After.DirID, store.ErrNotFound)
		}
		return gid, a.plans[pos-len(a.updates)].id, nil
	}
	return 0, 0, errors.New("membership change names no mailbox")
}

// group returns the id of the domain's group name (byte-exact).
func (a *applier) group(name string) (int64, error) {
	id, ok := a.groups[name]
	if !ok {
		return 0, fmt.Errorf("group %q in %s: %w", name, a.domain, store.ErrNotFound)
	}
	return id, nil
}

// groupIDs maps the names of a domain's groups to their ids.
func groupIDs(ctx context.Context, tx pgx.Tx, domain string) (map[string]int64, error) {
	ids := make(map[string]int64)
	err := eachPair(ctx, tx, `SELECT id, name FROM groups WHERE domain = $1`, []any{domain},
		func(id int64, name string) { ids[name] = id })
	return ids, err
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
