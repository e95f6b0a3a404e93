package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/sdk"
)

func TestLabel(t *testing.T) {
	if got := Label("std", "/p/standard.wasm"); got != `policy "std" (standard.wasm)` {
		t.Errorf("Label = %s", got)
	}
	if got := Label("", "/p/standard"); got != `policy (standard)` {
		t.Errorf("Label without a name = %s", got)
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		" one ":                  "one",
		"\n  panic: x  \n\tat y": "panic: x",
	} {
		if got := FirstLine(in); got != want {
			t.Errorf("FirstLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPin(t *testing.T) {
	data := []byte("a policy")
	sum := sha256.Sum256(data)
	digits := hex.EncodeToString(sum[:])
	for _, s := range []string{digits, strings.ToUpper(digits), "sha256:" + digits, " " + digits + "\n"} {
		p, err := ParsePin(s)
		if err != nil {
			t.Fatalf("ParsePin(%q): %v", s, err)
		}
		if err := p.Check(data, "refusing to load"); err != nil {
			t.Errorf("pin %q: %v", s, err)
		}
	}
	if p, err := ParsePin(" "); p != nil || err != nil {
		t.Errorf("ParsePin of nothing = %x, %v; want no pin", p, err)
	}
	if err := Pin(nil).Check(data, "refusing to load"); err != nil {
		t.Errorf("no pin: %v", err)
	}
	zeros := strings.Repeat("0", 64)
	p, _ := ParsePin(zeros)
	want := "sha256 mismatch: the file has " + digits + ", the manifest pins " + zeros + "; refusing to load"
	if err := p.Check(data, "refusing to load"); err == nil || err.Error() != want {
		t.Errorf("mismatch: %v, want %s", err, want)
	}
	for _, bad := range []string{"abc", strings.Repeat("g", 64), digits + "00"} {
		if _, err := ParsePin(bad); err == nil || !strings.Contains(err.Error(), "is not a SHA-256 in hex") {
			t.Errorf("ParsePin(%q): err = %v", bad, err)
		}
	}
}

func TestCheckABI(t *testing.T) {
	if err := CheckABI(sdk.ABIMajor, 99); err != nil {
		t.Errorf("own major version: %v", err)
	}
	err := CheckABI(sdk.ABIMajor+1, 0)
	if err == nil || !strings.Contains(err.Error(), "is not supported by this host") || !strings.Contains(err.Error(), "rebuild the policy") {
		t.Errorf("other major version: %v", err)
	}
}

func TestMapBatch(t *testing.T) {
	for n, want := range map[int]int{0: DefaultMapBatch, 1: 1, 7000: 7000} {
		if got, err := MapBatch(n); got != want || err != nil {
			t.Errorf("MapBatch(%d) = %d, %v; want %d", n, got, err, want)
		}
	}
	if _, err := MapBatch(-1); err == nil || err.Error() != "map batch -1 is negative" {
		t.Errorf("MapBatch(-1): %v", err)
	}
}

func TestMapEncoder(t *testing.T) {
	req := sdk.MapRequest{Entries: []sdk.Entry{
		{ID: "a", Attributes: map[string][]string{"cn": {"A"}}},
		{ID: "b", DN: "CN=B", Attributes: map[string][]string{"cn": {"ok", "\xff"}}},
	}}
	enc := NewMapEncoder(&req)
	b, err := enc.Encode(0, 1)
	if err != nil || len(b) == 0 {
		t.Fatalf("Encode(0, 1) = %d bytes, %v", len(b), err)
	}
	_, err = enc.Encode(0, 2)
	want := `value 1 of attribute "cn" of entry "CN=B" is not valid UTF-8`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Encode of a bad value: %v, want %s…", err, want)
	}
}
