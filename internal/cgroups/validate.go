package cgroups

import (
	"fmt"
	mathbits "math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Kernel bounds (kernel/sched/core.c, block/blk-cgroup.c) checked up front
// so a bad config fails before anything exists rather than half applied.
const (
	minShares   = 2
	maxShares   = 262144
	minPeriod   = 1000    // 1ms
	maxPeriod   = 1000000 // 1s
	minQuota    = 1000
	minBlkio    = 10
	maxBlkio    = 1000
	maxSwappy   = 100
	fieldPrefix = "linux.resources."
)

// Validate checks r against the OCI rules, the kernel's bounds and what
// this host's cgroups can do (cgroup mode, mounted or enabled controllers),
// without creating anything. Set runs the same checks; the runtime calls
// Validate first so that a bad config leaves nothing behind.
func Validate(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if DetectMode() == Unified {
		ws, err := planV2(r)
		if err != nil {
			return err
		}
		ctrls, err := os.ReadFile(filepath.Join(DefaultRoot, "cgroup.controllers"))
		if err != nil {
			return err
		}
		have := map[string]bool{"cgroup": true}
		for _, c := range strings.Fields(string(ctrls)) {
			have[c] = true
		}
		return checkControllers(ws, func(c string) bool { return have[c] })
	}
	ws, err := planV1(r)
	if err != nil {
		return err
	}
	mounts, err := v1Mounts(DefaultRoot)
	if err != nil {
		return err
	}
	return checkControllers(ws, func(c string) bool { return mounts[c] != "" })
}

// checkControllers fails on the first write whose controller the host
// lacks, naming the config field that asked for it.
func checkControllers(ws []write, available func(controller string) bool) error {
	for _, w := range ws {
		if !w.optional && !available(w.controller) {
			return missingController(w)
		}
	}
	return nil
}

func missingController(w write) error {
	return fmt.Errorf("%s: the %s cgroup controller is not available on this host: %w", w.field, w.controller, errdefs.ErrFailedPrecondition)
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s%s: %s: %w", fieldPrefix, field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

func unsupported(field, format string, args ...any) error {
	return fmt.Errorf("%s%s: %s: %w", fieldPrefix, field, fmt.Sprintf(format, args...), errdefs.ErrFailedPrecondition)
}

// validate holds the checks common to v1 and v2. The plans add the ones
// that depend on the cgroup version.
func validate(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if m := r.Memory; m != nil {
		for _, f := range []struct {
			name string
			v    *int64
		}{{"memory.limit", m.Limit}, {"memory.reservation", m.Reservation}, {"memory.swap", m.Swap}, {"memory.kernelTCP", m.KernelTCP}} {
			if f.v != nil && *f.v < -1 {
				return invalid(f.name, "%d is negative (use -1 for unlimited)", *f.v)
			}
		}
		limit, resv, swap := val(m.Limit), val(m.Reservation), val(m.Swap)
		if limit > 0 && resv > 0 && resv > limit {
			return invalid("memory.reservation", "%d is above memory.limit %d", resv, limit)
		}
		if limit > 0 && swap > 0 && swap < limit {
			return invalid("memory.swap", "%d is below memory.limit %d (swap is the limit of memory plus swap)", swap, limit)
		}
		if limit == -1 && swap > 0 {
			return invalid("memory.swap", "%d needs a memory.limit, not -1 (unlimited)", swap)
		}
		if m.Swappiness != nil && *m.Swappiness > maxSwappy {
			return invalid("memory.swappiness", "%d is above %d", *m.Swappiness, maxSwappy)
		}
	}
	if c := r.CPU; c != nil {
		if s := uval(c.Shares); s != 0 && s < minShares {
			return invalid("cpu.shares", "%d is below the minimum %d", s, minShares)
		} else if s > maxShares {
			return invalid("cpu.shares", "%d is above the maximum %d", s, maxShares)
		}
		q := val(c.Quota)
		switch {
		case q < -1:
			return invalid("cpu.quota", "%d is negative (use -1 for unlimited)", q)
		case q > 0 && q < minQuota:
			return invalid("cpu.quota", "%d is below the kernel's minimum %d (1ms)", q, minQuota)
		}
		if c.Period != nil {
			p := *c.Period
			if p == 0 && q > 0 {
				return invalid("cpu.period", "0 with quota %d set (use %d-%d, or omit period to keep the kernel's)", q, minPeriod, maxPeriod)
			}
			if p != 0 && (p < minPeriod || p > maxPeriod) {
				return invalid("cpu.period", "%d is outside %d-%d", p, minPeriod, maxPeriod)
			}
		}
		if c.Burst != nil && *c.Burst > 0 && q > 0 && int64(*c.Burst) > q {
			return invalid("cpu.burst", "%d is above quota %d", *c.Burst, q)
		}
		if rt := val(c.RealtimeRuntime); rt < -1 {
			return invalid("cpu.realtimeRuntime", "%d is negative (use -1 for unlimited)", rt)
		} else if p := uval(c.RealtimePeriod); p > 0 && rt > 0 && uint64(rt) > p {
			return invalid("cpu.realtimeRuntime", "%d is above realtimePeriod %d", rt, p)
		}
		if c.Idle != nil && *c.Idle != 0 && *c.Idle != 1 {
			return invalid("cpu.idle", "%d is not 0 or 1", *c.Idle)
		}
		if _, err := parseList(c.Cpus); err != nil {
			return invalid("cpu.cpus", "%v", err)
		}
		if _, err := parseList(c.Mems); err != nil {
			return invalid("cpu.mems", "%v", err)
		}
	}
	if b := r.BlockIO; b != nil {
		if err := checkWeight("blockIO.weight", b.Weight); err != nil {
			return err
		}
		if err := checkWeight("blockIO.leafWeight", b.LeafWeight); err != nil {
			return err
		}
		for i, d := range b.WeightDevice {
			f := fmt.Sprintf("blockIO.weightDevice[%d]", i)
			if err := checkDevice(f, d.Major, d.Minor); err != nil {
				return err
			}
			if err := checkWeight(f+".weight", d.Weight); err != nil {
				return err
			}
			if err := checkWeight(f+".leafWeight", d.LeafWeight); err != nil {
				return err
			}
		}
		for _, t := range throttles(b) {
			for i, d := range t.devs {
				if err := checkDevice(fmt.Sprintf("blockIO.%s[%d]", t.field, i), d.Major, d.Minor); err != nil {
					return err
				}
			}
		}
	}
	for i, h := range r.HugepageLimits {
		if !validPageSize(h.Pagesize) {
			return invalid(fmt.Sprintf("hugepageLimits[%d].pageSize", i), "%q is not a size like 2MB, 1GB or 64KB", h.Pagesize)
		}
	}
	for i, d := range r.Devices {
		if _, err := deviceRule(d); err != nil {
			return invalid(fmt.Sprintf("devices[%d]", i), "%v", err)
		}
	}
	if n := r.Network; n != nil {
		for i, p := range n.Priorities {
			if p.Name == "" || strings.ContainsAny(p.Name, " \t\n/") {
				return invalid(fmt.Sprintf("network.priorities[%d].name", i), "%q is not an interface name", p.Name)
			}
		}
	}
	for dev, l := range r.Rdma {
		if dev == "" || strings.ContainsAny(dev, " \t\n") {
			return invalid(fmt.Sprintf("rdma[%q]", dev), "not a device name")
		}
		if l.HcaHandles == nil && l.HcaObjects == nil {
			return invalid(fmt.Sprintf("rdma[%q]", dev), "sets neither hcaHandles nor hcaObjects")
		}
	}
	for k := range r.Unified {
		if err := checkUnifiedKey(k); err != nil {
			return err
		}
	}
	return nil
}

func val(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func uval(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// checkWeight treats 0 as unset, as runc does.
func checkWeight(field string, w *uint16) error {
	if w != nil && *w != 0 && (*w < minBlkio || *w > maxBlkio) {
		return invalid(field, "%d is outside %d-%d", *w, minBlkio, maxBlkio)
	}
	return nil
}

func checkDevice(field string, major, minor int64) error {
	if major < 0 || minor < 0 {
		return invalid(field, "device %d:%d has a negative number", major, minor)
	}
	return nil
}

type throttle struct {
	field  string // OCI name
	v1, v2 string // v1 file, v2 io.max key
	devs   []specs.LinuxThrottleDevice
}

func throttles(b *specs.LinuxBlockIO) []throttle {
	return []throttle{
		{"throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps", b.ThrottleReadBpsDevice},
		{"throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps", b.ThrottleWriteBpsDevice},
		{"throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops", b.ThrottleReadIOPSDevice},
		{"throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops", b.ThrottleWriteIOPSDevice},
	}
}

// validPageSize accepts the names the kernel gives hugetlb files:
// hugetlb.2MB.limit_in_bytes, hugetlb.1GB.max.
func validPageSize(s string) bool {
	for _, unit := range []string{"KB", "MB", "GB"} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			v, err := strconv.ParseUint(n, 10, 32)
			return err == nil && v > 0 && n[0] != '0'
		}
	}
	return false
}

// checkUnifiedKey keeps linux.resources.unified to plain interface files of
// the container's own cgroup: no paths out of it, and none of the files the
// manager itself drives (membership, freezing, killing, delegation).
func checkUnifiedKey(k string) error {
	f := fmt.Sprintf("unified[%q]", k)
	if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
		return invalid(f, "not a cgroup interface file name")
	}
	i := strings.IndexByte(k, '.')
	if i <= 0 || i == len(k)-1 {
		return invalid(f, "not a cgroup interface file name (want <controller>.<name>)")
	}
	switch k {
	case "cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.freeze", "cgroup.kill", "cgroup.type":
		return invalid(f, "is managed by berth itself")
	}
	return nil
}

// parseList parses the kernel's list format used by cpuset.cpus and
// cpuset.mems ("0-2,4,7-8"). The empty string is an empty list.
func parseList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	// A bitmap, not a list per range: "0-65535," repeated must not cost
	// memory in proportion to the ranges it names.
	var set [1 << 16 / 64]uint64
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%q is not a list like 0-2,4: bad number %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, fmt.Errorf("%q is not a list like 0-2,4: bad number %q", s, hi)
			}
			if b < a {
				return nil, fmt.Errorf("%q is not a list like 0-2,4: range %s is backwards", s, part)
			}
		}
		for i := a; i <= b; i++ {
			set[i/64] |= 1 << (i % 64)
		}
	}
	var out []int
	for w, bits := range set {
		for ; bits != 0; bits &= bits - 1 {
			out = append(out, w*64+mathbits.TrailingZeros64(bits))
		}
	}
	return out, nil
}
