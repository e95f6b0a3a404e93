// Package secrets seals the bind passwords of store-kept domains, so that the
// store holds them encrypted at rest: AES-256-GCM with a key from a file.
//
// A key file holds 64 hex digits (32 bytes; surrounding whitespace, such as a
// final newline, is ignored) and must be readable and writable by its owner
// only (chmod 600). NewKey makes the contents of a new one; so does
// `openssl rand -hex 32`.
//
// A sealed password is a random 12-byte nonce followed by the ciphertext and
// its 16-byte tag. The domain's name is bound to it as additional data: a
// sealed password opens only for the domain it was sealed for, so one copied
// to another domain's settings does not open. Errors never carry a key,
// a password or the contents of a key file.
package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"unicode/utf8"
)

// KeySize is the size of a key in bytes (AES-256); a key file holds twice as
// many hex digits.
const KeySize = 32

// ErrCannotOpen is the error of Open for every sealed password it cannot
// open: one sealed with another key or for another domain, or damaged.
var ErrCannotOpen = errors.New("secrets: cannot open the sealed password: it was sealed with another key or for another domain, or is damaged")

// maxKeyFile is the most LoadKey reads of a key file: a key with room for
// whitespace around it.
const maxKeyFile = 1024

// LoadKey reads the key in the file at path. It refuses a file that group or
// others may read, write or execute (mode & 0o077 ≠ 0), one that is not a
// regular file, and one that does not hold exactly 64 hex digits
// (surrounding whitespace aside). Its errors name the file, never its
// contents.
func LoadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets: key file %s is not a regular file", path)
	}
	// Windows has no such permission bits; its files report 0666 or 0444.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("secrets: key file %s is open to group or others (mode %04o); make it private with: chmod 600 %s",
			path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("secrets: key file: %w", err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("secrets: key file %s is longer than %d bytes; it should hold %d hex digits",
			path, maxKeyFile, 2*KeySize)
	}
	digits := bytes.TrimSpace(data)
	if n := utf8.RuneCount(digits); n != 2*KeySize {
		return nil, fmt.Errorf("secrets: key file %s holds %d characters, want %d hex digits", path, n, 2*KeySize)
	}
	pos := 0
	for _, c := range string(digits) {
		pos++
		if !isHex(c) {
			return nil, fmt.Errorf("secrets: key file %s: character %d is not a hex digit; want %d hex digits",
				path, pos, 2*KeySize)
		}
	}
	key := make([]byte, KeySize)
	if _, err := hex.Decode(key, digits); err != nil {
		// Not reached: every digit was checked. hex's error would quote one.
		return nil, fmt.Errorf("secrets: key file %s does not hold %d hex digits", path, 2*KeySize)
	}
	return key, nil
}

func isHex(c rune) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// NewKey returns a new random key as 64 hex digits, the contents of a key
// file.
func NewKey() string {
	key := make([]byte, KeySize)
	rand.Read(key) // never fails; a broken source of randomness crashes the program
	return hex.EncodeToString(key)
}

// Seal encrypts plaintext, the bind password of domain, with key: a fresh
// random nonce, then the ciphertext and tag, bound to the domain's name
// (compared in lower case, as domain names are).
func Seal(key, plaintext []byte, domain string) ([]byte, error) {
	aead, ad, err := setup(key, domain)
	if err != nil {
		return nil, err
	}
	return aead.Seal(nil, nil, plaintext, ad), nil
}

// Open decrypts what Seal made of domain's password with key. A wrong key,
// another domain, or bytes changed or cut short are all ErrCannotOpen.
func Open(key, sealed []byte, domain string) ([]byte, error) {
	aead, ad, err := setup(key, domain)
	if err != nil {
		return nil, err
	}
	plaintext, err := aead.Open(nil, nil, sealed, ad)
	if err != nil {
		return nil, ErrCannotOpen
	}
	return plaintext, nil
}

// setup checks key and domain and returns the AEAD and additional data of
// Seal and Open.
func setup(key []byte, domain string) (cipher.AEAD, []byte, error) {
	if len(key) != KeySize {
		return nil, nil, fmt.Errorf("secrets: the key is %d bytes, want %d", len(key), KeySize)
	}
	domain = strings.ToLower(strings.TrimSpace(domain))
	if domain == "" {
		return nil, nil, errors.New("secrets: no domain to bind the password to")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, fmt.Errorf("secrets: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, nil, fmt.Errorf("secrets: %w", err)
	}
	return aead, []byte(domain), nil
}
