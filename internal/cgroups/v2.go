package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

var _ Manager = (*v2Manager)(nil)

// v2Manager owns one directory of the unified hierarchy.
type v2Manager struct {
	root string // the cgroup2 mountpoint
	path string // absolute within it
}

// NewV2 returns a cgroup v2 manager for path below the cgroup2 mountpoint
// unified. Tests pass a temporary directory laid out as the kernel would.
func NewV2(unified, path string) (Manager, error) {
	p, err := cleanPath(path)
	if err != nil {
		return nil, err
	}
	return &v2Manager{root: filepath.Clean(unified), path: p}, nil
}

func (m *v2Manager) dir() string { return filepath.Join(m.root, m.path) }

func (m *v2Manager) Path(string) string { return m.dir() }

// Apply creates the cgroup and, at every level from the root down to its
// parent, enables in cgroup.subtree_control each controller that level
// offers (cgroup.controllers): a v2 cgroup only has the interface files of
// the controllers its parent enabled. Failures to enable are ignored, as
// runc does, because a controller may be held by v1 or by a delegating
// parent; a limit that needs one then fails in Set, naming the field.
func (m *v2Manager) Apply(pid int) error {
	dir := m.root
	for elem := range strings.SplitSeq(strings.Trim(m.path, "/"), "/") {
		enableControllers(dir)
		dir = filepath.Join(dir, elem)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create cgroup: %w", err)
		}
	}
	if pid <= 0 {
		return nil
	}
	if err := writeFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("move pid %d into cgroup: %w", pid, err)
	}
	return nil
}

// enableControllers enables in dir's children the controllers dir has and
// has not enabled yet; writing only the missing ones leaves a shared
// parent's file alone in the common case.
func enableControllers(dir string) {
	avail, err := readFile(dir, "cgroup.controllers")
	if err != nil {
		return
	}
	enabled, _ := readFile(dir, "cgroup.subtree_control")
	var add []string
	for c := range strings.FieldsSeq(avail) {
		if !slices.Contains(strings.Fields(enabled), c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return
	}
	if writeFile(dir, "cgroup.subtree_control", strings.Join(add, " ")) == nil {
		return
	}
	// One refused controller fails the whole write; enable the rest.
	for _, c := range add {
		_ = writeFile(dir, "cgroup.subtree_control", c)
	}
}

func (m *v2Manager) Set(r *specs.LinuxResources) error {
	ws, err := planV2(r)
	if err != nil {
		return err
	}
	var prog []insn
	if r != nil && len(r.Devices) > 0 {
		if prog, err = devicesProgram(r.Devices); err != nil {
			return err
		}
	}
	if err := checkBeforeUpdate(r, m.dir(), "memory.current"); err != nil {
		return err
	}
	if err := applyWrites(ws, m.Path); err != nil {
		return err
	}
	if prog != nil {
		return setDevicePrograms(m.dir(), prog)
	}
	return nil
}

func (m *v2Manager) Stats() (*Stats, error) {
	dir := m.dir()
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", m.path, errdefs.ErrNotFound)
	}
	var s Stats
	var err error
	get := func(file string) uint64 {
		if err != nil {
			return 0
		}
		v, e := readUint(dir, file)
		if e != nil && !errors.Is(e, fs.ErrNotExist) {
			err = e
		}
		return v
	}
	keyed := func(file string) map[string]uint64 {
		if err != nil {
			return nil
		}
		kv, e := readKeyed(dir, file)
		if e != nil && !errors.Is(e, fs.ErrNotExist) {
			err = e
		}
		return kv
	}
	s.Memory.Usage = get("memory.current")
	s.Memory.MaxUsage = get("memory.peak")
	s.Memory.Limit = get("memory.max")
	s.Memory.Swap = get("memory.swap.current")
	s.Memory.Cache = keyed("memory.stat")["file"]
	ev := keyed("memory.events")
	s.Memory.Failcnt = ev["max"]
	s.Memory.OOMKills = ev["oom_kill"]

	cpu := keyed("cpu.stat")
	s.CPU.UsageNanos = cpu["usage_usec"] * 1000
	s.CPU.UserNanos = cpu["user_usec"] * 1000
	s.CPU.SystemNanos = cpu["system_usec"] * 1000
	s.CPU.Periods = cpu["nr_periods"]
	s.CPU.ThrottledPeriods = cpu["nr_throttled"]
	s.CPU.ThrottledNanos = cpu["throttled_usec"] * 1000

	s.Pids.Current = get("pids.current")
	s.Pids.Limit = get("pids.max")

	if err == nil {
		var content string
		content, err = readFile(dir, "io.stat")
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		s.IO = parseIOStat(content)
	}
	if err != nil {
		return nil, fmt.Errorf("read cgroup stats: %w", err)
	}
	return &s, nil
}

// parseIOStat sums io.stat lines: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...".
func parseIOStat(content string) IOStats {
	var s IOStats
	for line := range strings.Lines(content) {
		for kv := range strings.FieldsSeq(line) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				s.ReadBytes += n
			case "wbytes":
				s.WriteBytes += n
			case "rios":
				s.ReadOps += n
			case "wios":
				s.WriteOps += n
			}
		}
	}
	return s
}

func (m *v2Manager) Pids() ([]int, error) {
	pids, err := readProcs(m.dir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cgroup %s: %w", m.path, errdefs.ErrNotFound)
	}
	return pids, err
}

// setFrozen writes cgroup.freeze and waits for cgroup.events to agree:
// the write only asks, and tasks stop (or resume) asynchronously.
func (m *v2Manager) setFrozen(frozen bool) error {
	dir := m.dir()
	want := boolDigit(frozen)
	if err := writeFile(dir, "cgroup.freeze", want); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("freeze: %s has no cgroup.freeze (kernel older than 5.2?): %w", dir, errdefs.ErrFailedPrecondition)
		}
		return err
	}
	ok, err := waitFor(freezeTimeout, func() (bool, error) {
		f, err := m.State()
		return f == frozen, err
	})
	if err == nil && !ok {
		err = fmt.Errorf("cgroup %s: frozen is not %s after %v: %w", dir, want, freezeTimeout, errdefs.ErrUnavailable)
	}
	if err != nil && frozen {
		_ = writeFile(dir, "cgroup.freeze", "0") // never leave it half frozen
	}
	return err
}

func (m *v2Manager) Freeze() error { return m.setFrozen(true) }
func (m *v2Manager) Thaw() error   { return m.setFrozen(false) }

func (m *v2Manager) State() (bool, error) {
	ev, err := readKeyed(m.dir(), "cgroup.events")
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("cgroup %s: %w", m.path, errdefs.ErrNotFound)
	}
	if err != nil {
		return false, err
	}
	return ev["frozen"] == 1, nil
}

func (m *v2Manager) Destroy() error { return removeTree(m.dir()) }

func (m *v2Manager) Exists() bool {
	_, err := os.Stat(m.dir())
	return err == nil
}
