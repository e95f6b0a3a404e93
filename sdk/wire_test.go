package sdk_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	"github.com/dirsync/dirsync/sdk/filter"
	"github.com/dirsync/dirsync/sdk/internal/fixture"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The guest's wire codec (wire.go) must agree with the generated code: a
// request the host encodes with abi + proto.Marshal decodes to the value the
// host started from, and a reply the guest encodes decodes with
// proto.Unmarshal + abi to the value the guest started from.

func domain() sdk.Domain {
	return sdk.Domain{Name: "example.com", AliasDomains: []string{"example.org", "example.net"}, Groups: []string{"Sales", "All Staff"}}
}

var mapRequests = []struct {
	name string
	req  sdk.MapRequest
}{
	{"zero", sdk.MapRequest{}},
	{"domain only", sdk.MapRequest{Domain: domain()}},
	{"entries", sdk.MapRequest{Domain: domain(), Entries: []sdk.Entry{
		{ID: "3f2504e0-4f89-11d3-9a0c-0305e82c3301", DN: "CN=Ann Example,OU=People,DC=example,DC=com", Attributes: map[string][]string{
			"mail":           {"ann@example.com"},
			"proxyaddresses": {"SMTP:ann@example.com", "smtp:ann@example.org", "X500:/o=Example/cn=ann"},
			"objectguid":     {"4AQlP4lP0xGaDAMF6CwzAQ=="},
			"displayname":    {"Ann Exämple 😀"},
			"novalues":       nil,
		}},
		{ID: "no-attributes"},
		{},
		{DN: "CN=Sales,OU=Groups,DC=example,DC=com", Attributes: map[string][]string{"member": fixture.Values(2000)}},
	}}},
	{"many entries", sdk.MapRequest{Domain: domain(), Entries: fixture.Entries(3000)}},
}

func TestDecodeMapRequest(t *testing.T) {
	for _, tc := range mapRequests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(abi.MapRequestToProto(tc.req))
			if err != nil {
				t.Fatal(err)
			}
			got, err := sdk.DecodeMapRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.req) {
				t.Errorf("decoded %+v\nwant %+v", got, tc.req)
			}
			got, err = sdk.DecodeMapRequestValuesOnly(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.req) {
				t.Errorf("decoded for a ValuesOnly policy %+v\nwant %+v", got, tc.req)
			}
		})
	}
}

func mailbox(id int64) *sdk.Mailbox {
	return &sdk.Mailbox{ID: id, DirID: "guid-1", DN: "CN=Ann,DC=example,DC=com", Kind: sdk.KindUser,
		Primary: "ann@example.com", Aliases: []string{"a@example.com", "ann@example.org"}, DisplayName: "Ann",
		Source: sdk.SourceLDAP, Groups: []string{"All Staff", "Sales"}}
}

var reconcileRequests = []struct {
	name string
	req  sdk.ReconcileRequest
}{
	{"zero", sdk.ReconcileRequest{}},
	{"changes", sdk.ReconcileRequest{Domain: domain(), LDAPMailboxes: 1234, Changes: []sdk.Change{
		{Kind: sdk.ChangeCreate, After: mailbox(0), Conflicts: []sdk.Conflict{{Address: "a@example.com", MailboxID: 7, Primary: "b@example.com", Source: sdk.SourceManual}}},
		{Kind: sdk.ChangeUpdate, Before: mailbox(5), After: mailbox(5)},
		{Kind: sdk.ChangeDelete, Before: mailbox(1 << 40)},
		{Kind: sdk.ChangeAddMember, Before: mailbox(5), After: mailbox(5), Group: "Sales"},
		{Kind: sdk.ChangeRemoveMember, Group: "All Staff"},
		{Kind: sdk.ChangeAdopt, Before: &sdk.Mailbox{}},
		{Kind: sdk.ChangeKind(-3)},
		{},
	}}},
	{"negative count", sdk.ReconcileRequest{LDAPMailboxes: -1}},
}

func TestDecodeReconcileRequest(t *testing.T) {
	for _, tc := range reconcileRequests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(abi.ReconcileRequestToProto(tc.req))
			if err != nil {
				t.Fatal(err)
			}
			got, err := sdk.DecodeReconcileRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.req) {
				t.Errorf("decoded %+v\nwant %+v", got, tc.req)
			}
		})
	}
}

func TestDecodeFilterRequest(t *testing.T) {
	for _, f := range []string{"", "(objectClass=user)", "(|(a=ü)(b=*))"} {
		b, err := proto.Marshal(abi.FilterRequestToProto(sdk.FilterRequest{Filter: f}))
		if err != nil {
			t.Fatal(err)
		}
		got, err := sdk.DecodeFilterRequest(b)
		if err != nil || got.Filter != f {
			t.Errorf("DecodeFilterRequest(%q) = %q, %v", f, got.Filter, err)
		}
	}
}

func TestDecodeConfigureRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  map[string]any
	}{
		{"nil", nil},
		{"empty", map[string]any{}},
		{"scalars", map[string]any{"nested_groups": true, "off": false, "limit": int64(500), "ratio": 0.1, "name": "x", "none": nil}},
		{"nested", map[string]any{
			"list":   []any{int64(1), "two", []any{}, map[string]any{"k": "v"}},
			"table":  map[string]any{"inner": map[string]any{"deep": []string{"a", "b"}}},
			"tables": []map[string]any{{"a": int64(1)}, {"b": false}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := abi.ConfigureRequestToProto(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sdk.DecodeConfigureRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			want, err := abi.NormalizeConfig(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded %#v\nwant %#v", got, want)
			}
		})
	}
}

// unmarshalReply decodes a reply envelope into m and returns its Error.
func unmarshalReply(t *testing.T, b []byte, m interface {
	proto.Message
	GetError() *pb.Error
}) *pb.Error {
	t.Helper()
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatalf("reply does not decode: %v", err)
	}
	return m.GetError()
}

func TestEncodeReplies(t *testing.T) {
	infos := []sdk.Info{
		{},
		{Name: "standard", Version: "1.2.3", ABIMajor: 1, ABIMinor: 7, Attributes: []string{"mail", "proxyaddresses", "memberof"}},
		{Name: "conflicts", Reconcile: sdk.ReconcileConflicts},
	}
	for _, in := range infos {
		var r pb.InfoReply
		if e := unmarshalReply(t, sdk.EncodeInfoReply(&in), &r); e != nil || r.GetResult() == nil {
			t.Fatalf("InfoReply has no result: %v", &r)
		}
		if got := abi.InfoFromProto(r.GetResult()); !reflect.DeepEqual(got, in) {
			t.Errorf("Info: got %+v, want %+v", got, in)
		}
	}

	var cr pb.ConfigureReply
	if e := unmarshalReply(t, sdk.EncodeConfigureReply(), &cr); e != nil || cr.GetResult() == nil {
		t.Errorf("ConfigureReply has no result: %v", &cr)
	}

	for _, f := range []string{"", "(cn=x)"} {
		var r pb.FilterReply
		if e := unmarshalReply(t, sdk.EncodeFilterReply(&sdk.FilterResponse{Filter: f}), &r); e != nil || r.GetResult() == nil {
			t.Fatalf("FilterReply has no result: %v", &r)
		}
		if got := r.GetResult().GetFilter(); got != f {
			t.Errorf("Filter: got %q, want %q", got, f)
		}
	}

	mapResponses := []sdk.MapResponse{
		{},
		{Intents: []sdk.Intent{
			{Kind: sdk.IntentSkip, Reason: "disabled account"},
			{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "ann@example.com",
				Aliases: []string{"a@example.com"}, DisplayName: "Ann 😀", MemberOf: []string{"CN=Sales,DC=example,DC=com"}},
				Skipped: []sdk.SkippedAddress{{Address: "ann@other.test", Reason: "not in the domain"}, {}}},
			{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "Sales", Target: "Sales", Members: fixture.Values(3)}},
			{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "Unmatched"}},
			{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{}},
			{Kind: sdk.IntentHold, Reason: "primary address \"j\uFFFDrgen@example.com\" is not usable: invalid UTF-8 from the directory",
				Skipped: []sdk.SkippedAddress{{Address: "j\uFFFDrgen@example.com", Reason: "invalid UTF-8 from the directory"}}},
			{Kind: sdk.IntentHold},
			{Kind: sdk.IntentKind(-1), Mailbox: &sdk.MailboxIntent{Primary: "x"}, Group: &sdk.GroupIntent{Name: "both"}},
			{},
		}},
	}
	for _, resp := range mapResponses {
		var r pb.MapReply
		if e := unmarshalReply(t, sdk.EncodeMapReply(&resp), &r); e != nil || r.GetResult() == nil {
			t.Fatalf("MapReply has no result: %v", &r)
		}
		if got := abi.MapResponseFromProto(r.GetResult()); !reflect.DeepEqual(got, resp) {
			t.Errorf("MapResponse: got %+v\nwant %+v", got, resp)
		}
		// The host's direct decoder reads what the guest writes.
		got, flagged, err := abi.DecodeMapReply(sdk.EncodeMapReply(&resp))
		if err != nil || flagged != nil || !reflect.DeepEqual(got, resp) {
			t.Errorf("DecodeMapReply: got %+v, %v, %v\nwant %+v", got, flagged, err, resp)
		}
	}

	repl := &sdk.Change{Kind: sdk.ChangeUpdate, Before: mailbox(3), After: mailbox(3),
		Conflicts: []sdk.Conflict{{Address: "x@example.com", MailboxID: 9, Primary: "y@example.com", Source: sdk.SourceManual}}}
	reconcileResponses := []sdk.ReconcileResponse{
		{},
		{Decisions: []sdk.Decision{
			{Index: 0, Action: sdk.Veto, Reason: "keep"},
			{Index: 3, Action: sdk.Replace, Replacement: repl},
			{Index: 1 << 40, Action: sdk.Accept},
			{Index: -1, Action: sdk.Action(9), Replacement: &sdk.Change{}},
		}},
	}
	for _, resp := range reconcileResponses {
		var r pb.ReconcileReply
		if e := unmarshalReply(t, sdk.EncodeReconcileReply(&resp), &r); e != nil || r.GetResult() == nil {
			t.Fatalf("ReconcileReply has no result: %v", &r)
		}
		if got := abi.ReconcileResponseFromProto(r.GetResult()); !reflect.DeepEqual(got, resp) {
			t.Errorf("ReconcileResponse: got %+v\nwant %+v", got, resp)
		}
	}
}

func TestEncodeError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{errors.New("boom"), &abi.Error{Message: "boom"}},
		{&sdk.FilterError{Position: 0, Reason: "missing ("}, &sdk.FilterError{Position: 0, Reason: "missing ("}},
		{fmt.Errorf("wrapped: %w", &sdk.FilterError{Position: 12, Reason: "empty &"}), &sdk.FilterError{Position: 12, Reason: "empty &"}},
		{errors.New("bad \xff utf-8"), &abi.Error{Message: `"bad \xff utf-8"`}},
	} {
		var r pb.MapReply // every envelope has the same Error field
		e := unmarshalReply(t, sdk.EncodeError(tc.err), &r)
		if got := abi.ErrorFromProto(e); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: got %#v, want %#v", tc.err, got, tc.want)
		}
	}
}

// testPolicy is a policy whose stages can be made to fail.
type testPolicy struct{ fail, panics bool }

func (p testPolicy) Info() sdk.Info {
	if p.panics {
		panic("info exploded")
	}
	return sdk.Info{Name: "test"}
}

func (p testPolicy) Configure(cfg map[string]any) error {
	if p.fail {
		return fmt.Errorf("bad config %v", cfg)
	}
	return nil
}

func (p testPolicy) Filter(r sdk.FilterRequest) (sdk.FilterResponse, error) {
	if p.fail {
		return sdk.FilterResponse{}, &sdk.FilterError{Position: 3, Reason: "nope"}
	}
	return sdk.FilterResponse{Filter: strings.ToLower(r.Filter)}, nil
}

func (p testPolicy) Map(r sdk.MapRequest) (sdk.MapResponse, error) {
	if p.panics {
		var m map[string]int
		m["x"] = 1 // a runtime error, not a plain panic
	}
	return sdk.MapResponse{Intents: make([]sdk.Intent, len(r.Entries))}, nil
}

func (p testPolicy) Reconcile(sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	return sdk.ReconcileResponse{}, nil
}

// valuesPolicy says ValuesOnly in its Info and maps each entry to a
// mailbox whose display name tells what its accessors found.
type valuesPolicy struct{ testPolicy }

func (valuesPolicy) Info() sdk.Info { return sdk.Info{Name: "values", ValuesOnly: true} }

func (valuesPolicy) Map(r sdk.MapRequest) (sdk.MapResponse, error) {
	f, err := filter.Parse("(&(cn=ann*)(mail=*))")
	if err != nil {
		return sdk.MapResponse{}, err
	}
	var resp sdk.MapResponse
	for _, e := range r.Entries {
		var names []string
		for name, vs := range e.All() {
			names = append(names, fmt.Sprintf("%s=%d", name, len(vs)))
		}
		slices.Sort(names)
		got := fmt.Sprintf("map:%v get:%q values:%q match:%v all:%v", e.Attributes != nil, e.Get("cn"),
			e.Values("mail"), f.Match(e), names)
		resp.Intents = append(resp.Intents, sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{DisplayName: got}})
	}
	return resp, nil
}

// TestValuesOnly: a policy whose Info says ValuesOnly gets entries without
// the Attributes map, whose Get, Values and All, and filter matching, read
// what the map would hold (a repeated attribute's values joined, an
// attribute without values present).
func TestValuesOnly(t *testing.T) {
	entries := []sdk.Entry{
		{ID: "1", Attributes: map[string][]string{"cn": {"Ann"}, "mail": {"ann@example.com", "a@example.com"}, "empty": nil}},
		{ID: "2", Attributes: map[string][]string{"cn": {"Bob"}}},
		{ID: "3"},
	}
	req, err := proto.Marshal(abi.MapRequestToProto(sdk.MapRequest{Entries: entries}))
	if err != nil {
		t.Fatal(err)
	}
	// The same entry 1 once more, with its mail attribute sent twice (a
	// repeated name: the general decoder).
	m := abi.MapRequestToProto(sdk.MapRequest{Entries: entries[:1]})
	m.Entries[0].Attributes = append(m.Entries[0].Attributes, &pb.Attribute{Name: "mail", Values: []string{"x@example.com"}})
	more, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`map:false get:"Ann" values:["ann@example.com" "a@example.com"] match:true all:[cn=1 empty=0 mail=2]`,
		`map:false get:"Bob" values:[] match:false all:[cn=1]`,
		`map:false get:"" values:[] match:false all:[]`,
		`map:false get:"Ann" values:["ann@example.com" "a@example.com" "x@example.com"] match:true all:[cn=1 empty=0 mail=3]`,
	}
	var got []string
	for _, b := range [][]byte{req, more} {
		var r pb.MapReply
		if e := unmarshalReply(t, sdk.Handle(valuesPolicy{}, sdk.StageMap, b), &r); e != nil {
			t.Fatalf("map: %v", e)
		}
		for _, in := range r.GetResult().GetIntents() {
			got = append(got, in.GetMailbox().GetDisplayName())
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Without ValuesOnly the same accessors read the map.
	var r pb.MapReply
	if e := unmarshalReply(t, sdk.Handle(mapPolicy{}, sdk.StageMap, req), &r); e != nil {
		t.Fatalf("map: %v", e)
	}
	if d := r.GetResult().GetIntents()[0].GetMailbox().GetDisplayName(); !strings.HasPrefix(d, "map:true ") || !strings.HasSuffix(d, want[0][len("map:false"):]) {
		t.Errorf("with the map: %s", d)
	}
}

// mapPolicy is valuesPolicy without ValuesOnly.
type mapPolicy struct{ valuesPolicy }

func (mapPolicy) Info() sdk.Info { return sdk.Info{Name: "map"} }

func TestHandle(t *testing.T) {
	mapReq, _ := proto.Marshal(abi.MapRequestToProto(sdk.MapRequest{Entries: fixture.Entries(2)}))
	filterReq, _ := proto.Marshal(abi.FilterRequestToProto(sdk.FilterRequest{Filter: "(CN=X)"}))
	for _, tc := range []struct {
		name     string
		p        sdk.Policy
		stage    int
		req      []byte
		wantCode pb.ErrorCode
		wantMsg  string // substring of the error message; "" for success
	}{
		{"info", testPolicy{}, sdk.StageInfo, nil, 0, ""},
		{"filter", testPolicy{}, sdk.StageFilter, filterReq, 0, ""},
		{"map", testPolicy{}, sdk.StageMap, mapReq, 0, ""},
		{"reconcile", testPolicy{}, sdk.StageReconcile, nil, 0, ""},
		{"configure", testPolicy{}, sdk.StageConfigure, nil, 0, ""},
		{"not registered", nil, sdk.StageMap, mapReq, pb.ErrorCode_ERROR_CODE_NOT_REGISTERED, "sdk.Register"},
		{"configure error", testPolicy{fail: true}, sdk.StageConfigure, nil, pb.ErrorCode_ERROR_CODE_UNSPECIFIED, "bad config"},
		{"filter error", testPolicy{fail: true}, sdk.StageFilter, filterReq, pb.ErrorCode_ERROR_CODE_INVALID_FILTER, "nope"},
		{"panic", testPolicy{panics: true}, sdk.StageInfo, nil, pb.ErrorCode_ERROR_CODE_PANIC, "info exploded (at "},
		{"runtime error", testPolicy{panics: true}, sdk.StageMap, mapReq, pb.ErrorCode_ERROR_CODE_PANIC, "assignment to entry in nil map (at "},
		{"truncated request", testPolicy{}, sdk.StageMap, mapReq[:len(mapReq)-1], pb.ErrorCode_ERROR_CODE_BAD_REQUEST, "malformed"},
		{"unknown stage", testPolicy{}, 42, nil, pb.ErrorCode_ERROR_CODE_BAD_REQUEST, "unknown stage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replies := map[int]interface {
				proto.Message
				GetError() *pb.Error
			}{
				sdk.StageInfo: &pb.InfoReply{}, sdk.StageConfigure: &pb.ConfigureReply{}, sdk.StageFilter: &pb.FilterReply{},
				sdk.StageMap: &pb.MapReply{}, sdk.StageReconcile: &pb.ReconcileReply{},
			}
			r, ok := replies[tc.stage]
			if !ok {
				r = &pb.ConfigureReply{} // an error reply decodes as any envelope
			}
			if err := proto.Unmarshal(sdk.Handle(tc.p, tc.stage, tc.req), r); err != nil {
				t.Fatal(err)
			}
			e := r.GetError()
			if tc.wantMsg == "" {
				if e != nil {
					t.Fatalf("unexpected error %v", e)
				}
				return
			}
			if e == nil {
				t.Fatalf("no error, want %v %q", tc.wantCode, tc.wantMsg)
			}
			if e.GetCode() != tc.wantCode || !strings.Contains(e.GetMessage(), tc.wantMsg) {
				t.Errorf("error %v %q, want %v containing %q", e.GetCode(), e.GetMessage(), tc.wantCode, tc.wantMsg)
			}
			if tc.name == "runtime error" && !strings.Contains(e.GetMessage(), "wire_test.go") {
				t.Errorf("panic message %q does not name the policy's file", e.GetMessage())
			}
		})
	}
}

func TestUnknownFieldsAreSkipped(t *testing.T) {
	m := abi.MapRequestToProto(sdk.MapRequest{Domain: domain(), Entries: fixture.Entries(2)})
	var unknown []byte
	unknown = protowire.AppendTag(unknown, 99, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 7)
	unknown = protowire.AppendTag(unknown, 100, protowire.BytesType)
	unknown = protowire.AppendString(unknown, "from a newer host")
	unknown = protowire.AppendTag(unknown, 101, protowire.Fixed32Type)
	unknown = protowire.AppendFixed32(unknown, 1)
	unknown = protowire.AppendTag(unknown, 102, protowire.Fixed64Type)
	unknown = protowire.AppendFixed64(unknown, 1)
	m.ProtoReflect().SetUnknown(unknown)
	m.Entries[0].ProtoReflect().SetUnknown(unknown)
	m.Entries[0].Attributes[0].ProtoReflect().SetUnknown(unknown)
	m.Domain.ProtoReflect().SetUnknown(unknown)
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	checkMapRequestBytes(t, b)
}

// checkMapRequestBytes checks that the guest decodes b exactly as the
// generated code and package abi do, whenever the generated code accepts b.
func checkMapRequestBytes(t *testing.T, b []byte) {
	t.Helper()
	var m pb.MapRequest
	if proto.Unmarshal(b, &m) != nil {
		_, _ = sdk.DecodeMapRequest(b) // must not panic; may accept what protobuf-go refuses (invalid UTF-8)
		return
	}
	got, err := sdk.DecodeMapRequest(b)
	if err != nil {
		t.Fatalf("guest refuses what protobuf-go accepts: %v", err)
	}
	want := abi.MapRequestFromProto(&m)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("guest decoded %+v\nprotobuf-go + abi %+v", got, want)
	}
	if got, err = sdk.DecodeMapRequestValuesOnly(b); err != nil {
		t.Fatalf("guest, for a ValuesOnly policy: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("guest decoded for a ValuesOnly policy %+v\nprotobuf-go + abi %+v", got, want)
	}
}

func checkReconcileRequestBytes(t *testing.T, b []byte) {
	t.Helper()
	var m pb.ReconcileRequest
	if proto.Unmarshal(b, &m) != nil {
		_, _ = sdk.DecodeReconcileRequest(b)
		return
	}
	got, err := sdk.DecodeReconcileRequest(b)
	if err != nil {
		t.Fatalf("guest refuses what protobuf-go accepts: %v", err)
	}
	if want := abi.ReconcileRequestFromProto(&m); !reflect.DeepEqual(got, want) {
		t.Fatalf("guest decoded %+v\nprotobuf-go + abi %+v", got, want)
	}
}

func TestDuplicateFields(t *testing.T) {
	// Protobuf merges a message field that occurs twice and concatenates
	// repeated ones; an attribute name that occurs twice concatenates too.
	one, _ := proto.Marshal(abi.MapRequestToProto(sdk.MapRequest{Domain: domain(), Entries: fixture.Entries(1)}))
	two, _ := proto.Marshal(&pb.MapRequest{Domain: &pb.Domain{Name: "second.example", Groups: []string{"G"}},
		Entries: []*pb.Entry{{Id: "x", Attributes: []*pb.Attribute{{Name: "a", Values: []string{"1"}}, {Name: "a", Values: []string{"2", "3"}}}}}})
	checkMapRequestBytes(t, append(one, two...))

	r1, _ := proto.Marshal(abi.ReconcileRequestToProto(reconcileRequests[1].req))
	r2, _ := proto.Marshal(&pb.ReconcileRequest{Domain: &pb.Domain{AliasDomains: []string{"more.example"}}, LdapMailboxes: 3})
	checkReconcileRequestBytes(t, append(r1, r2...))
	c, _ := proto.Marshal(&pb.Change{Before: &pb.Mailbox{Id: 1, Aliases: []string{"a"}}})
	c2, _ := proto.Marshal(&pb.Change{Before: &pb.Mailbox{Primary: "p", Aliases: []string{"b"}}})
	r3 := protowire.AppendTag(nil, 2, protowire.BytesType)
	r3 = protowire.AppendBytes(r3, append(c, c2...))
	checkReconcileRequestBytes(t, r3)
}

// TestDecodeEntryShapes covers the entry decoder's fast path and each way
// out of it (see entryDecoder.decode): every request must decode as
// protobuf-go and package abi decode it.
func TestDecodeEntryShapes(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	many := func(n int) []*pb.Attribute {
		as := make([]*pb.Attribute, n)
		for i := range as {
			as[i] = &pb.Attribute{Name: fmt.Sprint("a", i), Values: []string{"v"}}
		}
		return as
	}
	entries := map[string]*pb.Entry{
		"lengths of 1, 2 and 3 bytes": {Id: long(127), Dn: long(128), Attributes: []*pb.Attribute{
			{Name: long(16383), Values: []string{long(16384), long(127), long(128), ""}},
			{Name: "b", Values: []string{long(200)}},
		}},
		"an attribute of 2-byte length":       {Attributes: []*pb.Attribute{{Name: "proxyaddresses", Values: []string{long(60), long(60), long(60)}}}},
		"no name":                             {Attributes: []*pb.Attribute{{Values: []string{"v"}}}},
		"empty attribute":                     {Id: "x", Attributes: []*pb.Attribute{{Name: "a", Values: []string{"1"}}, {Name: "empty"}}},
		"repeated name":                       {Attributes: []*pb.Attribute{{Name: "a", Values: []string{"1"}}, {Name: "b"}, {Name: "a", Values: []string{"2"}}}},
		"repeated empty name":                 {Attributes: []*pb.Attribute{{Name: "a"}, {Name: "a"}}},
		"more values than the fast path":      {Attributes: []*pb.Attribute{{Name: "member", Values: fixture.Values(129)}}},
		"as many values as the fast path":     {Attributes: []*pb.Attribute{{Name: "a", Values: fixture.Values(100)}, {Name: "b", Values: fixture.Values(28)}}},
		"more attributes than the fast path":  {Attributes: many(33)},
		"as many attributes as the fast path": {Attributes: many(32)},
		"only an empty value":                 {Attributes: []*pb.Attribute{{Name: "a", Values: []string{""}}}},
	}
	for name, e := range entries {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(&pb.MapRequest{Domain: abi.DomainToProto(domain()), Entries: []*pb.Entry{e, e}})
			if err != nil {
				t.Fatal(err)
			}
			checkMapRequestBytes(t, b)
		})
	}

	// Encodings protobuf-go accepts but does not write.
	entry := func(fields ...[]byte) []byte {
		b := protowire.AppendTag(nil, 2, protowire.BytesType)
		return protowire.AppendBytes(b, bytes.Join(fields, nil))
	}
	attr := func(fields ...[]byte) []byte {
		b := protowire.AppendTag(nil, 3, protowire.BytesType)
		return protowire.AppendBytes(b, bytes.Join(fields, nil))
	}
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	for name, b := range map[string][]byte{
		"non-minimal tag of the id":     entry([]byte{0x8a, 0x00, 1, 'x'}),
		"non-minimal tag of a value":    entry(attr(str(1, "a"), []byte{0x92, 0x00, 1, 'v'})),
		"non-minimal length of the id":  entry([]byte{0x0a, 0x81, 0x00, 'x'}),
		"non-minimal length of a value": entry(attr(str(1, "a"), []byte{0x12, 0x81, 0x00, 'v'})),
		"name after the values":         entry(attr(str(2, "1"), str(2, "2"), str(1, "a"))),
		"two names":                     entry(attr(str(1, "a"), str(2, "1"), str(1, "b"))),
		"empty value at the end":        entry(str(1, "x"), attr(str(1, "a"), str(2, ""))),
		"empty dn at the end":           entry(str(1, "x"), str(2, "")),
		"id twice":                      entry(str(1, "x"), str(1, "y")),
		"unknown field between values":  entry(attr(str(1, "a"), str(2, "1"), str(7, "?"), str(2, "2"))),
		"value of wrong type":           entry(attr(str(1, "a"), protowire.AppendVarint([]byte{0x10}, 5), str(2, "2"))),
		"id of wrong type":              entry(protowire.AppendVarint([]byte{0x08}, 5), str(2, "dn")),
	} {
		t.Run(name, func(t *testing.T) {
			var m pb.MapRequest
			if err := proto.Unmarshal(b, &m); err != nil {
				t.Fatalf("protobuf-go refuses the test request: %v", err)
			}
			checkMapRequestBytes(t, b)
		})
	}
}

// TestEncodeMapReplyBytes checks that the guest writes Map replies byte for
// byte as protobuf-go does (minimal varints, fields in order).
func TestEncodeMapReplyBytes(t *testing.T) {
	long := func(n int) string { return strings.Repeat("y", n) }
	for _, resp := range []sdk.MapResponse{
		{},
		{Intents: make([]sdk.Intent, 3)},
		{Intents: []sdk.Intent{
			{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: long(127), Aliases: []string{long(128), "", long(16384)},
				DisplayName: long(16383), MemberOf: fixture.Values(100)}, Skipped: []sdk.SkippedAddress{{Address: long(130)}, {Reason: "r"}}},
			{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "G", Target: "G", Members: fixture.Values(70000)}}, // over 2 MiB
			{Kind: sdk.IntentKind(127), Reason: long(1 << 14)},
			{Kind: sdk.IntentKind(128)},
			{Kind: sdk.IntentKind(1 << 30)},
			{Kind: sdk.IntentKind(-5), Group: &sdk.GroupIntent{}, Mailbox: &sdk.MailboxIntent{Primary: "p"}},
			{Kind: sdk.IntentSkip, Reason: "disabled"},
			{Kind: sdk.IntentHold, Reason: "bad", Skipped: []sdk.SkippedAddress{{Address: "\uFFFD@example.com", Reason: "invalid UTF-8"}}},
			{Kind: sdk.IntentHold},
		}},
	} {
		want, err := proto.Marshal(&pb.MapReply{Outcome: &pb.MapReply_Result{Result: abi.MapResponseToProto(resp)}})
		if err != nil {
			t.Fatal(err)
		}
		if got := sdk.EncodeMapReply(&resp); !bytes.Equal(got, want) {
			t.Errorf("EncodeMapReply of %d intents: %d bytes, protobuf-go writes %d bytes", len(resp.Intents), len(got), len(want))
		}
	}
}

func TestTruncatedRequests(t *testing.T) {
	b, _ := proto.Marshal(abi.MapRequestToProto(mapRequests[2].req))
	for i := range len(b) {
		checkMapRequestBytes(t, b[:i])
	}
	r, _ := proto.Marshal(abi.ReconcileRequestToProto(reconcileRequests[1].req))
	for i := range len(r) {
		checkReconcileRequestBytes(t, r[:i])
	}
}

func FuzzDecodeMapRequest(f *testing.F) {
	for _, tc := range mapRequests[:3] {
		b, _ := proto.Marshal(abi.MapRequestToProto(tc.req))
		f.Add(b)
	}
	f.Fuzz(checkMapRequestBytes)
}

func FuzzDecodeReconcileRequest(f *testing.F) {
	for _, tc := range reconcileRequests {
		b, _ := proto.Marshal(abi.ReconcileRequestToProto(tc.req))
		f.Add(b)
	}
	f.Fuzz(checkReconcileRequestBytes)
}

func FuzzDecodeConfigureRequest(f *testing.F) {
	m, _ := abi.ConfigureRequestToProto(map[string]any{"a": []any{1.5, "x", map[string]any{"b": nil, "c": true}}})
	b, _ := proto.Marshal(m)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = sdk.DecodeConfigureRequest(b) // must not panic
	})
}

func TestRegister(t *testing.T) {
	old := sdk.SwapRegistered(nil)
	defer sdk.SwapRegistered(old)

	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("Register(nil)", func() { sdk.Register(nil) })
	sdk.Register(testPolicy{})
	mustPanic("a second Register", func() { sdk.Register(testPolicy{}) })
}

// The guest's codec on the hot path, natively (the guest runs it 5–9×
// slower, and slower still with the host's deadline checks).
//
//	go test -run '^$' -bench 'MapRequest|MapReply' ./sdk
func BenchmarkDecodeMapRequest(b *testing.B) {
	req, err := proto.Marshal(abi.MapRequestToProto(sdk.MapRequest{Domain: domain(), Entries: fixture.Entries(5000)}))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, err := sdk.DecodeMapRequest(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMapReply(b *testing.B) {
	resp := sdk.MapResponse{Intents: make([]sdk.Intent, 5000)}
	for i := range resp.Intents {
		resp.Intents[i] = sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser,
			Primary: fmt.Sprintf("user%d@example.com", i), Aliases: []string{fmt.Sprintf("u%d@example.org", i)},
			DisplayName: fmt.Sprintf("User %d", i), MemberOf: []string{"CN=Sales,DC=example,DC=com"}}}
	}
	for b.Loop() {
		sdk.EncodeMapReply(&resp)
	}
}

// BenchmarkDecodeReconcileRequest decodes the first sync of 100,000 users:
// a create each.
//
//	go test -run '^$' -bench ReconcileRequest ./sdk
func BenchmarkDecodeReconcileRequest(b *testing.B) {
	r := sdk.ReconcileRequest{Domain: domain(), Changes: make([]sdk.Change, 100000)}
	for i := range r.Changes {
		r.Changes[i] = sdk.Change{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{
			DirID: fmt.Sprintf("%08x-4f89-11d3-9a0c-0305e82c3301", i), DN: fmt.Sprintf("CN=User %d,OU=People,DC=example,DC=com", i),
			Kind: sdk.KindUser, Primary: fmt.Sprintf("user%d@example.com", i), Aliases: []string{fmt.Sprintf("u%d@example.org", i)},
			DisplayName: fmt.Sprintf("User Number %d", i), Source: sdk.SourceLDAP, Groups: []string{"Sales"}}}
	}
	req, err := proto.Marshal(abi.ReconcileRequestToProto(r))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, err := sdk.DecodeReconcileRequest(req); err != nil {
			b.Fatal(err)
		}
	}
}
