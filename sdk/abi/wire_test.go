package abi_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	"github.com/dirsync/dirsync/sdk/internal/fixture"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The direct codec (wire.go) must agree with the generated code: a request
// it encodes is what proto.Marshal encodes of the message abi makes, and a
// reply it decodes is what proto.Unmarshal + MapResponseFromProto make of
// it, or an error exactly when proto.Unmarshal fails or finds no outcome.

var wireDomain = sdk.Domain{Name: "example.com", AliasDomains: []string{"example.org", "example.net"}, Groups: []string{"Sales", "All Staff"}}

// sortAttributes sorts the attributes of every entry of m by name (the
// direct codec writes them in map iteration order, as EntryToProto does).
func sortAttributes(m *pb.MapRequest) {
	for _, e := range m.Entries {
		slices.SortFunc(e.Attributes, func(a, b *pb.Attribute) int { return strings.Compare(a.Name, b.Name) })
	}
}

func TestAppendMapRequest(t *testing.T) {
	oneAttr := make([]sdk.Entry, 300)
	for i := range oneAttr {
		oneAttr[i] = sdk.Entry{ID: fmt.Sprint(i), DN: strings.Repeat("x", i), Attributes: map[string][]string{"member": fixture.Values(i % 7)}}
	}
	for _, tc := range []struct {
		name    string
		domain  sdk.Domain
		entries []sdk.Entry
		exact   bool // at most one attribute per entry: the bytes are proto.Marshal's
	}{
		{"zero", sdk.Domain{}, nil, true},
		{"empty entries", sdk.Domain{}, []sdk.Entry{}, true},
		{"domain only", wireDomain, nil, true},
		{"empty domain strings", sdk.Domain{AliasDomains: []string{""}, Groups: []string{"", ""}}, nil, true},
		{"no attributes", wireDomain, []sdk.Entry{{}, {ID: "only-id"}, {DN: "CN=only DN"}, {ID: "x", DN: "y", Attributes: map[string][]string{}}}, true},
		{"one attribute", wireDomain, []sdk.Entry{
			{ID: "a", Attributes: map[string][]string{"mail": {"a@example.com"}}},
			{ID: "b", Attributes: map[string][]string{"": nil}},
			{ID: "c", Attributes: map[string][]string{"novalues": nil}},
			{ID: "d", Attributes: map[string][]string{"emptyvalues": {}}},
			{ID: "e", Attributes: map[string][]string{"empty": {"", "", "x"}}},
			{ID: "f", Attributes: map[string][]string{"": {""}}},
		}, true},
		{"unicode", sdk.Domain{Name: "exämple.com", AliasDomains: []string{"例え.jp"}, Groups: []string{"Ünits 😀"}}, []sdk.Entry{
			{ID: "ü", DN: "CN=Ann Exämple 😀,DC=example,DC=com", Attributes: map[string][]string{"displayname": {"Ann Exämple 😀", "\u2028", "\x00"}}},
		}, true},
		{"long strings", wireDomain, []sdk.Entry{
			{ID: strings.Repeat("i", 200), DN: strings.Repeat("d", 20000), Attributes: map[string][]string{strings.Repeat("n", 128): {strings.Repeat("v", 1<<17)}}},
		}, true},
		{"large attribute", wireDomain, []sdk.Entry{{DN: "CN=Sales", Attributes: map[string][]string{"member": fixture.Values(5000)}}}, true},
		{"one attribute, many entries", wireDomain, oneAttr, true},
		{"several attributes", wireDomain, []sdk.Entry{
			{ID: "3f2504e0-4f89-11d3-9a0c-0305e82c3301", DN: "CN=Ann Example,OU=People,DC=example,DC=com", Attributes: map[string][]string{
				"mail":           {"ann@example.com"},
				"proxyaddresses": {"SMTP:ann@example.com", "smtp:ann@example.org", "X500:/o=Example/cn=ann"},
				"objectguid":     {"4AQlP4lP0xGaDAMF6CwzAQ=="},
				"displayname":    {"Ann Exämple 😀"},
				"novalues":       nil,
				"emptyvalue":     {""},
				"":               {"nameless"},
			}},
			{ID: "no-attributes"},
			{},
			{DN: "CN=Sales,OU=Groups,DC=example,DC=com", Attributes: map[string][]string{"member": fixture.Values(2000), "cn": {"Sales"}}},
		}, false},
		{"many entries", wireDomain, fixture.Entries(3000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := sdk.MapRequest{Domain: tc.domain, Entries: tc.entries}
			want := abi.MapRequestToProto(req)
			wantBytes, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			for _, prefix := range [][]byte{nil, []byte("prefix"), make([]byte, 3, 3+len(wantBytes))} {
				got, err := abi.AppendMapRequest(prefix, tc.domain, tc.entries)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:len(prefix)], prefix) {
					t.Fatalf("prefix changed: %q", got[:len(prefix)])
				}
				body := got[len(prefix):]
				if len(body) != len(wantBytes) {
					t.Fatalf("%d bytes, proto.Marshal gives %d", len(body), len(wantBytes))
				}
				if tc.exact && !bytes.Equal(body, wantBytes) {
					t.Fatalf("bytes differ from proto.Marshal's:\n got %x\nwant %x", body, wantBytes)
				}
				var m pb.MapRequest
				if err := proto.Unmarshal(body, &m); err != nil {
					t.Fatal(err)
				}
				sortAttributes(&m)
				sortAttributes(want)
				if !proto.Equal(&m, want) {
					t.Fatalf("decodes to\n%v\nwant\n%v", &m, want)
				}
				if u := m.ProtoReflect().GetUnknown(); len(u) != 0 {
					t.Fatalf("unknown fields: %x", u)
				}
			}
		})
	}
}

// raceEnabled reports whether the race detector is on; it makes sync.Pool
// drop some of what it is given.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func TestAppendMapRequestAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("sync.Pool drops scratch space under the race detector")
	}
	entries := fixture.Entries(100)
	buf, err := abi.AppendMapRequest(nil, wireDomain, entries)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(20, func() { abi.AppendMapRequest(buf[:0], wireDomain, entries) }); n != 0 {
		t.Errorf("%v allocations into a buffer with room", n)
	}
	if n := testing.AllocsPerRun(20, func() { abi.AppendMapRequest(nil, wireDomain, entries) }); n != 1 {
		t.Errorf("%v allocations into a nil buffer, want 1", n)
	}
}

const bad = "ok\xffok"

func TestAppendMapRequestInvalidUTF8(t *testing.T) {
	entry := func(id, dn, name, value string) []sdk.Entry {
		return []sdk.Entry{fixture.Entries(1)[0], {ID: id, DN: dn, Attributes: map[string][]string{"cn": {"x"}, name: {"y", value}}}}
	}
	for _, tc := range []struct {
		name    string
		domain  sdk.Domain
		entries []sdk.Entry
	}{
		{"id", wireDomain, entry(bad, "dn", "a", "v")},
		{"dn", wireDomain, entry("id", bad, "a", "v")},
		{"attribute name", wireDomain, entry("id", "dn", bad, "v")},
		{"value", wireDomain, entry("id", "dn", "a", bad)},
		{"lone surrogate", wireDomain, entry("id", "dn", "a", "\xed\xa0\x80")},
		{"truncated rune", wireDomain, entry("id", "dn", "a", "ü"[:1])},
		{"domain name", sdk.Domain{Name: bad}, nil},
		{"alias domain", sdk.Domain{Name: "x", AliasDomains: []string{"a", bad}}, nil},
		{"domain group", sdk.Domain{Groups: []string{bad}}, fixture.Entries(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := proto.Marshal(abi.MapRequestToProto(sdk.MapRequest{Domain: tc.domain, Entries: tc.entries})); err == nil {
				t.Fatal("proto.Marshal accepts it")
			}
			prefix := []byte("prefix")
			got, err := abi.AppendMapRequest(prefix, tc.domain, tc.entries)
			if err == nil {
				t.Fatal("no error")
			}
			if !bytes.Equal(got, prefix) {
				t.Errorf("b changed to %q", got)
			}
			if tc.entries != nil && tc.domain.Name == wireDomain.Name && abi.InvalidUTF8(tc.entries) == "" {
				t.Error("InvalidUTF8 does not find it")
			}
		})
	}
}

func wireMailbox(id int64) *sdk.Mailbox {
	return &sdk.Mailbox{ID: id, DirID: "3f2504e0-4f89-11d3-9a0c-0305e82c3301", DN: "CN=Ann,OU=People,DC=example,DC=com",
		Kind: sdk.KindUser, Primary: "ann@example.com", Aliases: []string{"a@example.com", "ann@example.org"},
		DisplayName: "Ann Exämple", Source: sdk.SourceLDAP, Groups: []string{"Sales", "All Staff"}}
}

// creates makes the changes of a first sync of n users.
func creates(n int) []sdk.Change {
	cs := make([]sdk.Change, n)
	for i := range cs {
		cs[i] = sdk.Change{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{
			DirID: fmt.Sprintf("%08x-4f89-11d3-9a0c-0305e82c3301", i), DN: fmt.Sprintf("CN=User %d,OU=People,DC=example,DC=com", i),
			Kind: sdk.KindUser, Primary: fmt.Sprintf("user%d@example.com", i), Aliases: []string{fmt.Sprintf("u%d@example.org", i)},
			DisplayName: fmt.Sprintf("User Number %d", i), Source: sdk.SourceLDAP, Groups: []string{"Sales"}}}
	}
	return cs
}

var reconcileRequests = []struct {
	name string
	req  sdk.ReconcileRequest
}{
	{"zero", sdk.ReconcileRequest{}},
	{"domain only", sdk.ReconcileRequest{Domain: wireDomain}},
	{"ldap mailboxes", sdk.ReconcileRequest{LDAPMailboxes: 100000}},
	{"negative ldap mailboxes", sdk.ReconcileRequest{LDAPMailboxes: -5}},
	{"huge ldap mailboxes", sdk.ReconcileRequest{LDAPMailboxes: math.MaxInt64}},
	{"changes", sdk.ReconcileRequest{Domain: wireDomain, LDAPMailboxes: 3, Changes: []sdk.Change{
		{Kind: sdk.ChangeCreate, After: wireMailbox(0)},
		{Kind: sdk.ChangeCreate, After: wireMailbox(0), Conflicts: []sdk.Conflict{
			{Address: "a@example.com", MailboxID: 12, Primary: "c@example.com", Source: sdk.SourceManual},
			{},
			{Address: "ü@example.com", MailboxID: -1},
			{MailboxID: math.MaxInt64},
		}},
		{Kind: sdk.ChangeUpdate, Before: wireMailbox(1), After: wireMailbox(1)},
		{Kind: sdk.ChangeUpdate, Before: wireMailbox(1 << 40), After: &sdk.Mailbox{ID: 1 << 40, Aliases: []string{""}, Groups: []string{}}},
		{Kind: sdk.ChangeDelete, Before: wireMailbox(math.MaxInt64)},
		{Kind: sdk.ChangeDelete, Before: wireMailbox(-7)},
		{Kind: sdk.ChangeAddMember, Before: wireMailbox(2), After: wireMailbox(2), Group: "Sales"},
		{Kind: sdk.ChangeRemoveMember, Before: wireMailbox(2), After: wireMailbox(2), Group: "All Staff 😀"},
		{Kind: sdk.ChangeAdopt, Before: &sdk.Mailbox{Source: sdk.SourceManual}, After: &sdk.Mailbox{}},
		{},
		{Kind: sdk.ChangeKind(-1)},
		{Kind: sdk.ChangeKind(200), Group: strings.Repeat("g", 300)},
		{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{DisplayName: strings.Repeat("d", 70000), Aliases: fixture.Values(100)}},
	}}},
	{"many creates", sdk.ReconcileRequest{Domain: wireDomain, LDAPMailboxes: 5000, Changes: creates(5000)}},
}

func TestAppendReconcileRequest(t *testing.T) {
	for _, tc := range reconcileRequests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := proto.Marshal(abi.ReconcileRequestToProto(tc.req))
			if err != nil {
				t.Fatal(err)
			}
			for _, prefix := range [][]byte{nil, []byte("prefix")} {
				got, err := abi.AppendReconcileRequest(prefix, &tc.req)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:len(prefix)], prefix) {
					t.Fatalf("prefix changed: %q", got[:len(prefix)])
				}
				if !bytes.Equal(got[len(prefix):], want) {
					t.Fatalf("bytes differ from proto.Marshal's:\n got %x\nwant %x", got[len(prefix):], want)
				}
			}
		})
	}
}

func TestAppendReconcileRequestInvalidUTF8(t *testing.T) {
	mailbox := func(f func(*sdk.Mailbox)) *sdk.Mailbox {
		m := wireMailbox(1)
		f(m)
		return m
	}
	change := func(c sdk.Change) sdk.ReconcileRequest {
		return sdk.ReconcileRequest{Domain: wireDomain, Changes: []sdk.Change{{Kind: sdk.ChangeCreate, After: wireMailbox(0)}, c}}
	}
	for _, tc := range []struct {
		name string
		req  sdk.ReconcileRequest
	}{
		{"domain name", sdk.ReconcileRequest{Domain: sdk.Domain{Name: bad}}},
		{"alias domain", sdk.ReconcileRequest{Domain: sdk.Domain{AliasDomains: []string{bad}}}},
		{"domain group", sdk.ReconcileRequest{Domain: sdk.Domain{Groups: []string{"x", bad}}}},
		{"group", change(sdk.Change{Kind: sdk.ChangeAddMember, Group: bad})},
		{"before dir id", change(sdk.Change{Before: mailbox(func(m *sdk.Mailbox) { m.DirID = bad })})},
		{"before dn", change(sdk.Change{Before: mailbox(func(m *sdk.Mailbox) { m.DN = bad })})},
		{"after kind", change(sdk.Change{After: mailbox(func(m *sdk.Mailbox) { m.Kind = bad })})},
		{"after primary", change(sdk.Change{After: mailbox(func(m *sdk.Mailbox) { m.Primary = bad })})},
		{"after alias", change(sdk.Change{After: mailbox(func(m *sdk.Mailbox) { m.Aliases = []string{"a", bad} })})},
		{"after display name", change(sdk.Change{After: mailbox(func(m *sdk.Mailbox) { m.DisplayName = bad })})},
		{"after source", change(sdk.Change{After: mailbox(func(m *sdk.Mailbox) { m.Source = bad })})},
		{"after group", change(sdk.Change{After: mailbox(func(m *sdk.Mailbox) { m.Groups = []string{bad} })})},
		{"conflict address", change(sdk.Change{Conflicts: []sdk.Conflict{{}, {Address: bad}}})},
		{"conflict primary", change(sdk.Change{Conflicts: []sdk.Conflict{{Primary: bad}}})},
		{"conflict source", change(sdk.Change{Conflicts: []sdk.Conflict{{Source: bad}}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := proto.Marshal(abi.ReconcileRequestToProto(tc.req)); err == nil {
				t.Fatal("proto.Marshal accepts it")
			}
			prefix := []byte("prefix")
			got, err := abi.AppendReconcileRequest(prefix, &tc.req)
			if err == nil {
				t.Fatal("no error")
			}
			if !bytes.Equal(got, prefix) {
				t.Errorf("b changed to %q", got)
			}
		})
	}
}

// ---- DecodeMapReply ----

// Builders of hand-made protobuf, for what proto.Marshal does not write.
func msg(fields ...[]byte) []byte { return bytes.Join(fields, nil) }

func fbytes(num protowire.Number, fields ...[]byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), msg(fields...))
}

func fstr(num protowire.Number, s string) []byte { return fbytes(num, []byte(s)) }

func fvarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func resultReply(t testing.TB, r sdk.MapResponse) []byte {
	return mustMarshal(t, &pb.MapReply{Outcome: &pb.MapReply_Result{Result: abi.MapResponseToProto(r)}})
}

func errorReply(t testing.TB, e *pb.Error) []byte {
	return mustMarshal(t, &pb.MapReply{Outcome: &pb.MapReply_Error{Error: e}})
}

// mailboxIntents makes n intents of new mailboxes.
func mailboxIntents(n int) sdk.MapResponse {
	r := sdk.MapResponse{Intents: make([]sdk.Intent, n)}
	for i := range r.Intents {
		r.Intents[i] = sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser,
			Primary: fmt.Sprintf("user%d@example.com", i), Aliases: []string{fmt.Sprintf("u%d@example.org", i)},
			DisplayName: fmt.Sprintf("User %d", i), MemberOf: []string{"CN=Sales,DC=example,DC=com"}}}
	}
	return r
}

var allIntents = allKinds(3000)

// allKinds makes intents of every kind and shape; the nested group has
// members members.
func allKinds(members int) sdk.MapResponse {
	return sdk.MapResponse{Intents: []sdk.Intent{
		{Kind: sdk.IntentSkip, Reason: "no address in the domain", Skipped: []sdk.SkippedAddress{
			{Address: "x@other.test", Reason: "other domain"}, {}, {Address: "ü@example.com"}, {Reason: "only a reason"}}},
		{Kind: sdk.IntentSkip},
		{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "ann@example.com", Aliases: []string{"a@example.com", "", "ann@example.org"},
			DisplayName: "Ann Exämple 😀", MemberOf: []string{"CN=Sales,DC=example,DC=com", "CN=All Staff,DC=example,DC=com"}},
			Skipped: []sdk.SkippedAddress{{Address: "ann@other.test", Reason: "other domain"}}},
		{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindPublicFolder, Primary: "pf@example.com"}},
		{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{}},
		{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "Sales", Target: "Sales", Members: []string{"CN=Ann,DC=example,DC=com", "CN=Bob,DC=example,DC=com"}}},
		{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "All Staff", Target: "All Staff", Members: fixture.Values(members), Nested: true}},
		{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Nested: true}},
		{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{}},
		{Kind: sdk.IntentHold, Reason: "primary address \"j\uFFFDrgen@example.com\" is not usable: invalid UTF-8 from the directory",
			Skipped: []sdk.SkippedAddress{{Address: "j\uFFFDrgen@example.com", Reason: "invalid UTF-8 from the directory"},
				{Address: "J\uFFFDrgen", Reason: "displayName has invalid UTF-8 from the directory"}}},
		{Kind: sdk.IntentHold},
		{Kind: sdk.IntentKind(42), Mailbox: &sdk.MailboxIntent{Primary: "both@example.com"}, Group: &sdk.GroupIntent{Name: "both set"}},
		{Kind: sdk.IntentKind(-3), Reason: strings.Repeat("r", 300)},
		{},
	}}
}

// checkReply checks DecodeMapReply against proto.Unmarshal and
// MapResponseFromProto for the reply in b, and that the result does not
// share memory with b. It returns the outcome of DecodeMapReply.
func checkReply(t *testing.T, b []byte) (sdk.MapResponse, *pb.Error, error) {
	t.Helper()
	b = bytes.Clone(b)
	var m pb.MapReply
	perr := proto.Unmarshal(b, &m) // copies its strings
	resp, flagged, err := abi.DecodeMapReply(b)
	for i := range b {
		b[i] = 0xAA // the caller reuses its buffer
	}
	switch {
	case perr != nil:
		if err == nil || errors.Is(err, abi.ErrNoOutcome) {
			t.Fatalf("proto.Unmarshal fails (%v), DecodeMapReply gives %v, %v, %v", perr, resp, flagged, err)
		}
	case m.GetOutcome() == nil:
		if err != abi.ErrNoOutcome {
			t.Fatalf("no outcome, DecodeMapReply gives %v, %v, %v", resp, flagged, err)
		}
	case err != nil:
		t.Fatalf("proto.Unmarshal decodes %v, DecodeMapReply fails: %v", &m, err)
	case m.GetError() != nil:
		if !proto.Equal(flagged, m.GetError()) || !reflect.DeepEqual(resp, sdk.MapResponse{}) {
			t.Fatalf("DecodeMapReply gives %v, %v, want error %v", resp, flagged, m.GetError())
		}
	default:
		want := abi.MapResponseFromProto(m.GetResult())
		if flagged != nil || !reflect.DeepEqual(resp, want) {
			t.Fatalf("DecodeMapReply gives\n%#v, %v\nwant\n%#v", resp, flagged, want)
		}
	}
	if err != nil && (flagged != nil || !reflect.DeepEqual(resp, sdk.MapResponse{})) {
		t.Fatalf("an error (%v) and a result: %v, %v", err, resp, flagged)
	}
	return resp, flagged, err
}

// TestDecodeMapResponse decodes bare responses (the gRPC form) and the
// bodies of bad replies, and checks them against proto.Unmarshal and
// MapResponseFromProto.
func TestDecodeMapResponse(t *testing.T) {
	bodies := [][]byte{nil, mustMarshal(t, abi.MapResponseToProto(allIntents)), mustMarshal(t, abi.MapResponseToProto(mailboxIntents(100)))}
	for _, c := range badReplies {
		bodies = append(bodies, c.reply)
	}
	for i, b := range bodies {
		var m pb.MapResponse
		perr := proto.Unmarshal(b, &m)
		got, err := abi.DecodeMapResponse(bytes.Clone(b))
		switch {
		case perr != nil && err == nil:
			t.Errorf("body %d: proto.Unmarshal fails (%v), DecodeMapResponse gives %v", i, perr, got)
		case perr == nil && err != nil:
			t.Errorf("body %d: proto.Unmarshal decodes it, DecodeMapResponse fails: %v", i, err)
		case perr == nil && !reflect.DeepEqual(got, abi.MapResponseFromProto(&m)):
			t.Errorf("body %d: DecodeMapResponse gives\n%#v\nwant\n%#v", i, got, abi.MapResponseFromProto(&m))
		}
	}
}

func TestDecodeMapReply(t *testing.T) {
	panicErr := &pb.Error{Code: pb.ErrorCode_ERROR_CODE_PANIC, Message: "runtime error: index out of range [3] with length 3"}
	filterErr := &pb.Error{Code: pb.ErrorCode_ERROR_CODE_INVALID_FILTER, Message: "unbalanced ( ü", Position: 17}
	for _, tc := range []struct {
		name    string
		reply   []byte
		want    *sdk.MapResponse // for a result
		flagged *pb.Error        // for an error
	}{
		{"empty result", resultReply(t, sdk.MapResponse{}), &sdk.MapResponse{}, nil},
		{"one skip", resultReply(t, sdk.MapResponse{Intents: []sdk.Intent{{}}}), &sdk.MapResponse{Intents: []sdk.Intent{{}}}, nil},
		{"all kinds", resultReply(t, allIntents), &allIntents, nil},
		{"mailboxes", resultReply(t, mailboxIntents(3000)), ptr(mailboxIntents(3000)), nil},
		{"plain error", errorReply(t, &pb.Error{Message: "no"}), nil, &pb.Error{Message: "no"}},
		{"empty error", errorReply(t, &pb.Error{}), nil, &pb.Error{}},
		{"panic", errorReply(t, panicErr), nil, panicErr},
		{"invalid filter", errorReply(t, filterErr), nil, filterErr},
		{"negative code and position", errorReply(t, &pb.Error{Code: -1, Position: -1}), nil, &pb.Error{Code: -1, Position: -1}},
		{"result then error", msg(resultReply(t, allIntents), errorReply(t, panicErr)), nil, panicErr},
		{"error then result", msg(errorReply(t, panicErr), resultReply(t, allIntents)), &allIntents, nil},
		{"error, result, error", msg(errorReply(t, filterErr), resultReply(t, allIntents), errorReply(t, panicErr)), nil, panicErr},
		{"result, error, result", msg(resultReply(t, allIntents), errorReply(t, panicErr), resultReply(t, mailboxIntents(2))), ptr(mailboxIntents(2)), nil},
		{"two results merge", msg(resultReply(t, mailboxIntents(2)), resultReply(t, allIntents)),
			&sdk.MapResponse{Intents: append(mailboxIntents(2).Intents, allIntents.Intents...)}, nil},
		{"two errors merge", msg(errorReply(t, filterErr), errorReply(t, &pb.Error{Message: "second"})), nil,
			&pb.Error{Code: filterErr.Code, Message: "second", Position: filterErr.Position}},
		{"error fields written as zero", msg(errorReply(t, filterErr), fbytes(2, fvarint(1, 0), fstr(2, ""), fvarint(3, 0))), nil, &pb.Error{}},
		{"error with unknown fields", msg(fbytes(2, fvarint(1, 2), fstr(9, "x"), fstr(1, "wrong type"), []byte{0xa8, 0x80, 0x00, 0x05}),
			fbytes(2, protowire.AppendFixed64(protowire.AppendTag(nil, 3, protowire.Fixed64Type), 7))), nil, nil},
		{"unknown fields", msg(fvarint(3, 7), fstr(99, "x"), resultReply(t, allIntents), fbytes(1<<20, []byte{0xff}),
			protowire.AppendFixed32(protowire.AppendTag(nil, 5, protowire.Fixed32Type), 1)), &allIntents, nil},
		{"wrong wire types", msg(fvarint(1, 1), fvarint(2, 1), fbytes(1, fbytes(1, fstr(1, "x"), fvarint(2, 1), fvarint(3, 3), fvarint(4, 4), fvarint(5, 5)))),
			&sdk.MapResponse{Intents: []sdk.Intent{{}}}, nil},
		{"merged mailbox", fbytes(1, fbytes(1, fvarint(1, 1),
			fbytes(3, fstr(2, "first@example.com"), fstr(3, "a1"), fstr(5, "m1")),
			fstr(2, "reason"),
			fbytes(3, fstr(1, sdk.KindUser), fstr(3, "a2"), fstr(3, "a3")),
			fbytes(3, fstr(2, "last@example.com"), fstr(5, "m2")))),
			&sdk.MapResponse{Intents: []sdk.Intent{{Kind: sdk.IntentMailbox, Reason: "reason", Mailbox: &sdk.MailboxIntent{
				Kind: sdk.KindUser, Primary: "last@example.com", Aliases: []string{"a1", "a2", "a3"}, MemberOf: []string{"m1", "m2"}}}}}, nil},
		{"merged group", fbytes(1, fbytes(1,
			fbytes(4, fstr(1, "g"), fstr(3, "m1"), fvarint(4, 1)),
			fbytes(4, fstr(3, "m2"), fvarint(4, 0), fstr(2, "t")))),
			&sdk.MapResponse{Intents: []sdk.Intent{{Group: &sdk.GroupIntent{Name: "g", Target: "t", Members: []string{"m1", "m2"}}}}}, nil},
		{"empty then non-empty", fbytes(1, fbytes(1, fbytes(3), fbytes(3, fstr(3, "a")))),
			&sdk.MapResponse{Intents: []sdk.Intent{{Mailbox: &sdk.MailboxIntent{Aliases: []string{"a"}}}}}, nil},
		{"non-minimal varints", fbytes(1, fbytes(1, []byte{0x88, 0x80, 0x00, 0x02}, fbytes(4, []byte{0x20, 0x82, 0x80, 0x80, 0x00}))),
			&sdk.MapResponse{Intents: []sdk.Intent{{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Nested: true}}}}, nil},
		{"long length", msg([]byte{0x0a, 0x84, 0x00}, fbytes(1), fbytes(1)),
			&sdk.MapResponse{Intents: []sdk.Intent{{}, {}}}, nil},
		{"group-encoded unknown field", msg(fbytes(1, fbytes(1, fstr(2, "r"), protowire.AppendTag(nil, 7, protowire.StartGroupType),
			fvarint(1, 1), fstr(2, "x"), protowire.AppendTag(nil, 7, protowire.EndGroupType)))),
			&sdk.MapResponse{Intents: []sdk.Intent{{Reason: "r"}}}, nil},
		{"big kind", fbytes(1, fbytes(1, fvarint(1, 1<<32+2))), &sdk.MapResponse{Intents: []sdk.Intent{{Kind: sdk.IntentGroup}}}, nil},
		{"hold (ABI 1.2)", fbytes(1, fbytes(1, fvarint(1, 3), fstr(2, "bad data"))),
			&sdk.MapResponse{Intents: []sdk.Intent{{Kind: sdk.IntentHold, Reason: "bad data"}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, flagged, err := checkReply(t, tc.reply)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !reflect.DeepEqual(resp, *tc.want) {
				t.Errorf("result\n%#v\nwant\n%#v", resp, *tc.want)
			}
			if tc.flagged != nil && !proto.Equal(flagged, tc.flagged) {
				t.Errorf("flagged %v, want %v", flagged, tc.flagged)
			}
			// Every proper prefix is truncated, or stops at a field boundary
			// and decodes as proto.Unmarshal decodes it.
			for n := range len(tc.reply) {
				if len(tc.reply) > 2000 && n%97 != 0 {
					continue
				}
				checkReply(t, tc.reply[:n])
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// badReplies are replies that proto.Unmarshal refuses.
var badReplies = []struct {
	name  string
	reply []byte
}{
	{"truncated tag", []byte{0x8a}},
	{"truncated length", []byte{0x0a, 0x80}},
	{"truncated result", []byte{0x0a, 0x05, 0x0a, 0x00}},
	{"truncated intent", msg([]byte{0x0a, 0x02}, []byte{0x0a, 0x05})},
	{"truncated mailbox", fbytes(1, fbytes(1, []byte{0x1a, 0x09}, fstr(1, "user")))},
	{"truncated kind", fbytes(1, fbytes(1, []byte{0x08, 0x80}))},
	{"field 0", []byte{0x02, 0x00}},
	{"field 0 in intent", fbytes(1, fbytes(1, []byte{0x00, 0x01}))},
	{"field number too large", fbytes(1, fbytes(1, protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3|2), []byte{0}))},
	{"tag overflow", msg([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02})},
	{"varint overflow", fbytes(1, fbytes(1, []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}))},
	{"end group", []byte{0x0c}},
	{"end group in result", fbytes(1, []byte{0x0c})},
	{"unmatched group", fbytes(1, fbytes(1, []byte{0x13, 0x1c}))},
	{"reserved wire type", fbytes(1, []byte{0x0e})},
	{"length beyond the message", msg(fbytes(1, fbytes(1, []byte{0x12, 0x05})), []byte("abcde"))},
	{"bad reason", fbytes(1, fbytes(1, fstr(2, bad)))},
	{"bad mailbox kind", fbytes(1, fbytes(1, fbytes(3, fstr(1, bad))))},
	{"bad primary", fbytes(1, fbytes(1, fbytes(3, fstr(2, bad))))},
	{"bad alias", fbytes(1, fbytes(1, fbytes(3, fstr(3, "x"), fstr(3, bad))))},
	{"bad display name", fbytes(1, fbytes(1, fbytes(3, fstr(4, bad))))},
	{"bad member of", fbytes(1, fbytes(1, fbytes(3, fstr(5, bad))))},
	{"bad group name", fbytes(1, fbytes(1, fbytes(4, fstr(1, bad))))},
	{"bad group target", fbytes(1, fbytes(1, fbytes(4, fstr(2, bad))))},
	{"bad member", fbytes(1, fbytes(1, fbytes(4, fstr(3, bad))))},
	{"bad skipped address", fbytes(1, fbytes(1, fbytes(5, fstr(1, bad))))},
	{"bad skip reason", fbytes(1, fbytes(1, fbytes(5, fstr(2, bad))))},
	{"bad error message", fbytes(2, fvarint(1, 2), fstr(2, bad))},
	{"bad overwritten string", fbytes(1, fbytes(1, fstr(2, bad), fstr(2, "fine")))},
	{"bad result before an error", msg(fbytes(1, fbytes(1, fstr(2, bad))), fbytes(2, fstr(2, "e")))},
	{"bad error before a result", msg(fbytes(2, fstr(2, bad)), fbytes(1))},
	{"truncated result before an error", msg(fbytes(1, []byte{0x0a, 0x03}), fbytes(2, fstr(2, "e")))},
	{"truncated error before a result", msg(fbytes(2, []byte{0x12, 0x03}), fbytes(1))},
	{"bad string after an outcome", msg(fbytes(1), fbytes(1, fbytes(1, fstr(2, bad))))},
}

func TestDecodeMapReplyErrors(t *testing.T) {
	for _, tc := range badReplies {
		t.Run(tc.name, func(t *testing.T) {
			if err := proto.Unmarshal(tc.reply, &pb.MapReply{}); err == nil {
				t.Fatal("proto.Unmarshal accepts it")
			}
			if _, _, err := checkReply(t, tc.reply); err == nil {
				t.Fatal("no error")
			}
		})
	}
	for _, b := range [][]byte{nil, {}, fvarint(1, 1), fstr(3, "x"), fvarint(2, 0)} {
		checkReply(t, b)
		if _, _, err := abi.DecodeMapReply(b); err != abi.ErrNoOutcome {
			t.Errorf("%x: %v, want ErrNoOutcome", b, err)
		}
	}
}

func TestDecodeMapReplyDoesNotAlias(t *testing.T) {
	b := resultReply(t, allIntents)
	resp, _, err := abi.DecodeMapReply(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'x'
	}
	if !reflect.DeepEqual(resp, allIntents) {
		t.Errorf("the result changed with its input:\n%#v", resp)
	}
	b = errorReply(t, &pb.Error{Message: "message"})
	_, flagged, err := abi.DecodeMapReply(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if flagged.GetMessage() != "message" {
		t.Errorf("the error changed with its input: %v", flagged)
	}
}

// TestDecodeMapReplySlices checks that the slices of a result do not share
// room: appending to one does not change another.
func TestDecodeMapReplySlices(t *testing.T) {
	resp, _, err := abi.DecodeMapReply(resultReply(t, mailboxIntents(100)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range resp.Intents {
		mb := resp.Intents[i].Mailbox
		mb.Aliases = append(mb.Aliases, "appended")
		mb.MemberOf = append(mb.MemberOf, "appended")
	}
	for i := range resp.Intents {
		mb := resp.Intents[i].Mailbox
		if want := fmt.Sprintf("u%d@example.org", i); len(mb.Aliases) != 2 || mb.Aliases[0] != want || mb.MemberOf[0] != "CN=Sales,DC=example,DC=com" {
			t.Fatalf("intent %d: %+v", i, mb)
		}
	}
	resp.Intents = append(resp.Intents, sdk.Intent{})
}

// TestDecodeMapReplyRepeatedFields decodes a mailbox field repeated
// 100,000 times in one intent, which protobuf merges into one mailbox: in
// linear time, not quadratic.
func TestDecodeMapReplyRepeatedFields(t *testing.T) {
	const n = 100000
	alias := fbytes(3, fstr(3, "a"), fstr(5, "m"))
	intent := bytes.Repeat(alias, n)
	resp, _, err := checkReply(t, fbytes(1, fbytes(1, intent)))
	if err != nil {
		t.Fatal(err)
	}
	if mb := resp.Intents[0].Mailbox; len(mb.Aliases) != n || len(mb.MemberOf) != n {
		t.Errorf("%d aliases and %d groups, want %d", len(mb.Aliases), len(mb.MemberOf), n)
	}
}

func FuzzDecodeMapReply(f *testing.F) {
	// Small seeds: the fuzzer minimizes every new input, and large ones
	// take it minutes.
	for _, r := range []sdk.MapResponse{{}, allKinds(3), mailboxIntents(3)} {
		f.Add(resultReply(f, r))
	}
	f.Add(errorReply(f, &pb.Error{Code: pb.ErrorCode_ERROR_CODE_INVALID_FILTER, Message: "unbalanced (", Position: 17}))
	f.Add(msg(resultReply(f, mailboxIntents(1)), errorReply(f, &pb.Error{Message: "x"}), resultReply(f, allKinds(1))))
	f.Add(fbytes(1, fbytes(1, fbytes(3, fstr(3, "a")), fbytes(3, fstr(3, "b")), fbytes(4, fvarint(4, 1)), fbytes(4, fstr(3, "c")))))
	for _, tc := range badReplies {
		f.Add(tc.reply)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkReply(t, b)
	})
}

// ---- benchmarks ----
//
//	go test -run '^$' -bench 'MapRequest|MapReply|ReconcileRequest' -benchmem ./sdk/abi

func BenchmarkAppendMapRequest(b *testing.B) {
	entries := fixture.Entries(5000)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := abi.AppendMapRequest(nil, wireDomain, entries); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct-reuse", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = abi.AppendMapRequest(buf[:0], wireDomain, entries); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(abi.MapRequestToProto(sdk.MapRequest{Domain: wireDomain, Entries: entries})); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecodeMapReply(b *testing.B) {
	reply := resultReply(b, mailboxIntents(5000))
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(reply)))
		for b.Loop() {
			if _, _, err := abi.DecodeMapReply(reply); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(reply)))
		for b.Loop() {
			var m pb.MapReply
			if err := proto.Unmarshal(reply, &m); err != nil {
				b.Fatal(err)
			}
			_ = abi.MapResponseFromProto(m.GetResult())
		}
	})
}

func BenchmarkAppendReconcileRequest(b *testing.B) {
	r := sdk.ReconcileRequest{Domain: wireDomain, Changes: creates(100000)}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := abi.AppendReconcileRequest(nil, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(abi.ReconcileRequestToProto(r)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestIntent encodes every intent of allKinds with AppendIntent and
// decodes it with DecodeIntent, against proto.Marshal and proto.Unmarshal.
func TestIntent(t *testing.T) {
	for i, in := range allKinds(3).Intents {
		b, err := abi.AppendIntent(nil, &in)
		if err != nil {
			t.Fatalf("intent %d: %v", i, err)
		}
		if want := mustMarshal(t, abi.IntentToProto(&in)); !bytes.Equal(b, want) {
			t.Errorf("intent %d: AppendIntent gives\n%x\nproto.Marshal\n%x", i, b, want)
		}
		var m pb.Intent
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		got, err := abi.DecodeIntent(b)
		if want := abi.IntentFromProto(&m); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("intent %d: DecodeIntent gives %#v, %v; want %#v", i, got, err, want)
		}
	}
	bad := sdk.Intent{Mailbox: &sdk.MailboxIntent{Aliases: []string{"\xff"}}}
	if _, err := abi.AppendIntent(nil, &bad); err == nil {
		t.Error("AppendIntent takes a string that is not UTF-8")
	}
	for _, b := range [][]byte{{0x12, 0x02, 0xc3, 0x28}, {0x1a, 0x05, 0x0a}, {0xff}} {
		if in, err := abi.DecodeIntent(b); err == nil {
			t.Errorf("DecodeIntent(%x) = %#v, want an error", b, in)
		}
	}
}
