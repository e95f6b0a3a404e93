package slapd

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestParseLDIF(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []record
		wantErr string
	}{
		{
			name: "version, comments, folding, base64, CRLF",
			in: "version: 1\r\n# comment\r\n#  folded comment\r\n" +
				"dn: cn=a,dc=x\r\nobjectClass: person\r\ncn: a\r\nsn:: w7w=\r\ndescription: long\r\n  value\r\nCN: b\r\n",
			want: []record{{source: "t", line: 4, dn: "cn=a,dc=x", changeType: "add", attrs: []ldap.Attribute{
				{Type: "objectClass", Vals: []string{"person"}},
				{Type: "cn", Vals: []string{"a", "b"}},
				{Type: "sn", Vals: []string{"ü"}},
				{Type: "description", Vals: []string{"long value"}},
			}}},
		},
		{
			name: "several records, delete and modify",
			in: "dn: cn=a,dc=x\nobjectClass: top\n\n\n" +
				"dn: cn=b,dc=x\nchangetype: delete\n\n" +
				"dn: cn=c,dc=x\nchangetype: modify\nadd: member\nmember: cn=a,dc=x\nmember: cn=d,dc=x\n-\nreplace: mail\nmail: c@x\n-\ndelete: sn\n-\n",
			want: []record{
				{source: "t", line: 1, dn: "cn=a,dc=x", changeType: "add", attrs: []ldap.Attribute{{Type: "objectClass", Vals: []string{"top"}}}},
				{source: "t", line: 5, dn: "cn=b,dc=x", changeType: "delete"},
				{source: "t", line: 8, dn: "cn=c,dc=x", changeType: "modify", changes: []ldap.Change{
					{Operation: ldap.AddAttribute, Modification: ldap.PartialAttribute{Type: "member", Vals: []string{"cn=a,dc=x", "cn=d,dc=x"}}},
					{Operation: ldap.ReplaceAttribute, Modification: ldap.PartialAttribute{Type: "mail", Vals: []string{"c@x"}}},
					{Operation: ldap.DeleteAttribute, Modification: ldap.PartialAttribute{Type: "sn"}},
				}},
			},
		},
		{name: "empty input", in: "\n\n# only a comment\n"},
		{name: "no dn", in: "cn: a\n", wantErr: "t:1: record does not start with dn:"},
		{name: "no colon", in: "dn: cn=a\ncn a\n", wantErr: "t:2: line \"cn a\" is not \"attribute: value\""},
		{name: "bad base64", in: "dn: cn=a\ncn:: %%%\n", wantErr: "t:2: attribute cn: bad base64"},
		{name: "continuation first", in: " x\n", wantErr: "t:1: continuation line without a line to continue"},
		{name: "modrdn", in: "dn: cn=a\nchangetype: modrdn\nnewrdn: cn=b\n", wantErr: "changetype \"modrdn\" is not supported"},
		{name: "modify without dash", in: "dn: cn=a\nchangetype: modify\nadd: cn\ncn: x\nreplace: sn\nsn: y\n", wantErr: "missing \"-\" line"},
		{name: "http URL", in: "dn: cn=a\njpegPhoto:< http://x/y\n", wantErr: "only file:// URLs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []record
			err := eachRecordIn("t", strings.NewReader(tt.in), func(r *record, _ rawRecord) error {
				got = append(got, *r)
				return nil
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseLDIFFileURL(t *testing.T) {
	p := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(p, []byte("from file"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got string
	err := eachRecordIn("t", strings.NewReader("dn: cn=a\ndescription:< file://"+p+"\n"), func(r *record, _ rawRecord) error {
		got = r.values("description")[0]
		return nil
	})
	if err != nil || got != "from file" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestNormDN(t *testing.T) {
	tests := []struct{ a, b string }{
		{"CN=Alice Anders,OU=People,DC=Example,DC=com", "cn=alice anders,ou=people,dc=example,dc=com"},
		{"cn=a, dc=x", "cn=a,dc=x"},
		{`cn=a\2cb,dc=x`, `cn=a\,b,dc=x`},
	}
	for _, tt := range tests {
		if normDN(tt.a) != normDN(tt.b) {
			t.Errorf("normDN(%q) = %q != normDN(%q) = %q", tt.a, normDN(tt.a), tt.b, normDN(tt.b))
		}
	}
}

func TestLDIFLine(t *testing.T) {
	tests := []struct{ value, want string }{
		{"cn=a,dc=x", "memberOf: cn=a,dc=x"},
		{"", "memberOf: "},
		{" lead", "memberOf:: IGxlYWQ="},
		{":colon", "memberOf:: OmNvbG9u"},
		{"trail ", "memberOf:: dHJhaWwg"},
		{"cn=Jürgen", "memberOf:: Y249SsO8cmdlbg=="},
	}
	for _, tt := range tests {
		if got := ldifLine("memberOf", tt.value); got != tt.want {
			t.Errorf("ldifLine(%q) = %q, want %q", tt.value, got, tt.want)
		}
	}
}

// TestPrepareSlapadd checks the generated base entry and memberOf values.
func TestPrepareSlapadd(t *testing.T) {
	p := filepath.Join(t.TempDir(), "in.ldif")
	in := "dn: cn=u1,dc=x\nobjectClass: person\ncn: u1\nsn: u\nmemberOf: CN=G2,DC=X\n\n" +
		"dn: cn=g1,dc=x\nobjectClass: groupOfNames\ncn: g1\nmember: CN=U1, DC=X\n\n" +
		"dn: cn=g2,dc=x\nobjectClass: groupOfNames\ncn: g2\nmember: cn=u1,dc=x\n"
	if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	orig, err := prepareSlapadd(&out, "dc=x", []string{p})
	if err != nil {
		t.Fatal(err)
	}
	want := "dn: dc=x\nobjectClass: dcObject\nobjectClass: organization\ndc: x\no: x\n\n" +
		"dn: cn=u1,dc=x\nobjectClass: person\ncn: u1\nsn: u\nmemberOf: CN=G2,DC=X\nmemberOf: cn=g1,dc=x\n\n" +
		"dn: cn=g1,dc=x\nobjectClass: groupOfNames\ncn: g1\nmember: CN=U1, DC=X\n\n" +
		"dn: cn=g2,dc=x\nobjectClass: groupOfNames\ncn: g2\nmember: cn=u1,dc=x\n\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if got := orig.explain("slapadd: dn=... (line=15): bad"); !strings.Contains(got, "in.ldif:8") {
		t.Errorf("explain = %q, want in.ldif:8", got)
	}
}

func TestGenerateDirectory(t *testing.T) {
	tests := []struct {
		opts                   GenOptions
		users, groups, members int
	}{
		{GenOptions{Users: 0}, 0, 0, 0},
		{GenOptions{Users: 1}, 1, 1, 1},
		{GenOptions{Users: 250}, 250, 2, 250},
		{GenOptions{Users: 10, Groups: 3}, 10, 3, 10},
		{GenOptions{Users: 2, Groups: 5}, 2, 2, 2},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := GenerateDirectory(&b, tt.opts); err != nil {
			t.Fatal(err)
		}
		var users, groups, members int
		err := eachRecordIn("gen", &b, func(r *record, _ rawRecord) error {
			switch {
			case r.hasObjectClass("adUser"):
				users++
				if n := len(r.values("proxyAddresses")); n != 2 {
					t.Errorf("%s: %d proxyAddresses", r.dn, n)
				}
			case r.hasObjectClass("groupOfNames"):
				groups++
				if len(r.values("member")) == 0 {
					t.Errorf("%s has no member", r.dn)
				}
				members += len(r.values("member"))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if users != tt.users || groups != tt.groups || members != tt.members {
			t.Errorf("%+v: %d users, %d groups, %d members; want %d, %d, %d", tt.opts, users, groups, members, tt.users, tt.groups, tt.members)
		}
	}
}
