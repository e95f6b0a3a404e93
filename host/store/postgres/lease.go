package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dirsync/dirsync/host/store"
)

// AcquireLease takes the domain's lease for holder until now+ttl, creating
// the domain if needed, in one statement that locks the lease row. Another
// holder's unexpired lease is a *store.BusyError; an expired one is taken
// over; the holder's own lease is renewed (its since and run id kept).
// "Now" is the database's clock, which every replica shares.
func (s *Store) AcquireLease(ctx context.Context, domain, holder string, ttl time.Duration) (store.Lease, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return store.Lease{}, err
	}
	if err := leaseArgs(holder, ttl); err != nil {
		return store.Lease{}, fmt.Errorf("acquire lease on %s: %w", domain, err)
	}
	lease := store.Lease{Domain: domain}
	var busy *store.BusyError
	err = s.writeTx(ctx, func(tx pgx.Tx) error {
		if err := ensureDomain(ctx, tx, domain); err != nil {
			return err
		}
		// The upsert locks the row; its WHERE lets a holder renew its own
		// lease or take an expired one, and leaves another's alone.
		err := tx.QueryRow(ctx, `
			INSERT INTO leases AS l (domain, holder, run_id, since, expiry)
			VALUES ($1, $2, 0, now(), now() + $3::interval)
			ON CONFLICT (domain) DO UPDATE SET
				holder = excluded.holder,
				run_id = CASE WHEN l.holder = excluded.holder THEN l.run_id ELSE 0 END,
				since  = CASE WHEN l.holder = excluded.holder THEN l.since ELSE excluded.since END,
				expiry = excluded.expiry
			WHERE l.holder = excluded.holder OR l.expiry <= now()
			RETURNING holder, run_id, since, expiry`, domain, holder, ttl).
			Scan(&lease.Holder, &lease.RunID, &lease.Since, &lease.Expiry)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		cur := store.Lease{Domain: domain}
		if err := tx.QueryRow(ctx, `SELECT holder, run_id, since, expiry FROM leases WHERE domain = $1`, domain).
			Scan(&cur.Holder, &cur.RunID, &cur.Since, &cur.Expiry); err != nil {
			return err
		}
		busy = &store.BusyError{Lease: cur}
		return busy
	})
	if busy != nil {
		return store.Lease{}, busy
	}
	if err != nil {
		return store.Lease{}, fmt.Errorf("acquire lease on %s: %w", domain, err)
	}
	return lease, nil
}

// RenewLease moves the expiry of holder's lease on domain to now+ttl (the
// database's clock). It is store.ErrLeaseLost if another holder has taken
// the lease or it was released; a lease that expired but that nobody took
// is still holder's.
func (s *Store) RenewLease(ctx context.Context, domain, holder string, ttl time.Duration) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if err := leaseArgs(holder, ttl); err != nil {
		return fmt.Errorf("renew lease on %s: %w", domain, err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE leases SET expiry = now() + $3::interval WHERE domain = $1 AND holder = $2`,
		domain, holder, ttl)
	if err != nil {
		return fmt.Errorf("renew lease on %s: %w", domain, ctxErr(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("lease on %s of %s: %w", domain, holder, store.ErrLeaseLost)
	}
	return nil
}

// ReleaseLease gives up holder's lease on domain; one that holder does not
// have is left alone, and is no error.
func (s *Store) ReleaseLease(ctx context.Context, domain, holder string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE domain = $1 AND holder = $2`, domain, holder); err != nil {
		return fmt.Errorf("release lease on %s: %w", domain, ctxErr(ctx, err))
	}
	return nil
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
