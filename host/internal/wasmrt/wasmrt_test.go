package wasmrt_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/testpolicy/runtimetest"
	"github.com/dirsync/dirsync/host/internal/wasmrt"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/protobuf/proto"
)

// policyWasm is host/internal/testpolicy built as a reactor module by TestMain,
// once for all tests of the package, and cacheDir the compilation cache
// the tests share.
var policyWasm, cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmrt-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	policyWasm, cacheDir = filepath.Join(dir, "testpolicy.wasm"), filepath.Join(dir, "cache")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", policyWasm, "../testpolicy/cmd")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test policy: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func load(t testing.TB, opts wasmrt.Options) policy.Runtime {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test"
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	if opts.Config == nil {
		opts.Config = runtimetest.Config
	}
	if opts.CacheDir == "" {
		opts.CacheDir = cacheDir
	}
	rt, err := wasmrt.Load(context.Background(), policyWasm, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func TestInfo(t *testing.T) {
	runtimetest.CheckInfo(t, load(t, wasmrt.Options{}))
}

func TestFilter(t *testing.T) {
	runtimetest.CheckFilter(t, load(t, wasmrt.Options{}), `policy "test" (testpolicy.wasm)`)
}

func TestMap(t *testing.T) {
	runtimetest.CheckMap(t, "wasm", wasmrt.DefaultMapBatch, func(t *testing.T, batch int) policy.Runtime {
		return load(t, wasmrt.Options{MapBatch: batch})
	})
}

func TestReconcile(t *testing.T) {
	runtimetest.CheckReconcile(t, "wasm", load(t, wasmrt.Options{}))
}

// TestFailures makes the guest fail in each way it can, and checks that
// the call fails with a clear error and that the next call works; once
// with the interrupt check, once with wazero's.
func TestFailures(t *testing.T) {
	t.Run("interrupt", testFailures)
	t.Run("wazero check", func(t *testing.T) {
		defer wasmrt.WithoutInterrupt()()
		testFailures(t)
	})
}

func testFailures(t *testing.T) {
	const timeout = 2 * time.Second
	rt := load(t, wasmrt.Options{Timeout: timeout, MemoryLimitMB: 128})
	ctx := context.Background()
	filter := func(ctx context.Context, f string) error {
		_, err := rt.Filter(ctx, sdk.FilterRequest{Filter: f})
		return err
	}
	mapEntry := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rt.Map(ctx, sdk.MapRequest{Domain: runtimetest.Domain, Entries: []sdk.Entry{{ID: "fine"}, {ID: id, DN: "CN=" + id}}})
			return err
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		name  string
		call  func(context.Context) error
		ctx   context.Context
		want  string
		is    error
		as    any
		limit time.Duration // the call must end within this
	}{
		{name: "policy error", call: mapEntry("error"), want: `policy "test" (testpolicy.wasm): map: entry error: cannot map CN=error`, as: new(*abi.Error)},
		{name: "panic", call: func(ctx context.Context) error { return filter(ctx, "(panic=yes)") },
			want: `policy "test" (testpolicy.wasm): filter: policy panicked: filter panic (at `, as: new(*abi.Error)},
		{name: "runtime error panic", call: mapEntry("panic"), want: "map: policy panicked: assignment to entry in nil map (at "},
		{name: "deadline", call: func(ctx context.Context) error { return filter(ctx, "(loop=forever)") },
			want: "filter: stopped after the timeout of 2s", is: context.DeadlineExceeded, limit: timeout + 30*time.Second},
		{name: "caller's deadline", call: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			return filter(ctx, "(loop=forever)")
		}, want: "filter: stopped after the timeout of 2s", is: context.DeadlineExceeded, limit: timeout + 30*time.Second},
		{name: "canceled", ctx: canceled, call: func(ctx context.Context) error { return filter(ctx, "(cn=x)") },
			want: "stopped: context canceled", is: context.Canceled},
		{name: "exit", call: func(ctx context.Context) error { return filter(ctx, "(exit=3)") },
			want: "filter: the module exited with code 3"},
		{name: "out of memory", call: func(ctx context.Context) error { return filter(ctx, "(oom=yes)") },
			want: "filter: crashed: runtime: out of memory: cannot allocate"},
		{name: "crash in a goroutine", call: func(ctx context.Context) error { return filter(ctx, "(goroutine-panic=yes)") },
			want: "filter: crashed: panic: in a goroutine (wasm error: unreachable)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			callCtx := ctx
			if tc.ctx != nil {
				callCtx = tc.ctx
			}
			start := time.Now()
			err := tc.call(callCtx)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q has more than one line", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if tc.as != nil && !errors.As(err, tc.as) {
				t.Errorf("error %v is not a %T", err, tc.as)
			}
			if tc.limit > 0 && elapsed > tc.limit {
				t.Errorf("the call took %s", elapsed)
			}
			// The runtime recovers: the next call works.
			if got, err := rt.Filter(ctx, sdk.FilterRequest{Filter: "(cn=ok)"}); err != nil || got.Filter != "(cn=ok)" {
				t.Errorf("the next call gave %+v, %v", got, err)
			}
			if got, err := rt.Map(ctx, sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(3)}); err != nil || len(got.Intents) != 3 {
				t.Errorf("the next Map gave %+v, %v", got, err)
			}
		})
	}
}

func TestInvalidUTF8(t *testing.T) {
	rt := load(t, wasmrt.Options{})
	es := runtimetest.Entries(3)
	es[2].Attributes["displayname"] = []string{"ok", "Caf\xe9"}
	_, err := rt.Map(context.Background(), sdk.MapRequest{Domain: runtimetest.Domain, Entries: es})
	want := `policy "test" (testpolicy.wasm): map: value 1 of attribute "displayname" of entry "CN=User 2,OU=People,DC=example,DC=com" is not valid UTF-8`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want it to start with %s", err, want)
	}
	if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(cn=\xff)"}); err == nil || !strings.Contains(err.Error(), "filter: encoding the request: ") {
		t.Errorf("Filter error %v", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	rt := load(t, wasmrt.Options{})
	req := sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(200)}
	want, err := runtimetest.Direct(t).Map(req)
	if err != nil {
		t.Fatal(err)
	}
	want = runtimetest.NormMap(want)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				got, err := rt.Map(context.Background(), req)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("concurrent Map: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestConcurrentBatches maps different batches from several goroutines at
// once, more than the pool has instances, and checks that each gets what a
// sequential call gets.
func TestConcurrentBatches(t *testing.T) {
	rt := load(t, wasmrt.Options{Instances: 3})
	es := runtimetest.Entries(1200)
	const batch = 100
	want := make([]sdk.MapResponse, len(es)/batch)
	for i := range want {
		var err error
		if want[i], err = rt.Map(context.Background(), sdk.MapRequest{Domain: runtimetest.Domain, Entries: es[i*batch : (i+1)*batch]}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for round := range 3 {
				for i := range want {
					i := (i + g + round) % len(want) // goroutines start at different batches
					got, err := rt.Map(context.Background(), sdk.MapRequest{Domain: runtimetest.Domain, Entries: es[i*batch : (i+1)*batch]})
					if err != nil {
						t.Error(err)
						return
					}
					if !reflect.DeepEqual(got, want[i]) {
						t.Errorf("goroutine %d, batch %d: concurrent Map differs from sequential", g, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestDeadlineInOneCall stops a call at its deadline while other
// goroutines keep mapping: only that call fails, and only its instance is
// replaced.
func TestDeadlineInOneCall(t *testing.T) {
	rt := load(t, wasmrt.Options{Instances: 2})
	req := sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(300)}
	want, err := rt.Map(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mapped atomic.Int64
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := rt.Map(context.Background(), req)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("Map beside the stopped call: %v", err)
					return
				}
				mapped.Add(1)
			}
		})
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := rt.Filter(ctx, sdk.FilterRequest{Filter: "(loop=forever)"})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("looping Filter: %v, want the deadline", err)
		}
	}
	close(stop)
	wg.Wait()
	if mapped.Load() == 0 {
		t.Error("no Map ran beside the looping calls")
	}
	if got, err := rt.Map(context.Background(), req); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Map afterwards: %v", err)
	}
}

// TestWaitForInstance checks that a call waits for a busy pool only as long
// as its context allows.
func TestWaitForInstance(t *testing.T) {
	rt := load(t, wasmrt.Options{Instances: 1, Timeout: 2 * time.Second})
	busy := make(chan error)
	go func() {
		_, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(loop=forever)"})
		busy <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it take the instance
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := rt.Filter(ctx, sdk.FilterRequest{Filter: "(a=b)"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a free instance") {
		t.Errorf("call on a busy pool: %v", err)
	}
	if err := <-busy; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("looping call: %v", err)
	}
	if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(a=b)"}); err != nil {
		t.Errorf("call after the pool is free: %v", err)
	}
}

// TestReplyBuffers runs calls with replies of very different sizes on one
// instance, which reuses reply buffers.
func TestReplyBuffers(t *testing.T) {
	rt := load(t, wasmrt.Options{Instances: 1})
	p := runtimetest.Direct(t)
	for _, n := range []int{2000, 0, 3, 2000, 1, 500} {
		req := sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(n)}
		got, err := rt.Map(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want, err := p.Map(req)
		if err != nil {
			t.Fatal(err)
		}
		if want = runtimetest.NormMap(want); !reflect.DeepEqual(got, want) {
			t.Errorf("Map of %d entries differs", n)
		}
		if got, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(cn=x)"}); err != nil || got.Filter != "(cn=x)" {
			t.Errorf("Filter after a Map of %d: %+v, %v", n, got, err)
		}
	}
}

// TestGarbageBetweenCalls makes many calls on an instance whose memory
// limit is a fraction of what they allocate together: the guest must
// collect between calls.
func TestGarbageBetweenCalls(t *testing.T) {
	rt := load(t, wasmrt.Options{Instances: 1, MemoryLimitMB: 64})
	req := sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(2000)}
	for i := range 40 { // about 180 MB in all
		if _, err := rt.Map(context.Background(), req); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// TestTrim: Trim closes the idle instances (their grown memory goes with
// them) and leaves a running call alone; the next calls start new
// instances and map as before.
func TestTrim(t *testing.T) {
	rt := load(t, wasmrt.Options{Instances: 2})
	req := sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(2000)}
	want, err := rt.Map(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// Two calls at once start the pool's second instance (tried again
	// when one ended before the other began).
	for try := 0; wasmrt.Idle(rt) < 2; try++ {
		if try == 20 {
			t.Fatalf("%d idle instances after two calls at once, 20 times; want 2", wasmrt.Idle(rt))
		}
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if _, err := rt.Map(context.Background(), req); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	rt.(policy.Trimmer).Trim()
	if n := wasmrt.Idle(rt); n != 0 {
		t.Fatalf("%d idle instances after Trim, want 0", n)
	}
	// A call running during a Trim keeps its instance.
	done := make(chan error)
	go func() {
		got, err := rt.Map(context.Background(), req)
		if err == nil && !reflect.DeepEqual(got, want) {
			err = errors.New("a Map running during Trim differs")
		}
		done <- err
	}()
	for range 20 {
		rt.(policy.Trimmer).Trim()
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := rt.Map(context.Background(), req)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Map after Trim: %v", err)
	}
	if n := wasmrt.Idle(rt); n != 1 {
		t.Errorf("%d idle instances after a call, want 1", n)
	}
}

func TestCompilationCache(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		rt := load(t, wasmrt.Options{CacheDir: dir})
		if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(a=b)"}); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	if len(files) == 0 {
		t.Errorf("nothing cached in %s", dir)
	}
}

func TestClose(t *testing.T) {
	rt := load(t, wasmrt.Options{Instances: 2})
	// Two calls at once start the pool's second instance.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := rt.Map(context.Background(), sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(500)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(a=b)"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Filter after Close: %v", err)
	}
}

// TestCloseDuringCall closes the runtime while a call runs and another
// waits: the waiting call fails at once, and Close stops the running one
// when its context ends.
func TestCloseDuringCall(t *testing.T) {
	rt := load(t, wasmrt.Options{Instances: 1})
	running, waiting := make(chan error), make(chan error)
	go func() {
		_, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(loop=forever)"})
		running <- err
	}()
	time.Sleep(100 * time.Millisecond)
	go func() {
		_, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(a=b)"})
		waiting <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := rt.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Close took %s", took)
	}
	if err := <-waiting; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("waiting call: %v", err)
	}
	if err := <-running; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("running call: %v", err)
	}
}

func TestSHA256Pin(t *testing.T) {
	b, err := os.ReadFile(policyWasm)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	pin := hex.EncodeToString(sum[:])
	for _, p := range []string{pin, strings.ToUpper(pin), "sha256:" + pin} {
		load(t, wasmrt.Options{SHA256: p})
	}
}

// ---- load errors ----

// writeFile writes b to a file named name in a temporary directory.
func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadErrors(t *testing.T) {
	real, err := os.ReadFile(policyWasm)
	if err != nil {
		t.Fatal(err)
	}
	ver := func(major, minor int64) wfunc {
		return wfunc{name: "dirsync_abi_version", results: []byte{i64}, body: i64const(major<<32 | minor)}
	}
	init := wfunc{name: "_initialize"}
	for _, tc := range []struct {
		name string
		file []byte // nil: no such file
		opts wasmrt.Options
		want string
	}{
		{"missing file", nil, wasmrt.Options{}, "no such file or directory"},
		{"not wasm", []byte("this is not WebAssembly\n"), wasmrt.Options{}, `policy "p" (p.wasm): not a valid WebAssembly module: `},
		{"empty file", []byte{}, wasmrt.Options{}, "not a valid WebAssembly module"},
		{"truncated", real[:len(real)/2], wasmrt.Options{}, "not a valid WebAssembly module"},
		{"empty module", wasmModule(nil, nil), wasmrt.Options{}, "not a reactor module: it exports no _initialize"},
		{"command module", wasmModule([]wfunc{{name: "_start"}}, nil), wasmrt.Options{}, "a command module, not a reactor"},
		{"no ABI version", wasmModule([]wfunc{init}, nil), wasmrt.Options{}, "not a dirsync policy module: it exports no dirsync_abi_version"},
		{"ABI version of the wrong type", wasmModule([]wfunc{init, {name: "dirsync_abi_version", results: []byte{i32}, body: i32const(1)}}, nil),
			wasmrt.Options{}, "export dirsync_abi_version has type () -> (i32), want () -> (i64)"},
		{"other ABI major", wasmModule([]wfunc{init, ver(2, 0)}, nil), wasmrt.Options{},
			fmt.Sprintf("ABI version 2.0 is not supported by this host (ABI %d.%d): rebuild the policy with a matching dirsync sdk", sdk.ABIMajor, sdk.ABIMinor)},
		{"same major, no stages", wasmModule([]wfunc{init, ver(1, 3)}, nil), wasmrt.Options{}, "it exports no dirsync_alloc"},
		{"foreign import", wasmModule([]wfunc{init, ver(1, 0)}, nil, "env", "now"), wasmrt.Options{},
			"imports env.now, which the host does not provide"},
		{"initialize traps", wasmModule([]wfunc{{name: "_initialize", body: []byte{opUnreachable}}, ver(1, 0)}, nil), wasmrt.Options{},
			"instantiate: "},
		{"start function loops", withStart(wasmModule([]wfunc{init, ver(1, 0), {name: "spin", body: []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}}}, nil), 2),
			wasmrt.Options{Timeout: 100 * time.Millisecond}, "instantiate: stopped after the timeout of 100ms"},
		{"sha256 mismatch", real, wasmrt.Options{SHA256: strings.Repeat("ab", 32)}, "sha256 mismatch: the file has "},
		{"configure error", real, wasmrt.Options{Config: map[string]any{"fail": "nested_groups must be a boolean"}},
			`policy "p" (p.wasm): configure: nested_groups must be a boolean`},
		{"config not encodable", real, wasmrt.Options{Config: map[string]any{"f": func() {}}}, `config: config key "f": unsupported value type func()`},
		{"memory limit too high", real, wasmrt.Options{MemoryLimitMB: 5000}, "memory limit 5000 MB is over the 4096 MB"},
		{"memory limit too low", real, wasmrt.Options{MemoryLimitMB: 1}, "the memory limit of 1 MB is less than the module needs to start (section memory: min "},
		{"negative batch", real, wasmrt.Options{MapBatch: -1}, "map batch -1 is negative"},
		{"negative instances", real, wasmrt.Options{Instances: -1}, "instances -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.wasm")
			if tc.file != nil {
				path = writeFile(t, "p.wasm", tc.file)
			}
			tc.opts.Name = "p"
			rt, err := wasmrt.Load(context.Background(), path, tc.opts)
			if err == nil {
				rt.Close(context.Background())
				t.Fatal("loaded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), `policy "p" (p.wasm): `) {
				t.Errorf("error %q, want it to start with the module and contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q has more than one line", err)
			}
		})
	}
}

// ---- garbage from a guest ----

// fakeGuest builds a module that speaks ABI 1.x with canned replies: each
// stage returns packed, a ptr<<32|len into its data (placed at dataAt).
type fakeGuest struct {
	minor                         int64
	alloc                         int32
	info, configure, filter, mapr int64
	trapFilter                    bool
}

const dataAt = 1024

func (g fakeGuest) build(data []byte) []byte {
	stage := func(name string, packed int64) wfunc {
		return wfunc{name: name, params: []byte{i32, i32}, results: []byte{i64}, body: i64const(packed)}
	}
	filter := stage("dirsync_filter", g.filter)
	if g.trapFilter {
		filter.body = []byte{opUnreachable}
	}
	return wasmModule([]wfunc{
		{name: "_initialize"},
		{name: "dirsync_abi_version", results: []byte{i64}, body: i64const(1<<32 | g.minor)},
		{name: "dirsync_alloc", params: []byte{i32}, results: []byte{i32}, body: i32const(g.alloc)},
		{name: "dirsync_free", params: []byte{i32}},
		stage("dirsync_info", g.info),
		stage("dirsync_configure", g.configure),
		filter,
		stage("dirsync_map", g.mapr),
		stage("dirsync_reconcile", 0),
	}, data)
}

func packed(off, n int) int64 { return int64(dataAt+off)<<32 | int64(n) }

func TestGarbageReplies(t *testing.T) {
	okConfigure, _ := proto.Marshal(&pb.ConfigureReply{Outcome: &pb.ConfigureReply_Result{Result: &pb.ConfigureResponse{}}})
	okInfo, _ := proto.Marshal(&pb.InfoReply{Outcome: &pb.InfoReply_Result{Result: &pb.Info{Name: "fake", AbiMajor: 1, AbiMinor: 9}}})
	garbage := []byte{0xff, 0xff, 0xff}
	// data: [okConfigure][okInfo][garbage]
	data := append(append(append([]byte{}, okConfigure...), okInfo...), garbage...)
	cfgAt, infoAt, garbageAt := packed(0, len(okConfigure)), packed(len(okConfigure), len(okInfo)), packed(len(okConfigure)+len(okInfo), len(garbage))
	good := fakeGuest{minor: 9, alloc: 64, configure: cfgAt, info: infoAt, filter: garbageAt, mapr: 1<<32 | 0}

	for _, tc := range []struct {
		name     string
		guest    fakeGuest
		loadErr  string
		filter   string // error of a Filter call
		mapError string // error of a Map call
	}{
		{name: "newer minor version loads", guest: good,
			filter:   `policy "fake" (p.wasm): filter: reply of 3 bytes does not decode`,
			mapError: "map: reply has neither a result nor an error"},
		{name: "reply out of bounds", guest: fakeGuest{configure: 0x7fff0000<<32 | 16}, loadErr: "configure: reply (ptr 0x7fff0000, len 16) is outside the guest's memory"},
		{name: "reply runs past the end", guest: fakeGuest{configure: 65530<<32 | 100}, loadErr: "configure: reply (ptr 0xfffa, len 100) is outside"},
		{name: "garbage info", guest: fakeGuest{configure: cfgAt, info: garbageAt}, loadErr: "info: reply of 3 bytes does not decode"},
		{name: "alloc out of bounds", guest: func() fakeGuest { g := good; g.alloc = -16; return g }(),
			filter: "filter: dirsync_alloc(7) returned 0xfffffff0, outside the guest's memory"},
		{name: "trap", guest: func() fakeGuest { g := good; g.trapFilter = true; return g }(),
			filter: "filter: wasm error: unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "p.wasm", tc.guest.build(data))
			rt, err := wasmrt.Load(context.Background(), path, wasmrt.Options{Name: "fake"})
			if tc.loadErr != "" {
				if err == nil {
					rt.Close(context.Background())
					t.Fatal("loaded")
				}
				if !strings.Contains(err.Error(), tc.loadErr) {
					t.Errorf("Load error %q, want it to contain %q", err, tc.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close(context.Background())
			if got := rt.Info(); got.Name != "fake" || got.ABIMinor != 9 {
				t.Errorf("Info() = %+v", got)
			}
			for range 2 { // the second call runs on a new instance
				if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(a=b)"}); err == nil || !strings.Contains(err.Error(), tc.filter) {
					t.Errorf("Filter error %v, want it to contain %q", err, tc.filter)
				}
			}
			if tc.mapError != "" {
				if _, err := rt.Map(context.Background(), sdk.MapRequest{}); err == nil || !strings.Contains(err.Error(), tc.mapError) {
					t.Errorf("Map error %v, want it to contain %q", err, tc.mapError)
				}
			}
		})
	}
}

// ---- a tiny WebAssembly encoder, for modules the Go toolchain won't make ----

const (
	i32           = 0x7f
	i64           = 0x7e
	opUnreachable = 0x00
)

// wfunc is an exported function whose body (without the final end) ignores
// its parameters.
type wfunc struct {
	name            string
	params, results []byte
	body            []byte
}

func i32const(v int32) []byte { return append([]byte{0x41}, sleb(int64(v))...) }
func i64const(v int64) []byte { return append([]byte{0x42}, sleb(v)...) }

func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func vec(items ...[]byte) []byte {
	b := uleb(uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func name(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func section(id byte, body []byte) []byte {
	return append(append([]byte{id}, uleb(uint64(len(body)))...), body...)
}

// wasmModule encodes a module with one page of memory (exported as
// "memory"), data at dataAt, the given functions, and an import of type
// () -> () for each (module, name) pair in imports.
func wasmModule(funcs []wfunc, data []byte, imports ...string) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	var types, fidx, exports, codes, imps [][]byte
	types = append(types, []byte{0x60, 0, 0}) // type 0: () -> (), for imports
	for i := 0; i+1 < len(imports); i += 2 {
		imps = append(imps, append(append(name(imports[i]), name(imports[i+1])...), 0x00, 0x00))
	}
	for i, f := range funcs {
		t := append([]byte{0x60}, vec(bytesOf(f.params)...)...)
		t = append(t, vec(bytesOf(f.results)...)...)
		types = append(types, t)
		fidx = append(fidx, uleb(uint64(i+1)))
		exports = append(exports, append(append(name(f.name), 0x00), uleb(uint64(len(imps)+i))...))
		body := append([]byte{0x00}, f.body...) // no locals
		body = append(body, 0x0b)
		codes = append(codes, append(uleb(uint64(len(body))), body...))
	}
	exports = append(exports, append(name("memory"), 0x02, 0x00))
	m = append(m, section(1, vec(types...))...)
	if len(imps) > 0 {
		m = append(m, section(2, vec(imps...))...)
	}
	m = append(m, section(3, vec(fidx...))...)
	m = append(m, section(5, vec([]byte{0x00, 0x01}))...) // one memory, min 1 page
	m = append(m, section(7, vec(exports...))...)
	m = append(m, section(10, vec(codes...))...)
	if len(data) > 0 {
		seg := append([]byte{0x00}, i32const(dataAt)...)
		seg = append(seg, 0x0b)
		seg = append(seg, append(uleb(uint64(len(data))), data...)...)
		m = append(m, section(11, vec(seg))...)
	}
	return m
}

// withStart gives module m a start section that calls function fn.
func withStart(m []byte, fn uint64) []byte {
	for i := 8; i < len(m); {
		id := m[i]
		size, n := binary.Uvarint(m[i+1:])
		if id == 10 { // the start section goes before the code section
			return slices.Concat(m[:i], section(8, uleb(fn)), m[i:])
		}
		i += 1 + n + int(size)
	}
	panic("no code section")
}

func bytesOf(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}
