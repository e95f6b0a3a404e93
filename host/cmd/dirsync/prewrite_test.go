package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// TestWriteWhileReading: a first sync of a few thousand users writes their
// mailboxes while it reads (the run says so) and leaves the store byte for
// byte as a sync with write_while_reading = false does. So does a first
// sync whose policy vetoes one of the creates written ahead: the run undoes
// what it wrote ahead and writes as without.
func TestWriteWhileReading(t *testing.T) {
	t.Setenv("DIRSYNC_LOG", "debug")
	ldif := filepath.Join(t.TempDir(), "users.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := slapd.GenerateDirectory(f, slapd.GenOptions{Users: 3000}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	on := newEnvLDIF(t, ldif)
	// pair is a fresh store that writes while it reads, and one that
	// does not.
	pair := func() (*env, *env) {
		a, b := on.twin(), on.twin()
		cfg, err := os.ReadFile(b.config)
		if err != nil {
			t.Fatal(err)
		}
		b.write("dirsync.toml", strings.Replace(string(cfg), "[store]\n", "[store]\nwrite_while_reading = false\n", 1))
		return a, b
	}
	same := func(name string, ahead, after *env) {
		t.Helper()
		_, _, logA := ahead.run("sync", "--domain", "example.com")
		_, _, logB := after.run("sync", "--domain", "example.com")
		if !strings.Contains(logA, "wrote mailboxes while reading") || strings.Contains(logB, "while reading") {
			t.Fatalf("%s: only the first store should write while reading:\n%s\n---\n%s", name, lastLines(logA, 5), lastLines(logB, 5))
		}
		if a, b := ahead.state(), after.state(); a != b || strings.Count(a, `"address"`) < 3000 {
			t.Fatalf("%s: the stores differ (%d and %d bytes)", name, len(a), len(b))
		}
	}
	ahead, after := pair()
	same("a first sync", ahead, after)

	// A policy that vetoes one create of the thousands written ahead:
	// the run undoes all of them and writes as without.
	builtins["veto-one"] = func() sdk.Policy { return vetoOne{standard.New()} }
	t.Cleanup(func() { delete(builtins, "veto-one") })
	ahead, after = pair()
	for _, e := range []*env{ahead, after} {
		e.write("plugin.toml", builtinManifest("veto-one"))
		cfg, err := os.ReadFile(e.config)
		if err != nil {
			t.Fatal(err)
		}
		e.write("dirsync.toml", strings.Replace(string(cfg), `policy        = "standard"`, `policy        = "veto-one"`, 1))
	}
	same("a first sync that undoes what it wrote ahead", ahead, after)
	if _, ok := ahead.mailboxes()[vetoed]; ok {
		t.Errorf("the vetoed create of %s is in the store", vetoed)
	}
}

// vetoed is the address whose create vetoOne vetoes.
const vetoed = "user001500@example.com"

// vetoOne is the standard policy, asked about every change, that vetoes
// the create of vetoed.
type vetoOne struct{ sdk.Policy }

func (p vetoOne) Info() sdk.Info { return askAll(p.Policy) }

func (p vetoOne) Reconcile(r sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	var resp sdk.ReconcileResponse
	for i, c := range r.Changes {
		if c.Kind == sdk.ChangeCreate && c.After.Primary == vetoed {
			resp.Decisions = append(resp.Decisions, sdk.Decision{Index: i, Action: sdk.Veto, Reason: "a test veto"})
		}
	}
	return resp, nil
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
