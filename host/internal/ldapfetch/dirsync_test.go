package ldapfetch

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/samba"
	"github.com/dirsync/dirsync/sdk"
)

// Delta reading against a real Samba AD DC (host/internal/testpeer/samba).
// Samba's port is fixed, so one DC serves all of it: one test, with
// subtests that build on each other in order.

// dsFilter is the host's default filter without public folders.
const dsFilter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457))"

var dsAttrs = []string{"cn", "displayName", "mail", "proxyAddresses", "member", "memberOf", "sAMAccountType", "userAccountControl"}

// dsMust returns v, or fails the test given to the function it returns:
// dsMust(dc.AddOU("Sync"))(t).
func dsMust[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// guidOf returns the formatted objectGUID of dn.
func guidOf(t testing.TB, dc *samba.Server, dn string) string {
	t.Helper()
	g, err := dc.ObjectGUID(dn)
	if err != nil {
		t.Fatal(err)
	}
	return dsMust(FormatGUID(g))(t)
}

// dirSyncAll runs DirSync and returns its changes by ID.
func dirSyncAll(t testing.TB, cfg Config, opts DirSyncOptions, cookie []byte) (map[string]DirSyncChange, DirSyncResult, error) {
	t.Helper()
	got := map[string]DirSyncChange{}
	res, err := DirSyncWith(context.Background(), cfg, opts, dsFilter, dsAttrs, cookie, func(c DirSyncChange) error {
		if _, dup := got[c.ID]; dup {
			t.Errorf("change of %s (%s) twice", c.ID, c.DN)
		}
		got[c.ID] = c
		return nil
	})
	return got, res, err
}

func TestDirSyncSamba(t *testing.T) {
	ctx := context.Background()
	dc := peertest.Samba(t, samba.Options{})
	syncOU := dsMust(dc.AddOU("Sync"))(t)
	elsewhere := dsMust(dc.AddOU("Elsewhere"))(t)
	user := func(cn string, pa ...string) string {
		return dsMust(dc.AddUser(samba.User{CN: cn, Parent: syncOU, ProxyAddresses: pa}))(t)
	}
	alice := user("Alice", "SMTP:alice@example.com")
	bob := user("Bob")
	carol := user("Carol")
	dave := user("Dave")
	frank := user("Frank")
	gina := user("Gina")
	team := dsMust(dc.AddGroup(samba.Group{CN: "Team", Parent: syncOU, Members: []string{alice, bob}}))(t)
	outsider := dsMust(dc.AddUser(samba.User{CN: "Outsider", Parent: elsewhere}))(t)
	id := map[string]string{}
	name := map[string]string{} // by ID
	for n, dn := range map[string]string{"alice": alice, "bob": bob, "carol": carol, "dave": dave, "frank": frank, "gina": gina, "team": team, "outsider": outsider} {
		id[n] = guidOf(t, dc, dn)
		name[id[n]] = n
	}
	replDN, replPW := dsMust2(t)(dc.AddReader(ctx, samba.Reader{Name: "ds-repl", GetChanges: true}))
	// admin may read tombstones; repl has "Replicating Directory Changes"
	// only; plain is an ordinary user.
	admin := Config{URLs: []string{dc.URL}, BindDN: dc.AdminDN, Password: dc.AdminPassword, BaseDN: syncOU}
	repl, plain := admin, admin
	repl.BindDN, repl.Password = replDN, replPW
	plain.BindDN, plain.Password = dc.ReaderDN, dc.ReaderPassword
	names := func(got map[string]DirSyncChange) []string {
		var out []string
		for k := range got {
			out = append(out, name[k])
		}
		slices.Sort(out)
		return out
	}
	mine := func(got map[string]DirSyncChange) map[string]DirSyncChange {
		out := map[string]DirSyncChange{}
		for k, c := range got {
			if name[k] != "" {
				out[k] = c
			}
		}
		return out
	}

	var adminCookie, replCookie []byte
	t.Run("First", func(t *testing.T) {
		got, res, err := dirSyncAll(t, admin, DirSyncOptions{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.NamingContext != dc.BaseDN || len(res.Cookie) == 0 || res.Entries != len(got) || res.URL != dc.URL {
			t.Errorf("result %+v", res)
		}
		if want := []string{"alice", "bob", "carol", "dave", "frank", "gina", "outsider", "team"}; !slices.Equal(names(mine(got)), want) {
			t.Errorf("first DirSync has %q, want %q", names(mine(got)), want)
		}
		for k, c := range mine(got) {
			if c.InBase != (name[k] != "outsider") || c.Deleted || c.DN == "" {
				t.Errorf("%s: %+v", name[k], c)
			}
		}
		if c := got[id["alice"]]; !slices.Equal(c.Attributes["proxyaddresses"], []string{"SMTP:alice@example.com"}) || c.Attributes["name"][0] != "Alice" {
			t.Errorf("alice: %v", c.Attributes)
		}
		if c := got[id["team"]]; !sameSet(c.Added["member"], []string{alice, bob}) || len(c.Removed) != 0 || c.Attributes["member"] != nil {
			t.Errorf("team: added %q removed %q attributes %v", c.Added, c.Removed, c.Attributes)
		}
		// Outside the base: every user and group of CN=Users too.
		if c, ok := got[dsMust(FormatGUID(dsMust(dc.ObjectGUID(dc.AdminDN))(t)))(t)]; !ok || c.InBase {
			t.Errorf("Administrator: %+v, %v", c, ok)
		}
		adminCookie = res.Cookie
		_, res, err = dirSyncAll(t, repl, DirSyncOptions{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		replCookie = res.Cookie
	})
	t.Run("Unchanged", func(t *testing.T) {
		got, res, err := dirSyncAll(t, admin, DirSyncOptions{}, adminCookie)
		if err != nil || len(got) != 0 || len(res.Cookie) == 0 {
			t.Fatalf("%d changes %q, %v", len(got), names(got), err)
		}
		adminCookie = res.Cookie
	})
	var dave2, frank2 string
	t.Run("Delta", func(t *testing.T) {
		erin := user("Erin")
		id["erin"] = guidOf(t, dc, erin)
		name[id["erin"]] = "erin"
		if err := dc.Replace(alice, "proxyAddresses", "SMTP:alice@example.com", "smtp:a@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := dc.AddMembers(team, carol); err != nil {
			t.Fatal(err)
		}
		if err := dc.RemoveMembers(team, bob); err != nil {
			t.Fatal(err)
		}
		dave2 = dsMust(dc.Rename(dave, "Dave Renamed"))(t)
		frank2 = dsMust(dc.Move(frank, elsewhere))(t)
		if err := dc.Delete(gina); err != nil {
			t.Fatal(err)
		}
		got, res, err := dirSyncAll(t, admin, DirSyncOptions{}, adminCookie)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"alice", "dave", "erin", "frank", "gina", "team"}; !slices.Equal(names(got), want) {
			t.Fatalf("delta has %q, want %q", names(got), want)
		}
		for _, c := range got {
			t.Logf("%s: %q in base %v, deleted %v, %v, added %q, removed %q", name[c.ID], c.DN, c.InBase, c.Deleted, c.Attributes, c.Added, c.Removed)
		}
		if c := got[id["alice"]]; c.DN != alice || !c.InBase || !slices.Equal(c.Attributes["proxyaddresses"], []string{"SMTP:alice@example.com", "smtp:a@example.com"}) || c.Attributes["name"] != nil {
			t.Errorf("alice: %+v", c)
		}
		if c := got[id["team"]]; !slices.Equal(c.Added["member"], []string{carol}) || !slices.Equal(c.Removed["member"], []string{bob}) {
			t.Errorf("team: added %q, removed %q", c.Added, c.Removed)
		}
		if c := got[id["dave"]]; c.DN != dave2 || !c.InBase || c.Attributes["name"][0] != "Dave Renamed" {
			t.Errorf("dave: %+v", c)
		}
		if c := got[id["frank"]]; c.DN != frank2 || c.InBase || c.Deleted {
			t.Errorf("frank: %+v", c)
		}
		if c := got[id["gina"]]; !c.Deleted || c.InBase || !strings.Contains(c.DN, `\0ADEL:`) || !slices.Equal(c.Attributes["isdeleted"], []string{"TRUE"}) {
			t.Errorf("gina: %+v", c)
		}
		if c := got[id["erin"]]; c.DN != erin || !c.InBase || c.Attributes["samaccounttype"][0] != "805306368" {
			t.Errorf("erin: %+v", c)
		}
		adminCookie = res.Cookie

		// Samba hides tombstones from a reader with only "Replicating
		// Directory Changes": the deletion is not in its delta.
		gotRepl, res, err := dirSyncAll(t, repl, DirSyncOptions{}, replCookie)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"alice", "dave", "erin", "frank", "team"}; !slices.Equal(names(gotRepl), want) {
			t.Errorf("delta of the replication reader has %q, want %q", names(gotRepl), want)
		}
		replCookie = res.Cookie

		// The delta as full entries: what is gone or moved out is not there.
		var ids []string
		for k := range got {
			ids = append(ids, k)
		}
		full := map[string]sdk.Entry{}
		fres, err := FetchIDs(ctx, repl, dsFilter, dsAttrs, append(ids, ids[0]), func(e sdk.Entry) error {
			full[name[e.ID]] = e
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(func(yield func(string) bool) {
			for k := range full {
				if !yield(k) {
					return
				}
			}
		}); !slices.Equal(got, []string{"alice", "dave", "erin", "team"}) || fres.Entries != 4 {
			t.Errorf("FetchIDs returned %q (%v)", got, fres)
		}
		if e := full["team"]; !sameSet(e.Attributes["member"], []string{alice, carol}) || e.Get("cn") != "Team" {
			t.Errorf("team: %v", e.Attributes)
		}
		if e := full["dave"]; e.DN != dave2 || e.Get("cn") != "Dave Renamed" || e.Get("samaccounttype") != "805306368" {
			t.Errorf("dave: %s %v", e.DN, e.Attributes)
		}
		if e := full["alice"]; len(e.Attributes["proxyaddresses"]) != 2 || !slices.Equal(e.Attributes["memberof"], []string{team}) {
			t.Errorf("alice: %v", e.Attributes)
		}
		// Many IDs: batches on one connection.
		many := slices.Clone(ids)
		for i := 0; i < 2*FetchIDsBatch; i++ {
			b := make([]byte, 16)
			b[0], b[1], b[15] = byte(i), byte(i>>8), 0x5a
			many = append(many, dsMust(FormatGUID(b))(t))
		}
		n := 0
		fres, err = FetchIDs(ctx, repl, dsFilter, []string{"cn"}, many, func(sdk.Entry) error { n++; return nil })
		if err != nil || n != 4 || fres.Pages != 3 {
			t.Errorf("FetchIDs of %d ids: %d entries, %v, %v", len(many), n, fres, err)
		}
	})
	t.Run("UnchangedAfterDelta", func(t *testing.T) {
		got, _, err := dirSyncAll(t, admin, DirSyncOptions{}, adminCookie)
		if err != nil || len(got) != 0 {
			t.Fatalf("%d changes %q, %v", len(got), names(got), err)
		}
	})
	t.Run("GarbageCookie", func(t *testing.T) {
		_, res, err := dirSyncAll(t, repl, DirSyncOptions{}, []byte("garbage cookie"))
		if !errors.Is(err, ErrDirSyncCookie) || res.Cookie != nil {
			t.Fatalf("error %v, cookie %q", err, res.Cookie)
		}
		checkDirSyncError(t, err, replPW, "DirSync search 1", "Unavailable Critical Extension", dc.URL)
	})
	t.Run("Denied", func(t *testing.T) {
		_, _, err := dirSyncAll(t, plain, DirSyncOptions{}, nil)
		if !errors.Is(err, ErrDirSyncDenied) {
			t.Fatalf("error %v", err)
		}
		checkDirSyncError(t, err, plain.Password, "Insufficient Access Rights", dc.URL)
	})
	t.Run("ObjectSecurity", func(t *testing.T) {
		// An ordinary user with LDAP_DIRSYNC_OBJECT_SECURITY reads what
		// it may read, and its deltas do not show deletions.
		got, res, err := dirSyncAll(t, plain, DirSyncOptions{ObjectSecurity: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"alice", "bob", "carol", "dave", "erin", "frank", "outsider", "team"}; !slices.Equal(names(mine(got)), want) {
			t.Errorf("first DirSync with object security has %q, want %q", names(mine(got)), want)
		}
		if err := dc.Replace(bob, "mail", "bob@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := dc.Delete(carol); err != nil {
			t.Fatal(err)
		}
		got, _, err = dirSyncAll(t, plain, DirSyncOptions{ObjectSecurity: true}, res.Cookie)
		if err != nil {
			t.Fatal(err)
		}
		// Carol's deletion also took her out of Team, a change that is not
		// reported either.
		if c := got[id["bob"]]; len(got) != 1 || !slices.Equal(c.Attributes["mail"], []string{"bob@example.com"}) {
			t.Errorf("delta with object security: %q, bob %+v", names(got), c)
		}
		got, _, err = dirSyncAll(t, admin, DirSyncOptions{}, adminCookie)
		if err != nil {
			t.Fatal(err)
		}
		// Nor does Samba report Team, whose member Carol was, even to the
		// administrator: a deleted object's IDs must be taken out of the
		// groups by the caller (or the groups read again).
		if want := []string{"bob", "carol"}; !slices.Equal(names(got), want) || !got[id["carol"]].Deleted {
			t.Errorf("admin delta %q, want %q", names(got), want)
		}
		var members []string
		if _, err := FetchIDs(ctx, plain, dsFilter, dsAttrs, []string{id["team"]}, func(e sdk.Entry) error {
			members = e.Attributes["member"]
			return nil
		}); err != nil || !slices.Equal(members, []string{alice}) {
			t.Errorf("team's members now %q, %v", members, err)
		}
	})
	t.Run("USN", func(t *testing.T) {
		st0, err := ServerUSN(ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		if st0.HighestCommittedUSN <= 0 || !strings.HasPrefix(st0.DSServiceName, "CN=NTDS Settings,CN=DC1,") || len(st0.InvocationID) != 36 ||
			st0.URL != dc.URL || st0.DNSHostName == "" {
			t.Errorf("state %+v", st0)
		}
		if err := dc.Replace(alice, "mail", "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		st1, err := ServerUSN(ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		if st1.HighestCommittedUSN <= st0.HighestCommittedUSN || !st1.SameServer(st0) {
			t.Errorf("after a change: %+v, before %+v", st1, st0)
		}
		other := st0
		other.InvocationID = "00000000-0000-0000-0000-000000000000"
		if other.SameServer(st0) {
			t.Error("another invocationId is the same server")
		}
		var changed []string
		_, err = FetchChangedSince(ctx, plain, dsFilter, dsAttrs, st0.HighestCommittedUSN, func(e sdk.Entry) error {
			changed = append(changed, name[e.ID])
			if e.Get("mail") != "alice@example.com" {
				t.Errorf("alice: %v", e.Attributes)
			}
			return nil
		})
		if err != nil || !slices.Equal(changed, []string{"alice"}) {
			t.Errorf("changed since %d: %q, %v", st0.HighestCommittedUSN, changed, err)
		}
		changed = nil
		_, err = FetchChangedSince(ctx, plain, dsFilter, dsAttrs, st1.HighestCommittedUSN, func(e sdk.Entry) error {
			changed = append(changed, name[e.ID])
			return nil
		})
		if err != nil || len(changed) != 0 {
			t.Errorf("changed since %d: %q, %v", st1.HighestCommittedUSN, changed, err)
		}
		ids, res, err := FetchIDList(ctx, plain, dsFilter)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, i := range ids {
			got = append(got, name[i])
		}
		slices.Sort(got)
		if want := []string{"alice", "bob", "dave", "erin", "team"}; !slices.Equal(got, want) || res.Entries != 5 {
			t.Errorf("FetchIDList: %q, want %q", got, want)
		}
	})
	t.Run("Cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := DirSync(cctx, admin, dsFilter, nil, nil, func(DirSyncChange) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("DirSync: %v", err)
		}
		_, err = FetchIDs(cctx, admin, dsFilter, nil, []string{id["alice"]}, func(sdk.Entry) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("FetchIDs: %v", err)
		}
		_, err = ServerUSN(cctx, admin)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ServerUSN: %v", err)
		}
		// Stopping from the callback.
		stop := errors.New("stop")
		_, err = DirSync(ctx, admin, dsFilter, nil, nil, func(DirSyncChange) error { return stop })
		if !errors.Is(err, stop) {
			t.Errorf("DirSync: %v", err)
		}
	})
}

// checkDirSyncError checks that err names the server and holds want, and
// not the password.
func checkDirSyncError(t *testing.T, err error, password string, want ...string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, password) {
		t.Errorf("error holds the password: %s", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q lacks %q", msg, w)
		}
	}
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func TestFetchIDsParseGUID(t *testing.T) {
	b := []byte{0xff, 0x19, 0x96, 0x6f, 0x86, 0x8b, 0x11, 0xd0, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff}
	s := dsMust(FormatGUID(b))(t)
	got, err := ParseGUID(strings.ToUpper(s))
	if err != nil || string(got) != string(b) {
		t.Errorf("ParseGUID(%q) = %x, %v", s, got, err)
	}
	for _, bad := range []string{"", "6f9619ff8b86d011b42d00c04fc964ff", "6f9619ff-8b86-d011-b42d-00c04fc964fg", "6f9619ff-8b86-d011-b42d_00c04fc964ff"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", bad)
		}
	}
	if got := escapeBytes([]byte{0, 0x2a, 0xff}); got != `\00\2a\ff` {
		t.Errorf("escapeBytes = %s", got)
	}
	_, err = FetchIDs(context.Background(), Config{URLs: []string{"ldap://127.0.0.1:1"}, BaseDN: "dc=x"}, "(objectClass=*)", nil, []string{"nope"}, nil)
	if err == nil || !strings.Contains(err.Error(), "not a GUID") {
		t.Errorf("FetchIDs with a bad id: %v", err)
	}
}

func TestDirSyncControl(t *testing.T) {
	ctl := &dirSyncControl{flags: DirSyncIncrementalValues | DirSyncObjectSecurity, cookie: []byte("ck")}
	got := hexString(ctl.Encode().Bytes())
	// SEQUENCE { OID, TRUE (0xff), OCTET STRING { SEQUENCE { INTEGER 0x80000001, INTEGER 0, OCTET STRING "ck" } } }
	want := "302c" + "0416" + hexString([]byte(OIDDirSync)) + "0101ff" + "040f" + "300d" + "020480000001" + "020100" + "0402636b"
	if got != want {
		t.Errorf("control\n got %s\nwant %s", got, want)
	}
	more, cookie, found, err := dirSyncCookie(mustHex(t, "3024"+"0416"+hexString([]byte(OIDDirSync))+"040a"+"3008"+"020101"+"020100"+"0400"))
	if err != nil || !found || !more || len(cookie) != 0 {
		t.Errorf("dirSyncCookie: %v %q %v %v", more, cookie, found, err)
	}
}

func hexString(b []byte) string { return fmt.Sprintf("%x", b) }

func mustHex(t *testing.T, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func dsMust2(t testing.TB) func(a, b string, err error) (string, string) {
	return func(a, b string, err error) (string, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}
