package interrupt

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// instantiate runs testdata/env.wasm as "env" and code on a runtime
// without wazero's own exit checks.
func instantiate(t testing.TB, code []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	if _, err := rt.InstantiateWithConfig(ctx, read(t, "env.wasm"), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	mod, err := rt.InstantiateWithConfig(ctx, code, wazero.NewModuleConfig().WithName("loops"))
	if err != nil {
		t.Fatal(err)
	}
	return mod
}

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func instrument(t testing.TB, code []byte) []byte {
	t.Helper()
	out, err := Instrument(code)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSameResults runs the functions of loops.wat before and after
// Instrument, with loops that pass the check several times.
func TestSameResults(t *testing.T) {
	code := read(t, "loops.wasm")
	plain, checked := instantiate(t, code), instantiate(t, instrument(t, code))
	for _, c := range []struct {
		fn   string
		args []uint64
		want uint64 // 0: whatever the plain module says
	}{
		{"sum", []uint64{0}, 5},
		{"sum", []uint64{3*Every + 7}, 5 + (3*Every+7)*(3*Every+8)/2},
		{"grid", []uint64{300, 500}, 150000},
		{"fold", []uint64{5}, 10},
		{"fib", []uint64{25}, 75025},
		{"mixed", []uint64{1}, 0},
		{"mixed", []uint64{2}, 0},
		{"mixed", []uint64{3}, 0},
		{"mixed", []uint64{20}, 0},
	} {
		want, err := plain.ExportedFunction(c.fn).Call(context.Background(), c.args...)
		if err != nil {
			t.Fatalf("%s%v before Instrument: %v", c.fn, c.args, err)
		}
		if c.want != 0 && want[0] != c.want {
			t.Fatalf("%s%v before Instrument = %d, want %d", c.fn, c.args, want[0], c.want)
		}
		got, err := checked.ExportedFunction(c.fn).Call(context.Background(), c.args...)
		if err != nil || got[0] != want[0] {
			t.Errorf("%s%v = %v, %v; want %d", c.fn, c.args, got, err, want[0])
		}
	}
	if v := checked.ExportedGlobal(Global).Get(); v != 0 {
		t.Errorf("%s = %d after the calls, want 0", Global, v)
	}
}

// TestInterrupt stops an endless loop and a recursion without loops by
// raising the flag, and collects garbage while they run: the guest must
// leave its machine code for Go now and then, or the collector's
// stop-the-world waits for it forever.
func TestInterrupt(t *testing.T) {
	for _, call := range []struct {
		fn   string
		args []uint64
	}{{"spin", nil}, {"fib", []uint64{60}}} {
		t.Run(call.fn, func(t *testing.T) { testInterrupt(t, call.fn, call.args...) })
	}
}

func testInterrupt(t *testing.T, fn string, args ...uint64) {
	mod := instantiate(t, instrument(t, read(t, "loops.wasm")))
	flag, ok := mod.ExportedGlobal(Global).(api.MutableGlobal)
	if !ok {
		t.Fatalf("%s is not an exported mutable global", Global)
	}
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction(fn).Call(context.Background(), args...)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	gc := make(chan struct{})
	go func() { runtime.GC(); close(gc) }()
	select {
	case <-gc:
	case <-time.After(10 * time.Second):
		t.Fatalf("a garbage collection did not end while %s ran", fn)
	}
	select {
	case err := <-done:
		t.Fatalf("%s returned before the flag was raised: %v", fn, err)
	default:
	}
	flag.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("%s = %v, want the trap of the check", fn, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s went on after the flag was raised", fn)
	}
}

// module assembles a binary from its sections (id, payload).
func module(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range sections {
		b = append(b, s[0], byte(len(s)-1))
		b = append(b, s[1:]...)
	}
	return b
}

var (
	typeSection = []byte{1, 1, 0x60, 0, 0} // () -> ()
	funcSection = []byte{3, 1, 0}          // one function of type 0
	memSection  = []byte{5, 1, 0, 1}       // one memory, min 1 page
)

func body(instrs ...byte) []byte {
	b := append([]byte{0}, instrs...) // no locals
	return append([]byte{10, 1, byte(len(b))}, b...)
}

func TestRefused(t *testing.T) {
	loops := read(t, "loops.wasm")
	for _, c := range []struct {
		name, want string
		code       []byte
	}{
		{"not wasm", "not a WebAssembly binary", []byte("hello, world")},
		{"version 2", "version 2", []byte("\x00asm\x02\x00\x00\x00")},
		{"cut", "section header", loops[:len(loops)-3]},
		{"unknown section", "unknown section id 14", module([]byte{14, 0})},
		{"no memory", "no memory", module(typeSection, funcSection, body(0x03, 0x40, 0x0b, 0x0b))},
		{"64-bit memory", "64-bit memory", module([]byte{5, 1, 0x04, 1})},
		{"unknown instruction", "unknown instruction 0xc5", module(typeSection, funcSection, memSection, body(0xc5, 0x0b))},
		{"unknown 0xfc instruction", "unknown instruction 0xfc 18", module(typeSection, funcSection, memSection, body(0xfc, 18, 0x0b))},
		{"no end", "no end", module(typeSection, funcSection, memSection, body(0x03, 0x40, 0x0b))},
		{"bytes after end", "after the final end", module(typeSection, funcSection, memSection, body(0x0b, 0x01))},
		{"reaches for the flag", "global index 0 at byte 3 is out of range (0 globals)", module(typeSection, funcSection, memSection, body(0x41, 0, 0x24, 0, 0x0b))},
		{"start section", "a start section", module(typeSection, funcSection, memSection, []byte{8, 1, 0}, body(0x0b))},
		{"exports the flag", "already exports", module(memSection, append([]byte{7, 1, byte(len(Global))}, append([]byte(Global), 0x02, 0)...))},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Instrument(c.code)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Instrument = %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestStepPoints walks instruction sequences that the wasm tests do not
// run (exception handling, tail calls, threads) and checks where the steps
// go: at the start of the body and of every loop's body.
func TestStepPoints(t *testing.T) {
	for _, c := range []struct {
		name string
		code []byte // a function body without its size
		want []int
	}{
		{"empty", []byte{0, 0x0b}, []int{1}},
		{"loop", []byte{0, 0x03, 0x40, 0x0b, 0x0b}, []int{1, 3}},
		{"locals and typed loop", []byte{1, 2, 0x7f, 0x03, 0x7f, 0x41, 0, 0x0b, 0x1a, 0x0b}, []int{3, 5}},
		{"loop of a type index", []byte{0, 0x03, 0x81, 0x01, 0x0b, 0x0b}, []int{1, 4}},
		{"i64.const of 10 bytes", []byte{0, 0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f, 0x1a, 0x03, 0x40, 0x0b, 0x0b}, []int{1, 15}},
		{"try_table", []byte{0, 0x1f, 0x40, 2, 0x00, 0, 0, 0x02, 1, 0x03, 0x40, 0x0b, 0x0b, 0x0b}, []int{1, 11}},
		{"legacy try, catch, delegate", []byte{0, 0x06, 0x40, 0x03, 0x40, 0x0b, 0x07, 0, 0x19, 0x0b, 0x06, 0x40, 0x18, 0, 0x0b}, []int{1, 5}},
		{"tail calls", []byte{0, 0x03, 0x40, 0x12, 0, 0x13, 0, 0, 0x0b, 0x0b}, []int{1, 3}},
		{"atomics", []byte{0, 0xfe, 0x03, 0, 0xfe, 0x10, 2, 0, 0x1a, 0x03, 0x40, 0x0b, 0x0b}, []int{1, 11}},
		{"multi-memory memarg", []byte{0, 0x28, 0x42, 1, 8, 0x1a, 0x03, 0x40, 0x0b, 0x0b}, []int{1, 8}},
		{"simd lanes", []byte{0, 0xfd, 0x54, 0, 0, 3, 0xfd, 21, 7, 0x03, 0x40, 0x0b, 0x0b}, []int{1, 11}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := stepPoints(c.code, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("loop bodies at %v, want %v", got, c.want)
			}
		})
	}
}

// FuzzInstrument: Instrument never panics, and what it makes of a module
// that wazero compiles, wazero compiles too.
func FuzzInstrument(f *testing.F) {
	f.Add(read(f, "loops.wasm"))
	f.Add(module(typeSection, funcSection, memSection, body(0x03, 0x40, 0x0c, 0, 0x0b, 0x0b)))
	f.Add(module(memSection))
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, code []byte) {
		out, err := Instrument(code)
		if err != nil {
			return
		}
		if bytes.Equal(out, code) {
			t.Fatal("Instrument returned the module unchanged")
		}
		if c, err := rt.CompileModule(ctx, code); err == nil {
			c.Close(ctx)
			c, err := rt.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("the module compiles, but not once instrumented: %v", err)
			}
			c.Close(ctx)
		}
	})
}
