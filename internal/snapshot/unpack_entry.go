package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Whiteout names, as the OCI image spec and AUFS define them.
const (
	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = ".wh..wh." // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs)
	whiteoutOpaque     = ".wh..wh..opq"
)

// Overlay xattrs. A layer's own xattrs in these namespaces are dropped: a
// hostile layer could otherwise forge whiteouts, opaque directories or
// redirects into other layers. user.overlay.* is what overlay reads when
// mounted with userxattr (in a user namespace).
const (
	overlayOpaqueXattr     = "trusted.overlay.opaque"
	overlayUserOpaqueXattr = "user.overlay.opaque"
)

func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// holeBlock is the granularity at which zero data becomes a hole; files
// smaller than it are always written.
const holeBlock = 64 << 10

var zeroHole [holeBlock]byte

// dirFlushBytes bounds the memory of directories whose mode and times wait
// for the end. Past it, those that are not ancestors of the current entry
// are applied early: exact for depth-first streams (every real layer),
// and a layer of millions of long directory names cannot exhaust memory.
const dirFlushBytes = 32 << 20

// unpacker writes the entries of one layer below root.
type unpacker struct {
	ctx      context.Context
	cfg      *unpackConfig
	root     *layerRoot
	chown    bool  // running as root: set ownership
	claimed  int64 // sum of the sizes file headers claim
	dirs     []pendingDir
	dirBytes int
}

// pendingDir is a directory's mode and times, applied after all entries
// when the directory is still the one that was created (same inode).
type pendingDir struct {
	name     string
	dev, ino uint64
	mode     uint32
	times    [2]unix.Timespec
}

func (u *unpacker) warnf(format string, args ...any) {
	if u.cfg.warn != nil {
		u.cfg.warn(fmt.Errorf(format, args...))
	}
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global header: records for the archive, no file
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid >= math.MaxUint32 || hdr.Gid >= math.MaxUint32 {
		return fmt.Errorf("owner %d:%d out of range: %w", hdr.Uid, hdr.Gid, errdefs.ErrInvalidArgument)
	}
	parent, base := splitName(name)
	if u.cfg.whiteouts && name != "." && strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(hdr, parent, base)
	}
	if hdr.Typeflag == tar.TypeDir {
		return u.dir(hdr, name, parent, base)
	}
	if name == "." {
		return fmt.Errorf("entry of type %q for the layer root: only a directory can be the root: %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		return u.file(hdr, r, parent, base)
	case tar.TypeSymlink:
		return u.symlink(hdr, parent, base)
	case tar.TypeLink:
		return u.hardlink(hdr, parent, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.node(hdr, name, parent, base)
	}
	return fmt.Errorf("unsupported entry type %q: %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
}

// create runs mk, and if the name exists, removes what is there (a
// directory recursively) and runs it again: tar's replacement semantics.
func (u *unpacker) create(pfd int, base string, mk func() error) error {
	err := mk()
	if err == unix.EEXIST {
		if err := u.root.removeAt(pfd, base); err != nil {
			return err
		}
		err = mk()
	}
	return err
}

func (u *unpacker) file(hdr *tar.Header, r io.Reader, parent, base string) error {
	size := hdr.Size
	if max := u.cfg.maxSize; max > 0 {
		u.claimed += size
		if size > max || u.claimed > max {
			return fmt.Errorf("file of %d bytes takes the layer over %s: refusing: %w", size, humanBytes(max), errdefs.ErrInvalidArgument)
		}
	}
	pfd, err := u.root.parent(parent)
	if err != nil {
		return err
	}
	fd := -1
	err = u.create(pfd, base, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return os.NewSyscallError("openat", err)
	}
	defer unix.Close(fd)
	if err := u.copyData(fd, r, size); err != nil {
		return err
	}
	if err := u.fdMeta(fd, hdr, base, true); err != nil {
		return err
	}
	ts := tarTimes(hdr)
	return os.NewSyscallError("futimens", setTimesFD(fd, &ts))
}

// copyData writes size bytes of r to the new file fd through a pooled
// 1 MiB buffer. Whole 64 KiB blocks of zeros are skipped, leaving holes,
// and the size is set at the end, so a file the tar stores as zeros (or
// as GNU sparse) reads back the same but takes no space for them.
func (u *unpacker) copyData(fd int, r io.Reader, size int64) error {
	if size == 0 {
		return nil
	}
	bp := unpackBufPool.Get().(*[]byte)
	defer unpackBufPool.Put(bp)
	buf := *bp
	var off, end int64 // end: just past the last byte written
	for off < size {
		n := int64(len(buf))
		if rest := size - off; rest < n {
			n = rest
		}
		m, err := io.ReadFull(r, buf[:n])
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		data := buf[:m]
		if size < holeBlock {
			if err := pwriteAll(fd, data, off); err != nil {
				return err
			}
			off += int64(m)
			end = off
			continue
		}
		// Write each run of non-zero blocks with one call.
		for i := 0; i < len(data); {
			j := i
			for j < len(data) {
				k := min(j+holeBlock, len(data))
				if k-j == holeBlock && bytes.Equal(data[j:k], zeroHole[:]) {
					break
				}
				j = k
			}
			if j > i {
				if err := pwriteAll(fd, data[i:j], off+int64(i)); err != nil {
					return err
				}
				end = off + int64(j)
			}
			for j < len(data) {
				k := min(j+holeBlock, len(data))
				if k-j != holeBlock || !bytes.Equal(data[j:k], zeroHole[:]) {
					break
				}
				j = k
			}
			i = j
		}
		off += int64(m)
		if err := u.ctx.Err(); err != nil {
			return err
		}
	}
	if end < size {
		if err := unix.Ftruncate(fd, size); err != nil {
			return os.NewSyscallError("ftruncate", err)
		}
	}
	return nil
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("pwrite", err)
		}
		if n == 0 {
			return os.NewSyscallError("pwrite", unix.EIO)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// fdMeta sets ownership, then the mode (chown clears setuid and setgid),
// then xattrs (chown also clears security.capability) on an open file or
// directory. Directories get their mode later, with their times.
func (u *unpacker) fdMeta(fd int, hdr *tar.Header, name string, chmod bool) error {
	if u.chown {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return os.NewSyscallError("fchown", err)
		}
	}
	if chmod {
		if err := unix.Fchmod(fd, tarMode(hdr)); err != nil {
			return os.NewSyscallError("fchmod", err)
		}
	}
	return u.xattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
}

// atMeta is fdMeta for what cannot be opened safely (symlinks, devices,
// fifos): the *at calls on the name in its parent, never following it.
func (u *unpacker) atMeta(pfd int, base string, hdr *tar.Header, chmod bool) error {
	if u.chown {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return os.NewSyscallError("fchownat", err)
		}
	}
	if chmod {
		// fchmodat2 (Linux 6.6) can refuse to follow; before it, plain
		// fchmodat is still safe: we just made this node, not a symlink.
		err := unix.Fchmodat(pfd, base, tarMode(hdr), unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EOPNOTSUPP {
			err = unix.Fchmodat(pfd, base, tarMode(hdr), 0)
		}
		if err != nil {
			return os.NewSyscallError("fchmodat", err)
		}
	}
	if err := u.xattrs(hdr, func(k string, v []byte) error { return unix.Lsetxattr(procFDPath(pfd, base), k, v, 0) }); err != nil {
		return err
	}
	ts := tarTimes(hdr)
	return os.NewSyscallError("utimensat", unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW))
}

// xattrs applies the SCHILY.xattr.* records of hdr with set.
func (u *unpacker) xattrs(hdr *tar.Header, set func(k string, v []byte) error) error {
	for key, val := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if isOverlayXattr(name) {
			u.warnf("layer entry %q: xattr %s dropped: a layer may not set overlay xattrs", hdr.Name, name)
			continue
		}
		if err := set(name, []byte(val)); err != nil {
			switch err {
			case unix.ENOTSUP, unix.EPERM, unix.EACCES:
				u.warnf("layer entry %q: xattr %s skipped: %v", hdr.Name, name, err)
				continue
			}
			return os.NewSyscallError("setxattr "+name, err)
		}
	}
	return nil
}

func (u *unpacker) dir(hdr *tar.Header, name, parent, base string) error {
	var fd int
	var err error
	if name == "." {
		fd, err = unix.Openat(u.root.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		var pfd int
		if pfd, err = u.root.parent(parent); err != nil {
			return err
		}
		if err := unix.Mkdirat(pfd, base, 0o755); err == unix.EEXIST {
			// A directory over a directory only updates its metadata;
			// anything else there is replaced.
			var st unix.Stat_t
			if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return os.NewSyscallError("fstatat", err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err := u.root.removeAt(pfd, base); err != nil {
					return err
				}
				if err := unix.Mkdirat(pfd, base, 0o755); err != nil {
					return os.NewSyscallError("mkdirat", err)
				}
			}
		} else if err != nil {
			return os.NewSyscallError("mkdirat", err)
		}
		fd, err = unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return os.NewSyscallError("openat", err)
	}
	defer unix.Close(fd)
	if err := u.fdMeta(fd, hdr, base, false); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	return u.deferDir(pendingDir{name: name, dev: st.Dev, ino: st.Ino, mode: tarMode(hdr), times: tarTimes(hdr)})
}

func (u *unpacker) deferDir(d pendingDir) error {
	u.dirs = append(u.dirs, d)
	u.dirBytes += len(d.name) + int(unsafe.Sizeof(d))
	if u.dirBytes <= dirFlushBytes {
		return nil
	}
	keep := u.dirs[:0]
	u.dirBytes = 0
	var err error
	for _, p := range u.dirs {
		if err == nil && p.name != "." && p.name != d.name && !strings.HasPrefix(d.name, p.name+"/") {
			if err = u.applyDir(p); err != nil {
				err = fmt.Errorf("layer entry %q: %w", p.name, err)
			}
			continue
		}
		keep = append(keep, p)
		u.dirBytes += len(p.name) + int(unsafe.Sizeof(p))
	}
	clear(u.dirs[len(keep):])
	u.dirs = keep
	return err
}

// finish applies the directories' modes and times, now that no entry will
// add to them.
func (u *unpacker) finish() error {
	for _, d := range u.dirs {
		if err := u.applyDir(d); err != nil {
			return fmt.Errorf("layer entry %q: %w", d.name, err)
		}
	}
	u.dirs = nil
	return nil
}

func (u *unpacker) applyDir(d pendingDir) error {
	fd, err := u.root.openDir(d.name)
	if err != nil {
		return nil // replaced or removed by a later entry: nothing to do
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Dev != d.dev || st.Ino != d.ino {
		return nil // a later entry put something else at this path
	}
	if err := unix.Fchmod(fd, d.mode); err != nil {
		return os.NewSyscallError("fchmod", err)
	}
	return os.NewSyscallError("futimens", setTimesFD(fd, &d.times))
}

func (u *unpacker) symlink(hdr *tar.Header, parent, base string) error {
	pfd, err := u.root.parent(parent)
	if err != nil {
		return err
	}
	// The target is stored as written; nothing here ever follows it.
	if err := u.create(pfd, base, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) }); err != nil {
		return os.NewSyscallError("symlinkat", err)
	}
	return u.atMeta(pfd, base, hdr, false)
}

// hardlink links base to the entry's target, resolved below the root like
// any name. A hardlink gets no metadata of its own: it shares the target's.
func (u *unpacker) hardlink(hdr *tar.Header, parent, base string) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "." {
		return fmt.Errorf("hardlink to the layer root directory: refusing: %w", errdefs.ErrInvalidArgument)
	}
	pfd, err := u.root.parent(parent)
	if err != nil {
		return err
	}
	tparent, tbase := splitName(target)
	tfd, err := u.root.openDir(tparent)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w: %w", hdr.Linkname, err, errdefs.ErrInvalidArgument)
	}
	defer unix.Close(tfd)
	var tst unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hardlink target %q: %w: %w", hdr.Linkname, os.NewSyscallError("fstatat", err), errdefs.ErrInvalidArgument)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hardlink target %q is a directory: refusing: %w", hdr.Linkname, errdefs.ErrInvalidArgument)
	}
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
		return nil // already that file (a link to itself, or a repeated entry)
	}
	// Flags 0: a symlink target is linked itself, never followed.
	if err := u.create(pfd, base, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) }); err != nil {
		return os.NewSyscallError("linkat", err)
	}
	return nil
}

// node makes a character or block device or a fifo.
func (u *unpacker) node(hdr *tar.Header, name, parent, base string) error {
	var kind uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		kind = unix.S_IFCHR
	case tar.TypeBlock:
		kind = unix.S_IFBLK
	default:
		kind = unix.S_IFIFO
	}
	var dev uint64
	if kind != unix.S_IFIFO {
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor > math.MaxUint32 {
			return fmt.Errorf("device number %d:%d out of range: %w", hdr.Devmajor, hdr.Devminor, errdefs.ErrInvalidArgument)
		}
		dev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	}
	pfd, err := u.root.parent(parent)
	if err != nil {
		return err
	}
	err = u.create(pfd, base, func() error { return unix.Mknodat(pfd, base, kind|0o600, int(dev)) })
	if err == unix.EPERM && kind != unix.S_IFIFO {
		// No CAP_MKNOD (a user namespace): the container could not use
		// the device anyway; runtimes bind-mount the ones it gets.
		u.warnf("layer entry %q: device %d:%d skipped: mknod: %v", name, hdr.Devmajor, hdr.Devminor, err)
		return nil
	}
	if err != nil {
		return os.NewSyscallError("mknodat", err)
	}
	return u.atMeta(pfd, base, hdr, true)
}

// whiteout writes a ".wh." entry in overlay form.
func (u *unpacker) whiteout(hdr *tar.Header, parent, base string) error {
	pfd, err := u.root.parent(parent)
	if err != nil {
		return err
	}
	if base == whiteoutOpaque {
		return u.opaque(pfd, hdr.Name)
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return nil // AUFS bookkeeping; means nothing to overlay
	}
	name := base[len(whiteoutPrefix):]
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("whiteout of %q: refusing: %w", name, errdefs.ErrInvalidArgument)
	}
	// A whiteout is a 0/0 character device; the kernel lets anyone make
	// it (5.8+), even without CAP_MKNOD.
	if err := u.create(pfd, name, func() error { return unix.Mknodat(pfd, name, unix.S_IFCHR, 0) }); err != nil {
		return os.NewSyscallError("mknodat whiteout", err)
	}
	if u.chown {
		if err := unix.Fchownat(pfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return os.NewSyscallError("fchownat", err)
		}
	}
	return nil
}

// opaque marks directory dirfd opaque: overlay hides the lower layers'
// entries in it.
func (u *unpacker) opaque(dirfd int, entry string) error {
	err := unix.Fsetxattr(dirfd, overlayOpaqueXattr, []byte("y"), 0)
	if err == unix.EPERM {
		// Without CAP_SYS_ADMIN (a user namespace) trusted.* is off
		// limits; overlay mounted with userxattr reads user.overlay.*.
		u.warnf("layer entry %q: %s not permitted, set %s instead (mount overlay with userxattr)", entry, overlayOpaqueXattr, overlayUserOpaqueXattr)
		err = unix.Fsetxattr(dirfd, overlayUserOpaqueXattr, []byte("y"), 0)
	}
	return os.NewSyscallError("fsetxattr opaque", err)
}

// tarMode is the permission bits of hdr with setuid, setgid and sticky.
func tarMode(hdr *tar.Header) uint32 { return uint32(hdr.Mode) & 0o7777 }

var (
	epochTime   = time.Unix(0, 0)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// tarTimes gives atime and mtime for utimensat. Times outside what a
// timespec in nanoseconds holds become the epoch (as containerd), and
// atime is never before mtime (as moby: old tars carry no atime).
func tarTimes(hdr *tar.Header) [2]unix.Timespec {
	bound := func(t time.Time) time.Time {
		if t.Before(epochTime) || t.After(maxNanoTime) {
			return epochTime
		}
		return t
	}
	mt, at := bound(hdr.ModTime), bound(hdr.AccessTime)
	if at.Before(mt) {
		at = mt
	}
	return [2]unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
}

// setTimesFD is futimens(3): utimensat(fd, NULL, ts, 0), unwrapped by x/sys/unix.
func setTimesFD(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
