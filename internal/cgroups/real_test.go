package cgroups

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/testutil"
)

// These tests drive the real kernel. Each uses a cgroup named for the test
// process and a random suffix, directly below the hierarchy roots, so that
// packages and tests running at the same time never share one, and removes
// it in t.Cleanup whatever happened.

func requiresV1(t *testing.T) {
	t.Helper()
	testutil.RequiresRoot(t)
	if DetectMode() != Legacy {
		t.Skip("needs cgroup v1: /sys/fs/cgroup is cgroup2 here")
	}
	mounts, err := v1Mounts(DefaultRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "devices"} {
		if mounts[c] == "" {
			t.Skipf("needs the cgroup v1 %s controller mounted under %s", c, DefaultRoot)
		}
	}
}

func requiresV2(t *testing.T) {
	t.Helper()
	testutil.RequiresRoot(t)
	if DetectMode() != Unified {
		t.Skip("needs a cgroup v2 host: /sys/fs/cgroup is not cgroup2 here (v1 or hybrid)")
	}
	ctrls, err := os.ReadFile(filepath.Join(DefaultRoot, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		if !slices.Contains(strings.Fields(string(ctrls)), c) {
			t.Skipf("needs the %s controller in %s/cgroup.controllers", c, DefaultRoot)
		}
	}
}

const hybridUnified = DefaultRoot + "/unified"

// requiresHybridUnified needs the empty v2 hierarchy of a hybrid host: no
// controllers, but membership, freezing and BPF device programs work.
func requiresHybridUnified(t *testing.T) {
	t.Helper()
	testutil.RequiresRoot(t)
	var st unix.Statfs_t
	if err := unix.Statfs(hybridUnified, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skipf("needs a hybrid host: %s is not a cgroup2 mount", hybridUnified)
	}
}

func uniqueName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("/berth-test-%d-%s", os.Getpid(), hex.EncodeToString(b))
}

// dirsOf lists every directory a manager owns, to check Destroy.
func dirsOf(m Manager) []string {
	switch m := m.(type) {
	case *v1Manager:
		return m.dirs()
	case *v2Manager:
		return []string{m.dir()}
	}
	panic("unknown manager")
}

// testManager returns a manager for a fresh cgroup and removes the cgroup
// when the test ends: thawed, emptied by SIGKILL, then destroyed.
func testManager(t *testing.T, newManager func(path string) (Manager, error)) Manager {
	t.Helper()
	m, err := newManager(uniqueName())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !m.Exists() {
			return
		}
		killAll(m)
		if err := m.Destroy(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return m
}

// killAll thaws the cgroup and SIGKILLs what is in it until it is empty.
// Everything there descends from a child this test started.
func killAll(m Manager) {
	_ = m.Thaw() // a frozen task cannot die
	for range 250 {
		pids, err := m.Pids()
		if err != nil || len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type child struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
	err  error
}

// startIn runs script under sh inside m's cgroup. The shell waits on its
// stdin until Apply has moved it in, so everything the script does is
// charged to and limited by the cgroup.
func startIn(t *testing.T, m Manager, script string) *child {
	t.Helper()
	c := &child{done: make(chan struct{})}
	c.cmd = exec.Command("/bin/sh", "-c", "read go; "+script)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	// Background jobs keep the output pipes open after the shell exits.
	c.cmd.WaitDelay = time.Second
	stdin, err := c.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		killAll(m)
		_ = c.cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Errorf("child %d did not exit", c.cmd.Process.Pid)
		}
	})
	if err := m.Apply(c.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *child) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(30 * time.Second):
		t.Fatalf("child %d still running; output: %s", c.cmd.Process.Pid, c.out.String())
		return nil
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ok, _ := waitFor(10*time.Second, func() (bool, error) { return cond(), nil })
	if !ok {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func readBack(t *testing.T, m Manager, want map[string]string) {
	t.Helper()
	for k, v := range want {
		ctrl, file, _ := strings.Cut(k, "/")
		got, err := readFile(m.Path(ctrl), file)
		if err != nil {
			t.Errorf("read back: %v", err)
		} else if got != v {
			t.Errorf("%s = %q, want %q", filepath.Join(m.Path(ctrl), file), got, v)
		}
	}
}

// expect says which counters the hierarchy under test can show.
type expect struct {
	memory, pids bool
}

// testLifecycle is the suite every manager passes: Apply, Set, a process
// in, Pids, Stats, Freeze/Thaw, Destroy.
func testLifecycle(t *testing.T, m Manager, r *specs.LinuxResources, want map[string]string, e expect) {
	if m.Exists() {
		t.Fatal("Exists before Apply")
	}
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	if !m.Exists() {
		t.Fatal("not Exists after Apply")
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	readBack(t, m, want)

	c := startIn(t, m, "exec sleep 30")
	pid := c.cmd.Process.Pid
	eventually(t, "the shell to exec sleep", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return strings.TrimSpace(string(b)) == "sleep"
	})
	pids, err := m.Pids()
	if err != nil || !slices.Equal(pids, []int{pid}) {
		t.Fatalf("Pids = %v, %v; want [%d]", pids, err, pid)
	}
	// The kernel's own view: every hierarchy lists the process there.
	procCgroup, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, isV2 := m.(*v2Manager)
	path := cgroupPathOf(m)
	for line := range strings.Lines(string(procCgroup)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) == 3 && (f[0] == "0") == isV2 && f[2] != path {
			t.Errorf("/proc/%d/cgroup: %q, want the path %s", pid, line, path)
		}
	}

	s, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", *s)
	if e.memory && s.Memory.Usage == 0 {
		t.Error("memory usage is 0 with a process in the cgroup")
	}
	if e.pids && s.Pids.Current < 1 {
		t.Errorf("pids current = %d", s.Pids.Current)
	}
	if s.CPU.UsageNanos == 0 {
		// v2's cpu.stat comes from rstat, which the kernel may flush
		// lazily: give it a moment before calling it a failure.
		eventually(t, "cpu usage above 0 after an exec", func() bool {
			s2, err := m.Stats()
			return err == nil && s2.CPU.UsageNanos > 0
		})
	}

	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if frozen, err := m.State(); err != nil || !frozen {
		t.Fatalf("State after Freeze = %v, %v", frozen, err)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if frozen, err := m.State(); err != nil || frozen {
		t.Fatalf("State after Thaw = %v, %v", frozen, err)
	}

	// Destroy refuses while the process lives...
	dirs := dirsOf(m)
	if err := m.Destroy(); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Destroy with a live process = %v, want ErrConflict", err)
	}
	_ = c.cmd.Process.Kill()
	if err := c.wait(t); err == nil {
		t.Error("sleep exited 0 after SIGKILL")
	}
	// ...and removes every directory once it is gone.
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind: %v", d, err)
		}
	}
	if m.Exists() {
		t.Error("Exists after Destroy")
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func checkPidsLimit(t *testing.T, m Manager) {
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(3)}}); err != nil {
		t.Fatal(err)
	}
	startIn(t, m, "for i in 1 2 3 4 5; do sleep 30 & done; wait")
	eventually(t, "pids.events max > 0", func() bool {
		ev, _ := readKeyed(m.Path("pids"), "pids.events")
		return ev["max"] > 0
	})
	pids, err := m.Pids()
	if err != nil || len(pids) > 3 {
		t.Errorf("Pids = %v, %v; want at most 3", pids, err)
	}
	if s, err := m.Stats(); err != nil || s.Pids.Limit != 3 || s.Pids.Current > 3 {
		t.Errorf("Stats pids = %+v, %v", s.Pids, err)
	}
}

func checkOOM(t *testing.T, m Manager) {
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	// Swap equal to the limit: no swap to escape into.
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(16 << 20), Swap: i64(16 << 20)}}); err != nil {
		t.Fatal(err)
	}
	// dd fills a 64 MiB buffer from /dev/zero: every page gets touched.
	c := startIn(t, m, "exec dd if=/dev/zero of=/dev/null bs=64M count=1")
	err := c.wait(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("dd: %v, want killed by SIGKILL; output: %s", err, c.out.String())
	}
	s, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// Not failcnt: kernel 6.18's v1 memsw counter was seen at 0 after an
	// OOM kill.
	if s.Memory.OOMKills < 1 || s.Memory.MaxUsage < 15<<20 {
		t.Errorf("memory stats %+v: want an OOM kill and usage up to the limit", s.Memory)
	}
	t.Logf("memory stats after the OOM kill: %+v", s.Memory)
}

func checkDevices(t *testing.T, m Manager) {
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	null := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"}
	r := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, null}}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	// Set again, as an update does: the rules are replaced, not stacked.
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	c := startIn(t, m, "echo x >/dev/null && echo null-ok; head -c1 /dev/zero >/dev/null 2>&1 || echo zero-denied")
	if err := c.wait(t); err != nil {
		t.Fatalf("%v: %s", err, c.out.String())
	}
	if out := c.out.String(); !strings.Contains(out, "null-ok") || !strings.Contains(out, "zero-denied") {
		t.Errorf("output %q: want /dev/null allowed and /dev/zero denied", out)
	}
}

func cgroupPathOf(m Manager) string {
	switch m := m.(type) {
	case *v1Manager:
		return m.path
	case *v2Manager:
		return m.path
	}
	panic("unknown manager")
}

func newV1Host(path string) (Manager, error) { return NewV1(DefaultRoot, nil, path) }

func TestV1Lifecycle(t *testing.T) {
	requiresV1(t)
	t.Parallel()
	m := testManager(t, newV1Host)
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(32 << 20), Swap: i64(64 << 20), Reservation: i64(16 << 20)},
		CPU:    &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(100000), Cpus: "0"},
		Pids:   &specs.LinuxPids{Limit: i64(10)},
	}
	want := map[string]string{
		"memory/memory.limit_in_bytes":       "33554432",
		"memory/memory.memsw.limit_in_bytes": "67108864",
		"memory/memory.soft_limit_in_bytes":  "16777216",
		"cpu/cpu.shares":                     "512",
		"cpu/cpu.cfs_quota_us":               "50000",
		"cpu/cpu.cfs_period_us":              "100000",
		"cpuset/cpuset.cpus":                 "0",
		"pids/pids.max":                      "10",
	}
	if m.Path("blkio") != "" {
		r.BlockIO = &specs.LinuxBlockIO{}
		// The weight lands in blkio.weight (CFQ) or blkio.bfq.weight;
		// kernels without either I/O scheduler offer neither (Set then
		// refuses a weight: TestV1BlkioWeightMissing).
		if blkioWeightFile() != "" {
			r.BlockIO.Weight = u16(500)
		}
		if d, ok := someBlockDevice(); ok {
			r.BlockIO.ThrottleReadBpsDevice = []specs.LinuxThrottleDevice{{LinuxBlockIODevice: d, Rate: 1 << 20}}
			want["blkio/blkio.throttle.read_bps_device"] = fmt.Sprintf("%d:%d %d", d.Major, d.Minor, 1<<20)
		}
	}
	testLifecycle(t, m, r, want, expect{memory: true, pids: true})
}

// blkioWeightFile is the weight file the v1 blkio root offers, or "".
func blkioWeightFile() string {
	for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/blkio", f)); err == nil {
			return f
		}
	}
	return ""
}

// TestV1BlkioWeightMissing: where the kernel offers no blkio weight, a
// weight is refused with a failed precondition naming the files, not
// ignored.
func TestV1BlkioWeightMissing(t *testing.T) {
	requiresV1(t)
	if blkioWeightFile() != "" {
		t.Skip("this kernel offers a blkio weight; TestV1Lifecycle sets it")
	}
	m := testManager(t, newV1Host)
	if m.Path("blkio") == "" {
		t.Skip("no v1 blkio controller")
	}
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	err := m.Set(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: u16(500)}})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "blkio.weight") {
		t.Fatalf("Set(weight) = %v, want a failed precondition naming blkio.weight", err)
	}
}

// someBlockDevice returns a disk of this host, for throttling rules.
func someBlockDevice() (specs.LinuxBlockIODevice, bool) {
	devs, _ := filepath.Glob("/sys/block/*/dev")
	for _, p := range devs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var d specs.LinuxBlockIODevice
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &d.Major, &d.Minor); err == nil {
			return d, true
		}
	}
	return specs.LinuxBlockIODevice{}, false
}

// TestV1Update raises then lowers limits whose files the kernel checks
// against each other (memsw >= limit, quota/period), so that the order of
// the plan's writes is exercised on the real kernel.
func TestV1Update(t *testing.T) {
	requiresV1(t)
	t.Parallel()
	m := testManager(t, newV1Host)
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ limit, swap int64 }{{32 << 20, 64 << 20}, {128 << 20, 256 << 20}, {16 << 20, 16 << 20}, {64 << 20, -1}, {-1, -1}} {
		r := &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: i64(step.limit), Swap: i64(step.swap)},
			CPU:    &specs.LinuxCPU{Quota: i64(step.limit >> 12), Period: u64(uint64(step.limit>>12) * 2)},
		}
		if step.limit < 0 {
			r.CPU = &specs.LinuxCPU{Quota: i64(-1), Period: u64(100000)}
		}
		if err := m.Set(r); err != nil {
			t.Fatalf("Set %+v: %v", step, err)
		}
		lim, _ := readUint(m.Path("memory"), "memory.limit_in_bytes")
		sw, _ := readUint(m.Path("memory"), "memory.memsw.limit_in_bytes")
		if step.limit > 0 && int64(lim) != step.limit || step.swap > 0 && int64(sw) != step.swap || step.swap < 0 && sw < 1<<62 {
			t.Errorf("after %+v: limit %d memsw %d", step, lim, sw)
		}
	}
	readBack(t, m, map[string]string{"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"})
}

func TestV1PidsLimit(t *testing.T) {
	requiresV1(t)
	t.Parallel()
	checkPidsLimit(t, testManager(t, newV1Host))
}

func TestV1OOM(t *testing.T) {
	requiresV1(t)
	t.Parallel()
	m := testManager(t, newV1Host)
	checkOOM(t, m)
	oc, err := readKeyed(m.Path("memory"), "memory.oom_control")
	if err != nil || oc["oom_kill"] < 1 {
		t.Errorf("memory.oom_control = %v, %v", oc, err)
	}
}

func TestV1Devices(t *testing.T) {
	requiresV1(t)
	t.Parallel()
	m := testManager(t, newV1Host)
	checkDevices(t, m)
	readBack(t, m, map[string]string{"devices/devices.list": "c 1:3 rwm"})
}

// TestV1MissingController asks for what this host lacks (hugetlb is not
// mounted here; blkio leaf weights died with CFQ) and expects an error
// naming the field with nothing written.
func TestV1MissingController(t *testing.T) {
	requiresV1(t)
	t.Parallel()
	m := testManager(t, newV1Host)
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	// Where hugetlb is mounted, ask for a page size no CPU has.
	size := "2MB"
	if m.Path("hugetlb") != "" {
		size = "3MB"
	}
	r := &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(7)}, HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: size, Limit: 3 << 20}}}
	const field = "linux.resources.hugepageLimits[0]: "
	err := m.Set(r)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.HasPrefix(err.Error(), field) {
		t.Fatalf("Set = %v, want a failed precondition naming %s", err, field)
	}
	readBack(t, m, map[string]string{"pids/pids.max": "max"})
	if v := Validate(r); !errors.Is(v, errdefs.ErrFailedPrecondition) && m.Path("hugetlb") == "" {
		t.Errorf("Validate = %v, want the same refusal before anything exists", v)
	}
}

// TestV1WriteError checks a kernel refusal reads as the file and value.
func TestV1WriteError(t *testing.T) {
	requiresV1(t)
	t.Parallel()
	m := testManager(t, newV1Host)
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	// Two CPUs named that do not exist.
	err := m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "4000-4001"}})
	want := fmt.Sprintf("write %s %q: ", filepath.Join(m.Path("cpuset"), "cpuset.cpus"), "4000-4001")
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Set = %v, want prefix %q", err, want)
	}
}

func TestV2Lifecycle(t *testing.T) {
	requiresV2(t)
	t.Parallel()
	m := testManager(t, func(p string) (Manager, error) { return NewV2(DefaultRoot, p) })
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(32 << 20), Reservation: i64(16 << 20)},
		CPU:    &specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Period: u64(100000)},
		Pids:   &specs.LinuxPids{Limit: i64(10)},
	}
	want := map[string]string{
		"/memory.max": strconv.Itoa(32 << 20),
		"/memory.low": strconv.Itoa(16 << 20),
		"/cpu.weight": "39",
		"/cpu.max":    "50000 100000",
		"/pids.max":   "10",
	}
	testLifecycle(t, m, r, want, expect{memory: true, pids: true})
}

func TestV2PidsLimit(t *testing.T) {
	requiresV2(t)
	t.Parallel()
	checkPidsLimit(t, testManager(t, func(p string) (Manager, error) { return NewV2(DefaultRoot, p) }))
}

func TestV2OOM(t *testing.T) {
	requiresV2(t)
	t.Parallel()
	checkOOM(t, testManager(t, func(p string) (Manager, error) { return NewV2(DefaultRoot, p) }))
}

func TestV2Devices(t *testing.T) {
	requiresV2(t)
	t.Parallel()
	checkDevices(t, testManager(t, func(p string) (Manager, error) { return NewV2(DefaultRoot, p) }))
}

func newHybridV2(p string) (Manager, error) { return NewV2(hybridUnified, p) }

// TestV2HybridLifecycle runs the v2 manager on a hybrid host's unified
// tree: it has no controllers, but processes, freezing, the core cpu.stat
// and rmdir are all real cgroup v2.
func TestV2HybridLifecycle(t *testing.T) {
	requiresHybridUnified(t)
	t.Parallel()
	testLifecycle(t, testManager(t, newHybridV2), nil, nil, expect{})
}

// TestV2HybridDevices loads and attaches the eBPF device program for real:
// the kernel consults cgroup v2 device programs on hybrid hosts too.
func TestV2HybridDevices(t *testing.T) {
	requiresHybridUnified(t)
	t.Parallel()
	m := testManager(t, newHybridV2)
	checkDevices(t, m)
	fd, err := unix.Open(m.Path(""), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if ids, err := attachedDevicePrograms(fd); err != nil || len(ids) != 1 {
		t.Errorf("attached device programs after two Sets: %v, %v; want one", ids, err)
	}
}

func TestDetectMode(t *testing.T) {
	_, err := os.Stat(filepath.Join(DefaultRoot, "cgroup.controllers"))
	if got, want := DetectMode(), map[bool]Mode{true: Unified, false: Legacy}[err == nil]; got != want {
		t.Errorf("DetectMode = %v, want %v", got, want)
	}
}

// TestV2HybridNoController: the unified tree here has no memory
// controller, so a memory limit must fail naming the field.
func TestV2HybridNoController(t *testing.T) {
	requiresHybridUnified(t)
	t.Parallel()
	m := testManager(t, newHybridV2)
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 20)}})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.HasPrefix(err.Error(), "linux.resources.memory.limit: memory.max is missing from") {
		t.Fatalf("Set = %v", err)
	}
}
