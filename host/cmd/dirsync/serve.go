package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/api"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/metrics"
	"github.com/dirsync/dirsync/host/internal/schedule"
	"github.com/dirsync/dirsync/host/internal/web"
	"github.com/dirsync/dirsync/host/store"
)

// Timings of dirsync serve.
const (
	// stopWithin bounds how long SIGTERM/SIGINT takes: runs in flight are
	// cancelled and roll back well within it; a run still going on then
	// is left to die with the process (the next run marks it abandoned).
	stopWithin = 9 * time.Second
	// pruneEvery is how often runs older than [serve] keep_runs are pruned.
	pruneEvery = time.Hour
	// readyTimeout bounds the store read of /readyz.
	readyTimeout = 2 * time.Second
)

// serve runs every domain whose sync switch is on, by itself, on its
// interval, and serves /healthz, /readyz and /metrics on [api] listen,
// until SIGTERM or SIGINT. SIGHUP reloads dirsync.toml and plugin.toml.
func (c *cli) serve(ctx context.Context, args []string) error {
	f := newFlags("serve", false, false)
	format := f.String("log-format", "text", "")
	if _, err := f.parse(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	level := slog.LevelInfo
	if os.Getenv("DIRSYNC_LOG") == "debug" {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch *format {
	case "text":
		c.log = slog.New(slog.NewTextHandler(c.stderr, opts))
	case "json":
		c.log = slog.New(slog.NewJSONHandler(c.stderr, opts))
	default:
		return usagef("serve: --log-format must be text or json, not %q", *format)
	}
	if err := c.open(writeStore, false); err != nil {
		return err
	}
	s, err := newServer(ctx, c.cfg, c.st, c.log)
	if err != nil {
		return err
	}
	return s.run(ctx)
}

// server is one dirsync serve process.
type server struct {
	log     *slog.Logger
	st      store.Store
	metrics *metrics.Metrics
	sched   *schedule.Scheduler
	// maxRuns is the semaphore's size, fixed at start.
	maxRuns  int
	stopping atomic.Bool
	cert     atomic.Pointer[tls.Certificate]

	mu  sync.Mutex
	cur *hostRef // the Host new runs start on
}

// hostRef is a Host with the config it was made from. A reload makes a new
// one; the old one serves the runs that started on it and is closed once
// they have ended.
type hostRef struct {
	h       *host.Host
	cfg     *config.Config
	api     http.Handler // the API over h and cfg
	runs    int          // runs and API requests using h
	retired bool
}

func newServer(ctx context.Context, cfg *config.Config, st store.Store, log *slog.Logger) (*server, error) {
	s := &server{log: log, st: st, metrics: metrics.New(version()), maxRuns: cfg.Serve.MaxConcurrentRuns}
	ref, err := s.newHost(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.cur = ref
	s.domainMetrics(nil, cfg)
	if cfg.API.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.API.CertFile, cfg.API.KeyFile)
		if err != nil {
			ref.h.Close()
			return nil, &config.Error{File: cfg.Path, Key: "api.cert_file", Msg: oneLine(err.Error())}
		}
		s.cert.Store(&cert)
	}
	s.sched, err = schedule.New(schedule.Options{
		Source:        s.domains,
		LastStart:     s.lastStart,
		Runner:        s.runDomain,
		MaxConcurrent: cfg.Serve.MaxConcurrentRuns,
		Logger:        log,
		Started:       s.metrics.Started,
		Ended:         s.metrics.Observe,
	})
	if err != nil {
		ref.h.Close()
		return nil, err
	}
	return s, nil
}

// newHost makes a Host for cfg and loads the policies of its domains, so
// that a policy that will not load is found now rather than by a run.
func (s *server) newHost(ctx context.Context, cfg *config.Config) (*hostRef, error) {
	h, err := host.New(host.Options{Config: cfg, Store: s.st, Builtins: builtins, Logger: s.log})
	if err != nil {
		return nil, err
	}
	var loaded []string
	for _, d := range cfg.Domains {
		if slices.Contains(loaded, d.Policy) {
			continue
		}
		loaded = append(loaded, d.Policy)
		if _, err := h.Policy(ctx, d.Policy); err != nil {
			h.Close()
			return nil, &host.RunError{Domain: d.Name, Stage: "config", Err: err}
		}
	}
	a := api.New(api.Options{Host: h, Store: s.st, Config: cfg, Logger: s.log,
		RunNow: func(ctx context.Context, domain string, o host.RunOptions) (int64, error) {
			return s.sched.RunNow(ctx, domain, o)
		},
		NextRun: func(domain string) (time.Time, bool) { return s.sched.NextRun(domain) },
	})
	return &hostRef{h: h, cfg: cfg, api: a}, nil
}

// acquire takes the Host in use for a run or an API request; release gives
// it back, closing a Host a reload retired once nothing uses it.
func (s *server) acquire() *hostRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.runs++
	return s.cur
}

func (s *server) release(ref *hostRef) {
	s.mu.Lock()
	ref.runs--
	done := ref.retired && ref.runs == 0
	s.mu.Unlock()
	if done {
		ref.h.Close()
	}
}

// apiHandler serves the API of the config in use: a reload swaps it (new
// tokens included) for the requests that start after.
func (s *server) apiHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ref := s.acquire()
		defer s.release(ref)
		ref.api.ServeHTTP(w, r)
	})
}

// config returns the config in use.
func (s *server) config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.cfg
}

// domains is the scheduler's Source: the config's domains as they stand
// after the last reload, and the store's as they stand now (a settings
// change through the API is seen at the next tick).
func (s *server) domains(ctx context.Context) ([]schedule.Domain, error) {
	ref := s.acquire()
	defer s.release(ref)
	list, err := ref.h.Domains(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]schedule.Domain, 0, len(list))
	for _, d := range list {
		out = append(out, schedule.Domain{Name: d.Name, Sync: d.Sync, Interval: d.Interval})
		if d.Sync && d.ManagedBy == host.ManagedByStore {
			s.metrics.Domain(d.Name) // a config domain's series are made at start and reload
		}
	}
	return out, nil
}

// lastStart is the scheduler's LastStart: when the domain's newest run
// started. It also sets the domain's last-success metric from the store, as
// it is asked once for each domain the scheduler meets.
func (s *server) lastStart(ctx context.Context, domain string) (time.Time, error) {
	runs, err := s.st.RunsPage(ctx, domain, 1, 0)
	if err != nil || len(runs) == 0 {
		return time.Time{}, err
	}
	last := runs[0].Started
	// The newest successful run: a few pages at most, newest first.
	var before int64
	for range 10 {
		page, err := s.st.RunsPage(ctx, domain, 1000, before)
		if err != nil || len(page) == 0 {
			break
		}
		if i := slices.IndexFunc(page, func(r store.Run) bool { return r.Outcome == store.OutcomeOK }); i >= 0 {
			end := page[i].Ended
			if end.IsZero() {
				end = page[i].Started
			}
			s.metrics.SetLastSuccess(domain, end)
			break
		}
		before = page[len(page)-1].ID
	}
	return last, nil
}

// runDomain is the scheduler's Runner: a run on the Host in use as it
// starts.
func (s *server) runDomain(ctx context.Context, domain string, o host.RunOptions) (*host.Report, error) {
	ref := s.acquire()
	defer s.release(ref)
	return ref.h.Run(ctx, domain, o)
}

// run serves until ctx ends (SIGTERM, SIGINT), then stops within stopWithin.
func (s *server) run(ctx context.Context) error {
	cfg := s.config()
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		s.closeHosts()
		return fmt.Errorf("[api] listen: %w", err)
	}
	srv := &http.Server{
		Handler:           serveMux(s, s.apiHandler()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		// A preview of a large directory through the API can take minutes.
		WriteTimeout:   5 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	tlsOn := s.cert.Load() != nil
	if tlsOn {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil }}
	}
	httpErr := make(chan error, 1)
	go func() {
		var err error
		if tlsOn {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		httpErr <- err
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	s.log.Info("dirsync serve started", "config", cfg.Path, "listen", scheme+"://"+ln.Addr().String(),
		"domains", len(cfg.Domains), "max_concurrent_runs", s.maxRuns, "pid", os.Getpid())
	s.prune(ctx)
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()

	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		s.sched.Run(schedCtx)
	}()
	live := &liveSearches{s: s}
	livePoke := make(chan struct{}, 1)
	liveDone := make(chan struct{})
	go func() {
		defer close(liveDone)
		live.run(schedCtx, livePoke)
	}()
	notify("READY=1\nSTATUS=serving")

	var failed error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			s.reload(ctx)
			select {
			case livePoke <- struct{}{}:
			default:
			}
		case <-prune.C:
			s.prune(ctx)
		case err := <-httpErr:
			failed = fmt.Errorf("the HTTP server stopped: %w", err)
			s.log.Error("the HTTP server stopped; shutting down", "err", err)
			break loop
		}
	}

	// No new runs, the runs in flight cancelled (they roll back and are
	// recorded as cancelled), the listener closed; all within stopWithin.
	s.stopping.Store(true)
	notify("STOPPING=1")
	s.log.Info("stopping: no new runs; the runs in flight are cancelled")
	deadline := time.Now().Add(stopWithin)
	stopSched()
	shutCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := srv.Shutdown(shutCtx); err != nil {
			srv.Close()
		}
	}()
	select {
	case <-joined(schedDone, liveDone):
	case <-shutCtx.Done():
		s.log.Warn("runs still going on at the shutdown deadline; they end with the process and the next run of their domain marks them abandoned")
	}
	<-httpDone
	s.closeHosts()
	s.log.Info("dirsync serve stopped")
	return failed
}

// closeHosts closes the Host in use (a retired one closes itself when its
// last run ends).
func (s *server) closeHosts() {
	s.mu.Lock()
	ref := s.cur
	ref.retired = true
	idle := ref.runs == 0
	s.mu.Unlock()
	if idle {
		ref.h.Close()
	}
}

// reload reads both TOML files again. A broken file is logged and the
// config in use kept; a good one makes a new Host for the runs that start
// from now on, while runs in flight finish on the old one.
func (s *server) reload(ctx context.Context) {
	notify("RELOADING=1")
	defer notify("READY=1")
	old := s.config()
	cfg, err := config.Load(old.Path)
	if err == nil {
		err = s.checkReload(old, cfg)
	}
	var ref *hostRef
	if err == nil {
		ref, err = s.newHost(ctx, cfg)
	}
	if err != nil {
		attrs := []any{"config", old.Path, "err", oneLine(err.Error())}
		var ce *config.Error
		if errors.As(err, &ce) {
			attrs = append(attrs, "file", ce.File, "line", ce.Line, "key", ce.Key)
		}
		s.log.Error("reload failed; the config in use is kept", attrs...)
		return
	}
	var cert *tls.Certificate
	if cfg.API.CertFile != "" {
		c, err := tls.LoadX509KeyPair(cfg.API.CertFile, cfg.API.KeyFile)
		if err != nil {
			ref.h.Close()
			s.log.Error("reload failed; the config in use is kept", "config", old.Path, "key", "api.cert_file", "err", oneLine(err.Error()))
			return
		}
		cert = &c
	}

	s.mu.Lock()
	prev := s.cur
	s.cur = ref
	prev.retired = true
	idle := prev.runs == 0
	s.mu.Unlock()
	if idle {
		prev.h.Close()
	}
	if cert != nil {
		s.cert.Store(cert)
	}
	s.domainMetrics(old, cfg)
	var names []string
	for _, d := range cfg.Domains {
		names = append(names, d.Name)
	}
	s.log.Info("config reloaded; runs that start from now on use it", "config", cfg.Path, "domains", strings.Join(names, ","))
}

// domainMetrics makes the series of the domains cfg syncs, and drops those
// of domains that old synced and cfg does not (removed, or switched off), so
// that no alert fires on a domain that is not meant to sync.
func (s *server) domainMetrics(old, cfg *config.Config) {
	if old != nil {
		for _, d := range old.Domains {
			if n := cfg.Domain(d.Name); d.Sync && (n == nil || !n.Sync) {
				s.metrics.Forget(d.Name)
			}
		}
	}
	for _, d := range cfg.Domains {
		if d.Sync {
			s.metrics.Domain(d.Name)
		}
	}
}

// checkReload refuses a reload that changes what only a restart can change.
func (s *server) checkReload(old, cfg *config.Config) error {
	switch {
	case cfg.Store != old.Store:
		return &config.Error{File: cfg.Path, Key: "store", Msg: "the store cannot change while dirsync serve runs; restart it"}
	case cfg.API.Listen != old.API.Listen:
		return &config.Error{File: cfg.Path, Key: "api.listen", Msg: "the listen address cannot change while dirsync serve runs; restart it"}
	case (cfg.API.CertFile == "") != (old.API.CertFile == ""):
		return &config.Error{File: cfg.Path, Key: "api.cert_file", Msg: "TLS cannot be switched on or off while dirsync serve runs; restart it"}
	case cfg.Serve.MaxConcurrentRuns != s.maxRuns:
		return &config.Error{File: cfg.Path, Key: "serve.max_concurrent_runs", Msg: "cannot change while dirsync serve runs; restart it"}
	}
	return nil
}

// prune deletes the runs older than [serve] keep_runs.
func (s *server) prune(ctx context.Context) {
	keep := s.config().Serve.KeepRuns.Duration
	before := time.Now().Add(-keep)
	n, err := s.st.PruneRuns(ctx, before)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn("pruning old runs failed; trying again in an hour", "keep_runs", keep.String(), "pruned", n, "err", err)
	case n > 0:
		s.log.Info("old runs pruned", "keep_runs", keep.String(), "before", before.Round(time.Second), "pruned", n)
	}
}

// serveMux routes dirsync serve's HTTP requests. api, when not nil, is the
// JSON API handler, mounted at /api/ with its own authentication; the three
// endpoints here need no token.
func serveMux(s *server, api http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := s.notReady(r.Context()); reason != "" {
			text(w, http.StatusServiceUnavailable, reason)
			return
		}
		text(w, http.StatusOK, "ready")
	})
	mux.Handle("GET /metrics", s.metrics.Handler())
	if api != nil {
		mux.Handle("/api/", api)
	}
	// The page, at every other path: signed in with an API token.
	mux.Handle("/", web.New(web.Options{
		Acquire: func() (*host.Host, *config.Config, func()) {
			ref := s.acquire()
			return ref.h, ref.cfg, func() { s.release(ref) }
		},
		Store: s.st,
		RunNow: func(ctx context.Context, domain string, o host.RunOptions) (int64, error) {
			return s.sched.RunNow(ctx, domain, o)
		},
		NextRun: func(domain string) (time.Time, bool) { return s.sched.NextRun(domain) },
		Logger:  s.log,
	}))
	return mux
}

// notReady says why the process cannot serve ("" when it can): shutting
// down, no config, or a store that does not answer a cheap read.
func (s *server) notReady(ctx context.Context) string {
	if s.stopping.Load() {
		return "shutting down"
	}
	if s.config() == nil {
		return "no config loaded"
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	// An address no mailbox can have: the answer is "not found", from an
	// index, or an error when the store does not answer.
	if _, err := s.st.Resolve(ctx, "readyz@readyz.invalid"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return "store: " + oneLine(err.Error())
	}
	return ""
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// version is the program's module version, for dirsync_build_info.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

// notify tells systemd (Type=notify) the service's state, when it started
// the process with $NOTIFY_SOCKET; otherwise it does nothing.
func notify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' { // an abstract socket
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// joined is closed once every one of chans is.
func joined(chans ...chan struct{}) <-chan struct{} {
	all := make(chan struct{})
	go func() {
		for _, c := range chans {
			<-c
		}
		close(all)
	}()
	return all
}
