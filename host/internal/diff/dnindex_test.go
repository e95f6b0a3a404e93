package diff

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestDNIndex puts and gets random DNs, spelled in several ways and some
// shared, into a dnIndex and a map of normalized DNs, and wants the same
// answers: with the real hash, and with one that gives few values, so
// that most DNs share a hash with others (chains, replaced in the middle).
func TestDNIndex(t *testing.T) {
	hashes := map[string]func([]byte) uint64{
		"maphash": nil,
		"length":  func(b []byte) uint64 { return uint64(len(b) % 3) },
	}
	for name, hash := range hashes {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			spell := func(i int) string {
				switch r.IntN(3) {
				case 0:
					return fmt.Sprintf("cn=u%d,ou=People,dc=example,dc=com", i)
				case 1:
					return fmt.Sprintf("CN=U%d, OU=people, DC=Example,DC=COM", i)
				}
				return fmt.Sprintf("cn=u%d , ou=PEOPLE,dc=example,dc=com", i)
			}
			x := newDNIndex(0)
			if hash != nil {
				x.hash = hash
			}
			ref := map[string]*want{}
			for range 2000 {
				i := r.IntN(300)
				if r.IntN(2) == 0 {
					w := &want{ref: Ref{DN: spell(i)}}
					x.put(w.ref.DN, w)
					ref[NormDN(w.ref.DN)] = w
					continue
				}
				dn := spell(i)
				if got, want := x.get(dn), ref[NormDN(dn)]; got != want {
					t.Fatalf("get(%q) = %v, want %v", dn, got, want)
				}
			}
			for i := range 300 {
				dn := spell(i)
				if got, want := x.get(dn), ref[NormDN(dn)]; got != want {
					t.Fatalf("get(%q) = %v, want %v", dn, got, want)
				}
			}
		})
	}
}
