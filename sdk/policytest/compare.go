package policytest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/dirsync/dirsync/sdk"
)

// Compare requires the same Info of want and got, runs every request of
// StandardCases and ABICases on both and requires the same answers: equal
// responses (nil and empty slices being equal, as they are on the wire),
// and errors of the same kind (equal *sdk.FilterError values; any error for
// any error otherwise). Use it to check a runtime against the builtin
// policy it wraps. Both policies must be configured alike.
func Compare(t *testing.T, want, got sdk.Policy) {
	t.Helper()
	t.Run("info", func(t *testing.T) {
		w, g := want.Info(), got.Info()
		if len(w.Attributes) == 0 && len(g.Attributes) == 0 {
			w.Attributes, g.Attributes = nil, nil
		}
		if !reflect.DeepEqual(w, g) {
			t.Errorf("Info: got %+v, want %+v", g, w)
		}
	})
	for _, set := range []struct {
		name  string
		cases Cases
	}{{"standard", StandardCases()}, {"abi", ABICases()}} {
		for _, c := range set.cases.Filter {
			t.Run(set.name+"/filter/"+c.Name, func(t *testing.T) {
				req := sdk.FilterRequest{Filter: c.Filter}
				w, werr := want.Filter(req)
				g, gerr := got.Filter(req)
				if msg := sameErr(werr, gerr); msg != "" {
					t.Fatal(msg)
				}
				if w != g {
					t.Errorf("Filter: got %q, want %q", g.Filter, w.Filter)
				}
			})
		}
		for _, c := range set.cases.Map {
			t.Run(set.name+"/map/"+c.Name, func(t *testing.T) {
				w, werr := want.Map(c.Request)
				g, gerr := got.Map(c.Request)
				if msg := sameErr(werr, gerr); msg != "" {
					t.Fatal(msg)
				}
				wn, gn := normMap(w), normMap(g)
				if len(wn.Intents) != len(gn.Intents) {
					t.Fatalf("Map: got %d intents, want %d", len(gn.Intents), len(wn.Intents))
				}
				for i := range wn.Intents {
					if !reflect.DeepEqual(wn.Intents[i], gn.Intents[i]) {
						t.Errorf("Map: intent %d differs:\n got  %s\n want %s", i, showIntent(gn.Intents[i]), showIntent(wn.Intents[i]))
						return
					}
				}
			})
		}
		for _, c := range set.cases.Reconcile {
			t.Run(set.name+"/reconcile/"+c.Name, func(t *testing.T) {
				w, werr := want.Reconcile(c.Request)
				g, gerr := got.Reconcile(c.Request)
				if msg := sameErr(werr, gerr); msg != "" {
					t.Fatal(msg)
				}
				if wn, gn := normReconcile(w), normReconcile(g); !reflect.DeepEqual(wn, gn) {
					t.Errorf("Reconcile differs:\n got  %s\n want %s", show(gn), show(wn))
				}
			})
		}
	}
}

func sameErr(want, got error) string {
	if (want == nil) != (got == nil) {
		return fmt.Sprintf("error %v, want %v", got, want)
	}
	var wf, gf *sdk.FilterError
	if errors.As(want, &wf) {
		if !errors.As(got, &gf) || *gf != *wf {
			return fmt.Sprintf("error %v, want %v", got, want)
		}
	}
	return ""
}

func showIntent(in sdk.Intent) string {
	return fmt.Sprintf("{Kind:%d Reason:%q Mailbox:%s Group:%s Skipped:%s}", in.Kind, in.Reason, show(in.Mailbox), show(in.Group), show(in.Skipped))
}

// The norm functions return copies in which empty slices are nil, so that
// reflect.DeepEqual compares values the way the wire does.

func strs(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func normMap(r sdk.MapResponse) sdk.MapResponse {
	if len(r.Intents) == 0 {
		return sdk.MapResponse{}
	}
	out := make([]sdk.Intent, len(r.Intents))
	for i, in := range r.Intents {
		in.Mailbox = normMailbox(in.Mailbox)
		in.Group = normGroup(in.Group)
		if len(in.Skipped) == 0 {
			in.Skipped = nil
		}
		out[i] = in
	}
	return sdk.MapResponse{Intents: out}
}

func normMailbox(m *sdk.MailboxIntent) *sdk.MailboxIntent {
	if m == nil {
		return nil
	}
	c := *m
	c.Aliases, c.MemberOf = strs(c.Aliases), strs(c.MemberOf)
	return &c
}

func normGroup(g *sdk.GroupIntent) *sdk.GroupIntent {
	if g == nil {
		return nil
	}
	c := *g
	c.Members = strs(c.Members)
	return &c
}

func normStoreMailbox(m *sdk.Mailbox) *sdk.Mailbox {
	if m == nil {
		return nil
	}
	c := *m
	c.Aliases, c.Groups = strs(c.Aliases), strs(c.Groups)
	return &c
}

func normChange(ch *sdk.Change) *sdk.Change {
	if ch == nil {
		return nil
	}
	c := *ch
	c.Before, c.After = normStoreMailbox(c.Before), normStoreMailbox(c.After)
	if len(c.Conflicts) == 0 {
		c.Conflicts = nil
	}
	return &c
}

func normReconcile(r sdk.ReconcileResponse) sdk.ReconcileResponse {
	if len(r.Decisions) == 0 {
		return sdk.ReconcileResponse{}
	}
	out := make([]sdk.Decision, len(r.Decisions))
	for i, d := range r.Decisions {
		d.Replacement = normChange(d.Replacement)
		out[i] = d
	}
	return sdk.ReconcileResponse{Decisions: out}
}
