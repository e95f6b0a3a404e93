package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// main runs the CLI with exactly args (no --config added) and returns the
// exit status, stdout and stderr.
func (e *env) main(args ...string) (int, string, string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// newOfflineEnv writes a config whose domain's directory is urls (a TOML
// list's items) and whose bind password is password, with no directory
// started: for commands that do not read one, or read a server that is
// not a directory.
func newOfflineEnv(t *testing.T, urls, password string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.write("reader.pw", password+"\n")
	e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
	e.writeConfig("", urls)
	return e
}

// TestHelp: help of the whole CLI, of a command and of a command group goes
// to stdout with exit 0; a wrong flag or subcommand exits 2 with the usage
// on stderr.
func TestHelp(t *testing.T) {
	t.Setenv("DIRSYNC_CONFIG", filepath.Join(t.TempDir(), "none.toml")) // help reads no config
	e := &env{t: t}
	overall := []string{"usage: dirsync [--config FILE] COMMAND [ARGS]", "sync    --domain D", "mailbox remove --domain D ADDRESS [--force]", "'dirsync help COMMAND'"}
	tests := []struct {
		name string
		args []string
		code int
		// want are in stdout for exit 0, in stderr otherwise.
		want []string
	}{
		{name: "help", args: []string{"help"}, want: overall},
		{name: "--help", args: []string{"--help"}, want: overall},
		{name: "-h", args: []string{"-h"}, want: overall},
		{name: "help sync", args: []string{"help", "sync"}, want: []string{
			"usage: dirsync sync --domain D [--dry-run] [--confirm-deletes] [--full] [--wait DURATION] [--json]\n",
			"--domain D", "work on the domain D",
			"--dry-run", "run every stage but the write",
			"--confirm-deletes", "let this one run past the deletion limits",
			"--wait DURATION", "wait up to DURATION",
			"--json", "print the result as JSON",
			"--config FILE", "it may stand anywhere on the command line"}},
		{name: "sync --help", args: []string{"sync", "--help"}, want: []string{"usage: dirsync sync --domain D", "--wait DURATION"}},
		{name: "sync -h after flags", args: []string{"sync", "--domain", "example.com", "-h"}, want: []string{"usage: dirsync sync --domain D"}},
		{name: "preview --help", args: []string{"preview", "--help"}, want: []string{"usage: dirsync preview --domain D [--json]", "changes nothing"}},
		{name: "help mailbox remove", args: []string{"help", "mailbox", "remove"}, want: []string{
			"usage: dirsync mailbox remove --domain D ADDRESS [--force]", "--force", "the next sync makes it again"}},
		{name: "mailbox add -h", args: []string{"mailbox", "add", "-h"}, want: []string{"usage: dirsync mailbox add", "--group G", "repeat for several"}},
		{name: "group add --help", args: []string{"group", "add", "--help"}, want: []string{"usage: dirsync group add --domain D NAME\n", "--domain D"}},
		{name: "help domain set", args: []string{"help", "domain", "set"}, want: []string{
			"usage: dirsync domain set NAME KEY=VALUE...", "--password-file F", "--password-stdin", "first line of standard input"}},
		{name: "runs show --help", args: []string{"runs", "show", "--help"}, want: []string{"usage: dirsync runs show --domain D ID [--json]"}},
		{name: "runs --help lists runs show", args: []string{"runs", "--help"}, want: []string{
			"usage: dirsync runs --domain D [--limit N] [--json]", "dirsync runs show --domain D ID", "--limit N", "(default 50)"}},
		{name: "filter check --help", args: []string{"filter", "check", "--help"}, want: []string{"usage: dirsync filter check [--policy P] 'FILTER'", "--policy P"}},
		{name: "serve --help", args: []string{"serve", "--help"}, want: []string{"usage: dirsync serve", "--log-format FORMAT", "text or json", "(default text)"}},
		{name: "resolve --help", args: []string{"resolve", "--help"}, want: []string{"usage: dirsync resolve ADDRESS", "exit 1 if none"}},
		{name: "help group", args: []string{"help", "group"}, want: []string{"subcommands:",
			"dirsync group add --domain D NAME\n", "dirsync group remove", "dirsync group list", "dirsync group assign --domain D NAME ADDRESS", "dirsync group unassign"}},
		{name: "group --help", args: []string{"group", "--help"}, want: []string{"subcommands:", "dirsync group assign"}},
		{name: "group help", args: []string{"group", "help"}, want: []string{"subcommands:", "dirsync group assign"}},
		{name: "group help add", args: []string{"group", "help", "add"}, want: []string{"usage: dirsync group add --domain D NAME\n"}},
		{name: "domain -h", args: []string{"domain", "-h"}, want: []string{"subcommands:", "dirsync domain list", "dirsync domain set NAME", "dirsync domain remove NAME"}},
		{name: "help mailbox", args: []string{"help", "mailbox"}, want: []string{"subcommands:", "dirsync mailbox add", "dirsync mailbox remove", "dirsync mailbox list"}},
		{name: "help filter", args: []string{"help", "filter"}, want: []string{"subcommands:", "dirsync filter check"}},

		{name: "wrong flag", args: []string{"sync", "--domain", "example.com", "--bogus"}, code: 2, want: []string{
			"dirsync: sync: flag provided but not defined: --bogus", "usage: dirsync sync --domain D", "--confirm-deletes"}},
		{name: "wrong flag of a subcommand", args: []string{"group", "add", "--json"}, code: 2, want: []string{
			"flag provided but not defined: --json", "usage: dirsync group add --domain D NAME"}},
		{name: "missing --domain", args: []string{"sync"}, code: 2, want: []string{"--domain is required", "usage: dirsync sync"}},
		{name: "wrong global flag", args: []string{"--bogus", "sync"}, code: 2, want: []string{"flag provided but not defined: --bogus", "usage: dirsync [--config FILE]"}},
		{name: "unknown subcommand", args: []string{"group", "bogus"}, code: 2, want: []string{`group: unknown subcommand "bogus"`, "dirsync group assign"}},
		{name: "no subcommand", args: []string{"mailbox"}, code: 2, want: []string{"mailbox: no subcommand given", "dirsync mailbox remove"}},
		{name: "help of an unknown command", args: []string{"help", "bogus"}, code: 2, want: []string{`unknown command "bogus"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			code, out, errs := e.main(tc.args...)
			if code != tc.code {
				t.Fatalf("dirsync %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, out, errs)
			}
			got, other := out, errs
			if tc.code != 0 {
				got, other = errs, out
			}
			if other != "" {
				t.Errorf("dirsync %s wrote to the other stream: %q", strings.Join(tc.args, " "), other)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("dirsync %s: output lacks %q:\n%s", strings.Join(tc.args, " "), w, got)
				}
			}
		})
	}
}

// TestHelpOfEveryCommand asks each documented command for its help: exit
// 0, its synopsis first, and a help text for each of its flags.
func TestHelpOfEveryCommand(t *testing.T) {
	e := &env{t: t}
	names := make([]string, 0, len(docs))
	for name := range docs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			e.t = t
			args := append(strings.Fields(name), "--help")
			code, out, errs := e.main(args...)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			if !strings.HasPrefix(out, "usage: dirsync "+docs[name].synopsis+"\n") {
				t.Errorf("help does not start with the synopsis:\n%s", out)
			}
			_, flags, ok := strings.Cut(out, "\nflags:\n")
			if !ok {
				if len(docs[name].subs) == 0 {
					t.Errorf("help lists no flags:\n%s", out)
				}
				return
			}
			for _, line := range strings.Split(strings.TrimRight(flags, "\n"), "\n") {
				if f := strings.Fields(line); len(f) < 2 || !strings.HasPrefix(f[0], "--") ||
					(len(f) < 3 && !strings.Contains(line, "  "+f[0]+"  ")) {
					t.Errorf("flag line without help: %q", line)
				}
			}
		})
	}
}

// TestConfigAnywhere: --config FILE and --config=FILE work before the
// command, after it and after its flags and arguments, and take no
// argument that is not theirs.
func TestConfigAnywhere(t *testing.T) {
	t.Setenv("DIRSYNC_CONFIG", "")
	e := newOfflineEnv(t, `"ldap://127.0.0.1:1"`, readerPassword)
	const D = "example.com"
	cfg := e.config
	tests := []struct {
		name string
		args []string
		code int
		want string // in stdout for exit 0, in stderr otherwise
	}{
		{name: "before the command", args: []string{"--config", cfg, "group", "add", "--domain", D, "Sales"}, want: `group "Sales" added`},
		{name: "after the command", args: []string{"group", "--config", cfg, "add", "--domain", D, "Staff"}, want: `group "Staff" added`},
		{name: "after the subcommand", args: []string{"mailbox", "add", "--config", cfg, "--domain", D, "a@example.com"}, want: "mailbox a@example.com added"},
		{name: "at the end", args: []string{"mailbox", "add", "--domain", D, "b@example.com", "--config", cfg}, want: "mailbox b@example.com added"},
		{name: "= form at the end", args: []string{"mailbox", "add", "--domain", D, "c@example.com", "--group", "Sales", "--config=" + cfg}, want: "mailbox c@example.com added"},
		{name: "single dash, between flag and argument", args: []string{"mailbox", "add", "--domain", D, "-config", cfg, "d@example.com"}, want: "mailbox d@example.com added"},
		{name: "argument before it is kept", args: []string{"resolve", "b@example.com", "--config", cfg}, want: "b@example.com\n"},
		{name: "argument after it is kept", args: []string{"resolve", "--config", cfg, "c@example.com"}, want: "c@example.com\n"},
		{name: "filter argument after it", args: []string{"filter", "check", "--config=" + cfg, "(cn=a)"}, want: "ok: (cn=a)"},
		{name: "listing with it last", args: []string{"group", "list", "--domain", D, "--json", "--config", cfg}, want: `"c@example.com"`},
		{name: "given twice, the same", args: []string{"--config", cfg, "resolve", "a@example.com", "--config=" + cfg}, want: "a@example.com\n"},

		{name: "after --, a word is an argument", args: []string{"--config", cfg, "filter", "check", "--", "--config"}, code: 1, want: "position"},
		{name: "no file after it", args: []string{"resolve", "a@example.com", "--config"}, code: 2, want: "flag needs an argument: --config FILE"},
		{name: "empty file name", args: []string{"resolve", "a@example.com", "--config="}, code: 2, want: "--config: the file name is empty"},
		{name: "given twice, different", args: []string{"--config", cfg, "resolve", "a@example.com", "--config", cfg + ".other"}, code: 2, want: "--config given twice"},
		{name: "the file after the command is the one read", args: []string{"resolve", "a@example.com", "--config", filepath.Join(e.dir, "missing.toml")}, code: 2, want: "missing.toml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			code, out, errs := e.main(tc.args...)
			got := out
			if tc.code != 0 {
				got = errs
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Fatalf("dirsync %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, tc.want, out, errs)
			}
		})
	}
	// Nothing was taken for an argument: every mailbox has its address and
	// c@example.com its group.
	e.t = t
	var mbs []mailbox
	if err := jsonOut(e.ok("mailbox", "list", "--domain", D, "--json"), &mbs); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, m := range mbs {
		addrs = append(addrs, m.Address)
		if m.Address == "c@example.com" {
			wantList(t, "c groups", m.Groups, "Sales")
		}
	}
	wantList(t, "mailboxes", addrs, "a@example.com", "b@example.com", "c@example.com", "d@example.com")
	if _, err := os.Stat(filepath.Join(e.dir, "var", "dirsync.db")); err != nil {
		t.Errorf("the store of the config is missing: %v", err)
	}
}
