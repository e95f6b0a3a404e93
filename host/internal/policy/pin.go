package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Pin is the SHA-256 that the manifest pins a policy file to (sha256 =
// "…"); a nil Pin pins nothing.
type Pin []byte

// ParsePin reads the manifest's sha256 of a policy: 64 hex digits in
// either case, optionally prefixed "sha256:"; "" is no pin.
func ParsePin(s string) (Pin, error) {
	digits := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"))
	if digits == "" {
		return nil, nil
	}
	p, err := hex.DecodeString(digits)
	if err != nil || len(p) != sha256.Size {
		return nil, fmt.Errorf("sha256 %q is not a SHA-256 in hex (64 hex digits)", s)
	}
	return p, nil
}

// Check refuses data whose SHA-256 is not the pinned one; refusal says
// what the runtime refuses ("refusing to load"). Without a pin it accepts
// anything.
func (p Pin) Check(data []byte, refusal string) error {
	if p == nil {
		return nil
	}
	if sum := sha256.Sum256(data); !bytes.Equal(sum[:], p) {
		return p.Mismatch(hex.EncodeToString(sum[:]), refusal)
	}
	return nil
}

// Mismatch is the error for a file whose SHA-256 is got (in hex), not the
// pinned one; refusal says what the runtime refuses.
func (p Pin) Mismatch(got, refusal string) error {
	return fmt.Errorf("sha256 mismatch: the file has %s, the manifest pins %s; %s", got, hex.EncodeToString(p), refusal)
}
