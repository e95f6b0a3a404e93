package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
)

// panicky is a policy whose stages panic.
type panicky struct{}

func (panicky) Info() sdk.Info                 { return sdk.Info{Name: "panicky", ABIMajor: sdk.ABIMajor} }
func (panicky) Configure(map[string]any) error { return nil }
func (panicky) Filter(sdk.FilterRequest) (sdk.FilterResponse, error) {
	panic("filter exploded")
}
func (panicky) Map(sdk.MapRequest) (sdk.MapResponse, error) { panic("map exploded") }
func (panicky) Reconcile(sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	panic("reconcile exploded")
}

func TestBuiltinPanicIsAnError(t *testing.T) {
	rt, err := Builtin(panicky{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, ferr := rt.Filter(ctx, sdk.FilterRequest{})
	_, merr := rt.Map(ctx, sdk.MapRequest{})
	_, rerr := rt.Reconcile(ctx, sdk.ReconcileRequest{})
	for _, tc := range []struct {
		err  error
		want string
	}{
		{ferr, "filter: the policy panicked: filter exploded"},
		{merr, "map: the policy panicked: map exploded"},
		{rerr, "reconcile: the policy panicked: reconcile exploded"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", tc.err, tc.want)
		}
	}
}

func TestMapInBatches(t *testing.T) {
	entries := make([]sdk.Entry, 7)
	for i := range entries {
		entries[i].ID = string(rune('a' + i))
	}
	echo := func(calls *[]string) func(start, end int) ([]sdk.Intent, error) {
		return func(start, end int) ([]sdk.Intent, error) {
			*calls = append(*calls, fmt.Sprintf("%d-%d", start, end))
			out := make([]sdk.Intent, end-start)
			for i := range out {
				out[i].Reason = entries[start+i].ID
			}
			return out, nil
		}
	}
	for _, tc := range []struct {
		n, size int
		calls   string
	}{
		{7, 3, "0-3 3-6 6-7"},
		{7, 7, "0-7"},
		{7, 0, "0-7"},
		{6, 3, "0-3 3-6"},
		{0, 3, "0-0"},
	} {
		var calls []string
		got, err := MapInBatches(entries[:tc.n], tc.size, echo(&calls))
		if err != nil || strings.Join(calls, " ") != tc.calls || len(got) != tc.n {
			t.Errorf("n %d size %d: calls %v, %d intents, %v; want %s", tc.n, tc.size, calls, len(got), err, tc.calls)
		}
		for i := range got {
			if got[i].Reason != entries[i].ID {
				t.Errorf("n %d size %d: intent %d is %q, out of order", tc.n, tc.size, i, got[i].Reason)
			}
		}
	}
	_, err := MapInBatches(entries, 3, func(start, end int) ([]sdk.Intent, error) { return make([]sdk.Intent, 1), nil })
	if err == nil || !strings.Contains(err.Error(), "returned 1 intents for 3 entries") {
		t.Errorf("short batch: err = %v", err)
	}
}
