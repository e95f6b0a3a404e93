package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"time"
)

// heapProfile writes, while the command runs, a heap profile (go tool
// pprof) to path each time the live heap reaches a new high by a tenth:
// the file left at the end shows what the heap held at its peak. Checked
// every 20 ms; each write forces a collection first, so that the profile
// is of that moment (a heap profile is otherwise as of an earlier
// collection, which at a peak that the end of a run reaches may be before
// the largest structures were built).
func heapProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	f.Close()
	runtime.MemProfileRate = 64 << 10
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var peak uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if live := sample[0].Value.Uint64(); live > peak+peak/10 {
				peak = live
				runtime.GC()
				if f, err := os.Create(path); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		}
	}()
	return func() { close(done); <-finished }, nil
}

// withProfiles runs main under the profiles the environment asks for:
// DIRSYNC_CPUPROFILE=FILE (where a slow sync spends its time) and
// DIRSYNC_HEAPPROFILE=FILE (what a large sync's heap holds at its peak).
func withProfiles(main func() int) int {
	if path := os.Getenv("DIRSYNC_HEAPPROFILE"); path != "" {
		stop, err := heapProfile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dirsync: DIRSYNC_HEAPPROFILE: %v\n", err)
			return exitUsage
		}
		defer stop()
	}
	if path := os.Getenv("DIRSYNC_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "dirsync: DIRSYNC_CPUPROFILE: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	return main()
}
