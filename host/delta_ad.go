package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/ldapfetch"
	"github.com/dirsync/dirsync/sdk"
)

// A kept cookie starts with a byte that names the reader that made it, so
// that a delta is read the same way.
const (
	cookieSyncrepl = 's' // RFC 4533 (OpenLDAP's syncprov)
	cookieDirSync  = 'd' // Active Directory's DirSync control
	cookieUSN      = 'u' // Active Directory's uSNChanged, of one DC
)

func kindCookie(kind byte, raw []byte) []byte {
	if len(raw) == 0 {
		return nil
	}
	return append([]byte{kind}, raw...)
}

// noObject is a filter that matches no entry and costs the server an index
// lookup: a DirSync with it gives a cookie without reading the directory.
const noObject = `(objectGUID=\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00)`

// takeCookie asks the directory for a cookie of its present state before a
// full read, trying the readers in turn: RFC 4533 (OpenLDAP), then
// Active Directory's DirSync (for a reader with "Replicating Directory
// Changes"), then AD's highest committed USN (any reader). nil when the
// directory can give none: no delta will follow. A directory that cannot
// be reached or bound to is the run's error (ldapfetch.Unreachable): the
// full read would meet it too, and a wrong password is tried once.
//
// server is the one that gave the cookie: a read that fails over to
// another must not keep it (a replica behind it has not the changes it
// says were read; AD's cookies and USNs are the server's own).
func (h *Host) takeCookie(ctx context.Context, d *config.Domain, creds bind) (cookie []byte, server string, err error) {
	cfg := h.fetchConfig(d, creds)
	none := func(msg string, err error) ([]byte, string, error) {
		h.log.Info(msg+"; the next run reads in full too", "domain", d.Name, "err", err)
		return nil, "", nil
	}
	c, server, err := ldapfetch.Cookie(ctx, cfg)
	switch {
	case err == nil:
		return kindCookie(cookieSyncrepl, c), server, nil
	case ldapfetch.Unreachable(err):
		return nil, "", &stageError{"fetch", err}
	case !errors.Is(err, ldapfetch.ErrSyncUnsupported):
		return none("no cookie for a later delta read", err)
	}
	res, err := ldapfetch.DirSync(ctx, cfg, noObject, []string{"objectGUID"}, nil, func(ldapfetch.DirSyncChange) error { return nil })
	if err == nil {
		return kindCookie(cookieDirSync, res.Cookie), res.URL, nil
	}
	if !errors.Is(err, ldapfetch.ErrDirSyncDenied) && !errors.Is(err, ldapfetch.ErrDirSyncUnsupported) {
		return none("no DirSync cookie for a later delta read", err)
	}
	usn, err := ldapfetch.ServerUSN(ctx, cfg)
	if err != nil {
		h.log.Debug("the directory tells no changes (no RFC 4533, DirSync or uSNChanged); every run reads in full", "domain", d.Name, "err", err)
		return nil, "", nil
	}
	b, err := json.Marshal(usn)
	if err != nil {
		return nil, "", nil
	}
	return kindCookie(cookieUSN, b), usn.URL, nil
}

// readDirSync reads what changed since a DirSync cookie: the IDs of the
// entries below the base that match the filter (the present list, which
// finds the entries gone, also where the reader may not see tombstones),
// then the changed objects (DirSync over every object of the naming
// context, as a change may take one out of the filter), then the changed
// ones' whole entries (FetchIDs).
func (h *Host) readDirSync(ctx context.Context, cfg ldapfetch.Config, rep *Report, in *runInput, cookie []byte) (*dirChanges, error) {
	present, _, err := ldapfetch.FetchIDList(ctx, cfg, rep.Filter)
	if err != nil {
		return nil, &stageError{"fetch", err}
	}
	var ids, tombs []string
	// DirSync reports the objects whose asked-for attributes changed: ask
	// for the policy's.
	res, err := ldapfetch.DirSync(ctx, cfg, "(objectClass=*)", in.p.Info().Attributes, cookie, func(c ldapfetch.DirSyncChange) error {
		switch {
		case c.Deleted:
			tombs = append(tombs, c.ID)
		case c.InBase:
			ids = append(ids, c.ID)
		}
		return nil
	})
	rep.Server = res.URL
	if errors.Is(err, ldapfetch.ErrDirSyncCookie) || errors.Is(err, ldapfetch.ErrDirSyncDenied) || errors.Is(err, ldapfetch.ErrDirSyncUnsupported) {
		return nil, fmt.Errorf("%w: %v", errFullRead, err)
	}
	if err != nil {
		return nil, &stageError{"fetch", err}
	}
	entries, err := h.fetchIDs(ctx, cfg, rep, in, ids)
	if err != nil {
		return nil, err
	}
	return &dirChanges{entries: entries, deleted: tombs, presentPhase: true, present: present,
		cookie: kindCookie(cookieDirSync, res.Cookie)}, nil
}

// readUSN reads what changed on the same DC since a highest committed USN:
// the present list as for DirSync, and the entries whose uSNChanged is
// higher. The new cookie is the USN read before them, so that a change
// made meanwhile is read again next time rather than missed. Another DC
// answering (a failover), whose USNs do not compare, makes a full read.
func (h *Host) readUSN(ctx context.Context, cfg ldapfetch.Config, rep *Report, in *runInput, cookie []byte) (*dirChanges, error) {
	var was ldapfetch.USNState
	if err := json.Unmarshal(cookie, &was); err != nil {
		return nil, fmt.Errorf("%w: the kept USN does not decode: %v", errFullRead, err)
	}
	now, err := ldapfetch.ServerUSN(ctx, cfg)
	if err != nil {
		return nil, &stageError{"fetch", err}
	}
	rep.Server = now.URL
	if !now.SameServer(was) {
		return nil, fmt.Errorf("%w: another domain controller answers (%s, was %s): USNs are per server", errFullRead, now.DSServiceName, was.DSServiceName)
	}
	present, res, err := ldapfetch.FetchIDList(ctx, cfg, rep.Filter)
	if err != nil {
		return nil, &stageError{"fetch", err}
	}
	var changed []sdk.Entry
	res2, err := ldapfetch.FetchChangedSince(ctx, cfg, rep.Filter, in.p.Info().Attributes, was.HighestCommittedUSN, func(e sdk.Entry) error {
		changed = append(changed, e)
		return nil
	})
	if err != nil {
		return nil, &stageError{"fetch", err}
	}
	if res.URL != now.URL || res2.URL != now.URL {
		return nil, fmt.Errorf("%w: the reads reached different servers (%s, %s, %s)", errFullRead, now.URL, res.URL, res2.URL)
	}
	b, err := json.Marshal(now)
	if err != nil {
		return nil, err
	}
	return &dirChanges{entries: changed, presentPhase: true, present: present, cookie: kindCookie(cookieUSN, b)}, nil
}

// fetchIDs reads the whole entries of ids below the base that match the
// filter.
func (h *Host) fetchIDs(ctx context.Context, cfg ldapfetch.Config, rep *Report, in *runInput, ids []string) ([]sdk.Entry, error) {
	var entries []sdk.Entry
	_, err := ldapfetch.FetchIDs(ctx, cfg, rep.Filter, in.p.Info().Attributes, ids, func(e sdk.Entry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, &stageError{"fetch", err}
	}
	return entries, nil
}
