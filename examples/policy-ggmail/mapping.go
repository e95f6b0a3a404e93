package ggmail

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/dirsync/dirsync/sdk"
)

// Active Directory values the policy reads.
const (
	samUser         = "805306368" // SAM_NORMAL_USER_ACCOUNT
	samGroup        = "268435456" // SAM_GROUP_OBJECT (security group)
	samDistribution = "268435457" // SAM_NON_SECURITY_GROUP_OBJECT (distribution group)

	uacAccountDisable = 2 // the ACCOUNTDISABLE bit of userAccountControl
)

// Map turns each entry into one intent, in order:
//
//   - a user (sAMAccountType 805306368, or without one objectClass user,
//     inetOrgPerson or person) or a public folder (objectClass
//     publicFolder) becomes a mailbox whose addresses come from mail: the
//     first value in the domain or its alias domains is the primary
//     address, the others are aliases; values outside them are listed as
//     skipped addresses. An entry with no such address is skipped.
//   - a group (sAMAccountType 268435456 or 268435457, or without one
//     objectClass group, groupOfNames or groupOfUniqueNames) whose name
//     starts with the prefix fills the gateway group named like the rest
//     of its name, compared case-insensitively. A group without the
//     prefix, or with no such gateway group, gets no target and is
//     reported as unmatched. A name that matches two gateway groups
//     differing only in case is skipped with a reason.
//   - anything else is skipped, with the reason.
//
// Map never creates a gateway group: Target is always one of
// req.Domain.Groups, spelled as the gateway spells it.
func (p *Policy) Map(req sdk.MapRequest) (sdk.MapResponse, error) {
	if len(req.Entries) == 0 {
		return sdk.MapResponse{}, nil
	}
	if req.Domain.Name == "" {
		return sdk.MapResponse{}, errors.New("ggmail policy: map request has entries but no domain name")
	}
	m := newMapper(p.set, req.Domain)
	out := make([]sdk.Intent, len(req.Entries))
	for i := range req.Entries {
		out[i] = m.entry(&req.Entries[i])
	}
	return sdk.MapResponse{Intents: out}, nil
}

// mapper holds what Map works out once per request.
type mapper struct {
	set     Settings
	domains []string            // the domain, then its alias domains, lower case
	groups  map[string][]string // gateway groups by their lower-case name
	outside string              // the reason for an address outside domains
}

func newMapper(set Settings, d sdk.Domain) *mapper {
	m := &mapper{set: set, groups: make(map[string][]string, len(d.Groups))}
	m.domains = append(m.domains, strings.ToLower(strings.TrimSpace(d.Name)))
	for _, a := range d.AliasDomains {
		if a = strings.ToLower(strings.TrimSpace(a)); a != "" && !slices.Contains(m.domains, a) {
			m.domains = append(m.domains, a)
		}
	}
	m.outside = "outside domain " + strings.Join(m.domains, ", ")
	for _, g := range d.Groups {
		k := strings.ToLower(g)
		if !slices.Contains(m.groups[k], g) {
			m.groups[k] = append(m.groups[k], g)
		}
	}
	return m
}

// Kinds of entry.
const (
	kindOther = iota
	kindUser
	kindPublicFolder
	kindGroup
)

// classify says what an entry is and, for kindOther, why it is skipped.
func classify(e *sdk.Entry) (int, string) {
	oc := e.Attributes["objectclass"]
	if hasClass(oc, "publicFolder") {
		return kindPublicFolder, ""
	}
	if sat := strings.TrimSpace(e.Get("samaccounttype")); sat != "" {
		switch sat {
		case samUser:
			return kindUser, ""
		case samGroup, samDistribution:
			return kindGroup, ""
		}
		return kindOther, "sAMAccountType " + sat + " is neither a user nor a group account"
	}
	switch {
	case hasClass(oc, "computer"):
		return kindOther, "computer account"
	case hasClass(oc, "contact"):
		return kindOther, "contact (not a mailbox)"
	case hasClass(oc, "group"), hasClass(oc, "groupOfNames"), hasClass(oc, "groupOfUniqueNames"):
		return kindGroup, ""
	case hasClass(oc, "user"), hasClass(oc, "inetOrgPerson"), hasClass(oc, "person"):
		return kindUser, ""
	case len(oc) == 0:
		return kindOther, "not a user, group or public folder (no objectClass)"
	}
	return kindOther, "not a user, group or public folder (objectClass " + strings.Join(oc, ", ") + ")"
}

// hasClass reports whether the objectClass values hold class (object class
// names compare case-insensitively in LDAP).
func hasClass(values []string, class string) bool {
	for _, v := range values {
		if strings.EqualFold(v, class) {
			return true
		}
	}
	return false
}

func (m *mapper) entry(e *sdk.Entry) sdk.Intent {
	kind, why := classify(e)
	switch kind {
	case kindOther:
		return skip(why)
	case kindGroup:
		return m.group(e)
	}
	if kind == kindUser && m.set.ExcludeDisabled {
		uac := strings.TrimSpace(e.Get("useraccountcontrol"))
		if n, err := strconv.ParseInt(uac, 10, 64); err == nil && n&uacAccountDisable != 0 {
			return skip("account disabled (userAccountControl " + uac + ") and exclude_disabled is on")
		}
	}
	var in sdk.Intent
	primary, aliases := m.addresses(e, &in)
	if primary == "" {
		in.Reason = "no mail address"
		if len(in.Skipped) > 0 {
			in.Reason = "no mail address in " + strings.Join(m.domains, ", ")
		}
		return in
	}
	mb := &sdk.MailboxIntent{
		Kind:        sdk.KindUser,
		Primary:     primary,
		Aliases:     aliases,
		DisplayName: firstOf(e, "displayname", "cn", "name"),
		MemberOf:    clone(e.Attributes["memberof"]),
	}
	if kind == kindPublicFolder {
		mb.Kind = sdk.KindPublicFolder
	}
	in.Kind, in.Mailbox = sdk.IntentMailbox, mb
	return in
}

func skip(reason string) sdk.Intent { return sdk.Intent{Kind: sdk.IntentSkip, Reason: reason} }

// firstOf returns the first value of the first of attrs that has one.
func firstOf(e *sdk.Entry, attrs ...string) string {
	for _, a := range attrs {
		if v := e.Get(a); v != "" {
			return v
		}
	}
	return ""
}

// clone copies values; none gives nil, as the wire does.
func clone(values []string) []string {
	if len(values) == 0 {
		return nil
	}
	return append([]string(nil), values...)
}

// addresses reads mail. Values are trimmed and lower-cased; those that are
// not local@domain, or lie outside the domain and its alias domains, go to
// in.Skipped. The first kept value is the primary address, the others are
// aliases, sorted and without duplicates.
func (m *mapper) addresses(e *sdk.Entry, in *sdk.Intent) (primary string, aliases []string) {
	for _, v := range e.Attributes["mail"] {
		a := strings.ToLower(strings.TrimSpace(v))
		domain, ok := splitAddress(a)
		switch {
		case !ok:
			in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: a, Reason: "not a valid address (want local@domain)"})
		case !slices.Contains(m.domains, domain):
			in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: a, Reason: m.outside})
		case primary == "":
			primary = a
		case a != primary:
			aliases = append(aliases, a)
		}
	}
	slices.Sort(aliases)
	return primary, slices.Compact(aliases)
}

// splitAddress checks that a is a plausible address, local@domain, and
// returns its domain: one '@', a local part without white space or
// control characters, and a domain of dot-separated non-empty labels.
func splitAddress(a string) (string, bool) {
	at := strings.IndexByte(a, '@')
	if at <= 0 || at != strings.LastIndexByte(a, '@') || at == len(a)-1 {
		return "", false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c == 0x7f {
			return "", false
		}
	}
	domain := a[at+1:]
	for _, label := range strings.Split(domain, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
	}
	return domain, true
}

// group maps a directory group to its gateway group.
func (m *mapper) group(e *sdk.Entry) sdk.Intent {
	name := firstOf(e, "cn", "name", "samaccountname")
	if name == "" {
		return skip("group without a name (no cn, name or sAMAccountName)")
	}
	g := &sdk.GroupIntent{Name: name, Members: clone(e.Attributes["member"])}
	prefix := m.set.GroupPrefix
	if len(name) > len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
		rest := name[len(prefix):]
		switch targets := m.groups[strings.ToLower(rest)]; {
		case slices.Contains(targets, rest):
			g.Target = rest // byte-equal wins over a match in another case
		case len(targets) == 1:
			g.Target = targets[0]
		case len(targets) > 1:
			return skip("group " + name + " matches the gateway groups " + strings.Join(targets, ", ") +
				", which differ only in case: rename one of them")
		}
	}
	return sdk.Intent{Kind: sdk.IntentGroup, Group: g}
}
