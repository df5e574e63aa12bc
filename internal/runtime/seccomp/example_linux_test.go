package seccomp_test

import (
	"fmt"
	"log"
	"os"
	"runtime"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/runtime/seccomp"
)

func ExampleCompile() {
	eperm := uint(unix.EPERM)
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"kexec_load", "no_such_call"}, Action: specs.ActErrno, ErrnoRet: &eperm},
		},
	}
	f, err := seccomp.Compile(cfg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("skipped:", f.UnknownSyscalls())
	// Output: skipped: [no_such_call]
}

// The runtime's last steps before it execs the container's process. The
// filter is compiled before anything else happens, so a bad profile fails
// the create, not the start.
func ExampleFilter_Load() {
	var spec specs.Spec // from the bundle's config.json
	f, err := seccomp.Compile(spec.Linux.Seccomp)
	if err != nil {
		log.Fatal(err)
	}

	runtime.LockOSThread() // the filter applies to this thread and what it execs
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		log.Fatal(err)
	}
	if err := f.Load(); err != nil {
		log.Fatal(err)
	}
	log.Fatal(unix.Exec(spec.Process.Args[0], spec.Process.Args, os.Environ()))
}
