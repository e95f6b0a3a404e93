package filter_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/filter"
	"github.com/dirsync/dirsync/sdk/policytest"
)

func mustParse(t testing.TB, s string) *filter.Filter {
	t.Helper()
	f, err := filter.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return f
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name, filter, want string
	}{
		{"equality", "(cn=a)", "(cn=a)"},
		{"surrounding white space", " \t(cn=a)\r\n", "(cn=a)"},
		{"white space between components", "(&\n  (objectClass=user)\n  (mail=*)\n)", "(&(objectClass=user)(mail=*))"},
		{"white space after not", "(! (cn=a) )", "(!(cn=a))"},
		{"value white space kept", "(cn= John  Smith )", "(cn= John  Smith )"},
		{"attribute case kept", "(sAMAccountType=805306368)", "(sAMAccountType=805306368)"},
		{"escapes kept as written", `(cn=a\2a\28\29\5cb\2A)`, `(cn=a\2a\28\29\5cb\2A)`},
		{"binary escapes", `(objectGUID=\01\ab\CD\00\ff)`, `(objectGUID=\01\ab\CD\00\ff)`},
		{"empty value", "(description=)", "(description=)"},
		{"present", "(mail=*)", "(mail=*)"},
		{"substrings", "(|(cn=J*n*Sm*)(mail=*@example.com)(sn=*ith))", "(|(cn=J*n*Sm*)(mail=*@example.com)(sn=*ith))"},
		{"approx greater less", "(|(sn~=smith)(uSNChanged>=1000)(badPwdCount<=3))", "(|(sn~=smith)(uSNChanged>=1000)(badPwdCount<=3))"},
		{"extensible", "(cn:caseExactMatch:=Fred)", "(cn:caseExactMatch:=Fred)"},
		{"extensible dn spelling kept", "(:DN:2.4.6.8.10:=Dino)", "(:DN:2.4.6.8.10:=Dino)"},
		{"extensible attribute only", "(cn:=Betty)", "(cn:=Betty)"},
		{"options and numeric OID", "(&(cn;lang-de;x-foo=Müller)(2.5.4.3=John))", "(&(cn;lang-de;x-foo=Müller)(2.5.4.3=John))"},
		{"non-ASCII", "(displayName=山田 太郎 — Zoë 🚀)", "(displayName=山田 太郎 — Zoë 🚀)"},
		{"equals in value", "(member=CN=a=b,DC=x)", "(member=CN=a=b,DC=x)"},
		{"deepest allowed", strings.Repeat("(!", filter.MaxDepth-1) + "(cn=a)" + strings.Repeat(")", filter.MaxDepth-1), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == "" {
				want = tc.filter
			}
			if got := mustParse(t, tc.filter).String(); got != want {
				t.Errorf("Parse(%q).String() = %q, want %q", tc.filter, got, want)
			}
		})
	}
}

// TestParseErrors checks the position and the reason of errors. Positions
// are 0-based byte offsets in the filter as given, leading white space and
// multi-byte characters included.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		filter string
		pos    int
		reason string
	}{
		{"", 0, "empty"},
		{"   ", 3, "empty"},
		{"cn=a", 0, "wrapped in parentheses"},
		{"  cn=a", 2, "wrapped in parentheses"},
		{")", 0, "wrapped in parentheses"},
		{"()", 1, "empty filter"},
		{"(&)", 2, "'&' must hold at least one filter"},
		{"(|)", 2, "'|' must hold at least one filter"},
		{"(& )", 3, "at least one filter"},
		{"   (|)", 5, "at least one"},
		{"(&(cn=a)(|))", 10, "at least one"},
		{"(&cn=a)", 2, "expected '(' after '&'"},
		{"(!cn=a)", 2, "expected '(' after '!'"},
		{"(!(cn=a)(cn=b))", 8, "exactly one"},
		{"(cn=a", 5, "unbalanced"},
		{"(cn=a  ", 7, "unbalanced"},
		{"(&(cn=a)(cn=b)", 14, "unbalanced"},
		{"(&(cn=a)(cn=b)))", 15, "unbalanced"},
		{"(cn=a)(cn=b)", 6, "join several filters"},
		{"(cn=a) x", 7, "trailing characters"},
		{"(=a)", 1, "empty attribute"},
		{"(&(cn=a)(>=x))", 9, "empty attribute"},
		{"(c n=a)", 2, "invalid character ' '"},
		{"(c$n=a)", 2, "invalid character '$'"},
		{"(cé=a)", 2, `invalid character 'é'`},
		{"(cn\xff=a)", 3, "byte 0xff"},
		{"(1cn=a)", 2, "numeric OID"},
		{"(1=x)", 1, "at least two numbers"},
		{"(1.02=x)", 3, "leading zero"},
		{"(1.2.=x)", 5, "empty number"},
		{"(cn;=x)", 4, "empty attribute option"},
		{"(cn;a_b=x)", 5, "invalid character '_'"},
		{"(cn;a.b=x)", 5, "invalid character '.' in attribute option"},
		{"(cn)", 3, "filter type"},
		{"(cn", 3, "filter type"},
		{"(cn~x)", 4, "expected '=' after '~'"},
		{"(cn>", 4, "expected '=' after '>'"},
		{"(cn=a(b)", 5, "unescaped '('"},
		{"(cn=Müller(", 11, "unescaped '('"},
		{"(cn~=a*)", 6, "unescaped '*'"},
		{"(cn:=a*)", 6, "unescaped '*'"},
		{"(cn=a**b)", 6, "two '*' in a row"},
		{`(cn=a\zz)`, 5, "invalid escape"},
		{`(cn=a\4)`, 5, "invalid escape"},
		{`(cn=a\`, 5, "invalid escape"},
		{`(cn=\*)`, 4, "invalid escape"},
		{"(cn=a\x00)", 5, "NUL"},
		{"(cn=a\xff)", 5, "invalid UTF-8"},
		{"(:=x)", 1, "needs a matching rule"},
		{"(:dn:=x)", 4, "needs a matching rule"},
		{"(cn:", 4, "ends early"},
		{"(cn:rule=x)", 8, "expected ':'"},
		{"(cn:dn:rule:x:=y)", 12, "after the matching rule"},
		{"(cn:1.02:=x)", 6, "leading zero"},
		{"(cn::=x)", 4, "expected 'dn', a matching rule or '='"},
		{strings.Repeat("(!", 200) + "(cn=a)" + strings.Repeat(")", 200), 256, "deeper than 128"},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := filter.Parse(tc.filter)
			var fe *sdk.FilterError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse(%q) = %v, %v; want a *sdk.FilterError", tc.filter, f, err)
			}
			if fe.Position != tc.pos || !strings.Contains(fe.Reason, tc.reason) {
				t.Errorf("Parse(%q): position %d: %s\n\twant position %d, reason containing %q", tc.filter, fe.Position, fe.Reason, tc.pos, tc.reason)
			}
		})
	}
}

// TestStandardCases runs the filter cases of the conformance kit, which the
// standard policy answers with this parser: the same positions, reasons and
// normalized filters. (An empty filter means the policy's default there.)
func TestStandardCases(t *testing.T) {
	cs := append(policytest.StandardCases().Filter, policytest.ABICases().Filter...)
	for _, c := range cs {
		if strings.TrimSpace(c.Filter) == "" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			f, err := filter.Parse(c.Filter)
			if c.Err == nil {
				if err != nil || f.String() != c.Want {
					t.Fatalf("Parse(%.80q) = %v, %v; want %.80q", c.Filter, f, err, c.Want)
				}
				return
			}
			var fe *sdk.FilterError
			if !errors.As(err, &fe) || fe.Position != c.Err.Position || !strings.Contains(fe.Reason, c.Err.Reason) {
				t.Fatalf("Parse(%.80q): %v; want position %d, reason containing %q", c.Filter, err, c.Err.Position, c.Err.Reason)
			}
		})
	}
}

func TestTree(t *testing.T) {
	const in = `(&(objectClass=user)(!(cn=a\2ab))(|(mail=*)(sn=Sm*th*\28x)(a~=b)(u>=1)(v<=2))(cn:dn:2.5.13.5:=X))`
	f := mustParse(t, in)
	want := &filter.And{Filters: []filter.Node{
		&filter.Equality{Attribute: "objectClass", Value: "user"},
		&filter.Not{Filter: &filter.Equality{Attribute: "cn", Value: "a*b"}},
		&filter.Or{Filters: []filter.Node{
			&filter.Present{Attribute: "mail"},
			&filter.Substring{Attribute: "sn", Initial: "Sm", Any: []string{"th"}, Final: "(x"},
			&filter.Approx{Attribute: "a", Value: "b"},
			&filter.GreaterOrEqual{Attribute: "u", Value: "1"},
			&filter.LessOrEqual{Attribute: "v", Value: "2"},
		}},
		&filter.Extensible{Attribute: "cn", DNAttributes: true, MatchingRule: "2.5.13.5", Value: "X"},
	}}
	// The nodes remember how their values were written; compare what is
	// public, and the printed form.
	if got, want := show(f.Root), show(want); got != want {
		t.Errorf("tree\n got  %s\n want %s", got, want)
	}
	if f.String() != in {
		t.Errorf("String() = %q, want %q", f.String(), in)
	}
	if got, want := want.String(), `(&(objectClass=user)(!(cn=a\2ab))(|(mail=*)(sn=Sm*th*\28x)(a~=b)(u>=1)(v<=2))(cn:dn:2.5.13.5:=X))`; got != want {
		t.Errorf("String() of the tree built by hand = %q, want %q", got, want)
	}
	if s := mustParse(t, "(cn=*a*)").Root.(*filter.Substring); s.Initial != "" || s.Final != "" || !reflect.DeepEqual(s.Any, []string{"a"}) {
		t.Errorf("(cn=*a*) = %+v", s)
	}
	if s := mustParse(t, "(cn=a*)").Root.(*filter.Substring); s.Initial != "a" || s.Final != "" || len(s.Any) != 0 {
		t.Errorf("(cn=a*) = %+v", s)
	}
}

// show prints the public fields of a tree.
func show(n filter.Node) string {
	switch n := n.(type) {
	case *filter.And:
		return "And" + showList(n.Filters)
	case *filter.Or:
		return "Or" + showList(n.Filters)
	case *filter.Not:
		return "Not(" + show(n.Filter) + ")"
	case *filter.Equality:
		return "Eq(" + n.Attribute + "," + n.Value + ")"
	case *filter.Substring:
		return "Sub(" + n.Attribute + "," + n.Initial + "," + strings.Join(n.Any, "|") + "," + n.Final + ")"
	case *filter.Present:
		return "Present(" + n.Attribute + ")"
	case *filter.Approx:
		return "Approx(" + n.Attribute + "," + n.Value + ")"
	case *filter.GreaterOrEqual:
		return "Ge(" + n.Attribute + "," + n.Value + ")"
	case *filter.LessOrEqual:
		return "Le(" + n.Attribute + "," + n.Value + ")"
	case *filter.Extensible:
		return "Ext(" + n.Attribute + "," + map[bool]string{true: "dn", false: ""}[n.DNAttributes] + "," + n.MatchingRule + "," + n.Value + ")"
	}
	return "?"
}

func showList(ns []filter.Node) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = show(n)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestStringBuilt checks String on trees built or changed by hand: values
// are escaped, and a changed value is no longer printed as it was written.
func TestStringBuilt(t *testing.T) {
	built := &filter.Filter{Root: &filter.And{Filters: []filter.Node{
		&filter.Equality{Attribute: "cn", Value: "a*(b)\\\x00"},
		&filter.Substring{Attribute: "cn", Initial: "GG-(", Any: []string{"*", ""}, Final: "x"},
		&filter.Present{Attribute: "mail"},
		&filter.Not{Filter: &filter.Approx{Attribute: "sn", Value: "\xff"}},
		&filter.Extensible{Attribute: "userAccountControl", MatchingRule: "1.2.840.113556.1.4.803", Value: "2"},
		&filter.Extensible{MatchingRule: "caseExactMatch", DNAttributes: true, Value: "Dino"},
		&filter.GreaterOrEqual{Attribute: "u", Value: ")"},
		&filter.LessOrEqual{Attribute: "v", Value: "9"},
	}}}
	want := `(&(cn=a\2a\28b\29\5c\00)(cn=GG-\28*\2a*x)(mail=*)(!(sn~=\ff))(userAccountControl:1.2.840.113556.1.4.803:=2)(:dn:caseExactMatch:=Dino)(u>=\29)(v<=9))`
	if got := built.String(); got != want {
		t.Errorf("String() = %q\n want %q", got, want)
	}
	if again := mustParse(t, want).String(); again != want {
		t.Errorf("printed filter does not parse to itself: %q", again)
	}

	f := mustParse(t, `(&(cn=\41b)(sn=\41*\42))`)
	f.Root.(*filter.And).Filters[0].(*filter.Equality).Value = "x*"
	f.Root.(*filter.And).Filters[1].(*filter.Substring).Final = "C"
	if got := f.String(); got != `(&(cn=x\2a)(sn=A*C))` {
		t.Errorf("changed tree: %q", got)
	}
	if (*filter.Filter)(nil).String() != "" || (&filter.Filter{}).String() != "" {
		t.Error("an empty Filter prints something")
	}
}

func TestEscapeValue(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"GG-Mail-":        "GG-Mail-",
		"Zoë 山田":          "Zoë 山田",
		"a*b":             `a\2ab`,
		`(x)\`:            `\28x\29\5c`,
		"nul\x00":         `nul\00`,
		"bad\xffutf8\xc3": `bad\ffutf8\c3`,
	} {
		if got := filter.EscapeValue(in); got != want {
			t.Errorf("EscapeValue(%q) = %q, want %q", in, got, want)
		}
		if f, err := filter.Parse("(cn=" + filter.EscapeValue(in) + ")"); err != nil || f.Root.(*filter.Equality).Value != in {
			t.Errorf("EscapeValue(%q) does not parse back: %v", in, err)
		}
	}
}

func TestAttributes(t *testing.T) {
	f := mustParse(t, "(&(objectClass=user)(|(MAIL=*)(mail=x*)(cn;lang-de~=a))(!(sAMAccountType>=1))(:caseExactMatch:=x)(memberOf:1.2.840.113556.1.4.1941:=cn=g)(objectclass<=z))")
	want := []string{"objectclass", "mail", "cn;lang-de", "samaccounttype", "memberof"}
	if got := f.Attributes(); !reflect.DeepEqual(got, want) {
		t.Errorf("Attributes() = %q, want %q", got, want)
	}
	if got := (*filter.Filter)(nil).Attributes(); len(got) != 0 {
		t.Errorf("nil Filter: Attributes() = %q", got)
	}
}

// FuzzParse checks that Parse never panics, that every error is a
// *sdk.FilterError inside the filter, and that the String of a parsed
// filter parses again to the same String. The seed corpus is in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))",
		"(&\n (a:dn:1.2:=x)\n)", "(cn=a\\2a*b)", "(!(x~=y))", "(cn;x=\xff)", "(|)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := filter.Parse(s)
		if err != nil {
			var fe *sdk.FilterError
			if !errors.As(err, &fe) || fe.Position < 0 || fe.Position > len(s) || fe.Reason == "" {
				t.Fatalf("Parse(%q): bad error %#v", s, err)
			}
			return
		}
		out := p.String()
		again, err := filter.Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q, which does not parse: %v", s, out, err)
		}
		if again.String() != out {
			t.Fatalf("Parse(%q).String() = %q, which prints as %q", s, out, again.String())
		}
		if show(again.Root) != show(p.Root) {
			t.Fatalf("Parse(%q): the tree of its String differs:\n %s\n %s", s, show(p.Root), show(again.Root))
		}
		p.Attributes()
		p.Match(sdk.Entry{DN: "cn=a,dc=b", Attributes: map[string][]string{"cn": {"a", " A  b "}, "x": {"-12"}}})
	})
}
