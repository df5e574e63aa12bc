package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/runtime"
)

// StartError is a container that could not start: Code is Docker's exit
// code for it (125 engine, 126 not executable, 127 not found).
type StartError struct {
	Code int
	Msg  string
}

func (e *StartError) Error() string { return e.Msg }

// Start starts container ref under a new monitor and returns once it runs.
// The returned Conn is the first attach client: it carries the output from
// the first byte (for run and start -a) and the exit. Close it to detach.
// Starting a running container is a no-op with a nil Conn.
func (e *Engine) Start(ref string) (*Container, *Conn, error) {
	c, err := e.Get(ref)
	if err != nil {
		return nil, nil, err
	}
	id := c.ID
	for wait := 0; ; wait++ {
		c, err = e.update(id, func(c *Container) error {
			switch c.State.Status {
			case StatusCreated, StatusExited:
			case StatusRunning, StatusRestarting:
				if e.monitorAlive(c) {
					return errAlreadyRunning
				}
			case StatusPaused:
				return fmt.Errorf("cannot start a paused container, try unpause instead: %w", errdefs.ErrConflict)
			case StatusRemoving, StatusDead:
				return fmt.Errorf("container %s is marked for removal and cannot be started: %w", c.Name, errdefs.ErrConflict)
			}
			c.State.StopRequested = false
			c.State.Error = ""
			c.RestartCount = 0
			c.Backoff = 0
			return nil
		})
		// Its process gone but its monitor still recording the exit (a
		// start right after kill): wait for that run to end, as Docker's
		// start waits for the daemon to handle the exit, rather than
		// call it running and let it stop a moment later. At most ~5 s.
		if errors.Is(err, errAlreadyRunning) && c != nil && c.State.Status == StatusRunning &&
			!containerAlive(c.State.Pid) && wait < 500 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	if errors.Is(err, errAlreadyRunning) {
		return c, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	conn, err := e.spawnMonitor(c)
	if err != nil {
		return nil, nil, err
	}
	for {
		t, p, err := conn.ReadFrame()
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("start container %s: the monitor ended without a word (%v); see BERTH_MONITOR_DEBUG=1", ShortID(c.ID), err)
		}
		switch t {
		case FrameStarted:
			pid, _ := strconv.Atoi(string(p))
			c.State.Pid = pid
			c.State.set(StatusRunning)
			return c, conn, nil
		case FrameError:
			err := parseStartError(string(p))
			conn.Drain()
			conn.Close()
			return nil, nil, err
		}
		// Output before "started" cannot happen; skip defensively.
	}
}

var errAlreadyRunning = errors.New("already running")

func parseStartError(s string) error {
	code, msg, _ := strings.Cut(s, " ")
	n, err := strconv.Atoi(code)
	if err != nil {
		n, msg = 125, s
	}
	return &StartError{Code: n, Msg: msg}
}

// spawnMonitor starts the container's monitor (berth's C entry point, see
// package monitor) and returns its first client connection.
func (e *Engine) spawnMonitor(c *Container) (*Conn, error) {
	lo, err := parseLogConfig(c.HostConfig.LogConfig)
	if err != nil {
		return nil, err
	}
	logPath := "-"
	if c.LogPath != "" {
		logPath = c.LogPath
	}
	flags := "-"
	if c.Config.Tty {
		flags += "t"
	}
	if c.Config.OpenStdin {
		flags += "i"
	}
	if c.Config.StdinOnce {
		flags += "o"
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "monitor"), os.NewFile(uintptr(fds[1]), "monitor")
	defer theirs.Close()
	cmd := exec.Command(e.Exe, "monitor", c.ID, e.Root, e.RunRoot, logPath,
		strconv.FormatInt(lo.maxSize, 10), strconv.Itoa(lo.maxFile), flags)
	cmd.Args[0] = "berth"
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if fp := os.Getenv(failpointEnv); fp != "" {
		cmd.Env = append(cmd.Env, failpointEnv+"="+fp)
	}
	if os.Getenv("BERTH_MONITOR_DEBUG") != "" {
		cmd.Env = append(cmd.Env, "BERTH_MONITOR_DEBUG=1")
		cmd.Stderr = os.Stderr
	}
	// The monitor forks and its first process exits at once: Run waits
	// only for that.
	if err := cmd.Run(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("start the container's monitor: %w", err)
	}
	nc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	return &Conn{c: nc}, nil
}

// monitorAlive reports whether the container's monitor still runs.
func (e *Engine) monitorAlive(c *Container) bool {
	pid := c.State.MonitorPid
	if pid <= 0 {
		// Between spawn and the start hook: ask the socket.
		conn, err := dialUnix(e.sockPath(c.ID))
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	// A killed monitor may linger as a zombie until init reaps it: alive
	// means named berth-monitor and not in state Z.
	comm, alive := procAlive(pid)
	return alive && comm == "berth-monitor"
}

// procAlive reads /proc/PID/stat: the process's name, and whether it
// exists and is neither a zombie nor dead.
func procAlive(pid int) (comm string, alive bool) {
	if pid <= 0 {
		return "", false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || len(s) <= end+2 {
		return "", false
	}
	return s[open+1 : end], s[end+2] != 'Z' && s[end+2] != 'X'
}

// waitExit waits until the container's monitor reports its exit, or the
// deadline passes (zero: no deadline). It returns the exit code the
// monitor sent, or -1 when the monitor was gone and the exit is known only
// from the runtime's state.
func (e *Engine) waitExit(c *Container, deadline time.Time) (int, error) {
	conn, err := e.Dial(c.ID, false)
	if err == nil {
		defer conn.Close()
		if !deadline.IsZero() {
			conn.SetDeadline(deadline)
		}
		for {
			t, p, err := conn.ReadFrame()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return 0, os.ErrDeadlineExceeded
				}
				return -1, nil // the monitor ended: the record says how
			}
			if t == FrameExited {
				code, _ := strconv.Atoi(string(p))
				conn.Drain()
				return code, nil
			}
		}
	}
	// No monitor (killed): watch the process itself.
	for {
		st, err := e.Runtime.State(c.ID)
		if err != nil || st.Status == "stopped" {
			return -1, nil
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetConsoleSize records the terminal size the container's process starts
// with (process.consoleSize in its bundle): `run -t` and `start -a` pass
// the user's, so the first thing the process sees is right.
func (e *Engine) SetConsoleSize(ref string, rows, cols uint16) error {
	c, err := e.Get(ref)
	if err != nil {
		return err
	}
	path := filepath.Join(e.dir(c.ID), "config.json")
	spec, err := runtime.LoadSpec(e.dir(c.ID))
	if err != nil {
		return err
	}
	if spec.Process == nil || !spec.Process.Terminal {
		return nil
	}
	spec.Process.ConsoleSize = &specs.Box{Height: uint(rows), Width: uint(cols)}
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// containerAlive reports whether the container's process still runs (a
// zombie not yet reaped counts as gone: its monitor reaps it at once).
func containerAlive(pid int) bool {
	_, alive := procAlive(pid)
	return alive
}
