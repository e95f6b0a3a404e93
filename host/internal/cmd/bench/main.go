// Command bench measures a full sync of a generated directory against the
// floor for reading it: ldapsearch with paging over the same entries from
// the same throwaway slapd, in the same run. `make bench` runs it.
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
	"strings"
	"syscall"
	"time"

	"github.com/dirsync/dirsync/host/internal/slapd"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

const filter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"

func main() {
	n := flag.Int("n", 100000, "users to generate (groups: n/100)")
	bin := flag.String("dirsync", "bin/dirsync", "the dirsync binary")
	wasm := flag.String("wasm", "plugins/standard/standard.wasm", "the standard policy module")
	plugin := flag.String("plugin", "plugins/standard/standard", "the standard policy as a native plugin program")
	runtimes := flag.String("runtimes", "builtin,wasm,process", "policy runtimes to measure, comma-separated")
	flag.Parse()
	if err := run(*n, *bin, *wasm, *plugin, strings.Split(*runtimes, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n int, bin, wasm, plugin string, runtimes []string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dirsync-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, _ = filepath.Abs(bin)
	wasm, _ = filepath.Abs(wasm)
	plugin, _ = filepath.Abs(plugin)

	fmt.Printf("generating %d users and %d groups…\n", n, n/100)
	ldif := filepath.Join(dir, "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		return err
	}
	if err := slapd.GenerateDirectory(f, slapd.GenOptions{Users: n, WithBase: true}); err != nil {
		return err
	}
	f.Close()
	t0 := time.Now()
	srv, err := slapd.Start(ctx, slapd.Options{LDIF: []string{ldif}, LogLevel: "none", StartTimeout: 20 * time.Minute})
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("loaded into slapd in %s (%s)\n\n", time.Since(t0).Round(time.Millisecond), srv.URL)
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

	for _, rt := range runtimes {
		rdir := filepath.Join(dir, rt)
		os.MkdirAll(rdir, 0o755)
		manifest := fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
		switch rt {
		case "wasm":
			manifest = fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = %q\nmemory_limit_mb = 1024\ntimeout = \"300s\"\n", wasm)
		case "process":
			manifest = fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"process\"\npath = %q\ntimeout = \"300s\"\n", plugin)
		}
		os.WriteFile(filepath.Join(rdir, "plugin.toml"), []byte(manifest), 0o644)
		config := filepath.Join(rdir, "dirsync.toml")
		os.WriteFile(config, []byte(fmt.Sprintf(`[store]
driver = "sqlite"
dsn = "dirsync.db"
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
`, srv.URL, srv.AdminDN, pw, srv.BaseDN, filter)), 0o644)
		// Gateway groups for every generated group, made by hand (R4).
		st, err := sqlite.Open(filepath.Join(rdir, "dirsync.db"))
		if err != nil {
			return err
		}
		for g := 0; g < max(1, n/100); g++ {
			if err := st.AddGroup(ctx, "example.com", fmt.Sprintf("group%05d", g)); err != nil {
				return err
			}
		}
		st.Close()
		// Compile the module into the cache outside the measured runs, as
		// a deployed host has it.
		if rt == "wasm" {
			exec.Command(bin, "--config", config, "filter", "check", "(cn=x)").Run()
		}
		// The map cache would make the second sync of a wasm or process
		// policy skip Map; a third sync without the cache shows its cost.
		for _, what := range []string{"first sync (empty store)", "second sync (nothing changed)", "third sync (no map cache)"} {
			if strings.HasPrefix(what, "third") {
				if rt == "builtin" {
					continue
				}
				os.RemoveAll(filepath.Join(rdir, "cache", "mapcache"))
			}
			d, rss, out, err := timeRun(bin, "--config", config, "sync", "--domain", "example.com")
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", what, err, out)
			}
			fmt.Printf("%-40s %8s  %4.2fx floor  RSS %4d MB  %s\n", rt+": "+what, d.Round(time.Millisecond),
				float64(d)/float64(floor), rss>>20, stages(out))
		}
	}
	return nil
}

// stages picks the time of each stage from the "sync done" log line.
func stages(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="sync done"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			for _, k := range []string{"fetch=", "policy=", "diff=", "apply=", "created="} {
				if strings.HasPrefix(f, k) {
					out = append(out, strings.Replace(f, "=", " ", 1))
				}
			}
		}
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
