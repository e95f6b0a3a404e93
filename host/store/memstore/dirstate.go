package memstore

import (
	"bytes"
	"context"
	"slices"

	"github.com/dirsync/dirsync/host/store"
)

// DirState returns a copy of the directory state that the domain's last
// applied run left; nil (and no error) when there is none or the domain is
// unknown. An empty cookie, entries or head reads back nil, as the SQL
// stores give them.
func (s *Store) DirState(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, true)
}

// DirStateHead is DirState without the entries (nil): it does not copy
// them.
func (s *Store) DirStateHead(ctx context.Context, domain string) (*store.DirState, error) {
	return s.dirState(ctx, domain, false)
}

// dirState copies the directory state of domain, its entries only if
// withEntries.
func (s *Store) dirState(ctx context.Context, domain string, withEntries bool) (*store.DirState, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ds := s.dirStates[domain]
	if ds == nil {
		return nil, nil
	}
	var c *store.DirState
	if withEntries {
		c = copyDirState(ds)
	} else {
		head := *ds
		head.Entries = nil
		c = copyDirState(&head)
	}
	c.Generation = s.domain(domain).generation
	return c, nil
}

// copyDirState returns a copy of ds that shares no memory with it, the
// caller's or the store's. Empty byte slices become nil.
func copyDirState(ds *store.DirState) *store.DirState {
	c := *ds
	c.Cookie, c.Head, c.Entries = cloneBytes(ds.Cookie), cloneBytes(ds.Head), cloneBytes(ds.Entries)
	return &c
}

// cloneBytes copies b; an empty one becomes nil.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return slices.Clone(b)
}

// MoveCookie replaces the kept state's cookie from by to
// (store.CookieMover).
func (s *Store) MoveCookie(ctx context.Context, domain string, from, to []byte) (bool, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return false, err
	}
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	ds := s.dirStates[domain]
	if ds == nil || !bytes.Equal(ds.Cookie, from) || len(from) == 0 {
		return false, nil
	}
	ds.Cookie = cloneBytes(to)
	return true, nil
}
