package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dirsync/dirsync/host/store"
)

// abandonedError is the error of a running run that StartRun found left
// behind by a holder that is gone.
const abandonedError = "the process running it ended without finishing it (lease expired)"

// StartRun writes run as running (its own short transaction) and sets
// run.ID. It notes the run on the lease of run.Holder, and marks every other
// running run of the domain abandoned (ended now, by the database's clock):
// the caller holds the domain's lease, so their holders are gone. A run
// without a start time starts now, by the database's clock.
func (s *Store) StartRun(ctx context.Context, run *store.Run) error {
	if run == nil {
		return fmt.Errorf("start run: no run")
	}
	domain, err := store.NormDomain(run.Domain)
	if err != nil {
		return fmt.Errorf("start run: %w", err)
	}
	if run.ID != 0 {
		return fmt.Errorf("start run of %s: run %d is started already", domain, run.ID)
	}
	r := *run
	r.Domain, r.Outcome, r.Ended, r.ChangeCount = domain, store.OutcomeRunning, time.Time{}, len(r.Changes)
	changes, err := encodeChanges(r.Changes)
	if err != nil {
		return fmt.Errorf("start run: encode changes: %w", err)
	}
	err = s.writeTx(ctx, func(tx pgx.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		// Only the lease holder may declare the other running rows dead;
		// the row lock keeps the lease its own until the run is written.
		var held bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM leases WHERE domain = $1 AND holder = $2 FOR UPDATE)`,
			domain, r.Holder).Scan(&held); err != nil {
			return err
		}
		if !held {
			return fmt.Errorf("holder %q: %w", r.Holder, store.ErrLeaseLost)
		}
		_, err := tx.Exec(ctx, `UPDATE runs SET outcome = $1, ended = now(), error = $2 WHERE domain = $3 AND outcome = $4`,
			store.OutcomeAbandoned, abandonedError, domain, store.OutcomeRunning)
		if err != nil {
			return fmt.Errorf("mark abandoned runs: %w", err)
		}
		if err := insertRun(ctx, tx, &r, changes); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE leases SET run_id = $1 WHERE domain = $2 AND holder = $3`, r.ID, domain, r.Holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("start run of %s: %w", domain, err)
	}
	*run = r
	return nil
}

// RecordRun records a run that changed nothing (failed, stopped, cancelled),
// with run.Changes if it has any: it finishes the row StartRun wrote when
// run.ID is set, else writes a new row and sets run.ID. It sets
// run.ChangeCount.
func (s *Store) RecordRun(ctx context.Context, run *store.Run) error {
	if run == nil {
		return fmt.Errorf("record run: no run")
	}
	domain, err := store.NormDomain(run.Domain)
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	run.Domain = domain
	changes, err := encodeChanges(run.Changes)
	if err != nil {
		return fmt.Errorf("record run: encode changes: %w", err)
	}
	r := *run
	err = s.writeTx(ctx, func(tx pgx.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		return writeRun(ctx, tx, &r, changes)
	})
	if err != nil {
		return fmt.Errorf("record run of %s: %w", domain, err)
	}
	run.ID, run.ChangeCount = r.ID, len(run.Changes)
	return nil
}

// RunsPage lists at most limit (1 to 1000; 0 means 50) of a domain's runs
// with ids below beforeID (0: from the newest), newest first by id, without
// their changes (with their count).
func (s *Store) RunsPage(ctx context.Context, domain string, limit int, beforeID int64) ([]store.Run, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if limit, err = store.RunsPageLimit(domain, limit, beforeID); err != nil {
		return nil, err
	}
	var runs []store.Run
	if beforeID == 0 {
		runs, err = s.queryRuns(ctx, `WHERE domain = $1 ORDER BY id DESC LIMIT $2`, domain, limit)
	} else {
		runs, err = s.queryRuns(ctx, `WHERE domain = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, domain, beforeID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("runs of %s: %w", domain, err)
	}
	return runs, nil
}

// LastRuns returns the newest run of every domain, without its changes.
// It finds each with the index on (domain, id): one short lookup per
// domain, however many runs are kept.
func (s *Store) LastRuns(ctx context.Context) (map[string]store.Run, error) {
	runs, err := s.queryRuns(ctx, `WHERE id IN (SELECT (SELECT max(id) FROM runs AS r WHERE r.domain = d.name) FROM domains AS d)`)
	if err != nil {
		return nil, fmt.Errorf("last runs: %w", err)
	}
	out := make(map[string]store.Run, len(runs))
	for _, r := range runs {
		out[r.Domain] = r
	}
	return out, nil
}

// Run returns run id of domain without its changes (with their count);
// store.ErrNotFound if domain has no such run.
func (s *Store) Run(ctx context.Context, domain string, id int64) (*store.Run, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	runs, err := s.queryRuns(ctx, `WHERE id = $1 AND domain = $2`, id, domain)
	if err != nil {
		return nil, fmt.Errorf("run %d of %s: %w", id, domain, err)
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("run %d of %s: %w", id, domain, store.ErrNotFound)
	}
	return &runs[0], nil
}

// RunChanges returns at most limit (1 to 10000; 0 means 1000) of the
// changes of run id of domain, from index offset, in their order;
// store.ErrNotFound if domain has no such run. A change's index is its seq
// (0, 1, … as written), so a page is a range of the primary key.
func (s *Store) RunChanges(ctx context.Context, domain string, id int64, offset, limit int) ([]store.RunChange, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if limit, err = store.RunChangesLimit(domain, id, offset, limit); err != nil {
		return nil, err
	}
	var rcs []store.RunChange
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		var found bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1 AND domain = $2)`, id, domain).Scan(&found); err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("run %d of %s: %w", id, domain, store.ErrNotFound)
		}
		rows, err := tx.Query(ctx, `
			SELECT kind, address, grp, before, after FROM run_changes
			WHERE run_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3`, id, int64(offset), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var rc store.RunChange
			var before, after []byte
			if err := rows.Scan(&rc.Kind, &rc.Address, &rc.Group, &before, &after); err != nil {
				return err
			}
			if rc.Before, err = decodeView(before); err != nil {
				return err
			}
			if rc.After, err = decodeView(after); err != nil {
				return err
			}
			rcs = append(rcs, rc)
		}
		return rows.Err()
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("changes of run %d of %s: %w", id, domain, err)
	}
	return rcs, nil
}

// decodeView reads a mailbox view of run_changes: nil for NULL.
func decodeView(data []byte) (*store.MailboxView, error) {
	if data == nil {
		return nil, nil
	}
	v := new(store.MailboxView)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, err
	}
	return v, nil
}

// pruneBatch is how many runs PruneRuns deletes in one statement (its own
// transaction), so that no transaction holds many rows for long.
const pruneBatch = 500

// PruneRuns deletes the finished runs that ended before before (those
// recorded without an end time: that started before it), never a running
// one, in transactions of at most pruneBatch runs, and returns how many it
// deleted. Their changes go with them.
func (s *Store) PruneRuns(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.pool.QueryRow(ctx, `
			WITH r AS (
				DELETE FROM runs WHERE id IN (
					SELECT id FROM runs
					WHERE outcome <> 'running' AND COALESCE(ended, started) < $1
					LIMIT $2)
				RETURNING id),
			c AS (DELETE FROM run_changes WHERE run_id IN (SELECT id FROM r))
			SELECT count(*) FROM r`,
			before, pruneBatch).Scan(&n)
		if err != nil {
			return total, fmt.Errorf("prune runs that ended before %s: %w", before.UTC().Format(time.RFC3339), ctxErr(ctx, err))
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// runSelect are the columns queryRuns reads.
const runSelect = `SELECT id, domain, started, ended, outcome, stage, error, server, holder, settings_version, settings,
	counts, intended, refs, change_count, read`

// queryRuns reads the runs that where (the rest of the query after FROM
// runs, with its arguments) selects, without their changes, in one
// repeatable-read transaction.
func (s *Store) queryRuns(ctx context.Context, where string, args ...any) ([]store.Run, error) {
	var runs []store.Run
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, runSelect+" FROM runs "+where, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r store.Run
			var ended *time.Time
			var settings *string
			var counts, intended []byte
			if err := rows.Scan(&r.ID, &r.Domain, &r.Started, &ended, &r.Outcome, &r.Stage, &r.Error, &r.Server, &r.Holder,
				&r.SettingsVersion, &settings, &counts, &intended, &r.References, &r.ChangeCount, &r.Read); err != nil {
				return err
			}
			if ended != nil {
				r.Ended = *ended
			}
			if settings != nil {
				r.Settings = *settings
			}
			if err := json.Unmarshal(counts, &r.Counts); err != nil {
				return fmt.Errorf("run %d: counts: %w", r.ID, err)
			}
			if intended != nil {
				r.Intended = new(store.Counts)
				if err := json.Unmarshal(intended, r.Intended); err != nil {
					return fmt.Errorf("run %d: intended counts: %w", r.ID, err)
				}
			}
			runs = append(runs, r)
		}
		return rows.Err()
	})
	return runs, ctxErr(ctx, err)
}

// runDomain checks that run is for domain, and sets its domain if empty.
func runDomain(run *store.Run, domain string) error {
	if run.Domain == "" {
		run.Domain = domain
		return nil
	}
	d, err := store.NormDomain(run.Domain)
	if err != nil || d != domain {
		return fmt.Errorf("apply to %s: run record is for domain %q", domain, run.Domain)
	}
	run.Domain = d
	return nil
}

// writeRun finishes the row of a run that StartRun wrote (run.ID set),
// replacing its changes, or writes a new one and sets run.ID.
func writeRun(ctx context.Context, tx pgx.Tx, run *store.Run, changes []encodedChange) error {
	if run.ID == 0 {
		return insertRun(ctx, tx, run, changes)
	}
	c, err := encodeRun(run)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `
		UPDATE runs SET ended = $1, outcome = $2, stage = $3, error = $4, server = $5, holder = $6,
			settings_version = $7, settings = $8, counts = $9, intended = $10, refs = $11, change_count = $12, read = $13
		WHERE id = $14 AND domain = $15`,
		endTime(run.Ended), run.Outcome, run.Stage, run.Error, run.Server, run.Holder,
		run.SettingsVersion, c.settings, c.counts, c.intended, c.refs, len(changes), run.Read, run.ID, run.Domain)
	if err != nil {
		return fmt.Errorf("record run %d: %w", run.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("run %d of %s: %w", run.ID, run.Domain, store.ErrNotFound)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM run_changes WHERE run_id = $1`, run.ID); err != nil {
		return fmt.Errorf("record run %d: %w", run.ID, err)
	}
	return copyChanges(ctx, tx, run.ID, changes)
}

// insertRun writes a new run row with its changes and sets run.ID (and
// run.Started, if it was zero, to the database's now).
func insertRun(ctx context.Context, tx pgx.Tx, run *store.Run, changes []encodedChange) error {
	c, err := encodeRun(run)
	if err != nil {
		return err
	}
	var started any
	if !run.Started.IsZero() {
		started = run.Started
	}
	err = tx.QueryRow(ctx, `
		INSERT INTO runs (domain, started, ended, outcome, stage, error, server, holder, settings_version, settings,
			counts, intended, refs, change_count, read)
		VALUES ($1, COALESCE($2, now()), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		RETURNING id, started`,
		run.Domain, started, endTime(run.Ended), run.Outcome, run.Stage, run.Error, run.Server, run.Holder,
		run.SettingsVersion, c.settings, c.counts, c.intended, c.refs, len(changes), run.Read).Scan(&run.ID, &started)
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	if run.Started.IsZero() {
		run.Started = started.(time.Time)
	}
	return copyChanges(ctx, tx, run.ID, changes)
}

// copyChanges writes the changes of run id with COPY.
func copyChanges(ctx context.Context, tx pgx.Tx, id int64, changes []encodedChange) error {
	if len(changes) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"run_changes"},
		[]string{"run_id", "seq", "kind", "address", "grp", "before", "after"},
		pgx.CopyFromSlice(len(changes), func(i int) ([]any, error) {
			c := &changes[i]
			return []any{id, int32(i), c.kind, c.address, c.group, c.before, c.after}, nil
		}))
	if err != nil {
		return fmt.Errorf("record the changes of run %d: %w", id, err)
	}
	return nil
}

// runColumns are the JSON columns of a run row; nil ones are NULL.
type runColumns struct {
	counts   []byte
	intended []byte
	settings *string
	refs     []string
}

func encodeRun(run *store.Run) (runColumns, error) {
	var c runColumns
	var err error
	if c.counts, err = json.Marshal(run.Counts); err != nil {
		return c, fmt.Errorf("encode counts: %w", err)
	}
	if run.Settings != "" {
		c.settings = &run.Settings
	}
	if run.Intended != nil {
		if c.intended, err = json.Marshal(run.Intended); err != nil {
			return c, fmt.Errorf("encode intended counts: %w", err)
		}
	}
	if len(run.References) > 0 {
		c.refs = run.References
	}
	return c, nil
}

// endTime is the ended column of a run: NULL while it runs.
func endTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// encodedChange is a store.RunChange as run_changes keeps it: the views as
// JSON, nil for none.
type encodedChange struct {
	kind, address, group string
	before, after        []byte
}

// encodeChanges encodes rcs for run_changes; many changes are encoded by
// several goroutines.
func encodeChanges(rcs []store.RunChange) ([]encodedChange, error) {
	if len(rcs) == 0 {
		return nil, nil
	}
	out := make([]encodedChange, len(rcs))
	workers := min(runtime.GOMAXPROCS(0), 1+len(rcs)/2000)
	chunk := (len(rcs) + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(rcs))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				rc := &rcs[i]
				e := encodedChange{kind: rc.Kind, address: rc.Address, group: rc.Group}
				var err error
				if rc.Before != nil {
					if e.before, err = json.Marshal(rc.Before); err != nil {
						errs[w] = err
						return
					}
				}
				if rc.After != nil {
					if e.after, err = json.Marshal(rc.After); err != nil {
						errs[w] = err
						return
					}
				}
				out[i] = e
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
