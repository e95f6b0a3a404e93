package ggmail

import (
	"strings"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/filter"
)

// DefaultFilter returns the filter used when a domain configures none: AD
// user accounts, mail-enabled public folders, and the security and
// distribution groups whose cn starts with prefix. Groups without the
// prefix are never fetched, so they do not clutter the unmatched list.
// Special characters of the prefix are escaped (RFC 4515).
func DefaultFilter(prefix string) string {
	return "(|(sAMAccountType=805306368)(objectClass=publicFolder)" +
		"(&(|(sAMAccountType=268435456)(sAMAccountType=268435457))(cn=" + filter.EscapeValue(prefix) + "*)))"
}

// Filter checks the domain's filter against the grammar of RFC 4515 with
// the sdk's parser (filter.Parse) and returns it normalized: without the
// white space around it and between its components. An empty filter stands
// for DefaultFilter of the configured prefix. A broken filter is a
// *sdk.FilterError whose Position is the byte offset, in req.Filter, of the
// first byte the grammar does not allow.
func (p *Policy) Filter(req sdk.FilterRequest) (sdk.FilterResponse, error) {
	if strings.Trim(req.Filter, " \t\r\n") == "" {
		return sdk.FilterResponse{Filter: DefaultFilter(p.set.GroupPrefix)}, nil
	}
	f, err := filter.Parse(req.Filter)
	if err != nil {
		return sdk.FilterResponse{}, err
	}
	return sdk.FilterResponse{Filter: f.String()}, nil
}
