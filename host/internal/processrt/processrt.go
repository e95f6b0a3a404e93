// Package processrt serves a sync policy built as a native plugin program
// (a main package that calls sdk.Register and sdk.Main, built with a plain
// go build) as a policy.Runtime: the host starts the program and calls its
// stages over gRPC with hashicorp/go-plugin.
//
// The service is syncpolicy.v1.SyncPolicy, the protobuf messages are those
// of the wasm ABI (converted with package sdk/abi), and a stage's error
// comes back as the gRPC status with the syncpolicy.v1.Error a wasm reply
// carries as its one detail, so an invalid filter is a *sdk.FilterError with
// its position here as in every runtime. The plugin half is package sdk
// (serve_process.go).
//
// Lifecycle. Load checks the file (and its SHA-256 when the manifest pins
// one, through go-plugin's SecureConfig, before it runs anything), starts
// the program, completes go-plugin's handshake (its protocol version is the
// ABI's major version), reads the policy's Info, checks its ABI major
// version and configures it with the manifest's [policy.config]: a refusal
// is a load error with the policy's message. Everything up to there is
// bounded by Options.StartTimeout. One process serves all calls; gRPC
// carries concurrent calls, the plugin runs the policy's stages one at a
// time. Each call has a deadline (Options.Timeout). A call that runs past
// it, or that its caller gives up on, fails, and the process is killed: it
// would go on computing the stale answer. A process that dies during a call
// fails the call with its exit status and the first line of its crash. In
// both cases the next call starts a new process (which is checked and
// configured again). A panic in a stage is an error of that call only: the
// sdk recovers it and the process carries on. Close shuts the process down.
//
// No process is left behind: every failure kills the plugin's process
// group, reaps it and removes its socket's directory. On Linux the host is
// a child subreaper, and when a plugin process stops (killed, closed or
// ended by itself) the host also kills and reaps what it started outside
// its process group, in sessions of their own too (descendants_linux.go).
// The kernel kills the plugin when the host dies (Pdeathsig), and the
// sdk's plugin side exits when its parent changes.
//
// The plugin gets a minimal environment (PATH, HOME, TMPDIR, the locale,
// and Go's runtime settings, plus DIRSYNC_PLUGIN_TAG, which marks the
// processes it starts), not the host's: the host's may hold secrets
// (password_env).
//
// Logging: what the plugin writes to stdout and stderr, its go-plugin log
// lines and a crash's output go to Options.Logger (see log.go).
//
// Speed. BenchmarkMap100k, 100,000 entries of 10 attributes (the wasmrt
// benchmark's entries and policy), on 2 cores:
//
//	builtin (the policy linked in), 1 or 2 goroutines       0.06 s
//	process, 1 goroutine, Map calls of 2,000 entries         0.38 s
//	process, 2 goroutines, Map calls of 2,000 entries        0.30 s
//	process, one Map call (batches of 5,000)                 0.34 s
//	starting a plugin process (BenchmarkStart)               5 ms
//
// (The wasm runtime, on the same entries: 0.97 s from one goroutine, 0.52 s
// from two; see package wasmrt.) Map and Reconcile requests are encoded,
// and Map responses decoded, by sdk/abi's direct codec and pass through
// gRPC as bytes (codec.go); the plugin decodes them with the sdk's wire
// codec and runs stages one at a time.
package processrt

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMapBatch is the number of entries sent in one Map call to the
// plugin when Options.MapBatch is 0.
const DefaultMapBatch = policy.DefaultMapBatch

// DefaultStartTimeout bounds starting a plugin process when
// Options.StartTimeout is 0.
const DefaultStartTimeout = 10 * time.Second

// Options configure a loaded plugin.
type Options struct {
	// Name is the policy's name in the manifest; errors name it.
	Name string
	// Timeout bounds each call. A call that runs longer fails and its
	// plugin process is killed; the next call starts a new one. 0 means no
	// limit beyond the caller's context.
	Timeout time.Duration
	// StartTimeout bounds starting a plugin process: the go-plugin
	// handshake, Info and Configure. 0 means DefaultStartTimeout.
	StartTimeout time.Duration
	// Config is the manifest's [policy.config] table, handed to the
	// policy's Configure; an error from it refuses the load.
	Config map[string]any
	// SHA256 optionally pins the program: the hex SHA-256 of the file
	// (optionally prefixed "sha256:"). A mismatch refuses to start it, at
	// load and at every restart.
	SHA256 string
	// MapBatch is how many entries one Map call to the plugin carries; a
	// larger Map request is split and the intents joined (Map is pure per
	// entry). 0 means DefaultMapBatch.
	MapBatch int
	// Logger receives the plugin's output and go-plugin's messages; nil
	// discards them.
	Logger *slog.Logger
	// MemoryLimitMB bounds the plugin's memory: a Go plugin's garbage
	// collector keeps its heap below it (GOMEMLIMIT), and on Linux the
	// kernel refuses writable private memory beyond it plus
	// threadStackSlack (RLIMIT_DATA counts thread stacks too), so a plugin
	// that needs more dies and the call fails. 0 means no bound.
	MemoryLimitMB uint32
}

// threadStackSlack is what the hard memory cap allows beyond
// MemoryLimitMB for the stacks of the plugin's threads (8 MiB each with
// cgo), which RLIMIT_DATA counts as well.
const threadStackSlack = 256 << 20

// runtime is a loaded plugin program; it implements policy.Runtime.
type runtime struct {
	label        string // `policy "name" (file)`, the prefix of every error
	path         string // absolute
	opts         Options
	startTimeout time.Duration
	batch        int
	pin          policy.Pin
	config       *pb.ConfigureRequest
	log          *slog.Logger
	info         sdk.Info

	mu       sync.Mutex // guards the fields below
	cur      *proc      // the running process; nil: start one on next use
	starting *startAttempt
	closed   bool
	calls    sync.WaitGroup // calls in progress; Add only while !closed
}

// startAttempt is a start of a process that concurrent callers wait for.
type startAttempt struct {
	done chan struct{}
	err  error
}

var _ policy.Runtime = (*runtime)(nil)

var errClosed = errors.New("the runtime is closed")

// Load starts the plugin program at path, checks its ABI version,
// configures it with opts.Config and returns it as a Runtime. Every error
// is one line naming the policy: `policy "name" (file): stage: message`.
func Load(ctx context.Context, path string, opts Options) (policy.Runtime, error) {
	r := &runtime{label: policy.Label(opts.Name, path), opts: opts}
	if err := r.load(ctx, path); err != nil {
		return nil, fmt.Errorf("%s: %w", r.label, err)
	}
	return r, nil
}

func (r *runtime) load(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	r.path = abs
	r.log = r.opts.Logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("policy", r.opts.Name)
	if r.startTimeout = r.opts.StartTimeout; r.startTimeout <= 0 {
		r.startTimeout = DefaultStartTimeout
	}
	if r.batch, err = policy.MapBatch(r.opts.MapBatch); err != nil {
		return err
	}
	if r.pin, err = policy.ParsePin(r.opts.SHA256); err != nil {
		return err
	}
	if r.config, err = policy.ConfigureRequest(r.opts.Config); err != nil {
		return err
	}
	if err := checkProgram(r.path); err != nil {
		return err
	}
	p, err := r.start(ctx)
	if err != nil {
		return err
	}
	r.info = p.info
	r.cur = p
	return nil
}

// checkProgram explains the files that cannot be a plugin program before
// anything tries to run them.
func checkProgram(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err // *PathError: "stat /x/y: no such file or directory"
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory, not a plugin program", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	f.Close()
	if bytes.Equal(head[:n], []byte("\x00asm")) {
		return errors.New(`a WebAssembly module, not a plugin program: declare it with runtime = "wasm", or build the policy with a plain go build for runtime = "process"`)
	}
	if st.Mode()&0o111 == 0 && filepath.Separator == '/' {
		return fmt.Errorf("%s is not executable (a plugin program is built with go build; chmod +x it)", path)
	}
	return nil
}

// proc is one plugin process.
type proc struct {
	client *plugin.Client
	cmd    *exec.Cmd
	rpc    client
	stderr *stderrHead
	info   sdk.Info
	log    *slog.Logger

	stopOnce sync.Once
	stopped  chan struct{} // closed when stop or shutdown is done
	reaped   bool          // go-plugin reaped the process (set before stopped is closed)
	sockDir  string        // the directory of the plugin's socket, removed by stop
	tag      string        // tagEnv's value in its environment
	family   family        // its descendants, gathered when it stops
	mu       sync.Mutex
	reason   string // why the host stopped it; "" if it ended by itself
}

// pid is the plugin's process id (0 if it never started).
func (p *proc) pid() int {
	if p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// start starts a plugin process and makes it ready: handshake, Info, ABI
// check, Configure and Info again, all within the start timeout. The Info
// kept is the configured policy's, as the other runtimes read it: a
// policy's Info may follow its config (which changes it asks about, say).
func (r *runtime) start(ctx context.Context) (*proc, error) {
	ctx, cancel := context.WithTimeout(ctx, r.startTimeout)
	defer cancel()
	p, err := r.newProc()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*proc, error) {
		p.stop("it failed to start")
		return nil, err
	}
	rpc, err := p.client.Client()
	if err != nil {
		p.stop("it failed to start")
		return nil, r.startError(p, err)
	}
	if mb := r.opts.MemoryLimitMB; mb > 0 {
		// Right after the handshake: the plugin has done nothing of its
		// own yet.
		if err := limitMemory(p.pid(), uint64(mb)<<20+threadStackSlack); err != nil {
			return fail(fmt.Errorf("capping the plugin's memory at %d MB: %w", mb, err))
		}
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		return fail(err)
	}
	p.rpc = raw.(client)
	info, err := p.rpc.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return fail(fmt.Errorf("info: %w", r.startCallError(ctx, p, err)))
	}
	if err := policy.CheckABI(info.GetAbiMajor(), info.GetAbiMinor()); err != nil {
		return fail(err)
	}
	if _, err := p.rpc.Configure(ctx, r.config); err != nil {
		return fail(fmt.Errorf("configure: %w", r.startCallError(ctx, p, err)))
	}
	if info, err = p.rpc.Info(ctx, &pb.InfoRequest{}); err != nil {
		return fail(fmt.Errorf("info: %w", r.startCallError(ctx, p, err)))
	}
	if err := policy.CheckABI(info.GetAbiMajor(), info.GetAbiMinor()); err != nil {
		return fail(err)
	}
	p.info = abi.InfoFromProto(info)
	r.log.Debug("plugin process started", "pid", p.pid(), "path", r.path)
	return p, nil
}

// newProc prepares a plugin process: its command (a minimal environment,
// its memory limit, a tag that marks its descendants, its socket's own
// directory) and go-plugin's client, which starts it when first asked.
func (r *runtime) newProc() (*proc, error) {
	cmd := exec.Command(r.path)
	cmd.Env = pluginEnv()
	if mb := r.opts.MemoryLimitMB; mb > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMEMLIMIT=%dMiB", mb-mb/8))
	}
	cmd.SysProcAttr = sysProcAttr()
	p := &proc{cmd: cmd, stderr: &stderrHead{}, log: r.log, stopped: make(chan struct{}), tag: rand.Text(), family: family{}}
	cmd.Env = append(cmd.Env, tagEnv+"="+p.tag)
	if err := becomeSubreaper(); err != nil {
		subreaperWarning.Do(func() {
			r.log.Warn("processes that a plugin starts in a session of their own may outlive it", "err", err)
		})
	}
	if goruntime.GOOS != "windows" {
		// The plugin's socket goes in a directory of its own, which stop
		// removes: a killed plugin cannot remove its socket itself.
		dir, err := os.MkdirTemp("", "dirsync-plugin-")
		if err != nil {
			return nil, err
		}
		p.sockDir = dir
		cmd.Env = append(cmd.Env, plugin.EnvUnixSocketDir+"="+dir)
	}
	var secure *plugin.SecureConfig
	if r.pin != nil {
		secure = &plugin.SecureConfig{Checksum: r.pin, Hash: sha256.New()}
	}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake(),
		Plugins:          plugin.PluginSet{sdk.PluginName: grpcPlugin{}},
		Cmd:              cmd,
		SkipHostEnv:      true,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     r.startTimeout,
		Logger:           newHCLogAdapter(r.log, filepath.Base(r.path)),
		Stderr:           p.stderr,
		SyncStdout:       &lineLogger{log: r.log, stream: "stdout"},
		SyncStderr:       &lineLogger{log: r.log, stream: "stderr"},
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(sdk.MaxPluginMessage),
			grpc.MaxCallSendMsgSize(sdk.MaxPluginMessage))},
	})
	return p, nil
}

// subreaperWarning logs a failure to become a subreaper once.
var subreaperWarning sync.Once

// grpcPlugin is the host's half of go-plugin's plugin: the client of the
// SyncPolicy service (codec.go).
type grpcPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (grpcPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the host does not serve policies")
}

func (grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return client{pb.NewSyncPolicyClient(c), c}, nil
}

// pluginEnv is the environment of a plugin process: the host's variables a
// program may need to run, and no others (go-plugin adds its own).
func pluginEnv() []string {
	keep := map[string]bool{"PATH": true, "HOME": true, "TMPDIR": true, "TMP": true, "TEMP": true, "TZ": true,
		"LANG": true, "GODEBUG": true, "GOTRACEBACK": true, "GOMAXPROCS": true, "GOGC": true, "GOMEMLIMIT": true,
		"SYSTEMROOT": true, "WINDIR": true}
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if keep[strings.ToUpper(k)] || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
		}
	}
	return env
}

var protocolVersionRE = regexp.MustCompile(`Plugin version: (\d+)`)

// startError explains why go-plugin could not start the program.
func (r *runtime) startError(p *proc, err error) error {
	stderr := func() string {
		if l := p.stderr.line(); l != "" {
			return ": " + l
		}
		return ""
	}
	msg := err.Error()
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		got := "(unreadable)"
		if f, err := os.Open(r.path); err == nil {
			h := sha256.New()
			if _, err := io.Copy(h, f); err == nil {
				got = hex.EncodeToString(h.Sum(nil))
			}
			f.Close()
		}
		return r.pin.Mismatch(got, "refusing to start it")
	case strings.HasPrefix(msg, "error verifying checksum"):
		return errors.New(msg)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("no go-plugin handshake within the start timeout of %s: is it a dirsync policy plugin (a main package that calls sdk.Main)?%s", r.startTimeout, stderr())
	case strings.Contains(msg, "plugin exited before we could connect"),
		strings.Contains(msg, "Failed to read any lines from plugin's stdout"):
		return fmt.Errorf("the program exited before the go-plugin handshake: %s", exitStatus(p))
	case strings.HasPrefix(msg, "Unrecognized remote plugin message"):
		line, _, _ := strings.Cut(strings.TrimPrefix(msg, "Unrecognized remote plugin message: "), "\n")
		return fmt.Errorf("not a dirsync policy plugin: it wrote %q where the go-plugin handshake belongs (does the policy print to stdout in an init function?)", line)
	case strings.HasPrefix(msg, "incompatible API version"):
		if m := protocolVersionRE.FindStringSubmatch(msg); m != nil {
			return policy.ABIError(m[1] + ".x")
		}
	case strings.HasPrefix(msg, "unsupported plugin protocol"):
		return fmt.Errorf("not a dirsync policy plugin: %s", policy.FirstLine(msg))
	}
	return errors.New(policy.FirstLine(msg) + stderr())
}

// startCallError explains a failed Info or Configure call of a start.
func (r *runtime) startCallError(ctx context.Context, p *proc, err error) error {
	if pe := policyError(err); pe != nil {
		return pe
	}
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within the start timeout of %s: %w", r.startTimeout, err)
	} else if err != nil {
		return fmt.Errorf("stopped: %w", err)
	}
	if code := status.Code(err); code == codes.Unavailable {
		p.waitExit(time.Second)
		p.stop("")
		return fmt.Errorf("the plugin process (pid %d) exited: %s", p.pid(), exitStatus(p))
	}
	return errors.New(policy.FirstLine(status.Convert(err).Message()))
}

// policyError returns the error a policy stage flagged, carried as the
// detail of err's gRPC status, or nil.
func policyError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if e, ok := d.(*pb.Error); ok {
			return abi.ErrorFromProto(e)
		}
	}
	return nil
}

// exitStatus describes how a stopped process ended, with the first line
// of its crash output.
func exitStatus(p *proc) string {
	s := "exited"
	if st := p.processState(); st != nil {
		s = st.String() // "exit status 3", "signal: killed"
	}
	if l := p.stderr.line(); l != "" {
		s += ": " + l
	}
	return s
}

// processState is the process's state once stop has returned.
func (p *proc) processState() *os.ProcessState {
	select {
	case <-p.stopped:
		if p.reaped {
			return p.cmd.ProcessState
		}
	default:
	}
	return nil
}

// Stopping a process: kill its process group (the plugin and anything it
// started), let go-plugin reap it and close the connection, and give up
// waiting after stopWait (logged) rather than hang the host.
const stopWait = 5 * time.Second

// stop kills the process (reason says why; "" when it ended by itself) and
// waits until it is reaped. It returns the reason of the first stop: a call
// that sees its process go away learns whether another call stopped it.
func (p *proc) stop(reason string) string {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.reason = reason
		p.mu.Unlock()
		if pid := p.pid(); pid > 0 {
			alive := !p.client.Exited()
			p.family.gather(pid, alive, p.tag)
			p.family.kill()
			if alive {
				killGroup(pid)
				_ = p.cmd.Process.Kill()
			}
		}
		p.finish(false)
	})
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reason
}

// shutdown ends the process the polite way (go-plugin asks the plugin to
// exit, and kills it if it has not within 2 s), for Close.
func (p *proc) shutdown() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.reason = "the runtime was closed"
		p.mu.Unlock()
		// Its descendants are known before it goes, and killed after.
		p.family.gather(p.pid(), !p.client.Exited(), p.tag)
		p.finish(true)
	})
	<-p.stopped
}

// finish runs go-plugin's Kill, which reaps the process, then kills and
// reaps the plugin's descendants, and closes p.stopped. A plugin whose
// children hold its output open keeps Kill waiting: after stopWait the
// whole process group is killed, and after another stopWait finish gives
// up.
func (p *proc) finish(graceful bool) {
	defer close(p.stopped)
	if p.sockDir != "" {
		defer os.RemoveAll(p.sockDir)
	}
	defer p.endFamily()
	done := make(chan struct{})
	go func() {
		p.client.Kill()
		close(done)
	}()
	wait := stopWait
	if graceful {
		wait += 2 * time.Second // go-plugin's grace period
	}
	select {
	case <-done:
		p.reaped = true
		return
	case <-time.After(wait):
	}
	if pid := p.pid(); pid > 0 {
		killGroup(pid)
	}
	select {
	case <-done:
		p.reaped = true
	case <-time.After(stopWait):
		p.log.Warn("gave up waiting for the plugin process to go away", "pid", p.pid())
	}
}

// endFamily kills the plugin's descendants, those gathered before it went
// and those adopted by the host since, and reaps them.
func (p *proc) endFamily() {
	pid := p.pid()
	if pid <= 0 {
		return
	}
	p.family.gather(pid, !p.reaped && !p.client.Exited(), p.tag)
	p.family.kill()
	if left := p.family.reap(time.Now().Add(stopWait)); len(left) > 0 {
		p.log.Warn("gave up waiting for processes the plugin started to go away", "pid", pid, "pids", left)
	}
}

// waitExit waits up to d for the process to end by itself and reports
// whether it did.
func (p *proc) waitExit(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !p.client.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// ---- calls ----

// enter counts a call in, unless the runtime is closed.
func (r *runtime) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.calls.Add(1)
	return true
}

// get returns the running process, starting one if there is none (or it
// ended since the last call). Concurrent callers share one start.
func (r *runtime) get(ctx context.Context) (*proc, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, errClosed
		}
		if p := r.cur; p != nil {
			if !p.client.Exited() {
				r.mu.Unlock()
				return p, nil
			}
			r.cur = nil
			r.mu.Unlock()
			p.stop("")
			r.log.Warn("the plugin process ended between calls; starting a new one", "pid", p.pid(), "status", exitStatus(p))
			continue
		}
		if a := r.starting; a != nil {
			r.mu.Unlock()
			select {
			case <-a.done:
				if a.err != nil {
					return nil, a.err
				}
				continue
			case <-ctx.Done():
				what, cause := r.stopped(ctx, ctx)
				return nil, fmt.Errorf("%s while a new plugin process started: %w", what, cause)
			}
		}
		a := &startAttempt{done: make(chan struct{})}
		r.starting = a
		r.mu.Unlock()

		p, err := r.start(ctx)
		if err != nil {
			err = fmt.Errorf("starting a new plugin process: %w", err)
		}
		r.mu.Lock()
		r.starting = nil
		closed := r.closed
		if err == nil && closed {
			err = errClosed
		}
		if err == nil {
			r.cur = p
		}
		a.err = err
		close(a.done)
		r.mu.Unlock()
		if err != nil {
			if p != nil && closed {
				p.shutdown()
			}
			return nil, err
		}
		return p, nil
	}
}

// discard makes the next call start a new process, if p is the current
// one.
func (r *runtime) discard(p *proc) {
	r.mu.Lock()
	if r.cur == p {
		r.cur = nil
	}
	r.mu.Unlock()
}

// use runs f on the plugin process under the deadline of Options.Timeout.
// Errors are wrapped with the label and stage: `policy "x" (x): map: …`; a
// flagged policy error stays reachable, so errors.As finds
// *sdk.FilterError and *abi.Error.
func (r *runtime) use(ctx context.Context, stage string, f func(context.Context, *proc) error) error {
	wrap := func(err error) error { return fmt.Errorf("%s: %s: %w", r.label, stage, err) }
	if !r.enter() {
		return wrap(errClosed)
	}
	defer r.calls.Done()
	p, err := r.get(ctx)
	if err != nil {
		return wrap(err)
	}
	callCtx, cancel := ctx, context.CancelFunc(func() {})
	if r.opts.Timeout > 0 {
		callCtx, cancel = context.WithTimeout(ctx, r.opts.Timeout)
	}
	defer cancel()
	if ctx.Err() != nil { // before the call: the process is not involved
		what, cause := r.stopped(ctx, ctx)
		return wrap(fmt.Errorf("%s: %w", what, cause))
	}
	if err := f(callCtx, p); err != nil {
		return wrap(r.failure(ctx, callCtx, p, err))
	}
	return nil
}

// failure classifies the error of a call on p: an error the policy flagged
// (the process is fine), a call stopped by its deadline or its caller (the
// process is still computing: it is killed), a process that went away
// (reaped, with its exit status), or another gRPC error.
func (r *runtime) failure(ctx, callCtx context.Context, p *proc, err error) error {
	if pe := policyError(err); pe != nil {
		return pe
	}
	if _, ok := status.FromError(err); !ok {
		return err // not from gRPC: the runtime's own
	}
	code := status.Code(err)
	if callCtx.Err() != nil || code == codes.DeadlineExceeded || code == codes.Canceled {
		what, cause := r.stopped(ctx, callCtx)
		r.discard(p)
		why := "another call was " + what
		if reason := p.stop(why); reason != why {
			return stoppedElsewhere(p, reason)
		}
		r.log.Debug("killed the plugin process: a call was "+what, "pid", p.pid()) // the call's error says so
		return fmt.Errorf("%s (plugin process %d killed; the next call starts a new one): %w", what, p.pid(), cause)
	}
	if code == codes.Internal && strings.Contains(status.Convert(err).Message(), "error while marshaling") {
		return fmt.Errorf("encoding the request: %s", status.Convert(err).Message())
	}
	if code == codes.Unavailable {
		r.discard(p)
		if p.waitExit(time.Second) {
			return stoppedElsewhere(p, p.stop(""))
		}
		const why = "its connection broke"
		if reason := p.stop(why); reason != why {
			return stoppedElsewhere(p, reason)
		}
		return fmt.Errorf("the connection to the plugin process broke (%s); process %d killed, the next call starts a new one",
			policy.FirstLine(status.Convert(err).Message()), p.pid())
	}
	return fmt.Errorf("%s: %s", code, policy.FirstLine(status.Convert(err).Message()))
}

// stoppedElsewhere explains a call whose process went away under it: the
// host stopped it for reason (another call's failure, Close), or, when
// reason is "", it ended by itself.
func stoppedElsewhere(p *proc, reason string) error {
	if reason != "" {
		return fmt.Errorf("the plugin process was stopped: %s", reason)
	}
	return fmt.Errorf("the plugin process (pid %d) exited during the call: %s", p.pid(), exitStatus(p))
}

// stopped describes a call stopped by its context: what happened and the
// context error to wrap. ctx is the caller's context, callCtx the call's
// (ctx with Options.Timeout). Which deadline stopped the call is told by
// the deadlines, not by ctx.Err: gRPC's own timer may fire first.
func (r *runtime) stopped(ctx, callCtx context.Context) (string, error) {
	if errors.Is(ctx.Err(), context.Canceled) {
		return "stopped", context.Canceled
	}
	caller, ok := ctx.Deadline()
	if call, _ := callCtx.Deadline(); r.opts.Timeout > 0 && (!ok || call.Before(caller)) {
		return fmt.Sprintf("stopped after the timeout of %s", r.opts.Timeout), context.DeadlineExceeded
	}
	return "stopped at the deadline", context.DeadlineExceeded
}

// ---- policy.Runtime ----

// Info returns the policy's Info, read once at load.
func (r *runtime) Info() sdk.Info { return policy.CopyInfo(r.info) }

// Filter runs the policy's Filter stage.
func (r *runtime) Filter(ctx context.Context, req sdk.FilterRequest) (sdk.FilterResponse, error) {
	var resp *pb.FilterResponse
	err := r.use(ctx, "filter", func(ctx context.Context, p *proc) (err error) {
		resp, err = p.rpc.Filter(ctx, abi.FilterRequestToProto(req))
		return err
	})
	if err != nil {
		return sdk.FilterResponse{}, err
	}
	return abi.FilterResponseFromProto(resp), nil
}

// Map runs the policy's Map stage, in batches of Options.MapBatch entries,
// all on one process and under one deadline.
func (r *runtime) Map(ctx context.Context, req sdk.MapRequest) (sdk.MapResponse, error) {
	var out sdk.MapResponse
	enc := policy.NewMapEncoder(&req) // a batch's request is free again once the call returned
	err := r.use(ctx, "map", func(ctx context.Context, p *proc) error {
		var err error
		out.Intents, err = policy.MapInBatches(req.Entries, r.batch, func(start, end int) ([]sdk.Intent, error) {
			b, err := enc.Encode(start, end)
			if err != nil {
				return nil, err
			}
			return p.rpc.mapEntries(ctx, b)
		})
		return err
	})
	if err != nil {
		return sdk.MapResponse{}, err
	}
	return out, nil
}

// Reconcile runs the policy's Reconcile stage.
func (r *runtime) Reconcile(ctx context.Context, req sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	b, err := policy.EncodeReconcile(&req)
	if err != nil {
		return sdk.ReconcileResponse{}, fmt.Errorf("%s: %w", r.label, err)
	}
	var resp *pb.ReconcileResponse
	err = r.use(ctx, "reconcile", func(ctx context.Context, p *proc) (err error) {
		resp, err = p.rpc.reconcile(ctx, b)
		return err
	})
	if err != nil {
		return sdk.ReconcileResponse{}, err
	}
	return abi.ReconcileResponseFromProto(resp), nil
}

// Close shuts the plugin process down. Calls after Close fail at once.
// Close waits for running calls to end, as long as ctx allows; then it
// stops the process, which fails them.
func (r *runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	p := r.cur
	r.cur = nil
	r.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		r.calls.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	if p != nil {
		p.shutdown()
	}
	return nil
}
