package abi_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/protobuf/proto"
)

// roundTrip sends in through its message and the wire and back.
func roundTrip[T any, M proto.Message](t *testing.T, in T, to func(T) M, from func(M) T, m M) T {
	t.Helper()
	b, err := proto.Marshal(to(in))
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return from(m)
}

func check[T any](t *testing.T, name string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: round trip gave\n%+v\nwant\n%+v", name, got, want)
	}
}

var dom = sdk.Domain{Name: "example.com", AliasDomains: []string{"example.org"}, Groups: []string{"Sales", "All Staff"}}

func mb(id int64) *sdk.Mailbox {
	return &sdk.Mailbox{ID: id, DirID: "guid", DN: "CN=A,DC=example,DC=com", Kind: sdk.KindPublicFolder, Primary: "a@example.com",
		Aliases: []string{"b@example.com"}, DisplayName: "A", Source: sdk.SourceLDAP, Groups: []string{"Sales"}}
}

func TestInfo(t *testing.T) {
	for _, in := range []sdk.Info{
		{},
		{Name: "standard", Version: "0.1.0", ABIMajor: 1, ABIMinor: math.MaxUint32, Attributes: []string{"mail", "cn"}},
		{Name: "conflicts", Reconcile: sdk.ReconcileConflicts},
		{Name: "a later scope", Reconcile: 9},
	} {
		check(t, "Info", roundTrip(t, in, abi.InfoToProto, abi.InfoFromProto, &pb.Info{}), in)
	}
	check(t, "nil Info", abi.InfoFromProto(nil), sdk.Info{})
}

func TestFilter(t *testing.T) {
	for _, f := range []string{"", "(&(objectClass=user)(mail=*))", "(cn=Ü)"} {
		check(t, "FilterRequest", roundTrip(t, sdk.FilterRequest{Filter: f}, abi.FilterRequestToProto, abi.FilterRequestFromProto, &pb.FilterRequest{}), sdk.FilterRequest{Filter: f})
		check(t, "FilterResponse", roundTrip(t, sdk.FilterResponse{Filter: f}, abi.FilterResponseToProto, abi.FilterResponseFromProto, &pb.FilterResponse{}), sdk.FilterResponse{Filter: f})
	}
}

func TestMapRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   sdk.MapRequest
	}{
		{"zero", sdk.MapRequest{}},
		{"domain", sdk.MapRequest{Domain: dom}},
		{"entries", sdk.MapRequest{Domain: dom, Entries: []sdk.Entry{
			{ID: "3f2504e0-4f89-11d3-9a0c-0305e82c3301", DN: "CN=Ann,DC=example,DC=com", Attributes: map[string][]string{
				"mail": {"ann@example.com"}, "proxyaddresses": {"SMTP:ann@example.com", "smtp:a@example.org"},
				"objectguid": {"4AQlP4lP0xGaDAMF6CwzAQ=="}, "empty": nil,
			}},
			{},
			{ID: "only-id"},
		}}},
	} {
		check(t, tc.name, roundTrip(t, tc.in, abi.MapRequestToProto, abi.MapRequestFromProto, &pb.MapRequest{}), tc.in)
	}
}

func TestEntryRepeatedAttribute(t *testing.T) {
	m := &pb.Entry{Id: "x", Attributes: []*pb.Attribute{
		{Name: "a", Values: []string{"1"}}, {Name: "b"}, {Name: "a", Values: []string{"2", "3"}},
	}}
	want := sdk.Entry{ID: "x", Attributes: map[string][]string{"a": {"1", "2", "3"}, "b": nil}}
	check(t, "repeated attribute", abi.EntryFromProto(m), want)
	if m.Attributes[0].Values[0] != "1" || len(m.Attributes[0].Values) != 1 {
		t.Errorf("EntryFromProto changed its input: %v", m)
	}
}

func TestMapResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   sdk.MapResponse
	}{
		{"zero", sdk.MapResponse{}},
		{"intents", sdk.MapResponse{Intents: []sdk.Intent{
			{Kind: sdk.IntentSkip, Reason: "no address in the domain", Skipped: []sdk.SkippedAddress{{Address: "x@other.test", Reason: "other domain"}}},
			{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "ann@example.com", Aliases: []string{"a@example.com"},
				DisplayName: "Ann", MemberOf: []string{"CN=Sales,DC=example,DC=com"}}},
			{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "Sales", Target: "Sales", Members: []string{"CN=Ann,DC=example,DC=com"}}},
			{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{}},
			{Kind: sdk.IntentHold, Reason: "primary address \"a\uFFFD@example.com\" is not usable",
				Skipped: []sdk.SkippedAddress{{Address: "a\uFFFD@example.com", Reason: "invalid UTF-8 from the directory"}}},
			{Kind: sdk.IntentKind(42), Mailbox: &sdk.MailboxIntent{}, Group: &sdk.GroupIntent{Name: "both set"}},
			{},
		}}},
	} {
		check(t, tc.name, roundTrip(t, tc.in, abi.MapResponseToProto, abi.MapResponseFromProto, &pb.MapResponse{}), tc.in)
	}
}

// TestIntentKinds checks that the sdk's intent kinds are the schema's, by
// number and in full: a kind the schema lacks, or the other way round,
// fails.
func TestIntentKinds(t *testing.T) {
	kinds := map[sdk.IntentKind]string{
		sdk.IntentSkip:    "INTENT_KIND_SKIP",
		sdk.IntentMailbox: "INTENT_KIND_MAILBOX",
		sdk.IntentGroup:   "INTENT_KIND_GROUP",
		sdk.IntentHold:    "INTENT_KIND_HOLD",
	}
	for k, name := range kinds {
		if got := abi.IntentToProto(&sdk.Intent{Kind: k}).GetKind(); got.String() != name || int32(got) != int32(k) {
			t.Errorf("sdk kind %d is %v (%d) in the schema, want %s", k, got, got, name)
		}
	}
	if len(pb.IntentKind_name) != len(kinds) {
		t.Errorf("the schema has %d intent kinds (%v), the sdk %d", len(pb.IntentKind_name), pb.IntentKind_name, len(kinds))
	}
	if sdk.IntentHold != 3 || pb.IntentKind_INTENT_KIND_HOLD != 3 {
		t.Error("IntentHold is not 3")
	}
}

func TestReconcile(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   sdk.ReconcileRequest
	}{
		{"zero", sdk.ReconcileRequest{}},
		{"changes", sdk.ReconcileRequest{Domain: dom, LDAPMailboxes: 100000, Changes: []sdk.Change{
			{Kind: sdk.ChangeCreate, After: mb(0), Conflicts: []sdk.Conflict{{Address: "b@example.com", MailboxID: 12, Primary: "c@example.com", Source: sdk.SourceManual}}},
			{Kind: sdk.ChangeUpdate, Before: mb(1), After: mb(1)},
			{Kind: sdk.ChangeDelete, Before: mb(math.MaxInt64)},
			{Kind: sdk.ChangeAddMember, Before: mb(2), After: mb(2), Group: "Sales"},
			{Kind: sdk.ChangeRemoveMember, Before: mb(2), After: mb(2), Group: "All Staff"},
			{Kind: sdk.ChangeAdopt, Before: &sdk.Mailbox{Source: sdk.SourceManual}, After: &sdk.Mailbox{}},
			{Kind: sdk.ChangeKind(-1)},
		}}},
		{"negative", sdk.ReconcileRequest{LDAPMailboxes: -5}},
	} {
		check(t, tc.name, roundTrip(t, tc.in, abi.ReconcileRequestToProto, abi.ReconcileRequestFromProto, &pb.ReconcileRequest{}), tc.in)
	}

	for _, tc := range []struct {
		name string
		in   sdk.ReconcileResponse
	}{
		{"zero", sdk.ReconcileResponse{}},
		{"decisions", sdk.ReconcileResponse{Decisions: []sdk.Decision{
			{Index: 0, Action: sdk.Veto, Reason: "hand-made"},
			{Index: 7, Action: sdk.Replace, Reason: "disable instead", Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, Before: mb(3), After: mb(3)}},
			{Index: -1, Action: sdk.Action(77)},
			{Index: math.MaxInt32 + 1, Action: sdk.Accept, Replacement: &sdk.Change{}},
		}}},
	} {
		check(t, tc.name, roundTrip(t, tc.in, abi.ReconcileResponseToProto, abi.ReconcileResponseFromProto, &pb.ReconcileResponse{}), tc.in)
	}
	if abi.ChangeToProto(nil) != nil || abi.ChangeFromProto(nil) != nil || abi.MailboxToProto(nil) != nil || abi.MailboxFromProto(nil) != nil {
		t.Error("nil does not convert to nil")
	}
}

func TestConfig(t *testing.T) {
	when := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	type named string
	for _, tc := range []struct {
		name string
		in   map[string]any
		want map[string]any
	}{
		{"nil", nil, nil},
		{"empty", map[string]any{}, map[string]any{}},
		{"toml scalars",
			map[string]any{"nested_groups": false, "limit": int64(500), "ratio": 0.1, "name": "x", "when": when},
			map[string]any{"nested_groups": false, "limit": 500.0, "ratio": 0.1, "name": "x", "when": "2025-01-02T03:04:05.000000006Z"}},
		{"go values",
			map[string]any{"i": 3, "u8": uint8(4), "f32": float32(0.5), "s": named("n"), "b": []byte{1, 2}, "p": (*int)(nil), "strs": []string{"a"}, "ints": []int64{1}, "arr": [2]bool{true, false}},
			map[string]any{"i": 3.0, "u8": 4.0, "f32": 0.5, "s": "n", "b": "AQI=", "p": nil, "strs": []any{"a"}, "ints": []any{1.0}, "arr": []any{true, false}}},
		{"nested",
			map[string]any{"t": map[string]any{"u": map[string]string{"k": "v"}}, "list": []map[string]any{{"a": nil}}, "none": []any(nil)},
			map[string]any{"t": map[string]any{"u": map[string]any{"k": "v"}}, "list": []any{map[string]any{"a": nil}}, "none": []any{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := abi.ConfigureRequestToProto(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var back pb.ConfigureRequest
			if err := proto.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			check(t, tc.name, abi.ConfigureRequestFromProto(&back), tc.want)
			norm, err := abi.NormalizeConfig(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "NormalizeConfig", norm, tc.want)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]any
		want string
	}{
		{map[string]any{"big": int64(1) << 60}, `config key "big": integer 1152921504606846976 does not fit a float64 exactly`},
		{map[string]any{"t": map[string]any{"nan": math.NaN()}}, `config key "t.nan": NaN is not a finite number`},
		{map[string]any{"l": []any{1, struct{}{}}}, `config key "l[1]": unsupported value type struct {}`},
		{map[string]any{"m": map[int]string{1: "x"}}, `config key "m": map keys must be strings, not int`},
		{map[string]any{"s": "\xff"}, `config key "s": invalid UTF-8 in string`},
		{map[string]any{"\xff": 1}, `config key "\xff": invalid UTF-8`},
		{map[string]any{"a": func() {}, "b": func() {}}, `config key "a": unsupported value type func()`},
	} {
		_, err := abi.ConfigToProto(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ConfigToProto(%v) = %v, want %s", tc.in, err, tc.want)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      error
		want    error
		wantMsg string
	}{
		{"nil", nil, nil, ""},
		{"plain", errors.New("boom"), &abi.Error{Message: "boom"}, "boom"},
		{"filter", &sdk.FilterError{Position: 4, Reason: "unbalanced"}, &sdk.FilterError{Position: 4, Reason: "unbalanced"}, "invalid filter at position 4: unbalanced"},
		{"wrapped filter", fmt.Errorf("x: %w", &sdk.FilterError{Position: 0, Reason: "empty"}), &sdk.FilterError{Reason: "empty"}, "invalid filter at position 0: empty"},
		{"panic", &abi.Error{Code: pb.ErrorCode_ERROR_CODE_PANIC, Message: "nil map"}, &abi.Error{Code: pb.ErrorCode_ERROR_CODE_PANIC, Message: "nil map"}, "policy panicked: nil map"},
		{"bad request", &abi.Error{Code: pb.ErrorCode_ERROR_CODE_BAD_REQUEST, Message: "truncated"}, &abi.Error{Code: pb.ErrorCode_ERROR_CODE_BAD_REQUEST, Message: "truncated"}, "bad request: truncated"},
		{"not registered", &abi.Error{Code: pb.ErrorCode_ERROR_CODE_NOT_REGISTERED}, &abi.Error{Code: pb.ErrorCode_ERROR_CODE_NOT_REGISTERED}, "no policy registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := abi.ErrorToProto(tc.in)
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var back *pb.Error
			if m != nil {
				back = &pb.Error{}
				if err := proto.Unmarshal(b, back); err != nil {
					t.Fatal(err)
				}
			}
			got := abi.ErrorFromProto(back)
			check(t, tc.name, got, tc.want)
			if got != nil && !strings.Contains(got.Error(), tc.wantMsg) {
				t.Errorf("message %q, want it to contain %q", got.Error(), tc.wantMsg)
			}
		})
	}
	if !strings.Contains(abi.PanicError(fmt.Errorf("x")).GetMessage(), "x") {
		t.Error("PanicError lost the value")
	}
}

func TestVersion(t *testing.T) {
	if maj, min := abi.UnpackVersion(abi.Version()); maj != sdk.ABIMajor || min != sdk.ABIMinor {
		t.Errorf("Version unpacks to %d.%d", maj, min)
	}
	if v := abi.PackVersion(2, 3); v != 2<<32|3 {
		t.Errorf("PackVersion(2, 3) = %#x", v)
	}
}
