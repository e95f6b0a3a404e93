package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/guard"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the run or check failed
	exitUsage = 2 // usage or config error
)

const usage = `usage: dirsync [--config FILE] COMMAND [ARGS]

  sync    --domain D [--dry-run] [--confirm-deletes] [--full] [--wait DURATION] [--json]
  preview --domain D [--json]
  filter  check [--policy P] 'FILTER'
  group   add|remove|list --domain D [NAME] [--json]
  group   assign|unassign --domain D NAME ADDRESS
  mailbox add --domain D ADDRESS [--group G]...
  mailbox remove --domain D ADDRESS [--force]
  mailbox list --domain D [--json]
  runs    --domain D [--limit N] [--json]
  runs    show --domain D ID [--json]
  domain  list [--json]
  domain  show NAME [--json]
  domain  add|set NAME KEY=VALUE... [--password-stdin|--password-file F]
  domain  remove NAME
  report-recipients --domain D [--json]
  resolve ADDRESS
  serve   [--log-format text|json]   # run the syncs by themselves; see the README
  store   migrate --from sqlite:PATH --to postgres:DSN [--to-password-file F] [--json]

The config is --config, else $DIRSYNC_CONFIG, else ./dirsync.toml; --config
may stand anywhere on the command line.
Exit status: 0 done, 1 the run or check failed, 2 usage or config error.
'dirsync help COMMAND' (or 'dirsync COMMAND --help') shows a command's flags.
`

// usageError is a mistake on the command line. usage, when set, is the
// command's usage, printed after the message.
type usageError struct{ msg, usage string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{msg: fmt.Sprintf(format, args...)} }

// cli is one invocation.
type cli struct {
	stdout, stderr io.Writer
	configPath     string
	cfg            *config.Config
	st             store.Store
	h              *host.Host
	log            *slog.Logger
}

// Main runs the command line and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	// Text from the directory reaches the terminal escaped: a DN or a
	// display name cannot carry an escape sequence to it.
	out, errw := newEscaper(stdout), newEscaper(stderr)
	defer out.Flush()
	defer errw.Flush()
	stdout, stderr = out, errw
	c := &cli{stdout: stdout, stderr: stderr}
	level := slog.LevelInfo
	if os.Getenv("DIRSYNC_LOG") == "debug" {
		level = slog.LevelDebug
	}
	c.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := c.main(ctx, args)
	if c.h != nil {
		c.h.Close()
	}
	if c.st != nil {
		c.st.Close()
	}
	return c.exit(err)
}

func (c *cli) exit(err error) int {
	if err == nil {
		return exitOK
	}
	var he helpError
	var ue usageError
	var ce *config.Error
	var re *host.RunError
	var se storeOpenError
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	switch {
	case errors.As(err, &he):
		fmt.Fprint(c.stdout, he.text)
		return exitOK
	case errors.As(err, &ue) && ue.usage != "":
		fmt.Fprintf(c.stderr, "dirsync: %s\n\n%s", msg, ue.usage)
		return exitUsage
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "dirsync: %s\n(run 'dirsync help' for usage)\n", msg)
		return exitUsage
	case errors.As(err, &ce):
		fmt.Fprintf(c.stderr, "dirsync: config: %s\n", msg)
		return exitUsage
	case errors.Is(err, config.ErrUnknownDomain):
		fmt.Fprintf(c.stderr, "dirsync: %s\n", msg)
		return exitUsage
	case errors.As(err, &re) && re.Stage == "config":
		fmt.Fprintf(c.stderr, "dirsync: config: %s\n", msg)
		return exitUsage
	case errors.As(err, &re):
		fmt.Fprintf(c.stderr, "dirsync: %s\n", msg)
		return exitFail
	case errors.As(err, &se):
		fmt.Fprintf(c.stderr, "dirsync: config: %s\n", msg)
		return exitUsage
	}
	fmt.Fprintf(c.stderr, "dirsync: %s\n", msg)
	return exitFail
}

func (c *cli) main(ctx context.Context, args []string) error {
	args, err := c.takeConfig(args)
	if err != nil {
		return err
	}
	global := flag.NewFlagSet("dirsync", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	if err := global.Parse(args); errors.Is(err, flag.ErrHelp) {
		return helpError{usage}
	} else if err != nil {
		return usageError{msg: dashes(err), usage: usage}
	}
	args = global.Args()
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return usageError{msg: "no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help":
		if len(rest) == 0 {
			return helpError{usage}
		}
		// `dirsync help group add` is `dirsync group add --help`.
		return c.main(ctx, append(rest, "--help"))
	case "sync":
		return c.sync(ctx, rest)
	case "preview":
		return c.preview(ctx, rest)
	case "filter":
		return c.filter(ctx, rest)
	case "group":
		return c.group(ctx, rest)
	case "mailbox":
		return c.mailbox(ctx, rest)
	case "runs":
		return c.runs(ctx, rest)
	case "domain":
		return c.domain(ctx, rest)
	case "report-recipients":
		return c.recipients(ctx, rest)
	case "resolve":
		return c.resolve(ctx, rest)
	case "serve":
		return c.serve(ctx, rest)
	case "store":
		return c.storeCmd(ctx, rest)
	}
	return usagef("unknown command %q", cmd)
}

// takeConfig takes --config FILE (or --config=FILE, -config …) out of the
// command line, wherever it stands: before the command, after it, among
// or after the command's flags and arguments. Only what follows a "--"
// is left alone: there every word is an argument. Given twice, the two
// must agree.
func (c *cli) takeConfig(args []string) ([]string, error) {
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		var path string
		switch {
		case a == "--config" || a == "-config":
			if i+1 == len(args) {
				return nil, usageError{msg: "flag needs an argument: --config FILE", usage: usage}
			}
			i++
			path = args[i]
		case strings.HasPrefix(a, "--config="):
			path = strings.TrimPrefix(a, "--config=")
		case strings.HasPrefix(a, "-config="):
			path = strings.TrimPrefix(a, "-config=")
		default:
			rest = append(rest, a)
			continue
		}
		if path == "" {
			return nil, usageError{msg: "--config: the file name is empty", usage: usage}
		}
		if c.configPath != "" && c.configPath != path {
			return nil, usagef("--config given twice: %s and %s", c.configPath, path)
		}
		c.configPath = path
	}
	return rest, nil
}

// flagName is a flag as package flag's errors name it, with one dash.
var flagName = regexp.MustCompile(`(defined: |argument: |for flag |for )-([A-Za-z][\w-]*)`)

// dashes is a flag parsing error with the flag written as the usage
// writes it: --domain, not -domain.
func dashes(err error) string { return flagName.ReplaceAllString(err.Error(), "$1--$2") }

// flags is a command's flag set that also accepts flags after arguments.
type flags struct {
	*flag.FlagSet
	domain string
	json   bool
}

func newFlags(name string, domain, jsonOut bool) *flags {
	f := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.SetOutput(io.Discard)
	if domain {
		f.StringVar(&f.domain, "domain", "", "work on the domain `D`: a [[domain]] of dirsync.toml or one kept in the store")
	}
	if jsonOut {
		f.BoolVar(&f.json, "json", false, "print the result as JSON")
	}
	// Shown in the help only: takeConfig takes --config out of the
	// command line before any command parses its flags.
	var config string
	f.StringVar(&config, "config", "", configHelp)
	return f
}

// parse parses interspersed flags and arguments and checks the count of
// arguments and that --domain is set when the command takes it. Every word
// after "--" is an argument. -h or --help returns a helpError with the
// command's usage; a mistake returns a usageError that carries it.
func (f *flags) parse(args []string, minArgs, maxArgs int, names string) ([]string, error) {
	fail := func(format string, a ...any) error {
		return usageError{msg: fmt.Sprintf(format, a...), usage: commandUsage(f.FlagSet)}
	}
	var pos []string
	for {
		if err := f.Parse(args); errors.Is(err, flag.ErrHelp) {
			return nil, helpError{commandUsage(f.FlagSet)}
		} else if err != nil {
			return nil, fail("%s: %s", f.Name(), dashes(err))
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if f.Lookup("domain") != nil && f.domain == "" {
		return nil, fail("%s: --domain is required", f.Name())
	}
	f.domain = strings.ToLower(f.domain)
	if len(pos) < minArgs || len(pos) > maxArgs {
		return nil, fail("%s: want %s", f.Name(), names)
	}
	return pos, nil
}

// subcommand splits the subcommand word off a command group's arguments
// (group, mailbox, domain, filter). `dirsync group`, `group --help` and
// `group help` ask for the group's usage; `group help add` is
// `group add --help`.
func subcommand(group string, args []string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, usageError{msg: group + ": no subcommand given", usage: groupUsage(group)}
	}
	if isHelpWord(args[0]) {
		if args[0] == "help" && len(args) > 1 {
			return args[1], append(args[2:], "--help"), nil
		}
		return "", nil, helpError{groupUsage(group)}
	}
	return args[0], args[1:], nil
}

// unknownSub is a subcommand the group does not have.
func unknownSub(group, sub string) error {
	return usageError{msg: fmt.Sprintf("%s: unknown subcommand %q", group, sub), usage: groupUsage(group)}
}

// storeOpenError is a store that will not open: a config error (exit 2).
type storeOpenError struct{ err error }

func (e storeOpenError) Error() string { return e.err.Error() }
func (e storeOpenError) Unwrap() error { return e.err }

// Ways to open the store.
const (
	noStore   = iota // the command needs no store (filter check)
	readStore        // read only: never created, never written
	writeStore
)

// open loads the config, opens the store as mode says, and makes the host
// when withHost.
func (c *cli) open(mode int, withHost bool) error {
	path := c.configPath
	if path == "" {
		path = os.Getenv("DIRSYNC_CONFIG")
	}
	if path == "" {
		path = "dirsync.toml"
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	c.cfg = cfg
	if mode == readStore || mode == writeStore {
		st, err := openStore(context.Background(), cfg, mode == readStore)
		if errors.Is(err, store.ErrNoStore) {
			return fmt.Errorf("%w (nothing was synced or added yet)", err) // not a config error
		}
		if err != nil {
			return storeOpenError{fmt.Errorf("opening the store %s: %w", storeName(cfg), err)}
		}
		c.st = st
	}
	if withHost {
		h, err := host.New(host.Options{Config: cfg, Store: c.st, Builtins: builtins, Logger: c.log})
		if err != nil {
			return err
		}
		c.h = h
	}
	return nil
}

// openDomain loads the config and opens the store for a command on one
// domain, which the config must declare. A command that writes makes the
// domain in the store; one that reads (write false) changes nothing.
func (c *cli) openDomain(ctx context.Context, name string, write bool) (*config.Domain, error) {
	mode := readStore
	if write {
		mode = writeStore
	}
	if err := c.open(mode, true); err != nil {
		return nil, err
	}
	// A domain of the config, or one kept in the store.
	s, err := c.h.Settings(ctx, name)
	if err != nil {
		return nil, err
	}
	d := &s.Domain
	if !write {
		return d, nil
	}
	return d, c.st.EnsureDomain(ctx, d.Name)
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) sync(ctx context.Context, args []string) error {
	f := newFlags("sync", true, true)
	dry := f.Bool("dry-run", false, "run every stage but the write: report what would change, change and record nothing")
	confirm := f.Bool("confirm-deletes", false, "let this one run past the deletion limits of [domain.safety] (never past an empty read)")
	wait := f.Duration("wait", 0, "wait up to `DURATION` (30s, 2m) for another run that holds the domain, then fail")
	full := f.Bool("full", false, "read the whole directory, not only what changed since the last sync")
	if _, err := f.parse(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	if *wait < 0 {
		return usagef("sync: --wait must be 0 or more")
	}
	if err := c.open(writeStore, true); err != nil {
		return err
	}
	rep, err := c.h.Run(ctx, f.domain, host.RunOptions{DryRun: *dry, ConfirmDeletes: *confirm, Wait: *wait, Full: *full})
	return c.report(rep, err, f.json, false)
}

func (c *cli) preview(ctx context.Context, args []string) error {
	f := newFlags("preview", true, true)
	if _, err := f.parse(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	// A preview writes nothing but the domain's name (its snapshot needs
	// the domain), so it opens the store to write.
	if err := c.open(writeStore, true); err != nil {
		return err
	}
	rep, err := c.h.Preview(ctx, f.domain)
	return c.report(rep, err, f.json, true)
}

// report prints a run's report and passes its error on.
func (c *cli) report(rep *host.Report, err error, jsonOut, preview bool) error {
	if rep == nil {
		return err
	}
	if jsonOut {
		if perr := c.printJSON(rep); perr != nil {
			return perr
		}
		return err
	}
	w := c.stdout
	if err != nil && rep.Counts.Entries == 0 && len(rep.Changes) == 0 {
		return err // nothing useful to show beyond the error
	}
	if preview {
		fmt.Fprintf(w, "preview of %s (filter %s)\n", rep.Domain, rep.Filter)
		fmt.Fprintf(w, "\nusers and public folders (%d):\n", len(rep.Users))
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, u := range rep.Users {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.Address, u.Kind, joinOr(u.Aliases, "-"), joinOr(u.Groups, "-"))
		}
		tw.Flush()
		fmt.Fprintf(w, "\ngroups (%d):\n", len(rep.Groups))
		for _, g := range rep.Groups {
			fmt.Fprintf(w, "  %s -> %s (%d members)\n", g.Name, g.Target, g.Members)
		}
	}
	if len(rep.Unmatched) > 0 {
		fmt.Fprintf(w, "\nunmatched groups (the policy matched no gateway group): %s\n", strings.Join(rep.Unmatched, ", "))
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "\nskipped (%d):\n", len(rep.Skipped))
		for i, s := range rep.Skipped {
			if i == 50 && !preview {
				fmt.Fprintf(w, "  … and %d more (see --json)\n", len(rep.Skipped)-50)
				break
			}
			if s.Address != "" {
				fmt.Fprintf(w, "  %s: %s: %s\n", s.DN, s.Address, s.Reason)
			} else {
				fmt.Fprintf(w, "  %s: %s\n", s.DN, s.Reason)
			}
		}
	}
	if len(rep.Held) > 0 {
		fmt.Fprintf(w, "\nheld, mailbox kept unchanged (%d):\n", len(rep.Held))
		for i, s := range rep.Held {
			if i == 50 && !preview {
				fmt.Fprintf(w, "  … and %d more (see --json)\n", len(rep.Held)-50)
				break
			}
			fmt.Fprintf(w, "  %s: %s\n", s.DN, s.Reason)
		}
	}
	if len(rep.References) > 0 {
		fmt.Fprintf(w, "\nreferred to other servers, not read (%d): %s\n", len(rep.References), strings.Join(rep.References, ", "))
	}
	if len(rep.Conflicts) > 0 {
		fmt.Fprintf(w, "\nconflicts, not imported (%d):\n", len(rep.Conflicts))
		for _, x := range rep.Conflicts {
			fmt.Fprintf(w, "  %s: %s\n", x.DN, x.Reason)
		}
	}
	if len(rep.Vetoed) > 0 {
		fmt.Fprintf(w, "\nvetoed by the policy (%d):\n", len(rep.Vetoed))
		for _, v := range rep.Vetoed {
			fmt.Fprintf(w, "  %s %s %s: %s\n", v.Kind, v.Address, v.Group, v.Reason)
		}
	}
	if preview || rep.Mode == "dry-run" {
		fmt.Fprintf(w, "\nchanges a sync would make (%d):\n", len(rep.Changes))
		for i, ch := range rep.Changes {
			if i == 200 {
				fmt.Fprintf(w, "  … and %d more (see --json)\n", len(rep.Changes)-200)
				break
			}
			fmt.Fprintf(w, "  %s %s %s\n", ch.Kind, ch.Address, ch.Group)
		}
	}
	k := rep.Counts
	verb := "synced"
	switch {
	case err != nil:
		verb = rep.Outcome
	case rep.Mode != "sync":
		verb = rep.Mode
	}
	switch {
	case rep.Unchanged:
		fmt.Fprintf(w, "\n%s %s: %d entries, read as a delta: nothing changed in the directory or the store since the last sync", rep.Domain, verb, k.Entries)
		if rep.Server != "" {
			fmt.Fprintf(w, " (server %s, %s)", rep.Server, rep.Timings.Total.Round(time.Millisecond))
		}
		fmt.Fprintln(w)
		return emptyNote(w, rep, err)
	case rep.Read == store.ReadDelta && k.Reached > 0:
		fmt.Fprintf(w, "\n%s %s: %d entries, read as a delta (%d changed, %d gone since the last sync; decided on the %d entries the changes reach); ",
			rep.Domain, verb, k.Entries, k.Changed, k.Gone, k.Reached)
	case rep.Read == store.ReadDelta:
		fmt.Fprintf(w, "\n%s %s: %d entries, read as a delta (%d changed, %d gone since the last sync); ", rep.Domain, verb, k.Entries, k.Changed, k.Gone)
	default:
		fmt.Fprintf(w, "\n%s %s: %d entries read; ", rep.Domain, verb, k.Entries)
	}
	if i := rep.Intended; i != nil {
		fmt.Fprintf(w, "nothing changed (it would have created %d, updated %d, deleted %d, memberships added %d, removed %d)",
			i.Created, i.Updated, i.Deleted, i.MembersAdded, i.MembersRemoved)
	} else {
		fmt.Fprintf(w, "created %d, updated %d, deleted %d, memberships added %d, removed %d",
			k.Created, k.Updated, k.Deleted, k.MembersAdded, k.MembersRemoved)
	}
	fmt.Fprintf(w, "; skipped %d, unmatched groups %d, conflicts %d", k.Skipped, k.Unmatched, k.Conflicts)
	if k.Held > 0 {
		fmt.Fprintf(w, ", held %d", k.Held)
	}
	if k.Vetoed > 0 {
		fmt.Fprintf(w, ", vetoed %d", k.Vetoed)
	}
	if k.Cached > 0 {
		// A preview does not write the map cache: its entries are what
		// the last sync or dry run mapped.
		fmt.Fprintf(w, "; %d entries unchanged since the last sync or dry run, not mapped again", k.Cached)
	}
	if rep.Server != "" {
		fmt.Fprintf(w, " (server %s, %s)", rep.Server, rep.Timings.Total.Round(time.Millisecond))
	}
	if len(rep.FailedOver) > 0 {
		fmt.Fprintf(w, "; failed over to %s after %s did not answer", rep.Server, strings.Join(rep.FailedOver, ", "))
	}
	fmt.Fprintln(w)
	if err == nil && rep.Error != "" {
		fmt.Fprintf(w, "note: %s\n", rep.Error)
	}
	return emptyNote(w, rep, err)
}

// emptyNote notes a run that read no entry and passes err on: nothing to
// stop (the store holds no mailbox of the directory), but most likely not
// what was meant.
func emptyNote(w io.Writer, rep *host.Report, err error) error {
	if err == nil && rep.Error == "" && rep.Counts.Entries == 0 && rep.Filter != "" {
		fmt.Fprintf(w, "note: %s\n", guard.EmptyRead(0, rep.Filter, rep.BaseDN))
	}
	return err
}

func joinOr(s []string, empty string) string {
	if len(s) == 0 {
		return empty
	}
	return strings.Join(s, ",")
}

func (c *cli) filter(ctx context.Context, args []string) error {
	sub, args, err := subcommand("filter", args)
	if err != nil {
		return err
	}
	if sub != "check" {
		return unknownSub("filter", sub)
	}
	f := newFlags("filter check", false, false)
	pol := f.String("policy", "", "check with the policy `P` of the manifest (default: the first domain's policy)")
	pos, err := f.parse(args, 1, 1, "one FILTER argument")
	if err != nil {
		return err
	}
	if err := c.open(noStore, true); err != nil {
		return err
	}
	norm, err := c.h.CheckFilter(ctx, *pol, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "ok: %s\n", norm)
	return nil
}

func (c *cli) group(ctx context.Context, args []string) error {
	sub, args, err := subcommand("group", args)
	if err != nil {
		return err
	}
	f := newFlags("group "+sub, true, sub == "list")
	var pos []string
	switch sub {
	case "add", "remove":
		pos, err = f.parse(args, 1, 1, "NAME")
	case "list":
		pos, err = f.parse(args, 0, 0, "no arguments")
	case "assign", "unassign":
		pos, err = f.parse(args, 2, 2, "NAME ADDRESS")
	default:
		return unknownSub("group", sub)
	}
	if err != nil {
		return err
	}
	d, err := c.openDomain(ctx, f.domain, sub != "list")
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		if err := host.CheckGroupName(pos[0]); err != nil {
			return usagef("group add: %v", err)
		}
		if err := c.st.AddGroup(ctx, d.Name, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "group %q added to %s\n", pos[0], d.Name)
	case "remove":
		if err := c.st.RemoveGroup(ctx, d.Name, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "group %q removed from %s\n", pos[0], d.Name)
	case "assign":
		if err := c.st.Assign(ctx, d.Name, pos[0], strings.ToLower(pos[1])); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s assigned to group %q\n", pos[1], pos[0])
	case "unassign":
		if err := c.st.Unassign(ctx, d.Name, pos[0], strings.ToLower(pos[1])); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s removed from group %q\n", pos[1], pos[0])
	case "list":
		groups, err := c.st.Groups(ctx, d.Name)
		if err != nil {
			return err
		}
		mbs, err := c.st.Mailboxes(ctx, d.Name)
		if err != nil {
			return err
		}
		type out struct {
			Name    string   `json:"name"`
			Source  string   `json:"source"`
			Members []string `json:"members"`
		}
		list := make([]out, 0, len(groups))
		idx := map[string]int{}
		for _, g := range groups {
			idx[g.Name] = len(list)
			list = append(list, out{Name: g.Name, Source: g.Source, Members: []string{}})
		}
		for _, m := range mbs {
			for _, g := range m.Groups {
				if i, ok := idx[g]; ok {
					list[i].Members = append(list[i].Members, m.Primary)
				}
			}
		}
		if f.json {
			return c.printJSON(list)
		}
		for _, g := range list {
			fmt.Fprintf(c.stdout, "%s\t%d members\t%s\n", g.Name, len(g.Members), strings.Join(g.Members, ","))
		}
	}
	return nil
}

// mailboxJSON is the contract of `mailbox list --json` (design §3).
type mailboxJSON struct {
	ID          int64    `json:"id"`
	Address     string   `json:"address"`
	Kind        string   `json:"kind"`
	Source      string   `json:"source"`
	DisplayName string   `json:"display_name,omitempty"`
	DN          string   `json:"dn,omitempty"`
	Aliases     []string `json:"aliases"`
	Groups      []string `json:"groups"`
}

func (c *cli) mailbox(ctx context.Context, args []string) error {
	sub, args, err := subcommand("mailbox", args)
	if err != nil {
		return err
	}
	f := newFlags("mailbox "+sub, true, sub == "list")
	var groups multi
	var force bool
	var pos []string
	switch sub {
	case "add":
		f.Var(&groups, "group", "put the mailbox in the gateway group `G`; repeat for several")
		pos, err = f.parse(args, 1, 1, "ADDRESS")
	case "remove":
		f.BoolVar(&force, "force", false, "remove a mailbox that came from the directory too; the next sync makes it again unless the directory changes")
		pos, err = f.parse(args, 1, 1, "ADDRESS")
	case "list":
		pos, err = f.parse(args, 0, 0, "no arguments")
	default:
		return unknownSub("mailbox", sub)
	}
	if err != nil {
		return err
	}
	d, err := c.openDomain(ctx, f.domain, sub != "list")
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		addr := strings.ToLower(pos[0])
		if err := sdk.CheckAddress(addr); err != nil {
			return usagef("mailbox add: %q: %v", pos[0], err)
		}
		if !d.Owns(addr) {
			return usagef("mailbox add: %s is not an address of %s or its alias domains", pos[0], d.Name)
		}
		id, err := c.st.AddMailbox(ctx, d.Name, store.Mailbox{Primary: addr, Kind: sdk.KindUser, Source: sdk.SourceManual, Groups: groups})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "mailbox %s added to %s (id %d)\n", addr, d.Name, id)
	case "remove":
		addr := strings.ToLower(pos[0])
		m, err := c.findMailbox(ctx, d.Name, addr)
		if err != nil {
			return err
		}
		fromDirectory := m != nil && m.Source == sdk.SourceLDAP
		if fromDirectory && !force {
			return fmt.Errorf("mailbox remove: %s came from the directory (source ldap): the next sync would make it again; "+
				"take it out of the directory or the filter instead, or remove it anyway with --force", addr)
		}
		if err := c.st.RemoveMailbox(ctx, d.Name, addr); err != nil {
			return err
		}
		if fromDirectory {
			fmt.Fprintf(c.stdout, "mailbox %s removed from %s; it came from the directory, so the next sync brings it back unless the directory changes\n", addr, d.Name)
		} else {
			fmt.Fprintf(c.stdout, "mailbox %s removed from %s\n", addr, d.Name)
		}
	case "list":
		mbs, err := c.st.Mailboxes(ctx, d.Name)
		if err != nil {
			return err
		}
		list := make([]mailboxJSON, 0, len(mbs))
		for _, m := range mbs {
			list = append(list, mailboxJSON{ID: m.ID, Address: m.Primary, Kind: m.Kind, Source: m.Source,
				DisplayName: m.DisplayName, DN: m.DN, Aliases: sortedNonNil(m.Aliases), Groups: sortedNonNil(m.Groups)})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Address < list[j].Address })
		if f.json {
			return c.printJSON(list)
		}
		tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tKIND\tSOURCE\tALIASES\tGROUPS")
		for _, m := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Address, m.Kind, m.Source, joinOr(m.Aliases, "-"), joinOr(m.Groups, "-"))
		}
		tw.Flush()
	}
	return nil
}

// findMailbox returns the domain's mailbox whose primary address is addr,
// or nil when there is none (the store's own remove then says why).
func (c *cli) findMailbox(ctx context.Context, domain, addr string) (*store.Mailbox, error) {
	mbs, err := c.st.Mailboxes(ctx, domain)
	if err != nil {
		return nil, err
	}
	for i := range mbs {
		if strings.EqualFold(mbs[i].Primary, addr) {
			return &mbs[i], nil
		}
	}
	return nil, nil
}

func sortedNonNil(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func (c *cli) runs(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "show" {
		return c.runShow(ctx, args[1:])
	}
	f := newFlags("runs", true, true)
	limit := f.Int("limit", 50, "list the newest `N` runs, 1 to 1000")
	if _, err := f.parse(args, 0, 0, "no arguments (or 'show ID')"); err != nil {
		return err
	}
	if *limit < 1 || *limit > 1000 {
		return usagef("runs: --limit must be between 1 and 1000")
	}
	d, err := c.openDomain(ctx, f.domain, false)
	if err != nil {
		return err
	}
	runs, err := c.st.RunsPage(ctx, d.Name, *limit, 0)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []store.Run{}
	}
	if f.json {
		return c.printJSON(runs)
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tTOOK\tOUTCOME\tREAD\tCREATED\tUPDATED\tDELETED\t+MEMBER\t-MEMBER\tERROR")
	for _, r := range runs {
		k := r.Counts
		took := "-"
		if !r.Ended.IsZero() {
			took = r.Ended.Sub(r.Started).Round(time.Millisecond).String()
		}
		outcome := r.Outcome
		if r.Stage != "" {
			outcome += " at " + r.Stage
		}
		// A run that did not apply changed nothing: its counts are zero and
		// what it would have done follows, marked as such.
		counts := fmt.Sprintf("%d\t%d\t%d\t%d\t%d", k.Created, k.Updated, k.Deleted, k.MembersAdded, k.MembersRemoved)
		errText := r.Error
		if w := r.Intended; w != nil {
			errText = fmt.Sprintf("(nothing applied; it would have created %d, updated %d, deleted %d) %s", w.Created, w.Updated, w.Deleted, errText)
		}
		read := strconv.Itoa(k.Entries)
		switch {
		case r.Read == store.ReadDelta && k.Reached > 0:
			read += fmt.Sprintf(" (delta: %d changed, %d gone; %d reached)", k.Changed, k.Gone, k.Reached)
		case r.Read == store.ReadDelta:
			read += fmt.Sprintf(" (delta: %d changed, %d gone)", k.Changed, k.Gone)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Started.Local().Format(time.DateTime),
			took, outcome, read, counts, errText)
	}
	return tw.Flush()
}

func (c *cli) recipients(ctx context.Context, args []string) error {
	f := newFlags("report-recipients", true, true)
	if _, err := f.parse(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	d, err := c.openDomain(ctx, f.domain, false)
	if err != nil {
		return err
	}
	mbs, err := c.st.Mailboxes(ctx, d.Name)
	if err != nil {
		return err
	}
	type recipient struct {
		Address string   `json:"address"`
		Covers  []string `json:"covers"`
	}
	list := make([]recipient, 0, len(mbs))
	for _, m := range mbs {
		list = append(list, recipient{Address: m.Primary, Covers: sortedNonNil(m.Aliases)})
	}
	if f.json {
		return c.printJSON(list)
	}
	for _, r := range list {
		fmt.Fprintf(c.stdout, "%s\t%s\n", r.Address, joinOr(r.Covers, "-"))
	}
	return nil
}

func (c *cli) resolve(ctx context.Context, args []string) error {
	f := newFlags("resolve", false, false)
	pos, err := f.parse(args, 1, 1, "ADDRESS")
	if err != nil {
		return err
	}
	if err := c.open(readStore, false); err != nil {
		return err
	}
	p, err := c.st.Resolve(ctx, strings.ToLower(pos[0]))
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, p)
	return nil
}
