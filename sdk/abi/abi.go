// Package abi converts between the public policy types of package sdk and the
// messages of the syncpolicy.v1 protobuf schema (package syncpolicyv1), in
// both directions, for every request and response of the policy ABI.
//
// The sdk types are what policy authors and the host program against; the
// generated messages are only the wire form. Runtimes that move bytes (the
// WebAssembly runtime, the gRPC process runtime) convert at their edge with
// this package and hand sdk types to everything else.
//
// Conversions are lossless for every value of the sdk types, with two
// exceptions that the wire cannot express: a nil and an empty slice (or map)
// both arrive as nil, and the config table travels as a
// google.protobuf.Struct, so numbers arrive as float64 (see ConfigToProto).
//
// Conversions do not copy strings or string slices: a message made by a
// ToProto function shares them with its input, and an sdk value made by a
// FromProto function shares them with the message.
package abi

import (
	"fmt"
	"unicode/utf8"

	"github.com/dirsync/dirsync/sdk"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
)

// Version returns the ABI version spoken by this build of the sdk, packed
// as the dirsync_abi_version export returns it: major<<32 | minor.
func Version() uint64 { return PackVersion(sdk.ABIMajor, sdk.ABIMinor) }

// PackVersion packs an ABI version as major<<32 | minor.
func PackVersion(major, minor uint32) uint64 { return uint64(major)<<32 | uint64(minor) }

// UnpackVersion splits a version packed by PackVersion.
func UnpackVersion(v uint64) (major, minor uint32) { return uint32(v >> 32), uint32(v) }

// ---- Info ----

// InfoToProto converts an sdk.Info.
func InfoToProto(in sdk.Info) *pb.Info {
	return &pb.Info{
		Name:       in.Name,
		Version:    in.Version,
		AbiMajor:   in.ABIMajor,
		AbiMinor:   in.ABIMinor,
		Attributes: strs(in.Attributes),
		Reconcile:  pb.ReconcileScope(in.Reconcile),
		ValuesOnly: in.ValuesOnly,
	}
}

// InfoFromProto converts a pb.Info; nil gives the zero Info.
func InfoFromProto(m *pb.Info) sdk.Info {
	return sdk.Info{
		Name:       m.GetName(),
		Version:    m.GetVersion(),
		ABIMajor:   m.GetAbiMajor(),
		ABIMinor:   m.GetAbiMinor(),
		Attributes: strs(m.GetAttributes()),
		Reconcile:  sdk.ReconcileScope(m.GetReconcile()),
		ValuesOnly: m.GetValuesOnly(),
	}
}

// ---- Filter ----

// FilterRequestToProto converts an sdk.FilterRequest.
func FilterRequestToProto(in sdk.FilterRequest) *pb.FilterRequest {
	return &pb.FilterRequest{Filter: in.Filter}
}

// FilterRequestFromProto converts a pb.FilterRequest.
func FilterRequestFromProto(m *pb.FilterRequest) sdk.FilterRequest {
	return sdk.FilterRequest{Filter: m.GetFilter()}
}

// FilterResponseToProto converts an sdk.FilterResponse.
func FilterResponseToProto(in sdk.FilterResponse) *pb.FilterResponse {
	return &pb.FilterResponse{Filter: in.Filter}
}

// FilterResponseFromProto converts a pb.FilterResponse.
func FilterResponseFromProto(m *pb.FilterResponse) sdk.FilterResponse {
	return sdk.FilterResponse{Filter: m.GetFilter()}
}

// ---- Map ----

// DomainToProto converts an sdk.Domain.
func DomainToProto(in sdk.Domain) *pb.Domain {
	return &pb.Domain{
		Name:         in.Name,
		AliasDomains: strs(in.AliasDomains),
		Groups:       strs(in.Groups),
	}
}

// DomainFromProto converts a pb.Domain.
func DomainFromProto(m *pb.Domain) sdk.Domain {
	return sdk.Domain{
		Name:         m.GetName(),
		AliasDomains: strs(m.GetAliasDomains()),
		Groups:       strs(m.GetGroups()),
	}
}

// EntryToProto converts an sdk.Entry. Attributes are written in map
// iteration order; EntryFromProto does not depend on it.
func EntryToProto(in *sdk.Entry) *pb.Entry {
	m := &pb.Entry{Id: in.ID, Dn: in.DN}
	if len(in.Attributes) > 0 {
		// One backing array for the entry's attributes: a single allocation
		// instead of one per attribute.
		attrs := make([]pb.Attribute, len(in.Attributes))
		m.Attributes = make([]*pb.Attribute, 0, len(in.Attributes))
		i := 0
		for name, values := range in.Attributes {
			a := &attrs[i]
			a.Name, a.Values = name, values
			m.Attributes = append(m.Attributes, a)
			i++
		}
	}
	return m
}

// EntryFromProto converts a pb.Entry. When an attribute name repeats, the
// values of its occurrences are concatenated.
func EntryFromProto(m *pb.Entry) sdk.Entry {
	e := sdk.Entry{ID: m.GetId(), DN: m.GetDn()}
	if attrs := m.GetAttributes(); len(attrs) > 0 {
		e.Attributes = make(map[string][]string, len(attrs))
		for _, a := range attrs {
			name := a.GetName()
			if old, ok := e.Attributes[name]; ok {
				e.Attributes[name] = append(old[:len(old):len(old)], a.GetValues()...)
				continue
			}
			e.Attributes[name] = strs(a.GetValues())
		}
	}
	return e
}

// MapRequestToProto converts an sdk.MapRequest.
func MapRequestToProto(in sdk.MapRequest) *pb.MapRequest {
	m := &pb.MapRequest{Domain: DomainToProto(in.Domain)}
	if len(in.Entries) > 0 {
		m.Entries = make([]*pb.Entry, len(in.Entries))
		for i := range in.Entries {
			m.Entries[i] = EntryToProto(&in.Entries[i])
		}
	}
	return m
}

// MapRequestFromProto converts a pb.MapRequest.
func MapRequestFromProto(m *pb.MapRequest) sdk.MapRequest {
	r := sdk.MapRequest{Domain: DomainFromProto(m.GetDomain())}
	if entries := m.GetEntries(); len(entries) > 0 {
		r.Entries = make([]sdk.Entry, len(entries))
		for i, e := range entries {
			r.Entries[i] = EntryFromProto(e)
		}
	}
	return r
}

// IntentToProto converts an sdk.Intent.
func IntentToProto(in *sdk.Intent) *pb.Intent {
	m := &pb.Intent{Kind: pb.IntentKind(in.Kind), Reason: in.Reason}
	if mb := in.Mailbox; mb != nil {
		m.Mailbox = &pb.MailboxIntent{
			Kind:        mb.Kind,
			Primary:     mb.Primary,
			Aliases:     strs(mb.Aliases),
			DisplayName: mb.DisplayName,
			MemberOf:    strs(mb.MemberOf),
		}
	}
	if g := in.Group; g != nil {
		m.Group = &pb.GroupIntent{Name: g.Name, Target: g.Target, Members: strs(g.Members), Nested: g.Nested}
	}
	if len(in.Skipped) > 0 {
		m.Skipped = make([]*pb.SkippedAddress, len(in.Skipped))
		for i, s := range in.Skipped {
			m.Skipped[i] = &pb.SkippedAddress{Address: s.Address, Reason: s.Reason}
		}
	}
	return m
}

// IntentFromProto converts a pb.Intent.
func IntentFromProto(m *pb.Intent) sdk.Intent {
	in := sdk.Intent{Kind: sdk.IntentKind(m.GetKind()), Reason: m.GetReason()}
	if mb := m.GetMailbox(); mb != nil {
		in.Mailbox = &sdk.MailboxIntent{
			Kind:        mb.GetKind(),
			Primary:     mb.GetPrimary(),
			Aliases:     strs(mb.GetAliases()),
			DisplayName: mb.GetDisplayName(),
			MemberOf:    strs(mb.GetMemberOf()),
		}
	}
	if g := m.GetGroup(); g != nil {
		in.Group = &sdk.GroupIntent{Name: g.GetName(), Target: g.GetTarget(), Members: strs(g.GetMembers()), Nested: g.GetNested()}
	}
	if sk := m.GetSkipped(); len(sk) > 0 {
		in.Skipped = make([]sdk.SkippedAddress, len(sk))
		for i, s := range sk {
			in.Skipped[i] = sdk.SkippedAddress{Address: s.GetAddress(), Reason: s.GetReason()}
		}
	}
	return in
}

// MapResponseToProto converts an sdk.MapResponse.
func MapResponseToProto(in sdk.MapResponse) *pb.MapResponse {
	m := &pb.MapResponse{}
	if len(in.Intents) > 0 {
		m.Intents = make([]*pb.Intent, len(in.Intents))
		for i := range in.Intents {
			m.Intents[i] = IntentToProto(&in.Intents[i])
		}
	}
	return m
}

// MapResponseFromProto converts a pb.MapResponse.
func MapResponseFromProto(m *pb.MapResponse) sdk.MapResponse {
	var r sdk.MapResponse
	if intents := m.GetIntents(); len(intents) > 0 {
		r.Intents = make([]sdk.Intent, len(intents))
		for i, in := range intents {
			r.Intents[i] = IntentFromProto(in)
		}
	}
	return r
}

// ---- Reconcile ----

// MailboxToProto converts an *sdk.Mailbox; nil gives nil.
func MailboxToProto(in *sdk.Mailbox) *pb.Mailbox {
	if in == nil {
		return nil
	}
	return &pb.Mailbox{
		Id:          in.ID,
		DirId:       in.DirID,
		Dn:          in.DN,
		Kind:        in.Kind,
		Primary:     in.Primary,
		Aliases:     strs(in.Aliases),
		DisplayName: in.DisplayName,
		Source:      in.Source,
		Groups:      strs(in.Groups),
	}
}

// MailboxFromProto converts a *pb.Mailbox; nil gives nil.
func MailboxFromProto(m *pb.Mailbox) *sdk.Mailbox {
	if m == nil {
		return nil
	}
	return &sdk.Mailbox{
		ID:          m.GetId(),
		DirID:       m.GetDirId(),
		DN:          m.GetDn(),
		Kind:        m.GetKind(),
		Primary:     m.GetPrimary(),
		Aliases:     strs(m.GetAliases()),
		DisplayName: m.GetDisplayName(),
		Source:      m.GetSource(),
		Groups:      strs(m.GetGroups()),
	}
}

// ChangeToProto converts an *sdk.Change; nil gives nil.
func ChangeToProto(in *sdk.Change) *pb.Change {
	if in == nil {
		return nil
	}
	m := &pb.Change{
		Kind:   pb.ChangeKind(in.Kind),
		Before: MailboxToProto(in.Before),
		After:  MailboxToProto(in.After),
		Group:  in.Group,
	}
	if len(in.Conflicts) > 0 {
		m.Conflicts = make([]*pb.Conflict, len(in.Conflicts))
		for i, c := range in.Conflicts {
			m.Conflicts[i] = &pb.Conflict{Address: c.Address, MailboxId: c.MailboxID, Primary: c.Primary, Source: c.Source}
		}
	}
	return m
}

// ChangeFromProto converts a *pb.Change; nil gives nil.
func ChangeFromProto(m *pb.Change) *sdk.Change {
	if m == nil {
		return nil
	}
	c := &sdk.Change{
		Kind:   sdk.ChangeKind(m.GetKind()),
		Before: MailboxFromProto(m.GetBefore()),
		After:  MailboxFromProto(m.GetAfter()),
		Group:  m.GetGroup(),
	}
	if cs := m.GetConflicts(); len(cs) > 0 {
		c.Conflicts = make([]sdk.Conflict, len(cs))
		for i, x := range cs {
			c.Conflicts[i] = sdk.Conflict{Address: x.GetAddress(), MailboxID: x.GetMailboxId(), Primary: x.GetPrimary(), Source: x.GetSource()}
		}
	}
	return c
}

// ReconcileRequestToProto converts an sdk.ReconcileRequest.
func ReconcileRequestToProto(in sdk.ReconcileRequest) *pb.ReconcileRequest {
	m := &pb.ReconcileRequest{Domain: DomainToProto(in.Domain), LdapMailboxes: int64(in.LDAPMailboxes)}
	if len(in.Changes) > 0 {
		m.Changes = make([]*pb.Change, len(in.Changes))
		for i := range in.Changes {
			m.Changes[i] = ChangeToProto(&in.Changes[i])
		}
	}
	return m
}

// ReconcileRequestFromProto converts a pb.ReconcileRequest. A nil change in
// the message (which the wire cannot produce) becomes a zero sdk.Change.
func ReconcileRequestFromProto(m *pb.ReconcileRequest) sdk.ReconcileRequest {
	r := sdk.ReconcileRequest{Domain: DomainFromProto(m.GetDomain()), LDAPMailboxes: int(m.GetLdapMailboxes())}
	if cs := m.GetChanges(); len(cs) > 0 {
		r.Changes = make([]sdk.Change, len(cs))
		for i, c := range cs {
			if c != nil {
				r.Changes[i] = *ChangeFromProto(c)
			}
		}
	}
	return r
}

// DecisionToProto converts an sdk.Decision.
func DecisionToProto(in *sdk.Decision) *pb.Decision {
	return &pb.Decision{
		Index:       int64(in.Index),
		Action:      pb.Action(in.Action),
		Reason:      in.Reason,
		Replacement: ChangeToProto(in.Replacement),
	}
}

// DecisionFromProto converts a pb.Decision.
func DecisionFromProto(m *pb.Decision) sdk.Decision {
	return sdk.Decision{
		Index:       int(m.GetIndex()),
		Action:      sdk.Action(m.GetAction()),
		Reason:      m.GetReason(),
		Replacement: ChangeFromProto(m.GetReplacement()),
	}
}

// ReconcileResponseToProto converts an sdk.ReconcileResponse.
func ReconcileResponseToProto(in sdk.ReconcileResponse) *pb.ReconcileResponse {
	m := &pb.ReconcileResponse{}
	if len(in.Decisions) > 0 {
		m.Decisions = make([]*pb.Decision, len(in.Decisions))
		for i := range in.Decisions {
			m.Decisions[i] = DecisionToProto(&in.Decisions[i])
		}
	}
	return m
}

// ReconcileResponseFromProto converts a pb.ReconcileResponse.
func ReconcileResponseFromProto(m *pb.ReconcileResponse) sdk.ReconcileResponse {
	var r sdk.ReconcileResponse
	if ds := m.GetDecisions(); len(ds) > 0 {
		r.Decisions = make([]sdk.Decision, len(ds))
		for i, d := range ds {
			r.Decisions[i] = DecisionFromProto(d)
		}
	}
	return r
}

// strs returns s, or nil when s is empty, so that nil and empty slices
// convert alike in both directions.
func strs(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// InvalidUTF8 names the first string of entries that is not valid UTF-8
// (protobuf strings must be, so such an entry cannot cross the ABI),
// or returns "".
func InvalidUTF8(entries []sdk.Entry) string {
	for i := range entries {
		e := &entries[i]
		name := fmt.Sprintf("entry %q", e.DN)
		switch {
		case !utf8.ValidString(e.ID):
			return "the id of " + name
		case !utf8.ValidString(e.DN):
			return fmt.Sprintf("the DN of entry %d (%q)", i, e.DN)
		}
		for attr, values := range e.Attributes {
			if !utf8.ValidString(attr) {
				return fmt.Sprintf("an attribute name (%q) of %s", attr, name)
			}
			for j, v := range values {
				if !utf8.ValidString(v) {
					return fmt.Sprintf("value %d of attribute %q of %s", j, attr, name)
				}
			}
		}
	}
	return ""
}
