package bridge

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// loIndex is the loopback's ifindex: the kernel gives it 1 in every new
// namespace (LOOPBACK_IFINDEX), so lo is set up without a lookup.
const loIndex = 1

// NewNetNS creates a network namespace with lo up and pins it with a bind
// mount at path, which must not exist (its directory must). The namespace
// lives until DeleteNetNS, whether or not a process is in it.
func NewNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o444)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create network namespace %s: %w", path, errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("create network namespace: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		// Namespaces belong to threads: lock this goroutine to its thread
		// while the thread is elsewhere.
		runtime.LockOSThread()
		errc <- pinNewNetNS(path)
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return fmt.Errorf("create network namespace %s: %w", path, err)
	}
	return nil
}

// pinNewNetNS runs on a locked thread: it moves the thread into a new
// namespace, pins that, and moves the thread back. Only a thread that made
// it back is unlocked and returns to the scheduler. One that cannot stays
// locked and dies with its goroutine; merely exiting locked is not enough
// in general, because the runtime never ends the main thread: it would be
// parked for good inside the container's namespace, keeping it alive after
// DeleteNetNS.
func pinNewNetNS(path string) (err error) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/proc/thread-self/ns/net", Err: err}
	}
	defer unix.Close(orig)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return os.NewSyscallError("unshare", err)
	}
	defer func() {
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
			err = errors.Join(err, os.NewSyscallError("setns back", serr))
			return
		}
		runtime.UnlockOSThread()
	}()
	if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "bind mount", Path: path, Err: err}
	}
	// The package-level netlink calls open their socket on this thread,
	// in the new namespace.
	if err := netlink.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: loIndex}}); err != nil {
		unix.Unmount(path, unix.MNT_DETACH)
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// DeleteNetNS deletes the namespace pinned at path: its veths are set
// down, then the mount and the file go. A missing path, or a path that is
// no longer a namespace (half-made by a crash), is not an error.
//
// The veths are not deleted here: unpinned, the namespace dies and the
// kernel's cleanup_net worker deletes its devices, the host ends of the
// pairs with them. Deleting them here instead made every teardown wait
// for an RCU grace period inside RTM_DELLINK (20-50 ms on this project's
// VM, the bulk of what a bridge added to `run --rm`); the worker unlists
// them at once and waits in the background. Setting them down first
// (a cheap, expedited operation) is what keeps the promise if something
// else still pins the namespace, a process that escaped into it or a
// copy of the mount in a private mount namespace: a down veth carries no
// packet, so the address released to IPAM cannot answer twice.
func DeleteNetNS(path string) error {
	if IsNetNS(path) {
		if err := downVeths(path); err != nil {
			return fmt.Errorf("delete network namespace %s: %w", path, err)
		}
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("delete network namespace %s: %w", path, os.NewSyscallError("umount2", err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete network namespace: %w", err)
	}
	return nil
}

// IsNetNS reports whether path is a pinned namespace (a mounted nsfs file).
func IsNetNS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

func downVeths(path string) error {
	fd, err := openNetNS(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	h, err := netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("list links in %s: %w", path, err)
	}
	for _, l := range links {
		if l.Type() != "veth" || l.Attrs().Flags&net.FlagUp == 0 {
			continue
		}
		if err := h.LinkSetDown(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("set %s down in %s: %w", l.Attrs().Name, path, err)
		}
	}
	return nil
}

// openNetNS opens a pinned namespace, refusing anything else: a plain
// file would only fail later, in setns or in the kernel's netlink code,
// with an unhelpful EINVAL.
func openNetNS(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT {
			return -1, fmt.Errorf("network namespace %s: %w", path, errdefs.ErrNotFound)
		}
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not a network namespace: %w", path, errdefs.ErrInvalidArgument)
	}
	return fd, nil
}

// InNetNS runs fn on a thread that is inside the namespace at path, and
// moves the thread back afterwards. Sockets fn opens stay in the namespace
// for their whole life, wherever they are used later; goroutines fn starts
// do not run in it.
func InNetNS(path string, fn func() error) error {
	target, err := openNetNS(path)
	if err != nil {
		return err
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return &os.PathError{Op: "open", Path: "/proc/thread-self/ns/net", Err: err}
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", path, os.NewSyscallError("setns", err))
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// The thread cannot go home: it stays locked, so no other
		// goroutine is ever scheduled on it in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", path, os.NewSyscallError("setns", err)))
	}
	runtime.UnlockOSThread()
	return ferr
}
