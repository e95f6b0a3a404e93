package testpeer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// ErrRunning is the error of Daemon.Start while its process runs.
var ErrRunning = errors.New("already running")

// Launch says how to start a peer's server program and how to tell that it
// is ready.
type Launch struct {
	// Name names the peer in errors: "slapd", "samba".
	Name string
	// Cmd is the command, not yet started. Start sends its stdout and
	// stderr to Output and has the kernel kill it when the thread that
	// started it dies.
	Cmd *exec.Cmd
	// Output receives the program's stdout and stderr. It is closed when
	// the program exits, or when it cannot start.
	Output *os.File
	// Stdin keeps a pipe to the program's stdin, which Stop and Kill close
	// (`samba -i` ends when it closes).
	Stdin bool
	// Poll is how often Ready is asked.
	Poll time.Duration
	// Timeout bounds the wait for Ready.
	Timeout time.Duration
	// Awaited says what Ready waits for, for the error when Timeout
	// passes: "did not <Awaited> within <Timeout>".
	Awaited string
	// Ready reports whether the server, process pid, is ready. An error
	// ends the start: the process is killed and the error's text handed to
	// Fail.
	Ready func(pid int) (bool, error)
	// Fail makes the error of a start that failed once the program ran:
	// what says why ("exited during start (exit status 1)", "did not
	// accept connections within 30s", or Ready's error).
	Fail func(what string) error
}

// A StopStep of Daemon.Stop waits up to Wait for the process to exit and,
// if it has not, sends it Signal.
type StopStep struct {
	Wait   time.Duration
	Signal syscall.Signal
}

// Daemon holds the running server process of a peer, if any. Its methods
// may be called from any goroutine; its zero value holds no process.
type Daemon struct {
	mu   sync.Mutex
	proc *process
}

// process is one run of a server program.
type process struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser // nil unless Launch.Stdin
	done  chan struct{}  // closed when the process has exited
	err   error          // Wait's result, valid after done
}

// Start calls prepare and starts the program it describes, and returns
// when the program is ready. It fails with ErrRunning when the Daemon holds
// a process already, prepare included. The Daemon stays locked meanwhile,
// so Stop, Kill and Running wait for the start to end. ctx bounds the start
// only.
func (d *Daemon) Start(ctx context.Context, prepare func() (Launch, error)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		return ErrRunning
	}
	l, err := prepare()
	if err != nil {
		return err
	}
	p, err := launch(l)
	if err != nil {
		return err
	}
	if err := p.awaitReady(ctx, l); err != nil {
		return err
	}
	d.proc = p
	return nil
}

// launch starts the program of l.
func launch(l Launch) (*process, error) {
	cmd := l.Cmd
	cmd.Stdout, cmd.Stderr = l.Output, l.Output
	cmd.SysProcAttr = sysProcAttr()
	p := &process{cmd: cmd, done: make(chan struct{})}
	if l.Stdin {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			l.Output.Close()
			return nil, fmt.Errorf("%s: %w", l.Name, err)
		}
		p.stdin = stdin
	}
	if err := cmd.Start(); err != nil {
		l.Output.Close()
		return nil, fmt.Errorf("%s: start %s: %w", l.Name, cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		l.Output.Close()
		close(p.done)
	}()
	return p, nil
}

// awaitReady asks l.Ready every l.Poll until it says the server is ready.
// A process that exits, is not ready within l.Timeout, or is refused by
// Ready fails the start, and so does the end of ctx; the process is killed.
func (p *process) awaitReady(ctx context.Context, l Launch) error {
	deadline := time.NewTimer(l.Timeout)
	defer deadline.Stop()
	for {
		select {
		case <-p.done:
			return l.Fail(fmt.Sprintf("exited during start (%v)", p.err))
		case <-deadline.C:
			p.kill()
			return l.Fail(fmt.Sprintf("did not %s within %v", l.Awaited, l.Timeout))
		case <-ctx.Done():
			p.kill()
			return fmt.Errorf("%s start: %w", l.Name, ctx.Err())
		case <-time.After(l.Poll):
		}
		ready, err := l.Ready(p.cmd.Process.Pid)
		if err != nil {
			p.kill()
			return l.Fail(err.Error())
		}
		if ready {
			return nil
		}
	}
}

// take hands the held process to the caller, to stop it; nil if none.
func (d *Daemon) take() *process {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.proc
	d.proc = nil
	return p
}

// Stop stops the process and waits for it to exit: it closes the
// process's stdin (Launch.Stdin), then takes the steps in order, and
// waits. Stop of a Daemon without a process does nothing.
func (d *Daemon) Stop(steps ...StopStep) {
	p := d.take()
	if p == nil {
		return
	}
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	for _, step := range steps {
		select {
		case <-p.done:
			return
		case <-time.After(step.Wait):
			_ = p.cmd.Process.Signal(step.Signal)
		}
	}
	<-p.done
}

// Kill stops the process with SIGKILL, like a crash, and waits for it to
// exit. Kill of a Daemon without a process does nothing.
func (d *Daemon) Kill() {
	if p := d.take(); p != nil {
		p.kill()
	}
}

// kill kills the process and waits for it to exit.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
}

// Running reports whether the process runs.
func (d *Daemon) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil {
		return false
	}
	select {
	case <-d.proc.done:
		return false
	default:
		return true
	}
}

// Pid is the process id of the running process, or 0.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil {
		return 0
	}
	return d.proc.cmd.Process.Pid
}
