package container

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/runtime"
	"github.com/berth-dev/berth/internal/snapshot"
)

func testContainer() *Container {
	return &Container{
		ID: strings.Repeat("ab", 32), Path: "sh", Args: []string{"-c", "true"},
		Config:     Config{Hostname: "h", Env: []string{"PATH=/bin"}, WorkingDir: "/w"},
		HostConfig: HostConfig{NetworkMode: "none"},
	}
}

func TestBuildSpecDefaults(t *testing.T) {
	c := testContainer()
	spec, err := buildSpec(c, "/b", []snapshot.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Root.Path != "/b/rootfs" || spec.Root.Readonly {
		t.Errorf("root %+v", spec.Root)
	}
	if !strings.Contains(spec.Annotations[runtime.RootfsMountsAnnotation], "lowerdir=/l") {
		t.Errorf("rootfs annotation %q", spec.Annotations[runtime.RootfsMountsAnnotation])
	}
	if got := spec.Process.Args; !slices.Equal(got, []string{"sh", "-c", "true"}) {
		t.Errorf("args %v", got)
	}
	if spec.Process.Cwd != "/w" || spec.Hostname != "h" || spec.Process.NoNewPrivileges || spec.Process.Rlimits != nil {
		t.Errorf("process %+v hostname %q", spec.Process, spec.Hostname)
	}
	if spec.Linux.Seccomp == nil || spec.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("Docker's default seccomp profile is not applied")
	}
	if spec.Linux.CgroupsPath != "/berth/"+c.ID {
		t.Errorf("cgroups path %q", spec.Linux.CgroupsPath)
	}
	hasNet := slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.NetworkNamespace })
	if !hasNet {
		t.Errorf("--network none must have its own network namespace")
	}
	for _, f := range []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"} {
		if !slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == f && m.Source == "/b"+f[4:] }) {
			t.Errorf("no bind mount of %s", f)
		}
	}
}

func TestBuildSpecOptions(t *testing.T) {
	c := testContainer()
	init := true
	pids := int64(20)
	c.HostConfig = HostConfig{
		NetworkMode: "host", ReadonlyRootfs: true, Init: &init,
		CapAdd: []string{"net_admin"}, CapDrop: []string{"CAP_CHOWN"},
		SecurityOpt: []string{"no-new-privileges", "seccomp=unconfined"},
		Resources: Resources{Memory: 64 << 20, NanoCpus: 1_500_000_000, CpuShares: 512, PidsLimit: &pids,
			Ulimits: []Ulimit{{Name: "nofile", Soft: 100, Hard: 200}}},
	}
	c.Config.User = "app:staff"
	c.Config.Tty = true
	extra := []specs.Mount{{Destination: "/dev/shm", Type: "tmpfs", Source: "tmpfs"}}
	spec, err := buildSpec(c, "/b", nil, extra)
	if err != nil {
		t.Fatal(err)
	}
	if !spec.Root.Readonly || spec.Process.Args[0] != InitPath || spec.Process.Args[1] != "--" {
		t.Errorf("read-only %v args %v", spec.Root.Readonly, spec.Process.Args)
	}
	if slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.NetworkNamespace }) {
		t.Errorf("--network host must share the host's network namespace")
	}
	caps := spec.Process.Capabilities.Bounding
	if !slices.Contains(caps, "CAP_NET_ADMIN") || slices.Contains(caps, "CAP_CHOWN") {
		t.Errorf("caps %v", caps)
	}
	if !spec.Process.NoNewPrivileges || spec.Linux.Seccomp != nil {
		t.Errorf("security opts: nnp %v seccomp %v", spec.Process.NoNewPrivileges, spec.Linux.Seccomp != nil)
	}
	r := spec.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 ||
		*r.CPU.Shares != 512 || *r.Pids.Limit != 20 {
		t.Errorf("resources %+v", r)
	}
	if len(spec.Process.Rlimits) != 1 || spec.Process.Rlimits[0].Type != "RLIMIT_NOFILE" || spec.Process.Rlimits[0].Hard != 200 {
		t.Errorf("rlimits %+v", spec.Process.Rlimits)
	}
	if spec.Annotations[runtime.UserAnnotation] != "app:staff" {
		t.Errorf("user annotation %q", spec.Annotations[runtime.UserAnnotation])
	}
	if !hasEnv(spec.Process.Env, "TERM") {
		t.Errorf("a tty gets TERM")
	}
	n := 0
	for _, m := range spec.Mounts {
		if m.Destination == "/dev/shm" {
			n++
			if m.Type != "tmpfs" || m.Source != "tmpfs" {
				t.Errorf("the user's /dev/shm must replace the default: %+v", m)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d mounts on /dev/shm", n)
	}
}

func TestBuildSpecRejects(t *testing.T) {
	for _, hc := range []HostConfig{
		{CapAdd: []string{"NOT_A_CAP"}},
		{SecurityOpt: []string{"apparmor=x"}},
		{Resources: Resources{Ulimits: []Ulimit{{Name: "bogus"}}}},
	} {
		c := testContainer()
		c.HostConfig = hc
		if _, err := buildSpec(c, "/b", nil, nil); err == nil {
			t.Errorf("%+v: accepted", hc)
		}
	}
}

func TestRestartDue(t *testing.T) {
	c := testContainer()
	c.HostConfig.RestartPolicy = RestartPolicy{Name: "on-failure", MaximumRetryCount: 2}
	if ok, _ := c.restartDue(0); ok {
		t.Errorf("on-failure restarted a clean exit")
	}
	if ok, d := c.restartDue(1); !ok || d != 100 {
		t.Errorf("first failure: %v %d", ok, d)
	}
	c.RestartCount = 2
	if ok, _ := c.restartDue(1); ok {
		t.Errorf("restarted past the maximum")
	}
	c.HostConfig.RestartPolicy = RestartPolicy{Name: "always"}
	c.State.StopRequested = true
	if ok, _ := c.restartDue(0); ok {
		t.Errorf("always restarted after a stop")
	}
}
