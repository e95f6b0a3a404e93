package samba

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Changes a delta reader (DirSync, uSNChanged polling) must see, and the
// accounts it reads as.

// GUIDGetChanges is the control access right "Replicating Directory
// Changes" (DS-Replication-Get-Changes), which the DirSync control asks of
// a reader on the naming context's root unless it sets
// LDAP_DIRSYNC_OBJECT_SECURITY.
const GUIDGetChanges = "1131f6aa-9c07-11d1-f79f-00c04fc2dcd2"

// RemoveMembers removes members (DNs) from the group dn.
func (s *Server) RemoveMembers(group string, members ...string) error {
	req := ldap.NewModifyRequest(group, nil)
	req.Delete("member", members)
	return s.Modify(req)
}

// Rename gives the entry dn the RDN CN=cn below the same parent and
// returns its new DN.
func (s *Server) Rename(dn, cn string) (string, error) {
	return s.ModifyDN(dn, "CN="+ldap.EscapeDN(cn), "")
}

// Move moves the entry dn, keeping its RDN, below newParent and returns
// its new DN.
func (s *Server) Move(dn, newParent string) (string, error) {
	parent, ok := parentDN(dn)
	if !ok {
		return "", fmt.Errorf("samba: DN %q has no parent", dn)
	}
	rdn := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(strings.TrimSuffix(dn, parent)), ","))
	return s.ModifyDN(dn, rdn, newParent)
}

// Reader is an account for AddReader.
type Reader struct {
	// Name is the account's sAMAccountName and CN (below CN=Users).
	Name string
	// GetChanges grants the account "Replicating Directory Changes"
	// (GUIDGetChanges) on the domain's root: what DirSync without
	// LDAP_DIRSYNC_OBJECT_SECURITY needs. It grants nothing else: the
	// account reads like any domain user otherwise.
	GetChanges bool
}

// AddReader creates a user account that can bind with a password, and
// returns its DN and password. It runs samba-tool on the server's database
// (a second or two).
func (s *Server) AddReader(ctx context.Context, r Reader) (dn, password string, err error) {
	if r.Name == "" || !validName(r.Name, "-._") || len(r.Name) > 20 {
		return "", "", fmt.Errorf("samba: reader name %q: want up to 20 letters, digits, dashes, dots or underscores", r.Name)
	}
	password = newPassword()
	if err := s.tool(ctx, password, "user", "create", r.Name, password, "--description=dirsync test reader"); err != nil {
		return "", "", err
	}
	dn = "CN=" + r.Name + ",CN=Users," + s.BaseDN
	if r.GetChanges {
		if err := s.GrantGetChanges(ctx, dn); err != nil {
			return "", "", err
		}
	}
	return dn, password, nil
}

// GrantGetChanges grants the account dn "Replicating Directory Changes"
// on the domain's root.
func (s *Server) GrantGetChanges(ctx context.Context, dn string) error {
	return s.tool(ctx, "", "dsacl", "set", "--objectdn="+s.BaseDN, "--trusteedn="+dn, "--car=get-changes", "--action=allow")
}

// tool runs samba-tool with args on the server's database; secret is kept
// out of its error.
func (s *Server) tool(ctx context.Context, secret string, args ...string) error {
	bin, err := findProgram(s.opts.SambaToolPath, "samba-tool")
	if err != nil {
		return err
	}
	args = append(args, "-H", filepath.Join(s.Dir, "private", "sam.ldb"), "-s", s.conf)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = s.Dir
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		shown := strings.Join(args[:2], " ")
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "***")
		}
		return fmt.Errorf("samba: samba-tool %s: %v: %s", shown, err, msg)
	}
	return nil
}
