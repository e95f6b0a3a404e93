package host

import "time"

// SetLiveBackoff sets the live search's first reconnect backoff and how
// long a search must stay open to start from it again, until restore.
func SetLiveBackoff(min, healthy time.Duration) (restore func()) {
	oldMin, oldHealthy := liveBackoffMin, liveHealthy
	liveBackoffMin, liveHealthy = min, healthy
	return func() { liveBackoffMin, liveHealthy = oldMin, oldHealthy }
}
