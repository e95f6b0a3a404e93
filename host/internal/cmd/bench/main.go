// Command bench measures a full sync of a generated directory against the
// floor for reading it: ldapsearch with paging over the same entries from
// the same throwaway slapd, in the same run. It takes the runtimes (builtin,
// wasm, process) in turn for -rounds rounds and ends with the medians and
// each runtime's cost over builtin. Every runtime syncs into the embedded
// SQLite store; "postgres" (in -runtimes by default) is the builtin runtime
// syncing into a throwaway PostgreSQL server instead, the store's column
// beside SQLite's. `make bench` runs it.
//
//	go run ./host/internal/cmd/bench -n 100000 -dirsync bin/dirsync \
//		-wasm plugins/standard/standard.wasm -plugin plugins/standard/standard
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dirsync/dirsync/host/internal/pgtest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/postgres"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

const filter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"

func main() {
	n := flag.Int("n", 100000, "users to generate (groups: n/100)")
	bin := flag.String("dirsync", "bin/dirsync", "the dirsync binary")
	wasm := flag.String("wasm", "plugins/standard/standard.wasm", "the standard policy module")
	plugin := flag.String("plugin", "plugins/standard/standard", "the standard policy as a native plugin program")
	runtimes := flag.String("runtimes", "builtin,wasm,process,postgres", "policy runtimes to measure, comma-separated (postgres: builtin into a PostgreSQL store)")
	rounds := flag.Int("rounds", 3, "rounds of syncs with every runtime; the summary shows medians")
	flag.Parse()
	if err := run(*n, *rounds, *bin, *wasm, *plugin, strings.Split(*runtimes, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n, rounds int, bin, wasm, plugin string, runtimes []string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dirsync-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, _ = filepath.Abs(bin)
	wasm, _ = filepath.Abs(wasm)
	plugin, _ = filepath.Abs(plugin)

	srv, err := startDirectory(ctx, dir, n)
	if err != nil {
		return err
	}
	defer srv.Close()
	pw := filepath.Join(dir, "admin.pw")
	os.WriteFile(pw, []byte(srv.AdminPassword), 0o600)

	// The floor: ldapsearch with paging dumps the same entries.
	ldapsearch := func() (time.Duration, error) {
		cmd := exec.Command("ldapsearch", "-x", "-LLL", "-H", srv.URL, "-D", srv.AdminDN, "-y", pw,
			"-b", srv.BaseDN, "-E", "pr=1000/noprompt", filter)
		cmd.Stdout = nil
		t := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("ldapsearch: %v: %s", err, out)
		}
		return time.Since(t), nil
	}
	ldapsearch() // warm slapd's caches as every later read will find them
	floor, err := ldapsearch()
	if err != nil {
		return err
	}
	fmt.Printf("%-34s %8s\n", "ldapsearch -E pr=1000 (floor)", floor.Round(time.Millisecond))

	var pg *pgtest.Server
	if slices.Contains(runtimes, "postgres") {
		var stop func()
		if pg, stop, err = pgtest.StartMain(); err != nil {
			return err
		}
		defer stop()
		fmt.Printf("PostgreSQL %s on %s:%d\n", pg.Version, pg.Host, pg.Port)
	}
	configs := map[string]string{}
	for _, rt := range runtimes {
		if configs[rt], err = setup(filepath.Join(dir, rt), rt, wasm, plugin, srv, pw); err != nil {
			return err
		}
		// Compile the module into the cache outside the measured runs, as
		// a deployed host has it.
		if rt == "wasm" {
			exec.Command(bin, "--config", configs[rt], "filter", "check", "(cn=x)").Run()
		}
	}

	// Rounds take the runtimes in turn, so that what the machine does
	// meanwhile (the kernel writing back the last store, another process)
	// falls on each alike; the summary shows medians.
	m := &measures{times: map[runKey][]time.Duration{}, policy: map[runKey][]time.Duration{}, floors: []time.Duration{floor}}
	for round := 1; round <= rounds; round++ {
		if round > 1 {
			if floor, err = ldapsearch(); err != nil {
				return err
			}
			m.floors = append(m.floors, floor)
			fmt.Printf("\nround %d; floor %s\n", round, floor.Round(time.Millisecond))
		}
		for _, rt := range runtimes {
			if err := m.syncs(ctx, bin, rt, configs[rt], n, floor, pg); err != nil {
				return err
			}
		}
	}
	m.printMedians(rounds, runtimes)
	return nil
}

// startDirectory generates n users and n/100 groups and loads them into a
// new slapd.
func startDirectory(ctx context.Context, dir string, n int) (*slapd.Server, error) {
	fmt.Printf("generating %d users and %d groups…\n", n, n/100)
	ldif := filepath.Join(dir, "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		return nil, err
	}
	if err := slapd.GenerateDirectory(f, slapd.GenOptions{Users: n, WithBase: true}); err != nil {
		return nil, err
	}
	f.Close()
	t0 := time.Now()
	srv, err := slapd.Start(ctx, slapd.Options{LDIF: []string{ldif}, LogLevel: "none", StartTimeout: 20 * time.Minute})
	if err != nil {
		return nil, err
	}
	fmt.Printf("loaded into slapd in %s (%s)\n\n", time.Since(t0).Round(time.Millisecond), srv.URL)
	return srv, nil
}

// runKey names the syncs of one runtime of one kind (first, second,
// third).
type runKey struct{ rt, what string }

// measures are the times of the syncs of every round.
type measures struct {
	times  map[runKey][]time.Duration // of the whole sync
	policy map[runKey][]time.Duration // of the policy's calls
	floors []time.Duration            // of ldapsearch, once a round
}

// syncs runs the syncs of one round with runtime rt and the config in
// config, on a fresh store, and prints and records their times.
func (m *measures) syncs(ctx context.Context, bin, rt, config string, n int, floor time.Duration, pg *pgtest.Server) error {
	rdir := filepath.Dir(config)
	if err := freshStore(ctx, rdir, n, pg); err != nil {
		return err
	}
	// The map cache would make the second sync of a wasm or
	// process policy skip Map; a third sync without the cache
	// shows its cost.
	for _, what := range whats {
		if what == third {
			if rt == "builtin" || rt == "postgres" {
				continue
			}
			os.RemoveAll(filepath.Join(rdir, "cache", "mapcache"))
		}
		d, rss, out, err := timeRun(bin, "--config", config, "sync", "--domain", "example.com")
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", what, err, out)
		}
		st := stages(out)
		k := runKey{rt, what}
		m.times[k] = append(m.times[k], d)
		m.policy[k] = append(m.policy[k], st["policy"])
		fmt.Printf("%-40s %8s  %4.2fx floor  RSS %4d MB  %s\n", rt+": "+what, d.Round(time.Millisecond),
			float64(d)/float64(floor), rss>>20, st)
	}
	return nil
}

// printMedians prints the median times of each kind of sync and runtime,
// against the builtin runtime's.
func (m *measures) printMedians(rounds int, runtimes []string) {
	fmt.Printf("\nmedians of %d rounds (floor %s); the policy's share is its calls' time, summed over concurrent calls\n",
		rounds, median(m.floors).Round(time.Millisecond))
	for _, what := range whats {
		base := median(m.times[runKey{"builtin", what}])
		if what == third {
			base = median(m.times[runKey{"builtin", second}]) // builtin has no map cache
		}
		fmt.Printf("%s:\n", what)
		for _, rt := range runtimes {
			ts := m.times[runKey{rt, what}]
			if len(ts) == 0 {
				continue
			}
			d := median(ts)
			vs := ""
			if rt != "builtin" && base > 0 {
				vs = fmt.Sprintf("  %+5.1f %% vs builtin", 100*(float64(d)/float64(base)-1))
			}
			fmt.Printf("  %-8s %8s  policy %8s%s\n", rt, d.Round(time.Millisecond), median(m.policy[runKey{rt, what}]).Round(time.Millisecond), vs)
		}
	}
}

const (
	first  = "first sync (empty store)"
	second = "second sync (nothing changed)"
	third  = "third sync (no map cache)"
)

var whats = []string{first, second, third}

// setup writes the manifest and configuration of a runtime into rdir and
// returns the configuration's path.
func setup(rdir, rt, wasm, plugin string, srv *slapd.Server, pw string) (string, error) {
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return "", err
	}
	manifest := "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"
	switch rt {
	case "wasm":
		manifest = fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = %q\nmemory_limit_mb = 1024\ntimeout = \"300s\"\n", wasm)
	case "process":
		manifest = fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"process\"\npath = %q\ntimeout = \"300s\"\n", plugin)
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
`, storeKeys, srv.URL, srv.AdminDN, pw, srv.BaseDN, filter)
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
			if slices.Contains(stageNames, k) {
				st[k], _ = time.ParseDuration(v)
			}
		}
	}
	return st
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
