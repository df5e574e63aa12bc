package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

// fakeTree lays out files as the kernel would, relative to root. A fake
// kernel keeps only the last value written to a file, which is enough to
// check that the manager wrote where it should.
func fakeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func wantFiles(t *testing.T, root string, want map[string]string) {
	t.Helper()
	for name, content := range want {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if got := string(b); got != content {
			t.Errorf("%s = %q, want %q", name, got, content)
		}
	}
}

func TestV2FakeTree(t *testing.T) {
	root := t.TempDir()
	const ctrls = "cpuset cpu io memory pids"
	fakeTree(t, root, map[string]string{
		"cgroup.controllers":           ctrls,
		"cgroup.subtree_control":       "cpu memory", // already enabled: left out of the write
		"cgroup.procs":                 "1\n",
		"berth/cgroup.controllers":     ctrls,
		"berth/cgroup.subtree_control": "",
		"berth/cgroup.procs":           "",
		"berth/c1/cgroup.procs":        "",
		"berth/c1/cgroup.events":       "populated 0\nfrozen 0\n",
		"berth/c1/cgroup.freeze":       "0",
		"berth/c1/memory.max":          "max",
		"berth/c1/memory.low":          "0",
		"berth/c1/memory.swap.max":     "max",
		"berth/c1/memory.high":         "max",
		"berth/c1/memory.current":      "12345",
		"berth/c1/memory.peak":         "23456",
		"berth/c1/memory.swap.current": "7",
		"berth/c1/memory.stat":         "anon 1\nfile 4096\n",
		"berth/c1/memory.events":       "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
		"berth/c1/cpu.weight":          "100",
		"berth/c1/cpu.max":             "max 100000",
		"berth/c1/cpu.stat":            "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\n",
		"berth/c1/cpuset.cpus":         "",
		"berth/c1/pids.max":            "max",
		"berth/c1/pids.current":        "2",
		"berth/c1/io.weight":           "default 100",
		"berth/c1/io.max":              "",
		"berth/c1/io.stat":             "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n",
		"berth/c1/sub/cgroup.procs":    "77\n",
	})
	m, err := NewV2(root, "berth/c1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Path("memory"), filepath.Join(root, "berth/c1"); got != want || m.Path("") != want {
		t.Fatalf("Path = %q, want %q", got, want)
	}
	if err := m.Apply(1234); err != nil {
		t.Fatal(err)
	}
	wantFiles(t, root, map[string]string{
		"cgroup.subtree_control":       "+cpuset +io +pids",
		"berth/cgroup.subtree_control": "+cpuset +cpu +io +memory +pids",
		"berth/c1/cgroup.procs":        "1234",
	})
	if _, err := os.Stat(filepath.Join(root, "berth/c1/cgroup.subtree_control")); err == nil {
		t.Error("Apply enabled controllers in the leaf, which holds processes")
	}

	r := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(128 << 20), Reservation: i64(32 << 20)},
		CPU:     &specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Period: u64(100000), Cpus: "0"},
		Pids:    &specs.LinuxPids{Limit: i64(10)},
		BlockIO: &specs.LinuxBlockIO{Weight: u16(500)},
		Unified: map[string]string{"memory.high": "50000000"},
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	wantFiles(t, root, map[string]string{
		"berth/c1/memory.max":      "67108864",
		"berth/c1/memory.swap.max": "67108864",
		"berth/c1/memory.low":      "33554432",
		"berth/c1/memory.high":     "50000000",
		"berth/c1/cpu.weight":      "39",
		"berth/c1/cpu.max":         "50000 100000",
		"berth/c1/cpuset.cpus":     "0",
		"berth/c1/pids.max":        "10",
		"berth/c1/io.weight":       "4950", // no io.bfq.weight here
	})

	// A limit the tree cannot honour fails naming the field, and nothing
	// of the same Set is written.
	r2 := &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: i64(1 << 20)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}},
	}
	err = m.Set(r2)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.HasPrefix(err.Error(), "linux.resources.hugepageLimits[0]: hugetlb.2MB.max is missing from") {
		t.Fatalf("Set = %v", err)
	}
	wantFiles(t, root, map[string]string{"berth/c1/memory.max": "67108864"})

	// Stats.
	s, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		Memory: MemoryStats{Usage: 12345, MaxUsage: 23456, Limit: 67108864, Cache: 4096, Swap: 7, Failcnt: 3, OOMKills: 1},
		CPU:    CPUStats{UsageNanos: 10000, UserNanos: 6000, SystemNanos: 4000, Periods: 5, ThrottledPeriods: 2, ThrottledNanos: 7000},
		Pids:   PidsStats{Current: 2, Limit: 10},
		IO:     IOStats{ReadBytes: 100, WriteBytes: 200, ReadOps: 1, WriteOps: 2},
	}
	if *s != want {
		t.Errorf("Stats:\n got  %+v\n want %+v", *s, want)
	}

	pids, err := m.Pids()
	if err != nil || !slices.Equal(pids, []int{77, 1234}) {
		t.Errorf("Pids = %v, %v", pids, err)
	}

	if frozen, err := m.State(); err != nil || frozen {
		t.Errorf("State = %v, %v", frozen, err)
	}
	// The fake kernel freezes at once.
	fakeTree(t, root, map[string]string{"berth/c1/cgroup.events": "populated 1\nfrozen 1\n"})
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	wantFiles(t, root, map[string]string{"berth/c1/cgroup.freeze": "1"})
	if frozen, err := m.State(); err != nil || !frozen {
		t.Errorf("State = %v, %v", frozen, err)
	}
	if !m.Exists() {
		t.Error("Exists = false")
	}
}

func TestV2SetBeforeApply(t *testing.T) {
	m, err := NewV2(t.TempDir(), "/nope")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(1)}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Set = %v, want ErrNotFound", err)
	}
	if _, err := m.Stats(); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Stats = %v, want ErrNotFound", err)
	}
	if _, err := m.Pids(); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Pids = %v, want ErrNotFound", err)
	}
	if m.Exists() {
		t.Error("Exists = true")
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("Destroy of a missing cgroup: %v", err)
	}
}

func TestV1FakeTree(t *testing.T) {
	root := t.TempDir()
	mounts := map[string]string{
		"cpuset": "cpuset", "memory": "memory", "pids": "pids", "freezer": "freezer",
		"blkio": "blkio", "devices": "devices",
		"cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct", // comounted
	}
	fakeTree(t, root, map[string]string{
		"cpuset/cpuset.cpus":                                       "0-3\n",
		"cpuset/cpuset.mems":                                       "0\n",
		"cpuset/berth/cpuset.cpus":                                 "",
		"cpuset/berth/cpuset.mems":                                 "",
		"cpuset/berth/c1/cpuset.cpus":                              "",
		"cpuset/berth/c1/cpuset.mems":                              "",
		"cpuset/berth/c1/cgroup.procs":                             "",
		"memory/berth/c1/cgroup.procs":                             "",
		"memory/berth/c1/memory.limit_in_bytes":                    "9223372036854771712",
		"memory/berth/c1/memory.memsw.limit_in_bytes":              "9223372036854771712",
		"memory/berth/c1/memory.soft_limit_in_bytes":               "9223372036854771712",
		"memory/berth/c1/memory.usage_in_bytes":                    "4096",
		"memory/berth/c1/memory.max_usage_in_bytes":                "8192",
		"memory/berth/c1/memory.memsw.usage_in_bytes":              "4196",
		"memory/berth/c1/memory.failcnt":                           "2",
		"memory/berth/c1/memory.stat":                              "cache 10\ntotal_cache 20\n",
		"memory/berth/c1/memory.oom_control":                       "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
		"pids/berth/c1/cgroup.procs":                               "5\n6\n",
		"pids/berth/c1/child/cgroup.procs":                         "7\n",
		"pids/berth/c1/pids.max":                                   "max",
		"pids/berth/c1/pids.current":                               "3",
		"freezer/berth/c1/cgroup.procs":                            "",
		"freezer/berth/c1/freezer.state":                           "THAWED",
		"blkio/berth/c1/cgroup.procs":                              "",
		"blkio/berth/c1/blkio.bfq.weight":                          "100",
		"blkio/berth/c1/blkio.throttle.io_service_bytes_recursive": "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
		"devices/berth/c1/cgroup.procs":                            "",
		"devices/berth/c1/devices.allow":                           "",
		"devices/berth/c1/devices.deny":                            "",
		"cpu,cpuacct/berth/c1/cgroup.procs":                        "",
		"cpu,cpuacct/berth/c1/cpu.shares":                          "1024",
		"cpu,cpuacct/berth/c1/cpu.cfs_quota_us":                    "-1",
		"cpu,cpuacct/berth/c1/cpu.cfs_period_us":                   "100000",
		"cpu,cpuacct/berth/c1/cpu.stat":                            "nr_periods 4\nnr_throttled 1\nthrottled_time 99\n",
		"cpu,cpuacct/berth/c1/cpuacct.usage":                       "1000",
		"cpu,cpuacct/berth/c1/cpuacct.stat":                        "user 2\nsystem 3\n",
	})
	m, err := NewV1(root, mounts, "/berth/c1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Path("cpu") != m.Path("cpuacct") || m.Path("cpu") != filepath.Join(root, "cpu,cpuacct/berth/c1") {
		t.Errorf("Path(cpu) = %q, Path(cpuacct) = %q", m.Path("cpu"), m.Path("cpuacct"))
	}
	if m.Path("hugetlb") != "" {
		t.Errorf("Path(hugetlb) = %q for an unmounted controller", m.Path("hugetlb"))
	}
	if err := m.Apply(42); err != nil {
		t.Fatal(err)
	}
	wantFiles(t, root, map[string]string{
		"cpuset/berth/cpuset.cpus":          "0-3",
		"cpuset/berth/cpuset.mems":          "0",
		"cpuset/berth/c1/cpuset.cpus":       "0-3",
		"cpuset/berth/c1/cpuset.mems":       "0",
		"memory/berth/c1/cgroup.procs":      "42",
		"cpu,cpuacct/berth/c1/cgroup.procs": "42",
		"devices/berth/c1/cgroup.procs":     "42",
	})

	// Only pids asked: no other controller is touched.
	before, _ := os.ReadFile(filepath.Join(root, "memory/berth/c1/memory.limit_in_bytes"))
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(9)}}); err != nil {
		t.Fatal(err)
	}
	wantFiles(t, root, map[string]string{"pids/berth/c1/pids.max": "9", "memory/berth/c1/memory.limit_in_bytes": string(before)})

	r := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: i64(32 << 20), Swap: i64(64 << 20), Reservation: i64(16 << 20)},
		CPU:     &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(100000), Cpus: "1"},
		BlockIO: &specs.LinuxBlockIO{Weight: u16(300)},
		Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"}},
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	wantFiles(t, root, map[string]string{
		"memory/berth/c1/memory.limit_in_bytes":       "33554432",
		"memory/berth/c1/memory.memsw.limit_in_bytes": "67108864",
		"memory/berth/c1/memory.soft_limit_in_bytes":  "16777216",
		"cpu,cpuacct/berth/c1/cpu.shares":             "512",
		"cpu,cpuacct/berth/c1/cpu.cfs_quota_us":       "50000",
		"cpu,cpuacct/berth/c1/cpu.cfs_period_us":      "100000",
		"cpuset/berth/c1/cpuset.cpus":                 "1",
		"blkio/berth/c1/blkio.bfq.weight":             "300", // no blkio.weight: BFQ's file
		"devices/berth/c1/devices.deny":               "a",
		"devices/berth/c1/devices.allow":              "c 1:3 rwm",
	})
	if _, err := os.Stat(filepath.Join(root, "blkio/berth/c1/blkio.weight")); err == nil {
		t.Error("blkio.weight was created")
	}

	// Unmounted controller: an error naming the field, nothing written.
	err = m.Set(&specs.LinuxResources{
		Pids:           &specs.LinuxPids{Limit: i64(1)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}},
	})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.HasPrefix(err.Error(), "linux.resources.hugepageLimits[0]: the hugetlb cgroup controller is not available") {
		t.Fatalf("Set = %v", err)
	}
	wantFiles(t, root, map[string]string{"pids/berth/c1/pids.max": "9"})

	// Missing file in a mounted controller (no realtime group scheduling).
	err = m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: i64(1000)}})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.HasPrefix(err.Error(), "linux.resources.cpu.realtimeRuntime: cpu.rt_runtime_us is missing from") {
		t.Fatalf("Set = %v", err)
	}

	s, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		Memory: MemoryStats{Usage: 4096, MaxUsage: 8192, Limit: 33554432, Cache: 20, Swap: 100, Failcnt: 2, OOMKills: 1},
		CPU:    CPUStats{UsageNanos: 1000, UserNanos: 2e7, SystemNanos: 3e7, Periods: 4, ThrottledPeriods: 1, ThrottledNanos: 99},
		Pids:   PidsStats{Current: 3, Limit: 9},
		IO:     IOStats{ReadBytes: 10, WriteBytes: 20},
	}
	if *s != want {
		t.Errorf("Stats:\n got  %+v\n want %+v", *s, want)
	}
	pids, err := m.Pids()
	if err != nil || !slices.Equal(pids, []int{7, 42}) { // 42 from Apply, 7 in a child cgroup
		t.Errorf("Pids = %v, %v", pids, err)
	}
	if frozen, err := m.State(); err != nil || frozen {
		t.Errorf("State = %v, %v", frozen, err)
	}
}

func TestV1NoFreezer(t *testing.T) {
	root := t.TempDir()
	m, err := NewV1(root, map[string]string{"memory": "memory"}, "/x")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Freeze(); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Freeze = %v", err)
	}
	if _, err := NewV1(root, map[string]string{}, "/x"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("NewV1 without mounts = %v", err)
	}
}
