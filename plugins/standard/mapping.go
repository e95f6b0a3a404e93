package standard

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/dirsync/dirsync/sdk"
)

// Active Directory sAMAccountType values.
const (
	samNormalUser     = "805306368" // SAM_NORMAL_USER_ACCOUNT
	samGroup          = "268435456" // SAM_GROUP_OBJECT (security group)
	samNonSecurityGrp = "268435457" // SAM_NON_SECURITY_GROUP_OBJECT (distribution group)
)

// uacAccountDisable is the ACCOUNTDISABLE bit of userAccountControl.
const uacAccountDisable = 2

// Map turns each entry into one Intent, in order (R3, R4, R7):
//
//   - objectClass publicFolder: a mailbox of kind public_folder;
//   - sAMAccountType 805306368, or (without a sAMAccountType) objectClass
//     user, inetOrgPerson or person: a mailbox of kind user;
//   - sAMAccountType 268435456 or 268435457, or (without a sAMAccountType)
//     objectClass group, groupOfNames or groupOfUniqueNames: a group;
//   - anything else, including AD computer and trust accounts and contacts:
//     a skip.
//
// Mailbox addresses follow R7 (see mapAddresses); a mailbox entry without an
// address in the domain is skipped. A group's Target is the gateway group of
// exactly the same name (byte-equal, R4), or "" when there is none.
func (p *Policy) Map(req sdk.MapRequest) (sdk.MapResponse, error) {
	if len(req.Entries) == 0 {
		return sdk.MapResponse{}, nil
	}
	if req.Domain.Name == "" {
		return sdk.MapResponse{}, errors.New("standard policy: map request has entries but no domain name")
	}
	m := newMapper(p.cfg, req.Domain)
	intents := make([]sdk.Intent, len(req.Entries))
	for i := range req.Entries {
		m.mapEntry(&req.Entries[i], &intents[i])
	}
	return sdk.MapResponse{Intents: intents}, nil
}

// mapper holds what Map computes once per request, and scratch space reused
// from entry to entry.
type mapper struct {
	cfg     settings
	domains []string            // lower-case domain name first, then alias domains
	groups  map[string]struct{} // Domain.Groups
	outside string              // the reason for an address outside the domains

	kept []string            // scratch: kept addresses of the current entry
	mbs  []sdk.MailboxIntent // mailbox intents, allocated in chunks
	strs []string            // alias lists, allocated in chunks
	grs  []sdk.GroupIntent   // group intents, allocated in chunks
}

const chunk = 256

func newMapper(cfg settings, d sdk.Domain) *mapper {
	m := &mapper{cfg: cfg, groups: make(map[string]struct{}, len(d.Groups))}
	name := strings.ToLower(strings.TrimSpace(d.Name))
	m.domains = append(m.domains, name)
	for _, a := range d.AliasDomains {
		if a = strings.ToLower(strings.TrimSpace(a)); a != "" && !slices.Contains(m.domains, a) {
			m.domains = append(m.domains, a)
		}
	}
	m.outside = "outside domain " + name
	if len(m.domains) > 1 {
		m.outside += " and its alias domains " + strings.Join(m.domains[1:], ", ")
	}
	for _, g := range d.Groups {
		m.groups[g] = struct{}{}
	}
	return m
}

func (m *mapper) newMailbox() *sdk.MailboxIntent {
	if len(m.mbs) == cap(m.mbs) {
		m.mbs = make([]sdk.MailboxIntent, 0, chunk)
	}
	m.mbs = m.mbs[:len(m.mbs)+1]
	return &m.mbs[len(m.mbs)-1]
}

func (m *mapper) newGroup() *sdk.GroupIntent {
	if len(m.grs) == cap(m.grs) {
		m.grs = make([]sdk.GroupIntent, 0, chunk)
	}
	m.grs = m.grs[:len(m.grs)+1]
	return &m.grs[len(m.grs)-1]
}

// entry classes
const (
	classOther = iota
	classUser
	classPublicFolder
	classGroup
)

// classify decides what an entry is; for classOther it also returns why.
func classify(e *sdk.Entry) (int, string) {
	oc := e.Attributes["objectclass"]
	if hasClass(oc, "publicFolder") {
		return classPublicFolder, ""
	}
	if sat, ok := first(e.Attributes["samaccounttype"]); ok {
		switch strings.TrimSpace(sat) {
		case samNormalUser:
			return classUser, ""
		case samGroup, samNonSecurityGrp:
			return classGroup, ""
		}
		return classOther, "sAMAccountType " + strings.TrimSpace(sat) + " is neither a user nor a group account"
	}
	if hasClass(oc, "computer") {
		return classOther, "computer account"
	}
	if hasClass(oc, "contact") {
		return classOther, "contact (not a mailbox)"
	}
	if hasClass(oc, "group") || hasClass(oc, "groupOfNames") || hasClass(oc, "groupOfUniqueNames") {
		return classGroup, ""
	}
	if hasClass(oc, "user") || hasClass(oc, "inetOrgPerson") || hasClass(oc, "person") {
		return classUser, ""
	}
	if len(oc) == 0 {
		return classOther, "not a user, group or public folder (no objectClass)"
	}
	return classOther, "not a user, group or public folder (objectClass " + strings.Join(oc, ", ") + ")"
}

// hasClass reports whether the objectClass values hold class; object class
// names compare case-insensitively, as in LDAP.
func hasClass(values []string, class string) bool {
	for _, v := range values {
		if strings.EqualFold(v, class) {
			return true
		}
	}
	return false
}

func first(values []string) (string, bool) {
	if len(values) == 0 {
		return "", false
	}
	return values[0], true
}

func (m *mapper) mapEntry(e *sdk.Entry, in *sdk.Intent) {
	class, why := classify(e)
	switch class {
	case classGroup:
		m.mapGroup(e, in)
		return
	case classOther:
		in.Reason = why
		return
	}
	if class == classUser && m.cfg.ExcludeDisabled {
		if uac, ok := first(e.Attributes["useraccountcontrol"]); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(uac), 10, 64); err == nil && n&uacAccountDisable != 0 {
				in.Reason = "account disabled (userAccountControl " + strings.TrimSpace(uac) + ") and exclude_disabled is on"
				return
			}
		}
	}
	primary, aliases, reason := m.mapAddresses(e, in)
	if primary == "" {
		in.Reason = reason
		return
	}
	mb := m.newMailbox()
	mb.Kind = sdk.KindUser
	if class == classPublicFolder {
		mb.Kind = sdk.KindPublicFolder
	}
	mb.Primary = primary
	mb.Aliases = aliases
	mb.DisplayName = displayName(e)
	mb.MemberOf = clone(e.Attributes["memberof"])
	in.Kind = sdk.IntentMailbox
	in.Mailbox = mb
}

func displayName(e *sdk.Entry) string {
	for _, a := range [...]string{"displayname", "cn", "name"} {
		if v := e.Get(a); v != "" {
			return v
		}
	}
	return ""
}

// clone copies values, giving nil for none (as a protobuf round trip does).
// A copy, not the entry's own slice: that may share its backing array with
// the other entries of the request (it does in the host), which an intent
// kept for the whole run would then keep alive.
func clone(values []string) []string {
	if len(values) == 0 {
		return nil
	}
	return append([]string(nil), values...)
}

func (m *mapper) mapGroup(e *sdk.Entry, in *sdk.Intent) {
	name := ""
	for _, a := range [...]string{"cn", "name", "samaccountname"} {
		if name = e.Get(a); name != "" {
			break
		}
	}
	if name == "" {
		in.Reason = "group without a name (no cn, name or sAMAccountName)"
		return
	}
	g := m.newGroup()
	g.Name = name
	if _, ok := m.groups[name]; ok {
		g.Target = name
	}
	g.Members = clone(e.Attributes["member"])
	g.Nested = m.cfg.NestedGroups
	in.Kind = sdk.IntentGroup
	in.Group = g
}

// mapAddresses applies R7 to a mailbox entry. The sources, in order:
//
//   - proxyAddresses, when it holds at least one SMTP address: "SMTP:" (upper
//     case) marks the primary, any other case of the smtp prefix an alias;
//     other address types (X500:, SIP:, x400:, …) are ignored. Should there be
//     several "SMTP:" values, the first is the primary and the others aliases.
//   - else mail: the first value is the primary, the others aliases.
//
// Addresses are trimmed and lower-cased. Those that are not plausible
// (local@domain) or lie outside the domain and its alias domains go to
// in.Skipped with the reason. The primary is the first kept primary
// candidate; when it was not kept, or there was none, the first kept alias
// (in directory order) becomes primary. Aliases are deduplicated, sorted and
// never hold the primary. With no address kept, primary is "" and reason
// says why.
func (m *mapper) mapAddresses(e *sdk.Entry, in *sdk.Intent) (primary string, aliases []string, reason string) {
	m.kept = m.kept[:0]
	candidate := false // a primary candidate has been seen
	if pa := e.Attributes["proxyaddresses"]; hasSMTP(pa) {
		for _, v := range pa {
			v = strings.TrimSpace(v)
			i := strings.IndexByte(v, ':')
			if i < 0 {
				in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: v, Reason: "proxyAddresses value without an address type prefix"})
				continue
			}
			if i != 4 || !strings.EqualFold(v[:4], "smtp") {
				continue // X500:, SIP:, X400:, …
			}
			isPrimary := v[:4] == "SMTP" && !candidate
			candidate = candidate || isPrimary
			if a, ok := m.keep(v[5:], in); ok {
				if isPrimary {
					primary = a
				} else {
					m.kept = append(m.kept, a)
				}
			}
		}
	} else {
		for i, v := range e.Attributes["mail"] {
			if a, ok := m.keep(v, in); ok {
				if i == 0 {
					primary = a
				} else {
					m.kept = append(m.kept, a)
				}
			}
		}
	}
	kept := m.kept
	if primary == "" {
		if len(kept) == 0 {
			if len(in.Skipped) == 0 {
				return "", nil, "no mail address (neither proxyAddresses SMTP values nor mail)"
			}
			return "", nil, "no address in domain " + m.domains[0] + m.aliasNote()
		}
		primary, kept = kept[0], kept[1:]
	}
	n := 0
	for _, a := range kept {
		if a != primary {
			kept[n] = a
			n++
		}
	}
	if n == 0 {
		return primary, nil, ""
	}
	kept = kept[:n]
	if n > 1 {
		slices.Sort(kept)
		kept = slices.Compact(kept)
	}
	return primary, m.strings(kept), ""
}

// strings returns a copy of ss carved from a shared chunk.
func (m *mapper) strings(ss []string) []string {
	if len(ss) > chunk/4 {
		return append([]string(nil), ss...)
	}
	if cap(m.strs)-len(m.strs) < len(ss) {
		m.strs = make([]string, 0, chunk)
	}
	n := len(m.strs)
	m.strs = append(m.strs, ss...)
	return m.strs[n:len(m.strs):len(m.strs)]
}

func (m *mapper) aliasNote() string {
	if len(m.domains) == 1 {
		return ""
	}
	return " or its alias domains " + strings.Join(m.domains[1:], ", ")
}

// hasSMTP reports whether proxyAddresses holds an SMTP address.
func hasSMTP(values []string) bool {
	for _, v := range values {
		v = strings.TrimSpace(v)
		if len(v) >= 5 && v[4] == ':' && strings.EqualFold(v[:4], "smtp") {
			return true
		}
	}
	return false
}

// keep normalizes an address and reports whether it is kept; if not, it is
// added to in.Skipped.
func (m *mapper) keep(addr string, in *sdk.Intent) (string, bool) {
	a := strings.ToLower(strings.TrimSpace(addr))
	domain, ok := splitAddress(a)
	if !ok {
		in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: a, Reason: "not a valid address (want local@domain)"})
		return "", false
	}
	for _, d := range m.domains {
		if d == domain {
			return a, true
		}
	}
	in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: a, Reason: m.outside})
	return "", false
}

// splitAddress checks that a (lower case) is a plausible address, local@domain,
// and returns its domain. The local part is one or more printable characters
// other than white space, '@' and the specials <>()[],;:\"; the domain is one
// or more dot-separated labels of letters, digits and inner hyphens (bytes
// of internationalized names allowed).
func splitAddress(a string) (string, bool) {
	at := strings.IndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", false
	}
	for i := 0; i < at; i++ {
		switch c := a[i]; {
		case c <= ' ' || c == 0x7f:
			return "", false
		case c == '<' || c == '>' || c == '(' || c == ')' || c == '[' || c == ']' ||
			c == ',' || c == ';' || c == ':' || c == '\\' || c == '"':
			return "", false
		}
	}
	domain := a[at+1:]
	labelStart := 0
	for i := 0; i <= len(domain); i++ {
		if i == len(domain) || domain[i] == '.' {
			if i == labelStart || domain[labelStart] == '-' || domain[i-1] == '-' {
				return "", false
			}
			labelStart = i + 1
			continue
		}
		c := domain[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c >= 0x80) {
			return "", false
		}
	}
	return domain, true
}
