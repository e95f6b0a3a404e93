package sqlite

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/dirsync/dirsync/host/store"
)

// timeFormat keeps run times in UTC at fixed width, so they sort as text.
const timeFormat = "2006-01-02T15:04:05.000000000Z"

// RecordRun records a run that changed nothing (failed or stopped), with
// run.Changes if it has any. It sets run.ID.
func (s *Store) RecordRun(ctx context.Context, run *store.Run) error {
	if run == nil {
		return fmt.Errorf("record run: no run")
	}
	domain, err := normDomain(run.Domain)
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
		id, err = insertRun(ctx, tx, run, blob)
		return err
	})
	if err != nil {
		return fmt.Errorf("record run of %s: %w", domain, err)
	}
	run.ID = id
	return nil
}

// Runs lists a domain's runs, newest first, with their changes.
func (s *Store) Runs(ctx context.Context, domain string) ([]store.Run, error) {
	domain, err := normDomain(domain)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, domain, started, ended, outcome, error, server, counts, changes
		FROM runs WHERE domain = ? ORDER BY started DESC, id DESC`, domain)
	if err != nil {
		return nil, fmt.Errorf("runs of %s: %w", domain, err)
	}
	defer rows.Close()
	var runs []store.Run
	for rows.Next() {
		var r store.Run
		var started, ended, counts string
		var blob []byte
		if err := rows.Scan(&r.ID, &r.Domain, &started, &ended, &r.Outcome, &r.Error, &r.Server, &counts, &blob); err != nil {
			return nil, fmt.Errorf("runs of %s: %w", domain, err)
		}
		if r.Started, err = parseTime(started); err != nil {
			return nil, fmt.Errorf("run %d: started: %w", r.ID, err)
		}
		if r.Ended, err = parseTime(ended); err != nil {
			return nil, fmt.Errorf("run %d: ended: %w", r.ID, err)
		}
		if err := json.Unmarshal([]byte(counts), &r.Counts); err != nil {
			return nil, fmt.Errorf("run %d: counts: %w", r.ID, err)
		}
		if r.Changes, err = decodeChanges(blob); err != nil {
			return nil, fmt.Errorf("run %d: changes: %w", r.ID, err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("runs of %s: %w", domain, err)
	}
	return runs, nil
}

// runDomain checks that run is for domain, and sets its domain if empty.
func runDomain(run *store.Run, domain string) error {
	if run.Domain == "" {
		run.Domain = domain
		return nil
	}
	d, err := normDomain(run.Domain)
	if err != nil || d != domain {
		return fmt.Errorf("apply to %s: run record is for domain %q", domain, run.Domain)
	}
	run.Domain = d
	return nil
}

// insertRun writes the run row and returns its id.
func insertRun(ctx context.Context, tx *sql.Tx, run *store.Run, changes []byte) (int64, error) {
	counts, err := json.Marshal(run.Counts)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `
		INSERT INTO runs (domain, started, ended, outcome, error, server, counts, changes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		run.Domain, formatTime(run.Started), formatTime(run.Ended), run.Outcome, run.Error, run.Server,
		string(counts), changes)
	if err != nil {
		return 0, fmt.Errorf("record run: %w", err)
	}
	return res.LastInsertId()
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
	if err := json.NewEncoder(zw).Encode(rcs); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
