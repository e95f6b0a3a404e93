package sdk

// The syncpolicy.v1 wire codec of the WebAssembly guest.
//
// The guest decodes requests straight into the sdk types and encodes replies
// straight from them, with package protowire and no generated messages. Two
// reasons: package sdk cannot use package sdk/abi (abi imports sdk), and in a
// wasm guest, where code runs 5–9× slower than native, skipping the
// intermediate messages halves the cost of a large Map. Request strings
// alias the request buffer, which the guest never writes to (see
// guest_wasip1.go).
//
// The hot paths, entries of Map requests, mailboxes of Reconcile requests
// and Map replies, take the common shape of the data without calls or
// branches where they can, and leave the rest to out-of-line code (see
// entryDecoder.decode, mailboxDecoder.decodeFast and encodeMapReply): Go's
// wasm code passes a loop head at every function call and every taken
// branch (each function is a loop over its basic blocks), and the host
// compiles a countdown step into every loop head so that it can stop a
// call (see package wasmrt of the host and its package interrupt).
//
// Field numbers follow sdk/proto/syncpolicy/v1/syncpolicy.proto. The tests
// check this codec against the generated code and package sdk/abi. Unknown
// fields are skipped, and a known field with an unexpected wire type is
// skipped as well, as protobuf-go does (it keeps it as an unknown field), so
// a newer host with added fields is understood.

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Error codes of syncpolicy.v1.ErrorCode.
const (
	errCodeUnspecified   = 0
	errCodeInvalidFilter = 1
	errCodePanic         = 2
	errCodeBadRequest    = 3
	errCodeNotRegistered = 4
)

// Field numbers of the reply envelopes (InfoReply, …, ReconcileReply).
const (
	replyResult = 1
	replyError  = 2
)

// errTruncated reports a request that is not valid protobuf.
var errTruncated = errors.New("malformed protobuf")

// wireError is an error flagged across the ABI.
type wireError struct {
	code     uint64
	message  string
	position int64
}

// errorOf classifies an error returned by a policy stage.
func errorOf(err error) wireError {
	var fe *FilterError
	if errors.As(err, &fe) {
		return wireError{code: errCodeInvalidFilter, message: fe.Reason, position: int64(fe.Position)}
	}
	return wireError{code: errCodeUnspecified, message: err.Error()}
}

// ---- decoding ----

// field is one decoded field of a message.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64 // varint and fixed values
	b   []byte // length-delimited values
}

// nextField decodes the field at the start of b and returns the rest.
func nextField(b []byte) (f field, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return f, nil, errTruncated
	}
	b = b[n:]
	f.num, f.typ = num, typ
	switch typ {
	case protowire.BytesType:
		f.b, n = protowire.ConsumeBytes(b)
	case protowire.VarintType:
		f.v, n = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		f.v, n = protowire.ConsumeFixed64(b)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(b)
		f.v = uint64(v)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return f, nil, errTruncated
	}
	return f, b[n:], nil
}

// aliasString returns b as a string without copying; b must never change.
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// stringArena hands out string slices carved from shared chunks, so that
// decoding 100,000 entries does not allocate once per attribute.
type stringArena struct{ buf []string }

const arenaChunk = 4096

// take returns an empty slice with room for n strings. The caller appends
// exactly up to n strings and must not append beyond.
func (a *stringArena) take(n int) []string {
	if n > arenaChunk/4 {
		return make([]string, 0, n)
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]string, 0, arenaChunk)
	}
	s := a.buf[len(a.buf) : len(a.buf) : len(a.buf)+n]
	a.buf = a.buf[:len(a.buf)+n]
	return s
}

func decodeFilterRequest(b []byte) (FilterRequest, error) {
	var r FilterRequest
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return r, err
		}
		b = rest
		if f.num == 1 && f.typ == protowire.BytesType {
			r.Filter = aliasString(f.b)
		}
	}
	return r, nil
}

// decodeDomain merges the Domain in b into d (protobuf merges a message
// field that occurs more than once).
func decodeDomain(b []byte, d *Domain) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case 1:
			d.Name = aliasString(f.b)
		case 2:
			d.AliasDomains = append(d.AliasDomains, aliasString(f.b))
		case 3:
			d.Groups = append(d.Groups, aliasString(f.b))
		}
	}
	return nil
}

// decodeMapRequest decodes a MapRequest; with valuesOnly (Info.ValuesOnly)
// its entries have no Attributes map but the list that Entry.Values reads.
func decodeMapRequest(b []byte, valuesOnly bool) (MapRequest, error) {
	var r MapRequest
	n, err := countBytesField(b, 2)
	if err != nil {
		return r, err
	}
	if n > 0 {
		r.Entries = make([]Entry, 0, n)
	}
	d := entryDecoder{valuesOnly: valuesOnly}
	for i := 0; i < len(b); {
		num, start, end := bytesField(b, i)
		if uint(end) > uint(len(b)) {
			return r, errTruncated
		}
		i = end
		switch num {
		case 2:
			e, err := d.decode(b[start:end])
			if err != nil {
				return r, err
			}
			r.Entries = append(r.Entries, e)
		case 1:
			if err := decodeDomain(b[start:end], &r.Domain); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// bytesField reads the field at b[i]. For a length-delimited field it
// returns its number and the bounds of its value; for any other field,
// number 0 and end where the next field starts. end is -1 if b is
// malformed; the caller checks that end <= len(b). Tags of more than one
// byte, non-minimal ones included, are read as protobuf-go reads them.
func bytesField(b []byte, i int) (num protowire.Number, start, end int) {
	// The common case first: a one-byte tag and a length of one or two
	// bytes.
	if t := b[i]; t&0x87 == byte(protowire.BytesType) && i+2 < len(b) {
		if l := b[i+1]; l < 0x80 {
			return protowire.Number(t >> 3), i + 2, i + 2 + int(l)
		} else if l2 := b[i+2]; l2 < 0x80 && l2 != 0 {
			return protowire.Number(t >> 3), i + 3, i + 3 + (int(l&0x7f) | int(l2)<<7)
		}
	}
	num, typ, n := protowire.ConsumeTag(b[i:])
	if n < 0 {
		return 0, 0, -1
	}
	i += n
	if typ != protowire.BytesType {
		n = protowire.ConsumeFieldValue(num, typ, b[i:])
		if n < 0 {
			return 0, 0, -1
		}
		return 0, i + n, i + n
	}
	v, n := protowire.ConsumeVarint(b[i:])
	if n < 0 || v > uint64(len(b)-i-n) {
		return 0, 0, -1
	}
	return num, i + n, i + n + int(v)
}

// countBytesField counts the occurrences of length-delimited field num in
// msg.
func countBytesField(msg []byte, num protowire.Number) (int, error) {
	n := 0
	for i := 0; i < len(msg); {
		f, _, end := bytesField(msg, i)
		if uint(end) > uint(len(msg)) {
			return 0, errTruncated
		}
		if f == num {
			n++
		}
		i = end
	}
	return n, nil
}

// entryDecoder decodes entries; it keeps its scratch space from one entry
// to the next. Per entry it allocates the map, and the entry's values are
// carved from the shared arena. With valuesOnly an entry gets no map but
// its attribute list, carved from another arena: no allocation per entry.
type entryDecoder struct {
	arena      stringArena
	values     []string   // the entry's values, before they move to the arena
	attrs      []attrSpan // the entry's attributes, as spans of values
	valuesOnly bool
	lists      []attr // arena of attribute lists (valuesOnly)
}

// takeAttrs returns a list of n attributes carved from the decoder's arena.
func (d *entryDecoder) takeAttrs(n int) []attr {
	if n > arenaChunk/16 {
		return make([]attr, n)
	}
	if cap(d.lists)-len(d.lists) < n {
		d.lists = make([]attr, 0, arenaChunk/4)
	}
	s := d.lists[len(d.lists) : len(d.lists)+n : len(d.lists)+n]
	d.lists = d.lists[:len(d.lists)+n]
	return s
}

// repeatedName reports whether two attributes have the same name.
func repeatedName(as []attrSpan) bool {
	for i := 1; i < len(as); i++ {
		for j := range i {
			if as[i].name == as[j].name {
				return true
			}
		}
	}
	return false
}

type attrSpan struct {
	name       string
	start, end int
}

// Field numbers of Entry (id = 1, dn = 2, attributes = 3) and Attribute
// (name = 1, values = 2).
const (
	fieldEntryID        = 1
	fieldEntryDN        = 2
	fieldEntryAttribute = 3
	fieldAttrName       = 1
	fieldAttrValue      = 2
)

// Tags of the length-delimited fields of Entry and Attribute, as the one
// byte they take on the wire.
const (
	tagEntryID        = fieldEntryID<<3 | byte(protowire.BytesType)
	tagEntryDN        = fieldEntryDN<<3 | byte(protowire.BytesType)
	tagEntryAttribute = fieldEntryAttribute<<3 | byte(protowire.BytesType)
	tagAttrName       = fieldAttrName<<3 | byte(protowire.BytesType)
	tagAttrValue      = fieldAttrValue<<3 | byte(protowire.BytesType)
)

// Room for the values and attributes of an entry on decode's fast path.
const (
	fastValues = 128
	fastAttrs  = 32
)

// decode decodes an Entry. Its fast path takes entries as protobuf
// encoders write them: one-byte tags, lengths of one or two bytes, no
// unknown fields, no repeated or empty attributes, at most fastAttrs
// attributes and fastValues values. It keeps its scratch space on the
// stack, where stores need no write barrier check (a branch, taken when the
// barrier is off), and it has no calls but for its rare cases. Any other
// entry, and any malformed one, is decoded again by decodeGeneral. In the
// guest this halves the cost of decoding an entry, most of which is now the
// map.
func (d *entryDecoder) decode(b []byte) (Entry, error) {
	var e Entry
	var values [fastValues]string
	var attrs [fastAttrs]attrSpan
	nv, na := 0, 0
	empty := 0 // < 0 once an attribute has no values
	for i := 0; i < len(b); {
		if i+1 >= len(b) {
			return d.decodeGeneral(b)
		}
		t, l := b[i], b[i+1]
		start, end := i+2, i+2+int(l)
		if l >= 0x80 {
			start, end = length2(b, i+1)
		}
		if uint(end) > uint(len(b)) {
			return d.decodeGeneral(b)
		}
		i = end
		if t == tagEntryAttribute {
			if na == fastAttrs {
				return d.decodeGeneral(b)
			}
			name, first := "", nv
			for j := start; j < end; {
				if j+1 >= end {
					return d.decodeGeneral(b)
				}
				t, l := b[j], b[j+1]
				vs, ve := j+2, j+2+int(l)
				if l >= 0x80 {
					vs, ve = length2(b, j+1)
				}
				if uint(ve) > uint(end) {
					return d.decodeGeneral(b)
				}
				j = ve
				if t == tagAttrValue {
					if nv == fastValues {
						return d.decodeGeneral(b)
					}
					v := b[vs:ve]
					values[nv] = unsafe.String(unsafe.SliceData(v), len(v))
					nv++
					continue
				}
				if t != tagAttrName {
					return d.decodeGeneral(b)
				}
				v := b[vs:ve]
				name = unsafe.String(unsafe.SliceData(v), len(v))
			}
			n := nv - first
			empty |= ^(n | -n) >> 63 // -1 if n == 0, without a branch
			attrs[na] = attrSpan{name: name, start: first, end: nv}
			na++
			continue
		}
		v := b[start:end]
		switch t {
		case tagEntryID:
			e.ID = unsafe.String(unsafe.SliceData(v), len(v))
		case tagEntryDN:
			e.DN = unsafe.String(unsafe.SliceData(v), len(v))
		default:
			return d.decodeGeneral(b)
		}
	}
	if na == 0 {
		return e, nil
	}
	if d.valuesOnly {
		if empty != 0 || repeatedName(attrs[:na]) {
			return d.decodeGeneral(b)
		}
		all := d.arena.take(nv)
		all = append(all, values[:nv]...)
		list := d.takeAttrs(na)
		for k := range attrs[:na] {
			a := &attrs[k]
			list[k] = attr{name: a.name, values: all[a.start:a.end:a.end]}
		}
		e.attrs = list
		return e, nil
	}
	all := d.arena.take(nv)
	all = append(all, values[:nv]...)
	m := make(map[string][]string, na)
	for k := range attrs[:na] {
		a := &attrs[k]
		m[a.name] = all[a.start:a.end:a.end]
	}
	if len(m) != na || empty != 0 {
		// A repeated or an empty attribute: no values is nil, and the
		// values of a repeated name are joined.
		return d.decodeGeneral(b)
	}
	e.Attributes = m
	return e, nil
}

// length2 reads a length of two bytes at b[i], returning the bounds of the
// value that follows, or end -1 if it is not one.
//
//go:noinline
func length2(b []byte, i int) (start, end int) {
	if i+1 >= len(b) || b[i+1] >= 0x80 || b[i+1] == 0 {
		return 0, -1 // longer, non-minimal or truncated: decodeGeneral reads it
	}
	return i + 2, i + 2 + (int(b[i]&0x7f) | int(b[i+1])<<7)
}

// decodeGeneral decodes any Entry, in any encoding protobuf-go accepts.
func (d *entryDecoder) decodeGeneral(b []byte) (Entry, error) {
	var e Entry
	values, attrs := d.values[:0], d.attrs[:0]
	for i := 0; i < len(b); {
		num, start, end := bytesField(b, i)
		if uint(end) > uint(len(b)) {
			return e, errTruncated
		}
		i = end
		if num == fieldEntryAttribute {
			a := attrSpan{start: len(values)}
			ab := b[:end]
			for j := start; j < end; {
				num, vs, ve := bytesField(ab, j)
				if uint(ve) > uint(end) {
					return e, errTruncated
				}
				j = ve
				if num == fieldAttrValue {
					values = append(values, aliasString(ab[vs:ve]))
				} else if num == fieldAttrName {
					a.name = aliasString(ab[vs:ve])
				}
			}
			a.end = len(values)
			attrs = append(attrs, a)
		} else if num == fieldEntryID {
			e.ID = aliasString(b[start:end])
		} else if num == fieldEntryDN {
			e.DN = aliasString(b[start:end])
		}
	}
	d.values, d.attrs = values, attrs
	if len(attrs) == 0 {
		return e, nil
	}
	all := d.arena.take(len(values))
	all = append(all, values...)
	m := make(map[string][]string, len(attrs))
	names := 0 // len(m) before the insert: a new name grows the map
	for k, a := range attrs {
		var vs []string
		if a.end > a.start {
			vs = all[a.start:a.end:a.end]
		}
		m[a.name] = vs
		if len(m) == names {
			// A repeated name: its values are those of all its
			// attributes, in order, as abi.EntryFromProto makes them.
			m[a.name] = repeatedAttr(all, attrs[:k+1], a.name)
		}
		names = len(m)
	}
	if d.valuesOnly {
		// The list in the order of first appearance, each name once with
		// the values the map joined.
		list := d.takeAttrs(len(m))[:0]
		for _, a := range attrs {
			if vs, ok := m[a.name]; ok {
				list = append(list, attr{name: a.name, values: vs})
				delete(m, a.name)
			}
		}
		e.attrs = list
		return e, nil
	}
	e.Attributes = m
	return e, nil
}

// repeatedAttr joins the values of the attributes named name.
func repeatedAttr(values []string, attrs []attrSpan, name string) []string {
	var vs []string
	for _, a := range attrs {
		if a.name == name {
			vs = append(vs, values[a.start:a.end]...)
		}
	}
	return vs
}

// mailboxDecoder hands out Mailboxes carved from shared chunks, and their
// string lists from an arena, so that decoding the 100,000 changes of a
// first sync does not allocate three times per change.
type mailboxDecoder struct {
	slab  []Mailbox
	arena stringArena
}

const mailboxChunk = 256

// decode merges the Mailbox in b into *mp, allocating it if nil.
func (d *mailboxDecoder) decode(b []byte, mp **Mailbox) error {
	if *mp == nil {
		if len(d.slab) == 0 {
			d.slab = make([]Mailbox, mailboxChunk)
		}
		*mp, d.slab = &d.slab[0], d.slab[1:]
		if d.decodeFast(b, *mp) {
			return nil
		}
		**mp = Mailbox{}
	}
	return d.decodeGeneral(b, *mp)
}

// Room for the aliases and groups of a mailbox on decodeFast's path.
const fastMailboxStrs = 16

// decodeFast decodes a Mailbox into the zero *m the way entryDecoder.decode
// does an Entry: inline, for mailboxes as protobuf encoders write them
// (one-byte tags, lengths of one or two bytes, an id of at most 9 bytes,
// known fields only, at most fastMailboxStrs aliases and groups). It
// reports false for any other mailbox, leaving *m to be reset and decoded
// by decodeGeneral.
func (d *mailboxDecoder) decodeFast(b []byte, m *Mailbox) bool {
	var strs [2 * fastMailboxStrs]string // aliases from the front, groups from the back
	na, ng := 0, 0
	for i := 0; i < len(b); {
		t := b[i]
		if t == 1<<3|byte(protowire.VarintType) { // id
			var v uint64
			j := i + 1
			for shift := 0; ; shift += 7 {
				if j >= len(b) || shift == 63 {
					return false
				}
				c := b[j]
				j++
				v |= uint64(c&0x7f) << shift
				if c < 0x80 {
					break
				}
			}
			m.ID, i = int64(v), j
			continue
		}
		if t&7 != byte(protowire.BytesType) || i+1 >= len(b) {
			return false
		}
		l := b[i+1]
		start, end := i+2, i+2+int(l)
		if l >= 0x80 {
			start, end = length2(b, i+1)
		}
		if uint(end) > uint(len(b)) {
			return false
		}
		i = end
		v := b[start:end]
		s := unsafe.String(unsafe.SliceData(v), len(v))
		switch t >> 3 {
		case 2:
			m.DirID = s
		case 3:
			m.DN = s
		case 4:
			m.Kind = s
		case 5:
			m.Primary = s
		case 6:
			if na+ng == len(strs) {
				return false
			}
			strs[na] = s
			na++
		case 7:
			m.DisplayName = s
		case 8:
			m.Source = s
		case 9:
			if na+ng == len(strs) {
				return false
			}
			ng++
			strs[len(strs)-ng] = s
		default:
			return false
		}
	}
	if na > 0 {
		m.Aliases = append(d.arena.take(na), strs[:na]...)
	}
	if ng > 0 {
		m.Groups = d.arena.take(ng)
		for k := len(strs) - 1; k >= len(strs)-ng; k-- {
			m.Groups = append(m.Groups, strs[k])
		}
	}
	return true
}

// decodeGeneral merges any Mailbox, in any encoding protobuf-go accepts,
// into *m.
func (d *mailboxDecoder) decodeGeneral(b []byte, m *Mailbox) error {
	var aliases, groups int
	for i := 0; i < len(b); {
		num, _, end := bytesField(b, i)
		if uint(end) > uint(len(b)) {
			return errTruncated
		}
		switch num {
		case 6:
			aliases++
		case 9:
			groups++
		}
		i = end
	}
	if aliases > 0 && m.Aliases == nil {
		m.Aliases = d.arena.take(aliases)
	}
	if groups > 0 && m.Groups == nil {
		m.Groups = d.arena.take(groups)
	}
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ == protowire.VarintType {
			if f.num == 1 {
				m.ID = int64(f.v)
			}
			continue
		}
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case 2:
			m.DirID = aliasString(f.b)
		case 3:
			m.DN = aliasString(f.b)
		case 4:
			m.Kind = aliasString(f.b)
		case 5:
			m.Primary = aliasString(f.b)
		case 6:
			m.Aliases = append(m.Aliases, aliasString(f.b))
		case 7:
			m.DisplayName = aliasString(f.b)
		case 8:
			m.Source = aliasString(f.b)
		case 9:
			m.Groups = append(m.Groups, aliasString(f.b))
		}
	}
	return nil
}

func decodeConflict(b []byte) (Conflict, error) {
	var c Conflict
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return c, err
		}
		b = rest
		switch {
		case f.num == 2 && f.typ == protowire.VarintType:
			c.MailboxID = int64(f.v)
		case f.typ != protowire.BytesType:
		case f.num == 1:
			c.Address = aliasString(f.b)
		case f.num == 3:
			c.Primary = aliasString(f.b)
		case f.num == 4:
			c.Source = aliasString(f.b)
		}
	}
	return c, nil
}

func decodeChange(b []byte, mailboxes *mailboxDecoder) (Change, error) {
	var c Change
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return c, err
		}
		b = rest
		if f.typ == protowire.VarintType {
			if f.num == 1 {
				c.Kind = ChangeKind(int32(f.v))
			}
			continue
		}
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case 2:
			err = mailboxes.decode(f.b, &c.Before)
		case 3:
			err = mailboxes.decode(f.b, &c.After)
		case 4:
			c.Group = aliasString(f.b)
		case 5:
			var x Conflict
			x, err = decodeConflict(f.b)
			c.Conflicts = append(c.Conflicts, x)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

func decodeReconcileRequest(b []byte) (ReconcileRequest, error) {
	var r ReconcileRequest
	n, err := countBytesField(b, 2)
	if err != nil {
		return r, err
	}
	if n > 0 {
		r.Changes = make([]Change, 0, n)
	}
	var mailboxes mailboxDecoder
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return r, err
		}
		b = rest
		switch {
		case f.num == 3 && f.typ == protowire.VarintType:
			r.LDAPMailboxes = int(int64(f.v))
		case f.typ != protowire.BytesType:
		case f.num == 1:
			if err := decodeDomain(f.b, &r.Domain); err != nil {
				return r, err
			}
		case f.num == 2:
			c, err := decodeChange(f.b, &mailboxes)
			if err != nil {
				return r, err
			}
			r.Changes = append(r.Changes, c)
		}
	}
	return r, nil
}

// decodeConfigureRequest decodes ConfigureRequest{google.protobuf.Struct
// config = 1} into the form of abi.ConfigFromProto (structpb's AsMap):
// numbers are float64, lists []any, tables map[string]any. Strings are
// copied: a policy may keep its config for its whole life.
func decodeConfigureRequest(b []byte) (map[string]any, error) {
	var cfg map[string]any
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if f.num == 1 && f.typ == protowire.BytesType {
			if cfg, err = decodeStruct(f.b, 0); err != nil {
				return nil, err
			}
		}
	}
	return cfg, nil
}

// maxConfigDepth bounds the nesting of a config table.
const maxConfigDepth = 100

var errConfigDepth = errors.New("config nested deeper than " + strconv.Itoa(maxConfigDepth))

// decodeStruct decodes google.protobuf.Struct{map<string, Value> fields = 1}.
func decodeStruct(b []byte, depth int) (map[string]any, error) {
	if depth > maxConfigDepth {
		return nil, errConfigDepth
	}
	m := map[string]any{}
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if f.num != 1 || f.typ != protowire.BytesType {
			continue
		}
		// A map entry: {string key = 1; Value value = 2}.
		var key string
		var val any
		for e := f.b; len(e) > 0; {
			ef, erest, err := nextField(e)
			if err != nil {
				return nil, err
			}
			e = erest
			if ef.typ != protowire.BytesType {
				continue
			}
			switch ef.num {
			case 1:
				key = string(ef.b)
			case 2:
				if val, err = decodeValue(ef.b, depth+1); err != nil {
					return nil, err
				}
			}
		}
		m[key] = val
	}
	return m, nil
}

// decodeValue decodes google.protobuf.Value: null_value = 1, number_value =
// 2, string_value = 3, bool_value = 4, struct_value = 5, list_value = 6.
func decodeValue(b []byte, depth int) (any, error) {
	if depth > maxConfigDepth {
		return nil, errConfigDepth
	}
	var v any
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return nil, err
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			v = nil
		case f.num == 2 && f.typ == protowire.Fixed64Type:
			v = math.Float64frombits(f.v)
		case f.num == 3 && f.typ == protowire.BytesType:
			v = string(f.b)
		case f.num == 4 && f.typ == protowire.VarintType:
			v = f.v != 0
		case f.num == 5 && f.typ == protowire.BytesType:
			if v, err = decodeStruct(f.b, depth+1); err != nil {
				return nil, err
			}
		case f.num == 6 && f.typ == protowire.BytesType:
			// ListValue{repeated Value values = 1}.
			list := []any{}
			for l := f.b; len(l) > 0; {
				lf, lrest, err := nextField(l)
				if err != nil {
					return nil, err
				}
				l = lrest
				if lf.num == 1 && lf.typ == protowire.BytesType {
					x, err := decodeValue(lf.b, depth+1)
					if err != nil {
						return nil, err
					}
					list = append(list, x)
				}
			}
			v = list
		}
	}
	return v, nil
}

// ---- encoding ----
//
// Each message has a size function and an append function; a nested message
// is written as its tag, its size and its fields, so a reply is built in one
// buffer of the exact size.

func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func sizeStrings(num protowire.Number, ss []string) int {
	n := 0
	for _, s := range ss {
		n += protowire.SizeTag(num) + protowire.SizeBytes(len(s))
	}
	return n
}

func appendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

func sizeVarint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// sizeMessage is the size of a nested message field whose body is n bytes.
func sizeMessage(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendMessageHeader(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// enumValue widens an int32 enum the way protobuf encodes it (negative
// values as 10-byte varints).
func enumValue(v int32) uint64 { return uint64(int64(v)) }

// Info

func sizeInfo(in *Info) int {
	return sizeString(1, in.Name) + sizeString(2, in.Version) +
		sizeVarint(3, uint64(in.ABIMajor)) + sizeVarint(4, uint64(in.ABIMinor)) +
		sizeStrings(5, in.Attributes) + sizeVarint(6, enumValue(int32(in.Reconcile))) +
		sizeVarint(7, boolValue(in.ValuesOnly))
}

func appendInfo(b []byte, in *Info) []byte {
	b = appendString(b, 1, in.Name)
	b = appendString(b, 2, in.Version)
	b = appendVarint(b, 3, uint64(in.ABIMajor))
	b = appendVarint(b, 4, uint64(in.ABIMinor))
	b = appendStrings(b, 5, in.Attributes)
	b = appendVarint(b, 6, enumValue(int32(in.Reconcile)))
	return appendVarint(b, 7, boolValue(in.ValuesOnly))
}

// FilterResponse

func sizeFilterResponse(r *FilterResponse) int { return sizeString(1, r.Filter) }

func appendFilterResponse(b []byte, r *FilterResponse) []byte {
	return appendString(b, 1, r.Filter)
}

// MapResponse
//
// Map replies are most of what a guest encodes, and they are encoded in the
// guest, where every taken branch costs a trip through the function's
// dispatch loop (see decode). So these helpers write without branches: a
// tag and a length are written as a tag and five varint bytes, of which the
// length's size (protowire.SizeVarint, computed without a branch) is kept;
// an empty string field, which proto3 leaves out, is written and cut off
// again. The buffer has mapReplySlack bytes of room beyond the reply for
// what is cut off.

const mapReplySlack = 6

// Tags of the fields of MapResponse and its messages, as the one byte they
// take on the wire.
const (
	tagMapIntents      = 1<<3 | byte(protowire.BytesType)
	tagIntentKind      = 1<<3 | byte(protowire.VarintType)
	tagIntentReason    = 2<<3 | byte(protowire.BytesType)
	tagIntentMailbox   = 3<<3 | byte(protowire.BytesType)
	tagIntentGroup     = 4<<3 | byte(protowire.BytesType)
	tagIntentSkipped   = 5<<3 | byte(protowire.BytesType)
	tagMailboxKind     = 1<<3 | byte(protowire.BytesType)
	tagMailboxPrimary  = 2<<3 | byte(protowire.BytesType)
	tagMailboxAliases  = 3<<3 | byte(protowire.BytesType)
	tagMailboxDisplay  = 4<<3 | byte(protowire.BytesType)
	tagMailboxMemberOf = 5<<3 | byte(protowire.BytesType)
	tagGroupName       = 1<<3 | byte(protowire.BytesType)
	tagGroupTarget     = 2<<3 | byte(protowire.BytesType)
	tagGroupMembers    = 3<<3 | byte(protowire.BytesType)
	tagSkippedAddress  = 1<<3 | byte(protowire.BytesType)
	tagSkippedReason   = 2<<3 | byte(protowire.BytesType)
)

// ifNonZero is -1 (all bits set) if n != 0 and 0 if n == 0, for n >= 0 or
// any other int.
func ifNonZero(n int) int { return (n | -n) >> 63 }

// sizeField is the size of a field with a one-byte tag and a value of n
// bytes.
func sizeField(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// sizeStr is the size of a string field with a one-byte tag: 0 for "".
func sizeStr(s string) int { return sizeField(len(s)) & ifNonZero(len(s)) }

// sizeStrs is the size of a repeated string field with a one-byte tag.
func sizeStrs(ss []string) int {
	n := 0
	for _, s := range ss {
		n += sizeField(len(s))
	}
	return n
}

// appendTagLen appends a one-byte tag and a length n < 2^35.
func appendTagLen(b []byte, tag byte, n int) []byte {
	last := len(b) + protowire.SizeVarint(uint64(n)) // the length's last byte
	b = append(b, tag, byte(n|0x80), byte(n>>7|0x80), byte(n>>14|0x80), byte(n>>21|0x80), byte(n>>28))
	b[last] &= 0x7f
	return b[:last+1]
}

// appendStr appends a string field with a one-byte tag, nothing for "".
func appendStr(b []byte, tag byte, s string) []byte {
	start := len(b)
	b = append(appendTagLen(b, tag, len(s)), s...)
	return b[:start+(len(b)-start)&ifNonZero(len(s))]
}

// appendStrs appends a repeated string field with a one-byte tag.
func appendStrs(b []byte, tag byte, ss []string) []byte {
	for _, s := range ss {
		b = append(appendTagLen(b, tag, len(s)), s...)
	}
	return b
}

// sizeKind is the size of an Intent's kind field: 0 for IntentSkip.
func sizeKind(k IntentKind) int {
	return (1 + protowire.SizeVarint(enumValue(int32(k)))) & ifNonZero(int(k))
}

// appendKind appends an Intent's kind field, nothing for IntentSkip.
func appendKind(b []byte, k IntentKind) []byte {
	if uint32(k) >= 0x80 {
		return appendVarint(b, 1, enumValue(int32(k)))
	}
	start := len(b)
	b = append(b, tagIntentKind, byte(k))
	return b[:start+2&ifNonZero(int(k))]
}

func sizeMailboxIntent(m *MailboxIntent) int {
	return sizeStr(m.Kind) + sizeStr(m.Primary) + sizeStrs(m.Aliases) +
		sizeStr(m.DisplayName) + sizeStrs(m.MemberOf)
}

func appendMailboxIntent(b []byte, m *MailboxIntent) []byte {
	b = appendStr(b, tagMailboxKind, m.Kind)
	b = appendStr(b, tagMailboxPrimary, m.Primary)
	b = appendStrs(b, tagMailboxAliases, m.Aliases)
	b = appendStr(b, tagMailboxDisplay, m.DisplayName)
	return appendStrs(b, tagMailboxMemberOf, m.MemberOf)
}

func sizeGroupIntent(g *GroupIntent) int {
	return sizeStr(g.Name) + sizeStr(g.Target) + sizeStrs(g.Members) + sizeVarint(4, boolValue(g.Nested))
}

func appendGroupIntent(b []byte, g *GroupIntent) []byte {
	b = appendStr(b, tagGroupName, g.Name)
	b = appendStr(b, tagGroupTarget, g.Target)
	b = appendStrs(b, tagGroupMembers, g.Members)
	return appendVarint(b, 4, boolValue(g.Nested))
}

func boolValue(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// sizeIntent returns the size of an Intent, and that of its mailbox or
// group (an Intent has at most one of them; the host refuses both).
func sizeIntent(in *Intent) (size, inner int) {
	size = sizeKind(in.Kind) + sizeStr(in.Reason)
	if in.Mailbox != nil {
		inner = sizeMailboxIntent(in.Mailbox)
		size += sizeField(inner)
	}
	if in.Group != nil {
		g := sizeGroupIntent(in.Group)
		size += sizeField(g)
		if in.Mailbox == nil {
			inner = g
		}
	}
	for i := range in.Skipped {
		sk := &in.Skipped[i]
		size += sizeField(sizeStr(sk.Address) + sizeStr(sk.Reason))
	}
	return size, inner
}

func appendIntent(b []byte, in *Intent, inner int) []byte {
	b = appendKind(b, in.Kind)
	b = appendStr(b, tagIntentReason, in.Reason)
	if in.Mailbox != nil {
		b = appendTagLen(b, tagIntentMailbox, inner)
		b = appendMailboxIntent(b, in.Mailbox)
	}
	if in.Group != nil {
		if in.Mailbox != nil {
			inner = sizeGroupIntent(in.Group)
		}
		b = appendTagLen(b, tagIntentGroup, inner)
		b = appendGroupIntent(b, in.Group)
	}
	for i := range in.Skipped {
		sk := &in.Skipped[i]
		b = appendTagLen(b, tagIntentSkipped, sizeStr(sk.Address)+sizeStr(sk.Reason))
		b = appendStr(b, tagSkippedAddress, sk.Address)
		b = appendStr(b, tagSkippedReason, sk.Reason)
	}
	return b
}

// ReconcileResponse

func sizeMailbox(m *Mailbox) int {
	return sizeVarint(1, uint64(m.ID)) + sizeString(2, m.DirID) + sizeString(3, m.DN) +
		sizeString(4, m.Kind) + sizeString(5, m.Primary) + sizeStrings(6, m.Aliases) +
		sizeString(7, m.DisplayName) + sizeString(8, m.Source) + sizeStrings(9, m.Groups)
}

func appendMailbox(b []byte, m *Mailbox) []byte {
	b = appendVarint(b, 1, uint64(m.ID))
	b = appendString(b, 2, m.DirID)
	b = appendString(b, 3, m.DN)
	b = appendString(b, 4, m.Kind)
	b = appendString(b, 5, m.Primary)
	b = appendStrings(b, 6, m.Aliases)
	b = appendString(b, 7, m.DisplayName)
	b = appendString(b, 8, m.Source)
	return appendStrings(b, 9, m.Groups)
}

func sizeConflict(c *Conflict) int {
	return sizeString(1, c.Address) + sizeVarint(2, uint64(c.MailboxID)) +
		sizeString(3, c.Primary) + sizeString(4, c.Source)
}

func appendConflict(b []byte, c *Conflict) []byte {
	b = appendString(b, 1, c.Address)
	b = appendVarint(b, 2, uint64(c.MailboxID))
	b = appendString(b, 3, c.Primary)
	return appendString(b, 4, c.Source)
}

func sizeChange(c *Change) int {
	n := sizeVarint(1, enumValue(int32(c.Kind))) + sizeString(4, c.Group)
	if c.Before != nil {
		n += sizeMessage(2, sizeMailbox(c.Before))
	}
	if c.After != nil {
		n += sizeMessage(3, sizeMailbox(c.After))
	}
	for i := range c.Conflicts {
		n += sizeMessage(5, sizeConflict(&c.Conflicts[i]))
	}
	return n
}

func appendChange(b []byte, c *Change) []byte {
	b = appendVarint(b, 1, enumValue(int32(c.Kind)))
	if c.Before != nil {
		b = appendMessageHeader(b, 2, sizeMailbox(c.Before))
		b = appendMailbox(b, c.Before)
	}
	if c.After != nil {
		b = appendMessageHeader(b, 3, sizeMailbox(c.After))
		b = appendMailbox(b, c.After)
	}
	b = appendString(b, 4, c.Group)
	for i := range c.Conflicts {
		x := &c.Conflicts[i]
		b = appendMessageHeader(b, 5, sizeConflict(x))
		b = appendConflict(b, x)
	}
	return b
}

func sizeDecision(d *Decision) int {
	n := sizeVarint(1, uint64(int64(d.Index))) + sizeVarint(2, enumValue(int32(d.Action))) +
		sizeString(3, d.Reason)
	if d.Replacement != nil {
		n += sizeMessage(4, sizeChange(d.Replacement))
	}
	return n
}

func appendDecision(b []byte, d *Decision) []byte {
	b = appendVarint(b, 1, uint64(int64(d.Index)))
	b = appendVarint(b, 2, enumValue(int32(d.Action)))
	b = appendString(b, 3, d.Reason)
	if d.Replacement != nil {
		b = appendMessageHeader(b, 4, sizeChange(d.Replacement))
		b = appendChange(b, d.Replacement)
	}
	return b
}

func sizeReconcileResponse(r *ReconcileResponse) int {
	n := 0
	for i := range r.Decisions {
		n += sizeMessage(1, sizeDecision(&r.Decisions[i]))
	}
	return n
}

func appendReconcileResponse(b []byte, r *ReconcileResponse) []byte {
	for i := range r.Decisions {
		d := &r.Decisions[i]
		b = appendMessageHeader(b, 1, sizeDecision(d))
		b = appendDecision(b, d)
	}
	return b
}

// Replies

// spareReply, when not nil, is a reply buffer that the host has freed
// (guest_wasip1.go): the next reply that fits is written into it.
var spareReply []byte

// replyBuffer returns an empty buffer with room for n bytes.
func replyBuffer(n int) []byte {
	if b := spareReply; cap(b) >= n {
		spareReply = nil
		return b[:0]
	}
	return make([]byte, 0, n)
}

// resultReply encodes a reply envelope holding a result of size n written
// by body.
func resultReply(n int, body func([]byte) []byte) []byte {
	b := replyBuffer(sizeMessage(replyResult, n))
	b = appendMessageHeader(b, replyResult, n)
	return body(b)
}

func encodeInfoReply(in *Info) []byte {
	return resultReply(sizeInfo(in), func(b []byte) []byte { return appendInfo(b, in) })
}

func encodeConfigureReply() []byte {
	return resultReply(0, func(b []byte) []byte { return b })
}

func encodeFilterReply(r *FilterResponse) []byte {
	return resultReply(sizeFilterResponse(r), func(b []byte) []byte { return appendFilterResponse(b, r) })
}

// encodeMapReply encodes a MapReply. The sizes of each intent and of its
// mailbox or group are computed once, in a first pass.
func encodeMapReply(r *MapResponse) []byte {
	sizes := make([]int, 2*len(r.Intents))
	n := 0
	for i := range r.Intents {
		size, inner := sizeIntent(&r.Intents[i])
		sizes[2*i], sizes[2*i+1] = size, inner
		n += sizeField(size)
	}
	b := replyBuffer(sizeField(n) + mapReplySlack)
	b = appendTagLen(b, byte(replyResult<<3|protowire.BytesType), n)
	for i := range r.Intents {
		b = appendTagLen(b, tagMapIntents, sizes[2*i])
		b = appendIntent(b, &r.Intents[i], sizes[2*i+1])
	}
	return b
}

func encodeReconcileReply(r *ReconcileResponse) []byte {
	return resultReply(sizeReconcileResponse(r), func(b []byte) []byte { return appendReconcileResponse(b, r) })
}

// encodeErrorReply encodes a reply envelope holding an Error; every stage's
// envelope has the same field number for it.
func encodeErrorReply(e wireError) []byte {
	if !utf8.ValidString(e.message) {
		e.message = strconv.QuoteToASCII(e.message)
	}
	n := sizeVarint(1, e.code) + sizeString(2, e.message) + sizeVarint(3, uint64(e.position))
	b := replyBuffer(sizeMessage(replyError, n))
	b = appendMessageHeader(b, replyError, n)
	b = appendVarint(b, 1, e.code)
	b = appendString(b, 2, e.message)
	return appendVarint(b, 3, uint64(e.position))
}
