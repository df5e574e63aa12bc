package cgroups

import (
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
func boolp(v bool) *bool   { return &v }
func dev(maj, min int64) specs.LinuxBlockIODevice {
	return specs.LinuxBlockIODevice{Major: maj, Minor: min}
}

// render shows a plan compactly: "ctrl/file=value", with "?" for optional
// writes, "|ctrl/alt=value" for a fallback and "~" for retried ones.
func render(ws []write) []string {
	var out []string
	for _, w := range ws {
		s := w.String()
		if w.optional {
			s += "?"
		}
		if w.retryLater {
			s += "~"
		}
		if w.alt != nil {
			s += "|" + w.alt.String()
		}
		out = append(out, s)
	}
	return out
}

func TestPlanV1(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *specs.LinuxResources
		want []string
	}{
		{"nil", nil, nil},
		{"empty asks nothing", &specs.LinuxResources{Memory: &specs.LinuxMemory{}, CPU: &specs.LinuxCPU{}, BlockIO: &specs.LinuxBlockIO{}}, nil},
		{"memory limit only", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100 << 20)}},
			[]string{`memory/memory.limit_in_bytes="104857600"`}},
		{"memory limit and swap: memsw lifted first", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100), Swap: i64(200), Reservation: i64(50)}},
			[]string{
				`memory/memory.memsw.limit_in_bytes="-1"`,
				`memory/memory.limit_in_bytes="100"`,
				`memory/memory.memsw.limit_in_bytes="200"`,
				`memory/memory.soft_limit_in_bytes="50"`,
			}},
		{"unlimited memory makes swap unlimited where accounted", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}},
			[]string{`memory/memory.memsw.limit_in_bytes="-1"?`, `memory/memory.limit_in_bytes="-1"`}},
		{"unlimited both", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1), Swap: i64(-1)}},
			[]string{`memory/memory.memsw.limit_in_bytes="-1"`, `memory/memory.limit_in_bytes="-1"`}},
		{"swap alone", &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: i64(300)}},
			[]string{`memory/memory.memsw.limit_in_bytes="300"`}},
		{"memory knobs", &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: u64(10), DisableOOMKiller: boolp(true), KernelTCP: i64(4096), Kernel: i64(1 << 20), UseHierarchy: boolp(true)}},
			[]string{`memory/memory.kmem.tcp.limit_in_bytes="4096"`, `memory/memory.swappiness="10"`, `memory/memory.oom_control="1"`}},
		{"cpu quota and period: period retried after quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(100000)}},
			[]string{
				`cpu/cpu.shares="512"`,
				`cpu/cpu.cfs_period_us="100000"~`,
				`cpu/cpu.cfs_quota_us="50000"`,
				`cpu/cpu.cfs_period_us="100000"`,
			}},
		{"cpu unlimited quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1)}},
			[]string{`cpu/cpu.cfs_quota_us="-1"`}},
		{"cpu realtime, burst, idle, cpuset", &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: i64(1000), RealtimePeriod: u64(10000), Burst: u64(2000), Quota: i64(4000), Idle: i64(1), Cpus: "0-1", Mems: "0"}},
			[]string{
				`cpuset/cpuset.cpus="0-1"`,
				`cpuset/cpuset.mems="0"`,
				`cpu/cpu.cfs_quota_us="4000"`,
				`cpu/cpu.cfs_burst_us="2000"`,
				`cpu/cpu.rt_period_us="10000"`,
				`cpu/cpu.rt_runtime_us="1000"`,
				`cpu/cpu.idle="1"`,
			}},
		{"pids", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(10)}}, []string{`pids/pids.max="10"`}},
		{"pids zero is no limit", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(0)}}, []string{`pids/pids.max="max"`}},
		{"pids negative is no limit", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}}, []string{`pids/pids.max="max"`}},
		{"pids without limit", &specs.LinuxResources{Pids: &specs.LinuxPids{}}, nil},
		{"blkio", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
			Weight: u16(500), LeafWeight: u16(300),
			WeightDevice:            []specs.LinuxWeightDevice{{LinuxBlockIODevice: dev(8, 0), Weight: u16(200), LeafWeight: u16(100)}},
			ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 0), Rate: 1048576}},
			ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 16), Rate: 100}},
		}}, []string{
			`blkio/blkio.weight="500"|blkio/blkio.bfq.weight="500"`,
			`blkio/blkio.leaf_weight="300"`,
			`blkio/blkio.weight_device="8:0 200"|blkio/blkio.bfq.weight_device="8:0 200"`,
			`blkio/blkio.leaf_weight_device="8:0 100"`,
			`blkio/blkio.throttle.read_bps_device="8:0 1048576"`,
			`blkio/blkio.throttle.write_iops_device="8:16 100"`,
		}},
		{"hugetlb", &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}},
			[]string{`hugetlb/hugetlb.2MB.limit_in_bytes="4194304"`, `hugetlb/hugetlb.2MB.rsvd.limit_in_bytes="4194304"?`}},
		{"devices: deny all, then the rules in order", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(136), Access: "rw"},
			{Allow: true, Type: "b", Minor: i64(-1), Access: "m"},
			{Allow: false, Type: "c", Major: i64(1), Minor: i64(3), Access: "w"},
		}}, []string{
			`devices/devices.deny="a"`,
			`devices/devices.deny="a *:* rwm"`,
			`devices/devices.allow="c 1:3 rwm"`,
			`devices/devices.allow="c 136:* rw"`,
			`devices/devices.allow="b *:* m"`,
			`devices/devices.deny="c 1:3 w"`,
		}},
		{"network", &specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: u32(0x100001), Priorities: []specs.LinuxInterfacePriority{{Name: "eth0", Priority: 5}}}},
			[]string{`net_cls/net_cls.classid="1048577"`, `net_prio/net_prio.ifpriomap="eth0 5"`}},
		{"rdma", &specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{"mlx5_1": {HcaHandles: u32(3)}, "mlx4_0": {HcaHandles: u32(2), HcaObjects: u32(2000)}}},
			[]string{`rdma/rdma.max="mlx4_0 hca_handle=2 hca_object=2000"`, `rdma/rdma.max="mlx5_1 hca_handle=3"`}},
		{"order across controllers: cpuset, devices, memory, cpu, pids", &specs.LinuxResources{
			Pids: &specs.LinuxPids{Limit: i64(5)}, CPU: &specs.LinuxCPU{Shares: u64(2), Cpus: "0"}, Memory: &specs.LinuxMemory{Limit: i64(1 << 20)},
			Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: i64(1), Minor: i64(3)}},
		}, []string{
			`cpuset/cpuset.cpus="0"`,
			`devices/devices.deny="a"`,
			`devices/devices.allow="c 1:3 rwm"`,
			`memory/memory.limit_in_bytes="1048576"`,
			`cpu/cpu.shares="2"`,
			`pids/pids.max="5"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := planV1(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(ws); !slices.Equal(got, tc.want) {
				t.Errorf("plan:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestPlanV2(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *specs.LinuxResources
		want []string
	}{
		{"nil", nil, nil},
		{"memory: swap.max is swap minus limit", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100), Swap: i64(300), Reservation: i64(50)}},
			[]string{`memory/memory.swap.max="200"`, `memory/memory.max="100"`, `memory/memory.low="50"`}},
		{"memory: swap equal to limit disables swap", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100), Swap: i64(100)}},
			[]string{`memory/memory.swap.max="0"?`, `memory/memory.max="100"`}},
		{"memory: unlimited", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}},
			[]string{`memory/memory.swap.max="max"?`, `memory/memory.max="max"`}},
		{"memory: unlimited swap", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100), Swap: i64(-1)}},
			[]string{`memory/memory.swap.max="max"?`, `memory/memory.max="100"`}},
		{"memory: limit only leaves swap alone", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100), DisableOOMKiller: boolp(false), Kernel: i64(5)}},
			[]string{`memory/memory.max="100"`}},
		{"cpu: shares to weight, quota and period in one write", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Period: u64(100000), Burst: u64(1000), Idle: i64(0)}},
			[]string{`cpu/cpu.weight="39"`, `cpu/cpu.max="50000 100000"`, `cpu/cpu.max.burst="1000"`, `cpu/cpu.idle="0"`}},
		{"cpu: unlimited quota with period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1), Period: u64(20000)}},
			[]string{`cpu/cpu.max="max 20000"`}},
		{"cpu: quota keeps the kernel's period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(20000)}},
			[]string{`cpu/cpu.max="20000"`}},
		{"cpu: period alone", &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64(20000)}},
			[]string{`cpu/cpu.max="max 20000"`}},
		{"cpuset", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0,1", Mems: "0"}},
			[]string{`cpuset/cpuset.cpus="0,1"`, `cpuset/cpuset.mems="0"`}},
		{"pids", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}}, []string{`pids/pids.max="max"`}},
		{"io", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
			Weight:                  u16(500),
			WeightDevice:            []specs.LinuxWeightDevice{{LinuxBlockIODevice: dev(8, 0), Weight: u16(1000)}},
			ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 0), Rate: 10}},
			ThrottleWriteBpsDevice:  []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 0), Rate: 20}},
			ThrottleReadIOPSDevice:  []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 0), Rate: 30}},
			ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 0), Rate: 40}},
		}}, []string{
			`io/io.bfq.weight="500"|io/io.weight="4950"`,
			`io/io.bfq.weight="8:0 1000"|io/io.weight="8:0 10000"`,
			`io/io.max="8:0 rbps=10"`,
			`io/io.max="8:0 wbps=20"`,
			`io/io.max="8:0 riops=30"`,
			`io/io.max="8:0 wiops=40"`,
		}},
		{"hugetlb", &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "1GB", Limit: 1 << 30}}},
			[]string{`hugetlb/hugetlb.1GB.max="1073741824"`, `hugetlb/hugetlb.1GB.rsvd.max="1073741824"?`}},
		{"devices are not file writes on v2", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}, nil},
		{"unified: sorted, last, overriding", &specs.LinuxResources{
			Memory:  &specs.LinuxMemory{Limit: i64(100)},
			Unified: map[string]string{"memory.max": "200", "cgroup.max.depth": "2", "io.latency": "8:0 target=10"},
		}, []string{
			`memory/memory.max="100"`,
			`cgroup/cgroup.max.depth="2"`,
			`io/io.latency="8:0 target=10"`,
			`memory/memory.max="200"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := planV2(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(ws); !slices.Equal(got, tc.want) {
				t.Errorf("plan:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// TestPlanRefusals covers what one cgroup version cannot do: a clear error
// naming the field, never a silent skip.
func TestPlanRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		plan    func(*specs.LinuxResources) ([]write, error)
		r       *specs.LinuxResources
		want    string
		errKind error
	}{
		{"v1 unified", planV1, &specs.LinuxResources{Unified: map[string]string{"memory.high": "1"}}, "linux.resources.unified: needs cgroup v2", errdefs.ErrInvalidArgument},
		{"v2 swappiness", planV2, &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: u64(0)}}, "linux.resources.memory.swappiness:", errdefs.ErrFailedPrecondition},
		{"v2 oom killer", planV2, &specs.LinuxResources{Memory: &specs.LinuxMemory{DisableOOMKiller: boolp(true)}}, "linux.resources.memory.disableOOMKiller:", errdefs.ErrFailedPrecondition},
		{"v2 kernel tcp", planV2, &specs.LinuxResources{Memory: &specs.LinuxMemory{KernelTCP: i64(1)}}, "linux.resources.memory.kernelTCP:", errdefs.ErrFailedPrecondition},
		{"v2 swap without limit", planV2, &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: i64(100)}}, "linux.resources.memory.swap: 100 needs memory.limit", errdefs.ErrInvalidArgument},
		{"v2 realtime", planV2, &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: i64(10)}}, "linux.resources.cpu.realtimeRuntime:", errdefs.ErrFailedPrecondition},
		{"v2 leaf weight", planV2, &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{LeafWeight: u16(100)}}, "linux.resources.blockIO.leafWeight:", errdefs.ErrFailedPrecondition},
		{"v2 net_cls", planV2, &specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: u32(1)}}, "linux.resources.network:", errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.plan(tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.errKind) {
				t.Fatalf("got %v, want %q (%v)", err, tc.want, tc.errKind)
			}
		})
	}
}

func TestCheckControllers(t *testing.T) {
	ws, err := planV1(&specs.LinuxResources{
		Pids:           &specs.LinuxPids{Limit: i64(5)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = checkControllers(ws, func(c string) bool { return c == "pids" })
	want := "linux.resources.hugepageLimits[0]: the hugetlb cgroup controller is not available on this host"
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("got %v, want %q", err, want)
	}
	if err := checkControllers(ws[:1], func(c string) bool { return c == "pids" }); err != nil {
		t.Fatal(err)
	}
}

func TestConversions(t *testing.T) {
	for shares, weight := range map[uint64]uint64{0: 0, 2: 1, 1024: 39, 262144: 10000} {
		if got := sharesToWeight(shares); got != weight {
			t.Errorf("sharesToWeight(%d) = %d, want %d", shares, got, weight)
		}
	}
	for blkio, io := range map[uint16]uint16{0: 0, 10: 1, 100: 910, 500: 4950, 1000: 10000} {
		if got := blkioToIOWeight(blkio); got != io {
			t.Errorf("blkioToIOWeight(%d) = %d, want %d", blkio, got, io)
		}
	}
}
