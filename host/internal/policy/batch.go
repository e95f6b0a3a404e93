package policy

import (
	"fmt"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
)

// DefaultMapBatch is the number of entries of one Map call into a wasm or
// process policy when its options leave the batch size 0.
const DefaultMapBatch = 5000

// MapBatch returns the batch size that the option n asks for:
// DefaultMapBatch for 0. A negative n is an error.
func MapBatch(n int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("map batch %d is negative", n)
	case n == 0:
		return DefaultMapBatch, nil
	}
	return n, nil
}

// MapInBatches maps entries in batches of at most size (one batch when
// size <= 0), in order: mapBatch maps entries[start:end]. Each batch must
// give one intent per entry; the intents are joined. An empty request is
// one empty batch.
func MapInBatches(entries []sdk.Entry, size int, mapBatch func(start, end int) ([]sdk.Intent, error)) ([]sdk.Intent, error) {
	if size <= 0 {
		size = max(len(entries), 1)
	}
	var out []sdk.Intent
	for start := 0; ; start += size {
		end := min(start+size, len(entries))
		intents, err := mapBatch(start, end)
		if err != nil {
			return nil, err
		}
		if len(intents) != end-start {
			return nil, fmt.Errorf("the policy returned %d intents for %d entries", len(intents), end-start)
		}
		if end == len(entries) {
			if out == nil {
				return intents, nil // a single batch
			}
			return append(out, intents...), nil
		}
		if out == nil {
			out = make([]sdk.Intent, 0, len(entries))
		}
		out = append(out, intents...)
	}
}

// A MapEncoder encodes the batches of one Map request with sdk/abi's
// direct codec, all into one buffer: the request of a batch is valid until
// the next call of Encode.
type MapEncoder struct {
	req *sdk.MapRequest
	buf []byte
}

// NewMapEncoder returns an encoder of the batches of req.
func NewMapEncoder(req *sdk.MapRequest) *MapEncoder { return &MapEncoder{req: req} }

// Encode encodes the request of the entries req.Entries[start:end]. An
// entry that cannot cross the ABI is named in the error.
func (e *MapEncoder) Encode(start, end int) ([]byte, error) {
	entries := e.req.Entries[start:end]
	b, err := abi.AppendMapRequest(e.buf[:0], e.req.Domain, entries)
	if err != nil {
		if where := abi.InvalidUTF8(entries); where != "" {
			return nil, fmt.Errorf("%s is not valid UTF-8 (the ABI carries strings as UTF-8; binary values must be base64)", where)
		}
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	e.buf = b
	return b, nil
}
