//go:build !wasip1

package ggmail_test

// The policy itself imports only package sdk. This test also imports the
// host's public packages, as a policy author's test can: it builds the
// WebAssembly module, loads it the way dirsync does, and checks that it
// decides exactly as the linked-in policy.

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	ggmail "github.com/dirsync/dirsync/examples/policy-ggmail"
	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/policytest"
)

// buildWasm compiles ./wasm into a temporary ggmail.wasm.
func buildWasm(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(t.TempDir(), "ggmail.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./wasm")
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ggmail.wasm: %v\n%s", err, b)
	}
	return out
}

// loadWasm loads the module as a runtime = "wasm" policy with the given
// [policy.config] table, through the host's public API.
func loadWasm(t *testing.T, path string, cfg map[string]any) (sdk.Policy, error) {
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
			Name: "ggmail", Runtime: "wasm", Path: path, MemoryLimitMB: 256,
			Timeout: config.Duration{Duration: time.Minute}, Config: cfg,
		}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	rt, err := h.Policy(context.Background(), "ggmail")
	if err != nil {
		return nil, err
	}
	return asPolicy{rt}, nil
}

// hostPolicy is the method set of a policy the host has loaded.
type hostPolicy interface {
	Info() sdk.Info
	Filter(context.Context, sdk.FilterRequest) (sdk.FilterResponse, error)
	Map(context.Context, sdk.MapRequest) (sdk.MapResponse, error)
	Reconcile(context.Context, sdk.ReconcileRequest) (sdk.ReconcileResponse, error)
}

// asPolicy adapts a loaded policy to sdk.Policy for the conformance kit.
// Configure does nothing: the host configured the module when it loaded it.
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

func TestWasm(t *testing.T) {
	path := buildWasm(t)
	for _, cfg := range []map[string]any{
		nil,
		{"group_prefix": "Mail_", "exclude_disabled": true, "delete_missing": false},
	} {
		name := "default config"
		if cfg != nil {
			name = "custom config"
		}
		t.Run(name, func(t *testing.T) {
			wasm, err := loadWasm(t, path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Run("abi", func(t *testing.T) { policytest.RunABI(t, wasm) })
			t.Run("wasm equals builtin", func(t *testing.T) { policytest.Compare(t, configured(t, cfg), wasm) })
		})
	}
	t.Run("bad config refused at load", func(t *testing.T) {
		_, err := loadWasm(t, path, map[string]any{"group_prefix": int64(7)})
		want := `config key "group_prefix" must be a string, got the number 7`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("load with a bad config: %v, want an error containing %q", err, want)
		}
	})
}

// TestDefaultSettingsMatchNew guards the doc of DefaultSettings.
func TestDefaultSettingsMatchNew(t *testing.T) {
	if got := ggmail.New().Settings(); got != ggmail.DefaultSettings() {
		t.Errorf("New().Settings() = %+v, want %+v", got, ggmail.DefaultSettings())
	}
}
