package memstore

import (
	"context"
	"slices"

	"github.com/dirsync/dirsync/host/store"
)

// DirState returns a copy of the directory state that the domain's last
// applied run left; nil (and no error) when there is none or the domain is
// unknown. An empty cookie or entries reads back nil, as the SQL stores
// give them.
func (s *Store) DirState(ctx context.Context, domain string) (*store.DirState, error) {
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
	c := copyDirState(ds)
	c.Generation = s.domain(domain).generation
	return c, nil
}

// copyDirState returns a copy of ds that shares no memory with it, the
// caller's or the store's. Empty byte slices become nil.
func copyDirState(ds *store.DirState) *store.DirState {
	c := *ds
	c.Cookie, c.Entries = cloneBytes(ds.Cookie), cloneBytes(ds.Entries)
	return &c
}

// cloneBytes copies b; an empty one becomes nil.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return slices.Clone(b)
}
