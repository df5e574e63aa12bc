package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/runtime/seccomp"
)

// Init is the Go stage of `berth init`, the hidden re-exec that becomes the
// container's process. The C stage (package nsenter) has already put it in
// its namespaces. The caller has locked the goroutine to the main thread:
// capabilities, no_new_privs and seccomp are per thread, and execve must
// run on the thread that holds them. On success Init does not return.
func Init() {
	fd, err := strconv.Atoi(os.Getenv(envInitPipe))
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth init is internal: it is started by `berth runtime create`, not by hand")
		os.Exit(1)
	}
	os.Unsetenv(envInitPipe)
	sock := os.NewFile(uintptr(fd), "init-sock")
	enc := json.NewEncoder(sock)
	if err := runInit(sock, enc); err != nil {
		// The parent reports the error as its own one line; only after
		// "ready", when nobody listens any more, do we print it.
		if enc.Encode(syncMsg{Type: msgError, Msg: err.Error()}) != nil {
			fmt.Fprintln(os.Stderr, "berth init:", err)
		}
		os.Exit(1)
	}
}

func runInit(sock *os.File, enc *json.Encoder) error {
	dec := json.NewDecoder(sock)
	var cfg initConfig
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("read init config: %w", err)
	}
	if cfg.Mode == modeExec {
		return execProcess(&cfg, sock, nil)
	}
	spec := cfg.Spec

	// Opened before pivot_root: the fifo is reopened for writing through
	// this /proc, whether or not the container mounts one of its own.
	procfd, err := unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("open /proc", err)
	}
	defer unix.Close(procfd)

	hasMountNS := hasNamespace(spec, specs.MountNamespace)
	if hasMountNS {
		if err := prepareRoot(cfg.Rootfs, spec.Linux.RootfsPropagation); err != nil {
			return err
		}
		ms, err := rootfsMounts(spec)
		if err != nil {
			return err
		}
		if err := mountRootfs(ms, cfg.Rootfs); err != nil {
			return err
		}
		if err := mountAll(spec, cfg.Rootfs, cfg.CgroupPaths); err != nil {
			return err
		}
		if needsDevSetup(spec) {
			if err := createDevices(spec, cfg.Rootfs, cfg.UserNS); err != nil {
				return err
			}
		}
	}

	// The parent runs prestart and createRuntime hooks now; we run the
	// createContainer ones, still able to see the host's paths.
	if err := enc.Encode(syncMsg{Type: msgHooks}); err != nil {
		return err
	}
	var reply syncMsg
	if err := dec.Decode(&reply); err != nil {
		return fmt.Errorf("wait for parent hooks: %w", err)
	}
	if reply.Type != msgHooksDone {
		return fmt.Errorf("parent: %s", reply.Msg)
	}
	if spec.Hooks != nil {
		st := specs.State{Version: specs.Version, ID: cfg.ID, Status: specs.StateCreating, Pid: os.Getpid(), Bundle: "", Annotations: spec.Annotations}
		if spec.Annotations == nil {
			st.Annotations = nil
		}
		st.Bundle = filepath.Dir(cfg.Rootfs)
		if err := runHooks("createContainer", spec.Hooks.CreateContainer, st); err != nil {
			return err
		}
	}

	if hasMountNS {
		if cfg.NoPivot || isRamfs("/") {
			err = moveRoot(cfg.Rootfs)
		} else {
			err = pivotRoot(cfg.Rootfs)
		}
		if err != nil {
			return err
		}
	} else if err := unix.Chroot(cfg.Rootfs); err != nil {
		return os.NewSyscallError("chroot", err)
	}

	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("hostname: %w", os.NewSyscallError("sethostname", err))
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return fmt.Errorf("domainname: %w", os.NewSyscallError("setdomainname", err))
		}
	}
	for key, value := range spec.Linux.Sysctl {
		path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("linux.sysctl.%s: %w", key, err)
		}
	}
	if hasMountNS {
		if err := readonlyPaths(spec.Linux.ReadonlyPaths); err != nil {
			return err
		}
		if err := maskPaths(spec.Linux.MaskedPaths); err != nil {
			return err
		}
		if spec.Root.Readonly {
			if err := remountBind("/", unix.MS_RDONLY); err != nil {
				return fmt.Errorf("root.readonly: %w", err)
			}
		}
		if p, ok := propagationTable[spec.Linux.RootfsPropagation]; ok {
			if err := unix.Mount("", "/", "", p, ""); err != nil {
				return fmt.Errorf("linux.rootfsPropagation: %w", os.NewSyscallError("mount", err))
			}
		}
	}

	fifo := func() error {
		// Blocks until `berth runtime start` opens the other end.
		// A raw syscall: while blocked here the runtime must not start
		// a thread to run other goroutines, because pids.max may
		// already be applied and a failed thread creation aborts Go.
		wfd, err := openatRaw(procfd, "self/fd/"+strconv.Itoa(cfg.FifoFd), unix.O_WRONLY|unix.O_CLOEXEC)
		if err != nil {
			return os.NewSyscallError("open exec fifo", err)
		}
		if _, err := unix.Write(wfd, []byte{'0'}); err != nil {
			unix.Close(wfd)
			return os.NewSyscallError("write exec fifo", err)
		}
		// wfd stays open until execve closes it (O_CLOEXEC): the EOF
		// tells `start` the user's program now runs, so poststart
		// hooks run after it, as the spec orders.
		if spec.Hooks != nil {
			st := specs.State{Version: specs.Version, ID: cfg.ID, Status: specs.StateRunning, Pid: os.Getpid(), Bundle: filepath.Dir(cfg.Rootfs), Annotations: spec.Annotations}
			if err := runHooks("startContainer", spec.Hooks.StartContainer, st); err != nil {
				return err
			}
		}
		return nil
	}
	return execProcess(&cfg, sock, fifo)
}

func isRamfs(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.RAMFS_MAGIC
}

// execProcess finishes the process's environment and execs it. For a
// created container, beforeExec waits on the exec fifo after "ready" is sent.
func execProcess(cfg *initConfig, sock *os.File, beforeExec func() error) error {
	p := cfg.Process
	spec := cfg.Spec
	if _, err := unix.Setsid(); err != nil && !errors.Is(err, unix.EPERM) {
		return os.NewSyscallError("setsid", err)
	}
	// The annotation names the container's own user; an exec'd process
	// comes with its user already resolved by the caller.
	if u, ok := spec.Annotations[UserAnnotation]; ok && cfg.Mode != modeExec {
		if err := resolveUserInRoot(p, u); err != nil {
			return err
		}
	}
	if p.Terminal {
		if cfg.ConsoleFd < 0 {
			return fmt.Errorf("process.terminal is true but no console socket was given (use --console-socket)")
		}
		console := os.NewFile(uintptr(cfg.ConsoleFd), "console-socket")
		if err := setupConsole(console, int(p.User.UID), p.ConsoleSize); err != nil {
			return err
		}
		console.Close()
	}
	if err := applyRlimits(p.Rlimits); err != nil {
		return err
	}
	if spec.Linux.Personality != nil && spec.Linux.Personality.Domain == specs.PerLinux32 {
		if _, _, e := unix.Syscall(unix.SYS_PERSONALITY, 0x0008, 0, 0); e != 0 {
			return fmt.Errorf("linux.personality: %w", os.NewSyscallError("personality", e))
		}
	}
	var filter *seccomp.Filter
	if spec.Linux.Seccomp != nil {
		f, err := seccomp.Compile(spec.Linux.Seccomp)
		if err != nil {
			return fmt.Errorf("linux.seccomp: %w", err)
		}
		filter = f
	}
	// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which
	// the process may be about to lose: load it first, as runc does.
	if filter != nil && !p.NoNewPrivileges {
		if err := filter.Load(); err != nil {
			return fmt.Errorf("linux.seccomp: %w", err)
		}
	}
	caps := planCaps(p.Capabilities)
	if err := dropBounding(caps.bounding); err != nil {
		return fmt.Errorf("process.capabilities.bounding: %w", err)
	}
	if err := switchUser(p.User, cfg.UserNS); err != nil {
		return err
	}
	if err := applyCaps(caps); err != nil {
		return fmt.Errorf("process.capabilities: %w", err)
	}
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	} else {
		unix.Umask(0o022)
	}
	if err := unix.Chdir(p.Cwd); err != nil {
		return fmt.Errorf("process.cwd %s: %w", p.Cwd, os.NewSyscallError("chdir", err))
	}
	path, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		return err
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("process.noNewPrivileges: %w", os.NewSyscallError("prctl", err))
		}
	}
	for _, fd := range cfg.InternalFds {
		unix.CloseOnExec(fd)
	}
	// Descriptors the caller inherited without close-on-exec (a shell's
	// stray fd, a monitor's pipe) must not reach the container: only
	// stdio and --preserve-fds do, as with runc's CloseExecFrom.
	closeExecFrom(firstInternalFd(cfg.InternalFds))
	if beforeExec != nil {
		if err := json.NewEncoder(sock).Encode(syncMsg{Type: msgReady}); err != nil {
			return err
		}
		sock.Close()
		if err := beforeExec(); err != nil {
			return err
		}
	}
	if filter != nil && p.NoNewPrivileges {
		if err := filter.Load(); err != nil {
			return fmt.Errorf("linux.seccomp: %w", err)
		}
	}
	err = unix.Exec(path, p.Args, p.Env)
	return fmt.Errorf("exec %s: %w", p.Args[0], os.NewSyscallError("execve", err))
}

// switchUser becomes the configured uid/gid, keeping the permitted
// capabilities across the uid change so applyCaps can set the final sets.
func switchUser(u specs.User, inUserNS bool) error {
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_KEEPCAPS)", err)
	}
	groups := make([]int, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		// A user namespace whose setgroups is denied cannot have
		// supplementary groups; that is only an error if some were asked.
		if !(inUserNS && errors.Is(err, unix.EPERM) && len(groups) == 0) {
			return fmt.Errorf("process.user.additionalGids: %w", os.NewSyscallError("setgroups", err))
		}
	}
	if err := syscall.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("process.user.gid %d: %w", u.GID, os.NewSyscallError("setresgid", err))
	}
	if err := syscall.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("process.user.uid %d: %w", u.UID, os.NewSyscallError("setresuid", err))
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_KEEPCAPS)", err)
	}
	return nil
}

// lookPath finds the program as execve will, using the PATH of the
// process's own environment.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := checkExecutable(name); err != nil {
			return "", fmt.Errorf("process.args[0] %q: %w", name, err)
		}
		return name, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("process.args[0] %q: %w", name, exec.ErrNotFound)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("is a directory")
	}
	if err := unix.Access(p, unix.X_OK); err != nil {
		return fmt.Errorf("permission denied")
	}
	return nil
}

func openatRaw(dirfd int, path string, flags int) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	fd, _, e := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// resolveUserInRoot resolves UserAnnotation from the container's own
// /etc/passwd and /etc/group (we are past pivot_root: "/" is its root) and
// sets the process's ids; HOME comes from passwd unless the config sets it.
func resolveUserInRoot(p *specs.Process, spec string) error {
	open := func(name string) io.Reader {
		f, err := os.Open(name)
		if err != nil {
			return nil // absent: only numeric ids resolve
		}
		return f
	}
	passwd, group := open("/etc/passwd"), open("/etc/group")
	for _, r := range []io.Reader{passwd, group} {
		if f, ok := r.(*os.File); ok {
			defer f.Close()
		}
	}
	u, err := ResolveUser(spec, passwd, group)
	if err != nil {
		return fmt.Errorf("process.user %q: %w", spec, err)
	}
	p.User.UID, p.User.GID = u.UID, u.GID
	p.User.AdditionalGids = append(u.AdditionalGids, p.User.AdditionalGids...)
	home := false
	for _, kv := range p.Env {
		home = home || strings.HasPrefix(kv, "HOME=")
	}
	if !home && u.Home != "" {
		p.Env = append(p.Env, "HOME="+u.Home)
	}
	return nil
}

// firstInternalFd is where berth's own descriptors begin: below it are
// stdio and the preserved fds, which Go's exec placed at 3.. in order.
func firstInternalFd(fds []int) int {
	first := -1
	for _, fd := range fds {
		if first < 0 || fd < first {
			first = fd
		}
	}
	if first < 3 {
		return 3
	}
	return first
}

// closeExecFrom marks every descriptor from fd up close-on-exec.
func closeExecFrom(fd int) {
	if unix.CloseRange(uint(fd), ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd") // kernels before 5.11
	if err != nil {
		return
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= fd {
			unix.CloseOnExec(n)
		}
	}
}
