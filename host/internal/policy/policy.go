// Package policy is the host's view of a sync policy, whatever runtime serves
// it: linked in (builtin), a WebAssembly module (wasm, package wasmrt) or a
// plugin process (package processrt).
//
// Besides the Runtime interface and the builtin runtime (this file), it
// holds what the wasm and process runtimes share: Map batching (batch.go);
// the checks and conversions of a policy loaded from a file — its label in
// errors, its SHA-256 pin, its ABI version, its config, one-line errors
// (loaded.go, pin.go).
package policy

import (
	"context"
	"fmt"
	"sync"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
)

// Runtime is a loaded policy. Every call honours ctx's deadline; an error
// from any stage fails the run before anything is written. A Runtime is
// safe for concurrent use: the host maps batches of entries in parallel.
type Runtime interface {
	Info() sdk.Info
	Filter(ctx context.Context, req sdk.FilterRequest) (sdk.FilterResponse, error)
	Map(ctx context.Context, req sdk.MapRequest) (sdk.MapResponse, error)
	Reconcile(ctx context.Context, req sdk.ReconcileRequest) (sdk.ReconcileResponse, error)
	Close(ctx context.Context) error
}

// Trimmer is a Runtime that can give back what its instances grew to
// during a burst of calls (a full read's Map): the host calls Trim once a
// read is mapped, before it builds the decision, the run's largest heap.
type Trimmer interface {
	Trim()
}

// Builtin serves a policy linked into the host. config is the manifest's
// [policy.config] table; the policy receives it in the form the ABI gives
// every other runtime (numbers as float64), so it sees the same types
// whatever runtime serves it.
func Builtin(p sdk.Policy, config map[string]any) (Runtime, error) {
	config, err := abi.NormalizeConfig(config)
	if err != nil {
		return nil, err
	}
	if err := p.Configure(config); err != nil {
		return nil, err
	}
	return &builtin{p: p}, nil
}

// builtin serializes calls: an sdk.Policy need not be safe for concurrent
// use, and a linked-in Map is fast enough on one core.
type builtin struct {
	mu sync.Mutex
	p  sdk.Policy
}

func (b *builtin) Info() sdk.Info {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.p.Info()
}

func (b *builtin) Filter(_ context.Context, r sdk.FilterRequest) (resp sdk.FilterResponse, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer recoverPanic("filter", &err)
	return b.p.Filter(r)
}

func (b *builtin) Map(_ context.Context, r sdk.MapRequest) (resp sdk.MapResponse, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer recoverPanic("map", &err)
	return b.p.Map(r)
}

func (b *builtin) Reconcile(_ context.Context, r sdk.ReconcileRequest) (resp sdk.ReconcileResponse, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer recoverPanic("reconcile", &err)
	return b.p.Reconcile(r)
}

func (b *builtin) Close(context.Context) error { return nil }

// recoverPanic turns a panic of a linked-in policy into the stage's error,
// as the wasm runtime does for a module: the run fails, the host lives on.
func recoverPanic(stage string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: the policy panicked: %v", stage, r)
	}
}

// AsSDK adapts a Runtime back to sdk.Policy, for the conformance kit
// (sdk/policytest), which runs the same cases against every runtime.
// Configure is a no-op: a Runtime is configured when it is loaded.
func AsSDK(r Runtime) sdk.Policy { return asSDK{r} }

type asSDK struct{ r Runtime }

func (a asSDK) Info() sdk.Info                 { return a.r.Info() }
func (a asSDK) Configure(map[string]any) error { return nil }
func (a asSDK) Filter(r sdk.FilterRequest) (sdk.FilterResponse, error) {
	return a.r.Filter(context.Background(), r)
}
func (a asSDK) Map(r sdk.MapRequest) (sdk.MapResponse, error) {
	return a.r.Map(context.Background(), r)
}
func (a asSDK) Reconcile(r sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	return a.r.Reconcile(context.Background(), r)
}
