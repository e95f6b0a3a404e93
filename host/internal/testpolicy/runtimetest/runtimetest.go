// Package runtimetest is what the tests of the wasm and process runtimes
// (host/internal/wasmrt, host/internal/processrt) share: the test policy's
// config and the policy called as Go code, the domain, entries and
// mailboxes they send, and the checks that a runtime answers as the policy
// called directly does. Only tests import it.
package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/testpolicy"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
)

// Config is the test policy's config in the runtimes' tests.
var Config = map[string]any{"prefix": "Dr. "}

// Direct is the test policy called as Go code, configured with Config.
func Direct(t testing.TB) sdk.Policy {
	p := testpolicy.New()
	if err := p.Configure(Config); err != nil {
		t.Fatal(err)
	}
	return p
}

// Domain is the domain of the requests.
var Domain = sdk.Domain{Name: "example.com", AliasDomains: []string{"example.org"}, Groups: []string{"Sales", "All Staff"}}

// NormMap passes r through the wire, which does not tell nil from empty
// slices: compare a direct answer with a runtime's through it.
func NormMap(r sdk.MapResponse) sdk.MapResponse {
	return abi.MapResponseFromProto(abi.MapResponseToProto(r))
}

// NormReconcile is NormMap for a Reconcile response.
func NormReconcile(r sdk.ReconcileResponse) sdk.ReconcileResponse {
	return abi.ReconcileResponseFromProto(abi.ReconcileResponseToProto(r))
}

// Entries makes n AD-like entries with 10 attributes each: users (some
// disabled, some with foreign addresses), groups and public folders. Both
// runtimes' benchmarks map them, so that they compare.
func Entries(n int) []sdk.Entry {
	es := make([]sdk.Entry, n)
	for i := range es {
		uac := "512"
		if i%17 == 0 {
			uac = "514"
		}
		classes := []string{"top", "person", "organizationalPerson", "user"}
		switch i % 50 {
		case 1:
			classes = []string{"top", "group"}
		case 2:
			classes = []string{"top", "publicFolder"}
		}
		es[i] = sdk.Entry{
			ID: fmt.Sprintf("%08x-4f89-11d3-9a0c-0305e82c3301", i),
			DN: fmt.Sprintf("CN=User %d,OU=People,DC=example,DC=com", i),
			Attributes: map[string][]string{
				"objectclass":        classes,
				"cn":                 {[]string{"Sales", "All Staff", "Unmatched"}[i%3]},
				"mail":               {fmt.Sprintf("user%d@example.com", i)},
				"proxyaddresses":     {fmt.Sprintf("SMTP:User%d@example.com", i), fmt.Sprintf("smtp:u%d@example.org", i), fmt.Sprintf("smtp:u%d@elsewhere.test", i), "X500:/o=Example/ou=Exchange/cn=Recipients/cn=u" + fmt.Sprint(i)},
				"displayname":        {fmt.Sprintf("User Number %d", i)},
				"memberof":           {"CN=Sales,OU=Groups,DC=example,DC=com", "CN=All Staff,OU=Groups,DC=example,DC=com"},
				"member":             {"CN=User 1,OU=People,DC=example,DC=com", "CN=User 2,OU=People,DC=example,DC=com"},
				"useraccountcontrol": {uac},
				"samaccountname":     {fmt.Sprintf("user%d", i)},
				"objectguid":         {"4AQlP4lP0xGaDAMF6CwzAQ=="},
			},
		}
	}
	return es
}

// Mailbox makes a mailbox of source, for the changes of a Reconcile
// request.
func Mailbox(id int64, source string) *sdk.Mailbox {
	return &sdk.Mailbox{ID: id, DirID: fmt.Sprint("guid-", id), DN: "CN=X,DC=example,DC=com", Kind: sdk.KindUser,
		Primary: fmt.Sprintf("m%d@example.com", id), Aliases: []string{"alias@example.com"}, DisplayName: "M", Source: source, Groups: []string{"Sales"}}
}

// CheckInfo checks that rt gives the direct policy's Info.
func CheckInfo(t *testing.T, rt policy.Runtime) {
	t.Helper()
	if got, want := rt.Info(), Direct(t).Info(); !reflect.DeepEqual(got, want) {
		t.Errorf("Info() = %+v, want %+v", got, want)
	}
}

// CheckFilter checks that rt's Filter answers good and bad filters as the
// direct policy does, an invalid one with the *sdk.FilterError behind an
// error that starts with label (`policy "test" (file)`) and the stage.
func CheckFilter(t *testing.T, rt policy.Runtime, label string) {
	t.Helper()
	p := Direct(t)
	for _, f := range []string{"(objectClass=user)", "  (|(a=1)(b=2))  ", "  (&(a=b)(c=d))  ", "", "cn=x", "(a=1))", "((a=1)", "(cn=Ü)"} {
		got, gotErr := rt.Filter(context.Background(), sdk.FilterRequest{Filter: f})
		want, wantErr := p.Filter(sdk.FilterRequest{Filter: f})
		if got != want {
			t.Errorf("Filter(%q) = %+v, want %+v", f, got, want)
		}
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("Filter(%q) error %v, want %v", f, gotErr, wantErr)
		}
		if wantErr != nil {
			var fe *sdk.FilterError
			if !errors.As(gotErr, &fe) || !reflect.DeepEqual(fe, wantErr) {
				t.Errorf("Filter(%q) error %v (%T), want the *sdk.FilterError %v", f, gotErr, gotErr, wantErr)
			}
			if want := label + ": filter: " + wantErr.Error(); gotErr.Error() != want {
				t.Errorf("Filter(%q) error %q, want %q", f, gotErr, want)
			}
		}
	}
}

// CheckMap checks that a runtime maps as the direct policy does: empty
// requests, odd entries, and entries in batches smaller than, equal to and
// of the default size (defaultBatch). load loads the runtime (name, e.g.
// "wasm", in failures) with a Map batch size (0: the default).
func CheckMap(t *testing.T, name string, defaultBatch int, load func(t *testing.T, batch int) policy.Runtime) {
	for _, tc := range []struct {
		name  string
		batch int
		req   sdk.MapRequest
	}{
		{"empty", 0, sdk.MapRequest{Domain: Domain}},
		{"zero", 0, sdk.MapRequest{}},
		{"few", 0, sdk.MapRequest{Domain: Domain, Entries: Entries(60)}},
		{"odd entries", 0, sdk.MapRequest{Domain: Domain, Entries: []sdk.Entry{
			{},
			{ID: "mail only", Attributes: map[string][]string{"mail": {"A@Example.com", "b@example.org", "c@other.test"}}},
			{ID: "no address", Attributes: map[string][]string{"displayname": {"Nobody"}}},
		}}},
		{"small batches", 7, sdk.MapRequest{Domain: Domain, Entries: Entries(50)}},
		{"batch = entries", 50, sdk.MapRequest{Domain: Domain, Entries: Entries(50)}},
		{"default batches", 0, sdk.MapRequest{Domain: Domain, Entries: Entries(defaultBatch*2 + 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := load(t, tc.batch)
			got, err := rt.Map(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Direct(t).Map(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if want = NormMap(want); !reflect.DeepEqual(got, want) {
				t.Errorf("%s and direct Map differ:\n%+v\n%+v", name, got, want)
			}
		})
	}
}

// CheckReconcile checks that rt (name in failures) reconciles as the
// direct policy does.
func CheckReconcile(t *testing.T, name string, rt policy.Runtime) {
	p := Direct(t)
	for _, req := range []sdk.ReconcileRequest{
		{},
		{Domain: Domain, LDAPMailboxes: 100, Changes: []sdk.Change{
			{Kind: sdk.ChangeCreate, After: Mailbox(0, sdk.SourceLDAP), Conflicts: []sdk.Conflict{{Address: "x@example.com", MailboxID: 4, Primary: "y@example.com", Source: sdk.SourceManual}}},
			{Kind: sdk.ChangeDelete, Before: Mailbox(1, sdk.SourceManual)},
			{Kind: sdk.ChangeDelete, Before: Mailbox(2, sdk.SourceLDAP)},
			{Kind: sdk.ChangeAddMember, Before: Mailbox(3, sdk.SourceLDAP), After: Mailbox(3, sdk.SourceLDAP), Group: "Blocked"},
			{Kind: sdk.ChangeUpdate, Before: Mailbox(5, sdk.SourceLDAP), After: Mailbox(5, sdk.SourceLDAP)},
		}},
		{Domain: Domain, LDAPMailboxes: 2, Changes: []sdk.Change{{Kind: sdk.ChangeDelete, Before: Mailbox(9, sdk.SourceLDAP)}}},
	} {
		got, err := rt.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want, err := p.Reconcile(req)
		if err != nil {
			t.Fatal(err)
		}
		if want = NormReconcile(want); !reflect.DeepEqual(got, want) {
			t.Errorf("%s and direct Reconcile differ:\n%+v\n%+v", name, got, want)
		}
	}
}

// Builtin is the test policy linked in, configured with Config: what the
// benchmarks compare a runtime with.
func Builtin(b *testing.B) policy.Runtime {
	rt, err := policy.Builtin(testpolicy.New(), Config)
	if err != nil {
		b.Fatal(err)
	}
	return rt
}

// MapEntries maps es with rt, as a benchmark's round: in one Map call when
// goroutines is 0, else in Map calls of batch entries from that many
// goroutines, which take the next batch as they finish one.
func MapEntries(b *testing.B, rt policy.Runtime, es []sdk.Entry, goroutines, batch int) {
	if goroutines == 0 {
		resp, err := rt.Map(context.Background(), sdk.MapRequest{Domain: Domain, Entries: es})
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.Intents) != len(es) {
			b.Fatalf("%d intents", len(resp.Intents))
		}
		return
	}
	var next, intents atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for {
				start := int(next.Add(int64(batch))) - batch
				if start >= len(es) {
					return
				}
				resp, err := rt.Map(context.Background(), sdk.MapRequest{Domain: Domain, Entries: es[start:min(start+batch, len(es))]})
				if err != nil {
					b.Error(err)
					return
				}
				intents.Add(int64(len(resp.Intents)))
			}
		})
	}
	wg.Wait()
	if int(intents.Load()) != len(es) {
		b.Fatalf("%d intents for %d entries", intents.Load(), len(es))
	}
}
