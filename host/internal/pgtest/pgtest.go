// Package pgtest starts throwaway PostgreSQL servers for tests and
// benchmarks, from Debian's postgresql package (initdb, postgres and pg_ctl
// under /usr/lib/postgresql/VERSION/bin, the newest version first, else on
// PATH).
//
// A Server is one postmaster listening on a free loopback TCP port, with
// its data directory and Unix socket in a temporary folder, fsync off (the
// machine does not crash under a test; a committed transaction still
// survives the server's crash, so Halt and Resume test what replicas see
// when their database dies), and password (SCRAM) authentication over TCP for its superuser. When the test
// process runs as root, initdb and the server run as the OS user postgres
// (initdb refuses root) and the folder belongs to that user. The server
// dies with the process that started it, so a crashed or killed test binary
// leaves no server running.
//
// One server per test package is the intended use: a package's TestMain
// shares one through StartMain, a single test starts its own with Start.
// A test that needs an empty database gets one from NewDatabase; one that
// needs only an empty schema gets it from NewSchema, in a few milliseconds
// rather than a few hundred.
//
//	var srv *pgtest.Server
//
//	func TestMain(m *testing.M) {
//		s, stop, err := pgtest.StartMain()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		srv = s
//		code := m.Run()
//		stop()
//		os.Exit(code)
//	}
//
// Missing binaries are an error that says to install Debian's postgresql
// package: tests that need a database fail, they never skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the name of the server's superuser.
const Superuser = "postgres"

// startTimeout bounds initdb and the server's start.
const startTimeout = 2 * time.Minute

// Server is a running throwaway PostgreSQL server.
type Server struct {
	// Host and Port are where the server listens (loopback TCP).
	Host string
	Port int
	// User and Password are the superuser's; Password is random.
	User     string
	Password string
	// Dir is the temporary folder of the data directory, the socket and
	// the server log (Dir/postgres.log); it is removed by Stop.
	Dir string
	// Version is the server's major version ("15").
	Version string

	bin   string // the folder of initdb, postgres and pg_ctl
	cred  *syscall.Credential
	done  chan struct{} // closed when the postmaster has exited
	errMu sync.Mutex
	exit  error // the postmaster's exit, valid after done

	mu    sync.Mutex           // guards admin and seq
	admin map[string]*pgx.Conn // by database: for CREATE DATABASE, CREATE SCHEMA
	seq   int

	stopOnce sync.Once
	stopErr  error
}

// TB is the part of testing.TB that the helpers use: a *testing.T or
// *testing.B passes. The package does not import testing, so a program
// such as the benchmark command can start a server without linking it.
type TB interface {
	Helper()
	Cleanup(func())
	Error(args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Start starts a server for a test or benchmark and stops it (removing its
// folder) when the test ends. Missing PostgreSQL binaries, or a server that
// does not start, fail the test.
func Start(tb TB) *Server {
	tb.Helper()
	s, err := start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// StartMain starts a server for a package's TestMain and returns it with a
// function that stops it and removes its folder. Call the function after
// m.Run, before os.Exit.
func StartMain() (*Server, func(), error) {
	s, err := start()
	if err != nil {
		return nil, nil, err
	}
	return s, func() {
		if err := s.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}, nil
}

// DSN returns the URL of database on the server, as the superuser with its
// password.
func (s *Server) DSN(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(s.User, s.Password),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// NewDatabase creates a new, empty database and returns its DSN (see
// DSN). It is dropped when the test ends.
//
// Creating a database takes a few hundred milliseconds on a small machine;
// NewSchema is faster where a test needs an empty schema rather than a
// database of its own.
func (s *Server) NewDatabase(tb TB) string {
	tb.Helper()
	name, err := s.createDatabase()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.drop("DATABASE " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"); err != nil {
			tb.Error(err)
		}
	})
	return s.DSN(name)
}

// NewSchema creates a new, empty schema in a database that the server's
// tests share, and returns a DSN (see DSN) whose connections use it alone
// (search_path), so that whatever a test creates without naming a schema
// goes there. It is dropped, with all it holds, when the test ends. It
// takes a few milliseconds where NewDatabase takes a few hundred.
func (s *Server) NewSchema(tb TB) string {
	tb.Helper()
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("test%d", s.seq)
	err := s.execIn(context.Background(), sharedDB, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize())
	s.mu.Unlock()
	if err != nil {
		tb.Fatalf("pgtest: create schema %s: %v", name, err)
	}
	tb.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stopped() {
			return
		}
		if err := s.execIn(context.Background(), sharedDB, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	u, err := url.Parse(s.DSN(sharedDB))
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// sharedDB is the database that holds the schemas of NewSchema.
const sharedDB = "shared"

// createDatabase creates a database and returns its name.
func (s *Server) createDatabase() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	name := fmt.Sprintf("test%d", s.seq)
	if err := s.execIn(context.Background(), "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return name, nil
}

// CreateDatabase creates a new, empty database, kept until the server
// stops, and returns its DSN: for programs without a TB (NewDatabase drops
// its database when the test ends).
func (s *Server) CreateDatabase() (string, error) {
	name, err := s.createDatabase()
	if err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

// drop runs DROP what, unless the server is stopped already (its files go
// then).
func (s *Server) drop(what string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped() {
		return nil
	}
	if err := s.execIn(context.Background(), "postgres", "DROP "+what); err != nil {
		return fmt.Errorf("pgtest: drop %s: %w", what, err)
	}
	return nil
}

// stopped reports whether the server has stopped.
func (s *Server) stopped() bool {
	if s.done == nil {
		return true
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// execIn runs a statement in database (postgres or sharedDB) as the
// superuser, on a connection kept open for the next; the shared database
// is made on first use. The caller holds s.mu.
func (s *Server) execIn(ctx context.Context, database, sql string) error {
	c := s.admin[database]
	if c == nil || c.IsClosed() {
		if database == sharedDB {
			if err := s.execIn(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{sharedDB}.Sanitize()); err != nil {
				return err
			}
		}
		var err error
		if c, err = pgx.Connect(ctx, s.DSN(database)); err != nil {
			return err
		}
		if s.admin == nil {
			s.admin = make(map[string]*pgx.Conn)
		}
		s.admin[database] = c
	}
	_, err := c.Exec(ctx, sql)
	return err
}

// Stop stops the server at once (pg_ctl stop -m immediate) and removes its
// folder. Stopping a stopped server does nothing.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	s.closeAdmin()
	var errs []error
	if s.done != nil {
		if err := s.stopNow(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Dir != "" {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("pgtest: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Halt stops the server at once, as a crash or a lost machine would
// (pg_ctl stop -m immediate: open transactions are lost), keeping its data
// and port; Resume starts it again. Clients see their connections break
// and new ones refused while it is down.
func (s *Server) Halt() error {
	s.closeAdmin()
	if s.done == nil {
		return errors.New("pgtest: the server is not running")
	}
	if err := s.stopNow(); err != nil {
		return err
	}
	s.done = nil
	return nil
}

// closeAdmin closes the superuser's connections.
func (s *Server) closeAdmin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.admin {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.Close(ctx)
		cancel()
	}
	s.admin = nil
}

// stopNow stops the running server at once (pg_ctl stop -m immediate) and
// waits for the postmaster's exit.
func (s *Server) stopNow() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	cmd := exec.Command(filepath.Join(s.bin, "pg_ctl"), "stop", "-D", s.dataDir(), "-m", "immediate", "-w", "-s")
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	var errs []error
	if out, err := cmd.CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: pg_ctl stop: %v: %s", err, strings.TrimSpace(string(out))))
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		errs = append(errs, errors.New("pgtest: the server did not stop within 30s"))
	}
	return errors.Join(errs...)
}

// Resume starts a halted server again on its port, after crash recovery,
// and waits until it accepts connections.
func (s *Server) Resume() error {
	if s.done != nil {
		return errors.New("pgtest: the server is running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return s.launch(ctx)
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

// LogFile is the path of the server's log.
func (s *Server) LogFile() string { return filepath.Join(s.Dir, "postgres.log") }

// start runs initdb and starts the server; on an error it leaves nothing
// behind.
func start() (*Server, error) {
	bin, version, err := findBinaries()
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", User: Superuser, bin: bin, Version: version}
	var uid, gid int = -1, -1
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root, and the OS user postgres that runs the server is missing (%v): install Debian's postgresql package (apt-get install postgresql), which makes it", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}
	if s.Dir, err = os.MkdirTemp("", "dirsync-pgtest-"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if uid >= 0 {
		if err := os.Chown(s.Dir, uid, gid); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	s.Password = hex.EncodeToString(pw[:])

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.initdb(ctx, uid, gid); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if s.Port, err = freePort(); err != nil {
			return nil, err
		}
		err = s.launch(ctx)
		if err == nil {
			break
		}
		// Another process may have taken the port picked as free.
		if errors.Is(err, errAddrInUse) && attempt < 5 {
			continue
		}
		return nil, err
	}
	ok = true
	return s, nil
}

// initdb makes the data directory: UTF-8, C locale, no sync, the
// superuser's password from a file, trust on the socket and SCRAM on TCP.
func (s *Server) initdb(ctx context.Context, uid, gid int) error {
	pwFile := filepath.Join(s.Dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(s.Password+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if uid >= 0 {
		if err := os.Chown(pwFile, uid, gid); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	defer os.Remove(pwFile)
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "initdb"),
		"-D", s.dataDir(), "-U", s.User, "--pwfile", pwFile,
		"--auth-local", "trust", "--auth-host", "scram-sha-256",
		"-E", "UTF8", "--locale", "C", "--no-sync")
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

var errAddrInUse = errors.New("address in use")

// launch starts the postmaster on s.Port and waits until it accepts
// connections.
func (s *Server) launch(ctx context.Context) error {
	logf, err := os.OpenFile(s.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	args := []string{
		"-D", s.dataDir(),
		"-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=" + s.Host,
		"-c", "unix_socket_directories=" + s.Dir,
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "max_wal_size=4GB",
		"-c", "logging_collector=off",
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = logf, logf
	// The kernel stops the server (SIGQUIT: immediate shutdown) when the
	// thread that started it ends; startLocked keeps that thread alive as
	// long as the process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	if err := startLocked(cmd); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		s.errMu.Lock()
		s.exit = err
		s.errMu.Unlock()
		close(done)
	}()
	s.done = done

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			s.done = nil
			log, _ := os.ReadFile(s.LogFile())
			if strings.Contains(string(log), "Address already in use") {
				return errAddrInUse
			}
			return fmt.Errorf("pgtest: postgres exited (%v): %s", s.exitErr(), tail(string(log), 20))
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres did not accept connections in time: %s", tail(readFile(s.LogFile()), 20))
		case <-tick.C:
		}
		if s.ready(ctx) {
			return nil
		}
	}
}

func (s *Server) exitErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.exit
}

// ready reports whether the server accepts a connection of the superuser.
func (s *Server) ready(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, s.DSN("postgres"))
	if err != nil {
		return false
	}
	c.Close(cctx)
	return true
}

// startLocked starts cmd from an OS thread that lives as long as the
// process: a Pdeathsig fires when the thread that forked the child ends,
// and the Go runtime may end threads that are not locked.
func startLocked(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- cmd.Start()
		select {} // keeps the thread; never unlocked
	}()
	return <-errc
}

// debianInitdb is where Debian's postgresql-VERSION packages put initdb.
var debianInitdb = "/usr/lib/postgresql/*/bin/initdb"

// findBinaries returns the folder of the newest Debian PostgreSQL binaries
// (/usr/lib/postgresql/VERSION/bin), else of initdb on PATH, and the
// version.
func findBinaries() (dir, version string, err error) {
	type found struct {
		dir     string
		version int
	}
	var all []found
	matches, _ := filepath.Glob(debianInitdb)
	for _, m := range matches {
		d := filepath.Dir(m)
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			continue
		}
		if complete(d) {
			all = append(all, found{d, v})
		}
	}
	if len(all) > 0 {
		best := slices.MaxFunc(all, func(a, b found) int { return a.version - b.version })
		return best.dir, strconv.Itoa(best.version), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if d := filepath.Dir(p); complete(d) {
			out, _ := exec.Command(filepath.Join(d, "postgres"), "--version").Output()
			return d, majorVersion(string(out)), nil
		}
	}
	return "", "", errors.New("pgtest: PostgreSQL is not installed (no initdb, postgres and pg_ctl under /usr/lib/postgresql/*/bin or on PATH): install Debian's postgresql package (apt-get install postgresql, or scripts/deps.sh)")
}

// complete reports whether dir holds initdb, postgres and pg_ctl.
func complete(dir string) bool {
	for _, name := range []string{"initdb", "postgres", "pg_ctl"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// majorVersion reads "15" from "postgres (PostgreSQL) 15.8 (Debian ...)".
func majorVersion(out string) string {
	f := strings.Fields(out)
	if len(f) < 3 {
		return ""
	}
	v, _, _ := strings.Cut(f[2], ".")
	return v
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
