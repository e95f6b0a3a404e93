package policytest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/sdk"
)

// Load loads a built policy through the host's real runtimes, as
// plugin.toml would have the host load it: a WebAssembly module (a path
// ending in .wasm; runtime "wasm", sandboxed, with the default memory
// limit and per-call deadline) or a plugin program (any other path;
// runtime "process", over gRPC). It returns it as an sdk.Policy, so that
// RunCases and Compare test the module itself; Configure loads it again
// with the given [policy.config]. The policy is closed when the test ends;
// a module that does not load fails the test.
//
//	p := policytest.Load(t, "mypolicy.wasm")
//	policytest.RunCases(t, p, myCases)
//
// This file alone in the sdk links the host: a test binary that calls
// Load holds the runtimes, a policy's own build never does.
func Load(t testing.TB, path string) sdk.Policy {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("policytest.Load: %v (build the module first)", err)
	}
	runtime := "process"
	if strings.HasSuffix(abs, ".wasm") {
		runtime = "wasm"
	}
	l := &loaded{spec: config.Policy{Name: strings.TrimSuffix(filepath.Base(abs), ".wasm"), Runtime: runtime, Path: abs},
		opts: host.LoadOptions{CacheDir: t.TempDir()}}
	if err := l.load(nil); err != nil {
		t.Fatalf("policytest.Load %s: %v", path, err)
	}
	t.Cleanup(func() { l.close() })
	return l
}

// loaded is a policy served by a host runtime, seen as an sdk.Policy.
type loaded struct {
	spec config.Policy
	opts host.LoadOptions

	mu sync.Mutex
	p  host.PolicyRuntime
}

func (l *loaded) load(cfg map[string]any) error {
	spec := l.spec
	spec.Config = cfg
	p, err := host.LoadPolicy(context.Background(), spec, l.opts)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.p
	l.p = p
	l.mu.Unlock()
	if old != nil {
		old.Close(context.Background())
	}
	return nil
}

func (l *loaded) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p != nil {
		l.p.Close(context.Background())
		l.p = nil
	}
}

func (l *loaded) runtime() host.PolicyRuntime {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p
}

// Info is the module's.
func (l *loaded) Info() sdk.Info { return l.runtime().Info() }

// Configure loads the module again with config as its [policy.config]:
// the module's own check of it is the error.
func (l *loaded) Configure(config map[string]any) error { return l.load(config) }

// Filter calls the module's Filter.
func (l *loaded) Filter(req sdk.FilterRequest) (sdk.FilterResponse, error) {
	return l.runtime().Filter(context.Background(), req)
}

// Map calls the module's Map.
func (l *loaded) Map(req sdk.MapRequest) (sdk.MapResponse, error) {
	return l.runtime().Map(context.Background(), req)
}

// Reconcile calls the module's Reconcile.
func (l *loaded) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	return l.runtime().Reconcile(context.Background(), req)
}
