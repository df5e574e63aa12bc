package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/errdefs"
)

// RunOpts are the options of `run`: create, start and, unless Detach, wait.
type RunOpts struct {
	CreateOpts
	Detach bool
	Keep   bool // keep the stopped container instead of deleting it
}

// Run creates and starts a container; in the foreground it forwards
// signals, waits for the process and returns its exit code (128+signal
// when killed, as shells report it), then deletes the container.
func (r *Runtime) Run(o RunOpts) (int, error) {
	sigs := make(chan os.Signal, 32)
	if !o.Detach {
		// Become the reaper of the container's init once the first
		// init stage exits, so we can wait for it.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return 0, os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
		}
		// Registering costs the Go runtime a millisecond; it overlaps
		// with create. Signals that arrive before it is done have
		// their default effect on berth, as they would anyway.
		notified := make(chan struct{})
		go func() {
			signal.Notify(sigs, forwardedSignals...)
			close(notified)
		}()
		defer func() {
			<-notified
			signal.Stop(sigs)
		}()
	}
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return 0, err
	}
	spec, err := LoadSpec(bundle)
	if err != nil {
		return 0, err
	}
	var term *terminal
	if o.ConsoleSocket == "" && !o.Detach && spec.Process != nil && spec.Process.Terminal {
		if term, err = newTerminal(); err != nil {
			return 0, err
		}
		defer term.close()
		o.console = term.remote
	}
	rec, err := r.create(o.CreateOpts, spec)
	if err != nil {
		return 0, err
	}
	if err := r.start(rec); err != nil {
		_ = r.delete(rec, true)
		return 0, err
	}
	if o.Detach {
		return 0, nil
	}
	if term != nil {
		if err := term.attach(); err != nil {
			return 0, err
		}
	}
	code := waitForward(rec.Pid, sigs, term)
	if !o.Keep {
		if err := r.delete(rec, true); err != nil {
			return code, err
		}
	}
	return code, nil
}

// forwardedSignals are passed on to the container's process. Not every
// signal: asking the Go runtime for all of them costs a millisecond at
// start, and SIGCHLD, SIGPIPE and SIGURG are ours, not the container's.
var forwardedSignals = []os.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGTERM,
	unix.SIGALRM, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGWINCH,
	unix.SIGPWR, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM, unix.SIGPROF,
}

// waitForward reaps children until pid exits, forwarding signals to it.
func waitForward(pid int, sigs chan os.Signal, term *terminal) int {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case s := <-sigs:
				sig := s.(unix.Signal)
				switch sig {
				case unix.SIGCHLD, unix.SIGURG, unix.SIGPIPE:
					continue
				case unix.SIGWINCH:
					if term != nil {
						term.resize()
					}
					continue
				}
				_ = unix.Kill(pid, sig)
			case <-done:
				return
			}
		}
	}()
	code := 255
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break // no children left
		}
		if got != pid {
			continue // an orphan reparented to us: reaped, nothing more
		}
		switch {
		case ws.Exited():
			code = ws.ExitStatus()
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		}
		break
	}
	close(done)
	wg.Wait()
	if term != nil {
		term.drain()
	}
	return code
}

// ExecOpts are the options of `exec`.
type ExecOpts struct {
	ID            string
	Process       *specs.Process
	ConsoleSocket string
	PidFile       string
	Detach        bool
	PreserveFds   int
	// Stdio of the process; nil means the caller's own.
	Stdin, Stdout, Stderr *os.File
}

// Exec runs an extra process inside a running container's namespaces and
// cgroup. In the foreground it returns the process's exit code.
func (r *Runtime) Exec(o ExecOpts) (int, error) {
	rec, err := loadRecord(r.Root, o.ID)
	if err != nil {
		return 0, err
	}
	if st := rec.status(r.Root); st != Running && st != Created {
		return 0, fmt.Errorf("cannot exec in a %s container: %w", st, errdefs.ErrFailedPrecondition)
	}
	if err := validateProcess(o.Process, "process"); err != nil {
		return 0, err
	}
	if !o.Detach {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return 0, os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
		}
	}
	var console *os.File
	var term *terminal
	switch {
	case o.ConsoleSocket != "":
		if console, err = dialConsole(o.ConsoleSocket); err != nil {
			return 0, err
		}
		defer console.Close()
	case o.Process.Terminal && !o.Detach:
		if term, err = newTerminal(); err != nil {
			return 0, err
		}
		defer term.close()
		console = term.remote
	case o.Process.Terminal:
		return 0, invalid("process.terminal", "a detached exec with a terminal needs --console-socket")
	}
	plan := nsPlan{}
	for _, ns := range rec.Config.Linux.Namespaces {
		j := nsJoin{flag: nsFlags[ns.Type], path: "/proc/" + strconv.Itoa(rec.Pid) + "/ns/" + procNSName[ns.Type]}
		if ns.Type == specs.UserNamespace {
			plan.joins = append([]nsJoin{j}, plan.joins...)
		} else {
			plan.joins = append(plan.joins, j)
		}
		if ns.Type == specs.PIDNamespace {
			plan.fork = true
		}
	}
	cg, err := cgroups.New(rec.CgroupPath)
	if err != nil {
		return 0, err
	}
	sigs := make(chan os.Signal, 32)
	if !o.Detach {
		signal.Notify(sigs, forwardedSignals...)
		defer signal.Stop(sigs)
	}
	p, err := r.spawn(spawnOpts{
		spec: rec.Config, process: o.Process, rec: rec, cg: cg, console: console,
		preserveFds: o.PreserveFds, userNS: hasNamespace(rec.Config, specs.UserNamespace),
		plan: plan, mode: modeExec, stdin: o.Stdin, stdout: o.Stdout, stderr: o.Stderr,
	})
	if err != nil {
		if p != nil {
			p.kill()
		}
		return 0, err
	}
	// The init socket is closed by execve: EOF means the process runs.
	m, err := p.conn.recv()
	p.conn.f.Close()
	if err == nil && m.Type == msgError {
		waitGone(p.pid, 5*time.Second)
		return 0, errors.New(m.Msg)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, p.pid); err != nil {
			return 0, err
		}
	}
	if o.Detach {
		return 0, nil
	}
	if term != nil {
		if err := term.attach(); err != nil {
			return 0, err
		}
	}
	return waitForward(p.pid, sigs, term), nil
}
