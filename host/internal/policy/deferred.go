package policy

import (
	"context"
	"maps"
	"sync"

	"github.com/dirsync/dirsync/sdk"
)

// Facts are what a policy answers without seeing an entry: its Info and
// the filters it accepted, each with its normal form. They are the same
// for the same module and config, so the host keeps them and a run that
// needs no more (a delta that finds nothing changed) does not load the
// module: loading a wasm module is ~0.2 s, more than the rest of such a
// run.
type Facts struct {
	Info    sdk.Info
	Filters map[string]string // accepted filter → normalized
}

// Deferred is a Runtime that answers Info, and Filter for a filter it
// knows, from facts, and loads the real runtime with load the first time
// it needs more. learned is called (outside any lock) with the facts once
// the loaded runtime accepted a filter they lacked.
func Deferred(facts Facts, load func(context.Context) (Runtime, error), learned func(Facts)) Runtime {
	if facts.Filters == nil {
		facts.Filters = map[string]string{}
	}
	return &deferred{facts: facts, load: load, learned: learned}
}

type deferred struct {
	mu      sync.Mutex
	facts   Facts
	load    func(context.Context) (Runtime, error)
	learned func(Facts)
	rt      Runtime
}

// runtime loads the real runtime once; a failed load is tried again on
// the next call.
func (d *deferred) runtime(ctx context.Context) (Runtime, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rt == nil {
		rt, err := d.load(ctx)
		if err != nil {
			return nil, err
		}
		d.rt = rt
	}
	return d.rt, nil
}

func (d *deferred) Info() sdk.Info { return d.facts.Info }

func (d *deferred) Filter(ctx context.Context, req sdk.FilterRequest) (sdk.FilterResponse, error) {
	d.mu.Lock()
	norm, ok := d.facts.Filters[req.Filter]
	d.mu.Unlock()
	if ok {
		return sdk.FilterResponse{Filter: norm}, nil
	}
	rt, err := d.runtime(ctx)
	if err != nil {
		return sdk.FilterResponse{}, err
	}
	resp, err := rt.Filter(ctx, req)
	if err != nil {
		return resp, err
	}
	d.mu.Lock()
	d.facts.Filters[req.Filter] = resp.Filter
	facts := Facts{Info: d.facts.Info, Filters: maps.Clone(d.facts.Filters)}
	d.mu.Unlock()
	if d.learned != nil {
		d.learned(facts)
	}
	return resp, nil
}

func (d *deferred) Map(ctx context.Context, req sdk.MapRequest) (sdk.MapResponse, error) {
	rt, err := d.runtime(ctx)
	if err != nil {
		return sdk.MapResponse{}, err
	}
	return rt.Map(ctx, req)
}

func (d *deferred) Reconcile(ctx context.Context, req sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	rt, err := d.runtime(ctx)
	if err != nil {
		return sdk.ReconcileResponse{}, err
	}
	return rt.Reconcile(ctx, req)
}

// Trim trims the real runtime if it was loaded and is a Trimmer.
func (d *deferred) Trim() {
	d.mu.Lock()
	rt := d.rt
	d.mu.Unlock()
	if t, ok := rt.(Trimmer); ok {
		t.Trim()
	}
}

// Close closes the real runtime if it was loaded.
func (d *deferred) Close(ctx context.Context) error {
	d.mu.Lock()
	rt := d.rt
	d.rt = nil
	d.mu.Unlock()
	if rt == nil {
		return nil
	}
	return rt.Close(ctx)
}

// Load loads rt now if it is a Deferred runtime not loaded yet, so that
// a caller who wants a broken module to fail early sees it fail.
func Load(ctx context.Context, rt Runtime) error {
	if d, ok := rt.(*deferred); ok {
		_, err := d.runtime(ctx)
		return err
	}
	return nil
}
