package storetest

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
)

// The sizes of BenchChunks: a domain of 1,000,000 users, whose state the
// host keeps in about 15,000 chunks (a summary of about 1.3 KB, data of
// about 3.5 KB compressed each), and a delta that reaches 1,000 of them.
const (
	benchChunkCount   = 15_000
	benchSummaryBytes = 1300
	benchDataBytes    = 3500
	benchPatchChunks  = 1000
)

var (
	benchOnce   sync.Once
	benchChunks []store.StateChunk
)

// benchState returns benchChunkCount chunks of random bytes, made once.
func benchState() []store.StateChunk {
	benchOnce.Do(func() {
		r := rand.NewChaCha8([32]byte{1})
		benchChunks = make([]store.StateChunk, benchChunkCount)
		buf := make([]byte, benchChunkCount*(benchSummaryBytes+benchDataBytes))
		r.Read(buf)
		for i := range benchChunks {
			c := &benchChunks[i]
			c.Seq = int64(i)
			c.Summary, buf = buf[:benchSummaryBytes:benchSummaryBytes], buf[benchSummaryBytes:]
			c.Data, buf = buf[:benchDataBytes:benchDataBytes], buf[benchDataBytes:]
		}
	})
	return benchChunks
}

// BenchChunks measures a store.ChunkStore with the state of a 1,000,000-user
// domain (15,000 chunks of random bytes) in the store open returns:
//
//   - FullWrite/New: an Apply that writes every chunk, the domain having
//     no state before (deleted outside the timer);
//   - FullWrite/Replace: the same over a state of as many chunks;
//   - Summaries: DirStateSummaries;
//   - Chunks1000: DirStateChunks of 1,000 seqs spread over the state;
//   - Patch0: an Apply whose state is a patch without chunks, the cost of
//     an Apply and its run record that the others include;
//   - Patch1000: an Apply that patches 1,000 chunks (new data).
//
// A store's package calls it from a benchmark of its own.
func BenchChunks(b *testing.B, open func(tb testing.TB) store.Store) {
	s := open(b)
	cs, ok := s.(store.ChunkStore)
	if !ok {
		b.Skip("the store is not a store.ChunkStore")
	}
	chunks := benchState()
	full := &store.DirState{Key: "bench", Cookie: []byte("cookie"), Head: []byte("head"), Chunks: chunks}
	// runFor is a run that leaves ds, of the domain's generation.
	runFor := func(b *testing.B, ds *store.DirState) *store.Run {
		b.Helper()
		snap, err := s.Snapshot(b.Context(), domain, nil)
		if err != nil {
			b.Fatal(err)
		}
		run := newRun(domain, time.Now())
		run.Generation, run.DirState = snap.Generation, ds
		return run
	}
	write := func(b *testing.B, run *store.Run) {
		b.Helper()
		if err := s.Apply(b.Context(), domain, nil, run); err != nil {
			b.Fatal(err)
		}
	}
	// apply applies a run that leaves ds, timing the Apply only.
	apply := func(b *testing.B, ds *store.DirState) {
		b.Helper()
		b.StopTimer()
		run := runFor(b, ds)
		b.StartTimer()
		write(b, run)
	}
	stateBytes := int64(benchChunkCount * (benchSummaryBytes + benchDataBytes))
	b.Run("FullWrite/New", func(b *testing.B) {
		b.SetBytes(stateBytes)
		for b.Loop() {
			b.StopTimer()
			write(b, runFor(b, nil))
			apply(b, full)
		}
	})
	b.Run("FullWrite/Replace", func(b *testing.B) {
		apply(b, full)
		b.SetBytes(stateBytes)
		for b.Loop() {
			apply(b, full)
		}
	})
	apply(b, full) // for the reads, also when they run alone
	r := rand.New(rand.NewPCG(1, 2))
	seqs := slices.Sorted(func(yield func(int64) bool) {
		for _, i := range r.Perm(benchChunkCount)[:benchPatchChunks] {
			if !yield(int64(i)) {
				return
			}
		}
	})
	b.Run("Summaries", func(b *testing.B) {
		b.SetBytes(benchChunkCount * benchSummaryBytes)
		for b.Loop() {
			ds, err := cs.DirStateSummaries(b.Context(), domain)
			if err != nil {
				b.Fatal(err)
			}
			if ds == nil || len(ds.Chunks) != benchChunkCount {
				b.Fatalf("DirStateSummaries: %+v", ds)
			}
		}
	})
	b.Run("Chunks1000", func(b *testing.B) {
		b.SetBytes(benchPatchChunks * (benchSummaryBytes + benchDataBytes))
		for b.Loop() {
			got, err := cs.DirStateChunks(b.Context(), domain, seqs)
			if err != nil {
				b.Fatal(err)
			}
			if len(got) != benchPatchChunks {
				b.Fatalf("DirStateChunks: %d chunks", len(got))
			}
		}
	})
	b.Run("Patch0", func(b *testing.B) {
		patch := &store.DirState{Key: "bench", Cookie: []byte("cookie 2"), Head: []byte("head 2"), Patch: true}
		for b.Loop() {
			apply(b, patch)
		}
	})
	b.Run("Patch1000", func(b *testing.B) {
		patch := &store.DirState{Key: "bench", Cookie: []byte("cookie 2"), Head: []byte("head 2"), Patch: true}
		for i, seq := range seqs {
			// Another chunk's bytes: new data for seq.
			c := chunks[(i*7919+1)%benchChunkCount]
			patch.Chunks = append(patch.Chunks, store.StateChunk{Seq: seq, Summary: c.Summary, Data: c.Data})
		}
		b.SetBytes(benchPatchChunks * (benchSummaryBytes + benchDataBytes))
		for b.Loop() {
			apply(b, patch)
		}
	})
}
