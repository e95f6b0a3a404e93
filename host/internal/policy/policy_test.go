package policy

import (
	"context"
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
