// Package samba starts a real Samba Active Directory domain controller for
// tests: the peer that shows how dirsync copes with AD itself (binary
// objectGUIDs, sAMAccountType and memberOf that AD maintains,
// userAccountControl, search result references at the domain root).
//
// A Server is one `samba -i -M single` process with a freshly provisioned
// domain (default realm SAMDOM.EXAMPLE.COM, NetBIOS domain SAMDOM, base DN
// DC=samdom,DC=example,DC=com) in a temporary directory. Only Samba's LDAP
// service runs; it listens on loopback (interfaces = lo, bind interfaces
// only) and accepts simple binds over plain ldap:// (ldap server require
// strong auth = no).
//
//	dc, err := samba.Start(ctx, samba.Options{})
//	if err != nil { ... }
//	defer dc.Close()
//	dn, err := dc.AddUser(samba.User{CN: "Alice", ProxyAddresses: []string{"SMTP:alice@example.com"}})
//
// Samba's LDAP port is fixed at 389 (and 636, 3268, 3269), so only one
// Server runs on a machine at a time: Start takes an exclusive lock
// (LockFile) that Close releases, and a second Start — in this process or in
// another test binary — waits for it. Start needs root for the port.
//
// Provisioning a domain takes seconds; Start provisions once per Samba
// version into a template folder under os.TempDir (TemplateDir) and copies
// it for each server, which takes a fraction of that. A test starts one
// with peertest.Samba, which closes it when the test ends. Start fails,
// with an error that says what to install, when Samba is not installed:
// tests that need it fail instead of skipping.
package samba

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer"
	"github.com/go-ldap/ldap/v3"
)

// Addr is where Samba's LDAP service listens; Samba cannot be told another
// port.
const Addr = "127.0.0.1:389"

// Defaults of Options.
const (
	DefaultRealm  = "SAMDOM.EXAMPLE.COM"
	DefaultDomain = "SAMDOM"
)

// Options configure Start. The zero value is a usable domain.
type Options struct {
	// Realm is the DNS name of the domain in upper case. Default
	// SAMDOM.EXAMPLE.COM. The base DN follows from it.
	Realm string
	// Domain is the NetBIOS domain name. Default SAMDOM.
	Domain string
	// Config holds further [global] smb.conf lines ("name = value"),
	// written after the ones Start needs.
	Config []string
	// LogLevel is Samba's debug level. Default 1. The log goes to
	// Server.LogFile.
	LogLevel int
	// StartTimeout bounds how long Start waits for Samba to answer a bind,
	// once it runs. Default 60s.
	StartTimeout time.Duration
	// NoTemplate provisions the domain into the server's folder instead of
	// copying the cached template (slow; for measuring).
	NoTemplate bool
	// SambaPath and SambaToolPath override where the programs are found
	// (default: $PATH, then /usr/sbin, /usr/bin).
	SambaPath, SambaToolPath string
}

// Server is a running (or stopped) Samba AD DC.
type Server struct {
	// URL is "ldap://127.0.0.1:389".
	URL string
	// LDAPSURL is "ldaps://127.0.0.1:636"; URL also offers StartTLS.
	LDAPSURL string
	// CAFile is the PEM file of the CA that issued the DC's certificate
	// (for 127.0.0.1, ::1, localhost and dc1.<realm>).
	CAFile string
	// BaseDN is the domain's DN, e.g. "DC=samdom,DC=example,DC=com".
	BaseDN string
	// Realm and Domain are the DNS and NetBIOS names of the domain.
	Realm, Domain string
	// AdminDN and AdminPassword are the credentials of the domain's
	// Administrator (a Domain Admin: may write everything).
	AdminDN       string
	AdminPassword string
	// ReaderDN and ReaderPassword are those of an ordinary domain user
	// ("dirsync-reader", no group beyond Domain Users): the account a
	// gateway's sync would bind as.
	ReaderDN       string
	ReaderPassword string
	// Dir is the server's folder; LogFile is Samba's log in it.
	Dir     string
	LogFile string
	// Version is Samba's version, e.g. "4.17.12-Debian".
	Version string
	// Timings says where Start spent its time.
	Timings Timings

	samba string
	conf  string
	opts  Options
	lock  *os.File

	daemon testpeer.Daemon
}

// Timings of Start. Provision is zero when the template was cached.
type Timings struct {
	Lock      time.Duration // waiting for another Server to close
	Provision time.Duration // samba-tool domain provision and setup
	Copy      time.Duration // copying the template
	Start     time.Duration // from exec to the first successful bind
}

func (t Timings) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("lock %v, provision %v, copy %v, start %v", r(t.Lock), r(t.Provision), r(t.Copy), r(t.Start))
}

// Start takes the machine-wide lock, sets up a domain (from the template)
// in a new temporary folder and starts Samba. It returns when Samba accepts
// a bind. The caller must Close the server. ctx bounds the start only
// (including the wait for the lock), not the server's life.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	if opts, err = withDefaults(opts); err != nil {
		return nil, err
	}
	sambaBin, err := findProgram(opts.SambaPath, "samba")
	if err != nil {
		return nil, err
	}
	toolBin, err := findProgram(opts.SambaToolPath, "samba-tool")
	if err != nil {
		return nil, err
	}
	version, err := sambaVersion(ctx, sambaBin)
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:      "ldap://" + Addr,
		LDAPSURL: "ldaps://127.0.0.1:636",
		Realm:    opts.Realm,
		Domain:   opts.Domain,
		BaseDN:   realmDN(opts.Realm),
		Version:  version,
		samba:    sambaBin,
		opts:     opts,
	}
	s.AdminDN = "CN=Administrator,CN=Users," + s.BaseDN
	s.ReaderDN = "CN=" + readerName + ",CN=Users," + s.BaseDN

	t0 := time.Now()
	if s.lock, err = acquireLock(ctx); err != nil {
		return nil, err
	}
	s.Timings.Lock = time.Since(t0)
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := checkPortFree(); err != nil {
		return nil, err
	}
	if err := s.setUpDomain(ctx, programs{sambaBin, toolBin}); err != nil {
		return nil, err
	}
	t := time.Now()
	if err := s.launch(ctx); err != nil {
		return nil, err
	}
	s.Timings.Start = time.Since(t)
	return s, nil
}

// withDefaults fills in the options left zero and checks the names.
func withDefaults(opts Options) (Options, error) {
	if opts.Realm == "" {
		opts.Realm = DefaultRealm
	}
	opts.Realm = strings.ToUpper(opts.Realm)
	if opts.Domain == "" {
		opts.Domain = DefaultDomain
	}
	if opts.LogLevel == 0 {
		opts.LogLevel = 1
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	if !validName(opts.Realm, ".-") || !validName(opts.Domain, "-") || len(opts.Domain) > 15 {
		return opts, fmt.Errorf("samba: realm %q or domain %q: want letters, digits and dashes (and dots in the realm), domain at most 15", opts.Realm, opts.Domain)
	}
	return opts, nil
}

// setUpDomain makes the server's folder and puts the domain in it: a copy
// of the template (provisioned first if need be), or, with
// Options.NoTemplate, a domain provisioned there. It writes the server's
// smb.conf last.
func (s *Server) setUpDomain(ctx context.Context, bins programs) (err error) {
	if s.Dir, err = os.MkdirTemp("", "dirsync-samba-"); err != nil {
		return fmt.Errorf("samba: %w", err)
	}
	s.LogFile = filepath.Join(s.Dir, "samba.log")
	s.CAFile = filepath.Join(s.Dir, "private", "tls", "ca.pem")
	s.conf = filepath.Join(s.Dir, "etc", "smb.conf")

	var pw passwords
	if s.opts.NoTemplate {
		t := time.Now()
		pw, err = provision(ctx, bins, s.Dir, s.opts)
		s.Timings.Provision = time.Since(t)
	} else {
		var tmpl string
		tmpl, pw, s.Timings.Provision, err = template(ctx, bins, s.Version, s.opts)
		if err == nil {
			t := time.Now()
			err = copyTree(tmpl, s.Dir)
			s.Timings.Copy = time.Since(t)
		}
	}
	if err != nil {
		return err
	}
	s.AdminPassword, s.ReaderPassword = pw.Admin, pw.Reader
	return writeConfig(s.conf, s.Dir, s.opts)
}

// realmDN turns SAMDOM.EXAMPLE.COM into DC=samdom,DC=example,DC=com.
func realmDN(realm string) string {
	parts := strings.Split(strings.ToLower(realm), ".")
	for i, p := range parts {
		parts[i] = "DC=" + p
	}
	return strings.Join(parts, ",")
}

func validName(s, extra string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune(extra, c)) {
			return false
		}
	}
	return true
}

// checkPortFree fails when something already listens on Addr: a DC started
// by hand, or one this package did not start.
func checkPortFree() error {
	c, err := net.DialTimeout("tcp", Addr, 500*time.Millisecond)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("samba: %s is already in use by a process this package did not start (a Samba or LDAP server running on the machine?); stop it first", Addr)
}

// launch starts samba and waits until the Administrator can bind.
func (s *Server) launch(ctx context.Context) error {
	err := s.daemon.Start(ctx, s.prepareLaunch)
	if errors.Is(err, testpeer.ErrRunning) {
		return fmt.Errorf("samba is %w", err)
	}
	return err
}

// prepareLaunch opens samba's output file and describes its start: it is
// ready when the Administrator can bind.
func (s *Server) prepareLaunch() (testpeer.Launch, error) {
	out, err := os.OpenFile(filepath.Join(s.Dir, "samba.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return testpeer.Launch{}, fmt.Errorf("samba: %w", err)
	}
	return testpeer.Launch{
		Name: "samba",
		// -i: stay in the foreground, and end when stdin closes (so a test
		// binary that dies takes the DC with it). -M single: one process,
		// no children to leave behind.
		Cmd:     exec.Command(s.samba, "-i", "-M", "single", "-s", s.conf, fmt.Sprintf("--debuglevel=%d", s.opts.LogLevel)),
		Output:  out,
		Stdin:   true,
		Poll:    25 * time.Millisecond,
		Timeout: s.opts.StartTimeout,
		Awaited: "accept a bind",
		Ready:   s.answersBind,
		Fail: func(what string) error {
			return fmt.Errorf("samba %s %s; %s:\n%s", s.URL, what, s.LogFile, testpeer.Tail(s.Log()))
		},
	}, nil
}

// answersBind reports whether the Administrator can bind: a bind with
// this domain's password shows that it is this DC that answers. A refused
// password means another DC answers.
func (s *Server) answersBind(int) (bool, error) {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return false, nil
	}
	c.SetTimeout(5 * time.Second)
	err = c.Bind(s.AdminDN, s.AdminPassword)
	c.Close()
	if err == nil {
		return true, nil
	}
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		return false, errors.New("refused the Administrator's password (is another DC answering on " + Addr + "?)")
	}
	return false, nil
}

// Stop stops Samba and waits for it to exit: it closes Samba's stdin (which
// ends `samba -i`), then sends SIGTERM after 5s and SIGKILL after 10s. The
// data stays and the lock is kept; Restart starts Samba again. Stop of a
// stopped server does nothing.
func (s *Server) Stop() error {
	s.daemon.Stop(testpeer.StopStep{Wait: 5 * time.Second, Signal: syscall.SIGTERM}, testpeer.StopStep{Wait: 5 * time.Second, Signal: syscall.SIGKILL})
	return nil
}

// Kill stops Samba with SIGKILL, like a crash, and waits for it to exit.
func (s *Server) Kill() error {
	s.daemon.Kill()
	return nil
}

// Running reports whether Samba is running.
func (s *Server) Running() bool { return s.daemon.Running() }

// Pid is the process id of the running Samba, or 0.
func (s *Server) Pid() int { return s.daemon.Pid() }

// Restart stops Samba if it runs and starts it again with the same data.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.launch(ctx)
}

// Close stops Samba, removes the server's folder and releases the lock.
// It may be called more than once.
func (s *Server) Close() error {
	err := s.Stop()
	if s.Dir != "" {
		if rerr := os.RemoveAll(s.Dir); rerr != nil && err == nil {
			err = fmt.Errorf("samba: %w", rerr)
		}
		s.Dir = ""
	}
	if s.lock != nil {
		releaseLock(s.lock)
		s.lock = nil
	}
	return err
}

// Log returns Samba's log so far, for test diagnostics.
func (s *Server) Log() string {
	var b strings.Builder
	for _, name := range []string{"samba.out", "samba.log"} {
		if data, err := os.ReadFile(filepath.Join(s.Dir, name)); err == nil {
			b.Write(data)
		}
	}
	return b.String()
}

// programDirs are searched for Samba's programs not on $PATH.
var programDirs = []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/local/samba/sbin", "/usr/local/samba/bin"}

// installHint says what to install.
const installHint = "install it (Debian/Ubuntu: apt-get install samba samba-ad-dc samba-ad-provision samba-dsdb-modules, or bash scripts/deps.sh)"

// findProgram locates a Samba program.
func findProgram(explicit, name string) (string, error) {
	p, err := testpeer.FindProgram(explicit, name, programDirs)
	var notFound *testpeer.NotFoundError
	switch {
	case errors.As(err, &notFound):
		return "", fmt.Errorf("samba: %w: %s", err, installHint)
	case err != nil:
		return "", fmt.Errorf("samba: %w; %s", err, installHint)
	}
	return p, nil
}

// sambaVersion runs `samba -V`: "Version 4.17.12-Debian".
func sambaVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "-V").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("samba: %s -V: %v: %s", bin, err, strings.TrimSpace(string(out)))
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Version "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("samba: %s -V printed no version: %q", bin, out)
}
