package container

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	dockerseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/opts"
	"github.com/berth-dev/berth/internal/runtime"
	"github.com/berth-dev/berth/internal/snapshot"
)

// InitPath is where --init's reaper appears in the container.
const InitPath = "/sbin/berth-init"

// Log rotation is on unless the user says otherwise: a container that
// floods stdout must not fill the disk (Docker's json-file default is
// unbounded; its "local" driver keeps 5 x 20 MB).
const (
	defaultLogMaxSize = 10 << 20
	defaultLogMaxFile = 3
)

type logOpts struct {
	maxSize int64
	maxFile int
}

func parseLogConfig(lc LogConfig) (logOpts, error) {
	o := logOpts{maxSize: defaultLogMaxSize, maxFile: defaultLogMaxFile}
	switch lc.Type {
	case "json-file", "":
	case "none":
		if len(lc.Config) > 0 {
			return o, fmt.Errorf("the none log driver takes no --log-opt: %w", errdefs.ErrInvalidArgument)
		}
		return o, nil
	default:
		return o, fmt.Errorf("log driver %q is not supported: use json-file or none: %w", lc.Type, errdefs.ErrInvalidArgument)
	}
	if len(lc.Config) == 0 {
		return o, nil
	}
	var kvs []string
	for k, v := range lc.Config {
		kvs = append(kvs, k+"="+v)
	}
	sort.Strings(kvs)
	lo, err := opts.ParseLogOpts(kvs)
	if err != nil {
		return o, err
	}
	if _, ok := lc.Config["max-size"]; ok {
		o.maxSize = lo.MaxSize // 0: unbounded, as the user asked
	}
	if _, ok := lc.Config["max-file"]; ok {
		o.maxFile = lo.MaxFile
	}
	return o, nil
}

// buildSpec turns a container record into the OCI config its bundle holds.
// Pure: it reads nothing from disk, so unit tests check it without root.
func buildSpec(c *Container, dir string, rootfs []snapshot.Mount, mounts []specs.Mount) (*specs.Spec, error) {
	hc := c.HostConfig
	spec := runtime.DefaultSpec()
	spec.Root = &specs.Root{Path: filepath.Join(dir, "rootfs"), Readonly: hc.ReadonlyRootfs}
	rm := make([]runtime.RootfsMount, len(rootfs))
	for i, m := range rootfs {
		rm[i] = runtime.RootfsMount{Type: m.Type, Source: m.Source, Options: m.Options}
	}
	plan, err := json.Marshal(rm)
	if err != nil {
		return nil, err
	}
	spec.Annotations = map[string]string{runtime.RootfsMountsAnnotation: string(plan)}
	spec.Hostname = c.Config.Hostname
	spec.Domainname = c.Config.Domainname

	p := spec.Process
	p.Terminal = c.Config.Tty
	p.Args = append([]string{c.Path}, c.Args...)
	if hc.Init != nil && *hc.Init {
		p.Args = append([]string{InitPath, "--"}, p.Args...)
	}
	p.Env = processEnv(c)
	p.Cwd = c.Config.WorkingDir
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if err := setUser(spec, c.Config.User); err != nil {
		return nil, err
	}
	// Docker sets no rlimits of its own and no no_new_privs by default.
	p.Rlimits = nil
	p.NoNewPrivileges = false
	seccompProfile := "" // Docker's default
	for _, so := range hc.SecurityOpt {
		k, v, _ := strings.Cut(strings.Replace(so, ":", "=", 1), "=")
		switch {
		case k == "no-new-privileges" && (v == "" || v == "true"):
			p.NoNewPrivileges = true
		case k == "no-new-privileges" && v == "false":
		case k == "seccomp" && v != "":
			seccompProfile = v
		default:
			return nil, fmt.Errorf("invalid --security-opt %q: berth supports no-new-privileges and seccomp=unconfined|<profile.json>: %w", so, errdefs.ErrInvalidArgument)
		}
	}
	for _, u := range hc.Ulimits {
		t, err := rlimitType(u.Name)
		if err != nil {
			return nil, err
		}
		p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: t, Soft: uint64(u.Soft), Hard: uint64(u.Hard)})
	}
	caps, err := capabilities(hc)
	if err != nil {
		return nil, err
	}
	p.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	// Docker's default seccomp profile, unless privileged or unconfined;
	// it reads the capabilities just set (CAP_SYS_ADMIN opens more calls).
	switch {
	case hc.Privileged || seccompProfile == "unconfined":
	case seccompProfile == "":
		if spec.Linux.Seccomp, err = dockerseccomp.GetDefaultProfile(spec); err != nil {
			return nil, fmt.Errorf("default seccomp profile: %w", err)
		}
	default:
		body, err := os.ReadFile(seccompProfile)
		if err != nil {
			return nil, fmt.Errorf("--security-opt seccomp: %w", err)
		}
		if spec.Linux.Seccomp, err = dockerseccomp.LoadProfile(string(body), spec); err != nil {
			return nil, fmt.Errorf("--security-opt seccomp=%s: %v: %w", seccompProfile, err, errdefs.ErrInvalidArgument)
		}
	}

	lx := spec.Linux
	lx.CgroupsPath = "/berth/" + c.ID
	if hc.NetworkMode == "host" {
		lx.Namespaces = dropNS(lx.Namespaces, specs.NetworkNamespace)
	}
	lx.Resources = resources(hc.Resources)
	if hc.Privileged {
		lx.MaskedPaths, lx.ReadonlyPaths = nil, nil
		lx.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		for i := range spec.Mounts {
			if spec.Mounts[i].Destination == "/sys" || spec.Mounts[i].Destination == "/sys/fs/cgroup" {
				spec.Mounts[i].Options = removeOpt(spec.Mounts[i].Options, "ro")
			}
		}
	}
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/etc/" + f, Type: "bind", Source: filepath.Join(dir, f),
			Options: []string{"rbind", "rprivate"}})
	}
	if hc.Init != nil && *hc.Init {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the berth binary for --init: %w", err)
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: InitPath, Type: "bind", Source: exe, Options: []string{"bind", "ro", "nosuid", "nodev"}})
	}
	spec.Mounts = append(spec.Mounts, mounts...)
	// Parents before children, user mounts over the defaults they shadow.
	sort.SliceStable(spec.Mounts, func(i, j int) bool {
		return depth(spec.Mounts[i].Destination) < depth(spec.Mounts[j].Destination)
	})
	spec.Mounts = dedupeMounts(spec.Mounts)
	return spec, nil
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

// dedupeMounts keeps the last mount of each destination: a user's -v /dev/shm
// replaces the default one.
func dedupeMounts(ms []specs.Mount) []specs.Mount {
	last := map[string]int{}
	for i, m := range ms {
		last[filepath.Clean(m.Destination)] = i
	}
	var out []specs.Mount
	for i, m := range ms {
		if last[filepath.Clean(m.Destination)] == i {
			out = append(out, m)
		}
	}
	return out
}

// processEnv is the environment of the container's process, as the
// spec gets it at create: HOSTNAME, the image's and the user's, and TERM
// with a terminal. A start with --link adds the links' (links.go).
func processEnv(c *Container) []string {
	env := append([]string{"HOSTNAME=" + c.Config.Hostname}, c.Config.Env...)
	if c.Config.Tty && !hasEnv(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	return env
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

func removeOpt(opts []string, o string) []string {
	var out []string
	for _, x := range opts {
		if x != o {
			out = append(out, x)
		}
	}
	return out
}

func dropNS(nss []specs.LinuxNamespace, t specs.LinuxNamespaceType) []specs.LinuxNamespace {
	var out []specs.LinuxNamespace
	for _, ns := range nss {
		if ns.Type != t {
			out = append(out, ns)
		}
	}
	return out
}

// setUser puts a numeric user straight into the spec; a name is resolved
// by the runtime's init stage from the container's own /etc/passwd.
func setUser(spec *specs.Spec, user string) error {
	if user == "" {
		return nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	uid, uerr := strconv.ParseUint(u, 10, 31)
	gid, gerr := strconv.ParseUint(g, 10, 31)
	if uerr == nil && (!hasGroup || gerr == nil) {
		spec.Process.User.UID = uint32(uid)
		spec.Process.User.GID = uint32(gid)
		if !hasGroup {
			// gid from passwd when the uid has an entry; 0 otherwise.
			spec.Annotations[runtime.UserAnnotation] = user
		}
		return nil
	}
	spec.Annotations[runtime.UserAnnotation] = user
	return nil
}

var rlimitNames = map[string]string{
	"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
	"locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE",
	"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
	"rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}

func rlimitType(name string) (string, error) {
	if t, ok := rlimitNames[name]; ok {
		return t, nil
	}
	return "", fmt.Errorf("invalid ulimit type: %s: %w", name, errdefs.ErrInvalidArgument)
}

// allCaps is every capability the host can give, for --privileged and
// --cap-add ALL.
func allCaps() []string { return runtime.HostCapabilities() }

func capabilities(hc HostConfig) ([]string, error) {
	if hc.Privileged {
		return allCaps(), nil
	}
	known := map[string]bool{}
	for _, c := range runtime.Features().Linux.Capabilities {
		known[c] = true
	}
	norm := func(s string) (string, error) {
		s = strings.ToUpper(s)
		if s == "ALL" {
			return s, nil
		}
		if !strings.HasPrefix(s, "CAP_") {
			s = "CAP_" + s
		}
		if !known[s] {
			return "", fmt.Errorf("unknown capability: %q: %w", s, errdefs.ErrInvalidArgument)
		}
		return s, nil
	}
	set := map[string]bool{}
	for _, c := range runtime.DefaultSpec().Process.Capabilities.Bounding {
		set[c] = true
	}
	for _, c := range hc.CapDrop {
		n, err := norm(c)
		if err != nil {
			return nil, err
		}
		if n == "ALL" {
			clear(set)
		}
		delete(set, n)
	}
	for _, c := range hc.CapAdd {
		n, err := norm(c)
		if err != nil {
			return nil, err
		}
		if n == "ALL" {
			for _, k := range allCaps() {
				set[k] = true
			}
		}
		set[n] = n != "ALL"
	}
	var out []string
	for k, v := range set {
		if v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

func resources(r Resources) *specs.LinuxResources {
	res := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if r.Memory > 0 {
		mem := &specs.LinuxMemory{Limit: &r.Memory}
		swap := r.MemorySwap
		if swap == 0 {
			swap = 2 * r.Memory // Docker: as much swap as memory
		}
		mem.Swap = &swap
		res.Memory = mem
	}
	if r.NanoCpus > 0 || r.CpuShares > 0 || r.CpusetCpus != "" {
		cpu := &specs.LinuxCPU{Cpus: r.CpusetCpus}
		if r.NanoCpus > 0 {
			period := uint64(100000)
			quota := r.NanoCpus * int64(period) / 1e9
			cpu.Period, cpu.Quota = &period, &quota
		}
		if r.CpuShares > 0 {
			s := uint64(r.CpuShares)
			cpu.Shares = &s
		}
		res.CPU = cpu
	}
	if r.PidsLimit != nil && *r.PidsLimit > 0 {
		limit := *r.PidsLimit
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return res
}

// resolveMounts turns -v, --mount and --tmpfs requests into OCI mounts,
// and records them as inspect's MountPoints. A bind source must exist:
// silently creating a directory in its place (Docker's -v habit) hides
// typos and leaves files behind.
func (e *Engine) resolveMounts(c *Container, img *image.Image) ([]specs.Mount, error) {
	var out []specs.Mount
	seen := map[string]bool{}
	for _, m := range c.HostConfig.Mounts {
		if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) == "/" {
			return nil, fmt.Errorf("invalid mount target %q: it must be an absolute path other than /: %w", m.Target, errdefs.ErrInvalidArgument)
		}
		dst := filepath.Clean(m.Target)
		if seen[dst] {
			return nil, fmt.Errorf("duplicate mount point: %s: %w", dst, errdefs.ErrInvalidArgument)
		}
		seen[dst] = true
		switch m.Type {
		case "bind":
			if !filepath.IsAbs(m.Source) {
				return nil, fmt.Errorf("invalid bind source %q: it must be an absolute path: %w", m.Source, errdefs.ErrInvalidArgument)
			}
			if _, err := os.Stat(m.Source); err != nil {
				return nil, fmt.Errorf("invalid mount config for type \"bind\": bind source path does not exist: %s (berth never creates it for you; create it or fix the path): %w",
					m.Source, errdefs.ErrInvalidArgument)
			}
			opts := []string{"rbind"}
			if m.ReadOnly {
				opts = append(opts, "ro")
			}
			prop := m.Propagation
			if prop == "" {
				prop = "rprivate"
			}
			opts = append(opts, prop)
			out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: m.Source, Options: opts})
			c.Mounts = append(c.Mounts, MountPoint{Type: "bind", Source: m.Source, Destination: dst, Mode: modeOf(m), RW: !m.ReadOnly, Propagation: prop})
		case "tmpfs":
			opts := []string{"nosuid", "nodev", "noexec"}
			opts = append(opts, m.Options...)
			if m.ReadOnly {
				opts = append(opts, "ro")
			}
			out = append(out, specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: opts})
			c.Mounts = append(c.Mounts, MountPoint{Type: "tmpfs", Destination: dst, RW: !m.ReadOnly})
		case "volume":
			sm, mp, err := e.volumeMount(c, m, img)
			if err != nil {
				return nil, err
			}
			out = append(out, sm)
			c.Mounts = append(c.Mounts, mp)
		default:
			return nil, fmt.Errorf("invalid mount type %q: use bind, volume or tmpfs: %w", m.Type, errdefs.ErrInvalidArgument)
		}
	}
	// The image's VOLUMEs get anonymous volumes unless a mount covers them.
	for v := range c.Config.Volumes {
		if seen[filepath.Clean(v)] {
			continue
		}
		sm, mp, err := e.volumeMount(c, Mount{Type: "volume", Target: filepath.Clean(v)}, img)
		if err != nil {
			return nil, err
		}
		out = append(out, sm)
		c.Mounts = append(c.Mounts, mp)
	}
	return out, nil
}

func modeOf(m Mount) string {
	if m.ReadOnly {
		return "ro"
	}
	return ""
}
