package volume

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
)

// CopyUp fills the empty volume name with the contents of src, a host
// directory (an image's directory at the volume's mount point, seen
// through the container's root filesystem), as Docker does the first time
// a container mounts a fresh volume unless the mount says nocopy.
//
// It copies files, directories, symbolic links (as links: none is ever
// followed, so a link pointing out of the image copies as that link and
// reads nothing outside), hard links (as hard links), devices and FIFOs,
// with owners, modes, times and, best effort, extended attributes; the
// volume's root takes src's owner and mode. Sockets are skipped.
//
// The copy is made beside _data and renamed over it, so a crash leaves
// either the empty volume or the whole copy. A volume with anything in it
// is left alone (nil error): that is Docker's rule, and it makes CopyUp
// safe to call on every start. A src that does not exist copies nothing.
// Call it before any container mounts the volume (inside Hold): the
// rename replaces the _data directory a mount would hold on to.
func (s *Store) CopyUp(name, src string) error {
	v, err := s.Get(name)
	if err != nil {
		return err
	}
	volDir := filepath.Dir(v.Mountpoint)
	if err := copyUp(volDir, src); err != nil {
		return fmt.Errorf("copy %s into volume %s: %w", src, name, err)
	}
	return nil
}

func copyUp(volDir, src string) error {
	// The volume's own directory is the lock: two containers starting on
	// one fresh volume copy once. A Remove meanwhile is the caller's
	// business (Hold).
	lk, err := os.OpenFile(volDir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer lk.Close()
	if err := fsutil.Flock(lk, unix.LOCK_EX); err != nil {
		return err
	}
	// Leftovers of a copy whose process died: we hold the lock, so no
	// live copy owns them.
	if entries, err := os.ReadDir(volDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".copyup-") {
				removeAll(filepath.Join(volDir, e.Name()))
			}
		}
	}
	data := filepath.Join(volDir, dataDir)
	if empty, err := isEmptyDir(data); err != nil || !empty {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return os.NewSyscallError("lstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory (resolve symbolic links inside the root filesystem first): %w", src, errdefs.ErrInvalidArgument)
	}
	tmp, err := os.MkdirTemp(volDir, ".copyup-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			removeAll(tmp)
		}
	}()
	if err := copyTree(tmp, src); err != nil {
		return err
	}
	// rename(2) replaces an empty directory atomically; a _data that
	// someone filled meanwhile makes it fail, and the volume keeps that.
	// (os.Rename refuses any existing directory, so the syscall itself.)
	if err := unix.Rename(tmp, data); err != nil {
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return nil
		}
		return &os.LinkError{Op: "rename", Old: tmp, New: data, Err: err}
	}
	done = true
	return fsutil.SyncDir(volDir)
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// copyTree copies the contents of the directory src into the existing
// directory dst and gives dst src's owner and mode. Every source entry is
// reached through its parent's descriptor with O_NOFOLLOW, so no path
// component in src, and no entry, is ever followed as a symbolic link.
func copyTree(dst, src string) error {
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: src, Err: err}
	}
	d := os.NewFile(uintptr(fd), src)
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: src, Err: err}
	}
	c := &copier{links: map[[2]uint64]string{}}
	if err := c.dir(d, dst); err != nil {
		return err
	}
	return c.meta(d, dst, &st)
}

type copier struct {
	links map[[2]uint64]string // hard-linked source (dev, ino) -> first copy
}

// dir copies the entries of the open directory d into dst.
func (c *copier) dir(d *os.File, dst string) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	dfd := int(d.Fd())
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return &os.PathError{Op: "lstat", Path: filepath.Join(d.Name(), name), Err: err}
		}
		if err := c.entry(d, name, filepath.Join(dst, name), &st); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) entry(parent *os.File, name, target string, st *unix.Stat_t) error {
	pfd := int(parent.Fd())
	srcPath := filepath.Join(parent.Name(), name)
	kind := st.Mode & unix.S_IFMT
	if kind != unix.S_IFDIR && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := c.links[key]; ok {
			return os.Link(first, target)
		}
		defer func() { c.links[key] = target }()
	}
	switch kind {
	case unix.S_IFDIR:
		if err := os.Mkdir(target, 0o700); err != nil {
			return err
		}
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: srcPath, Err: err}
		}
		sub := os.NewFile(uintptr(fd), srcPath)
		defer sub.Close()
		if err := c.dir(sub, target); err != nil {
			return err
		}
		return c.meta(sub, target, st)
	case unix.S_IFREG:
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: srcPath, Err: err}
		}
		in := os.NewFile(uintptr(fd), srcPath)
		defer in.Close()
		var now unix.Stat_t
		if err := unix.Fstat(fd, &now); err != nil || now.Ino != st.Ino || now.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("copy %s: it changed while being copied: %w", srcPath, errdefs.ErrConflict)
		}
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", srcPath, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
		return c.meta(in, target, st)
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(pfd, name, buf)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: srcPath, Err: err}
		}
		if err := os.Symlink(string(buf[:n]), target); err != nil {
			return err
		}
		return c.meta(nil, target, st)
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: target, Err: err}
		}
		return c.meta(nil, target, st)
	}
	return nil // sockets belong to the process that bound them
}

// meta gives target the owner, mode, extended attributes (from the open
// source f, when there is one) and times of st. The owner comes first:
// chown clears set-user-ID bits that chmod then sets.
func (c *copier) meta(f *os.File, target string, st *unix.Stat_t) error {
	if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(target, st.Mode&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: target, Err: err}
		}
	}
	if f != nil {
		copyXattrs(int(f.Fd()), target)
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: target, Err: err}
	}
	return nil
}

// copyXattrs copies the extended attributes of fd to target, best effort
// (file capabilities and ACLs; a filesystem without xattrs has none to
// lose). overlayfs's own (trusted.overlay.*) describe layers, not files.
func copyXattrs(fd int, target string) {
	size, err := unix.Flistxattr(fd, nil)
	if err != nil || size <= 0 {
		return
	}
	buf := make([]byte, size)
	size, err = unix.Flistxattr(fd, buf)
	if err != nil {
		return
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		n, err := unix.Fgetxattr(fd, name, nil)
		if err != nil {
			continue
		}
		val := make([]byte, n)
		if n, err = unix.Fgetxattr(fd, name, val); err != nil {
			continue
		}
		_ = unix.Lsetxattr(target, name, val[:n], 0)
	}
}
