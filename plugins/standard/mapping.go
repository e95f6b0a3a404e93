package standard

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

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
//     objectClass group, groupOfNames or groupOfUniqueNames: a group, whose
//     members are its member and uniqueMember values;
//   - anything else, including AD computer and trust accounts, contacts and
//     posixGroup entries (members by uid, not DN): a skip.
//
// Mailbox addresses follow R7 (see mapAddresses); a mailbox entry without an
// address in the domain is skipped, and one whose primary address is bad
// data (or whose only addresses are) is held: its mailbox stays as it is.
// A group's Target is the gateway group of exactly the same name
// (byte-equal, R4), or "" when there is none.
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

// posixGroupReason is why a posixGroup (without a group class that has
// member DNs, as an RFC 2307bis groupOfNames has) is skipped.
const posixGroupReason = "posixGroup members are uid values, not DNs: not supported; use groupOfNames or the memberOf overlay"

// classify decides what an entry is; for classOther it also returns why.
func classify(e *sdk.Entry) (int, string) {
	oc := e.Values("objectclass")
	if hasClass(oc, "publicFolder") {
		return classPublicFolder, ""
	}
	if sat, ok := first(e.Values("samaccounttype")); ok {
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
	if hasClass(oc, "posixGroup") {
		// Its members are memberUid values, user names that Map, seeing one
		// entry at a time, cannot turn into the DNs the host joins by. A
		// skip that says so, not a group that looks matched but has no
		// members.
		return classOther, posixGroupReason
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
		if uac, ok := first(e.Values("useraccountcontrol")); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(uac), 10, 64); err == nil && n&uacAccountDisable != 0 {
				in.Reason = "account disabled (userAccountControl " + strings.TrimSpace(uac) + ") and exclude_disabled is on"
				return
			}
		}
	}
	primary, aliases, reason, hold := m.mapAddresses(e, in)
	if primary == "" {
		in.Reason = reason
		if hold {
			in.Kind = sdk.IntentHold
		}
		return
	}
	mb := m.newMailbox()
	mb.Kind = sdk.KindUser
	if class == classPublicFolder {
		mb.Kind = sdk.KindPublicFolder
	}
	mb.Primary = primary
	mb.Aliases = aliases
	mb.DisplayName = m.displayName(e, in)
	mb.MemberOf = clone(e.Values("memberof"))
	in.Kind = sdk.IntentMailbox
	in.Mailbox = mb
}

// displayName returns the first of displayName, cn and name that is set. A
// value with U+FFFD (bytes of the directory that were not UTF-8) is kept as
// it is, with a note in in.Skipped: a name with a wrong character still
// names the mailbox better than none.
func (m *mapper) displayName(e *sdk.Entry, in *sdk.Intent) string {
	for _, a := range [...]struct{ key, name string }{{"displayname", "displayName"}, {"cn", "cn"}, {"name", "name"}} {
		v := e.Get(a.key)
		if v == "" {
			continue
		}
		if !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError) {
			v = validUTF8(v)
			in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: v,
				Reason: a.name + " has invalid UTF-8 from the directory; kept as the display name, with U+FFFD"})
		}
		return v
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
	g.Members = members(e)
	g.Nested = m.cfg.NestedGroups
	in.Kind = sdk.IntentGroup
	in.Group = g
}

// members returns a group's member DNs: its member values, then its
// uniqueMember values (groupOfUniqueNames) without their optional UID. The
// host joins them to entries by DN, compared as DNs (case-insensitively,
// blanks around separators ignored), so they are passed on as they are.
func members(e *sdk.Entry) []string {
	member, unique := e.Values("member"), e.Values("uniquemember")
	if len(unique) == 0 {
		return clone(member)
	}
	out := make([]string, 0, len(member)+len(unique))
	out = append(out, member...)
	for _, v := range unique {
		out = append(out, stripUID(v))
	}
	return out
}

// stripUID returns the DN of a uniqueMember value. Its syntax is RFC 4517's
// Name and Optional UID: a DN, optionally followed by "#" and a bit string
// ('0101'B). A '#' in the DN itself is not escaped there, so only a suffix
// that is a whole bit string at the very end is taken off.
func stripUID(v string) string {
	if !strings.HasSuffix(v, "'B") {
		return v
	}
	body := v[:len(v)-2]
	q := strings.LastIndexByte(body, '\'')
	if q < 1 || body[q-1] != '#' {
		return v
	}
	for i := q + 1; i < len(body); i++ {
		if body[i] != '0' && body[i] != '1' {
			return v
		}
	}
	return v[:q-1]
}

// mapAddresses applies R7 to a mailbox entry. The sources, in order:
//
//   - proxyAddresses, when it holds at least one SMTP address: "SMTP:" (upper
//     case) marks the primary, any other case of the smtp prefix an alias;
//     other address types (X500:, SIP:, x400:, …) are ignored. A second
//     "SMTP:" value is a second primary, which a directory should not have:
//     the first one stays the primary and the second is dropped.
//   - else mail: the first value is the primary, the others aliases.
//
// Addresses are trimmed and lower-cased. A value that is bad data — it
// holds U+FFFD (bytes of the directory that were not UTF-8), it is not a
// valid address (sdk.CheckAddress: local@domain, RFC 5321 lengths, …), it
// is a second primary or a proxyAddresses value without a type prefix — is
// dropped alone, to in.Skipped with the reason; so is an address outside
// the domain and its alias domains. The primary is the primary candidate
// when it was kept; when it lies outside the domains, or there was none,
// the first kept alias (in directory order) becomes primary. Aliases are
// deduplicated, sorted and never hold the primary.
//
// No primary comes out (primary is "") in two cases. When the primary
// candidate was dropped as bad data, or no address was kept and some value
// was dropped as bad data, hold is true and reason names the value and its
// problem: the entry may well be in scope, and its mailbox must not be
// changed or deleted because of bad data. (A bad value that is clearly
// outside the domains, its domain part being valid and none of them, does
// not count.) Otherwise, when no address was kept, reason says why the entry
// is out of scope.
func (m *mapper) mapAddresses(e *sdk.Entry, in *sdk.Intent) (primary string, aliases []string, reason string, hold bool) {
	m.kept = m.kept[:0]
	candidate := false // the primary candidate has been seen
	first := ""        // the primary candidate, normalized
	badPrimary := ""   // why the primary candidate was dropped as bad data
	firstBad := ""     // the first value dropped as bad data, and why
	bad := func(a, why string) {
		in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: a, Reason: why})
		if firstBad == "" && !m.clearlyOutside(a) {
			firstBad = strconv.Quote(a) + ": " + why
		}
	}
	if pa := e.Values("proxyaddresses"); hasSMTP(pa) {
		for _, v := range pa {
			v = strings.TrimSpace(v)
			i := strings.IndexByte(v, ':')
			if i < 0 {
				bad(validUTF8(v), "proxyAddresses value without an address type prefix")
				continue
			}
			if i != 4 || !strings.EqualFold(v[:4], "smtp") {
				continue // X500:, SIP:, X400:, …
			}
			isPrimary := v[:4] == "SMTP"
			if isPrimary && candidate {
				if a := normalize(v[5:]); a != first {
					bad(a, "a second SMTP: (primary) value; the first, "+first+", stays the primary")
				}
				continue
			}
			a, ok, why := m.keep(v[5:], in)
			if isPrimary {
				candidate, first = true, a
			}
			switch {
			case why != "":
				bad(a, why)
				if isPrimary && !m.clearlyOutside(a) {
					badPrimary = why
				}
			case !ok: // outside the domains
			case isPrimary:
				primary = a
			default:
				m.kept = append(m.kept, a)
			}
		}
	} else {
		for i, v := range e.Values("mail") {
			a, ok, why := m.keep(v, in)
			if i == 0 {
				first = a
			}
			switch {
			case why != "":
				bad(a, why)
				if i == 0 && !m.clearlyOutside(a) {
					badPrimary = why
				}
			case !ok: // outside the domains
			case i == 0:
				primary = a
			default:
				m.kept = append(m.kept, a)
			}
		}
	}
	if badPrimary != "" {
		return "", nil, "primary address " + strconv.Quote(first) + " is not usable: " + badPrimary, true
	}
	kept := m.kept
	if primary == "" {
		if len(kept) == 0 {
			switch {
			case firstBad != "":
				return "", nil, "no usable address: " + firstBad, true
			case len(in.Skipped) == 0:
				return "", nil, "no mail address (neither proxyAddresses SMTP values nor mail)", false
			}
			return "", nil, "no address in domain " + m.domains[0] + m.aliasNote(), false
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
		return primary, nil, "", false
	}
	kept = kept[:n]
	if n > 1 {
		slices.Sort(kept)
		kept = slices.Compact(kept)
	}
	return primary, m.strings(kept), "", false
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

// normalize trims and lower-cases an address. Bytes that are not UTF-8
// become U+FFFD each, so that the result can cross the ABI.
func normalize(addr string) string {
	return strings.ToLower(validUTF8(strings.TrimSpace(addr)))
}

// validUTF8 returns s with each byte that is not UTF-8 replaced by U+FFFD,
// as the host hands such values over.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.Map(func(r rune) rune { return r }, s)
}

// keep normalizes an address, a, and says what becomes of it: kept (ok),
// outside the domains (not ok, with a note in in.Skipped) or bad data (not
// ok, and why says what is wrong with it; the caller records it).
func (m *mapper) keep(addr string, in *sdk.Intent) (a string, ok bool, why string) {
	a = normalize(addr)
	if strings.ContainsRune(a, utf8.RuneError) {
		return a, false, "invalid UTF-8 from the directory"
	}
	if err := sdk.CheckAddress(a); err != nil {
		return a, false, "not a valid address: " + err.Error()
	}
	if slices.Contains(m.domains, a[strings.IndexByte(a, '@')+1:]) {
		return a, true, ""
	}
	in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: a, Reason: m.outside})
	return a, false, ""
}

// clearlyOutside reports whether a value dropped as bad data is all the
// same clearly not an address of the domain: the part after its last '@'
// is a valid domain and none of the domain and its alias domains.
func (m *mapper) clearlyOutside(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return false
	}
	d := a[at+1:]
	return sdk.CheckAddress("x@"+d) == nil && !slices.Contains(m.domains, d)
}
