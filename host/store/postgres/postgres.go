// Package postgres is the Store for several dirsync replicas: one
// PostgreSQL database that every replica shares, through pgx v5 and a
// connection pool.
//
// Its schema is versioned by the SQL files of migrations/, embedded in the
// binary and applied by Open in one transaction that holds a transaction
// advisory lock, so replicas that start together migrate once; the table
// schema_migrations records each version applied. A database whose schema
// is newer than the code is refused. OpenReadOnly opens a database for
// commands that only read: it never creates or migrates anything, and its
// connections refuse to write.
//
// The semantics are those of the SQLite store (see store.Store). Where the
// SQLite store relies on its single writer, this one takes row locks: every
// write to a domain's mailboxes, groups or memberships first bumps the
// domain's generation (an UPDATE of its row), which both serializes the
// writers of one domain and lets Apply refuse a run computed from a state
// that has changed since; writers of other domains and readers go on. A
// run that writes while it reads (Prewrite) locks the row without the
// bump, and bumps it in its Apply.
// Leases are rows locked by the statement that takes them, and their times
// come from the database's clock (now()), never from the process's:
// replicas on several machines share that clock. Snapshots and run listings
// read in repeatable-read transactions.
//
// Apply writes in bulk inside its one transaction: COPY for the mailboxes,
// addresses and memberships it creates and for the run's changes,
// pipelined batches for updates, deletes and membership changes. So that
// nothing checks each of those rows one by one, the bulk tables have no
// foreign keys: the store deletes what a mailbox, a group or a run takes
// with it itself (see migrations/0001_initial.sql).
//
// The DSN is a libpq connection string, URL or key=value, as pgx takes it,
// with pgxpool's settings (pool_max_conns …) and server settings such as
// search_path (the schema to keep dirsync's tables in). A password never
// appears in the errors of this package: WithPassword passes one from
// outside the DSN, and one inside it is masked in errors.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dirsync/dirsync/host/store"
)

// Store is a store.Store kept in a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	// where names the database for messages: user, host, port and
	// database, never the password.
	where string
}

var _ store.Store = (*Store)(nil)

// Option changes how Open and OpenReadOnly connect.
type Option func(*options)

type options struct {
	password    string
	hasPassword bool
}

// WithPassword sets the password to connect with, in place of one in the
// DSN (or in PGPASSWORD or a .pgpass file): a password kept in a file or an
// environment variable of its own need not be written into the DSN.
func WithPassword(password string) Option {
	return func(o *options) { o.password, o.hasPassword = password, true }
}

// Open connects to the PostgreSQL database named by dsn and brings its
// schema up to date (see the package documentation). dsn is a URL
// ("postgres://dirsync@db.example.com/dirsync?sslmode=verify-full") or
// key=value pairs ("host=db.example.com user=dirsync dbname=dirsync"), as
// libpq takes them. ctx bounds connecting and migrating only.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s, err := connect(ctx, dsn, false, opts)
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.pool.Close()
		return nil, s.openError(err)
	}
	return s, nil
}

// OpenReadOnly connects to the PostgreSQL database named by dsn (as for
// Open) for reading only: it never creates or migrates the schema, and its
// connections refuse every write (default_transaction_read_only). A
// database without dirsync's schema is a store.ErrNoStore; one whose schema
// is older than this dirsync's is refused with a message that says how to
// upgrade it, as is one newer than this dirsync knows.
func OpenReadOnly(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s, err := connect(ctx, dsn, true, opts)
	if err != nil {
		return nil, err
	}
	version, found, err := s.schemaVersion(ctx, s.pool)
	if err != nil {
		s.pool.Close()
		return nil, s.openError(err)
	}
	switch want := latestVersion(); {
	case !found:
		err = fmt.Errorf("%w at %s (no dirsync schema in the database)", store.ErrNoStore, s.where)
	case version < want:
		err = fmt.Errorf("the store at %s has schema version %d, this dirsync needs %d: any command that writes (dirsync sync …) upgrades it",
			s.where, version, want)
	case version > want:
		err = fmt.Errorf("postgres: %s: schema version %d %w (%d)", s.where, version, errNewerSchema, want)
	}
	if err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

// connect parses dsn and opens the pool, checking that the database
// answers.
func connect(ctx context.Context, dsn string, readOnly bool, opts []Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	secrets := dsnPasswords(dsn)
	if o.hasPassword {
		secrets = append(secrets, o.password)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx masks the passwords it recognizes; this masks the ones found
		// here too, and never wraps the parse error, which keeps the DSN.
		return nil, &openError{msg: oneLine("postgres: invalid DSN: " + redact(err.Error(), secrets))}
	}
	cc := cfg.ConnConfig
	if o.hasPassword {
		cc.Password = o.password
	}
	if cc.Password != "" {
		secrets = append(secrets, cc.Password)
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "dirsync"
	}
	if readOnly {
		cc.RuntimeParams["default_transaction_read_only"] = "on"
	}
	// Times come back in UTC, as the SQLite store gives them, whatever the
	// process's time zone: listings print the same in both stores.
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		c.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
		return nil
	}
	s := &Store{where: describe(cc)}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return nil, &openError{msg: oneLine(redact(fmt.Sprintf("postgres: %s: %v", s.where, err), secrets)), err: contextCause(err)}
	}
	s.pool = pool
	return s, nil
}

// openError is an error of Open or OpenReadOnly: its message has every
// password masked, and it unwraps only to a context error, never to the
// pgx error, which may hold the connection settings.
type openError struct {
	msg string
	err error
}

func (e *openError) Error() string { return e.msg }
func (e *openError) Unwrap() error { return e.err }

// openError wraps an error met after connecting (migrating, reading the
// schema version).
func (s *Store) openError(err error) error {
	var oe *openError
	if errors.As(err, &oe) {
		return err
	}
	return &openError{msg: oneLine(fmt.Sprintf("postgres: %s: %v", s.where, err)), err: contextCause(err)}
}

// oneLine joins the lines of a message (pgx puts the failure of each
// address it tried on a line of its own).
func oneLine(msg string) string {
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}

// contextCause returns the context error err wraps, if any.
func contextCause(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	}
	return nil
}

// describe names a database for messages: postgres://user@host:port/db,
// without the password.
func describe(cc *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", Path: "/" + cc.Database}
	if cc.User != "" {
		u.User = url.User(cc.User)
	}
	if strings.HasPrefix(cc.Host, "/") {
		// A Unix socket folder.
		u.Host = "localhost"
		u.RawQuery = "host=" + url.QueryEscape(cc.Host)
		if cc.Port != 0 && cc.Port != 5432 {
			u.RawQuery += "&port=" + strconv.Itoa(int(cc.Port))
		}
	} else {
		u.Host = net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
	}
	return u.String()
}

// dsnPasswords returns the passwords that dsn may hold, found without
// trusting it to parse: the password of a URL's user info and the values
// of password= pairs.
func dsnPasswords(dsn string) []string {
	var pws []string
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			if pw, ok := u.User.Password(); ok && pw != "" {
				pws = append(pws, pw)
			}
			if pw := u.Query().Get("password"); pw != "" {
				pws = append(pws, pw)
			}
		}
		// The raw user info, in case the URL does not parse.
		rest := dsn[strings.Index(dsn, "://")+3:]
		if at := strings.LastIndexByte(rest, '@'); at > 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
				pws = append(pws, pw)
				if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
					pws = append(pws, dec)
				}
			}
		}
	}
	for i := 0; ; {
		j := strings.Index(dsn[i:], "password")
		if j < 0 {
			break
		}
		i += j + len("password")
		v := strings.TrimLeft(dsn[i:], " \t")
		if !strings.HasPrefix(v, "=") {
			continue
		}
		v = strings.TrimLeft(v[1:], " \t")
		var pw string
		if strings.HasPrefix(v, "'") {
			var b strings.Builder
			for k := 1; k < len(v); k++ {
				if v[k] == '\\' && k+1 < len(v) {
					k++
				} else if v[k] == '\'' {
					break
				}
				b.WriteByte(v[k])
			}
			pw = b.String()
		} else {
			end := strings.IndexAny(v, " \t&")
			if end < 0 {
				end = len(v)
			}
			pw = v[:end]
		}
		if pw != "" {
			pws = append(pws, pw)
		}
	}
	return pws
}

// redact masks every secret in msg.
func redact(msg string, secrets []string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

// RedactDSN returns dsn with its passwords masked, for messages that name
// the store.
func RedactDSN(dsn string) string {
	return redact(dsn, dsnPasswords(dsn))
}

// Close closes the pool's connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// writeTx runs fn in a read-committed transaction and commits it if fn
// succeeds; on an error it is rolled back.
func (s *Store) writeTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.runTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
}

// readTx runs fn in a read-only repeatable-read transaction, so that it
// sees one consistent state.
func (s *Store) readTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.runTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

func (s *Store) runTx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return ctxErr(ctx, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return ctxErr(ctx, err)
	}
	return ctxErr(ctx, tx.Commit(ctx))
}

// ctxErr returns err, or the context's error when the context ended and err
// does not say so already.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// PostgreSQL error codes the store tells apart.
const (
	codeUniqueViolation = "23505"
)

// isUnique reports whether err is a violated unique or primary key
// constraint.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == codeUniqueViolation
}

// constraintOf returns the name of the constraint that err violated.
func constraintOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName
	}
	return ""
}
