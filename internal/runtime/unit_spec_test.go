package runtime

import (
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

// validBundle returns berth's default config and a bundle holding an empty
// rootfs directory, which together pass Validate.
//
// linux.resources is dropped: whether it passes depends on the host's
// cgroups (mode, mounted controllers), which internal/cgroups tests. The
// resource cases below fail in the host-independent checks.
func validBundle(t *testing.T) (*specs.Spec, string) {
	t.Helper()
	bundle := t.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := DefaultSpec()
	spec.Linux.Resources = nil
	return spec, bundle
}

func ptr[T any](v T) *T { return &v }

func TestValidateRefuses(t *testing.T) {
	// Indexes of what the cases append to DefaultSpec's lists.
	const nextNS, nextMount = 6, 7
	if n := len(DefaultSpec().Linux.Namespaces); n != nextNS {
		t.Fatalf("DefaultSpec has %d namespaces; update nextNS", n)
	}
	if n := len(DefaultSpec().Mounts); n != nextMount {
		t.Fatalf("DefaultSpec has %d mounts; update nextMount", n)
	}
	addNS := func(ns ...specs.LinuxNamespace) func(*specs.Spec, string) {
		return func(s *specs.Spec, _ string) { s.Linux.Namespaces = append(s.Linux.Namespaces, ns...) }
	}
	addMount := func(m specs.Mount) func(*specs.Spec, string) {
		return func(s *specs.Spec, _ string) { s.Mounts = append(s.Mounts, m) }
	}
	withoutNS := func(s *specs.Spec, t specs.LinuxNamespaceType) {
		var out []specs.LinuxNamespace
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != t {
				out = append(out, ns)
			}
		}
		s.Linux.Namespaces = out
	}
	sysctl := func(key string, drop specs.LinuxNamespaceType) func(*specs.Spec, string) {
		return func(s *specs.Spec, _ string) {
			withoutNS(s, drop)
			s.Linux.Sysctl = map[string]string{key: "1"}
		}
	}

	tests := []struct {
		name   string
		mutate func(s *specs.Spec, bundle string)
		field  string // the error must start with "<field>: "
	}{
		{"empty version", func(s *specs.Spec, _ string) { s.Version = "" }, "ociVersion"},
		{"version 2", func(s *specs.Spec, _ string) { s.Version = "2.0.0" }, "ociVersion"},
		{"version 0.x", func(s *specs.Spec, _ string) { s.Version = "0.6.0" }, "ociVersion"},
		{"version 10", func(s *specs.Spec, _ string) { s.Version = "10.0.0" }, "ociVersion"},

		{"no root", func(s *specs.Spec, _ string) { s.Root = nil }, "root.path"},
		{"empty root path", func(s *specs.Spec, _ string) { s.Root.Path = "" }, "root.path"},
		{"missing root", func(s *specs.Spec, _ string) { s.Root.Path = "nonexistent" }, "root.path"},
		{"missing absolute root", func(s *specs.Spec, b string) { s.Root.Path = filepath.Join(b, "nonexistent") }, "root.path"},
		{"root is a file", func(s *specs.Spec, b string) {
			mustWrite(t, filepath.Join(b, "file"), "")
			s.Root.Path = "file"
		}, "root.path"},

		{"no process", func(s *specs.Spec, _ string) { s.Process = nil }, "process"},
		{"no args", func(s *specs.Spec, _ string) { s.Process.Args = nil }, "process.args"},
		{"empty args", func(s *specs.Spec, _ string) { s.Process.Args = []string{} }, "process.args"},
		{"empty cwd", func(s *specs.Spec, _ string) { s.Process.Cwd = "" }, "process.cwd"},
		{"relative cwd", func(s *specs.Spec, _ string) { s.Process.Cwd = "home" }, "process.cwd"},
		{"unknown bounding cap", func(s *specs.Spec, _ string) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_NOPE")
		}, "process.capabilities.bounding"},
		{"unknown effective cap", func(s *specs.Spec, _ string) {
			s.Process.Capabilities.Effective = []string{"CAP_CHOWN", "CAP_"}
		}, "process.capabilities.effective"},
		{"unknown inheritable cap", func(s *specs.Spec, _ string) {
			s.Process.Capabilities.Inheritable = []string{""}
		}, "process.capabilities.inheritable"},
		{"unknown permitted cap", func(s *specs.Spec, _ string) {
			s.Process.Capabilities.Permitted = []string{"CAP_CHOWN_"}
		}, "process.capabilities.permitted"},
		{"unknown ambient cap", func(s *specs.Spec, _ string) {
			s.Process.Capabilities.Ambient = []string{"sys-admin"}
		}, "process.capabilities.ambient"},
		{"unknown rlimit", func(s *specs.Spec, _ string) { s.Process.Rlimits[0].Type = "RLIMIT_FOO" }, "process.rlimits[0].type"},
		{"lowercase rlimit", func(s *specs.Spec, _ string) { s.Process.Rlimits[0].Type = "rlimit_nofile" }, "process.rlimits[0].type"},
		{"soft above hard", func(s *specs.Spec, _ string) { s.Process.Rlimits[0].Soft = 1025 }, "process.rlimits[0]"},
		{"second rlimit soft above hard", func(s *specs.Spec, _ string) {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_CORE", Soft: 2, Hard: 1})
		}, "process.rlimits[1]"},
		{"oomScoreAdj above 1000", func(s *specs.Spec, _ string) { s.Process.OOMScoreAdj = ptr(1001) }, "process.oomScoreAdj"},
		{"oomScoreAdj below -1000", func(s *specs.Spec, _ string) { s.Process.OOMScoreAdj = ptr(-1001) }, "process.oomScoreAdj"},
		{"ioPriority", func(s *specs.Spec, _ string) {
			s.Process.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_IDLE}
		}, "process.ioPriority"},
		{"scheduler", func(s *specs.Spec, _ string) { s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedOther} }, "process.scheduler"},

		{"no linux", func(s *specs.Spec, _ string) { s.Linux = nil }, "linux"},
		{"unknown namespace", addNS(specs.LinuxNamespace{Type: "foo"}), "linux.namespaces[6].type"},
		{"empty namespace type", addNS(specs.LinuxNamespace{}), "linux.namespaces[6].type"},
		{"duplicate namespace", addNS(specs.LinuxNamespace{Type: specs.PIDNamespace}), "linux.namespaces[6].type"},
		{"duplicate namespace by path", addNS(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}), "linux.namespaces[6].type"},
		{"relative namespace path", func(s *specs.Spec, _ string) {
			withoutNS(s, specs.UTSNamespace) // the hostname needs uts
			s.Hostname = ""
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UTSNamespace, Path: "proc/self/ns/uts"})
		}, "linux.namespaces[5].path"},
		{"missing namespace path", func(s *specs.Spec, b string) {
			s.Linux.Namespaces[1].Path = filepath.Join(b, "no-such-ns")
		}, "linux.namespaces[1].path"},
		{"uid mappings without user namespace", func(s *specs.Spec, _ string) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
		}, "linux.uidMappings"},
		{"gid mappings without user namespace", func(s *specs.Spec, _ string) {
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
		}, "linux.uidMappings"},
		{"user namespace without mappings", addNS(specs.LinuxNamespace{Type: specs.UserNamespace}), "linux.uidMappings"},
		{"user namespace without gid mappings", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
		}, "linux.uidMappings"},
		{"host sysctl", sysctl("kernel.pid_max", ""), "linux.sysctl.kernel.pid_max"},
		{"vm sysctl", sysctl("vm.swappiness", ""), "linux.sysctl.vm.swappiness"},
		{"net sysctl without network namespace", sysctl("net.ipv4.ip_forward", specs.NetworkNamespace), "linux.sysctl.net.ipv4.ip_forward"},
		{"ipc sysctl without ipc namespace", sysctl("kernel.shmmax", specs.IPCNamespace), "linux.sysctl.kernel.shmmax"},
		{"mqueue sysctl without ipc namespace", sysctl("fs.mqueue.msg_max", specs.IPCNamespace), "linux.sysctl.fs.mqueue.msg_max"},
		{"uts sysctl without uts namespace", func(s *specs.Spec, b string) {
			sysctl("kernel.domainname", specs.UTSNamespace)(s, b)
			s.Hostname = ""
		}, "linux.sysctl.kernel.domainname"},
		{"net sysctl climbing", sysctl("net.ipv4/../../kernel/pid_max", ""), "linux.sysctl.net.ipv4/../../kernel/pid_max"},
		{"unknown device type", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "x", Major: 10, Minor: 229}}
		}, "linux.devices[0].type"},
		{"empty device type", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Major: 10, Minor: 229}}
		}, "linux.devices[0].type"},
		{"relative device path", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "dev/fuse", Type: "c", Major: 10, Minor: 229}}
		}, "linux.devices[0].path"},
		{"second device bad", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}, {Path: "", Type: "c"}}
		}, "linux.devices[1].path"},
		{"negative memory limit", func(s *specs.Spec, _ string) {
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-5))}}
		}, "linux.resources.memory.limit"},
		{"bad device rule", func(s *specs.Spec, _ string) {
			s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Type: "z"}}}
		}, "linux.resources.devices[0]"},
		{"seccomp bad default action", func(s *specs.Spec, _ string) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_FOO"}
		}, "linux.seccomp.defaultAction"},
		{"seccomp missing default action", func(s *specs.Spec, _ string) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{}
		}, "linux.seccomp.defaultAction"},
		{"seccomp bad rule action", func(s *specs.Spec, _ string) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: "SCMP_ACT_NOPE"}}}
		}, "linux.seccomp.syscalls[0].action"},
		{"seccomp rule without names", func(s *specs.Spec, _ string) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{{Action: specs.ActErrno}}}
		}, "linux.seccomp.syscalls[0].names"},
		{"rootfs propagation", func(s *specs.Spec, _ string) { s.Linux.RootfsPropagation = "rshared,rslave" }, "linux.rootfsPropagation"},
		{"rootfs propagation case", func(s *specs.Spec, _ string) { s.Linux.RootfsPropagation = "Private" }, "linux.rootfsPropagation"},
		{"intelRdt", func(s *specs.Spec, _ string) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{} }, "linux.intelRdt"},
		{"netDevices", func(s *specs.Spec, _ string) {
			s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth1": {}}
		}, "linux.netDevices"},
		{"memoryPolicy", func(s *specs.Spec, _ string) {
			s.Linux.MemoryPolicy = &specs.LinuxMemoryPolicy{Mode: specs.MpolBind, Nodes: "0"}
		}, "linux.memoryPolicy"},
		{"personality domain", func(s *specs.Spec, _ string) {
			s.Linux.Personality = &specs.LinuxPersonality{Domain: "LINUX64"}
		}, "linux.personality.domain"},

		{"mount without destination", addMount(specs.Mount{Type: "tmpfs", Source: "tmpfs"}), "mounts[7].destination"},
		{"mount through an escaping symlink", func(s *specs.Spec, b string) {
			mustSymlink(t, "../../../../../../etc", filepath.Join(b, "rootfs", "evil"))
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/evil/passwd", Type: "bind", Source: "/etc/passwd", Options: []string{"bind"}})
		}, "mounts[7].destination"},
		{"mount on an escaping symlink", func(s *specs.Spec, b string) {
			mustMkdir(t, filepath.Join(b, "rootfs", "a", "b"))
			mustSymlink(t, "../../..", filepath.Join(b, "rootfs", "a", "b", "up"))
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/a/b/up", Type: "tmpfs", Source: "tmpfs"})
		}, "mounts[7].destination"},
		{"escape in an earlier mount", func(s *specs.Spec, b string) {
			mustMkdir(t, filepath.Join(b, "rootfs", "dev"))
			mustSymlink(t, "../..", filepath.Join(b, "rootfs", "dev", "pts"))
		}, "mounts[2].destination"},
		{"idmap option", addMount(specs.Mount{Destination: "/data", Type: "bind", Source: "/", Options: []string{"rbind", "idmap"}}), "mounts[7].options"},
		{"ridmap option", addMount(specs.Mount{Destination: "/data", Type: "tmpfs", Source: "tmpfs", Options: []string{"ridmap"}}), "mounts[7].options"},
		{"empty option", addMount(specs.Mount{Destination: "/data", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", ""}}), "mounts[7].options"},
		{"missing bind source", func(s *specs.Spec, b string) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: filepath.Join(b, "nope")})
		}, "mounts[7].source"},
		{"missing relative bind source", addMount(specs.Mount{Destination: "/data", Type: "bind", Source: "nope"}), "mounts[7].source"},
		{"missing rbind source, type none", func(s *specs.Spec, b string) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "none", Source: filepath.Join(b, "nope"), Options: []string{"rbind", "ro"}})
		}, "mounts[7].source"},
		{"missing bind source, no type", func(s *specs.Spec, b string) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Source: filepath.Join(b, "nope"), Options: []string{"bind"}})
		}, "mounts[7].source"},

		{"hostname without uts", func(s *specs.Spec, _ string) { withoutNS(s, specs.UTSNamespace) }, "hostname"},
		{"domainname without uts", func(s *specs.Spec, _ string) {
			withoutNS(s, specs.UTSNamespace)
			s.Hostname = ""
			s.Domainname = "example.org"
		}, "domainname"},

		{"relative prestart hook", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "bin/true"}}}
		}, "hooks.prestart[0].path"},
		{"empty createRuntime hook path", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/true"}, {Path: ""}}}
		}, "hooks.createRuntime[1].path"},
		{"relative createContainer hook", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{CreateContainer: []specs.Hook{{Path: "true"}}}
		}, "hooks.createContainer[0].path"},
		{"relative startContainer hook", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "./true"}}}
		}, "hooks.startContainer[0].path"},
		{"zero poststart timeout", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: "/bin/true", Timeout: ptr(0)}}}
		}, "hooks.poststart[0].timeout"},
		{"negative poststop timeout", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true", Timeout: ptr(5)}, {Path: "/bin/true", Timeout: ptr(-1)}}}
		}, "hooks.poststop[1].timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, bundle := validBundle(t)
			tt.mutate(spec, bundle)
			err := Validate(spec, bundle)
			if err == nil {
				t.Fatalf("Validate passed; want an error naming %s", tt.field)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("Validate error %q does not start with %q", err, tt.field+": ")
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("Validate error %q is not errdefs.ErrInvalidArgument", err)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *specs.Spec, bundle string)
	}{
		{"default", func(*specs.Spec, string) {}},
		{"version 1.0.0", func(s *specs.Spec, _ string) { s.Version = "1.0.0" }},
		{"version 1.0.2", func(s *specs.Spec, _ string) { s.Version = "1.0.2" }},
		{"version 1.0.2-dev", func(s *specs.Spec, _ string) { s.Version = "1.0.2-dev" }},
		{"version 1.3.0", func(s *specs.Spec, _ string) { s.Version = "1.3.0" }},
		{"absolute root", func(s *specs.Spec, b string) { s.Root.Path = filepath.Join(b, "rootfs") }},
		{"relative root with dot", func(s *specs.Spec, _ string) { s.Root.Path = "./rootfs/" }},
		{"root through a symlink", func(s *specs.Spec, b string) {
			mustSymlink(t, "rootfs", filepath.Join(b, "link"))
			s.Root.Path = "link"
		}},
		{"minimal", func(s *specs.Spec, _ string) {
			*s = specs.Spec{Version: "1.0.0", Root: s.Root, Process: &specs.Process{Args: []string{"true"}, Cwd: "/"}, Linux: &specs.Linux{}}
		}},
		{"caps in any case, without prefix", func(s *specs.Spec, _ string) {
			s.Process.Capabilities = &specs.LinuxCapabilities{
				Bounding: []string{"chown", "Cap_Kill", "CAP_CHECKPOINT_RESTORE"}, Ambient: []string{"net_bind_service"},
			}
		}},
		{"no capabilities", func(s *specs.Spec, _ string) { s.Process.Capabilities = nil }},
		{"soft equals hard", func(s *specs.Spec, _ string) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Soft: 7, Hard: 7}, {Type: "RLIMIT_RTTIME", Soft: 0, Hard: 0}}
		}},
		{"oomScoreAdj -1000", func(s *specs.Spec, _ string) { s.Process.OOMScoreAdj = ptr(-1000) }},
		{"oomScoreAdj 1000", func(s *specs.Spec, _ string) { s.Process.OOMScoreAdj = ptr(1000) }},
		{"every namespace type", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace}, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		}},
		{"rootless", func(s *specs.Spec, _ string) { ToRootless(s) }},
		{"joined namespaces", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces[1].Path = "/proc/self/ns/net"
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/self/ns/user"})
		}},
		{"no namespaces", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = nil
			s.Hostname = ""
		}},
		{"namespaced sysctls", func(s *specs.Spec, _ string) {
			s.Linux.Sysctl = map[string]string{
				"net.ipv4.ip_forward": "1", "net.core.somaxconn": "1024", "kernel.shmmax": "1", "kernel.msgmax": "1",
				"kernel.sem": "1 2 3 4", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "10",
				"kernel.hostname": "h", "kernel.domainname": "d",
			}
		}},
		{"devices of every type", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{
				{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}, {Path: "/dev/sda", Type: "b", Major: 8},
				{Path: "/dev/u", Type: "u", Major: 1, Minor: 3}, {Path: "/dev/fifo", Type: "p"},
			}
		}},
		{"every propagation", func(s *specs.Spec, _ string) { s.Linux.RootfsPropagation = "runbindable" }},
		{"personality", func(s *specs.Spec, _ string) { s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32} }},
		{"seccomp", func(s *specs.Spec, _ string) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{{Names: []string{"kexec_load"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(1))}}}
		}},
		{"resources without devices", func(s *specs.Spec, _ string) { s.Linux.Resources = &specs.LinuxResources{} }},
		{"relative mount destination", func(s *specs.Spec, _ string) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "data/cache", Type: "tmpfs", Source: "tmpfs"})
		}},
		{"mount destination climbing lexically", func(s *specs.Spec, _ string) {
			// "/.." is "/" in the container too.
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/../../data", Type: "tmpfs", Source: "tmpfs"})
		}},
		{"mount through an absolute symlink", func(s *specs.Spec, b string) {
			// Absolute targets start again at the container's root.
			mustSymlink(t, "/", filepath.Join(b, "rootfs", "hostroot"))
			mustSymlink(t, "/etc/", filepath.Join(b, "rootfs", "etc2"))
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc2/hosts", Type: "tmpfs", Source: "tmpfs"})
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/hostroot/etc/hosts", Type: "tmpfs", Source: "tmpfs"})
		}},
		{"mount through a relative symlink", func(s *specs.Spec, b string) {
			mustMkdir(t, filepath.Join(b, "rootfs", "var", "lib"))
			mustSymlink(t, "var/lib", filepath.Join(b, "rootfs", "varlib"))
			mustSymlink(t, "../lib", filepath.Join(b, "rootfs", "var", "lib2"))
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/var/lib2/x", Type: "tmpfs", Source: "tmpfs"})
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/varlib/data", Type: "tmpfs", Source: "tmpfs"})
		}},
		{"bind source relative to the bundle", func(s *specs.Spec, b string) {
			mustMkdir(t, filepath.Join(b, "data"))
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}})
		}},
		{"absolute bind source", func(s *specs.Spec, b string) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "none", Source: b, Options: []string{"bind"}})
		}},
		{"non-bind source need not exist", func(s *specs.Spec, _ string) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "tmpfs", Source: "no-such-thing"})
		}},
		{"ignored and data options", func(s *specs.Spec, _ string) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "tmpfs", Source: "tmpfs",
				Options: []string{"tmpcopyup", "x-mount.mkdir", "size=1m", "mode=755", "rprivate", "defaults"}})
		}},
		{"hooks", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{
				Prestart: []specs.Hook{{Path: "/bin/true"}}, CreateRuntime: []specs.Hook{{Path: "/bin/true", Timeout: ptr(1)}},
				Poststop: []specs.Hook{{Path: "/does/not/need/to/exist/yet"}},
			}
		}},
		{"empty hooks", func(s *specs.Spec, _ string) { s.Hooks = &specs.Hooks{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, bundle := validBundle(t)
			tt.mutate(spec, bundle)
			if err := Validate(spec, bundle); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestValidateDefaultResources checks DefaultSpec as written, device rules
// included, where the host's cgroups can run them.
func TestValidateDefaultResources(t *testing.T) {
	spec, bundle := validBundle(t)
	spec.Linux.Resources = DefaultSpec().Linux.Resources
	err := Validate(spec, bundle)
	if errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Skipf("host cgroups cannot run the default device rules: %v", err)
	}
	if err != nil {
		t.Fatalf("Validate(DefaultSpec()): %v", err)
	}
}

// TestValidateDoesNotChangeSpec: Validate resolves relative paths for its
// own checks only; Create resolves them again from the spec.
func TestValidateDoesNotChangeSpec(t *testing.T) {
	spec, bundle := validBundle(t)
	mustMkdir(t, filepath.Join(bundle, "data"))
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "data", Options: []string{"bind"}})
	if err := Validate(spec, bundle); err != nil {
		t.Fatal(err)
	}
	if got := spec.Mounts[len(spec.Mounts)-1].Source; got != "data" {
		t.Errorf("Validate rewrote the bind source to %q", got)
	}
	if spec.Root.Path != "rootfs" {
		t.Errorf("Validate rewrote root.path to %q", spec.Root.Path)
	}
}

// TestValidateProcessArgsOnLinux: process.commandLine is a Windows field;
// berth's init execs process.args[0], so a Linux config without args must
// be refused before anything is created.
func TestValidateProcessArgsOnLinux(t *testing.T) {
	spec, bundle := validBundle(t)
	spec.Process.Args = nil
	spec.Process.CommandLine = "sh -c true"
	err := Validate(spec, bundle)
	if err == nil || !strings.HasPrefix(err.Error(), "process.args: ") {
		t.Errorf("Validate with commandLine and no args = %v; want a process.args error (init indexes process.args[0])", err)
	}
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error; none means success
	}{
		{name: "default", in: `{"ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}`},
		{name: "unknown fields ignored", in: `{"ociVersion":"1.0.0","vendorExtension":{"x":[1,2]},"linux":{"newThing":true}}`},
		{name: "null", in: `null`},
		{name: "empty object", in: `{}`},
		{name: "empty", in: ``, want: []string{"malformed JSON at byte 0"}},
		{name: "truncated", in: `{"ociVersion":`, want: []string{"malformed JSON at byte 14"}},
		{name: "missing value", in: `{"ociVersion":}`, want: []string{"malformed JSON at byte 15"}},
		{name: "trailing comma", in: `{"process":{"args":["sh",]}}`, want: []string{"malformed JSON at byte 26"}},
		{name: "trailing garbage", in: `{} x`, want: []string{"malformed JSON at byte 4"}},
		{name: "version as number", in: `{"ociVersion":1}`, want: []string{"field ociVersion", "number", "string"}},
		{name: "args as string", in: `{"process":{"args":"sh"}}`, want: []string{"field process.args", "string", "[]string"}},
		{name: "uid as string", in: `{"process":{"user":{"uid":"0"}}}`, want: []string{"field process.user.uid", "string", "uint32"}},
		{name: "negative uid", in: `{"process":{"user":{"uid":-1}}}`, want: []string{"field process.user.uid", "number -1", "uint32"}},
		{name: "namespaces as object", in: `{"linux":{"namespaces":{"type":"pid"}}}`, want: []string{"field linux.namespaces", "object"}},
		{name: "mount option as number", in: `{"mounts":[{"destination":"/x","options":[1]}]}`, want: []string{"field mounts.options", "number"}},
		{name: "terminal as string", in: `{"process":{"terminal":"yes"}}`, want: []string{"field process.terminal", "bool"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseSpec([]byte(tt.in))
			if len(tt.want) == 0 {
				if err != nil || spec == nil {
					t.Fatalf("ParseSpec = %v, %v; want a spec", spec, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseSpec passed; want an error with %q", tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %q is not errdefs.ErrInvalidArgument", err)
			}
			if !strings.HasPrefix(err.Error(), "config.json: ") {
				t.Errorf("error %q does not start with config.json", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadSpec(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadSpec(dir); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "berth runtime spec") {
		t.Errorf("LoadSpec without config.json = %v; want ErrNotFound suggesting `berth runtime spec`", err)
	}
	mustWrite(t, filepath.Join(dir, "config.json"), `{"ociVersion":"1.0.0","hostname":"h"}`)
	spec, err := LoadSpec(dir)
	if err != nil || spec.Hostname != "h" {
		t.Errorf("LoadSpec = %+v, %v", spec, err)
	}
	mustWrite(t, filepath.Join(dir, "config.json"), `{"hostname":`)
	if _, err := LoadSpec(dir); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("LoadSpec of malformed config.json = %v; want ErrInvalidArgument", err)
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestValidateDeviceNumbers: linux.devices entries are made with mknod
// and allowed in the device cgroup with their own numbers. A negative
// number is no device (and -1 is the cgroup's wildcard: withDeviceRules
// would allow every device of that type), and one above 32 bits does not
// fit dev_t, so Validate must refuse both.
func TestValidateDeviceNumbers(t *testing.T) {
	for _, d := range []specs.LinuxDevice{
		{Path: "/dev/x", Type: "c", Major: -1, Minor: -1},
		{Path: "/dev/x", Type: "b", Major: 8, Minor: -1},
		{Path: "/dev/x", Type: "c", Major: 1 << 32, Minor: 3},
	} {
		spec, bundle := validBundle(t)
		spec.Linux.Devices = []specs.LinuxDevice{d}
		err := Validate(spec, bundle)
		if err == nil || !strings.HasPrefix(err.Error(), "linux.devices[0]") {
			t.Errorf("Validate of device %s %d:%d = %v; want a linux.devices[0] error", d.Type, d.Major, d.Minor, err)
		}
	}
}

// TestValidateCPUListBounded: linux.resources.cpu.cpus and .mems are
// expanded into one int per CPU for each range, so a short config that
// repeats "0-65535" made Validate allocate gigabytes (8 KB of config took
// 2.8 GB and 5 s). Validate runs on untrusted configs before anything
// exists; its cost must not grow with the ranges' width.
func TestValidateCPUListBounded(t *testing.T) {
	spec, bundle := validBundle(t)
	list := strings.Repeat("0-65535,", 50) + "0"
	spec.Linux.Resources = &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: list, Mems: list}}
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	_ = Validate(spec, bundle) // refusing such a list is as good as accepting it
	goruntime.ReadMemStats(&after)
	if mb := (after.TotalAlloc - before.TotalAlloc) >> 20; mb > 64 {
		t.Errorf("Validate of a %d-byte cpu list allocated %d MB", len(list), mb)
	}
}
