// Package dirstate keeps what a run read from the directory — for each
// entry its sync key, stable id, DN and what the policy made of it — in
// the form the store keeps (store.DirState.Entries), so that the next run
// can read only what changed since (a delta), patch the state with it and
// still decide on the whole domain, exactly as a full read would; and a
// summary of it (store.DirState.Head) that tells, without the entries,
// whether a delta changed anything.
//
// The encodings:
//
//	entries:
//	  magic "dirsync-dirstate-2\n"
//	  chunks, each: raw length uvarint, compressed length uvarint, an S2
//	  block (github.com/klauspost/compress/s2) of up to 1 MiB of the raw
//	  encoding, which, their blocks decompressed and joined, is:
//	    count    uvarint
//	    entries  count × (key, id, dn: uvarint length + bytes each;
//	                      intent: uvarint length + encoded pb.Intent)
//
//	  (version 1, magic "dirsync-dirstate-1\n", the same uncompressed, still
//	  decodes.) S2 shrinks a state 6-fold (100,000 users: 34 MB to 5.6 MB,
//	  DN suffixes and group DNs repeat) for ~0.1 s of a core, less than the
//	  store takes to write the difference: BenchmarkEncode, BenchmarkDecode.
//	head:
//	  version    1 byte, 1
//	  settled    1 byte, 0 or 1 (Head.Settled; SetSettled changes it in place)
//	  generation uvarint (Head.Generation)
//	  count      uvarint (Head.Count)
//	  keys       8 bytes, big-endian (Head.Keys)
//
// A state that does not decode is no state: the run reads in full.
//
// A store.ChunkStore keeps the entries in chunks instead, each with a
// summary of what its entries are looked up by (chunks.go), so that a
// delta reads and rewrites only the chunks its changes and their reach
// need (PatchChunks, part.go).
package dirstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/klauspost/compress/s2"

	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
)

const (
	magic   = "dirsync-dirstate-2\n"
	magicV1 = "dirsync-dirstate-1\n"
)

// State is the entries of a domain as the directory last gave them, three
// parallel slices: Keys[i] is the key the directory's change messages
// name entry i by (an OpenLDAP entryUUID, an AD objectGUID), Refs[i] its
// id and DN, Intents[i] the policy's intent for it.
type State struct {
	Keys    []string
	Refs    []diff.Ref
	Intents []sdk.Intent
	// Encoded, when not nil, holds each entry's intent as Encode writes
	// it, or "" where it is to be encoded again: Decode fills it, Patch
	// keeps it for the entries it leaves as they were, so that a delta's
	// state is written without encoding a million unchanged intents.
	// Whoever changes an intent of a state with Encoded clears its
	// encoding.
	Encoded []string
}

// Head summarizes a kept state.
type Head struct {
	// Generation is the store's write generation of the domain once the
	// run that keeps the state applied: while the domain's generation is
	// still this, nothing but the directory can have changed what a run
	// decides.
	Generation int64
	// Settled says that the run that kept the state applied all it
	// proposed as proposed: no conflict, no veto and no replacement waits
	// on something outside the directory and the domain (another domain's
	// mailbox, the clock), so the store is what a decision on the whole
	// domain wants.
	Settled bool
	// Count is the number of entries, Keys the hash of their keys as a
	// set (KeysHash).
	Count int
	Keys  uint64
}

const headVersion = 1

// EncodeHead returns the stored form of h.
func EncodeHead(h Head) []byte {
	b := []byte{headVersion, 0}
	if h.Settled {
		b[1] = 1
	}
	b = binary.AppendUvarint(b, uint64(h.Generation))
	b = binary.AppendUvarint(b, uint64(h.Count))
	return binary.BigEndian.AppendUint64(b, h.Keys)
}

// DecodeHead reads a stored head.
func DecodeHead(b []byte) (Head, error) {
	var h Head
	if len(b) < 2 || b[0] != headVersion || b[1] > 1 {
		return h, errors.New("dirstate: not a state head of this version")
	}
	h.Settled = b[1] == 1
	gen, n := binary.Uvarint(b[2:])
	if n <= 0 {
		return h, errors.New("dirstate: head: bad generation")
	}
	count, m := binary.Uvarint(b[2+n:])
	if m <= 0 || len(b) != 2+n+m+8 {
		return h, errors.New("dirstate: head: bad count or length")
	}
	h.Generation, h.Count, h.Keys = int64(gen), int(count), binary.BigEndian.Uint64(b[2+n+m:])
	return h, nil
}

// SetSettled sets Head.Settled in an encoded head, in place: a run knows
// it only once it decided, after it encoded the state.
func SetSettled(head []byte, settled bool) {
	if len(head) > 1 {
		head[1] = 0
		if settled {
			head[1] = 1
		}
	}
}

// KeysHash hashes keys as a set: the same keys in any order give the same
// hash. It is stored, so it is fixed: FNV-1a of each key, mixed
// (SplitMix64's finalizer), summed.
func KeysHash(keys []string) uint64 {
	var sum uint64
	for _, k := range keys {
		sum += KeyHash(k)
	}
	return sum
}

// KeyHash is one key's part of KeysHash: a state that loses key k and gains
// key n has the hash KeysHash - KeyHash(k) + KeyHash(n).
func KeyHash(k string) uint64 {
	return mix(fnv(fnvOffset, k))
}

// Len is the number of entries.
func (s *State) Len() int { return len(s.Keys) }

// check says whether s's parallel slices are of one length.
func (s *State) check() error {
	if len(s.Refs) != len(s.Keys) || len(s.Intents) != len(s.Keys) || s.Encoded != nil && len(s.Encoded) != len(s.Keys) {
		return errors.New("dirstate: keys, refs, intents and encodings differ in length")
	}
	return nil
}

// Append adds an entry (to be encoded, when s has Encoded).
func (s *State) Append(key string, ref diff.Ref, in sdk.Intent) {
	s.appendEncoded(key, ref, in, "")
}

func (s *State) appendEncoded(key string, ref diff.Ref, in sdk.Intent, enc string) {
	s.Keys = append(s.Keys, key)
	s.Refs = append(s.Refs, ref)
	s.Intents = append(s.Intents, in)
	if s.Encoded != nil {
		s.Encoded = append(s.Encoded, enc)
	}
}

// chunk is how much of the raw encoding is compressed at a time: Encode
// never holds the whole of it (34 MB for 100,000 users), only the
// compressed result and one chunk.
const chunk = 1 << 20

// Encode returns the stored form of s.
func Encode(s *State) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	// The compressed chunks are kept apart and joined once at the end:
	// appended to one growing slice they were copied again and again as
	// it grew (a quarter each time past a few MB), 0.9 s of a core for a
	// million entries' 56 MB.
	var parts [][]byte
	size := len(magic)
	raw := make([]byte, 0, chunk+64<<10) // grows past it for an entry larger than a chunk
	blk := make([]byte, s2.MaxEncodedLen(chunk))
	// flush compresses raw's whole chunks, and with all the rest too, and
	// keeps what it did not compress: an entry may span chunks (a group of
	// a million members is tens of megabytes), a chunk is never more than
	// chunk bytes.
	flush := func(all bool) {
		off := 0
		for len(raw)-off >= chunk || all && off < len(raw) {
			n := min(chunk, len(raw)-off)
			c := s2.Encode(blk, raw[off:off+n])
			part := binary.AppendUvarint(make([]byte, 0, 2*binary.MaxVarintLen64+len(c)), uint64(n))
			part = binary.AppendUvarint(part, uint64(len(c)))
			part = append(part, c...)
			parts, size = append(parts, part), size+len(part)
			off += n
		}
		raw = raw[:copy(raw, raw[off:])]
	}
	raw = binary.AppendUvarint(raw, uint64(len(s.Keys)))
	var buf []byte
	for i := range s.Keys {
		raw = appendString(raw, s.Keys[i])
		raw = appendString(raw, s.Refs[i].ID)
		raw = appendString(raw, s.Refs[i].DN)
		if s.Encoded != nil && s.Encoded[i] != "" {
			raw = appendString(raw, s.Encoded[i])
		} else {
			var err error
			if buf, err = abi.AppendIntent(buf[:0], &s.Intents[i]); err != nil {
				return nil, fmt.Errorf("dirstate: entry %q: %w", s.Refs[i].DN, err)
			}
			raw = binary.AppendUvarint(raw, uint64(len(buf)))
			raw = append(raw, buf...)
		}
		if len(raw) >= chunk {
			flush(false)
		}
	}
	flush(true)
	out := append(make([]byte, 0, size), magic...)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out, nil
}

// decompress returns the raw encoding of chunks (the stored form after
// its magic) in one allocation of its exact size.
func decompress(chunks []byte) ([]byte, error) {
	type part struct{ raw, off, end int }
	var parts []part
	total := 0
	for i := 0; i < len(chunks); {
		rawLen, n := binary.Uvarint(chunks[i:])
		if n <= 0 || rawLen > chunk {
			return nil, errors.New("a chunk's length is broken")
		}
		i += n
		compLen, n := binary.Uvarint(chunks[i:])
		if n <= 0 || compLen > uint64(len(chunks)-i-n) {
			return nil, errors.New("truncated chunk")
		}
		i += n
		parts = append(parts, part{int(rawLen), i, i + int(compLen)})
		total += int(rawLen)
		i += int(compLen)
	}
	raw := make([]byte, total)
	at := make([]int, len(parts)) // where each part goes in raw
	off := 0
	for i, p := range parts {
		at[i] = off
		off += p.raw
	}
	err := each(len(parts), func(i int) error {
		p := parts[i]
		c := chunks[p.off:p.end]
		if n, err := s2.DecodedLen(c); err != nil || n != p.raw {
			return errors.New("a chunk does not decode to its length")
		}
		_, err := s2.Decode(raw[at[i]:at[i]+p.raw], c)
		return err
	})
	return raw, err
}

// each calls fn for 0 ≤ i < n, on as many goroutines as there are cores
// (at most 4), and returns the first error (of the lowest i).
func each(n int, fn func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), 4, n)
	if workers <= 1 {
		for i := range n {
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Contiguous ranges: a worker's entries are near each other.
			for i := w * n / workers; i < (w+1)*n/workers; i++ {
				if err := fn(i); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decode reads a stored state. The strings of the result share one copy
// of b (decompressed).
func Decode(b []byte) (*State, error) {
	var data string // every string below is a part of it
	switch {
	case len(b) >= len(magic) && string(b[:len(magic)]) == magic:
		raw, err := decompress(b[len(magic):])
		if err != nil {
			return nil, fmt.Errorf("dirstate: %w", err)
		}
		data = unsafe.String(unsafe.SliceData(raw), len(raw)) // raw is ours alone
	case len(b) >= len(magicV1) && string(b[:len(magicV1)]) == magicV1:
		data = string(b[len(magicV1):]) // one copy: b is the caller's
	default:
		return nil, errors.New("dirstate: not a directory state of this version")
	}
	d := decoder{s: data}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(data)) { // each entry takes bytes
		d.err = errors.New("count past the end")
	}
	s := &State{}
	if d.err == nil {
		s.Keys, s.Refs, s.Encoded = make([]string, 0, n), make([]diff.Ref, 0, n), make([]string, 0, n)
	}
	for i := uint64(0); d.err == nil && i < n; i++ {
		key, id, dn, raw := d.str(), d.str(), d.str(), d.str()
		if d.err != nil {
			break
		}
		s.Keys, s.Refs, s.Encoded = append(s.Keys, key), append(s.Refs, diff.Ref{ID: id, DN: dn}), append(s.Encoded, raw)
	}
	if d.err == nil && d.s != "" {
		d.err = errors.New("bytes after the last entry")
	}
	if d.err != nil {
		return nil, fmt.Errorf("dirstate: %w", d.err)
	}
	if err := s.decodeIntents(); err != nil {
		return nil, err
	}
	return s, nil
}

// decodeIntents decodes the intents of Encoded, a range of entries a core.
func (s *State) decodeIntents() error {
	s.Intents = make([]sdk.Intent, len(s.Keys))
	const per = 4096
	return each((len(s.Keys)+per-1)/per, func(c int) error {
		for i := c * per; i < min((c+1)*per, len(s.Keys)); i++ {
			// DecodeIntent only reads its bytes, and its strings alias
			// them: they are data's, which nothing changes.
			raw := s.Encoded[i]
			in, err := abi.DecodeIntent(unsafe.Slice(unsafe.StringData(raw), len(raw)))
			if err != nil {
				return fmt.Errorf("dirstate: entry %d: %w", i, err)
			}
			s.Intents[i] = in
		}
		return nil
	})
}

// decoder reads uvarint-prefixed parts off s.
type decoder struct {
	s   string
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var v uint64
	for i := 0; i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			d.s = d.s[i+1:]
			return v
		}
	}
	d.err = errors.New("truncated length")
	return 0
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)) {
		d.err = errors.New("truncated entry")
		return ""
	}
	v := d.s[:n]
	d.s = d.s[n:]
	return v
}

// Delta is what changed in the directory since a state was read.
type Delta struct {
	// Changed are the entries added or changed (or come into scope), each
	// with its key, ref and intent.
	Changed State
	// Deleted are the keys of entries deleted or gone out of scope.
	Deleted []string
	// PresentPhase says that Present names every entry that is unchanged
	// (and may name changed ones too): an entry of the state that is
	// neither in Present nor changed is gone.
	PresentPhase bool
	Present      []string
}

// ErrStale is a delta that does not fit the state: the directory names an
// entry as unchanged that the state does not hold. The state is not what
// the directory last gave; the run must read in full.
var ErrStale = errors.New("the directory's changes do not fit the kept state (an unchanged entry it does not hold)")

// Touched says which entries a Patch touched.
type Touched struct {
	// Old indexes the entries of the state before that were changed or
	// removed, or whose member or memberOf values followed others (a
	// rename, a removal, a group's new members), in order; New the
	// entries of the state after that were changed, added, or followed
	// others, in order.
	Old, New []int
	// Gone counts the entries removed.
	Gone int
	// From holds, for each entry of the state after, the index of the
	// entry of the state before it was (changed or not), or -1 for one
	// that came.
	From []int
}

// Patch returns the state with the delta applied: changed entries
// replaced in place (or appended when new), deleted and — with a present
// phase — unnamed ones removed; and which entries it touched. A key in
// both Changed and Deleted counts as changed. s is not modified.
func Patch(s *State, d *Delta) (*State, Touched, error) {
	var t Touched
	drop := make(map[string]bool, len(d.Deleted))
	for _, k := range d.Deleted {
		drop[k] = true
	}
	changed := make(map[string]int, d.Changed.Len())
	for i, k := range d.Changed.Keys {
		changed[k] = i // the last change of a key wins
	}
	var present map[string]bool
	if d.PresentPhase {
		present = make(map[string]bool, len(d.Present))
		for _, k := range d.Present {
			present[k] = true
		}
	}
	out := &State{}
	out.Keys = make([]string, 0, s.Len()+d.Changed.Len())
	out.Refs = make([]diff.Ref, 0, cap(out.Keys))
	out.Intents = make([]sdk.Intent, 0, cap(out.Keys))
	if s.Encoded != nil {
		out.Encoded = make([]string, 0, cap(out.Keys))
	}
	var refs references
	held := 0 // entries of s named present
	done := make(map[string]bool, len(changed))
	from := make([]int, 0, cap(out.Keys)) // the index in s of each entry of out (-1: none)
	for i, k := range s.Keys {
		if present[k] {
			held++
		}
		if j, ok := changed[k]; ok {
			t.Old = append(t.Old, i)
			if !done[k] {
				t.New = append(t.New, out.Len())
				from = append(from, i)
				out.Append(k, d.Changed.Refs[j], d.Changed.Intents[j])
				done[k] = true
				refs.rename(s.Refs[i].DN, d.Changed.Refs[j].DN)
			}
			continue
		}
		if drop[k] || present != nil && !present[k] {
			t.Old = append(t.Old, i)
			t.Gone++
			refs.remove(s.Refs[i].DN)
			continue
		}
		from = append(from, i)
		enc := ""
		if s.Encoded != nil {
			enc = s.Encoded[i]
		}
		out.appendEncoded(k, s.Refs[i], s.Intents[i], enc)
	}
	if held < len(present) {
		// Every key named present is held or changed.
		in := make(map[string]bool, len(s.Keys))
		for _, k := range s.Keys {
			in[k] = true
		}
		for _, k := range d.Present {
			if _, ok := changed[k]; !ok && !in[k] {
				return nil, t, fmt.Errorf("%w: %s", ErrStale, k)
			}
		}
	}
	for i, k := range d.Changed.Keys {
		if done[k] || changed[k] != i {
			continue
		}
		t.New = append(t.New, out.Len())
		from = append(from, -1)
		out.Append(k, d.Changed.Refs[i], d.Changed.Intents[i])
		done[k] = true
	}
	for i := range d.Changed.Intents {
		if g := d.Changed.Intents[i].Group; g != nil && d.Changed.Intents[i].Kind == sdk.IntentGroup && changed[d.Changed.Keys[i]] == i {
			refs.regroup(d.Changed.Refs[i].DN, g.Members)
		}
	}
	if fixed := refs.fix(out, changed); len(fixed) > 0 {
		for _, i := range fixed {
			t.Old = append(t.Old, from[i])
			if out.Encoded != nil {
				out.Encoded[i] = "" // its intent changed
			}
		}
		t.New = append(t.New, fixed...)
		slices.Sort(t.Old)
		slices.Sort(t.New)
	}
	t.From = from
	return out, t, nil
}

// references are what a delta changed that other entries' member and
// memberOf values name: DNs renamed or moved, DNs gone, and the members of
// the groups that changed.
type references struct {
	renamed map[string]string          // old DN (normalized) → new DN
	gone    map[string]bool            // DNs (normalized) of entries gone
	groups  map[string]map[string]bool // changed groups' DNs → their members' DNs
}

func (r *references) rename(old, now string) {
	if o := diff.NormDN(old); o != diff.NormDN(now) {
		if r.renamed == nil {
			r.renamed = map[string]string{}
		}
		r.renamed[o] = now
	}
}

func (r *references) remove(dn string) {
	if r.gone == nil {
		r.gone = map[string]bool{}
	}
	r.gone[diff.NormDN(dn)] = true
}

func (r *references) regroup(dn string, members []string) {
	m := make(map[string]bool, len(members))
	for _, v := range members {
		m[diff.NormDN(v)] = true
	}
	if r.groups == nil {
		r.groups = map[string]map[string]bool{}
	}
	r.groups[diff.NormDN(dn)] = m
}

// fix does to the unchanged entries of out what the directory did to them
// when others changed, and which a delta does not send (slapd does not
// replicate the writes of its memberof and refint overlays; AD does not
// report a back-link's change): member and memberOf values that name an
// entry renamed or moved follow it, those that name an entry gone are
// dropped, and a memberOf value naming a group that changed is dropped
// when the group no longer lists the entry. So a delta run joins groups
// and members as a full read would. changed indexes the keys of the
// entries the delta changed, which are as the directory sent them. A
// delta that renamed, removed and regrouped nothing costs nothing here.
// It returns the indexes of the entries it changed.
func (r *references) fix(out *State, changed map[string]int) (fixed []int) {
	if len(r.renamed) == 0 && len(r.gone) == 0 && len(r.groups) == 0 {
		return nil
	}
	renamed, gone, groups := r.renamed, r.gone, r.groups
	// follow rewrites DN values: renamed ones follow, gone ones go, and
	// keep may drop others. It returns nil when nothing changed.
	follow := func(vals []string, keep func(dn string) bool) []string {
		var out []string
		for i, v := range vals {
			n := diff.NormDN(v)
			nv, moved := renamed[n]
			drop := gone[n] && !moved
			if moved {
				n = diff.NormDN(nv)
			}
			if !drop && keep != nil && !keep(n) {
				drop = true
			}
			if out == nil && (moved || drop) {
				out = append(make([]string, 0, len(vals)), vals[:i]...)
			}
			switch {
			case out == nil:
			case drop:
			case moved:
				out = append(out, nv)
			default:
				out = append(out, v)
			}
		}
		return out
	}
	for i, k := range out.Keys {
		if _, fresh := changed[k]; fresh {
			continue
		}
		it := &out.Intents[i]
		switch {
		case it.Group != nil:
			if m := follow(it.Group.Members, nil); m != nil {
				g := *it.Group
				g.Members = m
				it.Group = &g
				fixed = append(fixed, i)
			}
		case it.Mailbox != nil:
			self := diff.NormDN(out.Refs[i].DN)
			if m := follow(it.Mailbox.MemberOf, func(g string) bool {
				members, ok := groups[g]
				return !ok || members[self]
			}); m != nil {
				mb := *it.Mailbox
				mb.MemberOf = m
				it.Mailbox = &mb
				fixed = append(fixed, i)
			}
		}
	}
	return fixed
}
