package runtime

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var rlimitTypes = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

// applyRlimits sets only the limits the config lists. syscall.Setrlimit
// (not x/sys) is used so the Go runtime forgets its saved RLIMIT_NOFILE and
// does not restore it over ours at execve.
func applyRlimits(limits []specs.POSIXRlimit) error {
	for i, rl := range limits {
		res := rlimitTypes[rl.Type]
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := syscall.Setrlimit(res, &lim); err != nil {
			if errors.Is(err, syscall.EPERM) {
				return fmt.Errorf("process.rlimits[%d]: setting %s to soft %d hard %d: raising a hard limit needs CAP_SYS_RESOURCE, which this host does not grant: %w", i, rl.Type, rl.Soft, rl.Hard, os.NewSyscallError("setrlimit", err))
			}
			return fmt.Errorf("process.rlimits[%d]: setting %s: %w", i, rl.Type, os.NewSyscallError("setrlimit", err))
		}
	}
	return nil
}
