package standard

import (
	"strings"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/filter"
)

// Filter checks an RFC 4515 filter (R2) with filter.Parse and returns it
// normalized: without surrounding white space and without white space
// between components; attribute names and values are kept as given. An
// empty filter, or one of white space only, stands for DefaultFilter. A
// broken filter gives a *sdk.FilterError with the byte position in
// req.Filter.
func (p *Policy) Filter(req sdk.FilterRequest) (sdk.FilterResponse, error) {
	if strings.Trim(req.Filter, " \t\r\n") == "" {
		return sdk.FilterResponse{Filter: DefaultFilter}, nil
	}
	f, err := filter.Parse(req.Filter)
	if err != nil {
		return sdk.FilterResponse{}, err
	}
	return sdk.FilterResponse{Filter: f.String()}, nil
}
