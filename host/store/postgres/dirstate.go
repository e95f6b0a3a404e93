package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/dirsync/dirsync/host/store"
)

var _ store.ChunkStore = (*Store)(nil)

// DirState returns the directory state that the domain's last applied run
// left; nil (and no error) when there is none or the domain is unknown. An
// empty cookie, entries, head, summary or data reads back nil; FullAt is
// in UTC, to the microsecond. A chunked state comes back with its chunks,
// in ascending Seq, and Entries nil.
func (s *Store) DirState(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, readChunks)
}

// DirStateHead is DirState without the entries and chunks: it reads
// neither the entries column (nor its TOAST chunks) nor the chunk tables.
func (s *Store) DirStateHead(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, readHead)
}

// DirStateSummaries is DirStateHead with the Seq and Summary of every chunk
// (store.ChunkStore): one query of dir_state_summaries, which holds no
// data.
func (s *Store) DirStateSummaries(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, readSummaries)
}

// What dirState reads besides the head of a state.
type stateRead int

const (
	readHead      stateRead = iota // the head only
	readSummaries                  // the chunks' summaries
	readChunks                     // the entries, or the chunks with their data
)

// dirState reads the directory state of domain. The head alone is one
// query; with chunks, it reads in a repeatable-read transaction so that
// the head and the chunks are of one Apply.
func (s *Store) dirState(ctx context.Context, domain string, what stateRead) (*store.DirState, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	var ds *store.DirState
	if what == readHead {
		ds, _, err = readStateHead(ctx, s.pool, domain, false)
	} else {
		err = s.readTx(ctx, func(tx pgx.Tx) error {
			var err error
			var whole bool
			if ds, whole, err = readStateHead(ctx, tx, domain, what == readChunks); err != nil || ds == nil {
				return err
			}
			if whole {
				// Written whole (by an earlier version, beside a newer one
				// on the same database): any chunk rows are an older
				// state's.
				return nil
			}
			// No ORDER BY: the chunks are sorted here. A domain's rows may
			// be most of the table, which the server would then scan and
			// sort in a temporary file past work_mem (4 MB by default).
			if ds.Chunks, err = readStateChunks(ctx, tx, `SELECT seq, summary, NULL::bytea FROM dir_state_summaries
				WHERE domain = $1`, domain); err != nil || what == readSummaries || ds.Chunks == nil {
				return err
			}
			// The data apart, not joined: two scans, no hash table of the
			// data.
			data, err := readStateChunks(ctx, tx, `SELECT seq, NULL::bytea, data FROM dir_state_chunks
				WHERE domain = $1`, domain)
			if err != nil {
				return err
			}
			return joinData(ds.Chunks, data)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("directory state of %s: %w", domain, ctxErr(ctx, err))
	}
	return ds, nil
}

// joinData sets the Data of each chunk of cs from the chunk of data of its
// Seq; both are in ascending Seq, and have the same seqs (Apply writes a
// chunk's rows together).
func joinData(cs, data []store.StateChunk) error {
	if len(cs) != len(data) {
		return fmt.Errorf("%d chunks have a summary, %d data", len(cs), len(data))
	}
	for i := range cs {
		if cs[i].Seq != data[i].Seq {
			return fmt.Errorf("chunk %d has a summary and no data", cs[i].Seq)
		}
		cs[i].Data = data[i].Data
	}
	return nil
}

// readStateHead reads the row of domain's state, and whether it was
// written as entries (not in chunks); its entries only if
// withEntries; nil if there is none.
func readStateHead(ctx context.Context, q querier, domain string, withEntries bool) (*store.DirState, bool, error) {
	entriesCol := "NULL::bytea"
	if withEntries {
		entriesCol = "s.entries"
	}
	var ds store.DirState
	var whole bool
	err := q.QueryRow(ctx, `SELECT s.key, s.cookie, s.full_at, s.head, `+entriesCol+`, d.generation, s.entries IS NOT NULL
		FROM dir_state s JOIN domains d ON d.name = s.domain WHERE s.domain = $1`, domain).
		Scan(&ds.Key, &ds.Cookie, &ds.FullAt, &ds.Head, &ds.Entries, &ds.Generation, &whole)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if len(ds.Cookie) == 0 {
		ds.Cookie = nil
	}
	if len(ds.Head) == 0 {
		ds.Head = nil
	}
	if len(ds.Entries) == 0 {
		ds.Entries = nil
	}
	return &ds, whole, nil
}

// readStateChunks reads the chunks of query (seq, summary, data), in
// ascending Seq; nil if none. Their bytes are copied into blocks of a
// megabyte or more (arena): 15,000 summaries are 20 slices for the garbage
// collector, not 15,000.
func readStateChunks(ctx context.Context, q queryer, query string, args ...any) ([]store.StateChunk, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var chunks []store.StateChunk
	var a arena
	for rows.Next() {
		var seq int64
		var summary, data pgtype.DriverBytes
		if err := rows.Scan(&seq, &summary, &data); err != nil {
			return nil, err
		}
		chunks = append(chunks, store.StateChunk{Seq: seq, Summary: a.copy(summary), Data: a.copy(data)})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(chunks, func(a, b store.StateChunk) int { return cmp.Compare(a.Seq, b.Seq) })
	return chunks, nil
}

// arena copies byte slices into shared blocks.
type arena struct{ block []byte }

// copy returns a copy of b (nil if it is empty) in the current block, or
// in a new one if it does not fit.
func (a *arena) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if cap(a.block)-len(a.block) < len(b) {
		a.block = make([]byte, 0, max(1<<20, len(b)))
	}
	n := len(a.block)
	a.block = append(a.block, b...)
	return a.block[n:len(a.block):len(a.block)]
}

// DirStateChunks returns the chunks of the domain's state whose Seq is in
// seqs, with their summaries and data, in ascending Seq
// (store.ChunkStore): one query, the seqs passed as one array.
func (s *Store) DirStateChunks(ctx context.Context, domain string, seqs []int64) ([]store.StateChunk, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	seqs = slices.Compact(slices.Sorted(slices.Values(seqs)))
	if len(seqs) == 0 {
		return nil, nil
	}
	// Each seq looked up by the primary keys, whatever the planner knows
	// of the tables: a LATERAL subquery with a LIMIT is not flattened into
	// a join, which, for a table without statistics yet, it made a hash of
	// the whole domain's summaries.
	chunks, err := readStateChunks(ctx, s.pool, `SELECT q.seq, s.summary, c.data
		FROM unnest($2::bigint[]) AS q (seq)
		CROSS JOIN LATERAL (SELECT summary FROM dir_state_summaries WHERE domain = $1 AND seq = q.seq LIMIT 1) AS s
		CROSS JOIN LATERAL (SELECT data FROM dir_state_chunks WHERE domain = $1 AND seq = q.seq LIMIT 1) AS c
		WHERE EXISTS (SELECT 1 FROM dir_state WHERE domain = $1 AND entries IS NULL)`, domain, seqs)
	if err != nil {
		return nil, fmt.Errorf("directory state chunks of %s: %w", domain, ctxErr(ctx, err))
	}
	return chunks, nil
}

// writeDirState replaces the directory state of domain with ds, or deletes
// it, chunks and all, if ds is nil. It runs in Apply's transaction, which
// holds the lock of the domain's row.
//
// A state of chunks (ds.Chunks not nil) replaces every chunk the domain
// had: the old rows are deleted and the new ones written with COPY. A
// patch (ds.Patch) writes the chunks it names with one INSERT … ON
// CONFLICT a table, from arrays, and deletes those with empty Data with
// one DELETE a table, all in one batch. Either leaves the entries column
// NULL. A state of entries deletes the domain's chunks.
func writeDirState(ctx context.Context, tx pgx.Tx, domain string, ds *store.DirState) error {
	b := &pgx.Batch{}
	if ds == nil {
		b.Queue(`DELETE FROM dir_state WHERE domain = $1`, domain)
		b.Queue(`DELETE FROM dir_state_summaries WHERE domain = $1`, domain)
		b.Queue(`DELETE FROM dir_state_chunks WHERE domain = $1`, domain)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("delete the directory state: %w", err)
		}
		return nil
	}
	entries := ds.Entries
	if ds.Chunks != nil || ds.Patch {
		entries = nil
	}
	if ds.Patch {
		// Chunks without a state (its row deleted by hand), or under one
		// written whole (by an earlier version), are no part of the one a
		// patch makes.
		for _, table := range []string{"dir_state_summaries", "dir_state_chunks"} {
			b.Queue(`DELETE FROM `+table+` WHERE domain = $1
				AND NOT EXISTS (SELECT 1 FROM dir_state WHERE domain = $1 AND entries IS NULL)`, domain)
		}
	}
	b.Queue(`
		INSERT INTO dir_state (domain, key, cookie, full_at, head, entries) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (domain) DO UPDATE SET
			key = excluded.key, cookie = excluded.cookie, full_at = excluded.full_at,
			head = excluded.head, entries = excluded.entries`,
		domain, ds.Key, byteaOrNull(ds.Cookie), ds.FullAt, byteaOrNull(ds.Head), byteaOrNull(entries))
	chunks := store.SortChunks(ds.Chunks)
	if !ds.Patch {
		b.Queue(`DELETE FROM dir_state_summaries WHERE domain = $1`, domain)
		b.Queue(`DELETE FROM dir_state_chunks WHERE domain = $1`, domain)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("write the directory state: %w", err)
		}
		if len(chunks) == 0 {
			return nil
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"dir_state_summaries"}, []string{"domain", "seq", "summary"},
			pgx.CopyFromSlice(len(chunks), func(i int) ([]any, error) {
				return []any{domain, chunks[i].Seq, byteaOrNull(chunks[i].Summary)}, nil
			}))
		if err != nil {
			return fmt.Errorf("write the directory state's summaries: %w", err)
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"dir_state_chunks"}, []string{"domain", "seq", "data"},
			pgx.CopyFromSlice(len(chunks), func(i int) ([]any, error) {
				return []any{domain, chunks[i].Seq, byteaOrNull(chunks[i].Data)}, nil
			}))
		if err != nil {
			return fmt.Errorf("write the directory state's chunks: %w", err)
		}
		return nil
	}

	var deleted, seqs []int64
	var summaries, data [][]byte
	for _, c := range chunks {
		if len(c.Data) == 0 {
			deleted = append(deleted, c.Seq)
			continue
		}
		seqs = append(seqs, c.Seq)
		summaries = append(summaries, byteaOrNull(c.Summary))
		data = append(data, c.Data)
	}
	if len(deleted) > 0 {
		b.Queue(`DELETE FROM dir_state_summaries WHERE domain = $1 AND seq = ANY($2::bigint[])`, domain, deleted)
		b.Queue(`DELETE FROM dir_state_chunks WHERE domain = $1 AND seq = ANY($2::bigint[])`, domain, deleted)
	}
	if len(seqs) > 0 {
		b.Queue(`INSERT INTO dir_state_summaries (domain, seq, summary)
			SELECT $1, seq, summary FROM unnest($2::bigint[], $3::bytea[]) AS u (seq, summary)
			ON CONFLICT (domain, seq) DO UPDATE SET summary = excluded.summary`, domain, seqs, summaries)
		b.Queue(`INSERT INTO dir_state_chunks (domain, seq, data)
			SELECT $1, seq, data FROM unnest($2::bigint[], $3::bytea[]) AS u (seq, data)
			ON CONFLICT (domain, seq) DO UPDATE SET data = excluded.data`, domain, seqs, data)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write the directory state: %w", err)
	}
	return nil
}

// byteaOrNull is b as a bytea parameter: NULL if it is empty.
func byteaOrNull(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// MoveCookie replaces the kept state's cookie from by to
// (store.CookieMover); the entries and chunks stay as they are.
func (s *Store) MoveCookie(ctx context.Context, domain string, from, to []byte) (bool, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE dir_state SET cookie = $1 WHERE domain = $2 AND cookie = $3`, to, domain, from)
	if err != nil {
		return false, fmt.Errorf("moving the cookie of %s: %w", domain, err)
	}
	return tag.RowsAffected() == 1, nil
}
