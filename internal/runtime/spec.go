package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

// LoadSpec reads bundle/config.json. The root path it returns is absolute.
func LoadSpec(bundle string) (*specs.Spec, error) {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s has no config.json (create one with `berth runtime spec`): %w", bundle, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read config.json: %w", err)
	}
	return ParseSpec(data)
}

// ParseSpec decodes a config.json. Unknown fields are ignored, as the
// runtime spec asks of runtimes.
func ParseSpec(data []byte) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("config.json: malformed JSON at byte %d: %v: %w", se.Offset, se, errdefs.ErrInvalidArgument)
		case errors.As(err, &te):
			return nil, fmt.Errorf("config.json: field %s: cannot use a JSON %s as %s: %w", te.Field, te.Value, te.Type, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("config.json: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// nsFlags maps OCI namespace types to clone flags.
var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     0x20000000, // CLONE_NEWPID
	specs.NetworkNamespace: 0x40000000, // CLONE_NEWNET
	specs.MountNamespace:   0x00020000, // CLONE_NEWNS
	specs.IPCNamespace:     0x08000000, // CLONE_NEWIPC
	specs.UTSNamespace:     0x04000000, // CLONE_NEWUTS
	specs.UserNamespace:    0x10000000, // CLONE_NEWUSER
	specs.CgroupNamespace:  0x02000000, // CLONE_NEWCGROUP
	specs.TimeNamespace:    0x00000080, // CLONE_NEWTIME
}

// procNSName is the file name under /proc/<pid>/ns for each namespace.
var procNSName = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace:     "pid",
	specs.NetworkNamespace: "net",
	specs.MountNamespace:   "mnt",
	specs.IPCNamespace:     "ipc",
	specs.UTSNamespace:     "uts",
	specs.UserNamespace:    "user",
	specs.CgroupNamespace:  "cgroup",
	specs.TimeNamespace:    "time",
}

// hasNamespace reports whether the config lists namespace t.
func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// Validate checks everything about a config that can be checked before any
// kernel object exists, so a bad config is refused with nothing to undo.
// Each error names the config field at fault.
func Validate(spec *specs.Spec, bundle string) error {
	if !strings.HasPrefix(spec.Version, "1.") {
		return invalid("ociVersion", "%q is not supported (berth runs configs of runtime-spec 1.x)", spec.Version)
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return invalid("root.path", "missing (name the container's root filesystem directory)")
	}
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return invalid("root.path", "%s does not exist", root)
	}
	if !fi.IsDir() {
		return invalid("root.path", "%s is not a directory", root)
	}
	if spec.Process == nil {
		return invalid("process", "missing (the container needs a process to run)")
	}
	if err := validateProcess(spec.Process, "process"); err != nil {
		return err
	}
	if spec.Linux == nil {
		return invalid("linux", "missing (berth runs Linux containers)")
	}
	if err := validateLinux(spec); err != nil {
		return err
	}
	for i, m := range spec.Mounts {
		field := fmt.Sprintf("mounts[%d]", i)
		if m.Destination == "" {
			return invalid(field+".destination", "missing")
		}
		// Checked again by the init stage when it mounts; here so a
		// hostile bundle is refused before anything exists.
		if _, err := resolveInRoot(root, m.Destination); err != nil {
			if errors.Is(err, errdefs.ErrInvalidArgument) {
				return fmt.Errorf("%s.destination: %w", field, err)
			}
			return invalid(field+".destination", "%v", err)
		}
		if _, err := parseMountOptions(m.Options); err != nil {
			return invalid(field+".options", "%v", err)
		}
		if m.Type == "bind" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind") {
			if !filepath.IsAbs(m.Source) {
				m.Source = filepath.Join(bundle, m.Source)
			}
			if _, err := os.Stat(m.Source); err != nil {
				return invalid(field+".source", "bind source %s does not exist", m.Source)
			}
		}
	}
	if spec.Hostname != "" && !hasNamespace(spec, specs.UTSNamespace) {
		return invalid("hostname", "setting the hostname needs a uts namespace (add {\"type\":\"uts\"} to linux.namespaces)")
	}
	if spec.Domainname != "" && !hasNamespace(spec, specs.UTSNamespace) {
		return invalid("domainname", "setting the domainname needs a uts namespace")
	}
	if spec.Hooks != nil {
		if err := validateHooks(spec.Hooks); err != nil {
			return err
		}
	}
	if _, err := rootfsMounts(spec); err != nil {
		return err
	}
	return nil
}

func validateProcess(p *specs.Process, field string) error {
	// commandLine is Windows-only: a Linux process needs args.
	if len(p.Args) == 0 {
		return invalid(field+".args", "empty (name the program to run)")
	}
	if p.Cwd == "" || !filepath.IsAbs(p.Cwd) {
		return invalid(field+".cwd", "%q must be an absolute path", p.Cwd)
	}
	if p.Capabilities != nil {
		for set, names := range map[string][]string{
			"bounding": p.Capabilities.Bounding, "effective": p.Capabilities.Effective,
			"inheritable": p.Capabilities.Inheritable, "permitted": p.Capabilities.Permitted,
			"ambient": p.Capabilities.Ambient,
		} {
			for _, name := range names {
				if _, ok := capValue(name); !ok {
					return invalid(field+".capabilities."+set, "unknown capability %q", name)
				}
			}
		}
	}
	for i, rl := range p.Rlimits {
		if _, ok := rlimitTypes[rl.Type]; !ok {
			return invalid(fmt.Sprintf("%s.rlimits[%d].type", field, i), "unknown rlimit %q", rl.Type)
		}
		if rl.Soft > rl.Hard {
			return invalid(fmt.Sprintf("%s.rlimits[%d]", field, i), "soft limit %d is above hard limit %d", rl.Soft, rl.Hard)
		}
	}
	if p.OOMScoreAdj != nil && (*p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000) {
		return invalid(field+".oomScoreAdj", "%d is outside -1000..1000", *p.OOMScoreAdj)
	}
	if p.ApparmorProfile != "" && !apparmorEnabled() {
		return invalid(field+".apparmorProfile", "AppArmor is not enabled on this kernel")
	}
	if p.IOPriority != nil {
		return invalid(field+".ioPriority", "not supported by berth yet")
	}
	if p.Scheduler != nil {
		return invalid(field+".scheduler", "not supported by berth yet")
	}
	return nil
}

func apparmorEnabled() bool {
	data, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.HasPrefix(string(data), "Y")
}

func validateLinux(spec *specs.Spec) error {
	l := spec.Linux
	seen := map[specs.LinuxNamespaceType]bool{}
	for i, ns := range l.Namespaces {
		field := fmt.Sprintf("linux.namespaces[%d]", i)
		if _, ok := nsFlags[ns.Type]; !ok {
			return invalid(field+".type", "unknown namespace %q (known: pid, network, mount, ipc, uts, user, cgroup, time)", ns.Type)
		}
		if seen[ns.Type] {
			return invalid(field+".type", "namespace %q listed twice", ns.Type)
		}
		seen[ns.Type] = true
		if ns.Path != "" {
			// The path travels to the C stage as one line of at most
			// 511 bytes (nsenter.c).
			if strings.ContainsAny(ns.Path, "\n\x00") || len(ns.Path) > 500 {
				return invalid(field+".path", "must be one line of at most 500 bytes")
			}
			if !filepath.IsAbs(ns.Path) {
				return invalid(field+".path", "%q must be absolute", ns.Path)
			}
			if _, err := os.Stat(ns.Path); err != nil {
				return invalid(field+".path", "%s does not exist", ns.Path)
			}
		}
	}
	if (len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0) && !seen[specs.UserNamespace] {
		return invalid("linux.uidMappings", "id mappings need a user namespace (add {\"type\":\"user\"} to linux.namespaces)")
	}
	for _, ns := range l.Namespaces {
		if ns.Type == specs.UserNamespace && ns.Path == "" && (len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0) {
			return invalid("linux.uidMappings", "a new user namespace needs both uidMappings and gidMappings")
		}
	}
	for key := range l.Sysctl {
		if err := validateSysctl(key, seen); err != nil {
			return err
		}
	}
	if strings.ContainsAny(l.CgroupsPath, "\n\x00") || len(l.CgroupsPath) > 400 {
		return invalid("linux.cgroupsPath", "must be one line of at most 400 bytes")
	}
	for i, d := range l.Devices {
		field := fmt.Sprintf("linux.devices[%d]", i)
		// Linux device numbers: 12-bit major, 20-bit minor.
		if d.Major < 0 || d.Major > 0xfff {
			return invalid(field+".major", "%d is outside 0..4095", d.Major)
		}
		if d.Minor < 0 || d.Minor > 0xfffff {
			return invalid(field+".minor", "%d is outside 0..1048575", d.Minor)
		}
		switch d.Type {
		case "c", "b", "u", "p":
		default:
			return invalid(field+".type", "unknown device type %q (use c, b, u or p)", d.Type)
		}
		if !filepath.IsAbs(d.Path) {
			return invalid(field+".path", "%q must be absolute", d.Path)
		}
	}
	if err := validateResources(l.Resources); err != nil {
		return err
	}
	if l.Seccomp != nil {
		if err := validateSeccomp(l.Seccomp); err != nil {
			return err
		}
	}
	switch l.RootfsPropagation {
	case "", "shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable":
	default:
		return invalid("linux.rootfsPropagation", "unknown propagation %q", l.RootfsPropagation)
	}
	for clock, o := range l.TimeOffsets {
		field := "linux.timeOffsets." + clock
		if clock != "monotonic" && clock != "boottime" {
			return invalid(field, "unknown clock (use monotonic or boottime)")
		}
		if !seen[specs.TimeNamespace] {
			return invalid(field, "needs a new time namespace (add {\"type\":\"time\"} to linux.namespaces)")
		}
		if o.Nanosecs >= 1e9 {
			return invalid(field+".nanosecs", "%d is not below one second", o.Nanosecs)
		}
	}
	if l.IntelRdt != nil {
		return invalid("linux.intelRdt", "not supported by berth")
	}
	if len(l.NetDevices) > 0 {
		return invalid("linux.netDevices", "not supported by berth yet")
	}
	if l.MemoryPolicy != nil {
		return invalid("linux.memoryPolicy", "not supported by berth yet")
	}
	if l.Personality != nil {
		switch l.Personality.Domain {
		case specs.PerLinux, specs.PerLinux32:
		default:
			return invalid("linux.personality.domain", "unknown domain %q", l.Personality.Domain)
		}
	}
	return nil
}

// validateSysctl refuses sysctls that would change the host because the
// namespace that isolates them is missing, as runc does.
func validateSysctl(key string, ns map[specs.LinuxNamespaceType]bool) error {
	field := "linux.sysctl." + key
	switch {
	case strings.HasPrefix(key, "net."):
		if !ns[specs.NetworkNamespace] {
			return invalid(field, "needs a network namespace")
		}
	case strings.HasPrefix(key, "fs.mqueue.") || key == "kernel.msgmax" || key == "kernel.msgmnb" ||
		key == "kernel.msgmni" || key == "kernel.sem" || key == "kernel.shmall" || key == "kernel.shmmax" ||
		key == "kernel.shmmni" || key == "kernel.shm_rmid_forced":
		if !ns[specs.IPCNamespace] {
			return invalid(field, "needs an ipc namespace")
		}
	case key == "kernel.hostname" || key == "kernel.domainname":
		if !ns[specs.UTSNamespace] {
			return invalid(field, "needs a uts namespace")
		}
	default:
		return invalid(field, "is not namespaced: it would change the host")
	}
	if strings.Contains(key, "..") || strings.Contains(key, "/") && strings.Contains(key, "..") {
		return invalid(field, "bad name")
	}
	return nil
}

func validateHooks(h *specs.Hooks) error {
	for name, list := range map[string][]specs.Hook{
		"prestart": h.Prestart, "createRuntime": h.CreateRuntime, "createContainer": h.CreateContainer,
		"startContainer": h.StartContainer, "poststart": h.Poststart, "poststop": h.Poststop,
	} {
		for i, hook := range list {
			if !filepath.IsAbs(hook.Path) {
				return invalid(fmt.Sprintf("hooks.%s[%d].path", name, i), "%q must be absolute", hook.Path)
			}
			if hook.Timeout != nil && *hook.Timeout <= 0 {
				return invalid(fmt.Sprintf("hooks.%s[%d].timeout", name, i), "%d must be positive", *hook.Timeout)
			}
		}
	}
	return nil
}

func hasOption(opts []string, want string) bool {
	for _, o := range opts {
		if o == want {
			return true
		}
	}
	return false
}
