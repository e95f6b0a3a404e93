package ldapfetch

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/sdk"
)

// RFC 4533 content synchronization ("syncrepl"): delta and live reads of
// an OpenLDAP directory (the syncprov overlay).
//
// A sync search is one subtree search with the critical Sync Request
// control. In refreshOnly mode (Sync, Cookie) the server sends what changed
// since a cookie and ends with a SearchResultDone carrying a new cookie; in
// refreshAndPersist mode (Persist) it sends the same refresh, says that it
// is done with a Sync Info message, and then keeps the search open and
// sends each change as it happens.
//
// What a refresh says about the entries it does not send depends on its
// phase. In a present phase (slapd without a session log, or a cookie
// older than its log) the server names every unchanged entry that still
// matches (syncState present, or syncIdSet UUID lists), and sends the
// changed ones: every entry neither named nor sent is gone. In a delete
// phase (slapd with a session log that covers the cookie) it names the
// entries deleted or gone out of the search's base, scope or filter, and
// sends the changed ones: every entry not named stays as it was. A
// refresh may hold a present phase and then a delete phase; the reverse,
// or present and delete messages mixed in one phase, is refused as
// ambiguous.
//
// The rules of S1 hold as for Fetch: a sync that could leave the caller's
// copy incomplete is an error, never a shorter result. In particular, a
// cookie slapd cannot parse is not sent: slapd would silently treat it as
// no cookie at all and answer with every entry in a delete phase that
// deletes nothing, which would hide the deletions since the real cookie
// (see checkCookie).
//
// What the reading account needs on OpenLDAP: read access to the entries
// and their entryUUID (and entryCSN, which syncprov compares), and no size
// or time limit on the search (a sync search cannot be paged: the refresh
// comes as one answer), e.g.
//
//	limits dn.exact="cn=reader,dc=example,dc=com" size=unlimited time=unlimited
//
// The database needs the syncprov overlay; an equality index on entryUUID
// makes Cookie cheap, and on entryCSN the present phase. A session log
// (syncprov-sessionlog N) lets slapd answer a recent cookie with a delete
// phase instead of listing every unchanged entry.

// OIDs and codes of RFC 4533.
const (
	oidSyncRequest = "1.3.6.1.4.1.4203.1.9.1.1"
	oidSyncState   = "1.3.6.1.4.1.4203.1.9.1.2"
	oidSyncDone    = "1.3.6.1.4.1.4203.1.9.1.3"
	oidSyncInfo    = "1.3.6.1.4.1.4203.1.9.1.4"

	syncRefreshOnly       = 1
	syncRefreshAndPersist = 3

	// resultSyncRefreshRequired is e-syncRefreshRequired.
	resultSyncRefreshRequired = 4096

	// Sync Info choices (context tags).
	tagNewCookie      = 0x80 // [0] syncCookie
	tagRefreshDelete  = 0xa1 // [1] SEQUENCE
	tagRefreshPresent = 0xa2 // [2] SEQUENCE
	tagSyncIDSet      = 0xa3 // [3] SEQUENCE
)

// Sync states of the Sync State control.
const (
	statePresent = 0
	stateAdd     = 1
	stateModify  = 2
	stateDelete  = 3
)

// cookieFilter matches no entry and is cheap on a server that indexes
// entryUUID for equality (syncprov's own searches want that index too).
const cookieFilter = "(entryUUID=00000000-0000-0000-0000-000000000000)"

// persistKeepAlive is the TCP keepalive of a persistent sync's connection,
// which may stay silent for hours: a peer that has gone away (host down,
// network cut) is noticed after about Idle + Count × Interval.
var persistKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}

// ErrRefreshRequired: the server refused the cookie (result
// e-syncRefreshRequired, 4096, or a cookie the server says it cannot use,
// such as slapd's "consumer state is newer than provider"), or the cookie
// is one the server could not have understood: the caller must read in
// full (Fetch, after taking a new Cookie).
var ErrRefreshRequired = errors.New("the server cannot sync from this cookie: a full read is required")

// ErrSyncUnsupported: the server does not do content synchronization (the
// critical sync request control is refused as unavailableCriticalExtension
// or unsupported, or the answer lacks the sync controls: no syncDone
// control comes back, or an entry has no sync state). On OpenLDAP the
// database needs the syncprov overlay.
var ErrSyncUnsupported = errors.New("the server does not support content synchronization (RFC 4533; OpenLDAP: the syncprov overlay)")

// SyncResult describes a completed refresh (Sync).
type SyncResult struct {
	// Result: URL, Entries (handed to fn), Referrals and References of
	// the refresh, Elapsed. Pages is 1: a sync search is not paged.
	Result
	// Cookie is the new cookie, to pass to the next Sync or Persist. It
	// comes from the syncDone control or the last cookie of the refresh;
	// when the server sends none because nothing changed (slapd does so),
	// it is the cookie passed in. A refresh that changes anything and ends
	// without a cookie is an error.
	Cookie []byte
	// Deleted are the keys (SyncKey) of entries deleted or gone out of
	// the search's base, scope or filter: the delete phase (syncState
	// delete, syncIdSet with refreshDeletes).
	Deleted []string
	// PresentPhase: the server used the present phase, so every entry
	// that is neither in Present nor handed to fn is gone. A Sync without
	// a cookie reports true: its entries are the whole result.
	PresentPhase bool
	// Present are the keys the present phase named as unchanged (syncState
	// present and syncIdSet without refreshDeletes).
	Present []string
}

// String describes the result in one line.
func (r SyncResult) String() string {
	s := r.URL + ": " + strconv.Itoa(r.Entries) + " entries changed, " + strconv.Itoa(len(r.Deleted)) + " deleted"
	if r.PresentPhase {
		s += ", " + strconv.Itoa(len(r.Present)) + " present (present phase)"
	}
	if r.Referrals > 0 {
		s += ", " + strconv.Itoa(r.Referrals) + " referrals skipped"
	}
	return s + ", " + r.Elapsed.Round(time.Millisecond).String()
}

// SyncEventKind says what a SyncEvent reports.
type SyncEventKind int

const (
	// EventEntry: an entry added or changed (or, in a refresh without a
	// cookie, any entry); Entry is set, as Fetch gives it.
	EventEntry SyncEventKind = iota + 1
	// EventDelete: the entry of Key was deleted or has gone out of the
	// search's base, scope or filter.
	EventDelete
	// EventPresent: the entry of Key is unchanged (refresh phase only).
	EventPresent
	// EventRefreshDone: the refresh phase ended; PresentPhase says
	// whether every entry not named since the start (neither
	// EventPresent nor EventEntry) is gone. Changes as they happen follow.
	EventRefreshDone
	// EventCookie: only a new cookie (a Sync Info newcookie).
	EventCookie
)

func (k SyncEventKind) String() string {
	switch k {
	case EventEntry:
		return "entry"
	case EventDelete:
		return "delete"
	case EventPresent:
		return "present"
	case EventRefreshDone:
		return "refresh done"
	case EventCookie:
		return "cookie"
	}
	return "SyncEventKind(" + strconv.Itoa(int(k)) + ")"
}

// SyncEvent is one step of a persistent sync (Persist).
type SyncEvent struct {
	Kind SyncEventKind
	// Entry is the entry of EventEntry.
	Entry sdk.Entry
	// Key is the SyncKey of the entry of EventDelete and EventPresent (and
	// of EventEntry too).
	Key string
	// PresentPhase is set on EventRefreshDone when the refresh used the
	// present phase (always for a refresh without a cookie).
	PresentPhase bool
	// Cookie, when non-nil, is the point the events so far reach: a caller
	// that has applied them may save it. During the refresh phase no
	// cookie is given before EventRefreshDone (which always has one): what
	// a present phase implies for the entries it does not name is known
	// only at its end.
	Cookie []byte
}

// SyncKey returns the key of an entry handed on by Sync or Persist: its
// entryUUID in lower case, as Deleted, Present and SyncEvent.Key hold
// them; "" when the entry has none.
func SyncKey(e sdk.Entry) string {
	return strings.ToLower(e.Get("entryuuid"))
}

// formatSyncUUID formats a 16-byte syncUUID as an entryUUID value: lower
// case 8-4-4-4-12 hex, RFC 4122 byte order.
func formatSyncUUID(b string) (string, error) {
	if len(b) != 16 {
		return "", malformed("syncUUID of %d bytes, want 16", len(b))
	}
	var buf [36]byte
	hex.Encode(buf[0:8], []byte(b[0:4]))
	buf[8] = '-'
	hex.Encode(buf[9:13], []byte(b[4:6]))
	buf[13] = '-'
	hex.Encode(buf[14:18], []byte(b[6:8]))
	buf[18] = '-'
	hex.Encode(buf[19:23], []byte(b[8:10]))
	buf[23] = '-'
	hex.Encode(buf[24:36], []byte(b[10:16]))
	return string(buf[:]), nil
}

// Cookie returns a cookie for the directory's present state, without
// reading entries: a run that then reads in full (Fetch) can later ask
// Sync or Persist for what changed since this point. Take it before the
// full read: changes between the two are sent again, which is harmless.
// It runs a refreshOnly sync search with no cookie and a filter that
// matches no entry (an equality on entryUUID with the nil UUID, cheap where
// entryUUID is indexed) and takes the cookie of its syncDone control.
// ErrSyncUnsupported when the server cannot; an error when it gives no
// cookie (slapd has none while its database has no contextCSN: load with
// slapadd -w, or write once over LDAP). server is the URL of cfg.URLs that
// gave it.
func Cookie(ctx context.Context, cfg Config) (cookie []byte, server string, err error) {
	res, err := runSync(ctx, cfg, syncRefreshOnly, cookieFilter, []string{"1.1"}, nil, func(ev SyncEvent) error {
		if ev.Kind == EventEntry {
			return fmt.Errorf("the server returned entry %q for a filter that matches none", ev.Entry.DN)
		}
		return nil
	})
	if err != nil {
		return nil, res.URL, err
	}
	return res.Cookie, res.URL, nil
}

// Sync reads, in one refreshOnly sync search below cfg.BaseDN with filter,
// what changed since cookie (nil: everything, like Fetch). Entries added
// or changed (and, for a nil cookie, every entry) go to fn as Fetch gives
// them: the same IDs, attributes and value rules, the stable-id
// attributes requested as Fetch does. The keys of deleted entries, and of
// those the present phase names, are in the result; see SyncResult for
// how to apply it. An error from fn stops the sync and is returned. On any
// error nothing of the sync may be acted upon (S1), and the cookie passed
// in stays the one to use. ErrRefreshRequired (errors.Is) when the server
// refuses the cookie, ErrSyncUnsupported when it cannot sync. Cancelling
// ctx aborts. cfg.Timeout bounds the wait for each message of the answer
// (with fn's time for it); cfg.MaxEntries bounds the entries and the keys
// named.
//
// slapd answers a cookie older than its data (no entry left at or before
// its CSN) or with other SIDs than its own with a full reload: every
// entry, in a present phase, which this reports as such (with
// syncprov-reloadhint TRUE it may refuse with e-syncRefreshRequired
// instead: ErrRefreshRequired). A cookie newer than its data is refused
// ("consumer state is newer than provider": ErrRefreshRequired).
//
// What slapd does not report: writes that its overlays make as internal
// operations "never replicated" — the memberOf values that the memberof
// overlay maintains, and the member values that memberof-refint or the
// refint overlay fix when a member is renamed or deleted. Their entries
// keep their entryCSN and are not sent. A caller that keeps such
// attributes must derive them itself: memberOf from the groups' member,
// and a group's member value naming an entry that Deleted lists, or that
// came back under a new DN, as dropped or renamed.
func Sync(ctx context.Context, cfg Config, filter string, attrs []string, cookie []byte, fn func(sdk.Entry) error) (SyncResult, error) {
	var deleted, present []string
	res, err := runSync(ctx, cfg, syncRefreshOnly, filter, requestAttributes(attrs), cookie, func(ev SyncEvent) error {
		switch ev.Kind {
		case EventEntry:
			return fn(ev.Entry)
		case EventDelete:
			deleted = append(deleted, ev.Key)
		case EventPresent:
			if len(present) == cap(present) {
				// Doubled, not grown by a quarter as append does past a
				// few hundred: a present phase names every entry.
				present = slices.Grow(present, max(len(present), 1024))
			}
			present = append(present, ev.Key)
		}
		return nil
	})
	res.Deleted, res.Present = deleted, present
	return res, err
}

// Persist runs a refreshAndPersist sync search: first the refresh phase
// (as Sync: entries, deletes and presents, then EventRefreshDone with the
// new cookie), then, until ctx ends or the connection fails, each change
// as it happens (EventEntry, EventDelete, EventCookie), each with the
// cookie it brings the caller to. It calls fn with the events in order,
// on the calling goroutine, and returns only with an error: one that
// wraps ctx's error after a cancel; ErrRefreshRequired if the cookie is
// refused (at the start, or when the server ends the search so); the
// error of fn; or a connection error when the server goes away — the
// caller then reconnects with the last cookie it saved. Events of the
// refresh phase must not be taken as the directory's state before
// EventRefreshDone (S1). cfg.Timeout bounds connecting and each message
// of the refresh phase; the persist phase waits as long as ctx allows,
// with TCP keepalive to notice a peer that has gone away. Continuation
// references fail a persistent sync: there is no result to report them in.
func Persist(ctx context.Context, cfg Config, filter string, attrs []string, cookie []byte, fn func(SyncEvent) error) error {
	_, err := runSync(ctx, cfg, syncRefreshAndPersist, filter, requestAttributes(attrs), cookie, fn)
	if err == nil {
		// runSync returns from a persistent search only with an error.
		err = &Error{Op: "persistent sync", Err: errors.New("ended without an error"), secret: cfg.Password}
	}
	return err
}

// syncRequestControl is the Sync Request control, marked critical: a
// server that cannot sync must refuse the search rather than answer it as
// a plain search.
type syncRequestControl struct {
	mode   int
	cookie []byte
}

func (c *syncRequestControl) GetControlType() string { return oidSyncRequest }

func (c *syncRequestControl) String() string {
	return fmt.Sprintf("Sync Request (mode %d, cookie %q)", c.mode, c.cookie)
}

// Encode encodes the control: SEQUENCE { mode, cookie OPTIONAL } (the
// reloadHint left FALSE: a server that honours it answers a cookie it
// cannot use with e-syncRefreshRequired rather than a full reload).
func (c *syncRequestControl) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, oidSyncRequest, "Control Type"))
	p.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, "Criticality"))
	val := ber.Encode(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, nil, "Control Value (Sync Request)")
	seq := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Sync Request Value")
	seq.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(c.mode), "Mode"))
	if c.cookie != nil {
		seq.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, string(c.cookie), "Cookie"))
	}
	val.AppendChild(seq)
	p.AppendChild(val)
	return p
}

// runSync connects, runs one sync search and feeds emit. In refreshOnly
// mode it returns after the refresh; in refreshAndPersist mode only with
// an error.
func runSync(ctx context.Context, cfg Config, mode int, filter string, attrs []string, cookie []byte, emit func(SyncEvent) error) (SyncResult, error) {
	start := time.Now()
	res := SyncResult{}
	cfg, err := cfg.check(filter)
	if err != nil {
		return res, err
	}
	if cookie != nil {
		if err := checkCookie(cookie, false); err != nil {
			return res, &Error{Op: "sync", Err: err, secret: cfg.Password}
		}
	}
	compiled, err := ldap.CompileFilter(filter)
	if err != nil {
		return res, &Error{Op: "config", Err: err, secret: cfg.Password}
	}
	err = withConn(ctx, cfg, &res.Result, func(conn *client) error {
		if mode == syncRefreshAndPersist {
			setKeepAlive(conn.nc)
		}
		s := &syncer{ctx: ctx, c: conn, cfg: cfg, res: &res, emit: emit, conv: newConverter(), persist: mode == syncRefreshAndPersist,
			sent: cookie, refreshing: true}
		if err := s.run(searchRequest(cfg.BaseDN, compiled, attrs), &syncRequestControl{mode: mode, cookie: cookie}); err != nil {
			return s.fail(err)
		}
		return nil
	})
	res.Elapsed = time.Since(start)
	return res, err
}

// setKeepAlive turns on persistKeepAlive for the TCP connection under nc.
func setKeepAlive(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		_ = tcp.SetKeepAliveConfig(persistKeepAlive)
	}
}

// syncer is the state of one sync search.
type syncer struct {
	ctx     context.Context
	c       *client
	cfg     Config
	res     *SyncResult
	emit    func(SyncEvent) error
	conv    *converter
	persist bool
	sent    []byte // the cookie of the request

	refreshing bool
	phase      int    // phaseNone, phasePresent or phaseDelete
	presentEnd bool   // a present phase took place (present messages, or a refreshPresent)
	cookie     []byte // the last cookie of the refresh
	named      int    // entries handed on and keys named present, in the refresh
	deletes    int    // keys named deleted, in the refresh
	renewAt    time.Time

	raw  []rawAttr
	uris []string
	refs referenceSet
}

const (
	phaseNone    = iota
	phasePresent // present messages came
	phaseDelete  // delete messages came, or a present phase ended
	phaseEnded   // a refreshOnly refresh was marked done; its SearchResultDone follows
)

// fail wraps err as the *Error of the sync.
func (s *syncer) fail(err error) error {
	var fe *Error
	if errors.As(err, &fe) && fe.Server != "" {
		fe.secret = s.cfg.Password
		return fe
	}
	if s.ctx.Err() != nil {
		err = s.ctx.Err()
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no answer within %v", s.cfg.Timeout)
	} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("the server closed the connection")
	}
	op := fmt.Sprintf("sync refresh (after %d entries)", s.res.Entries)
	if !s.refreshing {
		op = "persistent sync"
	}
	return &Error{Server: s.res.URL, Op: op, Err: err, secret: s.cfg.Password}
}

// renew extends the deadline of the refresh phase: cfg.Timeout from now,
// renewed at most every eighth of it so that a long refresh does not pay
// for a timer update with each message.
func (s *syncer) renew() error {
	if now := time.Now(); now.After(s.renewAt) {
		_ = s.c.nc.SetDeadline(now.Add(s.cfg.Timeout))
		s.renewAt = now.Add(s.cfg.Timeout / 8)
		// A cancel whose deadline the line above overrode.
		if err := s.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// run sends the search and reads its answer.
func (s *syncer) run(req *ber.Packet, ctl ldap.Control) error {
	if err := s.renew(); err != nil {
		return err
	}
	id, err := s.c.send(req, ctl)
	if err != nil {
		return err
	}
	s.res.Pages = 1
	for {
		m, err := s.c.response(id)
		if err != nil {
			return err
		}
		if s.refreshing {
			if err := s.renew(); err != nil {
				return err
			}
		}
		switch m.op {
		case opSearchEntry:
			err = s.entry(m)
		case opSearchRef:
			err = s.reference(m)
		case opIntermediate:
			err = s.intermediate(m)
		case opSearchDone:
			return s.done(m)
		default:
			err = malformed("unexpected operation 0x%02x in a search", m.op)
		}
		if err != nil {
			return err
		}
	}
}

// entry takes a SearchResultEntry and its Sync State control.
func (s *syncer) entry(m message) error {
	val, found, err := findControl(m.controls, oidSyncState)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: an entry came without a sync state control", ErrSyncUnsupported)
	}
	state, key, cookie, err := decodeSyncState(val)
	if err != nil {
		return err
	}
	var dn string
	if dn, s.raw, err = decodeEntry(m.body, s.raw); err != nil {
		return err
	}
	switch state {
	case statePresent:
		return s.present(cookie, key)
	case stateDelete:
		return s.deleted(cookie, key)
	}
	if err := s.count(&s.named); err != nil {
		return err
	}
	e, err := s.conv.entry(dn, s.raw)
	if err != nil {
		return err
	}
	if k := SyncKey(e); k != key {
		if k == "" {
			return fmt.Errorf("entry %q came without its entryUUID (the reading account must be able to read entryUUID)", e.DN)
		}
		return malformed("entry %q has entryUUID %s but its sync state names %s", e.DN, k, key)
	}
	if err := s.emit(SyncEvent{Kind: EventEntry, Entry: e, Key: key, Cookie: s.eventCookie(cookie)}); err != nil {
		return err
	}
	s.res.Entries++
	return nil
}

// count counts one more entry or key of the refresh in *n against
// cfg.MaxEntries.
func (s *syncer) count(n *int) error {
	if !s.refreshing {
		return nil
	}
	*n++
	if *n > s.cfg.MaxEntries {
		return fmt.Errorf("the refresh holds more than %d entries or keys: raise [domain.ldap] max_entries if the directory is really that large", s.cfg.MaxEntries)
	}
	return nil
}

// eventCookie notes a cookie that came with a message and returns the
// cookie of its event: none during the refresh phase.
func (s *syncer) eventCookie(cookie []byte) []byte {
	if cookie == nil {
		return nil
	}
	if s.refreshing {
		s.cookie = cookie
		return nil
	}
	if len(cookie) == 0 {
		// Not one to save; slapd sends none in the persist phase.
		return nil
	}
	return cookie
}

// present takes a key the present phase names.
func (s *syncer) present(cookie []byte, keys ...string) error {
	if !s.refreshing {
		return malformed("the server named a present entry after the refresh phase")
	}
	if s.phase == phaseDelete || s.phase == phaseEnded {
		return malformed("the server named a present entry after its present phase")
	}
	s.phase = phasePresent
	s.presentEnd = true
	s.eventCookie(cookie)
	for _, k := range keys {
		if err := s.count(&s.named); err != nil {
			return err
		}
		if err := s.emit(SyncEvent{Kind: EventPresent, Key: k}); err != nil {
			return err
		}
	}
	return nil
}

// deleted takes keys of entries deleted or gone out of scope.
func (s *syncer) deleted(cookie []byte, keys ...string) error {
	if s.refreshing {
		if s.phase == phasePresent || s.phase == phaseEnded {
			return malformed("the server named a deleted entry in a present phase or after the refresh")
		}
		s.phase = phaseDelete
	}
	c := s.eventCookie(cookie)
	for i, k := range keys {
		if err := s.count(&s.deletes); err != nil {
			return err
		}
		ev := SyncEvent{Kind: EventDelete, Key: k}
		if i == len(keys)-1 {
			ev.Cookie = c
		}
		if err := s.emit(ev); err != nil {
			return err
		}
	}
	return nil
}

// reference takes a continuation reference: counted in the result of a
// refresh (as Fetch does), an error in a persistent sync.
func (s *syncer) reference(m message) error {
	var err error
	if s.uris, err = decodeReference(m.body, s.uris[:0]); err != nil {
		return err
	}
	if s.persist {
		return fmt.Errorf("the server sent a continuation reference to %s: a persistent sync cannot report parts of the subtree it does not read", strings.Join(s.uris, " or "))
	}
	if err := s.count(&s.named); err != nil {
		return err
	}
	s.res.Referrals++
	for _, u := range s.uris {
		s.refs.add(&s.res.Result, u)
	}
	return nil
}

// intermediate takes an IntermediateResponse: a Sync Info message, or one
// of another kind, which is ignored.
func (s *syncer) intermediate(m message) error {
	name, value, hasValue, err := decodeIntermediate(m.body)
	if err != nil {
		return err
	}
	if name != oidSyncInfo {
		return nil
	}
	if !hasValue {
		return malformed("sync info message without a value")
	}
	info, err := decodeSyncInfo(value)
	if err != nil {
		return err
	}
	switch info.kind {
	case tagNewCookie:
		if c := s.eventCookie(info.cookie); c != nil {
			return s.emit(SyncEvent{Kind: EventCookie, Cookie: c})
		}
		return nil
	case tagSyncIDSet:
		if info.refreshDeletes {
			return s.deleted(info.cookie, info.uuids...)
		}
		return s.present(info.cookie, info.uuids...)
	}
	// refreshPresent or refreshDelete: the end of a phase.
	if !s.refreshing {
		return malformed("the server ended a refresh phase after the refresh")
	}
	s.eventCookie(info.cookie)
	if s.phase == phaseEnded {
		return malformed("the server ended a refresh phase after the refresh")
	}
	if info.kind == tagRefreshPresent {
		if s.phase == phaseDelete {
			return malformed("the server ended a present phase during a delete phase")
		}
		s.presentEnd = true
	} else if s.phase == phasePresent {
		return malformed("the server ended a delete phase during a present phase")
	}
	switch {
	case !info.refreshDone:
		// What may follow a phase is a delete phase.
		s.phase = phaseDelete
		return nil
	case s.persist:
		return s.refreshDone(info.kind == tagRefreshPresent)
	}
	// refreshOnly ends with the SearchResultDone, whose control says how.
	s.phase = phaseEnded
	return nil
}

// refreshDone ends the refresh phase: final says whether it ended in a
// present phase.
func (s *syncer) refreshDone(presentLast bool) error {
	if !presentLast && s.phase == phasePresent {
		// Present messages that no refreshPresent ended, and then the
		// refresh ends as a delete phase: which entries are gone is
		// ambiguous.
		return malformed("the server named present entries but ended the refresh with a delete phase")
	}
	cookie := s.cookie
	if cookie != nil && len(cookie) == 0 {
		if s.sent != nil {
			// slapd answers so a cookie it could not parse, after
			// sending every entry as if none had been sent.
			return fmt.Errorf("%w: the server answered with an empty cookie: it did not take the one sent", ErrRefreshRequired)
		}
		return errors.New("the server ended the refresh with an empty sync cookie")
	}
	if cookie == nil {
		if s.named > 0 || s.deletes > 0 || s.sent == nil {
			return errors.New("the server ended the refresh without a sync cookie")
		}
		// Nothing changed: slapd sends no cookie then, and the one of the
		// request stays valid.
		cookie = s.sent
	} else if s.sent != nil {
		if err := checkCookie(s.sent, strings.HasPrefix(string(cookie), "rid=")); err != nil {
			return err
		}
	}
	s.res.Cookie = cookie
	s.res.PresentPhase = presentLast || s.presentEnd || s.sent == nil
	s.refreshing = false
	if s.persist {
		// The persist phase waits as long as ctx allows.
		_ = s.c.nc.SetDeadline(time.Time{})
		if err := s.ctx.Err(); err != nil {
			return err
		}
	}
	return s.emit(SyncEvent{Kind: EventRefreshDone, PresentPhase: s.res.PresentPhase, Cookie: cookie})
}

// done takes the SearchResultDone that ends a refreshOnly search, or a
// persistent one that the server ends.
func (s *syncer) done(m message) error {
	result, _, err := parseResult(m.body)
	if err != nil {
		return err
	}
	if result.code != ldap.LDAPResultSuccess {
		return syncFailed(s.cfg.BaseDN, result, s.named+s.deletes == 0)
	}
	if s.persist {
		if s.refreshing {
			return errors.New("the server ended the persistent sync search during its refresh phase")
		}
		return errors.New("the server ended the persistent sync search")
	}
	val, found, err := findControl(m.controls, oidSyncDone)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: the search ended without a sync done control", ErrSyncUnsupported)
	}
	cookie, refreshDeletes, err := decodeSyncDone(val)
	if err != nil {
		return err
	}
	if cookie != nil {
		s.cookie = cookie
	}
	if !refreshDeletes && s.phase == phaseDelete {
		return malformed("the server ended a delete phase as a present phase")
	}
	return s.refreshDone(!refreshDeletes)
}

// syncFailed words a sync search result other than success.
func syncFailed(base string, r ldapResult, nothingRead bool) error {
	le := &ldap.Error{ResultCode: r.code, MatchedDN: r.matched, Err: errors.New(r.diag)}
	switch {
	case r.code == resultSyncRefreshRequired:
		return fmt.Errorf("%w (LDAP result 4096 e-syncRefreshRequired: %s)", ErrRefreshRequired, r.diag)
	case r.code == ldap.LDAPResultUnwillingToPerform &&
		(strings.Contains(r.diag, "consumer state is newer than provider") || strings.Contains(r.diag, "consumer has state info but provider doesn't")):
		// slapd's words for a cookie from another server's state.
		return fmt.Errorf("%w (%s)", ErrRefreshRequired, describe(le))
	case r.code == ldap.LDAPResultUnavailableCriticalExtension:
		return fmt.Errorf("%w (%s)", ErrSyncUnsupported, describe(le))
	}
	return searchFailed(base, r, nothingRead)
}

// decodeSyncState decodes a Sync State control value.
func decodeSyncState(v string) (state int, key string, cookie []byte, err error) {
	seq, rest, err := expect(v, tagSequence, "sync state")
	if err != nil {
		return 0, "", nil, err
	}
	if rest != "" {
		return 0, "", nil, malformed("data after the sync state")
	}
	st, seq, err := expect(seq, tagEnumerated, "sync state")
	if err != nil {
		return 0, "", nil, err
	}
	n, err := parseInt(st)
	if err != nil {
		return 0, "", nil, err
	}
	if n < statePresent || n > stateDelete {
		return 0, "", nil, malformed("sync state %d", n)
	}
	uuid, seq, err := expect(seq, tagOctetString, "sync state entryUUID")
	if err != nil {
		return 0, "", nil, err
	}
	if key, err = formatSyncUUID(uuid); err != nil {
		return 0, "", nil, err
	}
	c, has, seq, err := optional(seq, tagOctetString, "sync state cookie")
	if err != nil {
		return 0, "", nil, err
	}
	if seq != "" {
		return 0, "", nil, malformed("data after the sync state cookie")
	}
	if has {
		cookie = []byte(c)
	}
	return int(n), key, cookie, nil
}

// decodeSyncDone decodes a Sync Done control value.
func decodeSyncDone(v string) (cookie []byte, refreshDeletes bool, err error) {
	seq, rest, err := expect(v, tagSequence, "sync done")
	if err != nil {
		return nil, false, err
	}
	if rest != "" {
		return nil, false, malformed("data after the sync done value")
	}
	c, has, seq, err := optional(seq, tagOctetString, "sync done cookie")
	if err != nil {
		return nil, false, err
	}
	if has {
		cookie = []byte(c)
	}
	b, hasB, seq, err := optional(seq, tagBoolean, "refreshDeletes")
	if err != nil {
		return nil, false, err
	}
	if hasB {
		if refreshDeletes, err = parseBool(b); err != nil {
			return nil, false, err
		}
	}
	if seq != "" {
		return nil, false, malformed("data after the sync done refreshDeletes")
	}
	return cookie, refreshDeletes, nil
}

// syncInfo is a decoded Sync Info message.
type syncInfo struct {
	kind           byte // tagNewCookie, tagRefreshDelete, tagRefreshPresent or tagSyncIDSet
	cookie         []byte
	refreshDone    bool     // refreshDelete and refreshPresent
	refreshDeletes bool     // syncIdSet
	uuids          []string // syncIdSet: keys
}

// decodeSyncInfo decodes a syncInfoValue.
func decodeSyncInfo(v string) (info syncInfo, err error) {
	tag, body, rest, err := readTLV(v)
	if err != nil {
		return info, err
	}
	if rest != "" {
		return info, malformed("data after the sync info value")
	}
	info.kind = tag
	if tag == tagNewCookie {
		info.cookie = []byte(body)
		return info, nil
	}
	if tag != tagRefreshDelete && tag != tagRefreshPresent && tag != tagSyncIDSet {
		return info, malformed("sync info choice 0x%02x", tag)
	}
	c, has, body, err := optional(body, tagOctetString, "sync info cookie")
	if err != nil {
		return info, err
	}
	if has {
		info.cookie = []byte(c)
	}
	b, hasB, body, err := optional(body, tagBoolean, "sync info flag")
	if err != nil {
		return info, err
	}
	flag := tag != tagSyncIDSet // refreshDone DEFAULT TRUE, refreshDeletes DEFAULT FALSE
	if hasB {
		if flag, err = parseBool(b); err != nil {
			return info, err
		}
	}
	if tag != tagSyncIDSet {
		info.refreshDone = flag
		if body != "" {
			return info, malformed("data after the sync info refreshDone")
		}
		return info, nil
	}
	info.refreshDeletes = flag
	set, body, err := expect(body, tagSet, "syncUUIDs")
	if err != nil {
		return info, err
	}
	if body != "" {
		return info, malformed("data after the syncUUIDs")
	}
	for set != "" {
		var u string
		if u, set, err = expect(set, tagOctetString, "syncUUID"); err != nil {
			return info, err
		}
		k, err := formatSyncUUID(u)
		if err != nil {
			return info, err
		}
		info.uuids = append(info.uuids, k)
	}
	return info, nil
}

// checkCookie checks a cookie to be sent, or sent, to the server. A cookie
// is opaque to the client (RFC 4533), but slapd silently ignores one it
// cannot parse and answers as if none had been sent: with every entry and
// a delete phase that deletes nothing, which would look like a delta in
// which nothing was deleted. So a cookie in slapd's form (it starts with
// "rid=") must parse as slapd parses it, and so must any cookie sent to a
// server that answers with cookies in that form (openldap true); anything
// else is ErrRefreshRequired. An empty cookie is always refused.
func checkCookie(cookie []byte, openldap bool) error {
	if len(cookie) == 0 {
		return fmt.Errorf("%w: the cookie is empty", ErrRefreshRequired)
	}
	c := string(cookie)
	if !openldap && !strings.HasPrefix(c, "rid=") {
		return nil
	}
	if err := parseOpenLDAPCookie(c); err != nil {
		return fmt.Errorf("%w: the cookie %q is not one the server gave: %v", ErrRefreshRequired, clip(c, 120), err)
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// parseOpenLDAPCookie checks a cookie in slapd's form:
// rid=NNN[,sid=XXX],csn=CSN[;CSN…][,delcsn=CSN].
func parseOpenLDAPCookie(c string) error {
	var rid, csn bool
	for _, f := range strings.Split(c, ",") {
		name, val, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("field %q", f)
		}
		switch name {
		case "rid":
			n, err := strconv.Atoi(val)
			if rid || err != nil || n < 0 || n > 999 || len(val) > 3 {
				return fmt.Errorf("field %q", f)
			}
			rid = true
		case "sid":
			n, err := strconv.ParseUint(val, 16, 16)
			if err != nil || n > 0xfff {
				return fmt.Errorf("field %q", f)
			}
		case "csn":
			if csn {
				return fmt.Errorf("two csn fields")
			}
			for _, v := range strings.Split(val, ";") {
				if !validCSN(v) {
					return fmt.Errorf("CSN %q", v)
				}
			}
			csn = true
		case "delcsn":
			if !validCSN(val) {
				return fmt.Errorf("CSN %q", val)
			}
		default:
			return fmt.Errorf("field %q", f)
		}
	}
	if !rid || !csn {
		return errors.New("no rid or no csn")
	}
	return nil
}

// validCSN reports whether s is a CSN as slapd writes them:
// YYYYmmddHHMMSS.uuuuuuZ#cccccc#sid#mmmmmm (hex counts and ids).
func validCSN(s string) bool {
	if len(s) != 40 || s[14] != '.' || s[21] != 'Z' || s[22] != '#' || s[29] != '#' || s[33] != '#' {
		return false
	}
	for i := range len(s) {
		ch := s[i]
		switch {
		case i < 14 || (i > 14 && i < 21):
			if ch < '0' || ch > '9' {
				return false
			}
		case i > 22 && i != 29 && i != 33:
			if !isHex(ch) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
