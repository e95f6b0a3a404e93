// Command devslapd runs a throwaway OpenLDAP slapd
// (host/internal/testpeer/slapd) loaded with LDIF files, for `make demo`,
// `make bench` and manual tests. It listens on 127.0.0.1 only, prints how
// to reach it as KEY=value lines and runs until SIGINT or SIGTERM, then
// stops slapd and removes its directory.
//
//	devslapd examples/directory/sample.ldif
//	devslapd -port 3890 -bind-dn cn=reader,dc=example,dc=com -bind-password reader-secret \
//	    -env var/slapd.env -pidfile var/slapd.pid examples/directory/sample.ldif &
//
// Printed (and, with -env, written to a file once slapd accepts
// connections, so a Makefile can wait for the file and `include` it):
//
//	URL=ldap://127.0.0.1:PORT
//	BASE_DN=dc=example,dc=com
//	BIND_DN=...            the -bind-dn account, else the rootdn
//	PASSWORD_FILE=...      its password, no trailing newline
//	ADMIN_DN=...           the rootdn (writes, bypasses ACLs and limits)
//	ADMIN_PASSWORD_FILE=...
//	LDAPS_URL=..., CA_FILE=...   with -tls
//	LOG_FILE=..., PID=...
//
// Values are not quoted. Stop it with `kill $(cat PIDFILE)`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
)

func main() {
	var (
		opts                           slapd.Options
		bindDN, bindPassword, pwFile   string
		envFile, pidFile, startTimeout string
	)
	flag.StringVar(&opts.BaseDN, "base", "dc=example,dc=com", "base DN (suffix) of the database")
	flag.StringVar(&opts.AdminPassword, "admin-password", "", "rootdn password (default random)")
	flag.IntVar(&opts.Port, "port", 0, "port of ldap://127.0.0.1 (0 = a free one)")
	flag.BoolVar(&opts.TLS, "tls", false, "also serve StartTLS and ldaps:// with a fresh CA")
	flag.IntVar(&opts.SizeLimit, "size-limit", 0, "size limit for everyone but the rootdn (0 = unlimited)")
	flag.IntVar(&opts.SyncSessionLog, "sessionlog", 0, "syncprov session log size: the writes a delta from a recent cookie gets as deletes (0: a present phase instead)")
	flag.StringVar(&opts.LogLevel, "log-level", "stats", "slapd debug level (-d), e.g. stats, none, any")
	flag.StringVar(&bindDN, "bind-dn", "", "account to print as BIND_DN, e.g. cn=reader,dc=example,dc=com (default: the rootdn)")
	flag.StringVar(&bindPassword, "bind-password", "", "password of -bind-dn")
	flag.StringVar(&pwFile, "password-file", "", "where to write BIND_DN's password (default: in slapd's directory)")
	flag.StringVar(&envFile, "env", "", "also write the KEY=value lines to this file, once slapd is ready")
	flag.StringVar(&pidFile, "pidfile", "", "write devslapd's process id to this file")
	flag.StringVar(&startTimeout, "start-timeout", "5m", "how long loading and starting may take")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: devslapd [flags] [file.ldif ...]\n\n"+
			"Runs a throwaway OpenLDAP slapd on 127.0.0.1 with the AD-like test schema,\n"+
			"loaded with the LDIF files (slapadd), until SIGINT or SIGTERM.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	opts.LDIF = flag.Args()
	if (bindDN == "") != (bindPassword == "") {
		fmt.Fprintln(os.Stderr, "devslapd: -bind-dn and -bind-password go together")
		os.Exit(2)
	}
	timeout, err := time.ParseDuration(startTimeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devslapd: -start-timeout:", err)
		os.Exit(2)
	}
	opts.StartTimeout = timeout
	if err := run(opts, bindDN, bindPassword, pwFile, envFile, pidFile, timeout); err != nil {
		fmt.Fprintln(os.Stderr, "devslapd:", err)
		os.Exit(1)
	}
}

func run(opts slapd.Options, bindDN, bindPassword, pwFile, envFile, pidFile string, timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if envFile != "" {
		// A stale file would tell a waiting Makefile that we are ready.
		if err := os.Remove(envFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		defer os.Remove(envFile)
	}
	if pidFile != "" {
		if err := writeFile(pidFile, strconv.Itoa(os.Getpid())+"\n", 0o644); err != nil {
			return err
		}
		defer os.Remove(pidFile)
	}

	startCtx, cancel := context.WithTimeout(ctx, timeout)
	srv, err := slapd.Start(startCtx, opts)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "devslapd:", err)
		}
	}()

	adminPW := filepath.Join(srv.Dir, "admin.pw")
	if err := writeFile(adminPW, srv.AdminPassword, 0o600); err != nil {
		return err
	}
	if bindDN == "" {
		bindDN, bindPassword = srv.AdminDN, srv.AdminPassword
	}
	if pwFile == "" {
		pwFile = filepath.Join(srv.Dir, "bind.pw")
	} else {
		defer os.Remove(pwFile)
	}
	if err := writeFile(pwFile, bindPassword, 0o600); err != nil {
		return err
	}
	if abs, err := filepath.Abs(pwFile); err == nil {
		pwFile = abs
	}

	env := envLines(srv, bindDN, pwFile, adminPW)
	if _, err := io.WriteString(os.Stdout, env); err != nil {
		return err
	}
	if envFile != "" {
		if err := writeFile(envFile, env, 0o644); err != nil {
			return err
		}
	}
	return watch(ctx, srv)
}

// envLines says how to reach srv, as KEY=value lines.
func envLines(srv *slapd.Server, bindDN, pwFile, adminPW string) string {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, v) }
	line("URL", srv.URL)
	line("BASE_DN", srv.BaseDN)
	line("BIND_DN", bindDN)
	line("PASSWORD_FILE", pwFile)
	line("ADMIN_DN", srv.AdminDN)
	line("ADMIN_PASSWORD_FILE", adminPW)
	if srv.LDAPSURL != "" {
		line("LDAPS_URL", srv.LDAPSURL)
		line("CA_FILE", srv.CAFile)
	}
	line("LOG_FILE", srv.LogFile)
	line("PID", strconv.Itoa(os.Getpid()))
	return b.String()
}

// watch returns nil when ctx ends (a signal), or an error with the end of
// slapd's log when slapd exits.
func watch(ctx context.Context, srv *slapd.Server) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if !srv.Running() {
				log := strings.Split(strings.TrimSpace(srv.Log()), "\n")
				return fmt.Errorf("slapd exited; the end of its log:\n%s", strings.Join(log[max(0, len(log)-20):], "\n"))
			}
		}
	}
}

// writeFile writes a file atomically (temporary file and rename), so that
// a reader never sees it half written.
func writeFile(path, content string, mode os.FileMode) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
