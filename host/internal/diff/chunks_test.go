package diff_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/host/internal/dirstate"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk/abi"
)

// TestPatchChunksAsTheWhole keeps random small domains in chunks of a few
// entries, patches random deltas into them reading only the chunks the
// changes and their reach need (dirstate.PatchChunks), and checks that the
// reach is the one found on the whole state, and that the chunks it
// rewrites (Part.Write), with the others as they were, are the whole
// state patched.
var chunkSeeds = 3000

func TestPatchChunksAsTheWhole(t *testing.T) {
	compared, whole, partial := 0, 0, 0
	for seed := range uint64(chunkSeeds) {
		r := rand.New(rand.NewPCG(seed, 11))
		before := randDomain(r)
		if r.IntN(10) == 0 { // bad data: a key held twice
			i := r.IntN(len(before.keys))
			ref := before.refs[i]
			ref.DN = "cn=twice,o=x"
			before.keys, before.refs, before.intents = append(before.keys, before.keys[i]), append(before.refs, ref), append(before.intents, before.intents[i])
		}
		st := &dirstate.State{Keys: before.keys, Refs: before.refs, Intents: before.intents}
		per := 1 + r.IntN(5)
		chunks, err := dirstate.EncodeChunks(st, 0, st.Len(), 1, per, 0)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 3 {
			after := before.clone()
			mutate(r, after)
			if r.IntN(40) == 0 { // a nested group: the whole domain
				for i := range after.intents {
					if g := after.intents[i].Group; g != nil {
						ng := *g
						ng.Nested = true
						after.intents[i].Group = &ng
						break
					}
				}
			}
			d := deltaOf(before, after)
			implicit := false // entries gone that only a present phase tells
			if r.IntN(3) == 0 {
				// A present phase: every unchanged key, and now and then a
				// changed one; the deletes told, or left to it.
				changed := map[string]bool{}
				for _, k := range d.Changed.Keys {
					changed[k] = true
				}
				d.PresentPhase = true
				for _, k := range after.keys {
					if !changed[k] || r.IntN(2) == 0 {
						d.Present = append(d.Present, k)
					}
				}
				if len(d.Deleted) > 0 && r.IntN(2) == 0 {
					d.Deleted, implicit = nil, true
				}
			}
			least := 1000
			if r.IntN(4) == 0 {
				least = 1 + r.IntN(4) // a small bound: the reach is refused now and then
			}
			wNew, wT, err := dirstate.Patch(st, d)
			if err != nil {
				t.Fatal(err)
			}
			wReach, wok := diff.Reaches(st.Refs, st.Intents, wT.Old, wNew.Refs, wNew.Intents, wT.New, max(wNew.Len()/4, least))

			head := dirstate.Head{Count: st.Len(), Keys: dirstate.KeysHash(st.Keys)}
			sums := make([]store.StateChunk, len(chunks))
			for i, c := range chunks {
				sums[i] = store.StateChunk{Seq: c.Seq, Summary: c.Summary}
			}
			read := 0
			p, err := dirstate.PatchChunks(sums, head, d, least, func(seqs []int64) ([]store.StateChunk, error) {
				var out []store.StateChunk
				for _, c := range chunks {
					if slices.Contains(seqs, c.Seq) {
						out = append(out, c)
					}
				}
				read += len(seqs)
				return out, nil
			})
			where := fmt.Sprintf("seed %d round %d", seed, round)
			if !wok {
				if !errors.Is(err, dirstate.ErrWhole) {
					t.Fatalf("%s: the whole state's reach is refused, PatchChunks: %v", where, err)
				}
				whole++
				break
			}
			if err != nil {
				// A chunk that holds a nested group before the change, say.
				if errors.Is(err, dirstate.ErrWhole) && (nested(st) || implicit || d.PresentPhase && twice(st)) {
					whole++
					break
				}
				t.Fatalf("%s: PatchChunks: %v", where, err)
			}
			// The same reach, entry for entry.
			if got, want := pick(p.New, p.Reach.Entries), pick(wNew, wReach.Entries); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: the part's reach\n%v\nthe whole state's\n%v", where, got, want)
			}
			if !reflect.DeepEqual(p.Reach.DirIDs, wReach.DirIDs) || !reflect.DeepEqual(p.Reach.Addresses, wReach.Addresses) {
				t.Fatalf("%s: the part's reach names %v %v, the whole's %v %v", where, p.Reach.DirIDs, p.Reach.Addresses, wReach.DirIDs, wReach.Addresses)
			}
			// The chunks rewritten, the others kept: the whole state patched.
			w, err := p.Write(head)
			if err != nil {
				t.Fatal(err)
			}
			chunks = patchChunks(chunks, w)
			got, _, err := dirstate.DecodeChunks(chunks)
			if err != nil {
				t.Fatal(err)
			}
			if !sameState(got, wNew) {
				t.Fatalf("%s: the chunks after the patch\n%v\nthe whole state patched\n%v", where, got.Keys, wNew.Keys)
			}
			if p.Count != wNew.Len() || p.Keys != dirstate.KeysHash(wNew.Keys) {
				t.Fatalf("%s: count %d keys %x, want %d %x", where, p.Count, p.Keys, wNew.Len(), dirstate.KeysHash(wNew.Keys))
			}
			if read < len(chunks) {
				partial++
			}
			compared++
			st = got
			before = &domain{keys: got.Keys, refs: got.Refs, intents: got.Intents}
		}
	}
	if compared < 3000 || partial < 1000 || whole == 0 {
		t.Errorf("compared %d patches, %d reading part of the chunks, %d refused: too few to say much", compared, partial, whole)
	}
	t.Logf("compared %d patches (%d read part of the chunks), %d refused", compared, partial, whole)
}

// deltaOf is what a directory would send for the change from before to
// after: the entries new or changed, and the keys gone.
func deltaOf(before, after *domain) *dirstate.Delta {
	d := &dirstate.Delta{}
	was := map[string]int{}
	for i, k := range before.keys {
		was[k] = i
	}
	now := map[string]bool{}
	for j, k := range after.keys {
		now[k] = true
		if i, ok := was[k]; ok && reflect.DeepEqual(before.refs[i], after.refs[j]) && reflect.DeepEqual(before.intents[i], after.intents[j]) {
			continue
		}
		d.Changed.Append(k, after.refs[j], after.intents[j])
	}
	for _, k := range before.keys {
		if !now[k] {
			d.Deleted = append(d.Deleted, k)
		}
	}
	return d
}

// twice reports whether a key is held twice: a present phase then does
// not tell the state's keys by count and hash.
func twice(s *dirstate.State) bool {
	seen := map[string]bool{}
	for _, k := range s.Keys {
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

func nested(s *dirstate.State) bool {
	for _, it := range s.Intents {
		if it.Group != nil && it.Group.Nested {
			return true
		}
	}
	return false
}

// entry is an entry as the tests compare it: its intent encoded.
type entry struct {
	Key    string
	Ref    diff.Ref
	Intent string
}

func pick(s *dirstate.State, at []int) []entry {
	var out []entry
	for _, i := range at {
		out = append(out, entryOf(s, i))
	}
	return out
}

func entryOf(s *dirstate.State, i int) entry {
	b, err := abi.AppendIntent(nil, &s.Intents[i])
	if err != nil {
		panic(err)
	}
	return entry{s.Keys[i], s.Refs[i], string(b)}
}

func sameState(a, b *dirstate.State) bool {
	if a.Len() != b.Len() {
		return false
	}
	for i := range a.Keys {
		if entryOf(a, i) != entryOf(b, i) {
			return false
		}
	}
	return true
}

// patchChunks is what a store.ChunkStore does with a patch: each chunk
// replaces the one of its Seq, or is added; one with no Data deletes it.
func patchChunks(chunks, patch []store.StateChunk) []store.StateChunk {
	by := map[int64]store.StateChunk{}
	for _, c := range chunks {
		by[c.Seq] = c
	}
	for _, c := range patch {
		if len(c.Data) == 0 {
			delete(by, c.Seq)
		} else {
			by[c.Seq] = c
		}
	}
	out := make([]store.StateChunk, 0, len(by))
	for _, c := range by {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b store.StateChunk) int { return int(a.Seq - b.Seq) })
	return out
}
