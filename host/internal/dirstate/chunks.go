package dirstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/klauspost/compress/s2"

	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
)

// A state kept in chunks (store.ChunkStore) is its entries in runs of at
// most ChunkEntries (fewer when large: a chunk's raw encoding stops
// growing past ChunkBytes), in order, each a store.StateChunk:
//
//	data:    an S2 block of the raw encoding of its entries, as Encode
//	         writes them after its count (count uvarint, then the entries)
//	summary: version 1 byte (1)
//	         flags   1 byte (flagWhole)
//	         count   uvarint: its entries
//	         prints  the sorted, distinct fingerprints (Print) of what its
//	                 entries are looked up by, 4 bytes each, little-endian
//
// An entry is looked up by its key and id (tag TagKey), its normalized DN
// (TagDN), each address its mailbox intent claims (TagAddress), each
// normalized memberOf value (TagMemberOf) and each normalized member value
// of its group intent (TagMember): a delta reads every summary, and only
// the chunks whose prints hold one of what its changes and their reach
// look up. A print is 32 bits of a 64-bit hash: a chunk may match what it
// does not hold (then it is read for nothing), never the reverse.

// ChunkEntries is the most entries a chunk holds: small, since a delta
// reads and rewrites every chunk that one of its changes is in.
const ChunkEntries = 64

// ChunkBytes is the raw size past which a chunk takes no more entries.
const ChunkBytes = 32 << 10

const summaryVersion = 1

// flagWhole marks a chunk with an entry that a run decides on only with the
// whole domain (diff.Reaches refuses it): a nested group, or an intent of a
// kind other than skip, mailbox and group.
const flagWhole = 1

// The tags of what an entry is looked up by (Print).
const (
	TagKey      = 'k'
	TagDN       = 'd'
	TagAddress  = 'a'
	TagMemberOf = 'o'
	TagMember   = 'm'
)

// Print is the fingerprint of value looked up as tag.
func Print(tag byte, value string) uint32 {
	h := (fnvOffset ^ uint64(tag)) * fnvPrime
	return uint32(mix(fnv(h, value)) >> 32)
}

func printBytes(tag byte, value []byte) uint32 {
	return Print(tag, unsafe.String(unsafe.SliceData(value), len(value)))
}

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv continues FNV-1a hash h over s.
func fnv(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix is SplitMix64's finalizer.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Summary is a chunk's summary, read.
type Summary struct {
	// Whole says the chunk holds an entry that only a decision on the
	// whole domain takes (flagWhole).
	Whole bool
	Count int
	// prints are the fingerprints, 4 bytes each, sorted.
	prints []byte
}

// ParseSummary reads a chunk's summary; the result shares b.
func ParseSummary(b []byte) (Summary, error) {
	var s Summary
	if len(b) < 2 || b[0] != summaryVersion || b[1]&^flagWhole != 0 {
		return s, errors.New("dirstate: not a chunk summary of this version")
	}
	s.Whole = b[1]&flagWhole != 0
	n, k := binary.Uvarint(b[2:])
	if k <= 0 || n > uint64(len(b)) {
		return s, errors.New("dirstate: a chunk summary's count is broken")
	}
	s.Count, s.prints = int(n), b[2+k:]
	if len(s.prints)%4 != 0 {
		return s, errors.New("dirstate: a chunk summary's prints are broken")
	}
	return s, nil
}

// Holds reports whether the chunk may hold something looked up by a print
// in q.
func (s *Summary) Holds(q *Prints) bool {
	for i := 0; i+4 <= len(s.prints); i += 4 {
		if q.has(binary.LittleEndian.Uint32(s.prints[i:])) {
			return true
		}
	}
	return false
}

// Prints is a set of fingerprints to look up.
type Prints struct {
	bits [1 << 16 / 64]uint64 // by the low 16 bits: most misses stop here
	set  map[uint32]struct{}
}

// Add adds the print of value as tag.
func (q *Prints) Add(tag byte, value string) {
	q.add(Print(tag, value))
}

func (q *Prints) add(p uint32) {
	if q.set == nil {
		q.set = map[uint32]struct{}{}
	}
	q.set[p] = struct{}{}
	lo := p & 0xffff
	q.bits[lo/64] |= 1 << (lo % 64)
}

// Len is the number of prints.
func (q *Prints) Len() int { return len(q.set) }

func (q *Prints) has(p uint32) bool {
	lo := p & 0xffff
	if q.bits[lo/64]&(1<<(lo%64)) == 0 {
		return false
	}
	_, ok := q.set[p]
	return ok
}

// EncodeChunks returns the entries of s, from from to to, as chunks
// numbered from seq on, each of at most per entries, and taking no more
// past bytes of raw encoding (0: no limit); a state's are ChunkEntries and
// ChunkBytes.
func EncodeChunks(s *State, from, to int, seq int64, per, bytes int) ([]store.StateChunk, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var out []store.StateChunk
	var c chunkEncoder
	for i := from; i < to; {
		c.reset()
		for ; i < to && c.n < per && (c.n == 0 || bytes == 0 || len(c.raw)-head < bytes); i++ {
			if err := c.add(s, i); err != nil {
				return nil, err
			}
		}
		out = append(out, c.chunk(seq))
		seq++
	}
	return out, nil
}

// chunkEncoder builds one chunk; its buffers serve the next.
type chunkEncoder struct {
	n      int
	raw    []byte // the entries' raw encoding
	buf    []byte // one intent's
	norm   []byte // a normalized DN
	prints []uint32
	whole  bool
	comp   []byte // a chunk compressed
}

// head is the room kept at the start of raw for its count.
const head = binary.MaxVarintLen64

func (c *chunkEncoder) reset() {
	if c.raw == nil {
		c.raw = make([]byte, head, 64<<10)
	}
	c.n, c.raw, c.prints, c.whole = 0, c.raw[:head], c.prints[:0], false
}

// add appends entry i of s.
func (c *chunkEncoder) add(s *State, i int) error {
	c.n++
	c.raw = appendString(c.raw, s.Keys[i])
	c.raw = appendString(c.raw, s.Refs[i].ID)
	c.raw = appendString(c.raw, s.Refs[i].DN)
	if s.Encoded != nil && s.Encoded[i] != "" {
		c.raw = appendString(c.raw, s.Encoded[i])
	} else {
		var err error
		if c.buf, err = abi.AppendIntent(c.buf[:0], &s.Intents[i]); err != nil {
			return fmt.Errorf("dirstate: entry %q: %w", s.Refs[i].DN, err)
		}
		c.raw = binary.AppendUvarint(c.raw, uint64(len(c.buf)))
		c.raw = append(c.raw, c.buf...)
	}
	c.print(s.Keys[i], s.Refs[i], &s.Intents[i])
	return nil
}

// print adds the prints of what an entry is looked up by.
func (c *chunkEncoder) print(key string, ref diff.Ref, it *sdk.Intent) {
	c.prints = append(c.prints, Print(TagKey, key))
	if ref.ID != key {
		c.prints = append(c.prints, Print(TagKey, ref.ID))
	}
	c.dn(TagDN, ref.DN)
	switch it.Kind {
	case sdk.IntentSkip:
	case sdk.IntentMailbox:
		if m := it.Mailbox; m != nil {
			c.prints = append(c.prints, Print(TagAddress, m.Primary))
			for _, a := range m.Aliases {
				c.prints = append(c.prints, Print(TagAddress, a))
			}
			for _, g := range m.MemberOf {
				c.dn(TagMemberOf, g)
			}
		}
	case sdk.IntentGroup:
		if g := it.Group; g != nil {
			c.whole = c.whole || g.Nested
			for _, m := range g.Members {
				c.dn(TagMember, m)
			}
		}
	default:
		c.whole = true
	}
}

func (c *chunkEncoder) dn(tag byte, dn string) {
	c.norm = diff.AppendNormDN(c.norm[:0], dn)
	c.prints = append(c.prints, printBytes(tag, c.norm))
}

// chunk returns what was added as chunk seq.
func (c *chunkEncoder) chunk(seq int64) store.StateChunk {
	// The count goes right before the entries, in the room kept for it.
	var n [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(n[:], uint64(c.n))
	raw := c.raw[head-k:]
	copy(raw, n[:k])
	slices.Sort(c.prints)
	c.prints = slices.Compact(c.prints)
	sum := make([]byte, 2, 2+binary.MaxVarintLen64+4*len(c.prints))
	sum[0] = summaryVersion
	if c.whole {
		sum[1] = flagWhole
	}
	sum = binary.AppendUvarint(sum, uint64(c.n))
	for _, p := range c.prints {
		sum = binary.LittleEndian.AppendUint32(sum, p)
	}
	if m := s2.MaxEncodedLen(len(raw)); cap(c.comp) < m {
		c.comp = make([]byte, m)
	}
	return store.StateChunk{Seq: seq, Summary: sum, Data: slices.Clone(s2.Encode(c.comp[:cap(c.comp)], raw))}
}

// DecodeChunks reads the entries of chunks, in their order, and which chunk
// (an index into chunks) each entry came from. The strings of the result
// share the chunks' decompressed data.
func DecodeChunks(chunks []store.StateChunk) (*State, []int, error) {
	raws := make([]string, len(chunks))
	err := each(len(chunks), func(i int) error {
		n, err := s2.DecodedLen(chunks[i].Data)
		if err != nil || n > 1<<30 {
			return fmt.Errorf("dirstate: chunk %d does not decode", chunks[i].Seq)
		}
		raw := make([]byte, n)
		if _, err := s2.Decode(raw, chunks[i].Data); err != nil {
			return fmt.Errorf("dirstate: chunk %d: %w", chunks[i].Seq, err)
		}
		raws[i] = unsafe.String(unsafe.SliceData(raw), len(raw)) // raw is ours alone
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	s := &State{}
	var part []int
	for i, data := range raws {
		d := decoder{s: data}
		n := d.uvarint()
		if d.err == nil && n > uint64(len(data)) {
			d.err = errors.New("count past the end")
		}
		for j := uint64(0); d.err == nil && j < n; j++ {
			key, id, dn, raw := d.str(), d.str(), d.str(), d.str()
			if d.err != nil {
				break
			}
			s.Keys, s.Refs, s.Encoded = append(s.Keys, key), append(s.Refs, diff.Ref{ID: id, DN: dn}), append(s.Encoded, raw)
			part = append(part, i)
		}
		if d.err == nil && d.s != "" {
			d.err = errors.New("bytes after the last entry")
		}
		if d.err != nil {
			return nil, nil, fmt.Errorf("dirstate: chunk %d: %w", chunks[i].Seq, d.err)
		}
	}
	if err := s.decodeIntents(); err != nil {
		return nil, nil, err
	}
	return s, part, nil
}
