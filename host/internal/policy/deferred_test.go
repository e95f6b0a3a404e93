package policy

import (
	"context"
	"errors"
	"testing"

	"github.com/dirsync/dirsync/sdk"
)

// counting is a Runtime that counts its calls.
type counting struct {
	filters, maps, closes, trims int
}

func (c *counting) Trim() { c.trims++ }

func (c *counting) Info() sdk.Info { return sdk.Info{Name: "loaded"} }
func (c *counting) Filter(_ context.Context, req sdk.FilterRequest) (sdk.FilterResponse, error) {
	c.filters++
	if req.Filter == "bad" {
		return sdk.FilterResponse{}, &sdk.FilterError{Position: 0, Reason: "bad"}
	}
	return sdk.FilterResponse{Filter: "(" + req.Filter + ")"}, nil
}
func (c *counting) Map(context.Context, sdk.MapRequest) (sdk.MapResponse, error) {
	c.maps++
	return sdk.MapResponse{}, nil
}
func (c *counting) Reconcile(context.Context, sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	return sdk.ReconcileResponse{}, nil
}
func (c *counting) Close(context.Context) error { c.closes++; return nil }

// TestDeferredTrim: a Deferred runtime trims the loaded one, and does not
// load to trim.
func TestDeferredTrim(t *testing.T) {
	rt := &counting{}
	loads := 0
	d := Deferred(Facts{Info: sdk.Info{Name: "kept"}}, func(context.Context) (Runtime, error) { loads++; return rt, nil }, nil)
	d.(Trimmer).Trim()
	if loads != 0 || rt.trims != 0 {
		t.Fatalf("Trim before a load: %d loads, %d trims", loads, rt.trims)
	}
	if _, err := d.Map(context.Background(), sdk.MapRequest{}); err != nil {
		t.Fatal(err)
	}
	d.(Trimmer).Trim()
	if loads != 1 || rt.trims != 1 {
		t.Errorf("Trim after a load: %d loads, %d trims; want 1 and 1", loads, rt.trims)
	}
}

func TestDeferred(t *testing.T) {
	ctx := context.Background()
	rt := &counting{}
	loads, fail := 0, true
	load := func(context.Context) (Runtime, error) {
		loads++
		if fail {
			return nil, errors.New("no module")
		}
		return rt, nil
	}
	var learned []Facts
	d := Deferred(Facts{Info: sdk.Info{Name: "kept", Attributes: []string{"mail"}}, Filters: map[string]string{"a": "(a)"}},
		load, func(f Facts) { learned = append(learned, f) })

	// What the facts hold is answered without a load.
	if got := d.Info(); got.Name != "kept" || len(got.Attributes) != 1 {
		t.Errorf("Info = %+v, want the kept one", got)
	}
	if resp, err := d.Filter(ctx, sdk.FilterRequest{Filter: "a"}); err != nil || resp.Filter != "(a)" {
		t.Errorf("Filter(a) = %+v, %v", resp, err)
	}
	if err := d.Close(ctx); err != nil || loads != 0 || rt.closes != 0 {
		t.Fatalf("answers from facts and Close loaded %d times, closed %d (%v)", loads, rt.closes, err)
	}

	// Anything else loads; a failed load is tried again.
	if _, err := d.Map(ctx, sdk.MapRequest{}); err == nil || loads != 1 {
		t.Fatalf("Map with a failing load: %v after %d loads", err, loads)
	}
	fail = false
	if _, err := d.Filter(ctx, sdk.FilterRequest{Filter: "bad"}); err == nil || len(learned) != 0 {
		t.Errorf("a refused filter: %v, learned %v", err, learned)
	}
	if resp, err := d.Filter(ctx, sdk.FilterRequest{Filter: "b"}); err != nil || resp.Filter != "(b)" {
		t.Errorf("Filter(b) = %+v, %v", resp, err)
	}
	if len(learned) != 1 || learned[0].Filters["b"] != "(b)" || learned[0].Filters["a"] != "(a)" {
		t.Errorf("learned %+v, want a and b", learned)
	}
	d.Filter(ctx, sdk.FilterRequest{Filter: "b"})
	d.Map(ctx, sdk.MapRequest{})
	if loads != 2 || rt.filters != 2 || rt.maps != 1 {
		t.Errorf("loads %d, filters %d, maps %d; want 2, 2 (bad, b), 1", loads, rt.filters, rt.maps)
	}
	if err := Load(ctx, d); err != nil || loads != 2 {
		t.Errorf("Load of a loaded runtime: %v, loads %d", err, loads)
	}
	if err := d.Close(ctx); err != nil || rt.closes != 1 {
		t.Errorf("Close: %v, closes %d", err, rt.closes)
	}
}
