package filter_test

import (
	"testing"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/filter"
)

// adUser is an entry as the host hands it to Map: lower-case attribute
// names, binary values base64.
var adUser = sdk.Entry{
	ID: "5c2f6a54-0d2b-4e0f-9f55-3c1d2e4f6a7b",
	DN: `CN=Smith\, J.,OU=Test Users+L=Berlin,DC=example,DC=com`,
	Attributes: map[string][]string{
		"objectclass":        {"top", "person", "organizationalPerson", "user"},
		"samaccounttype":     {"805306368"},
		"useraccountcontrol": {"514"},
		"grouptype":          {"-2147483646"},
		"displayname":        {"  Test   John Smith "},
		"cn":                 {"Smith, John"},
		"cn;lang-de":         {"Schmidt, Johann"},
		"mail":               {"John.Smith@Example.com"},
		"proxyaddresses":     {"SMTP:John.Smith@Example.com", "smtp:js@example.org"},
		"usnchanged":         {"120034"},
		"whenchanged":        {"20240131120000.0Z"},
		"badpwdcount":        {"0"},
		"givenname":          {"Jürgen ΣΊΣΥΦΟΣ"},
		"objectguid":         {"VCovXCsND06fVTwdLk9qew=="},
		"memberof":           {"CN=Sales,OU=Groups,DC=example,DC=com"},
	},
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		// Equality: caseIgnoreMatch, attribute names in any case.
		{"(objectClass=user)", true},
		{"(OBJECTCLASS=USER)", true},
		{"(objectClass=computer)", false},
		{"(sAMAccountType=805306368)", true},
		{"(mail=john.smith@example.com)", true},
		{"(displayName=test john smith)", true},         // insignificant space
		{"(displayName= Test John  Smith )", true},      // on both sides
		{"(displayName=TestJohn Smith)", false},         // but space is not nothing
		{`(cn=smith\2c john)`, true},                    // escapes decoded
		{"(givenName=jürgen σίσυφοσ)", true},            // Unicode case folding
		{"(cn;lang-de=schmidt, johann)", true},          // options are part of the name
		{"(cn;lang-fr=Smith, John)", false},             // an option the entry lacks
		{"(description=x)", false},                      // an attribute the entry lacks
		{"(description=)", false},                       //
		{`(objectGUID=\54\2a\2f)`, false},               // binary values are base64
		{"(objectGUID=VCovXCsND06fVTwdLk9qew==)", true}, // and match as such
		// Approx is equality.
		{"(sn~=smith)", false},
		{"(cn~=SMITH, JOHN)", true},
		// Presence.
		{"(mail=*)", true},
		{"(telephoneNumber=*)", false},
		// Substrings: caseIgnoreSubstringsMatch, in order, no overlap.
		{"(displayName=Test*)", true},
		{"(displayName=test*)", true},
		{"(displayName=*smith)", true},
		{"(displayName=test*john*smith)", true},
		{"(displayName=test j*)", true},
		{"(displayName=*smith*john*)", false},
		{"(displayName=Tester*)", false},
		{"(mail=*@example.com)", true},
		{"(proxyAddresses=smtp:*@example.org)", true},
		{"(cn=Smith*Smith)", false}, // overlap
		{"(cn=Sm*ith, John)", true},
		{`(cn=*\2c*)`, true},
		// Ordering: integers as integers, other values as text.
		{"(uSNChanged>=120034)", true},
		{"(uSNChanged>=99999)", true}, // 120034 > 99999 as numbers, not as text
		{"(uSNChanged>=1000000)", false},
		{"(uSNChanged<=0120034)", true},
		{"(badPwdCount<=3)", true},
		{"(badPwdCount>=-1)", true},
		{"(groupType<=-2147483646)", true},
		{"(groupType>=0)", false},
		{"(whenChanged>=20240101000000.0Z)", true},
		{"(whenChanged<=20231231000000.0Z)", false},
		{"(cn>=smith)", true},
		{"(cn<=SMITH)", false},
		// Boolean logic.
		{"(&(objectClass=user)(mail=*))", true},
		{"(&(objectClass=user)(objectClass=computer))", false},
		{"(|(objectClass=computer)(mail=*))", true},
		{"(|(objectClass=computer)(description=*))", false},
		{"(!(objectClass=computer))", true},
		{"(!(!(objectClass=user)))", true},
		{"(!(description=x))", true}, // an absent attribute is false, not Undefined
		// Extensible matches.
		{"(userAccountControl:1.2.840.113556.1.4.803:=2)", true}, // disabled
		{"(userAccountControl:1.2.840.113556.1.4.803:=514)", true},
		{"(userAccountControl:1.2.840.113556.1.4.803:=16)", false},
		{"(!(userAccountControl:1.2.840.113556.1.4.803:=2))", false},
		{"(userAccountControl:1.2.840.113556.1.4.804:=18)", true},
		{"(userAccountControl:1.2.840.113556.1.4.804:=16)", false},
		{"(groupType:1.2.840.113556.1.4.803:=2147483648)", true}, // the sign bit
		{"(cn:1.2.840.113556.1.4.803:=2)", false},                // not an integer: Undefined
		{"(!(cn:1.2.840.113556.1.4.803:=2))", false},             // and its negation too
		{"(cn:=SMITH, JOHN)", true},
		{"(cn:caseIgnoreMatch:=SMITH, JOHN)", true},
		{"(cn:2.5.13.2:=SMITH, JOHN)", true},
		{"(cn:caseExactMatch:=SMITH, JOHN)", false},
		{"(cn:caseExactMatch:=Smith, John)", true},
		{"(CN:CASEEXACTMATCH:=Smith, John)", true},
		{"(usnChanged:integerMatch:=0120034)", true},
		{"(:caseExactMatch:=Smith, John)", true}, // any attribute
		{"(:caseExactMatch:=Berlin)", false},
		{"(:dn:caseExactMatch:=Berlin)", true},                                              // the DN's values count with :dn
		{"(ou:dn:=test users)", true},                                                       //
		{"(ou=test users)", false},                                                          // but not without
		{"(l:dn:=berlin)", true},                                                            // a multi-valued RDN
		{"(cn:dn:=smith, j.)", true},                                                        // an escaped comma in the DN
		{"(cn=smith, j.)", false},                                                           //
		{"(:1.2.840.113556.1.4.803:=2)", true},                                              // bits of any integer attribute
		{"(:1.2.840.113556.1.4.803:=8)", false},                                             // non-integers are passed over:
		{"(!(:1.2.840.113556.1.4.803:=8))", true},                                           // false, not Undefined
		{"(memberOf:1.2.840.113556.1.4.1941:=CN=Sales,OU=Groups,DC=example,DC=com)", false}, // in chain: Undefined
		{"(!(memberOf:1.2.840.113556.1.4.1941:=CN=Sales,OU=Groups,DC=example,DC=com))", false},
		{"(cn:2.4.6.8.10:=x)", false}, // an unknown rule
		// Three-valued logic: Undefined (the in-chain rule) in And, Or, Not.
		{"(|(memberOf:1.2.840.113556.1.4.1941:=x)(mail=*))", true},
		{"(|(memberOf:1.2.840.113556.1.4.1941:=x)(description=*))", false},
		{"(!(|(memberOf:1.2.840.113556.1.4.1941:=x)(description=*)))", false},
		{"(&(memberOf:1.2.840.113556.1.4.1941:=x)(description=*))", false},
		{"(!(&(memberOf:1.2.840.113556.1.4.1941:=x)(description=*)))", true},
		{"(!(&(memberOf:1.2.840.113556.1.4.1941:=x)(mail=*)))", false},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			if got := mustParse(t, tc.filter).Match(adUser); got != tc.want {
				t.Errorf("Parse(%q).Match(adUser) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func TestMatchEdges(t *testing.T) {
	if (*filter.Filter)(nil).Match(adUser) || (&filter.Filter{}).Match(adUser) {
		t.Error("an empty Filter matches")
	}
	if mustParse(t, "(objectClass=*)").Match(sdk.Entry{}) {
		t.Error("an entry without attributes has an objectClass")
	}
	if !mustParse(t, "(!(objectClass=*))").Match(sdk.Entry{}) {
		t.Error("(!(objectClass=*)) does not match an entry without attributes")
	}
	empty := sdk.Entry{Attributes: map[string][]string{"mail": {}}}
	if mustParse(t, "(mail=*)").Match(empty) {
		t.Error("an attribute without values is present")
	}
	// A tree built by hand may have holes; they are Undefined.
	f := &filter.Filter{Root: &filter.Or{Filters: []filter.Node{nil, &filter.Not{}}}}
	if f.Match(adUser) {
		t.Error("a tree with nil nodes matches")
	}
	// Long attribute names (past the lookup's stack buffer) still match.
	long := "x-very-long-attribute-name-that-goes-on-and-on-and-on-past-sixty-four-bytes"
	e := sdk.Entry{Attributes: map[string][]string{long: {"v"}}}
	if !mustParse(t, "(X"+long[1:]+"=V)").Match(e) {
		t.Error("a long attribute name in another case does not match")
	}
}

// BenchmarkMatch evaluates a filter of every kind against an AD user entry,
// as a policy does in Map.
func BenchmarkMatch(b *testing.B) {
	f := mustParse(b, "(&(|(sAMAccountType=805306368)(objectClass=publicFolder))(!(userAccountControl:1.2.840.113556.1.4.803:=2))(displayName=Test*)(mail=*)(uSNChanged>=1000))")
	b.ReportAllocs()
	for b.Loop() {
		f.Match(adUser)
	}
}

// BenchmarkParse parses the default filter of the standard policy.
func BenchmarkParse(b *testing.B) {
	const s = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := filter.Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
