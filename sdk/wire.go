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

// countField counts the occurrences of length-delimited field num in msg.
func countField(msg []byte, num protowire.Number) (int, error) {
	n := 0
	for len(msg) > 0 {
		f, rest, err := nextField(msg)
		if err != nil {
			return 0, err
		}
		if f.num == num && f.typ == protowire.BytesType {
			n++
		}
		msg = rest
	}
	return n, nil
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

func decodeMapRequest(b []byte) (MapRequest, error) {
	var r MapRequest
	n, err := countField(b, 2)
	if err != nil {
		return r, err
	}
	if n > 0 {
		r.Entries = make([]Entry, 0, n)
	}
	var d entryDecoder
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return r, err
		}
		b = rest
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case 1:
			if err := decodeDomain(f.b, &r.Domain); err != nil {
				return r, err
			}
		case 2:
			e, err := d.decode(f.b)
			if err != nil {
				return r, err
			}
			r.Entries = append(r.Entries, e)
		}
	}
	return r, nil
}

// Tags of the length-delimited fields of Entry and Attribute, as the one
// byte they take on the wire.
const (
	tagEntryID        = 1<<3 | byte(protowire.BytesType)
	tagEntryDN        = 2<<3 | byte(protowire.BytesType)
	tagEntryAttribute = 3<<3 | byte(protowire.BytesType)
	tagAttrName       = 1<<3 | byte(protowire.BytesType)
	tagAttrValue      = 2<<3 | byte(protowire.BytesType)
)

// entryDecoder decodes entries; it keeps its scratch space from one entry
// to the next. Entries are most of a Map request, so this is the one hot
// path of the codec: a single pass, one-byte tags and lengths decoded
// inline, and per entry one map and one slice of values (from the arena).
type entryDecoder struct {
	arena  stringArena
	values []string   // the entry's values, before they move to the arena
	attrs  []attrSpan // the entry's attributes, as spans of values
}

type attrSpan struct {
	name       string
	start, end int
}

// lenField reads the length-delimited field that starts at b[i] (its tag
// already read) and returns its bounds, or ok == false if b is malformed.
func lenField(b []byte, i int) (start, end int, ok bool) {
	if i < len(b) && b[i] < 0x80 { // a length below 128
		start, end = i+1, i+1+int(b[i])
		return start, end, end <= len(b)
	}
	if i >= len(b) {
		return 0, 0, false
	}
	v, n := protowire.ConsumeVarint(b[i:])
	if n < 0 || v > uint64(len(b)-i-n) {
		return 0, 0, false
	}
	start = i + n
	return start, start + int(v), true
}

// skipField skips the field at b[i:] the slow, general way.
func skipField(b []byte, i int) (int, bool) {
	_, _, n := protowire.ConsumeField(b[i:])
	if n < 0 {
		return 0, false
	}
	return i + n, true
}

func (d *entryDecoder) decode(b []byte) (Entry, error) {
	var e Entry
	d.values, d.attrs = d.values[:0], d.attrs[:0]
	for i := 0; i < len(b); {
		tag := b[i]
		if tag != tagEntryID && tag != tagEntryDN && tag != tagEntryAttribute {
			var ok bool
			if i, ok = skipField(b, i); !ok {
				return e, errTruncated
			}
			continue
		}
		start, end, ok := lenField(b, i+1)
		if !ok {
			return e, errTruncated
		}
		i = end
		switch tag {
		case tagEntryID:
			e.ID = aliasString(b[start:end])
		case tagEntryDN:
			e.DN = aliasString(b[start:end])
		default:
			a := attrSpan{start: len(d.values)}
			for j, ab := start, b[:end]; j < end; {
				t := ab[j]
				if t != tagAttrName && t != tagAttrValue {
					if j, ok = skipField(ab, j); !ok {
						return e, errTruncated
					}
					continue
				}
				vs, ve, ok := lenField(ab, j+1)
				if !ok {
					return e, errTruncated
				}
				j = ve
				if t == tagAttrName {
					a.name = aliasString(ab[vs:ve])
				} else {
					d.values = append(d.values, aliasString(ab[vs:ve]))
				}
			}
			a.end = len(d.values)
			d.attrs = append(d.attrs, a)
		}
	}
	if len(d.attrs) == 0 {
		return e, nil
	}
	values := d.arena.take(len(d.values))
	values = append(values, d.values...)
	e.Attributes = make(map[string][]string, len(d.attrs))
	for _, a := range d.attrs {
		var vs []string
		if a.end > a.start {
			vs = values[a.start:a.end:a.end]
		}
		if old, ok := e.Attributes[a.name]; ok {
			// A repeated name: concatenate, as abi.EntryFromProto does.
			vs = append(old[:len(old):len(old)], vs...)
		}
		e.Attributes[a.name] = vs
	}
	return e, nil
}

// decodeMailbox merges the Mailbox in b into *mp, allocating it if nil.
func decodeMailbox(b []byte, mp **Mailbox) error {
	if *mp == nil {
		*mp = &Mailbox{}
	}
	m := *mp
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

func decodeChange(b []byte) (Change, error) {
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
			err = decodeMailbox(f.b, &c.Before)
		case 3:
			err = decodeMailbox(f.b, &c.After)
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
	n, err := countField(b, 2)
	if err != nil {
		return r, err
	}
	if n > 0 {
		r.Changes = make([]Change, 0, n)
	}
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
			c, err := decodeChange(f.b)
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
		sizeStrings(5, in.Attributes)
}

func appendInfo(b []byte, in *Info) []byte {
	b = appendString(b, 1, in.Name)
	b = appendString(b, 2, in.Version)
	b = appendVarint(b, 3, uint64(in.ABIMajor))
	b = appendVarint(b, 4, uint64(in.ABIMinor))
	return appendStrings(b, 5, in.Attributes)
}

// FilterResponse

func sizeFilterResponse(r *FilterResponse) int { return sizeString(1, r.Filter) }

func appendFilterResponse(b []byte, r *FilterResponse) []byte {
	return appendString(b, 1, r.Filter)
}

// MapResponse

func sizeMailboxIntent(m *MailboxIntent) int {
	return sizeString(1, m.Kind) + sizeString(2, m.Primary) + sizeStrings(3, m.Aliases) +
		sizeString(4, m.DisplayName) + sizeStrings(5, m.MemberOf)
}

func appendMailboxIntent(b []byte, m *MailboxIntent) []byte {
	b = appendString(b, 1, m.Kind)
	b = appendString(b, 2, m.Primary)
	b = appendStrings(b, 3, m.Aliases)
	b = appendString(b, 4, m.DisplayName)
	return appendStrings(b, 5, m.MemberOf)
}

func sizeGroupIntent(g *GroupIntent) int {
	return sizeString(1, g.Name) + sizeString(2, g.Target) + sizeStrings(3, g.Members)
}

func appendGroupIntent(b []byte, g *GroupIntent) []byte {
	b = appendString(b, 1, g.Name)
	b = appendString(b, 2, g.Target)
	return appendStrings(b, 3, g.Members)
}

func sizeSkipped(s *SkippedAddress) int {
	return sizeString(1, s.Address) + sizeString(2, s.Reason)
}

func sizeIntent(in *Intent) int {
	n := sizeVarint(1, enumValue(int32(in.Kind))) + sizeString(2, in.Reason)
	if in.Mailbox != nil {
		n += sizeMessage(3, sizeMailboxIntent(in.Mailbox))
	}
	if in.Group != nil {
		n += sizeMessage(4, sizeGroupIntent(in.Group))
	}
	for i := range in.Skipped {
		n += sizeMessage(5, sizeSkipped(&in.Skipped[i]))
	}
	return n
}

func appendIntent(b []byte, in *Intent) []byte {
	b = appendVarint(b, 1, enumValue(int32(in.Kind)))
	b = appendString(b, 2, in.Reason)
	if in.Mailbox != nil {
		b = appendMessageHeader(b, 3, sizeMailboxIntent(in.Mailbox))
		b = appendMailboxIntent(b, in.Mailbox)
	}
	if in.Group != nil {
		b = appendMessageHeader(b, 4, sizeGroupIntent(in.Group))
		b = appendGroupIntent(b, in.Group)
	}
	for i := range in.Skipped {
		s := &in.Skipped[i]
		b = appendMessageHeader(b, 5, sizeSkipped(s))
		b = appendString(b, 1, s.Address)
		b = appendString(b, 2, s.Reason)
	}
	return b
}

// sizeMapResponse returns the size of r and records each intent's size in
// sizes, so that appendMapResponse does not compute them again.
func sizeMapResponse(r *MapResponse, sizes []int) int {
	n := 0
	for i := range r.Intents {
		s := sizeIntent(&r.Intents[i])
		sizes[i] = s
		n += sizeMessage(1, s)
	}
	return n
}

func appendMapResponse(b []byte, r *MapResponse, sizes []int) []byte {
	for i := range r.Intents {
		b = appendMessageHeader(b, 1, sizes[i])
		b = appendIntent(b, &r.Intents[i])
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

// resultReply encodes a reply envelope holding a result of size n written
// by body.
func resultReply(n int, body func([]byte) []byte) []byte {
	b := make([]byte, 0, sizeMessage(replyResult, n))
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

func encodeMapReply(r *MapResponse) []byte {
	sizes := make([]int, len(r.Intents))
	return resultReply(sizeMapResponse(r, sizes), func(b []byte) []byte { return appendMapResponse(b, r, sizes) })
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
	b := make([]byte, 0, sizeMessage(replyError, n))
	b = appendMessageHeader(b, replyError, n)
	b = appendVarint(b, 1, e.code)
	b = appendString(b, 2, e.message)
	return appendVarint(b, 3, uint64(e.position))
}
