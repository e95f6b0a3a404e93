package ldapfetch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// answering starts a loopback TCP server that answers whatever comes first
// on a connection with reply and closes it, as a web server that refuses a
// request line at its first bad byte does; it returns its ldap:// URL.
func answering(t *testing.T, reply []byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err == nil {
					_, _ = c.Write(reply)
				}
			}()
		}
	}()
	return "ldap://" + l.Addr().String()
}

// TestFetchNotLDAP points a fetch at servers that speak something else: the
// error names the URL and asks whether it is an LDAP server, instead of
// reporting a malformed LDAP message.
func TestFetchNotLDAP(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(web.Close)
	webURL := "ldap://" + strings.TrimPrefix(web.URL, "http://")
	tests := []struct {
		name string
		url  string
		// anonymous: no bind, the search is the first request.
		anonymous bool
		want      []string
	}{
		{
			// Go's HTTP server reads the request line up to a line feed;
			// a password of 10 bytes puts one (its length) in the bind
			// request, and the server answers 400 Bad Request.
			name: "a Go web server answers the bind",
			url:  webURL,
			want: []string{"ldap " + webURL + ": bind as cn=reader,dc=example,dc=com: is this an LDAP server? (it answered with bytes that are not LDAP: \"HTTP/1.1 400 Bad Request\")"},
		},
		{
			name: "a web server answers the search",
			url:  answering(t, []byte("HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nConnection: close\r\n\r\n")),
			want: []string{"search page 1 (after 0 entries): is this an LDAP server? (it answered with bytes that are not LDAP: \"HTTP/1.1 400 Bad Request\")"},
			// The search is the first request.
			anonymous: true,
		},
		{
			name: "a TLS port reached with ldap://",
			url:  answering(t, []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46}),
			want: []string{"is this an LDAP server? (it answered with a TLS record, not LDAP: a port that speaks TLS from the start needs an ldaps:// URL)"},
		},
		{
			name: "an SSH server",
			url:  answering(t, []byte("SSH-2.0-OpenSSH_9.6\r\n")),
			want: []string{`it answered with bytes that are not LDAP: "SSH-2.0-OpenSSH_9.6"`},
		},
		{
			name: "binary garbage",
			url:  answering(t, []byte{0x00, 0xff, 0x10}),
			want: []string{"it answered with bytes that are not LDAP: 00 ff 10"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{URLs: []string{tt.url}, BindDN: "cn=reader,dc=example,dc=com", Password: "0123456789",
				BaseDN: "dc=example,dc=com", Timeout: 10 * time.Second}
			if tt.anonymous {
				cfg.BindDN, cfg.Password = "", ""
			}
			_, _, err := FetchAll(context.Background(), cfg, "(objectClass=*)", nil)
			if err == nil {
				t.Fatal("fetch from a server that is not LDAP succeeded")
			}
			msg := err.Error()
			for _, w := range append(tt.want, tt.url) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "malformed") {
				t.Errorf("error %q still speaks of a malformed LDAP message", msg)
			}
			if !errors.Is(err, errMalformed) {
				t.Errorf("error %v does not unwrap to errMalformed", err)
			}
		})
	}

	// Failover passes over such a server to the next URL.
	cfg := Config{URLs: []string{webURL, closedURL(t)}, BindDN: "cn=reader,dc=example,dc=com", Password: "0123456789",
		BaseDN: "dc=example,dc=com", Timeout: 10 * time.Second}
	_, _, err := FetchAll(context.Background(), cfg, "(objectClass=*)", nil)
	if err == nil || !strings.Contains(err.Error(), "no server reachable") || !strings.Contains(err.Error(), "is this an LDAP server?") {
		t.Errorf("failover error = %v, want both servers with the first asked about", err)
	}
}
