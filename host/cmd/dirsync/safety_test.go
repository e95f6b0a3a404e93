package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
)

// newTLSEnv is newEnv with a slapd that also serves StartTLS and ldaps://
// with a certificate from a CA made for the test.
func newTLSEnv(t *testing.T) *env {
	t.Helper()
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{filepath.Join(repoRoot(t), "examples", "directory", "sample.ldif")}, LogLevel: "none", TLS: true})
	e := &env{t: t, srv: srv, dir: t.TempDir()}
	e.write("reader.pw", readerPassword+"\n")
	e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
	e.writeConfig("", "")
	return e
}

// setLDAP rewrites keys of the [domain.ldap] table of the current config.
func (e *env) setLDAP(kv ...string) {
	e.t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(kv); i += 2 {
		s += fmt.Sprintf("  %s = %s\n", kv[i], kv[i+1])
	}
	e.write("dirsync.toml", s)
}

// TestDeletionGuard checks S2 with the operator's settings: a run that would
// delete too much stops, says how many and how to confirm, and a confirmed
// run goes through once.
func TestDeletionGuard(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("sync", "--domain", D) // 9 LDAP mailboxes
	state := e.state()

	// Two deletions of 9 (22 %) with the percentage counting from 1 deletion.
	for _, dn := range []string{"cn=Carol Clark,ou=People,dc=example,dc=com", "cn=Dave Dunn,ou=People,dc=example,dc=com"} {
		if err := e.srv.Delete(dn); err != nil {
			t.Fatal(err)
		}
	}
	base, _ := os.ReadFile(e.config)
	for _, tc := range []struct {
		name   string
		safety string
		stop   string
	}{
		{"max_deletes", "max_deletes = 1", "would delete 2 of 9 LDAP mailboxes (more than max_deletes = 1)"},
		{"max_delete_percent", "max_delete_percent = 20\n  percent_floor = 1", "more than max_delete_percent = 20% while deleting more than 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.write("dirsync.toml", string(base)+"  [domain.safety]\n  "+tc.safety+"\n")
			if out := e.ok("preview", "--domain", D); !strings.Contains(out, "a sync would stop") || !strings.Contains(out, tc.stop) {
				t.Errorf("the preview does not say that a sync would stop:\n%s", out)
			}
			errs := e.fails(1, tc.stop, "sync", "--domain", D)
			if !strings.Contains(errs, "--confirm-deletes") {
				t.Errorf("the stop does not say how to confirm: %s", errs)
			}
			want(t, "state after a stopped run", e.state(), state)
		})
	}
	e.t = t
	// Defaults (500, 10 %, floor 10) let two deletions through; so does a
	// confirmed run under a tight limit — once.
	e.write("dirsync.toml", string(base)+"  [domain.safety]\n  max_deletes = 1\n")
	out := e.ok("sync", "--domain", D, "--confirm-deletes")
	if !strings.Contains(out, "deleted 2") {
		t.Errorf("confirmed run: %s", out)
	}
	if err := e.srv.Delete("cn=Erin Evans,ou=People,dc=example,dc=com"); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Delete("cn=Frank Fischer,ou=People,dc=example,dc=com"); err != nil {
		t.Fatal(err)
	}
	e.fails(1, "max_deletes = 1", "sync", "--domain", D) // the confirmation was for one run only
	var runs []struct {
		Outcome string `json:"outcome"`
		Error   string `json:"error"`
	}
	if err := jsonOut(e.ok("runs", "--domain", D, "--json"), &runs); err != nil {
		t.Fatal(err)
	}
	if len(runs) == 0 || runs[0].Outcome != "stopped" || !strings.Contains(runs[0].Error, "would delete 2") {
		t.Errorf("the stopped run is not recorded as stopped: %+v", runs)
	}
}

// TestFailover checks that URLs are tried in order and the run says which
// server it used.
func TestFailover(t *testing.T) {
	e := newEnv(t)
	e.writeConfig("", fmt.Sprintf("%q, %q", "ldap://127.0.0.1:1", e.srv.URL))
	e.setLDAP("connect_timeout", `"2s"`)
	out := e.ok("sync", "--domain", "example.com")
	if !strings.Contains(out, "failed over to "+e.srv.URL+" after ldap://127.0.0.1:1 did not answer") {
		t.Errorf("the run does not say it failed over:\n%s", out)
	}
}

// TestTLS reads the directory over ldaps:// and StartTLS with the test CA,
// and refuses a server it cannot verify unless told to skip verification.
func TestTLS(t *testing.T) {
	e := newTLSEnv(t)
	other := newTLSEnv(t) // a second server with its own CA: the wrong CA for e
	for _, tc := range []struct {
		name string
		url  string
		kv   []string
		fail string // "" = the sync works
	}{
		{"ldaps with the CA", e.srv.LDAPSURL, []string{"ca_file", fmt.Sprintf("%q", e.srv.CAFile)}, ""},
		{"StartTLS with the CA", e.srv.URL, []string{"start_tls", "true", "ca_file", fmt.Sprintf("%q", e.srv.CAFile)}, ""},
		{"ldaps without the CA", e.srv.LDAPSURL, nil, "certificate"},
		{"ldaps with a wrong CA", e.srv.LDAPSURL, []string{"ca_file", fmt.Sprintf("%q", other.srv.CAFile)}, "certificate"},
		{"StartTLS with a wrong CA", e.srv.URL, []string{"start_tls", "true", "ca_file", fmt.Sprintf("%q", other.srv.CAFile)}, "certificate"},
		{"wrong host name", strings.Replace(e.srv.LDAPSURL, "127.0.0.1", "127.0.0.2", 1), []string{"ca_file", fmt.Sprintf("%q", e.srv.CAFile)}, "127.0.0.2"},
		{"insecure_skip_verify", e.srv.LDAPSURL, []string{"insecure_skip_verify", "true"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.writeConfig("", fmt.Sprintf("%q", tc.url))
			e.setLDAP(tc.kv...)
			if tc.fail == "" {
				e.ok("sync", "--domain", "example.com", "--dry-run")
				return
			}
			e.fails(1, tc.fail, "sync", "--domain", "example.com", "--dry-run")
		})
	}
}

// TestSecretsNeverShown greps everything dirsync prints or stores for the
// bind password: logs at debug level, errors, run records, --json output and
// the store file itself.
func TestSecretsNeverShown(t *testing.T) {
	t.Setenv("DIRSYNC_LOG", "debug")
	e := newEnv(t)
	const D = "example.com"
	var seen strings.Builder
	record := func(code int, out, errs string) { seen.WriteString(out + errs) }
	record(e.run("sync", "--domain", D, "--json"))
	record(e.run("sync", "--domain", D))
	record(e.run("preview", "--domain", D, "--json"))
	// Failures: a wrong password, an unreachable server, a password from
	// the environment.
	e.write("reader.pw", "Wr0ng-"+readerPassword)
	record(e.run("sync", "--domain", D))
	e.write("reader.pw", readerPassword)
	e.writeConfig("", `"ldap://127.0.0.1:1"`)
	record(e.run("sync", "--domain", D, "--json"))
	e.writeConfig("", "")
	b, _ := os.ReadFile(e.config)
	e.write("dirsync.toml", strings.Replace(string(b), `password_file = "reader.pw"`, `password_env = "DIRSYNC_TEST_PW"`, 1))
	t.Setenv("DIRSYNC_TEST_PW", readerPassword)
	record(e.run("sync", "--domain", D))
	record(e.run("runs", "--domain", D, "--json"))
	record(e.run("runs", "--domain", D))
	record(e.run("mailbox", "list", "--domain", D, "--json"))

	all := seen.String()
	if !strings.Contains(all, "Invalid Credentials") || !strings.Contains(all, "ldap://127.0.0.1:1") {
		t.Fatalf("the failures did not happen as planned:\n%s", all)
	}
	if strings.Contains(all, readerPassword) {
		t.Errorf("the bind password appears in dirsync's output:\n%s", all)
	}
	filepath.WalkDir(filepath.Join(e.dir, "var"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, _ := os.ReadFile(p); strings.Contains(string(b), readerPassword) {
			t.Errorf("the bind password is stored in %s", p)
		}
		return nil
	})
}
