package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capNames lists capabilities by number, as in linux/capability.h.
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// capValue returns the number of a capability named with or without the
// CAP_ prefix, in any case.
func capValue(name string) (int, bool) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	for i, c := range capNames {
		if c == n {
			return i, true
		}
	}
	return 0, false
}

var lastCap = sync.OnceValue(func() int {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return len(capNames) - 1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return len(capNames) - 1
	}
	return n
})

// capSet is the five capability sets as bit masks.
type capSet struct {
	bounding, effective, inheritable, permitted, ambient uint64
}

// planCaps turns the config's names into masks, leaving out capabilities
// this kernel does not know (as runc does: a config written for a newer
// kernel still runs).
func planCaps(c *specs.LinuxCapabilities) capSet {
	var s capSet
	if c == nil {
		return s
	}
	last := lastCap()
	mask := func(names []string) uint64 {
		var m uint64
		for _, n := range names {
			if v, ok := capValue(n); ok && v <= last {
				m |= 1 << uint(v)
			}
		}
		return m
	}
	s.bounding = mask(c.Bounding)
	s.effective = mask(c.Effective)
	s.inheritable = mask(c.Inheritable)
	s.permitted = mask(c.Permitted)
	s.ambient = mask(c.Ambient)
	return s
}

// dropBounding removes from the calling thread's bounding set every
// capability not in keep. It needs CAP_SETPCAP, so it runs before the
// switch to the container's user.
func dropBounding(keep uint64) error {
	for c := 0; c <= lastCap(); c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if err == unix.EINVAL {
				continue
			}
			return os.NewSyscallError(fmt.Sprintf("prctl(PR_CAPBSET_DROP, %s)", capNames[c]), err)
		}
	}
	return nil
}

// applyCaps sets the effective, permitted and inheritable sets of the
// calling thread, then raises the ambient ones that the kernel allows.
func applyCaps(s capSet) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[1].Effective = uint32(s.effective), uint32(s.effective>>32)
	data[0].Permitted, data[1].Permitted = uint32(s.permitted), uint32(s.permitted>>32)
	data[0].Inheritable, data[1].Inheritable = uint32(s.inheritable), uint32(s.inheritable>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return os.NewSyscallError("capset", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return os.NewSyscallError("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", err)
	}
	for c := 0; c <= lastCap(); c++ {
		if s.ambient&(1<<uint(c)) == 0 {
			continue
		}
		// The kernel raises only what is permitted and inheritable. runc
		// warns and goes on when it cannot (its own `runc spec` lists
		// ambient capabilities without inheritable ones), and configs
		// rely on that: so do we.
		_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0)
	}
	return nil
}

// HostCapabilities lists the capabilities this process can hand on: those
// the kernel knows and our bounding set holds. --privileged gets these, as
// Docker's "all capabilities" means what the host can give (here, a VM
// without CAP_SYS_RESOURCE in its bounding set cannot give that one).
func HostCapabilities() []string {
	var out []string
	for i, name := range capNames {
		if i > lastCap() {
			break
		}
		if r, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0, 0); errno == 0 && r == 1 {
			out = append(out, name)
		}
	}
	return out
}
