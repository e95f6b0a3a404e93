package host

import (
	"context"
	"time"
)

// SetLiveBackoff sets the live search's first reconnect backoff and how
// long a search must stay open to start from it again, until restore.
func SetLiveBackoff(min, healthy time.Duration) (restore func()) {
	oldMin, oldHealthy := liveBackoffMin, liveHealthy
	liveBackoffMin, liveHealthy = min, healthy
	return func() { liveBackoffMin, liveHealthy = oldMin, oldHealthy }
}

// ErrLiveStale is errLiveStale.
var ErrLiveStale = errLiveStale

// RunIfCookie is h.Run of a sync that takes place only while the domain's
// kept cookie is cookie (RunOptions.ifCookie).
func RunIfCookie(ctx context.Context, h *Host, domain string, cookie []byte) (*Report, error) {
	return h.Run(ctx, domain, RunOptions{Full: true, ifCookie: cookie})
}
