package ldapfetch

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/sdk"
)

func writeGenerated(t testing.TB, path string, users int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := slapd.GenerateDirectory(f, slapd.GenOptions{Users: users}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkFetch reads N generated AD-like users (default 20,000; set
// DIRSYNC_BENCH_N) plus the sample directory from a real slapd with the
// default filter, as the reader account, and compares with ldapsearch
// (-E pr=1000/noprompt, output to /dev/null) and go-ldap's SearchWithPaging
// over the same data in the same run. ns/op is one whole read.
//
//	go test -run '^$' -bench Fetch -benchtime 5x ./host/internal/ldapfetch
func BenchmarkFetch(b *testing.B) {
	n := 20000
	if s := os.Getenv("DIRSYNC_BENCH_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 0 {
			b.Fatalf("DIRSYNC_BENCH_N=%q: want a number of users", s)
		}
	}
	gen := filepath.Join(b.TempDir(), "gen.ldif")
	writeGenerated(b, gen, n)
	srv := peertest.Slapd(b, slapd.Options{LDIF: []string{sampleLDIF, gen}, LogLevel: "none"})
	want := sampleMatches + n + max(1, n/100)
	cfg := readerConfig(srv)
	ctx := context.Background()

	report := func(b *testing.B) {
		b.ReportMetric(float64(want)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	}
	for _, pageSize := range []int{1000, 5000} {
		b.Run("ldapfetch/page="+strconv.Itoa(pageSize), func(b *testing.B) {
			cfg := cfg
			cfg.PageSize = pageSize
			for b.Loop() {
				res, err := Fetch(ctx, cfg, defaultFilter, policyAttrs, func(sdk.Entry) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
				if res.Entries != want {
					b.Fatalf("%d entries, want %d", res.Entries, want)
				}
			}
			report(b)
		})
	}

	// Sync (RFC 4533 refreshOnly) over the same data: without a cookie
	// it reads everything, in one unpaged answer; with the cookie of a
	// directory that has not changed since, slapd answers at once.
	b.Run("ldapfetch-Sync/no-cookie", func(b *testing.B) {
		for b.Loop() {
			res, err := Sync(ctx, cfg, defaultFilter, policyAttrs, nil, func(sdk.Entry) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			if res.Entries != want {
				b.Fatalf("%d entries, want %d", res.Entries, want)
			}
		}
		report(b)
	})
	b.Run("ldapfetch-Sync/unchanged-cookie", func(b *testing.B) {
		cookie, _, err := Cookie(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			res, err := Sync(ctx, cfg, defaultFilter, policyAttrs, cookie, func(sdk.Entry) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			if res.Entries != 0 || len(res.Deleted) != 0 {
				b.Fatalf("unchanged: %v", res)
			}
		}
	})

	b.Run("go-ldap-SearchWithPaging/page=1000", func(b *testing.B) {
		for b.Loop() {
			c, err := ldap.DialURL(srv.URL)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Bind(readerDN, readerPassword); err != nil {
				b.Fatal(err)
			}
			res, err := c.SearchWithPaging(ldap.NewSearchRequest(srv.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
				defaultFilter, requestAttributes(policyAttrs), nil), 1000)
			c.Close()
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Entries) != want {
				b.Fatalf("%d entries, want %d", len(res.Entries), want)
			}
		}
		report(b)
	})

	// go-ldap's streaming search, one page at a time: the approach this
	// package started with, before it decoded messages itself.
	b.Run("go-ldap-SearchAsync/page=1000", func(b *testing.B) {
		for b.Loop() {
			c, err := ldap.DialURL(srv.URL)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Bind(readerDN, readerPassword); err != nil {
				b.Fatal(err)
			}
			paging := ldap.NewControlPaging(1000)
			req := ldap.NewSearchRequest(srv.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
				defaultFilter, requestAttributes(policyAttrs), []ldap.Control{paging})
			n := 0
			for {
				resp := c.SearchAsync(ctx, req, 1064)
				var cookie []byte
				for resp.Next() {
					if resp.Entry() != nil {
						n++
					} else if pc, ok := ldap.FindControl(resp.Controls(), ldap.ControlTypePaging).(*ldap.ControlPaging); ok {
						cookie = pc.Cookie
					}
				}
				if err := resp.Err(); err != nil {
					b.Fatal(err)
				}
				if len(cookie) == 0 {
					break
				}
				paging.SetCookie(cookie)
			}
			c.Close()
			if n != want {
				b.Fatalf("%d entries, want %d", n, want)
			}
		}
		report(b)
	})

	b.Run("ldapsearch/pr=1000", func(b *testing.B) {
		bin, err := exec.LookPath("ldapsearch")
		if err != nil {
			b.Fatalf("ldapsearch (Debian package ldap-utils) is needed for the comparison: %v", err)
		}
		pwFile := filepath.Join(b.TempDir(), "pw")
		if err := os.WriteFile(pwFile, []byte(readerPassword), 0o600); err != nil {
			b.Fatal(err)
		}
		args := append([]string{"-x", "-LLL", "-o", "ldif-wrap=no", "-H", srv.URL, "-D", readerDN, "-y", pwFile,
			"-b", srv.BaseDN, "-E", "pr=1000/noprompt", defaultFilter}, requestAttributes(policyAttrs)...)

		// Once outside the timing, to check that it reads the same entries.
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			b.Fatalf("ldapsearch: %v", err)
		}
		if got := bytes.Count(out, []byte("\ndn: ")) + 1; got != want {
			b.Fatalf("ldapsearch returned %d entries, want %d", got, want)
		}

		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer devNull.Close()
		for b.Loop() {
			var stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = devNull, &stderr
			if err := cmd.Run(); err != nil {
				b.Fatalf("ldapsearch: %v: %s", err, stderr.Bytes())
			}
		}
		report(b)
	})
}
