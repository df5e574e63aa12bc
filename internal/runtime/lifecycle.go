package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/errdefs"
)

// State returns the runtime-spec state of container id.
func (r *Runtime) State(id string) (State, error) {
	rec, err := loadRecord(r.Root, id)
	if err != nil {
		return State{}, err
	}
	return rec.state(r.Root), nil
}

// List returns the state of every container, sorted by id.
func (r *Runtime) List() ([]State, error) {
	entries, err := os.ReadDir(r.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []State
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rec, err := loadRecord(r.Root, e.Name())
		if err != nil {
			continue // a create in progress or a foreign directory
		}
		out = append(out, rec.state(r.Root))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Start releases a created container's process: it opens the exec fifo
// the init stage is blocked on, then runs the poststart hooks.
func (r *Runtime) Start(id string) error {
	rec, err := loadRecord(r.Root, id)
	if err != nil {
		return err
	}
	return r.start(rec)
}

func (r *Runtime) start(rec *record) error {
	id := rec.ID
	unlock, err := lockDir(rec.dir(r.Root))
	if err != nil {
		return err
	}
	defer unlock()
	switch st := rec.status(r.Root); st {
	case Created:
	case Stopped:
		return fmt.Errorf("cannot start a container that has stopped: %w", errdefs.ErrFailedPrecondition)
	default:
		return fmt.Errorf("cannot start an already %s container: %w", st, errdefs.ErrFailedPrecondition)
	}
	fifo := filepath.Join(rec.dir(r.Root), fifoName)
	// Non-blocking, so a dead init cannot hang us: the open succeeds at
	// once and the init's blocked open for writing completes.
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("open exec fifo", err)
	}
	defer unix.Close(fd)
	// First the init's byte (it passed the fifo), then EOF (its execve
	// closed the fifo). Poll, so a dead init cannot hang us.
	buf := make([]byte, 1)
	got := false
	for {
		n, err := unix.Read(fd, buf)
		if n == 1 {
			if !got {
				got = true
				// From here on the container counts as running.
				if err := os.Remove(fifo); err != nil {
					return err
				}
			}
			continue
		}
		if n == 0 && err == nil && got {
			break // EOF: the program runs
		}
		if err != nil && err != unix.EAGAIN {
			return os.NewSyscallError("read exec fifo", err)
		}
		if !rec.alive() {
			if got {
				break // it ran and already exited
			}
			return fmt.Errorf("container %q: init process exited before it was started", id)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		_, _ = unix.Poll(fds, 10)
	}
	if rec.Config.Hooks != nil {
		runHooksWarn("poststart", rec.Config.Hooks.Poststart, rec.specState(Running), r.warn)
	}
	return nil
}

// Kill sends sig to the container's init, or with all to every process in
// its cgroup.
func (r *Runtime) Kill(id string, sig unix.Signal, all bool) error {
	rec, err := loadRecord(r.Root, id)
	if err != nil {
		return err
	}
	st := rec.status(r.Root)
	if st == Stopped && !all {
		return fmt.Errorf("container %q is not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	if all {
		return r.killAll(rec, sig)
	}
	if err := unix.Kill(rec.Pid, sig); err != nil {
		return os.NewSyscallError("kill", err)
	}
	return nil
}

func (r *Runtime) killAll(rec *record, sig unix.Signal) error {
	cg, err := cgroups.New(rec.CgroupPath)
	if err != nil {
		return err
	}
	if !cg.Exists() {
		return nil
	}
	// Freeze first so nothing forks between listing and signalling.
	frozen := cg.Freeze() == nil
	pids, err := cg.Pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = unix.Kill(pid, sig)
	}
	if frozen {
		return cg.Thaw()
	}
	return nil
}

// Delete removes a stopped (or, with force, any) container: it kills what
// is left, runs the poststop hooks, removes the cgroup and the state.
func (r *Runtime) Delete(id string, force bool) error {
	rec, err := loadRecord(r.Root, id)
	if err != nil {
		return err
	}
	return r.delete(rec, force)
}

func (r *Runtime) delete(rec *record, force bool) error {
	id := rec.ID
	unlock, err := lockDir(rec.dir(r.Root))
	if err != nil {
		return err
	}
	defer unlock()
	switch st := rec.status(r.Root); st {
	case Stopped:
	case Creating:
		// A create that died half-way: nothing to protect.
		r.killInit(rec)
	default:
		// The runtime spec: deleting a container that is not stopped
		// (created included) is an error unless forced.
		if !force {
			return fmt.Errorf("cannot delete container %q that is not stopped: %s (stop it first or use --force): %w", id, st, errdefs.ErrFailedPrecondition)
		}
		r.killInit(rec)
	}
	return r.destroy(rec)
}

func (r *Runtime) killInit(rec *record) {
	_ = r.killAll(rec, unix.SIGKILL)
	if rec.alive() {
		_ = unix.Kill(rec.Pid, unix.SIGKILL)
	}
	waitGone(rec.Pid, 10*time.Second)
}

func (r *Runtime) destroy(rec *record) error {
	cg, err := cgroups.New(rec.CgroupPath)
	if err == nil && cg.Exists() {
		// Without a pid namespace of its own, children of init survive
		// it; with one, the kernel killed them all when init died.
		if !rec.ownPidNS() || rec.alive() {
			_ = r.killAll(rec, unix.SIGKILL)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			pids, _ := cg.Pids()
			if len(pids) == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := cg.Destroy(); err != nil {
			return fmt.Errorf("remove cgroup: %w", err)
		}
	}
	removeCreatedParents(rec)
	if rec.Config != nil && rec.Config.Hooks != nil {
		runHooksWarn("poststop", rec.Config.Hooks.Poststop, rec.specState(Stopped), r.warn)
	}
	return os.RemoveAll(rec.dir(r.Root))
}

// Pause freezes every process of the container.
func (r *Runtime) Pause(id string) error { return r.setFrozen(id, Running, true) }

// Resume thaws a paused container.
func (r *Runtime) Resume(id string) error { return r.setFrozen(id, Paused, false) }

func (r *Runtime) setFrozen(id string, from Status, freeze bool) error {
	rec, err := loadRecord(r.Root, id)
	if err != nil {
		return err
	}
	if st := rec.status(r.Root); st != from {
		return fmt.Errorf("container %q is %s, not %s: %w", id, st, from, errdefs.ErrFailedPrecondition)
	}
	cg, err := cgroups.New(rec.CgroupPath)
	if err != nil {
		return err
	}
	if freeze {
		return cg.Freeze()
	}
	return cg.Thaw()
}

// Pids lists the processes in the container's cgroup.
func (r *Runtime) Pids(id string) ([]int, error) {
	rec, err := loadRecord(r.Root, id)
	if err != nil {
		return nil, err
	}
	cg, err := cgroups.New(rec.CgroupPath)
	if err != nil {
		return nil, err
	}
	if !cg.Exists() {
		return nil, nil
	}
	return cg.Pids()
}

// Stats returns the container's cgroup accounting.
func (r *Runtime) Stats(id string) (*cgroups.Stats, error) {
	rec, err := loadRecord(r.Root, id)
	if err != nil {
		return nil, err
	}
	cg, err := cgroups.New(rec.CgroupPath)
	if err != nil {
		return nil, err
	}
	return cg.Stats()
}

func (r *record) frozen() bool {
	cg, err := cgroups.New(r.CgroupPath)
	if err != nil || !cg.Exists() {
		return false
	}
	f, err := cg.State()
	return err == nil && f
}

// ParseSignal accepts "KILL", "SIGKILL", "kill" or "9".
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d is out of range: %w", n, errdefs.ErrInvalidArgument)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q: %w", s, errdefs.ErrInvalidArgument)
}

// ContainerSpec returns the config a container was created with.
func (r *Runtime) ContainerSpec(id string) (*specs.Spec, error) {
	rec, err := loadRecord(r.Root, id)
	if err != nil {
		return nil, err
	}
	return rec.Config, nil
}

func uidSelf() int { return os.Getuid() }
func gidSelf() int { return os.Getgid() }

// removeCreatedParents removes the parent cgroup directories that this
// container's create made (berth's own /berth, or the parents of a nested
// cgroupsPath), deepest first, once they are empty; directories that
// existed before are never touched. A parent still used by another
// container refuses rmdir with EBUSY, which is fine; a concurrent create
// that loses the race to a removal retries (applyRetry).
func removeCreatedParents(rec *record) {
	for i := len(rec.CgroupParents) - 1; i >= 0; i-- {
		_ = unix.Rmdir(rec.CgroupParents[i])
	}
}

// ownPidNS reports whether the container got a new pid namespace (not one
// joined by path, whose other processes are not ours to wait for).
func (r *record) ownPidNS() bool {
	if r.Config == nil || r.Config.Linux == nil {
		return false
	}
	for _, ns := range r.Config.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}
