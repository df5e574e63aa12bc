package container

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/mount"
	"github.com/berth-dev/berth/internal/runtime"
	"github.com/berth-dev/berth/internal/snapshot"
)

// Copying files into and out of containers (docker cp).
//
// A container's paths are resolved by openat2(2) from its root directory
// with RESOLVE_IN_ROOT: a symlink in the container pointing at
// /etc/shadow leads to the container's /etc/shadow, never the host's, and
// ".." stops at the container's root. Everything after that first lookup
// is relative to directory descriptors (openat, mkdirat, fchownat ...), so
// a container that swaps a directory for a symlink while we copy cannot
// send us elsewhere.
//
// A running container's root is /proc/<pid>/root, its mounts included. A
// stopped container's root filesystem is mounted nowhere on the host (by
// design); cp mounts it, with its bind-mounted volumes, in a private mount
// namespace of one locked OS thread, which vanishes with the copy. Writes
// land in the container's writable layer as they would from inside.

// CopyOpts are cp's flags.
type CopyOpts struct {
	// FollowLink copies what a symlink source points to, not the link.
	FollowLink bool
	// Archive: into a container, files are owned by the container's user
	// (Docker's -a); out of one, they keep their owners instead of being
	// owned by the user running cp.
	Archive bool
}

// CopyFromContainer copies src in container ref to the host path dst with
// docker cp's rules, and returns the size of the archive it moved.
func (e *Engine) CopyFromContainer(ref, src, dst string, o CopyOpts) (int64, error) {
	c, err := e.Get(ref)
	if err != nil {
		return 0, err
	}
	var n int64
	err = e.withRoot(c, func(ct tree) error {
		csrc, follow := containerPath(src), o.FollowLink || assertsDir(src)
		st, err := ct.stat(csrc, follow)
		if err != nil {
			return notFoundIn(err, src, ref)
		}
		srcIsDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		dst := followLinks(hostTree, dst)
		var d pathInfo
		if fi, err := os.Stat(dst); err == nil {
			d = pathInfo{exists: true, isDir: fi.IsDir()}
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		tgt, err := planCopy(src, srcIsDir, dst, d)
		if err != nil {
			return err
		}
		dfd, err := hostTree.open(tgt.dir, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("destination directory %s: %w", tgt.dir, pathErr(err))
		}
		defer unix.Close(dfd)
		owner := ownerNone
		if o.Archive {
			owner = ownerFromHeader
		}
		n, err = pipeArchive(
			func(w io.Writer) error { return writeArchive(w, ct, csrc, follow, tgt.name) },
			func(r io.Reader) error { return extractArchive(r, beneath(dfd), ".", owner) })
		return err
	})
	return n, err
}

// CopyToContainer copies the host path src into container ref at dst with
// docker cp's rules, and returns the size of the archive it moved.
func (e *Engine) CopyToContainer(ref, src, dst string, o CopyOpts) (int64, error) {
	c, err := e.Get(ref)
	if err != nil {
		return 0, err
	}
	follow := o.FollowLink || assertsDir(src)
	st, err := hostTree.stat(src, follow)
	if err != nil {
		return 0, pathErr(err)
	}
	srcIsDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	var n int64
	err = e.withRoot(c, func(ct tree) error {
		cdst := followLinks(ct, containerPath(dst))
		var d pathInfo
		if st, err := ct.stat(cdst, true); err == nil {
			d = pathInfo{exists: true, isDir: st.Mode&unix.S_IFMT == unix.S_IFDIR}
		} else if !errors.Is(err, unix.ENOENT) {
			return pathErr(err)
		}
		tgt, err := planCopy(src, srcIsDir, cdst+trailing(dst), d)
		if err != nil {
			return err
		}
		if st, err := ct.stat(tgt.dir, true); err != nil {
			return notFoundIn(err, tgt.dir, ref)
		} else if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s in container %s is not a directory: %w", tgt.dir, ref, errdefs.ErrInvalidArgument)
		}
		owner, err := e.copyOwner(c, ct, o)
		if err != nil {
			return err
		}
		n, err = pipeArchive(
			func(w io.Writer) error { return writeArchive(w, hostTree, src, follow, tgt.name) },
			func(r io.Reader) error { return extractArchive(r, ct, tgt.dir, owner) })
		return err
	})
	return n, err
}

// ArchiveFromContainer writes src in container ref to w as a tar stream
// (cp CONTAINER:SRC -): its top entry is src's base name, or, for a
// directory given as DIR/., the directory's entries.
func (e *Engine) ArchiveFromContainer(ref, src string, o CopyOpts, w io.Writer) error {
	c, err := e.Get(ref)
	if err != nil {
		return err
	}
	return e.withRoot(c, func(ct tree) error {
		csrc, follow := containerPath(src), o.FollowLink || assertsDir(src)
		st, err := ct.stat(csrc, follow)
		if err != nil {
			return notFoundIn(err, src, ref)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if !isDir && assertsDir(src) {
			return fmt.Errorf("%s in container %s is not a directory: %w", src, ref, errdefs.ErrInvalidArgument)
		}
		name := path.Base(csrc)
		if isDir && copiesContents(src) {
			name = ""
		}
		return writeArchive(w, ct, csrc, follow, name)
	})
}

// ExtractToContainer unpacks the tar stream r into the directory dst of
// container ref (cp - CONTAINER:DST), keeping the owners the archive gives.
func (e *Engine) ExtractToContainer(ref, dst string, r io.Reader, o CopyOpts) error {
	c, err := e.Get(ref)
	if err != nil {
		return err
	}
	return e.withRoot(c, func(ct tree) error {
		cdst := containerPath(dst)
		st, err := ct.stat(cdst, true)
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			return pathErr(err)
		}
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("destination \"%s:%s\" must be a directory: %w", ref, dst, errdefs.ErrInvalidArgument)
		}
		owner, err := e.copyOwner(c, ct, o)
		if err != nil {
			return err
		}
		return extractArchive(r, ct, cdst, owner)
	})
}

// copyOwner is who owns what cp writes into a container: the archive's
// owners, or with -a the container's user (Docker's copyUIDGID).
func (e *Engine) copyOwner(c *Container, ct tree, o CopyOpts) (ownerFunc, error) {
	if !o.Archive || c.Config.User == "" {
		return ownerFromHeader, nil
	}
	u, err := resolveUserIn(ct, c.Config.User)
	if err != nil {
		return nil, err
	}
	return func(*tar.Header) (int, int, bool) { return int(u.UID), int(u.GID), true }, nil
}

func notFoundIn(err error, p, ref string) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("could not find the file %s in container %s: %w", p, ref, errdefs.ErrNotFound)
	}
	if errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%s in container %s: not a directory: %w", p, ref, errdefs.ErrInvalidArgument)
	}
	return pathErr(err)
}

// pathErr turns openat2's refusals into what they mean to a user.
func pathErr(err error) error {
	switch {
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w (a symlink leads out of the destination): %w", err, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	return err
}

// followLinks resolves p while it names a symlink, as docker cp does
// with a destination: copying a file onto a link writes the file the link
// points to instead of replacing the link. Relative targets are joined to
// the link's directory; the result is resolved by t later, so a target
// that climbs or is absolute still stays inside a container. A trailing
// "/" or "/." of p is kept.
func followLinks(t tree, p string) string {
	suffix := trailing(p)
	cur := path.Clean(p)
	for i := 0; i < 40; i++ {
		fd, err := t.open(cur, unix.O_PATH|unix.O_NOFOLLOW)
		if err != nil {
			break
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		target := ""
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, err = readlinkFd(fd)
		}
		unix.Close(fd)
		if err != nil || target == "" {
			break
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(cur), target)
		}
		cur = path.Clean(target)
	}
	if cur == path.Clean(p) {
		return p
	}
	return cur + suffix
}

// containerPath is p inside a container: absolute and clean. Relative
// paths are relative to the container's root, as docker cp has them.
func containerPath(p string) string { return path.Clean("/" + p) }

// trailing is the "/" or "/." that ends p, which docker cp's rules read.
func trailing(p string) string {
	switch {
	case strings.HasSuffix(p, "/."):
		return "/."
	case strings.HasSuffix(p, "/"):
		return "/"
	}
	return ""
}

// assertsDir reports whether p says it names a directory ("dir/", "dir/.").
func assertsDir(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || p == "."
}

// copiesContents reports whether a directory source means its entries
// rather than itself ("dir/.", ".", "/").
func copiesContents(src string) bool {
	return src == "." || strings.HasSuffix(src, "/.") || path.Clean(src) == "/"
}

// pathInfo is what cp's rules need to know of a destination.
type pathInfo struct{ exists, isDir bool }

// cpTarget is where a copy goes: the source's archive is unpacked into the
// existing directory dir with its top entry named name, or, when name is
// "", a source directory's entries go straight into dir.
type cpTarget struct{ dir, name string }

// planCopy applies docker cp's rules:
//
//   - a file onto a missing path creates it (its parent must exist); onto
//     a file, replaces it; onto a directory, goes inside under its name.
//     A destination ending in "/" must be an existing directory.
//   - a directory onto a missing path creates it with the source's
//     content; onto a directory, goes inside under its name, or, given as
//     SRC/., its content is copied into the directory. A directory never
//     replaces a file.
func planCopy(src string, srcIsDir bool, dst string, d pathInfo) (cpTarget, error) {
	if !srcIsDir && assertsDir(src) && src != "." {
		return cpTarget{}, fmt.Errorf("source %s is not a directory: %w", src, errdefs.ErrInvalidArgument)
	}
	cdst := path.Clean(dst)
	switch {
	case d.exists && d.isDir:
		if srcIsDir && copiesContents(src) {
			return cpTarget{dir: cdst}, nil
		}
		return cpTarget{dir: cdst, name: path.Base(path.Clean(src))}, nil
	case d.exists:
		if srcIsDir {
			return cpTarget{}, fmt.Errorf("cannot copy a directory to a file: %s is a file: %w", dst, errdefs.ErrInvalidArgument)
		}
		if assertsDir(dst) {
			return cpTarget{}, fmt.Errorf("destination %s is not a directory: %w", dst, errdefs.ErrInvalidArgument)
		}
	case assertsDir(dst) && !srcIsDir:
		return cpTarget{}, fmt.Errorf("destination directory %s does not exist: %w", dst, errdefs.ErrNotFound)
	}
	return cpTarget{dir: path.Dir(cdst), name: path.Base(cdst)}, nil
}

// pipeArchive runs produce and consume joined by a pipe and returns the
// number of bytes that went through. A failing producer's error is the
// cause of whatever the consumer then says, so it wins.
func pipeArchive(produce func(io.Writer) error, consume func(io.Reader) error) (int64, error) {
	pr, pw := io.Pipe()
	cw := &countWriter{w: pw}
	done := make(chan error, 1)
	go func() {
		err := produce(cw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := consume(pr)
	if err == nil {
		_, err = io.Copy(io.Discard, pr) // past the end marker: let the writer finish
	}
	pr.CloseWithError(errCopyAborted)
	if perr := <-done; perr != nil && !errors.Is(perr, errCopyAborted) {
		return cw.n, perr
	}
	return cw.n, err
}

var errCopyAborted = errors.New("copy aborted")

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ---- trees: paths resolved from a directory descriptor ----

// tree is a file tree that copy code reads and writes through descriptors:
// every path is resolved by openat2 from fd with how's rules.
type tree struct {
	fd  int
	how uint64
}

// hostTree is the host's filesystem as the user names it.
var hostTree = tree{fd: unix.AT_FDCWD}

// containerTree is a container's filesystem from its root directory.
func containerTree(root int) tree {
	return tree{fd: root, how: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
}

// beneath is the tree below directory fd: no path, symlinks included, may
// leave it (for unpacking onto the host, where a planted symlink must not
// send a later entry to /etc).
func beneath(fd int) tree {
	return tree{fd: fd, how: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
}

func (t tree) open(p string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: t.how}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(t.fd, p, &how)
		// openat2 asks for a retry when a rename raced the lookup.
		if (err == unix.EAGAIN && i < 32) || err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
}

// stat is lstat(2), or stat(2) with follow, of p.
func (t tree) stat(p string, follow bool) (unix.Stat_t, error) {
	var st unix.Stat_t
	flags, op := unix.O_PATH, "stat"
	if !follow {
		flags, op = flags|unix.O_NOFOLLOW, "lstat"
	}
	fd, err := t.open(p, flags)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			pe.Op = op
		}
		return st, err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return st, &os.PathError{Op: op, Path: p, Err: err}
	}
	return st, nil
}

// readFile opens p for reading if it is a regular file, else nil.
func (t tree) readFile(p string) *os.File {
	fd, err := t.open(p, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), p)
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil
	}
	return f
}

// reopen opens the file behind an O_PATH descriptor for I/O, through its
// /proc/self/fd link, which refers to that very file (no path lookup).
func reopen(fd int, flags int) (*os.File, error) {
	name := fmt.Sprintf("/proc/self/fd/%d", fd)
	nfd, err := unix.Open(name, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("reopen", err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// ---- writing archives ----

type archiver struct {
	tw    *tar.Writer
	links map[[2]uint64]string
}

// writeArchive writes src of t as a tar stream whose top entry is named
// name; with name "", a directory's entries are the top entries.
func writeArchive(w io.Writer, t tree, src string, follow bool, name string) error {
	flags := unix.O_PATH
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := t.open(src, flags)
	if err != nil {
		return pathErr(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	a := &archiver{tw: tar.NewWriter(w), links: map[[2]uint64]string{}}
	if err := a.add(fd, &st, name); err != nil {
		return err
	}
	return a.tw.Close()
}

// add writes the file open as fd (O_PATH) under name, and a directory's
// entries below it.
func (a *archiver) add(fd int, st *unix.Stat_t, name string) error {
	hdr := &tar.Header{
		Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if name != "" {
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			if err := a.tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
		return a.addEntries(fd, name)
	case unix.S_IFREG:
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := a.links[key]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return a.tw.WriteHeader(hdr)
			}
			a.links[key] = name
		}
		f, err := reopen(fd, unix.O_RDONLY|unix.O_NONBLOCK)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer f.Close()
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		if err := a.tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.CopyN(a.tw, f, st.Size)
		if err == io.EOF {
			// The file shrank while we read it: pad, as tar must.
			_, err = io.CopyN(a.tw, zeros{}, st.Size-n)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	case unix.S_IFLNK:
		target, err := readlinkFd(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // a socket: tar has no such entry, Docker skips them too
	}
	if name == "" {
		return nil
	}
	return a.tw.WriteHeader(hdr)
}

// addEntries writes the entries of directory fd, sorted by name.
func (a *archiver) addEntries(fd int, name string) error {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", name, os.NewSyscallError("open", err))
	}
	d := os.NewFile(uintptr(dfd), name)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	sort.Strings(names)
	for _, n := range names {
		cfd, err := unix.Openat(dfd, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			continue // removed while we copy
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path.Join(name, n), os.NewSyscallError("open", err))
		}
		var st unix.Stat_t
		err = unix.Fstat(cfd, &st)
		if err == nil {
			err = a.add(cfd, &st, path.Join(name, n))
		}
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

func readlinkFd(fd int) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", os.NewSyscallError("readlinkat", err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ---- unpacking archives ----

// ownerFunc says who owns an unpacked entry; ok false leaves it to us.
type ownerFunc func(h *tar.Header) (uid, gid int, ok bool)

func ownerFromHeader(h *tar.Header) (int, int, bool) { return h.Uid, h.Gid, true }
func ownerNone(*tar.Header) (int, int, bool)         { return 0, 0, false }

type extractor struct {
	t     tree
	base  string
	owner ownerFunc
	dirs  []*tar.Header // directories whose times are set last
}

// extractArchive unpacks r into the existing directory base of t. Entries
// that climb out of base ("../x") are refused; an existing directory is
// never replaced by a file nor a file by a directory (Docker's
// NoOverwriteDirNonDir); modes, times and, as owner says, owners are kept.
func extractArchive(r io.Reader, t tree, base string, owner ownerFunc) error {
	x := &extractor{t: t, base: base, owner: owner}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if err := x.entry(h, tr); err != nil {
			return err
		}
	}
	for i := len(x.dirs) - 1; i >= 0; i-- {
		h := x.dirs[i]
		rel, _ := entryPath(h.Name)
		fd, err := t.open(path.Join(base, rel), unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY)
		if err != nil {
			continue
		}
		setTimes(fd, "", h, unix.AT_EMPTY_PATH)
		unix.Close(fd)
	}
	return nil
}

// entryPath is an entry's name relative to the destination, "." for the
// destination itself; a name that climbs out of it is refused.
func entryPath(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("invalid archive entry %q: it leads out of the destination: %w", name, errdefs.ErrInvalidArgument)
	}
	if p == "" {
		p = "."
	}
	return p, nil
}

func (x *extractor) entry(h *tar.Header, r io.Reader) error {
	switch h.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return nil // global headers, sparse files and the like: skipped
	}
	rel, err := entryPath(h.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil // the destination itself: it exists and stays as it is
	}
	pfd, err := x.parent(path.Dir(rel))
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, pathErr(err))
	}
	defer unix.Close(pfd)
	leaf := path.Base(rel)
	var st unix.Stat_t
	exists := unix.Fstatat(pfd, leaf, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	if exists {
		switch {
		case h.Typeflag == tar.TypeDir && isDir: // merged
		case h.Typeflag == tar.TypeDir:
			return fmt.Errorf("cannot overwrite non-directory %q with directory %q: %w", rel, h.Name, errdefs.ErrConflict)
		case isDir:
			return fmt.Errorf("cannot overwrite directory %q with non-directory %q: %w", rel, h.Name, errdefs.ErrConflict)
		default:
			if err := unix.Unlinkat(pfd, leaf, 0); err != nil {
				return fmt.Errorf("replace %s: %w", rel, os.NewSyscallError("unlinkat", err))
			}
		}
	}
	uid, gid, chown := x.owner(h)
	mode := uint32(h.Mode & 0o7777)
	fail := func(op string, err error) error { return fmt.Errorf("%s: %w", rel, os.NewSyscallError(op, err)) }
	switch h.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := unix.Mkdirat(pfd, leaf, 0o700); err != nil {
				return fail("mkdirat", err)
			}
		}
		fd, err := unix.Openat(pfd, leaf, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail("open", err)
		}
		defer unix.Close(fd)
		if chown {
			if err := unix.Fchown(fd, uid, gid); err != nil {
				return fail("fchown", err)
			}
		}
		if err := unix.Fchmod(fd, mode); err != nil {
			return fail("fchmod", err)
		}
		x.dirs = append(x.dirs, h)
	case tar.TypeReg:
		fd, err := unix.Openat(pfd, leaf, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fail("open", err)
		}
		f := os.NewFile(uintptr(fd), rel)
		defer f.Close()
		if _, err := io.Copy(f, r); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if chown {
			if err := unix.Fchown(fd, uid, gid); err != nil {
				return fail("fchown", err)
			}
		}
		if err := unix.Fchmod(fd, mode); err != nil { // after chown, which clears set-id bits
			return fail("fchmod", err)
		}
		return setTimes(fd, "", h, unix.AT_EMPTY_PATH)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, leaf); err != nil {
			return fail("symlinkat", err)
		}
		if chown {
			if err := unix.Fchownat(pfd, leaf, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fail("lchown", err)
			}
		}
		return setTimes(pfd, leaf, h, unix.AT_SYMLINK_NOFOLLOW)
	case tar.TypeLink:
		target, err := entryPath(h.Linkname)
		if err != nil || target == "." {
			return fmt.Errorf("invalid hard link %q -> %q: %w", h.Name, h.Linkname, errdefs.ErrInvalidArgument)
		}
		tfd, err := x.t.open(path.Join(x.base, path.Dir(target)), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("hard link %s: %w", rel, pathErr(err))
		}
		defer unix.Close(tfd)
		if err := unix.Linkat(tfd, path.Base(target), pfd, leaf, 0); err != nil {
			return fail("linkat", err)
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		dev := unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
		if err := unix.Mknodat(pfd, leaf, kind|mode, int(dev)); err != nil {
			return fail("mknodat", err)
		}
		fd, err := unix.Openat(pfd, leaf, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail("open", err)
		}
		defer unix.Close(fd)
		if chown {
			if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
				return fail("fchownat", err)
			}
		}
		// chmod through the descriptor's /proc link: the node itself.
		if err := unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode); err != nil {
			return fail("chmod", err)
		}
		return setTimes(fd, "", h, unix.AT_EMPTY_PATH)
	}
	return nil
}

// parent opens directory dir (relative to the destination), creating the
// missing ones as mkdir -p would.
func (x *extractor) parent(dir string) (int, error) {
	full := path.Join(x.base, dir)
	fd, err := x.t.open(full, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, unix.ENOENT) || dir == "." {
		return fd, err
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := path.Join(x.base, strings.Join(parts[:i+1], "/"))
		fd, err := x.t.open(p, unix.O_PATH|unix.O_DIRECTORY)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return -1, err
		}
		pfd, err := x.t.open(path.Dir(p), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, err
		}
		err = unix.Mkdirat(pfd, parts[i], 0o755)
		unix.Close(pfd)
		if err != nil && err != unix.EEXIST {
			return -1, &os.PathError{Op: "mkdir", Path: p, Err: err}
		}
	}
	return x.t.open(full, unix.O_PATH|unix.O_DIRECTORY)
}

func setTimes(dirfd int, name string, h *tar.Header, flags int) error {
	atime := h.AccessTime
	if atime.IsZero() {
		atime = h.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(dirfd, name, ts, flags); err != nil {
		return fmt.Errorf("%s: %w", h.Name, os.NewSyscallError("utimensat", err))
	}
	return nil
}

// ---- the container's root directory ----

// withRoot calls fn with container c's filesystem: a running container's
// as its processes see it, a stopped one's mounted for the call only.
func (e *Engine) withRoot(c *Container, fn func(t tree) error) error {
	if st, err := e.Runtime.State(c.ID); err == nil && st.Pid > 0 && st.Status != runtime.Stopped && st.Status != runtime.Creating {
		if fd, err := procRoot(st.Pid); err == nil {
			defer unix.Close(fd)
			// The pid is the container's still (not a reused one) if
			// the runtime says so after we opened its root.
			if again, err := e.Runtime.State(c.ID); err == nil && again.Pid == st.Pid && again.Status != runtime.Stopped {
				return fn(containerTree(fd))
			}
		}
	}
	return e.withStoppedRoot(c, fn)
}

// withStoppedRoot mounts the container's root filesystem (image layers,
// writable layer, bind-mounted volumes) in a private mount namespace and
// calls fn with it. The namespace belongs to one OS thread that does
// nothing else: the thread unshares it, mounts, hands the root over as a
// descriptor (usable from any thread), and waits; when fn returns it
// unmounts and exits (a locked goroutine that ends takes its thread
// along), so nothing was ever mounted in the host's namespace and nothing
// is left.
func (e *Engine) withStoppedRoot(c *Container, fn func(t tree) error) error {
	plan, err := e.Images.Snapshots.Mounts(c.ID)
	if err != nil {
		return fmt.Errorf("the container's filesystem: %w", err)
	}
	spec, err := runtime.LoadSpec(e.dir(c.ID))
	if err != nil {
		return err
	}
	target := filepath.Join(e.dir(c.ID), "rootfs")
	type mounted struct {
		fd  int
		err error
	}
	ready := make(chan mounted, 1)
	release := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		// Never unlocked: the thread's mount namespace is not the
		// process's, so no other goroutine may ever run on it.
		goruntime.LockOSThread()
		fd, err := mountPrivate(plan, spec, target, c.HostConfig.ReadonlyRootfs)
		ready <- mounted{fd, err}
		if err != nil {
			return
		}
		<-release
		unix.Unmount(target, unix.MNT_DETACH)
	}()
	m := <-ready
	if m.err != nil {
		<-exited
		return m.err
	}
	defer func() {
		unix.Close(m.fd)
		close(release)
		<-exited
	}()
	return fn(containerTree(m.fd))
}

// mountPrivate is withStoppedRoot's thread: it leaves the host's mount
// namespace for a private copy and mounts the root filesystem on target
// there. It returns the root as an O_PATH descriptor.
func mountPrivate(plan []snapshot.Mount, spec *specs.Spec, target string, readonly bool) (int, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return -1, fmt.Errorf("mount the stopped container's filesystem: %w", os.NewSyscallError("unshare", err))
	}
	// Nothing mounted from here on may propagate to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return -1, fmt.Errorf("make the private mount namespace private: %w", os.NewSyscallError("mount", err))
	}
	for i, m := range plan {
		o := mount.Parse(m.Options)
		fstype, flags := m.Type, o.Flags
		if m.Type == "bind" || m.Type == "rbind" || o.Bind {
			fstype, flags = "", flags|unix.MS_BIND
			if m.Type == "rbind" || o.Recursive {
				flags |= unix.MS_REC
			}
		} else if readonly {
			flags |= unix.MS_RDONLY
		}
		data := o.DataString()
		if len(data) >= os.Getpagesize() {
			return -1, fmt.Errorf("the container's filesystem has too many layers to mount: %w", errdefs.ErrInvalidArgument)
		}
		if err := unix.Mount(m.Source, target, fstype, flags, data); err != nil {
			return -1, fmt.Errorf("mount the container's filesystem (%d: %s): %w", i, m.Type, os.NewSyscallError("mount", err))
		}
		if flags&unix.MS_BIND != 0 && readonly {
			if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return -1, os.NewSyscallError("mount", err)
			}
		}
	}
	root, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("open", err)
	}
	if err := mountBinds(root, spec); err != nil {
		unix.Close(root)
		return -1, err
	}
	return root, nil
}

// mountBinds mounts the container's bind mounts (volumes, /etc/hosts ...)
// on their destinations inside root, resolved inside the container.
// Destinations the image does not have are left out: the runtime creates
// them at start, cp has nothing there to show.
func mountBinds(root int, spec *specs.Spec) error {
	t := containerTree(root)
	for _, m := range spec.Mounts {
		o := mount.Parse(m.Options)
		if m.Type != "bind" && !o.Bind {
			continue
		}
		dst := containerPath(m.Destination)
		if dst == "/" || dst == "/proc" || strings.HasPrefix(dst, "/proc/") || dst == "/sys" || strings.HasPrefix(dst, "/sys/") ||
			dst == "/dev" || strings.HasPrefix(dst, "/dev/") {
			continue
		}
		fd, err := t.open(dst, unix.O_PATH)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		flags := uintptr(unix.MS_BIND)
		if o.Recursive || slicesContains(m.Options, "rbind") {
			flags |= unix.MS_REC
		}
		err = unix.Mount(m.Source, fmt.Sprintf("/proc/self/fd/%d", fd), "", flags, "")
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Source, m.Destination, os.NewSyscallError("mount", err))
		}
		if o.Flags&unix.MS_RDONLY != 0 {
			// Remount the new mount (reopened: the old descriptor is
			// the directory under it) read-only.
			fd, err := t.open(dst, unix.O_PATH)
			if err != nil {
				return err
			}
			err = unix.Mount("", fmt.Sprintf("/proc/self/fd/%d", fd), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("remount %s read-only: %w", m.Destination, os.NewSyscallError("mount", err))
			}
		}
	}
	return nil
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
