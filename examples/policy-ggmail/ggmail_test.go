package ggmail_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	ggmail "github.com/dirsync/dirsync/examples/policy-ggmail"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/policytest"
)

type attrs = map[string][]string

// domain is the gateway domain of the tests: one alias domain and the
// gateway groups an operator made by hand.
var domain = sdk.Domain{
	Name:         "example.com",
	AliasDomains: []string{"example.org"},
	Groups:       []string{"Sales", "Support", "all staff", "Dup", "DUP"},
}

// configured returns the policy configured with cfg, as the host hands it
// over (numbers as float64).
func configured(t testing.TB, cfg map[string]any) *ggmail.Policy {
	t.Helper()
	p := ggmail.New()
	if err := p.Configure(cfg); err != nil {
		t.Fatalf("Configure(%v): %v", cfg, err)
	}
	return p
}

// TestRunABI runs the conformance kit's ABI cases: the standard rules'
// cases do not apply to this policy, but every policy must answer one
// intent per entry, a reason per skip, decisions on existing changes only,
// and the same answer to the same request.
func TestRunABI(t *testing.T) {
	policytest.RunABI(t, configured(t, nil))
	t.Run("configured", func(t *testing.T) {
		policytest.RunABI(t, configured(t, map[string]any{"group_prefix": "Mail_", "exclude_disabled": true, "delete_missing": false}))
	})
}

func TestInfo(t *testing.T) {
	info := ggmail.New().Info()
	if info.Name != "ggmail" || info.Version == "" || info.ABIMajor != sdk.ABIMajor || info.ABIMinor != sdk.ABIMinor {
		t.Errorf("Info() = %+v", info)
	}
	for _, a := range info.Attributes {
		if a == "proxyaddresses" {
			t.Error("Info().Attributes asks for proxyaddresses, which the policy ignores")
		}
	}
	info.Attributes[0] = "changed"
	if ggmail.New().Info().Attributes[0] == "changed" {
		t.Error("Info().Attributes shares its slice with the policy")
	}
}

func TestConfigure(t *testing.T) {
	defaults := ggmail.DefaultSettings()
	for _, tc := range []struct {
		name    string
		cfg     map[string]any
		want    ggmail.Settings
		wantErr string // a substring of the error; "" for success
	}{
		{name: "nil", cfg: nil, want: defaults},
		{name: "empty table", cfg: map[string]any{}, want: defaults},
		{name: "every key", cfg: map[string]any{"group_prefix": "Mail-", "exclude_disabled": true, "delete_missing": false},
			want: ggmail.Settings{GroupPrefix: "Mail-", ExcludeDisabled: true, DeleteMissing: false}},
		{name: "prefix with filter specials", cfg: map[string]any{"group_prefix": "(Mail*)"},
			want: ggmail.Settings{GroupPrefix: "(Mail*)", DeleteMissing: true}},
		{name: "unknown key", cfg: map[string]any{"group_prefx": "GG-"},
			wantErr: `config key "group_prefx" is unknown (known keys: delete_missing, exclude_disabled, group_prefix)`},
		{name: "prefix not a string", cfg: map[string]any{"group_prefix": float64(1)},
			wantErr: `config key "group_prefix" must be a string, got the number 1`},
		{name: "prefix a list", cfg: map[string]any{"group_prefix": []any{"GG-"}},
			wantErr: `config key "group_prefix" must be a string, got a list`},
		{name: "empty prefix", cfg: map[string]any{"group_prefix": ""},
			wantErr: `config key "group_prefix" must not be empty`},
		{name: "blank prefix", cfg: map[string]any{"group_prefix": "  "},
			wantErr: `config key "group_prefix" must not be empty`},
		{name: "prefix with trailing blank", cfg: map[string]any{"group_prefix": "GG-Mail- "},
			wantErr: `config key "group_prefix" is "GG-Mail- ": white space at either end`},
		{name: "bool as string", cfg: map[string]any{"exclude_disabled": "yes"},
			wantErr: `config key "exclude_disabled" must be a bool (true or false), got the string "yes"`},
		{name: "bool as number", cfg: map[string]any{"delete_missing": float64(0)},
			wantErr: `config key "delete_missing" must be a bool (true or false), got the number 0`},
		{name: "null value", cfg: map[string]any{"delete_missing": nil},
			wantErr: `config key "delete_missing" must be a bool (true or false), got nothing`},
		{name: "first bad key in sorted order", cfg: map[string]any{"zz": 1, "exclude_disabled": "no"},
			wantErr: `"exclude_disabled"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ggmail.New()
			err := p.Configure(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Configure(%v) = %v, want an error containing %q", tc.cfg, err, tc.wantErr)
				}
				if p.Settings() != defaults {
					t.Errorf("a refused config changed the settings to %+v", p.Settings())
				}
				return
			}
			if err != nil {
				t.Fatalf("Configure(%v): %v", tc.cfg, err)
			}
			if p.Settings() != tc.want {
				t.Errorf("settings %+v, want %+v", p.Settings(), tc.want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	const def = "(|(sAMAccountType=805306368)(objectClass=publicFolder)(&(|(sAMAccountType=268435456)(sAMAccountType=268435457))(cn=GG-Mail-*)))"
	for _, tc := range []struct {
		name   string
		cfg    map[string]any
		filter string
		want   string // the normalized filter, for a valid one
		pos    int    // the error position, for an invalid one
		reason string // a substring of the error's reason; "" for a valid filter
	}{
		{name: "empty is the default", filter: "", want: def},
		{name: "blank is the default", filter: " \t\n", want: def},
		{name: "default follows the prefix", cfg: map[string]any{"group_prefix": "Mail(*)\\"}, filter: "",
			want: strings.Replace(def, "GG-Mail-", `Mail\28\2a\29\5c`, 1)},
		{name: "simple", filter: "(cn=Alice)", want: "(cn=Alice)"},
		{name: "blanks around", filter: "  (cn=Alice)\n", want: "(cn=Alice)"},
		{name: "blanks between components dropped", filter: "(&\n  (cn=Alice)\n  (mail=*)\n)", want: "(&(cn=Alice)(mail=*))"},
		{name: "and or not", filter: "(&(objectClass=user)(|(mail=*)(!(cn=x))))", want: "(&(objectClass=user)(|(mail=*)(!(cn=x))))"},
		{name: "substrings", filter: "(cn=GG-Mail-*a*b)", want: "(cn=GG-Mail-*a*b)"},
		{name: "comparisons", filter: "(&(a~=b)(c>=1)(d<=2))", want: "(&(a~=b)(c>=1)(d<=2))"},
		{name: "escapes", filter: `(cn=a\2a\28b\29\5c)`, want: `(cn=a\2a\28b\29\5c)`},
		{name: "options and oid", filter: "(&(cn;lang-de=x)(2.5.4.3=y))", want: "(&(cn;lang-de=x)(2.5.4.3=y))"},
		{name: "extensible", filter: "(&(memberOf:1.2.840.113556.1.4.1941:=cn=x)(cn:dn:=y)(:caseExactMatch:=z)(ou:=w))",
			want: "(&(memberOf:1.2.840.113556.1.4.1941:=cn=x)(cn:dn:=y)(:caseExactMatch:=z)(ou:=w))"},
		{name: "empty value", filter: "(description=)", want: "(description=)"},
		{name: "non-ASCII", filter: "(displayName=Zoë 山田)", want: "(displayName=Zoë 山田)"},

		{name: "no parentheses", filter: "cn=x", pos: 0, reason: "wrapped in parentheses"},
		{name: "position counts leading blanks", filter: "  cn=x", pos: 2, reason: "wrapped in parentheses"},
		{name: "empty and", filter: "(&)", pos: 2, reason: "'&' must hold at least one filter"},
		{name: "empty or", filter: "(|)", pos: 2, reason: "'|' must hold at least one filter"},
		{name: "unbalanced", filter: "(&(cn=x)", pos: 8, reason: "unbalanced parentheses"},
		{name: "trailing filter", filter: "(cn=x)(cn=y)", pos: 6, reason: "join several filters"},
		{name: "trailing text", filter: "(cn=x)y", pos: 6, reason: "trailing characters"},
		{name: "empty attribute", filter: "(=x)", pos: 1, reason: "empty attribute"},
		{name: "bad attribute", filter: "(c_n=x)", pos: 2, reason: "invalid character '_'"},
		{name: "attribute starts with digit", filter: "(1cn=x)", pos: 2, reason: "numeric OID"},
		{name: "one-number oid", filter: "(2=x)", pos: 1, reason: "at least two numbers"},
		{name: "leading zero oid", filter: "(2.05.4=x)", pos: 3, reason: "leading zero"},
		{name: "empty option", filter: "(cn;=x)", pos: 4, reason: "empty attribute option"},
		{name: "tilde without equals", filter: "(cn~x)", pos: 4, reason: "expected '=' after '~'"},
		{name: "unescaped paren", filter: "(cn=Müller(", pos: 11, reason: "unescaped '('"},
		{name: "star in approx", filter: "(cn~=a*)", pos: 6, reason: "unescaped '*'"},
		{name: "double star", filter: "(cn=a**)", pos: 6, reason: "two '*' in a row"},
		{name: "bad escape", filter: `(cn=a\2x)`, pos: 5, reason: "invalid escape"},
		{name: "short escape", filter: `(cn=a\2`, pos: 5, reason: "invalid escape"},
		{name: "nul byte", filter: "(cn=a\x00)", pos: 5, reason: "NUL"},
		{name: "invalid UTF-8", filter: "(cn=a\xff)", pos: 5, reason: "invalid UTF-8"},
		{name: "extensible without attribute or rule", filter: "(:=x)", pos: 1, reason: "needs a matching rule"},
		{name: "extensible without :=", filter: "(cn:rule=x)", pos: 8, reason: "expected ':' in extensible match"},
		{name: "too deep", filter: strings.Repeat("(!", 200) + "(cn=x)" + strings.Repeat(")", 200), pos: 256, reason: "nested deeper than 128 levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := configured(t, tc.cfg).Filter(sdk.FilterRequest{Filter: tc.filter})
			if tc.reason == "" {
				if err != nil || got.Filter != tc.want {
					t.Fatalf("Filter(%q) = %q, %v; want %q", tc.filter, got.Filter, err, tc.want)
				}
				return
			}
			var fe *sdk.FilterError
			if !errors.As(err, &fe) {
				t.Fatalf("Filter(%q) = %q, %v; want a *sdk.FilterError", tc.filter, got.Filter, err)
			}
			if fe.Position != tc.pos || !strings.Contains(fe.Reason, tc.reason) {
				t.Errorf("Filter(%q): error at %d: %s; want position %d, reason containing %q", tc.filter, fe.Position, fe.Reason, tc.pos, tc.reason)
			}
		})
	}
}

// Directory entries of the Map tests.

func user(id string, mail ...string) sdk.Entry {
	return sdk.Entry{ID: id, DN: "CN=" + id + ",OU=Staff,DC=example,DC=com", Attributes: attrs{
		"objectclass":    {"top", "person", "organizationalPerson", "user"},
		"samaccounttype": {"805306368"},
		"cn":             {id},
		"mail":           mail,
	}}
}

func group(name string, members ...string) sdk.Entry {
	return sdk.Entry{ID: "g-" + name, DN: "CN=" + name + ",OU=Groups,DC=example,DC=com", Attributes: attrs{
		"objectclass":    {"top", "group"},
		"samaccounttype": {"268435456"},
		"cn":             {name},
		"member":         members,
	}}
}

func with(e sdk.Entry, more attrs) sdk.Entry {
	a := attrs{}
	for k, v := range e.Attributes {
		a[k] = v
	}
	for k, v := range more {
		a[k] = v
	}
	e.Attributes = a
	return e
}

func mailbox(primary, display string, aliases ...string) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{
		Kind: sdk.KindUser, Primary: primary, Aliases: aliases, DisplayName: display}}
}

func target(name, target string, members ...string) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: name, Target: target, Members: members}}
}

func skipped(reason string, addrs ...sdk.SkippedAddress) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentSkip, Reason: reason, Skipped: addrs}
}

func outside(addr string) sdk.SkippedAddress {
	return sdk.SkippedAddress{Address: addr, Reason: "outside domain example.com, example.org"}
}

func TestMap(t *testing.T) {
	const alice = "CN=alice,OU=Staff,DC=example,DC=com"
	for _, tc := range []struct {
		name  string
		cfg   map[string]any
		entry sdk.Entry
		want  sdk.Intent
	}{
		// Addresses: mail only.
		{name: "mail gives primary and aliases", entry: user("alice", "Alice@Example.com", "a.anders@example.org", "aa@example.com"),
			want: mailbox("alice@example.com", "alice", "a.anders@example.org", "aa@example.com")},
		{name: "proxyAddresses ignored", entry: with(user("bob", "bob@example.com"), attrs{"proxyaddresses": {"SMTP:robert@example.com", "smtp:b@example.com"}}),
			want: mailbox("bob@example.com", "bob")},
		{name: "duplicates and the primary dropped from aliases", entry: user("c", "c@example.com", "x@example.com", "C@example.com", "x@example.com"),
			want: mailbox("c@example.com", "c", "x@example.com")},
		{name: "address outside the domain skipped", entry: user("d", "d@example.com", "d@other.net"),
			want: with2(mailbox("d@example.com", "d"), outside("d@other.net"))},
		{name: "first address outside: the next is primary", entry: user("e", "e@other.net", "e@example.org", "e2@example.com"),
			want: with2(mailbox("e@example.org", "e", "e2@example.com"), outside("e@other.net"))},
		{name: "invalid address skipped", entry: user("f", "not an address", "f@example.com"),
			want: with2(mailbox("f@example.com", "f"), sdk.SkippedAddress{Address: "not an address", Reason: "not a valid address"})},
		{name: "no mail", entry: user("g"), want: skipped("no mail address")},
		{name: "no mail in the domain", entry: user("h", "h@other.net"),
			want: skipped("no mail address in example.com, example.org", outside("h@other.net"))},
		{name: "display name", entry: with(user("i", "i@example.com"), attrs{"displayname": {"Ivan Ito"}}),
			want: mailbox("i@example.com", "Ivan Ito")},
		{name: "memberOf kept", entry: with(user("j", "j@example.com"), attrs{"memberof": {"CN=GG-Mail-Sales,OU=Groups,DC=example,DC=com"}}),
			want: sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "j@example.com", DisplayName: "j",
				MemberOf: []string{"CN=GG-Mail-Sales,OU=Groups,DC=example,DC=com"}}}},
		{name: "public folder", entry: sdk.Entry{ID: "pf", DN: "CN=Support Inbox,DC=example,DC=com", Attributes: attrs{
			"objectclass": {"top", "publicFolder"}, "cn": {"Support Inbox"}, "mail": {"support@example.com"}}},
			want: sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindPublicFolder, Primary: "support@example.com", DisplayName: "Support Inbox"}}},
		{name: "inetOrgPerson without sAMAccountType", entry: sdk.Entry{ID: "k", DN: "uid=k,dc=example,dc=com", Attributes: attrs{
			"objectclass": {"inetOrgPerson"}, "cn": {"K"}, "mail": {"k@example.com"}}},
			want: mailbox("k@example.com", "K")},

		// Disabled accounts.
		{name: "disabled kept by default", entry: with(user("l", "l@example.com"), attrs{"useraccountcontrol": {"514"}}),
			want: mailbox("l@example.com", "l")},
		{name: "disabled skipped with exclude_disabled", cfg: map[string]any{"exclude_disabled": true},
			entry: with(user("l", "l@example.com"), attrs{"useraccountcontrol": {"514"}}),
			want:  skipped("account disabled (userAccountControl 514)")},
		{name: "enabled kept with exclude_disabled", cfg: map[string]any{"exclude_disabled": true},
			entry: with(user("m", "m@example.com"), attrs{"useraccountcontrol": {"512"}}),
			want:  mailbox("m@example.com", "m")},

		// Groups.
		{name: "prefixed group", entry: group("GG-Mail-Sales", alice), want: target("GG-Mail-Sales", "Sales", alice)},
		{name: "rest matched case-insensitively", entry: group("GG-Mail-SUPPORT"), want: target("GG-Mail-SUPPORT", "Support")},
		{name: "gateway spelling kept", entry: group("GG-Mail-All Staff"), want: target("GG-Mail-All Staff", "all staff")},
		{name: "prefix matched case-insensitively", entry: group("gg-mail-sales"), want: target("gg-mail-sales", "Sales")},
		{name: "byte-equal wins over case", entry: group("GG-Mail-DUP"), want: target("GG-Mail-DUP", "DUP")},
		{name: "ambiguous case", entry: group("GG-Mail-dup"), want: skipped("matches the gateway groups Dup, DUP")},
		{name: "no gateway group: unmatched", entry: group("GG-Mail-Marketing"), want: target("GG-Mail-Marketing", "")},
		{name: "no prefix: unmatched", entry: group("Sales", alice), want: target("Sales", "", alice)},
		{name: "prefix only: unmatched", entry: group("GG-Mail-"), want: target("GG-Mail-", "")},
		{name: "custom prefix", cfg: map[string]any{"group_prefix": "Mail_"}, entry: group("Mail_Sales"), want: target("Mail_Sales", "Sales")},
		{name: "default prefix not used with a custom one", cfg: map[string]any{"group_prefix": "Mail_"},
			entry: group("GG-Mail-Sales"), want: target("GG-Mail-Sales", "")},
		{name: "distribution group", entry: with(group("GG-Mail-Sales"), attrs{"samaccounttype": {"268435457"}}),
			want: target("GG-Mail-Sales", "Sales")},
		{name: "group with mail is still a group", entry: with(group("GG-Mail-Support"), attrs{"mail": {"support-team@example.com"}}),
			want: target("GG-Mail-Support", "Support")},
		{name: "group without a name", entry: sdk.Entry{ID: "x", DN: "CN=x,DC=example,DC=com", Attributes: attrs{"objectclass": {"group"}}},
			want: skipped("group without a name")},

		// Other entries.
		{name: "computer", entry: sdk.Entry{ID: "pc", DN: "CN=PC1,DC=example,DC=com", Attributes: attrs{
			"objectclass": {"computer"}, "samaccounttype": {"805306369"}, "mail": {"pc@example.com"}}},
			want: skipped("sAMAccountType 805306369")},
		{name: "organizational unit", entry: sdk.Entry{ID: "ou", DN: "OU=Staff,DC=example,DC=com", Attributes: attrs{"objectclass": {"organizationalUnit"}}},
			want: skipped("objectClass organizationalUnit")},
		{name: "no attributes", entry: sdk.Entry{ID: "empty"}, want: skipped("no objectClass")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := configured(t, tc.cfg)
			resp, err := p.Map(sdk.MapRequest{Domain: domain, Entries: []sdk.Entry{tc.entry}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Intents) != 1 {
				t.Fatalf("got %d intents for 1 entry", len(resp.Intents))
			}
			if msg := diffIntent(tc.want, resp.Intents[0]); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func with2(in sdk.Intent, s ...sdk.SkippedAddress) sdk.Intent {
	in.Skipped = s
	return in
}

// diffIntent compares intents; reasons match when got's contains want's.
func diffIntent(want, got sdk.Intent) string {
	reasons := func(in *sdk.Intent) []string {
		r := []string{in.Reason}
		for _, s := range in.Skipped {
			r = append(r, s.Reason)
		}
		return r
	}
	wr, gr := reasons(&want), reasons(&got)
	ok := len(wr) == len(gr)
	for i := 0; ok && i < len(wr); i++ {
		ok = strings.Contains(gr[i], wr[i])
	}
	if want.Kind == sdk.IntentSkip && got.Reason == "" {
		ok = false
	}
	strip := func(in sdk.Intent) sdk.Intent {
		in.Reason = ""
		s := make([]sdk.SkippedAddress, len(in.Skipped))
		for i, x := range in.Skipped {
			s[i] = sdk.SkippedAddress{Address: x.Address}
		}
		in.Skipped = s
		return in
	}
	if !ok || !reflect.DeepEqual(strip(want), strip(got)) {
		return "got  " + show(got) + "\nwant " + show(want)
	}
	return ""
}

func show(in sdk.Intent) string {
	return fmt.Sprintf("{Kind:%d Reason:%q Mailbox:%+v Group:%+v Skipped:%+v}", in.Kind, in.Reason, deref(in.Mailbox), deref(in.Group), in.Skipped)
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestMapBatch(t *testing.T) {
	p := configured(t, nil)
	if resp, err := p.Map(sdk.MapRequest{}); err != nil || len(resp.Intents) != 0 {
		t.Errorf("empty request: %v, %v", resp, err)
	}
	if _, err := p.Map(sdk.MapRequest{Entries: []sdk.Entry{user("a", "a@example.com")}}); err == nil {
		t.Error("entries without a domain: no error")
	}
	entries := []sdk.Entry{user("a", "a@example.com"), group("GG-Mail-Sales"), {ID: "x"}}
	resp, err := p.Map(sdk.MapRequest{Domain: domain, Entries: entries})
	if err != nil {
		t.Fatal(err)
	}
	kinds := []sdk.IntentKind{resp.Intents[0].Kind, resp.Intents[1].Kind, resp.Intents[2].Kind}
	if !reflect.DeepEqual(kinds, []sdk.IntentKind{sdk.IntentMailbox, sdk.IntentGroup, sdk.IntentSkip}) {
		t.Errorf("intent kinds %v: not one per entry in order", kinds)
	}
}

func ldap(id int64, primary string, aliases ...string) *sdk.Mailbox {
	return &sdk.Mailbox{ID: id, DirID: "dir-" + primary, Kind: sdk.KindUser, Primary: primary, Aliases: aliases, Source: sdk.SourceLDAP}
}

func manual(id int64, primary string) *sdk.Mailbox {
	return &sdk.Mailbox{ID: id, Kind: sdk.KindUser, Primary: primary, Source: sdk.SourceManual}
}

func TestReconcile(t *testing.T) {
	conflict := func(addr string) sdk.Conflict {
		return sdk.Conflict{Address: addr, MailboxID: 9, Primary: addr, Source: sdk.SourceManual}
	}
	for _, tc := range []struct {
		name   string
		cfg    map[string]any
		change sdk.Change
		want   *sdk.Decision // nil: accepted as proposed
	}{
		{name: "create", change: sdk.Change{Kind: sdk.ChangeCreate, After: ldap(0, "a@example.com")}},
		{name: "create with a conflict", change: sdk.Change{Kind: sdk.ChangeCreate, After: ldap(0, "a@example.com"), Conflicts: []sdk.Conflict{conflict("a@example.com")}},
			want: &sdk.Decision{Action: sdk.Veto, Reason: "conflict: a@example.com belongs to manual mailbox a@example.com"}},
		{name: "update", change: sdk.Change{Kind: sdk.ChangeUpdate, Before: ldap(1, "a@example.com"), After: ldap(1, "b@example.com")}},
		{name: "update whose primary conflicts", change: sdk.Change{Kind: sdk.ChangeUpdate, Before: ldap(1, "a@example.com"), After: ldap(1, "b@example.com"),
			Conflicts: []sdk.Conflict{conflict("B@example.com")}},
			want: &sdk.Decision{Action: sdk.Veto, Reason: "conflict: B@example.com"}},
		{name: "update whose alias conflicts", change: sdk.Change{Kind: sdk.ChangeUpdate, Before: ldap(1, "a@example.com"),
			After: ldap(1, "a@example.com", "x@example.com", "y@example.com"), Conflicts: []sdk.Conflict{conflict("x@example.com")}},
			want: &sdk.Decision{Action: sdk.Replace, Reason: "conflicting aliases are left out",
				Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, Before: ldap(1, "a@example.com"), After: ldap(1, "a@example.com", "y@example.com")}}},
		{name: "delete", change: sdk.Change{Kind: sdk.ChangeDelete, Before: ldap(1, "a@example.com")}},
		{name: "delete with delete_missing off", cfg: map[string]any{"delete_missing": false},
			change: sdk.Change{Kind: sdk.ChangeDelete, Before: ldap(1, "a@example.com")},
			want:   &sdk.Decision{Action: sdk.Veto, Reason: "delete_missing is off"}},
		{name: "delete of a manual mailbox", change: sdk.Change{Kind: sdk.ChangeDelete, Before: manual(1, "p@example.com")},
			want: &sdk.Decision{Action: sdk.Veto, Reason: "never changes mailbox p@example.com of source manual"}},
		{name: "membership", change: sdk.Change{Kind: sdk.ChangeAddMember, Before: ldap(1, "a@example.com"), Group: "Sales"}},
		{name: "membership of a new mailbox", change: sdk.Change{Kind: sdk.ChangeAddMember, After: ldap(0, "a@example.com"), Group: "Sales"}},
		{name: "membership of a manual mailbox", change: sdk.Change{Kind: sdk.ChangeRemoveMember, Before: manual(1, "p@example.com"), Group: "Sales"},
			want: &sdk.Decision{Action: sdk.Veto, Reason: "source manual"}},
		{name: "adopt", change: sdk.Change{Kind: sdk.ChangeAdopt, Before: ldap(1, "a@example.com"), After: ldap(1, "a@example.com")},
			want: &sdk.Decision{Action: sdk.Veto, Reason: "never takes over"}},
		{name: "unknown kind", change: sdk.Change{Kind: 42, After: ldap(0, "a@example.com")},
			want: &sdk.Decision{Action: sdk.Veto, Reason: "unknown change kind unknown(42)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The change under test sits between two plain creates, so
			// that the decision's index is checked too.
			changes := []sdk.Change{
				{Kind: sdk.ChangeCreate, After: ldap(0, "first@example.com")},
				tc.change,
				{Kind: sdk.ChangeCreate, After: ldap(0, "last@example.com")},
			}
			resp, err := configured(t, tc.cfg).Reconcile(sdk.ReconcileRequest{Domain: domain, Changes: changes, LDAPMailboxes: 1})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if len(resp.Decisions) != 0 {
					t.Fatalf("decisions %+v, want none", resp.Decisions)
				}
				return
			}
			if len(resp.Decisions) != 1 {
				t.Fatalf("decisions %+v, want one", resp.Decisions)
			}
			d := resp.Decisions[0]
			if d.Index != 1 || d.Action != tc.want.Action || !strings.Contains(d.Reason, tc.want.Reason) {
				t.Errorf("decision {%d %d %q}, want {1 %d containing %q}", d.Index, d.Action, d.Reason, tc.want.Action, tc.want.Reason)
			}
			if !reflect.DeepEqual(d.Replacement, tc.want.Replacement) {
				t.Errorf("replacement %+v, want %+v", d.Replacement, tc.want.Replacement)
			}
		})
	}
}
