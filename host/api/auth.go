package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/dirsync/dirsync/host/config"
)

// Role is what a principal may do.
type Role string

// Roles.
const (
	// RoleAdmin may read and change everything of its domains.
	RoleAdmin Role = "admin"
	// RoleViewer may read, check filters and preview. So may a principal
	// with any role other than RoleAdmin.
	RoleViewer Role = "viewer"
)

// Principal is who a request acts for.
type Principal struct {
	// Name names the principal in logs (a token's name, a user).
	Name string
	Role Role
	// Domains are the domains the principal may see (case is ignored);
	// "*" is every domain.
	Domains []string
}

// AllowsDomain reports whether the principal may see the domain.
func (p *Principal) AllowsDomain(domain string) bool {
	domain = strings.ToLower(domain)
	for _, d := range p.Domains {
		if d == "*" || strings.ToLower(d) == domain {
			return true
		}
	}
	return false
}

func (p *Principal) mayWrite() bool { return p.Role == RoleAdmin }

// An Authorizer names the principal of a request. A nil Principal (with
// an error saying why, for the log) is answered with 401. The API calls it
// for every request before anything else.
type Authorizer interface {
	Authorize(r *http.Request) (*Principal, error)
}

// AuthorizerFunc makes a function an Authorizer.
type AuthorizerFunc func(r *http.Request) (*Principal, error)

// Authorize calls f(r).
func (f AuthorizerFunc) Authorize(r *http.Request) (*Principal, error) { return f(r) }

var (
	errNoToken      = errors.New("no bearer token (Authorization: Bearer TOKEN)")
	errUnknownToken = errors.New("the bearer token is not a configured token")
)

// tokenAuthorizer authorizes bearer tokens by their SHA-256.
type tokenAuthorizer struct {
	sums       [][sha256.Size]byte
	principals []Principal
}

// NewTokenAuthorizer returns the Authorizer of dirsync.toml's [[api.token]]
// entries: a request carries `Authorization: Bearer TOKEN`, and the
// SHA-256 of TOKEN is compared, in constant time, with the hash of every
// configured token, all of them whichever matches, so that the time taken
// does not tell which did. An entry whose hash is not 64 hex digits (which
// config.Load refuses) never matches.
func NewTokenAuthorizer(tokens []config.Token) Authorizer {
	a := &tokenAuthorizer{}
	for _, t := range tokens {
		b, err := hex.DecodeString(t.SHA256)
		if err != nil || len(b) != sha256.Size {
			continue
		}
		domains := make([]string, len(t.Domains))
		for i, d := range t.Domains {
			domains[i] = strings.ToLower(d)
		}
		a.sums = append(a.sums, [sha256.Size]byte(b))
		a.principals = append(a.principals, Principal{Name: t.Name, Role: Role(t.Role), Domains: domains})
	}
	return a
}

func (a *tokenAuthorizer) Authorize(r *http.Request) (*Principal, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, errNoToken
	}
	sum := sha256.Sum256([]byte(token))
	match := -1
	for i := range a.sums {
		eq := subtle.ConstantTimeCompare(sum[:], a.sums[i][:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return nil, errUnknownToken
	}
	p := a.principals[match]
	p.Domains = slices.Clone(p.Domains)
	return &p, nil
}
