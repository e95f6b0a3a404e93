package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
)

// TestKilledSyncLeavesTheStoreAsItWas protects S3 against the worst end a
// run can have: `dirsync sync` of a 50,000-user first sync is killed with
// SIGKILL at several points of its one write transaction, which it opens
// while it reads (it writes the mailboxes it will create as it reads
// them). Each time the store keeps no mailbox and no half-made run;
// the next sync marks the killed run abandoned and leaves the same store as
// a sync that was never interrupted.
func TestKilledSyncLeavesTheStoreAsItWas(t *testing.T) {
	const users = 50000
	dir := t.TempDir()
	ldif := filepath.Join(dir, "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := slapd.GenerateDirectory(f, slapd.GenOptions{Users: users, WithBase: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{ldif}, LogLevel: "none", StartTimeout: 5 * time.Minute})
	pw := filepath.Join(dir, "admin.pw")
	os.WriteFile(pw, []byte(srv.AdminPassword), 0o600)

	bin := dirsyncBinary(t)

	// One deployment folder per store: the one killed, and a clean one.
	deployment := func(name string) string {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "plugin.toml"), []byte("[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"), 0o644)
		cfg := filepath.Join(d, "dirsync.toml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`[store]
dsn = "dirsync.db"
[plugins]
manifest = "plugin.toml"
[serve]
lease_ttl = "1s"   # a killed run's lease frees the domain soon
[[domain]]
name = "example.com"
sync = true
policy = "standard"
  [domain.ldap]
  urls = [%q]
  bind_dn = %q
  password_file = %q
  base_dn = %q
  filter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457))"
`, srv.URL, srv.AdminDN, pw, srv.BaseDN)), 0o644)
		return cfg
	}
	dirsync := func(cfg string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--config", cfg}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	killed := deployment("killed")
	// The store exists with a hand-made group before the first sync.
	if out, err := dirsync(killed, "group", "add", "--domain", "example.com", "Group00001"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	emptyState, err := dirsync(killed, "mailbox", "list", "--domain", "example.com", "--json")
	if err != nil {
		t.Fatal(err)
	}

	// A clean sync first, into a store of its own: the state to reach, and
	// how long its write transaction takes.
	clean := deployment("clean")
	if out, err := dirsync(clean, "group", "add", "--domain", "example.com", "Group00001"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	out, err := dirsync(clean, "sync", "--domain", "example.com")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	m := regexp.MustCompile(`apply=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no apply time in the clean sync's log:\n%s", out)
	}
	apply, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}

	// Kill points: while reading (at the first progress line, and later,
	// when the run has written thousands of mailboxes while it reads: its
	// transaction is open from there), and at shares of the clean sync's
	// apply time after the run says it starts writing the rest.
	points := []struct {
		name  string
		after string  // the log line to wait for (and, with +, another)
		share float64 // then wait this share of the apply time
		sig   syscall.Signal
	}{
		{"while reading", "reading the directory", 0, syscall.SIGKILL},
		{"while reading, mailboxes written", "writing mailboxes while reading+entries=30000", 0, syscall.SIGKILL},
		{"as the apply starts", "writing to the store", 0, syscall.SIGKILL},
		{"early in the apply", "writing to the store", 0.2, syscall.SIGKILL},
		{"a third into the apply", "writing to the store", 0.3, syscall.SIGKILL},
		// An interrupt is no kill: the run rolls back what it wrote while
		// reading, says so and is recorded as cancelled.
		{"interrupted while reading, mailboxes written", "writing mailboxes while reading+entries=30000", 0, syscall.SIGINT},
	}
	for _, p := range points {
		cmd := exec.Command(bin, "--config", killed, "sync", "--domain", "example.com", "--wait", "10s")
		cmd.Env = append(os.Environ(), "DIRSYNC_LOG=debug") // says when the run starts writing
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		deadline := time.After(2 * time.Minute)
		seen := func() bool {
			for _, s := range strings.Split(p.after, "+") {
				if !strings.Contains(stderr.String(), s) {
					return false
				}
			}
			return true
		}
		for !seen() {
			select {
			case err := <-done:
				t.Fatalf("%s: the sync ended before the kill point (%v):\n%s", p.name, err, stderr.String())
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("%s: the kill point never came:\n%s", p.name, stderr.String())
			case <-time.After(time.Millisecond):
			}
		}
		time.Sleep(time.Duration(p.share * float64(apply)))
		cmd.Process.Signal(p.sig)
		if err := <-done; err == nil || strings.Contains(stderr.String(), "sync done") {
			t.Fatalf("%s: the sync finished before it was killed:\n%s", p.name, stderr.String())
		}
		got, err := dirsync(killed, "mailbox", "list", "--domain", "example.com", "--json")
		if err != nil {
			t.Fatalf("%s: listing after the kill: %v\n%s", p.name, err, got)
		}
		if got != emptyState {
			t.Fatalf("%s: the killed sync left %d bytes of mailbox list, want the store as it was", p.name, len(got))
		}
	}
	if out, err := dirsync(killed, "sync", "--domain", "example.com", "--wait", "10s"); err != nil {
		t.Fatalf("the sync after the kills: %v\n%s", err, out)
	}
	runs, _ := dirsync(killed, "runs", "--domain", "example.com", "--json")
	if n := strings.Count(runs, `"outcome": "abandoned"`); n != len(points)-1 {
		t.Errorf("%d killed runs are marked abandoned, want %d", n, len(points)-1)
	}
	if n := strings.Count(runs, `"outcome": "cancelled"`); n != 1 {
		t.Errorf("%d interrupted runs are recorded as cancelled, want 1", n)
	}

	a, _ := dirsync(killed, "mailbox", "list", "--domain", "example.com", "--json")
	b, _ := dirsync(clean, "mailbox", "list", "--domain", "example.com", "--json")
	if a != b || strings.Count(a, `"address"`) != users {
		t.Errorf("the store synced after the kills differs from a clean sync (%d vs %d bytes, %d mailboxes)", len(a), len(b), strings.Count(a, `"address"`))
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// TestMain removes the dirsync program that dirsyncBinary built (39 MB in
// a folder of its own that no test's TempDir covers).
func TestMain(m *testing.M) {
	// Every delta and live run of the tests, in this process or a dirsync
	// it starts, checks its decision on what the changes reach against
	// one on the whole domain.
	os.Setenv("DIRSYNC_CHECK_REACH", "1")
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// dirsyncBinary builds the dirsync program once for the tests that run it
// as a process of its own.
func dirsyncBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dirsync-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "dirsync")
		build := exec.Command("go", "build", "-o", binPath, "./host/cmd/dirsync")
		build.Dir = repoRoot(t)
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building dirsync: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
