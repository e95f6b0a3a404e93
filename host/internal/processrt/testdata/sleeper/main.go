// Command sleeper never completes go-plugin's handshake: it writes its
// process id to sleeper.pid next to itself and sleeps.
package main

import (
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(exe), "sleeper.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		panic(err)
	}
	time.Sleep(time.Hour)
}
