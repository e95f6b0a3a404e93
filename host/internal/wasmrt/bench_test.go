package wasmrt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/testpolicy/runtimetest"
	"github.com/dirsync/dirsync/host/internal/wasmrt"
	"github.com/dirsync/dirsync/sdk"
)

// BenchmarkMap100k maps 100,000 entries of 10 attributes each with the
// test policy linked in (builtin) and through the wasm runtime: from one
// goroutine in one Map call (split into the default batches, or in one
// batch), and as the host calls it, from 2 goroutines at once with Map
// calls of 2,000 entries (2 instances).
//
//	go test -run '^$' -bench Map100k -benchtime 5x ./host/internal/wasmrt
func BenchmarkMap100k(b *testing.B) {
	const n = 100000
	es := runtimetest.Entries(n)
	builtin := runtimetest.Builtin(b)
	for _, bc := range []struct {
		name       string
		goroutines int // 0: one Map call of all entries; else Map calls of batch entries
		batch      int
		rt         func(b *testing.B) policy.Runtime
	}{
		{"builtin", 0, 0, func(*testing.B) policy.Runtime { return builtin }},
		{fmt.Sprintf("wasm/batch=%d", wasmrt.DefaultMapBatch), 0, 0, func(b *testing.B) policy.Runtime { return load(b, wasmrt.Options{}) }},
		{"wasm/batch=100000", 0, 0, func(b *testing.B) policy.Runtime { return load(b, wasmrt.Options{MapBatch: n}) }},
		{"builtin/goroutines=2/batch=2000", 2, 2000, func(*testing.B) policy.Runtime { return builtin }},
		{"wasm/goroutines=2/batch=2000", 2, 2000, func(b *testing.B) policy.Runtime { return load(b, wasmrt.Options{Instances: 2}) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rt := bc.rt(b)
			for b.Loop() {
				runtimetest.MapEntries(b, rt, es, bc.goroutines, bc.batch)
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
			opts := wasmrt.Options{Name: "bench", Config: runtimetest.Config}
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

// BenchmarkReconcile100k reconciles the first sync of 100,000 users: a
// create each, with the test policy linked in and through the wasm runtime.
//
//	go test -run '^$' -bench Reconcile100k -benchtime 5x ./host/internal/wasmrt
func BenchmarkReconcile100k(b *testing.B) {
	const n = 100000
	req := sdk.ReconcileRequest{Domain: runtimetest.Domain, Changes: make([]sdk.Change, n)}
	for i := range req.Changes {
		req.Changes[i] = sdk.Change{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{
			DirID: fmt.Sprintf("%08x-4f89-11d3-9a0c-0305e82c3301", i), DN: fmt.Sprintf("CN=User %d,OU=People,DC=example,DC=com", i),
			Kind: sdk.KindUser, Primary: fmt.Sprintf("user%d@example.com", i), Aliases: []string{fmt.Sprintf("u%d@example.org", i)},
			DisplayName: fmt.Sprintf("User Number %d", i), Source: sdk.SourceLDAP, Groups: []string{"Sales"}}}
	}
	builtin := runtimetest.Builtin(b)
	for _, bc := range []struct {
		name string
		rt   func(b *testing.B) policy.Runtime
	}{
		{"builtin", func(*testing.B) policy.Runtime { return builtin }},
		{"wasm", func(b *testing.B) policy.Runtime { return load(b, wasmrt.Options{}) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rt := bc.rt(b)
			for b.Loop() {
				if _, err := rt.Reconcile(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
