//go:build !wasip1

package ggmail_test

// The policy itself imports only package sdk. This test builds the
// WebAssembly module, loads it the way dirsync does (policytest.Load), and
// checks that it decides exactly as the linked-in policy.

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	ggmail "github.com/dirsync/dirsync/examples/policy-ggmail"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/policytest"
)

// buildWasm compiles ./cmd/ggmail into a temporary ggmail.wasm.
func buildWasm(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(t.TempDir(), "ggmail.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./cmd/ggmail")
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ggmail.wasm: %v\n%s", err, b)
	}
	return out
}

// loadBuilt loads a build (the module or the plugin program) through the
// host's runtimes with policytest.Load, configured with cfg.
func loadBuilt(t *testing.T, path string, cfg map[string]any) (sdk.Policy, error) {
	t.Helper()
	p := policytest.Load(t, path)
	if cfg != nil {
		if err := p.Configure(cfg); err != nil {
			return nil, err
		}
	}
	return p, nil
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
			wasm, err := loadBuilt(t, path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Run("abi", func(t *testing.T) { policytest.RunABI(t, wasm) })
			t.Run("wasm equals builtin", func(t *testing.T) { policytest.Compare(t, configured(t, cfg), wasm) })
		})
	}
	t.Run("bad config refused at load", func(t *testing.T) {
		_, err := loadBuilt(t, path, map[string]any{"group_prefix": int64(7)})
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
