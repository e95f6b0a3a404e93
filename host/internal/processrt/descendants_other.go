//go:build !linux

package processrt

import "time"

// Outside Linux there is no child subreaper: a plugin's descendants that
// leave its process group are not tracked (see descendants_linux.go).

const tagEnv = "DIRSYNC_PLUGIN_TAG"

func becomeSubreaper() error { return nil }

type family map[int]uint64

func (family) gather(int, bool, string) {}
func (family) kill()                    {}
func (family) reap(time.Time) []int     { return nil }
