package seccomp

import (
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

//go:generate go run ./internal/gen -o ztables_linux.go

// x32SyscallBit is __X32_SYSCALL_BIT.
const x32SyscallBit = 0x40000000

type sysEntry struct {
	name string
	nr   uint32
}

// syscallTable is sorted by name.
type syscallTable []sysEntry

func (t syscallTable) lookup(name string) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(t, name, func(e sysEntry, name string) int {
		return strings.Compare(e.name, name)
	})
	if !ok {
		return 0, false
	}
	return t[i].nr, true
}

// abi is one syscall ABI the filter can be asked to allow. Several may share
// an AUDIT_ARCH value (x86_64 and x32), which is why the syscall numbers of
// such ABIs must not overlap.
type abi struct {
	name  specs.Arch
	audit uint32
	// wide is true when libseccomp compares all 64 bits of an argument;
	// the 32-bit ABIs compare the low word only.
	wide bool
	// lo, hi bound the syscall numbers that belong to this ABI within its
	// AUDIT_ARCH value.
	lo, hi uint32
	table  syscallTable
	muxed  map[string]muxed
}

// muxed is a call an ABI can also make through socketcall(2) or ipc(2),
// which take the call's number as their first argument.
type muxed struct {
	via  string
	call uint32
}

// x86Muxed are i386's multiplexed calls (SYS_SOCKET... in <linux/net.h>,
// SEMOP... in <linux/ipc.h>). libseccomp gives every rule for one of them a
// twin on the multiplexer, so that denying socket also denies
// socketcall(SYS_SOCKET, ...): otherwise an i386 process could walk around
// a deny rule.
var x86Muxed = map[string]muxed{
	"socket": {"socketcall", 1}, "bind": {"socketcall", 2}, "connect": {"socketcall", 3},
	"listen": {"socketcall", 4}, "accept": {"socketcall", 5}, "getsockname": {"socketcall", 6},
	"getpeername": {"socketcall", 7}, "socketpair": {"socketcall", 8}, "send": {"socketcall", 9},
	"recv": {"socketcall", 10}, "sendto": {"socketcall", 11}, "recvfrom": {"socketcall", 12},
	"shutdown": {"socketcall", 13}, "setsockopt": {"socketcall", 14}, "getsockopt": {"socketcall", 15},
	"sendmsg": {"socketcall", 16}, "recvmsg": {"socketcall", 17}, "accept4": {"socketcall", 18},
	"recvmmsg": {"socketcall", 19}, "sendmmsg": {"socketcall", 20},
	"semop": {"ipc", 1}, "semget": {"ipc", 2}, "semctl": {"ipc", 3}, "semtimedop": {"ipc", 4},
	"msgsnd": {"ipc", 11}, "msgrcv": {"ipc", 12}, "msgget": {"ipc", 13}, "msgctl": {"ipc", 14},
	"shmat": {"ipc", 21}, "shmdt": {"ipc", 22}, "shmget": {"ipc", 23}, "shmctl": {"ipc", 24},
}

var (
	abiX86_64  = &abi{name: specs.ArchX86_64, audit: unix.AUDIT_ARCH_X86_64, wide: true, lo: 0, hi: x32SyscallBit - 1, table: sysX86_64}
	abiX32     = &abi{name: specs.ArchX32, audit: unix.AUDIT_ARCH_X86_64, lo: x32SyscallBit, hi: 0xffffffff, table: sysX32}
	abiX86     = &abi{name: specs.ArchX86, audit: unix.AUDIT_ARCH_I386, lo: 0, hi: 0xffffffff, table: sysX86, muxed: x86Muxed}
	abiAARCH64 = &abi{name: specs.ArchAARCH64, audit: unix.AUDIT_ARCH_AARCH64, wide: true, lo: 0, hi: 0xffffffff, table: sysAARCH64}
	abiARM     = &abi{name: specs.ArchARM, audit: unix.AUDIT_ARCH_ARM, lo: 0, hi: 0xffffffff, table: sysARM}
)

// abis are all the ABIs berth has tables for.
var abis = []*abi{abiX86_64, abiX32, abiX86, abiAARCH64, abiARM}

// family lists, per GOARCH, the native ABI first and then the others the
// same kernel can run. Configured architectures outside the family can never
// show up in seccomp_data.arch on this host, so they cost no instructions.
var family = map[string][]*abi{
	"amd64": {abiX86_64, abiX86, abiX32},
	"386":   {abiX86, abiX86_64, abiX32},
	"arm64": {abiAARCH64, abiARM},
	"arm":   {abiARM, abiAARCH64},
}

// knownArches are the architecture names the runtime-spec lists (those of
// libseccomp 2.6). Profiles are written for many hosts at once, so a name
// that is valid but foreign here is accepted and ignored.
var knownArches = []specs.Arch{
	specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
	specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL,
	specs.ArchMIPSEL64, specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64,
	specs.ArchPPC64LE, specs.ArchS390, specs.ArchS390X, specs.ArchPARISC,
	specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64, specs.ArchM68K,
	specs.ArchSH, specs.ArchSHEB,
}
