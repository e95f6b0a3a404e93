package dirstate

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

func mailbox(primary string) sdk.Intent {
	return sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Primary: primary, Aliases: []string{"x-" + primary}, Kind: "user"}}
}

func state(keys ...string) *State {
	s := &State{}
	for _, k := range keys {
		s.Append(k, diff.Ref{ID: "id-" + k, DN: "cn=" + k + ",dc=example,dc=com"}, mailbox(k+"@example.com"))
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	s := state("a", "b", "c")
	s.Append("g", diff.Ref{ID: "id-g", DN: "cn=g"}, sdk.Intent{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "Sales", Members: []string{"cn=a,dc=example,dc=com"}}})
	s.Append("s", diff.Ref{ID: "id-s", DN: "cn=s"}, sdk.Intent{Kind: sdk.IntentSkip, Reason: "no address"})
	b, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Keys, s.Keys) || !reflect.DeepEqual(got.Refs, s.Refs) || len(got.Intents) != len(s.Intents) {
		t.Fatalf("decoded %+v, want %+v", got, s)
	}
	if got.Intents[3].Group.Name != "Sales" || got.Intents[0].Mailbox.Aliases[0] != "x-a@example.com" || got.Intents[4].Reason != "no address" {
		t.Errorf("intents decoded as %+v", got.Intents)
	}
	empty, err := Encode(&State{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Decode(empty); err != nil || s.Len() != 0 {
		t.Errorf("empty state: %v, %v", s, err)
	}
	// Every truncation, and a foreign blob, fails: never a shorter state.
	for n := 0; n < len(b); n++ {
		if _, err := Decode(b[:n]); err == nil {
			t.Fatalf("Decode of %d of %d bytes succeeded", n, len(b))
		}
	}
	if _, err := Decode(append(slices.Clone(b), 0)); err == nil {
		t.Error("Decode with a byte after the end succeeded")
	}
	// An entry larger than a chunk (a group of 100,000 members) spans
	// chunks.
	big := state("a")
	members := make([]string, 100_000)
	for i := range members {
		members[i] = "cn=user " + strconv.Itoa(i) + ",ou=people,dc=example,dc=com"
	}
	big.Append("g", diff.Ref{ID: "id-g", DN: "cn=g"}, sdk.Intent{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: "All", Members: members}})
	big.Append("z", diff.Ref{ID: "id-z", DN: "cn=z"}, mailbox("z"))
	if enc, err := Encode(big); err != nil {
		t.Fatal(err)
	} else if got, err := Decode(enc); err != nil || got.Len() != 3 || !slices.Equal(got.Intents[1].Group.Members, members) || got.Keys[2] != "z" {
		t.Fatalf("a state with an entry of %d members: %v", len(members), err)
	}
	// A state kept by a version that did not compress it still decodes.
	raw, err := decompress(b[len(magic):])
	if err != nil {
		t.Fatal(err)
	}
	v1, err := Decode(append([]byte(magicV1), raw...))
	if err != nil || !reflect.DeepEqual(v1.Keys, s.Keys) || !reflect.DeepEqual(v1.Refs, s.Refs) || v1.Intents[3].Group.Name != "Sales" {
		t.Errorf("version 1 state decoded as %+v, %v", v1, err)
	}
}

func TestPatch(t *testing.T) {
	tests := []struct {
		name    string
		delta   Delta
		want    []string // keys after
		primary map[string]string
		err     error
	}{
		{name: "nothing", want: []string{"a", "b", "c"}},
		{name: "add", delta: Delta{Changed: *state("d")}, want: []string{"a", "b", "c", "d"}},
		{name: "modify in place", delta: Delta{Changed: State{Keys: []string{"b"}, Refs: []diff.Ref{{ID: "id-b", DN: "cn=b2"}}, Intents: []sdk.Intent{mailbox("b2@example.com")}}},
			want: []string{"a", "b", "c"}, primary: map[string]string{"b": "b2@example.com"}},
		{name: "delete", delta: Delta{Deleted: []string{"a", "zz"}}, want: []string{"b", "c"}},
		{name: "present phase", delta: Delta{PresentPhase: true, Present: []string{"c"}, Changed: *state("a")}, want: []string{"a", "c"}},
		{name: "present phase, nothing named", delta: Delta{PresentPhase: true}, want: []string{}},
		{name: "present unknown", delta: Delta{PresentPhase: true, Present: []string{"q"}}, err: ErrStale},
		{name: "changed twice", delta: Delta{Changed: State{Keys: []string{"d", "d"}, Refs: []diff.Ref{{ID: "1"}, {ID: "2"}}, Intents: []sdk.Intent{mailbox("d1@x"), mailbox("d2@x")}}},
			want: []string{"a", "b", "c", "d"}, primary: map[string]string{"d": "d2@x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := state("a", "b", "c")
			got, _, err := Patch(before, &tt.delta)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !reflect.DeepEqual(got.Keys, tt.want) && !(len(got.Keys) == 0 && len(tt.want) == 0) {
				t.Errorf("keys = %v, want %v", got.Keys, tt.want)
			}
			for i, k := range got.Keys {
				if p, ok := tt.primary[k]; ok && got.Intents[i].Mailbox.Primary != p {
					t.Errorf("%s: primary %s, want %s", k, got.Intents[i].Mailbox.Primary, p)
				}
			}
			if !reflect.DeepEqual(before, state("a", "b", "c")) {
				t.Error("Patch modified its input")
			}
		})
	}
}

// wantReencoded checks that the state Patch makes of a decoded prev (with
// each unchanged intent's encoding kept) encodes to what got, Patch's
// state of prev as built, encodes to: entries whose values followed
// others are encoded again, not written as they were.
func wantReencoded(t *testing.T, prev *State, delta *Delta, got *State) {
	t.Helper()
	b, err := Encode(prev)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	patched, _, err := Patch(decoded, delta)
	if err != nil {
		t.Fatal(err)
	}
	if patched.Encoded == nil {
		t.Fatal("Patch of a decoded state kept no encodings")
	}
	fromKept, err := Encode(patched)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromKept, want) {
		t.Error("the patched state, encoded with the kept encodings, differs from the state encoded anew")
	}
}

// TestPatchFixesReferences checks that the unchanged entries' member and
// memberOf values follow what the delta changed, as the directory's own
// (unreplicated) writes make them in a full read.
func TestPatchFixesReferences(t *testing.T) {
	user := func(key, dn string, memberOf ...string) (string, diff.Ref, sdk.Intent) {
		return key, diff.Ref{ID: key, DN: dn}, sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Primary: key + "@x", MemberOf: memberOf}}
	}
	group := func(key, dn string, members ...string) (string, diff.Ref, sdk.Intent) {
		return key, diff.Ref{ID: key, DN: dn}, sdk.Intent{Kind: sdk.IntentGroup, Group: &sdk.GroupIntent{Name: key, Members: members}}
	}
	prev := &State{}
	prev.Append(user("a", "cn=A,o=x", "cn=G,o=x"))
	prev.Append(user("b", "cn=B,o=x", "cn=G,o=x", "cn=H,o=x"))
	prev.Append(user("c", "cn=C,o=x", "cn=H,o=x"))
	prev.Append(group("g", "cn=G,o=x", "cn=A,o=x", "cn=B,o=x"))
	prev.Append(group("h", "cn=H,o=x", "cn=B,o=x", "CN=C, o=x"))
	delta := &Delta{Deleted: []string{"c"}}
	delta.Changed.Append(user("a", "cn=A2,o=x", "cn=G,o=x"))  // renamed
	delta.Changed.Append(group("g", "cn=G,o=x", "cn=A2,o=x")) // b removed
	delta.Changed.Append(user("c2", "cn=C,o=x"))              // a new entry with c's DN
	got, touched, err := Patch(prev, delta)
	if err != nil {
		t.Fatal(err)
	}
	wantReencoded(t, prev, delta, got)
	// a and g changed, c went, c2 came, b's memberOf and h's members
	// followed (prev: a b c g h; got: a b g h c2).
	if want := (Touched{Old: []int{0, 1, 2, 3, 4}, New: []int{0, 1, 2, 3, 4}, Gone: 1, From: []int{0, 1, 3, 4, -1}}); !reflect.DeepEqual(touched, want) {
		t.Errorf("touched = %+v, want %+v", touched, want)
	}
	byKey := map[string]sdk.Intent{}
	for i, k := range got.Keys {
		byKey[k] = got.Intents[i]
	}
	if m := byKey["b"].Mailbox.MemberOf; !reflect.DeepEqual(m, []string{"cn=H,o=x"}) {
		t.Errorf("b's memberOf = %q: G no longer lists b", m)
	}
	if m := byKey["h"].Group.Members; !reflect.DeepEqual(m, []string{"cn=B,o=x"}) {
		t.Errorf("h's members = %q: c is gone, and the new entry with its DN is not c", m)
	}
	if m := prev.Intents[1].Mailbox.MemberOf; len(m) != 2 {
		t.Errorf("Patch changed the intents of its input: %q", m)
	}
	// A rename: a group that did not change follows its member.
	prev = &State{}
	prev.Append(user("a", "cn=A,o=x"))
	prev.Append(group("g", "cn=G,o=x", "cn=A,o=x"))
	prev.Append(user("z", "cn=Z,o=x"))
	delta = &Delta{}
	delta.Changed.Append(user("a", "cn=A2,ou=y,o=x"))
	got, touched, _ = Patch(prev, delta)
	wantReencoded(t, prev, delta, got)
	if !reflect.DeepEqual(got.Intents[1].Group.Members, []string{"cn=A2,ou=y,o=x"}) {
		t.Errorf("g's members after the rename = %q", got.Intents[1].Group.Members)
	}
	if want := (Touched{Old: []int{0, 1}, New: []int{0, 1}, From: []int{0, 1, 2}}); !reflect.DeepEqual(touched, want) {
		t.Errorf("touched by the rename = %+v, want %+v (g followed a)", touched, want)
	}
}

// BenchmarkDecode decodes a state of 100,000 mailboxes, the work every
// delta run starts with.
func BenchmarkDecode(b *testing.B) {
	enc, err := Encode(benchState())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode encodes the state of 100,000 mailboxes that every sync
// keeps.
func BenchmarkEncode(b *testing.B) {
	s := benchState()
	b.ReportAllocs()
	var enc []byte
	for b.Loop() {
		var err error
		if enc, err = Encode(s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "stored-bytes")
}

func benchState() *State {
	s := &State{}
	r := rand.New(rand.NewPCG(1, 2))
	uuid := func() string { // as entryUUID: random, so it does not compress
		return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
	}
	for i := range 100_000 {
		k := strconv.Itoa(i)
		id := uuid()
		s.Append(id, diff.Ref{ID: id, DN: "cn=User " + k + ",ou=People,dc=example,dc=com"},
			sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Primary: "user" + k + "@example.com", Kind: "user",
				DisplayName: "User " + k, Aliases: []string{"u" + k + "@example.com"}, MemberOf: []string{"cn=Group " + k[:1] + ",ou=Groups,dc=example,dc=com"}}})
	}
	return s
}

func TestHead(t *testing.T) {
	h := Head{Generation: 1 << 40, Count: 100_000, Keys: KeysHash([]string{"a", "b", "c"})}
	b := EncodeHead(h)
	got, err := DecodeHead(b)
	if err != nil || got != h {
		t.Fatalf("DecodeHead = %+v, %v; want %+v", got, err, h)
	}
	SetSettled(b, true)
	if got, _ := DecodeHead(b); !got.Settled {
		t.Error("SetSettled did not set it")
	}
	for n := range len(b) {
		if _, err := DecodeHead(b[:n]); err == nil {
			t.Errorf("DecodeHead of %d of %d bytes succeeded", n, len(b))
		}
	}
	// A set: order does not count, a different member does.
	if KeysHash([]string{"c", "a", "b"}) != h.Keys || KeysHash([]string{"a", "b", "d"}) == h.Keys || KeysHash([]string{"a", "b"}) == h.Keys {
		t.Error("KeysHash is not a hash of the set")
	}
}

// BenchmarkEncodeKept encodes a decoded state, every intent's encoding
// kept: what a delta run writes back.
func BenchmarkEncodeKept(b *testing.B) {
	enc, err := Encode(benchState())
	if err != nil {
		b.Fatal(err)
	}
	s, err := Decode(enc)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if enc, err = Encode(s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "stored-bytes")
}

// BenchmarkPatchPresent patches 1,000 changes into a state of 100,000
// with a present phase naming every entry, as an AD delta's id list does.
func BenchmarkPatchPresent(b *testing.B) {
	s := benchState()
	d := &Delta{PresentPhase: true, Present: slices.Clone(s.Keys)}
	for i := range 1000 {
		d.Changed.Append(s.Keys[i*100], s.Refs[i*100], s.Intents[i*100])
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Patch(s, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeChunks encodes the same state in chunks, with their
// summaries, as a store.ChunkStore keeps it.
func BenchmarkEncodeChunks(b *testing.B) {
	s := benchState()
	b.ReportAllocs()
	var chunks []store.StateChunk
	for b.Loop() {
		var err error
		if chunks, err = EncodeChunks(s, 0, s.Len(), 1, ChunkEntries, ChunkBytes); err != nil {
			b.Fatal(err)
		}
	}
	data, sums := 0, 0
	for _, c := range chunks {
		data, sums = data+len(c.Data), sums+len(c.Summary)
	}
	b.ReportMetric(float64(data), "data-bytes")
	b.ReportMetric(float64(sums), "summary-bytes")
	b.ReportMetric(float64(len(chunks)), "chunks")
}
