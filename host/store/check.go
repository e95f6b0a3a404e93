package store

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/dirsync/dirsync/sdk"
)

// Page sizes of RunsPage and RunChanges: the default for a limit of 0 and
// the largest allowed.
const (
	DefaultRunsPage    = 50
	MaxRunsPage        = 1000
	DefaultChangesPage = 1000
	MaxChangesPage     = 10000
)

// The checks below are the ones every Store makes on its arguments, with
// the errors the suite expects; a Store of one's own can call them.

// NormDomain returns domain in lower case, or an error if it is not a
// plausible domain name (empty, or holding "@" or blanks).
func NormDomain(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(domain))
	if d == "" || strings.ContainsAny(d, "@ \t") {
		return "", fmt.Errorf("invalid domain %q", domain)
	}
	return d, nil
}

// NormDomains returns domain and its alias domains normalized
// (NormDomain), the domain first: the domains a Snapshot's owners lie in.
func NormDomains(domain string, aliasDomains []string) ([]string, error) {
	domain, err := NormDomain(domain)
	if err != nil {
		return nil, err
	}
	domains := []string{domain}
	for _, d := range aliasDomains {
		d, err := NormDomain(d)
		if err != nil {
			return nil, fmt.Errorf("alias domain: %w", err)
		}
		domains = append(domains, d)
	}
	return domains, nil
}

// NormAddress returns address in lower case and its domain part, or an
// error if it is not local@domain.
func NormAddress(address string) (addr, domain string, err error) {
	addr = strings.ToLower(strings.TrimSpace(address))
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || strings.ContainsAny(addr, " \t") {
		return "", "", fmt.Errorf("invalid address %q", address)
	}
	return addr, addr[at+1:], nil
}

// NormKind returns a mailbox kind, sdk.KindUser for "", or an error for an
// unknown kind.
func NormKind(kind string) (string, error) {
	switch kind {
	case "":
		return sdk.KindUser, nil
	case sdk.KindUser, sdk.KindPublicFolder:
		return kind, nil
	}
	return "", fmt.Errorf("invalid mailbox kind %q", kind)
}

// RunsPageLimit checks the arguments of RunsPage for a domain and returns
// the page size to use.
func RunsPageLimit(domain string, limit int, beforeID int64) (int, error) {
	switch {
	case limit == 0:
		limit = DefaultRunsPage
	case limit < 0 || limit > MaxRunsPage:
		return 0, fmt.Errorf("runs of %s: page size %d is not between 1 and %d", domain, limit, MaxRunsPage)
	}
	if beforeID < 0 {
		return 0, fmt.Errorf("runs of %s: run id %d to page before is negative", domain, beforeID)
	}
	return limit, nil
}

// RunChangesLimit checks the arguments of RunChanges for run id of a
// domain and returns the page size to use.
func RunChangesLimit(domain string, id int64, offset, limit int) (int, error) {
	switch {
	case limit == 0:
		limit = DefaultChangesPage
	case limit < 0 || limit > MaxChangesPage:
		return 0, fmt.Errorf("changes of run %d of %s: page size %d is not between 1 and %d", id, domain, limit, MaxChangesPage)
	}
	if offset < 0 {
		return 0, fmt.Errorf("changes of run %d of %s: offset %d is negative", id, domain, offset)
	}
	return limit, nil
}

// ConflictError is the ErrConflict of a PutSettings that expected version
// expect where the latest is last (removed or not).
func ConflictError(last int64, removed bool, expect int64) error {
	var msg string
	switch {
	case last == 0:
		msg = fmt.Sprintf("the domain has no settings, the change expected version %d", expect)
	case removed:
		msg = fmt.Sprintf("version %d removed the domain, the change expected version %d", last, expect)
	case expect == 0:
		msg = fmt.Sprintf("the domain has settings already, at version %d", last)
	default:
		msg = fmt.Sprintf("the settings are at version %d, the change expected version %d", last, expect)
	}
	return fmt.Errorf("%s: %w", msg, ErrConflict)
}

// CheckSettingsVersion checks the arguments of PutSettings and returns the
// domain's name as the store keeps it.
func CheckSettingsVersion(v *SettingsVersion, expect int64) (string, error) {
	if v == nil {
		return "", errors.New("save settings: no settings")
	}
	domain, err := NormDomain(v.Domain)
	if err != nil {
		return "", fmt.Errorf("save settings: %w", err)
	}
	switch {
	case len(v.Settings) == 0:
		return "", fmt.Errorf("save settings of %s: empty settings", domain)
	case v.Author == "":
		return "", fmt.Errorf("save settings of %s: no author", domain)
	case v.Removed:
		return "", fmt.Errorf("save settings of %s: a version that removes the domain is saved by RemoveSettings", domain)
	case expect < 0:
		return "", fmt.Errorf("save settings of %s: expected version %d is negative", domain, expect)
	}
	return domain, nil
}

// CreateKey stands for the rows a create of mailbox m writes (its groups
// aside): a Prewriter keeps it for each mailbox written ahead, and keeps
// the mailbox when Apply creates one of the same key. It is a hash of each
// field with its length.
func CreateKey(m *sdk.Mailbox) [16]byte {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		io.WriteString(h, s)
	}
	for _, s := range []string{m.DirID, m.DN, m.Kind, m.Primary, m.DisplayName, m.Source} {
		put(s)
	}
	for _, a := range m.Aliases {
		put(a)
	}
	var r [16]byte
	copy(r[:], h.Sum(nil))
	return r
}

// SortChunks returns the chunks of a DirState.Chunks as a store keeps
// them: in ascending Seq, one a Seq (of those given with one Seq, the
// last). It shares their bytes.
func SortChunks(cs []StateChunk) []StateChunk {
	out := slices.Clone(cs)
	slices.SortStableFunc(out, func(a, b StateChunk) int { return cmp.Compare(a.Seq, b.Seq) })
	n := 0
	for i := range out {
		if n > 0 && out[n-1].Seq == out[i].Seq {
			out[n-1] = out[i]
			continue
		}
		out[n] = out[i]
		n++
	}
	return out[:n]
}
