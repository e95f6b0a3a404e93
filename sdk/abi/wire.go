package abi

// A direct syncpolicy.v1 wire codec for the host's hot paths: Map and
// Reconcile requests are encoded straight from the sdk types, and Map
// replies decoded straight into them, with package protowire and no
// generated messages in between. It is the mirror image of the guest's
// codec (sdk/wire.go) and produces and accepts what proto.Marshal and
// proto.Unmarshal of the generated messages do; the tests and a fuzz test
// check it against them.
//
// Field numbers follow sdk/proto/syncpolicy/v1/syncpolicy.proto. Every field
// number here is below 16, so every tag is one byte.

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/dirsync/dirsync/sdk"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	bytesType  = protowire.BytesType
	varintType = protowire.VarintType
)

// Tags of the request messages.
const (
	// MapRequest and ReconcileRequest
	tagReqDomain  = 1<<3 | byte(bytesType)
	tagReqEntries = 2<<3 | byte(bytesType) // MapRequest.entries
	tagReqChanges = 2<<3 | byte(bytesType) // ReconcileRequest.changes
	tagReqLDAP    = 3<<3 | byte(varintType)

	// Domain
	tagDomainName    = 1<<3 | byte(bytesType)
	tagDomainAliases = 2<<3 | byte(bytesType)
	tagDomainGroups  = 3<<3 | byte(bytesType)

	// Entry and Attribute
	tagEntryID    = 1<<3 | byte(bytesType)
	tagEntryDN    = 2<<3 | byte(bytesType)
	tagEntryAttr  = 3<<3 | byte(bytesType)
	tagAttrName   = 1<<3 | byte(bytesType)
	tagAttrValues = 2<<3 | byte(bytesType)

	// Change
	tagChangeKind  = 1<<3 | byte(varintType)
	tagChangeBef   = 2<<3 | byte(bytesType)
	tagChangeAft   = 3<<3 | byte(bytesType)
	tagChangeGroup = 4<<3 | byte(bytesType)
	tagChangeConfl = 5<<3 | byte(bytesType)

	// Mailbox
	tagMailboxID      = 1<<3 | byte(varintType)
	tagMailboxDirID   = 2<<3 | byte(bytesType)
	tagMailboxDN      = 3<<3 | byte(bytesType)
	tagMailboxKind    = 4<<3 | byte(bytesType)
	tagMailboxPrimary = 5<<3 | byte(bytesType)
	tagMailboxAliases = 6<<3 | byte(bytesType)
	tagMailboxDisplay = 7<<3 | byte(bytesType)
	tagMailboxSource  = 8<<3 | byte(bytesType)
	tagMailboxGroups  = 9<<3 | byte(bytesType)

	// Conflict
	tagConflictAddress = 1<<3 | byte(bytesType)
	tagConflictID      = 2<<3 | byte(varintType)
	tagConflictPrimary = 3<<3 | byte(bytesType)
	tagConflictSource  = 4<<3 | byte(bytesType)
)

// ---- encoding ----

// lenField is the size of a length-delimited field with a one-byte tag and
// a value of n bytes.
func lenField(n int) int {
	if n < 0x80 {
		return 2 + n
	}
	return 1 + protowire.SizeVarint(uint64(n)) + n
}

// strField is the size of a string field: 0 for "", which proto3 omits.
func strField(s string) int {
	if s == "" {
		return 0
	}
	return lenField(len(s))
}

// strsField is the size of a repeated string field (whose empty strings
// are written).
func strsField(ss []string) int {
	n := 0
	for _, s := range ss {
		n += lenField(len(s))
	}
	return n
}

// varintField is the size of a varint field: 0 for 0, which proto3 omits.
func varintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func appendLen(b []byte, tag byte, n int) []byte {
	if n < 0x80 {
		return append(b, tag, byte(n))
	}
	return protowire.AppendVarint(append(b, tag), uint64(n))
}

func appendStr(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	return append(appendLen(b, tag, len(s)), s...)
}

func appendStrs(b []byte, tag byte, ss []string) []byte {
	for _, s := range ss {
		b = append(appendLen(b, tag, len(s)), s...)
	}
	return b
}

func appendVarint(b []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(append(b, tag), v)
}

// enumValue widens an int32 enum as protobuf encodes it (a negative value
// as a 10-byte varint).
func enumValue(v int32) uint64 { return uint64(int64(v)) }

// errNotUTF8 reports a string that is not valid UTF-8, which a proto3
// string field cannot carry.
func errNotUTF8(what string, args ...any) error {
	return fmt.Errorf("abi: %s is not valid UTF-8", fmt.Sprintf(what, args...))
}

func validStrs(ss []string) int {
	for i, s := range ss {
		if !utf8.ValidString(s) {
			return i
		}
	}
	return -1
}

// sizeDomain returns the size of the Domain message of d, or an error if
// one of its strings is not valid UTF-8.
func sizeDomain(d *sdk.Domain) (int, error) {
	if !utf8.ValidString(d.Name) {
		return 0, errNotUTF8("the domain name")
	}
	if i := validStrs(d.AliasDomains); i >= 0 {
		return 0, errNotUTF8("alias domain %d", i)
	}
	if i := validStrs(d.Groups); i >= 0 {
		return 0, errNotUTF8("domain group %d", i)
	}
	return strField(d.Name) + strsField(d.AliasDomains) + strsField(d.Groups), nil
}

func appendDomain(b []byte, d *sdk.Domain, size int) []byte {
	// The request converters always set the domain, so it is written even
	// when empty.
	b = appendLen(b, tagReqDomain, size)
	b = appendStr(b, tagDomainName, d.Name)
	b = appendStrs(b, tagDomainAliases, d.AliasDomains)
	return appendStrs(b, tagDomainGroups, d.Groups)
}

// encodeScratch is what the size pass of an Append function leaves for its
// append pass: the sizes of the request's messages and, for a map request,
// its attributes in the order the size pass met them (so the append pass
// iterates no map, and writes them in the same order).
type encodeScratch struct {
	sizes []int
	attrs []attrRef
}

type attrRef struct {
	name   string
	values []string
	size   int // of the Attribute message
}

var scratchPool = sync.Pool{New: func() any { return new(encodeScratch) }}

// getScratch returns scratch space with n sizes.
func getScratch(n int) *encodeScratch {
	s := scratchPool.Get().(*encodeScratch)
	if cap(s.sizes) < n {
		s.sizes = make([]int, n)
	}
	s.sizes = s.sizes[:n]
	return s
}

// putScratch returns s to the pool, without the caller's strings.
func putScratch(s *encodeScratch) {
	clear(s.attrs)
	s.attrs = s.attrs[:0]
	scratchPool.Put(s)
}

// AppendMapRequest appends to b the wire form of the syncpolicy.v1
// MapRequest of domain d and entries: the bytes of
// proto.Marshal(MapRequestToProto(sdk.MapRequest{Domain: d, Entries: entries})),
// except that the attributes of an entry are written in map iteration order
// (as EntryToProto writes them), so only the decoded message, not the byte
// string, is deterministic. Sizes are computed first, so b is grown at
// most once, by the exact size of the message.
//
// If a string is not valid UTF-8, which a protobuf string cannot be, it
// returns b unchanged and an error; InvalidUTF8 names the string.
func AppendMapRequest(b []byte, d sdk.Domain, entries []sdk.Entry) ([]byte, error) {
	// The size pass: the size of every entry and attribute, and the checks.
	ds, err := sizeDomain(&d)
	if err != nil {
		return b, err
	}
	total := lenField(ds)
	sc := getScratch(len(entries))
	defer putScratch(sc)
	es, attrs := sc.sizes, sc.attrs
	for i := range entries {
		e := &entries[i]
		if !utf8.ValidString(e.ID) || !utf8.ValidString(e.DN) {
			return b, errNotUTF8("the id or DN of entry %d", i)
		}
		n := strField(e.ID) + strField(e.DN)
		for name, values := range e.Attributes {
			if !utf8.ValidString(name) {
				return b, errNotUTF8("an attribute name of entry %d", i)
			}
			a := strField(name)
			for _, v := range values {
				if !utf8.ValidString(v) {
					return b, errNotUTF8("a value of attribute %q of entry %d", name, i)
				}
				a += lenField(len(v))
			}
			attrs = append(attrs, attrRef{name: name, values: values, size: a})
			n += lenField(a)
		}
		es[i] = n
		total += lenField(n)
	}
	sc.attrs = attrs

	// The append pass.
	b = slices.Grow(b, total)
	want := len(b) + total
	b = appendDomain(b, &d, ds)
	k := 0
	for i := range entries {
		e := &entries[i]
		b = appendLen(b, tagReqEntries, es[i])
		b = appendStr(b, tagEntryID, e.ID)
		b = appendStr(b, tagEntryDN, e.DN)
		for end := k + len(e.Attributes); k < end; k++ {
			a := &attrs[k]
			b = appendLen(b, tagEntryAttr, a.size)
			b = appendStr(b, tagAttrName, a.name)
			b = appendStrs(b, tagAttrValues, a.values)
		}
	}
	if len(b) != want || k != len(attrs) {
		panic("abi: entries changed while AppendMapRequest encoded them")
	}
	return b, nil
}

// checkMailbox reports whether the strings of m are valid UTF-8.
func checkMailbox(m *sdk.Mailbox) bool {
	return utf8.ValidString(m.DirID) && utf8.ValidString(m.DN) && utf8.ValidString(m.Kind) &&
		utf8.ValidString(m.Primary) && validStrs(m.Aliases) < 0 && utf8.ValidString(m.DisplayName) &&
		utf8.ValidString(m.Source) && validStrs(m.Groups) < 0
}

func sizeMailbox(m *sdk.Mailbox) int {
	return varintField(uint64(m.ID)) + strField(m.DirID) + strField(m.DN) + strField(m.Kind) +
		strField(m.Primary) + strsField(m.Aliases) + strField(m.DisplayName) + strField(m.Source) +
		strsField(m.Groups)
}

func appendMailbox(b []byte, tag byte, m *sdk.Mailbox) []byte {
	b = appendLen(b, tag, sizeMailbox(m))
	b = appendVarint(b, tagMailboxID, uint64(m.ID))
	b = appendStr(b, tagMailboxDirID, m.DirID)
	b = appendStr(b, tagMailboxDN, m.DN)
	b = appendStr(b, tagMailboxKind, m.Kind)
	b = appendStr(b, tagMailboxPrimary, m.Primary)
	b = appendStrs(b, tagMailboxAliases, m.Aliases)
	b = appendStr(b, tagMailboxDisplay, m.DisplayName)
	b = appendStr(b, tagMailboxSource, m.Source)
	return appendStrs(b, tagMailboxGroups, m.Groups)
}

func sizeConflict(c *sdk.Conflict) int {
	return strField(c.Address) + varintField(uint64(c.MailboxID)) + strField(c.Primary) + strField(c.Source)
}

// sizeChange returns the size of the Change message of c, or an error if
// one of its strings is not valid UTF-8.
func sizeChange(c *sdk.Change) (int, error) {
	if !utf8.ValidString(c.Group) {
		return 0, errNotUTF8("the group")
	}
	n := varintField(enumValue(int32(c.Kind))) + strField(c.Group)
	if c.Before != nil {
		if !checkMailbox(c.Before) {
			return 0, errNotUTF8("a string of the mailbox before")
		}
		n += lenField(sizeMailbox(c.Before))
	}
	if c.After != nil {
		if !checkMailbox(c.After) {
			return 0, errNotUTF8("a string of the mailbox after")
		}
		n += lenField(sizeMailbox(c.After))
	}
	for i := range c.Conflicts {
		x := &c.Conflicts[i]
		if !utf8.ValidString(x.Address) || !utf8.ValidString(x.Primary) || !utf8.ValidString(x.Source) {
			return 0, errNotUTF8("a string of conflict %d", i)
		}
		n += lenField(sizeConflict(x))
	}
	return n, nil
}

// AppendReconcileRequest appends to b the wire form of the syncpolicy.v1
// ReconcileRequest of r: the bytes of
// proto.Marshal(ReconcileRequestToProto(*r)). Sizes are computed first, so
// b is grown at most once, by the exact size of the message.
//
// If a string is not valid UTF-8, which a protobuf string cannot be, it
// returns b unchanged and an error naming the change.
func AppendReconcileRequest(b []byte, r *sdk.ReconcileRequest) ([]byte, error) {
	ds, err := sizeDomain(&r.Domain)
	if err != nil {
		return b, err
	}
	total := lenField(ds) + varintField(uint64(int64(r.LDAPMailboxes)))
	sc := getScratch(len(r.Changes))
	defer putScratch(sc)
	cs := sc.sizes
	for i := range r.Changes {
		n, err := sizeChange(&r.Changes[i])
		if err != nil {
			return b, fmt.Errorf("change %d: %w", i, err)
		}
		cs[i] = n
		total += lenField(n)
	}

	b = slices.Grow(b, total)
	want := len(b) + total
	b = appendDomain(b, &r.Domain, ds)
	for i := range r.Changes {
		c := &r.Changes[i]
		b = appendLen(b, tagReqChanges, cs[i])
		b = appendVarint(b, tagChangeKind, enumValue(int32(c.Kind)))
		if c.Before != nil {
			b = appendMailbox(b, tagChangeBef, c.Before)
		}
		if c.After != nil {
			b = appendMailbox(b, tagChangeAft, c.After)
		}
		b = appendStr(b, tagChangeGroup, c.Group)
		for j := range c.Conflicts {
			x := &c.Conflicts[j]
			b = appendLen(b, tagChangeConfl, sizeConflict(x))
			b = appendStr(b, tagConflictAddress, x.Address)
			b = appendVarint(b, tagConflictID, uint64(x.MailboxID))
			b = appendStr(b, tagConflictPrimary, x.Primary)
			b = appendStr(b, tagConflictSource, x.Source)
		}
	}
	b = appendVarint(b, tagReqLDAP, uint64(int64(r.LDAPMailboxes)))
	if len(b) != want {
		panic("abi: request changed while AppendReconcileRequest encoded it")
	}
	return b, nil
}

// ---- decoding ----

// ErrNoOutcome is the error of DecodeMapReply for a reply that holds
// neither of the outcomes of its oneof.
var ErrNoOutcome = errors.New("reply has neither a result nor an error")

var (
	errMalformed = errors.New("abi: reply is not valid protobuf")
	errReplyUTF8 = errors.New("abi: reply has a string that is not valid UTF-8")
)

// Field numbers of the reply envelope MapReply.
const (
	replyResult = 1
	replyError  = 2
)

// readField reads the field that starts at b[i]. typ is its wire type; v
// is the value of a varint; start:end are the bounds of the value of a
// length-delimited field, and end is where the next field starts. ok is
// false if b is not valid protobuf there, as protobuf-go decides: a bad or
// truncated tag or value, a field number out of range, an end-group tag
// that opens no group, a reserved wire type.
func readField(b []byte, i int) (num protowire.Number, typ protowire.Type, v uint64, start, end int, ok bool) {
	// The common case: a one-byte tag, and a length or value of one byte.
	if i+1 < len(b) {
		t, l := b[i], b[i+1]
		if t < 0x80 && t >= 1<<3 && l < 0x80 {
			switch protowire.Type(t & 7) {
			case bytesType:
				end = i + 2 + int(l)
				return protowire.Number(t >> 3), bytesType, 0, i + 2, end, end <= len(b)
			case varintType:
				return protowire.Number(t >> 3), varintType, uint64(l), i + 2, i + 2, true
			}
		}
	}
	return readFieldSlow(b, i)
}

func readFieldSlow(b []byte, i int) (num protowire.Number, typ protowire.Type, v uint64, start, end int, ok bool) {
	x, n := protowire.ConsumeVarint(b[i:])
	if n < 0 || x>>3 < uint64(protowire.MinValidNumber) || x>>3 > uint64(protowire.MaxValidNumber) {
		return 0, 0, 0, 0, 0, false
	}
	num, typ = protowire.Number(x>>3), protowire.Type(x&7)
	i += n
	switch typ {
	case varintType:
		v, n = protowire.ConsumeVarint(b[i:])
		return num, typ, v, i + n, i + n, n >= 0
	case bytesType:
		v, n = protowire.ConsumeVarint(b[i:])
		if n < 0 || v > uint64(len(b)-i-n) {
			return 0, 0, 0, 0, 0, false
		}
		return num, typ, 0, i + n, i + n + int(v), true
	}
	n = protowire.ConsumeFieldValue(num, typ, b[i:])
	return num, typ, 0, i + n, i + n, n >= 0
}

// str returns b as a string that shares its bytes, or false if b is not
// valid UTF-8.
func str(b []byte) (string, bool) {
	if !utf8.Valid(b) {
		return "", false
	}
	if len(b) == 0 {
		return "", true
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), true
}

// DecodeMapReply decodes the syncpolicy.v1 MapReply in b, as the map stage
// of a WebAssembly policy returns it, straight into the sdk types. For a
// reply that carries a result, resp is what MapResponseFromProto makes of
// the result that proto.Unmarshal decodes (with nil for every empty slice);
// for one that carries an error, flagged is that error (Code, Message and
// Position) and resp is zero.
//
// err is ErrNoOutcome for a reply with neither outcome, and another error
// when b is not a MapReply that proto.Unmarshal accepts: truncated or
// malformed protobuf, or a string that is not valid UTF-8. As with
// protobuf-go, unknown fields are skipped (so is a known field with an
// unexpected wire type), the last outcome on the wire wins, and a message
// field that occurs more than once is merged.
//
// The result shares no memory with b, which the caller may reuse: the
// strings of resp share one copy of the bytes of the result.
func DecodeMapReply(b []byte) (resp sdk.MapResponse, flagged *pb.Error, err error) {
	// The outcome that wins is the last run of occurrences of one of the
	// oneof's fields: protobuf-go merges consecutive occurrences of the same
	// field and starts anew when the other one comes.
	var winner protowire.Number
	runStart, runEnd := 0, 0
	for i := 0; i < len(b); {
		num, typ, _, _, end, ok := readField(b, i)
		if !ok {
			return resp, nil, errMalformed
		}
		if typ == bytesType && (num == replyResult || num == replyError) {
			if num != winner {
				winner, runStart = num, i
			}
			runEnd = end
		}
		i = end
	}
	if winner == 0 {
		return resp, nil, ErrNoOutcome
	}

	// Earlier outcomes are overwritten, but protobuf-go still decodes them
	// and refuses the reply if they are not valid.
	if runStart > 0 {
		var d replyDecoder
		for i := 0; i < runStart; {
			num, typ, _, start, end, _ := readField(b, i)
			i = end
			if typ != bytesType {
				continue
			}
			switch num {
			case replyResult:
				var r sdk.MapResponse
				err = d.mapResponse(b[start:end], &r)
			case replyError:
				_, err = decodeError(b[start:end], &pb.Error{})
			}
			if err != nil {
				return resp, nil, err
			}
		}
	}

	run := b[runStart:runEnd]
	if winner == replyError {
		e := &pb.Error{}
		var msg []byte
		for i := 0; i < len(run); {
			num, typ, _, start, end, _ := readField(run, i)
			i = end
			if num == replyError && typ == bytesType {
				m, err := decodeError(run[start:end], e)
				if err != nil {
					return resp, nil, err
				}
				if m != nil {
					msg = m
				}
			}
		}
		e.Message = string(msg)
		return resp, e, nil
	}

	// The result: one copy of its bytes, which its strings share.
	run = append([]byte(nil), run...)
	intents := 0
	for i := 0; i < len(run); {
		num, typ, _, start, end, _ := readField(run, i)
		i = end
		if num == replyResult && typ == bytesType {
			n, err := countIntents(run[start:end])
			if err != nil {
				return resp, nil, err
			}
			intents += n
		}
	}
	d := replyDecoder{left: intents}
	if intents > 0 {
		resp.Intents = make([]sdk.Intent, 0, intents)
	}
	for i := 0; i < len(run); {
		num, typ, _, start, end, _ := readField(run, i)
		i = end
		if num == replyResult && typ == bytesType {
			if err := d.mapResponse(run[start:end], &resp); err != nil {
				return sdk.MapResponse{}, nil, err
			}
		}
	}
	return resp, nil, nil
}

// DecodeMapResponse decodes a bare syncpolicy.v1 MapResponse, as the Map
// call of a plugin process returns it over gRPC, straight into the sdk
// types: what MapResponseFromProto makes of what proto.Unmarshal decodes.
// It fails where proto.Unmarshal does. Unlike DecodeMapReply it copies
// nothing: the strings of the result alias b, which must not change
// afterwards.
func DecodeMapResponse(b []byte) (sdk.MapResponse, error) {
	var resp sdk.MapResponse
	n, err := countIntents(b)
	if err != nil {
		return resp, err
	}
	d := replyDecoder{left: n}
	if n > 0 {
		resp.Intents = make([]sdk.Intent, 0, n)
	}
	if err := d.mapResponse(b, &resp); err != nil {
		return sdk.MapResponse{}, err
	}
	return resp, nil
}

// decodeError merges the Error in b into e, but for its message, which it
// returns (nil if b has none). Like protobuf-go, it keeps the fields it
// does not know (or that have an unexpected wire type) as e's unknown
// fields, so that e is proto.Equal to what proto.Unmarshal decodes.
func decodeError(b []byte, e *pb.Error) (msg []byte, err error) {
	var unknown []byte
	for i := 0; i < len(b); {
		num, typ, v, start, end, ok := readField(b, i)
		if !ok {
			return nil, errMalformed
		}
		switch {
		case typ == varintType && num == 1:
			e.Code = pb.ErrorCode(int32(v))
		case typ == varintType && num == 3:
			e.Position = int64(v)
		case typ == bytesType && num == 2:
			if !utf8.Valid(b[start:end]) {
				return nil, errReplyUTF8
			}
			msg = b[start:end:end]
		default:
			// protobuf-go writes the tag anew (at its minimal length) and
			// keeps the value as it is.
			_, n := protowire.ConsumeVarint(b[i:])
			unknown = protowire.AppendTag(unknown, num, typ)
			unknown = append(unknown, b[i+n:end]...)
		}
		i = end
	}
	if unknown != nil {
		r := e.ProtoReflect()
		r.SetUnknown(append(r.GetUnknown(), unknown...))
	}
	return msg, nil
}

// countIntents counts the intents of the MapResponse in b.
func countIntents(b []byte) (int, error) {
	n := 0
	for i := 0; i < len(b); {
		num, typ, _, _, end, ok := readField(b, i)
		if !ok {
			return 0, errMalformed
		}
		if num == 1 && typ == bytesType {
			n++
		}
		i = end
	}
	return n, nil
}

// replyDecoder decodes the messages of a MapResponse. It carves string
// slices and mailbox intents from shared chunks, so that a reply of
// thousands of intents does not allocate once per slice or mailbox.
type replyDecoder struct {
	strs      []string            // the current chunk of string slices
	mailboxes []sdk.MailboxIntent // the current chunk of mailbox intents
	left      int                 // intents left to decode: no chunk needs more mailboxes
	single    bool                // one intent: slices of their own, no chunks

	// Scratch space: the strings of a repeated field, or the skipped
	// addresses of an intent, before they move to a slice of their own.
	s1, s2  []string
	skipped []sdk.SkippedAddress
}

const strChunk = 4096

// take returns an empty slice with room for n strings, where n > 0. The
// caller appends at most n strings.
func (d *replyDecoder) take(n int) []string {
	if n > strChunk/4 || d.single {
		return make([]string, 0, n)
	}
	if cap(d.strs)-len(d.strs) < n {
		d.strs = make([]string, 0, strChunk)
	}
	s := d.strs[len(d.strs) : len(d.strs) : len(d.strs)+n]
	d.strs = d.strs[:len(d.strs)+n]
	return s
}

// join returns old with add appended. A new slice (old is nil) is carved
// from the chunk; add being empty leaves old as it is (nil stays nil). A
// slice carved from the chunk has no room beyond its length, so appending
// to it moves it out of the chunk (and later appends are amortized, as for
// any slice: a reply that repeats a message field many times does not take
// quadratic time).
func (d *replyDecoder) join(old, add []string) []string {
	if len(add) == 0 {
		return old
	}
	if old == nil {
		return append(d.take(len(add)), add...)
	}
	return append(old, add...)
}

// mailboxChunk bounds the mailbox intents allocated at once, so that a reply
// of many intents but few mailboxes does not allocate a mailbox per intent.
const mailboxChunk = 512

func (d *replyDecoder) newMailbox() *sdk.MailboxIntent {
	if len(d.mailboxes) == 0 {
		d.mailboxes = make([]sdk.MailboxIntent, min(max(d.left, 1), mailboxChunk))
	}
	m := &d.mailboxes[0]
	d.mailboxes = d.mailboxes[1:]
	return m
}

// mapResponse decodes the MapResponse in b, appending its intents to
// r.Intents.
func (d *replyDecoder) mapResponse(b []byte, r *sdk.MapResponse) error {
	for i := 0; i < len(b); {
		num, typ, _, start, end, ok := readField(b, i)
		if !ok {
			return errMalformed
		}
		i = end
		if num == 1 && typ == bytesType {
			r.Intents = append(r.Intents, sdk.Intent{})
			if err := d.intent(b[start:end], &r.Intents[len(r.Intents)-1]); err != nil {
				return err
			}
			d.left--
		}
	}
	return nil
}

func (d *replyDecoder) intent(b []byte, in *sdk.Intent) error {
	skipped := d.skipped[:0]
	for i := 0; i < len(b); {
		num, typ, v, start, end, ok := readField(b, i)
		if !ok {
			return errMalformed
		}
		i = end
		if typ == varintType {
			if num == 1 {
				in.Kind = sdk.IntentKind(int32(v))
			}
			continue
		}
		if typ != bytesType {
			continue
		}
		var err error
		switch num {
		case 2:
			if in.Reason, ok = str(b[start:end]); !ok {
				return errReplyUTF8
			}
		case 3:
			if in.Mailbox == nil {
				in.Mailbox = d.newMailbox()
			}
			err = d.mailboxIntent(b[start:end], in.Mailbox)
		case 4:
			if in.Group == nil {
				in.Group = &sdk.GroupIntent{}
			}
			err = d.groupIntent(b[start:end], in.Group)
		case 5:
			var s sdk.SkippedAddress
			err = skippedAddress(b[start:end], &s)
			skipped = append(skipped, s)
		}
		if err != nil {
			return err
		}
	}
	if len(skipped) > 0 {
		in.Skipped = slices.Clone(skipped)
		clear(skipped)
	}
	d.skipped = skipped
	return nil
}

// mailboxIntent merges the MailboxIntent in b into m.
func (d *replyDecoder) mailboxIntent(b []byte, m *sdk.MailboxIntent) error {
	aliases, memberOf := d.s1[:0], d.s2[:0]
	for i := 0; i < len(b); {
		num, typ, _, start, end, ok := readField(b, i)
		if !ok {
			return errMalformed
		}
		i = end
		if typ != bytesType || num > 5 {
			continue
		}
		s, ok := str(b[start:end])
		if !ok {
			return errReplyUTF8
		}
		switch num {
		case 1:
			m.Kind = s
		case 2:
			m.Primary = s
		case 3:
			aliases = append(aliases, s)
		case 4:
			m.DisplayName = s
		case 5:
			memberOf = append(memberOf, s)
		}
	}
	m.Aliases = d.join(m.Aliases, aliases)
	m.MemberOf = d.join(m.MemberOf, memberOf)
	d.s1, d.s2 = aliases, memberOf
	return nil
}

// groupIntent merges the GroupIntent in b into g.
func (d *replyDecoder) groupIntent(b []byte, g *sdk.GroupIntent) error {
	members := d.s1[:0]
	for i := 0; i < len(b); {
		num, typ, v, start, end, ok := readField(b, i)
		if !ok {
			return errMalformed
		}
		i = end
		if typ == varintType {
			if num == 4 {
				g.Nested = v != 0
			}
			continue
		}
		if typ != bytesType || num > 3 {
			continue
		}
		s, ok := str(b[start:end])
		if !ok {
			return errReplyUTF8
		}
		switch num {
		case 1:
			g.Name = s
		case 2:
			g.Target = s
		case 3:
			members = append(members, s)
		}
	}
	g.Members = d.join(g.Members, members)
	d.s1 = members
	return nil
}

func skippedAddress(b []byte, s *sdk.SkippedAddress) error {
	for i := 0; i < len(b); {
		num, typ, _, start, end, ok := readField(b, i)
		if !ok {
			return errMalformed
		}
		i = end
		if typ != bytesType || num > 2 {
			continue
		}
		v, ok := str(b[start:end])
		if !ok {
			return errReplyUTF8
		}
		if num == 1 {
			s.Address = v
		} else {
			s.Reason = v
		}
	}
	return nil
}

// ---- one Intent ----

func sizeMailboxIntent(m *sdk.MailboxIntent) int {
	return strField(m.Kind) + strField(m.Primary) + strsField(m.Aliases) + strField(m.DisplayName) + strsField(m.MemberOf)
}

func sizeGroupIntent(g *sdk.GroupIntent) int {
	n := strField(g.Name) + strField(g.Target) + strsField(g.Members)
	if g.Nested {
		n += 2
	}
	return n
}

// validIntent reports whether the strings of in are valid UTF-8.
func validIntent(in *sdk.Intent) bool {
	if !utf8.ValidString(in.Reason) {
		return false
	}
	if m := in.Mailbox; m != nil && (!utf8.ValidString(m.Kind) || !utf8.ValidString(m.Primary) || validStrs(m.Aliases) >= 0 ||
		!utf8.ValidString(m.DisplayName) || validStrs(m.MemberOf) >= 0) {
		return false
	}
	if g := in.Group; g != nil && (!utf8.ValidString(g.Name) || !utf8.ValidString(g.Target) || validStrs(g.Members) >= 0) {
		return false
	}
	for _, s := range in.Skipped {
		if !utf8.ValidString(s.Address) || !utf8.ValidString(s.Reason) {
			return false
		}
	}
	return true
}

// AppendIntent appends to b the wire form of the syncpolicy.v1 Intent of
// in: the bytes of proto.Marshal(IntentToProto(in)). If a string is not
// valid UTF-8 it returns b unchanged and an error.
func AppendIntent(b []byte, in *sdk.Intent) ([]byte, error) {
	if !validIntent(in) {
		return b, errors.New("an intent with a string that is not valid UTF-8")
	}
	b = appendVarint(b, 1<<3|byte(varintType), enumValue(int32(in.Kind)))
	b = appendStr(b, 2<<3|byte(bytesType), in.Reason)
	if m := in.Mailbox; m != nil {
		b = appendLen(b, 3<<3|byte(bytesType), sizeMailboxIntent(m))
		b = appendStr(b, 1<<3|byte(bytesType), m.Kind)
		b = appendStr(b, 2<<3|byte(bytesType), m.Primary)
		b = appendStrs(b, 3<<3|byte(bytesType), m.Aliases)
		b = appendStr(b, 4<<3|byte(bytesType), m.DisplayName)
		b = appendStrs(b, 5<<3|byte(bytesType), m.MemberOf)
	}
	if g := in.Group; g != nil {
		b = appendLen(b, 4<<3|byte(bytesType), sizeGroupIntent(g))
		b = appendStr(b, 1<<3|byte(bytesType), g.Name)
		b = appendStr(b, 2<<3|byte(bytesType), g.Target)
		b = appendStrs(b, 3<<3|byte(bytesType), g.Members)
		if g.Nested {
			b = append(b, 4<<3|byte(varintType), 1)
		}
	}
	for _, s := range in.Skipped {
		b = appendLen(b, 5<<3|byte(bytesType), strField(s.Address)+strField(s.Reason))
		b = appendStr(b, 1<<3|byte(bytesType), s.Address)
		b = appendStr(b, 2<<3|byte(bytesType), s.Reason)
	}
	return b, nil
}

// DecodeIntent decodes a syncpolicy.v1 Intent straight into the sdk type:
// what IntentFromProto makes of what proto.Unmarshal decodes. It fails
// where proto.Unmarshal does. The strings of the result alias b, which must
// not change afterwards.
func DecodeIntent(b []byte) (sdk.Intent, error) {
	var in sdk.Intent
	d := replyDecoder{left: 1, single: true}
	if err := d.intent(b, &in); err != nil {
		return sdk.Intent{}, err
	}
	return in, nil
}
