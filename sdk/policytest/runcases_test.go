package policytest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/policytest"
)

// TestRunCases runs the table of the RunCases example.
func TestRunCases(t *testing.T) { testMailOnly(t) }

// wrongCases are cases that mailOnly fails, one per kind of mismatch.
func wrongCases() policytest.Cases {
	domain := sdk.Domain{Name: "example.com"}
	return policytest.Cases{
		Filter: []policytest.FilterCase{
			{Name: "wrong normalization", Filter: "(cn=a)", Want: "(cn=b)"},
			{Name: "wrong position", Filter: "(cn=a", Err: &sdk.FilterError{Position: 3, Reason: "unbalanced"}},
			{Name: "error expected", Filter: "(cn=a)", Err: &sdk.FilterError{Position: 0, Reason: "x"}},
		},
		Map: []policytest.MapCase{
			{Name: "wrong primary", Request: sdk.MapRequest{Domain: domain, Entries: []sdk.Entry{
				{ID: "1", Attributes: map[string][]string{"mail": {"ann@example.com"}}},
			}}, Want: []sdk.Intent{{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "bob@example.com"}}}},
			{Name: "wrong reason", Request: sdk.MapRequest{Domain: domain, Entries: []sdk.Entry{{ID: "2"}}},
				Want: []sdk.Intent{{Kind: sdk.IntentSkip, Reason: "disabled"}}},
			{Name: "too few wanted intents", Request: sdk.MapRequest{Domain: domain, Entries: []sdk.Entry{{ID: "3"}}}},
		},
		Reconcile: []policytest.ReconcileCase{
			{Name: "unexpected veto", Request: sdk.ReconcileRequest{Domain: domain, Changes: []sdk.Change{
				{Kind: sdk.ChangeDelete, Before: &sdk.Mailbox{ID: 7, Primary: "gone@example.com", Source: sdk.SourceLDAP}},
			}}},
		},
	}
}

// TestRunCasesReportsMismatches runs RunCases on cases the policy fails, in
// a child process (a failed subtest fails its parent), and checks that each
// failure is reported with what was wanted.
func TestRunCasesReportsMismatches(t *testing.T) {
	if os.Getenv("POLICYTEST_WRONG_CASES") == "1" {
		policytest.RunCases(t, mailOnly{}, wrongCases())
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunCasesReportsMismatches$", "-test.v")
	cmd.Env = append(os.Environ(), "POLICYTEST_WRONG_CASES=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("RunCases passed cases the policy fails:\n%s", out)
	}
	for _, want := range []string{
		`--- FAIL: TestRunCasesReportsMismatches/filter/wrong_normalization`,
		`Filter("(cn=a)"): got "(cn=a)", want "(cn=b)"`,
		`--- FAIL: TestRunCasesReportsMismatches/filter/wrong_position`,
		`got error at position 5`,
		`--- FAIL: TestRunCasesReportsMismatches/filter/error_expected`,
		`--- FAIL: TestRunCasesReportsMismatches/map/wrong_primary`,
		`Primary:ann@example.com`,
		`--- FAIL: TestRunCasesReportsMismatches/map/wrong_reason`,
		`want it to contain "disabled"`,
		`--- FAIL: TestRunCasesReportsMismatches/map/too_few_wanted_intents`,
		`the case wants 0 intents for 1 entries`,
		`--- FAIL: TestRunCasesReportsMismatches/reconcile/unexpected_veto`,
		`got 1 decisions, want 0`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the output of the failing run lacks %q:\n%s", want, out)
		}
	}
}
