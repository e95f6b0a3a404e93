package sqlite

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/dirsync/dirsync/host/store"
)

// timeFormat keeps run times in UTC at fixed width, so they sort as text.
const timeFormat = "2006-01-02T15:04:05.000000000Z"

// abandonedError is the error of a running run that StartRun found left
// behind by a holder that is gone.
const abandonedError = "the process running it ended without finishing it (lease expired)"

// StartRun writes run as running (its own short transaction) and sets
// run.ID. It notes the run on the lease of run.Holder, and marks every other
// running run of the domain abandoned: the caller holds the domain's lease,
// so their holders are gone.
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
	if r.Started.IsZero() {
		r.Started = time.Now()
	}
	blob, err := encodeChanges(r.Changes)
	if err != nil {
		return fmt.Errorf("start run: encode changes: %w", err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		// Only the lease holder may declare the other running rows dead.
		var held int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM leases WHERE domain = ? AND holder = ?`, domain, r.Holder).Scan(&held); err != nil {
			return err
		}
		if held == 0 {
			return fmt.Errorf("holder %q: %w", r.Holder, store.ErrLeaseLost)
		}
		_, err := tx.ExecContext(ctx, `UPDATE runs SET outcome = ?, ended = ?, error = ? WHERE domain = ? AND outcome = ?`,
			store.OutcomeAbandoned, formatTime(time.Now()), abandonedError, domain, store.OutcomeRunning)
		if err != nil {
			return fmt.Errorf("mark abandoned runs: %w", err)
		}
		if r.ID, err = insertRun(ctx, tx, &r, blob); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE leases SET run_id = ? WHERE domain = ? AND holder = ?`, r.ID, domain, r.Holder)
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
	blob, err := encodeChanges(run.Changes)
	if err != nil {
		return fmt.Errorf("record run: encode changes: %w", err)
	}
	var id int64
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		id, err = writeRun(ctx, tx, run, blob)
		return err
	})
	if err != nil {
		return fmt.Errorf("record run of %s: %w", domain, err)
	}
	run.ID, run.ChangeCount = id, len(run.Changes)
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
		runs, err = s.queryRuns(ctx, `WHERE domain = ? ORDER BY id DESC LIMIT ?`, domain, limit)
	} else {
		runs, err = s.queryRuns(ctx, `WHERE domain = ? AND id < ? ORDER BY id DESC LIMIT ?`, domain, beforeID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("runs of %s: %w", domain, err)
	}
	return runs, nil
}

// LastRuns returns the newest run of every domain, without its changes.
func (s *Store) LastRuns(ctx context.Context) (map[string]store.Run, error) {
	runs, err := s.queryRuns(ctx, `WHERE id IN (SELECT max(id) FROM runs GROUP BY domain)`)
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
	runs, err := s.queryRuns(ctx, `WHERE id = ? AND domain = ?`, id, domain)
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
// store.ErrNotFound if domain has no such run.
//
// A run's changes are one gzip-compressed JSON blob (see encodeChanges), so
// every page decodes the whole list and keeps its part: a page of a run of
// 100,000 changes costs the reading of all of them. Runs that large are
// rare and their pages are read by hand (the CLI, the API, the page), so
// the blob stays one value rather than rows of their own.
func (s *Store) RunChanges(ctx context.Context, domain string, id int64, offset, limit int) ([]store.RunChange, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if limit, err = store.RunChangesLimit(domain, id, offset, limit); err != nil {
		return nil, err
	}
	var blob []byte
	err = s.db.QueryRowContext(ctx, `SELECT changes FROM runs WHERE id = ? AND domain = ?`, id, domain).Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %d of %s: %w", id, domain, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("changes of run %d of %s: %w", id, domain, err)
	}
	rcs, err := decodeChanges(blob)
	if err != nil {
		return nil, fmt.Errorf("changes of run %d of %s: %w", id, domain, err)
	}
	if offset >= len(rcs) {
		return nil, nil
	}
	return slices.Clip(rcs[offset:min(offset+limit, len(rcs))]), nil
}

// pruneBatch is how many runs PruneRuns deletes in one transaction, so that
// a sync waiting to write waits for one batch, not for all of them.
const pruneBatch = 500

// PruneRuns deletes the finished runs that ended before before (those
// recorded without an end time: that started before it), never a running
// one, in transactions of at most pruneBatch runs, and returns how many it
// deleted.
func (s *Store) PruneRuns(ctx context.Context, before time.Time) (int64, error) {
	cut := formatTime(before)
	var total int64
	for {
		var n int64
		err := s.writeTx(ctx, func(tx *sql.Tx) error {
			// ended is '' for a running run and for one recorded without an
			// end time; '' sorts before every time, so the index on ended
			// finds both.
			res, err := tx.ExecContext(ctx, `
				DELETE FROM runs WHERE id IN (
					SELECT id FROM runs
					WHERE ended < ? AND outcome <> ? AND (ended <> '' OR started < ?)
					LIMIT ?)`,
				cut, store.OutcomeRunning, cut, pruneBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune runs that ended before %s: %w", cut, err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// runSelect are the columns queryRuns reads: every one but the changes.
const runSelect = `SELECT id, domain, started, ended, outcome, stage, error, server, holder, settings_version, settings,
	counts, intended, refs, change_count, read`

// queryRuns reads the runs that where (the rest of the query after FROM
// runs, with its arguments) selects, without their changes.
func (s *Store) queryRuns(ctx context.Context, where string, args ...any) ([]store.Run, error) {
	rows, err := s.db.QueryContext(ctx, runSelect+" FROM runs "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var runs []store.Run
	for rows.Next() {
		var r store.Run
		var started, ended, counts string
		var settings, intended, refs sql.NullString
		if err := rows.Scan(&r.ID, &r.Domain, &started, &ended, &r.Outcome, &r.Stage, &r.Error, &r.Server, &r.Holder,
			&r.SettingsVersion, &settings, &counts, &intended, &refs, &r.ChangeCount, &r.Read); err != nil {
			return nil, err
		}
		if r.Started, err = parseTime(started); err != nil {
			return nil, fmt.Errorf("run %d: started: %w", r.ID, err)
		}
		if ended != "" { // empty while running
			if r.Ended, err = parseTime(ended); err != nil {
				return nil, fmt.Errorf("run %d: ended: %w", r.ID, err)
			}
		}
		r.Settings = settings.String
		if err := json.Unmarshal([]byte(counts), &r.Counts); err != nil {
			return nil, fmt.Errorf("run %d: counts: %w", r.ID, err)
		}
		if intended.Valid {
			r.Intended = new(store.Counts)
			if err := json.Unmarshal([]byte(intended.String), r.Intended); err != nil {
				return nil, fmt.Errorf("run %d: intended counts: %w", r.ID, err)
			}
		}
		if refs.Valid {
			if err := json.Unmarshal([]byte(refs.String), &r.References); err != nil {
				return nil, fmt.Errorf("run %d: references: %w", r.ID, err)
			}
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return runs, nil
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

// writeRun finishes the row of a run that StartRun wrote (run.ID set), or
// writes a new one, and returns its id. changes is run.Changes encoded;
// change_count is their number.
func writeRun(ctx context.Context, tx *sql.Tx, run *store.Run, changes []byte) (int64, error) {
	if run.ID == 0 {
		return insertRun(ctx, tx, run, changes)
	}
	c, err := encodeRun(run)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `
		UPDATE runs SET ended = ?, outcome = ?, stage = ?, error = ?, server = ?, holder = ?,
			settings_version = ?, settings = ?, counts = ?, intended = ?, refs = ?, changes = ?, change_count = ?, read = ?
		WHERE id = ? AND domain = ?`,
		endTime(run.Ended), run.Outcome, run.Stage, run.Error, run.Server, run.Holder,
		run.SettingsVersion, c.settings, c.counts, c.intended, c.refs, changes, len(run.Changes), run.Read, run.ID, run.Domain)
	if err != nil {
		return 0, fmt.Errorf("record run %d: %w", run.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return 0, fmt.Errorf("run %d of %s: %w", run.ID, run.Domain, store.ErrNotFound)
	}
	return run.ID, nil
}

// insertRun writes a new run row and returns its id.
func insertRun(ctx context.Context, tx *sql.Tx, run *store.Run, changes []byte) (int64, error) {
	c, err := encodeRun(run)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `
		INSERT INTO runs (domain, started, ended, outcome, stage, error, server, holder, settings_version, settings,
			counts, intended, refs, changes, change_count, read)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		run.Domain, formatTime(run.Started), endTime(run.Ended), run.Outcome, run.Stage, run.Error, run.Server, run.Holder,
		run.SettingsVersion, c.settings, c.counts, c.intended, c.refs, changes, len(run.Changes), run.Read)
	if err != nil {
		return 0, fmt.Errorf("record run: %w", err)
	}
	return res.LastInsertId()
}

// runColumns are the JSON columns of a run row; nil ones are NULL.
type runColumns struct {
	counts                   string
	settings, intended, refs any
}

func encodeRun(run *store.Run) (runColumns, error) {
	var c runColumns
	counts, err := json.Marshal(run.Counts)
	if err != nil {
		return c, fmt.Errorf("encode counts: %w", err)
	}
	c.counts = string(counts)
	if run.Settings != "" {
		c.settings = run.Settings
	}
	if run.Intended != nil {
		b, err := json.Marshal(run.Intended)
		if err != nil {
			return c, fmt.Errorf("encode intended counts: %w", err)
		}
		c.intended = string(b)
	}
	if len(run.References) > 0 {
		b, err := json.Marshal(run.References)
		if err != nil {
			return c, fmt.Errorf("encode references: %w", err)
		}
		c.refs = string(b)
	}
	return c, nil
}

// endTime is the ended column of a run: empty while it runs.
func endTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return formatTime(t)
}

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) (time.Time, error) { return time.Parse(timeFormat, s) }

// encodeChanges returns the gzip-compressed JSON of rcs, or nil if there are
// none.
func encodeChanges(rcs []store.RunChange) ([]byte, error) {
	if len(rcs) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	// One change at a time: encoding/json builds a whole value in memory
	// before it writes, which for a first sync's list is hundreds of
	// megabytes at 1,000,000 users.
	enc := json.NewEncoder(zw)
	zw.Write([]byte{'['})
	for i := range rcs {
		if i > 0 {
			zw.Write([]byte{','})
		}
		if err := enc.Encode(&rcs[i]); err != nil {
			return nil, err
		}
	}
	zw.Write([]byte{']'})
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// countEncoded returns how many changes a list of encodeChanges holds,
// reading it as a stream.
func countEncoded(blob []byte) (int64, error) {
	if len(blob) == 0 {
		return 0, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		return 0, err
	}
	dec := json.NewDecoder(zr)
	if t, err := dec.Token(); err != nil {
		return 0, err
	} else if t != json.Delim('[') {
		return 0, fmt.Errorf("not a JSON array: %v", t)
	}
	var n int64
	for dec.More() {
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return n, err
		}
		n++
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return n, err
	}
	return n, nil
}

// decodeChanges reverses encodeChanges.
func decodeChanges(blob []byte) ([]store.RunChange, error) {
	if len(blob) == 0 {
		return nil, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var rcs []store.RunChange
	if err := json.Unmarshal(data, &rcs); err != nil {
		return nil, err
	}
	return rcs, nil
}
