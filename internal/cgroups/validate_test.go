package cgroups

import (
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestValidateRejects(t *testing.T) {
	mem := func(m specs.LinuxMemory) *specs.LinuxResources { return &specs.LinuxResources{Memory: &m} }
	cpu := func(c specs.LinuxCPU) *specs.LinuxResources { return &specs.LinuxResources{CPU: &c} }
	blk := func(b specs.LinuxBlockIO) *specs.LinuxResources { return &specs.LinuxResources{BlockIO: &b} }
	for _, tc := range []struct {
		r    *specs.LinuxResources
		want string
	}{
		{mem(specs.LinuxMemory{Limit: i64(-5)}), "linux.resources.memory.limit: -5 is negative (use -1 for unlimited)"},
		{mem(specs.LinuxMemory{Reservation: i64(-2)}), "linux.resources.memory.reservation: -2 is negative"},
		{mem(specs.LinuxMemory{Swap: i64(-3)}), "linux.resources.memory.swap: -3 is negative"},
		{mem(specs.LinuxMemory{Limit: i64(100), Reservation: i64(200)}), "linux.resources.memory.reservation: 200 is above memory.limit 100"},
		{mem(specs.LinuxMemory{Limit: i64(100), Swap: i64(50)}), "linux.resources.memory.swap: 50 is below memory.limit 100"},
		{mem(specs.LinuxMemory{Limit: i64(-1), Swap: i64(50)}), "linux.resources.memory.swap: 50 needs a memory.limit"},
		{mem(specs.LinuxMemory{Swappiness: u64(101)}), "linux.resources.memory.swappiness: 101 is above 100"},
		{cpu(specs.LinuxCPU{Shares: u64(1)}), "linux.resources.cpu.shares: 1 is below the minimum 2"},
		{cpu(specs.LinuxCPU{Shares: u64(300000)}), "linux.resources.cpu.shares: 300000 is above the maximum 262144"},
		{cpu(specs.LinuxCPU{Quota: i64(-2)}), "linux.resources.cpu.quota: -2 is negative"},
		{cpu(specs.LinuxCPU{Quota: i64(500)}), "linux.resources.cpu.quota: 500 is below the kernel's minimum 1000"},
		{cpu(specs.LinuxCPU{Quota: i64(50000), Period: u64(0)}), "linux.resources.cpu.period: 0 with quota 50000 set"},
		{cpu(specs.LinuxCPU{Period: u64(999)}), "linux.resources.cpu.period: 999 is outside 1000-1000000"},
		{cpu(specs.LinuxCPU{Period: u64(2000000)}), "linux.resources.cpu.period: 2000000 is outside"},
		{cpu(specs.LinuxCPU{Quota: i64(2000), Burst: u64(3000)}), "linux.resources.cpu.burst: 3000 is above quota 2000"},
		{cpu(specs.LinuxCPU{RealtimeRuntime: i64(2000), RealtimePeriod: u64(1000)}), "linux.resources.cpu.realtimeRuntime: 2000 is above realtimePeriod 1000"},
		{cpu(specs.LinuxCPU{Idle: i64(2)}), "linux.resources.cpu.idle: 2 is not 0 or 1"},
		{cpu(specs.LinuxCPU{Cpus: "0-2,x"}), `linux.resources.cpu.cpus: "0-2,x" is not a list like 0-2,4: bad number "x"`},
		{cpu(specs.LinuxCPU{Cpus: "3-1"}), "linux.resources.cpu.cpus: \"3-1\" is not a list like 0-2,4: range 3-1 is backwards"},
		{cpu(specs.LinuxCPU{Mems: "0,,1"}), "linux.resources.cpu.mems:"},
		{blk(specs.LinuxBlockIO{Weight: u16(5)}), "linux.resources.blockIO.weight: 5 is outside 10-1000"},
		{blk(specs.LinuxBlockIO{WeightDevice: []specs.LinuxWeightDevice{{LinuxBlockIODevice: dev(8, 0), Weight: u16(2000)}}}), "linux.resources.blockIO.weightDevice[0].weight: 2000 is outside"},
		{blk(specs.LinuxBlockIO{WeightDevice: []specs.LinuxWeightDevice{{LinuxBlockIODevice: dev(-8, 0)}}}), "linux.resources.blockIO.weightDevice[0]: device -8:0 has a negative number"},
		{blk(specs.LinuxBlockIO{ThrottleWriteBpsDevice: []specs.LinuxThrottleDevice{{}, {LinuxBlockIODevice: dev(8, -1)}}}), "linux.resources.blockIO.throttleWriteBpsDevice[1]: device 8:-1"},
		{&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2M"}}}, `linux.resources.hugepageLimits[0].pageSize: "2M" is not a size like 2MB`},
		{&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "0MB"}}}, `linux.resources.hugepageLimits[0].pageSize: "0MB"`},
		{&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{}, {Type: "x"}}}, `linux.resources.devices[1]: type "x" is not a, b or c`},
		{&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Access: "rwx"}}}, `linux.resources.devices[0]: access "rwx" is not a combination of r, w and m`},
		{&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Access: "rr"}}}, `linux.resources.devices[0]: access "rr"`},
		{&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Type: "c", Major: i64(-7)}}}, `linux.resources.devices[0]: major -7 is out of range`},
		{&specs.LinuxResources{Network: &specs.LinuxNetwork{Priorities: []specs.LinuxInterfacePriority{{Name: "a b"}}}}, `linux.resources.network.priorities[0].name: "a b"`},
		{&specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{"mlx": {}}}, `linux.resources.rdma["mlx"]: sets neither`},
		{&specs.LinuxResources{Unified: map[string]string{"../memory.max": "1"}}, `linux.resources.unified["../memory.max"]: not a cgroup interface file name`},
		{&specs.LinuxResources{Unified: map[string]string{"memory": "1"}}, `linux.resources.unified["memory"]: not a cgroup interface file name`},
		{&specs.LinuxResources{Unified: map[string]string{"cgroup.procs": "1"}}, `linux.resources.unified["cgroup.procs"]: is managed by berth itself`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for name, check := range map[string]func(*specs.LinuxResources) error{
				"validate": validate,
				"planV1":   func(r *specs.LinuxResources) error { _, err := planV1(r); return err },
				"planV2":   func(r *specs.LinuxResources) error { _, err := planV2(r); return err },
			} {
				err := check(tc.r)
				if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
					t.Errorf("%s: got %v, want prefix %q", name, err, tc.want)
				}
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("%s: %v is not ErrInvalidArgument", name, err)
				}
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, r := range []*specs.LinuxResources{
		nil,
		{},
		{Memory: &specs.LinuxMemory{Limit: i64(-1), Swap: i64(-1), Reservation: i64(-1)}},
		{Memory: &specs.LinuxMemory{Limit: i64(100), Swap: i64(100), Reservation: i64(100)}},
		{Memory: &specs.LinuxMemory{Limit: i64(0), Swap: i64(0)}}, // 0 is unset
		{CPU: &specs.LinuxCPU{Shares: u64(0), Quota: i64(0), Period: u64(0)}},
		{CPU: &specs.LinuxCPU{Shares: u64(2), Quota: i64(-1), Period: u64(1000)}},
		{CPU: &specs.LinuxCPU{Shares: u64(262144), Quota: i64(1000), Period: u64(1000000), Cpus: "0-3,5,7", Mems: " 0 "}},
		{BlockIO: &specs.LinuxBlockIO{Weight: u16(0), LeafWeight: u16(10)}},
		{Pids: &specs.LinuxPids{Limit: i64(-1)}},
		{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "64KB"}, {Pagesize: "2MB"}, {Pagesize: "1GB"}}},
		{Devices: []specs.LinuxDeviceCgroup{{Type: "a"}, {Type: "b", Major: i64(-1), Minor: i64(-1), Access: "m"}}},
		{Unified: map[string]string{"memory.high": "max", "cgroup.max.depth": "3"}},
	} {
		if err := validate(r); err != nil {
			t.Errorf("validate(%+v): %v", r, err)
		}
	}
}

func TestParseList(t *testing.T) {
	for in, want := range map[string][]int{
		"":                nil,
		"0":               {0},
		"0-2,4":           {0, 1, 2, 4},
		"1,3-3":           {1, 3},
		"\n0-1\n":         {0, 1},
		"7,0-1,8-9":       {0, 1, 7, 8, 9}, // a set, sorted
		"0-65535,0-65535": nil,             // checked by length below
	} {
		got, err := parseList(in)
		if in == "0-65535,0-65535" {
			if err != nil || len(got) != 65536 {
				t.Errorf("parseList(%q): %d cpus, %v; want 65536", in, len(got), err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "1-", "a", "1,", "2-1", "1-2-3", "99999"} {
		if _, err := parseList(in); err == nil {
			t.Errorf("parseList(%q) succeeded", in)
		}
	}
}

func TestValidPageSize(t *testing.T) {
	for s, want := range map[string]bool{"2MB": true, "1GB": true, "64KB": true, "16GB": true, "2mb": false, "MB": false, "02MB": false, "2TB": false, "-2MB": false, "2 MB": false} {
		if got := validPageSize(s); got != want {
			t.Errorf("validPageSize(%q) = %v", s, got)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"/berth/abc":       "/berth/abc",
		"berth/abc":        "/berth/abc",
		"/berth//abc/":     "/berth/abc",
		"../../etc/x":      "/etc/x",
		"/berth/../../abc": "/abc",
	} {
		if got, err := cleanPath(in); err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", " ", "/", "..", "/berth/.."} {
		if _, err := cleanPath(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("cleanPath(%q) = %v, want ErrInvalidArgument", in, err)
		}
	}
}

// TestValidateOnHost runs the exported Validate, which also asks the host
// which controllers it has. Bad values fail the same on every host.
func TestValidateOnHost(t *testing.T) {
	err := Validate(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-5)}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("got %v", err)
	}
	if err := Validate(nil); err != nil {
		t.Fatal(err)
	}
	if err := Validate(&specs.LinuxResources{}); err != nil {
		t.Fatal(err)
	}
	// A controller that is never mounted anywhere: net_cls on v1, and the
	// v1-only network fields on v2 fail too, both naming the field.
	err = Validate(&specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: u32(1)}})
	mounts, _ := v1Mounts(DefaultRoot)
	if DetectMode() == Legacy && mounts["net_cls"] != "" {
		t.Skip("net_cls is mounted here")
	}
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "linux.resources.network") {
		t.Fatalf("got %v, want a failed precondition naming linux.resources.network", err)
	}
}
