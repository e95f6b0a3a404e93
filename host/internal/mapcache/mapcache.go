// Package mapcache remembers what a policy made of each directory entry in
// the last run, so that an unchanged entry is not mapped again.
//
// Map is pure per entry (design, stage 3): the same entry, under the same
// policy module, config and domain (name, alias domains, gateway groups),
// gives the same intent. A cache file is bound to all of these by a context
// hash in its header; any change to them starts an empty cache. Entries are
// keyed by a hash of everything the policy sees of them: id, DN and every
// attribute with its values in order.
//
// The cache matters for policies that are slow to call (a wasm module, a
// plugin process); for a linked-in policy mapping is cheaper than hashing.
package mapcache

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
)

// Key identifies an entry's content.
type Key [16]byte

// Context is the hash of everything besides the entry that a Map result
// depends on.
type Context [32]byte

const magic = "dirsync-mapcache-1\n"

// Cache maps entry keys to intents. It is safe for concurrent use.
type Cache struct {
	path string
	ctx  Context

	mu   sync.Mutex
	old  map[Key][]byte // from the file: encoded pb.Intent (abi.AppendIntent)
	seen map[Key][]byte // looked up or put in this run: what Save keeps
	buf  []byte         // where Put encodes intents, in chunks
	hits int
}

// NewContext hashes the parts of a Map call that are not the entries.
// module identifies the policy's code (e.g. the SHA-256 of the .wasm file).
func NewContext(module []byte, info sdk.Info, config map[string]any, domain sdk.Domain) (Context, error) {
	cfg, err := abi.ConfigToProto(config)
	if err != nil {
		return Context{}, err
	}
	cb, err := proto.MarshalOptions{Deterministic: true}.Marshal(cfg)
	if err != nil {
		return Context{}, err
	}
	d := domain
	d.Groups = slices.Sorted(slices.Values(domain.Groups))
	db, err := proto.MarshalOptions{Deterministic: true}.Marshal(abi.DomainToProto(d))
	if err != nil {
		return Context{}, err
	}
	var abiVersion [8]byte // the host's: how intents are encoded and read
	binary.BigEndian.PutUint64(abiVersion[:], abi.Version())
	var b []byte
	for _, part := range [][]byte{[]byte(magic), abiVersion[:], module, []byte(info.Name), []byte(info.Version), cb, db} {
		b = appendPart(b, part)
	}
	return sha256.Sum256(b), nil
}

// Open reads the cache file at path if it was written under the same
// context; a missing, foreign or damaged file gives an empty cache (the
// cache is only ever a shortcut).
func Open(path string, ctx Context) *Cache {
	c := &Cache{path: path, ctx: ctx, old: map[Key][]byte{}, seen: map[Key][]byte{}}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < len(magic)+len(ctx) || string(b[:len(magic)]) != magic ||
		!bytes.Equal(b[len(magic):len(magic)+len(ctx)], ctx[:]) {
		return c
	}
	b = b[len(magic)+len(ctx):]
	old := map[Key][]byte{}
	for len(b) > 0 {
		if len(b) < len(Key{}) {
			return c
		}
		var k Key
		copy(k[:], b)
		b = b[len(k):]
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return c
		}
		old[k] = b[w : w+int(n)]
		b = b[w+int(n):]
	}
	c.old = old
	return c
}

// EntryKey hashes what a policy sees of an entry: its id, its DN, and its
// attributes in name order, each part length-prefixed. The parts go into
// one buffer hashed at once (a hash.Hash written part by part took three
// times as long).
func EntryKey(e *sdk.Entry) Key {
	bp := keyBufs.Get().(*[]byte)
	b := appendPart((*bp)[:0], e.ID)
	b = appendPart(b, e.DN)
	var room [16]string
	names := room[:0]
	for n := range e.Attributes {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		b = appendPart(b, n)
		vals := e.Attributes[n]
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, v := range vals {
			b = appendPart(b, v)
		}
	}
	sum := sha256.Sum256(b)
	*bp = b
	keyBufs.Put(bp)
	var k Key
	copy(k[:], sum[:])
	return k
}

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendPart appends a length-prefixed part, so parts cannot run together.
func appendPart[T string | []byte](b []byte, s T) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// Get returns the cached intent for k.
func (c *Cache) Get(k Key) (sdk.Intent, bool) {
	c.mu.Lock()
	b, ok := c.old[k]
	if ok {
		c.seen[k] = b
		c.hits++
	}
	c.mu.Unlock()
	if !ok {
		return sdk.Intent{}, false
	}
	in, err := abi.DecodeIntent(b) // strings alias the file's bytes, which never change
	if err != nil {
		return sdk.Intent{}, false
	}
	return in, true
}

// putChunk is the size of the buffers that Put encodes intents into.
const putChunk = 1 << 20

// Put records the intent the policy gave for k.
func (c *Cache) Put(k Key, in *sdk.Intent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cap(c.buf)-len(c.buf) < putChunk/16 {
		c.buf = make([]byte, 0, putChunk)
	}
	start := len(c.buf)
	b, err := abi.AppendIntent(c.buf, in)
	if err != nil {
		return
	}
	c.buf = b
	c.seen[k] = b[start:len(b):len(b)]
}

// Hits is how many lookups found an intent.
func (c *Cache) Hits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}

// Save writes the entries of this run (and only those) to the file,
// atomically.
func (c *Cache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".mapcache-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	w.WriteString(magic)
	w.Write(c.ctx[:])
	var n [binary.MaxVarintLen64]byte
	for k, b := range c.seen {
		w.Write(k[:])
		w.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
		w.Write(b)
	}
	if err := errors.Join(w.Flush(), tmp.Close()); err != nil {
		return fmt.Errorf("writing the map cache: %w", err)
	}
	return os.Rename(tmp.Name(), c.path)
}
