package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strconv"

	"github.com/dirsync/dirsync/host/store"
)

var _ store.ChunkStore = (*Store)(nil)

// DirState returns the directory state that the domain's last applied run
// left; nil (and no error) when there is none or the domain is unknown. An
// empty cookie, entries, head, summary or data reads back nil. A chunked
// state comes back with its chunks, in ascending Seq, and Entries nil.
func (s *Store) DirState(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, readChunks)
}

// DirStateHead is DirState without the entries and chunks: it reads
// neither the entries column, whose overflow pages are most of the cost of
// DirState, nor the chunk tables.
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

// dirState reads the directory state of domain, in one read transaction
// so that its head and chunks are of one Apply.
func (s *Store) dirState(ctx context.Context, domain string, what stateRead) (*store.DirState, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	var ds *store.DirState
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		var whole bool
		if ds, whole, err = readStateHead(ctx, tx, domain, what == readChunks); err != nil || ds == nil {
			return err
		}
		switch {
		case whole:
			// Written whole (by an earlier version, beside a newer one
			// on the same store): any chunk rows are an older state's.
		case what == readSummaries:
			ds.Chunks, err = readStateChunks(ctx, tx, `SELECT seq, summary, NULL FROM dir_state_summaries
				WHERE domain = ? ORDER BY seq`, domain)
		case what == readChunks && ds.Entries == nil:
			ds.Chunks, err = readStateChunks(ctx, tx, `SELECT s.seq, s.summary, c.data
				FROM dir_state_summaries s JOIN dir_state_chunks c ON c.domain = s.domain AND c.seq = s.seq
				WHERE s.domain = ? ORDER BY s.seq`, domain)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("directory state of %s: %w", domain, err)
	}
	return ds, nil
}

// readStateHead reads the row of domain's state, its entries only if
// withEntries; nil if there is none. whole says the state was written as
// entries, not in chunks.
func readStateHead(ctx context.Context, tx *sql.Tx, domain string, withEntries bool) (*store.DirState, bool, error) {
	var ds store.DirState
	var fullAt string
	// The entries column is named only when they are read: SQLite reads a
	// column's overflow pages only for a query that names it.
	entriesCol := "NULL"
	if withEntries {
		entriesCol = "s.entries"
	}
	// Rows and RawBytes, not QueryRow: database/sql would copy the blob
	// (tens of megabytes) once more.
	// typeof reads the column's type from the row's header, not its pages.
	rows, err := tx.QueryContext(ctx, `SELECT s.key, s.cookie, s.full_at, s.head, `+entriesCol+`, d.generation, typeof(s.entries) = 'blob'
		FROM dir_state s JOIN domains d ON d.name = s.domain WHERE s.domain = ?`, domain)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, false, rows.Err()
	}
	var entries sql.RawBytes
	var whole bool
	if err := rows.Scan(&ds.Key, &ds.Cookie, &fullAt, &ds.Head, &entries, &ds.Generation, &whole); err != nil {
		return nil, false, err
	}
	ds.Entries = bytes.Clone(entries)
	if ds.FullAt, err = parseTime(fullAt); err != nil {
		return nil, false, fmt.Errorf("full_at: %w", err)
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
	return &ds, whole, rows.Close()
}

// readStateChunks reads the chunks of query (seq, summary, data), nil if
// none. Their bytes are copied into blocks of a megabyte or more
// (arena): 15,000 summaries are 20 slices for the garbage collector, not
// 15,000.
func readStateChunks(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]store.StateChunk, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var chunks []store.StateChunk
	var a arena
	for rows.Next() {
		var seq int64
		var summary, data sql.RawBytes
		if err := rows.Scan(&seq, &summary, &data); err != nil {
			return nil, err
		}
		chunks = append(chunks, store.StateChunk{Seq: seq, Summary: a.copy(summary), Data: a.copy(data)})
	}
	return chunks, rows.Err()
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
// (store.ChunkStore): one query, the seqs passed as one JSON array.
func (s *Store) DirStateChunks(ctx context.Context, domain string, seqs []int64) ([]store.StateChunk, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, nil
	}
	var chunks []store.StateChunk
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		chunks, err = readStateChunks(ctx, tx, `SELECT s.seq, s.summary, c.data
			FROM dir_state_summaries s JOIN dir_state_chunks c ON c.domain = s.domain AND c.seq = s.seq
			WHERE s.domain = ? AND s.seq IN (SELECT value FROM json_each(?))
			AND EXISTS (SELECT 1 FROM dir_state WHERE domain = s.domain AND typeof(entries) = 'null') ORDER BY s.seq`, domain, seqList(seqs))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("directory state chunks of %s: %w", domain, err)
	}
	return chunks, nil
}

// seqList is seqs as a JSON array, for json_each.
func seqList(seqs []int64) string {
	b := make([]byte, 0, 8*len(seqs)+2)
	b = append(b, '[')
	for i, seq := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, seq, 10)
	}
	return string(append(b, ']'))
}

// writeDirState replaces the directory state of a's domain with ds, or
// deletes it, chunks and all, if ds is nil. It runs in Apply's
// transaction.
//
// A state of chunks (ds.Chunks not nil) replaces every chunk the domain
// had, and a patch (ds.Patch) the chunks it names, those with empty Data
// deleted; either leaves the entries column NULL. A state of entries
// deletes the domain's chunks. The chunks are written with multi-row
// INSERTs (bulk.go), and the rows a patch deletes with one DELETE a table.
func writeDirState(a *applier, ds *store.DirState) error {
	ctx, tx, domain := a.ctx, a.tx, a.domain
	if ds == nil {
		for _, q := range []string{
			`DELETE FROM dir_state WHERE domain = ?`,
			`DELETE FROM dir_state_summaries WHERE domain = ?`,
			`DELETE FROM dir_state_chunks WHERE domain = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, domain); err != nil {
				return fmt.Errorf("delete the directory state: %w", err)
			}
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
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE domain = ?
				AND NOT EXISTS (SELECT 1 FROM dir_state WHERE domain = ? AND typeof(entries) = 'null')`, domain, domain); err != nil {
				return fmt.Errorf("write the directory state: delete from %s: %w", table, err)
			}
		}
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO dir_state (domain, key, cookie, full_at, head, entries) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (domain) DO UPDATE SET
			key = excluded.key, cookie = excluded.cookie, full_at = excluded.full_at,
			head = excluded.head, entries = excluded.entries`,
		domain, ds.Key, blobOrNull(ds.Cookie), formatTime(ds.FullAt), blobOrNull(ds.Head), blobOrNull(entries))
	if err != nil {
		return fmt.Errorf("write the directory state: %w", err)
	}
	chunks := store.SortChunks(ds.Chunks)
	var deleted []int64
	if ds.Patch {
		// Those with data are written below, over the old ones.
		kept := chunks[:0:0]
		for _, c := range chunks {
			if len(c.Data) == 0 {
				deleted = append(deleted, c.Seq)
			} else {
				kept = append(kept, c)
			}
		}
		chunks = kept
	}
	for _, table := range []string{"dir_state_summaries", "dir_state_chunks"} {
		q, args := `DELETE FROM `+table+` WHERE domain = ?`, []any{domain}
		if ds.Patch {
			if len(deleted) == 0 {
				continue
			}
			q, args = q+` AND seq IN (SELECT value FROM json_each(?))`, append(args, seqList(deleted))
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("write the directory state: delete from %s: %w", table, err)
		}
	}
	if len(chunks) == 0 {
		return nil
	}
	// A patch replaces chunks in place (their rowids stay, and with them
	// the order the rows of a full write were laid out in).
	var tail [2]string
	if ds.Patch {
		tail = [2]string{
			" ON CONFLICT (domain, seq) DO UPDATE SET summary = excluded.summary",
			" ON CONFLICT (domain, seq) DO UPDATE SET data = excluded.data",
		}
	}
	summaries := multiInsert{table: "dir_state_summaries", cols: []string{"domain", "seq", "summary"}, tail: tail[0]}
	defer summaries.close()
	for _, c := range chunks {
		if err := summaries.add(a, domain, c.Seq, blobOrNull(c.Summary)); err != nil {
			return fmt.Errorf("write the directory state's summaries: %w", err)
		}
	}
	if err := summaries.flush(a); err != nil {
		return fmt.Errorf("write the directory state's summaries: %w", err)
	}
	data := multiInsert{table: "dir_state_chunks", cols: []string{"domain", "seq", "data"}, tail: tail[1]}
	defer data.close()
	for _, c := range chunks {
		if err := data.add(a, domain, c.Seq, blobOrNull(c.Data)); err != nil {
			return fmt.Errorf("write the directory state's chunks: %w", err)
		}
	}
	if err := data.flush(a); err != nil {
		return fmt.Errorf("write the directory state's chunks: %w", err)
	}
	return nil
}

// blobOrNull is b as a BLOB parameter: NULL if it is empty.
func blobOrNull(b []byte) any {
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
	var moved bool
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE dir_state SET cookie = ? WHERE domain = ? AND cookie = ?`, to, domain, from)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		moved = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("moving the cookie of %s: %w", domain, err)
	}
	return moved, nil
}
