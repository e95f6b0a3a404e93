package wasmrt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/wasmrt"
	"github.com/dirsync/dirsync/host/internal/wasmrt/testdata/testpolicy"
	"github.com/dirsync/dirsync/sdk"
)

// BenchmarkMap100k maps 100,000 entries of 10 attributes each with the
// test policy linked in (builtin) and through the wasm runtime, in the
// default batches and in one call.
//
//	go test -run '^$' -bench Map100k -benchtime 5x ./host/internal/wasmrt
func BenchmarkMap100k(b *testing.B) {
	const n = 100000
	req := sdk.MapRequest{Domain: dom, Entries: entries(n)}
	builtin, err := policy.Builtin(testpolicy.New(), testConfig)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		rt   func(b *testing.B) policy.Runtime
	}{
		{"builtin", func(*testing.B) policy.Runtime { return builtin }},
		{fmt.Sprintf("wasm/batch=%d", wasmrt.DefaultMapBatch), func(b *testing.B) policy.Runtime { return load(b, wasmrt.Options{}) }},
		{"wasm/batch=100000", func(b *testing.B) policy.Runtime { return load(b, wasmrt.Options{MapBatch: n}) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rt := bc.rt(b)
			ctx := context.Background()
			for b.Loop() {
				resp, err := rt.Map(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if len(resp.Intents) != n {
					b.Fatalf("%d intents", len(resp.Intents))
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkLoad loads the test policy: compile (or read the compilation
// cache), instantiate, configure, and read its Info.
func BenchmarkLoad(b *testing.B) {
	for _, cached := range []bool{false, true} {
		b.Run(fmt.Sprintf("cached=%t", cached), func(b *testing.B) {
			opts := wasmrt.Options{Name: "bench", Config: testConfig}
			if cached {
				opts.CacheDir = cacheDir
			}
			for b.Loop() {
				rt, err := wasmrt.Load(context.Background(), policyWasm, opts)
				if err != nil {
					b.Fatal(err)
				}
				rt.Close(context.Background())
			}
		})
	}
}
