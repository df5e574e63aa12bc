package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/errdefs"
)

// Runtime manages the containers whose state lives under Root.
type Runtime struct {
	Root string
	// Warn receives problems that do not fail a verb (a failed poststop
	// hook); nil discards them.
	Warn func(format string, args ...any)
}

// New returns a runtime over the state directory root, creating it.
func New(root string) (*Runtime, error) {
	if root == "" {
		root = DefaultRoot
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o711); err != nil {
		return nil, fmt.Errorf("create state root %s: %w", abs, err)
	}
	return &Runtime{Root: abs}, nil
}

func (r *Runtime) warn(format string, args ...any) {
	if r.Warn != nil {
		r.Warn(format, args...)
	}
}

// CreateOpts are the options of `create` (and `run`).
type CreateOpts struct {
	ID            string
	Bundle        string
	ConsoleSocket string // path of a unix socket that receives the terminal
	PidFile       string
	NoPivot       bool
	PreserveFds   int
	// Stdio of the container process; nil means the caller's own.
	Stdin, Stdout, Stderr *os.File

	console *os.File // set by Run: our own end for the terminal
}

// defaultCgroupPath places containers without linux.cgroupsPath.
func defaultCgroupPath(id string) string { return "/berth/" + id }

// Create sets a container up to the point where only its process's execve
// is left, and returns once it waits for Start. On any failure nothing is
// left behind: no state directory, cgroup, mount or process.
func (r *Runtime) Create(opts CreateOpts) error {
	_, err := r.create(opts, nil)
	return err
}

// create is Create for callers that already parsed the bundle's config
// (spec non-nil) and want the record back (Run keeps it in memory).
func (r *Runtime) create(opts CreateOpts, spec *specs.Spec) (_ *record, err error) {
	if err := checkID(opts.ID); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(opts.Bundle)
	if err != nil {
		return nil, err
	}
	if spec == nil {
		if spec, err = LoadSpec(bundle); err != nil {
			return nil, err
		}
	}
	if err := Validate(spec, bundle); err != nil {
		return nil, err
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	if rootfs, err = filepath.EvalSymlinks(rootfs); err != nil {
		return nil, invalid("root.path", "%v", err)
	}

	dir := filepath.Join(r.Root, opts.ID)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %q already exists: %w", opts.ID, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			os.RemoveAll(dir)
		}
	}()
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	owner := ""
	if u, uerr := user.LookupId(strconv.Itoa(os.Geteuid())); uerr == nil {
		owner = u.Username
	}
	rec := &record{
		ID: opts.ID, Bundle: bundle, Rootfs: rootfs, Created: time.Now().UTC(), Owner: owner,
		Creating: true, Config: spec, CgroupPath: spec.Linux.CgroupsPath,
	}
	if rec.CgroupPath == "" {
		rec.CgroupPath = defaultCgroupPath(opts.ID)
	}
	if err := rec.save(r.Root); err != nil {
		return nil, err
	}

	fifo := filepath.Join(dir, fifoName)
	if err := unix.Mkfifo(fifo, 0o622); err != nil {
		return nil, os.NewSyscallError("mkfifo", err)
	}
	// The init stage opens the fifo as the container's root, which in a
	// user namespace is some other host uid: make it theirs (umask would
	// otherwise leave it 0600 root-only).
	if err := os.Chmod(fifo, 0o622); err != nil {
		return nil, err
	}
	if uid, gid := hostRoot(spec); uid != 0 || gid != 0 {
		if err := os.Chown(fifo, uid, gid); err != nil {
			return nil, err
		}
	}
	fifoFile, err := os.OpenFile(fifo, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer fifoFile.Close()

	cg, err := cgroups.New(rec.CgroupPath)
	if err != nil {
		return nil, fmt.Errorf("linux.cgroupsPath: %w", err)
	}
	cleanups = append(cleanups, func() {
		_ = cg.Destroy()
		removeCreatedParents(rec)
	})

	console := opts.console
	if opts.ConsoleSocket != "" {
		console, err = dialConsole(opts.ConsoleSocket)
		if err != nil {
			return nil, err
		}
		defer console.Close()
	} else if spec.Process.Terminal && console == nil {
		return nil, invalid("process.terminal", "true needs --console-socket to receive the terminal")
	}

	plan := planNamespaces(spec.Linux.Namespaces)
	plan.timens = timeOffsets(spec.Linux.TimeOffsets)
	p, err := r.spawn(spawnOpts{
		spec: spec, rec: rec, cg: cg, fifo: fifoFile, console: console,
		preserveFds: opts.PreserveFds, stdin: opts.Stdin, stdout: opts.Stdout, stderr: opts.Stderr,
		userNS:  hasNamespace(spec, specs.UserNamespace),
		plan:    plan,
		mode:    modeCreate,
		noPivot: opts.NoPivot,
	})
	if p != nil {
		cleanups = append(cleanups, func() { p.kill() })
	}
	if err != nil {
		return nil, err
	}
	defer p.conn.f.Close()

	// The init stage asks for the runtime-side hooks when its mounts are
	// in place, then reports ready just before it blocks on the fifo.
	for {
		m, err := p.conn.recv()
		if err != nil {
			return nil, fmt.Errorf("init process died during setup: %w", p.exitReason(err))
		}
		switch m.Type {
		case msgHooks:
			if spec.Hooks != nil {
				// prestart is the deprecated form of createRuntime; tools
				// written for it expect the status "created".
				herr := runHooks("prestart", spec.Hooks.Prestart, rec.specState(Created))
				if herr == nil {
					herr = runHooks("createRuntime", spec.Hooks.CreateRuntime, rec.specState(Creating))
				}
				if herr != nil {
					_ = p.conn.send(syncMsg{Type: msgError, Msg: herr.Error()})
					return nil, herr
				}
			}
			if err := p.conn.send(syncMsg{Type: msgHooksDone}); err != nil {
				return nil, err
			}
			continue
		case msgReady:
			// Limits go on only now, as runc does: the init stage is
			// a Go program whose threads count against pids.max and
			// whose setup must not be starved by a tiny memory limit.
			if res := withDeviceRules(spec); res != nil {
				if err := cg.Set(res); err != nil {
					return nil, fmt.Errorf("linux.resources: %w", err)
				}
			}
		case msgError:
			return nil, errors.New(m.Msg)
		default:
			return nil, fmt.Errorf("init process: unexpected message %q", m.Type)
		}
		break
	}
	rec.Creating = false
	if err := rec.save(r.Root); err != nil {
		return nil, err
	}
	if opts.PidFile != "" {
		if err := writePidFile(opts.PidFile, rec.Pid); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

func dialConsole(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect to console socket %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

func writePidFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return writeFileAtomic(abs, []byte(strconv.Itoa(pid)), 0o644, false)
}

type spawnOpts struct {
	spec                  *specs.Spec
	process               *specs.Process // exec: the process to run; create: spec.Process
	rec                   *record
	cg                    cgroups.Manager
	fifo, console         *os.File
	preserveFds           int
	stdin, stdout, stderr *os.File
	userNS                bool
	plan                  nsPlan
	mode                  string
	noPivot               bool
}

// initProc is a spawned `berth init` as the parent sees it.
type initProc struct {
	cmd  *exec.Cmd
	pid  int // the init's pid once known
	conn *childConn
}

func (p *initProc) kill() {
	if p.pid > 0 {
		_ = unix.Kill(p.pid, unix.SIGKILL)
		waitGone(p.pid, 5*time.Second)
	}
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_, _ = p.cmd.Process.Wait()
	}
}

func (p *initProc) exitReason(err error) error {
	return err
}

// spawn starts `berth init`, places it in the cgroup, drives the C stage
// (id maps, pid) and sends the init config.
func (r *Runtime) spawn(o spawnOpts) (*initProc, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	parentEnd := os.NewFile(uintptr(pair[0]), "init-parent")
	childEnd := os.NewFile(uintptr(pair[1]), "init-child")
	defer childEnd.Close()

	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{"berth", "init"}}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if o.stdin != nil {
		cmd.Stdin = o.stdin
	}
	if o.stdout != nil {
		cmd.Stdout = o.stdout
	}
	if o.stderr != nil {
		cmd.Stderr = o.stderr
	}
	for i := 0; i < o.preserveFds; i++ {
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(3+i), "preserved"))
	}
	next := func(f *os.File) int {
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		return 2 + len(cmd.ExtraFiles)
	}
	cfg := initConfig{Mode: o.mode, ID: o.rec.ID, Spec: initSpec(o.spec), Process: o.process, Rootfs: o.rec.Rootfs,
		NoPivot: o.noPivot, FifoFd: -1, ConsoleFd: -1, UserNS: o.userNS}
	if cfg.Process == nil {
		cfg.Process = o.spec.Process
	}
	sockFd := next(childEnd)
	cfg.InternalFds = append(cfg.InternalFds, sockFd)
	if o.fifo != nil {
		cfg.FifoFd = next(o.fifo)
		cfg.InternalFds = append(cfg.InternalFds, cfg.FifoFd)
	}
	if o.console != nil {
		cfg.ConsoleFd = next(o.console)
		cfg.InternalFds = append(cfg.InternalFds, cfg.ConsoleFd)
	}
	cmd.Env = []string{envInitPipe + "=" + strconv.Itoa(sockFd)}
	// If we die before the C stage reports, so does it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		parentEnd.Close()
		return nil, fmt.Errorf("start init process: %w", err)
	}
	p := &initProc{cmd: cmd, conn: newChildConn(parentEnd)}
	fail := func(err error) (*initProc, error) { return p, err }

	// The C stage joins the cgroup itself, before it unshares the cgroup
	// namespace (so the namespace is rooted at the container's cgroup).
	if o.mode == modeCreate {
		o.rec.CgroupParents = missingParents(o.cg)
		if err := applyRetry(o.cg, 0); err != nil {
			return fail(fmt.Errorf("linux.cgroupsPath: %w", err))
		}
		cfg.CgroupPaths = cgroupPaths(o.cg)
	}
	if o.cg != nil && o.cg.Exists() {
		o.plan.cgroups = joinFiles(o.cg)
	}
	if _, err := parentEnd.Write(o.plan.encode()); err != nil {
		return fail(fmt.Errorf("send namespace plan: %w", err))
	}
	pid, err := p.conn.readStage(func() error { return writeIDMaps(cmd.Process.Pid, o.spec.Linux) })
	if err != nil {
		return fail(err)
	}
	p.pid = pid
	if o.plan.fork {
		// The first stage exits once it has forked the init.
		_ = cmd.Wait()
	} else {
		_ = cmd.Process.Release()
	}
	if o.mode == modeCreate {
		st, _, err := procStartTime(pid)
		if err != nil {
			return fail(fmt.Errorf("init process %d vanished: %w", pid, err))
		}
		o.rec.Pid, o.rec.PidStartTime = pid, st
		o.rec.CgroupPaths = cfg.CgroupPaths
		if err := o.rec.save(r.Root); err != nil {
			return fail(err)
		}
	}
	proc := cfg.Process
	if proc.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(strconv.Itoa(*proc.OOMScoreAdj)), 0); err != nil {
			return fail(fmt.Errorf("process.oomScoreAdj %d: %w (lowering it needs CAP_SYS_RESOURCE)", *proc.OOMScoreAdj, err))
		}
	}
	if err := p.conn.send(cfg); err != nil {
		return fail(fmt.Errorf("send init config: %w", err))
	}
	return p, nil
}

// cgroupPaths lists the container's cgroup directory per controller, for
// the cgroup mount inside the container.
func cgroupPaths(cg cgroups.Manager) map[string]string {
	out := map[string]string{}
	if cgroups.DetectMode() == cgroups.Unified {
		out[""] = cg.Path("")
		return out
	}
	for _, h := range v1Hierarchies() {
		for _, c := range h.controllers {
			if p := cg.Path(c); p != "" {
				out[c] = p
			}
		}
	}
	return out
}

// writeIDMaps writes the user namespace's maps for pid. As root we may map
// any range; setgroups stays allowed so additionalGids work.
func writeIDMaps(pid int, l *specs.Linux) error {
	format := func(ms []specs.LinuxIDMapping) []byte {
		var b strings.Builder
		for _, m := range ms {
			fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
		}
		return []byte(b.String())
	}
	base := "/proc/" + strconv.Itoa(pid)
	if err := os.WriteFile(base+"/uid_map", format(l.UIDMappings), 0); err != nil {
		return fmt.Errorf("linux.uidMappings: %w", err)
	}
	if err := os.WriteFile(base+"/gid_map", format(l.GIDMappings), 0); err != nil {
		return fmt.Errorf("linux.gidMappings: %w", err)
	}
	return nil
}

// waitGone waits until pid no longer runs (exited or a zombie).
func waitGone(pid int, timeout time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		deadline := time.Now().Add(timeout)
		for {
			ms := int(time.Until(deadline).Milliseconds())
			if ms <= 0 {
				return false
			}
			n, err := unix.Poll(fds, ms)
			if err == unix.EINTR {
				continue
			}
			return err == nil && n > 0
		}
	}
	return true
}

// withDeviceRules adds to the config's device cgroup rules an allow rule for
// every device the container gets (the defaults, linux.devices, and
// /dev/pts), as runc does: a config that denies all devices still means
// "all but the ones I listed".
func withDeviceRules(spec *specs.Spec) *specs.LinuxResources {
	if spec.Linux.Resources == nil {
		return nil
	}
	res := *spec.Linux.Resources
	if len(res.Devices) == 0 {
		return &res
	}
	i64 := func(v int64) *int64 { return &v }
	rules := append([]specs.LinuxDeviceCgroup{}, res.Devices...)
	for _, d := range append(append([]specs.LinuxDevice{}, defaultDevices...), spec.Linux.Devices...) {
		typ := d.Type
		switch typ {
		case "p":
			continue // fifos are not device-cgroup objects
		case "u":
			typ = "c" // unbuffered character device
		}
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: i64(d.Major), Minor: i64(d.Minor), Access: "rwm"})
	}
	rules = append(rules,
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(5), Minor: i64(2), Access: "rwm"}, // /dev/ptmx
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(136), Access: "rwm"},              // /dev/pts/*
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(5), Minor: i64(1), Access: "rwm"}, // /dev/console
	)
	res.Devices = rules
	return &res
}

// hostRoot returns the host uid and gid that the container's root maps to.
func hostRoot(spec *specs.Spec) (int, int) {
	uid, gid := 0, 0
	for _, m := range spec.Linux.UIDMappings {
		if m.ContainerID == 0 {
			uid = int(m.HostID)
		}
	}
	for _, m := range spec.Linux.GIDMappings {
		if m.ContainerID == 0 {
			gid = int(m.HostID)
		}
	}
	return uid, gid
}

// applyRetry joins the cgroup, trying again when a delete removed the
// shared parent directory between our mkdir of it and of our own.
func applyRetry(cg cgroups.Manager, pid int) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = cg.Apply(pid); err == nil || !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return err
}

// joinFiles lists, once per hierarchy, the file a process writes "0" to in
// order to join the manager's cgroup: tasks on v1 (one thread, which for a
// single-threaded process is the process), cgroup.procs on v2.
func joinFiles(cg cgroups.Manager) []string {
	seen := map[string]bool{}
	var out []string
	for _, dir := range cgroupPaths(cg) {
		if seen[dir] {
			continue
		}
		seen[dir] = true
		name := "tasks"
		if cgroups.DetectMode() == cgroups.Unified {
			name = "cgroup.procs"
		}
		out = append(out, filepath.Join(dir, name))
	}
	sort.Strings(out)
	return out
}

// missingParents lists, shallowest first, the ancestors of the container's
// cgroup directories that do not exist yet (below each hierarchy's root).
func missingParents(cg cgroups.Manager) []string {
	roots := map[string]bool{"/sys/fs/cgroup": true}
	for _, h := range v1Hierarchies() {
		roots[h.mountpoint] = true
	}
	seen := map[string]bool{}
	var out []string
	for _, dir := range cgroupPaths(cg) {
		var chain []string
		for p := filepath.Dir(dir); !roots[p] && p != "/" && p != "."; p = filepath.Dir(p) {
			if _, err := os.Stat(p); err == nil {
				break
			}
			chain = append([]string{p}, chain...)
		}
		for _, p := range chain {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Count(out[i], "/") < strings.Count(out[j], "/") })
	return out
}

// initSpec is the part of the config the init stage uses. Decoding JSON
// costs the init time per struct type it meets (the encoder's field cache is
// built on first use), so what only the parent needs stays behind: cgroup
// resources, runtime-side hooks, other platforms' sections.
func initSpec(spec *specs.Spec) *specs.Spec {
	s := *spec
	s.Windows, s.Solaris, s.VM, s.ZOS = nil, nil, nil, nil
	if spec.Linux != nil {
		l := *spec.Linux
		l.Resources = nil
		l.UIDMappings, l.GIDMappings = nil, nil
		s.Linux = &l
	}
	if spec.Hooks != nil {
		s.Hooks = &specs.Hooks{CreateContainer: spec.Hooks.CreateContainer, StartContainer: spec.Hooks.StartContainer}
	}
	return &s
}
