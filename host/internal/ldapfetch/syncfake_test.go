package ldapfetch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/testpeer/ldaptest"
	"github.com/dirsync/dirsync/sdk"
)

// Sync against the scripted server, for the answers slapd does not give:
// the phase rules, garbled sync controls, missing controls and cookies.

// tlv encodes one BER element.
func tlv(tag byte, parts ...string) string {
	content := strings.Join(parts, "")
	n := len(content)
	switch {
	case n < 0x80:
		return string([]byte{tag, byte(n)}) + content
	case n < 0x100:
		return string([]byte{tag, 0x81, byte(n)}) + content
	default:
		return string([]byte{tag, 0x82, byte(n >> 8), byte(n)}) + content
	}
}

func octets(s string) string { return tlv(0x04, s) }

var boolTrue, boolFalse = tlv(0x01, "\xff"), tlv(0x01, "\x00")

// rawControl is a control with a value given as bytes.
type rawControl struct{ oid, value string }

func (c rawControl) GetControlType() string { return c.oid }
func (c rawControl) String() string         { return c.oid }
func (c rawControl) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, c.oid, "Control Type"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, c.value, "Control Value"))
	return p
}

// uuid returns a 16-byte syncUUID and its key.
func uuid(i byte) (raw, key string) {
	b := []byte("\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00")
	b[15] = i
	k, _ := formatSyncUUID(string(b))
	return string(b), k
}

func stateCtl(state int, raw string, cookie ...string) rawControl {
	v := tlv(0x0a, string(rune(state))) + octets(raw)
	if len(cookie) > 0 {
		v += octets(cookie[0])
	}
	return rawControl{oidSyncState, tlv(0x30, v)}
}

// syncEntry sends an entry with a sync state; attrs get the entryUUID of
// the state unless they have one.
func syncEntry(w *ldaptest.Conn, i byte, state int, attrs map[string][]string, extra ...ldap.Control) {
	raw, key := uuid(i)
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "Entry")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cn=e"+string(rune('0'+i))+",dc=test", "DN"))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	if attrs == nil && state != statePresent && state != stateDelete {
		attrs = map[string][]string{"cn": {"e"}, "entryUUID": {key}}
	}
	for n, vals := range attrs {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attribute")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, n, "Type"))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "Values")
		for _, v := range vals {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "Value"))
		}
		a.AppendChild(set)
		list.AppendChild(a)
	}
	op.AppendChild(list)
	w.Send(op, append([]ldap.Control{stateCtl(state, raw)}, extra...)...)
}

// syncInfoMsg sends a Sync Info intermediate response holding value.
func syncInfoMsg(w *ldaptest.Conn, value string) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationIntermediateResponse, nil, "Intermediate")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidSyncInfo, "responseName"))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 1, value, "responseValue"))
	w.Send(op)
}

// idSet is a syncIdSet of the uuids i.
func idSet(cookie string, deletes bool, ids ...byte) string {
	var set string
	for _, i := range ids {
		raw, _ := uuid(i)
		set += octets(raw)
	}
	v := ""
	if cookie != "" {
		v += octets(cookie)
	}
	if deletes {
		v += boolTrue
	}
	return tlv(0xa3, v, tlv(0x31, set))
}

// syncDoneMsg ends the search with code and, unless ctlValue is "-", a
// sync done control with that value.
func syncDoneMsg(w *ldaptest.Conn, code int, ctlValue string) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultDone, nil, "Done")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnosticMessage"))
	if ctlValue == "-" {
		w.Send(op)
		return
	}
	w.Send(op, rawControl{oidSyncDone, ctlValue})
}

func doneValue(cookie string, refreshDeletes bool) string {
	v := ""
	if cookie != "" {
		v += octets(cookie)
	}
	if refreshDeletes {
		v += boolTrue
	}
	return tlv(0x30, v)
}

func TestSyncFakeServer(t *testing.T) {
	_, k1 := uuid(1)
	_, k2 := uuid(2)
	_, k3 := uuid(3)
	tests := []struct {
		name     string
		cookie   string // sent; "" for none
		answer   func(w *ldaptest.Conn)
		want     []string // error parts; nil = success
		is       error
		check    func(t *testing.T, res SyncResult, got []sdk.Entry)
		maxEntry int
	}{
		{
			name: "present phase", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncInfoMsg(w, idSet("", false, 1, 2))
				syncEntry(w, 3, stateAdd, nil)
				syncDoneMsg(w, 0, doneValue("c2", false))
			},
			check: func(t *testing.T, res SyncResult, got []sdk.Entry) {
				if !res.PresentPhase || !slices.Equal(res.Present, []string{k1, k2}) || len(got) != 1 || SyncKey(got[0]) != k3 ||
					got[0].ID != k3 || string(res.Cookie) != "c2" || len(res.Deleted) != 0 {
					t.Errorf("%+v %v", res, got)
				}
			},
		},
		{
			name: "present-state entries without attributes", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncEntry(w, 1, statePresent, nil)
				syncEntry(w, 2, stateModify, nil)
				syncDoneMsg(w, 0, doneValue("c2", false))
			},
			check: func(t *testing.T, res SyncResult, got []sdk.Entry) {
				if !res.PresentPhase || !slices.Equal(res.Present, []string{k1}) || len(got) != 1 {
					t.Errorf("%+v %v", res, got)
				}
			},
		},
		{
			name: "delete phase", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncInfoMsg(w, idSet("c1.5", true, 1))
				syncEntry(w, 2, stateDelete, nil)
				syncEntry(w, 3, stateAdd, nil)
				syncDoneMsg(w, 0, doneValue("c2", true))
			},
			check: func(t *testing.T, res SyncResult, got []sdk.Entry) {
				if res.PresentPhase || !slices.Equal(res.Deleted, []string{k1, k2}) || len(got) != 1 || string(res.Cookie) != "c2" {
					t.Errorf("%+v %v", res, got)
				}
			},
		},
		{
			name: "present phase, then delete phase", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncInfoMsg(w, idSet("", false, 1))
				syncInfoMsg(w, tlv(0xa2, boolFalse)) // refreshPresent, refreshDone FALSE
				syncInfoMsg(w, idSet("", true, 2))
				syncDoneMsg(w, 0, doneValue("c2", true))
			},
			check: func(t *testing.T, res SyncResult, got []sdk.Entry) {
				if !res.PresentPhase || !slices.Equal(res.Present, []string{k1}) || !slices.Equal(res.Deleted, []string{k2}) {
					t.Errorf("%+v", res)
				}
			},
		},
		{
			name: "nothing changed, no cookie back: the sent one stays", cookie: "c1",
			answer: func(w *ldaptest.Conn) { syncDoneMsg(w, 0, doneValue("", true)) },
			check: func(t *testing.T, res SyncResult, got []sdk.Entry) {
				if string(res.Cookie) != "c1" || res.PresentPhase {
					t.Errorf("%+v", res)
				}
			},
		},
		{
			name: "cookie from a newcookie message",
			answer: func(w *ldaptest.Conn) {
				syncEntry(w, 1, stateAdd, nil)
				syncInfoMsg(w, tlv(0x80, "c9"))
				syncDoneMsg(w, 0, doneValue("", true))
			},
			check: func(t *testing.T, res SyncResult, got []sdk.Entry) {
				if string(res.Cookie) != "c9" || !res.PresentPhase || len(got) != 1 {
					t.Errorf("%+v", res)
				}
			},
		},
		{
			name: "changes but no cookie", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncEntry(w, 1, stateAdd, nil)
				syncDoneMsg(w, 0, doneValue("", true))
			},
			want: []string{"sync refresh (after 1 entries)", "without a sync cookie"},
		},
		{
			name:   "no cookie at all",
			answer: func(w *ldaptest.Conn) { syncDoneMsg(w, 0, doneValue("", true)) },
			want:   []string{"without a sync cookie"},
		},
		{
			name: "present, then a delete in the same phase", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncEntry(w, 1, statePresent, nil)
				syncEntry(w, 2, stateDelete, nil)
				syncDoneMsg(w, 0, doneValue("c2", false))
			},
			want: []string{"deleted entry in a present phase"}, is: errMalformed,
		},
		{
			name: "delete, then present", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncInfoMsg(w, idSet("", true, 1))
				syncInfoMsg(w, idSet("", false, 2))
				syncDoneMsg(w, 0, doneValue("c2", false))
			},
			want: []string{"present entry after its present phase"}, is: errMalformed,
		},
		{
			name: "presents, then the refresh ends as a delete phase", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncInfoMsg(w, idSet("", false, 1))
				syncDoneMsg(w, 0, doneValue("c2", true))
			},
			want: []string{"ended the refresh with a delete phase"}, is: errMalformed,
		},
		{
			name: "deletes, then the refresh ends as a present phase", cookie: "c1",
			answer: func(w *ldaptest.Conn) {
				syncInfoMsg(w, idSet("", true, 1))
				syncDoneMsg(w, 0, doneValue("c2", false))
			},
			want: []string{"ended a delete phase as a present phase"}, is: errMalformed,
		},
		{
			name:   "entry without a sync state",
			answer: func(w *ldaptest.Conn) { w.Entry("cn=x,dc=test", map[string][]string{"cn": {"x"}}) },
			want:   []string{"without a sync state control"}, is: ErrSyncUnsupported,
		},
		{
			name:   "done without a sync done control",
			answer: func(w *ldaptest.Conn) { syncDoneMsg(w, 0, "-") },
			want:   []string{"without a sync done control"}, is: ErrSyncUnsupported,
		},
		{
			name:   "unavailable critical extension",
			answer: func(w *ldaptest.Conn) { syncDoneMsg(w, 12, "-") },
			want:   []string{"LDAP result 12"}, is: ErrSyncUnsupported,
		},
		{
			name: "e-syncRefreshRequired", cookie: "c1",
			answer: func(w *ldaptest.Conn) { syncDoneMsg(w, resultSyncRefreshRequired, "-") },
			want:   []string{"4096"}, is: ErrRefreshRequired,
		},
		{
			name:   "size limit",
			answer: func(w *ldaptest.Conn) { syncEntry(w, 1, stateAdd, nil); syncDoneMsg(w, 4, "-") },
			want:   []string{"size limit", "incomplete"},
		},
		{
			name: "syncUUID of 15 bytes",
			answer: func(w *ldaptest.Conn) {
				w.Send(entryOp(), stateCtlRaw(tlv(0x30, tlv(0x0a, "\x01"), octets("123456789012345"))))
			},
			want: []string{"syncUUID of 15 bytes"}, is: errMalformed,
		},
		{
			name: "sync state with trailing data",
			answer: func(w *ldaptest.Conn) {
				raw, _ := uuid(1)
				w.Send(entryOp(), stateCtlRaw(tlv(0x30, tlv(0x0a, "\x01"), octets(raw), octets("c"), octets("x"))))
			},
			want: []string{"data after the sync state cookie"}, is: errMalformed,
		},
		{
			name: "sync state 7",
			answer: func(w *ldaptest.Conn) {
				raw, _ := uuid(1)
				w.Send(entryOp(), stateCtlRaw(tlv(0x30, tlv(0x0a, "\x07"), octets(raw))))
			},
			want: []string{"sync state 7"}, is: errMalformed,
		},
		{
			name: "sync state twice",
			answer: func(w *ldaptest.Conn) {
				raw, _ := uuid(1)
				syncEntry(w, 1, stateAdd, nil, stateCtl(stateAdd, raw))
			},
			want: []string{"appears twice"}, is: errMalformed,
		},
		{
			name:   "garbled sync done",
			answer: func(w *ldaptest.Conn) { syncDoneMsg(w, 0, tlv(0x31, "")) },
			want:   []string{"sync done"}, is: errMalformed,
		},
		{
			name:   "sync done boolean of 2 bytes",
			answer: func(w *ldaptest.Conn) { syncDoneMsg(w, 0, tlv(0x30, octets("c"), tlv(0x01, "\x01\x01"))) },
			want:   []string{"boolean of 2 bytes"}, is: errMalformed,
		},
		{
			name:   "unknown sync info choice",
			answer: func(w *ldaptest.Conn) { syncInfoMsg(w, tlv(0xa5, "")) },
			want:   []string{"sync info choice 0xa5"}, is: errMalformed,
		},
		{
			name:   "syncIdSet without its set",
			answer: func(w *ldaptest.Conn) { syncInfoMsg(w, tlv(0xa3, boolTrue)) },
			want:   []string{"syncUUIDs"}, is: errMalformed,
		},
		{
			name: "entryUUID other than the sync state's",
			answer: func(w *ldaptest.Conn) {
				syncEntry(w, 1, stateAdd, map[string][]string{"cn": {"x"}, "entryUUID": {k2}})
			},
			want: []string{"but its sync state names"}, is: errMalformed,
		},
		{
			name:   "entry without entryUUID",
			answer: func(w *ldaptest.Conn) { syncEntry(w, 1, stateAdd, map[string][]string{"cn": {"x"}}) },
			want:   []string{"without its entryUUID", "read entryUUID"},
		},
		{
			name: "more than max entries", maxEntry: 2,
			answer: func(w *ldaptest.Conn) {
				syncInfoMsg(w, idSet("", false, 1, 2))
				syncEntry(w, 3, stateAdd, nil)
				syncDoneMsg(w, 0, doneValue("c2", false))
			},
			want: []string{"more than 2 entries"},
		},
		{
			name: "connection closed mid-refresh",
			answer: func(w *ldaptest.Conn) {
				syncEntry(w, 1, stateAdd, nil)
				w.Close()
			},
			want: []string{"sync refresh (after 1 entries)", "closed the connection"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := startFake(t, func(w *ldaptest.Conn, n int) { tc.answer(w) })
			cfg := Config{URLs: []string{url}, BaseDN: "dc=test", MaxEntries: tc.maxEntry}
			var cookie []byte
			if tc.cookie != "" {
				cookie = []byte(tc.cookie)
			}
			var got []sdk.Entry
			res, err := Sync(context.Background(), cfg, "(objectClass=*)", nil, cookie, func(e sdk.Entry) error {
				got = append(got, e)
				return nil
			})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, res, got)
				return
			}
			if err == nil {
				t.Fatalf("no error; result %+v", res)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), url) {
				t.Errorf("error %q does not name the server", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func entryOp() *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "Entry")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cn=x,dc=test", "DN"))
	op.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes"))
	return op
}

func stateCtlRaw(v string) rawControl { return rawControl{oidSyncState, v} }

func TestParseOpenLDAPCookie(t *testing.T) {
	const csn = "20240101120000.123456Z#000000#000#000000"
	for _, c := range []string{
		"rid=000,csn=" + csn,
		"rid=123,sid=001,csn=" + csn + ";20240101120000.123456Z#000001#002#000000",
		"rid=000,csn=" + csn + ",delcsn=" + csn,
	} {
		if err := parseOpenLDAPCookie(c); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
	for _, c := range []string{
		"", "rid=000", "csn=" + csn, "rid=1000,csn=" + csn, "rid=000,csn=" + csn[:39], "rid=000,csn=garbage",
		"rid=000,csn=" + csn + ",x=1", "rid=000,csn=" + strings.Replace(csn, "Z", "X", 1), "rid=000,sid=xyz,csn=" + csn,
	} {
		if err := parseOpenLDAPCookie(c); err == nil {
			t.Errorf("%q accepted", c)
		}
	}
}

func TestSyncRequestControl(t *testing.T) {
	b := (&syncRequestControl{mode: syncRefreshAndPersist, cookie: []byte("rid=000")}).Encode().Bytes()
	critical := tlv(0x01, "\x01") // asn1-ber's TRUE
	want := tlv(0x30, octets(oidSyncRequest), critical, octets(tlv(0x30, tlv(0x0a, "\x03"), octets("rid=000"))))
	if string(b) != want {
		t.Errorf("encoded % x\nwant    % x", b, want)
	}
	b = (&syncRequestControl{mode: syncRefreshOnly}).Encode().Bytes()
	want = tlv(0x30, octets(oidSyncRequest), critical, octets(tlv(0x30, tlv(0x0a, "\x01"))))
	if string(b) != want {
		t.Errorf("encoded % x\nwant    % x", b, want)
	}
}
