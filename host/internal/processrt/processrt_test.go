package processrt_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/processrt"
	"github.com/dirsync/dirsync/host/internal/testpolicy/runtimetest"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
	"github.com/dirsync/dirsync/sdk/policytest"
	"google.golang.org/protobuf/proto"
)

// The plugin programs the tests run, built by TestMain into binDir.
var (
	binDir       string
	testPlugin   string // host/internal/testpolicy/cmd
	claimsABI2   string // the same, its Info claiming ABI major version 2
	abi2Plugin   string // testdata/abi2: a go-plugin handshake of protocol version 2
	sleeper      string // testdata/sleeper: never completes the handshake
	unregistered string // testdata/unregistered: never calls sdk.Register
	spawner      string // testdata/spawner: starts processes in sessions of their own
	standardBin  string // plugins/standard/cmd/standard built natively
)

// hostHelperEnv makes the test binary act as a host that loads the test
// plugin, prints its process id and waits to be killed (see
// TestNoOrphanWhenHostIsKilled).
const hostHelperEnv = "PROCESSRT_TEST_HOST_HELPER"

func TestMain(m *testing.M) {
	if path := os.Getenv(hostHelperEnv); path != "" {
		hostHelper(path)
		return
	}
	dir, err := os.MkdirTemp("", "processrt-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	for _, b := range []struct {
		out     *string
		name    string
		pkg     string
		ldflags string
	}{
		{&testPlugin, "testpolicy", "./host/internal/testpolicy/cmd", ""},
		{&claimsABI2, "claims-abi2", "./host/internal/testpolicy/cmd", "-X main.abiMajor=2"},
		{&abi2Plugin, "abi2", "./host/internal/processrt/testdata/abi2", ""},
		{&sleeper, "sleeper", "./host/internal/processrt/testdata/sleeper", ""},
		{&unregistered, "unregistered", "./host/internal/processrt/testdata/unregistered", ""},
		{&spawner, "spawner", "./host/internal/processrt/testdata/spawner", ""},
		{&standardBin, "standard", "./plugins/standard/cmd/standard", ""},
	} {
		*b.out = filepath.Join(dir, b.name)
		cmd := exec.Command("go", "build", "-o", *b.out, "-ldflags", b.ldflags, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func load(t testing.TB, opts processrt.Options) policy.Runtime {
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
	rt, err := processrt.Load(context.Background(), testPlugin, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

// pidOf asks the test policy for the process id of the plugin serving it.
func pidOf(t *testing.T, rt policy.Runtime) int {
	t.Helper()
	resp, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(pid=?)"})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(resp.Filter, "(pid="), ")"))
	if err != nil {
		t.Fatalf("Filter (pid=?) = %q", resp.Filter)
	}
	return pid
}

// processState returns a process's state letter (R, S, Z, …) from /proc,
// or "" when there is no such process.
func processState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	rest := string(b[bytes.LastIndexByte(b, ')')+1:])
	if f := strings.Fields(rest); len(f) > 0 {
		return f[0]
	}
	return ""
}

// gone reports whether a process has ended. A zombie counts as ended only
// when zombieOK: a zombie child of the test is a plugin the runtime did not
// reap.
func gone(pid int, zombieOK bool) bool {
	if runtime.GOOS != "linux" {
		p, err := os.FindProcess(pid)
		return err != nil || p.Signal(syscall.Signal(0)) != nil
	}
	st := processState(pid)
	return st == "" || (zombieOK && st == "Z")
}

// waitGone fails the test unless the process ends within a few seconds.
func waitGone(t *testing.T, pid int, zombieOK bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !gone(pid, zombieOK); {
		if time.Now().After(deadline) {
			t.Errorf("process %d is still there (state %s)", pid, processState(pid))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// children lists the test process's child processes, zombies included.
func children(t *testing.T) []int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return nil
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := os.Getpid()
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(me) {
			out = append(out, pid)
		}
	}
	return out
}

// noChildren fails the test if the test process has a child process.
func noChildren(t *testing.T) {
	t.Helper()
	if c := children(t); len(c) > 0 {
		t.Errorf("child processes left behind: %v", c)
	}
}

// TestStandard runs the conformance kit against the standard policy built
// as a plugin program, and requires it to decide exactly as the linked-in
// policy does.
func TestStandard(t *testing.T) {
	ctx := context.Background()
	rt, err := processrt.Load(ctx, standardBin, processrt.Options{Name: "standard", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	if info := rt.Info(); info.Name != "standard" || info.ABIMajor != sdk.ABIMajor || info.ABIMinor != sdk.ABIMinor {
		t.Errorf("Info() = %+v", info)
	}
	t.Run("conformance", func(t *testing.T) { policytest.Run(t, policy.AsSDK(rt)) })
	t.Run("process equals builtin", func(t *testing.T) { policytest.Compare(t, standard.New(), policy.AsSDK(rt)) })
}

func TestInfo(t *testing.T) {
	runtimetest.CheckInfo(t, load(t, processrt.Options{}))
}

// TestTestPolicy compares the plugin with the policy called directly, on
// the conformance kit's requests.
func TestTestPolicy(t *testing.T) {
	rt := load(t, processrt.Options{})
	t.Run("abi", func(t *testing.T) { policytest.RunABI(t, policy.AsSDK(rt)) })
	t.Run("process equals direct", func(t *testing.T) { policytest.Compare(t, runtimetest.Direct(t), policy.AsSDK(rt)) })
}

func TestFilter(t *testing.T) {
	runtimetest.CheckFilter(t, load(t, processrt.Options{}), `policy "test" (testpolicy)`)
}

func TestMap(t *testing.T) {
	runtimetest.CheckMap(t, "process", processrt.DefaultMapBatch, func(t *testing.T, batch int) policy.Runtime {
		return load(t, processrt.Options{MapBatch: batch})
	})
}

func TestReconcile(t *testing.T) {
	runtimetest.CheckReconcile(t, "process", load(t, processrt.Options{}))
}

// TestLargeMap sends a Map request and gets a reply over gRPC's default
// 4 MiB limit in one message each.
func TestLargeMap(t *testing.T) {
	const n = 20000
	es := runtimetest.Entries(n)
	for i := range es {
		groups := make([]string, 20)
		for j := range groups {
			groups[j] = fmt.Sprintf("CN=Group %d with a long name of the kind AD grows,OU=Mail Groups,OU=Groups,DC=example,DC=com", j)
		}
		es[i].Attributes["memberof"] = groups // the test policy copies memberOf into the intent
	}
	req := sdk.MapRequest{Domain: runtimetest.Domain, Entries: es}
	if size := proto.Size(abi.MapRequestToProto(req)); size <= 4<<20 {
		t.Fatalf("the request is only %d bytes", size)
	}
	rt := load(t, processrt.Options{MapBatch: n})
	got, err := rt.Map(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if size := proto.Size(abi.MapResponseToProto(got)); size <= 4<<20 {
		t.Errorf("the reply is only %d bytes", size)
	}
	want, err := runtimetest.Direct(t).Map(req)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, runtimetest.NormMap(want)) {
		t.Error("process and direct Map differ")
	}
}

// TestGuardRails makes the plugin fail in each way it can, and checks the
// one-line error, whether the process survived or was replaced, that a
// replaced process is gone, and that the next call works.
func TestGuardRails(t *testing.T) {
	ctx := context.Background()
	filter := func(f string) func(policy.Runtime) error {
		return func(rt policy.Runtime) error {
			_, err := rt.Filter(ctx, sdk.FilterRequest{Filter: f})
			return err
		}
	}
	mapEntry := func(id string) func(policy.Runtime) error {
		return func(rt policy.Runtime) error {
			_, err := rt.Map(ctx, sdk.MapRequest{Domain: runtimetest.Domain, Entries: []sdk.Entry{{ID: "fine"}, {ID: id, DN: "CN=" + id}}})
			return err
		}
	}
	for _, tc := range []struct {
		name    string
		call    func(policy.Runtime) error
		want    string // PID stands for the plugin's process id
		is      error
		as      any
		replace bool // the process is replaced
		opts    processrt.Options
	}{
		{name: "memory bomb", call: filter("(oom=yes)"), replace: true, opts: processrt.Options{Timeout: 30 * time.Second, MemoryLimitMB: 64},
			want: `policy "test" (testpolicy): filter: the plugin process (pid PID) exited during the call: exit status 2`},
		{name: "policy error", call: mapEntry("error"),
			want: `policy "test" (testpolicy): map: entry error: cannot map CN=error`, as: new(*abi.Error)},
		{name: "panic", call: filter("(panic=yes)"),
			want: `policy "test" (testpolicy): filter: policy panicked: filter panic (at `, as: new(*abi.Error)},
		{name: "runtime error panic", call: mapEntry("panic"),
			want: `policy "test" (testpolicy): map: policy panicked: assignment to entry in nil map (at `},
		{name: "infinite loop", call: filter("(loop=forever)"), replace: true, is: context.DeadlineExceeded,
			want: `policy "test" (testpolicy): filter: stopped after the timeout of 1s (plugin process PID killed; the next call starts a new one): context deadline exceeded`},
		{name: "exit mid-call", call: filter("(exit=3)"), replace: true,
			want: `policy "test" (testpolicy): filter: the plugin process (pid PID) exited during the call: exit status 3`},
		{name: "crash in a goroutine", call: filter("(goroutine-panic=yes)"), replace: true,
			want: `policy "test" (testpolicy): filter: the plugin process (pid PID) exited during the call: exit status 2: panic: in a goroutine`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir() // where the plugins' sockets go
			t.Setenv("TMPDIR", tmp)
			opts := tc.opts
			if opts.Timeout == 0 {
				opts.Timeout = time.Second
			}
			rt := load(t, opts)
			pid := pidOf(t, rt)
			err := tc.call(rt)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if want := strings.ReplaceAll(tc.want, "PID", strconv.Itoa(pid)); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q, want it to start with %q", err, want)
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
			if tc.replace {
				waitGone(t, pid, false)
			}
			next := pidOf(t, rt) // the next call works
			if tc.replace && next == pid {
				t.Errorf("the process %d serves on", pid)
			}
			if !tc.replace && next != pid {
				t.Errorf("process %d was replaced by %d", pid, next)
			}
			if got, err := rt.Map(ctx, sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(3)}); err != nil || len(got.Intents) != 3 {
				t.Errorf("the next Map gave %+v, %v", got, err)
			}
			rt.Close(ctx)
			waitGone(t, next, false)
			noChildren(t)
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("%d files left in TMPDIR, such as %s", len(left), left[0].Name())
			}
		})
	}
}

// TestStoppedCalls checks calls that their caller gives up on.
func TestStoppedCalls(t *testing.T) {
	rt := load(t, processrt.Options{})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	pid := pidOf(t, rt)
	_, err := rt.Filter(canceled, sdk.FilterRequest{Filter: "(cn=x)"})
	if want := `policy "test" (testpolicy): filter: stopped: context canceled`; err == nil || err.Error() != want || !errors.Is(err, context.Canceled) {
		t.Errorf("call with a canceled context: %v, want %s", err, want)
	}
	if next := pidOf(t, rt); next != pid {
		t.Errorf("a call that never reached the plugin replaced its process")
	}

	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = rt.Filter(short, sdk.FilterRequest{Filter: "(loop=forever)"})
	if want := fmt.Sprintf(`policy "test" (testpolicy): filter: stopped at the deadline (plugin process %d killed; the next call starts a new one): context deadline exceeded`, pid); err == nil || err.Error() != want {
		t.Errorf("call past its caller's deadline: %v, want %s", err, want)
	}
	waitGone(t, pid, false)
	if next := pidOf(t, rt); next == pid {
		t.Error("the looping process serves on")
	}
}

// TestChildrenKilled checks that a plugin's own child processes (here one
// that holds the plugin's stdout open) go with it.
func TestChildrenKilled(t *testing.T) {
	rt := load(t, processrt.Options{Timeout: time.Second})
	resp, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(spawn=yes)"})
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(resp.Filter, "(child="), ")"))
	if err != nil {
		t.Fatal(resp.Filter)
	}
	if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(loop=forever)"}); err == nil {
		t.Fatal("no error")
	}
	waitGone(t, child, runtime.GOOS != "linux") // on Linux the host reaps it
	pidOf(t, rt)
}

// TestConcurrentCalls runs calls from several goroutines on one process.
func TestConcurrentCalls(t *testing.T) {
	rt := load(t, processrt.Options{MapBatch: 64})
	req := sdk.MapRequest{Domain: runtimetest.Domain, Entries: runtimetest.Entries(500)}
	want, err := runtimetest.Direct(t).Map(req)
	if err != nil {
		t.Fatal(err)
	}
	want = runtimetest.NormMap(want)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 5 {
				if i%2 == 0 {
					got, err := rt.Map(context.Background(), req)
					if err != nil || !reflect.DeepEqual(got, want) {
						t.Errorf("Map: %v", err)
					}
				} else {
					f := fmt.Sprintf("(cn=%d)", i)
					got, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: f})
					if err != nil || got.Filter != f {
						t.Errorf("Filter(%q) = %q, %v", f, got.Filter, err)
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestFailureDuringOtherCalls stops the process under a call that waits
// for the policy (the plugin runs one stage at a time).
func TestFailureDuringOtherCalls(t *testing.T) {
	rt := load(t, processrt.Options{Timeout: time.Second})
	pid := pidOf(t, rt)
	errs := make(chan error, 1)
	go func() {
		_, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(loop=forever)"})
		errs <- err
	}()
	time.Sleep(500 * time.Millisecond)
	_, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(cn=waiting)"})
	if err == nil {
		t.Fatal("the waiting call did not fail")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "the plugin process was stopped: another call was stopped after the timeout of 1s") &&
		!strings.Contains(err.Error(), "stopped after the timeout of 1s") {
		t.Errorf("waiting call: %v", err)
	}
	if err := <-errs; err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("looping call: %v", err)
	}
	waitGone(t, pid, false)
	if next := pidOf(t, rt); next == pid {
		t.Error("the looping process serves on")
	}
}

func TestInvalidUTF8(t *testing.T) {
	rt := load(t, processrt.Options{})
	pid := pidOf(t, rt)
	es := runtimetest.Entries(3)
	es[2].Attributes["displayname"] = []string{"ok", "Caf\xe9"}
	_, err := rt.Map(context.Background(), sdk.MapRequest{Domain: runtimetest.Domain, Entries: es})
	want := `policy "test" (testpolicy): map: value 1 of attribute "displayname" of entry "CN=User 2,OU=People,DC=example,DC=com" is not valid UTF-8`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want it to start with %s", err, want)
	}
	if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(cn=\xff)"}); err == nil || !strings.Contains(err.Error(), "filter: encoding the request: ") {
		t.Errorf("Filter error %v", err)
	}
	if pidOf(t, rt) != pid {
		t.Error("a request that could not be sent replaced the process")
	}
}

// TestLoadErrors checks that what cannot serve as a plugin is refused at
// load with a one-line error, and that nothing is left running.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sum := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	zeros := strings.Repeat("0", 64)
	for _, tc := range []struct {
		name string
		path string
		opts processrt.Options
		want string // the error after `policy "test" (file): `
	}{
		{name: "missing", path: filepath.Join(dir, "nothing"),
			want: "stat " + filepath.Join(dir, "nothing") + ": no such file or directory"},
		{name: "directory", path: dir, want: dir + " is a directory, not a plugin program"},
		{name: "not executable", path: write("plain", "#!/bin/sh\n", 0o644),
			want: filepath.Join(dir, "plain") + " is not executable"},
		{name: "wasm module", path: write("policy.wasm", "\x00asm\x01\x00\x00\x00", 0o755),
			want: `a WebAssembly module, not a plugin program: declare it with runtime = "wasm"`},
		{name: "prints something else", path: write("hello", "#!/bin/sh\necho hello\nsleep 30\n", 0o755),
			want: `not a dirsync policy plugin: it wrote "hello" where the go-plugin handshake belongs`},
		{name: "exits at once", path: write("oops", "#!/bin/sh\necho oops >&2\nexit 4\n", 0o755),
			want: `the program exited before the go-plugin handshake: exit status 4: oops`},
		{name: "never completes the handshake", path: sleeper, opts: processrt.Options{StartTimeout: 500 * time.Millisecond},
			want: `no go-plugin handshake within the start timeout of 500ms: is it a dirsync policy plugin (a main package that calls sdk.Main)?`},
		{name: "checksum mismatch", path: testPlugin, opts: processrt.Options{SHA256: zeros},
			want: fmt.Sprintf("sha256 mismatch: the file has %s, the manifest pins %s; refusing to start it", sum(testPlugin), zeros)},
		{name: "checksum not hex", path: testPlugin, opts: processrt.Options{SHA256: "abc"},
			want: `sha256 "abc" is not a SHA-256 in hex (64 hex digits)`},
		{name: "wrong ABI major in the handshake", path: abi2Plugin,
			want: fmt.Sprintf("ABI version 2.x is not supported by this host (ABI %d.%d): rebuild the policy with a matching dirsync sdk", sdk.ABIMajor, sdk.ABIMinor)},
		{name: "wrong ABI major in Info", path: claimsABI2,
			want: fmt.Sprintf("ABI version 2.%d is not supported by this host (ABI %d.%d): rebuild the policy with a matching dirsync sdk", sdk.ABIMinor, sdk.ABIMajor, sdk.ABIMinor)},
		{name: "config refused", path: testPlugin, opts: processrt.Options{Config: map[string]any{"fail": "no such setting"}},
			want: "configure: no such setting"},
		{name: "config not representable", path: testPlugin, opts: processrt.Options{Config: map[string]any{"f": func() {}}},
			want: `config: config key "f": unsupported value type func()`},
		{name: "no policy registered", path: unregistered,
			want: "info: no policy registered: call sdk.Register from an init function of the plugin's main package"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(filepath.Join(filepath.Dir(tc.path), "sleeper.pid"))
			opts := tc.opts
			opts.Name = "test"
			rt, err := processrt.Load(context.Background(), tc.path, opts)
			if err == nil {
				rt.Close(context.Background())
				t.Fatal("loaded")
			}
			t.Log(err)
			if want := fmt.Sprintf("policy %q (%s): %s", "test", filepath.Base(tc.path), tc.want); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error\n%s\nwant it to start with\n%s", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q has more than one line", err)
			}
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(tc.path), "sleeper.pid")); err == nil {
				pid, _ := strconv.Atoi(string(b))
				waitGone(t, pid, false)
			}
			noChildren(t)
		})
	}
}

// TestSHA256Pin loads a pinned program.
func TestSHA256Pin(t *testing.T) {
	b, err := os.ReadFile(testPlugin)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	for _, pin := range []string{hex.EncodeToString(s[:]), "sha256:" + strings.ToUpper(hex.EncodeToString(s[:]))} {
		rt := load(t, processrt.Options{SHA256: pin})
		pidOf(t, rt)
	}
}

func TestClose(t *testing.T) {
	rt := load(t, processrt.Options{})
	pid := pidOf(t, rt)
	if err := rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, false)
	noChildren(t)
	_, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(cn=x)"})
	if want := `policy "test" (testpolicy): filter: the runtime is closed`; err == nil || err.Error() != want {
		t.Errorf("call after Close: %v, want %s", err, want)
	}
	if err := rt.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseDuringCall closes the runtime while a call runs: Close waits as
// long as its context allows, then stops the process, which fails the call.
func TestCloseDuringCall(t *testing.T) {
	rt := load(t, processrt.Options{})
	pid := pidOf(t, rt)
	errs := make(chan error, 1)
	go func() {
		_, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(loop=forever)"})
		errs <- err
	}()
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rt.Close(ctx)
	err := <-errs
	if want := `policy "test" (testpolicy): filter: the plugin process was stopped: the runtime was closed`; err == nil || err.Error() != want {
		t.Errorf("call under Close: %v, want %s", err, want)
	}
	waitGone(t, pid, false)
	noChildren(t)
}

// TestRestartAfterCrashBetweenCalls kills the plugin process between calls:
// the next call starts a new one.
func TestRestartAfterCrashBetweenCalls(t *testing.T) {
	rt := load(t, processrt.Options{})
	pid := pidOf(t, rt)
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	// The call may find the process gone, or be the one that finds out.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(pid=?)"})
		if err == nil {
			if resp.Filter == fmt.Sprintf("(pid=%d)", pid) {
				t.Fatal("the killed process answered")
			}
			break
		}
		t.Log(err)
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	waitGone(t, pid, false)
}

// TestEnvironment checks that the plugin does not see the host's
// environment, which may hold secrets.
func TestEnvironment(t *testing.T) {
	t.Setenv("DIRSYNC_TEST_SECRET", "s3cret")
	rt := load(t, processrt.Options{})
	for name, want := range map[string]string{"DIRSYNC_TEST_SECRET": "", "PATH": os.Getenv("PATH")} {
		resp, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(env=" + name + ")"})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(strings.TrimPrefix(resp.Filter, "(env="), ")"); got != want {
			t.Errorf("the plugin sees %s=%q, want %q", name, got, want)
		}
	}
}

// recorder is a slog handler that keeps the records it gets.
type recorder struct {
	mu      sync.Mutex
	records []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	s := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		s += " " + a.String()
		return true
	})
	r.mu.Lock()
	r.records = append(r.records, s)
	r.mu.Unlock()
	return nil
}

// waitFor waits for a record that matches re.
func (r *recorder) waitFor(t *testing.T, re string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		for _, s := range r.records {
			if regexp.MustCompile(re).MatchString(s) {
				r.mu.Unlock()
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("no log record matches %s; records:\n%s", re, strings.Join(r.records, "\n"))
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// TestLogs checks that what the plugin writes reaches the host's logger.
func TestLogs(t *testing.T) {
	rec := &recorder{}
	rt := load(t, processrt.Options{Logger: slog.New(rec)})
	for _, f := range []string{"(stderr=hello on stderr)", "(stdout=hello on stdout)", "(log=hello from log)"} {
		if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: f}); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, `^INFO hello on stderr stream=stderr$`)
	rec.waitFor(t, `^INFO hello on stdout stream=stdout$`)
	rec.waitFor(t, `^DEBUG \S+ \S+ hello from log stream=stderr$`) // the process's own stderr
	rec.waitFor(t, `^DEBUG plugin address stream=stderr`)          // go-plugin's log in the plugin
	rec.waitFor(t, `^DEBUG plugin started logger=go-plugin`)
	// What the Go runtime prints when the process crashes, and go-plugin's
	// word on it, are for debugging: the call's error reports the crash.
	rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(goroutine-panic=yes)"})
	rec.waitFor(t, `^DEBUG panic: in a goroutine stream=stderr$`)
	rec.waitFor(t, `^DEBUG plugin process exited logger=go-plugin .*error="?exit status 2`)
}

// TestNoOrphanWhenHostIsKilled kills a host process that runs a plugin:
// the plugin goes too.
func TestNoOrphanWhenHostIsKilled(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no process groups or parent-death signal")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// The killed host cannot remove its plugin's socket directory: make it
	// in a directory the test removes.
	cmd.Env = append(os.Environ(), hostHelperEnv+"="+testPlugin, "TMPDIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("reading the plugin's pid from the host: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("host printed %q", line)
	}
	if gone(pid, false) {
		t.Fatalf("plugin %d is not running", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitGone(t, pid, true)
	// On Linux this process is a subreaper once it has started a plugin:
	// then the orphaned plugin is its child, to reap.
	if ppid(pid) == os.Getpid() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Wait()
		}
	}
}

// hostHelper is a host that loads the plugin at path, prints its process
// id, and waits to be killed.
func hostHelper(path string) {
	rt, err := processrt.Load(context.Background(), path, processrt.Options{Name: "orphan"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(pid=?)"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(strings.TrimSuffix(strings.TrimPrefix(resp.Filter, "(pid="), ")"))
	time.Sleep(time.Hour)
}

// TestRunByHand runs a plugin program without the host: it says what it is
// in one line and exits with status 1.
func TestRunByHand(t *testing.T) {
	var stderr bytes.Buffer
	cmd := exec.Command(testPlugin)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("run by hand: %v, want exit status 1", err)
	}
	want := fmt.Sprintf(`testpolicy: the dirsync policy plugin "testpolicy" 1.0.0 (ABI %d.%d), not meant to be run by hand: dirsync starts it when plugin.toml declares it with runtime = "process"`+"\n", sdk.ABIMajor, sdk.ABIMinor)
	if stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}
