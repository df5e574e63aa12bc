package runtime_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostSnapshot is what a container may change on the host while it lives
// and must give back: mounts, cgroup directories, state files, processes.
type hostSnapshot struct {
	mounts  []string
	cgroups []string
	state   []string
	procs   []string
}

func snapshot(t *testing.T, stateRoot string) hostSnapshot {
	t.Helper()
	var s hostSnapshot
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		s.mounts = append(s.mounts, f[4]) // mount point
	}
	sort.Strings(s.mounts)
	for _, root := range []string{"/sys/fs/cgroup"} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if strings.Count(strings.TrimPrefix(p, root), "/") > 4 {
				return filepath.SkipDir
			}
			if strings.Contains(p, "berth") {
				s.cgroups = append(s.cgroups, p)
			}
			return nil
		})
	}
	_ = filepath.WalkDir(stateRoot, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != stateRoot {
			s.state = append(s.state, p)
		}
		return nil
	})
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		st := string(stat)
		i := strings.LastIndexByte(st, ')')
		f := strings.Fields(st[i+1:])
		zombieChild := f[0] == "Z" && f[1] == self
		if zombieChild || strings.Contains(string(cmd), berthBin) || strings.HasPrefix(string(cmd), "berth\x00init") {
			s.procs = append(s.procs, fmt.Sprintf("%s %s %q", e.Name(), f[0], cmd))
		}
	}
	return s
}

func diffSnapshots(t *testing.T, what string, before, after hostSnapshot) {
	t.Helper()
	eq := func(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }
	if !eq(before.mounts, after.mounts) {
		t.Errorf("%s: mounts changed:\nbefore %d: %v\nafter %d: %v", what, len(before.mounts), before.mounts, len(after.mounts), after.mounts)
	}
	if !eq(before.cgroups, after.cgroups) {
		t.Errorf("%s: cgroups changed:\nbefore %v\nafter %v", what, before.cgroups, after.cgroups)
	}
	if !eq(before.state, after.state) {
		t.Errorf("%s: state files changed:\nbefore %v\nafter %v", what, before.state, after.state)
	}
	if !eq(before.procs, after.procs) {
		t.Errorf("%s: processes changed:\nbefore %v\nafter %v", what, before.procs, after.procs)
	}
}

func TestZeroResidue200Cycles(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sh", "-c", "sleep 30 & echo hi > /tmp/x"}
	e.spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: i64(64 << 20)}
	e.spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: i64(64)}
	e.writeSpec()
	os.MkdirAll(e.root, 0o711)
	before := snapshot(t, e.root)
	n := 200
	if testing.Short() {
		n = 10
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("cycle%d", i)
		e.mustBerth("create", id)
		e.mustBerth("start", id)
		waitStatus(t, e, id, "stopped")
		e.mustBerth("delete", id)
		if t.Failed() {
			break
		}
	}
	// And through run, including a container left running for delete -f.
	for i := 0; i < 20; i++ {
		e.mustBerth("run", fmt.Sprintf("run%d", i))
	}
	e.spec.Process.Args = []string{"sleep", "1000"}
	// A nested cgroupsPath: the parents create makes go with the container.
	e.spec.Linux.CgroupsPath = "/berth-residue-parent/deeper/bg"
	e.writeSpec()
	e.mustBerth("run", "-d", "bg")
	e.mustBerth("delete", "-f", "bg")
	diffSnapshots(t, fmt.Sprintf("after %d cycles", n), before, snapshot(t, e.root))
}

// TestBadConfigs checks that every kind of bad input gets one line naming
// the config field, exit code 1, and leaves the host as it was.
func TestBadConfigs(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(e.root, 0o711)
	os.Symlink("../../../../../../tmp", filepath.Join(e.bundle, "rootfs", "escape"))
	tests := []struct {
		name   string
		mutate func(s *specs.Spec)
		raw    string
		want   string
	}{
		{name: "malformed", raw: `{"ociVersion": "1.0.2", "process": `, want: "malformed JSON"},
		{name: "wrong type", raw: `{"ociVersion": "1.0.2", "process": {"args": "sh"}}`, want: "field process.args"},
		{name: "version", mutate: func(s *specs.Spec) { s.Version = "2.0.0" }, want: "ociVersion"},
		{name: "missing rootfs", mutate: func(s *specs.Spec) { s.Root.Path = "nope" }, want: "root.path"},
		{name: "unknown namespace", mutate: func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
		}, want: "linux.namespaces[6].type"},
		{name: "unknown capability", mutate: func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_FLY")
		}, want: "process.capabilities.bounding"},
		{name: "mount escapes through symlink", mutate: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/escape/evil", Type: "tmpfs", Source: "tmpfs"})
		}, want: "mounts[7].destination"},
		{name: "negative memory", mutate: func(s *specs.Spec) {
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: i64(-5)}
		}, want: "linux.resources.memory.limit"},
		{name: "unsupported feature", mutate: func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "x"} }, want: "linux.intelRdt"},
		{name: "hostname without uts", mutate: func(s *specs.Spec) {
			s.Hostname = "x"
			s.Linux.Namespaces = s.Linux.Namespaces[:3]
		}, want: "hostname"},
		{name: "bad seccomp action", mutate: func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_NOPE"}
		}, want: "linux.seccomp.defaultAction"},
		// These pass validation and fail inside the init stage, after
		// the cgroup and the processes exist.
		{name: "missing program", mutate: func(s *specs.Spec) { s.Process.Args = []string{"/no/such/program"} }, want: "process.args[0]"},
		{name: "sysctl refused", mutate: func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net.ipv4.no_such_key": "1"} }, want: "linux.sysctl.net.ipv4.no_such_key"},
		{name: "bind source missing", mutate: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/no/such/dir", Options: []string{"bind"}})
		}, want: "mounts[7].source"},
		{name: "cwd missing", mutate: func(s *specs.Spec) { s.Process.Cwd = "/no/such/dir" }, want: "process.cwd"},
	}
	base := *e.spec
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := base
			process := *base.Process
			caps := *base.Process.Capabilities
			caps.Bounding = append([]string{}, caps.Bounding...)
			process.Capabilities = &caps
			linux := *base.Linux
			res := *base.Linux.Resources
			linux.Resources = &res
			linux.Namespaces = append([]specs.LinuxNamespace{}, base.Linux.Namespaces...)
			root := *base.Root
			spec.Process, spec.Linux, spec.Root = &process, &linux, &root
			spec.Mounts = append([]specs.Mount{}, base.Mounts...)
			e.spec = &spec
			e.spec.Linux.CgroupsPath = ""
			if tt.mutate != nil {
				tt.mutate(e.spec)
			}
			e.writeSpec()
			if tt.raw != "" {
				os.WriteFile(filepath.Join(e.bundle, "config.json"), []byte(tt.raw), 0o644)
			}
			before := snapshot(t, e.root)
			r := e.berth("create", "bad")
			if r.code != 1 {
				t.Errorf("exit %d, want 1 (stderr %q)", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("error does not name %q: %q", tt.want, r.stderr)
			}
			// One line, from berth.
			if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "berth: ") {
				t.Errorf("want one line of error, got %q", r.stderr)
			}
			diffSnapshots(t, tt.name, before, snapshot(t, e.root))
		})
	}
}
