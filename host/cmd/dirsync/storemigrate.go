package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/storecopy"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/postgres"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

// storeCmd runs `dirsync store SUBCOMMAND`: work on a whole store, named on
// the command line rather than by dirsync.toml.
func (c *cli) storeCmd(ctx context.Context, args []string) error {
	sub, args, err := subcommand("store", args)
	if err != nil {
		return err
	}
	switch sub {
	case "migrate":
		return c.storeMigrate(ctx, args)
	}
	return unknownSub("store", sub)
}

// migrateJSON is the output of `store migrate --json`.
type migrateJSON struct {
	From   string            `json:"from"`
	To     string            `json:"to"`
	Counts []storecopy.Count `json:"counts"`
	// Match is true when every count of the target equals the source's
	// (and the copy was committed).
	Match bool          `json:"match"`
	Held  []store.Lease `json:"held_leases,omitempty"`
	// TookNS is the time of the copy with its verification.
	TookNS int64 `json:"took_ns"`
}

// storeMigrate is `dirsync store migrate --from sqlite:PATH --to
// postgres:DSN`: it copies a SQLite store into an empty PostgreSQL one, in
// one transaction of the target, and verifies the counts (see package
// storecopy). It reads no dirsync.toml.
func (c *cli) storeMigrate(ctx context.Context, args []string) error {
	// Not newFlags: its --config is not for a command that reads no config
	// (takeConfig takes a --config out of the command line all the same).
	f := &flags{FlagSet: flag.NewFlagSet("store migrate", flag.ContinueOnError)}
	f.SetOutput(io.Discard)
	f.BoolVar(&f.json, "json", false, "print the counts as JSON")
	from := f.String("from", "", "copy the SQLite store `sqlite:PATH` (a relative PATH is from the working folder, not from a config); it is only read")
	to := f.String("to", "", "into the empty PostgreSQL store `postgres:DSN` (a URL postgres://USER@HOST/DB or key=value pairs); "+
		"its schema is created or brought up to date first")
	pwFile := f.String("to-password-file", "", "read the password of the target's DSN from the file `F` (as [store] password_file: "+
		"the line end after it is dropped)")
	if _, err := f.parse(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return usageError{msg: "store migrate: " + fmt.Sprintf(format, a...), usage: commandUsage(f.FlagSet)}
	}
	srcPath, ok := strings.CutPrefix(*from, "sqlite:")
	switch {
	case *from == "":
		return bad("--from is required")
	case !ok || srcPath == "":
		return bad("--from %q: want sqlite:PATH", postgres.RedactDSN(*from))
	}
	dsn, err := targetDSN(*to)
	if err != nil {
		return bad("%v", err)
	}
	toName := "postgres:" + postgres.RedactDSN(dsn)
	var opts []postgres.Option
	if *pwFile != "" {
		// The rules of [store] password_file, relative to the working
		// folder rather than to a config file.
		cfg := &config.Config{Store: config.Store{Driver: config.DriverPostgres, PasswordFile: *pwFile}}
		pw, err := cfg.StorePassword()
		if err != nil {
			if u := errors.Unwrap(err); u != nil {
				err = u // the file's error, without the config key
			}
			return bad("--to-password-file: %v", err)
		}
		opts = append(opts, postgres.WithPassword(pw))
	}
	if _, err := pgxpool.ParseConfig(dsn); err != nil {
		// Open says what is wrong with the DSN, with every password in it
		// masked; it connects to nothing when the DSN does not parse.
		if _, oerr := postgres.Open(ctx, dsn, opts...); oerr != nil {
			return bad("--to: %v", oerr)
		}
		return bad("--to %s: the DSN does not parse", toName)
	}

	src, err := sqlite.OpenReadOnly(srcPath)
	if err != nil {
		return fmt.Errorf("store migrate: the source: %w", err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, dsn, opts...)
	if err != nil {
		return fmt.Errorf("store migrate: the target: %w", err)
	}
	defer dst.Close()

	fmt.Fprintf(c.stderr, "store migrate: copying %s to %s\n", *from, toName)
	res, err := storecopy.Copy(ctx, src, dst, storecopy.Options{Progress: func(p storecopy.Progress) {
		fmt.Fprintf(c.stderr, "store migrate: copied %-17s %9d in %s\n", p.What, p.Rows, roundTook(p.Took))
	}})
	var mismatch *storecopy.MismatchError
	if err != nil && !errors.As(err, &mismatch) {
		return fmt.Errorf("store migrate: %w", err)
	}
	for _, l := range res.Held {
		fmt.Fprintf(c.stderr, "store migrate: note: %s held the lease of %s when the source was read (a sync was running): "+
			"what it writes from then on is not in the copy; stop every dirsync that uses the source before switching to the target\n",
			l.Holder, l.Domain)
	}
	if f.json {
		if perr := c.printJSON(migrateJSON{From: *from, To: toName, Counts: res.Counts, Match: err == nil, Held: res.Held,
			TookNS: int64(res.Took)}); perr != nil {
			return perr
		}
	} else {
		printCounts(c.stdout, res.Counts)
		if err == nil {
			fmt.Fprintf(c.stdout, "migrated %s to %s in %s: every count matches\n", *from, toName, roundTook(res.Took))
		}
	}
	if err != nil {
		return fmt.Errorf("store migrate: %w", err)
	}
	return nil
}

// printCounts prints the counts of a copy as a table: the rows' name, then
// the counts of the source and the target, right-aligned.
func printCounts(w io.Writer, counts []storecopy.Count) {
	name, num := len("TABLE"), len("SOURCE")
	for _, n := range counts {
		name = max(name, len(n.What))
		num = max(num, len(strconv.FormatInt(n.Source, 10)), len(strconv.FormatInt(n.Target, 10)))
	}
	fmt.Fprintf(w, "%-*s  %*s  %*s\n", name, "TABLE", num, "SOURCE", num, "TARGET")
	for _, n := range counts {
		fmt.Fprintf(w, "%-*s  %*d  %*d\n", name, n.What, num, n.Source, num, n.Target)
	}
}

// targetDSN returns the DSN of a --to value: postgres:DSN, or a
// postgres:// (postgresql://) URL as it stands.
func targetDSN(to string) (string, error) {
	if to == "" {
		return "", errors.New("--to is required")
	}
	if strings.HasPrefix(to, "postgres://") || strings.HasPrefix(to, "postgresql://") {
		return to, nil
	}
	dsn, ok := strings.CutPrefix(to, "postgres:")
	if !ok || strings.TrimSpace(dsn) == "" {
		return "", fmt.Errorf("--to %q: want postgres:DSN", postgres.RedactDSN(to))
	}
	return dsn, nil
}

// roundTook rounds a duration for a progress line.
func roundTook(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
