// Package wasmrt serves a sync policy compiled to a WebAssembly reactor
// module (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared, exports from package
// sdk) in a wazero sandbox, as a policy.Runtime.
//
// The sandbox has WASI with nothing real behind it: no files, no network, no
// arguments, a fake clock that advances 1 ms per reading, sleeps that return
// at once and a deterministic random source. The Go runtime of the guest
// needs these imports; a policy needs none of them. The environment holds
// one variable, GOMEMLIMIT: the instance's memory limit less an eighth, so
// that the guest's Go runtime (and the sdk's collector schedule, see
// sdk/guest_wasip1.go) knows how far its heap may grow.
//
// A module is compiled once (optionally through wazero's on-disk cache).
// Calls run on a small pool of its instances (Options.Instances, by default
// min(2, GOMAXPROCS)), each configured with the policy's config and each
// with the memory limit, so a Runtime is safe for concurrent use. The first
// instance starts at Load, so that a module that cannot start or refuses
// its config fails to load; the others start when concurrent calls need
// them. A call takes an idle instance, or starts one, or waits for one as
// long as its context allows, and has it to itself; a Map of several
// batches runs them all on one instance. Each call has a deadline
// (Options.Timeout) from the moment it has an instance. A trap, a deadline,
// an exit, a panic or a reply that does not decode ends that instance only:
// the call fails, the other instances carry on, and a new instance
// (configured again) takes its place when one is needed. Close closes them
// all.
//
// The deadline has a price. Machine code cannot be preempted, so a guest
// can be stopped only by code in it that looks: wazero's
// WithCloseOnContextDone leaves the machine code for Go at every loop head
// to check, about 25 ns each time. Go's wasm code is loops all the way
// down (a function's body is a loop over its basic blocks, so every call
// and every taken branch passes a loop head), and that check took three
// quarters of a Go guest's time. So Load rewrites the module with package
// interrupt instead: a countdown step at every function start and loop
// head that leaves for Go once every interrupt.Every steps and traps if the
// call's flag is up; a call raises its instance's flag when its context
// ends. A module that package
// interrupt cannot rewrite falls back to wazero's check. The sdk's guest
// code also collects garbage between calls rather than during them
// (sdk/guest_wasip1.go). BenchmarkMap100k, 100,000 entries of 10
// attributes, on 2 cores:
//
//	                                        wazero's check  package interrupt
//	builtin (the policy linked in)          0.06 s          0.06 s
//	wasm, 1 goroutine, batches of 5,000     4.0 s           0.97 s
//	wasm, 1 goroutine, one batch            4.0 s           1.07 s
//	wasm, 2 goroutines, batches of 2,000    2.1 s           0.55 s
//
// Batches of 250 to 10,000 entries take within 10 % of the same time.
//
// Payloads are the syncpolicy.v1 protobuf messages, converted with package
// sdk/abi; see package sdk (guest_wasip1.go) for the guest half of the ABI.
package wasmrt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/wasmrt/interrupt"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"google.golang.org/protobuf/proto"
)

// DefaultMapBatch is the number of entries sent to the guest in one
// dirsync_map call when Options.MapBatch is 0.
const DefaultMapBatch = policy.DefaultMapBatch

// Options configure a loaded module.
type Options struct {
	// Name is the policy's name in the manifest; errors name it.
	Name string
	// CacheDir, when set, is a directory for wazero's compilation cache:
	// a module is compiled to machine code once and loaded from there
	// afterwards, also by later processes. The host runs that code, so the
	// directory must be its own: a missing one is created with mode 0700,
	// and one that another user owns or that group or others may write to
	// fails the load (package cachedir).
	CacheDir string
	// MemoryLimitMB caps the guest's memory (at most 4096; 0 means 4096,
	// the most a 32-bit guest can address).
	MemoryLimitMB uint32
	// Timeout bounds each call into the guest, and the instantiation and
	// configuration of an instance. A call that runs longer is stopped, its
	// instance discarded, and the call fails. It starts when the call has
	// an instance: waiting for a free one is bounded by the caller's
	// context alone. 0 means no limit beyond the caller's context.
	Timeout time.Duration
	// Config is the manifest's [policy.config] table, handed to the
	// policy's Configure; an error from it refuses the load.
	Config map[string]any
	// SHA256 optionally pins the module: the hex SHA-256 of the file. A
	// mismatch refuses the load.
	SHA256 string
	// MapBatch is how many entries one dirsync_map call carries; a larger
	// Map request is split and the intents joined, which bounds the guest's
	// memory whatever the directory's size (Map is pure per entry).
	// 0 means DefaultMapBatch.
	MapBatch int
	// Instances is how many instances of the module may run at once, each
	// with its own memory of up to MemoryLimitMB. Calls beyond that wait
	// for a free instance. 0 means min(2, GOMAXPROCS).
	Instances int
}

// defaultInstances is the pool size when Options.Instances is 0.
func defaultInstances() int { return min(2, runtime.GOMAXPROCS(0)) }

// Exports of ABI v1.
const (
	exportInitialize = "_initialize"
	exportVersion    = "dirsync_abi_version"
	exportAlloc      = "dirsync_alloc"
	exportFree       = "dirsync_free"
	exportInfo       = "dirsync_info"
	exportConfigure  = "dirsync_configure"
	exportFilter     = "dirsync_filter"
	exportMap        = "dirsync_map"
	exportReconcile  = "dirsync_reconcile"
)

var (
	i32, i64 = api.ValueTypeI32, api.ValueTypeI64
	// signatures of the exports, as (params, results).
	signatures = map[string][2][]api.ValueType{
		exportInitialize: {nil, nil},
		exportVersion:    {nil, {i64}},
		exportAlloc:      {{i32}, {i32}},
		exportFree:       {{i32}, nil},
		exportInfo:       {{i32, i32}, {i64}},
		exportConfigure:  {{i32, i32}, {i64}},
		exportFilter:     {{i32, i32}, {i64}},
		exportMap:        {{i32, i32}, {i64}},
		exportReconcile:  {{i32, i32}, {i64}},
	}
	// stageExports are checked once the ABI version is known to match.
	stageExports = []string{exportAlloc, exportFree, exportInfo, exportConfigure, exportFilter, exportMap, exportReconcile}
)

// module is a loaded policy module; it implements policy.Runtime.
type module struct {
	label string // `policy "name" (file.wasm)`, the prefix of every error
	opts  Options
	batch int // entries of one dirsync_map call
	rt    wazero.Runtime
	// interruptible: the module has the check of package interrupt, and a
	// call is stopped through it; otherwise wazero stops it (see Load).
	interruptible bool
	cache         wazero.CompilationCache
	compiled      wazero.CompiledModule
	config        []byte // the encoded ConfigureRequest
	memLimit      string // GOMEMLIMIT for the guest's Go runtime, in bytes
	info          sdk.Info

	// tokens holds one token per instance the pool may have; a call holds
	// one for as long as it uses an instance, so at most cap(tokens)
	// instances exist and each serves one call at a time.
	tokens chan struct{}
	done   chan struct{} // closed by Close: waiting calls give up
	// closing is cancelled by Close once it stops waiting for running
	// calls: it stops them.
	closing     context.Context
	stopClosing context.CancelFunc

	mu     sync.Mutex // guards idle and closed
	idle   []*instance
	closed bool
}

// instance is one instantiation of the module. It is used by one call at a
// time, which owns it between acquire and release.
type instance struct {
	mod  api.Module
	mem  api.Memory
	flag api.MutableGlobal // interrupt.Global, or nil
	// interrupted is set when the flag was raised: the call in progress
	// traps at its next loop head, and the instance is done for.
	interrupted atomic.Bool
	fns         map[string]api.Function
	stderr      *headWriter
	dead        bool // closed after a trap, a deadline, a panic or a bad reply
}

var _ policy.Runtime = (*module)(nil)

// Load compiles and instantiates the policy module at path, checks its ABI
// version, configures it with opts.Config and returns it as a Runtime.
// Every error names the module; a missing, corrupt or foreign file is a
// one-line error.
func Load(ctx context.Context, path string, opts Options) (policy.Runtime, error) {
	m := &module{label: policy.Label(opts.Name, path), opts: opts}
	m.closing, m.stopClosing = context.WithCancel(context.Background())
	if err := m.load(ctx, path); err != nil {
		m.stopClosing()
		m.closeAll(ctx)
		return nil, fmt.Errorf("%s: %w", m.label, err)
	}
	return m, nil
}

func (m *module) load(ctx context.Context, path string) error {
	code, err := os.ReadFile(path)
	if err != nil {
		return err // *PathError: "open /x/y.wasm: no such file or directory"
	}
	pin, err := policy.ParsePin(m.opts.SHA256)
	if err != nil {
		return err
	}
	if err := pin.Check(code, "refusing to load"); err != nil {
		return err
	}
	if err := m.applyOptions(); err != nil {
		return err
	}
	if err := m.compile(ctx, code); err != nil {
		return err
	}

	callCtx, cancel := m.deadline(ctx)
	defer cancel()
	inst, err := m.start(callCtx)
	if err != nil {
		return err
	}
	var reply pb.InfoReply
	if err := m.roundTrip(callCtx, inst, exportInfo, nil, into(&reply)); err != nil {
		return fmt.Errorf("info: %w", err)
	}
	m.info = abi.InfoFromProto(reply.GetResult())
	m.idle = append(m.idle, inst) // the first of the pool; the others start on demand
	return nil
}

// applyOptions checks the options and sets up what follows from them: the
// map batch, the pool's tokens, the guest's GOMEMLIMIT and the encoded
// config.
func (m *module) applyOptions() error {
	if m.opts.MemoryLimitMB > 4096 {
		return fmt.Errorf("memory limit %d MB is over the 4096 MB a 32-bit guest can address", m.opts.MemoryLimitMB)
	}
	var err error
	if m.batch, err = policy.MapBatch(m.opts.MapBatch); err != nil {
		return err
	}
	n := m.opts.Instances
	if n < 0 {
		return fmt.Errorf("instances %d is negative", n)
	}
	if n == 0 {
		n = defaultInstances()
	}
	m.tokens, m.done = make(chan struct{}, n), make(chan struct{})
	for range n {
		m.tokens <- struct{}{}
	}
	m.memLimit = strconv.FormatUint(goMemLimit(m.opts.MemoryLimitMB), 10)
	m.config, err = encodeConfig(m.opts.Config)
	return err
}

// compile makes the wazero runtime, with WASI, the memory limit and the
// compilation cache, and compiles and checks the module, rewritten by
// package interrupt when it can be.
func (m *module) compile(ctx context.Context, code []byte) error {
	// A call is stopped through the global that package interrupt adds;
	// a module it cannot instrument gets wazero's own, slower, check.
	cfg := wazero.NewRuntimeConfig()
	if instrumented, err := instrument(code); err == nil {
		code, m.interruptible = instrumented, true
	} else {
		cfg = cfg.WithCloseOnContextDone(true)
	}
	if m.opts.MemoryLimitMB > 0 {
		cfg = cfg.WithMemoryLimitPages(m.opts.MemoryLimitMB * 16) // 64 KiB pages
	}
	var err error
	if m.opts.CacheDir != "" {
		if m.cache, err = openCompilationCache(m.opts.CacheDir); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		cfg = cfg.WithCompilationCache(m.cache)
	}
	m.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		return fmt.Errorf("WASI: %w", err)
	}
	if m.compiled, err = m.rt.CompileModule(ctx, code); err != nil {
		msg := policy.FirstLine(err.Error())
		if m.opts.MemoryLimitMB > 0 && strings.HasPrefix(msg, "section memory:") && strings.Contains(msg, "over limit") {
			return fmt.Errorf("the memory limit of %d MB is less than the module needs to start (%s)", m.opts.MemoryLimitMB, msg)
		}
		return fmt.Errorf("not a valid WebAssembly module: %s", msg)
	}
	return checkModule(m.compiled)
}

// instrument is interrupt.Instrument; the tests turn it off.
var instrument = interrupt.Instrument

// goMemLimit is the soft memory limit handed to the guest's Go runtime
// (GOMEMLIMIT) for an instance memory limit of limitMB (0 means 4096): an
// eighth below it, so that the guest's collector works harder before
// memory.grow fails. The sdk's guest collects garbage between calls and,
// knowing this limit, during a call only when the heap nears it.
func goMemLimit(limitMB uint32) uint64 {
	if limitMB == 0 {
		limitMB = 4096
	}
	b := uint64(limitMB) << 20
	return b - b/8
}

// encodeConfig encodes the ConfigureRequest sent to every new instance.
func encodeConfig(config map[string]any) ([]byte, error) {
	req, err := policy.ConfigureRequest(config)
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

// checkModule checks what can be checked before running anything: it is a
// reactor, it exports an ABI version, and it imports nothing but WASI.
func checkModule(c wazero.CompiledModule) error {
	exports := c.ExportedFunctions()
	if _, ok := exports[exportInitialize]; !ok {
		if _, ok := exports["_start"]; ok {
			return errors.New("a command module, not a reactor: build it with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared")
		}
		return errors.New("not a reactor module: it exports no _initialize (build it with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared)")
	}
	if _, ok := exports[exportVersion]; !ok {
		return errors.New("not a dirsync policy module: it exports no " + exportVersion + " (does its main package import sdk and call sdk.Register?)")
	}
	for _, name := range []string{exportInitialize, exportVersion} {
		if err := checkSignature(exports, name); err != nil {
			return err
		}
	}
	for _, f := range c.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasi_snapshot_preview1.ModuleName {
			return fmt.Errorf("imports %s.%s, which the host does not provide (a policy may import only %s)", mod, name, wasi_snapshot_preview1.ModuleName)
		}
	}
	for _, mem := range c.ImportedMemories() {
		mod, name, _ := mem.Import()
		return fmt.Errorf("imports memory %s.%s, which the host does not provide", mod, name)
	}
	return nil
}

func checkSignature(exports map[string]api.FunctionDefinition, name string) error {
	f, ok := exports[name]
	if !ok {
		return fmt.Errorf("not a dirsync ABI v%d module: it exports no %s", sdk.ABIMajor, name)
	}
	want := signatures[name]
	if !equalTypes(f.ParamTypes(), want[0]) || !equalTypes(f.ResultTypes(), want[1]) {
		return fmt.Errorf("export %s has type %s, want %s", name,
			funcType(f.ParamTypes(), f.ResultTypes()), funcType(want[0], want[1]))
	}
	return nil
}

func equalTypes(a, b []api.ValueType) bool { return bytes.Equal(a, b) }

func funcType(params, results []api.ValueType) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return names(params) + " -> " + names(results)
}

// start instantiates the module, checks its ABI version and exports, and
// configures it.
func (m *module) start(ctx context.Context) (*instance, error) {
	inst := &instance{stderr: &headWriter{}}
	ctx = withMemoryAllocator(ctx)
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, wazero.NewModuleConfig().
		WithName("").         // anonymous: a new instance may replace a dead one
		WithStartFunctions(). // _initialize is called below, where it can be stopped
		WithEnv("GOMEMLIMIT", m.memLimit).
		WithStderr(inst.stderr))
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", m.trapError(ctx, err, inst))
	}
	inst.mod, inst.mem = mod, mod.Memory()
	fail := func(err error) (*instance, error) {
		_ = mod.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if inst.mem == nil {
		return fail(errors.New("the module exports no memory"))
	}
	if m.interruptible {
		flag, ok := mod.ExportedGlobal(interrupt.Global).(api.MutableGlobal)
		if !ok {
			return fail(errors.New("BUG: the instrumented module exports no mutable " + interrupt.Global))
		}
		inst.flag = flag
	}
	if err := ctx.Err(); err != nil {
		return fail(m.stopped(ctx))
	}
	stop := m.watch(ctx, inst)
	_, ierr := mod.ExportedFunction(exportInitialize).Call(ctx)
	var res []uint64
	if ierr == nil {
		res, err = mod.ExportedFunction(exportVersion).Call(ctx)
	}
	if stop() {
		return fail(m.stopped(ctx))
	}
	if ierr != nil {
		return fail(fmt.Errorf("instantiate: %s", m.trapMessage(ierr, inst)))
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %s", exportVersion, m.trapMessage(err, inst)))
	}
	if err := policy.CheckABI(abi.UnpackVersion(res[0])); err != nil {
		return fail(err)
	}
	exports := m.compiled.ExportedFunctions()
	inst.fns = make(map[string]api.Function, len(stageExports))
	for _, name := range stageExports {
		if err := checkSignature(exports, name); err != nil {
			return fail(err)
		}
		inst.fns[name] = mod.ExportedFunction(name)
	}
	var reply pb.ConfigureReply
	if err := m.roundTrip(ctx, inst, exportConfigure, m.config, into(&reply)); err != nil {
		return fail(fmt.Errorf("configure: %w", err))
	}
	return inst, nil
}

// watch interrupts inst's running call when ctx ends (its deadline, its
// cancellation, or Close). The returned stop ends the watch and reports
// whether it raised the flag: then inst is done for, even if the call got
// to its end.
func (m *module) watch(ctx context.Context, inst *instance) (stop func() (interrupted bool)) {
	if inst.flag == nil {
		return func() bool { return false } // wazero watches ctx itself (WithCloseOnContextDone)
	}
	after := context.AfterFunc(ctx, func() {
		inst.interrupted.Store(true)
		inst.flag.Set(1)
	})
	return func() bool { return !after() }
}

// withMemoryAllocator makes instantiations under ctx reserve their memory
// up front (see memory_linux.go).
func withMemoryAllocator(ctx context.Context) context.Context {
	if a := memoryAllocator(); a != nil {
		return experimental.WithMemoryAllocator(ctx, a)
	}
	return ctx
}

// deadline applies Options.Timeout to ctx.
func (m *module) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if m.opts.Timeout > 0 {
		return context.WithTimeout(ctx, m.opts.Timeout)
	}
	return context.WithCancel(ctx)
}

var errClosed = errors.New("the runtime is closed")

// use runs f on an instance of the pool, under the deadline of
// Options.Timeout (which starts once the call has an instance). It takes an
// idle instance, or starts a new one if the pool is not full, or waits for
// one, as long as ctx allows. An instance that f leaves dead is dropped;
// the next call that needs it starts a new one. Errors are wrapped with the
// label and stage: `policy "x" (x.wasm): map: …`; a flagged policy error
// stays reachable, so errors.As finds *sdk.FilterError and *abi.Error.
func (m *module) use(ctx context.Context, stage string, f func(context.Context, *instance) error) error {
	wrap := func(err error) error { return fmt.Errorf("%s: %s: %w", m.label, stage, err) }
	inst, err := m.acquire(ctx)
	if err != nil {
		return wrap(err)
	}
	defer func() { m.release(inst) }()
	ctx, cancel := m.deadline(ctx)
	defer cancel()
	defer context.AfterFunc(m.closing, cancel)()
	if inst == nil {
		if inst, err = m.start(ctx); err != nil {
			return wrap(fmt.Errorf("starting an instance: %w", err))
		}
	}
	if err := f(ctx, inst); err != nil {
		return wrap(err)
	}
	return nil
}

// acquire takes a token of the pool, waiting for one as long as ctx allows,
// and returns an idle instance, or nil if the caller is to start one. A
// free token is taken even when ctx is already done, so that the call
// fails the way a call that was stopped does.
func (m *module) acquire(ctx context.Context) (*instance, error) {
	select {
	case <-m.tokens:
	default:
		select {
		case <-m.tokens:
		case <-m.done:
			return nil, errClosed
		case <-ctx.Done():
			err := ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("stopped at the deadline while waiting for a free instance: %w", err)
			}
			return nil, fmt.Errorf("stopped while waiting for a free instance: %w", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		m.tokens <- struct{}{}
		return nil, errClosed
	}
	if n := len(m.idle); n > 0 {
		inst := m.idle[n-1]
		m.idle = m.idle[:n-1]
		return inst, nil
	}
	return nil, nil
}

func (m *module) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// release gives back the token of acquire and the instance the call used
// (nil if it never got one), which goes back to the pool unless it is dead
// or the runtime was closed meanwhile.
func (m *module) release(inst *instance) {
	m.mu.Lock()
	if inst != nil && !inst.dead {
		if m.closed {
			_ = inst.mod.Close(context.Background())
		} else {
			m.idle = append(m.idle, inst)
		}
	}
	m.mu.Unlock()
	m.tokens <- struct{}{}
}

// A decoder decodes a stage's reply envelope (InfoReply, …) and returns the
// error the policy flagged in it, if any. Its result must not alias b.
// abi.ErrNoOutcome says the reply has neither a result nor an error.
type decoder func(b []byte) (flagged *pb.Error, err error)

// envelope is a reply message of a stage export (InfoReply, …).
type envelope interface {
	proto.Message
	GetError() *pb.Error
}

// into decodes a reply into an envelope with proto.Unmarshal, which copies
// what it keeps.
func into(reply envelope) decoder {
	return func(b []byte) (*pb.Error, error) {
		if err := proto.Unmarshal(b, reply); err != nil {
			return nil, err
		}
		if !hasResult(reply) && reply.GetError() == nil {
			return nil, abi.ErrNoOutcome
		}
		return reply.GetError(), nil
	}
}

// deadInstance marks errors after which the instance must not be used.
type deadInstance struct{ err error }

func (e deadInstance) Error() string { return e.err.Error() }
func (e deadInstance) Unwrap() error { return e.err }

// roundTrip writes req into the guest, calls export, and decodes the reply
// with decode. An error flagged by the policy comes back converted by
// abi.ErrorFromProto. A panic the guest recovered, a trap, the deadline, or
// a reply that is out of bounds or does not decode also close inst and mark
// it dead, so that it leaves the pool.
func (m *module) roundTrip(ctx context.Context, inst *instance, export string, req []byte, decode decoder) error {
	if ctx.Err() != nil {
		return m.stopped(ctx) // before the call: the instance stays good
	}
	stop := m.watch(ctx, inst)
	err := m.exchange(ctx, inst, export, req, decode)
	var dead deadInstance
	if stop() && !errors.As(err, &dead) {
		// Interrupted as the call ended: its outcome stands, but the flag
		// is up for good.
		if err == nil {
			err = m.stopped(ctx)
		}
		err = deadInstance{err}
	}
	if errors.As(err, &dead) {
		inst.dead = true
		_ = inst.mod.Close(context.WithoutCancel(ctx))
		return dead.err
	}
	return err
}

func (m *module) exchange(ctx context.Context, inst *instance, export string, req []byte, decode decoder) error {
	inst.stderr.reset()
	dead := func(format string, args ...any) error { return deadInstance{fmt.Errorf(format, args...)} }
	if uint64(len(req)) > math.MaxUint32 {
		return fmt.Errorf("request of %d bytes is over the 4 GiB a guest can address", len(req))
	}
	var reqPtr uint32
	if len(req) > 0 {
		res, err := inst.fns[exportAlloc].Call(ctx, uint64(len(req)))
		if err != nil {
			return deadInstance{fmt.Errorf("%s(%d): %w", exportAlloc, len(req), m.trapError(ctx, err, inst))}
		}
		reqPtr = uint32(res[0])
		if !inst.mem.Write(reqPtr, req) {
			return dead("%s(%d) returned %#x, outside the guest's memory", exportAlloc, len(req), reqPtr)
		}
	}
	res, err := inst.fns[export].Call(ctx, uint64(reqPtr), uint64(len(req)))
	if err != nil {
		return deadInstance{m.trapError(ctx, err, inst)}
	}
	replyPtr, replyLen := uint32(res[0]>>32), uint32(res[0])
	b, ok := inst.mem.Read(replyPtr, replyLen)
	if !ok {
		return dead("reply (ptr %#x, len %d) is outside the guest's memory (%d bytes)", replyPtr, replyLen, inst.mem.Size())
	}
	// decode copies what it keeps, so b may change after this.
	flagged, derr := decode(b)
	for _, p := range []uint32{reqPtr, replyPtr} {
		if p == 0 {
			continue
		}
		if _, err := inst.fns[exportFree].Call(ctx, uint64(p)); err != nil {
			return deadInstance{fmt.Errorf("%s: %w", exportFree, m.trapError(ctx, err, inst))}
		}
	}
	switch {
	case errors.Is(derr, abi.ErrNoOutcome):
		return dead("reply has neither a result nor an error")
	case derr != nil:
		return dead("reply of %d bytes does not decode: %v", replyLen, derr)
	case flagged == nil:
		return nil
	case flagged.GetCode() == pb.ErrorCode_ERROR_CODE_PANIC:
		// The guest recovered, but the panic may have left the policy's
		// state half-changed: start afresh.
		return deadInstance{abi.ErrorFromProto(flagged)}
	}
	return abi.ErrorFromProto(flagged)
}

// hasResult reports whether an envelope's oneof holds a result.
func hasResult(reply envelope) bool {
	r := reply.ProtoReflect()
	od := r.Descriptor().Oneofs().ByName("outcome")
	return od != nil && r.WhichOneof(od) != nil
}

// trapError describes an error of a guest call under ctx: the deadline or
// the caller's cancellation (wrapping context.DeadlineExceeded or
// context.Canceled), Close, an exit, or a trap, with the first line the
// guest wrote to stderr during the call (the Go runtime's "panic: …" or
// "fatal error: …").
func (m *module) trapError(ctx context.Context, err error, inst *instance) error {
	stopped := inst.interrupted.Load() // the trap is the interrupt check's
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded, sys.ExitCodeContextCanceled:
			stopped = true
		case 0:
			stopped = m.isClosed() // Close closed the instance under the call
		}
	}
	if stopped {
		return m.stopped(ctx)
	}
	return errors.New(m.trapMessage(err, inst))
}

// stopped describes a call stopped because ctx ended or the runtime was
// closed.
func (m *module) stopped(ctx context.Context) error {
	switch {
	case m.isClosed():
		return fmt.Errorf("stopped: %w", errClosed)
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && m.opts.Timeout > 0:
		return fmt.Errorf("stopped after the timeout of %s: %w", m.opts.Timeout, context.DeadlineExceeded)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("stopped at the deadline: %w", context.DeadlineExceeded)
	default:
		return fmt.Errorf("stopped: %w", context.Canceled)
	}
}

func (m *module) trapMessage(err error, inst *instance) string {
	msg := policy.FirstLine(err.Error())
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		msg = fmt.Sprintf("the module exited with code %d", exit.ExitCode())
	}
	if out := inst.stderr.firstLine(); out != "" {
		if exit != nil {
			return msg + ": " + out
		}
		// The Go runtime ends a crash (a fatal error, a panic outside the
		// exports' recover) with a trap after printing why.
		return "crashed: " + out + " (" + msg + ")"
	}
	return msg
}

// headWriter keeps the start of what the guest writes to stderr during a
// call.
type headWriter struct{ buf []byte }

const headMax = 4096

func (w *headWriter) Write(p []byte) (int, error) {
	if room := headMax - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *headWriter) reset() { w.buf = w.buf[:0] }

// firstLine returns the first non-empty line written.
func (w *headWriter) firstLine() string {
	for _, line := range strings.Split(string(w.buf), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}

// ---- policy.Runtime ----

// Info returns the policy's Info, read once at load.
func (m *module) Info() sdk.Info { return policy.CopyInfo(m.info) }

// Filter runs the policy's Filter stage.
func (m *module) Filter(ctx context.Context, req sdk.FilterRequest) (sdk.FilterResponse, error) {
	var reply pb.FilterReply
	if err := m.run(ctx, "filter", exportFilter, abi.FilterRequestToProto(req), &reply); err != nil {
		return sdk.FilterResponse{}, err
	}
	return abi.FilterResponseFromProto(reply.GetResult()), nil
}

// Map runs the policy's Map stage, in batches of Options.MapBatch entries,
// all on one instance and under one deadline.
func (m *module) Map(ctx context.Context, req sdk.MapRequest) (sdk.MapResponse, error) {
	batch := m.batch
	enc := policy.NewMapEncoder(&req) // a batch's request is free again once the guest has it
	encode := func(start, end int) ([]byte, error) {
		b, err := enc.Encode(start, end)
		if err != nil {
			return nil, fmt.Errorf("%s: map: %w", m.label, err)
		}
		return b, nil
	}
	// The first batch is encoded before taking an instance, so that a bad
	// request fails without waiting, and the instance is not idle meanwhile.
	first, err := encode(0, min(batch, len(req.Entries)))
	if err != nil {
		return sdk.MapResponse{}, err
	}
	var out sdk.MapResponse
	var encErr error // an encoding error of a later batch: not the instance's
	err = m.use(ctx, "map", func(ctx context.Context, inst *instance) error {
		var err error
		out.Intents, err = policy.MapInBatches(req.Entries, batch, func(start, end int) ([]sdk.Intent, error) {
			b := first
			if start > 0 {
				if b, encErr = encode(start, end); encErr != nil {
					return nil, encErr
				}
			}
			var resp sdk.MapResponse
			decode := func(b []byte) (flagged *pb.Error, err error) {
				resp, flagged, err = abi.DecodeMapReply(b)
				return flagged, err
			}
			if err := m.roundTrip(ctx, inst, exportMap, b, decode); err != nil {
				return nil, err
			}
			return resp.Intents, nil
		})
		return err
	})
	if encErr != nil {
		return sdk.MapResponse{}, encErr
	}
	if err != nil {
		return sdk.MapResponse{}, err
	}
	return out, nil
}

// Reconcile runs the policy's Reconcile stage.
func (m *module) Reconcile(ctx context.Context, req sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	b, err := policy.EncodeReconcile(&req)
	if err != nil {
		return sdk.ReconcileResponse{}, fmt.Errorf("%s: %w", m.label, err)
	}
	var reply pb.ReconcileReply
	if err := m.use(ctx, "reconcile", func(ctx context.Context, inst *instance) error {
		return m.roundTrip(ctx, inst, exportReconcile, b, into(&reply))
	}); err != nil {
		return sdk.ReconcileResponse{}, err
	}
	return abi.ReconcileResponseFromProto(reply.GetResult()), nil
}

// run encodes req and calls a stage on an instance of the pool.
func (m *module) run(ctx context.Context, stage, export string, req proto.Message, reply envelope) error {
	b, err := marshal(stage, req)
	if err != nil {
		return fmt.Errorf("%s: %w", m.label, err)
	}
	return m.use(ctx, stage, func(ctx context.Context, inst *instance) error {
		return m.roundTrip(ctx, inst, export, b, into(reply))
	})
}

func marshal(stage string, req proto.Message) ([]byte, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		// In practice: a string that is not valid UTF-8.
		return nil, fmt.Errorf("%s: encoding the request: %w", stage, err)
	}
	return b, nil
}

// Trim closes the idle instances. A Go guest's linear memory never
// shrinks: after the Map calls of a full read each instance keeps the
// memory its largest batch needed (15–20 MB each at 100,000 entries) until
// it is closed. The next call starts a new one (a few milliseconds); calls
// running meanwhile keep theirs.
func (m *module) Trim() {
	m.mu.Lock()
	idle := m.idle
	m.idle = nil
	m.mu.Unlock()
	for _, inst := range idle {
		_ = inst.mod.Close(context.Background())
	}
}

// Close closes every instance and releases the compiled module. Calls
// after Close, and calls waiting for an instance, fail at once. Close waits
// for running calls to end, as long as ctx allows; then it closes their
// instances too, which stops them.
func (m *module) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	m.idle = nil // closed with the runtime
	m.mu.Unlock()
	// Wait for running calls as long as ctx allows; then stop the others
	// and wait for them to stop, at their next loop head: their memory
	// goes with the runtime.
	taken := 0
wait:
	for taken < cap(m.tokens) {
		select {
		case <-m.tokens:
			taken++
		case <-ctx.Done():
			break wait
		}
	}
	m.stopClosing()
	for ; taken < cap(m.tokens); taken++ {
		<-m.tokens
	}
	return m.closeAll(context.WithoutCancel(ctx))
}

func (m *module) closeAll(ctx context.Context) error {
	var errs []error
	if m.rt != nil {
		errs = append(errs, m.rt.Close(ctx)) // closes instances and compiled modules
	}
	if m.cache != nil {
		errs = append(errs, m.cache.Close(ctx))
	}
	return errors.Join(errs...)
}
