// Package ldapfetch reads a directory: it binds, runs one paged subtree
// search and hands each entry, normalized into an sdk.Entry, to a callback
// as it arrives.
//
// It follows the host's safety rule S1: anything that could leave the
// result incomplete — a failed bind, a search that ends with any result
// but success (a referral of the base included), a page that fails or
// whose done message never comes, a connection closed mid-result, a size,
// time or administrative limit hit, a missing or garbled paging cookie, a
// server that sends far more entries than a page holds or more than
// Config.MaxEntries in all — makes Fetch return an error, and the caller
// must then change nothing. Continuation references inside the subtree
// (SearchResultReference, e.g. Active Directory's DomainDnsZones and
// Configuration at a domain root) are not followed: they are counted in
// Result.Referrals and their URLs listed in Result.References, so that a
// run can report what it did not read. Attributes that Active Directory
// sends in ranges (member;range=0-1499) are completed with further reads
// before their entry reaches the callback, and a range that cannot be read
// fails the fetch too (ranges.go).
//
// Values are strings. The known binary attributes (binaryAttributes, and
// any attribute description ending in ";binary") are base64. Every other
// value that is not valid UTF-8 has each run of bad bytes replaced by
// U+FFFD (strings.ToValidUTF8); that value alone, the other values of its
// attribute stay as sent. So a value that holds U+FFFD may be damaged: a
// policy that needs it exactly (an address, a name to match) should drop it
// with a reason rather than use it. The entry's DN is repaired the same
// way, so that it still matches the member and memberOf values that name
// it, and one bad DN cannot stop a policy runtime whose ABI carries UTF-8.
//
// A simple bind sends its password as it is. Fetch refuses, before
// connecting, to send it over ldap:// without StartTLS to a host that is
// not this machine (by the URL as written: "localhost" or a loopback
// address), unless Config.AllowCleartextBind is set.
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
	"hash/maphash"
	"io"
	"net"
	"net/netip"
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
	DefaultMaxEntries     = 5_000_000
)

// MaxReferences is how many distinct continuation reference URLs
// Result.References lists; Result.ReferencesOmitted counts the rest.
const MaxReferences = 100

// maxPageFactor bounds a page: a server that sends more than
// maxPageFactor × PageSize entries (or continuation references) before the
// page's done message fails the fetch, before memory runs away.
const maxPageFactor = 10

// maxTrackedReferences bounds the memory that telling apart the reference
// URLs beyond MaxReferences takes; past it each one counts.
const maxTrackedReferences = 100_000

// ErrCleartextBind is the cause of the error for a URL that Fetch did not
// connect to because the bind would send the password in clear text.
var ErrCleartextBind = errors.New("use ldaps:// or start_tls = true, or set allow_cleartext_bind = true")

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
	// RootCAs, when set, are the CAs that may sign the server certificate,
	// in place of CAFile.
	RootCAs *x509.CertPool
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
	// MaxEntries bounds the result: a search that returns more entries
	// fails (a server streaming without end stops there). 0 means
	// DefaultMaxEntries; negative is an error.
	MaxEntries int
	// AllowCleartextBind allows a simple bind with a password over
	// ldap:// without StartTLS to a host that is not loopback. Without it
	// such a URL is refused before connecting, and failover moves on to
	// the next URL as if it were unreachable.
	AllowCleartextBind bool
}

// Result describes a completed fetch.
type Result struct {
	// URL is the server that answered.
	URL string
	// Entries is the number of entries handed to the callback.
	Entries int
	// Pages is the number of pages read.
	Pages int
	// Referrals counts the continuation references (SearchResultReference
	// messages) the server sent: parts of the subtree held elsewhere,
	// which were not read. (A referral answering the search itself fails
	// the fetch.)
	Referrals int
	// References are the distinct URLs of those continuation references,
	// in order of arrival, at most MaxReferences of them.
	References []string
	// ReferencesOmitted counts the distinct URLs that References does not
	// list because it is full (past maxTrackedReferences of them, repeats
	// count too).
	ReferencesOmitted int
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

	secret     string
	connecting bool // the error is connect's: no search was made
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
// diagnostic" and other errors (also those that wrap one) as they are.
func describe(err error) string {
	le, ok := err.(*ldap.Error)
	if ok && le.ResultCode < ldap.ErrorNetwork {
		s := fmt.Sprintf("LDAP result %d (%s)", le.ResultCode, ldap.LDAPResultCodeMap[le.ResultCode])
		if le.Err != nil && le.Err.Error() != "" {
			s += ": " + le.Err.Error()
		}
		if le.MatchedDN != "" {
			s += " (matched DN " + le.MatchedDN + ")"
		}
		return s
	}
	if ok && le.Err != nil {
		return strings.TrimPrefix(le.Err.Error(), "ldap: ")
	}
	return err.Error()
}

// resultError is a search result other than success, worded for the
// operator. It unwraps to the *ldap.Error of the result.
type resultError struct {
	msg string
	err *ldap.Error
}

func (e *resultError) Error() string { return e.msg }
func (e *resultError) Unwrap() error { return e.err }

// searchFailed words the non-success result r of the search of base.
// nothingRead says whether the search returned no entry before it.
func searchFailed(base string, r ldapResult, nothingRead bool) error {
	le := &ldap.Error{ResultCode: r.code, MatchedDN: r.matched, Err: errors.New(r.diag)}
	var msg string
	switch r.code {
	case ldap.LDAPResultReferral:
		ref := "a referral"
		if len(r.referral) > 0 {
			ref += " to " + strings.Join(r.referral, " or ")
		}
		msg = fmt.Sprintf("the server answered the search of %q with %s instead of its entries", base, ref)
		if r.diag != "" {
			msg += " (" + r.diag + ")"
		}
	case ldap.LDAPResultSizeLimitExceeded:
		msg = describe(le) + ": the server's size limit for this account stops the result short"
	case ldap.LDAPResultTimeLimitExceeded:
		msg = describe(le) + ": the server's time limit stops the result short"
	case ldap.LDAPResultAdminLimitExceeded:
		msg = describe(le) + ": an administrative limit of the server stops the result short"
	case ldap.LDAPResultUnavailableCriticalExtension:
		msg = describe(le) + ": the server does not support paged results"
	default:
		msg = describe(le)
	}
	if nothingRead {
		msg += ": nothing was read"
	} else {
		msg += ": the result is incomplete"
	}
	return &resultError{msg: msg, err: le}
}

// StableIDAttributes are always requested: the attributes Entry.ID comes
// from.
var StableIDAttributes = []string{"objectGUID", "entryUUID"}

// binaryAttributes always have base64 values (lower case), as have
// attribute descriptions that end in ";binary". In any other attribute a
// value that is not valid UTF-8 has its bad bytes replaced by U+FFFD.
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
	err = withConn(ctx, cfg, &res, func(conn *client) error {
		err := search(ctx, conn, cfg, filter, requestAttributes(attrs), &res, fn)
		if _, ok := err.(*Error); err != nil && !ok {
			err = &Error{Server: res.URL, Op: fmt.Sprintf("search page %d (after %d entries)", res.Pages+1, res.Entries), Err: err}
		}
		return err
	})
	res.Elapsed = time.Since(start)
	return res, err
}

// withConn connects as Fetch does, runs op on the bound connection and
// times it in res. An error that is not an *Error names the server.
func withConn(ctx context.Context, cfg Config, res *Result, op func(*client) error) error {
	start := time.Now()
	conn, server, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	res.URL = server
	// Cancelling ctx fails any read or write in progress.
	stop := context.AfterFunc(ctx, func() { _ = conn.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		conn.close()
	}()
	err = op(conn)
	res.Elapsed = time.Since(start)
	if err != nil {
		var fe *Error
		if !errors.As(err, &fe) {
			fe = &Error{Server: server, Op: "read", Err: err}
			err = fe
		}
		fe.secret = cfg.Password
		return err
	}
	return nil
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
	if cfg.MaxEntries < 0 {
		return fail("max entries %d is negative", cfg.MaxEntries)
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
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
// Connection and TLS failures, and a URL that the bind would send the
// password to in clear text (cleartextRefused), move on to the next URL; a
// bind the server refuses (e.g. wrong password) does not, so that one bad
// password does not count as several failed logons.
func connect(ctx context.Context, cfg Config) (*client, string, error) {
	c, server, err := connectURLs(ctx, cfg)
	var fe *Error
	if errors.As(err, &fe) {
		fe.connecting = true
	}
	return c, server, err
}

// Unreachable reports whether err is a failure to reach, talk to or bind
// to a server (every one of Config.URLs): no search was made. A caller
// that tried something optional first can take such an error as the
// answer the read itself would get, rather than connect and bind again
// (a second failed logon with a wrong password).
func Unreachable(err error) bool {
	var fe *Error
	return errors.As(err, &fe) && fe.connecting
}

func connectURLs(ctx context.Context, cfg Config) (*client, string, error) {
	var failures []error
	refused := false
	for _, u := range cfg.URLs {
		if scheme, _, host, _ := parseURL(u); cleartextRefused(cfg, scheme, host) {
			// Checked by cfg.check: the URL parses.
			failures = append(failures, &Error{Server: u, Op: "refusing to send the bind password in clear text", Err: ErrCleartextBind, secret: cfg.Password})
			refused = true
			continue
		}
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
	op := "no server reachable"
	if refused {
		op = "no usable server"
	}
	return nil, "", &Error{Op: op, Err: errors.New(strings.Join(msgs, "; ")), secret: cfg.Password}
}

// cleartextRefused reports whether binding to a URL of the given scheme
// and host (as written in the URL) would send cfg's password unencrypted
// to another machine without cfg allowing it. Nothing is resolved: the
// host is this machine only when it is "localhost" or a loopback address
// (127.0.0.0/8, ::1); any other name counts as another machine.
func cleartextRefused(cfg Config, scheme, host string) bool {
	if cfg.BindDN == "" || cfg.Password == "" || scheme != "ldap" || cfg.StartTLS || cfg.AllowCleartextBind {
		return false
	}
	return !loopbackHost(host)
}

// loopbackHost reports whether host, as written in a URL, names this
// machine's loopback interface.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
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
	if cfg.RootCAs != nil {
		t.RootCAs = cfg.RootCAs
	} else if cfg.CAFile != "" {
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
	s := &searcher{ctx: ctx, c: c, cfg: cfg, res: res, fn: fn, conv: conv, rr: rr, pageLimit: maxPageFactor * cfg.PageSize}
	var lastCookie string
	for {
		page := res.Pages + 1
		fail := func(err error) error { return s.pageError(page, err) }
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
		entries, cookie, err := s.readPage(id)
		if err != nil {
			return fail(err)
		}
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

// searcher is the state of one paged search, across its pages.
type searcher struct {
	ctx       context.Context
	c         *client
	cfg       Config
	res       *Result
	fn        func(sdk.Entry) error
	conv      *converter
	rr        *rangeReader
	pageLimit int // entries, or references, one page may hold

	raw   []rawAttr
	held  []heldEntry // entries of this page waiting for it to end (ranges.go)
	total int         // entries received, handed on or held
	uris  []string
	refs  referenceSet
}

// pageError describes a failure of the search at page.
func (s *searcher) pageError(page int, err error) error {
	if s.ctx.Err() != nil {
		err = s.ctx.Err()
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no complete answer within %v", s.cfg.Timeout)
	} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("the server closed the connection before the page was complete")
	}
	return &Error{Server: s.res.URL, Op: fmt.Sprintf("search page %d (after %d entries)", page, s.res.Entries), Err: err}
}

// readPage reads the answer to the page request id: its entries and
// continuation references up to its done message, which must report
// success and carry a paging control. It returns the number of entries and
// the cookie of the next page ("" after the last).
func (s *searcher) readPage(id int64) (entries int, cookie string, err error) {
	pageRefs := 0
	var done *message
	for done == nil {
		m, err := s.c.response(id)
		if err != nil {
			return entries, "", err
		}
		switch m.op {
		case opSearchEntry:
			entries++
			if err := s.entry(m, entries); err != nil {
				return entries, "", err
			}
		case opSearchRef:
			pageRefs++
			if err := s.reference(m, pageRefs); err != nil {
				return entries, "", err
			}
		case opSearchDone:
			done = &m
		case opIntermediate:
		default:
			return entries, "", malformed("unexpected operation 0x%02x in a search", m.op)
		}
	}
	cookie, err = s.endPage(done)
	return entries, cookie, err
}

// entry takes the n-th entry of a page: it hands it on, or holds it until
// the page ends when it or an entry before it in the page has a ranged
// attribute (ranges.go).
func (s *searcher) entry(m message, n int) error {
	s.total++
	if n > s.pageLimit {
		return fmt.Errorf("the server sent more than %d entries in one page of %d: reading stopped there, the result is incomplete", s.pageLimit, s.cfg.PageSize)
	}
	if s.total > s.cfg.MaxEntries {
		return fmt.Errorf("the result holds more than %d entries: raise [domain.ldap] max_entries if the directory is really that large", s.cfg.MaxEntries)
	}
	var dn string
	var err error
	if dn, s.raw, err = decodeEntry(m.body, s.raw); err != nil {
		return err
	}
	if ranged := hasRange(s.raw); ranged || len(s.held) > 0 {
		s.held = append(s.held, heldEntry{dn: dn, attrs: slices.Clone(s.raw), ranged: ranged})
		return nil
	}
	return s.hand(dn, s.raw)
}

// reference takes the n-th continuation reference of a page.
func (s *searcher) reference(m message, n int) error {
	if n > s.pageLimit {
		return fmt.Errorf("the server sent more than %d continuation references in one page of %d: reading stopped there, the result is incomplete", s.pageLimit, s.cfg.PageSize)
	}
	var err error
	if s.uris, err = decodeReference(m.body, s.uris[:0]); err != nil {
		return err
	}
	s.res.Referrals++
	for _, u := range s.uris {
		s.refs.add(s.res, u)
	}
	return nil
}

// endPage checks the done message of a page and returns its paging
// cookie. The page is then complete: the missing ranges of its held
// entries are read, and the entries handed on in order.
func (s *searcher) endPage(done *message) (string, error) {
	result, _, err := parseResult(done.body)
	if err != nil {
		return "", err
	}
	if result.code != ldap.LDAPResultSuccess {
		return "", searchFailed(s.cfg.BaseDN, result, s.total == 0)
	}
	cookie, found, err := pagingCookie(done.controls)
	if err != nil {
		return "", err
	}
	if !found {
		return "", errors.New("the server ended the page without a paging control (cookie missing)")
	}
	for i := range s.held {
		h := &s.held[i]
		if h.ranged {
			if h.attrs, err = s.rr.complete(h.dn, h.attrs); err != nil {
				return "", err
			}
		}
		if err := s.hand(h.dn, h.attrs); err != nil {
			return "", err
		}
		s.held[i] = heldEntry{}
	}
	s.held = s.held[:0]
	return cookie, nil
}

// hand converts an entry and hands it to fn.
func (s *searcher) hand(dn string, attrs []rawAttr) error {
	e, err := s.conv.entry(dn, attrs)
	if err != nil {
		return err
	}
	if err := s.fn(e); err != nil {
		return err
	}
	s.res.Entries++
	return nil
}

// referenceSet collects the distinct URLs of continuation references into
// a Result.
type referenceSet struct {
	seed maphash.Seed
	more map[uint64]struct{} // hashes of the URLs beyond MaxReferences
}

// add lists uri in res.References unless it is there already or the list
// is full; then it counts uri in res.ReferencesOmitted unless seen before.
func (s *referenceSet) add(res *Result, uri string) {
	if slices.Contains(res.References, uri) {
		return
	}
	if len(res.References) < MaxReferences {
		res.References = append(res.References, strings.Clone(uri))
		return
	}
	if s.more == nil {
		s.seed = maphash.MakeSeed()
		s.more = make(map[uint64]struct{})
	}
	h := maphash.String(s.seed, uri)
	if _, seen := s.more[h]; seen {
		return
	}
	if len(s.more) < maxTrackedReferences {
		s.more[h] = struct{}{}
	}
	res.ReferencesOmitted++
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

// entry normalizes one entry: attribute names lower case, ID from
// objectGUID, else entryUUID, else the DN. The values of binary attributes
// (binaryAttributes and descriptions ending in ";binary") are base64; in
// every other attribute a value that is not valid UTF-8 has each run of
// bad bytes replaced by U+FFFD (strings.ToValidUTF8), and the other values
// stay as sent: one damaged alias does not hide the others, and the policy
// can see the damage (U+FFFD) and drop the value with a reason.
func (c *converter) entry(dn string, attrs []rawAttr) (sdk.Entry, error) {
	if !utf8.ValidString(dn) {
		dn = strings.ToValidUTF8(dn, "\uFFFD")
	}
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
		if name == "objectguid" && len(vals) > 0 {
			guid, haveGUID = vals[0], true
		}
		if binaryAttributes[name] || strings.HasSuffix(name, ";binary") {
			enc := make([]string, len(vals))
			for i, v := range vals {
				enc[i] = base64.StdEncoding.EncodeToString([]byte(v))
			}
			vals = enc
		} else {
			vals = validUTF8(vals)
			if name == "entryuuid" && len(vals) > 0 {
				uuid = vals[0]
			}
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

// validUTF8 returns vals with the bad bytes of each value that is not
// valid UTF-8 replaced by U+FFFD; vals itself when all are valid.
func validUTF8(vals []string) []string {
	for i, v := range vals {
		if utf8.ValidString(v) {
			continue
		}
		out := slices.Clone(vals)
		for j := i; j < len(out); j++ {
			if !utf8.ValidString(out[j]) {
				out[j] = strings.ToValidUTF8(out[j], "\uFFFD")
			}
		}
		return out
	}
	return vals
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
