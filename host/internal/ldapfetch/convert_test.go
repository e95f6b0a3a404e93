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
			name: "a value that is not UTF-8 gets U+FFFD for its bad bytes, the others stay",
			in: testEntry{DN: "cn=e", Attributes: []rawAttr{
				attr("description", "ok", "\xff\xfe"), attr("displayName", "Jürgen"),
				attr("proxyAddresses", "SMTP:j@x", "smtp:j\xfcrgen@x", "smtp:m\xfcller@x\xc3", "smtp:ok@x"),
				attr("sn", "M\xfcller"),
			}},
			want: sdk.Entry{ID: "cn=e", DN: "cn=e", Attributes: map[string][]string{
				"description": {"ok", "\uFFFD"}, "displayname": {"Jürgen"},
				"proxyaddresses": {"SMTP:j@x", "smtp:j\uFFFDrgen@x", "smtp:m\uFFFDller@x\uFFFD", "smtp:ok@x"},
				"sn":             {"M\uFFFDller"},
			}},
		},
		{
			name: "entryUUID not UTF-8: the ID is the repaired value",
			in:   testEntry{DN: "cn=u", Attributes: []rawAttr{attr("entryUUID", "ab\xffcd")}},
			want: sdk.Entry{ID: "ab\uFFFDcd", DN: "cn=u", Attributes: map[string][]string{"entryuuid": {"ab\uFFFDcd"}}},
		},
		{
			name: "binary attributes stay base64 whatever the bytes",
			in: testEntry{DN: "cn=b", Attributes: []rawAttr{
				attr("thumbnailPhoto", "\xff\xd8\xff"), attr("objectSid", "\x01\x05"), attr("foo;binary", "\xfe"),
			}},
			want: sdk.Entry{ID: "cn=b", DN: "cn=b", Attributes: map[string][]string{
				"thumbnailphoto": {"/9j/"}, "objectsid": {"AQU="}, "foo;binary": {"/g=="},
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
		{
			&Error{Server: "ldap://127.0.0.1:3890", Op: "search page 1 (after 0 entries)", Err: searchFailed("ou=staff,dc=example,dc=com",
				ldapResult{code: 10, referral: []string{"ldap://elsewhere/ou=staff,dc=example,dc=com"}}, true)},
			`ldap ldap://127.0.0.1:3890: search page 1 (after 0 entries): the server answered the search of "ou=staff,dc=example,dc=com" with a referral to ldap://elsewhere/ou=staff,dc=example,dc=com instead of its entries: nothing was read`,
		},
		{
			&Error{Server: "ldap://h", Op: "search page 3 (after 2000 entries)", Err: searchFailed("dc=x",
				ldapResult{code: 4, diag: "size limit\nexceeded"}, false)},
			"ldap ldap://h: search page 3 (after 2000 entries): LDAP result 4 (Size Limit Exceeded): size limit exceeded: the server's size limit for this account stops the result short: the result is incomplete",
		},
		{
			&Error{Server: "ldap://h", Op: "search page 1 (after 0 entries)", Err: searchFailed("dc=x",
				ldapResult{code: 32, matched: "dc=x"}, true)},
			"ldap ldap://h: search page 1 (after 0 entries): LDAP result 32 (No Such Object) (matched DN dc=x): nothing was read",
		},
		{
			&Error{Server: "ldap://dc1.example.com:389", Op: "refusing to send the bind password in clear text", Err: ErrCleartextBind, secret: "pw"},
			"ldap ldap://dc1.example.com:389: refusing to send the bind password in clear text: use ldaps:// or start_tls = true, or set allow_cleartext_bind = true",
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
