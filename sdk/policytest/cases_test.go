package policytest

import "testing"

// TestCasesWellFormed checks the case tables themselves: every case has a
// unique name within its stage, a valid filter case has no error and an
// invalid one no Want, and a Map case wants one intent per entry.
func TestCasesWellFormed(t *testing.T) {
	for _, set := range []struct {
		name  string
		cases Cases
	}{{"standard", StandardCases()}, {"abi", ABICases()}} {
		seen := map[string]bool{}
		name := func(stage, n string) {
			key := stage + "/" + n
			if n == "" {
				t.Errorf("%s: %s case without a name", set.name, stage)
			}
			if seen[key] {
				t.Errorf("%s: duplicate case %s", set.name, key)
			}
			seen[key] = true
		}
		for _, c := range set.cases.Filter {
			name("filter", c.Name)
			if (c.Err == nil) == (c.Want == "") {
				t.Errorf("%s: filter case %q needs exactly one of Want and Err", set.name, c.Name)
			}
			if c.Err != nil && (c.Err.Position < 0 || c.Err.Position > len(c.Filter)) {
				t.Errorf("%s: filter case %q: position %d outside the filter", set.name, c.Name, c.Err.Position)
			}
		}
		for _, c := range set.cases.Map {
			name("map", c.Name)
			if len(c.Want) != len(c.Request.Entries) {
				t.Errorf("%s: map case %q has %d entries and %d wanted intents", set.name, c.Name, len(c.Request.Entries), len(c.Want))
			}
		}
		for _, c := range set.cases.Reconcile {
			name("reconcile", c.Name)
			for _, d := range c.Want {
				if d.Index < 0 || d.Index >= len(c.Request.Changes) {
					t.Errorf("%s: reconcile case %q wants a decision on change %d of %d", set.name, c.Name, d.Index, len(c.Request.Changes))
				}
			}
		}
	}
	if set := StandardCases(); set.Filter[0].Want == "" || &set.Map[0] == &StandardCases().Map[0] {
		t.Error("StandardCases does not return fresh values")
	}
}
