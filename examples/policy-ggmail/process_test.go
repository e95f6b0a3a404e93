//go:build !wasip1

package ggmail_test

// The same main package (./cmd/ggmail) built with a plain go build is a plugin
// program for runtime = "process": this test builds it, loads it through
// the host's public API exactly as dirsync does, and checks that it decides
// exactly as the linked-in policy and as the WebAssembly module.

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk/policytest"
)

// buildProcess compiles ./cmd/ggmail natively into a temporary plugin program.
func buildProcess(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(t.TempDir(), "ggmail")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/ggmail")
	cmd.Dir = filepath.Dir(file)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the ggmail plugin program: %v\n%s", err, b)
	}
	return out
}

func TestProcess(t *testing.T) {
	path := buildProcess(t)
	wasmPath := buildWasm(t)
	for _, cfg := range []map[string]any{
		nil,
		{"group_prefix": "Mail_", "exclude_disabled": true, "delete_missing": false},
	} {
		name := "default config"
		if cfg != nil {
			name = "custom config"
		}
		t.Run(name, func(t *testing.T) {
			process, err := loadBuilt(t, path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			wasm, err := loadBuilt(t, wasmPath, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Run("abi", func(t *testing.T) { policytest.RunABI(t, process) })
			t.Run("process equals builtin", func(t *testing.T) { policytest.Compare(t, configured(t, cfg), process) })
			t.Run("process equals wasm", func(t *testing.T) { policytest.Compare(t, wasm, process) })
		})
	}
	t.Run("bad config refused at load", func(t *testing.T) {
		_, err := loadBuilt(t, path, map[string]any{"group_prefix": int64(7)})
		want := `policy "ggmail" (ggmail): configure: ggmail policy: config key "group_prefix" must be a string, got the number 7`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("load with a bad config: %v, want an error containing %q", err, want)
		}
	})
}
