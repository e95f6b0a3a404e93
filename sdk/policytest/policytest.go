// Package policytest is the conformance kit for sync policies: shared cases,
// kept as data, that run against any sdk.Policy — a policy linked into the
// test, or a runtime (wasm, process) wrapped as an sdk.Policy.
//
// Run checks a policy against the standard rules (design R2–R10) and the ABI
// edge cases; RunABI checks only what every policy must do whatever its
// rules; Compare runs every case on two policies and requires the same
// answers, so that the host can prove its runtimes interchangeable; and
// RunCases runs a policy author's own table of cases, with the same checks
// and the same matching as Run.
//
//	func TestConformance(t *testing.T) { policytest.Run(t, standard.New()) }
//	func TestMyRules(t *testing.T)     { policytest.RunCases(t, configured(t), myCases()) }
package policytest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
)

// Cases is a set of conformance cases, one list per stage.
type Cases struct {
	Filter    []FilterCase
	Map       []MapCase
	Reconcile []ReconcileCase
}

// FilterCase is one call of Filter.
type FilterCase struct {
	Name   string
	Rule   string // the design rule it checks, e.g. "R2"
	Filter string
	// Want is the normalized filter, when the filter is valid.
	Want string
	// Err, when set, is the expected error: its Position must match and the
	// error's Reason must contain Err.Reason.
	Err *sdk.FilterError
}

// MapCase is one call of Map.
type MapCase struct {
	Name    string
	Rule    string
	Request sdk.MapRequest
	// Want are the expected intents, in order. Reasons (Intent.Reason and
	// SkippedAddress.Reason) match when the policy's reason contains them; a
	// skip or a hold must always have a reason. Nil and empty slices are
	// equal.
	Want []sdk.Intent
}

// ReconcileCase is one call of Reconcile.
type ReconcileCase struct {
	Name    string
	Rule    string
	Request sdk.ReconcileRequest
	// Want are the expected decisions, in order; Reason matches when the
	// policy's reason contains it, and a veto must always have a reason.
	Want []sdk.Decision
}

// Run configures p with an empty config (a no-op for a runtime configured
// at load, which must then have been loaded with an empty config too) and
// runs Info, StandardCases and ABICases against it.
func Run(t *testing.T, p sdk.Policy) {
	t.Helper()
	if err := p.Configure(nil); err != nil {
		t.Fatalf("Configure(nil): %v", err)
	}
	t.Run("info", func(t *testing.T) { checkInfo(t, p) })
	runCases(t, "standard", p, StandardCases(), true)
	runCases(t, "abi", p, ABICases(), true)
}

// RunABI runs the ABI edge cases against any policy, checking only what the
// ABI demands of every policy: Info is well formed, Map answers one intent
// per entry (and a reason per skip), decisions name existing changes, and
// the same request gives the same answer twice. p must be configured.
func RunABI(t *testing.T, p sdk.Policy) {
	t.Helper()
	t.Run("info", func(t *testing.T) { checkInfo(t, p) })
	runCases(t, "abi", p, ABICases(), false)
}

// RunCases runs a table of cases against p, one subtest per case, named
// "filter/<Name>", "map/<Name>" and "reconcile/<Name>". p must be
// configured: RunCases does not call Configure, so configure it with the
// table the cases are written for (as the host hands it over: numbers as
// float64).
//
// Each case is checked as Run checks the standard cases:
//
//   - FilterCase: Want is the exact normalized filter; or Err the expected
//     *sdk.FilterError, with the same Position and a Reason that contains
//     Err.Reason.
//   - MapCase: one intent per entry, a reason for every skip and hold, and
//     each intent as in Want (which has one per entry): the same Kind, Mailbox, Group and Skipped
//     addresses, reasons (Intent.Reason, SkippedAddress.Reason) containing
//     the wanted ones. Nil and empty slices are equal.
//   - ReconcileCase: decisions on existing changes only, a reason for every
//     veto and a replacement for every replace, and exactly the decisions of
//     Want, in order, reasons containing the wanted ones. A case without
//     Want expects every change to be accepted (no decision).
//
// Rule is not checked: it is there for the reader of the table.
func RunCases(t *testing.T, p sdk.Policy, cases Cases) {
	t.Helper()
	runCases(t, "", p, cases, true)
}

func checkInfo(t *testing.T, p sdk.Policy) {
	info := p.Info()
	if info.Name == "" {
		t.Error("Info().Name is empty")
	}
	if info.ABIMajor != sdk.ABIMajor {
		t.Errorf("Info().ABIMajor = %d, want %d", info.ABIMajor, sdk.ABIMajor)
	}
	for _, a := range info.Attributes {
		if a == "" || a != strings.ToLower(a) {
			t.Errorf("Info().Attributes holds %q; attributes must be non-empty and lower case", a)
		}
	}
}

// runCases runs cs against p in subtests named prefix/stage/name (stage/name
// without a prefix). With exact, every answer must be the wanted one;
// without, only the invariants of the ABI are checked.
func runCases(t *testing.T, prefix string, p sdk.Policy, cs Cases, exact bool) {
	t.Helper()
	if prefix != "" {
		prefix += "/"
	}
	for _, c := range cs.Filter {
		t.Run(prefix+"filter/"+c.Name, func(t *testing.T) {
			got, err := p.Filter(sdk.FilterRequest{Filter: c.Filter})
			if !exact {
				var fe *sdk.FilterError
				if err != nil && !errors.As(err, &fe) {
					t.Errorf("Filter(%q) error %v is not a *sdk.FilterError", c.Filter, err)
				}
				return
			}
			if msg := matchFilter(c, got, err); msg != "" {
				t.Errorf("Filter(%q): %s", c.Filter, msg)
			}
		})
	}
	for _, c := range cs.Map {
		t.Run(prefix+"map/"+c.Name, func(t *testing.T) {
			if exact && len(c.Want) != len(c.Request.Entries) {
				t.Fatalf("the case wants %d intents for %d entries", len(c.Want), len(c.Request.Entries))
			}
			got, err := p.Map(c.Request)
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if len(got.Intents) != len(c.Request.Entries) {
				t.Fatalf("Map gave %d intents for %d entries", len(got.Intents), len(c.Request.Entries))
			}
			for i, in := range got.Intents {
				if in.Kind == sdk.IntentSkip && in.Reason == "" {
					t.Errorf("intent %d (entry %q): skip without a reason", i, c.Request.Entries[i].ID)
				}
				if in.Kind == sdk.IntentHold && in.Reason == "" {
					t.Errorf("intent %d (entry %q): hold without a reason", i, c.Request.Entries[i].ID)
				}
			}
			if exact {
				for i := range c.Want {
					if msg := matchIntent(c.Want[i], got.Intents[i]); msg != "" {
						t.Errorf("intent %d (entry %q): %s", i, c.Request.Entries[i].ID, msg)
					}
				}
				return
			}
			again, err := p.Map(c.Request)
			if err != nil || !reflect.DeepEqual(normMap(got), normMap(again)) {
				t.Errorf("Map is not deterministic: a second call gave a different answer (err %v)", err)
			}
		})
	}
	for _, c := range cs.Reconcile {
		t.Run(prefix+"reconcile/"+c.Name, func(t *testing.T) {
			got, err := p.Reconcile(c.Request)
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			for _, d := range got.Decisions {
				if d.Index < 0 || d.Index >= len(c.Request.Changes) {
					t.Errorf("decision for change %d of %d", d.Index, len(c.Request.Changes))
				}
				if d.Action == sdk.Veto && d.Reason == "" {
					t.Errorf("veto of change %d without a reason", d.Index)
				}
				if d.Action == sdk.Replace && d.Replacement == nil {
					t.Errorf("replace of change %d without a replacement", d.Index)
				}
			}
			if !exact {
				return
			}
			if len(got.Decisions) != len(c.Want) {
				t.Fatalf("got %d decisions, want %d:\n got  %s\n want %s", len(got.Decisions), len(c.Want), show(got.Decisions), show(c.Want))
			}
			for i := range c.Want {
				if msg := matchDecision(c.Want[i], got.Decisions[i]); msg != "" {
					t.Errorf("decision %d: %s", i, msg)
				}
			}
		})
	}
}

func matchFilter(c FilterCase, got sdk.FilterResponse, err error) string {
	if c.Err == nil {
		if err != nil {
			return fmt.Sprintf("unexpected error: %v", err)
		}
		if got.Filter != c.Want {
			return fmt.Sprintf("got %q, want %q", got.Filter, c.Want)
		}
		return ""
	}
	var fe *sdk.FilterError
	if !errors.As(err, &fe) {
		return fmt.Sprintf("got (%q, %v), want a *sdk.FilterError at position %d (%s)", got.Filter, err, c.Err.Position, c.Err.Reason)
	}
	if fe.Position != c.Err.Position || !strings.Contains(fe.Reason, c.Err.Reason) {
		return fmt.Sprintf("got error at position %d: %s\n\twant position %d, reason containing %q", fe.Position, fe.Reason, c.Err.Position, c.Err.Reason)
	}
	return ""
}

func matchIntent(want, got sdk.Intent) string {
	var diffs []string
	if got.Kind != want.Kind {
		diffs = append(diffs, fmt.Sprintf("kind %d, want %d", got.Kind, want.Kind))
	}
	if !strings.Contains(got.Reason, want.Reason) {
		diffs = append(diffs, fmt.Sprintf("reason %q, want it to contain %q", got.Reason, want.Reason))
	}
	if !reflect.DeepEqual(normMailbox(got.Mailbox), normMailbox(want.Mailbox)) {
		diffs = append(diffs, fmt.Sprintf("mailbox %s, want %s", show(got.Mailbox), show(want.Mailbox)))
	}
	if !reflect.DeepEqual(normGroup(got.Group), normGroup(want.Group)) {
		diffs = append(diffs, fmt.Sprintf("group %s, want %s", show(got.Group), show(want.Group)))
	}
	ok := len(got.Skipped) == len(want.Skipped)
	for i := 0; ok && i < len(want.Skipped); i++ {
		ok = got.Skipped[i].Address == want.Skipped[i].Address &&
			strings.Contains(got.Skipped[i].Reason, want.Skipped[i].Reason)
	}
	if !ok {
		diffs = append(diffs, fmt.Sprintf("skipped %s, want %s", show(got.Skipped), show(want.Skipped)))
	}
	return strings.Join(diffs, "; ")
}

func matchDecision(want, got sdk.Decision) string {
	var diffs []string
	if got.Index != want.Index {
		diffs = append(diffs, fmt.Sprintf("index %d, want %d", got.Index, want.Index))
	}
	if got.Action != want.Action {
		diffs = append(diffs, fmt.Sprintf("action %d, want %d", got.Action, want.Action))
	}
	if !strings.Contains(got.Reason, want.Reason) {
		diffs = append(diffs, fmt.Sprintf("reason %q, want it to contain %q", got.Reason, want.Reason))
	}
	if !reflect.DeepEqual(normChange(got.Replacement), normChange(want.Replacement)) {
		diffs = append(diffs, fmt.Sprintf("replacement %s, want %s", show(got.Replacement), show(want.Replacement)))
	}
	return strings.Join(diffs, "; ")
}

// show prints a value for a failure message, eliding long ones.
func show(v any) string {
	s := fmt.Sprintf("%+v", v)
	if r := reflect.ValueOf(v); r.Kind() == reflect.Pointer && !r.IsNil() {
		s = fmt.Sprintf("&%+v", r.Elem().Interface())
	}
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}
