package host

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/ldapfetch"
	"github.com/dirsync/dirsync/sdk"
)

// ConnectionCap is how many matching entries a connection test counts
// before it stops reading.
const ConnectionCap = 1000

// ConnectionResult is what a connection test found.
type ConnectionResult struct {
	// Server is the URL that answered and bound.
	Server string `json:"server"`
	// FailedOver lists the URLs tried before it, which did not answer.
	FailedOver []string `json:"failed_over,omitempty"`
	// Entries counts the entries the filter matches, up to ConnectionCap;
	// Capped says there are more.
	Entries int  `json:"entries"`
	Capped  bool `json:"capped"`
	// Filter is the filter as the policy normalized it.
	Filter string        `json:"filter"`
	Took   time.Duration `json:"took_ns"`
}

var errEnough = errors.New("enough entries counted")

// TestConnection connects to a domain's directory with the given settings
// (saved or not, as PreviewSettings takes them), binds, and counts the
// entries the filter matches, reading no more than ConnectionCap. The
// error says what failed: the settings, the filter (its position), the
// server, the bind, the search.
func (h *Host) TestConnection(ctx context.Context, d config.Domain, password *string) (*ConnectionResult, error) {
	r, err := h.resolveUnsaved(ctx, d, password)
	if err != nil {
		return nil, err
	}
	b, err := h.credentials(ctx, r)
	if err != nil {
		return nil, err
	}
	p, err := h.Policy(ctx, r.d.Policy)
	if err != nil {
		return nil, err
	}
	f, err := checkFilter(ctx, p, r.d.LDAP.Filter)
	if err != nil {
		return nil, err
	}
	out := &ConnectionResult{Filter: f.Filter}
	// Only the stable id is asked for: the count is what matters.
	res, err := ldapfetch.Fetch(ctx, h.fetchConfig(r.d, b), f.Filter, []string{"objectGUID", "entryUUID"}, func(sdk.Entry) error {
		if out.Entries == ConnectionCap {
			out.Capped = true
			return errEnough
		}
		out.Entries++
		return nil
	})
	out.Server, out.Took = res.URL, res.Elapsed
	if i := slices.Index(r.d.LDAP.URLs, res.URL); i > 0 {
		out.FailedOver = r.d.LDAP.URLs[:i]
	}
	if err != nil && !errors.Is(err, errEnough) {
		return out, err
	}
	return out, nil
}
