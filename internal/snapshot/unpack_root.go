package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// layerRoot resolves paths below the directory a layer is unpacked into.
// Every lookup starts from fd and stays below it: openat2 with
// RESOLVE_IN_ROOT makes the kernel treat fd as "/" for the whole walk,
// symlinks and ".." included. Where openat2 is missing (kernel < 5.6, or a
// seccomp filter that hides it), walkDir does the same walk one component
// at a time with O_NOFOLLOW opens, following each symlink itself with the
// same semantics; the tests run the hostile cases through both.
type layerRoot struct {
	fd      int
	dir     string
	openat2 bool

	// One cached parent directory: tar streams list a directory's files
	// together, so most entries reuse the previous entry's parent.
	cacheName string
	cacheFD   int
	// stale is set when an entry removed something: a removal can change
	// what a cached path resolves to (a symlink on it replaced), so the
	// cache is dropped before the next lookup.
	stale bool
}

// resolveFlags: stay below the root, never follow /proc magic links, never
// cross a mount point (nothing in a fresh layer is one).
const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// noOpenat2 forces the walkDir fallback; tests set it to cover both.
var noOpenat2 atomic.Bool

func openLayerRoot(dir string) (*layerRoot, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("layer directory %s: %w", dir, os.NewSyscallError("open", err))
	}
	l := &layerRoot{fd: fd, dir: dir, cacheFD: -1}
	if !noOpenat2.Load() {
		probe, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveFlags})
		switch {
		case err == nil:
			unix.Close(probe)
			l.openat2 = true
		case err == unix.ENOSYS || err == unix.EPERM:
			// Old kernel or a seccomp profile that denies openat2: walk.
		default:
			unix.Close(fd)
			return nil, fmt.Errorf("layer directory %s: %w", dir, os.NewSyscallError("openat2", err))
		}
	}
	return l, nil
}

func (l *layerRoot) close() {
	l.dropCache()
	unix.Close(l.fd)
}

func (l *layerRoot) dropCache() {
	if l.cacheFD >= 0 {
		unix.Close(l.cacheFD)
	}
	l.cacheName, l.cacheFD, l.stale = "", -1, false
}

// parent returns a descriptor of directory rel (a clean relative path, "."
// for the root), creating missing directories 0755 as tar does. The
// descriptor is borrowed: valid until the next call to parent.
func (l *layerRoot) parent(rel string) (int, error) {
	if rel == "." {
		return l.fd, nil
	}
	if l.stale {
		l.dropCache()
	}
	if l.cacheFD >= 0 && l.cacheName == rel {
		return l.cacheFD, nil
	}
	fd, err := l.mkdirAll(rel)
	if err != nil {
		return -1, err
	}
	l.dropCache()
	l.cacheName, l.cacheFD = rel, fd
	return fd, nil
}

// openDir opens directory rel below the root. The caller closes the result.
func (l *layerRoot) openDir(rel string) (int, error) {
	if !l.openat2 {
		return l.walkDir(rel)
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveFlags}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(l.fd, rel, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			// A rename or mount somewhere on the host during a walk
			// through ".." made the kernel unsure it stayed inside; it
			// asks for a retry. Under a storm of them, walk instead.
			if tries >= 16 {
				return l.walkDir(rel)
			}
		default:
			return -1, os.NewSyscallError("openat2", err)
		}
	}
}

// mkdirAll opens directory rel, creating what is missing of it.
func (l *layerRoot) mkdirAll(rel string) (int, error) {
	fd, err := l.openDir(rel)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, fmt.Errorf("parent directory %q: %w", rel, err)
	}
	// Slow path, only for layers that omit parent directories: go down
	// one component at a time from the root. A plain directory is opened
	// directly (what resolving its prefix would give), a missing one is
	// made, and a symlink is resolved in the root from its full prefix.
	comps := strings.Split(rel, "/")
	pfd := -1
	defer func() {
		if pfd >= 0 {
			unix.Close(pfd)
		}
	}()
	for i, c := range comps {
		at := l.fd
		if pfd >= 0 {
			at = pfd
		}
		fd, err := unix.Openat(at, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			if err := unix.Mkdirat(at, c, 0o755); err != nil {
				return -1, fmt.Errorf("parent directory %q: %w", strings.Join(comps[:i+1], "/"), os.NewSyscallError("mkdirat", err))
			}
			fd, err = unix.Openat(at, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err == unix.ELOOP || err == unix.ENOTDIR {
			// A symlink (or not a directory, which this reports too).
			// Directories are never made through a link: a dangling
			// one is an error.
			fd, err = l.openDir(strings.Join(comps[:i+1], "/"))
		} else if err != nil {
			err = os.NewSyscallError("openat", err)
		}
		if err != nil {
			return -1, fmt.Errorf("parent directory %q: %w", strings.Join(comps[:i+1], "/"), err)
		}
		if pfd >= 0 {
			unix.Close(pfd)
		}
		pfd = fd
	}
	fd, pfd = pfd, -1
	return fd, nil
}

// maxSymlinks is the kernel's limit on symlinks followed in one lookup.
const maxSymlinks = 40

// walkDir resolves rel as openat2(RESOLVE_IN_ROOT) does, for kernels
// without it: one O_NOFOLLOW open per component; a symlink is read and its
// target spliced into what remains, an absolute one starting again at the
// root; ".." never climbs above the root.
func (l *layerRoot) walkDir(rel string) (int, error) {
	var stack []int // descriptors of the directories below the root walked so far
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	cur := func() int {
		if len(stack) == 0 {
			return l.fd
		}
		return stack[len(stack)-1]
	}
	popAll := func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
		stack = stack[:0]
	}
	todo := strings.Split(rel, "/")
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 0 {
				unix.Close(stack[len(stack)-1])
				stack = stack[:len(stack)-1]
			}
			continue
		}
		fd, err := unix.Openat(cur(), c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			stack = append(stack, fd)
			continue
		}
		if err != unix.ELOOP && err != unix.ENOTDIR {
			return -1, os.NewSyscallError("openat", err)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(cur(), c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return -1, os.NewSyscallError("fstatat", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return -1, os.NewSyscallError("openat", unix.ENOTDIR)
		}
		if links++; links > maxSymlinks {
			return -1, os.NewSyscallError("openat", unix.ELOOP)
		}
		target, err := readlinkAt(cur(), c)
		if err != nil {
			return -1, err
		}
		if strings.HasPrefix(target, "/") {
			popAll()
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if len(stack) == 0 {
		fd, err := unix.Openat(l.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, os.NewSyscallError("openat", err)
		}
		return fd, nil
	}
	fd := stack[len(stack)-1]
	stack = stack[:len(stack)-1]
	return fd, nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", os.NewSyscallError("readlinkat", err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// removeAt removes name from directory dirfd, recursively if it is a
// directory, never following a symlink.
func (l *layerRoot) removeAt(dirfd int, name string) error {
	l.stale = true
	return removeAllAt(dirfd, name, 0)
}

// removeAllDepth bounds the recursion; each level holds one descriptor.
const removeAllDepth = 4096

func removeAllAt(dirfd int, name string, depth int) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return os.NewSyscallError("unlinkat", err)
	}
	if depth > removeAllDepth {
		return os.NewSyscallError("unlinkat", unix.ELOOP)
	}
	fd, oerr := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr != nil {
		return os.NewSyscallError("unlinkat", err)
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	for {
		names, rerr := d.Readdirnames(1024)
		for _, n := range names {
			if err := removeAllAt(fd, n, depth+1); err != nil {
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return os.NewSyscallError("unlinkat", err)
	}
	return nil
}

// procFDPath names entry name of directory dirfd for the calls that have no
// *at form (lsetxattr): the kernel resolves the /proc/self/fd link to the
// directory itself, and the final component is not followed.
func procFDPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// cleanName turns a tar entry name (or hardlink target) into a clean path
// relative to the layer root: a leading "/" is dropped as tar does, and a
// name that climbs above the root is refused. "." is the root itself.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name: %w", errdefs.ErrInvalidArgument)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("name contains NUL: %w", errdefs.ErrInvalidArgument)
	}
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("name %q climbs out of the layer with \"..\": refusing: %w", name, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// splitName splits a clean relative name into its parent and last element.
func splitName(p string) (parent, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}
