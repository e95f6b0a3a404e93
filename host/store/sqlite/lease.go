package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dirsync/dirsync/host/store"
)

// AcquireLease takes the domain's lease for holder until now+ttl, creating
// the domain if needed. Another holder's unexpired lease is a
// *store.BusyError; an expired one is taken over; the holder's own lease is
// renewed (its since and run id kept).
func (s *Store) AcquireLease(ctx context.Context, domain, holder string, ttl time.Duration) (store.Lease, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return store.Lease{}, err
	}
	if err := leaseArgs(holder, ttl); err != nil {
		return store.Lease{}, fmt.Errorf("acquire lease on %s: %w", domain, err)
	}
	var lease store.Lease
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		now := time.Now().UTC()
		cur, found, err := readLease(ctx, tx, domain)
		if err != nil {
			return err
		}
		switch {
		case !found:
			lease = store.Lease{Domain: domain, Holder: holder, Since: now, Expiry: now.Add(ttl)}
			_, err = tx.ExecContext(ctx, `INSERT INTO leases (domain, holder, run_id, since, expiry) VALUES (?, ?, 0, ?, ?)`,
				domain, holder, formatTime(lease.Since), formatTime(lease.Expiry))
		case cur.Holder == holder:
			lease = cur
			lease.Expiry = now.Add(ttl)
			_, err = tx.ExecContext(ctx, `UPDATE leases SET expiry = ? WHERE domain = ?`, formatTime(lease.Expiry), domain)
		case cur.Expiry.After(now):
			return &store.BusyError{Lease: cur}
		default: // expired: its holder is gone or too late
			lease = store.Lease{Domain: domain, Holder: holder, Since: now, Expiry: now.Add(ttl)}
			_, err = tx.ExecContext(ctx, `UPDATE leases SET holder = ?, run_id = 0, since = ?, expiry = ? WHERE domain = ?`,
				holder, formatTime(lease.Since), formatTime(lease.Expiry), domain)
		}
		return err
	})
	if err != nil {
		var busy *store.BusyError
		if errors.As(err, &busy) {
			return store.Lease{}, busy
		}
		return store.Lease{}, fmt.Errorf("acquire lease on %s: %w", domain, err)
	}
	return lease, nil
}

// RenewLease moves the expiry of holder's lease on domain to now+ttl. It is
// store.ErrLeaseLost if another holder has taken the lease or it was
// released; a lease that expired but that nobody took is still holder's.
func (s *Store) RenewLease(ctx context.Context, domain, holder string, ttl time.Duration) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if err := leaseArgs(holder, ttl); err != nil {
		return fmt.Errorf("renew lease on %s: %w", domain, err)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		expiry := time.Now().UTC().Add(ttl)
		res, err := tx.ExecContext(ctx, `UPDATE leases SET expiry = ? WHERE domain = ? AND holder = ?`,
			formatTime(expiry), domain, holder)
		if err != nil {
			return fmt.Errorf("renew lease on %s: %w", domain, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("lease on %s of %s: %w", domain, holder, store.ErrLeaseLost)
		}
		return nil
	})
}

// ReleaseLease gives up holder's lease on domain; one that holder does not
// have is left alone, and is no error.
func (s *Store) ReleaseLease(ctx context.Context, domain, holder string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE domain = ? AND holder = ?`, domain, holder); err != nil {
			return fmt.Errorf("release lease on %s: %w", domain, err)
		}
		return nil
	})
}

// leaseArgs checks the holder and ttl given to AcquireLease or RenewLease.
func leaseArgs(holder string, ttl time.Duration) error {
	if holder == "" {
		return errors.New("empty lease holder")
	}
	if ttl <= 0 {
		return fmt.Errorf("lease duration %v is not positive", ttl)
	}
	return nil
}

// readLease reads the lease row of domain, if there is one.
func readLease(ctx context.Context, tx *sql.Tx, domain string) (l store.Lease, found bool, err error) {
	var since, expiry string
	err = tx.QueryRowContext(ctx, `SELECT holder, run_id, since, expiry FROM leases WHERE domain = ?`, domain).
		Scan(&l.Holder, &l.RunID, &since, &expiry)
	if errors.Is(err, sql.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, err
	}
	l.Domain = domain
	if l.Since, err = parseTime(since); err != nil {
		return l, false, fmt.Errorf("lease on %s: since: %w", domain, err)
	}
	if l.Expiry, err = parseTime(expiry); err != nil {
		return l, false, fmt.Errorf("lease on %s: expiry: %w", domain, err)
	}
	return l, true, nil
}
