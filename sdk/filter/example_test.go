package filter_test

import (
	"errors"
	"fmt"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/filter"
)

// A policy's Filter stage: parse the operator's filter, refuse a broken one
// with its position, and hand the normalized filter to the host.
func ExampleParse() {
	f, err := filter.Parse("(&\n  (objectClass=user)\n  (mail=*)\n)")
	fmt.Println(f, err)

	_, err = filter.Parse("(&(objectClass=user)(|))")
	fmt.Println(err)
	var fe *sdk.FilterError
	if errors.As(err, &fe) {
		fmt.Println(fe.Position)
	}
	// Output:
	// (&(objectClass=user)(mail=*)) <nil>
	// invalid filter at position 22: '|' must hold at least one filter, found ')'
	// 22
}

// The syntax tree, taken apart with a type switch.
func ExampleParse_tree() {
	f, _ := filter.Parse(`(&(objectClass=user)(!(displayName=Test*))(cn=a\2ab))`)
	for _, n := range f.Root.(*filter.And).Filters {
		switch n := n.(type) {
		case *filter.Equality:
			fmt.Printf("%s equals %q\n", n.Attribute, n.Value)
		case *filter.Not:
			s := n.Filter.(*filter.Substring)
			fmt.Printf("not: %s starts with %q\n", s.Attribute, s.Initial)
		}
	}
	// Output:
	// objectClass equals "user"
	// not: displayName starts with "Test"
	// cn equals "a*b"
}

// Match decides for one entry, in Map; Attributes names what it reads, for
// Info.
func ExampleFilter_Match() {
	f, _ := filter.Parse("(&(objectClass=user)(displayName=test*)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))")
	fmt.Println(f.Attributes())
	for _, e := range []sdk.Entry{
		{DN: "CN=a", Attributes: map[string][]string{"objectclass": {"top", "user"}, "displayname": {"Test Account"}, "useraccountcontrol": {"512"}}},
		{DN: "CN=b", Attributes: map[string][]string{"objectclass": {"top", "user"}, "displayname": {"TEST account"}, "useraccountcontrol": {"514"}}},
		{DN: "CN=c", Attributes: map[string][]string{"objectclass": {"top", "user"}, "displayname": {"Tess Test"}, "useraccountcontrol": {"512"}}},
	} {
		fmt.Println(e.DN, f.Match(e))
	}
	// Output:
	// [objectclass displayname useraccountcontrol]
	// CN=a true
	// CN=b false
	// CN=c false
}

// A value from a setting goes into a filter escaped.
func ExampleEscapeValue() {
	prefix := "GG-Mail-(EU)*"
	fmt.Println("(cn=" + filter.EscapeValue(prefix) + "*)")
	// Output:
	// (cn=GG-Mail-\28EU\29\2a*)
}
