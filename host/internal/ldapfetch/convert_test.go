package ldapfetch

import (
	"reflect"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/sdk"
)

func TestFormatGUID(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr string
	}{
		{
			// The example of Microsoft's documentation: bytes as stored,
			// first three groups little-endian.
			name: "AD byte order",
			in:   []byte{0xff, 0x19, 0x96, 0x6f, 0x86, 0x8b, 0x11, 0xd0, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff},
			want: "6f9619ff-8b86-d011-b42d-00c04fc964ff",
		},
		{
			name: "sequence",
			in:   []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
			want: "03020100-0504-0706-0809-0a0b0c0d0e0f",
		},
		{name: "zero", in: make([]byte, 16), want: "00000000-0000-0000-0000-000000000000"},
		{name: "short", in: []byte{1, 2, 3}, wantErr: "objectGUID has 3 bytes, want 16"},
		{name: "empty", in: nil, wantErr: "objectGUID has 0 bytes, want 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FormatGUID(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FormatGUID = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func attr(name string, vals ...string) rawAttr {
	return rawAttr{name: name, vals: vals}
}

type testEntry struct {
	DN         string
	Attributes []rawAttr
}

func TestConvertEntry(t *testing.T) {
	guid := string([]byte{0xff, 0x19, 0x96, 0x6f, 0x86, 0x8b, 0x11, 0xd0, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff})
	sid := string([]byte{1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0xa1, 0xb2})
	tests := []struct {
		name    string
		in      testEntry
		want    sdk.Entry
		wantErr string
	}{
		{
			name: "AD entry: objectGUID is the ID, binary values base64",
			in: testEntry{DN: "CN=Alice,DC=ad,DC=test", Attributes: []rawAttr{
				attr("objectGUID", guid), attr("objectSid", sid),
				attr("proxyAddresses", "SMTP:alice@ad.test", "smtp:a@ad.test"), attr("sAMAccountName", "alice"),
			}},
			want: sdk.Entry{ID: "6f9619ff-8b86-d011-b42d-00c04fc964ff", DN: "CN=Alice,DC=ad,DC=test", Attributes: map[string][]string{
				"objectguid":     {"/xmWb4aLEdC0LQDAT8lk/w=="},
				"objectsid":      {"AQUAAAAAAAUVAAAAobI="},
				"proxyaddresses": {"SMTP:alice@ad.test", "smtp:a@ad.test"},
				"samaccountname": {"alice"},
			}},
		},
		{
			name: "OpenLDAP entry: entryUUID is the ID",
			in: testEntry{DN: "cn=bob,dc=x", Attributes: []rawAttr{
				attr("entryUUID", "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"), attr("mail", "bob@x"),
			}},
			want: sdk.Entry{ID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", DN: "cn=bob,dc=x", Attributes: map[string][]string{
				"entryuuid": {"0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"}, "mail": {"bob@x"},
			}},
		},
		{
			name: "objectGUID wins over entryUUID",
			in: testEntry{DN: "cn=c", Attributes: []rawAttr{
				attr("entryUUID", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), attr("objectGUID", string(make([]byte, 16))),
			}},
			want: sdk.Entry{ID: "00000000-0000-0000-0000-000000000000", DN: "cn=c", Attributes: map[string][]string{
				"entryuuid": {"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}, "objectguid": {"AAAAAAAAAAAAAAAAAAAAAA=="},
			}},
		},
		{
			name: "no stable id: the DN",
			in:   testEntry{DN: "cn=d,dc=x", Attributes: []rawAttr{attr("cn", "d")}},
			want: sdk.Entry{ID: "cn=d,dc=x", DN: "cn=d,dc=x", Attributes: map[string][]string{"cn": {"d"}}},
		},
		{
			name: "a value that is not UTF-8 makes the attribute base64",
			in: testEntry{DN: "cn=e", Attributes: []rawAttr{
				attr("description", "ok", "\xff\xfe"), attr("displayName", "Jürgen"),
			}},
			want: sdk.Entry{ID: "cn=e", DN: "cn=e", Attributes: map[string][]string{
				"description": {"b2s=", "//4="}, "displayname": {"Jürgen"},
			}},
		},
		{
			name: "known binary attribute with printable bytes is still base64",
			in:   testEntry{DN: "cn=f", Attributes: []rawAttr{attr("jpegPhoto", "abc"), attr("userCertificate;binary", "xyz")}},
			want: sdk.Entry{ID: "cn=f", DN: "cn=f", Attributes: map[string][]string{"jpegphoto": {"YWJj"}, "usercertificate;binary": {"eHl6"}}},
		},
		{
			name:    "short objectGUID",
			in:      testEntry{DN: "cn=g", Attributes: []rawAttr{attr("objectGUID", "abc")}},
			wantErr: `entry "cn=g": objectGUID has 3 bytes, want 16`,
		},
		{
			name:    "ranged attribute",
			in:      testEntry{DN: "cn=h", Attributes: []rawAttr{attr("member;range=0-1499", "cn=a")}},
			wantErr: "member;range=0-1499 is an unread range",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newConverter().entry(tt.in.DN, tt.in.Attributes)
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

func TestRequestAttributes(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{nil, []string{"*", "objectGUID", "entryUUID"}},
		{[]string{"mail"}, []string{"mail", "objectGUID", "entryUUID"}},
		{[]string{"mail", "entryuuid", "MAIL"}, []string{"mail", "entryuuid", "objectGUID"}},
	}
	for _, tt := range tests {
		if got := requestAttributes(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("requestAttributes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{
			&Error{Server: "ldap://h", Op: "bind as cn=r", Err: ldap.NewError(49, errorString("80090308: LdapErr: DSID-0C09044E\nAcceptSecurityContext error")), secret: "pw"},
			"ldap ldap://h: bind as cn=r: LDAP result 49 (Invalid Credentials): 80090308: LdapErr: DSID-0C09044E AcceptSecurityContext error",
		},
		{
			&Error{Server: "ldap://h", Op: "connect", Err: errorString("dial with hunter2 in it"), secret: "hunter2"},
			"ldap ldap://h: connect: dial with *** in it",
		},
		{
			&Error{Op: "config", Err: errorString("no server URL")},
			"ldap: config: no server URL",
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
