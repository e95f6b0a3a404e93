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
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/policytest"
)

// buildStandardWasm compiles plugins/standard to a wasm module in a temp dir.
func buildStandardWasm(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..")
	out := filepath.Join(t.TempDir(), "standard.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./plugins/standard/cmd/standard")
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

// TestNestedCrossesTheABI checks that a wasm policy's GroupIntent.Nested
// (ABI 1.1) reaches the host.
func TestNestedCrossesTheABI(t *testing.T) {
	ctx := context.Background()
	rt, err := wasmrt.Load(ctx, buildStandardWasm(t), wasmrt.Options{Name: "standard", Config: map[string]any{"nested_groups": true}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	if info := rt.Info(); info.ABIMajor != sdk.ABIMajor || info.ABIMinor != sdk.ABIMinor {
		t.Errorf("module ABI %d.%d, host %d.%d", info.ABIMajor, info.ABIMinor, sdk.ABIMajor, sdk.ABIMinor)
	}
	resp, err := rt.Map(ctx, sdk.MapRequest{Domain: sdk.Domain{Name: "example.com", Groups: []string{"Staff"}}, Entries: []sdk.Entry{{
		ID: "g", DN: "cn=Staff,dc=example,dc=com", Attributes: map[string][]string{
			"objectclass": {"group"}, "samaccounttype": {"268435456"}, "cn": {"Staff"}, "member": {"cn=Sales,dc=example,dc=com"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if g := resp.Intents[0].Group; g == nil || !g.Nested || g.Target != "Staff" {
		t.Errorf("group intent %+v, want Nested", g)
	}
}
