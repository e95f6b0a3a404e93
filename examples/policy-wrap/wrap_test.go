package wrap_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	wrap "github.com/dirsync/dirsync/examples/policy-wrap"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/policytest"
)

type attrs = map[string][]string

var domain = sdk.Domain{Name: "example.com", AliasDomains: []string{"example.org"}, Groups: []string{"Sales"}}

// configured returns the policy configured with cfg, as the host hands it
// over (numbers as float64).
func configured(t testing.TB, cfg map[string]any) *wrap.Policy {
	t.Helper()
	p := wrap.New()
	if err := p.Configure(cfg); err != nil {
		t.Fatalf("Configure(%v): %v", cfg, err)
	}
	return p
}

// adUser is an AD user entry with a displayName and a primary address.
func adUser(id, displayName string) sdk.Entry {
	a := attrs{
		"objectclass":    {"top", "person", "organizationalPerson", "user"},
		"samaccounttype": {"805306368"},
		"cn":             {id},
		"proxyaddresses": {"SMTP:" + id + "@example.com"},
	}
	if displayName != "" {
		a["displayname"] = []string{displayName}
	}
	return sdk.Entry{ID: id, DN: "CN=" + id + ",OU=Staff,DC=example,DC=com", Attributes: a}
}

func user(primary, display string) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: primary, DisplayName: display}}
}

// mapCase is a Map case of one entry.
func mapCase(name string, e sdk.Entry, want sdk.Intent) policytest.MapCase {
	return policytest.MapCase{Name: name, Request: sdk.MapRequest{Domain: domain, Entries: []sdk.Entry{e}}, Want: []sdk.Intent{want}}
}

const skipReason = "test account: matches skip_filter (displayName=Test*)"

// ownCases are the wrapper's own rules, for the default config. The runtimes
// test runs them against the wasm module and the plugin program too.
func ownCases() policytest.Cases {
	return policytest.Cases{
		Filter: []policytest.FilterCase{
			{Name: "the standard default", Filter: "", Want: "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"},
			{Name: "the standard check", Filter: "(|(cn=a)", Err: &sdk.FilterError{Position: 8, Reason: "unbalanced"}},
		},
		Map: []policytest.MapCase{
			mapCase("test user skipped", adUser("kiosk", "Test Kiosk"), sdk.Intent{Reason: skipReason}),
			mapCase("case ignored, as the directory does", adUser("printer", "TEST-Printer"), sdk.Intent{Reason: skipReason}),
			mapCase("insignificant space ignored", adUser("lab", "  Test  Lab"), sdk.Intent{Reason: skipReason}),
			mapCase("Test inside the name kept", adUser("winner", "Contest Winner"), user("winner@example.com", "Contest Winner")),
			mapCase("ordinary user kept", adUser("ann", "Ann Smith"), user("ann@example.com", "Ann Smith")),
			// The filter reads displayName; the standard policy's fallback
			// to cn for the display name does not make a user a test user.
			mapCase("no displayName: kept", adUser("Testuser", ""), user("testuser@example.com", "Testuser")),
			mapCase("group named Test kept", sdk.Entry{ID: "g", DN: "CN=Sales,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"group"}, "samaccounttype": {"268435456"}, "cn": {"Sales"}, "displayname": {"Test group"},
			}}, sdk.Intent{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "Sales", Target: "Sales"}}),
			mapCase("public folder named Test kept", sdk.Entry{ID: "pf", DN: "CN=Test,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"publicFolder"}, "displayname": {"Test folder"}, "mail": {"test@example.com"},
			}}, sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindPublicFolder, Primary: "test@example.com", DisplayName: "Test folder"}}),
			// A hold keeps the mailbox; turning it into a skip would delete it.
			mapCase("held test user stays held", func() sdk.Entry {
				e := adUser("bad", "Test Bad")
				e.Attributes["proxyaddresses"] = []string{"SMTP:not-an-address"}
				return e
			}(), sdk.Intent{Kind: sdk.IntentHold, Reason: "not a valid address",
				Skipped: []sdk.SkippedAddress{{Address: "not-an-address", Reason: "not a valid address"}}}),
			mapCase("skipped by the standard rules: its reason kept", sdk.Entry{ID: "ou", DN: "OU=Test,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"organizationalUnit"}, "displayname": {"Test OU"},
			}}, sdk.Intent{Reason: "organizationalUnit"}),
			{Name: "batch keeps order", Request: sdk.MapRequest{Domain: domain, Entries: []sdk.Entry{
				adUser("a", "Alice"), adUser("t1", "Test 1"), adUser("b", "Bob"), adUser("t2", "test 2"),
			}}, Want: []sdk.Intent{
				user("a@example.com", "Alice"), {Reason: skipReason}, user("b@example.com", "Bob"), {Reason: skipReason},
			}},
		},
		Reconcile: []policytest.ReconcileCase{
			// What a skip does to a mailbox an earlier sync made: the host
			// proposes its delete, and the standard rules accept it.
			{Name: "delete of a skipped entry's mailbox accepted", Request: sdk.ReconcileRequest{Domain: domain, LDAPMailboxes: 10, Changes: []sdk.Change{
				{Kind: sdk.ChangeDelete, Before: &sdk.Mailbox{ID: 4, DirID: "kiosk", Primary: "kiosk@example.com", DisplayName: "Test Kiosk", Kind: sdk.KindUser, Source: sdk.SourceLDAP}},
			}}},
			{Name: "standard conflict veto", Request: sdk.ReconcileRequest{Domain: domain, Changes: []sdk.Change{
				{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{Primary: "john@example.com", Kind: sdk.KindUser, Source: sdk.SourceLDAP},
					Conflicts: []sdk.Conflict{{Address: "john@example.com", MailboxID: 12, Primary: "john@example.com", Source: sdk.SourceManual}}},
			}}, Want: []sdk.Decision{{Index: 0, Action: sdk.Veto, Reason: "conflict: john@example.com belongs to manual mailbox john@example.com"}}},
		},
	}
}

// TestRules runs the wrapper's own cases against the linked-in policy.
func TestRules(t *testing.T) {
	policytest.RunCases(t, configured(t, nil), ownCases())
}

// TestStandardRulesKept runs the conformance kit's standard cases: none of
// their entries is a test account, so the wrapper must decide exactly as
// the standard policy.
func TestStandardRulesKept(t *testing.T) {
	policytest.Run(t, wrap.New())
}

// TestConfig checks the wrapper's key, the keys it passes on, and the
// errors, which name the key.
func TestConfig(t *testing.T) {
	t.Run("custom filter", func(t *testing.T) {
		p := configured(t, map[string]any{"skip_filter": "(|(title=Test Account)(sAMAccountName=svc-*))", "exclude_disabled": true})
		policytest.RunCases(t, p, policytest.Cases{Map: []policytest.MapCase{
			mapCase("title matches", func() sdk.Entry { e := adUser("x", "X"); e.Attributes["title"] = []string{"test account"}; return e }(),
				sdk.Intent{Reason: "matches skip_filter (|(title=Test Account)(sAMAccountName=svc-*))"}),
			mapCase("displayName no longer matters", adUser("t", "Test T"), user("t@example.com", "Test T")),
			mapCase("standard key passed on", func() sdk.Entry {
				e := adUser("d", "D")
				e.Attributes["useraccountcontrol"] = []string{"514"}
				return e
			}(), sdk.Intent{Reason: "exclude_disabled is on"}),
		}})
		info := p.Info()
		for _, a := range []string{"title", "samaccountname", "displayname", "proxyaddresses"} {
			if !slices.Contains(info.Attributes, a) {
				t.Errorf("Info().Attributes = %v, without %q", info.Attributes, a)
			}
		}
		if n := len(info.Attributes); n != len(slices.Compact(slices.Sorted(slices.Values(info.Attributes)))) {
			t.Errorf("Info().Attributes has duplicates: %v", info.Attributes)
		}
	})
	t.Run("empty filter skips none", func(t *testing.T) {
		p := configured(t, map[string]any{"skip_filter": ""})
		policytest.RunCases(t, p, policytest.Cases{Map: []policytest.MapCase{
			mapCase("test user kept", adUser("kiosk", "Test Kiosk"), user("kiosk@example.com", "Test Kiosk")),
		}})
	})
	if info := wrap.New().Info(); info.Name != wrap.Name || info.Version != wrap.Version {
		t.Errorf("Info() = %+v", info)
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		want string
	}{
		{"not a string", map[string]any{"skip_filter": true}, `wrap policy: config key "skip_filter" must be a string, got the bool true`},
		{"not a filter", map[string]any{"skip_filter": "displayName=Test*"}, `wrap policy: config key "skip_filter" is not a valid filter: invalid filter at position 0: a filter must be wrapped in parentheses`},
		{"standard key of the wrong type", map[string]any{"nested_groups": "yes"}, `wrap policy: standard policy: config key "nested_groups" must be a bool (true or false), got the string "yes"`},
		{"unknown key", map[string]any{"skip_filtr": "(cn=x)"}, `wrap policy: standard policy: config key "skip_filtr" is unknown`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := configured(t, map[string]any{"skip_filter": "(cn=kept)", "exclude_disabled": true})
			err := p.Configure(tc.cfg)
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Configure(%v) = %v, want %s…", tc.cfg, err, tc.want)
			}
			// A refused table changes nothing, in the wrapper or the standard policy.
			policytest.RunCases(t, p, policytest.Cases{Map: []policytest.MapCase{
				mapCase("old skip filter", adUser("kept", ""), sdk.Intent{Reason: "(cn=kept)"}),
				mapCase("old standard setting", func() sdk.Entry {
					e := adUser("d", "D")
					e.Attributes["useraccountcontrol"] = []string{"514"}
					return e
				}(), sdk.Intent{Reason: "exclude_disabled is on"}),
			}})
		})
	}
}
