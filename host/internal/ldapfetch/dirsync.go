package ldapfetch

// Active Directory delta reading (design §3b): the DirSync control, the
// objectGUID batch reads that turn a DirSync delta into full entries, and
// uSNChanged polling for readers without the right DirSync needs.
//
// What Samba's AD DC (4.17, source4/dsdb/samdb/ldb_modules/dirsync.c) does,
// as the tests in dirsync_test.go show against a real one:
//   - DirSync works only at the root of a naming context; at any other base
//     it answers insufficientAccessRights (unwillingToPerform with
//     LDAP_DIRSYNC_OBJECT_SECURITY). DirSync therefore searches the root of
//     the naming context that holds Config.BaseDN and hands on changes
//     anywhere in it.
//   - Without LDAP_DIRSYNC_OBJECT_SECURITY the reader needs "Replicating
//     Directory Changes" (DS-Replication-Get-Changes) on the naming
//     context's root; without it: insufficientAccessRights
//     (ErrDirSyncDenied). Samba 4.17.12 still applies the reader's read
//     rights: a reader with only that right does not see tombstones, so
//     its deltas hold no deletions at all, silently. An administrator
//     (Domain Admins) sees them: DN "CN=name\0ADEL:guid,CN=Deleted
//     Objects,…", isDeleted TRUE, name "name\nDEL:guid", parentGUID of
//     Deleted Objects, and the attributes the deletion stripped as
//     attributes without values (sAMAccountType among them, so a filter
//     on it would not match a tombstone: DirSync ORs (isDeleted=TRUE) into
//     the filter).
//   - With LDAP_DIRSYNC_OBJECT_SECURITY any user may DirSync; it gets the
//     objects and attributes it may read, and no deletions.
//   - A member taken out of a group by its own deletion is not reported on
//     the group (to anyone): the caller must drop a deleted ID from the
//     groups it holds, or read them again.
//   - LDAP_DIRSYNC_INCREMENTAL_VALUES is supported: a linked attribute
//     (member) comes as "member;range=1-1" (values added) and
//     "member;range=0-0" (values removed) instead of all its values.
//   - A rename comes as a changed name (and parentGUID); a move as the
//     new DN, with a changed name too; an object moved out of the base is
//     reported with its new DN.
//   - The filter is applied to the whole object as it is now, ANDed with
//     (uSNChanged>=N) where N follows from the cookie: an object changed
//     so that it no longer matches is not reported. Pass a filter that
//     matches every object the caller may hold, before and after any
//     change (e.g. by objectClass), and apply the real one with FetchIDs.
//     Only the attributes changed since the cookie are returned, plus
//     objectGUID, instanceType and, with a changed name, parentGUID. A change of only a back link
//     (memberOf) changes nothing DirSync reports.
//   - A cookie that does not decode is answered with
//     unavailableCriticalExtension (ErrDirSyncCookie). A well-formed cookie
//     of another DC (or domain) is not refused: the DC reads from its own
//     up-to-dateness vector in it, or from the start.
//   - The response control never says "more results": Samba sends the
//     whole delta in one answer, however large.

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/sdk"
)

// OIDDirSync is the DirSync control (LDAP_SERVER_DIRSYNC_OID, MS-ADTS
// 3.1.1.3.4.1.3).
const OIDDirSync = "1.2.840.113556.1.4.841"

// Flags of the DirSync control.
const (
	// DirSyncObjectSecurity (LDAP_DIRSYNC_OBJECT_SECURITY) asks the server
	// to return only what the reader may read, instead of requiring the
	// replication right.
	DirSyncObjectSecurity uint32 = 0x00000001
	// DirSyncAncestorsFirst (LDAP_DIRSYNC_ANCESTORS_FIRST_ORDER) returns
	// parents before their children.
	DirSyncAncestorsFirst uint32 = 0x00000800
	// DirSyncPublicDataOnly (LDAP_DIRSYNC_PUBLIC_DATA_ONLY).
	DirSyncPublicDataOnly uint32 = 0x00002000
	// DirSyncIncrementalValues (LDAP_DIRSYNC_INCREMENTAL_VALUES) returns
	// only the added and removed values of a linked attribute such as
	// member.
	DirSyncIncrementalValues uint32 = 0x80000000
)

// ErrDirSyncDenied is the cause of the error of a DirSync the server
// refuses for lack of rights (insufficientAccessRights): without
// LDAP_DIRSYNC_OBJECT_SECURITY the reader needs "Replicating Directory
// Changes" on the naming context's root. A caller can fall back to
// DirSyncOptions.ObjectSecurity or to uSNChanged polling.
var ErrDirSyncDenied = errors.New(`the account may not read changes with DirSync (it needs "Replicating Directory Changes" on the naming context's root)`)

// ErrDirSyncCookie is the cause of the error of a DirSync whose cookie the
// server refuses: the caller must read everything again (nil cookie).
var ErrDirSyncCookie = errors.New("the server refused the DirSync cookie: read everything again with a first DirSync")

// ErrDirSyncUnsupported is the cause of the error of a DirSync at a server
// whose root DSE does not list the DirSync control (not Active Directory).
var ErrDirSyncUnsupported = errors.New("the server does not support the DirSync control")

// maxDirSyncRounds bounds the searches of one DirSync that the server asks
// for with "more results".
const maxDirSyncRounds = 100_000

// DirSyncOptions change how DirSyncWith reads.
type DirSyncOptions struct {
	// ObjectSecurity sets LDAP_DIRSYNC_OBJECT_SECURITY: the server checks
	// the reader's rights on each object and attribute instead of
	// requiring "Replicating Directory Changes". What the reader may not
	// read is left out, silently: with it a delta may miss changes
	// (deletions in particular) that the reader cannot see.
	ObjectSecurity bool
	// WholeValues turns LDAP_DIRSYNC_INCREMENTAL_VALUES off: a changed
	// linked attribute (member) then comes with all its values in
	// DirSyncChange.Attributes, not as DirSyncChange.Added and Removed.
	WholeValues bool
}

// flags are the DirSync control flags for o.
func (o DirSyncOptions) flags() uint32 {
	var f uint32
	if o.ObjectSecurity {
		f |= DirSyncObjectSecurity
	}
	if !o.WholeValues {
		f |= DirSyncIncrementalValues
	}
	return f
}

// DirSyncChange is one changed object of a DirSync.
type DirSyncChange struct {
	// ID is the objectGUID, formatted as FormatGUID does (sdk.Entry.ID).
	ID string
	// DN is where the object is now. It may be outside Config.BaseDN: an
	// object moved out of the base, or anywhere else in the naming
	// context; InBase tells. A deleted object's DN is its tombstone's,
	// "CN=name\0ADEL:guid,CN=Deleted Objects,DC=…".
	DN string
	// InBase reports whether DN is Config.BaseDN or below it.
	InBase bool
	// Deleted reports a tombstone: isDeleted is TRUE, or the DN is a
	// tombstone's.
	Deleted bool
	// Attributes are the attributes that changed, as sent (lower-case
	// names, values as in sdk.Entry), with objectGUID and what the server
	// adds (instanceType; parentGUID, formatted as FormatGUID does, with a
	// changed name). An attribute without values was removed. The RDN
	// attribute (cn) never comes: a rename shows as a changed name.
	Attributes map[string][]string
	// Added and Removed are, with incremental values (the default), the
	// values added to and removed from linked attributes such as member,
	// by lower-case attribute name. Such an attribute is not in
	// Attributes.
	Added, Removed map[string][]string
}

// DirSyncResult describes a completed DirSync.
type DirSyncResult struct {
	// Result counts the changes in Entries and the searches in Pages.
	Result
	// Cookie is the cookie to read the next delta from.
	Cookie []byte
	// NamingContext is the root of the naming context that was searched.
	NamingContext string
}

// DirSync reads what changed since cookie in the naming context that holds
// cfg.BaseDN, with the DirSync control of Active Directory (critical), and
// calls fn with each changed object that matches filter, in the server's
// order. A nil cookie reads every object that matches (a first DirSync).
// It searches the root of the naming context (the control works nowhere
// else), so fn also sees objects outside cfg.BaseDN: one that moved out
// of it must be taken out by the caller (DirSyncChange.InBase), and
// tombstones (DirSyncChange.Deleted) are outside it too. attrs names the
// attributes to report (all user attributes when empty); objectGUID, name
// and isDeleted are always requested, so that every rename, move and
// deletion shows. The searches repeat while the server says that more
// changes wait, and the result holds the cookie to read the next delta
// from.
//
// filter is evaluated on each object as it is now, ORed with
// (isDeleted=TRUE) so that tombstones, which have lost most attributes,
// still come: an object changed so that it no longer matches filter is not
// reported at all, so filter should match every object the caller may hold
// before and after any change, with the real filter applied by FetchIDs.
// Whether deletions come at all depends on the server and the reader's
// rights (see the notes at the top of dirsync.go: Samba shows tombstones
// only to administrators); a caller that cannot be sure must also compare
// ID lists (FetchIDList).
//
// It uses LDAP_DIRSYNC_INCREMENTAL_VALUES; see DirSyncWith for the
// options. A refused cookie fails with ErrDirSyncCookie, a reader without
// the replication right with ErrDirSyncDenied (errors.Is). Following S1,
// any error means the changes already handed to fn are not the whole delta
// and the cookie must not advance; the delta can be read again from the
// same cookie. An error from fn stops the DirSync and is returned.
// Cancelling ctx aborts. Config.Timeout bounds the wait for each message
// of the answer (the server sends a delta in one answer, not in pages).
func DirSync(ctx context.Context, cfg Config, filter string, attrs []string, cookie []byte, fn func(DirSyncChange) error) (DirSyncResult, error) {
	return DirSyncWith(ctx, cfg, DirSyncOptions{}, filter, attrs, cookie, fn)
}

// DirSyncWith is DirSync with options.
func DirSyncWith(ctx context.Context, cfg Config, opts DirSyncOptions, filter string, attrs []string, cookie []byte, fn func(DirSyncChange) error) (DirSyncResult, error) {
	var res DirSyncResult
	cfg, err := cfg.check(filter)
	if err != nil {
		return res, err
	}
	base, _ := ldap.ParseDN(cfg.BaseDN) // checked by cfg.check
	err = withConn(ctx, cfg, &res.Result, func(c *client) error {
		root, err := readRootDSE(ctx, c, cfg, &res.Result)
		if err != nil {
			return err
		}
		if sc, ok := root["supportedcontrol"]; ok && !slices.Contains(sc, OIDDirSync) {
			return &Error{Server: res.URL, Op: "DirSync", Err: ErrDirSyncUnsupported}
		}
		nc, err := namingContextOf(base, root)
		if err != nil {
			return &Error{Server: res.URL, Op: "DirSync", Err: err}
		}
		res.NamingContext = nc
		d := &dirSyncer{ctx: ctx, c: c, cfg: cfg, base: base, res: &res, fn: fn, conv: newConverter(),
			incremental: !opts.WholeValues}
		res.Cookie, err = d.run(nc, "(|"+filter+"(isDeleted=TRUE))", dirSyncAttributes(attrs), opts.flags(), cookie)
		return err
	})
	if err != nil {
		res.Cookie = nil
		return res, err
	}
	return res, nil
}

// dirSyncAttributes is attrs plus objectGUID, name and isDeleted, without
// duplicates; "*" plus those when attrs is empty.
func dirSyncAttributes(attrs []string) []string {
	out := make([]string, 0, len(attrs)+4)
	if len(attrs) == 0 {
		out = append(out, "*")
	}
	seen := map[string]bool{}
	for _, a := range append(slices.Clone(attrs), "objectGUID", "name", "isDeleted") {
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// dirSyncControl is the DirSync request control, always critical.
type dirSyncControl struct {
	flags    uint32
	maxBytes int64
	cookie   []byte
}

func (c *dirSyncControl) GetControlType() string { return OIDDirSync }

func (c *dirSyncControl) String() string {
	return fmt.Sprintf("DirSync flags 0x%08x, cookie of %d bytes", c.flags, len(c.cookie))
}

// Encode encodes the control. The flags are a 32-bit field: 0x80000000
// goes out as the INTEGER -2147483648 (four octets), as Windows sends it.
func (c *dirSyncControl) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, OIDDirSync, "Control Type"))
	// TRUE is 0xFF: Samba takes any other octet for FALSE, and refuses a
	// DirSync control that is not critical.
	p.AppendChild(ber.NewLDAPBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, "Criticality"))
	seq := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "DirSync Control Value")
	seq.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(int32(c.flags)), "Flags"))
	seq.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, c.maxBytes, "MaxBytes"))
	ck := ber.Encode(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, nil, "Cookie")
	ck.Data.Write(c.cookie)
	ck.Value = string(c.cookie)
	seq.AppendChild(ck)
	val := ber.Encode(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, nil, "Control Value")
	val.Data.Write(seq.Bytes())
	p.AppendChild(val)
	return p
}

// dirSyncer is the state of one DirSync, across its searches.
type dirSyncer struct {
	ctx         context.Context
	c           *client
	cfg         Config
	base        *ldap.DN
	res         *DirSyncResult
	fn          func(DirSyncChange) error
	conv        *converter
	incremental bool

	raw   []rawAttr
	uris  []string
	refs  referenceSet
	total int
}

// run runs the searches and returns the last cookie.
func (d *dirSyncer) run(nc, filter string, attrs []string, flags uint32, cookie []byte) ([]byte, error) {
	compiled, err := ldap.CompileFilter(filter)
	if err != nil {
		return nil, err
	}
	ctl := &dirSyncControl{flags: flags, cookie: cookie}
	for round := 1; ; round++ {
		if round > maxDirSyncRounds {
			return nil, d.fail(round, fmt.Errorf("the server asked for more than %d searches", maxDirSyncRounds))
		}
		if err := d.deadline(); err != nil {
			return nil, d.fail(round, err)
		}
		id, err := d.c.send(searchRequest(nc, compiled, attrs), ctl)
		if err != nil {
			return nil, d.fail(round, err)
		}
		n, more, next, err := d.read(id, nc, len(ctl.cookie) > 0)
		d.res.Pages++
		if err != nil {
			return nil, d.fail(round, err)
		}
		if !more {
			return next, nil
		}
		if n == 0 && string(next) == string(ctl.cookie) {
			return nil, d.fail(round, errors.New("the server says more changes wait but repeats the cookie without sending any"))
		}
		ctl.cookie = next
	}
}

// deadline gives the next message cfg.Timeout.
func (d *dirSyncer) deadline() error {
	_ = d.c.nc.SetDeadline(time.Now().Add(d.cfg.Timeout))
	return d.ctx.Err() // a cancel whose deadline the line above overrode
}

// fail describes a failure of search round.
func (d *dirSyncer) fail(round int, err error) error {
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	return &Error{Server: d.res.URL, Op: fmt.Sprintf("DirSync search %d (after %d changes)", round, d.res.Entries), Err: explainConnErr(d.ctx, d.cfg, err)}
}

// explainConnErr words the errors of reading from the connection.
func explainConnErr(ctx context.Context, cfg Config, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("no complete answer within %v", cfg.Timeout)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the server closed the connection before the answer was complete")
	}
	return err
}

// read reads the answer to the DirSync search id: it hands each change to
// fn and returns their number, whether more changes wait and the cookie.
func (d *dirSyncer) read(id int64, nc string, withCookie bool) (n int, more bool, cookie []byte, err error) {
	refs := 0
	for {
		m, err := d.c.response(id)
		if err != nil {
			return n, false, nil, err
		}
		switch m.op {
		case opSearchEntry:
			n++
			d.total++
			if d.total > d.cfg.MaxEntries {
				return n, false, nil, fmt.Errorf("the delta holds more than %d changes: raise [domain.ldap] max_entries if the directory is really that large", d.cfg.MaxEntries)
			}
			if err := d.entry(m); err != nil {
				return n, false, nil, err
			}
		case opSearchRef:
			refs++
			if refs > d.cfg.MaxEntries {
				return n, false, nil, fmt.Errorf("the server sent more than %d continuation references", d.cfg.MaxEntries)
			}
			if d.uris, err = decodeReference(m.body, d.uris[:0]); err != nil {
				return n, false, nil, err
			}
			d.res.Referrals++
			for _, u := range d.uris {
				d.refs.add(&d.res.Result, u)
			}
		case opIntermediate:
		case opSearchDone:
			r, _, err := parseResult(m.body)
			if err != nil {
				return n, false, nil, err
			}
			if r.code != ldap.LDAPResultSuccess {
				return n, false, nil, dirSyncFailed(nc, r, withCookie, d.total == 0)
			}
			more, cookie, found, err := dirSyncCookie(m.controls)
			if err != nil {
				return n, false, nil, err
			}
			if !found {
				return n, false, nil, errors.New("the server ended the search without a DirSync control (cookie missing)")
			}
			if len(cookie) == 0 {
				return n, false, nil, errors.New("the server's DirSync control holds an empty cookie")
			}
			return n, more, cookie, nil
		default:
			return n, false, nil, malformed("unexpected operation 0x%02x in a search", m.op)
		}
		if err := d.deadline(); err != nil {
			return n, false, nil, err
		}
	}
}

// dirSyncFailed words the non-success result r of a DirSync of nc.
func dirSyncFailed(nc string, r ldapResult, withCookie, nothingRead bool) error {
	le := &ldap.Error{ResultCode: r.code, MatchedDN: r.matched, Err: errors.New(r.diag)}
	var cause error
	switch {
	case r.code == ldap.LDAPResultInsufficientAccessRights:
		cause = ErrDirSyncDenied
	case withCookie && (r.code == ldap.LDAPResultUnavailableCriticalExtension || r.code == ldap.LDAPResultProtocolError ||
		r.code == ldap.LDAPResultUnwillingToPerform):
		cause = ErrDirSyncCookie
	case r.code == ldap.LDAPResultUnavailableCriticalExtension:
		cause = ErrDirSyncUnsupported
	}
	if cause == nil {
		return searchFailed(nc, r, nothingRead)
	}
	tail := ": the delta is incomplete"
	if nothingRead {
		tail = ": nothing was read"
	}
	return fmt.Errorf("%w: %w%s", cause, &resultError{msg: describe(le), err: le}, tail)
}

// dirSyncCookie finds the DirSync response control among controls:
// SEQUENCE { moreResults INTEGER, unused INTEGER, cookie OCTET STRING }.
func dirSyncCookie(controls string) (more bool, cookie []byte, found bool, err error) {
	for s := controls; s != ""; {
		var ctl string
		if ctl, s, err = expect(s, tagSequence, "control"); err != nil {
			return false, nil, false, err
		}
		oid, r, err := expect(ctl, tagOctetString, "control type")
		if err != nil {
			return false, nil, false, err
		}
		if oid != OIDDirSync {
			continue
		}
		if r != "" && r[0] == tagBoolean {
			if _, r, err = expect(r, tagBoolean, "criticality"); err != nil {
				return false, nil, false, err
			}
		}
		val, _, err := expect(r, tagOctetString, "DirSync control value")
		if err != nil {
			return false, nil, false, err
		}
		seq, _, err := expect(val, tagSequence, "DirSync control value")
		if err != nil {
			return false, nil, false, err
		}
		flagS, r, err := expect(seq, tagInteger, "DirSync flags")
		if err != nil {
			return false, nil, false, err
		}
		flag, err := parseInt(flagS)
		if err != nil {
			return false, nil, false, err
		}
		size, r, err := expect(r, tagInteger, "DirSync max bytes")
		if err != nil {
			return false, nil, false, err
		}
		if _, err := parseInt(size); err != nil {
			return false, nil, false, err
		}
		ck, _, err := expect(r, tagOctetString, "DirSync cookie")
		if err != nil {
			return false, nil, false, err
		}
		return flag != 0, []byte(ck), true, nil
	}
	return false, nil, false, nil
}

// entry converts one changed object and hands it to fn.
func (d *dirSyncer) entry(m message) error {
	var dn string
	var err error
	if dn, d.raw, err = decodeEntry(m.body, d.raw); err != nil {
		return err
	}
	ch, err := d.change(dn, d.raw)
	if err != nil {
		return err
	}
	if err := d.fn(ch); err != nil {
		return err
	}
	d.res.Entries++
	return nil
}

// change converts a DirSync entry.
func (d *dirSyncer) change(dn string, raw []rawAttr) (DirSyncChange, error) {
	var ch DirSyncChange
	plain := make([]rawAttr, 0, len(raw))
	var later []rawAttr // attributes converted here rather than by the converter
	for _, a := range raw {
		name := d.conv.lower(a.name)
		if strings.IndexByte(name, ';') >= 0 {
			r, ok, err := parseRange(name)
			if err != nil {
				return ch, fmt.Errorf("change %q: %w", dn, err)
			}
			if ok {
				if err := ch.addIncremental(d.incremental, dn, a.name, r, a.vals); err != nil {
					return ch, err
				}
				continue
			}
		}
		switch name {
		case "parentguid", "ntsecuritydescriptor":
			later = append(later, a)
			continue
		}
		plain = append(plain, a)
	}
	e, err := d.conv.entry(dn, plain)
	if err != nil {
		return ch, err
	}
	if _, ok := e.Attributes["objectguid"]; !ok {
		return ch, fmt.Errorf("change %q: the server sent no objectGUID", dn)
	}
	for _, a := range later {
		name := d.conv.lower(a.name)
		vals := make([]string, len(a.vals))
		for i, v := range a.vals {
			if name == "parentguid" {
				if vals[i], err = FormatGUID([]byte(v)); err != nil {
					return ch, fmt.Errorf("change %q: parentGUID: %w", dn, err)
				}
			} else {
				vals[i] = base64.StdEncoding.EncodeToString([]byte(v))
			}
		}
		e.Attributes[name] = append(e.Attributes[name], vals...)
	}
	ch.ID, ch.DN, ch.Attributes = e.ID, e.DN, e.Attributes
	ch.Deleted = tombstoneDN(ch.DN)
	for _, v := range e.Attributes["isdeleted"] {
		if strings.EqualFold(v, "TRUE") {
			ch.Deleted = true
		}
	}
	ch.InBase = under(d.base, ch.DN)
	return ch, nil
}

// addIncremental files the values of the incremental-values attribute
// name ("member;range=1-1": added, "member;range=0-0": removed).
func (ch *DirSyncChange) addIncremental(incremental bool, dn, name string, r attrRange, vals []string) error {
	if !incremental {
		return fmt.Errorf("change %q: attribute %s is ranged (a DirSync result cannot be completed with range reads)", dn, name)
	}
	var into *map[string][]string
	switch {
	case r.low == 1 && r.high == 1:
		into = &ch.Added
	case r.low == 0 && r.high == 0:
		into = &ch.Removed
	default:
		return fmt.Errorf("change %q: attribute %s: want range 1-1 (values added) or 0-0 (values removed) with incremental values", dn, name)
	}
	if *into == nil {
		*into = map[string][]string{}
	}
	base := strings.ToLower(r.base)
	(*into)[base] = append((*into)[base], validUTF8(vals)...)
	return nil
}

// tombstoneDN reports whether dn is a tombstone's: its first RDN value
// holds the "\nDEL:" that AD appends to a deleted object's name.
func tombstoneDN(dn string) bool {
	first, _, _ := strings.Cut(dn, ",")
	return strings.Contains(strings.ToUpper(first), `\0ADEL:`) || strings.Contains(first, "\nDEL:")
}

// under reports whether dn is base or below it.
func under(base *ldap.DN, dn string) bool {
	p, err := ldap.ParseDN(dn)
	if err != nil || base == nil {
		return false
	}
	return base.EqualFold(p) || base.AncestorOfFold(p)
}

// namingContextOf returns the root of the naming context that holds base:
// the longest of the rootDSE's namingContexts (and defaultNamingContext)
// that is base or above it.
func namingContextOf(base *ldap.DN, root map[string][]string) (string, error) {
	cands := append(slices.Clone(root["namingcontexts"]), root["defaultnamingcontext"]...)
	best, depth := "", -1
	for _, c := range cands {
		p, err := ldap.ParseDN(c)
		if err != nil || len(p.RDNs) == 0 {
			continue
		}
		if (p.EqualFold(base) || p.AncestorOfFold(base)) && len(p.RDNs) > depth {
			best, depth = c, len(p.RDNs)
		}
	}
	if best == "" {
		return "", fmt.Errorf("the base DN %q is in none of the server's naming contexts (%s)", base.String(), strings.Join(cands, "; "))
	}
	return best, nil
}

// readRootDSE reads the attributes of the root DSE that DirSync and
// ServerUSN use.
func readRootDSE(ctx context.Context, c *client, cfg Config, res *Result) (map[string][]string, error) {
	root, found, err := readBase(ctx, c, cfg, "", []string{"namingContexts", "defaultNamingContext", "supportedControl",
		"highestCommittedUSN", "dsServiceName", "dnsHostName"})
	if err == nil && !found {
		err = errors.New("the server returned no root DSE")
	}
	if err != nil {
		return nil, &Error{Server: res.URL, Op: "read the root DSE", Err: explainConnErr(ctx, cfg, err)}
	}
	return root, nil
}

// readBase reads the entry dn (base scope) with attrs and returns its
// values by lower-case attribute name, as sent (binary values too). found
// is false when the server answers noSuchObject.
func readBase(ctx context.Context, c *client, cfg Config, dn string, attrs []string) (map[string][]string, bool, error) {
	_ = c.nc.SetDeadline(time.Now().Add(cfg.Timeout))
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	f, err := ldap.CompileFilter("(objectClass=*)")
	if err != nil {
		return nil, false, err
	}
	id, err := c.send(searchOp(dn, ldap.ScopeBaseObject, f, attrs))
	if err != nil {
		return nil, false, err
	}
	var out map[string][]string
	var raw []rawAttr
	for {
		m, err := c.response(id)
		if err != nil {
			return nil, false, err
		}
		switch m.op {
		case opSearchEntry:
			if out != nil {
				return nil, false, errors.New("a base-scope read returned a second entry")
			}
			if _, raw, err = decodeEntry(m.body, raw); err != nil {
				return nil, false, err
			}
			out = make(map[string][]string, len(raw))
			for _, a := range raw {
				k := strings.ToLower(a.name)
				out[k] = append(out[k], a.vals...)
			}
		case opSearchRef, opIntermediate:
		case opSearchDone:
			r, _, err := parseResult(m.body)
			if err != nil {
				return nil, false, err
			}
			if r.code == ldap.LDAPResultNoSuchObject {
				return nil, false, nil
			}
			if r.code != ldap.LDAPResultSuccess {
				le := &ldap.Error{ResultCode: r.code, MatchedDN: r.matched, Err: errors.New(r.diag)}
				return nil, false, &resultError{msg: describe(le), err: le}
			}
			return out, out != nil, nil
		default:
			return nil, false, malformed("unexpected operation 0x%02x in a search", m.op)
		}
	}
}

// FetchIDsBatch is how many objectGUIDs one search of FetchIDs asks for.
const FetchIDsBatch = 200

// FetchIDs reads, below cfg.BaseDN, the entries among ids (objectGUIDs as
// FormatGUID formats them) that match filter, and calls fn with each
// exactly as Fetch would (attrs as for Fetch, ranged attributes
// completed). An id that does not reach fn is not, or no longer, in scope:
// deleted, moved out of the base, or not matching filter. It searches in
// batches of FetchIDsBatch ids, (&FILTER(|(objectGUID=…)…)), paged, on one
// connection; ids repeated are read once, and no ids reads nothing (and
// connects to no server). This turns the IDs of a DirSync delta into full
// entries. Errors and S1 are as for Fetch: on any error the entries
// already passed to fn are not the whole result. A malformed id is an
// error before connecting.
func FetchIDs(ctx context.Context, cfg Config, filter string, attrs []string, ids []string, fn func(sdk.Entry) error) (Result, error) {
	var res Result
	cfg, err := cfg.check(filter)
	if err != nil {
		return res, err
	}
	want := make(map[string]bool, len(ids))
	var terms []string
	for _, id := range ids {
		b, err := ParseGUID(id)
		if err != nil {
			return res, &Error{Op: "config", Err: err, secret: cfg.Password}
		}
		key, _ := FormatGUID(b)
		if want[key] {
			continue
		}
		want[key] = true
		terms = append(terms, "(objectGUID="+escapeBytes(b)+")")
	}
	if len(terms) == 0 {
		return res, nil
	}
	check := func(e sdk.Entry) error {
		if !want[e.ID] {
			return fmt.Errorf("the server returned the entry %q (objectGUID %s), which was not asked for", e.DN, e.ID)
		}
		return fn(e)
	}
	batches := (len(terms) + FetchIDsBatch - 1) / FetchIDsBatch
	err = withConn(ctx, cfg, &res, func(c *client) error {
		for i := 0; i < batches; i++ {
			batch := terms[i*FetchIDsBatch : min(len(terms), (i+1)*FetchIDsBatch)]
			f := "(&" + filter + "(|" + strings.Join(batch, "") + "))"
			if err := search(ctx, c, cfg, f, requestAttributes(attrs), &res, check); err != nil {
				var fe *Error
				if errors.As(err, &fe) && batches > 1 {
					fe.Op = fmt.Sprintf("batch %d of %d: %s", i+1, batches, fe.Op)
				} else if !errors.As(err, &fe) {
					err = &Error{Server: res.URL, Op: fmt.Sprintf("batch %d of %d", i+1, batches), Err: explainConnErr(ctx, cfg, err)}
				}
				return err
			}
		}
		return nil
	})
	return res, err
}

// ParseGUID parses a GUID as FormatGUID formats it (either case) into the
// 16 bytes of an AD objectGUID.
func ParseGUID(s string) ([]byte, error) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return nil, fmt.Errorf("%q is not a GUID (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", s)
	}
	h, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil {
		return nil, fmt.Errorf("%q is not a GUID: %v", s, err)
	}
	return []byte{h[3], h[2], h[1], h[0], h[5], h[4], h[7], h[6], h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]}, nil
}

// escapeBytes escapes every byte of b for a filter value: \xx.
func escapeBytes(b []byte) string {
	var sb strings.Builder
	sb.Grow(3 * len(b))
	for _, c := range b {
		sb.WriteByte('\\')
		sb.WriteString(hex.EncodeToString([]byte{c}))
	}
	return sb.String()
}

// USNState is where a domain controller's changes stand: its highest
// committed USN and who it is. USNs count per DC (and start again after a
// restore from backup, which gives the DC a new invocationId), so a USN
// only means something to the DC it came from: see SameServer.
type USNState struct {
	// URL is the server that answered.
	URL string
	// HighestCommittedUSN is the rootDSE's highestCommittedUSN.
	HighestCommittedUSN int64
	// DSServiceName is the DN of the DC's NTDS Settings object (rootDSE
	// dsServiceName).
	DSServiceName string
	// InvocationID is that object's invocationId, formatted as FormatGUID
	// does; "" when the reader may not read it.
	InvocationID string
	// DNSHostName is the rootDSE's dnsHostName.
	DNSHostName string
}

// SameServer reports whether s and o come from the same DC and the same
// life of its database: same dsServiceName, and same invocationId when
// both are known.
func (s USNState) SameServer(o USNState) bool {
	if s.DSServiceName == "" || !strings.EqualFold(s.DSServiceName, o.DSServiceName) {
		return false
	}
	return s.InvocationID == "" || o.InvocationID == "" || s.InvocationID == o.InvocationID
}

// ServerUSN reads the highest committed USN and the identity of the
// server cfg reaches (failover as for Fetch). For uSNChanged polling,
// read it before the changes (FetchChangedSince) and keep it for the next
// poll only if the next ServerUSN is of the same server (SameServer):
// after a failover to another DC, or its restore, the USNs do not compare
// and the caller must read in full. Cancelling ctx aborts.
func ServerUSN(ctx context.Context, cfg Config) (USNState, error) {
	var st USNState
	cfg, err := cfg.check("(objectClass=*)")
	if err != nil {
		return st, err
	}
	var res Result
	err = withConn(ctx, cfg, &res, func(c *client) error {
		st.URL = res.URL
		root, err := readRootDSE(ctx, c, cfg, &res)
		if err != nil {
			return err
		}
		fail := func(format string, a ...any) error {
			return &Error{Server: res.URL, Op: "read the root DSE", Err: fmt.Errorf(format, a...)}
		}
		usn := root["highestcommittedusn"]
		if len(usn) != 1 {
			return fail("highestCommittedUSN has %d values, want 1 (is this Active Directory?)", len(usn))
		}
		if st.HighestCommittedUSN, err = strconv.ParseInt(usn[0], 10, 64); err != nil || st.HighestCommittedUSN < 0 {
			return fail("highestCommittedUSN %q is not a USN", usn[0])
		}
		if v := root["dsservicename"]; len(v) == 1 && v[0] != "" {
			st.DSServiceName = v[0]
		} else {
			return fail("dsServiceName has %d values, want 1", len(v))
		}
		if v := root["dnshostname"]; len(v) > 0 {
			st.DNSHostName = v[0]
		}
		ntds, found, err := readBase(ctx, c, cfg, st.DSServiceName, []string{"invocationId"})
		if err != nil {
			var le *ldap.Error
			if errors.As(err, &le) || !isConnErr(err) {
				// A result code (no right to read it): unknown.
				return nil
			}
			return &Error{Server: res.URL, Op: "read the invocationId of " + st.DSServiceName, Err: explainConnErr(ctx, cfg, err)}
		}
		if found && len(ntds["invocationid"]) == 1 {
			if st.InvocationID, err = FormatGUID([]byte(ntds["invocationid"][0])); err != nil {
				return &Error{Server: res.URL, Op: "read the invocationId of " + st.DSServiceName, Err: err}
			}
		}
		return nil
	})
	if err != nil {
		return USNState{}, err
	}
	return st, nil
}

// isConnErr reports whether err is a failure of the connection rather than
// an answer of the server.
func isConnErr(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, errMalformed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// FetchChangedSince is Fetch of the entries below cfg.BaseDN that match
// filter and changed after usn on the server: filter
// (&FILTER(uSNChanged>=usn+1)). uSNChanged is the server's own: usn must
// come from ServerUSN of the same server (see there). It needs no right
// beyond reading the entries, and it does not see deletions, nor entries
// moved out of the base: compare the full list of IDs (FetchIDList) for
// those. A group whose members changed has a new uSNChanged; its members,
// whose memberOf changed with it, do not.
func FetchChangedSince(ctx context.Context, cfg Config, filter string, attrs []string, usn int64, fn func(sdk.Entry) error) (Result, error) {
	if usn < 0 {
		return Result{}, &Error{Op: "config", Err: fmt.Errorf("USN %d is negative", usn), secret: cfg.Password}
	}
	return Fetch(ctx, cfg, fmt.Sprintf("(&%s(uSNChanged>=%d))", filter, usn+1), attrs, fn)
}

// FetchIDList returns the IDs (sdk.Entry.ID: the formatted objectGUID) of
// every entry below cfg.BaseDN that matches filter, reading nothing else
// of them: the cheap way to find the entries that are gone (deleted, moved
// out or no longer matching) without the right to read tombstones. Errors
// and S1 are as for Fetch.
func FetchIDList(ctx context.Context, cfg Config, filter string) ([]string, Result, error) {
	var ids []string
	res, err := Fetch(ctx, cfg, filter, []string{"objectGUID"}, func(e sdk.Entry) error {
		ids = append(ids, e.ID)
		return nil
	})
	if err != nil {
		return nil, res, err
	}
	return ids, res, nil
}
