package policytest

import (
	"strings"

	"github.com/dirsync/dirsync/sdk"
)

// attrs is the attribute map of an entry.
type attrs = map[string][]string

// defaultFilter is the default filter of design rule R2.
const defaultFilter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"

// testDomain is the domain of the cases: one alias domain and three gateway
// groups made by an operator.
func testDomain() sdk.Domain {
	return sdk.Domain{
		Name:         "example.com",
		AliasDomains: []string{"example.org"},
		Groups:       []string{"Sales", "Engineering", "all staff"},
	}
}

const (
	samUser  = "805306368"
	samGroup = "268435456"
	samDist  = "268435457"
)

// adUser is an AD user entry with the given proxyAddresses.
func adUser(id string, proxy ...string) sdk.Entry {
	return sdk.Entry{
		ID: id, DN: "CN=" + id + ",OU=Staff,DC=example,DC=com",
		Attributes: attrs{
			"objectclass":    {"top", "person", "organizationalPerson", "user"},
			"samaccounttype": {samUser},
			"samaccountname": {id},
			"cn":             {id},
			"proxyaddresses": proxy,
		},
	}
}

// with returns e with more attributes.
func with(e sdk.Entry, a attrs) sdk.Entry {
	m := make(attrs, len(e.Attributes)+len(a))
	for k, v := range e.Attributes {
		m[k] = v
	}
	for k, v := range a {
		m[k] = v
	}
	e.Attributes = m
	return e
}

func mailbox(kind, primary, display string, aliases ...string) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{
		Kind: kind, Primary: primary, Aliases: aliases, DisplayName: display,
	}}
}

func user(primary, display string, aliases ...string) sdk.Intent {
	return mailbox(sdk.KindUser, primary, display, aliases...)
}

func group(name, target string, members ...string) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: name, Target: target, Members: members}}
}

func skip(reason string, skipped ...sdk.SkippedAddress) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentSkip, Reason: reason, Skipped: skipped}
}

// hold is an intent of an entry that bad data keeps from mapping: its
// mailbox, if any, stays as it is.
func hold(reason string, skipped ...sdk.SkippedAddress) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentHold, Reason: reason, Skipped: skipped}
}

func skipped(in sdk.Intent, s ...sdk.SkippedAddress) sdk.Intent {
	in.Skipped = s
	return in
}

func memberOf(in sdk.Intent, dns ...string) sdk.Intent {
	mb := *in.Mailbox
	mb.MemberOf = dns
	in.Mailbox = &mb
	return in
}

const outside = "outside domain example.com"

// StandardCases returns the cases of the standard rules (design R2–R10),
// which every runtime of the standard policy must pass with an empty config.
// Each call returns fresh values that the caller may change.
func StandardCases() Cases {
	return Cases{
		Filter:    standardFilterCases(),
		Map:       standardMapCases(),
		Reconcile: standardReconcileCases(),
	}
}

func fe(pos int, reason string) *sdk.FilterError {
	return &sdk.FilterError{Position: pos, Reason: reason}
}

func standardFilterCases() []FilterCase {
	return []FilterCase{
		// Valid filters.
		{Name: "default AD filter", Rule: "R2", Filter: defaultFilter, Want: defaultFilter},
		{Name: "empty means default", Rule: "R2", Filter: "", Want: defaultFilter},
		{Name: "white space only means default", Rule: "R2", Filter: " \t\n", Want: defaultFilter},
		{Name: "surrounding white space trimmed", Rule: "R2", Filter: "  (cn=a)\n", Want: "(cn=a)"},
		{Name: "white space between components dropped", Rule: "R2",
			Filter: "(&\n  (objectClass=user)\n  (mail=*)\n)", Want: "(&(objectClass=user)(mail=*))"},
		{Name: "value white space kept", Rule: "R2", Filter: "(cn= John  Smith )", Want: "(cn= John  Smith )"},
		{Name: "and or not", Rule: "R2",
			Filter: "(&(objectCategory=person)(|(mail=*)(proxyAddresses=*))(!(cn=admin)))",
			Want:   "(&(objectCategory=person)(|(mail=*)(proxyAddresses=*))(!(cn=admin)))"},
		{Name: "single component and", Rule: "R2", Filter: "(&(cn=a))", Want: "(&(cn=a))"},
		{Name: "single component or", Rule: "R2", Filter: "(|(cn=a))", Want: "(|(cn=a))"},
		{Name: "present", Rule: "R2", Filter: "(mail=*)", Want: "(mail=*)"},
		{Name: "substrings", Rule: "R2", Filter: "(|(cn=J*n*Sm*)(mail=*@example.com)(sn=*ith))", Want: "(|(cn=J*n*Sm*)(mail=*@example.com)(sn=*ith))"},
		{Name: "approx greater less", Rule: "R2", Filter: "(|(sn~=smith)(uSNChanged>=1000)(badPwdCount<=3))", Want: "(|(sn~=smith)(uSNChanged>=1000)(badPwdCount<=3))"},
		{Name: "extensible with rule", Rule: "R2", Filter: "(cn:caseExactMatch:=Fred Flintstone)", Want: "(cn:caseExactMatch:=Fred Flintstone)"},
		{Name: "extensible dn", Rule: "R2", Filter: "(o:dn:=Ace Industry)", Want: "(o:dn:=Ace Industry)"},
		{Name: "extensible without attribute", Rule: "R2", Filter: "(:DN:2.4.6.8.10:=Dino)", Want: "(:DN:2.4.6.8.10:=Dino)"},
		{Name: "extensible attribute only", Rule: "R2", Filter: "(cn:=Betty Rubble)", Want: "(cn:=Betty Rubble)"},
		{Name: "AD disabled bit", Rule: "R2",
			Filter: "(&(sAMAccountType=805306368)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
			Want:   "(&(sAMAccountType=805306368)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"},
		{Name: "AD in chain", Rule: "R2",
			Filter: "(memberOf:1.2.840.113556.1.4.1941:=CN=Sales,OU=Groups,DC=example,DC=com)",
			Want:   "(memberOf:1.2.840.113556.1.4.1941:=CN=Sales,OU=Groups,DC=example,DC=com)"},
		{Name: "attribute options", Rule: "R2", Filter: "(cn;lang-de;x-foo=Müller)", Want: "(cn;lang-de;x-foo=Müller)"},
		{Name: "numeric OID attribute", Rule: "R2", Filter: "(2.5.4.3=John)", Want: "(2.5.4.3=John)"},
		{Name: "escapes", Rule: "R2", Filter: `(cn=a\2a\28\29\5cb\2A)`, Want: `(cn=a\2a\28\29\5cb\2A)`},
		{Name: "escaped binary GUID", Rule: "R2", Filter: `(objectGUID=\01\ab\CD\00\ff)`, Want: `(objectGUID=\01\ab\CD\00\ff)`},
		{Name: "OpenLDAP users and groups", Rule: "R2",
			Filter: "(|(&(objectClass=inetOrgPerson)(mail=*))(objectClass=groupOfNames))",
			Want:   "(|(&(objectClass=inetOrgPerson)(mail=*))(objectClass=groupOfNames))"},

		// Invalid filters: position of the first byte the grammar refuses.
		{Name: "missing outer parentheses", Rule: "R2", Filter: "cn=foo", Err: fe(0, "parentheses")},
		{Name: "missing outer parentheses after space", Rule: "R2", Filter: "  cn=foo", Err: fe(2, "parentheses")},
		{Name: "empty or", Rule: "R2", Filter: "(|)", Err: fe(2, "at least one")},
		{Name: "empty and", Rule: "R2", Filter: "(&)", Err: fe(2, "at least one")},
		{Name: "nested empty or", Rule: "R2", Filter: "(&(cn=a)(|))", Err: fe(10, "at least one")},
		{Name: "empty parentheses", Rule: "R2", Filter: "()", Err: fe(1, "empty filter")},
		{Name: "unbalanced missing close", Rule: "R2", Filter: "(cn=a", Err: fe(5, "unbalanced")},
		{Name: "unbalanced missing close of and", Rule: "R2", Filter: "(&(cn=a)(cn=b)", Err: fe(14, "unbalanced")},
		{Name: "unbalanced extra close", Rule: "R2", Filter: "(cn=a))", Err: fe(6, "unbalanced")},
		{Name: "trailing filter", Rule: "R2", Filter: "(cn=a)(cn=b)", Err: fe(6, "trailing")},
		{Name: "trailing garbage", Rule: "R2", Filter: "(cn=a) x", Err: fe(7, "trailing")},
		{Name: "empty attribute", Rule: "R2", Filter: "(=a)", Err: fe(1, "empty attribute")},
		{Name: "bad escape", Rule: "R2", Filter: `(cn=a\zz)`, Err: fe(5, "escape")},
		{Name: "short escape", Rule: "R2", Filter: `(cn=a\4)`, Err: fe(5, "escape")},
		{Name: "escape at end", Rule: "R2", Filter: `(cn=a\`, Err: fe(5, "escape")},
		{Name: "space in attribute", Rule: "R2", Filter: "(c n=a)", Err: fe(2, "invalid character")},
		{Name: "underscore in attribute", Rule: "R2", Filter: "(cn_x=a)", Err: fe(3, "invalid character")},
		{Name: "bad numeric OID", Rule: "R2", Filter: "(1cn=a)", Err: fe(2, "numeric OID")},
		{Name: "empty attribute option", Rule: "R2", Filter: "(cn;=x)", Err: fe(4, "option")},
		{Name: "unescaped open parenthesis", Rule: "R2", Filter: "(cn=a(b)", Err: fe(5, "unescaped '('")},
		{Name: "star in approx", Rule: "R2", Filter: "(cn~=a*)", Err: fe(6, "unescaped '*'")},
		{Name: "double star", Rule: "R2", Filter: "(cn=a**b)", Err: fe(6, "'*'")},
		{Name: "not with two filters", Rule: "R2", Filter: "(!(cn=a)(cn=b))", Err: fe(8, "exactly one")},
		{Name: "no filter type", Rule: "R2", Filter: "(cn)", Err: fe(3, "filter type")},
		{Name: "tilde without equals", Rule: "R2", Filter: "(cn~x)", Err: fe(4, "'='")},
		{Name: "extensible without rule or attribute", Rule: "R2", Filter: "(:=x)", Err: fe(1, "matching rule")},
		{Name: "extensible extra part", Rule: "R2", Filter: "(cn:dn:rule:x:=y)", Err: fe(12, "after the matching rule")},
		{Name: "NUL byte", Rule: "R2", Filter: "(cn=a\x00)", Err: fe(5, "NUL")},
		// Invalid UTF-8 cannot cross the ABI (protobuf strings are UTF-8):
		// the host refuses such a filter before any runtime sees it, so it
		// is no conformance case (plugins/standard tests it natively).
		{Name: "too deep", Rule: "R2", Filter: strings.Repeat("(!", 200) + "(cn=a)" + strings.Repeat(")", 200), Err: fe(256, "deeper")},
	}
}

func standardMapCases() []MapCase {
	one := func(name, rule string, e sdk.Entry, want sdk.Intent) MapCase {
		return MapCase{Name: name, Rule: rule, Request: sdk.MapRequest{Domain: testDomain(), Entries: []sdk.Entry{e}}, Want: []sdk.Intent{want}}
	}
	sk := func(addr, reason string) sdk.SkippedAddress { return sdk.SkippedAddress{Address: addr, Reason: reason} }
	return []MapCase{
		one("AD user with proxyAddresses", "R7",
			with(adUser("jsmith",
				"SMTP:John.Smith@Example.com", "smtp:jsmith@example.com", "X500:/o=Org/ou=Admin/cn=jsmith",
				"SIP:john@example.com", "smtp:john@example.org", "x400:c=US;a= ;p=Org;s=Smith"),
				attrs{"displayname": {"John Smith"}, "memberof": {"CN=Sales,OU=Groups,DC=example,DC=com"}}),
			memberOf(user("john.smith@example.com", "John Smith", "john@example.org", "jsmith@example.com"),
				"CN=Sales,OU=Groups,DC=example,DC=com")),
		one("alias outside the domain skipped", "R7",
			adUser("a", "SMTP:a@example.com", "smtp:a@other.net"),
			skipped(user("a@example.com", "a"), sk("a@other.net", outside))),
		one("primary outside the domain: first in-domain alias becomes primary", "R7",
			adUser("boss", "SMTP:boss@corp.net", "smtp:zed@example.com", "smtp:boss@example.org", "smtp:b@example.com"),
			skipped(user("zed@example.com", "boss", "b@example.com", "boss@example.org"), sk("boss@corp.net", outside))),
		one("no SMTP primary: first smtp alias becomes primary", "R7",
			adUser("z", "smtp:z@example.com", "smtp:a@example.com"),
			user("z@example.com", "z", "a@example.com")),
		one("prefix case: only SMTP marks the primary", "R7",
			adUser("x", "Smtp:x@example.com", "SMTP:y@example.com", "sMTP:w@example.com"),
			user("y@example.com", "x", "w@example.com", "x@example.com")),
		one("several SMTP values: first is primary, the others dropped", "R7",
			adUser("two", "SMTP:one@example.com", "smtp:also@example.com", "SMTP:two@example.com", "SMTP:ONE@example.com"),
			skipped(user("one@example.com", "two", "also@example.com"), sk("two@example.com", "second SMTP:"))),
		one("duplicates removed, primary never an alias", "R7",
			adUser("d", "SMTP:d@example.com", "smtp:D@Example.com", "smtp:e@example.com", "smtp:E@example.com "),
			user("d@example.com", "d", "e@example.com")),
		one("alias domain address kept", "R7",
			adUser("ad", "SMTP:ad@example.org", "smtp:ad@example.com"),
			user("ad@example.org", "ad", "ad@example.com")),
		one("subdomain is outside the domain", "R7",
			adUser("sub", "SMTP:sub@example.com", "smtp:sub@mail.example.com"),
			skipped(user("sub@example.com", "sub"), sk("sub@mail.example.com", outside))),
		one("invalid alias skipped", "R7",
			adUser("inv", "SMTP:ok@example.com", "smtp:not-an-address", "smtp:two@@example.com", "smtp:x@example..com", "smtp:y@example.com."),
			skipped(user("ok@example.com", "inv"),
				sk("not-an-address", "not a valid address"), sk("two@@example.com", "not a valid address"),
				sk("x@example..com", "not a valid address"), sk("y@example.com.", "not a valid address"))),
		one("alias with invalid UTF-8 dropped alone", "R7",
			adUser("bad", "SMTP:bad@example.com", "smtp:b�d@example.com", "smtp:bad@example.org"),
			skipped(user("bad@example.com", "bad", "bad@example.org"), sk("b�d@example.com", "invalid UTF-8 from the directory"))),
		one("alias with a 65-octet local part dropped", "R7",
			adUser("long", "SMTP:long@example.com", "smtp:"+strings.Repeat("l", 65)+"@example.com", "smtp:"+strings.Repeat("l", 64)+"@example.com"),
			skipped(user("long@example.com", "long", strings.Repeat("l", 64)+"@example.com"),
				sk(strings.Repeat("l", 65)+"@example.com", "more than 64"))),
		one("alias of more than 254 octets dropped", "R7",
			adUser("huge", "SMTP:huge@example.com", "smtp:h@"+strings.Repeat("d", 60)+"."+strings.Repeat("d", 60)+"."+strings.Repeat("d", 60)+"."+strings.Repeat("d", 60)+".example.com"),
			skipped(user("huge@example.com", "huge"),
				sk("h@"+strings.Repeat("d", 60)+"."+strings.Repeat("d", 60)+"."+strings.Repeat("d", 60)+"."+strings.Repeat("d", 60)+".example.com", "more than 254"))),

		// Bad data never makes a mailbox go: an entry whose primary address,
		// or whose only address, is bad data is held, not skipped.
		one("primary with invalid UTF-8: held", "R7",
			adUser("jm", "SMTP:j�rgen@example.com", "smtp:jm@example.com"),
			hold("invalid UTF-8 from the directory", sk("j�rgen@example.com", "invalid UTF-8 from the directory"))),
		one("invalid primary: held", "R7",
			adUser("inv", "SMTP:not-an-address", "smtp:ok@example.com"),
			hold("not a valid address", sk("not-an-address", "not a valid address"))),
		one("mail primary with invalid UTF-8: held", "R7",
			sdk.Entry{ID: "mu", DN: "uid=mu,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"inetOrgPerson"}, "cn": {"Mu"}, "mail": {"m�@example.com"},
			}},
			hold("invalid UTF-8 from the directory", sk("m�@example.com", "invalid UTF-8 from the directory"))),
		one("primary outside the domain and the only alias invalid: held", "R7",
			adUser("oh", "SMTP:oh@elsewhere.net", "smtp:o�h@example.com"),
			hold("no usable address", sk("oh@elsewhere.net", outside), sk("o�h@example.com", "invalid UTF-8"))),
		one("second SMTP value the only one in the domain: held", "R7",
			adUser("two", "SMTP:two@elsewhere.net", "SMTP:two@example.com"),
			hold("second SMTP:", sk("two@elsewhere.net", outside), sk("two@example.com", "second SMTP:"))),
		one("invalid address clearly outside the domain: skipped", "R3",
			adUser("far", "SMTP:f�r@elsewhere.net"),
			skip("no address in domain example.com", sk("f�r@elsewhere.net", "invalid UTF-8"))),
		one("display name with invalid UTF-8 kept, with a note", "R3",
			with(adUser("dn", "SMTP:dn@example.com"), attrs{"displayname": {"J�rgen M��ller"}}),
			skipped(user("dn@example.com", "J�rgen M��ller"), sk("J�rgen M��ller", "displayName has invalid UTF-8"))),
		one("proxyAddresses value without prefix skipped", "R7",
			adUser("np", "SMTP:np@example.com", "np2@example.com"),
			skipped(user("np@example.com", "np"), sk("np2@example.com", "prefix"))),
		one("proxyAddresses without SMTP values: mail is used", "R7",
			with(adUser("x5", "X500:/o=Org/cn=x5"), attrs{"mail": {"X5@Example.com"}}),
			user("x5@example.com", "x5")),
		one("mail only (OpenLDAP inetOrgPerson)", "R3",
			sdk.Entry{ID: "8f2c-mary", DN: "uid=mary,ou=people,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"top", "person", "organizationalPerson", "inetOrgPerson"},
				"cn":          {"Mary Major"},
				"mail":        {" Mary@Example.COM "},
			}},
			user("mary@example.com", "Mary Major")),
		one("mail multi-valued: first is primary", "R7",
			sdk.Entry{ID: "mm", DN: "uid=mm,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"inetOrgPerson"},
				"mail":        {"a@example.com", "b@example.org", "A@example.com", " B@EXAMPLE.ORG", "c@elsewhere.net"},
			}},
			skipped(user("a@example.com", "", "b@example.org"), sk("c@elsewhere.net", outside))),
		one("mail primary outside the domain", "R7",
			sdk.Entry{ID: "mo", DN: "uid=mo,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"inetOrgPerson"}, "cn": {"Mo"},
				"mail": {"mo@elsewhere.net", "mo@example.com"},
			}},
			skipped(user("mo@example.com", "Mo"), sk("mo@elsewhere.net", outside))),
		one("no address at all", "R3",
			sdk.Entry{ID: "na", DN: "cn=na,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"user"}, "samaccounttype": {samUser}, "cn": {"na"},
			}},
			skip("no mail address")),
		one("no address in the domain", "R3",
			adUser("far", "SMTP:far@elsewhere.net", "smtp:far@other.org"),
			skip("no address in domain example.com", sk("far@elsewhere.net", outside), sk("far@other.org", outside))),
		one("public folder", "R3",
			sdk.Entry{ID: "pf-1", DN: "CN=Support,CN=Microsoft Exchange System Objects,DC=example,DC=com", Attributes: attrs{
				"objectclass":    {"top", "publicFolder"},
				"displayname":    {"Support Inbox"},
				"cn":             {"Support"},
				"proxyaddresses": {"SMTP:Support@example.com", "smtp:help@example.com"},
			}},
			mailbox(sdk.KindPublicFolder, "support@example.com", "Support Inbox", "help@example.com")),
		one("display name from name", "R3",
			sdk.Entry{ID: "nm", DN: "cn=nm,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"user"}, "samaccounttype": {samUser}, "name": {"Nora Name"}, "mail": {"nm@example.com"},
			}},
			user("nm@example.com", "Nora Name")),
		one("non-ASCII display name and address", "R7",
			with(adUser("jm", "SMTP:Jürgen.Müller@Example.com"), attrs{"displayname": {"Jürgen Müller 山田 🚀"}}),
			user("jürgen.müller@example.com", "Jürgen Müller 山田 🚀")),
		one("disabled user kept by default", "R3",
			with(adUser("dis", "SMTP:dis@example.com"), attrs{"useraccountcontrol": {"514"}}),
			user("dis@example.com", "dis")),
		one("security group matched", "R4",
			sdk.Entry{ID: "g1", DN: "CN=Sales,OU=Groups,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"top", "group"}, "samaccounttype": {samGroup}, "cn": {"Sales"},
				"member": {"CN=jsmith,OU=Staff,DC=example,DC=com", "CN=a,OU=Staff,DC=example,DC=com"},
			}},
			group("Sales", "Sales", "CN=jsmith,OU=Staff,DC=example,DC=com", "CN=a,OU=Staff,DC=example,DC=com")),
		one("group name differing in case is unmatched", "R4",
			sdk.Entry{ID: "g2", DN: "CN=sales,OU=Groups,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"group"}, "samaccounttype": {samGroup}, "cn": {"sales"},
			}},
			group("sales", "")),
		one("group name with trailing space is unmatched", "R4",
			sdk.Entry{ID: "g3", DN: "CN=Sales ,OU=Groups,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"group"}, "samaccounttype": {samGroup}, "cn": {"Sales "},
			}},
			group("Sales ", "")),
		one("distribution group matched", "R4",
			sdk.Entry{ID: "g4", DN: "CN=Engineering,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"group"}, "samaccounttype": {samDist}, "cn": {"Engineering"}, "mail": {"eng@example.com"},
			}},
			group("Engineering", "Engineering")),
		one("group without gateway group", "R4",
			sdk.Entry{ID: "g5", DN: "CN=Marketing,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"group"}, "samaccounttype": {samGroup}, "cn": {"Marketing"},
			}},
			group("Marketing", "")),
		one("OpenLDAP groupOfNames", "R4",
			sdk.Entry{ID: "g6", DN: "cn=all staff,ou=groups,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"top", "groupOfNames"}, "cn": {"all staff"}, "member": {"uid=mary,ou=people,dc=example,dc=com"},
			}},
			group("all staff", "all staff", "uid=mary,ou=people,dc=example,dc=com")),
		one("OpenLDAP groupOfUniqueNames: uniqueMember without its optional UID", "R5",
			sdk.Entry{ID: "g8", DN: "cn=Engineering,ou=groups,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"top", "groupOfUniqueNames"}, "cn": {"Engineering"},
				"uniquemember": {
					"uid=mary,ou=people,dc=example,dc=com",
					"uid=john,ou=people,dc=example,dc=com#'0101'B",
					"uid=ann,ou=people,dc=example,dc=com#''B",
					"cn=a#b,ou=people,dc=example,dc=com",        // '#' inside the DN: kept
					"uid=bo,ou=people,dc=example,dc=com#'012'B", // not a bit string: kept as it is
				},
			}},
			group("Engineering", "Engineering",
				"uid=mary,ou=people,dc=example,dc=com", "uid=john,ou=people,dc=example,dc=com",
				"uid=ann,ou=people,dc=example,dc=com", "cn=a#b,ou=people,dc=example,dc=com",
				"uid=bo,ou=people,dc=example,dc=com#'012'B")),
		one("member and uniqueMember both read", "R5",
			sdk.Entry{ID: "g9", DN: "cn=Sales,ou=groups,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"groupOfUniqueNames", "extensibleObject"}, "cn": {"Sales"},
				"member":       {"uid=mary,ou=people,dc=example,dc=com"},
				"uniquemember": {"uid=john,ou=people,dc=example,dc=com#'1'B"},
			}},
			group("Sales", "Sales", "uid=mary,ou=people,dc=example,dc=com", "uid=john,ou=people,dc=example,dc=com")),
		one("posixGroup skipped: members by uid, not DN", "R5",
			sdk.Entry{ID: "g10", DN: "cn=Sales,ou=groups,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"top", "posixGroup"}, "cn": {"Sales"}, "memberuid": {"mary", "john"},
			}},
			skip("posixGroup members are uid values, not DNs")),
		one("posixGroup with groupOfNames (RFC 2307bis): a group by member", "R5",
			sdk.Entry{ID: "g11", DN: "cn=Sales,ou=groups,dc=example,dc=com", Attributes: attrs{
				"objectclass": {"top", "groupOfNames", "posixGroup"}, "cn": {"Sales"},
				"member": {"uid=mary,ou=people,dc=example,dc=com"}, "memberuid": {"mary", "john"},
			}},
			group("Sales", "Sales", "uid=mary,ou=people,dc=example,dc=com")),
		one("group name from sAMAccountName", "R4",
			sdk.Entry{ID: "g7", DN: "CN=x,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"group"}, "samaccounttype": {samGroup}, "samaccountname": {"Sales"},
			}},
			group("Sales", "Sales")),
		one("computer account skipped", "R3",
			sdk.Entry{ID: "c1", DN: "CN=PC1,CN=Computers,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"top", "person", "organizationalPerson", "user", "computer"}, "samaccounttype": {"805306369"},
				"mail": {"pc1@example.com"},
			}},
			skip("sAMAccountType 805306369")),
		one("contact skipped", "R3",
			sdk.Entry{ID: "ct", DN: "CN=Ext,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"top", "person", "organizationalPerson", "contact"}, "mail": {"ext@example.com"},
			}},
			skip("contact")),
		one("organizational unit skipped", "R3",
			sdk.Entry{ID: "ou", DN: "OU=Staff,DC=example,DC=com", Attributes: attrs{"objectclass": {"top", "organizationalUnit"}}},
			skip("organizationalUnit")),
		{Name: "mixed batch keeps order", Rule: "R3", Request: sdk.MapRequest{Domain: testDomain(), Entries: []sdk.Entry{
			adUser("u1", "SMTP:u1@example.com"),
			{ID: "g", DN: "CN=Sales,DC=example,DC=com", Attributes: attrs{"objectclass": {"group"}, "cn": {"Sales"}}},
			{ID: "o", DN: "OU=x,DC=example,DC=com", Attributes: attrs{"objectclass": {"organizationalUnit"}}},
			adUser("u2", "SMTP:u2@example.org"),
		}}, Want: []sdk.Intent{
			user("u1@example.com", "u1"), group("Sales", "Sales"), skip("organizationalUnit"), user("u2@example.org", "u2"),
		}},
	}
}

func ldapBox(id int64, primary string, aliases ...string) *sdk.Mailbox {
	return &sdk.Mailbox{ID: id, DirID: "guid-" + primary, Kind: sdk.KindUser, Primary: primary, Aliases: aliases, Source: sdk.SourceLDAP}
}

func manualBox(id int64, primary string, aliases ...string) *sdk.Mailbox {
	return &sdk.Mailbox{ID: id, Kind: sdk.KindUser, Primary: primary, Aliases: aliases, Source: sdk.SourceManual}
}

func conflict(addr string, id int64, primary, source string) sdk.Conflict {
	return sdk.Conflict{Address: addr, MailboxID: id, Primary: primary, Source: source}
}

func standardReconcileCases() []ReconcileCase {
	req := func(cs ...sdk.Change) sdk.ReconcileRequest {
		return sdk.ReconcileRequest{Domain: testDomain(), Changes: cs, LDAPMailboxes: 10}
	}
	updBefore := ldapBox(7, "u@example.com", "old@example.com")
	updAfter := ldapBox(7, "u@example.com", "boss@example.com", "new@example.com", "old@example.com")
	updAfterOK := ldapBox(7, "u@example.com", "new@example.com", "old@example.com")
	return []ReconcileCase{
		{Name: "plain changes accepted", Rule: "R5", Request: req(
			sdk.Change{Kind: sdk.ChangeCreate, After: ldapBox(0, "n@example.com")},
			sdk.Change{Kind: sdk.ChangeUpdate, Before: ldapBox(3, "u@example.com"), After: ldapBox(3, "u@example.com", "v@example.com")},
			sdk.Change{Kind: sdk.ChangeDelete, Before: ldapBox(4, "gone@example.com")},
			sdk.Change{Kind: sdk.ChangeAddMember, Before: ldapBox(3, "u@example.com"), Group: "Sales"},
			sdk.Change{Kind: sdk.ChangeRemoveMember, Before: ldapBox(3, "u@example.com"), Group: "Engineering"},
			sdk.Change{Kind: sdk.ChangeAddMember, After: ldapBox(0, "n@example.com"), Group: "Sales"},
		)},
		{Name: "empty request", Rule: "R5", Request: sdk.ReconcileRequest{Domain: testDomain()}},
		{Name: "create with a conflicting address vetoed", Rule: "R10", Request: req(
			sdk.Change{Kind: sdk.ChangeCreate, After: ldapBox(0, "n@example.com")},
			sdk.Change{Kind: sdk.ChangeCreate, After: ldapBox(0, "john@example.com", "j@example.com"),
				Conflicts: []sdk.Conflict{conflict("john@example.com", 12, "john@example.com", sdk.SourceManual)}},
		), Want: []sdk.Decision{
			{Index: 1, Action: sdk.Veto, Reason: "conflict: john@example.com belongs to manual mailbox john@example.com"},
		}},
		{Name: "create with a conflicting alias vetoed", Rule: "R10", Request: req(
			sdk.Change{Kind: sdk.ChangeCreate, After: ldapBox(0, "x@example.com", "sales@example.com"),
				Conflicts: []sdk.Conflict{conflict("sales@example.com", 3, "team@example.com", sdk.SourceManual)}},
		), Want: []sdk.Decision{
			{Index: 0, Action: sdk.Veto, Reason: "conflict: sales@example.com belongs to manual mailbox team@example.com"},
		}},
		{Name: "update with a conflicting alias replaced", Rule: "R10", Request: req(
			sdk.Change{Kind: sdk.ChangeUpdate, Before: updBefore, After: updAfter,
				Conflicts: []sdk.Conflict{conflict("boss@example.com", 9, "boss@example.com", sdk.SourceManual)}},
		), Want: []sdk.Decision{
			{Index: 0, Action: sdk.Replace, Reason: "conflict: boss@example.com belongs to manual mailbox boss@example.com",
				Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, Before: updBefore, After: updAfterOK}},
		}},
		{Name: "update with a conflicting primary vetoed", Rule: "R10", Request: req(
			sdk.Change{Kind: sdk.ChangeUpdate, Before: ldapBox(7, "u@example.com"), After: ldapBox(7, "boss@example.com", "u@example.com"),
				Conflicts: []sdk.Conflict{conflict("boss@example.com", 9, "boss@example.com", sdk.SourceManual)}},
		), Want: []sdk.Decision{
			{Index: 0, Action: sdk.Veto, Reason: "conflict: boss@example.com belongs to manual mailbox boss@example.com"},
		}},
		{Name: "delete of a manual mailbox vetoed", Rule: "R6", Request: req(
			sdk.Change{Kind: sdk.ChangeDelete, Before: ldapBox(4, "gone@example.com")},
			sdk.Change{Kind: sdk.ChangeDelete, Before: manualBox(5, "keep@example.com")},
		), Want: []sdk.Decision{{Index: 1, Action: sdk.Veto, Reason: "keep@example.com"}}},
		{Name: "update of a manual mailbox vetoed", Rule: "R6", Request: req(
			sdk.Change{Kind: sdk.ChangeUpdate, Before: manualBox(5, "keep@example.com"), After: manualBox(5, "keep@example.com", "x@example.com")},
		), Want: []sdk.Decision{{Index: 0, Action: sdk.Veto, Reason: "keep@example.com"}}},
		{Name: "membership change of a manual mailbox vetoed", Rule: "R5", Request: req(
			sdk.Change{Kind: sdk.ChangeRemoveMember, Before: manualBox(5, "keep@example.com"), Group: "Sales"},
			sdk.Change{Kind: sdk.ChangeAddMember, Before: manualBox(5, "keep@example.com"), Group: "Engineering"},
		), Want: []sdk.Decision{
			{Index: 0, Action: sdk.Veto, Reason: "keep@example.com"},
			{Index: 1, Action: sdk.Veto, Reason: "keep@example.com"},
		}},
		{Name: "adopt vetoed", Rule: "R10", Request: req(
			sdk.Change{Kind: sdk.ChangeAdopt, Before: manualBox(5, "keep@example.com"), After: ldapBox(5, "keep@example.com")},
		), Want: []sdk.Decision{{Index: 0, Action: sdk.Veto, Reason: "adopt"}}},
	}
}
