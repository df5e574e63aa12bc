// Package seccomp compiles the OCI runtime-spec's linux.seccomp section into
// a classic-BPF seccomp filter and installs it on the calling thread, so a
// container's process gets the same syscall policy runc gives it.
//
// The compiler is pure Go instead of a binding to libseccomp: berth ships as
// one static binary, and linking libseccomp would mean cgo, a C toolchain
// for every build, and a library version that decides which syscalls a
// profile can name. Here the syscall tables are generated from
// golang.org/x/sys (see internal/gen) and committed.
//
// # Semantics
//
// Compile follows libseccomp as runc drives it:
//
//   - The program first checks seccomp_data.arch. The native architecture of
//     the binary is always allowed; the config's architectures add the ones
//     the same kernel can run (x86_64, x32 and i386 on x86; aarch64 and arm on
//     arm). Any other architecture gets SECCOMP_RET_KILL_PROCESS, which is
//     stricter than libseccomp's default of killing the thread: a process
//     that switches ABI to dodge the filter should not survive.
//   - x32 shares AUDIT_ARCH_X86_64 with x86_64; its syscalls carry
//     __X32_SYSCALL_BIT. If x32 is not allowed, a number with that bit set is
//     treated as a bad architecture, except -1, which tracers use to skip a
//     call.
//   - Syscall names unknown to an architecture are skipped for it, as runc
//     does; names no allowed architecture knows are listed by
//     Filter.UnknownSyscalls.
//   - A rule whose action equals the default action is dropped (libseccomp
//     refuses it, runc skips it). For one syscall, a rule without args wins
//     over rules with args (the first one, if several); rules with args are
//     tried in config order and the first whose args all match decides.
//   - Args are compared as 64-bit values on x86_64 and aarch64. On i386, arm
//     and x32 only the low 32 bits of the argument and of the config's value
//     are compared, as libseccomp does. When two args of one rule name the
//     same index, the rule becomes one rule per arg (OR), as runc does.
//     SCMP_CMP_MASKED_EQ takes the mask from value and the datum from
//     valueTwo.
//   - On i386, a rule for a call that socketcall(2) or ipc(2) can make also
//     gets a twin on the multiplexer, matching its call number in argument
//     0 (which replaces the rule's own condition on argument 0), as
//     libseccomp does: denying socket denies socketcall(SYS_SOCKET, ...).
//   - Like runc's patchbpf, when the default action denies, syscalls numbered
//     above the highest one the config names get ENOSYS instead, so a libc
//     newer than the profile falls back (clone3 → clone) instead of failing.
//
// The syscall number is looked up with a binary search over ranges of
// numbers that share an action, so the cost of a syscall grows with the log
// of the profile, and Docker's default profile stays far below the kernel's
// 4096-instruction limit.
//
// Flags SECCOMP_FILTER_FLAG_TSYNC, _LOG and _SPEC_ALLOW are passed to
// seccomp(2). _WAIT_KILLABLE_RECV only changes how a notify listener waits
// and is dropped, as libseccomp drops it when there is no listener.
//
// Not implemented, failing with errdefs.ErrNotImplemented: SCMP_ACT_NOTIFY
// (so listenerPath is ignored), and GOARCHes other than amd64, 386, arm64
// and arm. The tables name exactly the syscalls libseccomp's syscalls.csv
// names for those five ABIs.
package seccomp
