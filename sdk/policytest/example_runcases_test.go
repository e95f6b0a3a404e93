package policytest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/filter"
	"github.com/dirsync/dirsync/sdk/policytest"
)

// mailOnly is a small policy of an author's own: an entry with a mail value
// in the domain becomes a user mailbox, anything else is skipped, and
// deletes are vetoed.
type mailOnly struct{}

func (mailOnly) Info() sdk.Info {
	return sdk.Info{Name: "mailonly", Version: "1.0.0", ABIMajor: sdk.ABIMajor, ABIMinor: sdk.ABIMinor,
		Attributes: []string{"mail", "displayname"}}
}

func (mailOnly) Configure(map[string]any) error { return nil }

func (mailOnly) Filter(req sdk.FilterRequest) (sdk.FilterResponse, error) {
	if strings.Trim(req.Filter, " \t\r\n") == "" {
		return sdk.FilterResponse{Filter: "(mail=*)"}, nil
	}
	f, err := filter.Parse(req.Filter)
	if err != nil {
		return sdk.FilterResponse{}, err
	}
	return sdk.FilterResponse{Filter: f.String()}, nil
}

func (mailOnly) Map(req sdk.MapRequest) (sdk.MapResponse, error) {
	out := make([]sdk.Intent, len(req.Entries))
	for i, e := range req.Entries {
		addr := strings.ToLower(e.Get("mail"))
		if !strings.HasSuffix(addr, "@"+req.Domain.Name) {
			out[i] = sdk.Intent{Reason: "no mail address in " + req.Domain.Name}
			continue
		}
		out[i] = sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{
			Kind: sdk.KindUser, Primary: addr, DisplayName: e.Get("displayname")}}
	}
	return sdk.MapResponse{Intents: out}, nil
}

func (mailOnly) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	var ds []sdk.Decision
	for i, c := range req.Changes {
		if c.Kind == sdk.ChangeDelete {
			ds = append(ds, sdk.Decision{Index: i, Action: sdk.Veto, Reason: "this policy never deletes " + c.Before.Primary})
		}
	}
	return sdk.ReconcileResponse{Decisions: ds}, nil
}

// mailOnlyCases is the policy's table: one case per rule, kept as data.
// Reasons match when the policy's reason contains them.
func mailOnlyCases() policytest.Cases {
	domain := sdk.Domain{Name: "example.com"}
	return policytest.Cases{
		Filter: []policytest.FilterCase{
			{Name: "empty is the default", Filter: "", Want: "(mail=*)"},
			{Name: "normalized", Filter: " (& (mail=*) (cn=a) ) ", Want: "(&(mail=*)(cn=a))"},
			{Name: "unbalanced", Filter: "(|(mail=*)", Err: &sdk.FilterError{Position: 10, Reason: "unbalanced"}},
		},
		Map: []policytest.MapCase{
			{Name: "mail in the domain", Request: sdk.MapRequest{Domain: domain, Entries: []sdk.Entry{
				{ID: "1", Attributes: map[string][]string{"mail": {"Ann@Example.com"}, "displayname": {"Ann"}}},
				{ID: "2", Attributes: map[string][]string{"mail": {"bob@example.org"}}},
			}}, Want: []sdk.Intent{
				{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "ann@example.com", DisplayName: "Ann"}},
				{Kind: sdk.IntentSkip, Reason: "no mail address"},
			}},
		},
		Reconcile: []policytest.ReconcileCase{
			{Name: "deletes vetoed", Request: sdk.ReconcileRequest{Domain: domain, Changes: []sdk.Change{
				{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{Primary: "new@example.com", Source: sdk.SourceLDAP}},
				{Kind: sdk.ChangeDelete, Before: &sdk.Mailbox{ID: 7, Primary: "gone@example.com", Source: sdk.SourceLDAP}},
			}}, Want: []sdk.Decision{{Index: 1, Action: sdk.Veto, Reason: "never deletes gone@example.com"}}},
		},
	}
}

// testMailOnly is the whole of the author's test: in their _test.go file it
// is func TestMailOnly(t *testing.T).
func testMailOnly(t *testing.T) {
	policytest.RunCases(t, mailOnly{}, mailOnlyCases())
}

// RunCases runs each case of the table as a subtest, named after its stage
// and its name, as `go test -v` lists them.
func ExampleRunCases() {
	cs := mailOnlyCases()
	for _, c := range cs.Filter {
		fmt.Println("filter/" + c.Name)
	}
	for _, c := range cs.Map {
		fmt.Println("map/" + c.Name)
	}
	for _, c := range cs.Reconcile {
		fmt.Println("reconcile/" + c.Name)
	}
	// Output:
	// filter/empty is the default
	// filter/normalized
	// filter/unbalanced
	// map/mail in the domain
	// reconcile/deletes vetoed
}
