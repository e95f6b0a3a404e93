package processrt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A plugin's own child processes go with it, also those that leave its
// process group (setpgid) or its session (setsid), which the kill of the
// group misses. The host is a child subreaper (prctl
// PR_SET_CHILD_SUBREAPER), from its first plugin process on: a process
// whose parent ends is adopted by the host instead of by init, so a
// plugin's descendants stay below the host, and the host can reap them.
//
// When a plugin process stops, the host gathers its family from /proc:
//
//   - while the plugin process is there (it has not been reaped, so its
//     pid is still its own): every process below it, by parent links;
//   - the host's children that it did not start itself but adopted: those
//     in the plugin's process group (a group id stays reserved while a
//     process is in it), and those whose environment has the plugin's
//     tag (tagEnv, set in the plugin's environment and inherited by what
//     it starts), with everything below them.
//
// It kills them (SIGKILL), and once the plugin process is gone it reaps
// them with wait4 on their own pids, never on "any child": the exit
// statuses that os/exec waits for elsewhere in the host stay theirs. Each
// process is known by its pid and start time, so a pid that ended and was
// reused is never killed or reaped.
//
// Why not a cgroup per plugin: it would hold every descendant, but making
// one needs a delegated, writable cgroup v2 tree, which a daemon run as
// an ordinary user seldom has; the subreaper needs no privilege and no
// setup, on every Linux since 3.4.
//
// What this cannot catch: a descendant that left the plugin's session,
// cleared its environment, and lost its parent while the plugin still ran
// (or whose plugin ended by itself) carries nothing that ties it to the
// plugin; and a process adopted from another child of the host (the host
// being a subreaper) that exits stays a zombie, as nobody knows to wait
// for it.

// tagEnv is the variable of a plugin's environment that marks the
// processes it starts (the value is random, one per plugin process).
const tagEnv = "DIRSYNC_PLUGIN_TAG"

var subreaper struct {
	once sync.Once
	err  error
}

// becomeSubreaper makes the host process a child subreaper, once.
func becomeSubreaper() error {
	subreaper.once.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			subreaper.err = fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
		}
	})
	return subreaper.err
}

// family is the descendants of a plugin process: pid → start time (clock
// ticks since boot), which tells a process from a later one with its pid.
type family map[int]uint64

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	pid, ppid, pgrp int
	state           byte
	start           uint64
}

// readStat reads /proc/PID/stat; ok is false when there is no such
// process.
func readStat(pid int) (st procStat, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st, false
	}
	return parseStat(pid, b)
}

// parseStat parses "pid (comm) state ppid pgrp session … starttime …";
// comm may hold spaces and parentheses.
func parseStat(pid int, b []byte) (st procStat, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return st, false
	}
	st.pid, st.state = pid, f[0][0]
	var err1, err2, err3 error
	st.ppid, err1 = strconv.Atoi(string(f[1]))
	st.pgrp, err2 = strconv.Atoi(string(f[2]))
	st.start, err3 = strconv.ParseUint(string(f[19]), 10, 64)
	return st, errors.Join(err1, err2, err3) == nil
}

// allStats lists every process.
func allStats() []procStat {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	out := make([]procStat, 0, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid <= 0 {
			continue
		}
		if st, ok := readStat(pid); ok {
			out = append(out, st)
		}
	}
	return out
}

// hasTag reports whether the environment of process pid holds tagEnv=tag.
func hasTag(pid int, tag string) bool {
	if tag == "" {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	want := []byte(tagEnv + "=" + tag)
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

// gather adds the descendants of plugin process pid to f (see above).
// alive says that the process has not been reaped: its pid is its own.
// The plugin process itself is never a member.
func (f family) gather(pid int, alive bool, tag string) {
	if pid <= 0 {
		return
	}
	host := os.Getpid()
	stats := allStats()
	children := map[int][]procStat{}
	for _, st := range stats {
		children[st.ppid] = append(children[st.ppid], st)
	}
	var add func(st procStat)
	add = func(st procStat) {
		if st.pid == pid || st.pid == host {
			return
		}
		if _, ok := f[st.pid]; !ok {
			f[st.pid] = st.start
		}
		for _, c := range children[st.pid] {
			add(c)
		}
	}
	if alive {
		for _, c := range children[pid] {
			add(c)
		}
	}
	for _, c := range children[host] {
		if c.pid != pid && (c.pgrp == pid || hasTag(c.pid, tag)) {
			add(c)
		}
	}
}

// same reports whether process pid is still the one that started at
// start, and returns its state.
func same(pid int, start uint64) (procStat, bool) {
	st, ok := readStat(pid)
	return st, ok && st.start == start
}

// kill sends SIGKILL to every member that is still there. One that the
// host may not signal (a set-user-ID program) is left alone, and out of
// the family: reap would wait for it in vain.
func (f family) kill() {
	for pid, start := range f {
		if st, ok := same(pid, start); ok && st.state != 'Z' {
			if err := unix.Kill(pid, unix.SIGKILL); errors.Is(err, unix.EPERM) {
				delete(f, pid)
			}
		}
	}
}

// reap waits for the members to end and reaps those that are the host's
// children (all of them, once their parents are gone: the host is their
// subreaper), until deadline. It returns the pids still there.
func (f family) reap(deadline time.Time) []int {
	host := os.Getpid()
	for {
		for pid, start := range f {
			st, ok := same(pid, start)
			if !ok {
				delete(f, pid) // gone: reaped by its parent, or by us
				continue
			}
			if st.ppid != host {
				if _, parent := f[st.ppid]; !parent && st.state == 'Z' {
					delete(f, pid) // another's to reap (init's, without a subreaper)
				}
				continue // dying, or its parent is: then it comes to the host
			}
			var ws unix.WaitStatus
			switch got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); {
			case got == pid:
				delete(f, pid)
			case errors.Is(err, unix.ECHILD):
				delete(f, pid) // not the host's to wait for after all
			}
		}
		if len(f) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	left := make([]int, 0, len(f))
	for pid := range f {
		left = append(left, pid)
	}
	slices.Sort(left)
	return left
}
