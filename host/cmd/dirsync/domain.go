package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// domain runs `dirsync domain list|show|add|set|remove`: the domains kept
// in the store, whose settings are versioned (a domain of dirsync.toml is
// shown, never changed).
func (c *cli) domain(ctx context.Context, args []string) error {
	sub, args, err := subcommand("domain", args)
	if err != nil {
		return err
	}
	f := newFlags("domain "+sub, false, sub == "list" || sub == "show")
	pwStdin, pwFile := false, ""
	var pos []string
	switch sub {
	case "list":
		pos, err = f.parse(args, 0, 0, "no arguments")
	case "show", "remove":
		pos, err = f.parse(args, 1, 1, "NAME")
	case "add", "set":
		f.BoolVar(&pwStdin, "password-stdin", false, "read the bind password from the first line of standard input")
		f.StringVar(&pwFile, "password-file", "", "read the bind password from the file `F`")
		pos, err = f.parse(args, 1, 1<<16, "NAME KEY=VALUE...")
	default:
		return unknownSub("domain", sub)
	}
	if err != nil {
		return err
	}
	mode := readStore
	if sub == "add" || sub == "set" || sub == "remove" {
		mode = writeStore
	}
	if err := c.open(mode, true); err != nil {
		return err
	}
	switch sub {
	case "list":
		return c.domainList(ctx, f.json)
	case "show":
		return c.domainShow(ctx, pos[0], f.json)
	case "remove":
		if err := c.h.RemoveDomain(ctx, pos[0], "cli"); err != nil {
			return domainError(err)
		}
		fmt.Fprintf(c.stdout, "domain %s is no longer kept in the store (its mailboxes, groups and runs stay)\n", strings.ToLower(pos[0]))
		return nil
	}
	return c.domainSave(ctx, sub, pos[0], pos[1:], pwStdin, pwFile)
}

// domainList is `dirsync domain list`.
func (c *cli) domainList(ctx context.Context, jsonOut bool) error {
	list, err := c.h.Domains(ctx)
	if err != nil {
		return err
	}
	if list == nil {
		list = []host.DomainInfo{}
	}
	if jsonOut {
		return c.printJSON(list)
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tSYNC\tINTERVAL\tMANAGED BY\tVERSION")
	for _, d := range list {
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%d\n", d.Name, d.Sync, d.Interval, d.ManagedBy, d.Version)
	}
	return tw.Flush()
}

// domainShow is `dirsync domain show NAME`: the settings as a [[domain]]
// of dirsync.toml.
func (c *cli) domainShow(ctx context.Context, name string, jsonOut bool) error {
	s, err := c.h.Settings(ctx, name)
	if err != nil {
		return err
	}
	if jsonOut {
		return c.printJSON(s)
	}
	fmt.Fprintf(c.stdout, "# %s: managed by %s", s.Name, s.ManagedBy)
	if s.ManagedBy == host.ManagedByStore {
		fmt.Fprintf(c.stdout, ", version %d by %s at %s", s.Version, s.Author, s.Saved.Local().Format(time.DateTime))
	}
	fmt.Fprintf(c.stdout, "; password set: %v\n", s.PasswordSet)
	enc := toml.NewEncoder(c.stdout)
	enc.Indent = "  "
	return enc.Encode(map[string]any{"domain": []config.Domain{s.Domain}})
}

// domainSave is `dirsync domain add|set NAME KEY=VALUE...`: it starts from
// the defaults (add) or the current settings (set), decodes the KEY=VALUE
// pairs over them as TOML and saves the result as the next version, with
// the bind password of --password-stdin or --password-file, if any.
func (c *cli) domainSave(ctx context.Context, sub, name string, keys []string, pwStdin bool, pwFile string) error {
	name = strings.ToLower(name)
	d := config.NewDomain(name)
	var expect int64
	if sub == "set" {
		cur, err := c.h.Settings(ctx, name)
		if err != nil {
			return err
		}
		if cur.ManagedBy == host.ManagedByConfig {
			return domainError(host.ErrManagedByConfig)
		}
		d, expect = cur.Domain, cur.Version
	}
	if err := setKeys(&d, keys); err != nil {
		return err
	}
	if d.Name != name {
		return usagef("domain %s: the name cannot be changed (add a new domain instead)", sub)
	}
	password, err := readPassword(sub, pwStdin, pwFile)
	if err != nil {
		return err
	}
	v, err := c.h.SaveSettings(ctx, d, password, "cli", expect)
	if err != nil {
		return domainError(err)
	}
	fmt.Fprintf(c.stdout, "domain %s: settings version %d saved; the next run uses them\n", name, v)
	return nil
}

// readPassword reads the bind password of `domain add|set` from the file
// of --password-file or the first line of standard input
// (--password-stdin); nil when neither is given.
func readPassword(sub string, pwStdin bool, pwFile string) (*string, error) {
	switch {
	case pwStdin && pwFile != "":
		return nil, usagef("domain %s: --password-stdin or --password-file, not both", sub)
	case pwFile != "":
		b, err := os.ReadFile(pwFile)
		if err != nil {
			return nil, usagef("domain %s: --password-file: %v", sub, err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		return &pw, nil
	case pwStdin:
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return nil, usagef("domain %s: --password-stdin: no password on standard input", sub)
		}
		pw := strings.TrimRight(line, "\r\n")
		return &pw, nil
	}
	return nil, nil
}

// domainError makes a settings error a config error (exit 2) where it is
// one.
func domainError(err error) error {
	var ce *config.Error
	var fe *sdk.FilterError
	if errors.As(err, &ce) || errors.As(err, &fe) {
		return usagef("%v", err)
	}
	if errors.Is(err, host.ErrManagedByConfig) {
		return usagef("%v", err)
	}
	return err
}

// setKeys decodes KEY=VALUE pairs, with the keys of a [[domain]] table
// (dotted: ldap.filter), over d. A value that is not a TOML value (a bare
// filter, a URL) is taken as a string; an unknown key is refused.
func setKeys(d *config.Domain, pairs []string) error {
	var b strings.Builder
	for _, p := range pairs {
		key, val, ok := strings.Cut(p, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return usagef("domain: %q is not KEY=VALUE", p)
		}
		if key == "ldap.password" || key == "password" {
			return usagef("domain: give the bind password with --password-stdin, never on the command line")
		}
		var probe map[string]any
		if _, err := toml.Decode("v = "+val, &probe); err != nil {
			val = strconv.Quote(val)
		}
		fmt.Fprintf(&b, "%s = %s\n", key, val)
	}
	md, err := toml.Decode(b.String(), d)
	if err != nil {
		return usagef("domain: %v", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return usagef("domain: unknown key %q", und[0].String())
	}
	return nil
}

// runShow prints one run with all its changes, read a page at a time.
func (c *cli) runShow(ctx context.Context, args []string) error {
	f := newFlags("runs show", true, true)
	pos, err := f.parse(args, 1, 1, "ID")
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return usagef("runs show: %q is not a run id", pos[0])
	}
	d, err := c.openDomain(ctx, f.domain, false)
	if err != nil {
		return err
	}
	r, err := c.st.Run(ctx, d.Name, id)
	if err != nil {
		return err
	}
	if f.json {
		err := eachChangePage(ctx, c.st, d.Name, id, func(page []store.RunChange) error {
			r.Changes = append(r.Changes, page...)
			return nil
		})
		if err != nil {
			return err
		}
		return c.printJSON(r)
	}
	w := c.stdout
	fmt.Fprintf(w, "run %d of %s: %s", r.ID, r.Domain, r.Outcome)
	if r.Stage != "" {
		fmt.Fprintf(w, " at %s", r.Stage)
	}
	fmt.Fprintf(w, "\nstarted %s", r.Started.Local().Format(time.DateTime))
	if !r.Ended.IsZero() {
		fmt.Fprintf(w, ", took %s", r.Ended.Sub(r.Started).Round(time.Millisecond))
	}
	if r.Server != "" {
		fmt.Fprintf(w, ", server %s", r.Server)
	}
	if r.SettingsVersion > 0 {
		fmt.Fprintf(w, ", settings version %d", r.SettingsVersion)
	}
	fmt.Fprintln(w)
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
	k := r.Counts
	fmt.Fprintf(w, "read %d; created %d, updated %d, deleted %d, memberships added %d, removed %d; skipped %d, held %d, conflicts %d\n",
		k.Entries, k.Created, k.Updated, k.Deleted, k.MembersAdded, k.MembersRemoved, k.Skipped, k.Held, k.Conflicts)
	if i := r.Intended; i != nil {
		fmt.Fprintf(w, "nothing applied; it would have created %d, updated %d, deleted %d, memberships added %d, removed %d\n",
			i.Created, i.Updated, i.Deleted, i.MembersAdded, i.MembersRemoved)
	}
	for _, ref := range r.References {
		fmt.Fprintf(w, "referred, not read: %s\n", ref)
	}
	if r.ChangeCount == 0 {
		return nil
	}
	what := "changes"
	if r.Intended != nil {
		what = "changes it would have made"
	}
	fmt.Fprintf(w, "\n%s (%d):\n", what, r.ChangeCount)
	return eachChangePage(ctx, c.st, d.Name, id, func(page []store.RunChange) error {
		for _, ch := range page {
			fmt.Fprintf(w, "  %s %s", ch.Kind, ch.Address)
			if ch.Group != "" {
				fmt.Fprintf(w, " %s", ch.Group)
			}
			if ch.Before != nil && ch.After != nil && ch.Before.Primary != ch.After.Primary {
				fmt.Fprintf(w, " (was %s)", ch.Before.Primary)
			}
			fmt.Fprintln(w)
		}
		return nil
	})
}

// changePage is how many changes runShow reads at a time.
const changePage = 10000

// eachChangePage calls fn with the changes of run id of domain, a page at a
// time, in order.
func eachChangePage(ctx context.Context, st store.Store, domain string, id int64, fn func([]store.RunChange) error) error {
	for offset := 0; ; {
		page, err := st.RunChanges(ctx, domain, id, offset, changePage)
		if err != nil {
			return err
		}
		if err := fn(page); err != nil {
			return err
		}
		if len(page) < changePage {
			return nil
		}
		offset += len(page)
	}
}
