package ldapfetch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer/ldaptest"
	"github.com/dirsync/dirsync/sdk"
)

func TestCleartextRefused(t *testing.T) {
	bind := Config{BindDN: "cn=reader,dc=example,dc=com", Password: "pw"}
	tests := []struct {
		name string
		cfg  func(*Config)
		url  string
		want bool
	}{
		{name: "ldap to a remote name", url: "ldap://dc1.example.com:389", want: true},
		{name: "ldap without a port", url: "ldap://dc1.example.com", want: true},
		{name: "ldap to a remote IPv4 address", url: "ldap://192.0.2.10", want: true},
		{name: "ldap to a remote IPv6 address", url: "ldap://[2001:db8::1]:389", want: true},
		{name: "ldap to 128.0.0.1", url: "ldap://128.0.0.1", want: true},
		{name: "ldap to ::2", url: "ldap://[::2]", want: true},
		{name: "a name that looks local is not resolved", url: "ldap://localhost.localdomain", want: true},
		{name: "localhost. is another name", url: "ldap://localhost.:389", want: true},
		{name: "a short form of 127.0.0.1 is a name", url: "ldap://127.1", want: true},
		{name: "upper-case scheme", url: "LDAP://dc1.example.com", want: true},
		{name: "ldaps", url: "ldaps://dc1.example.com", want: false},
		{name: "StartTLS", cfg: func(c *Config) { c.StartTLS = true }, url: "ldap://dc1.example.com", want: false},
		{name: "allowed", cfg: func(c *Config) { c.AllowCleartextBind = true }, url: "ldap://dc1.example.com", want: false},
		{name: "anonymous", cfg: func(c *Config) { c.BindDN, c.Password = "", "" }, url: "ldap://dc1.example.com", want: false},
		{name: "127.0.0.1", url: "ldap://127.0.0.1:3890", want: false},
		{name: "elsewhere in 127/8", url: "ldap://127.45.6.7", want: false},
		{name: "::1", url: "ldap://[::1]:389", want: false},
		{name: "::1 with a zone", url: "ldap://[::1%25lo]:389", want: false},
		{name: "IPv4-mapped loopback", url: "ldap://[::ffff:127.0.0.1]", want: false},
		{name: "localhost", url: "ldap://localhost:389", want: false},
		{name: "LocalHost", url: "ldap://LocalHost", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := bind
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			scheme, _, host, err := parseURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := cleartextRefused(cfg, scheme, host); got != tt.want {
				t.Errorf("cleartextRefused(%s) = %v, want %v", tt.url, got, tt.want)
			}
		})
	}
}

func TestFetchCleartextBind(t *testing.T) {
	fake := startFake(t, func(w *ldaptest.Conn, n int) { adUser(w, 1); w.Done(0, ldaptest.Cookie("")) })
	const remote = "ldap://dc1.example.com:389"
	down := closedURL(t)
	tests := []struct {
		name    string
		urls    []string
		allow   bool
		want    string // the whole error; "" = success from fake
		wantAll []string
	}{
		{
			name: "the only URL is refused",
			urls: []string{remote},
			want: "ldap ldap://dc1.example.com:389: refusing to send the bind password in clear text: use ldaps:// or start_tls = true, or set allow_cleartext_bind = true",
		},
		{
			name: "a refused URL fails over to the next",
			urls: []string{remote, fake},
		},
		{
			name:    "all fail: the error names each",
			urls:    []string{remote, down},
			wantAll: []string{"no usable server", remote + ": refusing to send the bind password in clear text", down + ": connect"},
		},
		{
			// Allowed, the remote URL is tried: an address of TEST-NET-1
			// (RFC 5737) that no connection reaches.
			name:    "allowed: the URL is tried",
			urls:    []string{"ldap://192.0.2.1:389"},
			allow:   true,
			wantAll: []string{"ldap://192.0.2.1:389: connect"},
		},
		{
			name:  "allowed: failover still works",
			urls:  []string{"ldap://192.0.2.1:389", fake},
			allow: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{URLs: tt.urls, BindDN: "CN=reader,DC=ad,DC=test", Password: "fake-secret", BaseDN: "DC=ad,DC=test",
				Timeout: time.Second, ConnectTimeout: 200 * time.Millisecond, AllowCleartextBind: tt.allow}
			res, err := Fetch(context.Background(), cfg, defaultFilter, nil, func(sdk.Entry) error { return nil })
			switch {
			case tt.want != "":
				if err == nil || err.Error() != tt.want {
					t.Fatalf("err = %v\nwant %s", err, tt.want)
				}
				if !errors.Is(err, ErrCleartextBind) {
					t.Errorf("error does not wrap ErrCleartextBind")
				}
			case tt.wantAll != nil:
				if err == nil {
					t.Fatal("Fetch succeeded")
				}
				checkError(t, err, cfg.Password, tt.wantAll...)
				if tt.allow && errors.Is(err, ErrCleartextBind) {
					t.Errorf("refused although allowed: %v", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if res.URL != fake || res.Entries != 1 {
					t.Errorf("result %+v, want 1 entry from %s", res, fake)
				}
			}
		})
	}
}
