package postgres

import (
	"testing"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/storetest"
)

// BenchmarkChunks is the SQLite store's BenchmarkChunks on PostgreSQL:
//
//	go test -run '^$' -bench Chunks ./host/store/postgres/
func BenchmarkChunks(b *testing.B) {
	storetest.BenchChunks(b, func(tb testing.TB) store.Store { return open(tb) })
}

// A patch of a domain whose dir_state row was deleted by hand makes a
// state of its own chunks only: the chunks left without a state go.
func TestChunksPatchAfterRowDeleted(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	write := func(ds *store.DirState) {
		t.Helper()
		run := newRun(t, s)
		run.DirState = ds
		if err := s.Apply(ctx, "example.com", nil, run); err != nil {
			t.Fatal(err)
		}
	}
	chunk := func(seq int64) store.StateChunk {
		return store.StateChunk{Seq: seq, Summary: []byte{byte(seq)}, Data: []byte{byte(seq), 1}}
	}
	write(&store.DirState{Key: "k", Chunks: []store.StateChunk{chunk(1), chunk(2)}})
	if _, err := s.pool.Exec(ctx, `DELETE FROM dir_state`); err != nil {
		t.Fatal(err)
	}
	write(&store.DirState{Key: "k2", Patch: true, Chunks: []store.StateChunk{chunk(3)}})
	ds, err := s.DirState(ctx, "example.com")
	if err != nil || ds == nil || len(ds.Chunks) != 1 || ds.Chunks[0].Seq != 3 {
		t.Fatalf("DirState = %+v, %v; want chunk 3 only", ds, err)
	}
}

// TestChunksUnderAWholeState: an earlier version beside this one on the
// same store writes a state whole (entries) and leaves the chunk rows of
// an older state: they are not the state, and neither DirState nor
// DirStateSummaries gives them.
func TestChunksUnderAWholeState(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	run := newRun(t, s)
	run.DirState = &store.DirState{Key: "k", Chunks: []store.StateChunk{{Seq: 1, Summary: []byte{1}, Data: []byte{1, 1}}}}
	if err := s.Apply(ctx, "example.com", nil, run); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE dir_state SET entries = $1, key = 'old'`, []byte("whole")); err != nil {
		t.Fatal(err)
	}
	sums, err := s.DirStateSummaries(ctx, "example.com")
	if err != nil || sums == nil || sums.Chunks != nil {
		t.Errorf("DirStateSummaries = %+v, %v; want the head and no chunks", sums, err)
	}
	ds, err := s.DirState(ctx, "example.com")
	if err != nil || ds == nil || string(ds.Entries) != "whole" || ds.Chunks != nil {
		t.Errorf("DirState = %+v, %v; want the entries written whole", ds, err)
	}
	if cs, err := s.DirStateChunks(ctx, "example.com", []int64{1}); err != nil || len(cs) != 0 {
		t.Errorf("DirStateChunks = %+v, %v; want none", cs, err)
	}
	// A patch over it makes a state of its own chunks only.
	run = newRun(t, s)
	run.DirState = &store.DirState{Key: "k2", Patch: true, Chunks: []store.StateChunk{{Seq: 9, Summary: []byte{9}, Data: []byte{9, 9}}}}
	if err := s.Apply(ctx, "example.com", nil, run); err != nil {
		t.Fatal(err)
	}
	ds, err = s.DirState(ctx, "example.com")
	if err != nil || ds == nil || len(ds.Chunks) != 1 || ds.Chunks[0].Seq != 9 {
		t.Errorf("DirState after a patch over a whole state = %+v, %v; want chunk 9 alone", ds, err)
	}
}
