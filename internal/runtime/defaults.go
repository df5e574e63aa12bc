package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultCaps are the capabilities runc's and Docker's default configs
// keep for a container process.
var defaultCaps = []string{
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_CHROOT",
}

// DefaultSpec is the config `berth runtime spec` writes: runc's default,
// running `sh` in a busybox-like rootfs with every namespace but user.
func DefaultSpec() *specs.Spec {
	caps := append([]string{}, defaultCaps...)
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{
			Terminal: true,
			User:     specs.User{},
			Args:     []string{"sh"},
			Env:      []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Hostname: "berth",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
				"/proc/scsi", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
		},
	}
}

// ToRootless adapts a default config for an unprivileged user: a user
// namespace mapping the caller to root, no network namespace of its own.
func ToRootless(spec *specs.Spec) {
	var nss []specs.LinuxNamespace
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type != specs.NetworkNamespace && ns.Type != specs.UserNamespace {
			nss = append(nss, ns)
		}
	}
	spec.Linux.Namespaces = append(nss, specs.LinuxNamespace{Type: specs.UserNamespace})
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(uidSelf()), Size: 1}}
	spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(gidSelf()), Size: 1}}
	spec.Linux.Resources = nil
	var mounts []specs.Mount
	for _, m := range spec.Mounts {
		if m.Destination == "/sys" {
			m = specs.Mount{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		}
		if m.Type == "cgroup" {
			continue
		}
		mounts = append(mounts, m)
	}
	spec.Mounts = mounts
}

// Features describes what this runtime implements, in the shape of the
// runtime-spec's features document (runc features).
func Features() *FeaturesDoc {
	var nss []string
	for t := range nsFlags {
		nss = append(nss, string(t))
	}
	var opts []string
	for o := range mountFlagTable {
		opts = append(opts, o)
	}
	for o := range propagationTable {
		opts = append(opts, o)
	}
	opts = append(opts, "bind", "rbind")
	return &FeaturesDoc{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  opts,
		Linux: FeaturesLinux{
			Namespaces:   nss,
			Capabilities: capNames,
		},
	}
}

// FeaturesDoc is the runtime-spec features document.
type FeaturesDoc struct {
	OCIVersionMin string        `json:"ociVersionMin"`
	OCIVersionMax string        `json:"ociVersionMax"`
	Hooks         []string      `json:"hooks"`
	MountOptions  []string      `json:"mountOptions"`
	Linux         FeaturesLinux `json:"linux"`
}

// FeaturesLinux is the Linux part of FeaturesDoc.
type FeaturesLinux struct {
	Namespaces   []string `json:"namespaces"`
	Capabilities []string `json:"capabilities"`
}
