package runtime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func i64(v int64) *int64 { return &v }

func TestMemoryLimitOOMKills(t *testing.T) {
	e := newEnv(t)
	e.cgroupPath("oom")
	e.spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: i64(16 << 20), Swap: i64(16 << 20)}
	// dd allocates its 64 MiB block at once: over the limit.
	r := e.run("sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; dd if=/dev/zero of=/dev/null bs=64M count=1")
	if !strings.Contains(r.stdout, strconv.Itoa(16<<20)) {
		t.Errorf("limit not visible in the container: %q", r.stdout)
	}
	if r.code != 137 && !strings.Contains(r.stdout+r.stderr, "Killed") {
		t.Errorf("dd over the memory limit: exit %d, want OOM kill; stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestPidsLimit(t *testing.T) {
	e := newEnv(t)
	e.cgroupPath("pids")
	e.spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: i64(4)}
	r := e.run("sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
	if r.stdout != "4\n" {
		t.Errorf("pids.max in the container: %q %q", r.stdout, r.stderr)
	}
	r = e.run("sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done; wait")
	if r.code == 0 || !strings.Contains(r.stderr, "can't fork") {
		t.Errorf("6 children under pids.max=4 all forked: stderr %q", r.stderr)
	}
}

func TestCapabilitiesDropped(t *testing.T) {
	e := newEnv(t)
	caps := []string{"CAP_CHOWN"}
	e.spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	r := e.run("sh", "-c", "grep Cap /proc/self/status; hostname foo; echo rc=$?")
	for _, want := range []string{"CapEff:\t0000000000000001", "CapBnd:\t0000000000000001", "rc=1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in %q (stderr %q)", want, r.stdout, r.stderr)
		}
	}
}

func TestUserAndGroups(t *testing.T) {
	e := newEnv(t)
	umask := uint32(0o077)
	e.spec.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{5, 7}, Umask: &umask}
	r := e.run("sh", "-c", "id; umask; grep CapEff /proc/self/status")
	for _, want := range []string{"uid=1000", "gid=1001", "groups=5,7", "0077", "CapEff:\t0000000000000000"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in %q (stderr %q)", want, r.stdout, r.stderr)
		}
	}
}

func TestNoNewPrivilegesAndOOMScore(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.NoNewPrivileges = true
	adj := 500
	e.spec.Process.OOMScoreAdj = &adj
	r := e.run("sh", "-c", "grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj")
	if !strings.Contains(r.stdout, "NoNewPrivs:\t1") || !strings.Contains(r.stdout, "500") {
		t.Errorf("got %q %q", r.stdout, r.stderr)
	}
}

func TestRlimits(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 100, Hard: 200}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}}
	r := e.run("sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c")
	if r.stdout != "100\n200\n0\n" {
		t.Errorf("rlimits: %q %q", r.stdout, r.stderr)
	}
	// Raising a hard limit needs CAP_SYS_RESOURCE, which this host
	// may not grant: then a clear error naming the field.
	var cur struct{ hard uint64 }
	data, _ := os.ReadFile("/proc/self/limits")
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			cur.hard, _ = strconv.ParseUint(f[4], 10, 64)
		}
	}
	e.spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: cur.hard + 1, Hard: cur.hard + 1}}
	r = e.run("true")
	if r.code == 0 {
		t.Skip("this host lets root raise hard limits (CAP_SYS_RESOURCE present)")
	}
	if !strings.Contains(r.stderr, "process.rlimits[0]") {
		t.Errorf("error does not name the field: %q", r.stderr)
	}
}

func TestMountsAndReadonly(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "shared")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "file"), []byte("hello"), 0o644)
	e.spec.Root.Readonly = true
	e.spec.Mounts = append(e.spec.Mounts,
		specs.Mount{Destination: "/data", Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/rw", Type: "bind", Source: src, Options: []string{"bind", "nosuid", "nodev"}},
		specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m", "noexec"}},
	)
	e.spec.Linux.ReadonlyPaths = append(e.spec.Linux.ReadonlyPaths, "/etc")
	r := e.run("sh", "-c", `cat /data/file; echo; touch /data/x 2>/dev/null; echo data=$?; touch /rw/y; echo rw=$?; touch /scratch/z; echo scratch=$?; touch /newfile 2>/dev/null; echo root=$?; grep -E ' /(data|rw|scratch) ' /proc/self/mountinfo`)
	for _, want := range []string{"hello", "data=1", "rw=0", "scratch=0", "root=1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in %q (stderr %q)", want, r.stdout, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(src, "y")); err != nil {
		t.Errorf("write through rw bind mount not visible on host: %v", err)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, " /scratch ") && !strings.Contains(line, "noexec") {
			t.Errorf("tmpfs lacks noexec: %s", line)
		}
		if strings.Contains(line, " /rw ") && !strings.Contains(line, "nosuid") {
			t.Errorf("bind lacks nosuid: %s", line)
		}
	}
}

func TestDevicesAndSysctlAndDomainname(t *testing.T) {
	e := newEnv(t)
	mode := os.FileMode(0o640)
	uid := uint32(0)
	e.spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/mynull", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: &uid, GID: &uid}}
	e.spec.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmni": "1000"}
	e.spec.Domainname = "example.org"
	r := e.run("sh", "-c", "stat -c '%F %t:%T %a' /dev/mynull; cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; cat /proc/sys/kernel/domainname; echo x > /dev/null && echo null-ok; ls -l /dev/ptmx /dev/fd")
	for _, want := range []string{"character special file 1:3 640", "1\n1000\n", "example.org", "null-ok", "pts/ptmx", "/proc/self/fd"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in %q (stderr %q)", want, r.stdout, r.stderr)
		}
	}
}

func TestSeccompDenies(t *testing.T) {
	e := newEnv(t)
	e.spec.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: func() *uint { v := uint(1); return &v }()}},
	}
	r := e.run("sh", "-c", "mkdir /tmp/x; echo rc=$?; touch /tmp/y && echo touch-ok")
	if !strings.Contains(r.stdout, "rc=1") || !strings.Contains(r.stderr, "Operation not permitted") || !strings.Contains(r.stdout, "touch-ok") {
		t.Errorf("seccomp: %q %q", r.stdout, r.stderr)
	}
}

func TestHooks(t *testing.T) {
	e := newEnv(t)
	out := filepath.Join(e.dir, "hooks")
	os.MkdirAll(out, 0o755)
	hook := func(name string) specs.Hook {
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + filepath.Join(out, name)}}
	}
	e.spec.Hooks = &specs.Hooks{
		Prestart:        []specs.Hook{hook("prestart")},
		CreateRuntime:   []specs.Hook{hook("createRuntime")},
		CreateContainer: []specs.Hook{hook("createContainer")},
		StartContainer:  []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > /startContainer"}}},
		Poststart:       []specs.Hook{hook("poststart")},
		Poststop:        []specs.Hook{hook("poststop")},
	}
	e.spec.Process.Args = []string{"sleep", "1000"}
	e.writeSpec()
	e.mustBerth("create", "hooked")
	for _, h := range []string{"prestart", "createRuntime", "createContainer"} {
		var st specs.State
		data, err := os.ReadFile(filepath.Join(out, h))
		if err != nil {
			t.Fatalf("hook %s did not run: %v", h, err)
		}
		want := specs.ContainerState("creating")
		if h == "prestart" {
			want = "created" // what tools written for prestart expect
		}
		if err := json.Unmarshal(data, &st); err != nil || st.ID != "hooked" || st.Status != want || st.Pid <= 0 {
			t.Errorf("hook %s state %s (%v)", h, data, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "poststart")); err == nil {
		t.Error("poststart ran before start")
	}
	e.mustBerth("start", "hooked")
	if _, err := os.Stat(filepath.Join(out, "poststart")); err != nil {
		t.Errorf("poststart: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(e.bundle, "rootfs/startContainer")); err != nil || !strings.Contains(string(data), `"hooked"`) {
		t.Errorf("startContainer ran in the container's root? %q %v", data, err)
	}
	e.mustBerth("kill", "hooked", "KILL")
	waitStatus(t, e, "hooked", "stopped")
	e.mustBerth("delete", "hooked")
	if data, err := os.ReadFile(filepath.Join(out, "poststop")); err != nil || !strings.Contains(string(data), `"stopped"`) {
		t.Errorf("poststop: %q %v", data, err)
	}

	// A failing createRuntime hook fails create and leaves nothing.
	e.spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/false"}}}
	e.writeSpec()
	r := e.berth("create", "failing")
	if r.code == 0 || !strings.Contains(r.stderr, "hooks.createRuntime[0]") {
		t.Errorf("failing hook: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(e.root, "failing")); !os.IsNotExist(err) {
		t.Error("state left after failed create")
	}
}

func TestExecJoinsEveryNamespace(t *testing.T) {
	e := newEnv(t)
	e.spec.Hostname = "exec-host"
	e.spec.Process.Args = []string{"sh", "-c", "touch /tmp/marker; sleep 1000"}
	e.spec.Linux.Namespaces = append(e.spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	e.spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	e.spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	e.spec.Linux.Resources = nil
	// The user namespace's root must be able to reach the rootfs.
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Dir(e.dir), 0o755)
	if err := exec.Command("chown", "-R", "100000:100000", e.bundle).Run(); err != nil {
		t.Fatal(err)
	}
	e.spec.Mounts = filterMounts(e.spec.Mounts, "/sys/fs/cgroup")
	e.writeSpec()
	e.mustBerth("run", "-d", "execd")
	st := e.state("execd")
	out := e.mustBerth("exec", "execd", "sh", "-c", "hostname; ls /tmp/marker; echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); cat /proc/self/uid_map")
	for _, want := range []string{"exec-host", "/tmp/marker", "pid1=sleep 1000", "100000"} {
		if !strings.Contains(out, want) {
			t.Errorf("exec: want %q in %q", want, out)
		}
	}
	for _, ns := range []string{"mnt", "pid", "net", "uts", "ipc", "user", "cgroup"} {
		a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", st.Pid, ns))
		self, _ := os.Readlink("/proc/self/ns/" + ns)
		if a == self {
			t.Errorf("container shares the host's %s namespace", ns)
		}
	}
	// Exit codes come back; a detached exec writes its pid file.
	if r := e.berth("exec", "execd", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exec exit code %d, want 7", r.code)
	}
	pidFile := filepath.Join(e.dir, "exec.pid")
	e.mustBerth("exec", "-d", "--pid-file", pidFile, "execd", "sleep", "1000")
	if data, err := os.ReadFile(pidFile); err != nil || len(data) == 0 {
		t.Errorf("exec pid file: %q %v", data, err)
	}
	hostUID := func(pid string) string {
		data, _ := os.ReadFile("/proc/" + pid + "/status")
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "Uid:") {
				return strings.Fields(l)[1]
			}
		}
		return ""
	}
	data, _ := os.ReadFile(pidFile)
	if u := hostUID(strings.TrimSpace(string(data))); u != "100000" {
		t.Errorf("exec'd process runs as host uid %q, want 100000", u)
	}
	if r := e.berth("exec", "execd", "no-such-cmd"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("exec of a missing program: exit %d %q", r.code, r.stderr)
	}
	e.mustBerth("delete", "-f", "execd")
}

func filterMounts(ms []specs.Mount, drop string) []specs.Mount {
	var out []specs.Mount
	for _, m := range ms {
		if m.Destination != drop {
			out = append(out, m)
		}
	}
	return out
}

func TestJoinNamespaceByPath(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "1000"}
	e.spec.Hostname = "first"
	e.writeSpec()
	e.mustBerth("run", "-d", "first")
	first := e.state("first")
	e.spec.Hostname = ""
	e.spec.Process.Args = []string{"sh", "-c", "hostname; ls /sys/class/net"}
	for i, ns := range e.spec.Linux.Namespaces {
		switch ns.Type {
		case specs.UTSNamespace, specs.NetworkNamespace:
			e.spec.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", first.Pid, map[specs.LinuxNamespaceType]string{specs.UTSNamespace: "uts", specs.NetworkNamespace: "net"}[ns.Type])
		}
	}
	e.writeSpec()
	r := e.berth("run", "second")
	if r.code != 0 || !strings.Contains(r.stdout, "first") {
		t.Errorf("joined uts: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	e.mustBerth("delete", "-f", "first")
}

func TestConsoleSocket(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Terminal = true
	e.spec.Process.Args = []string{"sh", "-c", "tty; sleep 1000"}
	e.writeSpec()
	sock := filepath.Join(e.dir, "console.sock")
	recv := exec.Command(os.Args[0], "-test.run=^TestConsoleReceiver$")
	recv.Env = append(os.Environ(), "BERTH_CONSOLE_RECEIVER="+sock)
	outFile := filepath.Join(e.dir, "console.out")
	f, _ := os.Create(outFile)
	recv.Stdout = f
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	defer recv.Process.Kill()
	for i := 0; i < 1000; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.mustBerth("run", "-d", "--console-socket", sock, "tty")
	_ = recv.Wait()
	data, _ := os.ReadFile(outFile)
	if !strings.Contains(string(data), "/dev/pts/0") {
		t.Errorf("terminal output %q", data)
	}
	e.mustBerth("delete", "-f", "tty")
}
