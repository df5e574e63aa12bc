package fsutil

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// SyncDir fsyncs a directory, making a rename or creation in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// Flock takes how (LOCK_SH, LOCK_EX, optionally | LOCK_NB) on f, retrying
// when a signal interrupts the wait. The lock belongs to f's open file
// description: closing f releases it.
func Flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if !errors.Is(ferr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	if ferr != nil {
		return os.NewSyscallError("flock", ferr)
	}
	return nil
}

// CloseOnExecFrom marks every descriptor from lowfd up close-on-exec. A
// process handed descriptors to use (the monitor's hooks get the status
// pipe and the container's stdio) calls it first, so that nothing it
// starts later inherits them: Go's os/exec closes only descriptors it
// opened itself, and a long-lived child (the DNS server) holding a
// container's stdout would keep the monitor waiting for end-of-file.
// Descriptors still work here and are still passed on where exec.Cmd's
// Stdin/Stdout/ExtraFiles name them: those are dup2'd in the child.
func CloseOnExecFrom(lowfd int) error {
	err := unix.CloseRange(uint(lowfd), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil || (err != unix.ENOSYS && err != unix.EINVAL) {
		return err
	}
	ents, err := os.ReadDir("/proc/self/fd") // kernels before 5.11
	if err != nil {
		return err
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= lowfd {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}
