// Command bench measures dirsync's syncs of a generated directory against
// the floor for reading it: ldapsearch with paging over the same entries
// from the same throwaway slapd (with syncprov), in the same run. It takes
// the runtimes (builtin, wasm, process) in turn for -rounds rounds and ends
// with the medians, each against the floor and against builtin. Every
// runtime syncs into the embedded SQLite store; "postgres" (in -runtimes by
// default) is the builtin runtime syncing into a throwaway PostgreSQL
// server instead, the store's column beside SQLite's. `make bench` runs it.
//
// Each round, for each runtime, on a fresh store:
//
//   - first sync (empty store): `dirsync sync`;
//
//   - unchanged full resync: `dirsync sync --full`, nothing changed;
//
//   - for wasm and process, the same with the map cache removed;
//
//   - unchanged delta resync: `dirsync sync`, nothing changed (it must
//     read a delta);
//
//   - -changes users' displayName changed (one go-ldap connection as the
//     rootdn, outside the measured time), then a delta `dirsync sync`;
//
//   - for the runtimes of -live-runtimes: `dirsync serve` with live = true
//     on the same config and store, then -live-changes changes of one
//     user's displayName, one at a time; each is timed from the modify
//     returning to the new display name being committed in the store,
//     which the bench reads read-only (SQLite, every 5 ms).
//
//     go run ./host/internal/cmd/bench -n 100000 -dirsync bin/dirsync \
//     -wasm plugins/standard/standard.wasm -plugin plugins/standard/standard
package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/pgtest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/postgres"
	"github.com/dirsync/dirsync/host/store/sqlite" // also registers the "sqlite" database/sql driver
)

const filter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"

// pollEvery is how often the live part reads the store for a change.
const pollEvery = 5 * time.Millisecond

type options struct {
	n, rounds         int
	bin, wasm, plugin string
	runtimes          []string
	liveRuntimes      []string
	changes           int // users changed before the "changed" delta run
	liveChanges       int // changes made one at a time to dirsync serve
	sessionLog        int // slapd's syncprov-sessionlog
	wasmMemMB         int
	liveChangeTimeout time.Duration
	serveStartTimeout time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 100000, "users to generate (groups: n/100)")
	flag.StringVar(&o.bin, "dirsync", "bin/dirsync", "the dirsync binary")
	flag.StringVar(&o.wasm, "wasm", "plugins/standard/standard.wasm", "the standard policy module")
	flag.StringVar(&o.plugin, "plugin", "plugins/standard/standard", "the standard policy as a native plugin program")
	runtimes := flag.String("runtimes", "builtin,wasm,process,postgres", "policy runtimes to measure, comma-separated (postgres: builtin into a PostgreSQL store)")
	liveRuntimes := flag.String("live-runtimes", "builtin,wasm", "runtimes (of -runtimes, SQLite stores only) whose live latency is measured with dirsync serve")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of syncs with every runtime; the summary shows medians")
	flag.IntVar(&o.changes, "changes", 1000, "users whose displayName is changed before the measured delta run")
	flag.IntVar(&o.liveChanges, "live-changes", 0, "changes made one at a time to a live dirsync serve (0: 100, or 10 above 200,000 users)")
	flag.IntVar(&o.sessionLog, "sessionlog", 10000, "slapd's syncprov-sessionlog (0: none, a delta's unchanged entries come as a present phase)")
	flag.IntVar(&o.wasmMemMB, "wasm-memory-mb", 0, "the wasm policy's memory_limit_mb (0: 1024, or 3072 above 200,000 users)")
	flag.Parse()
	o.runtimes = strings.Split(*runtimes, ",")
	for _, rt := range strings.Split(*liveRuntimes, ",") {
		if rt != "" && slices.Contains(o.runtimes, rt) {
			if rt == "postgres" {
				fmt.Fprintln(os.Stderr, "bench: -live-runtimes: postgres is not measured live (the latency is read from a SQLite store)")
				os.Exit(2)
			}
			o.liveRuntimes = append(o.liveRuntimes, rt)
		}
	}
	big := o.n > 200000
	if o.liveChanges == 0 {
		o.liveChanges = 100
		if big {
			o.liveChanges = 10
		}
	}
	if o.wasmMemMB == 0 {
		o.wasmMemMB = 1024
		if big {
			o.wasmMemMB = 3072
		}
	}
	o.changes = min(o.changes, o.n)
	o.liveChangeTimeout = 60 * time.Second
	o.serveStartTimeout = 5 * time.Minute
	if big {
		o.liveChangeTimeout = 5 * time.Minute
		o.serveStartTimeout = 20 * time.Minute
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dirsync-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.bin, _ = filepath.Abs(o.bin)
	o.wasm, _ = filepath.Abs(o.wasm)
	o.plugin, _ = filepath.Abs(o.plugin)

	srv, err := startDirectory(ctx, dir, o)
	if err != nil {
		return err
	}
	defer srv.Close()
	pw := filepath.Join(dir, "admin.pw")
	os.WriteFile(pw, []byte(srv.AdminPassword), 0o600)

	// The floor: ldapsearch with paging dumps the same entries (into a
	// pipe that the bench drains).
	ldapsearch := func() (time.Duration, error) {
		cmd := exec.Command("ldapsearch", "-x", "-LLL", "-H", srv.URL, "-D", srv.AdminDN, "-y", pw,
			"-b", srv.BaseDN, "-E", "pr=1000/noprompt", filter)
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		t := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("ldapsearch: %v: %s", err, stderr.String())
		}
		return time.Since(t), nil
	}
	ldapsearch() // warm slapd's caches as every later read will find them
	floor, err := ldapsearch()
	if err != nil {
		return err
	}
	fmt.Printf("%-44s %8s\n", "ldapsearch -E pr=1000 (floor)", floor.Round(time.Millisecond))

	var pg *pgtest.Server
	if slices.Contains(o.runtimes, "postgres") {
		var stop func()
		if pg, stop, err = pgtest.StartMain(); err != nil {
			return err
		}
		defer stop()
		fmt.Printf("PostgreSQL %s on %s:%d\n", pg.Version, pg.Host, pg.Port)
	}
	configs := map[string]string{}
	for _, rt := range o.runtimes {
		if configs[rt], err = setup(filepath.Join(dir, rt), rt, o, srv, pw); err != nil {
			return err
		}
		// Compile the module into the cache outside the measured runs, as
		// a deployed host has it.
		if rt == "wasm" {
			exec.Command(o.bin, "--config", configs[rt], "filter", "check", "(cn=x)").Run()
		}
	}
	fmt.Printf("a round, for each runtime on a fresh store: %s; %s; %s (wasm, process); %s; %s (%d users' displayName changed beforehand, one go-ldap connection as the rootdn, not timed)",
		kFirst, kFull, kFullNoCache, kDelta, kChanged, o.changes)
	if len(o.liveRuntimes) > 0 {
		fmt.Printf("; then for %s: dirsync serve with live = true on the same store, %d changes of one user's displayName one at a time, each timed from the modify returning to the new name committed in the store (read-only SQLite read every %s)",
			strings.Join(o.liveRuntimes, ", "), o.liveChanges, pollEvery)
	}
	fmt.Printf("\nRSS: the dirsync process's peak (a plugin process not included)\n")

	// Rounds take the runtimes in turn, so that what the machine does
	// meanwhile (the kernel writing back the last store, another process)
	// falls on each alike; the summary shows medians.
	m := &measures{o: o, runs: map[runKey][]sample{}, live: map[string][]time.Duration{}, liveRSS: map[string]int64{},
		liveStages: map[string][]stageTimes{}, floors: []time.Duration{floor}}
	for round := 1; round <= o.rounds; round++ {
		if round > 1 {
			if floor, err = ldapsearch(); err != nil {
				return err
			}
			m.floors = append(m.floors, floor)
			fmt.Printf("\nround %d; floor %s\n", round, floor.Round(time.Millisecond))
		}
		for _, rt := range o.runtimes {
			if err := m.syncs(ctx, rt, configs[rt], round, floor, srv, pg); err != nil {
				return fmt.Errorf("%s, round %d: %w", rt, round, err)
			}
			if slices.Contains(o.liveRuntimes, rt) {
				if err := m.liveRun(ctx, rt, configs[rt], round, srv); err != nil {
					return fmt.Errorf("%s live, round %d: %w", rt, round, err)
				}
			}
		}
	}
	m.printMedians()
	m.printTargets()
	if len(m.problems) > 0 {
		fmt.Printf("\nproblems seen:\n")
		for _, p := range m.problems {
			fmt.Printf("  - %s\n", p)
		}
		// The figures above are printed, but they may not measure what
		// their labels say: make bench fails.
		return fmt.Errorf("%d problems seen (above)", len(m.problems))
	}
	return nil
}

// startDirectory generates n users and n/100 groups and loads them into a
// new slapd.
func startDirectory(ctx context.Context, dir string, o options) (*slapd.Server, error) {
	fmt.Printf("generating %d users and %d groups…\n", o.n, max(1, o.n/100))
	ldif := filepath.Join(dir, "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		return nil, err
	}
	if err := slapd.GenerateDirectory(f, slapd.GenOptions{Users: o.n, WithBase: true}); err != nil {
		return nil, err
	}
	f.Close()
	t0 := time.Now()
	maxSize := int64(16 << 30)
	if need := int64(o.n) * 40 << 10; need > maxSize { // ample: ~5 KiB an entry is used
		maxSize = need
	}
	srv, err := slapd.Start(ctx, slapd.Options{LDIF: []string{ldif}, LogLevel: "none", StartTimeout: 20 * time.Minute,
		MaxSize: maxSize, SyncSessionLog: o.sessionLog})
	if err != nil {
		return nil, err
	}
	os.Remove(ldif)
	fmt.Printf("loaded into slapd in %s (%s; syncprov, sessionlog %d, mdb maxsize %d GiB)\n\n", time.Since(t0).Round(time.Millisecond),
		srv.URL, o.sessionLog, maxSize>>30)
	return srv, nil
}

// Kinds of measured syncs.
const (
	kFirst       = "first sync (empty store)"
	kFull        = "unchanged full resync (--full)"
	kFullNoCache = "unchanged full, no map cache"
	kDelta       = "unchanged delta resync"
	kChanged     = "changed users, delta resync"
)

var kinds = []string{kFirst, kFull, kFullNoCache, kDelta, kChanged}

// runKey names the syncs of one runtime of one kind.
type runKey struct{ rt, what string }

// sample is one measured sync.
type sample struct {
	d, policy time.Duration
	rss       int64
	floor     time.Duration
}

// measures are the times of the syncs of every round.
type measures struct {
	o          options
	runs       map[runKey][]sample
	live       map[string][]time.Duration // latencies of every round, by runtime
	liveRSS    map[string]int64           // dirsync serve's peak RSS, the most of any round
	liveStages map[string][]stageTimes    // of serve's runs
	floors     []time.Duration            // of ldapsearch, once a round
	problems   []string
}

func (m *measures) problem(format string, a ...any) {
	p := fmt.Sprintf(format, a...)
	m.problems = append(m.problems, p)
	fmt.Printf("  !! %s\n", p)
}

var (
	reDelta  = regexp.MustCompile(`read as a delta(?: \((\d+) changed, (\d+) gone|(: nothing changed))`)
	reRead   = regexp.MustCompile(`: (\d+) entries(?: read;|, read as a delta)`)
	reCounts = regexp.MustCompile(`created (\d+), updated (\d+), deleted (\d+)`)
)

// syncs runs the syncs of one round with runtime rt and the config in
// config, on a fresh store, and prints and records their times.
func (m *measures) syncs(ctx context.Context, rt, config string, round int, floor time.Duration, srv *slapd.Server, pg *pgtest.Server) error {
	rdir := filepath.Dir(config)
	if err := freshStore(ctx, rdir, m.o.n, pg); err != nil {
		return err
	}
	for _, what := range kinds {
		args := []string{"--config", config, "sync", "--domain", "example.com"}
		label := what
		switch what {
		case kFull:
			args = append(args, "--full")
		case kFullNoCache:
			// The map cache makes a full resync of a wasm or process
			// policy skip Map; this one shows its cost.
			if rt == "builtin" || rt == "postgres" {
				continue
			}
			os.RemoveAll(filepath.Join(rdir, "cache", "mapcache"))
			args = append(args, "--full")
		case kChanged:
			label = fmt.Sprintf("%d users changed, delta resync", m.o.changes)
			t, err := changeUsers(srv, m.o.changes, m.o.n, fmt.Sprintf("Batch %s r%d", rt, round))
			if err != nil {
				return err
			}
			fmt.Printf("  (%d users' displayName changed in %s, not timed)\n", m.o.changes, t.Round(time.Millisecond))
		}
		d, rss, out, err := timeRun(m.o.bin, args...)
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", what, err, out)
		}
		st := stages(out)
		k := runKey{rt, what}
		m.runs[k] = append(m.runs[k], sample{d: d, policy: st["policy"], rss: rss, floor: floor})
		read := "read full"
		if dm := reDelta.FindStringSubmatch(out); dm != nil {
			read = fmt.Sprintf("read delta (%s changed, %s gone)", dm[1], dm[2])
			if dm[3] != "" {
				read = "read delta (nothing changed: the short path)"
			}
		}
		if rm := reRead.FindStringSubmatch(out); rm != nil {
			read += ", " + rm[1] + " entries"
		}
		upd := ""
		if cm := reCounts.FindStringSubmatch(out); cm != nil {
			upd = fmt.Sprintf(", +%s ~%s -%s", cm[1], cm[2], cm[3])
		}
		fmt.Printf("%-44s %8s  %5.2fx floor  RSS %4d MB  %s  %s  [%s%s]\n", rt+": "+label, d.Round(time.Millisecond),
			float64(d)/float64(floor), rss>>20, st, st.rest(d), read, upd)
		switch what {
		case kDelta, kChanged:
			if !strings.HasPrefix(read, "read delta") {
				m.problem("%s round %d, %s: the report does not say it read a delta; its output ends:\n%s", rt, round, label, tail(out, 3))
			}
		case kFirst, kFull, kFullNoCache:
			if strings.HasPrefix(read, "read delta") {
				m.problem("%s round %d, %s: the run read a delta, not in full; its output ends:\n%s", rt, round, label, tail(out, 3))
			}
		}
		if what == kChanged {
			if cm := reCounts.FindStringSubmatch(out); cm == nil || cm[2] != strconv.Itoa(m.o.changes) {
				m.problem("%s round %d, %s: want %d mailboxes updated: %s", rt, round, label, m.o.changes, lastLine(out))
			}
		}
	}
	return nil
}

// changeUsers sets a new displayName on count users spread over the
// directory, through one connection as the rootdn, and returns how long
// that took.
func changeUsers(srv *slapd.Server, count, n int, tag string) (time.Duration, error) {
	c, err := srv.Dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	t0 := time.Now()
	step := max(1, n/max(1, count))
	for j := 0; j < count; j++ {
		u := 1 + (j*step)%n
		if err := setDisplayName(c, srv, u, fmt.Sprintf("%s u%d", tag, u)); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

func userDN(srv *slapd.Server, u int) string {
	return fmt.Sprintf("cn=user%06d,ou=People,ou=Generated,%s", u, srv.BaseDN)
}

func setDisplayName(c *ldap.Conn, srv *slapd.Server, u int, name string) error {
	req := ldap.NewModifyRequest(userDN(srv, u), nil)
	req.Replace("displayName", []string{name})
	if err := c.Modify(req); err != nil {
		return fmt.Errorf("modify %s: %w", userDN(srv, u), err)
	}
	return nil
}

// liveRun starts dirsync serve with live = true on the store of config,
// which the syncs of the round left with a kept state, and times changes
// made one at a time until each is committed in the store.
func (m *measures) liveRun(ctx context.Context, rt, config string, round int, srv *slapd.Server) error {
	rdir := filepath.Dir(config)
	text, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	s := strings.Replace(string(text), "policy = \"standard\"\n", "policy = \"standard\"\nlive = true\ninterval = \"1h\"\n", 1)
	s += fmt.Sprintf("\n[api]\nlisten = %q\n", listen)
	serveCfg := filepath.Join(rdir, "serve.toml")
	if err := os.WriteFile(serveCfg, []byte(s), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(rdir, fmt.Sprintf("serve-r%d.log", round))
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(m.o.bin, "--config", serveCfg, "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-done
		}
	}
	defer stop()
	serveLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	for !strings.Contains(serveLog(), "live search open") {
		select {
		case <-done:
			return fmt.Errorf("dirsync serve exited (%v) before its live search opened:\n%s", waitErr, serveLog())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(t0) > m.o.serveStartTimeout {
			return fmt.Errorf("no live search after %s:\n%s", m.o.serveStartTimeout, serveLog())
		}
	}
	opened := time.Since(t0)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(rdir, "dirsync.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	q, err := db.PrepareContext(ctx, "SELECT display_name FROM mailboxes WHERE domain = 'example.com' AND primary_address = ?")
	if err != nil {
		return err
	}
	defer q.Close()
	c, err := srv.Dial()
	if err != nil {
		return err
	}
	defer c.Close()

	// change sets user u's displayName and waits for it in the store.
	change := func(u int, name string) (time.Duration, error) {
		if err := setDisplayName(c, srv, u, name); err != nil {
			return 0, err
		}
		t := time.Now()
		addr := fmt.Sprintf("user%06d@example.com", u)
		for {
			var got string
			if err := q.QueryRowContext(ctx, addr).Scan(&got); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return 0, err
			}
			if got == name {
				return time.Since(t), nil
			}
			select {
			case <-done:
				return 0, fmt.Errorf("dirsync serve exited (%v):\n%s", waitErr, tail(serveLog(), 40))
			default:
			}
			if time.Since(t) > m.o.liveChangeTimeout {
				return 0, fmt.Errorf("%s's new display name %q not in the store after %s:\n%s", addr, name, m.o.liveChangeTimeout, tail(serveLog(), 40))
			}
			time.Sleep(pollEvery)
		}
	}
	// A first change, not counted, that also waits out whatever serve does
	// at its start.
	n := m.o.n
	warm, err := change(1+n/2, fmt.Sprintf("Live %s r%d warm-up", rt, round))
	if err != nil {
		return err
	}
	runsBefore := strings.Count(serveLog(), `msg="sync done"`)
	var lat []time.Duration
	step := max(1, n/m.o.liveChanges)
	for j := 0; j < m.o.liveChanges; j++ {
		u := 1 + (j*step+step/2)%n // not the users of the batch change
		d, err := change(u, fmt.Sprintf("Live %s r%d c%d", rt, round, j))
		if err != nil {
			return err
		}
		lat = append(lat, d)
	}
	var rss int64
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err == nil {
		rss = vmHWM(string(b))
	}
	stop()
	log := serveLog()
	m.live[rt] = append(m.live[rt], lat...)
	m.liveRSS[rt] = max(m.liveRSS[rt], rss)
	var sts []stageTimes
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="sync done"`) {
			sts = append(sts, stages(line))
		}
	}
	if len(sts) > runsBefore {
		sts = sts[runsBefore:]
	} else {
		sts = nil
	}
	m.liveStages[rt] = append(m.liveStages[rt], sts...)
	s50, s99 := percentile(lat, 0.50), percentile(lat, 0.99)
	fmt.Printf("%-44s p50 %s  p99 %s  max %s  RSS %4d MB  (live search open %s after start; warm-up change %s; %d runs for %d changes; their median %s)\n",
		rt+": live, "+strconv.Itoa(len(lat))+" changes", s50.Round(time.Millisecond), s99.Round(time.Millisecond),
		slices.Max(lat).Round(time.Millisecond), rss>>20, opened.Round(time.Millisecond), warm.Round(time.Millisecond),
		len(sts), len(lat), medianStages(sts))
	if c := strings.Count(log, "live search ended; reconnecting"); c > 0 {
		m.problem("%s round %d live: the live search reconnected %d times", rt, round, c)
	}
	if c := strings.Count(log, "level=WARN") + strings.Count(log, "level=ERROR"); c > 0 {
		m.problem("%s round %d live: %d warnings or errors in serve's log (%s)", rt, round, c, logPath)
		keepLog(logPath)
	}
	return nil
}

// keepLog copies a log out of the temporary directory, which is removed.
func keepLog(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	dst := filepath.Join(os.TempDir(), "dirsync-bench-"+filepath.Base(filepath.Dir(path))+"-"+filepath.Base(path))
	if os.WriteFile(dst, b, 0o644) == nil {
		fmt.Printf("  (serve's log kept in %s)\n", dst)
	}
}

func vmHWM(status string) int64 {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

func lastLine(s string) string { return tail(s, 1) }

// percentile is the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// printMedians prints the median times of each kind of sync and runtime,
// against the floor and the builtin runtime's.
func (m *measures) printMedians() {
	floor := median(m.floors)
	fmt.Printf("\nmedians of %d rounds (floor: median ldapsearch %s; x floor: the median sync over the median floor); RSS: the most of any round; policy: its calls' time, summed over concurrent calls\n",
		m.o.rounds, floor.Round(time.Millisecond))
	for _, what := range kinds {
		label := what
		if what == kChanged {
			label = fmt.Sprintf("%d users changed, delta resync", m.o.changes)
		}
		base := m.med(runKey{"builtin", what})
		if what == kFullNoCache {
			base = m.med(runKey{"builtin", kFull}) // builtin has no map cache
		}
		printed := false
		for _, rt := range m.o.runtimes {
			ss := m.runs[runKey{rt, what}]
			if len(ss) == 0 {
				continue
			}
			if !printed {
				fmt.Printf("%s:\n", label)
				printed = true
			}
			d := m.med(runKey{rt, what})
			vs := ""
			if rt != "builtin" && base > 0 {
				vs = fmt.Sprintf("  %+6.1f %% vs builtin", 100*(float64(d)/float64(base)-1))
			}
			var rss int64
			var pol []time.Duration
			for _, s := range ss {
				rss = max(rss, s.rss)
				pol = append(pol, s.policy)
			}
			fmt.Printf("  %-8s %9s  %6.2fx floor  RSS %5d MB  policy %8s%s\n", rt, d.Round(time.Millisecond),
				float64(d)/float64(floor), rss>>20, median(pol).Round(time.Millisecond), vs)
		}
	}
	if len(m.live) > 0 {
		fmt.Printf("live latency (dirsync serve, live = true: modify returned -> new displayName committed in the store, read-only SQLite polled every %s; all rounds' changes together):\n", pollEvery)
		for _, rt := range m.o.liveRuntimes {
			lat := m.live[rt]
			if len(lat) == 0 {
				continue
			}
			fmt.Printf("  %-8s p50 %8s  p99 %8s  max %8s  (%d changes)  serve RSS %5d MB  serve's runs: median %s\n", rt,
				percentile(lat, 0.5).Round(time.Millisecond), percentile(lat, 0.99).Round(time.Millisecond),
				slices.Max(lat).Round(time.Millisecond), len(lat), m.liveRSS[rt]>>20, medianStages(m.liveStages[rt]))
		}
	}
}

func (m *measures) med(k runKey) time.Duration {
	var ds []time.Duration
	for _, s := range m.runs[k] {
		ds = append(ds, s.d)
	}
	return median(ds)
}

// printTargets checks the medians against the targets: for
// 100,000 users and 1,000 groups (wasm), and for 1,000,000 users.
func (m *measures) printTargets() {
	floor := median(m.floors)
	type target struct {
		what  string
		limit float64
		unit  string // "x" of the floor, "s", "MB"
		got   func(rt string) (float64, bool)
	}
	ratio := func(kind string) func(string) (float64, bool) {
		return func(rt string) (float64, bool) {
			d := m.med(runKey{rt, kind})
			return float64(d) / float64(floor), d > 0
		}
	}
	secs := func(kind string) func(string) (float64, bool) {
		return func(rt string) (float64, bool) {
			d := m.med(runKey{rt, kind})
			return d.Seconds(), d > 0
		}
	}
	rssMB := func(rt string) (float64, bool) {
		var rss int64
		for k, ss := range m.runs {
			if k.rt == rt {
				for _, s := range ss {
					rss = max(rss, s.rss)
				}
			}
		}
		return float64(rss) / (1 << 20), rss > 0
	}
	liveP99 := func(rt string) (float64, bool) {
		lat := m.live[rt]
		return percentile(lat, 0.99).Seconds(), len(lat) > 0
	}
	var ts []target
	var title string
	if m.o.n >= 1000000 {
		title = "1,000,000 users"
		ts = []target{
			{"first sync", 2.5, "x", ratio(kFirst)},
			{"peak RSS (syncs from the CLI)", 1536, "MB", rssMB},
			{fmt.Sprintf("delta of %d changes", m.o.changes), 1, "s", secs(kChanged)},
		}
	} else {
		title = "100,000 users / 1,000 groups"
		if m.o.n != 100000 {
			title += fmt.Sprintf(" (this run: %d users, %d groups)", m.o.n, max(1, m.o.n/100))
		}
		ts = []target{
			{"first sync", 2.0, "x", ratio(kFirst)},
			{"unchanged delta", 0.2, "x", ratio(kDelta)},
			{"unchanged full", 1.5, "x", ratio(kFull)},
			{"peak RSS (syncs from the CLI)", 250, "MB", rssMB},
			{"live p99", 2, "s", liveP99},
		}
	}
	fmt.Printf("\ntargets for %s (the issue's are for wasm; builtin beside it):\n", title)
	for _, t := range ts {
		var parts []string
		for _, rt := range []string{"wasm", "builtin"} {
			v, ok := t.got(rt)
			if !ok {
				continue
			}
			f := func(x float64) string {
				switch t.unit {
				case "x":
					return fmt.Sprintf("%.2fx floor", x)
				case "s":
					return fmt.Sprintf("%.3f s", x)
				}
				return fmt.Sprintf("%.0f MB", x)
			}
			verdict := "met"
			if v > t.limit {
				verdict = fmt.Sprintf("MISSED by %s (%+.0f %%)", strings.TrimPrefix(f(v-t.limit), "+"), 100*(v/t.limit-1))
			}
			parts = append(parts, fmt.Sprintf("%s %s: %s", rt, f(v), verdict))
		}
		lim := map[string]string{"x": fmt.Sprintf("%.1fx floor", t.limit), "s": fmt.Sprintf("%g s", t.limit), "MB": fmt.Sprintf("%g MB", t.limit)}[t.unit]
		fmt.Printf("  %-32s <= %-12s %s\n", t.what, lim, strings.Join(parts, "; "))
	}
}

// setup writes the manifest and configuration of a runtime into rdir and
// returns the configuration's path.
func setup(rdir, rt string, o options, srv *slapd.Server, pw string) (string, error) {
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return "", err
	}
	manifest := "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"
	switch rt {
	case "wasm":
		manifest = fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = %q\nmemory_limit_mb = %d\ntimeout = \"600s\"\n", o.wasm, o.wasmMemMB)
	case "process":
		manifest = fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"process\"\npath = %q\ntimeout = \"600s\"\n", o.plugin)
	case "builtin", "postgres":
	default:
		return "", fmt.Errorf("unknown runtime %q", rt)
	}
	storeKeys := "driver = \"sqlite\"\ndsn = \"dirsync.db\""
	if rt == "postgres" {
		// freshStore writes the config from this template, with each
		// round's new database in place of @DSN@.
		storeKeys = "driver = \"postgres\"\ndsn = \"@DSN@\""
	}
	if err := os.WriteFile(filepath.Join(rdir, "plugin.toml"), []byte(manifest), 0o644); err != nil {
		return "", err
	}
	config := filepath.Join(rdir, "dirsync.toml")
	timeout := "120s"
	if o.n > 200000 {
		timeout = "600s"
	}
	text := fmt.Sprintf(`[store]
%s
[plugins]
manifest = "plugin.toml"
cache_dir = "cache"
[[domain]]
name = "example.com"
sync = true
policy = "standard"
  [domain.ldap]
  urls = [%q]
  bind_dn = %q
  password_file = %q
  base_dn = %q
  filter = %q
  timeout = %q
`, storeKeys, srv.URL, srv.AdminDN, pw, srv.BaseDN, filter, timeout)
	if rt != "postgres" { // ready before the first round (the wasm module's compile)
		if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
			return "", err
		}
	}
	return config, os.WriteFile(filepath.Join(rdir, "dirsync.toml.in"), []byte(text), 0o600)
}

// freshStore makes an empty store for the config of rdir (a new SQLite
// file, or a new database on pg), with a hand-made gateway group for every
// generated group (R4), writes the config, and drops the map cache.
func freshStore(ctx context.Context, rdir string, n int, pg *pgtest.Server) error {
	for _, f := range []string{"dirsync.db", "dirsync.db-wal", "dirsync.db-shm"} {
		os.Remove(filepath.Join(rdir, f))
	}
	os.RemoveAll(filepath.Join(rdir, "cache", "mapcache"))
	tmpl, err := os.ReadFile(filepath.Join(rdir, "dirsync.toml.in"))
	if err != nil {
		return err
	}
	var st store.Store
	if strings.Contains(string(tmpl), "@DSN@") {
		dsn, err := pg.CreateDatabase()
		if err != nil {
			return err
		}
		tmpl = []byte(strings.Replace(string(tmpl), "@DSN@", dsn, 1))
		if st, err = postgres.Open(ctx, dsn); err != nil {
			return err
		}
	} else if st, err = sqlite.Open(filepath.Join(rdir, "dirsync.db")); err != nil {
		return err
	}
	defer st.Close()
	if err := os.WriteFile(filepath.Join(rdir, "dirsync.toml"), tmpl, 0o600); err != nil {
		return err
	}
	for g := 0; g < max(1, n/100); g++ {
		if err := st.AddGroup(ctx, "example.com", fmt.Sprintf("group%05d", g)); err != nil {
			return err
		}
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// stageTimes are the times of a run's stages.
type stageTimes map[string]time.Duration

var stageNames = []string{"fetch", "policy", "diff", "apply"}

// stages picks the time of each stage from the "sync done" log line.
func stages(log string) stageTimes {
	st := stageTimes{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="sync done"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			if slices.Contains(stageNames, k) || k == "took" {
				st[k], _ = time.ParseDuration(v)
			}
		}
	}
	return st
}

// medianStages is the median of each stage (and of the whole run) over
// runs.
func medianStages(sts []stageTimes) string {
	if len(sts) == 0 {
		return "-"
	}
	med := stageTimes{}
	for _, k := range append([]string{"took"}, stageNames...) {
		var ds []time.Duration
		for _, st := range sts {
			ds = append(ds, st[k])
		}
		med[k] = median(ds)
	}
	return fmt.Sprintf("took %s  %s", med["took"], med)
}

// rest splits what the stages leave of a sync's wall time d: "in run",
// the rest of the host's own time for the run (took: reading the store's
// snapshot and the kept directory state, loading the policy and the map
// cache, encoding the state to keep), and "process", the rest of the
// process's life (start, config, opening the store, exit).
func (st stageTimes) rest(d time.Duration) string {
	took, ok := st["took"]
	if !ok {
		return "(no took)"
	}
	var sum time.Duration
	for _, k := range stageNames {
		sum += st[k]
	}
	return fmt.Sprintf("(rest: in run %s, process %s)", (took - sum).Round(time.Millisecond), (d - took).Round(time.Millisecond))
}

func (st stageTimes) String() string {
	var out []string
	for _, k := range stageNames {
		out = append(out, fmt.Sprintf("%s %s", k, st[k]))
	}
	return strings.Join(out, "  ")
}

// timeRun runs a command and returns its wall time, peak RSS in bytes and
// output.
func timeRun(name string, args ...string) (time.Duration, int64, string, error) {
	cmd := exec.Command(name, args...)
	t := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t)
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10 // KiB on Linux
	}
	return d, rss, string(out), err
}
