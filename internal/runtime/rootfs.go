package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// defaultDevices are created in every container with its own /dev, as the
// runtime spec requires.
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

var devSymlinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
}

func mountErr(i int, m specs.Mount, err error) error {
	return fmt.Errorf("mounts[%d] (%s on %s): %w", i, m.Type, m.Destination, err)
}

// prepareRoot makes the new mount namespace stop propagating back to the
// host and turns the rootfs into a mount point, which pivot_root needs.
func prepareRoot(rootfs string, propagation string) error {
	flag := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if p, ok := propagationTable[propagation]; ok && propagation != "" {
		flag = p
		// Shared propagation is set on the container's own root after
		// pivot_root; the host's / must never be shared with us.
		if p&unix.MS_SHARED != 0 {
			flag = unix.MS_SLAVE | unix.MS_REC
		}
	}
	if err := unix.Mount("", "/", "", flag, ""); err != nil {
		return os.NewSyscallError("mount / propagation", err)
	}
	if err := makeParentPrivate(rootfs); err != nil {
		return err
	}
	if err := unix.Mount(rootfs, rootfs, "bind", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return os.NewSyscallError("bind mount rootfs "+rootfs, err)
	}
	return nil
}

// makeParentPrivate makes the mount that holds rootfs private if it is
// shared: pivot_root refuses a new root whose parent mount is shared.
func makeParentPrivate(rootfs string) error {
	mp, err := mountPointOf(rootfs)
	if err != nil {
		return err
	}
	if err := unix.Mount("", mp, "", unix.MS_PRIVATE, ""); err != nil {
		return os.NewSyscallError("make "+mp+" private", err)
	}
	return nil
}

// mountPointOf returns the mount point that contains path, read from
// /proc/self/mountinfo (the longest mount point that is a prefix).
func mountPointOf(path string) (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	best := "/"
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best, nil
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountAll performs every config mount inside rootfs.
func mountAll(spec *specs.Spec, rootfs string, cgroupPaths map[string]string) error {
	for i, m := range spec.Mounts {
		if err := mountOne(spec, rootfs, m, cgroupPaths); err != nil {
			return mountErr(i, m, err)
		}
	}
	return nil
}

func mountOne(spec *specs.Spec, rootfs string, m specs.Mount, cgroupPaths map[string]string) error {
	opts, err := parseMountOptions(m.Options)
	if err != nil {
		return err
	}
	dest, err := resolveInRoot(rootfs, m.Destination)
	if err != nil {
		return err
	}
	bind := opts.bind || m.Type == "bind"
	if m.Type == "cgroup" || m.Type == "cgroup2" {
		return mountCgroup(spec, m, dest, opts, cgroupPaths)
	}
	src := m.Source
	if bind {
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		if err := createTarget(dest, !fi.IsDir()); err != nil {
			return err
		}
		flags := uintptr(unix.MS_BIND)
		if opts.recursive {
			flags |= unix.MS_REC
		}
		if err := unix.Mount(src, dest, "", flags, ""); err != nil {
			return os.NewSyscallError("mount", err)
		}
		// A bind mount ignores every flag but MS_REC on the first call;
		// the rest needs a remount of the new mount.
		if rest := opts.flags &^ unix.MS_REMOUNT; rest != 0 {
			if err := remountBind(dest, rest); err != nil {
				return err
			}
		}
	} else {
		if err := createTarget(dest, false); err != nil {
			return err
		}
		err := unix.Mount(src, dest, m.Type, opts.flags, opts.dataString())
		if err != nil && m.Type == "sysfs" && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY)) {
			// Without its own network namespace a user namespace
			// may not mount sysfs; show the host's, read-only.
			err = unix.Mount("/sys", dest, "", unix.MS_BIND|unix.MS_REC, "")
			if err == nil {
				err = remountBind(dest, opts.flags|unix.MS_RDONLY)
			}
		}
		if err != nil {
			if m.Type == "mqueue" && errors.Is(err, unix.EPERM) {
				// mqueue needs an ipc namespace owned by our user
				// namespace; fall back to the host's, as runc does.
				if err = unix.Mount("/dev/mqueue", dest, "", unix.MS_BIND, ""); err == nil {
					return nil
				}
			}
			return os.NewSyscallError("mount", err)
		}
	}
	for _, p := range opts.propagation {
		if err := unix.Mount("", dest, "", p, ""); err != nil {
			return os.NewSyscallError("mount propagation", err)
		}
	}
	return nil
}

// remountBind applies flags to an existing bind mount, keeping the flags the
// kernel locks on it (a user namespace cannot clear nosuid/nodev/noexec that
// the source has).
func remountBind(dest string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dest, &st); err != nil {
		return os.NewSyscallError("statfs", err)
	}
	locked := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	if flags&unix.MS_RDONLY == 0 {
		locked &^= unix.MS_RDONLY
	}
	if err := unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|flags|locked, ""); err != nil {
		// Try without the flags we only guessed were locked.
		if err2 := unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err2 != nil {
			return os.NewSyscallError("remount", err)
		}
	}
	return nil
}

// createTarget makes the mount point: a directory, or an empty file when a
// file is bind-mounted.
func createTarget(dest string, file bool) error {
	if fi, err := os.Lstat(dest); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("mount point %s is a symlink", dest)
		}
		return nil
	}
	if !file {
		return os.MkdirAll(dest, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// mountCgroup gives the container its cgroup tree. With a cgroup namespace
// the kernel roots a fresh cgroup mount at the container's cgroup; without
// one, the container's own cgroup directories are bind-mounted so it never
// sees its siblings.
func mountCgroup(spec *specs.Spec, m specs.Mount, dest string, opts mountOpts, cgroupPaths map[string]string) error {
	if err := createTarget(dest, false); err != nil {
		return err
	}
	ro := opts.flags & unix.MS_RDONLY
	base := (opts.flags &^ unix.MS_RDONLY) | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	cgns := hasNamespace(spec, specs.CgroupNamespace)
	if unified, ok := cgroupPaths[""]; ok && len(cgroupPaths) == 1 {
		if cgns {
			if err := unix.Mount("cgroup2", dest, "cgroup2", base|ro, ""); err != nil {
				return os.NewSyscallError("mount cgroup2", err)
			}
			return nil
		}
		if err := unix.Mount(unified, dest, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return os.NewSyscallError("bind cgroup2", err)
		}
		return remountBind(dest, base|ro)
	}
	// cgroup v1: a tmpfs holding one directory per hierarchy.
	if err := unix.Mount("tmpfs", dest, "tmpfs", base, "mode=755"); err != nil {
		return os.NewSyscallError("mount cgroup tmpfs", err)
	}
	seen := map[string]bool{}
	for _, h := range v1Hierarchies() {
		if seen[h.mountpoint] {
			continue
		}
		seen[h.mountpoint] = true
		name := filepath.Base(h.mountpoint)
		target := filepath.Join(dest, name)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		src := ""
		for _, c := range h.controllers {
			if p, ok := cgroupPaths[c]; ok {
				src = p
				break
			}
		}
		if cgns {
			if err := unix.Mount("cgroup", target, "cgroup", base|ro, h.options); err != nil {
				return os.NewSyscallError("mount cgroup "+name, err)
			}
		} else {
			if src == "" {
				src = h.mountpoint
			}
			if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return os.NewSyscallError("bind cgroup "+name, err)
			}
			if err := remountBind(target, base|ro); err != nil {
				return err
			}
		}
		// Comounted controllers (cpu,cpuacct) are reachable by each
		// name, as on the host.
		for _, c := range h.controllers {
			if c != name {
				_ = os.Symlink(name, filepath.Join(dest, c))
			}
		}
	}
	if ro != 0 {
		return remountBind(dest, base|unix.MS_RDONLY)
	}
	return nil
}

type v1Hierarchy struct {
	mountpoint  string
	controllers []string
	options     string // the controller options for a fresh mount
}

// v1Hierarchies lists the host's cgroup v1 mounts from mountinfo.
func v1Hierarchies() []v1Hierarchy {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []v1Hierarchy
	for _, line := range strings.Split(string(data), "\n") {
		i := strings.Index(line, " - ")
		if i < 0 {
			continue
		}
		pre, post := strings.Fields(line[:i]), strings.Fields(line[i+3:])
		if len(pre) < 5 || len(post) < 3 || post[0] != "cgroup" {
			continue
		}
		var ctrls, opts []string
		for _, o := range strings.Split(post[2], ",") {
			switch {
			case o == "rw" || o == "ro":
			case strings.HasPrefix(o, "name="):
				opts = append(opts, o)
				ctrls = append(ctrls, o)
			case o == "xattr" || o == "noprefix" || strings.HasPrefix(o, "release_agent"):
			default:
				opts = append(opts, o)
				ctrls = append(ctrls, o)
			}
		}
		out = append(out, v1Hierarchy{mountpoint: unescapeMountinfo(pre[4]), controllers: ctrls, options: strings.Join(opts, ",")})
	}
	return out
}

// needsDevSetup reports whether berth populates /dev: not when the config
// bind-mounts a whole /dev from elsewhere.
func needsDevSetup(spec *specs.Spec) bool {
	for _, m := range spec.Mounts {
		if filepath.Clean(m.Destination) == "/dev" && (m.Type == "bind" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind")) {
			return false
		}
	}
	return true
}

// createDevices makes the default and configured device nodes. In a user
// namespace mknod is refused, so the host's node is bind-mounted instead.
func createDevices(spec *specs.Spec, rootfs string, inUserNS bool) error {
	devs := append([]specs.LinuxDevice{}, defaultDevices...)
	for _, d := range spec.Linux.Devices {
		replaced := false
		for i := range devs {
			if devs[i].Path == d.Path {
				devs[i], replaced = d, true
			}
		}
		if !replaced {
			devs = append(devs, d)
		}
	}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for i, d := range devs {
		if err := createDevice(rootfs, d, inUserNS); err != nil {
			if i < len(defaultDevices) {
				return fmt.Errorf("default device %s: %w", d.Path, err)
			}
			return fmt.Errorf("linux.devices[%d] (%s): %w", i-len(defaultDevices), d.Path, err)
		}
	}
	for _, l := range devSymlinks {
		dst := filepath.Join(rootfs, l[1])
		if err := os.Symlink(l[0], dst); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		_ = os.Symlink("/proc/kcore", filepath.Join(rootfs, "/dev/core"))
	}
	// /dev/ptmx follows the container's own devpts instance.
	ptmx := filepath.Join(rootfs, "/dev/ptmx")
	if err := os.Remove(ptmx); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink("pts/ptmx", ptmx); err != nil {
		return fmt.Errorf("symlink /dev/ptmx: %w", err)
	}
	return nil
}

func createDevice(rootfs string, d specs.LinuxDevice, inUserNS bool) error {
	dest, err := resolveInRoot(rootfs, d.Path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	if inUserNS {
		if err := createTarget(dest, true); err != nil {
			return err
		}
		if err := unix.Mount(d.Path, dest, "", unix.MS_BIND, ""); err != nil {
			return os.NewSyscallError("bind device", err)
		}
		return nil
	}
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode) & 0o7777
	}
	switch d.Type {
	case "c", "u":
		mode |= unix.S_IFCHR
	case "b":
		mode |= unix.S_IFBLK
	case "p":
		mode |= unix.S_IFIFO
	}
	_ = os.Remove(dest)
	if err := unix.Mknod(dest, mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
		return os.NewSyscallError("mknod", err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Lchown(dest, uid, gid); err != nil {
		return os.NewSyscallError("chown", err)
	}
	return nil
}

// pivotRoot makes rootfs the root of the mount namespace and detaches the
// old root, as runc does without a temporary directory: pivot_root(".", ".")
// stacks the old root on top of the new one, and unmounting "." drops it.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("open /", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("open rootfs", err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return os.NewSyscallError("fchdir rootfs", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return os.NewSyscallError("pivot_root", err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return os.NewSyscallError("fchdir old root", err)
	}
	// Stop unmount events reaching the host before dropping the old root.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return os.NewSyscallError("make old root slave", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return os.NewSyscallError("unmount old root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return os.NewSyscallError("chdir /", err)
	}
	return nil
}

// moveRoot is the fallback where pivot_root cannot work (a ramfs or
// initramfs root): move the rootfs over / and chroot into it.
func moveRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return os.NewSyscallError("chdir rootfs", err)
	}
	if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return os.NewSyscallError("mount --move rootfs /", err)
	}
	if err := unix.Chroot("."); err != nil {
		return os.NewSyscallError("chroot", err)
	}
	return unix.Chdir("/")
}

// maskPaths hides host information: a file gets /dev/null bound over it, a
// directory an empty read-only tmpfs.
func maskPaths(paths []string) error {
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("linux.maskedPaths %s: %w", p, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("linux.maskedPaths %s: %w", p, os.NewSyscallError("mount", err))
		}
	}
	return nil
}

// readonlyPaths makes each path a read-only bind of itself.
func readonlyPaths(paths []string) error {
	for _, p := range paths {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("linux.readonlyPaths %s: %w", p, os.NewSyscallError("mount", err))
		}
		if err := remountBind(p, unix.MS_RDONLY); err != nil {
			return fmt.Errorf("linux.readonlyPaths %s: %w", p, err)
		}
	}
	return nil
}
