package cgroups

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// write is one cgroup interface file write: the plan for a config is a
// list of them, computed without touching the host, applied in order.
type write struct {
	controller string // v1 hierarchy; on v2 the controller the file needs
	file       string
	value      string
	field      string // the OCI field that asked for it, for errors
	optional   bool   // skip when the file does not exist
	alt        *write // tried instead when file does not exist
	// retryLater tolerates EINVAL because a later write in the plan repeats
	// this one once the value it conflicted with has changed.
	retryLater bool
}

func (w write) String() string {
	s := w.file + "=" + strconv.Quote(w.value)
	if w.controller != "" {
		s = w.controller + "/" + s
	}
	return s
}

// v1Limit formats an OCI limit where -1 means unlimited, as v1 files take it.
func v1Limit(v int64) string { return strconv.FormatInt(v, 10) }

// v2Limit formats an OCI limit for v2 files, which spell unlimited "max".
func v2Limit(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// planV1 turns r into cgroup v1 writes. The order follows runc's: cpuset
// before devices before memory, and within a controller the order the
// kernel's cross-checks need.
func planV1(r *specs.LinuxResources) ([]write, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, nil
	}
	if len(r.Unified) > 0 {
		return nil, invalid("unified", "needs cgroup v2, and this host uses v1")
	}
	var ws []write
	add := func(ctrl, file, value, field string) {
		ws = append(ws, write{controller: ctrl, file: file, value: value, field: fieldPrefix + field})
	}

	if c := r.CPU; c != nil {
		if c.Cpus != "" {
			add("cpuset", "cpuset.cpus", c.Cpus, "cpu.cpus")
		}
		if c.Mems != "" {
			add("cpuset", "cpuset.mems", c.Mems, "cpu.mems")
		}
	}

	// Deny everything, then replay the rules in order: the kernel keeps a
	// list of exceptions, and the last rule touching a device wins.
	if len(r.Devices) > 0 {
		add("devices", "devices.deny", "a", "devices")
		for i, d := range r.Devices {
			rule, _ := deviceRule(d) // validated above
			file := "devices.deny"
			if rule.allow {
				file = "devices.allow"
			}
			add("devices", file, rule.String(), fmt.Sprintf("devices[%d]", i))
		}
	}

	if m := r.Memory; m != nil {
		lim, swap := val(m.Limit), val(m.Swap)
		// The kernel wants memsw >= limit after every single write. Lifting
		// memsw to unlimited first makes any new limit fit whatever the
		// current values are, and then the real memsw is written; runc gets
		// there by reading the current limit, which would make the plan
		// depend on the host.
		switch {
		case lim != 0 && swap != 0:
			add("memory", "memory.memsw.limit_in_bytes", "-1", "memory.swap")
			add("memory", "memory.limit_in_bytes", v1Limit(lim), "memory.limit")
			if swap != -1 {
				add("memory", "memory.memsw.limit_in_bytes", v1Limit(swap), "memory.swap")
			}
		case lim == -1:
			// Unlimited memory means unlimited swap too, where swap is
			// accounted at all (runc does the same).
			ws = append(ws, write{controller: "memory", file: "memory.memsw.limit_in_bytes", value: "-1", field: fieldPrefix + "memory.limit", optional: true})
			add("memory", "memory.limit_in_bytes", "-1", "memory.limit")
		case lim != 0:
			add("memory", "memory.limit_in_bytes", v1Limit(lim), "memory.limit")
		case swap != 0:
			add("memory", "memory.memsw.limit_in_bytes", v1Limit(swap), "memory.swap")
		}
		if v := val(m.Reservation); v != 0 {
			add("memory", "memory.soft_limit_in_bytes", v1Limit(v), "memory.reservation")
		}
		if v := val(m.KernelTCP); v != 0 {
			add("memory", "memory.kmem.tcp.limit_in_bytes", v1Limit(v), "memory.kernelTCP")
		}
		if m.Swappiness != nil {
			add("memory", "memory.swappiness", strconv.FormatUint(*m.Swappiness, 10), "memory.swappiness")
		}
		if m.DisableOOMKiller != nil {
			add("memory", "memory.oom_control", boolDigit(*m.DisableOOMKiller), "memory.disableOOMKiller")
		}
		// memory.kernel is deprecated and kernels since 5.4 ignore it;
		// useHierarchy is always on since 5.16. Both are left alone.
	}

	if c := r.CPU; c != nil {
		if s := uval(c.Shares); s != 0 {
			add("cpu", "cpu.shares", strconv.FormatUint(s, 10), "cpu.shares")
		}
		q, p := val(c.Quota), uval(c.Period)
		switch {
		case p != 0 && q != 0:
			// A shorter period can be refused while the old quota stands
			// (the parent's ratio is exceeded); runc retries it after the
			// quota, and so does this plan.
			ws = append(ws, write{controller: "cpu", file: "cpu.cfs_period_us", value: strconv.FormatUint(p, 10), field: fieldPrefix + "cpu.period", retryLater: true})
			add("cpu", "cpu.cfs_quota_us", v1Limit(q), "cpu.quota")
			add("cpu", "cpu.cfs_period_us", strconv.FormatUint(p, 10), "cpu.period")
		case p != 0:
			add("cpu", "cpu.cfs_period_us", strconv.FormatUint(p, 10), "cpu.period")
		case q != 0:
			add("cpu", "cpu.cfs_quota_us", v1Limit(q), "cpu.quota")
		}
		if c.Burst != nil {
			add("cpu", "cpu.cfs_burst_us", strconv.FormatUint(*c.Burst, 10), "cpu.burst")
		}
		// Period first: the runtime must fit in it.
		if p := uval(c.RealtimePeriod); p != 0 {
			add("cpu", "cpu.rt_period_us", strconv.FormatUint(p, 10), "cpu.realtimePeriod")
		}
		if rt := val(c.RealtimeRuntime); rt != 0 {
			add("cpu", "cpu.rt_runtime_us", v1Limit(rt), "cpu.realtimeRuntime")
		}
		if c.Idle != nil {
			add("cpu", "cpu.idle", strconv.FormatInt(*c.Idle, 10), "cpu.idle")
		}
	}

	if p := r.Pids; p != nil && p.Limit != nil {
		add("pids", "pids.max", pidsMax(*p.Limit), "pids.limit")
	}

	if b := r.BlockIO; b != nil {
		// CFQ had blkio.weight; since 5.0 only BFQ is left, with its own
		// files, and with neither scheduler there is no weight at all.
		if w := weight(b.Weight); w != 0 {
			ws = append(ws, write{controller: "blkio", file: "blkio.weight", value: itoa(w), field: fieldPrefix + "blockIO.weight",
				alt: &write{controller: "blkio", file: "blkio.bfq.weight", value: itoa(w), field: fieldPrefix + "blockIO.weight"}})
		}
		if w := weight(b.LeafWeight); w != 0 {
			add("blkio", "blkio.leaf_weight", itoa(w), "blockIO.leafWeight")
		}
		for i, d := range b.WeightDevice {
			f := fmt.Sprintf("blockIO.weightDevice[%d]", i)
			if w := weight(d.Weight); w != 0 {
				v := fmt.Sprintf("%d:%d %d", d.Major, d.Minor, w)
				ws = append(ws, write{controller: "blkio", file: "blkio.weight_device", value: v, field: fieldPrefix + f + ".weight",
					alt: &write{controller: "blkio", file: "blkio.bfq.weight_device", value: v, field: fieldPrefix + f + ".weight"}})
			}
			if w := weight(d.LeafWeight); w != 0 {
				add("blkio", "blkio.leaf_weight_device", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, w), f+".leafWeight")
			}
		}
		for _, t := range throttles(b) {
			for i, d := range t.devs {
				add("blkio", t.v1, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, d.Rate), fmt.Sprintf("blockIO.%s[%d]", t.field, i))
			}
		}
	}

	for i, h := range r.HugepageLimits {
		f := fmt.Sprintf("hugepageLimits[%d]", i)
		v := strconv.FormatUint(h.Limit, 10)
		add("hugetlb", "hugetlb."+h.Pagesize+".limit_in_bytes", v, f)
		// Reservations (5.7+) make the limit hold at mmap time, not fault time.
		ws = append(ws, write{controller: "hugetlb", file: "hugetlb." + h.Pagesize + ".rsvd.limit_in_bytes", value: v, field: fieldPrefix + f, optional: true})
	}

	if n := r.Network; n != nil {
		if n.ClassID != nil {
			add("net_cls", "net_cls.classid", strconv.FormatUint(uint64(*n.ClassID), 10), "network.classID")
		}
		for i, p := range n.Priorities {
			add("net_prio", "net_prio.ifpriomap", fmt.Sprintf("%s %d", p.Name, p.Priority), fmt.Sprintf("network.priorities[%d]", i))
		}
	}

	ws = append(ws, planRdma(r.Rdma)...)
	return ws, nil
}

// planV2 turns r into cgroup v2 writes, converting v1-style values the way
// runc does so a config means the same on either host. Device rules are
// not file writes on v2; see devicesProgram.
func planV2(r *specs.LinuxResources) ([]write, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, nil
	}
	var ws []write
	add := func(ctrl, file, value, field string) {
		ws = append(ws, write{controller: ctrl, file: file, value: value, field: fieldPrefix + field})
	}

	if c := r.CPU; c != nil {
		if c.Cpus != "" {
			add("cpuset", "cpuset.cpus", c.Cpus, "cpu.cpus")
		}
		if c.Mems != "" {
			add("cpuset", "cpuset.mems", c.Mems, "cpu.mems")
		}
	}

	if m := r.Memory; m != nil {
		if m.Swappiness != nil {
			return nil, unsupported("memory.swappiness", "cgroup v2 has no per-cgroup swappiness")
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			return nil, unsupported("memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer")
		}
		if val(m.KernelTCP) != 0 {
			return nil, unsupported("memory.kernelTCP", "cgroup v2 accounts TCP memory within memory.max and has no separate limit")
		}
		lim, swap := val(m.Limit), val(m.Swap)
		// OCI swap is memory+swap (v1's memsw); v2's memory.swap.max is swap
		// alone.
		var swapMax string
		switch {
		case swap == 0 && lim == -1, swap == -1:
			swapMax = "max"
		case swap > 0:
			if lim <= 0 {
				return nil, invalid("memory.swap", "%d needs memory.limit on cgroup v2 (swap.max is memory.swap minus memory.limit)", swap)
			}
			swapMax = strconv.FormatInt(swap-lim, 10)
		}
		if swapMax != "" {
			// Without swap accounting there is no file; "max" and "0" then
			// already hold, anything else is a real request.
			ws = append(ws, write{controller: "memory", file: "memory.swap.max", value: swapMax, field: fieldPrefix + "memory.swap", optional: swapMax == "max" || swapMax == "0"})
		}
		if lim != 0 {
			add("memory", "memory.max", v2Limit(lim), "memory.limit")
		}
		if v := val(m.Reservation); v != 0 {
			add("memory", "memory.low", v2Limit(v), "memory.reservation")
		}
	}

	if c := r.CPU; c != nil {
		if s := uval(c.Shares); s != 0 {
			add("cpu", "cpu.weight", strconv.FormatUint(sharesToWeight(s), 10), "cpu.shares")
		}
		q, p := val(c.Quota), uval(c.Period)
		if q != 0 || p != 0 {
			// One write sets both, so there is no ordering problem; without
			// a period the kernel keeps its own.
			v := "max"
			if q > 0 {
				v = strconv.FormatInt(q, 10)
			}
			if p != 0 {
				v += " " + strconv.FormatUint(p, 10)
			}
			field := "cpu.quota"
			if q == 0 {
				field = "cpu.period"
			}
			add("cpu", "cpu.max", v, field)
		}
		if c.Burst != nil {
			add("cpu", "cpu.max.burst", strconv.FormatUint(*c.Burst, 10), "cpu.burst")
		}
		if c.RealtimePeriod != nil && *c.RealtimePeriod != 0 {
			return nil, unsupported("cpu.realtimePeriod", "cgroup v2 has no realtime group scheduling")
		}
		if c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 {
			return nil, unsupported("cpu.realtimeRuntime", "cgroup v2 has no realtime group scheduling")
		}
		if c.Idle != nil {
			add("cpu", "cpu.idle", strconv.FormatInt(*c.Idle, 10), "cpu.idle")
		}
	}

	if p := r.Pids; p != nil && p.Limit != nil {
		add("pids", "pids.max", pidsMax(*p.Limit), "pids.limit")
	}

	if b := r.BlockIO; b != nil {
		if weight(b.LeafWeight) != 0 {
			return nil, unsupported("blockIO.leafWeight", "cgroup v2 has no leaf weight")
		}
		// BFQ takes the OCI (v1) scale as is; io.weight (iocost) has its own
		// scale, converted as runc does.
		if w := weight(b.Weight); w != 0 {
			ws = append(ws, write{controller: "io", file: "io.bfq.weight", value: itoa(w), field: fieldPrefix + "blockIO.weight",
				alt: &write{controller: "io", file: "io.weight", value: itoa(blkioToIOWeight(w)), field: fieldPrefix + "blockIO.weight"}})
		}
		for i, d := range b.WeightDevice {
			f := fmt.Sprintf("blockIO.weightDevice[%d]", i)
			if weight(d.LeafWeight) != 0 {
				return nil, unsupported(f+".leafWeight", "cgroup v2 has no leaf weight")
			}
			if w := weight(d.Weight); w != 0 {
				ws = append(ws, write{controller: "io", file: "io.bfq.weight", value: fmt.Sprintf("%d:%d %d", d.Major, d.Minor, w), field: fieldPrefix + f + ".weight",
					alt: &write{controller: "io", file: "io.weight", value: fmt.Sprintf("%d:%d %d", d.Major, d.Minor, blkioToIOWeight(w)), field: fieldPrefix + f + ".weight"}})
			}
		}
		for _, t := range throttles(b) {
			for i, d := range t.devs {
				add("io", "io.max", fmt.Sprintf("%d:%d %s=%d", d.Major, d.Minor, t.v2, d.Rate), fmt.Sprintf("blockIO.%s[%d]", t.field, i))
			}
		}
	}

	for i, h := range r.HugepageLimits {
		f := fmt.Sprintf("hugepageLimits[%d]", i)
		v := strconv.FormatUint(h.Limit, 10)
		add("hugetlb", "hugetlb."+h.Pagesize+".max", v, f)
		ws = append(ws, write{controller: "hugetlb", file: "hugetlb." + h.Pagesize + ".rsvd.max", value: v, field: fieldPrefix + f, optional: true})
	}

	if n := r.Network; n != nil && (n.ClassID != nil || len(n.Priorities) > 0) {
		return nil, unsupported("network", "net_cls and net_prio exist only in cgroup v1 (use a BPF program or nftables socket cgroup matching)")
	}

	ws = append(ws, planRdma(r.Rdma)...)

	// Last, so that a key here overrides the same file set from a field.
	for _, k := range slices.Sorted(maps.Keys(r.Unified)) {
		ctrl, _, _ := strings.Cut(k, ".")
		add(ctrl, k, r.Unified[k], fmt.Sprintf("unified[%q]", k))
	}
	return ws, nil
}

// planRdma is the same on v1 and v2.
func planRdma(rdma map[string]specs.LinuxRdma) []write {
	var ws []write
	for _, dev := range slices.Sorted(maps.Keys(rdma)) {
		l := rdma[dev]
		v := dev
		if l.HcaHandles != nil {
			v += " hca_handle=" + strconv.FormatUint(uint64(*l.HcaHandles), 10)
		}
		if l.HcaObjects != nil {
			v += " hca_object=" + strconv.FormatUint(uint64(*l.HcaObjects), 10)
		}
		ws = append(ws, write{controller: "rdma", file: "rdma.max", value: v, field: fmt.Sprintf("%srdma[%q]", fieldPrefix, dev)})
	}
	return ws
}

// pidsMax maps 0 or a negative limit to no limit, as Docker's --pids-limit
// does, so an unset value in a generated config never forbids every fork.
func pidsMax(l int64) string {
	if l <= 0 {
		return "max"
	}
	return strconv.FormatInt(l, 10)
}

// sharesToWeight maps cpu.shares [2, 262144] onto cpu.weight [1, 10000]
// with runc's formula, so a config means the same weight on v1 and v2.
func sharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	return 1 + ((shares-2)*9999)/262142
}

// blkioToIOWeight maps the blkio scale [10, 1000] onto io.weight's
// [1, 10000] as runc does.
func blkioToIOWeight(w uint16) uint16 {
	if w == 0 {
		return 0
	}
	return uint16(1 + (uint32(w)-10)*9999/990)
}

func weight(w *uint16) uint16 {
	if w == nil {
		return 0
	}
	return *w
}

func itoa(v uint16) string { return strconv.FormatUint(uint64(v), 10) }

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
