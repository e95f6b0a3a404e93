package testpeer

import (
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Admin makes a test's LDAP writes to a peer as its administrator, who may
// write everything. Each call opens a connection of its own and binds.
type Admin struct {
	// Name names the peer in errors: "slapd", "samba".
	Name string
	// URL is the peer's ldap:// URL.
	URL string
	// DN and Password are the administrator's credentials.
	DN, Password string
	// DialTimeout bounds connecting, Timeout every request of a
	// connection; 0 keeps go-ldap's defaults.
	DialTimeout, Timeout time.Duration
}

// Dial connects to the peer and binds as the administrator.
func (a Admin) Dial() (*ldap.Conn, error) {
	var opts []ldap.DialOpt
	if a.DialTimeout > 0 {
		opts = append(opts, ldap.DialWithDialer(&net.Dialer{Timeout: a.DialTimeout}))
	}
	c, err := ldap.DialURL(a.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", a.Name, a.URL, err)
	}
	if a.Timeout > 0 {
		c.SetTimeout(a.Timeout)
	}
	if err := c.Bind(a.DN, a.Password); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s %s: bind as %s: %w", a.Name, a.URL, a.DN, err)
	}
	return c, nil
}

// Do runs op on a new connection bound as the administrator; an error of
// op names what it did (e.g. "add") to the entry dn.
func (a Admin) Do(what, dn string, op func(*ldap.Conn) error) error {
	c, err := a.Dial()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := op(c); err != nil {
		return fmt.Errorf("%s %s: %s %q: %w", a.Name, a.URL, what, dn, err)
	}
	return nil
}

// Add adds an entry. Attributes without values are left out.
func (a Admin) Add(dn string, attrs map[string][]string) error {
	return a.Do("add", dn, func(c *ldap.Conn) error { return c.Add(AddRequest(dn, attrs)) })
}

// Modify applies a modify request.
func (a Admin) Modify(req *ldap.ModifyRequest) error {
	return a.Do("modify", req.DN, func(c *ldap.Conn) error { return c.Modify(req) })
}

// Replace replaces all values of attr of the entry dn (no values deletes
// the attribute).
func (a Admin) Replace(dn, attr string, values ...string) error {
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace(attr, values)
	return a.Modify(req)
}

// Delete deletes the entry dn.
func (a Admin) Delete(dn string) error {
	return a.Do("delete", dn, func(c *ldap.Conn) error { return c.Del(ldap.NewDelRequest(dn, nil)) })
}

// AddRequest builds an add request with the attributes in name order,
// leaving out those without values.
func AddRequest(dn string, attrs map[string][]string) *ldap.AddRequest {
	names := make([]string, 0, len(attrs))
	for n, v := range attrs {
		if len(v) > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	req := ldap.NewAddRequest(dn, nil)
	for _, n := range names {
		req.Attribute(n, attrs[n])
	}
	return req
}
