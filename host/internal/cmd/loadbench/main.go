// Command loadbench puts many small store-kept domains on one dirsync serve
// and one slapd: it generates -domains OUs of -users users each below one
// base, loads them into a throwaway slapd, starts `dirsync serve` with no
// [[domain]] in its config, makes every domain through the API (POST
// /api/v1/domains, timed), lets serve sync them every -interval for
// -duration while a few clients read the API, stops it with SIGTERM and
// reads the run records straight from the SQLite store. It reports the
// runs by outcome, how their starts spread over the interval, whether a
// domain ever had two runs at once or more than max_concurrent_runs ran at
// once, the runs per domain and interval once the catch-up is over, run
// durations, the API's latency and serve's peak RSS. `make loadbench` runs
// it.
//
//	go run ./host/internal/cmd/loadbench -domains 1000 -users 5 -duration 150s \
//		-interval 1m -concurrency 2 -dirsync bin/dirsync
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dirsync/dirsync/host/internal/schedule"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

// filter selects the generated users and groups (the AD default filter).
const filter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"

const baseDN = "dc=example,dc=com"

type params struct {
	domains, users, concurrency int
	duration, interval          time.Duration
	bucket, reqTimeout          time.Duration
	clients, maxRequests        int
	bin                         string
	keep                        bool
}

func main() {
	var p params
	flag.IntVar(&p.domains, "domains", 1000, "store-kept domains to make, one OU each")
	flag.IntVar(&p.users, "users", 5, "users per domain (and one group)")
	flag.DurationVar(&p.duration, "duration", 150*time.Second, "how long serve runs once every domain exists")
	flag.DurationVar(&p.interval, "interval", time.Minute, "every domain's interval")
	flag.IntVar(&p.concurrency, "concurrency", 2, "[serve] max_concurrent_runs")
	flag.IntVar(&p.clients, "clients", 4, "API clients, each sending one request after another (0: none; the domains are made by 4)")
	flag.IntVar(&p.maxRequests, "max-requests", 500000, "at most this many API reads in all")
	flag.DurationVar(&p.reqTimeout, "request-timeout", 10*time.Second, "timeout of one API request")
	flag.DurationVar(&p.bucket, "bucket", 5*time.Second, "width of the histograms' buckets")
	flag.StringVar(&p.bin, "dirsync", "bin/dirsync", "the dirsync binary")
	flag.BoolVar(&p.keep, "keep", false, "keep the working folder (store, config, serve's log)")
	flag.Parse()
	if p.domains < 1 || p.users < 1 || p.concurrency < 1 || p.clients < 0 || p.interval < time.Second ||
		p.duration <= 0 || p.bucket <= 0 {
		fmt.Fprintln(os.Stderr, "loadbench: -domains, -users and -concurrency must be 1 or more, -clients 0 or more, -interval 1s or more, -duration and -bucket positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(3)
	}
}

// domainName and ouOf name domain i (1-based).
func domainName(i, width int) string { return fmt.Sprintf("d%0*d.example", width, i) }
func ouOf(i, width int) string       { return fmt.Sprintf("ou=d%0*d", width, i) }

func run(ctx context.Context, p params) (bool, error) {
	dir, err := os.MkdirTemp("", "dirsync-loadbench-")
	if err != nil {
		return false, err
	}
	if p.keep {
		fmt.Printf("working folder (kept): %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin, _ := filepath.Abs(p.bin)
	width := max(4, len(strconv.Itoa(p.domains)))
	names := make([]string, p.domains)
	for i := range names {
		names[i] = domainName(i+1, width)
	}

	// 1. One LDIF, one slapd.
	srv, err := startDirectory(ctx, dir, p, names, width)
	if err != nil {
		return false, err
	}
	defer srv.Close()

	// 2. The config: no [[domain]]; the domains come through the API.
	token, cfg, err := writeConfig(dir, p)
	if err != nil {
		return false, err
	}
	addr, err := readAddr(cfg)
	if err != nil {
		return false, err
	}
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return false, err
	}
	defer logf.Close()
	serveStart := time.Now()
	cmd, exited, err := startServe(bin, cfg, logf)
	if err != nil {
		return false, err
	}
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
			}
		}
	}()
	base := "http://" + addr
	if err := waitReady(ctx, base, exited); err != nil {
		return false, fmt.Errorf("%w\n%s", err, tail(logPath, 20))
	}
	ready := time.Since(serveStart)
	fmt.Printf("dirsync serve ready in %s (pid %d, %s, max_concurrent_runs %d)\n",
		ready.Round(time.Millisecond), cmd.Process.Pid, base, p.concurrency)

	r := &report{p: p, names: names, serveStart: serveStart}
	api, err := r.makeDomains(ctx, base, token, srv, width)
	if err != nil {
		return false, fmt.Errorf("%w\n%s", err, tail(logPath, 20))
	}
	if p.clients == 0 {
		fmt.Printf("serving for %s without API clients…\n", p.duration)
	}

	// 3. serve runs for p.duration while the clients read the API.
	if p.clients > 0 {
		fmt.Printf("serving for %s while %d clients read the API…\n", p.duration, p.clients)
	}
	lat := hammer(ctx, api, p, names, time.Now().Add(p.duration))
	if err := ctx.Err(); err != nil {
		return false, errors.New("interrupted")
	}

	// 4. Peak RSS, then SIGTERM.
	hwm := vmHWM(cmd.Process.Pid)
	tStop := time.Now()
	exitErr := stopServe(cmd, exited)
	stopped = true
	tExit := time.Now()
	stopTook := tExit.Sub(tStop)
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

	runs, err := readRuns(filepath.Join(dir, "dirsync.db"), names)
	if err != nil {
		return false, err
	}
	logStats := scanLog(logPath)

	r.runs, r.tStop, r.lat = runs, tStop, lat
	r.hwm, r.cpu, r.stopTook, r.tExit, r.exitErr, r.log = hwm, cpu, stopTook, tExit, exitErr, logStats
	return r.print(), nil
}

// startServe starts dirsync serve with the config cfg, its output going to
// logf. exited gets how it exited.
func startServe(bin, cfg string, logf *os.File) (cmd *exec.Cmd, exited chan error, err error) {
	cmd = exec.Command(bin, "--config", cfg, "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	// serve does not outlive this program, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, exited, nil
}

// makeDomains makes the domains of r.names through the API of serve at
// base, with as many clients as will read the API later (4 when none
// will), and records when and how fast. It returns the API's client.
func (r *report) makeDomains(ctx context.Context, base, token string, srv *slapd.Server, width int) (*apiClient, error) {
	p := r.p
	makers := p.clients
	if p.clients == 0 {
		makers = 4
	}
	client := &http.Client{Timeout: p.reqTimeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: makers, MaxConnsPerHost: makers, IdleConnTimeout: time.Minute}}
	api := &apiClient{c: client, base: base + "/api/v1", token: token}

	fmt.Printf("making %d domains through POST /api/v1/domains with %d clients…\n", p.domains, makers)
	var err error
	r.created, r.postLat, r.cstart, r.cend, err = createDomains(ctx, api, p, r.names, srv, width, makers)
	if err != nil {
		return nil, err
	}
	createTook := r.cend.Sub(r.cstart)
	fmt.Printf("made %d domains in %s: %.0f domains/s\n", len(r.names), createTook.Round(time.Millisecond),
		float64(len(r.names))/createTook.Seconds())
	return api, nil
}

// startDirectory generates the directory, one OU of p.users users and a
// group for each domain of names, and loads it into a new slapd.
func startDirectory(ctx context.Context, dir string, p params, names []string, width int) (*slapd.Server, error) {
	fmt.Printf("generating %d OUs of %d users and 1 group each…\n", p.domains, p.users)
	ldif := filepath.Join(dir, "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		return nil, err
	}
	for i := 1; i <= p.domains; i++ {
		o := slapd.GenOptions{BaseDN: baseDN, Container: ouOf(i, width), Domain: names[i-1], Users: p.users, Groups: 1, WithBase: i == 1}
		if err := slapd.GenerateDirectory(f, o); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	srv, err := slapd.Start(ctx, slapd.Options{BaseDN: baseDN, LDIF: []string{ldif}, LogLevel: "none", StartTimeout: 5 * time.Minute})
	if err != nil {
		return nil, err
	}
	fmt.Printf("loaded into slapd in %s (%s)\n", time.Since(t0).Round(time.Millisecond), srv.URL)
	return srv, nil
}

// stopServe sends serve SIGTERM and waits for it to exit, killing it after
// 30 s. It returns how serve exited.
func stopServe(cmd *exec.Cmd, exited <-chan error) error {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		return errors.New("did not stop within 30 s of SIGTERM; killed")
	}
}

// writeConfig writes dirsync.toml, plugin.toml and the secrets key into dir
// and returns the admin token and the config's path.
func writeConfig(dir string, p params) (token, path string, err error) {
	var b [24]byte
	rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(token))
	var key [32]byte
	rand.Read(key[:])
	if err := os.WriteFile(filepath.Join(dir, "secret.key"), []byte(hex.EncodeToString(key[:])+"\n"), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "plugin.toml"),
		[]byte("[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"), 0o644); err != nil {
		return "", "", err
	}
	port, err := freePort()
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, "dirsync.toml")
	return token, path, os.WriteFile(path, fmt.Appendf(nil, `# Written by loadbench; paths are relative to this file.
[store]
driver = "sqlite"
dsn    = "dirsync.db"

[plugins]
manifest  = "plugin.toml"
cache_dir = "cache"

[serve]
max_concurrent_runs = %d

[api]
listen = "127.0.0.1:%d"

[[api.token]]
name    = "loadbench"
sha256  = %q
role    = "admin"
domains = ["*"]

[secrets]
key_file = "secret.key"
`, p.concurrency, port, hex.EncodeToString(sum[:])), 0o644)
}

// readAddr reads [api] listen back from the config writeConfig wrote.
func readAddr(cfg string) (string, error) {
	b, err := os.ReadFile(cfg)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen = "); ok {
			return strconv.Unquote(v)
		}
	}
	return "", errors.New("no [api] listen in " + cfg)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /readyz until it answers 200.
func waitReady(ctx context.Context, base string, exited <-chan error) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("dirsync serve exited at start: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New("dirsync serve not ready within a minute")
}

type apiClient struct {
	c     *http.Client
	base  string
	token string
}

// do sends a request and returns the status and the body; a transport
// error or timeout returns status 0.
func (a *apiClient) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// createDomains makes every domain through the API, p.clients at a time,
// and returns when each was made, the requests' latencies and the first
// request's start and the last one's end.
func createDomains(ctx context.Context, api *apiClient, p params, names []string, srv *slapd.Server, width, makers int) (
	[]time.Time, []time.Duration, time.Time, time.Time, error) {
	created := make([]time.Time, len(names))
	lat := make([]time.Duration, len(names))
	interval := p.interval.String()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	start := time.Now()
	for range makers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(names) || ctx.Err() != nil {
					return
				}
				mu.Lock()
				failed := first != nil
				mu.Unlock()
				if failed {
					return
				}
				body, _ := json.Marshal(map[string]any{
					"name":     names[i],
					"sync":     true,
					"policy":   "standard",
					"interval": interval,
					"ldap": map[string]any{
						"urls":     []string{srv.URL},
						"bind_dn":  srv.AdminDN,
						"password": srv.AdminPassword,
						"base_dn":  ouOf(i+1, width) + "," + srv.BaseDN,
						"filter":   filter,
					},
				})
				t := time.Now()
				code, out, err := api.do(ctx, http.MethodPost, "/domains", body)
				lat[i], created[i] = time.Since(t), time.Now()
				if err == nil && code != http.StatusCreated {
					err = fmt.Errorf("status %d: %s", code, bytes.TrimSpace(out))
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("POST /api/v1/domains %s: %w", names[i], err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = errors.New("interrupted")
	}
	return created, lat, start, time.Now(), first
}

// endpoints the clients read, in the order the report shows them.
var endpoints = []string{"GET /domains", "GET /domains/{d}/runs", "GET /domains/{d}/settings"}

// latencies are the API reads' outcomes per endpoint.
type latencies struct {
	all    map[string][]time.Duration // every request's latency, answered or not
	errs   map[string]int
	kinds  map[string]int // "GET /domains: 500", "…: timeout"
	total  int
	window time.Duration
}

// hammer has p.clients clients read the API, one request after another,
// until deadline or p.maxRequests requests in all.
func hammer(ctx context.Context, api *apiClient, p params, names []string, deadline time.Time) *latencies {
	l := &latencies{all: map[string][]time.Duration{}, errs: map[string]int{}, kinds: map[string]int{}}
	var mu sync.Mutex
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := range p.clients {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(c)))
			// A request is never cut off at the deadline (the server would
			// log it as failed); the last one ends within the timeout.
			for ctx.Err() == nil && time.Now().Before(deadline) && sent.Add(1) <= int64(p.maxRequests) {
				ep := endpoints[rng.IntN(len(endpoints))]
				d := names[rng.IntN(len(names))]
				path := strings.ReplaceAll(strings.TrimPrefix(ep, "GET "), "{d}", d)
				t := time.Now()
				code, _, err := api.do(ctx, http.MethodGet, path, nil)
				took := time.Since(t)
				if ctx.Err() != nil {
					return // interrupted
				}
				mu.Lock()
				l.all[ep] = append(l.all[ep], took)
				l.total++
				switch {
				case err != nil:
					l.errs[ep]++
					kind := "transport error"
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						kind = "timeout"
					}
					l.kinds[ep+": "+kind]++
				case code != http.StatusOK:
					l.errs[ep]++
					l.kinds[fmt.Sprintf("%s: %d", ep, code)]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if p.clients == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(deadline)):
		}
	}
	l.window = time.Since(start)
	return l
}

// vmHWM is a process's peak resident set size in bytes, from
// /proc/PID/status; 0 if it cannot be read.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// readRuns reads every run of every domain from the store file.
func readRuns(db string, names []string) (map[string][]store.Run, error) {
	st, err := sqlite.OpenReadOnly(db)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ctx := context.Background()
	out := make(map[string][]store.Run, len(names))
	for _, d := range names {
		var before int64
		for {
			page, err := st.RunsPage(ctx, d, 1000, before)
			if err != nil {
				return nil, err
			}
			out[d] = append(out[d], page...)
			if len(page) < 1000 {
				break
			}
			before = page[len(page)-1].ID
		}
		slices.SortFunc(out[d], func(a, b store.Run) int { return a.Started.Compare(b.Started) })
	}
	return out, nil
}

// logStats counts lines of serve's log and picks when the scheduler first
// planned to run each domain.
type logStats struct {
	warn, errors, skippedRunning, skippedBusy, failed int
	firstWarn, firstError                             string
	planned                                           map[string]time.Time // the first "domain scheduled" line's next_run
}

func scanLog(path string) logStats {
	s := logStats{planned: map[string]time.Time{}}
	f, err := os.Open(path)
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "level=ERROR"):
			s.errors++
			if s.firstError == "" {
				s.firstError = line
			}
		case strings.Contains(line, "level=WARN"):
			s.warn++
			if s.firstWarn == "" {
				s.firstWarn = line
			}
		}
		switch {
		case strings.Contains(line, "a run of it is still going on"):
			s.skippedRunning++
		case strings.Contains(line, "another run holds it"):
			s.skippedBusy++
		case strings.Contains(line, `msg="run failed"`):
			s.failed++
		case strings.Contains(line, `msg="domain scheduled`):
			d, next := field(line, "domain"), field(line, "next_run")
			if t, err := time.Parse(time.RFC3339Nano, next); err == nil && d != "" {
				if _, ok := s.planned[d]; !ok {
					s.planned[d] = t
				}
			}
		}
	}
	return s
}

// field is the value of key=value in a text log line (values without
// spaces only).
func field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// report is what the run found.
type report struct {
	p                 params
	names             []string
	runs              map[string][]store.Run
	serveStart, tStop time.Time
	created           []time.Time
	cstart, cend      time.Time
	postLat           []time.Duration
	lat               *latencies
	hwm               int64
	cpu, stopTook     time.Duration
	exitErr           error
	log               logStats
	allOK             bool
	rows              [][2]string // the closing table
	tExit             time.Time
}

// row adds a line to the closing table.
func (r *report) row(name, format string, a ...any) {
	r.rows = append(r.rows, [2]string{name, fmt.Sprintf(format, a...)})
}

func (r *report) verdict(ok bool, format string, a ...any) {
	word := "OK  "
	if !ok {
		word = "FAIL"
		r.allOK = false
	}
	fmt.Printf("%s  %s\n", word, fmt.Sprintf(format, a...))
}

// rel is t as seconds since serve started.
func (r *report) rel(t time.Time) string {
	return fmt.Sprintf("+%.1fs", t.Sub(r.serveStart).Seconds())
}

// print prints the summary and returns whether every check passed.
func (r *report) print() bool {
	r.allOK = true
	r.printHeader()
	all := r.printOutcomes()
	catchEnd, never := r.printCatchUp(all)
	r.printTimeline(all)
	r.printOverlaps()
	durs := r.printInFlight(all)
	r.printAfterCatchUp(catchEnd, never)
	r.printDurations(durs)
	r.printAPI()
	r.printServe()
	r.printTable()
	return r.allOK
}

// printHeader prints what was run and when serve stopped.
func (r *report) printHeader() {
	p := r.p
	I := p.interval
	fmt.Printf("\n== summary: %d domains × %d users, interval %s, max_concurrent_runs %d, serve for %s after the domains were made ==\n",
		p.domains, p.users, I, p.concurrency, p.duration)
	fmt.Printf("times are since serve started; domains made %s..%s; SIGTERM at %s; serve stopped in %s",
		r.rel(r.cstart), r.rel(r.cend), r.rel(r.tStop), r.stopTook.Round(time.Millisecond))
	if r.exitErr != nil {
		fmt.Printf(" (exit: %v)", r.exitErr)
	}
	fmt.Println()
}

// printOutcomes prints the runs by outcome, the failures by stage, and
// the warnings and errors of serve's log. It returns every run.
func (r *report) printOutcomes() []store.Run {
	p := r.p
	var all []store.Run
	outcomes := map[string]int{}
	for _, d := range r.names {
		for _, run := range r.runs[d] {
			all = append(all, run)
			outcomes[run.Outcome]++
		}
	}
	var oc []string
	for k, v := range outcomes {
		oc = append(oc, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(oc)
	fmt.Printf("\nruns: %d (%s)\n", len(all), strings.Join(oc, ", "))
	r.row("domains made (POST /api/v1/domains)", "%d in %s: %.0f/s, p50 %s, p99 %s", p.domains,
		r.cend.Sub(r.cstart).Round(time.Millisecond), float64(p.domains)/r.cend.Sub(r.cstart).Seconds(),
		ms(pct(r.postLat, 50)), ms(pct(r.postLat, 99)))
	r.row("runs", "%d (%s) in %s", len(all), strings.Join(oc, ", "), r.tStop.Sub(r.serveStart).Round(time.Second))
	stages := map[string]int{}
	for _, run := range all {
		if run.Outcome != store.OutcomeOK && run.Outcome != store.OutcomeCancelled {
			stages[run.Outcome+" at "+run.Stage+": "+firstLine(run.Error, 100)]++
		}
	}
	for k, v := range stages {
		fmt.Printf("  %4d × %s\n", v, k)
	}
	fmt.Printf("serve's log: %d WARN, %d ERROR lines; turns skipped as the domain's run was still going on: %d, as another run held it: %d\n",
		r.log.warn, r.log.errors, r.log.skippedRunning, r.log.skippedBusy)
	if r.log.firstWarn != "" {
		fmt.Printf("  first WARN: %s\n", firstLine(r.log.firstWarn, 240))
	}
	if r.log.firstError != "" {
		fmt.Printf("  first ERROR: %s\n", firstLine(r.log.firstError, 240))
	}
	return all
}

// printCatchUp checks the catch-up: every domain is new, so it runs
// within min(CatchUpSpread, interval) of being seen, or at its slot if
// sooner. It returns the start of the last first run and the number of
// domains that never ran.
func (r *report) printCatchUp(all []store.Run) (catchEnd time.Time, never int) {
	p := r.p
	I := p.interval
	spread := min(schedule.DefaultCatchUpSpread, I)
	var firstDelay, firstLate, gaps []time.Duration
	for i, d := range r.names {
		rs := r.runs[d]
		if len(rs) == 0 {
			never++
			continue
		}
		f := rs[0].Started
		if f.After(catchEnd) {
			catchEnd = f
		}
		firstDelay = append(firstDelay, f.Sub(r.created[i]))
		// A run at the domain's slot an interval after the first, a little
		// late, is no second run.
		if len(rs) > 1 && rs[1].Started.Sub(f) < I-min(I/10, time.Second) {
			gaps = append(gaps, rs[1].Started.Sub(f))
		}
		if want, ok := r.log.planned[d]; ok {
			firstLate = append(firstLate, f.Sub(want))
		}
	}
	fmt.Printf("\ncatch-up (every domain is new, so each runs within %s of being made, spread by a hash of its name):\n", spread)
	fmt.Printf("  first run after the domain was made: p50 %s  p99 %s  max %s; last first run at %s\n",
		sec(pct(firstDelay, 50)), sec(pct(firstDelay, 99)), sec(pct(firstDelay, 100)), r.rel(catchEnd))
	fmt.Printf("  first run after the instant the scheduler set for it (its log's next_run; %d domains): p50 %s  p99 %s  max %s\n",
		len(firstLate), sec(pct(firstLate, 50)), sec(pct(firstLate, 99)), sec(pct(firstLate, 100)))
	firstIv := 0
	for _, run := range all {
		if run.Started.Before(r.cend.Add(I)) {
			firstIv++
		}
	}
	fmt.Printf("  starts in the first interval after the domains were made (to %s): %d, for %d domains;\n",
		r.rel(r.cend.Add(I)), firstIv, p.domains)
	fmt.Printf("  %d domains ran again less than an interval after their catch-up run (at their own slot): gap p50 %s, min %s\n",
		len(gaps), sec(pct(gaps, 50)), sec(pct(gaps, 0)))
	r.row("catch-up", "all %d first runs within %s of being made (p50 %s); %d starts in that first interval, %d domains twice",
		p.domains-never, sec(pct(firstDelay, 100)), sec(pct(firstDelay, 50)), firstIv, len(gaps))
	r.verdict(never == 0, "every domain ran (%d never did)", never)
	return catchEnd, never
}

// printTimeline prints the run starts over time.
func (r *report) printTimeline(all []store.Run) {
	p := r.p
	fmt.Printf("\nrun starts per %s since serve started:\n", p.bucket)
	nb := int(r.tStop.Sub(r.serveStart)/p.bucket) + 1
	timeline := make([]int, nb)
	for _, run := range all {
		if b := int(run.Started.Sub(r.serveStart) / p.bucket); b >= 0 && b < nb {
			timeline[b]++
		}
	}
	perRow := max(1, int(time.Minute/p.bucket))
	for i := 0; i < nb; i += perRow {
		fmt.Printf("  %6s ", fmt.Sprintf("+%ds", int((time.Duration(i)*p.bucket).Seconds())))
		for _, n := range timeline[i:min(nb, i+perRow)] {
			fmt.Printf(" %4d", n)
		}
		fmt.Println()
	}
}

// printOverlaps checks that no domain had two runs at once and that every
// run record has an end.
func (r *report) printOverlaps() {
	overlaps, open := 0, 0
	var example string
	for _, d := range r.names {
		rs := r.runs[d]
		for i, run := range rs {
			if run.Ended.IsZero() {
				open++
			}
			if i == 0 {
				continue
			}
			prev := rs[i-1]
			if prev.Ended.IsZero() || run.Started.Before(prev.Ended) {
				overlaps++
				if example == "" {
					example = fmt.Sprintf("%s: run %d [%s, %s] and run %d from %s", d, prev.ID,
						r.rel(prev.Started), r.rel(prev.Ended), run.ID, r.rel(run.Started))
				}
			}
		}
	}
	fmt.Println()
	r.verdict(overlaps == 0, "no domain had two overlapping runs (%d overlaps%s)", overlaps, suffix(example))
	r.row("overlapping runs of a domain", "%d", overlaps)
	r.verdict(open == 0, "every run record has an end (%d without)", open)
}

// printInFlight checks the runs in flight across domains against
// max_concurrent_runs, and prints how busy the slots were. It returns the
// durations of the runs that ended ok.
func (r *report) printInFlight(all []store.Run) []time.Duration {
	p := r.p
	type ev struct {
		t time.Time
		d int
	}
	var evs []ev
	var busy time.Duration
	var durs []time.Duration
	for _, run := range all {
		end := run.Ended
		if end.IsZero() {
			end = r.tStop
		}
		evs = append(evs, ev{run.Started, +1}, ev{end, -1})
		if run.Outcome == store.OutcomeOK {
			durs = append(durs, end.Sub(run.Started))
		}
		busy += end.Sub(run.Started)
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.d - b.d // an end before a start at the same instant
	})
	inFlight, peak := 0, 0
	var peakAt time.Time
	atLimit := time.Duration(0)
	for i, e := range evs {
		inFlight += e.d
		if inFlight > peak {
			peak, peakAt = inFlight, e.t
		}
		if inFlight >= p.concurrency && i+1 < len(evs) {
			atLimit += evs[i+1].t.Sub(e.t)
		}
	}
	r.verdict(peak <= p.concurrency, "runs in flight at once, from the run records: max %d (at %s) vs max_concurrent_runs %d",
		peak, r.rel(peakAt), p.concurrency)
	r.row("max runs in flight (records)", "%d (limit %d)", peak, p.concurrency)
	span := r.tStop.Sub(r.serveStart)
	fmt.Printf("      slots busy (sum of run times / (%d × %s)): %.0f %%; time with every slot taken: %.1f s\n",
		p.concurrency, span.Round(time.Second), 100*busy.Seconds()/(float64(p.concurrency)*span.Seconds()), atLimit.Seconds())
	return durs
}

// printAfterCatchUp checks the whole intervals from just after the last
// first run: how the starts spread over the interval, how late they were,
// and that every domain ran once per interval.
func (r *report) printAfterCatchUp(catchEnd time.Time, never int) {
	p := r.p
	I := p.interval
	S := catchEnd.Add(time.Millisecond)
	k := int(r.tStop.Sub(S) / I)
	fmt.Println()
	if never > 0 || k < 1 {
		fmt.Printf("after catch-up: no whole interval between the last first run (%s) and SIGTERM (%s); raise DURATION\n",
			r.rel(catchEnd), r.rel(r.tStop))
		r.row("after catch-up", "no whole interval; raise DURATION")
		r.allOK = false
		return
	}
	E := S.Add(time.Duration(k) * I)
	st := r.countSlots(S, E, k)
	nbk, observed, expected, perDomain, late := len(st.observed), st.observed, st.expected, st.perDomain, st.late
	total := 0
	for _, n := range observed {
		total += n
	}
	fmt.Printf("after catch-up: %d whole interval(s) %s..%s, %d starts (%.1f/s)\n",
		k, r.rel(S), r.rel(E), total, float64(total)/E.Sub(S).Seconds())
	fmt.Printf("  starts per %s bucket of the interval (position of the start within the interval since the Unix epoch);\n", p.bucket)
	fmt.Printf("  expected = the domains whose phase (hash of the name) falls in the bucket, × %d:\n", k)
	fmt.Printf("  %-12s %8s %8s\n", "bucket", "starts", "expected")
	for b := range nbk {
		lo, hi := time.Duration(b)*p.bucket, min(I, time.Duration(b+1)*p.bucket)
		fmt.Printf("  %-12s %8d %8d\n", fmt.Sprintf("%ss–%ss", trim(lo), trim(hi)), observed[b], expected[b])
	}
	full := nbk // the last bucket is short when the interval is no multiple of it
	if I%p.bucket != 0 && nbk > 1 {
		full--
	}
	minB, maxB := slices.Min(observed[:full]), slices.Max(observed[:full])
	mean := float64(total) / float64(nbk)
	if full < nbk {
		mean = float64(total) * float64(p.bucket) / float64(I)
	}
	fmt.Printf("  full buckets: min %d, max %d, mean %.1f (max/mean %.2f)\n", minB, maxB, mean, float64(maxB)/mean)
	r.row(fmt.Sprintf("starts per %s of the interval", p.bucket), "min %d, max %d, mean %.1f (the phases alone: %d–%d)",
		minB, maxB, mean, slices.Min(expected[:full]), slices.Max(expected[:full]))
	fmt.Printf("  start after the domain's slot: p50 %s  p90 %s  p99 %s  max %s\n",
		sec(pct(late, 50)), sec(pct(late, 90)), sec(pct(late, 99)), sec(pct(late, 100)))
	r.row("start after its slot", "p50 %s, p99 %s, max %s", ms(pct(late, 50)), ms(pct(late, 99)), ms(pct(late, 100)))
	var dist []string
	keys := make([]int, 0, len(perDomain))
	for n := range perDomain {
		keys = append(keys, n)
	}
	slices.Sort(keys)
	for _, n := range keys {
		dist = append(dist, fmt.Sprintf("%d runs: %d domains", n, perDomain[n]))
	}
	fmt.Printf("  runs per domain in the %d interval(s): %s\n", k, strings.Join(dist, "; "))
	r.row("runs per domain and interval", "%s (%d interval(s) from %s)", strings.Join(dist, "; "), k, r.rel(S))
	r.verdict(len(keys) == 1 && keys[0] == k, "every domain ran exactly once per interval after catch-up (expected %d each)", k)
	fmt.Printf("      slots busy after catch-up: %.0f %%\n",
		100*st.busy.Seconds()/(float64(p.concurrency)*E.Sub(S).Seconds()))
}

// slotStats are the runs that served a slot in a window of whole
// intervals.
type slotStats struct {
	observed  []int           // starts per bucket of the interval
	expected  []int           // the domains whose phase falls in the bucket, × the intervals
	perDomain map[int]int     // domains by their number of such runs
	late      []time.Duration // how late each run started after its slot
	busy      time.Duration   // the time of the runs
}

// countSlots counts the runs that served a slot in [S, E), k whole
// intervals.
func (r *report) countSlots(S, E time.Time, k int) slotStats {
	p := r.p
	I := p.interval
	nbk := int((I + p.bucket - 1) / p.bucket)
	st := slotStats{observed: make([]int, nbk), expected: make([]int, nbk), perDomain: map[int]int{}}
	for _, d := range r.names {
		ph := schedule.Phase(d, I)
		st.expected[int(ph/p.bucket)] += k
		n := 0
		for _, run := range r.runs[d] {
			// A run counts for the slot it served (its start less its
			// lateness): one that waited for a free slot past the
			// window's end still served a slot inside it.
			pos := time.Duration(run.Started.UnixNano() % int64(I))
			lateBy := (pos - ph + I) % I
			if slot := run.Started.Add(-lateBy); slot.Before(S) || !slot.Before(E) {
				continue
			}
			n++
			st.observed[int(pos/p.bucket)]++
			st.late = append(st.late, lateBy)
			if !run.Ended.IsZero() {
				st.busy += run.Ended.Sub(run.Started)
			}
		}
		st.perDomain[n]++
	}
	return st
}

// printDurations prints the durations of the runs that ended ok.
func (r *report) printDurations(durs []time.Duration) {
	fmt.Printf("\nrun duration (ok runs, started → ended as recorded): p50 %s  p90 %s  p99 %s  max %s\n",
		ms(pct(durs, 50)), ms(pct(durs, 90)), ms(pct(durs, 99)), ms(pct(durs, 100)))
	r.row("run duration (ok)", "p50 %s, p99 %s", ms(pct(durs, 50)), ms(pct(durs, 99)))
}

// printAPI prints the latencies and errors of the API clients.
func (r *report) printAPI() {
	fmt.Printf("\nAPI (%d clients, %s, %d requests, %.0f requests/s; latency per request, errors = transport errors, timeouts and non-200):\n",
		r.p.clients, r.lat.window.Round(time.Second), r.lat.total, float64(r.lat.total)/r.lat.window.Seconds())
	fmt.Printf("  %-28s %7s %8s %8s %8s %8s %6s\n", "endpoint", "count", "p50", "p90", "p99", "max", "errors")
	fmt.Printf("  %-28s %7d %8s %8s %8s %8s %6d\n", "POST /domains (setup)", len(r.postLat),
		ms(pct(r.postLat, 50)), ms(pct(r.postLat, 90)), ms(pct(r.postLat, 99)), ms(pct(r.postLat, 100)), 0)
	errs := 0
	for _, ep := range endpoints {
		l := r.lat.all[ep]
		errs += r.lat.errs[ep]
		fmt.Printf("  %-28s %7d %8s %8s %8s %8s %6d\n", ep, len(l),
			ms(pct(l, 50)), ms(pct(l, 90)), ms(pct(l, 99)), ms(pct(l, 100)), r.lat.errs[ep])
		if len(l) > 0 {
			r.row("API "+ep, "p50 %s, p90 %s, p99 %s, max %s; %d errors of %d",
				ms(pct(l, 50)), ms(pct(l, 90)), ms(pct(l, 99)), ms(pct(l, 100)), r.lat.errs[ep], len(l))
		}
	}
	for k, v := range r.lat.kinds {
		fmt.Printf("    %d × %s\n", v, k)
	}
	r.verdict(errs == 0, "no API errors under load (%d)", errs)
}

// printServe prints serve's memory and CPU, and checks its stop.
func (r *report) printServe() {
	fmt.Printf("\ndirsync serve: peak RSS (VmHWM before SIGTERM) %d MB; CPU %.1f s over %s (%.0f %% of one core)\n",
		r.hwm>>20, r.cpu.Seconds(), r.tExit.Sub(r.serveStart).Round(time.Second),
		100*r.cpu.Seconds()/r.tExit.Sub(r.serveStart).Seconds())
	r.verdict(r.exitErr == nil && r.stopTook < 10*time.Second, "serve stopped on SIGTERM within 10 s, exit 0 (%s)", r.stopTook.Round(time.Millisecond))
	life := r.tExit.Sub(r.serveStart)
	r.row("serve peak RSS, CPU", "%d MB; %.0f s CPU in %s (%.0f %% of one core)", r.hwm>>20, r.cpu.Seconds(),
		life.Round(time.Second), 100*r.cpu.Seconds()/life.Seconds())
}

// printTable prints the closing table and the verdict.
func (r *report) printTable() {
	w := 0
	for _, row := range r.rows {
		w = max(w, len([]rune(row[0])))
	}
	fmt.Println()
	for _, row := range r.rows {
		fmt.Printf("%-*s  %s\n", w, row[0], row[1])
	}
	if r.allOK {
		fmt.Println("\nall checks OK")
	} else {
		fmt.Println("\nSOME CHECKS FAILED")
	}
}

// pct is the q-th percentile (nearest rank) of ds; q = 100 is the max.
func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q/100*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func trim(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return "; first: " + s
}

func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
