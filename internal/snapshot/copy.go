package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Whiteout names in a tar, and in a diff unpacked for the copy driver.
const (
	mergeWhPrefix     = ".wh."
	mergeWhMetaPrefix = ".wh..wh."
	mergeWhOpaque     = ".wh..wh..opq"
	mergeOpaqueXattr  = "trusted.overlay.opaque"
)

// materialize builds at dst (which must not exist) the tree that results
// from laying diffs (directories, bottom first) one over the other, as an
// overlay mount of them would show it: a file or symlink of a higher layer
// replaces what was below; a directory merges with a directory below and
// replaces anything else; whiteouts delete, in either form (0/0 character
// devices and trusted.overlay.opaque=y, or AUFS ".wh." files). Owners,
// modes, xattrs (but overlay's own), times, devices, symlinks and, within
// a layer, hard links are kept; sparse files stay sparse.
//
// The tree is ours until it is renamed into place, and each directory is
// checked to be a real one (not a symlink a layer planted) before anything
// is made in it, so path-based calls never leave dst.
func materialize(dst string, diffs []string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dst, 0o755); err != nil { // past the umask
		return err
	}
	for _, d := range diffs {
		c := treeCopier{links: map[[2]uint64]string{}}
		fi, err := os.Lstat(d)
		if err != nil {
			return err
		}
		if err := c.dir(d, dst); err != nil {
			return fmt.Errorf("copy layer %s: %w", d, err)
		}
		if err := c.meta(d, dst, fi); err != nil {
			return fmt.Errorf("copy layer %s: %w", d, err)
		}
	}
	return nil
}

// treeCopier copies one layer over the tree.
type treeCopier struct {
	// links maps the source inode of a hard-linked file to its first copy.
	links map[[2]uint64]string
}

// dir copies the children of directory src into directory dst.
func (c *treeCopier) dir(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	opaque := false
	if v, err := xattrGet(src, mergeOpaqueXattr); err == nil && string(v) == "y" {
		opaque = true
	}
	for _, e := range ents {
		if e.Name() == mergeWhOpaque {
			opaque = true
		}
	}
	if opaque {
		// What the lower layers put here is hidden: only this layer's
		// children remain.
		old, err := os.ReadDir(dst)
		if err != nil {
			return err
		}
		for _, o := range old {
			if err := removeTree(filepath.Join(dst, o.Name())); err != nil {
				return err
			}
		}
	}
	// Whiteouts first, so that a name both deleted and written in this
	// layer ends up written.
	var keep []fs.FileInfo
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, mergeWhMetaPrefix) {
			continue // opaque marker, or AUFS bookkeeping (.wh..wh.plnk)
		}
		if target, ok := strings.CutPrefix(name, mergeWhPrefix); ok {
			if err := removeTree(filepath.Join(dst, target)); err != nil {
				return err
			}
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if isOverlayWhiteout(fi) {
			if err := removeTree(filepath.Join(dst, name)); err != nil {
				return err
			}
			continue
		}
		keep = append(keep, fi)
	}
	for _, fi := range keep {
		if err := c.entry(filepath.Join(src, fi.Name()), filepath.Join(dst, fi.Name()), fi); err != nil {
			return err
		}
	}
	return nil
}

func isOverlayWhiteout(fi fs.FileInfo) bool {
	if fi.Mode().Type() != fs.ModeDevice|fs.ModeCharDevice {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

// entry copies src (described by fi) to dst, replacing what is there
// unless both are directories, which merge.
func (c *treeCopier) entry(src, dst string, fi fs.FileInfo) error {
	cur, err := os.Lstat(dst)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if fi.IsDir() {
		if exists && !cur.IsDir() {
			if err := removeTree(dst); err != nil {
				return err
			}
			exists = false
		}
		if !exists {
			// Owner-only until its children are in; meta sets the real mode.
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
		}
		if err := c.dir(src, dst); err != nil {
			return err
		}
		return c.meta(src, dst, fi)
	}
	if exists {
		if err := removeTree(dst); err != nil {
			return err
		}
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch fi.Mode().Type() {
	case 0: // regular
		if st.Nlink > 1 {
			k := [2]uint64{st.Dev, st.Ino}
			if first, ok := c.links[k]; ok {
				err := os.Link(first, dst)
				if err == nil {
					return nil
				}
				if !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				// The first copy was deleted by a whiteout of this same
				// layer: this path gets its own copy.
			}
			c.links[k] = dst
		}
		if err := cpRegular(src, dst, fi.Size()); err != nil {
			return err
		}
	case fs.ModeSymlink:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice, fs.ModeNamedPipe:
		if err := unix.Mknod(dst, st.Mode&(unix.S_IFMT|0o7777), int(st.Rdev)); err != nil {
			return fmt.Errorf("%s: %w", dst, os.NewSyscallError("mknod", err))
		}
	default:
		return nil // sockets: no tar makes them, and they are meaningless copied
	}
	return c.meta(src, dst, fi)
}

// meta gives dst the owner, xattrs, mode and times of src. The order
// matters: chown clears setuid bits and file capabilities, so it comes
// first.
func (c *treeCopier) meta(src, dst string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := cpXattrs(src, dst); err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("%s: %w", dst, os.NewSyscallError("fchmodat", err))
		}
	}
	ts := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: %w", dst, os.NewSyscallError("utimensat", err))
	}
	return nil
}

// cpXattrs copies the extended attributes of src to dst, but overlay's
// own (trusted.overlay.*, user.overlay.*), which would mean something else
// in the merged tree. Filesystems without xattrs are not an error.
func cpXattrs(src, dst string) error {
	names, err := xattrList(src)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("%s: %w", src, err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "trusted.overlay.") || strings.HasPrefix(n, "user.overlay.") {
			continue
		}
		v, err := xattrGet(src, n)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return fmt.Errorf("%s: xattr %s: %w", src, n, err)
		}
		if err := unix.Lsetxattr(dst, n, v, 0); err != nil {
			if err == unix.ENOTSUP {
				continue
			}
			return fmt.Errorf("%s: xattr %s: %w", dst, n, os.NewSyscallError("lsetxattr", err))
		}
	}
	return nil
}

func xattrList(p string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(p, nil)
		if err != nil {
			return nil, os.NewSyscallError("xattrList", err)
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(p, buf)
		if err == unix.ERANGE {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, os.NewSyscallError("xattrList", err)
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func xattrGet(p, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, os.NewSyscallError("xattrGet", err)
		}
		buf := make([]byte, n)
		n, err = unix.Lgetxattr(p, name, buf)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("xattrGet", err)
		}
		return buf[:n], nil
	}
}

// cpRegular copies a regular file's data, skipping holes (SEEK_DATA) so
// a sparse file, such as a huge /var/log/lastlog, stays sparse, and letting
// the kernel copy (copy_file_range, a reflink where the filesystem can).
func cpRegular(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	err = cpData(in, out, size)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

func cpData(in, out *os.File, size int64) error {
	ifd, ofd := int(in.Fd()), int(out.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(ifd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole is left
		}
		if err != nil {
			// No SEEK_DATA here: copy the rest as it is.
			err = cpSpan(in, out, off, size-off)
			if err != nil {
				return err
			}
			break
		}
		hole, err := unix.Seek(ifd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		hole = min(hole, size)
		if err := cpSpan(in, out, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	// The length, including a trailing hole.
	if err := unix.Ftruncate(ofd, size); err != nil {
		return os.NewSyscallError("ftruncate", err)
	}
	return nil
}

// cpSpan copies n bytes at off from in to the same offset of out.
func cpSpan(in, out *os.File, off, n int64) error {
	ifd, ofd := int(in.Fd()), int(out.Fd())
	roff, woff := off, off
	for n > 0 {
		k, err := unix.CopyFileRange(ifd, &roff, ofd, &woff, int(min(n, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || k == 0 {
			// Not supported between these files (or a short source):
			// plain reads and writes.
			_, cerr := io.Copy(io.NewOffsetWriter(out, woff), io.NewSectionReader(in, roff, n))
			return cerr
		}
		n -= int64(k)
	}
	return nil
}
