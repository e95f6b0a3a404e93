// Package peertest starts the directory servers of package testpeer from
// tests. A server started here is closed when its test ends, and one that
// cannot start fails the test (never skips it). This is the only part of
// testpeer that imports package testing: only tests import it, so the
// programs that start a server (the bench and dev tools) do not link
// testing.
package peertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer/samba"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/go-ldap/ldap/v3"
)

// Slapd starts an OpenLDAP server for a test or benchmark and stops it
// (removing its directory) when the test ends. It fails the test when
// slapd cannot start.
func Slapd(tb testing.TB, opts slapd.Options) *slapd.Server {
	tb.Helper()
	return start(tb, 5*time.Minute, func(ctx context.Context) (*slapd.Server, error) { return slapd.Start(ctx, opts) })
}

// Samba starts a Samba AD DC for a test and closes it when the test ends.
// It fails the test (never skips it) when Samba cannot start.
func Samba(tb testing.TB, opts samba.Options) *samba.Server {
	tb.Helper()
	return start(tb, 10*time.Minute, func(ctx context.Context) (*samba.Server, error) {
		s, err := samba.Start(ctx, opts)
		if err == nil {
			tb.Logf("samba %s at %s: %v", s.Version, s.URL, s.Timings)
		}
		return s, err
	})
}

// server is what start needs of a server.
type server interface{ Close() error }

// start starts a server with a context of timeout, fails tb if it cannot,
// and closes it when the test ends.
func start[S server](tb testing.TB, timeout time.Duration, startServer func(context.Context) (S, error)) S {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := startServer(ctx)
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

// StartFails checks that startServer fails within a minute with an error
// that holds each of want; a server that starts nonetheless is closed.
func StartFails[S server](t *testing.T, startServer func(context.Context) (S, error), want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := startServer(ctx)
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded")
	}
	t.Logf("error: %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

// Bind connects to url and binds as dn with password pw, or fails the
// test. The connection is closed when the test ends.
func Bind(t testing.TB, url, dn, pw string) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Bind(dn, pw); err != nil {
		t.Fatalf("bind %s as %s: %v", url, dn, err)
	}
	return c
}
