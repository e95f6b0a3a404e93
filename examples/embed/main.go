// Command embed shows how a gateway vendor embeds the dirsync host in its
// own program instead of running the dirsync binary: it builds or loads a
// config, opens the SQLite mailbox store, links the standard policy in as a
// builtin, previews a domain and then syncs it, and prints the counts.
//
// With a config file (dirsync.toml and the manifest it names; a manifest
// entry with runtime = "builtin" and name = "standard" uses the policy
// linked into this program):
//
//	go run ./examples/embed -config path/to/dirsync.toml -domain example.com
//
// Without one, the config is built in code from flags, with the standard
// policy linked in and the bind password read from an environment variable:
//
//	DIRSYNC_BIND_PASSWORD=reader-secret go run ./examples/embed \
//		-url ldap://127.0.0.1:3890 -base-dn dc=example,dc=com \
//		-bind-dn cn=reader,dc=example,dc=com -domain example.com \
//		-alias-domains example.org -db var/embed.db -group Sales -group Engineering
//
// It uses only public packages: host, host/config, host/store,
// host/store/sqlite, plugins/standard and sdk. A vendor with a store of its
// own (its existing database) implements store.Store and passes that to
// host.New instead of the SQLite one; every rule and guarantee stays.
//
// Exit status: 0 done, 1 the preview or sync failed (or the guard stopped
// it), 2 a usage or config error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// builtins are the policies linked into this program, by manifest name.
var builtins = map[string]func() sdk.Policy{
	standard.Name: standard.New,
}

// groupsFlag collects repeated -group flags.
type groupsFlag []string

func (g *groupsFlag) String() string     { return strings.Join(*g, ",") }
func (g *groupsFlag) Set(v string) error { *g = append(*g, v); return nil }

// options are the command line.
type options struct {
	configPath  string
	domain      string
	aliases     string
	url         string
	baseDN      string
	bindDN      string
	passwordEnv string
	filter      string
	db          string
	groups      groupsFlag
	previewOnly bool
	verbose     bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configPath, "config", "", "dirsync.toml to load (default: build the config from the flags below)")
	fs.StringVar(&o.domain, "domain", "example.com", "gateway domain to preview and sync")
	fs.StringVar(&o.aliases, "alias-domains", "", "comma-separated alias domains of -domain (without -config)")
	fs.StringVar(&o.url, "url", "ldap://127.0.0.1:3890", "directory URL (without -config)")
	fs.StringVar(&o.baseDN, "base-dn", "dc=example,dc=com", "search base (without -config)")
	fs.StringVar(&o.bindDN, "bind-dn", "cn=reader,dc=example,dc=com", "account to bind as (without -config)")
	fs.StringVar(&o.passwordEnv, "password-env", "DIRSYNC_BIND_PASSWORD", "environment variable holding the bind password (without -config)")
	fs.StringVar(&o.filter, "filter", "", "LDAP filter; empty: the policy's default (without -config)")
	fs.StringVar(&o.db, "db", "var/embed.db", "SQLite store (without -config)")
	fs.Var(&o.groups, "group", "gateway group to create before the first sync, if missing (repeatable)")
	fs.BoolVar(&o.previewOnly, "preview-only", false, "preview, but do not sync")
	fs.BoolVar(&o.verbose, "v", false, "log the host's progress to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "embed: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	cfg, err := loadConfig(&o)
	if err != nil {
		fmt.Fprintln(stderr, "embed:", err)
		return 2
	}
	st, err := sqlite.Open(cfg.Store.DSN)
	if err != nil {
		fmt.Fprintln(stderr, "embed:", err)
		return 2
	}
	defer st.Close()

	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	h, err := host.New(host.Options{
		Config:   cfg,
		Store:    st,
		Builtins: builtins,
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		fmt.Fprintln(stderr, "embed:", err)
		return 2
	}
	defer h.Close()

	if err := ensureGroups(ctx, st, o.domain, o.groups); err != nil {
		fmt.Fprintln(stderr, "embed:", err)
		return 1
	}

	// Preview: every stage but the write (R9).
	rep, err := h.Preview(ctx, o.domain)
	if err != nil {
		return fail(stderr, "preview", err)
	}
	printPreview(stdout, rep)
	if rep.Outcome == store.OutcomeStopped {
		fmt.Fprintln(stdout, rep.Error)
		return 1
	}
	if o.previewOnly {
		return 0
	}

	// Sync: the same pipeline, applied in one store transaction and recorded.
	rep, err = h.Run(ctx, o.domain, host.RunOptions{})
	if err != nil {
		return fail(stderr, "sync", err)
	}
	fmt.Fprintf(stdout, "\nsync (run %d): %s\n", rep.RunID, counts(rep.Counts))
	return 0
}

// loadConfig loads the -config file, or builds a config in code.
func loadConfig(o *options) (*config.Config, error) {
	if o.configPath != "" {
		return config.Load(o.configPath)
	}
	// A config built in code skips the checks and defaults that
	// config.Load applies to a file, so every value that matters is set
	// here: the name in lower case, the deletion limits of rule S2 (left at
	// 0, any delete would stop the run) and the policy's limits.
	var aliases []string
	for _, a := range strings.Split(o.aliases, ",") {
		if a = strings.ToLower(strings.TrimSpace(a)); a != "" {
			aliases = append(aliases, a)
		}
	}
	return &config.Config{
		Path:  "embed.toml", // relative paths below are resolved against its folder
		Store: config.Store{Driver: "sqlite", DSN: o.db},
		Domains: []config.Domain{{
			Name:         strings.ToLower(o.domain),
			Sync:         true,
			Policy:       standard.Name,
			AliasDomains: aliases,
			LDAP: config.LDAP{
				URLs:           []string{o.url},
				BindDN:         o.bindDN,
				PasswordEnv:    o.passwordEnv,
				BaseDN:         o.baseDN,
				Filter:         o.filter,
				PageSize:       config.DefaultPageSize,
				Timeout:        config.Duration{Duration: config.DefaultLDAPTimeout},
				ConnectTimeout: config.Duration{Duration: config.DefaultConnectTimeout},
			},
			Safety: config.Safety{
				MaxDeletes:       config.DefaultMaxDeletes,
				MaxDeletePercent: config.DefaultMaxDeletePercent,
				PercentFloor:     config.DefaultPercentFloor,
			},
		}},
		Manifest: &config.Manifest{Path: "(in code)", Policies: []config.Policy{{
			Name:    standard.Name,
			Runtime: "builtin", // the policy linked into this program, from builtins
			Config:  map[string]any{"exclude_disabled": false},
		}}},
	}, nil
}

// ensureGroups creates the gateway groups that do not exist yet. A sync
// never creates groups (R4): in a real gateway an operator makes them.
func ensureGroups(ctx context.Context, st store.Store, domain string, groups []string) error {
	if len(groups) == 0 {
		return nil
	}
	if err := st.EnsureDomain(ctx, strings.ToLower(domain)); err != nil {
		return err
	}
	for _, g := range groups {
		if err := st.AddGroup(ctx, strings.ToLower(domain), g); err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("group %q: %w", g, err)
		}
	}
	return nil
}

// fail reports an error of a preview or a sync. A *host.RunError names the
// stage that failed; a run that failed changed nothing.
func fail(w io.Writer, what string, err error) int {
	var re *host.RunError
	switch {
	case errors.As(err, &re):
		fmt.Fprintf(w, "embed: %s of %s failed at stage %q: %v\n", what, re.Domain, re.Stage, re.Err)
	case errors.Is(err, host.ErrUnknownDomain):
		fmt.Fprintln(w, "embed:", err)
		return 2
	default:
		fmt.Fprintf(w, "embed: %s: %v\n", what, err)
	}
	return 1
}

func printPreview(w io.Writer, rep *host.Report) {
	fmt.Fprintf(w, "preview of %s with policy %q (filter %s)\n", rep.Domain, rep.Policy, rep.Filter)
	for _, u := range rep.Users {
		fmt.Fprintf(w, "  %-28s %-13s aliases %v groups %v\n", u.Address, u.Kind, u.Aliases, u.Groups)
	}
	for _, g := range rep.Groups {
		fmt.Fprintf(w, "  group %s -> %s (%d members)\n", g.Name, g.Target, g.Members)
	}
	if len(rep.Unmatched) > 0 {
		fmt.Fprintf(w, "  unmatched groups: %s\n", strings.Join(rep.Unmatched, ", "))
	}
	fmt.Fprintf(w, "preview: %s\n", counts(rep.Counts))
}

func counts(c store.Counts) string {
	return fmt.Sprintf("%d entries read; created %d, updated %d, deleted %d, adopted %d, memberships +%d -%d; skipped %d, unmatched groups %d, conflicts %d, vetoed %d",
		c.Entries, c.Created, c.Updated, c.Deleted, c.Adopted, c.MembersAdded, c.MembersRemoved, c.Skipped, c.Unmatched, c.Conflicts, c.Vetoed)
}
