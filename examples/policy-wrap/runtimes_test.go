//go:build !wasip1

package wrap_test

// The policy imports only package sdk, the sdk's filter package and the
// standard policy. This test also imports the host's public packages, as a
// policy author's test can: it builds ./wasm both ways, loads each build the
// way dirsync does, and runs the wrapper's own cases and the conformance
// kit against it.

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/policytest"
)

// build compiles ./wasm into dir: as a WebAssembly reactor module when wasm
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
	cmd := exec.Command("go", append(args, "./wasm")...)
	cmd.Dir = filepath.Dir(file)
	if wasm {
		cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, b)
	}
	return out
}

// load loads a build as a policy of the given runtime with the given
// [policy.config] table, through the host's public API.
func load(t *testing.T, rt, path string, cfg map[string]any) (sdk.Policy, error) {
	t.Helper()
	st, err := sqlite.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir := t.TempDir()
	h, err := host.New(host.Options{Store: st, Config: &config.Config{
		Path:    filepath.Join(dir, "dirsync.toml"),
		Plugins: config.Plugins{CacheDir: filepath.Join(dir, "cache")},
		Manifest: &config.Manifest{Path: filepath.Join(dir, "plugin.toml"), Policies: []config.Policy{{
			Name: "wrap", Runtime: rt, Path: path, MemoryLimitMB: 256,
			Timeout: config.Duration{Duration: time.Minute}, Config: cfg,
		}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	p, err := h.Policy(context.Background(), "wrap")
	if err != nil {
		return nil, err
	}
	return asPolicy{p}, nil
}

// hostPolicy is the method set of a policy the host has loaded.
type hostPolicy interface {
	Info() sdk.Info
	Filter(context.Context, sdk.FilterRequest) (sdk.FilterResponse, error)
	Map(context.Context, sdk.MapRequest) (sdk.MapResponse, error)
	Reconcile(context.Context, sdk.ReconcileRequest) (sdk.ReconcileResponse, error)
}

// asPolicy adapts a loaded policy to sdk.Policy for the conformance kit.
// Configure does nothing: the host configured the policy when it loaded it.
type asPolicy struct{ p hostPolicy }

func (a asPolicy) Info() sdk.Info               { return a.p.Info() }
func (asPolicy) Configure(map[string]any) error { return nil }
func (a asPolicy) Filter(r sdk.FilterRequest) (sdk.FilterResponse, error) {
	return a.p.Filter(context.Background(), r)
}
func (a asPolicy) Map(r sdk.MapRequest) (sdk.MapResponse, error) {
	return a.p.Map(context.Background(), r)
}
func (a asPolicy) Reconcile(r sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	return a.p.Reconcile(context.Background(), r)
}

// TestRuntimes runs the wrapper's cases against the wasm module and the
// plugin program, and checks that both decide exactly as the linked-in
// policy on every request of the conformance kit.
func TestRuntimes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the policy twice")
	}
	for _, rt := range []string{"wasm", "process"} {
		t.Run(rt, func(t *testing.T) {
			path := build(t, rt == "wasm")
			p, err := load(t, rt, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if info := p.Info(); info.Name != "wrap" {
				t.Errorf("Info().Name = %q", info.Name)
			}
			t.Run("own cases", func(t *testing.T) { policytest.RunCases(t, p, ownCases()) })
			t.Run("same as builtin", func(t *testing.T) { policytest.Compare(t, configured(t, nil), p) })
			_, err = load(t, rt, path, map[string]any{"skip_filter": "(displayName=Test*"})
			want := `configure: wrap policy: config key "skip_filter" is not a valid filter: invalid filter at position 18: unbalanced parentheses`
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("load with a bad skip_filter: %v, want an error containing %q", err, want)
			}
		})
	}
}
