package cgroups

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// DefaultRoot is where every distribution mounts the cgroup hierarchies.
const DefaultRoot = "/sys/fs/cgroup"

// Mode says which cgroup interface the host offers.
type Mode int

const (
	// Legacy is cgroup v1, including hybrid hosts whose extra v2 hierarchy
	// (/sys/fs/cgroup/unified) holds no controllers: limits can only be set
	// through v1 there.
	Legacy Mode = iota
	// Unified is cgroup v2 mounted at /sys/fs/cgroup.
	Unified
)

func (m Mode) String() string {
	switch m {
	case Legacy:
		return "legacy"
	case Unified:
		return "unified"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DetectMode reports Unified when /sys/fs/cgroup itself is a cgroup2 mount,
// and Legacy otherwise. It is the same test runc and systemd use: on hybrid
// hosts /sys/fs/cgroup is a tmpfs holding the v1 mounts.
func DetectMode() Mode {
	var st unix.Statfs_t
	if err := unix.Statfs(DefaultRoot, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return Unified
	}
	return Legacy
}

// Manager owns one container's cgroup across every hierarchy.
//
// The lifecycle the runtime follows is Apply(0) to create the directories,
// Set to write the limits, Apply(pid) to move the container's first process
// in (so it never runs unconstrained), then any number of Set (update),
// Stats, Pids, Freeze and Thaw, and finally Destroy once every process has
// exited. If Apply or Set fails half way, Destroy removes whatever exists.
// A Manager holds no open files or state besides its paths, so a new one
// built from the same cgroupsPath, in another process, manages the same
// cgroup.
type Manager interface {
	// Apply creates the cgroup in every hierarchy and, when pid > 0, moves
	// that process into it. On v1 an empty cpuset.cpus/mems is copied from
	// the parent first, as the kernel refuses tasks in an empty cpuset.
	Apply(pid int) error
	// Set checks r, then writes its limits. A limit r does not ask for is
	// never touched, so a missing controller matters only when asked for.
	Set(r *specs.LinuxResources) error
	// Stats reads usage counters. Controllers that are absent read as zero.
	Stats() (*Stats, error)
	// Pids lists every process in the cgroup and its descendants, sorted.
	Pids() ([]int, error)
	// Freeze stops every process and returns once the kernel reports the
	// cgroup frozen.
	Freeze() error
	// Thaw resumes a frozen cgroup.
	Thaw() error
	// State reports whether the cgroup is frozen.
	State() (frozen bool, err error)
	// Destroy removes the cgroup's directories, children first. It fails
	// while processes remain; a cgroup already gone is not an error.
	Destroy() error
	// Path is the directory for a controller: on v1 its hierarchy
	// ("memory", "cpu", "name=systemd"...; "" if not mounted), on v2 the
	// single unified directory whatever the argument.
	Path(controller string) string
	// Exists reports whether any of the cgroup's directories exists.
	Exists() bool
}

// New returns a manager for cgroupsPath (OCI linux.cgroupsPath) on the
// host's cgroup mode. Both "/berth/abc" and "berth/abc" name the same
// cgroup below each hierarchy's root: unlike runc, a relative path is not
// resolved against the caller's own cgroup, so the result does not depend
// on where the berth process happens to run.
func New(cgroupsPath string) (Manager, error) {
	if DetectMode() == Unified {
		return NewV2(DefaultRoot, cgroupsPath)
	}
	return NewV1(DefaultRoot, nil, cgroupsPath)
}

// cleanPath makes cgroupsPath absolute within a hierarchy. Cleaning against
// "/" means ".." can never climb above the hierarchy root.
func cleanPath(cgroupsPath string) (string, error) {
	if strings.TrimSpace(cgroupsPath) == "" {
		return "", fmt.Errorf("linux.cgroupsPath is empty: %w", errdefs.ErrInvalidArgument)
	}
	p := filepath.Join("/", cgroupsPath)
	if p == "/" {
		return "", fmt.Errorf("linux.cgroupsPath %q names the root cgroup, which a container cannot own: %w", cgroupsPath, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// Stats are the usage counters of one cgroup. A limit of 0 means no limit.
type Stats struct {
	Memory MemoryStats `json:"memory"`
	CPU    CPUStats    `json:"cpu"`
	Pids   PidsStats   `json:"pids"`
	IO     IOStats     `json:"io"`
}

// MemoryStats are in bytes.
type MemoryStats struct {
	Usage    uint64 `json:"usage"`
	MaxUsage uint64 `json:"maxUsage"` // v2: memory.peak, 0 before kernel 5.19
	Limit    uint64 `json:"limit"`
	Cache    uint64 `json:"cache"` // page cache (v2: "file" in memory.stat)
	Swap     uint64 `json:"swap"`  // 0 when swap accounting is off
	// Failcnt counts allocations that hit the limit (v2: memory.events max).
	Failcnt uint64 `json:"failcnt"`
	// OOMKills counts processes the OOM killer ended in this cgroup.
	OOMKills uint64 `json:"oomKills"`
}

// CPUStats are in nanoseconds, except the period counters.
type CPUStats struct {
	UsageNanos       uint64 `json:"usageNanos"`
	UserNanos        uint64 `json:"userNanos"`
	SystemNanos      uint64 `json:"systemNanos"`
	Periods          uint64 `json:"periods"`
	ThrottledPeriods uint64 `json:"throttledPeriods"`
	ThrottledNanos   uint64 `json:"throttledNanos"`
}

// PidsStats counts tasks (threads included, as the kernel does).
type PidsStats struct {
	Current uint64 `json:"current"`
	Limit   uint64 `json:"limit"`
}

// IOStats sum every block device.
type IOStats struct {
	ReadBytes  uint64 `json:"readBytes"`
	WriteBytes uint64 `json:"writeBytes"`
	ReadOps    uint64 `json:"readOps"`
	WriteOps   uint64 `json:"writeOps"`
}
