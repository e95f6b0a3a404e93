package main

import (
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
)

// cmdDoc documents one command: `dirsync help CMD` and `dirsync CMD
// --help` print its synopsis, what it does and its flags (from the
// command's own flag set, so the list cannot drift from what it accepts).
type cmdDoc struct {
	synopsis string // after "dirsync "
	about    string
	// subs are the subcommands of a command group (or of a command that
	// has subcommands besides its own use, such as runs), in order.
	subs []string
	// flags is help for flags the command defines without any.
	flags map[string]string
}

// docs are keyed by the command's words, as its flag set is named.
var docs = map[string]cmdDoc{
	"sync": {synopsis: "sync --domain D [--dry-run] [--confirm-deletes] [--full] [--wait DURATION] [--json]",
		about: "Reads the domain's directory, maps what it read with the domain's policy and applies the changes to the store in one transaction. Where the directory can tell what changed since the last sync (OpenLDAP's syncprov), only that is read, unless --full or full_interval says otherwise; the report says which (\"read\": \"full\" or \"delta\"). A run that would delete too much, or whose read came back empty, stops before writing. Every sync is recorded (dirsync runs)."},
	"preview": {synopsis: "preview --domain D [--json]",
		about: "Shows what a sync would do: the valid users and public folders, the groups, the unmatched groups, the skipped entries and the changes. It changes nothing and works with the sync switch off."},
	"filter": {synopsis: "filter check [--policy P] 'FILTER'",
		about: "Checks LDAP filters.",
		subs:  []string{"filter check"}},
	"filter check": {synopsis: "filter check [--policy P] 'FILTER'",
		about: "Checks FILTER with a policy and prints it normalized; a mistake exits 1 with its position."},
	"group": {synopsis: "group add|remove|list|assign|unassign --domain D ...",
		about: "Manages the domain's gateway groups and hand-made memberships. A sync never creates a group: the policy matches directory groups to these.",
		subs:  []string{"group add", "group remove", "group list", "group assign", "group unassign"}},
	"group add": {synopsis: "group add --domain D NAME",
		about: "Adds the gateway group NAME."},
	"group remove": {synopsis: "group remove --domain D NAME",
		about: "Removes the gateway group NAME."},
	"group list": {synopsis: "group list --domain D [--json]",
		about: "Lists the gateway groups with their members."},
	"group assign": {synopsis: "group assign --domain D NAME ADDRESS",
		about: "Puts the mailbox ADDRESS in the group NAME by hand. A sync takes such a membership of a mailbox that came from the directory away again; one of a hand-made mailbox stays."},
	"group unassign": {synopsis: "group unassign --domain D NAME ADDRESS",
		about: "Takes the mailbox ADDRESS out of the group NAME."},
	"mailbox": {synopsis: "mailbox add|remove|list --domain D ...",
		about: "Manages the domain's mailboxes.",
		subs:  []string{"mailbox add", "mailbox remove", "mailbox list"}},
	"mailbox add": {synopsis: "mailbox add --domain D ADDRESS [--group G]...",
		about: "Adds a hand-made mailbox (source manual), which no sync changes or deletes."},
	"mailbox remove": {synopsis: "mailbox remove --domain D ADDRESS [--force]",
		about: "Removes the mailbox whose primary address is ADDRESS. A mailbox that came from the directory (source ldap) is removed only with --force, and the next sync makes it again unless the directory changes."},
	"mailbox list": {synopsis: "mailbox list --domain D [--json]",
		about: "Lists the domain's mailboxes, sorted by address, with their kind, source, aliases and groups."},
	"runs": {synopsis: "runs --domain D [--limit N] [--json]",
		about: "Lists the domain's recorded sync runs, newest first.",
		subs:  []string{"runs show"}},
	"runs show": {synopsis: "runs show --domain D ID [--json]",
		about: "Shows the run ID with its changes."},
	"domain": {synopsis: "domain list|show|add|set|remove ...",
		about: "Manages the domains kept in the store, whose settings are versioned. A domain of dirsync.toml is shown, never changed.",
		subs:  []string{"domain list", "domain show", "domain add", "domain set", "domain remove"}},
	"domain list": {synopsis: "domain list [--json]",
		about: "Lists the domains of dirsync.toml and of the store."},
	"domain show": {synopsis: "domain show NAME [--json]",
		about: "Shows a domain's settings; the bind password is never shown, only whether one is set."},
	"domain add": {synopsis: "domain add NAME KEY=VALUE... [--password-stdin|--password-file F]",
		about: "Adds a domain kept in the store. The keys are those of a [[domain]] table, dotted (ldap.base_dn=dc=example,dc=com); a value that is not TOML is taken as a string."},
	"domain set": {synopsis: "domain set NAME KEY=VALUE... [--password-stdin|--password-file F]",
		about: "Changes the settings of a domain kept in the store: they are checked and saved as a new version, which the next run uses."},
	"domain remove": {synopsis: "domain remove NAME",
		about: "Stops keeping the domain NAME in the store; its mailboxes, groups and runs stay."},
	"report-recipients": {synopsis: "report-recipients --domain D [--json]",
		about: "Lists each mailbox's primary address with the other addresses it covers."},
	"resolve": {synopsis: "resolve ADDRESS",
		about: "Prints the primary address that ADDRESS belongs to; exit 1 if none."},
	"serve": {synopsis: "serve [--log-format text|json]",
		about: "Runs the syncs by themselves, each domain whose sync switch is on every interval of the domain, and serves the API, the page and /healthz, /readyz and /metrics on [api] listen, until SIGTERM or SIGINT. SIGHUP reloads dirsync.toml and plugin.toml.",
		flags: map[string]string{"log-format": "write the log to standard error as `FORMAT`: text or json"}},
	"store": {synopsis: "store migrate --from sqlite:PATH --to postgres:DSN ...",
		about: "Works on a whole store, named on the command line: no dirsync.toml is read.",
		subs:  []string{"store migrate"}},
	"store migrate": {synopsis: "store migrate --from sqlite:PATH --to postgres:DSN [--to-password-file F] [--json]",
		about: "Copies a SQLite store into an empty PostgreSQL database, for several dirsync serve replicas: domains, mailboxes with their ids, addresses, groups, memberships, runs with their changes and the settings versions with their sealed passwords (the same [secrets] key opens them); leases are not copied. " +
			"The copy is one transaction of the target, and before it commits the rows of every table are counted in both stores: any difference rolls it back. " +
			"A target that holds anything is refused and left as it is. Stop every dirsync that uses the source first. Exit 1 if the copy failed or was refused."},
}

// configHelp is the help of --config, which every command takes.
const configHelp = "read the config from `FILE` (default: $DIRSYNC_CONFIG, else ./dirsync.toml); it may stand anywhere on the command line"

// helpError is a help request: its text goes to stdout and the exit status
// is 0.
type helpError struct{ text string }

func (e helpError) Error() string { return "help requested" }

// isHelpWord reports whether s asks for help in place of a subcommand.
func isHelpWord(s string) bool {
	switch s {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// groupUsage is the usage of a command with subcommands: its
// subcommands' synopses.
func groupUsage(name string) string {
	d := docs[name]
	var b strings.Builder
	fmt.Fprintf(&b, "usage: dirsync %s\n\n%s\n\nsubcommands:\n", d.synopsis, wrap(d.about, 78))
	subs(&b, d.subs)
	fmt.Fprintf(&b, "\n'dirsync help %s SUBCOMMAND' (or 'dirsync %s SUBCOMMAND --help') shows one with its flags.\n", name, name)
	return b.String()
}

func subs(b *strings.Builder, names []string) {
	for _, s := range names {
		fmt.Fprintf(b, "  dirsync %s\n", docs[s].synopsis)
	}
}

// commandUsage is the usage of the command whose flag set f is: its
// synopsis, what it does and its flags with their help.
func commandUsage(f *flag.FlagSet) string {
	d := docs[f.Name()]
	var b strings.Builder
	syn := d.synopsis
	if syn == "" {
		syn = f.Name() + " ..."
	}
	fmt.Fprintf(&b, "usage: dirsync %s\n", syn)
	if d.about != "" {
		fmt.Fprintf(&b, "\n%s\n", wrap(d.about, 78))
	}
	if len(d.subs) > 0 {
		b.WriteString("\nalso:\n")
		subs(&b, d.subs)
	}
	b.WriteString("\nflags:\n")
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	var config *flag.Flag
	line := func(fl *flag.Flag) {
		help := fl.Usage
		if help == "" {
			help = d.flags[fl.Name]
			fl = &flag.Flag{Name: fl.Name, Usage: help, Value: fl.Value, DefValue: fl.DefValue}
		}
		name, text := flag.UnquoteUsage(fl)
		arg := "--" + fl.Name
		if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
			if name == "" {
				name = "VALUE"
			}
			arg += " " + name
		}
		switch fl.DefValue {
		case "", "0", "0s", "false", "[]":
		default:
			text += fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", arg, text)
	}
	f.VisitAll(func(fl *flag.Flag) {
		if fl.Name == "config" {
			config = fl // the global flag goes last
			return
		}
		line(fl)
	})
	if config != nil {
		line(config)
	}
	tw.Flush()
	return b.String()
}

// wrap breaks text into lines of at most width characters.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		switch {
		case n == 0:
		case n+1+len(w) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}
