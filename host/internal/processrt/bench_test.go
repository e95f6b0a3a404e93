package processrt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/processrt"
	"github.com/dirsync/dirsync/host/internal/testpolicy/runtimetest"
)

// BenchmarkMap100k maps 100,000 entries of 10 attributes each (the wasmrt
// benchmark's entries and policy) with the policy linked in (builtin) and
// through the process runtime: as the host calls it, in Map calls of 2,000
// entries from 1 and from 2 goroutines, and in one Map call (which the
// runtime splits into batches of DefaultMapBatch).
//
//	go test -run '^$' -bench Map100k -benchtime 5x ./host/internal/processrt
func BenchmarkMap100k(b *testing.B) {
	const n = 100000
	es := runtimetest.Entries(n)
	builtin := runtimetest.Builtin(b)
	process := func(b *testing.B) policy.Runtime { return load(b, processrt.Options{}) }
	for _, bc := range []struct {
		name       string
		goroutines int // 0: one Map call of all entries; else Map calls of batch entries
		batch      int
		rt         func(b *testing.B) policy.Runtime
	}{
		{"builtin/goroutines=1/batch=2000", 1, 2000, func(*testing.B) policy.Runtime { return builtin }},
		{"process/goroutines=1/batch=2000", 1, 2000, process},
		{"builtin/goroutines=2/batch=2000", 2, 2000, func(*testing.B) policy.Runtime { return builtin }},
		{"process/goroutines=2/batch=2000", 2, 2000, process},
		{fmt.Sprintf("process/one call/batch=%d", processrt.DefaultMapBatch), 0, 0, process},
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

// BenchmarkStart loads the test policy: start the process, handshake,
// Info, Configure; and Close.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		rt, err := processrt.Load(context.Background(), testPlugin, processrt.Options{Name: "bench", Config: runtimetest.Config})
		if err != nil {
			b.Fatal(err)
		}
		rt.Close(context.Background())
	}
}
