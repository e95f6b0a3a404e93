package processrt_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/processrt"
	"github.com/dirsync/dirsync/host/internal/testpolicy/runtimetest"
	"github.com/dirsync/dirsync/sdk"
)

// ppid returns a process's parent from /proc, or 0.
func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// spawn asks the spawner plugin to start a process by filter and returns
// its pid, which must be running.
func spawn(t *testing.T, rt policy.Runtime, filter string) int {
	t.Helper()
	resp, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: filter})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(resp.Filter, "(child="), ")"))
	if err != nil {
		t.Fatalf("Filter %s = %q", filter, resp.Filter)
	}
	if gone(pid, false) {
		t.Fatalf("%s: process %d is not running", filter, pid)
	}
	return pid
}

// goneSoon fails the test unless the processes end, and are reaped (no
// zombie), within 3 seconds.
func goneSoon(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for !gone(pid, false) {
			if time.Now().After(deadline) {
				t.Errorf("process %d is still there (state %s, parent %d)", pid, processState(pid), ppid(pid))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestDescendantsEnd checks that the processes a plugin starts in sessions
// of their own (out of its process group, which the host kills) end with
// it, and are reaped: when a call's timeout kills it, when the runtime is
// closed, and when it crashes by itself.
func TestDescendantsEnd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux tracks a plugin's descendants outside its process group")
	}
	loadSpawner := func(t *testing.T) policy.Runtime {
		rt, err := processrt.Load(context.Background(), spawner, processrt.Options{Name: "spawner", Timeout: time.Minute, Config: runtimetest.Config})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Close(context.Background()) })
		return rt
	}
	// daemon starts an orphaned process, which the host adopts.
	daemon := func(t *testing.T, rt policy.Runtime) int {
		t.Helper()
		pid := spawn(t, rt, "(daemon=yes)")
		if got := ppid(pid); got != os.Getpid() {
			t.Errorf("the daemon's parent is %d, want the host (%d): the host is no subreaper", got, os.Getpid())
		}
		return pid
	}

	t.Run("killed at a deadline", func(t *testing.T) {
		rt := loadSpawner(t)
		plugin := pidOf(t, rt)
		pids := []int{spawn(t, rt, "(setsid=yes)"), spawn(t, rt, "(setsid=noenv)"), daemon(t, rt)}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if _, err := rt.Filter(ctx, sdk.FilterRequest{Filter: "(loop=forever)"}); err == nil {
			t.Fatal("no error")
		}
		goneSoon(t, append(pids, plugin)...)
		pidOf(t, rt) // a new process serves
	})
	t.Run("closed", func(t *testing.T) {
		rt := loadSpawner(t)
		plugin := pidOf(t, rt)
		pids := []int{spawn(t, rt, "(setsid=yes)"), spawn(t, rt, "(setsid=noenv)"), daemon(t, rt)}
		if err := rt.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		goneSoon(t, append(pids, plugin)...)
		noChildren(t)
	})
	t.Run("crashed", func(t *testing.T) {
		// Its descendants that kept its environment are still known after
		// it ended (one that cleared it and left its session is not).
		rt := loadSpawner(t)
		plugin := pidOf(t, rt)
		pids := []int{spawn(t, rt, "(setsid=yes)"), daemon(t, rt)}
		if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(exit=3)"}); err == nil {
			t.Fatal("no error")
		}
		goneSoon(t, append(pids, plugin)...)
		pidOf(t, rt)
	})
	noChildren(t)
}
