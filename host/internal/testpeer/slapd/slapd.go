// Package slapd starts throwaway, real OpenLDAP servers for tests, the demo
// and benchmarks.
//
// A Server is one slapd process listening on loopback only, with a back-mdb
// database in a temporary directory, the AD-like schema of
// testdata/adlike.schema (sAMAccountName, sAMAccountType, proxyAddresses,
// userAccountControl; adUser, adGroup, publicFolder), the memberof overlay
// (memberOf maintained for groupOfNames/member), the syncprov overlay (RFC
// 4533 content synchronization: delta and live sync; Options.SyncSessionLog)
// and ACLs that let every authenticated identity read everything. Size and
// time limits are unlimited unless Options says otherwise: a sync search
// (which cannot be paged) needs that. Bulk data is loaded with slapadd
// before slapd starts (Options.LDIF); later changes go over LDAP (Load, Add,
// Modify, Delete).
//
//	srv, err := slapd.Start(ctx, slapd.Options{LDIF: []string{"sample.ldif"}})
//	if err != nil { ... }
//	defer srv.Close()
//	conn, err := ldap.DialURL(srv.URL)
//	err = conn.Bind(srv.AdminDN, srv.AdminPassword)
//
// A test starts one with peertest.Slapd, which closes it when the test
// ends. Start fails, with an error that says what to install, when slapd
// is not installed: tests that need a directory fail instead of skipping.
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
	"syscall"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer"
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
	// NoSyncProv leaves out the syncprov overlay, which is otherwise always
	// on: the server then refuses RFC 4533 content synchronization (the
	// sync request control), like a server without it.
	NoSyncProv bool
	// SyncSessionLog is syncprov's session log size (syncprov-sessionlog):
	// how many recent writes it remembers, so that a sync from a cookie
	// within them is answered with a delete phase (the UUIDs of the
	// entries deleted or gone out of the search's scope). 0 (no log): a
	// sync from a cookie is answered with a present phase (the UUIDs of
	// every unchanged entry). The log lives in memory: after a restart it
	// is empty and the present phase is used until it covers the cookie.
	SyncSessionLog int
	// ModuleDir holds back_mdb, memberof and syncprov modules (default /usr/lib/ldap
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

	daemon testpeer.Daemon
}

// Start writes a configuration, loads Options.LDIF with slapadd and starts
// slapd on loopback. It returns when slapd accepts connections. The caller
// must Close the server. ctx bounds the start only, not the server's life.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts, err := withDefaults(opts)
	if err != nil {
		return nil, err
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
	if err := s.launchOnFreePorts(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// withDefaults fills in the options left zero.
func withDefaults(opts Options) (Options, error) {
	if opts.BaseDN == "" {
		opts.BaseDN = "dc=example,dc=com"
	}
	if opts.AdminDN == "" {
		opts.AdminDN = "cn=admin," + opts.BaseDN
	}
	if opts.AdminPassword == "" {
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return opts, err
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
	return opts, nil
}

// launchOnFreePorts starts slapd on the ports of Options, picking free
// ones for those left 0, and tries other ports when another process took
// one picked as free.
func (s *Server) launchOnFreePorts(ctx context.Context) error {
	opts := s.opts
	port, tlsPort := opts.Port, opts.TLSPort
	for attempt := 1; ; attempt++ {
		var err error
		if opts.Port == 0 {
			if port, err = freePort(); err != nil {
				return err
			}
		}
		if opts.TLS && opts.TLSPort == 0 {
			if tlsPort, err = freePort(); err != nil {
				return err
			}
		}
		s.setPorts(port, tlsPort)
		err = s.launch(ctx)
		if err == nil {
			return nil
		}
		// Another process may have taken a port picked as free.
		if errors.Is(err, errAddrInUse) && attempt < 5 && (opts.Port == 0 || opts.TLS && opts.TLSPort == 0) {
			continue
		}
		return err
	}
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
	err := s.daemon.Start(ctx, s.prepareLaunch)
	if errors.Is(err, testpeer.ErrRunning) {
		return fmt.Errorf("slapd at %s is %w", s.URL, err)
	}
	return err
}

// prepareLaunch opens the log, removes the pid file of an earlier run and
// describes slapd's start: it is ready when its pid file names it and
// every listener accepts connections.
func (s *Server) prepareLaunch() (testpeer.Launch, error) {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return testpeer.Launch{}, fmt.Errorf("slapd: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	if err := os.Remove(s.pidFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		logf.Close()
		return testpeer.Launch{}, fmt.Errorf("slapd: %w", err)
	}
	listen := s.URL + "/"
	addrs := []string{strings.TrimPrefix(s.URL, "ldap://")}
	if s.LDAPSURL != "" {
		listen += " " + s.LDAPSURL + "/"
		addrs = append(addrs, strings.TrimPrefix(s.LDAPSURL, "ldaps://"))
	}
	return testpeer.Launch{
		Name:    "slapd",
		Cmd:     exec.Command(s.slapd, "-f", s.confFile, "-h", listen, "-d", s.opts.LogLevel),
		Output:  logf,
		Poll:    20 * time.Millisecond,
		Timeout: s.opts.StartTimeout,
		Awaited: "accept connections",
		Ready: func(pid int) (bool, error) {
			// The pid file shows that this slapd (not another process on a
			// port picked as free) opened its listeners and databases.
			b, _ := os.ReadFile(s.pidFile())
			if strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
				return false, nil
			}
			for _, a := range addrs {
				c, err := net.DialTimeout("tcp", a, time.Second)
				if err != nil {
					return false, nil
				}
				c.Close()
			}
			return true, nil
		},
		Fail: func(what string) error {
			tail := testpeer.FileTail(s.LogFile, logStart)
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("slapd on %s: %w; %s:\n%s", listen, errAddrInUse, s.LogFile, tail)
			}
			return fmt.Errorf("slapd on %s %s; %s:\n%s", listen, what, s.LogFile, tail)
		},
	}, nil
}

func (s *Server) pidFile() string { return filepath.Join(s.Dir, "slapd.pid") }

// Stop stops slapd (SIGTERM, then SIGKILL after 10s) and waits for it to
// exit. The data stays; Restart starts slapd again on the same ports. Stop
// of a stopped server does nothing. Clients see their connections closed:
// tests use this to simulate an outage.
func (s *Server) Stop() error {
	s.daemon.Stop(testpeer.StopStep{Signal: syscall.SIGTERM}, testpeer.StopStep{Wait: 10 * time.Second, Signal: syscall.SIGKILL})
	return nil
}

// Kill stops slapd with SIGKILL, like a crash, and waits for it to exit.
func (s *Server) Kill() error {
	s.daemon.Kill()
	return nil
}

// Running reports whether slapd is running.
func (s *Server) Running() bool { return s.daemon.Running() }

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

// programDirs are searched for OpenLDAP programs not on $PATH.
var programDirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/usr/local/libexec", "/opt/homebrew/opt/openldap/libexec"}

// findProgram locates an OpenLDAP program.
func findProgram(explicit, name string) (string, error) {
	p, err := testpeer.FindProgram(explicit, name, programDirs)
	var notFound *testpeer.NotFoundError
	switch {
	case errors.As(err, &notFound):
		return "", fmt.Errorf("slapd: OpenLDAP %w: install it (Debian/Ubuntu: apt-get install slapd ldap-utils)", err)
	case err != nil:
		return "", fmt.Errorf("slapd: %w", err)
	}
	return p, nil
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
	// -w writes the contextCSN of the loaded entries to the base entry:
	// syncprov's state, without which a sync cookie has nothing to start
	// from.
	cmd := exec.CommandContext(ctx, bin, "-q", "-w", "-f", s.confFile, "-l", input)
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
