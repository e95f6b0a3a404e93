// Command spawner is the test policy as a plugin program, with filters
// that start processes which leave the plugin's process group:
//
//	Filter "(setsid=yes)"    starts "sleep 300" in a session of its own
//	                         and answers "(child=PID)"
//	Filter "(setsid=noenv)"  the same, with an empty environment
//	Filter "(daemon=yes)"    starts "sleep 300" as a daemon does: through a
//	                         child that starts it in a session of its own
//	                         and exits, so that it is orphaned at once;
//	                         answers "(child=PID)"
//
// Run as "spawner daemonize", it is that child: it starts the sleep,
// prints its process id and exits.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/dirsync/dirsync/host/internal/testpolicy"
	"github.com/dirsync/dirsync/sdk"
)

type spawner struct{ *testpolicy.Policy }

func (s spawner) Filter(r sdk.FilterRequest) (sdk.FilterResponse, error) {
	switch r.Filter {
	case "(setsid=yes)", "(setsid=noenv)":
		cmd := sleeper()
		if r.Filter == "(setsid=noenv)" {
			cmd.Env = []string{}
		}
		if err := cmd.Start(); err != nil {
			return sdk.FilterResponse{}, err
		}
		go cmd.Wait()
		return child(cmd.Process.Pid), nil
	case "(daemon=yes)":
		exe, err := os.Executable()
		if err != nil {
			return sdk.FilterResponse{}, err
		}
		out, err := exec.Command(exe, "daemonize").Output()
		if err != nil {
			return sdk.FilterResponse{}, fmt.Errorf("daemonize: %w", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			return sdk.FilterResponse{}, fmt.Errorf("daemonize printed %q", out)
		}
		return child(pid), nil
	}
	return s.Policy.Filter(r)
}

func sleeper() *exec.Cmd {
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

func child(pid int) sdk.FilterResponse {
	return sdk.FilterResponse{Filter: "(child=" + strconv.Itoa(pid) + ")"}
}

func init() { sdk.Register(spawner{testpolicy.New()}) }

func main() {
	if len(os.Args) == 2 && os.Args[1] == "daemonize" {
		cmd := sleeper()
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(cmd.Process.Pid)
		os.Exit(0)
	}
	sdk.Main()
}
