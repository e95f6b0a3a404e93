package main

import (
	"context"
	"fmt"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/postgres"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

// openStore opens the store that [store] of cfg names: for writing
// (creating and migrating it as needed), or, with readOnly, for reading
// only (never created, migrated or written; store.ErrNoStore if there is
// none). A postgres store connects with the password of [store]
// password_file or password_env when one is set, in place of any in the
// DSN. Errors never show a password.
func openStore(ctx context.Context, cfg *config.Config, readOnly bool) (store.Store, error) {
	switch cfg.Store.Driver {
	case config.DriverSQLite, "":
		open := sqlite.Open
		if readOnly {
			open = sqlite.OpenReadOnly
		}
		s, err := open(cfg.Store.DSN)
		if err != nil {
			return nil, err // not a nil *sqlite.Store in a non-nil interface
		}
		return s, nil
	case config.DriverPostgres:
		var opts []postgres.Option
		if cfg.Store.PasswordFile != "" || cfg.Store.PasswordEnv != "" {
			pw, err := cfg.StorePassword()
			if err != nil {
				return nil, err
			}
			opts = append(opts, postgres.WithPassword(pw))
		}
		open := postgres.Open
		if readOnly {
			open = postgres.OpenReadOnly
		}
		s, err := open(ctx, cfg.Store.DSN, opts...)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown store driver %q", cfg.Store.Driver)
}

// storeName names the store of cfg for messages: its DSN, without a
// password.
func storeName(cfg *config.Config) string {
	if cfg.Store.Driver == config.DriverPostgres {
		return postgres.RedactDSN(cfg.Store.DSN)
	}
	return cfg.Store.DSN
}
