// Package testpeer holds what the directory servers that the tests start
// have in common; each peer has a folder of its own below it:
//
//	slapd      a real OpenLDAP server (the bench and dev tools start it too)
//	samba      a real Samba Active Directory domain controller
//	ldaptest   a scripted LDAP server, in the test's own process
//	peertest   starting slapd and samba from a test
//
// The shared parts are process control (Daemon: start, wait until ready,
// stop, kill; Tail and FileTail for a server's log in errors), finding a
// server's programs (FindProgram), the throwaway TLS certificate authority
// of a peer (WriteTLSFiles) and the LDAP writes a test makes as a peer's
// administrator (Admin).
//
// Only peertest and ldaptest import package testing, and only tests import
// them: the programs that start a server (host/internal/cmd/...) use slapd
// and link no testing code of this tree.
package testpeer
