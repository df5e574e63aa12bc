package container

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/runtime"
)

// HookStart is `berth monitor-hook start`: the monitor runs it to create
// and start the container from its bundle. fd 3 is the status socket, fds 4-6
// the container's stdin, stdout and stderr (or consoleSock names the
// monitor's console socket for a terminal). The container's process
// outlives this hook and is reparented to the monitor, a subreaper.
func (e *Engine) HookStart(id, consoleSock string) int {
	status := os.NewFile(3, "status")
	defer status.Close()
	fail := func(code int, err error) int {
		msg := strings.ReplaceAll(plainMessage(err), "\n", " ")
		e.update(id, func(c *Container) error {
			c.State.Error = msg
			c.State.ExitCode = code
			if c.State.Status == StatusRestarting {
				c.State.set(StatusExited)
				c.State.FinishedAt = time.Now().UTC()
			}
			return nil
		})
		fmt.Fprintf(status, "E%d %s\n", code, msg)
		return 1
	}
	c, err := e.Get(id)
	if err != nil {
		return fail(125, err)
	}
	// A user's start clears StopRequested before spawning the monitor, so
	// a set one means stop, kill or rm came while the monitor waited to
	// restart: do not start again.
	if c.State.StopRequested {
		return fail(125, fmt.Errorf("container %s was stopped while waiting to restart", ShortID(id)))
	}
	// A previous run's runtime state (a restart) goes first.
	if _, err := e.Runtime.State(id); err == nil {
		e.Runtime.Delete(id, true)
	}
	// The network is ready before the process exists: the runtime joins
	// the namespace. Every failure from here on takes it down again.
	nw, err := e.setupNetwork(c)
	if err != nil {
		return fail(125, err)
	}
	undo := func(code int, err error) int {
		e.Runtime.Delete(id, true)
		if nerr := e.teardownNetwork(c); nerr != nil {
			fmt.Fprintf(os.Stderr, "berth: %v\n", nerr)
		}
		return fail(code, err)
	}
	opts := runtime.CreateOpts{ID: id, Bundle: e.dir(id)}
	if consoleSock != "" {
		p, done, err := shortSockPath(consoleSock)
		if err != nil {
			return undo(125, err)
		}
		defer done()
		opts.ConsoleSocket = p
	} else {
		opts.Stdin, opts.Stdout, opts.Stderr = os.NewFile(4, "stdin"), os.NewFile(5, "stdout"), os.NewFile(6, "stderr")
	}
	if err := e.Runtime.Create(opts); err != nil {
		return undo(startCode(err), err)
	}
	st, err := e.Runtime.State(id)
	if err != nil {
		return undo(125, err)
	}
	if err := e.Runtime.Start(id); err != nil {
		return undo(startCode(err), err)
	}
	_, err = e.update(id, func(c *Container) error {
		c.State.set(StatusRunning)
		c.State.Pid = st.Pid
		c.State.StartedAt = time.Now().UTC()
		c.State.MonitorPid = os.Getppid()
		c.State.Error = ""
		c.State.ExitCode = 0
		nw.record(&c.NetworkSettings)
		return nil
	})
	if err != nil {
		return undo(125, err)
	}
	sendHeld(status, nw)
	fmt.Fprintf(status, "P%d\n", st.Pid)
	return 0
}

// sendHeld hands the sockets holding the container's published ports to
// the monitor, over the status socket, in batches the kernel takes
// (SCM_RIGHTS carries at most 253 descriptors), each riding on one "H"
// byte that the monitor skips; it keeps them until the container exits.
// Failing that (the socket refuses), the ports stay published, only not
// held: said on stderr (/dev/null unless BERTH_MONITOR_DEBUG is set).
func sendHeld(status *os.File, nw *netSetup) {
	defer nw.closeHeld()
	for fds := nw.held; len(fds) > 0; {
		n := min(len(fds), 200)
		if err := unix.Sendmsg(int(status.Fd()), []byte{'H'}, unix.UnixRights(fds[:n]...), nil, 0); err != nil {
			fmt.Fprintf(os.Stderr, "berth: hand the published ports' sockets to the monitor: %v (ports stay published, not held)\n", err)
			return
		}
		fds = fds[n:]
	}
}

// startCode maps a failure to start the process to Docker's exit codes.
func startCode(err error) int {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "is a directory"),
		strings.Contains(msg, "exec format error"):
		return 126
	}
	return 125
}

// HookExit is `berth monitor-hook exit`: it records the container's exit
// (code -1: it never started), cleans the runtime's state, and prints
// "R<ms>" on fd 3 when the restart policy asks for another run, else removes a
// --rm container.
func (e *Engine) HookExit(id string, code int) int {
	if _, err := e.Runtime.State(id); err == nil {
		if err := e.Runtime.Delete(id, true); err != nil {
			fmt.Fprintf(os.Stderr, "berth: clean up container %s: %v\n", ShortID(id), err)
		}
	}
	// The network goes while the record still says running, so a start
	// that comes right after the exit cannot have its new namespace taken
	// down by this hook. A --rm container's goes with the rest of it.
	if c, err := e.Get(id); err == nil && !c.HostConfig.AutoRemove {
		if err := e.teardownNetwork(c); err != nil {
			fmt.Fprintf(os.Stderr, "berth: %v\n", err)
		}
	}
	var restart bool
	var delay int
	c, err := e.update(id, func(c *Container) error {
		c.NetworkSettings = stoppedSettings(c.NetworkSettings)
		c.State.Pid = 0
		if code < 0 {
			if c.State.Status == StatusRunning {
				c.State.set(StatusExited) // failed restart
			}
			c.State.MonitorPid = 0
			return nil
		}
		c.State.ExitCode = code
		c.State.FinishedAt = time.Now().UTC()
		restart, delay = c.restartDue(code)
		if restart {
			c.State.set(StatusRestarting)
			c.RestartCount++
			return nil
		}
		c.State.set(StatusExited)
		c.State.MonitorPid = 0
		return nil
	})
	if errors.Is(err, errdefs.ErrNotFound) {
		return 0 // removed meanwhile (rm -f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth: record exit of container %s: %v\n", ShortID(id), err)
		return 1
	}
	if restart {
		out := os.NewFile(3, "restart") // the monitor's pipe
		fmt.Fprintf(out, "R%d\n", delay)
		out.Close()
		return 0
	}
	if c.HostConfig.AutoRemove {
		if err := e.removeAll(c, true); err != nil {
			fmt.Fprintf(os.Stderr, "berth: remove container %s: %v\n", ShortID(id), err)
			return 1
		}
	}
	return 0
}

// restartDue applies the restart policy to an exit, with Docker's backoff:
// 100 ms doubling per restart up to a minute, reset when the container
// ran for ten seconds.
func (c *Container) restartDue(code int) (bool, int) {
	if c.State.StopRequested {
		return false, 0
	}
	p := c.HostConfig.RestartPolicy
	switch p.Name {
	case "always", "unless-stopped":
	case "on-failure":
		if code == 0 || (p.MaximumRetryCount > 0 && c.RestartCount >= p.MaximumRetryCount) {
			return false, 0
		}
	default:
		return false, 0
	}
	if time.Since(c.State.StartedAt) >= 10*time.Second || c.Backoff == 0 {
		c.Backoff = 100
	} else {
		c.Backoff = min(c.Backoff*2, 60000)
	}
	return true, c.Backoff
}
