package container

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/opts"
	"github.com/berth-dev/berth/internal/runtime"
)

// ExecOpts are exec's flags, already parsed.
type ExecOpts struct {
	Cmd []string
	// Env is added to the container's environment, replacing variables
	// of the same name.
	Env []string
	// User is user[:group], by name or number, resolved in the
	// container's /etc/passwd and /etc/group; "" is the container's user.
	User string
	// WorkingDir is absolute; "" is the container's.
	WorkingDir string
	Privileged bool
	Tty        bool
	Detach     bool
	// Rows and Cols are the terminal's size with Tty (0: unknown).
	Rows, Cols uint16
	// Stdin, Stdout and Stderr become the process's stdio without Tty;
	// nil is /dev/null. They are the files themselves, not copies: the
	// process reads and writes them directly.
	Stdin, Stdout, Stderr *os.File
	// Console receives the master end of the process's terminal (Tty in
	// the foreground) before the process runs; the caller copies between
	// it and the user and closes it when the output ends. The master is
	// non-blocking, so read deadlines work.
	Console func(master *os.File)
}

// Exec runs an extra process in running container ref, with the
// container's environment, user, working directory and capabilities
// unless opts override them. In the foreground it returns the process's
// exit code (128+signal when killed). A process that cannot be started is
// a *StartError with Docker's code: 127 not found, 126 not executable.
func (e *Engine) Exec(ref string, o ExecOpts) (int, error) {
	if len(o.Cmd) == 0 {
		return 0, fmt.Errorf("exec needs a command: %w", errdefs.ErrInvalidArgument)
	}
	if o.WorkingDir != "" && !filepath.IsAbs(o.WorkingDir) {
		return 0, fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path: %w", o.WorkingDir, errdefs.ErrInvalidArgument)
	}
	c, err := e.Refresh(ref)
	if err != nil {
		return 0, err
	}
	switch c.State.Status {
	case StatusRunning:
	case StatusPaused:
		return 0, fmt.Errorf("container %s is paused, unpause the container before exec: %w", ShortID(c.ID), errdefs.ErrConflict)
	case StatusRestarting:
		return 0, fmt.Errorf("container %s is restarting, wait until the container is running: %w", ShortID(c.ID), errdefs.ErrConflict)
	default:
		return 0, e.notRunning(c)
	}
	st, err := e.Runtime.State(c.ID)
	if err != nil || st.Status != runtime.Running {
		return 0, e.notRunning(c)
	}
	spec, err := e.Runtime.ContainerSpec(c.ID)
	if err != nil {
		return 0, err
	}
	p, err := e.execProcess(c, st.Pid, spec.Process, o)
	if err != nil {
		return 0, err
	}
	ro := runtime.ExecOpts{ID: c.ID, Process: p, Detach: o.Detach}

	var console *consoleListener
	if o.Tty {
		if console, err = e.listenConsole(c.ID); err != nil {
			return 0, err
		}
		defer console.close()
		ro.ConsoleSocket = console.path
		handle := o.Console
		if o.Detach || handle == nil {
			handle = e.holdConsole
		}
		console.serve(handle)
	}
	code, err := e.runtimeExec(ro, o)
	if console != nil {
		console.close()
		if cerr := console.wait(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if err != nil {
		var se *StartError
		if errors.As(err, &se) || errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrFailedPrecondition) {
			return 0, err
		}
		return 0, &StartError{Code: execCode(err), Msg: "exec failed: unable to start container process: " + plainMessage(err)}
	}
	return code, nil
}

// execProcess is the container's process with opts applied: Docker's exec
// inherits env, user, cwd, capabilities, rlimits and no_new_privs.
func (e *Engine) execProcess(c *Container, pid int, base *specs.Process, o ExecOpts) (*specs.Process, error) {
	if base == nil {
		return nil, fmt.Errorf("container %s has no process in its config", ShortID(c.ID))
	}
	p := *base
	p.Args = slices.Clone(o.Cmd)
	p.Terminal = o.Tty
	p.ConsoleSize = nil
	if o.Tty && o.Rows > 0 && o.Cols > 0 {
		p.ConsoleSize = &specs.Box{Height: uint(o.Rows), Width: uint(o.Cols)}
	}
	p.Env = opts.MergeEnv(slices.Clone(base.Env), nil, o.Env)
	if o.Tty && !hasEnv(p.Env, "TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}
	if o.WorkingDir != "" {
		p.Cwd = o.WorkingDir
	}
	user := o.User
	if user == "" {
		user = c.Config.User
	}
	u, err := resolveExecUser(pid, user)
	if err != nil {
		return nil, &StartError{Code: 126, Msg: "exec failed: unable to start container process: " + plainMessage(err)}
	}
	p.User.UID, p.User.GID = u.UID, u.GID
	p.User.AdditionalGids = u.AdditionalGids
	if !hasEnv(p.Env, "HOME") && u.Home != "" {
		p.Env = append(p.Env, "HOME="+u.Home)
	}
	if base.Capabilities != nil {
		caps := *base.Capabilities
		p.Capabilities = &caps
	}
	if o.Privileged {
		all := allCaps() // what the host's bounding set holds
		p.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
	}
	return &p, nil
}

// resolveExecUser resolves a user spec in the running container's own
// /etc/passwd and /etc/group, read through /proc/<pid>/root with every
// symlink kept inside the container.
func resolveExecUser(pid int, spec string) (runtime.User, error) {
	root, err := procRoot(pid)
	if err != nil {
		return runtime.User{}, err
	}
	defer unix.Close(root)
	return resolveUserIn(containerTree(root), spec)
}

// resolveUserIn resolves spec against the passwd and group files of t.
func resolveUserIn(t tree, spec string) (runtime.User, error) {
	passwd, group := t.readFile("/etc/passwd"), t.readFile("/etc/group")
	var pr, gr io.Reader // absent files are nil readers: only numbers resolve
	if passwd != nil {
		defer passwd.Close()
		pr = passwd
	}
	if group != nil {
		defer group.Close()
		gr = group
	}
	return runtime.ResolveUser(spec, pr, gr)
}

// plainMessage is err's text without the error class the engine wraps
// for callers: a StartError carries only text to the user.
func plainMessage(err error) string {
	msg := err.Error()
	for _, class := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrConflict, errdefs.ErrFailedPrecondition,
		errdefs.ErrUnavailable, errdefs.ErrAlreadyExists, errdefs.ErrNotImplemented} {
		if errors.Is(err, class) {
			msg = strings.TrimSuffix(msg, ": "+class.Error())
		}
	}
	return msg
}

// execCode is Docker's exit code for a process exec could not start: 127
// when the program is not there, 126 for everything else.
func execCode(err error) int {
	msg := err.Error()
	if strings.Contains(msg, "process.cwd") {
		return 126
	}
	if code := startCode(err); code == 127 {
		return 127
	}
	return 126
}

// runtimeExec calls the runtime with the process's stdio: /dev/null for
// what the user did not attach. With a terminal the process's stdio is
// the terminal.
func (e *Engine) runtimeExec(ro runtime.ExecOpts, o ExecOpts) (int, error) {
	if o.Tty {
		return e.Runtime.Exec(ro)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	pick := func(f *os.File) *os.File {
		if f == nil || o.Detach {
			return devnull
		}
		return f
	}
	ro.Stdin, ro.Stdout, ro.Stderr = pick(o.Stdin), pick(o.Stdout), pick(o.Stderr)
	return e.Runtime.Exec(ro)
}

// consoleListener receives the master end of an exec's terminal on a unix
// socket in the container's run directory (the runtime's --console-socket).
type consoleListener struct {
	l       *net.UnixListener
	path    string
	release func()
	file    string
	done    chan error
	once    sync.Once
}

func (e *Engine) listenConsole(id string) (*consoleListener, error) {
	// The monitor's run directory, which lives as long as the container
	// runs: never created here, so nothing outlives the container.
	dir := e.runDir(id)
	file := filepath.Join(dir, "exec-"+newID()[:16]+".sock")
	path, release, err := shortSockPath(file)
	if err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		release()
		return nil, fmt.Errorf("console socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	os.Chmod(file, 0o600)
	return &consoleListener{l: l, path: path, release: release, file: file, done: make(chan error, 1)}, nil
}

// serve accepts the runtime's one connection and hands the master to
// handle.
func (cl *consoleListener) serve(handle func(*os.File)) {
	go func() {
		conn, err := cl.l.AcceptUnix()
		if err != nil {
			cl.done <- nil // closed: the process never got a terminal
			return
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			cl.done <- nil // the process failed before its terminal existed
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			cl.done <- fmt.Errorf("console socket: expected one control message")
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			cl.done <- fmt.Errorf("console socket: expected one file descriptor")
			return
		}
		unix.CloseOnExec(fds[0])
		unix.SetNonblock(fds[0], true)
		handle(os.NewFile(uintptr(fds[0]), "pty-master"))
		cl.done <- nil
	}()
}

func (cl *consoleListener) close() {
	cl.once.Do(func() {
		cl.l.Close()
		os.Remove(cl.file)
		cl.release()
	})
}

// wait returns once the master was handed over or will never come.
func (cl *consoleListener) wait() error { return <-cl.done }

// holdConsole keeps a detached exec's terminal open: a small berth process
// of its own session reads and drops the output until the last process
// on the terminal has gone, so the exec is not hung up when we return.
func (e *Engine) holdConsole(master *os.File) {
	defer master.Close()
	unix.SetNonblock(int(master.Fd()), false)
	cmd := exec.Command(e.Exe, "exec-console-holder")
	cmd.Args[0] = "berth"
	cmd.ExtraFiles = []*os.File{master}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "berth: keep the exec's terminal open: %v\n", err)
		return
	}
	cmd.Process.Release()
}

// HoldConsole is the exec-console-holder process: it drains the terminal
// master on fd 3 until every process on the terminal has closed it.
func HoldConsole() {
	master := os.NewFile(3, "pty-master")
	buf := make([]byte, 32<<10)
	for {
		if _, err := master.Read(buf); err != nil {
			return
		}
	}
}

// procRoot opens /proc/<pid>/root, the container's root directory as its
// processes see it (mounts included), as a directory to resolve from.
func procRoot(pid int) (int, error) {
	if pid <= 0 {
		return -1, fmt.Errorf("no process: %w", errdefs.ErrFailedPrecondition)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the container's root: %w", os.NewSyscallError("open", err))
	}
	return fd, nil
}
