package host_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/wasmrt"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk/policytest"
)

// buildStandardWasm compiles plugins/standard to a wasm module in a temp dir.
func buildStandardWasm(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..")
	out := filepath.Join(t.TempDir(), "standard.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./plugins/standard/wasm")
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building standard.wasm: %v\n%s", err, b)
	}
	return out
}

// TestStandardConformance runs the conformance kit against the standard
// policy in every runtime, and requires the wasm module to decide exactly
// as the linked-in policy does.
func TestStandardConformance(t *testing.T) {
	ctx := context.Background()
	path := buildStandardWasm(t)
	wasm, err := wasmrt.Load(ctx, path, wasmrt.Options{Name: "standard", CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer wasm.Close(ctx)
	builtin, err := policy.Builtin(standard.New(), nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("builtin", func(t *testing.T) { policytest.Run(t, policy.AsSDK(builtin)) })
	t.Run("wasm", func(t *testing.T) { policytest.Run(t, policy.AsSDK(wasm)) })
	t.Run("wasm equals builtin", func(t *testing.T) { policytest.Compare(t, standard.New(), policy.AsSDK(wasm)) })
}
