// Package policy is the host's view of a sync policy, whatever runtime serves
// it: linked in (builtin), a WebAssembly module (wasm) or a plugin process.
package policy

import (
	"context"

	"github.com/dirsync/dirsync/sdk"
)

// Runtime is a loaded policy. Every call honours ctx's deadline; an error
// from any stage fails the run before anything is written.
type Runtime interface {
	Info() sdk.Info
	Filter(ctx context.Context, req sdk.FilterRequest) (sdk.FilterResponse, error)
	Map(ctx context.Context, req sdk.MapRequest) (sdk.MapResponse, error)
	Reconcile(ctx context.Context, req sdk.ReconcileRequest) (sdk.ReconcileResponse, error)
	Close(ctx context.Context) error
}

// Builtin serves a policy linked into the host. config is the manifest's
// [policy.config] table.
func Builtin(p sdk.Policy, config map[string]any) (Runtime, error) {
	if err := p.Configure(config); err != nil {
		return nil, err
	}
	return builtin{p}, nil
}

type builtin struct{ p sdk.Policy }

func (b builtin) Info() sdk.Info { return b.p.Info() }
func (b builtin) Filter(_ context.Context, r sdk.FilterRequest) (sdk.FilterResponse, error) {
	return b.p.Filter(r)
}
func (b builtin) Map(_ context.Context, r sdk.MapRequest) (sdk.MapResponse, error) {
	return b.p.Map(r)
}
func (b builtin) Reconcile(_ context.Context, r sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	return b.p.Reconcile(r)
}
func (b builtin) Close(context.Context) error { return nil }

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
