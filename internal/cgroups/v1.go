package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

var _ Manager = (*v1Manager)(nil)

// v1Manager keeps one directory per hierarchy, all named by the same path.
type v1Manager struct {
	path   string            // absolute within each hierarchy
	mounts map[string]string // controller -> mountpoint
}

// NewV1 returns a cgroup v1 manager. mounts maps each controller to its
// mountpoint, relative ones taken under root; nil reads the mounts under
// root from /proc/self/mountinfo. Tests pass a temporary root and map.
func NewV1(root string, mounts map[string]string, path string) (Manager, error) {
	p, err := cleanPath(path)
	if err != nil {
		return nil, err
	}
	if mounts == nil {
		if mounts, err = v1Mounts(root); err != nil {
			return nil, err
		}
	}
	m := &v1Manager{path: p, mounts: map[string]string{}}
	for c, mp := range mounts {
		if !filepath.IsAbs(mp) {
			mp = filepath.Join(root, mp)
		}
		m.mounts[c] = filepath.Clean(mp)
	}
	if len(m.mounts) == 0 {
		return nil, fmt.Errorf("no cgroup v1 hierarchy is mounted under %s: %w", root, errdefs.ErrFailedPrecondition)
	}
	return m, nil
}

func (m *v1Manager) Path(controller string) string {
	mp, ok := m.mounts[controller]
	if !ok {
		return ""
	}
	return filepath.Join(mp, m.path)
}

// dirs lists the cgroup's directories once each: comounted controllers
// share one.
func (m *v1Manager) dirs() []string {
	var out []string
	for _, c := range slices.Sorted(maps.Keys(m.mounts)) {
		out = append(out, m.Path(c))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (m *v1Manager) Apply(pid int) error {
	for _, dir := range m.dirs() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create cgroup: %w", err)
		}
	}
	if mp, ok := m.mounts["cpuset"]; ok {
		if err := fillCpuset(mp, m.path); err != nil {
			return err
		}
	}
	if pid <= 0 {
		return nil
	}
	for _, dir := range m.dirs() {
		if err := writeFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("move pid %d into cgroup: %w", pid, err)
		}
	}
	return nil
}

// fillCpuset copies cpuset.cpus and cpuset.mems down from the mountpoint
// to path wherever they are empty, which is what a new v1 cpuset starts
// with unless cgroup.clone_children is set: the kernel refuses tasks in an
// empty cpuset (ENOSPC).
func fillCpuset(mountpoint, path string) error {
	dir := mountpoint
	for elem := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
		parent := dir
		dir = filepath.Join(dir, elem)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			cur, err := readFile(dir, f)
			if err != nil {
				return fmt.Errorf("fill cpuset: %w", err)
			}
			if cur != "" {
				continue
			}
			v, err := readFile(parent, f)
			if err != nil {
				return fmt.Errorf("fill cpuset: %w", err)
			}
			if err := writeFile(dir, f, v); err != nil {
				return fmt.Errorf("fill cpuset: %w", err)
			}
		}
	}
	return nil
}

func (m *v1Manager) Set(r *specs.LinuxResources) error {
	ws, err := planV1(r)
	if err != nil {
		return err
	}
	if err := checkBeforeUpdate(r, m.Path("memory"), "memory.usage_in_bytes"); err != nil {
		return err
	}
	return applyWrites(ws, m.Path)
}

// checkBeforeUpdate implements memory.checkBeforeUpdate: refuse a limit
// below what the cgroup already uses rather than have the kernel reclaim
// or OOM-kill to meet it.
func checkBeforeUpdate(r *specs.LinuxResources, dir, usageFile string) error {
	if r == nil || r.Memory == nil || r.Memory.CheckBeforeUpdate == nil || !*r.Memory.CheckBeforeUpdate || dir == "" {
		return nil
	}
	lim := val(r.Memory.Limit)
	if lim <= 0 {
		return nil
	}
	usage, err := readUint(dir, usageFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // not created yet: nothing in use
	}
	if err != nil {
		return err
	}
	if usage > uint64(lim) {
		return fmt.Errorf("%smemory.limit: %d is below the current usage %d (memory.checkBeforeUpdate is set): %w", fieldPrefix, lim, usage, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func (m *v1Manager) Stats() (*Stats, error) {
	if !m.Exists() {
		return nil, fmt.Errorf("cgroup %s: %w", m.path, errdefs.ErrNotFound)
	}
	var s Stats
	var err error
	// Files may be missing (no swap accounting, old kernels); only other
	// read errors count.
	get := func(dir, file string) uint64 {
		if dir == "" || err != nil {
			return 0
		}
		v, e := readUint(dir, file)
		if e != nil && !errors.Is(e, fs.ErrNotExist) {
			err = e
		}
		return v
	}
	keyed := func(dir, file string) map[string]uint64 {
		if dir == "" || err != nil {
			return nil
		}
		kv, e := readKeyed(dir, file)
		if e != nil && !errors.Is(e, fs.ErrNotExist) {
			err = e
		}
		return kv
	}

	if dir := m.Path("memory"); dir != "" {
		s.Memory.Usage = get(dir, "memory.usage_in_bytes")
		s.Memory.MaxUsage = get(dir, "memory.max_usage_in_bytes")
		s.Memory.Limit = v1Unlimited(get(dir, "memory.limit_in_bytes"))
		// A charge fails on memsw or on memory, never both, so the sum
		// counts each refused allocation once.
		s.Memory.Failcnt = get(dir, "memory.failcnt") + get(dir, "memory.memsw.failcnt")
		if memsw := get(dir, "memory.memsw.usage_in_bytes"); memsw > s.Memory.Usage {
			s.Memory.Swap = memsw - s.Memory.Usage
		}
		stat := keyed(dir, "memory.stat")
		s.Memory.Cache = stat["total_cache"]
		if _, ok := stat["total_cache"]; !ok {
			s.Memory.Cache = stat["cache"]
		}
		s.Memory.OOMKills = keyed(dir, "memory.oom_control")["oom_kill"]
	}
	if dir := m.Path("cpuacct"); dir != "" {
		s.CPU.UsageNanos = get(dir, "cpuacct.usage")
		s.CPU.UserNanos = get(dir, "cpuacct.usage_user")
		s.CPU.SystemNanos = get(dir, "cpuacct.usage_sys")
		if s.CPU.UserNanos == 0 && s.CPU.SystemNanos == 0 {
			// Before 4.11 only cpuacct.stat, in USER_HZ ticks, which is
			// 100 on every Linux architecture.
			st := keyed(dir, "cpuacct.stat")
			s.CPU.UserNanos = st["user"] * 1e7
			s.CPU.SystemNanos = st["system"] * 1e7
		}
	}
	if dir := m.Path("cpu"); dir != "" {
		st := keyed(dir, "cpu.stat")
		s.CPU.Periods = st["nr_periods"]
		s.CPU.ThrottledPeriods = st["nr_throttled"]
		s.CPU.ThrottledNanos = st["throttled_time"]
	}
	if dir := m.Path("pids"); dir != "" {
		s.Pids.Current = get(dir, "pids.current")
		s.Pids.Limit = get(dir, "pids.max")
	}
	if dir := m.Path("blkio"); dir != "" && err == nil {
		s.IO, err = blkioStats(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read cgroup stats: %w", err)
	}
	return &s, nil
}

// v1Unlimited turns v1's "no limit" (the largest page-aligned int64, e.g.
// 9223372036854771712) into Stats' 0.
func v1Unlimited(v uint64) uint64 {
	if v >= 1<<62 {
		return 0
	}
	return v
}

// blkioStats sums blkio.throttle.io_service_bytes_recursive and
// io_serviced_recursive: the throttle files count every I/O whatever the
// scheduler, unlike the CFQ/BFQ ones.
func blkioStats(dir string) (IOStats, error) {
	var s IOStats
	for _, f := range []struct {
		file        string
		read, write *uint64
	}{
		{"blkio.throttle.io_service_bytes_recursive", &s.ReadBytes, &s.WriteBytes},
		{"blkio.throttle.io_serviced_recursive", &s.ReadOps, &s.WriteOps},
	} {
		content, err := readFile(dir, f.file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return s, err
		}
		r, w := parseBlkio(content)
		*f.read += r
		*f.write += w
	}
	return s, nil
}

// parseBlkio sums the Read and Write lines of "8:0 Read 4096" tables.
func parseBlkio(content string) (read, write uint64) {
	for line := range strings.Lines(content) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write
}

// procsDir picks the hierarchy to list processes from: any holds them
// all, but pids and freezer are the ones runtimes always join.
func (m *v1Manager) procsDir() string {
	for _, c := range []string{"pids", "freezer", "memory", "cpu", "devices"} {
		if d := m.Path(c); d != "" {
			return d
		}
	}
	return m.dirs()[0]
}

func (m *v1Manager) Pids() ([]int, error) {
	pids, err := readProcs(m.procsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cgroup %s: %w", m.path, errdefs.ErrNotFound)
	}
	return pids, err
}

const freezeTimeout = 5 * time.Second

func (m *v1Manager) freezer() (string, error) {
	dir := m.Path("freezer")
	if dir == "" {
		return "", fmt.Errorf("freeze: the freezer cgroup controller is not mounted: %w", errdefs.ErrFailedPrecondition)
	}
	return dir, nil
}

// Freeze writes FROZEN until the kernel reports it. The state passes
// through FREEZING while tasks are caught; writing again re-kicks tasks
// that raced with the first attempt (runc does the same).
func (m *v1Manager) Freeze() error {
	dir, err := m.freezer()
	if err != nil {
		return err
	}
	ok, err := waitFor(freezeTimeout, func() (bool, error) {
		if err := writeFile(dir, "freezer.state", "FROZEN"); err != nil {
			return false, err
		}
		s, err := readFile(dir, "freezer.state")
		return s == "FROZEN", err
	})
	if err == nil && !ok {
		err = fmt.Errorf("freeze %s: still FREEZING after %v: %w", dir, freezeTimeout, errdefs.ErrUnavailable)
	}
	if err != nil {
		_ = writeFile(dir, "freezer.state", "THAWED") // never leave it half frozen
		return err
	}
	return nil
}

func (m *v1Manager) Thaw() error {
	dir, err := m.freezer()
	if err != nil {
		return err
	}
	ok, err := waitFor(freezeTimeout, func() (bool, error) {
		if err := writeFile(dir, "freezer.state", "THAWED"); err != nil {
			return false, err
		}
		s, err := readFile(dir, "freezer.state")
		return s == "THAWED", err
	})
	if err == nil && !ok {
		err = fmt.Errorf("thaw %s: not THAWED after %v: %w", dir, freezeTimeout, errdefs.ErrUnavailable)
	}
	return err
}

func (m *v1Manager) State() (bool, error) {
	dir, err := m.freezer()
	if err != nil {
		return false, err
	}
	s, err := readFile(dir, "freezer.state")
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("cgroup %s: %w", m.path, errdefs.ErrNotFound)
	}
	return s == "FROZEN", err
}

func (m *v1Manager) Destroy() error {
	var errs []error
	for _, dir := range m.dirs() {
		if err := removeTree(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *v1Manager) Exists() bool {
	for _, dir := range m.dirs() {
		if _, err := os.Stat(dir); err == nil {
			return true
		}
	}
	return false
}
