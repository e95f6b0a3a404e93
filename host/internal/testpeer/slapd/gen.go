package slapd

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// AD sAMAccountType values used by the fixtures.
const (
	AccountTypeUser              = 805306368
	AccountTypeSecurityGroup     = 268435456
	AccountTypeDistributionGroup = 268435457
)

// GenOptions configure GenerateDirectory.
type GenOptions struct {
	// BaseDN is the directory suffix. Default "dc=example,dc=com".
	BaseDN string
	// Domain is the mail domain of the addresses. Default "example.com".
	Domain string
	// Container is the RDN of the OU, directly below BaseDN, that holds
	// everything generated (in ou=People and ou=Groups below it), so that
	// generated data can sit next to a hand-written fixture. Default
	// "ou=Generated".
	Container string
	// Users is the number of users.
	Users int
	// Groups is the number of groups. Default Users/100, at least 1 when
	// there are users; never more than Users (groupOfNames needs a member).
	Groups int
	// WithBase also writes the base entry (not needed for Options.LDIF,
	// which creates it).
	WithBase bool
}

// GenerateDirectory streams an AD-like directory as LDIF to w: the
// container OUs, o.Users users (inetOrgPerson+adUser, sAMAccountType
// 805306368, mail and two proxyAddresses: SMTP:userNNNNNN@domain and
// smtp:first.last@domain) and o.Groups groups (groupOfNames+adGroup,
// alternately security and distribution). User i belongs to group
// i mod Groups, so groups have Users/Groups members each; memberOf follows
// from member (Options.LDIF or the memberof overlay add it).
func GenerateDirectory(w io.Writer, o GenOptions) error {
	if o.BaseDN == "" {
		o.BaseDN = "dc=example,dc=com"
	}
	if o.Domain == "" {
		o.Domain = "example.com"
	}
	if o.Container == "" {
		o.Container = "ou=Generated"
	}
	if o.Users < 0 || o.Groups < 0 {
		return fmt.Errorf("gendir: negative count (users %d, groups %d)", o.Users, o.Groups)
	}
	if o.Groups == 0 && o.Users > 0 {
		o.Groups = max(1, o.Users/100)
	}
	o.Groups = min(o.Groups, o.Users)
	ouName, ok := strings.CutPrefix(o.Container, "ou=")
	if !ok {
		return fmt.Errorf("gendir: container %q must be an ou= RDN", o.Container)
	}
	top := o.Container + "," + o.BaseDN
	people := "ou=People," + top
	groups := "ou=Groups," + top

	bw := bufio.NewWriterSize(w, 256<<10)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	if o.WithBase {
		lines, err := baseEntry(o.BaseDN)
		if err != nil {
			return err
		}
		p("%s\n\n", strings.Join(lines, "\n"))
	}
	p("dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n", top, ouName)
	p("dn: %s\nobjectClass: organizationalUnit\nou: People\n\n", people)
	p("dn: %s\nobjectClass: organizationalUnit\nou: Groups\n\n", groups)

	for i := 1; i <= o.Users; i++ {
		p("dn: cn=user%06d,%s\n"+
			"objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nobjectClass: adUser\n"+
			"cn: user%06d\nsn: Last%06d\ngivenName: First%06d\ndisplayName: First%06d Last%06d\n"+
			"sAMAccountName: user%06d\nsAMAccountType: %d\nuserAccountControl: 512\n"+
			"mail: user%06d@%s\n"+
			"proxyAddresses: SMTP:user%06d@%s\nproxyAddresses: smtp:first%06d.last%06d@%s\n\n",
			i, people, i, i, i, i, i, i, AccountTypeUser, i, o.Domain, i, o.Domain, i, i, o.Domain)
	}
	for g := 0; g < o.Groups; g++ {
		typ := AccountTypeSecurityGroup
		if g%2 == 1 {
			typ = AccountTypeDistributionGroup
		}
		p("dn: cn=group%05d,%s\n"+
			"objectClass: top\nobjectClass: groupOfNames\nobjectClass: adGroup\n"+
			"cn: group%05d\nsAMAccountName: group%05d\nsAMAccountType: %d\n"+
			"mail: group%05d@%s\nproxyAddresses: SMTP:group%05d@%s\n",
			g, groups, g, g, typ, g, o.Domain, g, o.Domain)
		// Users are 1-based; user i is in group i mod Groups.
		for i := g; i <= o.Users; i += o.Groups {
			if i == 0 {
				continue
			}
			p("member: cn=user%06d,%s\n", i, people)
		}
		p("\n")
	}
	return bw.Flush()
}
