// Package ldapfetch reads a directory: it binds, runs one paged subtree
// search and hands each entry, normalized into an sdk.Entry, to a callback
// as it arrives.
//
// It follows the host's safety rule S1: anything that could leave the
// result incomplete — a failed bind, a search error, a page that fails or
// never comes, a connection closed mid-result, a size or time limit hit, a
// missing or garbled paging cookie — makes Fetch return an error, and the
// caller must then change nothing. Referrals (search result references and
// result code 10) are skipped and counted, not followed. Attributes that
// Active Directory sends in ranges (member;range=0-1499) are completed with
// further reads before their entry reaches the callback, and a range that
// cannot be read fails the fetch too (ranges.go).
//
// Entries stream: each is decoded and handed to the callback as it comes
// off the connection; nothing but the entry at hand is held (except after
// an entry with ranges to read: the rest of its page waits with it). The LDAP
// messages are decoded by this package (wire.go), not by go-ldap, whose
// decoder is several times slower than the server (BenchmarkFetch, 101,000
// entries from slapd on 2 cores: 0.72–0.74 s, ldapsearch 0.83–0.90 s,
// go-ldap's SearchWithPaging 2.6–5.6 s). The values of an entry share the
// memory of its message.
package ldapfetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/sdk"
)

// Defaults of Config.
const (
	DefaultPageSize       = 1000
	DefaultTimeout        = 60 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// Config says where and how to read the directory.
type Config struct {
	// URLs are tried in order until one connects and binds (failover).
	// Schemes: ldap:// and ldaps://.
	URLs []string
	// BindDN and Password are the simple-bind credentials. An empty BindDN
	// binds anonymously (no bind request). Password never appears in errors.
	BindDN   string
	Password string
	// BaseDN is the base of the subtree search.
	BaseDN string
	// StartTLS upgrades ldap:// connections with the StartTLS operation.
	StartTLS bool
	// CAFile is a PEM file of the CAs that may sign the server certificate;
	// empty means the system's roots.
	CAFile string
	// InsecureSkipVerify turns TLS certificate verification off.
	InsecureSkipVerify bool
	// PageSize is the paged-results page size. Default 1000.
	PageSize int
	// Timeout bounds each operation: the bind, and each page including the
	// callback's time for its entries. Default 60s.
	Timeout time.Duration
	// ConnectTimeout bounds connecting to one URL, including TLS.
	// Default 10s.
	ConnectTimeout time.Duration
}

// Result describes a completed fetch.
type Result struct {
	// URL is the server that answered.
	URL string
	// Entries is the number of entries handed to the callback.
	Entries int
	// Pages is the number of pages read.
	Pages int
	// Referrals counts skipped referrals: search result references and
	// referral results (code 10).
	Referrals int
	// RangeReads counts the extra reads of ranged attributes: AD sends
	// the values of a large multi-valued attribute, such as the member of
	// a group with more than 1500 members, in ranges.
	RangeReads int
	// Elapsed is the time from the first connect to the last page.
	Elapsed time.Duration
}

// Error is a failed fetch. Its message is one line that names the server
// and the step that failed, and never contains the password.
type Error struct {
	// Server is the URL of the server, or "" when no server could be used.
	Server string
	// Op is the step that failed, e.g. "bind as cn=reader,dc=example,dc=com"
	// or "search page 3".
	Op string
	// Err is the cause.
	Err error

	secret string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("ldap")
	if e.Server != "" {
		b.WriteString(" " + e.Server)
	}
	b.WriteString(": " + e.Op)
	if e.Err != nil {
		b.WriteString(": " + describe(e.Err))
	}
	return scrub(b.String(), e.secret)
}

func (e *Error) Unwrap() error { return e.Err }

// scrub makes msg one line and removes secret from it.
func scrub(msg, secret string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	if secret != "" {
		msg = strings.ReplaceAll(msg, secret, "***")
	}
	return msg
}

// describe renders go-ldap errors as "LDAP result 49 (Invalid Credentials):
// diagnostic" and other errors as they are.
func describe(err error) string {
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
		s := fmt.Sprintf("LDAP result %d (%s)", le.ResultCode, ldap.LDAPResultCodeMap[le.ResultCode])
		if le.Err != nil && le.Err.Error() != "" {
			s += ": " + le.Err.Error()
		}
		if le.MatchedDN != "" {
			s += " (matched DN " + le.MatchedDN + ")"
		}
		return s
	}
	if errors.As(err, &le) && le.Err != nil {
		return strings.TrimPrefix(le.Err.Error(), "ldap: ")
	}
	return err.Error()
}

// StableIDAttributes are always requested: the attributes Entry.ID comes
// from.
var StableIDAttributes = []string{"objectGUID", "entryUUID"}

// binaryAttributes always have base64 values (lower case). Any other
// attribute is base64 when one of its values is not valid UTF-8.
var binaryAttributes = map[string]bool{
	"objectguid":                    true,
	"objectsid":                     true,
	"sidhistory":                    true,
	"tokengroups":                   true,
	"jpegphoto":                     true,
	"thumbnailphoto":                true,
	"usercertificate":               true,
	"cacertificate":                 true,
	"usersmimecertificate":          true,
	"msexchmailboxguid":             true,
	"msexchmasteraccountsid":        true,
	"msds-generationid":             true,
	"logonhours":                    true,
	"msexcharchiveguid":             true,
	"mspki-credentialroamingtokens": true,
}

// Fetch reads every entry below cfg.BaseDN that matches filter and calls fn
// with each, in the order the server sends them. attrs names the
// attributes to read (all user attributes when empty); the stable-id
// attributes are always added. An error from fn stops the fetch and is
// returned. On any error the entries already passed to fn are not the
// whole result and must not be acted upon (S1). Cancelling ctx aborts.
func Fetch(ctx context.Context, cfg Config, filter string, attrs []string, fn func(sdk.Entry) error) (Result, error) {
	start := time.Now()
	var res Result
	cfg, err := cfg.check(filter)
	if err != nil {
		return res, err
	}
	conn, server, err := connect(ctx, cfg)
	if err != nil {
		return res, err
	}
	res.URL = server
	// Cancelling ctx fails any read or write in progress.
	stop := context.AfterFunc(ctx, func() { _ = conn.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		conn.close()
	}()

	err = search(ctx, conn, cfg, filter, requestAttributes(attrs), &res, fn)
	res.Elapsed = time.Since(start)
	if err != nil {
		fe, ok := err.(*Error)
		if !ok {
			fe = &Error{Server: server, Op: fmt.Sprintf("search page %d (after %d entries)", res.Pages+1, res.Entries), Err: err}
		}
		fe.secret = cfg.Password
		return res, fe
	}
	return res, nil
}

// FetchAll is Fetch that returns the entries in a slice.
func FetchAll(ctx context.Context, cfg Config, filter string, attrs []string) ([]sdk.Entry, Result, error) {
	var entries []sdk.Entry
	res, err := Fetch(ctx, cfg, filter, attrs, func(e sdk.Entry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, res, err
	}
	return entries, res, nil
}

// check validates cfg and fills in defaults.
func (cfg Config) check(filter string) (Config, error) {
	fail := func(format string, a ...any) (Config, error) {
		return cfg, &Error{Op: "config", Err: fmt.Errorf(format, a...), secret: cfg.Password}
	}
	if len(cfg.URLs) == 0 {
		return fail("no server URL")
	}
	if cfg.BaseDN == "" {
		return fail("no base DN")
	}
	if _, err := ldap.ParseDN(cfg.BaseDN); err != nil {
		return fail("base DN %q: %v", cfg.BaseDN, err)
	}
	if cfg.BindDN != "" && cfg.Password == "" {
		return fail("bind DN %s has an empty password (an unauthenticated bind would read nothing)", cfg.BindDN)
	}
	if _, err := ldap.CompileFilter(filter); err != nil {
		return fail("filter %q: %s", filter, describe(err))
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.PageSize < 0 || cfg.PageSize > 1<<24 {
		return fail("page size %d out of range", cfg.PageSize)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	for _, u := range cfg.URLs {
		if _, _, _, err := parseURL(u); err != nil {
			return fail("%v", err)
		}
		if cfg.StartTLS && strings.HasPrefix(strings.ToLower(u), "ldaps:") {
			return fail("StartTLS with %s: ldaps:// is already TLS", u)
		}
	}
	return cfg, nil
}

// parseURL returns scheme, host:port and host of an ldap:// or ldaps:// URL.
func parseURL(raw string) (scheme, addr, host string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", fmt.Errorf("URL %q: %v", raw, err)
	}
	scheme = strings.ToLower(u.Scheme)
	port := u.Port()
	switch scheme {
	case "ldap":
		if port == "" {
			port = "389"
		}
	case "ldaps":
		if port == "" {
			port = "636"
		}
	default:
		return "", "", "", fmt.Errorf("URL %q: scheme must be ldap or ldaps", raw)
	}
	if u.Hostname() == "" {
		return "", "", "", fmt.Errorf("URL %q: no host", raw)
	}
	return scheme, net.JoinHostPort(u.Hostname(), port), u.Hostname(), nil
}

// connect tries the URLs in order and returns the first bound connection.
// Connection and TLS failures move on to the next URL; a bind the server
// refuses (e.g. wrong password) does not, so that one bad password does not
// count as several failed logons.
func connect(ctx context.Context, cfg Config) (*client, string, error) {
	var failures []error
	for _, u := range cfg.URLs {
		conn, err := dialBind(ctx, cfg, u)
		if err == nil {
			return conn, u, nil
		}
		if ctx.Err() != nil {
			return nil, "", &Error{Server: u, Op: "connect", Err: ctx.Err(), secret: cfg.Password}
		}
		if serverRefused(err) {
			return nil, "", err
		}
		failures = append(failures, err)
	}
	if len(failures) == 1 {
		return nil, "", failures[0]
	}
	msgs := make([]string, len(failures))
	for i, f := range failures {
		msgs[i] = strings.TrimPrefix(f.Error(), "ldap ")
	}
	return nil, "", &Error{Op: "no server reachable", Err: errors.New(strings.Join(msgs, "; ")), secret: cfg.Password}
}

// serverRefused reports whether err is the server's answer to the bind
// (an LDAP result code, e.g. 49 invalid credentials) rather than a failure
// to reach or talk to it.
func serverRefused(err error) bool {
	var fe *Error
	if !errors.As(err, &fe) || !strings.HasPrefix(fe.Op, "bind") {
		return false
	}
	var le *ldap.Error
	return errors.As(fe.Err, &le) && le.ResultCode < ldap.ErrorNetwork
}

// dialBind connects to one URL, upgrades to TLS if asked and binds.
func dialBind(ctx context.Context, cfg Config, rawURL string) (*client, error) {
	fail := func(op string, err error) error {
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %v", cfg.Timeout)
		}
		return &Error{Server: rawURL, Op: op, Err: err, secret: cfg.Password}
	}
	scheme, addr, host, err := parseURL(rawURL)
	if err != nil {
		return nil, fail("connect", err)
	}
	var tlsCfg *tls.Config
	if scheme == "ldaps" || cfg.StartTLS {
		if tlsCfg, err = cfg.tlsConfig(host); err != nil {
			return nil, fail("TLS setup", err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	d := &net.Dialer{}
	var nc net.Conn
	if scheme == "ldaps" {
		nc, err = (&tls.Dialer{NetDialer: d, Config: tlsCfg}).DialContext(dctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no connection within %v", cfg.ConnectTimeout)
		}
		return nil, fail("connect", err)
	}
	c := newClient(nc)
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if cfg.StartTLS {
		_ = nc.SetDeadline(time.Now().Add(cfg.ConnectTimeout))
		if err := c.startTLS(dctx, tlsCfg); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				err = fmt.Errorf("no answer within %v", cfg.ConnectTimeout)
			}
			return nil, &Error{Server: rawURL, Op: "StartTLS", Err: err, secret: cfg.Password}
		}
	}
	if cfg.BindDN != "" {
		_ = c.nc.SetDeadline(time.Now().Add(cfg.Timeout))
		if err := c.bind(cfg.BindDN, cfg.Password); err != nil {
			return nil, fail("bind as "+cfg.BindDN, err)
		}
	}
	ok = ctx.Err() == nil
	if !ok {
		return nil, fail("connect", ctx.Err())
	}
	return c, nil
}

// close unbinds and closes the connection.
func (c *client) close() {
	_ = c.nc.SetDeadline(time.Now().Add(time.Second))
	c.unbind()
	_ = c.nc.Close()
}

func (cfg Config) tlsConfig(host string) (*tls.Config, error) {
	t := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	return t, nil
}

// requestAttributes is attrs plus the stable-id attributes, without
// duplicates; "*" (all user attributes) when attrs is empty.
func requestAttributes(attrs []string) []string {
	out := make([]string, 0, len(attrs)+3)
	if len(attrs) == 0 {
		out = append(out, "*")
	}
	seen := map[string]bool{}
	for _, a := range append(append([]string(nil), attrs...), StableIDAttributes...) {
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// pagingControl is the RFC 2696 paged-results control marked critical: a
// server that cannot page must refuse the search rather than ignore the
// control and return a (possibly truncated) unpaged result.
type pagingControl struct{ ldap.ControlPaging }

// Encode encodes the control with criticality TRUE.
func (c *pagingControl) Encode() *ber.Packet {
	inner := c.ControlPaging.Encode()
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, ldap.ControlTypePaging, "Control Type"))
	p.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, "Criticality"))
	p.AppendChild(inner.Children[1])
	return p
}

// search runs the paged search and feeds fn.
func search(ctx context.Context, c *client, cfg Config, filter string, attrs []string, res *Result, fn func(sdk.Entry) error) error {
	compiled, err := ldap.CompileFilter(filter)
	if err != nil {
		return err
	}
	paging := &pagingControl{ldap.ControlPaging{PagingSize: uint32(cfg.PageSize)}}
	conv := newConverter()
	rr, err := newRangeReader(ctx, c, cfg.Timeout)
	if err != nil {
		return err
	}
	defer func() { res.RangeReads = rr.reads }()
	var (
		raw        []rawAttr
		lastCookie string
		held       []heldEntry // entries of this page waiting for it to end (ranges.go)
	)
	hand := func(dn string, attrs []rawAttr) error {
		e, err := conv.entry(dn, attrs)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
		res.Entries++
		return nil
	}
	for {
		page := res.Pages + 1
		fail := func(err error) error {
			if ctx.Err() != nil {
				err = ctx.Err()
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("no complete answer within %v", cfg.Timeout)
			} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = errors.New("the server closed the connection before the page was complete")
			}
			return &Error{Server: res.URL, Op: fmt.Sprintf("search page %d (after %d entries)", page, res.Entries), Err: err}
		}
		_ = c.nc.SetDeadline(time.Now().Add(cfg.Timeout))
		// A cancel whose deadline the line above overrode.
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		// The filter packet is encoded anew with each request (Bytes walks
		// the tree), so it can be reused.
		id, err := c.send(searchRequest(cfg.BaseDN, compiled, attrs), paging)
		if err != nil {
			return fail(err)
		}
		entries := 0
		var done *message
		for done == nil {
			m, err := c.response(id)
			if err != nil {
				return fail(err)
			}
			switch m.op {
			case opSearchEntry:
				var dn string
				if dn, raw, err = decodeEntry(m.body, raw); err != nil {
					return fail(err)
				}
				entries++
				if ranged := hasRange(raw); ranged || len(held) > 0 {
					held = append(held, heldEntry{dn: dn, attrs: slices.Clone(raw), ranged: ranged})
					continue
				}
				if err := hand(dn, raw); err != nil {
					return fail(err)
				}
			case opSearchRef:
				if err := decodeReference(m.body); err != nil {
					return fail(err)
				}
				res.Referrals++
			case opSearchDone:
				done = &m
			case opIntermediate:
			default:
				return fail(malformed("unexpected operation 0x%02x in a search", m.op))
			}
		}
		result, _, err := parseResult(done.body)
		if err != nil {
			return fail(err)
		}
		switch rerr := result.err(); {
		case result.code == ldap.LDAPResultReferral && page == 1 && entries == 0:
			// The whole search is referred elsewhere: not an error (and not
			// followed); the result is empty.
			res.Referrals++
			res.Pages++
			return nil
		case result.code == ldap.LDAPResultSizeLimitExceeded:
			return fail(fmt.Errorf("%s: the server's size limit for this account stops the result short", describe(rerr)))
		case result.code == ldap.LDAPResultTimeLimitExceeded:
			return fail(fmt.Errorf("%s: the server's time limit stops the result short", describe(rerr)))
		case result.code == ldap.LDAPResultUnavailableCriticalExtension:
			return fail(fmt.Errorf("%s: the server does not support paged results", describe(rerr)))
		case rerr != nil:
			return fail(rerr)
		}
		cookie, found, err := pagingCookie(done.controls)
		if err != nil {
			return fail(err)
		}
		if !found {
			return fail(errors.New("the server ended the page without a paging control (cookie missing)"))
		}
		// The page is complete: read the missing ranges of its held
		// entries and hand them on in order.
		for i := range held {
			h := &held[i]
			if h.ranged {
				if h.attrs, err = rr.complete(h.dn, h.attrs); err != nil {
					return fail(err)
				}
			}
			if err := hand(h.dn, h.attrs); err != nil {
				return fail(err)
			}
			held[i] = heldEntry{}
		}
		held = held[:0]
		res.Pages++
		if cookie == "" {
			return nil
		}
		if entries == 0 && cookie == lastCookie {
			return fail(errors.New("the server repeats the paging cookie without returning entries"))
		}
		lastCookie = cookie
		paging.SetCookie([]byte(cookie))
	}
}

// converter turns decoded entries into sdk entries. It caches lower-cased
// attribute names; it is used by one goroutine.
type converter struct {
	names map[string]string
}

func newConverter() *converter { return &converter{names: make(map[string]string, 32)} }

func (c *converter) lower(name string) string {
	if l, ok := c.names[name]; ok {
		return l
	}
	l := strings.ToLower(name)
	if len(c.names) < 4096 {
		c.names[strings.Clone(name)] = l
	}
	return l
}

// entry normalizes one entry: attribute names lower case, binary values
// base64, ID from objectGUID, else entryUUID, else the DN.
func (c *converter) entry(dn string, attrs []rawAttr) (sdk.Entry, error) {
	out := sdk.Entry{DN: dn, Attributes: make(map[string][]string, len(attrs))}
	var guid, uuid string
	var haveGUID bool
	for _, a := range attrs {
		name := c.lower(a.name)
		if strings.Contains(name, ";range=") {
			// search completes ranged attributes (ranges.go) before an
			// entry gets here; a range left would mean missing values.
			return out, fmt.Errorf("entry %q: attribute %s is an unread range", dn, a.name)
		}
		vals := a.vals
		switch name {
		case "objectguid":
			if len(vals) > 0 {
				guid, haveGUID = vals[0], true
			}
		case "entryuuid":
			if len(vals) > 0 {
				uuid = vals[0]
			}
		}
		if binaryAttributes[name] || strings.HasSuffix(name, ";binary") || !validUTF8(vals) {
			enc := make([]string, len(vals))
			for i, v := range vals {
				enc[i] = base64.StdEncoding.EncodeToString([]byte(v))
			}
			vals = enc
		}
		if prev, ok := out.Attributes[name]; ok {
			vals = append(prev[:len(prev):len(prev)], vals...)
		}
		out.Attributes[name] = vals
	}
	switch {
	case haveGUID:
		id, err := FormatGUID([]byte(guid))
		if err != nil {
			return out, fmt.Errorf("entry %q: %w", dn, err)
		}
		out.ID = id
	case uuid != "":
		out.ID = strings.ToLower(uuid)
	default:
		out.ID = dn
	}
	return out, nil
}

func validUTF8(vals []string) bool {
	for _, v := range vals {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// FormatGUID formats a 16-byte AD objectGUID as the canonical GUID string
// (lower case), e.g. "6f9619ff-8b86-d011-b42d-00c04fc964ff". AD stores the
// first three groups little-endian, so their bytes are reversed.
func FormatGUID(b []byte) (string, error) {
	if len(b) != 16 {
		return "", fmt.Errorf("objectGUID has %d bytes, want 16", len(b))
	}
	var buf [36]byte
	le := [...]byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]}
	hex.Encode(buf[0:8], le[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], le[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], le[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], b[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], b[10:16])
	return string(buf[:]), nil
}

// String describes the result in one line.
func (r Result) String() string {
	s := r.URL + ": " + strconv.Itoa(r.Entries) + " entries in " + strconv.Itoa(r.Pages) + " pages, " +
		strconv.Itoa(r.Referrals) + " referrals skipped, "
	if r.RangeReads > 0 {
		s += strconv.Itoa(r.RangeReads) + " range reads, "
	}
	return s + r.Elapsed.Round(time.Millisecond).String()
}
