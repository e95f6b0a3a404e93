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
//
// The file is checked before anything in it is used. Its folder must be
// the host's own (package cachedir: owned by the process's user, writable
// by nobody else; a missing one is made with mode 0700), or there is no
// cache. Its header carries the length and a CRC-32C of everything after
// the header, so a damaged, truncated or edited file is an empty cache,
// never an intent read from garbage:
//
//	magic "dirsync-mapcache-2\n"
//	context       32 bytes
//	body length   8 bytes, big-endian
//	body CRC-32C  4 bytes, big-endian (Castagnoli)
//	body          records: key (16 bytes), uvarint length, encoded pb.Intent
//
// (CRC-32C rather than a cryptographic hash: it guards against damage, and
// runs at memory speed where SHA-256 would add half to the time Open
// takes; what only the host's user can write needs no guard against
// forgery. It finds every error burst of up to 32 bits, so every flipped
// byte, and the length finds every truncation.)
package mapcache

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/dirsync/dirsync/host/internal/cachedir"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
)

// Key identifies an entry's content.
type Key [16]byte

// Context is the hash of everything besides the entry that a Map result
// depends on.
type Context [32]byte

// magic starts a cache file; its number is the file format's version. A
// file of another version is an empty cache.
const magic = "dirsync-mapcache-2\n"

// headerSize is the size of the header: magic, context, body length and
// body checksum.
const headerSize = len(magic) + len(Context{}) + 8 + 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Cache maps entry keys to intents. It is safe for concurrent use.
type Cache struct {
	path string
	ctx  Context
	err  error // the folder was refused: nothing is read or written

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
// context and its checksum holds; a missing, foreign, damaged or truncated
// file gives an empty cache (the cache is only ever a shortcut).
//
// The file's folder is checked first (and made, with mode 0700, when it is
// missing): one that another user owns or that group or others may write
// to is refused. Then the cache is empty and stays so, Err says why and
// Save returns that error without writing: the run maps every entry.
func Open(path string, ctx Context) *Cache {
	c := &Cache{path: path, ctx: ctx, old: map[Key][]byte{}, seen: map[Key][]byte{}}
	if err := cachedir.Ensure(filepath.Dir(path)); err != nil {
		c.err = fmt.Errorf("map cache not used: %w", err)
		return c
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c
	}
	if old, ok := parse(b, ctx); ok {
		c.old = old
	}
	return c
}

// parse checks a cache file's header and checksum and reads its records;
// ok is false when the file cannot be used as a whole.
func parse(b []byte, ctx Context) (old map[Key][]byte, ok bool) {
	if len(b) < headerSize || string(b[:len(magic)]) != magic {
		return nil, false
	}
	h := b[len(magic):headerSize]
	if !bytes.Equal(h[:len(ctx)], ctx[:]) {
		return nil, false
	}
	size, sum := binary.BigEndian.Uint64(h[len(ctx):]), binary.BigEndian.Uint32(h[len(ctx)+8:])
	b = b[headerSize:]
	if uint64(len(b)) != size || crc32.Checksum(b, castagnoli) != sum {
		return nil, false
	}
	old = map[Key][]byte{}
	for len(b) > 0 {
		if len(b) < len(Key{}) {
			return nil, false
		}
		var k Key
		copy(k[:], b)
		b = b[len(k):]
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, false
		}
		old[k] = b[w : w+int(n)]
		b = b[w+int(n):]
	}
	return old, true
}

// Err is why the cache is not used (its folder was refused), or nil.
func (c *Cache) Err() error { return c.err }

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
	if c.err != nil {
		return
	}
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
// atomically. When Open refused the folder, Save writes nothing and
// returns that error.
func (c *Cache) Save() error {
	if c.err != nil {
		return c.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	dir := filepath.Dir(c.path)
	if err := cachedir.Ensure(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".mapcache-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	// The header goes in last, once the body's length and checksum are
	// known; the body is checksummed as it is written.
	body := &crcWriter{w: tmp}
	w := bufio.NewWriterSize(body, 1<<20)
	w.Write(make([]byte, headerSize))
	var n [binary.MaxVarintLen64]byte
	for k, b := range c.seen {
		w.Write(k[:])
		w.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
		w.Write(b)
	}
	err = w.Flush()
	if err == nil {
		h := make([]byte, 0, headerSize)
		h = append(h, magic...)
		h = append(h, c.ctx[:]...)
		h = binary.BigEndian.AppendUint64(h, uint64(body.n-int64(headerSize)))
		h = binary.BigEndian.AppendUint32(h, body.sum)
		_, err = tmp.WriteAt(h, 0)
	}
	if err := errors.Join(err, tmp.Close()); err != nil {
		return fmt.Errorf("writing the map cache: %w", err)
	}
	return os.Rename(tmp.Name(), c.path)
}

// crcWriter writes to w and keeps the CRC-32C of what it wrote after the
// first headerSize bytes (the header's place).
type crcWriter struct {
	w   io.Writer
	n   int64
	sum uint32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	q := p[:n]
	if skip := int64(headerSize) - c.n; skip > 0 {
		q = q[min(skip, int64(len(q))):]
	}
	c.sum = crc32.Update(c.sum, castagnoli, q)
	c.n += int64(n)
	return n, err
}
