// Package slapd starts throwaway, real OpenLDAP servers for tests, the demo
// and benchmarks.
//
// A Server is one slapd process listening on loopback only, with a back-mdb
// database in a temporary directory, the AD-like schema of
// testdata/adlike.schema (sAMAccountName, sAMAccountType, proxyAddresses,
// userAccountControl; adUser, adGroup, publicFolder), the memberof overlay
// (memberOf maintained for groupOfNames/member) and ACLs that let every
// authenticated identity read everything. Bulk data is loaded with slapadd
// before slapd starts (Options.LDIF); later changes go over LDAP (Load, Add,
// Modify, Delete).
//
//	srv, err := slapd.Start(ctx, slapd.Options{LDIF: []string{"sample.ldif"}})
//	if err != nil { ... }
//	defer srv.Close()
//	conn, err := ldap.DialURL(srv.URL)
//	err = conn.Bind(srv.AdminDN, srv.AdminPassword)
//
// Start fails, with an error that says what to install, when slapd is not
// installed: tests that need a directory fail instead of skipping.
package slapd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configure Start. The zero value is a usable empty directory with
// base "dc=example,dc=com".
type Options struct {
	// BaseDN is the database suffix. Default "dc=example,dc=com".
	BaseDN string
	// AdminDN is the rootdn, which bypasses ACLs and limits.
	// Default "cn=admin," + BaseDN.
	AdminDN string
	// AdminPassword is the rootdn's password. Default: random.
	AdminPassword string
	// LDIF lists files loaded with slapadd before slapd starts: the fast
	// way to load large directories. Records must be adds. The base entry
	// is created when no file has it, and memberOf values are added to the
	// members of every groupOfNames (slapadd bypasses the memberof overlay).
	LDIF []string
	// Port is the loopback port of the ldap:// listener; 0 picks a free one.
	Port int
	// TLS makes slapd serve StartTLS on URL and ldaps:// on LDAPSURL, with
	// a certificate for 127.0.0.1 and localhost issued by a fresh CA
	// (Server.CAFile).
	TLS bool
	// TLSPort is the port of the ldaps:// listener; 0 picks a free one.
	TLSPort int
	// SizeLimit and TimeLimit (seconds) limit every identity except the
	// rootdn; 0 means unlimited. SizeLimit also caps the total of a paged
	// search.
	SizeLimit int
	TimeLimit int
	// MaxSize is back-mdb's maxsize in bytes. Default 16 GiB (the file is
	// sparse; only what is used takes disk space).
	MaxSize int64
	// LogLevel is slapd's debug level (-d), e.g. "stats", "none", "any".
	// Default "stats". The log goes to Server.LogFile.
	LogLevel string
	// ExtraSchema lists further .schema files, included after the AD-like
	// schema.
	ExtraSchema []string
	// Dir is the working directory (config, database, log); it must not
	// hold a database yet. Default: a new temporary directory, removed by
	// Close.
	Dir string
	// StartTimeout bounds how long Start and Restart wait for slapd to
	// accept connections. Default 30s.
	StartTimeout time.Duration
	// SlapdPath and SlapaddPath override where the programs are found
	// (default: $PATH, then /usr/sbin and other usual places).
	SlapdPath, SlapaddPath string
	// SchemaDir holds core.schema, cosine.schema and inetorgperson.schema
	// (default /etc/ldap/schema or /etc/openldap/schema).
	SchemaDir string
	// ModuleDir holds back_mdb and memberof modules (default /usr/lib/ldap
	// or other usual places; none when they are built in).
	ModuleDir string
}

// Server is a running (or stopped) slapd.
type Server struct {
	// URL is "ldap://127.0.0.1:PORT".
	URL string
	// LDAPSURL is "ldaps://127.0.0.1:PORT" when Options.TLS is set.
	LDAPSURL string
	// CAFile is the PEM file of the CA that issued the server certificate
	// when Options.TLS is set.
	CAFile string
	// BaseDN is the database suffix.
	BaseDN string
	// AdminDN and AdminPassword are the rootdn's credentials.
	AdminDN       string
	AdminPassword string
	// Dir is the working directory; LogFile is slapd's log in it.
	Dir     string
	LogFile string

	opts     Options
	slapd    string
	confFile string
	ownDir   bool

	mu   sync.Mutex
	proc *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
	log  *os.File
}

// StartT starts a server for a test or benchmark and stops it (removing its
// directory) when the test ends. It fails the test when slapd cannot start.
func StartT(tb testing.TB, opts Options) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// Start writes a configuration, loads Options.LDIF with slapadd and starts
// slapd on loopback. It returns when slapd accepts connections. The caller
// must Close the server. ctx bounds the start only, not the server's life.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.BaseDN == "" {
		opts.BaseDN = "dc=example,dc=com"
	}
	if opts.AdminDN == "" {
		opts.AdminDN = "cn=admin," + opts.BaseDN
	}
	if opts.AdminPassword == "" {
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		opts.AdminPassword = hex.EncodeToString(b[:])
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = 16 << 30
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "stats"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	slapdBin, err := findProgram(opts.SlapdPath, "slapd")
	if err != nil {
		return nil, err
	}
	slapaddBin, err := findProgram(opts.SlapaddPath, "slapadd")
	if err != nil {
		return nil, err
	}
	s := &Server{
		BaseDN:        opts.BaseDN,
		AdminDN:       opts.AdminDN,
		AdminPassword: opts.AdminPassword,
		Dir:           opts.Dir,
		opts:          opts,
		slapd:         slapdBin,
	}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "dirsync-slapd-"); err != nil {
			return nil, fmt.Errorf("slapd: %w", err)
		}
		s.ownDir = true
	} else if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("slapd: %w", err)
	}
	s.LogFile = filepath.Join(s.Dir, "slapd.log")
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	if err := s.slapadd(ctx, slapaddBin); err != nil {
		return nil, err
	}
	port, tlsPort := opts.Port, opts.TLSPort
	for attempt := 1; ; attempt++ {
		if opts.Port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		if opts.TLS && opts.TLSPort == 0 {
			if tlsPort, err = freePort(); err != nil {
				return nil, err
			}
		}
		s.setPorts(port, tlsPort)
		err = s.launch(ctx)
		if err == nil {
			break
		}
		// Another process may have taken a port picked as free.
		if errors.Is(err, errAddrInUse) && attempt < 5 && (opts.Port == 0 || opts.TLS && opts.TLSPort == 0) {
			continue
		}
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Server) setPorts(port, tlsPort int) {
	s.URL = "ldap://127.0.0.1:" + strconv.Itoa(port)
	if s.opts.TLS {
		s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(tlsPort)
	}
}

var errAddrInUse = errors.New("address already in use")

// launch starts slapd and waits until it accepts connections.
func (s *Server) launch(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("slapd at %s is already running", s.URL)
	}
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("slapd: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	if err := os.Remove(s.pidFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		logf.Close()
		return fmt.Errorf("slapd: %w", err)
	}
	listen := s.URL + "/"
	if s.LDAPSURL != "" {
		listen += " " + s.LDAPSURL + "/"
	}
	cmd := exec.Command(s.slapd, "-f", s.confFile, "-h", listen, "-d", s.opts.LogLevel)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("slapd: start %s: %w", s.slapd, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()

	fail := func(what string) error {
		tail := logTail(s.LogFile, logStart)
		if strings.Contains(tail, "Address already in use") {
			return fmt.Errorf("slapd on %s: %w; %s:\n%s", listen, errAddrInUse, s.LogFile, tail)
		}
		return fmt.Errorf("slapd on %s %s; %s:\n%s", listen, what, s.LogFile, tail)
	}
	deadline := time.NewTimer(s.opts.StartTimeout)
	defer deadline.Stop()
	addrs := []string{strings.TrimPrefix(s.URL, "ldap://")}
	if s.LDAPSURL != "" {
		addrs = append(addrs, strings.TrimPrefix(s.LDAPSURL, "ldaps://"))
	}
	for {
		select {
		case <-p.done:
			return fail(fmt.Sprintf("exited during start (%v)", p.err))
		case <-deadline.C:
			_ = cmd.Process.Kill()
			<-p.done
			return fail(fmt.Sprintf("did not accept connections within %v", s.opts.StartTimeout))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("slapd start: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		// The pid file shows that this slapd (not another process on a
		// port picked as free) opened its listeners and databases.
		pid, _ := os.ReadFile(s.pidFile())
		ready := strings.TrimSpace(string(pid)) == strconv.Itoa(cmd.Process.Pid)
		for _, a := range addrs {
			if !ready {
				break
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				ready = false
				break
			}
			c.Close()
		}
		if ready {
			s.proc = p
			return nil
		}
	}
}

func (s *Server) pidFile() string { return filepath.Join(s.Dir, "slapd.pid") }

// Stop stops slapd (SIGTERM, then SIGKILL after 10s) and waits for it to
// exit. The data stays; Restart starts slapd again on the same ports. Stop
// of a stopped server does nothing. Clients see their connections closed:
// tests use this to simulate an outage.
func (s *Server) Stop() error {
	return s.stop(syscall.SIGTERM)
}

// Kill stops slapd with SIGKILL, like a crash, and waits for it to exit.
func (s *Server) Kill() error {
	return s.stop(syscall.SIGKILL)
}

func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// Running reports whether slapd is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}

// Restart stops slapd if it runs and starts it again on the same ports with
// the same data.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.launch(ctx)
}

// Close stops slapd and removes the working directory if Start created it.
func (s *Server) Close() error {
	err := s.Stop()
	if s.ownDir {
		if rerr := os.RemoveAll(s.Dir); rerr != nil && err == nil {
			err = fmt.Errorf("slapd: %w", rerr)
		}
	}
	return err
}

// Log returns slapd's log so far, for test diagnostics.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("slapd: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logTail returns up to the last 40 lines written to path after offset.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const max = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > max {
		offset = fi.Size() - max
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "(log is empty)"
	}
	return strings.Join(lines, "\n")
}

// programDirs are searched for OpenLDAP programs not on $PATH.
var programDirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/usr/local/libexec", "/opt/homebrew/opt/openldap/libexec"}

// findProgram locates an OpenLDAP program.
func findProgram(explicit, name string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("slapd: %s program: %w", name, err)
		}
		return explicit, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs := programDirs
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("slapd: OpenLDAP %s not found in $PATH or %s: install it (Debian/Ubuntu: apt-get install slapd ldap-utils)",
		name, strings.Join(dirs, ", "))
}

// slapadd loads Options.LDIF (and the base entry if they lack it) into the
// database before slapd starts.
func (s *Server) slapadd(ctx context.Context, bin string) error {
	input := filepath.Join(s.Dir, "slapadd.ldif")
	f, err := os.Create(input)
	if err != nil {
		return fmt.Errorf("slapd: %w", err)
	}
	origins, err := prepareSlapadd(f, s.opts.BaseDN, s.opts.LDIF)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("slapd: prepare LDIF: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "-q", "-f", s.confFile, "-l", input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if where := origins.explain(msg); where != "" {
			msg += "\n" + where
		}
		return fmt.Errorf("slapd: slapadd of %s failed (%v):\n%s", strings.Join(s.opts.LDIF, ", "), err, msg)
	}
	return os.Remove(input)
}
