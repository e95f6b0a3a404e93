package standard_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/policytest"
)

type attrs = map[string][]string

var domain = sdk.Domain{
	Name:         "example.com",
	AliasDomains: []string{"example.org"},
	Groups:       []string{"Sales", "Engineering"},
}

func configured(t testing.TB, cfg map[string]any) sdk.Policy {
	t.Helper()
	p := standard.New()
	if err := p.Configure(cfg); err != nil {
		t.Fatalf("Configure(%v): %v", cfg, err)
	}
	return p
}

// TestConformance runs the shared conformance kit against the builtin policy.
func TestConformance(t *testing.T) {
	policytest.Run(t, standard.New())
}

// TestCompareWithItself checks that Compare accepts two equal policies.
func TestCompareWithItself(t *testing.T) {
	policytest.Compare(t, configured(t, nil), configured(t, nil))
}

func TestRunABI(t *testing.T) {
	policytest.RunABI(t, configured(t, nil))
}

func TestInfo(t *testing.T) {
	info := standard.New().Info()
	want := []string{"objectclass", "samaccounttype", "proxyaddresses", "mail", "displayname",
		"cn", "member", "uniquemember", "memberof", "useraccountcontrol", "samaccountname", "name"}
	if info.Name != "standard" || info.Version == "" || info.ABIMajor != sdk.ABIMajor || info.ABIMinor != sdk.ABIMinor {
		t.Errorf("Info() = %+v", info)
	}
	if !reflect.DeepEqual(info.Attributes, want) {
		t.Errorf("Attributes = %v, want %v", info.Attributes, want)
	}
	info.Attributes[0] = "changed"
	if standard.New().Info().Attributes[0] != "objectclass" {
		t.Error("Info().Attributes shares its slice with the policy")
	}
}

func TestConfigure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     map[string]any
		wantErr string // substring; "" for success
	}{
		{"nil", nil, ""},
		{"empty", map[string]any{}, ""},
		{"both known keys", map[string]any{"nested_groups": true, "exclude_disabled": false}, ""},
		{"unknown key", map[string]any{"nested_group": true}, `"nested_group"`},
		{"wrong type string", map[string]any{"exclude_disabled": "yes"}, `"exclude_disabled"`},
		{"wrong type number", map[string]any{"nested_groups": float64(1)}, `"nested_groups"`},
		{"nil value", map[string]any{"nested_groups": nil}, `"nested_groups"`},
		{"first bad key in sorted order", map[string]any{"zzz": 1, "aaa": 2}, `"aaa"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := standard.New().Configure(tc.cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestConfigureReplaces checks that a later Configure starts from defaults.
func TestConfigureReplaces(t *testing.T) {
	p := configured(t, map[string]any{"exclude_disabled": true})
	if err := p.Configure(nil); err != nil {
		t.Fatal(err)
	}
	e := user("d", "SMTP:d@example.com")
	e.Attributes["useraccountcontrol"] = []string{"514"}
	if got := mapOne(t, p, e); got.Kind != sdk.IntentMailbox {
		t.Errorf("after Configure(nil) a disabled user is %+v, want a mailbox", got)
	}
}

func TestFilter(t *testing.T) {
	p := configured(t, nil)
	for _, tc := range []struct {
		rule, name, filter string
		want               string // normalized filter, when valid
		pos                int    // error position, when invalid (want == "")
		reason             string // error reason substring
	}{
		{"R2", "default AD filter", standard.DefaultFilter, standard.DefaultFilter, 0, ""},
		{"R2", "empty filter is the default", "", standard.DefaultFilter, 0, ""},
		{"R2", "trimmed", "\t(cn=a) ", "(cn=a)", 0, ""},
		{"R2", "multi-line", "(|\n (cn=a)\n (cn=b)\n)", "(|(cn=a)(cn=b))", 0, ""},
		{"R2", "not", "(!(cn=a))", "(!(cn=a))", 0, ""},
		{"R2", "space after not", "(! (cn=a))", "(!(cn=a))", 0, ""},
		{"R2", "value kept as given", "(cn=  Ä b\\2A )", "(cn=  Ä b\\2A )", 0, ""},
		{"R2", "in chain rule", "(memberOf:1.2.840.113556.1.4.1941:=cn=x)", "(memberOf:1.2.840.113556.1.4.1941:=cn=x)", 0, ""},
		{"R2", "extensible dn and rule", "(sn:dn:2.4.6.8.10:=Barney Rubble)", "(sn:dn:2.4.6.8.10:=Barney Rubble)", 0, ""},
		{"R2", "equals in value", "(member=CN=a=b,DC=x)", "(member=CN=a=b,DC=x)", 0, ""},

		{"R2", "(|)", "(|)", "", 2, "'|' must hold at least one filter"},
		{"R2", "(&)", "(&)", "", 2, "'&' must hold at least one filter"},
		{"R2", "(& ) with space", "(& )", "", 3, "at least one filter"},
		{"R2", "no parentheses", "objectClass=user", "", 0, "wrapped in parentheses"},
		{"R2", "unbalanced open", "(&(cn=a)(cn=b)", "", 14, "unbalanced parentheses"},
		{"R2", "unbalanced close", "(&(cn=a)(cn=b)))", "", 15, "unbalanced parentheses"},
		{"R2", "unbalanced in the middle", "(&(cn=a(cn=b))", "", 7, "unescaped '('"},
		{"R2", "trailing garbage", "(cn=a)garbage", "", 6, "trailing"},
		{"R2", "bad escape", `(cn=\gg)`, "", 4, "invalid escape"},
		{"R2", "old style escape", `(cn=\*)`, "", 4, "invalid escape"},
		{"R2", "empty attribute", "(=x)", "", 1, "empty attribute"},
		{"R2", "empty attribute in and", "(&(cn=a)(>=x))", "", 9, "empty attribute"},
		{"R2", "bad character", "(c$n=a)", "", 2, "invalid character '$'"},
		{"R2", "leading zero OID", "(1.02=x)", "", 3, "leading zero"},
		{"R2", "one number OID", "(1=x)", "", 1, "at least two numbers"},
		{"R2", "OID trailing dot", "(1.2.=x)", "", 5, "empty number"},
		{"R2", "extensible eof", "(cn:", "", 4, "ends early"},
		{"R2", "not without parenthesis", "(!cn=a)", "", 2, "expected '(' after '!'"},
		{"R2", "and without parenthesis", "(&cn=a)", "", 2, "expected '(' after '&'"},
		{"R2", "star in extensible", "(cn:=a*)", "", 6, "unescaped '*'"},
		{"R2", "only close", ")", "", 0, "wrapped in parentheses"},
		{"R2", "position counts leading space", "   (|)", "", 5, "at least one"},
		{"R2", "end position counts trailing space", "(cn=a  ", "", 7, "unbalanced"},
	} {
		t.Run(tc.rule+"/"+tc.name, func(t *testing.T) {
			got, err := p.Filter(sdk.FilterRequest{Filter: tc.filter})
			if tc.want != "" {
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
				t.Fatalf("Filter(%q): %v; want position %d, reason containing %q", tc.filter, fe, tc.pos, tc.reason)
			}
		})
	}
}

// TestFilterFuzzish runs Filter on every prefix of some filters: it must
// never panic, and every error must point inside the filter (or at its end).
func TestFilterPrefixes(t *testing.T) {
	p := configured(t, nil)
	for _, f := range []string{
		standard.DefaultFilter,
		`(&(cn;lang-en:dn:caseExactMatch:=a\2a)(!(x~=y))(|(a>=1)(b<=2)(c=*)(d=a*b*c)))`,
	} {
		for i := range len(f) + 1 {
			_, err := p.Filter(sdk.FilterRequest{Filter: f[:i]})
			var fe *sdk.FilterError
			if errors.As(err, &fe) && (fe.Position < 0 || fe.Position > i) {
				t.Errorf("Filter(%q): position %d out of range", f[:i], fe.Position)
			}
			if err != nil && !errors.As(err, &fe) {
				t.Errorf("Filter(%q): %v is not a *sdk.FilterError", f[:i], err)
			}
		}
	}
}

func user(id string, proxy ...string) sdk.Entry {
	return sdk.Entry{ID: id, DN: "CN=" + id + ",DC=example,DC=com", Attributes: attrs{
		"objectclass":    {"top", "person", "organizationalPerson", "user"},
		"samaccounttype": {"805306368"},
		"cn":             {id},
		"proxyaddresses": proxy,
	}}
}

func mapOne(t testing.TB, p sdk.Policy, e sdk.Entry) sdk.Intent {
	t.Helper()
	resp, err := p.Map(sdk.MapRequest{Domain: domain, Entries: []sdk.Entry{e}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Intents) != 1 {
		t.Fatalf("got %d intents", len(resp.Intents))
	}
	return resp.Intents[0]
}

func TestMap(t *testing.T) {
	type want struct {
		kind     sdk.IntentKind
		reason   string // substring, for skips
		mbKind   string
		primary  string
		aliases  []string
		display  string
		group    *sdk.GroupIntent
		skipped  []string // addresses
		memberOf []string
	}
	disabled := user("dis", "SMTP:dis@example.com")
	disabled.Attributes["useraccountcontrol"] = []string{"66050"} // NORMAL_ACCOUNT|DONT_EXPIRE|ACCOUNTDISABLE
	enabled := user("en", "SMTP:en@example.com")
	enabled.Attributes["useraccountcontrol"] = []string{"512"}
	withMemberOf := user("mo", "SMTP:mo@example.com")
	withMemberOf.Attributes["memberof"] = []string{"CN=Sales,DC=example,DC=com", "CN=Other,DC=example,DC=com"}
	withMemberOf.Attributes["displayname"] = []string{"Mo Member"}

	for _, tc := range []struct {
		rule, name string
		cfg        map[string]any
		entry      sdk.Entry
		want       want
	}{
		{"R3", "AD user", nil, user("a", "SMTP:a@example.com"),
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "a@example.com", display: "a"}},
		{"R3", "memberOf and displayName", nil, withMemberOf,
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "mo@example.com", display: "Mo Member",
				memberOf: []string{"CN=Sales,DC=example,DC=com", "CN=Other,DC=example,DC=com"}}},
		{"R7", "SMTP smtp X500", nil,
			user("p", "X500:/o=x/cn=p", "smtp:P2@Example.com", "SMTP:P@Example.COM", "smtp:p1@example.org", "SIP:p@example.com"),
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "p@example.com", aliases: []string{"p1@example.org", "p2@example.com"}, display: "p"}},
		{"R7", "outside the domain", nil, user("o", "SMTP:o@example.com", "smtp:o@example.net"),
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "o@example.com", display: "o", skipped: []string{"o@example.net"}}},
		{"R7", "alias domain", nil, user("al", "SMTP:al@EXAMPLE.ORG"),
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "al@example.org", display: "al"}},
		{"R7", "only outside", nil, user("x", "SMTP:x@example.net"),
			want{kind: sdk.IntentSkip, reason: "no address in domain example.com or its alias domains example.org", skipped: []string{"x@example.net"}}},
		{"R7", "mail only", nil,
			sdk.Entry{ID: "m", Attributes: attrs{"objectclass": {"inetOrgPerson"}, "cn": {"M"}, "mail": {"M@example.com", "m2@example.com"}}},
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "m@example.com", aliases: []string{"m2@example.com"}, display: "M"}},
		{"R7", "trailing dot domain is invalid", nil, user("td", "SMTP:td@example.com", "smtp:td@example.com."),
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "td@example.com", display: "td", skipped: []string{"td@example.com."}}},
		{"R7", "trailing dot domain of the primary: held", nil, user("td", "SMTP:td@example.com.", "smtp:td@example.com"),
			want{kind: sdk.IntentHold, reason: `primary address "td@example.com." is not usable: not a valid address`, skipped: []string{"td@example.com."}}},
		{"R3", "public folder", nil,
			sdk.Entry{ID: "pf", Attributes: attrs{"objectclass": {"top", "publicFolder"}, "mail": {"pf@example.com"}, "name": {"PF"}}},
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindPublicFolder, primary: "pf@example.com", display: "PF"}},
		{"R3", "object class case-insensitive", nil,
			sdk.Entry{ID: "pf", Attributes: attrs{"objectclass": {"PUBLICFOLDER"}, "mail": {"pf@example.com"}}},
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindPublicFolder, primary: "pf@example.com"}},
		{"R3", "disabled user, exclude_disabled off", nil, disabled,
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "dis@example.com", display: "dis"}},
		{"R3", "disabled user, exclude_disabled on", map[string]any{"exclude_disabled": true}, disabled,
			want{kind: sdk.IntentSkip, reason: "disabled"}},
		{"R3", "enabled user, exclude_disabled on", map[string]any{"exclude_disabled": true}, enabled,
			want{kind: sdk.IntentMailbox, mbKind: sdk.KindUser, primary: "en@example.com", display: "en"}},
		{"R4", "exact-case group match", nil,
			sdk.Entry{ID: "g", Attributes: attrs{"objectclass": {"group"}, "samaccounttype": {"268435456"}, "cn": {"Sales"}, "member": {"CN=a"}}},
			want{kind: sdk.IntentGroup, group: &sdk.GroupIntent{Name: "Sales", Target: "Sales", Members: []string{"CN=a"}}}},
		{"R4", "lower-case group does not match", nil,
			sdk.Entry{ID: "g", Attributes: attrs{"objectclass": {"group"}, "samaccounttype": {"268435456"}, "cn": {"sales"}}},
			want{kind: sdk.IntentGroup, group: &sdk.GroupIntent{Name: "sales"}}},
		{"R4", "upper-case group does not match", nil,
			sdk.Entry{ID: "g", Attributes: attrs{"objectclass": {"groupOfUniqueNames"}, "cn": {"ENGINEERING"}}},
			want{kind: sdk.IntentGroup, group: &sdk.GroupIntent{Name: "ENGINEERING"}}},
		{"R4", "group without name", nil,
			sdk.Entry{ID: "g", Attributes: attrs{"objectclass": {"group"}}},
			want{kind: sdk.IntentSkip, reason: "without a name"}},
		{"R3", "unknown object", nil,
			sdk.Entry{ID: "x", Attributes: attrs{"objectclass": {"top", "device"}}},
			want{kind: sdk.IntentSkip, reason: "objectClass top, device"}},
	} {
		t.Run(tc.rule+"/"+tc.name, func(t *testing.T) {
			got := mapOne(t, configured(t, tc.cfg), tc.entry)
			w := tc.want
			if got.Kind != w.kind || !strings.Contains(got.Reason, w.reason) {
				t.Fatalf("got %+v, want kind %d reason %q", got, w.kind, w.reason)
			}
			if got.Kind == sdk.IntentSkip && got.Reason == "" {
				t.Error("skip without a reason")
			}
			var skippedAddrs []string
			for _, s := range got.Skipped {
				skippedAddrs = append(skippedAddrs, s.Address)
				if s.Reason == "" {
					t.Errorf("skipped %q without a reason", s.Address)
				}
			}
			if !reflect.DeepEqual(skippedAddrs, w.skipped) {
				t.Errorf("skipped %v, want %v", skippedAddrs, w.skipped)
			}
			switch got.Kind {
			case sdk.IntentMailbox:
				mb := got.Mailbox
				wantMB := sdk.MailboxIntent{Kind: w.mbKind, Primary: w.primary, Aliases: w.aliases, DisplayName: w.display, MemberOf: w.memberOf}
				if !reflect.DeepEqual(*mb, wantMB) {
					t.Errorf("mailbox %+v, want %+v", *mb, wantMB)
				}
			case sdk.IntentGroup:
				if !reflect.DeepEqual(got.Group, w.group) {
					t.Errorf("group %+v, want %+v", got.Group, w.group)
				}
			}
		})
	}
}

// TestMapBadData checks that a bad value is dropped alone, with its reason,
// and that bad data holds an entry rather than skipping it: a skip deletes
// the entry's mailbox, a hold keeps it as it is.
func TestMapBadData(t *testing.T) {
	sk := func(addr, reason string) sdk.SkippedAddress { return sdk.SkippedAddress{Address: addr, Reason: reason} }
	mb := func(primary, display string, aliases ...string) *sdk.MailboxIntent {
		return &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: primary, Aliases: aliases, DisplayName: display}
	}
	local65 := strings.Repeat("x", 65)
	local64 := strings.Repeat("x", 64)
	withDisplay := func(e sdk.Entry, name string) sdk.Entry {
		e.Attributes["displayname"] = []string{name}
		return e
	}
	mail := func(id string, values ...string) sdk.Entry {
		return sdk.Entry{ID: id, DN: "uid=" + id + ",dc=example,dc=com", Attributes: attrs{"objectclass": {"inetOrgPerson"}, "mail": values}}
	}
	for _, tc := range []struct {
		name    string
		entry   sdk.Entry
		kind    sdk.IntentKind
		reason  string // substring of Intent.Reason
		mailbox *sdk.MailboxIntent
		skipped []sdk.SkippedAddress // reasons are substrings
	}{
		{name: "one bad alias among good ones",
			entry:   user("a", "SMTP:a@example.com", "smtp:a1@example.com", "smtp:\uFFFD\uFFFD@example.com", "smtp:a2@example.org"),
			kind:    sdk.IntentMailbox,
			mailbox: mb("a@example.com", "a", "a1@example.com", "a2@example.org"),
			skipped: []sdk.SkippedAddress{sk("\uFFFD\uFFFD@example.com", "invalid UTF-8 from the directory")}},
		{name: "raw bytes that are not UTF-8 count as U+FFFD",
			entry:   user("r", "SMTP:r@example.com", "smtp:r\xe9@example.com"),
			kind:    sdk.IntentMailbox,
			mailbox: mb("r@example.com", "r"),
			skipped: []sdk.SkippedAddress{sk("r\uFFFD@example.com", "invalid UTF-8 from the directory")}},
		{name: "bad primary only: held",
			entry:   user("p", "SMTP:p\uFFFD@example.com"),
			kind:    sdk.IntentHold,
			reason:  "primary address \"p\uFFFD@example.com\" is not usable: invalid UTF-8 from the directory",
			skipped: []sdk.SkippedAddress{sk("p\uFFFD@example.com", "invalid UTF-8 from the directory")}},
		{name: "bad primary with good aliases: held, no alias promoted",
			entry:   user("p", "smtp:p1@example.com", "SMTP:p\uFFFD@example.com", "smtp:p2@example.com"),
			kind:    sdk.IntentHold,
			reason:  "invalid UTF-8 from the directory",
			skipped: []sdk.SkippedAddress{sk("p\uFFFD@example.com", "invalid UTF-8")}},
		{name: "bad mail primary: held",
			entry:   mail("m", "m@exa mple.com", "m2@example.com"),
			kind:    sdk.IntentHold,
			reason:  `primary address "m@exa mple.com" is not usable: not a valid address: white space`,
			skipped: []sdk.SkippedAddress{sk("m@exa mple.com", "white space")}},
		{name: "bad alias only, primary outside the domain: held",
			entry:   user("o", "SMTP:o@example.net", "smtp:o@@example.com"),
			kind:    sdk.IntentHold,
			reason:  `no usable address: "o@@example.com": not a valid address: more than one '@'`,
			skipped: []sdk.SkippedAddress{sk("o@example.net", "outside domain"), sk("o@@example.com", "more than one '@'")}},
		{name: "bad primary clearly outside the domain: the alias is promoted as for any outside primary",
			entry:   user("q", "SMTP:q\uFFFD@example.net", "smtp:q@example.com"),
			kind:    sdk.IntentMailbox,
			mailbox: mb("q@example.com", "q"),
			skipped: []sdk.SkippedAddress{sk("q\uFFFD@example.net", "invalid UTF-8")}},
		{name: "only addresses outside the domain: skipped as before",
			entry:   user("far", "SMTP:far@example.net", "smtp:f\uFFFDr@example.net"),
			kind:    sdk.IntentSkip,
			reason:  "no address in domain example.com",
			skipped: []sdk.SkippedAddress{sk("far@example.net", "outside domain"), sk("f\uFFFDr@example.net", "invalid UTF-8")}},
		{name: "no mail attributes: skipped as before",
			entry:  sdk.Entry{ID: "n", Attributes: attrs{"objectclass": {"user"}, "cn": {"n"}}},
			kind:   sdk.IntentSkip,
			reason: "no mail address"},
		{name: "two SMTP: the first is kept, the second dropped",
			entry:   user("t", "SMTP:t1@example.com", "SMTP:t2@example.com", "smtp:t3@example.com"),
			kind:    sdk.IntentMailbox,
			mailbox: mb("t1@example.com", "t", "t3@example.com"),
			skipped: []sdk.SkippedAddress{sk("t2@example.com", "a second SMTP: (primary) value; the first, t1@example.com, stays the primary")}},
		{name: "two SMTP of the same address: no note",
			entry:   user("t", "SMTP:t1@example.com", "SMTP:T1@Example.com"),
			kind:    sdk.IntentMailbox,
			mailbox: mb("t1@example.com", "t")},
		{name: "65-octet local part dropped, 64 kept",
			entry:   user("l", "SMTP:l@example.com", "smtp:"+local65+"@example.com", "smtp:"+local64+"@example.com"),
			kind:    sdk.IntentMailbox,
			mailbox: mb("l@example.com", "l", local64+"@example.com"),
			skipped: []sdk.SkippedAddress{sk(local65+"@example.com", "not a valid address: local part of 65 octets, more than 64 (RFC 5321)")}},
		{name: "65-octet local part of the primary: held",
			entry:   user("l", "SMTP:"+local65+"@example.com"),
			kind:    sdk.IntentHold,
			reason:  "more than 64",
			skipped: []sdk.SkippedAddress{sk(local65+"@example.com", "more than 64")}},
		{name: "proxyAddresses value without a prefix is bad data",
			entry:   user("np", "SMTP:np@example.net", "np@example.com"),
			kind:    sdk.IntentHold,
			reason:  "without an address type prefix",
			skipped: []sdk.SkippedAddress{sk("np@example.net", "outside domain"), sk("np@example.com", "without an address type prefix")}},
		{name: "displayName with U+FFFD kept, with a note",
			entry:   withDisplay(user("d", "SMTP:d@example.com"), "J\uFFFDrgen"),
			kind:    sdk.IntentMailbox,
			mailbox: mb("d@example.com", "J\uFFFDrgen"),
			skipped: []sdk.SkippedAddress{sk("J\uFFFDrgen", "displayName has invalid UTF-8 from the directory")}},
		{name: "cn with raw bytes as display name: made valid, with a note",
			entry:   user("c\xfc", "SMTP:c@example.com"),
			kind:    sdk.IntentMailbox,
			mailbox: mb("c@example.com", "c\uFFFD"),
			skipped: []sdk.SkippedAddress{sk("c\uFFFD", "cn has invalid UTF-8")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mapOne(t, configured(t, nil), tc.entry)
			if got.Kind != tc.kind || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("kind %d, reason %q; want kind %d, reason containing %q", got.Kind, got.Reason, tc.kind, tc.reason)
			}
			if (got.Kind == sdk.IntentSkip || got.Kind == sdk.IntentHold) && got.Reason == "" {
				t.Error("no reason")
			}
			if !reflect.DeepEqual(got.Mailbox, tc.mailbox) {
				t.Errorf("mailbox %+v, want %+v", got.Mailbox, tc.mailbox)
			}
			ok := len(got.Skipped) == len(tc.skipped)
			for i := 0; ok && i < len(tc.skipped); i++ {
				ok = got.Skipped[i].Address == tc.skipped[i].Address && strings.Contains(got.Skipped[i].Reason, tc.skipped[i].Reason)
			}
			if !ok {
				t.Errorf("skipped %+v, want %+v", got.Skipped, tc.skipped)
			}
			for _, s := range got.Skipped {
				if !utf8.ValidString(s.Address) || !utf8.ValidString(s.Reason) {
					t.Errorf("skipped %q (%q) is not valid UTF-8: it cannot cross the ABI", s.Address, s.Reason)
				}
			}
		})
	}
}

func TestMapErrors(t *testing.T) {
	p := configured(t, nil)
	if _, err := p.Map(sdk.MapRequest{Entries: []sdk.Entry{user("a", "SMTP:a@example.com")}}); err == nil {
		t.Error("Map without a domain name: no error")
	}
	resp, err := p.Map(sdk.MapRequest{})
	if err != nil || len(resp.Intents) != 0 {
		t.Errorf("empty Map = %+v, %v", resp, err)
	}
}

func TestReconcile(t *testing.T) {
	p := configured(t, nil)
	ldap := func(primary string, aliases ...string) *sdk.Mailbox {
		return &sdk.Mailbox{ID: 1, Kind: sdk.KindUser, Primary: primary, Aliases: aliases, Source: sdk.SourceLDAP}
	}
	manual := func(primary string) *sdk.Mailbox {
		return &sdk.Mailbox{ID: 2, Kind: sdk.KindUser, Primary: primary, Source: sdk.SourceManual}
	}
	cf := func(addr string) []sdk.Conflict {
		return []sdk.Conflict{{Address: addr, MailboxID: 2, Primary: "owner@example.com", Source: sdk.SourceManual}}
	}
	for _, tc := range []struct {
		rule, name string
		change     sdk.Change
		action     sdk.Action // Accept: no decision expected
		reason     string
		after      *sdk.Mailbox // replacement's After, for Replace
	}{
		{"R10", "create without conflict", sdk.Change{Kind: sdk.ChangeCreate, After: ldap("a@example.com")}, sdk.Accept, "", nil},
		{"R10", "create with conflict", sdk.Change{Kind: sdk.ChangeCreate, After: ldap("a@example.com"), Conflicts: cf("a@example.com")},
			sdk.Veto, "conflict: a@example.com belongs to manual mailbox owner@example.com", nil},
		{"R10", "update alias conflict", sdk.Change{Kind: sdk.ChangeUpdate, Before: ldap("a@example.com"),
			After: ldap("a@example.com", "b@example.com", "c@example.com"), Conflicts: cf("b@example.com")},
			sdk.Replace, "conflict: b@example.com belongs to manual mailbox owner@example.com", ldap("a@example.com", "c@example.com")},
		{"R10", "update only alias conflicts", sdk.Change{Kind: sdk.ChangeUpdate, Before: ldap("a@example.com"),
			After: ldap("a@example.com", "b@example.com"), Conflicts: cf("b@example.com")},
			sdk.Replace, "conflict", ldap("a@example.com")},
		{"R10", "update primary conflict", sdk.Change{Kind: sdk.ChangeUpdate, Before: ldap("a@example.com"),
			After: ldap("b@example.com", "a@example.com"), Conflicts: cf("b@example.com")},
			sdk.Veto, "conflict: b@example.com", nil},
		{"R10", "adopt", sdk.Change{Kind: sdk.ChangeAdopt, Before: manual("m@example.com"), After: ldap("m@example.com")},
			sdk.Veto, "adopt", nil},
		{"R6", "delete ldap", sdk.Change{Kind: sdk.ChangeDelete, Before: ldap("a@example.com")}, sdk.Accept, "", nil},
		{"R6", "delete manual", sdk.Change{Kind: sdk.ChangeDelete, Before: manual("m@example.com")}, sdk.Veto, "source manual", nil},
		{"R6", "delete without source", sdk.Change{Kind: sdk.ChangeDelete, Before: &sdk.Mailbox{Primary: "x@example.com"}}, sdk.Veto, "source unknown", nil},
		{"R6", "update manual", sdk.Change{Kind: sdk.ChangeUpdate, Before: manual("m@example.com"), After: manual("m@example.com")}, sdk.Veto, "source manual", nil},
		{"R5", "remove hand-made membership of ldap mailbox", sdk.Change{Kind: sdk.ChangeRemoveMember, Before: ldap("a@example.com"), Group: "Sales"}, sdk.Accept, "", nil},
		{"R5", "add membership of new mailbox", sdk.Change{Kind: sdk.ChangeAddMember, After: &sdk.Mailbox{DirID: "g", Primary: "n@example.com"}, Group: "Sales"}, sdk.Accept, "", nil},
		{"R5", "membership of manual mailbox", sdk.Change{Kind: sdk.ChangeRemoveMember, Before: manual("m@example.com"), Group: "Sales"}, sdk.Veto, "source manual", nil},
		{"R5", "unknown kind", sdk.Change{Kind: 99}, sdk.Veto, "unknown change kind", nil},
	} {
		t.Run(tc.rule+"/"+tc.name, func(t *testing.T) {
			// The change is proposed second, after an accepted one, to check Index.
			req := sdk.ReconcileRequest{Domain: domain, Changes: []sdk.Change{
				{Kind: sdk.ChangeCreate, After: ldap("ok@example.com")}, tc.change,
			}}
			resp, err := p.Reconcile(req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.action == sdk.Accept {
				if len(resp.Decisions) != 0 {
					t.Fatalf("decisions %+v, want none", resp.Decisions)
				}
				return
			}
			if len(resp.Decisions) != 1 {
				t.Fatalf("decisions %+v, want one", resp.Decisions)
			}
			d := resp.Decisions[0]
			if d.Index != 1 || d.Action != tc.action || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("decision %+v, want index 1, action %d, reason containing %q", d, tc.action, tc.reason)
			}
			if tc.action == sdk.Replace {
				r := d.Replacement
				if r == nil || r.Kind != tc.change.Kind || r.Before != tc.change.Before || len(r.Conflicts) != 0 ||
					!reflect.DeepEqual(r.After, tc.after) {
					t.Fatalf("replacement %+v (after %+v), want after %+v", r, r.After, tc.after)
				}
				if len(tc.change.After.Aliases) == len(r.After.Aliases) {
					t.Error("the proposed change was modified in place")
				}
			}
		})
	}
}

// ExampleNew shows the standard policy refusing a broken filter.
func ExampleNew() {
	p := standard.New()
	if err := p.Configure(nil); err != nil {
		panic(err)
	}
	_, err := p.Filter(sdk.FilterRequest{Filter: "(&(objectClass=user)(|))"})
	fmt.Println(err)
	var fe *sdk.FilterError
	if errors.As(err, &fe) {
		fmt.Println(fe.Position)
	}
	// Output:
	// invalid filter at position 22: '|' must hold at least one filter, found ')'
	// 22
}

// ExamplePolicy_Filter shows the normalization of a valid filter and the
// default filter.
func ExamplePolicy_Filter() {
	p := standard.New()
	resp, _ := p.Filter(sdk.FilterRequest{Filter: "  (&\n  (objectClass=user)\n  (mail=*)\n)\n"})
	fmt.Println(resp.Filter)
	resp, _ = p.Filter(sdk.FilterRequest{Filter: ""})
	fmt.Println(resp.Filter == standard.DefaultFilter)
	// Output:
	// (&(objectClass=user)(mail=*))
	// true
}

// ExamplePolicy_Map shows how proxyAddresses become a mailbox (R7).
func ExamplePolicy_Map() {
	p := standard.New()
	resp, _ := p.Map(sdk.MapRequest{
		Domain: sdk.Domain{Name: "example.com", AliasDomains: []string{"example.org"}, Groups: []string{"Sales"}},
		Entries: []sdk.Entry{
			{ID: "1", Attributes: map[string][]string{
				"samaccounttype": {"805306368"},
				"displayname":    {"John Smith"},
				"proxyaddresses": {"SMTP:John@Example.com", "smtp:js@example.org", "smtp:john@other.net", "X500:/o=x"},
			}},
			{ID: "2", Attributes: map[string][]string{"samaccounttype": {"268435456"}, "cn": {"sales"}}},
		},
	})
	mb := resp.Intents[0].Mailbox
	fmt.Println(mb.Primary, mb.Aliases, mb.DisplayName)
	fmt.Println(resp.Intents[0].Skipped)
	fmt.Printf("%q matched %q\n", resp.Intents[1].Group.Name, resp.Intents[1].Group.Target)
	// Output:
	// john@example.com [js@example.org] John Smith
	// [{john@other.net outside domain example.com and its alias domains example.org}]
	// "sales" matched ""
}

// entries100k makes n AD-like entries: 90 % users with three proxyAddresses
// and two memberOf values, 9 % groups, 1 % other.
func entries100k(n int) []sdk.Entry {
	es := make([]sdk.Entry, n)
	for i := range es {
		id := "user" + strconv.Itoa(i)
		switch {
		case i%100 == 0:
			es[i] = sdk.Entry{ID: id, Attributes: attrs{"objectclass": {"top", "organizationalUnit"}}}
		case i%11 == 0:
			es[i] = sdk.Entry{ID: id, DN: "CN=G" + id + ",DC=example,DC=com", Attributes: attrs{
				"objectclass": {"top", "group"}, "samaccounttype": {"268435456"}, "cn": {[]string{"Sales", "Engineering", "G" + id}[i%3]},
				"member": {"CN=user1,DC=example,DC=com", "CN=user2,DC=example,DC=com"},
			}}
		default:
			es[i] = sdk.Entry{ID: id, DN: "CN=" + id + ",OU=Staff,DC=example,DC=com", Attributes: attrs{
				"objectclass":        {"top", "person", "organizationalPerson", "user"},
				"samaccounttype":     {"805306368"},
				"samaccountname":     {id},
				"cn":                 {id},
				"displayname":        {"User " + id},
				"useraccountcontrol": {"512"},
				"proxyaddresses":     {"SMTP:" + id + "@Example.com", "smtp:" + id + ".alias@example.org", "X500:/o=Org/cn=" + id},
				"mail":               {id + "@example.com"},
				"memberof":           {"CN=Sales,DC=example,DC=com", "CN=All,DC=example,DC=com"},
			}}
		}
	}
	return es
}

// BenchmarkMap100k maps one request of 100,000 AD-like entries.
func BenchmarkMap100k(b *testing.B) {
	p := configured(b, map[string]any{"exclude_disabled": true})
	req := sdk.MapRequest{Domain: domain, Entries: entries100k(100_000)}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := p.Map(req)
		if err != nil || len(resp.Intents) != len(req.Entries) {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(req.Entries)), "ns/entry")
}

// BenchmarkFilter parses the default filter.
func BenchmarkFilter(b *testing.B) {
	p := configured(b, nil)
	req := sdk.FilterRequest{Filter: standard.DefaultFilter}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Filter(req); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzFilter checks that Filter never panics, that errors point inside the
// filter, and that a normalized filter is valid and normalizes to itself.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{standard.DefaultFilter, "(|)", "(cn=a\\2a*b)", "(&\n (a:dn:1.2:=x)\n)", "(!(x~=y))", "(cn;x=\xff)"} {
		f.Add(s)
	}
	p := standard.New()
	f.Fuzz(func(t *testing.T, s string) {
		got, err := p.Filter(sdk.FilterRequest{Filter: s})
		if err != nil {
			var fe *sdk.FilterError
			if !errors.As(err, &fe) || fe.Position < 0 || fe.Position > len(s) || fe.Reason == "" {
				t.Fatalf("Filter(%q): bad error %v", s, err)
			}
			return
		}
		again, err := p.Filter(sdk.FilterRequest{Filter: got.Filter})
		if err != nil || again.Filter != got.Filter {
			t.Fatalf("Filter(%q) = %q, which normalizes to %q, %v", s, got.Filter, again.Filter, err)
		}
	})
}

// TestNestedGroupsSetting checks that nested_groups marks every group
// Nested, and that groups are direct-only by default.
func TestNestedGroupsSetting(t *testing.T) {
	group := sdk.Entry{ID: "g", DN: "cn=Staff,dc=example,dc=com", Attributes: map[string][]string{
		"objectclass": {"top", "group"}, "samaccounttype": {"268435456"}, "cn": {"Staff"},
		"member": {"cn=Sales,dc=example,dc=com"}}}
	for _, tc := range []struct {
		config map[string]any
		want   bool
	}{
		{nil, false},
		{map[string]any{"nested_groups": false}, false},
		{map[string]any{"nested_groups": true}, true},
	} {
		p := standard.New()
		if err := p.Configure(tc.config); err != nil {
			t.Fatal(err)
		}
		resp, err := p.Map(sdk.MapRequest{Domain: sdk.Domain{Name: "example.com", Groups: []string{"Staff"}}, Entries: []sdk.Entry{group}})
		if err != nil {
			t.Fatal(err)
		}
		if g := resp.Intents[0].Group; g == nil || g.Nested != tc.want || g.Target != "Staff" {
			t.Errorf("config %v: group intent %+v, want Nested %v", tc.config, g, tc.want)
		}
	}
}

// TestGroupMembers checks where a group's members come from: member, then
// uniqueMember without its optional UID (RFC 4517 Name and Optional UID: a
// DN, then '#' and a bit string), and that a posixGroup, whose members are
// uid values, is skipped with a reason rather than matched without members.
func TestGroupMembers(t *testing.T) {
	const dn = "uid=a,ou=People,dc=example,dc=com"
	p := configured(t, nil)
	for _, tc := range []struct {
		name    string
		entry   attrs
		members []string // nil: the entry is skipped
		reason  string   // for a skip
	}{
		{"uniqueMember plain", attrs{"objectclass": {"groupOfUniqueNames"}, "cn": {"Sales"}, "uniquemember": {dn}}, []string{dn}, ""},
		{"uniqueMember with UID", attrs{"objectclass": {"groupOfUniqueNames"}, "cn": {"Sales"}, "uniquemember": {dn + "#'0101'B"}}, []string{dn}, ""},
		{"uniqueMember with an empty bit string", attrs{"objectclass": {"groupOfUniqueNames"}, "cn": {"Sales"}, "uniquemember": {dn + "#''B"}}, []string{dn}, ""},
		{"only the last UID is taken off", attrs{"objectclass": {"groupOfUniqueNames"}, "cn": {"Sales"}, "uniquemember": {"cn=x#'1'B,dc=example,dc=com#'10'B"}},
			[]string{"cn=x#'1'B,dc=example,dc=com"}, ""},
		{"no bit string: kept as it is", attrs{"objectclass": {"groupOfUniqueNames"}, "cn": {"Sales"}, "uniquemember": {
			"cn=a#b,dc=example,dc=com", dn + "#'012'B", dn + "#'01'b", dn + "'01'B", dn + "#01B", "cn=x'B", "'B", "#'01'B ",
		}}, []string{"cn=a#b,dc=example,dc=com", dn + "#'012'B", dn + "#'01'b", dn + "'01'B", dn + "#01B", "cn=x'B", "'B", "#'01'B "}, ""},
		{"member and uniqueMember", attrs{"objectclass": {"groupOfUniqueNames", "extensibleObject"}, "cn": {"Sales"},
			"member": {"uid=b,dc=example,dc=com"}, "uniquemember": {dn + "#'1'B"}}, []string{"uid=b,dc=example,dc=com", dn}, ""},
		{"AD group with uniqueMember", attrs{"objectclass": {"group"}, "samaccounttype": {"268435456"}, "cn": {"Sales"},
			"uniquemember": {dn}}, []string{dn}, ""},
		{"posixGroup", attrs{"objectclass": {"top", "posixGroup"}, "cn": {"Sales"}, "gidnumber": {"1000"}, "memberuid": {"a"}},
			nil, "posixGroup members are uid values, not DNs"},
		{"posixGroup with groupOfNames (RFC 2307bis)", attrs{"objectclass": {"groupOfNames", "posixGroup"}, "cn": {"Sales"},
			"member": {dn}, "memberuid": {"a"}}, []string{dn}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mapOne(t, p, sdk.Entry{ID: "g", DN: "cn=Sales,ou=Groups,dc=example,dc=com", Attributes: tc.entry})
			if tc.members == nil {
				if got.Kind != sdk.IntentSkip || !strings.Contains(got.Reason, tc.reason) {
					t.Fatalf("got %+v, want a skip with a reason containing %q", got, tc.reason)
				}
				return
			}
			want := &sdk.GroupIntent{Name: "Sales", Target: "Sales", Members: tc.members}
			if got.Kind != sdk.IntentGroup || !reflect.DeepEqual(got.Group, want) {
				t.Fatalf("got %+v (group %+v), want group %+v", got, got.Group, want)
			}
		})
	}
}
