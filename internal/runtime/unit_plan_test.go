package runtime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    mountOpts
		wantErr string
	}{
		{name: "none", in: nil, want: mountOpts{}},
		{name: "defaults", in: []string{"defaults"}, want: mountOpts{}},
		{name: "flags", in: []string{"nosuid", "noexec", "nodev", "ro"},
			want: mountOpts{flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV | unix.MS_RDONLY}},
		{name: "rw after ro", in: []string{"ro", "rw"}, want: mountOpts{}},
		{name: "ro after rw", in: []string{"rw", "ro"}, want: mountOpts{flags: unix.MS_RDONLY}},
		{name: "suid clears nosuid", in: []string{"nosuid", "nodev", "suid"}, want: mountOpts{flags: unix.MS_NODEV}},
		{name: "exec clears noexec", in: []string{"noexec", "exec"}, want: mountOpts{}},
		{name: "dev clears nodev", in: []string{"nodev", "dev"}, want: mountOpts{}},
		{name: "clear of an unset flag", in: []string{"exec", "suid", "rw", "async"}, want: mountOpts{}},
		{name: "atimes", in: []string{"noatime", "atime", "relatime", "norelatime", "strictatime", "nodiratime"},
			want: mountOpts{flags: unix.MS_STRICTATIME | unix.MS_NODIRATIME}},
		{name: "sync then async", in: []string{"sync", "dirsync", "async"}, want: mountOpts{flags: unix.MS_DIRSYNC}},
		{name: "remount", in: []string{"remount", "ro"}, want: mountOpts{flags: unix.MS_REMOUNT | unix.MS_RDONLY}},
		{name: "misc flags", in: []string{"mand", "iversion", "lazytime", "silent"},
			want: mountOpts{flags: unix.MS_MANDLOCK | unix.MS_I_VERSION | unix.MS_LAZYTIME | unix.MS_SILENT}},
		{name: "misc clears", in: []string{"mand", "iversion", "lazytime", "silent", "nomand", "noiversion", "nolazytime", "loud"},
			want: mountOpts{}},
		{name: "bind", in: []string{"bind"}, want: mountOpts{bind: true}},
		{name: "rbind", in: []string{"rbind"}, want: mountOpts{bind: true, recursive: true}},
		{name: "rbind then bind stays recursive", in: []string{"rbind", "bind"}, want: mountOpts{bind: true, recursive: true}},
		{name: "propagation in order", in: []string{"rprivate", "shared", "rslave", "unbindable"},
			want: mountOpts{propagation: []uintptr{unix.MS_PRIVATE | unix.MS_REC, unix.MS_SHARED, unix.MS_SLAVE | unix.MS_REC, unix.MS_UNBINDABLE}}},
		{name: "every propagation", in: []string{"private", "rshared", "slave", "runbindable"},
			want: mountOpts{propagation: []uintptr{unix.MS_PRIVATE, unix.MS_SHARED | unix.MS_REC, unix.MS_SLAVE, unix.MS_UNBINDABLE | unix.MS_REC}}},
		{name: "data kept in order", in: []string{"size=1m", "nosuid", "mode=755", "uid=0"},
			want: mountOpts{flags: unix.MS_NOSUID, data: []string{"size=1m", "mode=755", "uid=0"}}},
		{name: "unknown words are data", in: []string{"newinstance", "ptmxmode=0666", "lowerdir=/a:/b"},
			want: mountOpts{data: []string{"newinstance", "ptmxmode=0666", "lowerdir=/a:/b"}}},
		{name: "ignored", in: []string{"tmpcopyup", "nocopyup", "x-mount.mkdir"}, want: mountOpts{}},
		{name: "case matters", in: []string{"RO"}, want: mountOpts{data: []string{"RO"}}},
		{name: "idmap", in: []string{"bind", "idmap"}, wantErr: `"idmap"`},
		{name: "ridmap", in: []string{"ridmap"}, wantErr: `"ridmap"`},
		{name: "empty", in: []string{"ro", ""}, wantErr: "empty option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountOptions(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseMountOptions(%q) error = %v; want one with %s", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseMountOptions(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseMountOptions(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestMountOptsDataString(t *testing.T) {
	o, err := parseMountOptions([]string{"nosuid", "size=1m", "mode=755", "rbind"})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.dataString(); got != "size=1m,mode=755" {
		t.Errorf("dataString() = %q, want %q", got, "size=1m,mode=755")
	}
	if got := (mountOpts{}).dataString(); got != "" {
		t.Errorf("empty dataString() = %q", got)
	}
}

// TestFeaturesMountOptions: every option the features document advertises
// is one parseMountOptions understands rather than passes through as data.
func TestFeaturesMountOptions(t *testing.T) {
	for _, opt := range Features().MountOptions {
		o, err := parseMountOptions([]string{opt})
		if err != nil || len(o.data) != 0 {
			t.Errorf("advertised option %q: %+v, %v", opt, o, err)
		}
	}
}

func TestPlanNamespaces(t *testing.T) {
	const (
		pid    = unix.CLONE_NEWPID
		net    = unix.CLONE_NEWNET
		mnt    = unix.CLONE_NEWNS
		ipc    = unix.CLONE_NEWIPC
		uts    = unix.CLONE_NEWUTS
		user   = unix.CLONE_NEWUSER
		cgroup = unix.CLONE_NEWCGROUP
		time   = unix.CLONE_NEWTIME
	)
	ns := func(t specs.LinuxNamespaceType, path string) specs.LinuxNamespace {
		return specs.LinuxNamespace{Type: t, Path: path}
	}
	tests := []struct {
		name string
		in   []specs.LinuxNamespace
		want nsPlan
	}{
		{name: "none", in: nil, want: nsPlan{}},
		{name: "default", in: DefaultSpec().Linux.Namespaces,
			want: nsPlan{clone: pid | net | ipc | uts | mnt | cgroup, fork: true}},
		{name: "every type", in: []specs.LinuxNamespace{ns("pid", ""), ns("network", ""), ns("mount", ""), ns("ipc", ""),
			ns("uts", ""), ns("user", ""), ns("cgroup", ""), ns("time", "")},
			want: nsPlan{clone: pid | net | mnt | ipc | uts | user | cgroup | time, fork: true}},
		{name: "no pid namespace, no fork", in: []specs.LinuxNamespace{ns("mount", ""), ns("network", "")},
			want: nsPlan{clone: mnt | net}},
		{name: "joined pid namespace forks", in: []specs.LinuxNamespace{ns("mount", ""), ns("pid", "/proc/1/ns/pid")},
			want: nsPlan{clone: mnt, joins: []nsJoin{{pid, "/proc/1/ns/pid"}}, fork: true}},
		{name: "joins keep config order", in: []specs.LinuxNamespace{ns("network", "/n"), ns("ipc", "/i"), ns("uts", "/u")},
			want: nsPlan{joins: []nsJoin{{net, "/n"}, {ipc, "/i"}, {uts, "/u"}}}},
		{name: "user joined first", in: []specs.LinuxNamespace{ns("network", "/n"), ns("pid", ""), ns("mount", "/m"), ns("user", "/us")},
			want: nsPlan{clone: pid, joins: []nsJoin{{user, "/us"}, {net, "/n"}, {mnt, "/m"}}, fork: true}},
		{name: "user joined first when listed first", in: []specs.LinuxNamespace{ns("user", "/us"), ns("network", "/n")},
			want: nsPlan{joins: []nsJoin{{user, "/us"}, {net, "/n"}}}},
		{name: "new user namespace with joins", in: []specs.LinuxNamespace{ns("user", ""), ns("network", "/n"), ns("mount", "")},
			want: nsPlan{clone: user | mnt, joins: []nsJoin{{net, "/n"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planNamespaces(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("planNamespaces = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestNSFlags: the clone flags match the kernel's.
func TestNSFlags(t *testing.T) {
	want := map[specs.LinuxNamespaceType]int{
		specs.PIDNamespace: unix.CLONE_NEWPID, specs.NetworkNamespace: unix.CLONE_NEWNET,
		specs.MountNamespace: unix.CLONE_NEWNS, specs.IPCNamespace: unix.CLONE_NEWIPC,
		specs.UTSNamespace: unix.CLONE_NEWUTS, specs.UserNamespace: unix.CLONE_NEWUSER,
		specs.CgroupNamespace: unix.CLONE_NEWCGROUP, specs.TimeNamespace: unix.CLONE_NEWTIME,
	}
	if !reflect.DeepEqual(nsFlags, want) {
		t.Errorf("nsFlags = %v, want %v", nsFlags, want)
	}
	for typ := range nsFlags {
		if _, ok := procNSName[typ]; !ok {
			t.Errorf("procNSName lacks %q", typ)
		}
	}
}

func TestNSPlanEncode(t *testing.T) {
	le := func(n int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(n)) }
	tests := []struct {
		name  string
		plan  nsPlan
		lines string
	}{
		{name: "empty", plan: nsPlan{}, lines: ""},
		{name: "clone only", plan: nsPlan{clone: unix.CLONE_NEWNS | unix.CLONE_NEWUTS}, lines: "clone=67239936\n"},
		{name: "fork only", plan: nsPlan{fork: true}, lines: "fork=1\n"},
		{name: "cgroups", plan: nsPlan{cgroups: []string{"/sys/fs/cgroup/cpu/berth/x/tasks", "/sys/fs/cgroup/memory/berth/x/tasks"}},
			lines: "cgroup=/sys/fs/cgroup/cpu/berth/x/tasks\ncgroup=/sys/fs/cgroup/memory/berth/x/tasks\n"},
		{name: "everything, in wire order", plan: nsPlan{
			fork:    true,
			joins:   []nsJoin{{unix.CLONE_NEWUSER, "/proc/1/ns/user"}, {unix.CLONE_NEWNET, "/run/netns/a:b c"}},
			clone:   unix.CLONE_NEWPID | unix.CLONE_NEWNS,
			cgroups: []string{"/sys/fs/cgroup/berth/x/cgroup.procs"},
		}, lines: "clone=537001984\njoin=268435456:/proc/1/ns/user\njoin=1073741824:/run/netns/a:b c\nfork=1\ncgroup=/sys/fs/cgroup/berth/x/cgroup.procs\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.plan.encode()
			want := append(le(len(tt.lines)), tt.lines...)
			if !bytes.Equal(got, want) {
				t.Errorf("encode() = %q, want %q", got, want)
			}
			if dec, err := decodeNSPlan(got); err != nil || !reflect.DeepEqual(dec, tt.plan) {
				t.Errorf("decode(encode()) = %+v, %v; want %+v", dec, err, tt.plan)
			}
		})
	}
}

// decodeNSPlan reads a plan the way nsenter.c does: a little-endian length,
// then lines split on '\n' (empty ones skipped, as strtok does); a later
// clone= or fork= line overrides an earlier one, a join path is cut at
// sizeof(struct join.path)-1 bytes, cgroup= lines accumulate.
func decodeNSPlan(b []byte) (nsPlan, error) {
	var p nsPlan
	if len(b) < 4 {
		return p, errors.New("short plan")
	}
	n := binary.LittleEndian.Uint32(b)
	if int(n) != len(b)-4 {
		return p, fmt.Errorf("length %d, have %d bytes", n, len(b)-4)
	}
	atoi := func(s string) int { v, _ := strconv.Atoi(s); return v }
	for _, line := range strings.Split(string(b[4:]), "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "clone="):
			p.clone = atoi(line[6:])
		case strings.HasPrefix(line, "fork="):
			p.fork = atoi(line[5:]) != 0
		case strings.HasPrefix(line, "cgroup="):
			p.cgroups = append(p.cgroups, line[7:])
		case strings.HasPrefix(line, "join="):
			flag, path, ok := strings.Cut(line[5:], ":")
			if !ok {
				return p, fmt.Errorf("bad join line %q", line)
			}
			if len(path) > 511 {
				path = path[:511]
			}
			p.joins = append(p.joins, nsJoin{atoi(flag), path})
		default:
			return p, fmt.Errorf("unknown plan line %q", line)
		}
	}
	return p, nil
}

// TestNSPlanFromValidConfig: whatever namespace paths a config that passes
// Validate names, the C stage reads back exactly the plan planNamespaces
// made. A path is one line of the wire format, cut at 511 bytes by the C
// stage: a newline in it would let a config add plan lines (for instance a
// second clone= line that drops the namespaces Validate saw), and a longer
// path would join some other file.
func TestNSPlanFromValidConfig(t *testing.T) {
	dir := t.TempDir()
	newline := filepath.Join(dir, "net\nclone=0")
	mustWrite(t, newline, "")
	long := dir
	for len(long) < 600 {
		long = filepath.Join(long, strings.Repeat("d", 100))
	}
	mustMkdir(t, long)
	long = filepath.Join(long, "net")
	mustWrite(t, long, "")

	// The same file as /proc/self/ns/net, named in more than 511 bytes.
	padded := "/proc/self/ns/" + strings.Repeat("./", 300) + "net"
	for _, path := range []string{"/proc/self/ns/net", newline, long, padded} {
		spec, bundle := validBundle(t)
		spec.Linux.Namespaces[1] = specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path}
		if err := Validate(spec, bundle); err != nil {
			continue // refused: fine
		}
		plan := planNamespaces(spec.Linux.Namespaces)
		got, err := decodeNSPlan(plan.encode())
		if err != nil || !reflect.DeepEqual(got, plan) {
			t.Errorf("network namespace path %q passes Validate, but the C stage reads the plan\n%+v\nas\n%+v (%v)", path, plan, got, err)
		}
	}
}

func TestCapValue(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"CAP_CHOWN", 0, true},
		{"chown", 0, true},
		{"Cap_Chown", 0, true},
		{"cap_sys_admin", 21, true},
		{"SYS_ADMIN", 21, true},
		{"CAP_NET_BIND_SERVICE", 10, true},
		{"CAP_AUDIT_READ", 37, true},
		{"CAP_CHECKPOINT_RESTORE", 40, true},
		{"", 0, false},
		{"CAP_", 0, false},
		{"CAP_NOPE", 0, false},
		{"CAP_CAP_CHOWN", 0, false},
		{" CAP_CHOWN", 0, false},
		{"CAP_CHOWN ", 0, false},
		{"0", 0, false},
	}
	for _, tt := range tests {
		got, ok := capValue(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("capValue(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	// capNames is indexed by number: a check against the kernel's header.
	for name, v := range map[string]int{"CAP_SETPCAP": unix.CAP_SETPCAP, "CAP_MKNOD": unix.CAP_MKNOD,
		"CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_BPF": unix.CAP_BPF, "CAP_PERFMON": unix.CAP_PERFMON,
		"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ} {
		if got, _ := capValue(name); got != v {
			t.Errorf("capValue(%s) = %d, kernel says %d", name, got, v)
		}
	}
	if len(capNames) != unix.CAP_LAST_CAP+1 {
		t.Errorf("capNames has %d names, the kernel headers %d", len(capNames), unix.CAP_LAST_CAP+1)
	}
}

func TestPlanCaps(t *testing.T) {
	bit := func(cs ...int) uint64 {
		var m uint64
		for _, c := range cs {
			m |= 1 << uint(c)
		}
		return m
	}
	tests := []struct {
		name string
		last int // the kernel's last cap
		in   *specs.LinuxCapabilities
		want capSet
	}{
		{name: "nil", last: 40, in: nil, want: capSet{}},
		{name: "empty", last: 40, in: &specs.LinuxCapabilities{}, want: capSet{}},
		{name: "each set", last: 40, in: &specs.LinuxCapabilities{
			Bounding: []string{"CAP_CHOWN", "CAP_KILL"}, Effective: []string{"CAP_KILL"},
			Inheritable: []string{"CAP_SETUID"}, Permitted: []string{"CAP_SETGID"}, Ambient: []string{"CAP_NET_RAW"},
		}, want: capSet{bounding: bit(0, 5), effective: bit(5), inheritable: bit(7), permitted: bit(6), ambient: bit(13)}},
		{name: "any case, without prefix", last: 40, in: &specs.LinuxCapabilities{
			Bounding: []string{"chown", "Sys_Admin", "cap_bpf"},
		}, want: capSet{bounding: bit(0, 21, 39)}},
		{name: "duplicates", last: 40, in: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL", "kill"}},
			want: capSet{bounding: bit(5)}},
		{name: "unknown names left out", last: 40, in: &specs.LinuxCapabilities{Bounding: []string{"CAP_NOPE", "CAP_KILL"}},
			want: capSet{bounding: bit(5)}},
		{name: "highest cap", last: 40, in: &specs.LinuxCapabilities{Permitted: []string{"CAP_CHECKPOINT_RESTORE"}},
			want: capSet{permitted: bit(40)}},
		{name: "above the kernel's last cap left out", last: 37, in: &specs.LinuxCapabilities{
			Bounding: []string{"CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE", "CAP_CHOWN"},
			Ambient:  []string{"CAP_BPF"},
		}, want: capSet{bounding: bit(37, 0)}},
		{name: "every default", last: 40, in: DefaultSpec().Process.Capabilities, want: func() capSet {
			m := bit(unix.CAP_AUDIT_WRITE, unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
				unix.CAP_KILL, unix.CAP_MKNOD, unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW, unix.CAP_SETFCAP,
				unix.CAP_SETGID, unix.CAP_SETPCAP, unix.CAP_SETUID, unix.CAP_SYS_CHROOT)
			return capSet{bounding: m, effective: m, permitted: m}
		}()},
	}
	saved := lastCap
	t.Cleanup(func() { lastCap = saved })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lastCap = func() int { return tt.last }
			if got := planCaps(tt.in); got != tt.want {
				t.Errorf("planCaps = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want unix.Signal
	}{
		{"KILL", unix.SIGKILL},
		{"SIGKILL", unix.SIGKILL},
		{"kill", unix.SIGKILL},
		{"sigkill", unix.SIGKILL},
		{"Term", unix.SIGTERM},
		{"9", unix.SIGKILL},
		{"15", unix.SIGTERM},
		{"1", unix.SIGHUP},
		{"64", unix.Signal(64)},
		{"SIGUSR1", unix.SIGUSR1},
		{"WINCH", unix.SIGWINCH},
		{"0", 0},
		{"-9", 0},
		{"65", 0},
		{"99999999999999999999", 0},
		{"FOO", 0},
		{"SIGFOO", 0},
		{"SIG", 0},
		{"", 0},
		{" 9", 0},
		{"SIGSIGKILL", 0},
	}
	for _, tt := range tests {
		got, err := ParseSignal(tt.in)
		if tt.want == 0 {
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("ParseSignal(%q) = %v, %v; want an invalid-argument error", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestCheckID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"abc-1.2_x+y", true},
		{"A", true},
		{"...", true},
		{"..a", true},
		{strings.Repeat("a", 200), true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"/abs", false},
		{"a b", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"a:b", false},
		{"é", false},
	}
	for _, tt := range tests {
		err := checkID(tt.id)
		if tt.ok && err != nil {
			t.Errorf("checkID(%q): %v", tt.id, err)
		}
		if !tt.ok && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("checkID(%q) = %v; want an invalid-argument error", tt.id, err)
		}
	}
}

func TestWithDeviceRules(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	allow := func(typ string, major, minor int64) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: i64(major), Access: "rwm"}
		if minor >= 0 {
			r.Minor = i64(minor)
		}
		return r
	}
	denyAll := specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}
	defaults := []specs.LinuxDeviceCgroup{
		allow("c", 1, 3), allow("c", 1, 5), allow("c", 1, 7), allow("c", 1, 8), allow("c", 1, 9), allow("c", 5, 0),
	}
	tail := []specs.LinuxDeviceCgroup{allow("c", 5, 2), allow("c", 136, -1), allow("c", 5, 1)}
	cat := func(parts ...[]specs.LinuxDeviceCgroup) []specs.LinuxDeviceCgroup {
		var out []specs.LinuxDeviceCgroup
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}

	t.Run("no resources", func(t *testing.T) {
		spec := DefaultSpec()
		spec.Linux.Resources = nil
		if got := withDeviceRules(spec); got != nil {
			t.Errorf("withDeviceRules = %+v, want nil", got)
		}
	})
	t.Run("no device rules", func(t *testing.T) {
		spec := DefaultSpec()
		spec.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(10)}}
		spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}
		got := withDeviceRules(spec)
		if !reflect.DeepEqual(got, spec.Linux.Resources) {
			t.Errorf("withDeviceRules = %+v, want the config's resources unchanged", got)
		}
	})
	tests := []struct {
		name    string
		rules   []specs.LinuxDeviceCgroup
		devices []specs.LinuxDevice
		want    []specs.LinuxDeviceCgroup
	}{
		{name: "deny all", rules: []specs.LinuxDeviceCgroup{denyAll}, want: cat([]specs.LinuxDeviceCgroup{denyAll}, defaults, tail)},
		{name: "config devices after the defaults", rules: []specs.LinuxDeviceCgroup{denyAll},
			devices: []specs.LinuxDevice{
				{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229},
				{Path: "/dev/fifo", Type: "p"}, // no cgroup rule for a fifo
				{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0},
			},
			want: cat([]specs.LinuxDeviceCgroup{denyAll}, defaults, []specs.LinuxDeviceCgroup{allow("c", 10, 229), allow("b", 8, 0)}, tail)},
		{name: "config rules first, in order", rules: []specs.LinuxDeviceCgroup{denyAll, allow("c", 4, -1)},
			want: cat([]specs.LinuxDeviceCgroup{denyAll, allow("c", 4, -1)}, defaults, tail)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := DefaultSpec()
			spec.Linux.Resources = &specs.LinuxResources{Devices: tt.rules}
			spec.Linux.Devices = tt.devices
			before := append([]specs.LinuxDeviceCgroup{}, tt.rules...)
			got := withDeviceRules(spec)
			if got == nil || !reflect.DeepEqual(got.Devices, tt.want) {
				t.Fatalf("withDeviceRules devices =\n%s\nwant\n%s", fmtRules(got), fmtRules(&specs.LinuxResources{Devices: tt.want}))
			}
			if !reflect.DeepEqual(spec.Linux.Resources.Devices, before) {
				t.Errorf("withDeviceRules changed the config's rules to %s", fmtRules(spec.Linux.Resources))
			}
		})
	}
}

// TestWithDeviceRulesTypes: linux.devices accepts type "u" (an unbuffered
// character device, as mknod calls it), but a device cgroup rule only
// knows a, b and c: the rule added for a "u" device must be a "c" rule, or
// cgroups refuses the resources when the container is ready.
func TestWithDeviceRulesTypes(t *testing.T) {
	spec, bundle := validBundle(t)
	spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/u", Type: "u", Major: 1, Minor: 3}}
	if err := Validate(spec, bundle); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	spec.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	for i, r := range withDeviceRules(spec).Devices {
		switch r.Type {
		case "", "a", "b", "c":
		default:
			t.Errorf("device rule %d has type %q, which the device cgroup does not know", i, r.Type)
		}
	}
}

func fmtRules(r *specs.LinuxResources) string {
	if r == nil {
		return "<nil>"
	}
	var b strings.Builder
	num := func(p *int64) string {
		if p == nil {
			return "*"
		}
		return strconv.FormatInt(*p, 10)
	}
	for _, d := range r.Devices {
		fmt.Fprintf(&b, "  allow=%v %s %s:%s %s\n", d.Allow, d.Type, num(d.Major), num(d.Minor), d.Access)
	}
	return b.String()
}

func TestHostRoot(t *testing.T) {
	m := func(c, h, n uint32) specs.LinuxIDMapping {
		return specs.LinuxIDMapping{ContainerID: c, HostID: h, Size: n}
	}
	tests := []struct {
		name     string
		uid, gid []specs.LinuxIDMapping
		wantUID  int
		wantGID  int
	}{
		{name: "no mappings"},
		{name: "rootless", uid: []specs.LinuxIDMapping{m(0, 1000, 1)}, gid: []specs.LinuxIDMapping{m(0, 1001, 1)}, wantUID: 1000, wantGID: 1001},
		{name: "range", uid: []specs.LinuxIDMapping{m(0, 100000, 65536)}, gid: []specs.LinuxIDMapping{m(0, 200000, 65536)}, wantUID: 100000, wantGID: 200000},
		{name: "root not first", uid: []specs.LinuxIDMapping{m(1, 100001, 65535), m(0, 1000, 1)},
			gid: []specs.LinuxIDMapping{m(1, 100001, 65535), m(0, 1000, 1)}, wantUID: 1000, wantGID: 1000},
		{name: "uid only", uid: []specs.LinuxIDMapping{m(0, 5, 1)}, wantUID: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := DefaultSpec()
			spec.Linux.UIDMappings, spec.Linux.GIDMappings = tt.uid, tt.gid
			uid, gid := hostRoot(spec)
			if uid != tt.wantUID || gid != tt.wantGID {
				t.Errorf("hostRoot = %d, %d; want %d, %d", uid, gid, tt.wantUID, tt.wantGID)
			}
		})
	}
}

func TestToRootless(t *testing.T) {
	spec, bundle := validBundle(t)
	ToRootless(spec)
	if hasNamespace(spec, specs.NetworkNamespace) || !hasNamespace(spec, specs.UserNamespace) {
		t.Errorf("namespaces = %v; want a user namespace and no network namespace", spec.Linux.Namespaces)
	}
	if uid, gid := hostRoot(spec); uid != os.Getuid() || gid != os.Getgid() {
		t.Errorf("container root maps to %d:%d, want the caller %d:%d", uid, gid, os.Getuid(), os.Getgid())
	}
	for _, m := range spec.Mounts {
		if m.Type == "cgroup" {
			t.Errorf("cgroup mount kept: %+v", m)
		}
	}
	if err := Validate(spec, bundle); err != nil {
		t.Errorf("Validate(rootless): %v", err)
	}
}

// TestResolveInRootMore adds to TestResolveInRoot: chains of relative
// links, absolute targets with trailing components, empty and "."
// components, and the hop limit.
func TestResolveInRootMore(t *testing.T) {
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "a/b/c"))
	mustMkdir(t, filepath.Join(root, "etc"))
	mustWrite(t, filepath.Join(root, "file"), "")
	mustSymlink(t, "b", filepath.Join(root, "a/l1"))              // a/l1 -> a/b
	mustSymlink(t, "l1/c", filepath.Join(root, "a/l2"))           // a/l2 -> a/b/c
	mustSymlink(t, "../l2", filepath.Join(root, "a/b/l3"))        // a/b/l3 -> a/b/c
	mustSymlink(t, "./a//l2/", filepath.Join(root, "chain"))      // chain -> a/b/c
	mustSymlink(t, "/a/b/c/new/x", filepath.Join(root, "absnew")) // absnew -> missing below a/b/c
	mustSymlink(t, "/a/../etc", filepath.Join(root, "absdot"))    // absdot -> etc
	mustSymlink(t, "/etc", filepath.Join(root, "hostetc"))        // re-rooted, not the host's
	mustSymlink(t, ".", filepath.Join(root, "self"))
	mustSymlink(t, "../../..", filepath.Join(root, "a/b/c/top"))    // exactly the root
	mustSymlink(t, "../../../..", filepath.Join(root, "a/b/c/up3")) // climbs above root
	mustSymlink(t, "/a/b/c/up3", filepath.Join(root, "viaabs"))     // reaches up3 through an absolute link
	// A chain of 40 links resolves; 41 is too many.
	for i := 0; i < 41; i++ {
		mustSymlink(t, fmt.Sprintf("h%d", i+1), filepath.Join(root, fmt.Sprintf("h%d", i)))
	}
	mustMkdir(t, filepath.Join(root, "h41"))

	tests := []struct {
		in      string
		want    string
		escapes bool
		err     bool
	}{
		{in: "", want: ""},
		{in: ".", want: ""},
		{in: "//", want: ""},
		{in: "/./a/./b//c/", want: "a/b/c"},
		{in: "a/b/c", want: "a/b/c"},
		{in: "/a/l1/c", want: "a/b/c"},
		{in: "/a/l2", want: "a/b/c"},
		{in: "/a/l2/new", want: "a/b/c/new"},
		{in: "/a/b/l3/x/y", want: "a/b/c/x/y"},
		{in: "/chain", want: "a/b/c"},
		{in: "/absnew", want: "a/b/c/new/x"},
		{in: "/absnew/more/../deeper", want: "a/b/c/new/x/deeper"},
		{in: "/absdot/passwd", want: "etc/passwd"},
		{in: "/hostetc/passwd", want: "etc/passwd"},
		{in: "/self/self/a/b", want: "a/b"},
		{in: "/a/b/c/at-root", want: "a/b/c/at-root"},
		{in: "/a/b/c/top", want: ""},
		{in: "/a/b/c/top/a/l1", want: "a/b"},
		{in: "/a/b/c/up3", escapes: true},
		{in: "/a/b/c/up3/etc", escapes: true},
		{in: "/viaabs", escapes: true},
		{in: "/h1", want: "h41"},
		{in: "/h0", err: true},
		{in: "/file/x", err: true}, // not a directory: an error, not an escape
	}
	for _, tt := range tests {
		got, err := resolveInRoot(root, tt.in)
		switch {
		case tt.escapes:
			if !errors.Is(err, errEscapes) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("resolveInRoot(%q) = %q, %v; want an escape error", tt.in, got, err)
			}
		case tt.err:
			if err == nil || errors.Is(err, errEscapes) {
				t.Errorf("resolveInRoot(%q) = %q, %v; want an error other than an escape", tt.in, got, err)
			}
		case err != nil:
			t.Errorf("resolveInRoot(%q): %v", tt.in, err)
		default:
			if want := filepath.Join(root, tt.want); got != want {
				t.Errorf("resolveInRoot(%q) = %q, want %q", tt.in, got, want)
			}
		}
	}
}

// TestResolveInRootDotDotAfterLink: ".." after a symlink goes up from
// where the link led, as the kernel (and runc's securejoin) resolve it, not
// from the link itself: /chain/.. is /a/b when chain leads to /a/b/c.
func TestResolveInRootDotDotAfterLink(t *testing.T) {
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "a/b/c"))
	mustSymlink(t, "a/b/c", filepath.Join(root, "chain"))
	for in, want := range map[string]string{"/chain/..": "a/b", "/chain/../x": "a/b/x"} {
		got, err := resolveInRoot(root, in)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("resolveInRoot(%q) = %q, %v; want %q", in, got, err, filepath.Join(root, want))
		}
	}
}
