package storetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// The cases of a store.ChunkStore; a store without it skips them.

// chunkStore returns s as a store.ChunkStore, or skips the test.
func chunkStore(t *testing.T, s store.Store) store.ChunkStore {
	t.Helper()
	cs, ok := s.(store.ChunkStore)
	if !ok {
		t.Skip("the store is not a store.ChunkStore (optional)")
	}
	return cs
}

// newChunk is a chunk of seq with a summary of nSummary bytes and data of
// nData, made from seed (zero bytes and every other value among them).
func newChunk(seq int64, seed uint64, nSummary, nData int) store.StateChunk {
	r := rand.New(rand.NewPCG(seed, uint64(seq)))
	fill := func(n int) []byte {
		if n == 0 {
			return nil
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		b[0], b[n-1] = 0, 0xff
		return b
	}
	return store.StateChunk{Seq: seq, Summary: fill(nSummary), Data: fill(nData)}
}

// newChunks are chunks of seqs, of a summary of 1,300 bytes and data of
// 3,500, made from seed.
func newChunks(seed uint64, seqs ...int64) []store.StateChunk {
	cs := make([]store.StateChunk, len(seqs))
	for i, seq := range seqs {
		cs[i] = newChunk(seq, seed, 1300, 3500)
	}
	return cs
}

// seqRange is from, from+step, … below to.
func seqRange(from, to, step int64) []int64 {
	var seqs []int64
	for s := from; s < to; s += step {
		seqs = append(seqs, s)
	}
	return seqs
}

// chunkedState is a state of chunks (copied: the caller may change them
// after) with a key, cookie, head and full read's time of its own.
func chunkedState(key string, chunks []store.StateChunk) *store.DirState {
	return &store.DirState{
		Key:    key,
		Cookie: []byte("cookie of " + key + "\x00\xff"),
		FullAt: time.Date(2025, 4, 1, 12, 0, 0, 987654321, time.FixedZone("CEST", 7200)),
		Head:   []byte("head of " + key + "\x00\xff"),
		Chunks: cloneChunks(chunks),
	}
}

// cloneChunks copies cs, bytes and all.
func cloneChunks(cs []store.StateChunk) []store.StateChunk {
	if cs == nil {
		return nil
	}
	out := make([]store.StateChunk, len(cs))
	for i, c := range cs {
		out[i] = store.StateChunk{Seq: c.Seq, Summary: bytes.Clone(c.Summary), Data: bytes.Clone(c.Data)}
	}
	return out
}

// shuffled returns cs in another order, the same for a seed.
func shuffled(seed uint64, cs []store.StateChunk) []store.StateChunk {
	out := slices.Clone(cs)
	r := rand.New(rand.NewPCG(seed, 7))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// chunkModel is what a store holds of a chunked state: its chunks by Seq.
type chunkModel map[int64]store.StateChunk

func modelOf(cs []store.StateChunk) chunkModel {
	m := chunkModel{}
	m.patch(cs, false)
	return m
}

// patch applies cs as Apply does: each replaces or adds the chunk of its
// Seq; with deletes, one with empty Data deletes it instead.
func (m chunkModel) patch(cs []store.StateChunk, deletes bool) {
	for _, c := range cloneChunks(cs) {
		if deletes && len(c.Data) == 0 {
			delete(m, c.Seq)
		} else {
			m[c.Seq] = c
		}
	}
}

// sorted returns the chunks in ascending Seq, nil if none.
func (m chunkModel) sorted() []store.StateChunk {
	var out []store.StateChunk
	for _, seq := range slices.Sorted(func(yield func(int64) bool) {
		for seq := range m {
			if !yield(seq) {
				return
			}
		}
	}) {
		out = append(out, m[seq])
	}
	return out
}

// of returns the chunks of seqs that m has, in ascending Seq.
func (m chunkModel) of(seqs ...int64) []store.StateChunk {
	sub := chunkModel{}
	for _, seq := range seqs {
		if c, ok := m[seq]; ok {
			sub[seq] = c
		}
	}
	return sub.sorted()
}

// seqsOf returns the Seq of each chunk.
func seqsOf(cs []store.StateChunk) []int64 {
	seqs := make([]int64, len(cs))
	for i, c := range cs {
		seqs[i] = c.Seq
	}
	return seqs
}

// wantChunks checks that got are want, in order, Seq, Summary and, if
// withData, Data byte for byte (empty or nil alike); without it Data must
// be nil.
func wantChunks(t *testing.T, what string, got, want []store.StateChunk, withData bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d chunks (seqs %v), want %d (seqs %v)", what, len(got), short(seqsOf(got)), len(want), short(seqsOf(want)))
		return
	}
	bad := 0
	for i := range got {
		g, w := got[i], want[i]
		var diff string
		switch {
		case g.Seq != w.Seq:
			diff = fmt.Sprintf("seq %d, want %d", g.Seq, w.Seq)
		case !bytes.Equal(g.Summary, w.Summary):
			diff = fmt.Sprintf("seq %d: summary of %d bytes differs from the %d given", g.Seq, len(g.Summary), len(w.Summary))
		case withData && !bytes.Equal(g.Data, w.Data):
			diff = fmt.Sprintf("seq %d: data of %d bytes differs from the %d given", g.Seq, len(g.Data), len(w.Data))
		case !withData && g.Data != nil:
			diff = fmt.Sprintf("seq %d: %d bytes of data, want nil", g.Seq, len(g.Data))
		}
		if diff != "" {
			if bad++; bad <= 5 {
				t.Errorf("%s: chunk %d: %s", what, i, diff)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d chunks differ", what, bad)
	}
}

// short is seqs, or their first and last ten if there are many.
func short(seqs []int64) string {
	if len(seqs) <= 20 {
		return fmt.Sprint(seqs)
	}
	return fmt.Sprintf("%v … %v", seqs[:10], seqs[len(seqs)-10:])
}

// headOf is ds without its chunks and entries: what DirStateHead gives.
func headOf(ds *store.DirState) *store.DirState {
	if ds == nil {
		return nil
	}
	c := cloneState(ds)
	c.Chunks, c.Entries, c.Patch = nil, nil, false
	return c
}

// wantChunked checks every read of the state of domain: the head as head
// has it (nil: no state), the chunks those of want. DirState gives head
// and chunks (Entries nil), DirStateHead the head alone,
// DirStateSummaries the head and the chunks without data, DirStateChunks
// of all of want's seqs the chunks; the generation is the Snapshot's.
func wantChunked(t *testing.T, s store.Store, what, domain string, head *store.DirState, want []store.StateChunk) {
	t.Helper()
	cs := s.(store.ChunkStore)
	ctx := t.Context()
	full := getState(t, s, domain)
	if head == nil {
		wantState(t, what+": DirState", full, nil)
		wantState(t, what+": DirStateHead", getHead(t, s, domain), nil)
		sum, err := cs.DirStateSummaries(ctx, domain)
		if err != nil {
			t.Fatalf("%s: DirStateSummaries: %v", what, err)
		}
		wantState(t, what+": DirStateSummaries", sum, nil)
		wantSomeChunks(t, s, what, domain, seqsOf(want), nil)
		return
	}
	wantState(t, what+": DirState", headOf(full), head)
	if full == nil {
		return
	}
	if full.Entries != nil {
		t.Errorf("%s: DirState of a chunked state has %d bytes of entries, want nil", what, len(full.Entries))
	}
	wantChunks(t, what+": DirState", full.Chunks, want, true)
	gen := snapshot(t, s, domain).Generation
	if full.Generation != gen {
		t.Errorf("%s: DirState generation %d, Snapshot %d", what, full.Generation, gen)
	}
	hd := getHead(t, s, domain)
	wantHead(t, what, hd, headOf(full))
	if hd != nil && hd.Chunks != nil {
		t.Errorf("%s: DirStateHead read %d chunks, want nil", what, len(hd.Chunks))
	}
	sum, err := cs.DirStateSummaries(ctx, domain)
	if err != nil {
		t.Fatalf("%s: DirStateSummaries: %v", what, err)
	}
	wantState(t, what+": DirStateSummaries", headOf(sum), head)
	if sum != nil {
		if sum.Entries != nil {
			t.Errorf("%s: DirStateSummaries read %d bytes of entries, want nil", what, len(sum.Entries))
		}
		if sum.Generation != gen {
			t.Errorf("%s: DirStateSummaries generation %d, Snapshot %d", what, sum.Generation, gen)
		}
		wantChunks(t, what+": DirStateSummaries", sum.Chunks, want, false)
		if want == nil && sum.Chunks != nil {
			t.Errorf("%s: DirStateSummaries gave %d chunks, want nil", what, len(sum.Chunks))
		}
	}
	wantSomeChunks(t, s, what, domain, seqsOf(want), want)
}

// wantSomeChunks checks that DirStateChunks of seqs gives want.
func wantSomeChunks(t *testing.T, s store.Store, what, domain string, seqs []int64, want []store.StateChunk) {
	t.Helper()
	got, err := s.(store.ChunkStore).DirStateChunks(t.Context(), domain, seqs)
	if err != nil {
		t.Fatalf("%s: DirStateChunks: %v", what, err)
	}
	wantChunks(t, fmt.Sprintf("%s: DirStateChunks(%s)", what, short(seqs)), got, want, true)
}

// testChunksRoundTrip: a state of chunks comes back as given, the chunks
// in ascending Seq whatever the order given, by every read; DirStateChunks
// gives the chunks of the seqs it is asked for, once each, in ascending
// Seq, and leaves out those the state does not have; each domain has its
// own; a later state of chunks replaces every chunk.
func testChunksRoundTrip(t *testing.T, s store.Store) {
	cs := chunkStore(t, s)
	ctx := t.Context()
	if ds, err := cs.DirStateSummaries(ctx, "unknown.example.net"); err != nil || ds != nil {
		t.Errorf("DirStateSummaries of an unknown domain = %+v, %v; want none", ds, err)
	}
	if got, err := cs.DirStateChunks(ctx, "unknown.example.net", []int64{0, 1}); err != nil || len(got) != 0 {
		t.Errorf("DirStateChunks of an unknown domain = %d chunks, %v; want none", len(got), err)
	}
	if err := s.EnsureDomain(ctx, domain); err != nil {
		t.Fatal(err)
	}
	wantChunked(t, s, "a domain without state", domain, nil, newChunks(1, 0, 1))

	// 150 chunks (more than one statement's rows), seqs 0, 3, 6, … and
	// one far beyond; one without a summary, one of 20 KB of data (past a
	// page), given out of order. Entries given beside chunks are not kept.
	chunks := newChunks(1, seqRange(0, 447, 3)...)
	chunks = append(chunks, newChunk(1<<40, 1, 1300, 3500))
	chunks[7].Summary = nil
	chunks[9] = newChunk(chunks[9].Seq, 2, 1300, 20<<10)
	want := modelOf(chunks)
	given := chunkedState("chunked key", shuffled(1, chunks))
	given.Entries = []byte("not kept")
	head := headOf(given)
	applyState(t, s, domain, given, create("guid-a", "alice@example.com", nil))
	// The caller may reuse its slices once Apply returns.
	for i := range given.Chunks {
		c := &given.Chunks[i]
		c.Seq++
		if len(c.Summary) > 0 {
			c.Summary[0] = 'x'
		}
		c.Data[0] = 'x'
	}
	wantChunked(t, s, "after Apply", "EXAMPLE.Com", head, want.sorted())

	// Subsets: out of order, a seq twice, seqs the state does not have.
	for _, seqs := range [][]int64{
		{27, 0, 27, 1 << 40, 1, 448, -3},
		{21},
		{1<<40 + 1, 2, 5},
		seqRange(0, 1000, 1),
		nil,
		{},
	} {
		wantSomeChunks(t, s, "a subset", "Example.COM", seqs, want.of(seqs...))
	}
	// The caller's change of what it read does not reach the store.
	if got, err := cs.DirStateChunks(ctx, domain, []int64{0, 3}); err == nil && len(got) == 2 {
		got[0].Data[0] ^= 0xff
		got[1].Summary[0] ^= 0xff
		got[1].Seq = 4
	}
	if sum, err := cs.DirStateSummaries(ctx, domain); err == nil && sum != nil && len(sum.Chunks) > 0 {
		sum.Chunks[0].Summary[0] ^= 0xff
	}
	if full := getState(t, s, domain); full != nil && len(full.Chunks) > 0 {
		full.Chunks[0].Data[1] ^= 0xff
	}
	wantChunked(t, s, "after changing what was read", domain, head, want.sorted())

	// Another domain, with some of the same seqs: each keeps its own.
	wantSomeChunks(t, s, otherDomain+" before its Apply", otherDomain, []int64{0, 3}, nil)
	otherChunks := newChunks(2, 0, 3, 4)
	other := chunkedState("other key", otherChunks)
	applyState(t, s, otherDomain, other)
	wantChunked(t, s, otherDomain, otherDomain, headOf(other), otherChunks)
	wantChunked(t, s, domain+" after an Apply to "+otherDomain, domain, head, want.sorted())

	// A state of chunks replaces them all: fewer, new bytes, seqs old and
	// new.
	next := newChunks(3, 0, 1, 2, 3, 1<<40)
	nextState := chunkedState("next key", next)
	applyState(t, s, domain, nextState)
	wantChunked(t, s, "after a second state of chunks", domain, headOf(nextState), next)
	wantSomeChunks(t, s, "an old seq", domain, []int64{6, 9, 27}, nil)
	wantChunked(t, s, otherDomain+" after a second Apply to "+domain, otherDomain, headOf(other), otherChunks)

	// Chunks of empty data, in a state that is no patch, are kept.
	empty := []store.StateChunk{{Seq: 5, Summary: []byte("s")}, newChunk(6, 4, 10, 10)}
	emptyState := chunkedState("empty data", empty)
	applyState(t, s, domain, emptyState)
	wantChunked(t, s, "a chunk of empty data", domain, headOf(emptyState), empty)
}

// testChunksPatch: a patch replaces the chunks it gives, adds those the
// state has not, deletes those it gives with empty Data, keeps every other
// one byte for byte, and replaces the key, cookie, head and full read's
// time; one without chunks changes only those.
func testChunksPatch(t *testing.T, s store.Store) {
	chunkStore(t, s)
	base := newChunks(1, seqRange(0, 150, 1)...)
	want := modelOf(base)
	applyState(t, s, domain, chunkedState("base", base))
	applyState(t, s, otherDomain, chunkedState("other", newChunks(9, 0, 1, 2)))

	// Replace 0–69 (one with an empty summary, one grown past a page),
	// delete 100–139 (a summary given with them or not) and 5000, which
	// the state has not, add 1000–1009 and 200: more than one statement's
	// rows, out of order.
	var patch []store.StateChunk
	patch = append(patch, newChunks(2, seqRange(0, 70, 1)...)...)
	patch[3].Summary = nil
	patch[4] = newChunk(4, 2, 1300, 20<<10)
	for seq := int64(100); seq < 140; seq++ {
		c := store.StateChunk{Seq: seq}
		if seq%2 == 0 {
			c.Summary = []byte("gone")
		}
		patch = append(patch, c)
	}
	patch = append(patch, store.StateChunk{Seq: 5000, Summary: []byte("never there")})
	patch = append(patch, newChunks(3, seqRange(1000, 1010, 1)...)...)
	patch = append(patch, newChunk(200, 3, 1300, 3500))
	st := chunkedState("patched", shuffled(2, patch))
	st.Patch = true
	st.FullAt = time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	applyState(t, s, domain, st, create("guid-a", "alice@example.com", nil))
	want.patch(patch, true)
	wantChunked(t, s, "after a patch", domain, headOf(st), want.sorted())
	wantSomeChunks(t, s, "deleted and kept", domain, []int64{99, 100, 139, 140, 5000, 149}, want.of(99, 140, 149))
	wantChunked(t, s, otherDomain+" after a patch of "+domain, otherDomain, headOf(chunkedState("other", nil)), newChunks(9, 0, 1, 2))

	// A patch without chunks: the head changes, the chunks stay.
	bare := &store.DirState{Key: "bare patch", Cookie: []byte("c2"), FullAt: time.Date(2025, 5, 2, 0, 0, 0, 0, time.UTC), Patch: true}
	applyState(t, s, domain, bare)
	wantChunked(t, s, "after a patch without chunks", domain, headOf(bare), want.sorted())

	// A patch that deletes every chunk leaves a state without chunks.
	var all []store.StateChunk
	for _, c := range want.sorted() {
		all = append(all, store.StateChunk{Seq: c.Seq})
	}
	none := chunkedState("none left", all)
	none.Patch = true
	applyState(t, s, domain, none)
	wantChunked(t, s, "after a patch that deletes all", domain, headOf(none), nil)

	// A patch of a domain without state makes one of its chunks.
	if err := s.EnsureDomain(t.Context(), "third.example"); err != nil {
		t.Fatal(err)
	}
	fresh := newChunks(4, 7, 8)
	first := chunkedState("first", append(slices.Clone(fresh), store.StateChunk{Seq: 9}))
	first.Patch = true
	applyState(t, s, "third.example", first)
	wantChunked(t, s, "a patch of a domain without state", "third.example", headOf(first), fresh)

	// A state of chunks after patches replaces every chunk.
	full := newChunks(5, 1, 2)
	fullState := chunkedState("full again", full)
	applyState(t, s, "third.example", fullState)
	wantChunked(t, s, "a state of chunks after a patch", "third.example", headOf(fullState), full)
}

// testChunksAndEntries: a state of entries after one of chunks has no
// chunks left, and one of chunks after one of entries no entries.
func testChunksAndEntries(t *testing.T, s store.Store) {
	cs := chunkStore(t, s)
	chunks := newChunks(1, seqRange(0, 100, 1)...)
	applyState(t, s, domain, chunkedState("chunks", chunks))

	entries := dirState("entries", 2, 5000)
	applyState(t, s, domain, entries)
	wantState(t, "entries after chunks", getState(t, s, domain), entries)
	if ds := getState(t, s, domain); ds != nil && ds.Chunks != nil {
		t.Errorf("entries after chunks: DirState has %d chunks, want nil", len(ds.Chunks))
	}
	sum, err := cs.DirStateSummaries(t.Context(), domain)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, "entries after chunks: DirStateSummaries", sum, headOf(entries))
	if sum != nil && sum.Chunks != nil {
		t.Errorf("entries after chunks: DirStateSummaries has %d chunks, want nil", len(sum.Chunks))
	}
	wantSomeChunks(t, s, "entries after chunks", domain, seqRange(0, 100, 1), nil)

	// The same seqs again, after the entries.
	again := newChunks(3, seqRange(50, 120, 1)...)
	againState := chunkedState("chunks again", again)
	applyState(t, s, domain, againState)
	wantChunked(t, s, "chunks after entries", domain, headOf(againState), again)

	// A patch of a state of entries: the entries go, the patch's chunks
	// are the state's.
	applyState(t, s, domain, entries)
	patch := chunkedState("patch of entries", newChunks(4, 1, 2))
	patch.Patch = true
	applyState(t, s, domain, patch)
	wantChunked(t, s, "a patch of entries", domain, headOf(patch), newChunks(4, 1, 2))
}

// testChunksNilDeletes: a run that leaves no state deletes the domain's
// chunks with it, and only the domain's; a state of chunks written after
// has only its own.
func testChunksNilDeletes(t *testing.T, s store.Store) {
	chunkStore(t, s)
	chunks := newChunks(1, seqRange(0, 100, 1)...)
	st := chunkedState("key", chunks)
	applyState(t, s, domain, st)
	applyState(t, s, otherDomain, st)

	applyState(t, s, domain, nil, create("guid-a", "alice@example.com", nil))
	wantChunked(t, s, "after an Apply without state", domain, nil, chunks)
	wantChunked(t, s, otherDomain, otherDomain, headOf(st), chunks)
	if err := s.EnsureDomain(t.Context(), domain); err != nil {
		t.Fatal(err)
	}
	wantChunked(t, s, "after EnsureDomain", domain, nil, chunks)

	// A patch after the deletion has its chunks only.
	patch := chunkedState("patch", newChunks(2, 3, 4))
	patch.Patch = true
	applyState(t, s, domain, patch)
	wantChunked(t, s, "a patch after the deletion", domain, headOf(patch), newChunks(2, 3, 4))
}

// testChunksMoveCookie: MoveCookie moves the cookie of a chunked state and
// keeps its chunks; a patch after it keeps them too.
func testChunksMoveCookie(t *testing.T, s store.Store) {
	chunkStore(t, s)
	m, ok := s.(store.CookieMover)
	if !ok {
		t.Skip("the store is not a store.CookieMover (optional)")
	}
	chunks := newChunks(1, seqRange(0, 80, 1)...)
	st := chunkedState("key", chunks)
	applyState(t, s, domain, st, create("guid-a", "alice@example.com", nil))
	moved, err := m.MoveCookie(t.Context(), domain, st.Cookie, []byte("the next cookie"))
	if err != nil || !moved {
		t.Fatalf("MoveCookie = %v, %v", moved, err)
	}
	head := headOf(st)
	head.Cookie = []byte("the next cookie")
	wantChunked(t, s, "after MoveCookie", domain, head, chunks)

	patch := chunkedState("patched", newChunks(2, 5))
	patch.Patch = true
	applyState(t, s, domain, patch)
	want := modelOf(chunks)
	want.patch(patch.Chunks, true)
	wantChunked(t, s, "a patch after MoveCookie", domain, headOf(patch), want.sorted())
}

// testChunksFailedApplyKeeps: an Apply that fails (a stale generation, a
// taken address) leaves the chunks as they were, whatever state it
// carried: chunks, a patch, entries or none.
func testChunksFailedApplyKeeps(t *testing.T, s store.Store) {
	ctx := t.Context()
	chunkStore(t, s)
	chunks := newChunks(1, seqRange(0, 100, 1)...)
	old := chunkedState("old key", chunks)
	applyState(t, s, domain, old, create("guid-a", "alice@example.com", nil))
	applyState(t, s, otherDomain, nil, create("guid-o", "olga@other.com", []string{"o@example.com"}))

	newChunked := chunkedState("new key", newChunks(2, seqRange(50, 170, 1)...))
	patch := chunkedState("patch", append(newChunks(3, 1, 2, 500), store.StateChunk{Seq: 3}, store.StateChunk{Seq: 4}))
	patch.Patch = true
	entries := dirState("entries", 4, 1000)
	states := []struct {
		name string
		ds   *store.DirState
	}{{"Chunks", newChunked}, {"Patch", patch}, {"Entries", entries}, {"Nil", nil}}
	for _, st := range states {
		t.Run("StaleGeneration/"+st.name, func(t *testing.T) {
			run := runAt(t, s, domain)
			run.Generation--
			run.DirState = st.ds
			wantErr(t, s.Apply(ctx, domain, []store.Change{create("guid-b", "bob@example.com", nil)}, run), store.ErrStoreChanged)
			wantChunked(t, s, "after a failed Apply", domain, headOf(old), chunks)
		})
		t.Run("AddressTaken/"+st.name, func(t *testing.T) {
			run := runAt(t, s, domain)
			run.DirState = st.ds
			wantErr(t, s.Apply(ctx, domain, []store.Change{
				create("guid-b", "bob@example.com", nil),
				create("guid-c", "carol@example.com", []string{"o@example.com"}), // olga's
			}, run), store.ErrExists)
			wantChunked(t, s, "after a failed Apply", domain, headOf(old), chunks)
		})
	}
	if ms := mailboxes(t, s, domain); len(ms) != 1 {
		t.Errorf("the failed Applies left %d mailboxes, want alice's only", len(ms))
	}
}

// testChunksGeneration: DirState and DirStateSummaries of a chunked state
// give the domain's write generation as it stands, the Snapshot's; a given
// Generation is not stored.
func testChunksGeneration(t *testing.T, s store.Store) {
	cs := chunkStore(t, s)
	ctx := t.Context()
	st := chunkedState("key", newChunks(1, 1, 2, 3))
	st.Generation = 9999
	applyState(t, s, domain, st, create("guid-a", "alice@example.com", nil))
	check := func(what string) {
		t.Helper()
		gen := snapshot(t, s, domain).Generation
		sum, err := cs.DirStateSummaries(ctx, domain)
		if err != nil {
			t.Fatal(err)
		}
		full := getState(t, s, domain)
		if full == nil || sum == nil || full.Generation != gen || sum.Generation != gen || gen == 0 || gen == 9999 {
			t.Errorf("%s: DirState %+v, DirStateSummaries %+v; Snapshot generation %d", what, full, sum, gen)
		}
	}
	check("after Apply")
	if err := s.AddGroup(ctx, domain, "Sales"); err != nil {
		t.Fatal(err)
	}
	check("after a hand-made change")
}

// testChunksPrewrite: a prewrite's Apply writes and patches chunks as
// Store.Apply does, and one that fails keeps them.
func testChunksPrewrite(t *testing.T, s store.Store) {
	chunkStore(t, s)
	pw, ok := s.(store.Prewriter)
	if !ok {
		t.Skip("the store is not a store.Prewriter (optional)")
	}
	addMailbox(t, s, domain, store.Mailbox{Primary: "hand@example.com", Aliases: []string{"taken@example.com"}})
	prewrite := func(t *testing.T, ds *store.DirState, changes ...store.Change) error {
		t.Helper()
		run := runAt(t, s, domain)
		run.DirState = ds
		p, err := pw.Prewrite(t.Context(), domain, run.Generation)
		if err != nil {
			t.Fatalf("Prewrite: %v", err)
		}
		defer p.Close()
		var ms []*sdk.Mailbox
		for _, c := range changes {
			m := *c.After
			m.Groups = nil
			ms = append(ms, &m)
		}
		// After a Create that fails, Apply writes as Store.Apply would:
		// it fails too.
		p.Create(t.Context(), ms)
		return p.Apply(t.Context(), changes, run)
	}

	chunks := newChunks(1, seqRange(0, 150, 1)...)
	full := chunkedState("full", chunks)
	if err := prewrite(t, full, create("guid-a", "alice@example.com", nil)); err != nil {
		t.Fatalf("a prewrite's Apply: %v", err)
	}
	wantChunked(t, s, "after a prewrite's Apply", domain, headOf(full), chunks)

	patch := chunkedState("patch", append(newChunks(2, 0, 200), store.StateChunk{Seq: 1}))
	patch.Patch = true
	if err := prewrite(t, patch, create("guid-b", "bob@example.com", nil)); err != nil {
		t.Fatalf("a prewrite's Apply: %v", err)
	}
	want := modelOf(chunks)
	want.patch(patch.Chunks, true)
	wantChunked(t, s, "after a prewrite's patch", domain, headOf(patch), want.sorted())

	for _, ds := range []*store.DirState{chunkedState("failed", newChunks(3, 5, 6)), patch, nil} {
		err := prewrite(t, ds, create("guid-c", "carol@example.com", []string{"taken@example.com"}))
		wantErr(t, err, store.ErrExists)
		wantChunked(t, s, "after a prewrite that failed", domain, headOf(patch), want.sorted())
	}
}
