package dirstate

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Part is what a delta patched of a state kept in chunks: the chunks that
// its changes and their reach need, before (Old) and after (New), and the
// reach (diff.Reaches) of the changes, which is the whole domain's: every
// entry that the changes, or what they reach, look up is in the part. The
// rest of the state is as it was, and Write rewrites only the chunks the
// delta changed.
type Part struct {
	Old, New *State
	// Touched indexes Old and New (dirstate.Patch).
	Touched Touched
	// Reach indexes New.
	Reach diff.Reach
	// Count and Keys are the whole state's after the delta (Head.Count,
	// Head.Keys).
	Count int
	Keys  uint64

	seqs    []int64 // the chunks read, ascending
	oldPart []int   // the index in seqs of each entry of Old
	last    int64   // the state's last chunk
	// Chunks counts the chunks read, of All.
	Chunks, All int
}

// ErrWhole is a state that a delta cannot patch in part: it holds an entry
// that the run decides on only with the whole domain, or its changes reach
// more than most, or come with a present phase that says more than the
// changes and deletes do (entries gone without a delete).
var ErrWhole = errors.New("dirstate: the changes need the whole state")

// PatchChunks patches delta d into a state kept in chunks, reading only the
// chunks it needs (load reads chunks by Seq). sums are every chunk's Seq
// and Summary, in ascending Seq; head is the state's head. The reach may
// hold a quarter of the entries, at least least (diff.Reaches' most).
// ErrWhole when the part will not do.
func PatchChunks(sums []store.StateChunk, head Head, d *Delta, least int, load func(seqs []int64) ([]store.StateChunk, error)) (*Part, error) {
	if len(sums) == 0 {
		return nil, ErrWhole
	}
	parsed := make([]Summary, len(sums))
	for i, c := range sums {
		s, err := ParseSummary(c.Summary)
		if err != nil {
			return nil, err
		}
		if s.Whole {
			return nil, ErrWhole
		}
		if i > 0 && c.Seq <= sums[i-1].Seq {
			return nil, errors.New("dirstate: chunks out of order")
		}
		parsed[i] = s
	}
	p := &Part{last: sums[len(sums)-1].Seq, All: len(sums)}
	var q Prints
	for _, k := range d.Changed.Keys {
		q.Add(TagKey, k)
	}
	for _, k := range d.Deleted {
		q.Add(TagKey, k)
	}
	decoded := map[int64]*State{} // the chunks read
	var norm []byte
	printDN := func(tag byte, dn string) {
		norm = diff.AppendNormDN(norm[:0], dn)
		q.add(printBytes(tag, norm))
	}
	for {
		// The chunks that hold what is looked up, and the last one (where
		// new entries go), that are not read yet.
		var seqs []int64
		for i, s := range parsed {
			seq := sums[i].Seq
			if decoded[seq] == nil && (seq == p.last || s.Holds(&q)) {
				seqs = append(seqs, seq)
			}
		}
		if len(seqs) == 0 && p.New != nil {
			return p, nil
		}
		if len(seqs) > 0 {
			chunks, err := load(seqs)
			if err != nil {
				return nil, err
			}
			if len(chunks) != len(seqs) {
				return nil, fmt.Errorf("dirstate: read %d of %d chunks: the state changed", len(chunks), len(seqs))
			}
			s, from, err := DecodeChunks(chunks)
			if err != nil {
				return nil, err
			}
			at := 0 // the first entry of chunk i
			for i := range chunks {
				c := &chunks[i]
				// What was read must be what was summed up.
				j, ok := slices.BinarySearchFunc(sums, c.Seq, func(s store.StateChunk, seq int64) int { return cmp.Compare(s.Seq, seq) })
				if !ok || string(sums[j].Summary) != string(c.Summary) {
					return nil, fmt.Errorf("dirstate: chunk %d is not the one summed up: the state changed", c.Seq)
				}
				end := at
				for end < len(from) && from[end] == i {
					end++
				}
				if end-at != parsed[j].Count {
					return nil, fmt.Errorf("dirstate: chunk %d holds %d entries, its summary %d", c.Seq, end-at, parsed[j].Count)
				}
				decoded[c.Seq] = &State{Keys: s.Keys[at:end:end], Refs: s.Refs[at:end:end], Intents: s.Intents[at:end:end], Encoded: s.Encoded[at:end:end]}
				at = end
			}
		}
		p.join(decoded)
		if d.PresentPhase {
			// Once the chunks of the changed and deleted keys are read, a
			// present phase that names exactly the other keys of the state
			// says nothing more: the delta patches as without it. Else
			// (entries gone without a delete, a key the state lacks) it
			// needs every key.
			if !presentIsTheRest(p.Old, head, d) {
				return nil, ErrWhole
			}
			nd := *d
			nd.PresentPhase, nd.Present = false, nil
			d = &nd
		}
		var err error
		p.New, p.Touched, err = Patch(p.Old, d)
		if err != nil {
			return nil, err
		}
		// Those of Old that New does not hold are gone (deleted, or the
		// second entry of a key held twice); those of New from none came.
		kept, added := 0, 0
		for _, f := range p.Touched.From {
			if f < 0 {
				added++
			} else {
				kept++
			}
		}
		p.Count = head.Count - (p.Old.Len() - kept) + added
		reach, ok := diff.Reaches(p.Old.Refs, p.Old.Intents, p.Touched.Old, p.New.Refs, p.New.Intents, p.Touched.New, max(p.Count/4, least))
		if !ok {
			return nil, ErrWhole
		}
		p.Reach = reach
		// What Patch changed in the entries it did not replace follows DNs
		// renamed or gone (member and memberOf values) and the groups that
		// changed (memberOf values): those entries are read too.
		for _, i := range p.Touched.Old {
			printDN(TagMember, p.Old.Refs[i].DN)
			printDN(TagMemberOf, p.Old.Refs[i].DN)
		}
		for i := range d.Changed.Intents {
			printDN(TagMemberOf, d.Changed.Refs[i].DN)
		}
		// What the reach looked up.
		for _, v := range reach.DirIDs {
			q.Add(TagKey, v)
		}
		for _, v := range reach.Addresses {
			q.Add(TagAddress, v)
		}
		for _, v := range reach.DNs {
			q.Add(TagDN, v)
		}
		for _, v := range reach.GroupDNs {
			q.Add(TagMemberOf, v)
		}
		for _, v := range reach.MemberDNs {
			q.Add(TagMember, v)
		}
	}
}

// presentIsTheRest reports whether the keys of a delta's present phase,
// with those of old (which holds every entry of the state that the delta
// changes or deletes) that the delta changes or deletes, are the keys of
// the state: as many, of the same KeysHash. (A key named twice counts
// twice: the state then seems to have more keys than it has, and the run
// patches the whole.)
func presentIsTheRest(old *State, head Head, d *Delta) bool {
	// touched: the changed and deleted keys, true for those the state
	// holds (all of them are in old).
	touched := make(map[string]bool, d.Changed.Len()+len(d.Deleted))
	for _, k := range d.Changed.Keys {
		touched[k] = false
	}
	for _, k := range d.Deleted {
		touched[k] = false
	}
	for _, k := range old.Keys {
		if _, ok := touched[k]; ok {
			touched[k] = true
		}
	}
	// The present keys but those of new entries, and the held ones the
	// present phase does not name.
	named := make(map[string]bool, len(touched))
	count, sum := 0, uint64(0)
	for _, k := range d.Present {
		held, ok := touched[k]
		if ok {
			if !held || named[k] {
				continue
			}
			named[k] = true
		}
		count++
		sum += KeyHash(k)
	}
	for k, held := range touched {
		if held && !named[k] {
			count++
			sum += KeyHash(k)
		}
	}
	return count == head.Count && sum == head.Keys
}

// join makes Old the entries of the chunks read, in order.
func (p *Part) join(decoded map[int64]*State) {
	p.seqs = p.seqs[:0]
	for seq := range decoded {
		p.seqs = append(p.seqs, seq)
	}
	slices.Sort(p.seqs)
	n := 0
	for _, s := range decoded {
		n += s.Len()
	}
	p.Old = &State{Keys: make([]string, 0, n), Refs: make([]diff.Ref, 0, n), Intents: make([]sdk.Intent, 0, n), Encoded: make([]string, 0, n)}
	p.oldPart = p.oldPart[:0]
	for i, seq := range p.seqs {
		s := decoded[seq]
		for j := range s.Keys {
			p.Old.appendEncoded(s.Keys[j], s.Refs[j], s.Intents[j], s.Encoded[j])
			p.oldPart = append(p.oldPart, i)
		}
	}
	p.Chunks = len(p.seqs)
}

// Write returns the chunks the delta changed, as they are after it
// (store.DirState.Patch): each chunk read that an entry left, came to or
// changed in, rewritten from New (an empty Data when none is left), and
// new chunks after the last for entries past its size. Count and Keys are
// the whole state's.
func (p *Part) Write(head Head) ([]store.StateChunk, error) {
	n := len(p.seqs)
	dirty := make([]bool, n)
	for _, i := range p.Touched.Old {
		dirty[p.oldPart[i]] = true
	}
	// Each entry of New goes back to the chunk it came from; a new one to
	// the last chunk, which Old ends with.
	part := make([]int, p.New.Len())
	for j, f := range p.Touched.From {
		if f < 0 {
			part[j] = n - 1
			dirty[n-1] = true
		} else {
			part[j] = p.oldPart[f]
		}
	}
	for _, j := range p.Touched.New {
		dirty[part[j]] = true
	}
	if n == 0 || p.seqs[n-1] != p.last {
		return nil, errors.New("dirstate: the part does not hold the last chunk")
	}
	keys := head.Keys
	kept := make([]bool, p.Old.Len())
	for j, f := range p.Touched.From {
		if f >= 0 {
			kept[f] = true
		} else {
			keys += KeyHash(p.New.Keys[j])
		}
	}
	for i, k := range kept {
		if !k {
			keys -= KeyHash(p.Old.Keys[i])
		}
	}
	p.Keys = keys

	var out []store.StateChunk
	from := 0
	for c := 0; c < n; c++ {
		to := from
		for to < len(part) && part[to] == c {
			to++
		}
		if dirty[c] {
			switch {
			case from == to:
				out = append(out, store.StateChunk{Seq: p.seqs[c]}) // deleted
			case c == n-1:
				// The last chunk takes the new entries, in as many chunks
				// as they need.
				cs, err := EncodeChunks(p.New, from, to, p.seqs[c], ChunkEntries, ChunkBytes)
				if err != nil {
					return nil, err
				}
				out = append(out, cs...)
			default:
				// One chunk, whatever its size: its Seq has no room for
				// another after it.
				cs, err := EncodeChunks(p.New, from, to, p.seqs[c], to-from, 0)
				if err != nil {
					return nil, err
				}
				out = append(out, cs...)
			}
		}
		from = to
	}
	if from != len(part) {
		return nil, errors.New("dirstate: the part's entries are out of order")
	}
	return out, nil
}
