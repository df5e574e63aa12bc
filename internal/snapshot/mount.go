package snapshot

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/mount"
)

// Mount is a serialised mount(2), containerd's lingua franca: what to
// mount (Type, Source) and how (Options: flags such as "ro" or "rbind",
// and filesystem data such as overlay's "lowerdir=..."). Prepare returns
// plans of them; MountAt applies a plan.
type Mount struct {
	Type    string
	Source  string
	Options []string
}

// mountCall is one Mount turned into the arguments of mount(2).
type mountCall struct {
	fstype      string
	flags       uintptr
	propagation []uintptr
	data        string
	// dir, when set, is the directory the paths in data are relative to:
	// the mount must be made with the working directory there.
	dir string
}

// maxMountData is the longest data string mount(2) takes: the kernel
// copies one page and terminates it with a NUL.
func maxMountData() int { return os.Getpagesize() - 1 }

// planMount turns m into a mount(2) call. An overlay whose data does not
// fit in a page has its absolute paths rewritten relative to their common
// directory; if even that does not fit, it fails, wrapping
// errdefs.ErrInvalidArgument.
func planMount(m Mount) (mountCall, error) {
	c := mountCall{fstype: m.Type}
	p := mount.Parse(m.Options)
	c.flags, c.propagation = p.Flags, p.Propagation
	if p.Bind {
		c.flags |= unix.MS_BIND
	}
	if p.Recursive {
		c.flags |= unix.MS_REC
	}
	data := p.Data
	if m.Type == "bind" || m.Type == "rbind" {
		c.fstype = ""
		c.flags |= unix.MS_BIND
		if m.Type == "rbind" {
			c.flags |= unix.MS_REC
		}
	}
	c.data = strings.Join(data, ",")
	if len(c.data) <= maxMountData() {
		return c, nil
	}
	if m.Type != "overlay" {
		return c, fmt.Errorf("%s mount options are %d bytes, over the kernel's limit of %d: %w", m.Type, len(c.data), maxMountData(), errdefs.ErrInvalidArgument)
	}
	dir, rel := relativeOverlayData(data)
	c.data, c.dir = strings.Join(rel, ","), dir
	if dir == "" || len(c.data) > maxMountData() {
		return c, fmt.Errorf("overlay mount options are %d bytes even with short relative paths, over the kernel's limit of %d: too many layers (%d; about 125 fit): %w",
			len(c.data), maxMountData(), overlayLowerCount(data), errdefs.ErrInvalidArgument)
	}
	return c, nil
}

// overlayPathKeys are the overlay options that hold paths.
var overlayPathKeys = []string{"lowerdir", "upperdir", "workdir"}

// relativeOverlayData rewrites the overlay path options in data relative to
// the deepest directory that holds them all, which it returns ("" when
// there is none worth using: no gain over absolute paths).
func relativeOverlayData(data []string) (string, []string) {
	var paths []string
	for _, o := range data {
		k, v, _ := strings.Cut(o, "=")
		for _, pk := range overlayPathKeys {
			if k == pk {
				paths = append(paths, strings.Split(v, ":")...)
			}
		}
	}
	if len(paths) == 0 {
		return "", data
	}
	common := filepath.Dir(paths[0])
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return "", data
		}
		for common != "/" && !strings.HasPrefix(p, common+"/") {
			common = filepath.Dir(common)
		}
	}
	if common == "/" {
		return "", data
	}
	out := make([]string, 0, len(data))
	for _, o := range data {
		k, v, ok := strings.Cut(o, "=")
		if ok && (k == "lowerdir" || k == "upperdir" || k == "workdir") {
			parts := strings.Split(v, ":")
			for i, p := range parts {
				parts[i] = strings.TrimPrefix(p, common+"/")
			}
			o = k + "=" + strings.Join(parts, ":")
		}
		out = append(out, o)
	}
	return common, out
}

func overlayLowerCount(data []string) int {
	for _, o := range data {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			return strings.Count(v, ":") + 1
		}
	}
	return 0
}

// MountAt applies the plan m at target, in order (each later mount on top
// of the earlier ones). If one fails, those already made are unmounted.
func MountAt(m []Mount, target string) error {
	target, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	for i, mnt := range m {
		if err := mountOne(mnt, target); err != nil {
			for j := 0; j < i; j++ {
				unix.Unmount(target, unix.MNT_DETACH)
			}
			return err
		}
	}
	return nil
}

func mountOne(m Mount, target string) error {
	c, err := planMount(m)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, target, err)
	}
	if c.dir != "" {
		err = mountFromDir(c.dir, m.Source, target, c.fstype, c.flags, c.data)
	} else {
		err = unix.Mount(m.Source, target, c.fstype, c.flags, c.data)
	}
	if err != nil {
		return fmt.Errorf("mount %s %s on %s: %w", m.Type, m.Source, target, os.NewSyscallError("mount", err))
	}
	// A bind mount ignores every flag but MS_REC; the others need a remount.
	if c.flags&unix.MS_BIND != 0 && c.flags&^(unix.MS_BIND|unix.MS_REC) != 0 {
		if err := unix.Mount("", target, "", c.flags|unix.MS_REMOUNT, ""); err != nil {
			unix.Unmount(target, unix.MNT_DETACH)
			return fmt.Errorf("remount %s with %v: %w", target, m.Options, os.NewSyscallError("mount", err))
		}
	}
	for _, p := range c.propagation {
		if err := unix.Mount("", target, "", p, ""); err != nil {
			unix.Unmount(target, unix.MNT_DETACH)
			return fmt.Errorf("set propagation of %s: %w", target, os.NewSyscallError("mount", err))
		}
	}
	return nil
}

// mountFromDir calls mount(2) with the working directory at dir, so that
// relative paths in data resolve there. Go threads share one working
// directory, so the call runs on a locked thread that first unshares its
// filesystem attributes; the thread is never unlocked, so Go ends it
// with the goroutine rather than reuse it with a stray working directory.
func mountFromDir(dir, source, target, fstype string, flags uintptr, data string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- os.NewSyscallError("unshare", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- os.NewSyscallError("chdir", err)
			return
		}
		errc <- unix.Mount(source, target, fstype, flags, data)
	}()
	return <-errc
}

// Unmount unmounts everything stacked at target. Nothing mounted there is
// not an error. Symlinks at target are not followed.
func Unmount(target string) error {
	for i := 0; i < 1000; i++ {
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil || err == unix.EINTR:
			continue
		case err == unix.EINVAL:
			return nil // not (any longer) a mount point
		case err == unix.EBUSY:
			return fmt.Errorf("unmount %s: still in use (a process has a file or its cwd there): %w", target, os.NewSyscallError("umount2", err))
		default:
			return fmt.Errorf("unmount %s: %w", target, os.NewSyscallError("umount2", err))
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 1000 unmounts", target)
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	dev        uint64 // major:minor of the mounted filesystem
	root       string // the path, within that filesystem, that is mounted
	mountPoint string
	fstype     string
	source     string
	superOpts  string
}

func readMountInfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 2 {
			continue
		}
		e := mountEntry{root: unescapeMountInfo(a[3]), mountPoint: unescapeMountInfo(a[4]), fstype: b[0], source: unescapeMountInfo(b[1])}
		if len(b) > 2 {
			e.superOpts = unescapeMountInfo(b[2])
		}
		if maj, min, ok := strings.Cut(a[2], ":"); ok {
			ma, err1 := strconv.ParseUint(maj, 10, 32)
			mi, err2 := strconv.ParseUint(min, 10, 32)
			if err1 == nil && err2 == nil {
				e.dev = unix.Mkdev(uint32(ma), uint32(mi))
			}
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// unescapeMountInfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountInfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isMounted reports whether something is mounted at target, as this
// process's mount namespace sees it.
func isMounted(target string) (bool, error) {
	target, err := filepath.Abs(target)
	if err != nil {
		return false, err
	}
	ms, err := readMountInfo()
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if m.mountPoint == target {
			return true, nil
		}
	}
	return false, nil
}
