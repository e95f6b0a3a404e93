package processrt

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// What a plugin process writes, and what go-plugin says about it, ends up
// in the host's slog logger:
//
//   - the process's stderr (go-plugin's own log lines in the plugin, as
//     hclog JSON; whatever the Go runtime prints when it crashes; what the
//     log package's default logger writes): go-plugin's client parses it
//     and logs it through the hclog logger it is given, a Named one;
//     hclogAdapter passes those records on at Debug (or lower, for
//     Trace), with stream=stderr: a crash is reported by the call's error;
//   - what the policy writes to os.Stdout and os.Stderr once it serves:
//     go-plugin carries it over gRPC; lineLogger logs it line by line at
//     Info, with stream=stdout or stderr;
//   - go-plugin's client's own messages (starting, exiting, …): at Debug.

// hclogAdapter is an hclog.Logger that writes to a slog.Logger.
type hclogAdapter struct {
	log    *slog.Logger
	name   string
	plugin string // the name go-plugin gives the logger of the plugin's stderr
	args   []any  // implied arguments (With)
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(l *slog.Logger, pluginName string) *hclogAdapter {
	return &hclogAdapter{log: l, plugin: pluginName}
}

// fromPlugin reports whether the logger carries the plugin's stderr.
func (a *hclogAdapter) fromPlugin() bool { return a.name == a.plugin }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug, hclog.NoLevel:
		return slog.LevelDebug
	case hclog.Info:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	// At most Debug: a failure of the plugin reaches the host as the
	// call's one-line error, so neither go-plugin's messages about it nor
	// the crash output on the plugin's stderr (a goroutine dump can be
	// hundreds of lines) belong in the log at the levels a CLI shows.
	sl := min(slogLevel(level), slog.LevelDebug)
	ctx := context.Background()
	if !a.log.Enabled(ctx, sl) {
		return
	}
	r := slog.NewRecord(time.Now(), sl, strings.TrimSpace(msg), 0)
	if a.fromPlugin() {
		r.AddAttrs(slog.String("stream", "stderr"))
	} else if a.name != "" {
		r.AddAttrs(slog.String("logger", "go-plugin."+a.name))
	} else {
		r.AddAttrs(slog.String("logger", "go-plugin"))
	}
	addPairs(&r, a.args)
	addPairs(&r, args)
	_ = a.log.Handler().Handle(ctx, r)
}

// addPairs adds hclog's key-value arguments to r, leaving out the plugin's
// own timestamp (the record has the host's).
func addPairs(r *slog.Record, args []any) {
	for i := 0; i < len(args); i += 2 {
		key, ok := args[i].(string)
		if !ok {
			key = "!BADKEY"
		}
		if i+1 == len(args) {
			r.AddAttrs(slog.Any("!BADKEY", args[i]))
			return
		}
		if key == "timestamp" {
			continue
		}
		r.AddAttrs(slog.Any(key, args[i+1]))
	}
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.log.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(append([]any(nil), a.args...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel does nothing: the slog handler decides.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel returns the lowest level the slog handler takes. go-plugin asks,
// to skip parsing lines nobody would see.
func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(a.log.Handler(), slog.LevelInfo)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(nil).Writer()
}

// lineLogger logs each line written to it at Info. Lines longer than
// maxLine are split.
type lineLogger struct {
	log    *slog.Logger
	stream string

	mu  sync.Mutex
	buf []byte
}

const maxLine = 64 << 10

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) < maxLine {
				break
			}
			i = maxLine
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[min(i+1, len(w.buf)):]
		if strings.TrimSpace(line) != "" {
			w.log.Info(line, "stream", w.stream)
		}
	}
	if len(w.buf) == 0 {
		w.buf = nil // do not keep a large buffer
	}
	return len(p), nil
}

// stderrHead remembers, of what a plugin process writes to its stderr, the
// first line that is not one of go-plugin's JSON log lines, and the first
// line of a crash ("panic: …", "fatal error: …"), for error messages.
type stderrHead struct {
	mu           sync.Mutex
	first, crash string
}

func (h *stderrHead) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, line := range strings.Split(string(p), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "{") {
			continue
		}
		if len(line) > 500 {
			line = line[:500] + "…"
		}
		if h.first == "" {
			h.first = line
		}
		if h.crash == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
			h.crash = line
		}
	}
	return len(p), nil
}

// line returns the crash line if there is one, else the first line.
func (h *stderrHead) line() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.crash != "" {
		return h.crash
	}
	return h.first
}
