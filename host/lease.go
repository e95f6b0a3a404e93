package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
)

// DefaultLeaseTTL is how long a run's lease on its domain lasts unless
// renewed; a run renews it every third of that. A holder that dies frees
// its domain when the lease expires.
const DefaultLeaseTTL = config.DefaultLeaseTTL

// recentRuns is how many of a domain's newest runs a scheduled run looks
// at to find whether its turn was taken.
const recentRuns = 50

// liveHolder ends the holder of a run of a live search's changes. Such runs
// take no scheduled turn: a domain whose directory changes often would
// otherwise never have a scheduled run, nor its full read on
// full_interval.
const liveHolder = " (live)"

// leasePoll is how often a run that waits for a busy domain tries again.
const leasePoll = 250 * time.Millisecond

var runSeq atomic.Int64

// holder names a new run as a lease holder: host, process and a sequence
// number, unique among the runs of this process.
func (h *Host) holder() string {
	name, err := os.Hostname()
	if err != nil {
		name = "unknown-host"
	}
	return fmt.Sprintf("%s pid %d #%d", name, os.Getpid(), runSeq.Add(1))
}

// lease takes the domain's lease for run, waiting up to o.Wait while
// another holder has it, records the run's start, and keeps the lease
// renewed. The run starts when it holds the lease: run.Started is set
// then, so that the records of one domain's runs never overlap in time.
// With o.SkipIfStartedWithin, a domain whose newest run started that
// recently gives the lease back and ErrRecentRun. The returned context
// ends when the lease is lost; release stops the renewal and gives the
// lease up. On error ctx is returned as it was.
func (h *Host) lease(ctx context.Context, run *store.Run, o RunOptions) (context.Context, func(), error) {
	ttl, wait := h.leaseTTL, o.Wait
	deadline := time.Now().Add(wait)
	for {
		_, err := h.store.AcquireLease(ctx, run.Domain, run.Holder, ttl)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrDomainBusy) || !time.Now().Before(deadline) {
			if errors.Is(err, store.ErrDomainBusy) && wait > 0 {
				err = fmt.Errorf("%w; waited %s", err, wait)
			}
			return ctx, nil, err
		}
		select {
		case <-ctx.Done():
			return ctx, nil, context.Cause(ctx)
		case <-time.After(min(leasePoll, time.Until(deadline))):
		}
	}
	free := func() {
		if err := h.store.ReleaseLease(context.WithoutCancel(ctx), run.Domain, run.Holder); err != nil {
			h.log.Warn("releasing the domain's lease; it expires by itself", "domain", run.Domain, "err", err)
		}
	}
	run.Started = time.Now()
	if o.SkipIfStartedWithin > 0 {
		// The newest runs by id, and among them the latest start: a record
		// written late (an attempt made while the store was away) has a
		// new id and an old start.
		recent, err := h.store.RunsPage(ctx, run.Domain, recentRuns, 0)
		if err != nil {
			free()
			return ctx, nil, err
		}
		var last *store.Run
		for i := range recent {
			if strings.HasSuffix(recent[i].Holder, liveHolder) {
				continue
			}
			if last == nil || recent[i].Started.After(last.Started) {
				last = &recent[i]
			}
		}
		if last != nil && time.Since(last.Started) < o.SkipIfStartedWithin {
			free()
			return ctx, nil, fmt.Errorf("%w: run %d started %s ago (by %s)", ErrRecentRun, last.ID,
				time.Since(last.Started).Round(time.Millisecond), last.Holder)
		}
	}
	if base := o.ifCookie; o.live != nil || base != nil {
		// A live batch follows one kept state: when another run (another
		// replica's live search, a scheduled run) moved it on, the batch
		// is dropped unrecorded, like a turn another run took; so is a
		// live search's full run after a refused cookie that another run
		// replaced meanwhile.
		if o.live != nil {
			base = o.live.base
		}
		st, err := h.store.DirStateHead(ctx, run.Domain)
		if err == nil && (st == nil || !bytes.Equal(st.Cookie, base)) {
			err = errLiveStale
		}
		if err != nil {
			free()
			return ctx, nil, err
		}
		if o.live != nil {
			o.live.state = st
		}
	}
	if err := h.store.StartRun(ctx, run); err != nil {
		free()
		return ctx, nil, fmt.Errorf("recording the run's start: %w", err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			err := h.store.RenewLease(ctx, run.Domain, run.Holder, ttl)
			switch {
			case errors.Is(err, store.ErrLeaseLost):
				cancel(err)
				return
			case err != nil && ctx.Err() == nil:
				// A busy store: the next tick tries again, and Apply checks
				// that nobody wrote the domain meanwhile.
				h.log.Warn("renewing the domain's lease", "domain", run.Domain, "err", err)
			}
		}
	}()
	release := func() {
		close(done)
		<-stopped
		cancel(nil)
		free()
	}
	return ctx, release, nil
}

// settingsJSON is the JSON of the settings a run uses, as the run record
// keeps them: the [[domain]] keys, without secrets (a password file or
// variable is named, never read here).
func settingsJSON(d *config.Domain) string {
	type ldap struct {
		URLs               []string `json:"urls"`
		BindDN             string   `json:"bind_dn,omitempty"`
		PasswordFile       string   `json:"password_file,omitempty"`
		PasswordEnv        string   `json:"password_env,omitempty"`
		BaseDN             string   `json:"base_dn"`
		Filter             string   `json:"filter"`
		StartTLS           bool     `json:"start_tls"`
		CAFile             string   `json:"ca_file,omitempty"`
		InsecureSkipVerify bool     `json:"insecure_skip_verify"`
		AllowCleartextBind bool     `json:"allow_cleartext_bind"`
		PageSize           int      `json:"page_size"`
		Timeout            string   `json:"timeout"`
		ConnectTimeout     string   `json:"connect_timeout"`
		MaxEntries         int      `json:"max_entries"`
	}
	type safety struct {
		MaxDeletes       int     `json:"max_deletes"`
		MaxDeletePercent float64 `json:"max_delete_percent"`
		PercentFloor     int     `json:"percent_floor"`
	}
	l := &d.LDAP
	b, err := json.Marshal(struct {
		Name         string   `json:"name"`
		Sync         bool     `json:"sync"`
		Policy       string   `json:"policy"`
		AliasDomains []string `json:"alias_domains"`
		LDAP         ldap     `json:"ldap"`
		Safety       safety   `json:"safety"`
	}{d.Name, d.Sync, d.Policy, d.AliasDomains,
		ldap{l.URLs, l.BindDN, l.PasswordFile, l.PasswordEnv, l.BaseDN, l.Filter, l.StartTLS, l.CAFile, l.InsecureSkipVerify,
			l.AllowCleartextBind, l.PageSize, l.Timeout.String(), l.ConnectTimeout.String(), l.MaxEntries},
		safety{d.Safety.MaxDeletes, d.Safety.MaxDeletePercent, d.Safety.PercentFloor}})
	if err != nil {
		return ""
	}
	return string(b)
}
