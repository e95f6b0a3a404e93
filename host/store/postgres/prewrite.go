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

var _ store.Prewriter = (*Store)(nil)

// Prewrite opens the write transaction of a run of domain (store.Prewriter):
// the mailboxes the run expects to create are written while it still reads
// the directory; Apply keeps them or undoes them. It checks the generation
// and locks the domain's row as Apply does, but with SELECT … FOR NO KEY
// UPDATE: Apply's bump of the generation comes at the end.
//
// Until Apply or Close, the run holds, and these wait for it:
//   - the domain's row: every other write to the domain's mailboxes,
//     groups or memberships (a hand-made change; another run's Apply,
//     which the lease excludes anyway). The lock is a lock only, not an
//     update, so what merely makes sure the row exists or refers to it
//     does not wait: AcquireLease (another replica gets its
//     *store.BusyError at once), RenewLease, StartRun, RecordRun,
//     PutSettings. Readers and every writer of other domains go on.
//   - the rows written so far: a writer of any domain that takes one of
//     their addresses waits for the run (the unique index does), then
//     fails with ErrExists, or goes on if the run rolled back.
//   - one pooled connection, and an open transaction that keeps VACUUM
//     from removing rows dead since it began. A connection that goes
//     during the read (a server whose idle_in_transaction_session_timeout
//     is shorter than the read's pauses, a restart) takes the transaction
//     with it: Apply then writes as Store.Apply would, in a new one.
//   - a writer of another domain that waits for one of the rows written
//     (above) holds its own domain's row meanwhile: that domain's other
//     writes wait too.
//
// The undo rolls back to a savepoint taken after the lock: one
// subtransaction for the whole read. Create writes each batch without a
// savepoint of its own, unlike Apply: past 64 subtransactions a
// transaction overflows the server's cache of them, and until it ends
// every snapshot on the server and its standbys looks them up in
// pg_subtrans. A sequence is not transactional, so the undo keeps the ids
// Create took; Apply hands them out again, ascending, before taking more:
// its creates get the ids that Store.Apply, run at the Prewrite instead,
// would have given them. No id a mailbox had is reused: those were never
// committed, nor seen outside the run's transaction.
//
// A cancelled run rolls back: the host closes the prewrite, which rolls
// back on a context of its own; a Create or Apply whose context ends fails
// (pgx drops a connection whose statement it interrupts, and the server
// rolls back the transaction of a connection that is gone).
func (s *Store) Prewrite(ctx context.Context, domain string, generation int64) (store.Prewrite, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	p := &prewrite{s: s, domain: domain, generation: generation, written: map[string]writtenRow{}}
	if err := p.begin(ctx, s); err != nil {
		p.Close()
		return nil, fmt.Errorf("prewrite to %s: %w", domain, ctxErr(ctx, err))
	}
	return p, nil
}

// prewrite is an open write transaction of one run. It is not safe for
// concurrent use: a run creates, then applies, then closes.
type prewrite struct {
	s          *Store
	domain     string
	generation int64 // checked at Prewrite, the row locked since
	tx         pgx.Tx
	written    map[string]writtenRow // by directory id
	ids        []int64               // every id Create took from the sequence
	err        error                 // the first Create that failed
	undone     bool                  // rolled back to the savepoint
	closed     bool
}

// writtenRow stands for a mailbox Create wrote: its store.CreateKey (a
// prewrite keeps that, not the mailbox, for each of the 100,000 of a first
// sync) and its id.
type writtenRow struct {
	hash [16]byte
	id   int64
}

// begin opens the transaction, locks the domain's row, checks the
// generation and takes the savepoint that the undo rolls back to. The row
// is made first, in a statement of its own: made in the run's transaction
// it would stay uncommitted for the read, and every statement that makes
// sure it exists (AcquireLease's) would wait for the run.
func (p *prewrite) begin(ctx context.Context, s *Store) error {
	if err := ensureDomain(ctx, s.pool, p.domain); err != nil {
		return err
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return err
	}
	p.tx = tx
	var gen int64
	err = tx.QueryRow(ctx, `SELECT generation FROM domains WHERE name = $1 FOR NO KEY UPDATE`, p.domain).Scan(&gen)
	if err != nil {
		return err
	}
	if err := sameGeneration(p.domain, gen, p.generation); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SAVEPOINT prewrite`)
	return err
}

// Create writes mailboxes as creates without their groups, through
// Apply's machinery (COPY), and remembers them for Apply. On an error it
// undoes everything written so far at once, so that no other writer waits
// for those rows.
func (p *prewrite) Create(ctx context.Context, mailboxes []*sdk.Mailbox) error {
	switch {
	case p.closed:
		return errors.New("prewrite: Create after Close")
	case p.err != nil:
		return p.err
	}
	changes := make([]store.Change, len(mailboxes))
	for i, m := range mailboxes {
		if _, dup := p.written[m.DirID]; dup {
			return p.fail(ctx, nil, fmt.Errorf("directory id %q twice", m.DirID))
		}
		after := *m
		after.Groups = nil
		changes[i] = store.Change{Kind: sdk.ChangeCreate, After: &after}
	}
	// The creates name no group: the empty map spares reading them.
	a := &applier{ctx: ctx, tx: p.tx, domain: p.domain, changes: changes, groups: map[string]int64{}, bare: true}
	err := a.apply()
	for k := range a.plans {
		if id := a.plans[k].id; id != 0 {
			p.ids = append(p.ids, id) // the COPY may have failed: the id is spare
		}
	}
	if err != nil {
		return p.fail(ctx, a, err)
	}
	for k, i := range a.creates {
		m := changes[i].After
		p.written[m.DirID] = writtenRow{store.CreateKey(m), a.plans[k].id}
	}
	return nil
}

// fail undoes what Create wrote and keeps err, the error of the Create
// that a applied (nil: none was), for the further calls. A COPY that hit a
// taken address or directory id is named as Store.Apply names it.
func (p *prewrite) fail(ctx context.Context, a *applier, err error) error {
	if rerr := p.rollback(ctx); rerr != nil {
		err = fmt.Errorf("%w; undoing the mailboxes written: %v", err, rerr)
	} else if a != nil && isUnique(err) {
		err = a.copyError(err)
	}
	p.err = fmt.Errorf("prewrite to %s: %w", p.domain, ctxErr(ctx, err))
	return p.err
}

// rollback undoes everything Create wrote, once.
func (p *prewrite) rollback(ctx context.Context) error {
	if p.undone {
		return nil
	}
	if _, err := p.tx.Exec(ctx, `ROLLBACK TO SAVEPOINT prewrite`); err != nil {
		return err
	}
	p.undone = true
	return nil
}

// Apply keeps what Create wrote if every written mailbox is created as
// written, else undoes all of it, and then applies as Store.Apply does. It
// ends the transaction, committed or not.
func (p *prewrite) Apply(ctx context.Context, changes []store.Change, run *store.Run) error {
	if p.closed {
		return errors.New("prewrite: Apply after Close")
	}
	var err error
	if run == nil {
		err = errors.New("apply: no run record")
	} else {
		err = runDomain(run, p.domain)
	}
	if err != nil {
		p.Close() // Apply ends the transaction, whatever it returns
		return err
	}
	// The connection may have gone during the read (a server restart, a
	// cut, its idle_in_transaction_session_timeout), and its transaction
	// with it: nothing was written. The run then writes as Store.Apply
	// would, in a transaction of its own; the generation it checks stands
	// for the lock that went. (Should the connection go during the commit,
	// after it took, that generation has moved: the new transaction writes
	// nothing.)
	fresh := func() error {
		p.Close()
		return p.s.apply(ctx, p.domain, changes, run, slices.Sorted(slices.Values(p.ids)))
	}
	if p.tx.Conn().IsClosed() {
		return fresh()
	}
	enc, filled := startRecord(run, changes)
	r := *run
	err = p.finish(ctx, changes, &r, enc)
	if err != nil && filled {
		run.Changes = nil
	}
	if err != nil && p.tx.Conn().IsClosed() && ctx.Err() == nil {
		return fresh()
	}
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("apply to %s: %w", p.domain, ctxErr(ctx, err))
	}
	run.ID, run.ChangeCount = r.ID, len(run.Changes)
	return nil
}

// finish keeps or undoes what Create wrote, applies changes, records run
// and commits.
func (p *prewrite) finish(ctx context.Context, changes []store.Change, run *store.Run, enc <-chan encoded) error {
	a := &applier{ctx: ctx, tx: p.tx, domain: p.domain, changes: changes}
	if kept := p.keep(changes); kept != nil {
		a.kept = kept
	} else if len(p.ids) > 0 {
		if err := p.rollback(ctx); err != nil {
			return fmt.Errorf("undo the mailboxes written ahead: %w", err)
		}
		a.spare = slices.Sorted(slices.Values(p.ids))
	}
	// After the undo, which would undo the bump too. The row is locked
	// since the generation was checked: it cannot have moved.
	if err := bumpFrom(ctx, p.tx, p.domain, p.generation); err != nil {
		return err
	}
	if err := a.applyAndRecord(run, enc); err != nil {
		return err
	}
	return p.tx.Commit(ctx)
}

// keep returns the ids, by directory id, of the mailboxes written ahead
// if every one of them is created among changes as it was written; else
// nil.
func (p *prewrite) keep(changes []store.Change) map[string]int64 {
	if p.err != nil || len(p.written) == 0 {
		return nil
	}
	kept := make(map[string]int64, len(p.written))
	for i := range changes {
		c := &changes[i]
		if c.Kind != sdk.ChangeCreate || c.After == nil {
			continue
		}
		if w, ok := p.written[c.After.DirID]; ok && w.hash == store.CreateKey(c.After) {
			kept[c.After.DirID] = w.id
		}
	}
	if len(kept) != len(p.written) {
		return nil
	}
	return kept
}

// Close rolls back what was not committed and gives the connection back
// to the pool.
func (p *prewrite) Close() error {
	if p.closed || p.tx == nil {
		p.closed = true
		return nil
	}
	p.closed = true
	// A connection that is gone took its transaction with it.
	gone := p.tx.Conn().IsClosed()
	// On a context of its own: a cancelled run closes with its context
	// ended.
	err := p.tx.Rollback(context.Background())
	if gone || errors.Is(err, pgx.ErrTxClosed) {
		err = nil // committed, or rolled back already
	}
	return err
}
