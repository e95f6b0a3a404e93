package secrets

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const keyHex = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

// writeKeyFile writes content to a new file with mode perm and returns its
// path.
func writeKeyFile(t *testing.T, content string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask; Chmod does not.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadKey(t *testing.T) {
	want, _ := hex.DecodeString(keyHex)
	tests := []struct {
		name    string
		content string
		perm    os.FileMode
	}{
		{"Mode600", keyHex, 0o600},
		{"Mode400", keyHex, 0o400},
		{"FinalNewline", keyHex + "\n", 0o600},
		{"WhitespaceAround", "  \r\n\t" + keyHex + " \r\n\n", 0o600},
		{"UpperCase", strings.ToUpper(keyHex), 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := LoadKey(writeKeyFile(t, tc.content, tc.perm))
			if err != nil {
				t.Fatalf("LoadKey: %v", err)
			}
			if !bytes.Equal(key, want) {
				t.Errorf("key = %x, want %x", key, want)
			}
		})
	}
}

// LoadKey refuses a key file that is open to others or does not hold a key,
// with an error that names the file and says why, and never quotes it.
func TestLoadKeyRefuses(t *testing.T) {
	const secretish = "hunter2-correct-horse-battery-staple"
	tests := []struct {
		name    string
		content string
		perm    os.FileMode
		want    []string // in the error, besides the file's path
	}{
		{"ReadableByOthers", keyHex, 0o644, []string{"chmod 600", "0644"}},
		{"ReadableByGroup", keyHex, 0o640, []string{"chmod 600", "0640"}},
		{"WritableByOthers", keyHex, 0o602, []string{"chmod 600"}},
		{"ExecutableByGroup", keyHex, 0o610, []string{"chmod 600"}},
		{"Empty", "", 0o600, []string{"0 characters", "64 hex digits"}},
		{"OnlyWhitespace", " \n\n", 0o600, []string{"0 characters"}},
		{"TooShort", keyHex[:63], 0o600, []string{"63 characters", "64 hex digits"}},
		{"TooLong", keyHex + "00", 0o600, []string{"66 characters"}},
		{"AKeyPerLine", keyHex + "\n" + keyHex + "\n", 0o600, []string{"129 characters"}},
		{"Base64", "jx4tPEtaaXiHlqW0w9Lh8A8eLTxLWml4h5altMPS4fA=", 0o600, []string{"44 characters"}},
		{"NotHex", "g" + keyHex[1:], 0o600, []string{"character 1 is not a hex digit"}},
		{"NotHexLater", keyHex[:40] + "xyz" + keyHex[43:], 0o600, []string{"character 41 is not a hex digit"}},
		{"NotASCII", keyHex[:62] + "é0", 0o600, []string{"character 63 is not a hex digit"}},
		{"APassword", secretish, 0o600, []string{"36 characters"}},
		{"Huge", strings.Repeat(keyHex, 100), 0o600, []string{"longer than"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeKeyFile(t, tc.content, tc.perm)
			key, err := LoadKey(path)
			if err == nil {
				t.Fatalf("LoadKey = %x, want an error", key)
			}
			msg := err.Error()
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			noContent(t, msg, tc.content)
		})
	}

	t.Run("Missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "none.key")
		if _, err := LoadKey(path); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadKey of a missing file = %v, want os.ErrNotExist naming %s", err, path)
		}
	})
	t.Run("Directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("LoadKey of a directory = %v, want an error saying it is not a regular file", err)
		}
	})
}

// noContent fails if msg quotes content, or any run of 6 of its characters
// that are not blank.
func noContent(t *testing.T, msg, content string) {
	t.Helper()
	content = strings.TrimSpace(content)
	for i := 0; i+6 <= len(content); i++ {
		if part := content[i : i+6]; strings.TrimSpace(part) == part && strings.Contains(msg, part) {
			t.Errorf("error %q quotes the key file (%q)", msg, part)
			return
		}
	}
}

func TestNewKey(t *testing.T) {
	hexDigits := regexp.MustCompile(`^[0-9a-f]{64}$`)
	a, b := NewKey(), NewKey()
	for _, k := range []string{a, b} {
		if !hexDigits.MatchString(k) {
			t.Errorf("NewKey() = %q, want 64 lower-case hex digits", k)
		}
	}
	if a == b {
		t.Errorf("NewKey returned %s twice", a)
	}
	// What NewKey makes, LoadKey reads.
	key, err := LoadKey(writeKeyFile(t, a+"\n", 0o600))
	if err != nil || hex.EncodeToString(key) != a {
		t.Errorf("LoadKey of a file NewKey made = %x, %v; want %s", key, err, a)
	}
}

func TestSealOpen(t *testing.T) {
	key, _ := hex.DecodeString(keyHex)
	tests := []struct {
		name     string
		password []byte
		sealFor  string
		openFor  string
	}{
		{"Password", []byte("reader-secret"), "example.com", "example.com"},
		{"Empty", []byte{}, "example.com", "example.com"},
		{"Binary", []byte{0, 1, 2, 0xff, 0}, "example.com", "example.com"},
		{"Long", bytes.Repeat([]byte("p"), 10_000), "example.com", "example.com"},
		{"DomainCaseAndSpace", []byte("reader-secret"), "Example.COM", " example.com "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := Seal(key, tc.password, tc.sealFor)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(sealed) != 12+len(tc.password)+16 {
				t.Errorf("sealed %d bytes into %d, want nonce, ciphertext and tag: %d", len(tc.password), len(sealed),
					12+len(tc.password)+16)
			}
			if len(tc.password) >= 4 && bytes.Contains(sealed, tc.password) {
				t.Error("the sealed bytes hold the password")
			}
			got, err := Open(key, sealed, tc.openFor)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tc.password) {
				t.Errorf("Open = %q, want %q", got, tc.password)
			}
		})
	}

	t.Run("FreshNonceEachTime", func(t *testing.T) {
		a, _ := Seal(key, []byte("reader-secret"), "example.com")
		b, _ := Seal(key, []byte("reader-secret"), "example.com")
		if bytes.Equal(a[:12], b[:12]) || bytes.Equal(a, b) {
			t.Errorf("two seals of one password share a nonce: %x, %x", a, b)
		}
	})
}

// Open refuses whatever is not the sealed password of that domain under that
// key with ErrCannotOpen, and says nothing of the password.
func TestOpenRefuses(t *testing.T) {
	key, _ := hex.DecodeString(keyHex)
	otherKey, _ := hex.DecodeString(NewKey())
	password := []byte("reader-secret")
	sealed, err := Seal(key, password, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		key    []byte
		sealed []byte
		domain string
	}{
		{"OtherKey", otherKey, sealed, "example.com"},
		{"OtherDomain", key, sealed, "example.org"},
		{"SubDomain", key, sealed, "mail.example.com"},
		{"NonceChanged", key, flip(0), "example.com"},
		{"CiphertextChanged", key, flip(12), "example.com"},
		{"TagChanged", key, flip(len(sealed) - 1), "example.com"},
		{"CutShort", key, sealed[:len(sealed)-1], "example.com"},
		{"OnlyTheNonce", key, sealed[:12], "example.com"},
		{"Empty", key, nil, "example.com"},
		{"Extended", key, append(bytes.Clone(sealed), 0), "example.com"},
		{"ThePlaintext", key, password, "example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Open(tc.key, tc.sealed, tc.domain)
			if !errors.Is(err, ErrCannotOpen) {
				t.Fatalf("Open = %q, %v; want ErrCannotOpen", got, err)
			}
			if got != nil {
				t.Errorf("Open returned %q with its error", got)
			}
			if strings.Contains(err.Error(), string(password)) {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
}

// Seal and Open refuse a key that is not 32 bytes and a missing domain.
func TestSealOpenBadArguments(t *testing.T) {
	key, _ := hex.DecodeString(keyHex)
	sealed, err := Seal(key, []byte("reader-secret"), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		key    []byte
		domain string
		want   string
	}{
		{"NoKey", nil, "example.com", "key is 0 bytes, want 32"},
		{"AES128Key", key[:16], "example.com", "key is 16 bytes, want 32"},
		{"HexNotDecoded", []byte(keyHex), "example.com", "key is 64 bytes, want 32"},
		{"NoDomain", key, "", "no domain"},
		{"BlankDomain", key, "  ", "no domain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Seal(tc.key, []byte("reader-secret"), tc.domain); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Seal = %v, want an error saying %q", err, tc.want)
			}
			_, err := Open(tc.key, sealed, tc.domain)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrCannotOpen) {
				t.Errorf("Open = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
