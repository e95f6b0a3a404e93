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
	"time"

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
	hits int
	// What Save keeps, the records looked up or put in this run, goes to
	// a temporary file as the run finds them (not held until Save: at
	// 100,000 entries that was 30 MB of a run's live heap); nil until the
	// first record, and always for a cache opened without save.
	save bool
	out  *output
	buf  []byte // where Put encodes an intent
}

// output is the file a cache's records go to until Save renames it.
type output struct {
	f    *os.File
	body *crcWriter
	w    *bufio.Writer
	err  error // the first write that failed: Save returns it
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
// file gives an empty cache (the cache is only ever a shortcut). With
// save, what the run looks up and puts is written, as it goes, to a
// temporary file beside it, which Save puts in its place and Close
// removes; without, nothing is written (a preview).
//
// The file's folder is checked first (and made, with mode 0700, when it is
// missing): one that another user owns or that group or others may write
// to is refused. Then the cache is empty and stays so, Err says why and
// Save returns that error without writing: the run maps every entry.
func Open(path string, ctx Context, save bool) *Cache {
	c := &Cache{path: path, ctx: ctx, old: map[Key][]byte{}, save: save}
	if err := cachedir.Ensure(filepath.Dir(path)); err != nil {
		c.err = fmt.Errorf("map cache not used: %w", err)
		return c
	}
	if save {
		removeStale(path)
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

// tempPrefix names the temporary files of the cache file at path.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// staleAfter is how long a temporary file goes unwritten before it counts
// as one a killed run left: a run writes to its own as it maps.
const staleAfter = time.Hour

// removeStale removes the temporary files of the cache file at path that a
// run which was killed left behind (its Close never came).
func removeStale(path string) {
	tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPrefix(path)+"*"))
	for _, t := range tmps {
		if st, err := os.Stat(t); err == nil && time.Since(st.ModTime()) > staleAfter {
			os.Remove(t)
		}
	}
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
	b, ok := c.old[k] // nil after Save
	if ok {
		c.record(k, b)
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

// Put records the intent the policy gave for k.
func (c *Cache) Put(k Key, in *sdk.Intent) {
	if c.err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.save { // never, or no longer: Save sets it under the lock
		return
	}
	b, err := abi.AppendIntent(c.buf[:0], in)
	if err != nil {
		return
	}
	c.buf = b
	c.record(k, b)
}

// record writes a record of what Save keeps (c.mu held). The same key
// twice is written twice: its intent is the same (Map is pure per entry),
// and the later record wins when the file is read.
func (c *Cache) record(k Key, intent []byte) {
	if !c.save || c.err != nil {
		return
	}
	out := c.output()
	if out.err != nil {
		return
	}
	var n [binary.MaxVarintLen64]byte
	out.w.Write(k[:])
	out.w.Write(n[:binary.PutUvarint(n[:], uint64(len(intent)))])
	_, out.err = out.w.Write(intent)
}

// output returns the file the run's records go to, made on first use
// (c.mu held).
func (c *Cache) output() *output {
	if c.out != nil {
		return c.out
	}
	c.out = &output{}
	f, err := os.CreateTemp(filepath.Dir(c.path), tempPrefix(c.path)+"*")
	if err != nil {
		c.out.err = err
		return c.out
	}
	// The header goes in last, once the body's length and checksum are
	// known; the body is checksummed as it is written.
	c.out.f, c.out.body = f, &crcWriter{w: f}
	c.out.w = bufio.NewWriterSize(c.out.body, 256<<10)
	_, c.out.err = c.out.w.Write(make([]byte, headerSize))
	return c.out
}

// Hits is how many lookups found an intent.
func (c *Cache) Hits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}

// Save writes the entries of this run (and only those) to the file,
// atomically, once: a Save after it, like one of a cache opened without
// save, does nothing. When Open refused the folder, Save writes nothing and
// returns that error.
// Save ends the cache's use: it lets go of the file it read (tens of
// megabytes that the run's decision can use), and Get finds nothing after
// it.
func (c *Cache) Save() error {
	if c.err != nil {
		return c.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.old = nil
	if !c.save {
		return nil
	}
	out := c.output()          // made here when nothing was looked up or put: an empty cache
	c.out, c.save = nil, false // once: what comes after is not kept
	if out.f == nil {
		return fmt.Errorf("writing the map cache: %w", out.err)
	}
	defer os.Remove(out.f.Name())
	err := out.err
	if err == nil {
		err = out.w.Flush()
	}
	if err == nil {
		h := make([]byte, 0, headerSize)
		h = append(h, magic...)
		h = append(h, c.ctx[:]...)
		h = binary.BigEndian.AppendUint64(h, uint64(out.body.n-int64(headerSize)))
		h = binary.BigEndian.AppendUint32(h, out.body.sum)
		_, err = out.f.WriteAt(h, 0)
	}
	if err := errors.Join(err, out.f.Close()); err != nil {
		return fmt.Errorf("writing the map cache: %w", err)
	}
	return os.Rename(out.f.Name(), c.path)
}

// Close removes what the run wrote for a Save that did not come (a run
// that failed, a preview). A Close after Save does nothing; a nil cache
// may be closed.
func (c *Cache) Close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out != nil && c.out.f != nil {
		c.out.f.Close()
		os.Remove(c.out.f.Name())
	}
	c.out = nil
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
