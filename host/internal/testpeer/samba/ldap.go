package samba

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer"
	"github.com/go-ldap/ldap/v3"
)

// userAccountControl bits (MS-ADTS 2.2.16).
const (
	UACAccountDisable = 0x0002
	UACPasswdNotReqd  = 0x0020
	UACNormalAccount  = 0x0200
)

// groupType values (MS-ADTS 2.2.12).
const (
	GroupGlobalSecurity     = -2147483646 // 0x80000002: sAMAccountType 268435456
	GroupGlobalDistribution = 2           // sAMAccountType 268435457
)

// admin writes as the Administrator.
func (s *Server) admin() testpeer.Admin {
	return testpeer.Admin{Name: "samba", URL: s.URL, DN: s.AdminDN, Password: s.AdminPassword,
		DialTimeout: 5 * time.Second, Timeout: 2 * time.Minute}
}

// Dial connects to the DC and binds as the Administrator.
func (s *Server) Dial() (*ldap.Conn, error) { return s.admin().Dial() }

// Add adds an entry as the Administrator. Attributes without values are
// left out.
func (s *Server) Add(dn string, attrs map[string][]string) error { return s.admin().Add(dn, attrs) }

// Modify applies a modify request as the Administrator.
func (s *Server) Modify(req *ldap.ModifyRequest) error { return s.admin().Modify(req) }

// Replace replaces all values of attr of the entry dn (no values deletes
// the attribute).
func (s *Server) Replace(dn, attr string, values ...string) error {
	return s.admin().Replace(dn, attr, values...)
}

// Delete deletes the entry dn.
func (s *Server) Delete(dn string) error { return s.admin().Delete(dn) }

// ModifyDN renames the entry dn to newRDN (e.g. "CN=Alice Smith") and, when
// newSuperior is not empty, moves it below newSuperior. It returns the new
// DN.
func (s *Server) ModifyDN(dn, newRDN, newSuperior string) (string, error) {
	parent := newSuperior
	if parent == "" {
		var ok bool
		if parent, ok = parentDN(dn); !ok {
			return "", fmt.Errorf("samba: DN %q has no parent", dn)
		}
	}
	err := s.admin().Do("rename", dn, func(c *ldap.Conn) error {
		return c.ModifyDN(ldap.NewModifyDNRequest(dn, newRDN, true, newSuperior))
	})
	if err != nil {
		return "", err
	}
	return newRDN + "," + parent, nil
}

// parentDN returns dn without its first RDN: what follows the first comma
// that is not escaped.
func parentDN(dn string) (string, bool) {
	for i := 0; i < len(dn); i++ {
		switch dn[i] {
		case '\\':
			i++
		case ',':
			return strings.TrimSpace(dn[i+1:]), dn[i+1:] != ""
		}
	}
	return "", false
}

// Entry reads the entry dn with the given attributes (all user attributes
// when none are given).
func (s *Server) Entry(dn string, attrs ...string) (*ldap.Entry, error) {
	var e *ldap.Entry
	err := s.admin().Do("read", dn, func(c *ldap.Conn) error {
		res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", attrs, nil))
		if err != nil {
			return err
		}
		if len(res.Entries) != 1 {
			return fmt.Errorf("%d entries", len(res.Entries))
		}
		e = res.Entries[0]
		return nil
	})
	return e, err
}

// ObjectGUID returns the objectGUID of the entry dn as AD stores it: 16
// bytes, the first three fields little-endian.
func (s *Server) ObjectGUID(dn string) ([]byte, error) {
	e, err := s.Entry(dn, "objectGUID")
	if err != nil {
		return nil, err
	}
	g := e.GetRawAttributeValue("objectGUID")
	if len(g) != 16 {
		return nil, fmt.Errorf("samba: %s: objectGUID of %d bytes", dn, len(g))
	}
	return g, nil
}

// AddOU adds the organizational unit OU=name below the base DN and returns
// its DN.
func (s *Server) AddOU(name string) (string, error) {
	dn := "OU=" + ldap.EscapeDN(name) + "," + s.BaseDN
	return dn, s.Add(dn, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {name}})
}

// User is a user account for AddUser. AD itself sets objectGUID, objectSid,
// sAMAccountType (805306368) and, for the groups that list the user as a
// member, memberOf.
type User struct {
	// CN is the common name (the RDN); required.
	CN string
	// Parent is the DN the user is created below. Default CN=Users,BaseDN.
	Parent string
	// SAMAccountName is the logon name; default: CN in lower case with
	// characters AD refuses dropped, cut to 20 characters.
	SAMAccountName string
	DisplayName    string
	ProxyAddresses []string
	Mail           []string
	// Disabled sets the ACCOUNTDISABLE bit of userAccountControl.
	Disabled bool
	// UserAccountControl, when not 0, is used as it is (Disabled is then
	// ignored). The default is NORMAL_ACCOUNT (512), or 514 when Disabled.
	// The account has no password (Samba allows that over LDAP; Windows
	// would want PASSWD_NOTREQD, 544).
	UserAccountControl int
	// Attrs are further attributes.
	Attrs map[string][]string
}

// DN is the user's DN below base (Parent when set).
func (u User) DN(base string) string { return entryDN(u.CN, u.Parent, base) }

// entryDN is the DN of CN=cn below parent, or below CN=Users,base when
// parent is "".
func entryDN(cn, parent, base string) string {
	if parent == "" {
		parent = "CN=Users," + base
	}
	return "CN=" + ldap.EscapeDN(cn) + "," + parent
}

func (u User) attrs() map[string][]string {
	uac := u.UserAccountControl
	if uac == 0 {
		uac = UACNormalAccount
		if u.Disabled {
			uac |= UACAccountDisable
		}
	}
	sam := u.SAMAccountName
	if sam == "" {
		sam = samName(u.CN)
	}
	a := map[string][]string{
		"objectClass":        {"top", "person", "organizationalPerson", "user"},
		"cn":                 {u.CN},
		"sAMAccountName":     {sam},
		"userAccountControl": {strconv.Itoa(uac)},
		"proxyAddresses":     u.ProxyAddresses,
		"mail":               u.Mail,
	}
	if u.DisplayName != "" {
		a["displayName"] = []string{u.DisplayName}
	}
	for k, v := range u.Attrs {
		a[k] = v
	}
	return a
}

// samName derives a sAMAccountName from a common name.
func samName(cn string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(cn) {
		if b.Len() >= 20 {
			break
		}
		switch {
		case r == ' ':
			b.WriteByte('.')
		case r > ' ' && r < 0x7f && !strings.ContainsRune(`"/\[]:;|=,+*?<>@`, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// AddUser adds a user account and returns its DN.
func (s *Server) AddUser(u User) (string, error) {
	dns, err := s.AddUsers([]User{u})
	if err != nil {
		return "", err
	}
	return dns[0], nil
}

// AddUsers adds user accounts over one connection and returns their DNs.
// It stops at the first failure.
func (s *Server) AddUsers(users []User) ([]string, error) {
	dns := make([]string, len(users))
	for i, u := range users {
		if u.CN == "" {
			return nil, fmt.Errorf("samba: user %d has no CN", i)
		}
		dns[i] = u.DN(s.BaseDN)
	}
	err := s.admin().Do("add users", s.BaseDN, func(c *ldap.Conn) error {
		// One at a time: Samba applies adds one after the other anyway
		// (about 2 ms each), so more in flight gains nothing.
		for i, u := range users {
			if err := c.Add(testpeer.AddRequest(dns[i], u.attrs())); err != nil {
				return fmt.Errorf("user %d of %d (%s): %w", i+1, len(users), dns[i], err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return dns, nil
}

// Group is a group for AddGroup. AD sets objectGUID, sAMAccountType and
// the members' memberOf.
type Group struct {
	// CN is the common name (the RDN) and the group's name; required.
	CN string
	// Parent is the DN the group is created below. Default CN=Users,BaseDN.
	Parent         string
	SAMAccountName string // default: CN
	// Members are the DNs of the members.
	Members []string
	// Distribution makes a distribution group (sAMAccountType 268435457)
	// instead of a security group (268435456); both are global.
	Distribution   bool
	ProxyAddresses []string
	Mail           []string
	Attrs          map[string][]string
}

// DN is the group's DN below base (Parent when set).
func (g Group) DN(base string) string { return entryDN(g.CN, g.Parent, base) }

// AddGroup adds a group with its members in one request and returns its DN.
func (s *Server) AddGroup(g Group) (string, error) {
	if g.CN == "" {
		return "", fmt.Errorf("samba: group without a CN")
	}
	gt := GroupGlobalSecurity
	if g.Distribution {
		gt = GroupGlobalDistribution
	}
	sam := g.SAMAccountName
	if sam == "" {
		sam = g.CN
	}
	a := map[string][]string{
		"objectClass":    {"top", "group"},
		"cn":             {g.CN},
		"sAMAccountName": {sam},
		"groupType":      {strconv.Itoa(gt)},
		"member":         g.Members,
		"proxyAddresses": g.ProxyAddresses,
		"mail":           g.Mail,
	}
	for k, v := range g.Attrs {
		a[k] = v
	}
	dn := g.DN(s.BaseDN)
	return dn, s.Add(dn, a)
}

// AddMembers adds members (DNs) to the group dn.
func (s *Server) AddMembers(group string, members ...string) error {
	req := ldap.NewModifyRequest(group, nil)
	req.Add("member", members)
	return s.Modify(req)
}
