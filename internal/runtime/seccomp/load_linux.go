package seccomp

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Load installs the filter on the calling thread, for it and the threads
// and processes it creates afterwards (all threads of the process with
// SECCOMP_FILTER_FLAG_TSYNC). The caller locks the OS thread, sets
// no_new_privs unless it holds CAP_SYS_ADMIN, and execs from that thread:
// a filter cannot be removed, so Load is the last step before exec.
//
// seccomp(2) carries the config's flags; without flags, a kernel older
// than 3.17 that lacks seccomp(2) still gets the filter through prctl(2).
func (f *Filter) Load() error {
	if len(f.prog) == 0 {
		return errors.New("load seccomp filter: empty program (use Compile)")
	}
	fprog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	syscall := "seccomp"
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.flags, uintptr(unsafe.Pointer(&fprog)))
	if errno == unix.ENOSYS && f.flags == 0 {
		syscall = "prctl"
		r, _, errno = unix.Syscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)))
	}
	runtime.KeepAlive(f.prog)
	if errno != 0 {
		return loadError(syscall, errno, f.flags)
	}
	if r != 0 {
		// With TSYNC the kernel names the thread it could not move to the
		// new filter: one whose seccomp state has diverged from the caller's.
		return fmt.Errorf("load seccomp filter: thread %d cannot be synchronized (SECCOMP_FILTER_FLAG_TSYNC): its seccomp filters differ from the caller's", r)
	}
	return nil
}

func loadError(syscall string, errno unix.Errno, flags uintptr) error {
	err := fmt.Errorf("load seccomp filter: %w", os.NewSyscallError(syscall, errno))
	switch {
	case errno == unix.EACCES:
		return fmt.Errorf("%w: set no_new_privs first, or hold CAP_SYS_ADMIN", err)
	case errno == unix.EINVAL && flags != 0:
		return fmt.Errorf("%w: the kernel may not support the filter flags %#x (SECCOMP_FILTER_FLAG_LOG needs Linux 4.14, SPEC_ALLOW 4.17)", err, flags)
	case errno == unix.EINVAL:
		return fmt.Errorf("%w: the kernel may be built without CONFIG_SECCOMP_FILTER", err)
	case errno == unix.ENOSYS:
		return fmt.Errorf("%w: the kernel lacks seccomp(2); drop linux.seccomp.flags to load through prctl(2)", err)
	}
	return err
}
