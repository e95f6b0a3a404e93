package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/dirsync/dirsync/host/store"
)

// The settings of a store-kept domain are a list of versions that only
// grows: s.settings[domain][i] is version i+1. The latest is the domain's
// current settings unless it is a removal. Nothing is ever edited, so
// version numbers are never reused.

// PutSettings saves v as the next version of v.Domain's settings if the
// domain's current version is expect: its latest, or 0 if it has none or
// the latest removed it. Otherwise it returns store.ErrConflict naming the
// current version, and saves nothing: of several callers that read one
// version, only the first saves. It keeps a copy of v's bytes, fills
// v.Version and v.Created, sets v.Domain to the lower-case name, and creates
// the domain if needed.
func (s *Store) PutSettings(ctx context.Context, v *store.SettingsVersion, expect int64) error {
	domain, err := store.CheckSettingsVersion(v, expect)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	versions := s.settings[domain]
	if cur := current(versions); cur != expect {
		return fmt.Errorf("save settings of %s: the current version is %d, the change expected version %d: %w",
			domain, cur, expect, store.ErrConflict)
	}
	s.ensureDomain(domain)
	v.Domain, v.Version, v.Created = domain, int64(len(versions))+1, s.now()
	s.settings[domain] = append(versions, copySettings(v, true))
	return nil
}

// current is the domain's current settings version: the latest, or 0 if
// there is none or it removed the domain.
func current(versions []store.SettingsVersion) int64 {
	if len(versions) == 0 || versions[len(versions)-1].Removed {
		return 0
	}
	return versions[len(versions)-1].Version
}

// Settings returns a copy of a version of a domain's settings, with its
// secret; version 0 is the current one. store.ErrNotFound if there is no
// such version, or for 0 if the domain has none or was removed. A version
// that removed the domain is returned with Removed set.
func (s *Store) Settings(ctx context.Context, domain string, version int64) (*store.SettingsVersion, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	versions := s.settings[domain]
	n := version
	if n == 0 {
		n = current(versions)
	}
	if n <= 0 || n > int64(len(versions)) {
		if version == 0 {
			return nil, fmt.Errorf("settings of %s: %w", domain, store.ErrNotFound)
		}
		return nil, fmt.Errorf("version %d of the settings of %s: %w", version, domain, store.ErrNotFound)
	}
	v := copySettings(&versions[n-1], true)
	return &v, nil
}

// SettingsHistory lists copies of every version of a domain's settings,
// newest first, removals included, without their secrets.
func (s *Store) SettingsHistory(ctx context.Context, domain string) ([]store.SettingsVersion, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("settings history: %w", err)
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var history []store.SettingsVersion
	for _, v := range slices.Backward(s.settings[domain]) {
		history = append(history, copySettings(&v, false))
	}
	return history, nil
}

// StoredDomains returns a copy, with its secret, of the current settings of
// every store-kept domain (one whose latest version did not remove it),
// sorted by domain name.
func (s *Store) StoredDomains(ctx context.Context) ([]store.SettingsVersion, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.SettingsVersion
	for _, versions := range s.settings {
		if cur := current(versions); cur != 0 {
			out = append(out, copySettings(&versions[cur-1], true))
		}
	}
	slices.SortFunc(out, func(a, b store.SettingsVersion) int { return strings.Compare(a.Domain, b.Domain) })
	return out, nil
}

// RemoveSettings saves, by author, a version that removes the domain: it
// carries the settings of the version it removes and no secret.
// store.ErrNotFound if the domain has no settings or is removed already.
// Mailboxes, groups, runs and older versions stay.
func (s *Store) RemoveSettings(ctx context.Context, domain, author string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return fmt.Errorf("remove settings: %w", err)
	}
	if author == "" {
		return fmt.Errorf("remove settings of %s: no author", domain)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	versions := s.settings[domain]
	cur := current(versions)
	if cur == 0 {
		return fmt.Errorf("remove settings of %s: no settings: %w", domain, store.ErrNotFound)
	}
	s.settings[domain] = append(versions, store.SettingsVersion{
		Domain: domain, Version: cur + 1, Settings: bytes.Clone(versions[cur-1].Settings),
		Author: author, Created: s.now(), Removed: true,
	})
	return nil
}

// copySettings returns a copy of v that shares no memory with it, with its
// secret if withSecret (else Secret is nil).
func copySettings(v *store.SettingsVersion, withSecret bool) store.SettingsVersion {
	c := *v
	c.Settings = bytes.Clone(v.Settings)
	c.Secret = nil
	if withSecret {
		c.Secret = bytes.Clone(v.Secret)
	}
	return c
}
