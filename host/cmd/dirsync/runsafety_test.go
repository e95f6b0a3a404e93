package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

// runRecord is what these tests read of `dirsync runs --json`.
type runRecord struct {
	ID              int64             `json:"id"`
	Outcome         string            `json:"outcome"`
	Stage           string            `json:"stage"`
	Error           string            `json:"error"`
	Holder          string            `json:"holder"`
	Settings        string            `json:"settings"`
	Counts          store.Counts      `json:"counts"`
	Intended        *store.Counts     `json:"intended"`
	References      []string          `json:"references"`
	SettingsVersion int64             `json:"settings_version"`
	Ended           time.Time         `json:"ended"`
	Changes         []store.RunChange `json:"changes"`
}

func (e *env) runs() []runRecord {
	e.t.Helper()
	var runs []runRecord
	if err := jsonOut(e.ok("runs", "--domain", "example.com", "--json"), &runs); err != nil {
		e.t.Fatal(err)
	}
	return runs
}

// dbPath is the test config's SQLite store.
func (e *env) dbPath() string { return filepath.Join(e.dir, "var", "dirsync.db") }

// TestEmptyReadNeverDeletes protects S2's absolute rule: a filter that
// matches nothing stops the run whether or not the operator confirmed
// deletions, and the stopped run is recorded with what it would have done
// apart from what it did.
func TestEmptyReadNeverDeletes(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("sync", "--domain", D)
	state := e.state()
	e.writeConfig("(cn=no-entry-has-this-name)", "")
	for _, args := range [][]string{
		{"sync", "--domain", D},
		{"sync", "--domain", D, "--confirm-deletes"},
	} {
		errs := e.fails(1, "an empty read never deletes", args...)
		if strings.Contains(errs, "confirm this one run") {
			t.Errorf("an empty read offers a confirmation: %s", errs)
		}
		want(t, "state after "+strings.Join(args, " "), e.state(), state)
	}
	runs := e.runs()
	r := runs[0]
	if r.Outcome != "stopped" || r.Stage != "guard" || r.Counts.Deleted != 0 || r.Intended == nil || r.Intended.Deleted != 9 {
		t.Errorf("the stopped run's record = %+v (intended %+v), want stopped at guard, deleted 0, intended deleted 9", r, r.Intended)
	}
	if out := e.ok("runs", "--domain", D); !strings.Contains(out, "nothing applied; it would have created 0, updated 0, deleted 9") {
		t.Errorf("runs does not tell the stopped run's deletions apart:\n%s", out)
	}
}

// TestReferralBaseFailsTheRun protects S1: a base DN the server answers
// with a referral is a read that did not happen, confirmed or not.
func TestReferralBaseFailsTheRun(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("sync", "--domain", D)
	state := e.state()
	if err := e.srv.Add("ou=staff,dc=example,dc=com", map[string][]string{
		"objectClass": {"referral", "extensibleObject"},
		"ou":          {"staff"},
		"ref":         {"ldap://elsewhere.invalid/ou=staff,dc=example,dc=com"},
	}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(e.config)
	e.write("dirsync.toml", strings.Replace(string(b), `base_dn       = "dc=example,dc=com"`, `base_dn       = "ou=staff,dc=example,dc=com"`, 1))
	for _, args := range [][]string{{"sync", "--domain", D}, {"sync", "--domain", D, "--confirm-deletes"}} {
		errs := e.fails(1, "referral", args...)
		if !strings.Contains(errs, e.srv.URL) || !strings.Contains(errs, "ldap://elsewhere.invalid/") {
			t.Errorf("the error does not name the server and the referral: %s", errs)
		}
		want(t, "state after a referred base", e.state(), state)
	}
	if r := e.runs()[0]; r.Outcome != "failed" || r.Stage != "fetch" {
		t.Errorf("the referred run is recorded as %s at %s, want failed at fetch", r.Outcome, r.Stage)
	}
}

// TestSafetyZeroMeansZero protects the strictest settings: a limit written
// as 0 stops the first delete instead of falling back to the default.
func TestSafetyZeroMeansZero(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("sync", "--domain", D)
	state := e.state()
	if err := e.srv.Delete("cn=Carol Clark,ou=People,dc=example,dc=com"); err != nil {
		t.Fatal(err)
	}
	base, _ := os.ReadFile(e.config)
	for _, tc := range []struct{ safety, stop string }{
		{"max_deletes = 0", "more than max_deletes = 0"},
		{"max_delete_percent = 0\n  percent_floor = 0", "more than max_delete_percent = 0% while deleting more than 0"},
	} {
		e.write("dirsync.toml", string(base)+"  [domain.safety]\n  "+tc.safety+"\n")
		e.fails(1, tc.stop, "sync", "--domain", D)
		want(t, "state after "+tc.safety, e.state(), state)
	}
	e.write("dirsync.toml", string(base)+"  [domain.safety]\n  max_deletes = -1\n")
	e.fails(2, `key "domain.safety.max_deletes"`, "sync", "--domain", D)
	e.write("dirsync.toml", string(base)+"  [domain.safety]\n  max_deletes = 0\n")
	if out := e.ok("sync", "--domain", D, "--confirm-deletes"); !strings.Contains(out, "deleted 1") {
		t.Errorf("a confirmed run under max_deletes = 0: %s", out)
	}
}

// TestEveryAttemptIsRecorded protects S5: a sync that fails at any stage,
// before the directory is read too, leaves a row with its stage, error and
// settings; a config error exits 2, any other failure 1.
func TestEveryAttemptIsRecorded(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("sync", "--domain", D)
	good, _ := os.ReadFile(e.config)
	state := e.state()
	tests := []struct {
		name  string
		setup func()
		code  int
		stage string
		want  string
	}{
		{"sync switched off", func() {
			e.write("dirsync.toml", strings.Replace(string(good), "sync          = true", "sync          = false", 1))
		}, 1, "switch", "switched off"},
		{"missing password file", func() { os.Remove(filepath.Join(e.dir, "reader.pw")) }, 2, "config", "password_file"},
		{"unset password variable", func() {
			e.write("dirsync.toml", strings.Replace(string(good), `password_file = "reader.pw"`, `password_env = "DIRSYNC_TEST_UNSET_PW"`, 1))
		}, 2, "config", "DIRSYNC_TEST_UNSET_PW is not set"},
		{"policy fails to load", func() {
			e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = \"missing.wasm\"\n")
		}, 2, "config", "missing.wasm"},
		{"plugin refuses its config", func() {
			e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n[policy.config]\nnested = 1\n")
		}, 2, "config", "nested"},
		{"invalid filter", func() { e.writeConfig("(|(cn=a)", "") }, 1, "filter", "position"},
		{"unreachable directory", func() { e.writeConfig("", `"ldap://127.0.0.1:1"`) }, 1, "fetch", "ldap://127.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			before := len(e.runs())
			tc.setup()
			e.fails(tc.code, tc.want, "sync", "--domain", D)
			// Restore the good setup, then read the record.
			e.write("dirsync.toml", string(good))
			e.write("reader.pw", readerPassword+"\n")
			e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
			runs := e.runs()
			if len(runs) != before+1 {
				t.Fatalf("%d runs recorded, want %d", len(runs), before+1)
			}
			r := runs[0]
			if r.Outcome != "failed" || r.Stage != tc.stage || !strings.Contains(r.Error, tc.want) || r.Ended.IsZero() {
				t.Errorf("record = outcome %q stage %q error %q ended %v, want failed at %q naming %q", r.Outcome, r.Stage, r.Error, r.Ended, tc.stage, tc.want)
			}
			if !strings.Contains(r.Settings, `"base_dn":"dc=example,dc=com"`) {
				t.Errorf("the record does not keep the settings: %q", r.Settings)
			}
			want(t, "state", e.state(), state)
		})
	}
}

// TestBusyDomain protects the one-run-per-domain rule across processes: a
// sync of a domain whose lease another holder has fails at once naming the
// holder, waits with --wait, and takes over a crashed holder's lease once
// it expires, marking the crashed run abandoned.
func TestBusyDomain(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("group", "add", "--domain", D, "Sales") // makes the store
	st, err := sqlite.Open(e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	const other = "gateway-7 pid 4242 #1"
	if _, err := st.AcquireLease(ctx, D, other, time.Minute); err != nil {
		t.Fatal(err)
	}
	errs := e.fails(1, "is being synced by "+other, "sync", "--domain", D)
	if !strings.Contains(errs, "since") {
		t.Errorf("the busy error does not say since when: %s", errs)
	}
	e.fails(1, "waited 300ms", "sync", "--domain", D, "--wait", "300ms")
	if n := len(e.mailboxes()); n != 0 {
		t.Errorf("%d mailboxes after busy runs, want 0", n)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		st.ReleaseLease(ctx, D, other)
	}()
	e.ok("sync", "--domain", D, "--wait", "20s")

	// A holder that died mid-run: its lease expires, its row is abandoned.
	const dead = "gateway-8 pid 99 #3"
	if _, err := st.AcquireLease(ctx, D, dead, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	crashed := &store.Run{Domain: D, Started: time.Now(), Outcome: store.OutcomeRunning, Holder: dead}
	if err := st.StartRun(ctx, crashed); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	e.ok("sync", "--domain", D)
	for _, r := range e.runs() {
		if r.ID == crashed.ID && r.Outcome != store.OutcomeAbandoned {
			t.Errorf("the crashed run is %q, want abandoned", r.Outcome)
		}
	}
}

// TestConcurrentRunsOfOneDomain protects an embedding program that calls
// Host.Run for one domain from several goroutines: without Wait each run
// either syncs or fails with ErrDomainBusy (never a store error), and with
// Wait all of them sync, one after another, to the same store as one run.
func TestConcurrentRunsOfOneDomain(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	cfg, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	for _, wait := range []time.Duration{0, 30 * time.Second} {
		t.Run(fmt.Sprintf("wait %s", wait), func(t *testing.T) {
			os.RemoveAll(filepath.Join(e.dir, "var"))
			st, err := sqlite.Open(e.dbPath())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			h, err := host.New(host.Options{Config: cfg, Store: st, Builtins: builtins})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			var wg sync.WaitGroup
			errs := make([]error, 4)
			reps := make([]*host.Report, 4)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					reps[i], errs[i] = h.Run(context.Background(), D, host.RunOptions{Wait: wait})
				}()
			}
			wg.Wait()
			created, ok := 0, 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
					created += reps[i].Counts.Created
				case wait == 0 && errors.Is(err, host.ErrDomainBusy):
				default:
					t.Errorf("run %d: %v", i, err)
				}
			}
			if ok == 0 || created != 9 || (wait > 0 && ok != 4) {
				t.Errorf("%d runs synced creating %d mailboxes, want ≥1 (all with Wait) creating 9", ok, created)
			}
		})
	}
}

// TestReadOnlyCommandsNeverWrite protects the store from commands that
// only read: they neither create a missing store nor change one.
func TestReadOnlyCommandsNeverWrite(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	readers := [][]string{
		{"mailbox", "list", "--domain", D},
		{"group", "list", "--domain", D, "--json"},
		{"runs", "--domain", D},
		{"report-recipients", "--domain", D},
		{"resolve", "alice@example.com"},
		{"filter", "check", "(cn=a)"},
	}
	for _, args := range readers {
		e.run(args...)
		if _, err := os.Stat(filepath.Join(e.dir, "var")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("dirsync %s made the store's folder (%v)", strings.Join(args, " "), err)
		}
	}
	e.fails(1, "no store", "mailbox", "list", "--domain", D)

	e.ok("sync", "--domain", D)
	sum := func() string {
		h := sha256.New()
		for _, f := range []string{e.dbPath(), e.dbPath() + "-wal"} {
			b, _ := os.ReadFile(f)
			h.Write(b)
		}
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	before := sum()
	for _, args := range readers {
		e.run(args...)
		want(t, "store after dirsync "+strings.Join(args, " "), sum(), before)
	}
}

// TestTwoProcessesOneDomain protects the one-run-per-domain rule between
// programs: two dirsync processes started together on one domain both
// finish (the second waits with --wait), one creates the mailboxes, the
// other finds nothing to do, and the store is that of one sync.
func TestTwoProcessesOneDomain(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	bin := dirsyncBinary(t)
	e.ok("group", "add", "--domain", D, "Sales")
	type result struct {
		out string
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			out, err := exec.Command(bin, "--config", e.config, "sync", "--domain", D, "--wait", "1m").CombinedOutput()
			results <- result{string(out), err}
		}()
	}
	created := 0
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatalf("a sync failed: %v\n%s", r.err, r.out)
		}
		switch {
		case strings.Contains(r.out, "created 9,"):
			created++
		case !strings.Contains(r.out, "created 0,") && !strings.Contains(r.out, "nothing changed in the directory or the store"):
			t.Errorf("unexpected sync output:\n%s", r.out)
		}
	}
	if created != 1 {
		t.Errorf("%d syncs created the mailboxes, want exactly 1", created)
	}
	if n := len(e.mailboxes()); n != 9 {
		t.Errorf("%d mailboxes, want 9", n)
	}
}
