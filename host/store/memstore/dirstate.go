package memstore

import (
	"bytes"
	"cmp"
	"context"
	"slices"

	"github.com/dirsync/dirsync/host/store"
)

var _ store.ChunkStore = (*Store)(nil)

// DirState returns a copy of the directory state that the domain's last
// applied run left; nil (and no error) when there is none or the domain is
// unknown. An empty cookie, entries, head, summary or data reads back nil,
// as the SQL stores give them. A chunked state comes back with its Chunks,
// in ascending Seq, and Entries nil.
func (s *Store) DirState(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, true, true)
}

// DirStateHead is DirState without the entries and chunks (nil): it does
// not copy them.
func (s *Store) DirStateHead(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, false, false)
}

// DirStateSummaries is DirStateHead with the Seq and Summary of every
// chunk (store.ChunkStore).
func (s *Store) DirStateSummaries(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, false, true)
}

// dirState copies the directory state of domain: its entries and the data
// of its chunks only if withData, its chunks (Seq and Summary) only if
// withChunks.
func (s *Store) dirState(ctx context.Context, domain string, withData, withChunks bool) (*store.DirState, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ds := s.dirStates[domain]
	if ds == nil {
		return nil, nil
	}
	head := *ds
	if !withData {
		head.Entries = nil
	}
	if !withChunks {
		head.Chunks = nil
	}
	c := copyDirState(&head, withData)
	c.Generation = s.domain(domain).generation
	return c, nil
}

// DirStateChunks returns copies of the chunks of the domain's state whose
// Seq is in seqs, in ascending Seq (store.ChunkStore).
func (s *Store) DirStateChunks(ctx context.Context, domain string, seqs []int64) ([]store.StateChunk, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ds := s.dirStates[domain]
	if ds == nil || len(ds.Chunks) == 0 {
		return nil, nil
	}
	want := slices.Sorted(slices.Values(seqs))
	var out []store.StateChunk
	for i, seq := range want {
		if i > 0 && want[i-1] == seq {
			continue
		}
		if j, ok := slices.BinarySearchFunc(ds.Chunks, seq, chunkSeq); ok {
			out = append(out, copyChunk(ds.Chunks[j], true))
		}
	}
	return out, nil
}

func chunkSeq(c store.StateChunk, seq int64) int { return cmp.Compare(c.Seq, seq) }

// copyDirState returns a copy of ds that shares no memory with it, the
// caller's or the store's: its chunks' data only if withData. Empty byte
// slices become nil, as does an empty Chunks.
func copyDirState(ds *store.DirState, withData bool) *store.DirState {
	c := *ds
	c.Cookie, c.Head, c.Entries = cloneBytes(ds.Cookie), cloneBytes(ds.Head), cloneBytes(ds.Entries)
	c.Chunks, c.Patch = nil, false
	for _, ch := range ds.Chunks {
		c.Chunks = append(c.Chunks, copyChunk(ch, withData))
	}
	return &c
}

// copyChunk copies ch, its data only if withData.
func copyChunk(ch store.StateChunk, withData bool) store.StateChunk {
	c := store.StateChunk{Seq: ch.Seq, Summary: cloneBytes(ch.Summary)}
	if withData {
		c.Data = cloneBytes(ch.Data)
	}
	return c
}

// nextDirState is the state that Apply leaves when the domain's state was
// old (nil if none) and the run gives ds: a copy of ds with its chunks in
// ascending Seq, the last of a Seq given twice winning. A patch keeps the
// chunks of old that ds does not name, replaces those it does, and drops
// those it gives with empty Data; a state that is not a patch has the
// chunks it gives only. A state with chunks (or a patch) has no Entries.
// The chunks of old are shared, not copied: the store never changes one.
func nextDirState(old, ds *store.DirState) *store.DirState {
	if ds == nil {
		return nil
	}
	head := *ds
	head.Chunks = nil
	next := copyDirState(&head, true)
	if ds.Chunks == nil && !ds.Patch {
		return next // a state of Entries
	}
	next.Entries = nil
	given := store.SortChunks(ds.Chunks)
	for i := range given {
		given[i] = copyChunk(given[i], true)
	}
	var kept []store.StateChunk
	if ds.Patch && old != nil {
		kept = old.Chunks
	}
	var out []store.StateChunk
	i, j := 0, 0
	for i < len(kept) || j < len(given) {
		if j == len(given) || (i < len(kept) && kept[i].Seq < given[j].Seq) {
			out = append(out, kept[i])
			i++
			continue
		}
		g := given[j]
		j++
		if i < len(kept) && kept[i].Seq == g.Seq {
			i++ // replaced or deleted
		}
		if !ds.Patch || len(g.Data) > 0 {
			out = append(out, g)
		}
	}
	next.Chunks = out
	return next
}

// cloneBytes copies b; an empty one becomes nil.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return slices.Clone(b)
}

// MoveCookie replaces the kept state's cookie from by to
// (store.CookieMover). The entries and chunks stay as they are.
func (s *Store) MoveCookie(ctx context.Context, domain string, from, to []byte) (bool, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return false, err
	}
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	ds := s.dirStates[domain]
	if ds == nil || !bytes.Equal(ds.Cookie, from) || len(from) == 0 {
		return false, nil
	}
	ds.Cookie = cloneBytes(to)
	return true, nil
}
