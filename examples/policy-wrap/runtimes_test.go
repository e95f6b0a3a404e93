//go:build !wasip1

package wrap_test

// The policy imports only package sdk, the sdk's filter package and the
// standard policy. This test builds ./cmd/wrap both ways, loads each build
// through the host's runtimes with policytest.Load, the way dirsync loads
// it, and runs the wrapper's own cases and the conformance kit against it.

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk/policytest"
)

// build compiles ./cmd/wrap into dir: as a WebAssembly reactor module when wasm
// is set, else as a native plugin program.
func build(t *testing.T, wasm bool) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(t.TempDir(), "wrap")
	args := []string{"build", "-o", out}
	if wasm {
		out += ".wasm"
		args = []string{"build", "-buildmode=c-shared", "-o", out}
	}
	cmd := exec.Command("go", append(args, "./cmd/wrap")...)
	cmd.Dir = filepath.Dir(file)
	if wasm {
		cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, b)
	}
	return out
}

// TestRuntimes runs the wrapper's cases against the wasm module and the
// plugin program, and checks that both decide exactly as the linked-in
// policy on every request of the conformance kit.
func TestRuntimes(t *testing.T) {
	for _, rt := range []string{"wasm", "process"} {
		t.Run(rt, func(t *testing.T) {
			p := policytest.Load(t, build(t, rt == "wasm"))
			if info := p.Info(); info.Name != "wrap" {
				t.Errorf("Info().Name = %q", info.Name)
			}
			t.Run("own cases", func(t *testing.T) { policytest.RunCases(t, p, ownCases()) })
			t.Run("same as builtin", func(t *testing.T) { policytest.Compare(t, configured(t, nil), p) })
			err := p.Configure(map[string]any{"skip_filter": "(displayName=Test*"})
			want := `configure: wrap policy: config key "skip_filter" is not a valid filter: invalid filter at position 18: unbalanced parentheses`
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("load with a bad skip_filter: %v, want an error containing %q", err, want)
			}
		})
	}
}
