package seccomp

import (
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

func uintp(v uint) *uint { return &v }

func allow(names ...string) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: names, Action: specs.ActAllow}
}

func errnoRule(errno uint, names ...string) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: names, Action: specs.ActErrno, ErrnoRet: uintp(errno)}
}

func withArgs(sc specs.LinuxSyscall, args ...specs.LinuxSeccompArg) specs.LinuxSyscall {
	sc.Args = args
	return sc
}

func arg(index uint, op specs.LinuxSeccompOperator, value uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: index, Op: op, Value: value}
}

func masked(index uint, mask, datum uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: index, Op: specs.OpMaskedEqual, Value: mask, ValueTwo: datum}
}

// sys is the number of a syscall on an ABI; tests only name real ones.
func sys(a *abi, name string) uint32 {
	nr, ok := a.table.lookup(name)
	if !ok {
		panic(name + " unknown on " + string(a.name))
	}
	return nr
}

func loadProfile(t testing.TB, name string) *specs.LinuxSeccomp {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var cfg specs.LinuxSeccomp
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

func TestValidate(t *testing.T) {
	errnoDefault := func(syscalls ...specs.LinuxSyscall) *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: syscalls}
	}
	for _, tc := range []struct {
		name  string
		cfg   *specs.LinuxSeccomp
		want  string // the whole message; empty when cfg is valid
		class error
	}{
		{"nil", nil, "linux.seccomp: missing", errdefs.ErrInvalidArgument},
		{"no default", &specs.LinuxSeccomp{}, "linux.seccomp.defaultAction: required", errdefs.ErrInvalidArgument},
		{"unknown default", &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_FOO"},
			`linux.seccomp.defaultAction: unknown action "SCMP_ACT_FOO"`, errdefs.ErrInvalidArgument},
		{"notify default", &specs.LinuxSeccomp{DefaultAction: specs.ActNotify},
			"linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not supported: berth has no seccomp notify listener", errdefs.ErrNotImplemented},
		{"defaultErrnoRet with allow", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, DefaultErrnoRet: uintp(1)},
			"linux.seccomp.defaultErrnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not SCMP_ACT_ALLOW", errdefs.ErrInvalidArgument},
		{"defaultErrnoRet too big", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(70000)},
			"linux.seccomp.defaultErrnoRet: 70000 does not fit in the 16 bits seccomp returns", errdefs.ErrInvalidArgument},
		{"trace with message", &specs.LinuxSeccomp{DefaultAction: specs.ActTrace, DefaultErrnoRet: uintp(7)}, "", nil},
		{"errno zero", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(0)}, "", nil},
		{"unknown arch", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86, "SCMP_ARCH_FOO"}},
			`linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_FOO"`, errdefs.ErrInvalidArgument},
		{"foreign arches", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchPPC64LE, specs.ArchS390X, specs.ArchRISCV64, specs.ArchMIPSEL64N32}}, "", nil},
		{"unknown flag", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_FOO"}},
			`linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_FOO"`, errdefs.ErrInvalidArgument},
		{"new listener", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_NEW_LISTENER"}},
			"linux.seccomp.flags[1]: SECCOMP_FILTER_FLAG_NEW_LISTENER is not supported: berth has no seccomp notify listener", errdefs.ErrNotImplemented},
		{"known flags", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{
			"SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagWaitKillableRecv}}, "", nil},
		{"no names", errnoDefault(specs.LinuxSyscall{Action: specs.ActAllow}),
			"linux.seccomp.syscalls[0].names: no syscall named", errdefs.ErrInvalidArgument},
		{"empty name", errnoDefault(allow("read", "")),
			"linux.seccomp.syscalls[0].names[1]: empty syscall name", errdefs.ErrInvalidArgument},
		{"unknown action", errnoDefault(allow("read"), allow("write"), allow("close"), specs.LinuxSyscall{Names: []string{"uname"}, Action: "SCMP_ACT_FOO"}),
			`linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`, errdefs.ErrInvalidArgument},
		{"no action", errnoDefault(specs.LinuxSyscall{Names: []string{"read"}}),
			"linux.seccomp.syscalls[0].action: required", errdefs.ErrInvalidArgument},
		{"notify action", errnoDefault(allow("read"), specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActNotify}),
			"linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY is not supported: berth has no seccomp notify listener", errdefs.ErrNotImplemented},
		{"errnoRet with kill", errnoDefault(specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActKillProcess, ErrnoRet: uintp(1)}),
			"linux.seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not SCMP_ACT_KILL_PROCESS", errdefs.ErrInvalidArgument},
		{"arg index", errnoDefault(withArgs(allow("read"), arg(0, specs.OpEqualTo, 1), arg(6, specs.OpEqualTo, 1))),
			"linux.seccomp.syscalls[0].args[1].index: 6 is out of range: syscalls have arguments 0 to 5", errdefs.ErrInvalidArgument},
		{"arg op", errnoDefault(withArgs(allow("read"), arg(0, "SCMP_CMP_FOO", 1))),
			`linux.seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_FOO"`, errdefs.ErrInvalidArgument},
		{"unknown syscalls are skipped", errnoDefault(allow("read", "no_such_syscall", "set_tls")), "", nil},
		{"docker default amd64", loadProfile(t, "docker-default-amd64.json"), "", nil},
		{"docker default arm64", loadProfile(t, "docker-default-arm64.json"), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Validate: %q, want %q", err, tc.want)
			}
			if !errors.Is(err, tc.class) {
				t.Errorf("Validate: %v is not %v", err, tc.class)
			}
			if _, cerr := Compile(tc.cfg); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Compile: %v, want the error Validate gives", cerr)
			}
		})
	}
}

func TestCompileUnsupportedArch(t *testing.T) {
	_, err := compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow}, "riscv64")
	if !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Fatalf("compile for riscv64: %v, want ErrNotImplemented", err)
	}
}

type check struct {
	d    data
	want uint32
}

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

func retErrno(errno uint32) uint32 { return unix.SECCOMP_RET_ERRNO | errno }

func x64(name string, args ...uint64) data { return call(abiX86_64, name, args...) }

func call(a *abi, name string, args ...uint64) data {
	d := data{arch: a.audit, nr: sys(a, name)}
	copy(d.args[:], args)
	return d
}

func TestFilterActions(t *testing.T) {
	x8664Only := []specs.Arch{specs.ArchX86_64}
	dockerArches := []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	for _, tc := range []struct {
		name   string
		goarch string
		cfg    specs.LinuxSeccomp
		checks []check
	}{
		{
			name: "allowlist with ENOSYS above the highest named syscall",
			cfg:  specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{allow("read", "write"), errnoRule(38, "clone3")}},
			checks: []check{
				{x64("read"), retAllow},
				{x64("write"), retAllow},
				{x64("close"), retEPERM},
				{x64("clone3"), retErrno(38)},
				{x64("listns"), retENOSYS},
				{data{arch: unix.AUDIT_ARCH_X86_64, nr: 0xffffffff}, retEPERM},
			},
		},
		{
			name: "ENOSYS default needs no stub",
			cfg:  specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(38), Syscalls: []specs.LinuxSyscall{allow("read")}},
			checks: []check{
				{x64("read"), retAllow},
				{x64("write"), retENOSYS},
			},
		},
		{
			name: "kill default gets the stub too",
			cfg:  specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess, Syscalls: []specs.LinuxSyscall{allow("read", "uname")}},
			checks: []check{
				{x64("write"), retKillProcess},
				{x64("listns"), retENOSYS},
			},
		},
		{
			name: "denylist",
			cfg:  specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{errnoRule(38, "uname"), {Names: []string{"kexec_load"}, Action: specs.ActErrno}}},
			checks: []check{
				{x64("uname"), retErrno(38)},
				{x64("kexec_load"), retEPERM},
				{x64("read"), retAllow},
				{x64("listns"), retAllow},
				{data{arch: unix.AUDIT_ARCH_X86_64, nr: 5000}, retAllow},
			},
		},
		{
			name: "every action",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActKill},
				{Names: []string{"write"}, Action: specs.ActKillThread},
				{Names: []string{"open"}, Action: specs.ActKillProcess},
				{Names: []string{"close"}, Action: specs.ActTrap},
				{Names: []string{"stat"}, Action: specs.ActTrace},
				{Names: []string{"fstat"}, Action: specs.ActTrace, ErrnoRet: uintp(7)},
				{Names: []string{"lstat"}, Action: specs.ActLog},
				{Names: []string{"poll"}, Action: specs.ActErrno, ErrnoRet: uintp(0)},
			}},
			checks: []check{
				{x64("read"), unix.SECCOMP_RET_KILL_THREAD},
				{x64("write"), unix.SECCOMP_RET_KILL_THREAD},
				{x64("open"), unix.SECCOMP_RET_KILL_PROCESS},
				{x64("close"), unix.SECCOMP_RET_TRAP},
				{x64("stat"), unix.SECCOMP_RET_TRACE | 1},
				{x64("fstat"), unix.SECCOMP_RET_TRACE | 7},
				{x64("lstat"), unix.SECCOMP_RET_LOG},
				{x64("poll"), unix.SECCOMP_RET_ERRNO},
			},
		},
		{
			name: "64-bit comparisons decide on the high word first",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				withArgs(errnoRule(10, "read"), arg(1, specs.OpEqualTo, 0x1_00000005)),
				withArgs(errnoRule(11, "write"), arg(2, specs.OpNotEqual, 0x1_00000005)),
				withArgs(errnoRule(12, "open"), arg(0, specs.OpGreaterThan, 0x1_00000005)),
				withArgs(errnoRule(13, "close"), arg(0, specs.OpGreaterEqual, 0x1_00000005)),
				withArgs(errnoRule(14, "stat"), arg(0, specs.OpLessThan, 0x1_00000005)),
				withArgs(errnoRule(15, "fstat"), arg(0, specs.OpLessEqual, 0x1_00000005)),
			}},
			checks: []check{
				{x64("read", 0, 0x1_00000005), retErrno(10)},
				{x64("read", 0, 0x5), retAllow},
				{x64("read", 0, 0x2_00000005), retAllow},
				{x64("write", 0, 0, 0x1_00000005), retAllow},
				{x64("write", 0, 0, 0x5), retErrno(11)},
				{x64("write", 0, 0, 0x1_00000006), retErrno(11)},
				{x64("open", 0x1_00000006), retErrno(12)},
				{x64("open", 0x2_00000000), retErrno(12)},
				{x64("open", 0x1_00000005), retAllow},
				{x64("open", 0xffffffff), retAllow},
				{x64("close", 0x1_00000005), retErrno(13)},
				{x64("close", 0x1_00000004), retAllow},
				{x64("close", 0x2_00000000), retErrno(13)},
				{x64("stat", 0x1_00000004), retErrno(14)},
				{x64("stat", 0xffffffff), retErrno(14)},
				{x64("stat", 0x1_00000005), retAllow},
				{x64("stat", 0x2_00000000), retAllow},
				{x64("fstat", 0x1_00000005), retErrno(15)},
				{x64("fstat", 0x1_00000006), retAllow},
				{x64("fstat", 0x0_ffffffff), retErrno(15)},
			},
		},
		{
			name: "masked equal takes the mask from value and the datum from valueTwo",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				withArgs(allow("clone"), masked(0, 0x7e020000, 0)),
				withArgs(allow("read"), masked(3, 0xff000000_000000ff, 0x12000000_00000034)),
			}},
			checks: []check{
				{x64("clone", 0x11), retAllow},
				{x64("clone", 0x1_00000011), retAllow},
				{x64("clone", unix.CLONE_NEWNS), retEPERM},
				{x64("clone", unix.CLONE_NEWUSER|0x11), retEPERM},
				{x64("read", 0, 0, 0, 0x12345678_9abcde34), retAllow},
				{x64("read", 0, 0, 0, 0x13000000_00000034), retEPERM},
				{x64("read", 0, 0, 0, 0x12000000_00000035), retEPERM},
			},
		},
		{
			name: "args of one rule are ANDed",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				withArgs(errnoRule(10, "read"), arg(0, specs.OpEqualTo, 1), arg(1, specs.OpEqualTo, 2)),
			}},
			checks: []check{
				{x64("read", 1, 2), retErrno(10)},
				{x64("read", 1, 3), retAllow},
				{x64("read", 0, 2), retAllow},
			},
		},
		{
			name: "args sharing an index split the rule, as runc does",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				withArgs(errnoRule(10, "read"), arg(0, specs.OpEqualTo, 1), arg(0, specs.OpEqualTo, 2)),
				withArgs(errnoRule(11, "write"), arg(0, specs.OpEqualTo, 1), arg(0, specs.OpEqualTo, 2), arg(1, specs.OpEqualTo, 9)),
			}},
			checks: []check{
				{x64("read", 1), retErrno(10)},
				{x64("read", 2), retErrno(10)},
				{x64("read", 3), retAllow},
				{x64("write", 2, 0), retErrno(11)},
				{x64("write", 3, 9), retErrno(11)},
				{x64("write", 3, 0), retAllow},
			},
		},
		{
			name: "the first matching rule with args wins",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				withArgs(errnoRule(10, "uname"), arg(0, specs.OpEqualTo, 1)),
				withArgs(errnoRule(20, "uname"), arg(0, specs.OpGreaterEqual, 1)),
			}},
			checks: []check{
				{x64("uname", 1), retErrno(10)},
				{x64("uname", 2), retErrno(20)},
				{x64("uname", 0), retAllow},
			},
		},
		{
			name: "a rule without args wins, the first one",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				withArgs(errnoRule(10, "uname"), arg(0, specs.OpEqualTo, 1)),
				errnoRule(20, "uname"),
				errnoRule(30, "uname"),
				withArgs(errnoRule(40, "uname"), arg(0, specs.OpEqualTo, 2)),
			}},
			checks: []check{
				{x64("uname", 1), retErrno(20)},
				{x64("uname", 2), retErrno(20)},
			},
		},
		{
			name: "rules with the default action are dropped",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				withArgs(allow("uname"), arg(0, specs.OpEqualTo, 1)),
				withArgs(errnoRule(20, "uname"), arg(0, specs.OpLessThan, 5)),
			}},
			checks: []check{
				{x64("uname", 1), retErrno(20)},
				{x64("uname", 7), retAllow},
			},
		},
		{
			name: "foreign architectures are killed",
			cfg:  specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: x8664Only},
			checks: []check{
				{x64("read"), retAllow},
				{call(abiX86, "read"), retKillProcess},
				{call(abiAARCH64, "read"), retKillProcess},
				{data{arch: 0xdeadbeef}, retKillProcess},
			},
		},
		{
			name: "x32 calls are a bad architecture unless x32 is listed",
			cfg:  specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: x8664Only, Syscalls: []specs.LinuxSyscall{allow("read", "rt_sigaction")}},
			checks: []check{
				{x64("read"), retAllow},
				{call(abiX32, "read"), retKillProcess},
				{data{arch: unix.AUDIT_ARCH_X86_64, nr: x32SyscallBit}, retKillProcess},
				// -1 is how a tracer skips a call.
				{data{arch: unix.AUDIT_ARCH_X86_64, nr: 0xffffffff}, retEPERM},
			},
		},
		{
			name: "x86_64, i386 and x32 each by their own numbers",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: dockerArches, Syscalls: []specs.LinuxSyscall{
				allow("read", "rt_sigaction", "_llseek", "socketcall"),
				withArgs(allow("personality"), arg(0, specs.OpEqualTo, 0x1_00000008)),
			}},
			checks: []check{
				{x64("read"), retAllow},
				{x64("rt_sigaction"), retAllow},
				{call(abiX32, "read"), retAllow},
				{call(abiX32, "rt_sigaction"), retAllow},
				{data{arch: unix.AUDIT_ARCH_X86_64, nr: x32SyscallBit | 13}, retEPERM}, // x86_64's rt_sigaction number with the x32 bit
				{call(abiX86, "read"), retAllow},
				{call(abiX86, "_llseek"), retAllow},
				{call(abiX86, "socketcall"), retAllow},
				{x64("personality", 0x1_00000008), retAllow},
				{x64("personality", 8), retEPERM},
				// 32-bit ABIs compare the low words only, as libseccomp does.
				{call(abiX86, "personality", 8), retAllow},
				{call(abiX86, "personality", 0x7_00000008), retAllow},
				{call(abiX32, "personality", 8), retAllow},
				{call(abiX32, "personality", 9), retEPERM},
				{data{arch: unix.AUDIT_ARCH_X86_64, nr: 0xffffffff}, retENOSYS},
				{call(abiAARCH64, "read"), retKillProcess},
			},
		},
		{
			name: "i386 multiplexers follow the calls they multiplex",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: dockerArches, Syscalls: []specs.LinuxSyscall{
				errnoRule(10, "socket", "recv"),
				withArgs(errnoRule(11, "connect"), arg(0, specs.OpEqualTo, 5), arg(2, specs.OpEqualTo, 16)),
				errnoRule(12, "shmget"),
			}},
			checks: []check{
				{call(abiX86, "socket"), retErrno(10)},
				{call(abiX86, "socketcall", 1), retErrno(10)},
				{call(abiX86, "socketcall", 10), retErrno(10)},
				{call(abiX86, "socketcall", 2), retAllow},
				{call(abiX86, "connect", 5, 0, 16), retErrno(11)},
				{call(abiX86, "connect", 6, 0, 16), retAllow},
				// Through socketcall, argument 0 selects the call and the
				// rule's condition on it is dropped, as libseccomp does.
				{call(abiX86, "socketcall", 3, 0, 16), retErrno(11)},
				{call(abiX86, "socketcall", 3, 0, 17), retAllow},
				{call(abiX86, "ipc", 23), retErrno(12)},
				{call(abiX86, "ipc", 24), retAllow},
				{x64("socket"), retErrno(10)},
				{x64("shmget"), retErrno(12)},
			},
		},
		{
			name:   "arm64 with arm",
			goarch: "arm64",
			cfg: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchAARCH64, specs.ArchARM, specs.ArchX86_64}, Syscalls: []specs.LinuxSyscall{
				allow("read", "open", "set_tls"),
				withArgs(allow("personality"), arg(0, specs.OpLessThan, 0x1_00000005)),
			}},
			checks: []check{
				{call(abiAARCH64, "read"), retAllow},
				{call(abiARM, "read"), retAllow},
				{call(abiARM, "open"), retAllow},
				{call(abiARM, "set_tls"), retAllow},
				{call(abiAARCH64, "personality", 0x1_00000004), retAllow},
				{call(abiAARCH64, "personality", 0x2_00000000), retEPERM},
				// arm compares the low words: 0 < 5.
				{call(abiARM, "personality", 0x2_00000000), retAllow},
				{call(abiARM, "personality", 6), retEPERM},
				{x64("read"), retKillProcess},
			},
		},
		{
			name:   "arm alone",
			goarch: "arm",
			cfg:    specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{allow("read", "set_tls")}},
			checks: []check{
				{call(abiARM, "read"), retAllow},
				{call(abiARM, "write"), retEPERM},
				{call(abiAARCH64, "read"), retKillProcess},
			},
		},
		{
			name:   "386 with x86_64",
			goarch: "386",
			cfg:    specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64}, Syscalls: []specs.LinuxSyscall{allow("read", "socketcall")}},
			checks: []check{
				{call(abiX86, "read"), retAllow},
				{call(abiX86, "socketcall"), retAllow},
				{x64("read"), retAllow},
				{call(abiX32, "read"), retKillProcess},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			goarch := tc.goarch
			if goarch == "" {
				goarch = "amd64"
			}
			f := agree(t, &tc.cfg, goarch, 8)
			for _, c := range tc.checks {
				got, err := run(f.prog, c.d)
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("arch %#x nr %#x args %#x: %s, want %s", c.d.arch, c.d.nr, c.d.args[:3], retString(got), retString(c.want))
				}
			}
			for _, other := range goarches() {
				agree(t, &tc.cfg, other, 8)
			}
		})
	}
}

// TestDockerDefault compiles Docker's default profile (testdata, from
// github.com/moby/profiles/seccomp v0.1.0) and checks the calls a container
// relies on and the ones it must not make.
func TestDockerDefault(t *testing.T) {
	amd64 := loadProfile(t, "docker-default-amd64.json")
	f := agree(t, amd64, "amd64", 8)
	t.Logf("Docker's default profile on amd64 (x86_64, i386, x32): %d instructions", len(f.prog))
	if len(f.UnknownSyscalls()) != 0 {
		t.Logf("unknown on amd64: %v", f.UnknownSyscalls())
	}
	for _, c := range []check{
		{x64("read"), retAllow},
		{x64("execve"), retAllow},
		{x64("ptrace"), retAllow},
		{x64("kexec_load"), retEPERM},
		{x64("unshare", unix.CLONE_NEWUTS), retEPERM},
		{x64("mount"), retEPERM},
		{x64("clone3"), retENOSYS},
		{x64("file_getattr"), retENOSYS},
		{x64("socket", unix.AF_INET), retAllow},
		{x64("socket", unix.AF_VSOCK), retEPERM},
		{x64("personality", 0xffffffff), retAllow},
		{x64("personality", 0x0040000), retEPERM},
		{x64("clone", uint64(unix.SIGCHLD)), retAllow},
		{x64("clone", unix.CLONE_NEWNS|uint64(unix.SIGCHLD)), retEPERM},
		{call(abiX86, "socketcall"), retAllow},
		{call(abiX86, "kexec_load"), retEPERM},
		{call(abiX32, "read"), retAllow},
		{call(abiAARCH64, "read"), retKillProcess},
	} {
		got, err := run(f.prog, c.d)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("amd64: arch %#x nr %d args %#x: %s, want %s", c.d.arch, c.d.nr, c.d.args[:2], retString(got), retString(c.want))
		}
	}

	arm64 := loadProfile(t, "docker-default-arm64.json")
	f = agree(t, arm64, "arm64", 8)
	t.Logf("Docker's default profile on arm64 (aarch64, arm): %d instructions", len(f.prog))
	for _, c := range []check{
		{call(abiAARCH64, "read"), retAllow},
		{call(abiAARCH64, "kexec_load"), retEPERM},
		{call(abiARM, "set_tls"), retAllow},
		{call(abiARM, "cacheflush"), retAllow},
		{call(abiAARCH64, "clone3"), retENOSYS},
		{x64("read"), retKillProcess},
	} {
		got, err := run(f.prog, c.d)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("arm64: arch %#x nr %d: %s, want %s", c.d.arch, c.d.nr, retString(got), retString(c.want))
		}
	}
	// A profile is written for every host; compiling it elsewhere must work.
	for _, goarch := range goarches() {
		agree(t, amd64, goarch, 8)
		agree(t, arm64, goarch, 8)
	}
}

// TestLongJumps builds a program far longer than a conditional jump
// reaches, so the linker must widen jumps, and checks it still behaves.
func TestLongJumps(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86}}
	for i, e := range sysX86_64 {
		if i%2 == 0 {
			cfg.Syscalls = append(cfg.Syscalls, withArgs(allow(e.name), arg(uint(i%6), specs.OpGreaterThan, uint64(i)<<32|uint64(i))))
		}
	}
	f := agree(t, cfg, "amd64", 8)
	long := 0
	for _, in := range f.prog {
		if in.Code == unix.BPF_JMP|unix.BPF_JA {
			long++
		}
	}
	if long == 0 {
		t.Fatalf("%d instructions and no widened jump: the test no longer exercises the linker", len(f.prog))
	}
	t.Logf("%d instructions, %d widened jumps", len(f.prog), long)
}

func TestTooLong(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	for i := range 2000 {
		cfg.Syscalls = append(cfg.Syscalls, withArgs(errnoRule(uint(i%4000), "read"), arg(0, specs.OpEqualTo, uint64(i))))
	}
	_, err := compile(cfg, "amd64")
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "limit of 4096") {
		t.Fatalf("compile: %v, want the instruction limit named", err)
	}
}

func TestLinkWidensFarJumps(t *testing.T) {
	var as asm
	far := as.newLabel()
	as.ld(offNr)
	as.jmp(unix.BPF_JEQ, 7, far, next)
	as.jmp(unix.BPF_JEQ, 8, next, far)
	for range 300 {
		as.ret(retEPERM)
	}
	as.bind(far)
	as.ret(retAllow)
	prog, err := as.link()
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(prog); err != nil {
		t.Fatalf("%v\n%s", err, disasm(prog))
	}
	for nr, want := range map[uint32]uint32{7: retAllow, 8: retEPERM, 9: retAllow} {
		if got, _ := run(prog, data{nr: nr}); got != want {
			t.Errorf("nr %d: %s, want %s", nr, retString(got), retString(want))
		}
	}
}

func TestUnknownSyscalls(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		allow("read", "no_such_syscall", "set_tls"),
		errnoRule(38, "no_such_syscall", "also_unknown"),
	}}
	f, err := compile(cfg, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.UnknownSyscalls(), []string{"no_such_syscall", "set_tls", "also_unknown"}; !slices.Equal(got, want) {
		t.Errorf("amd64: UnknownSyscalls() = %v, want %v", got, want)
	}
	f, err = compile(cfg, "arm")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.UnknownSyscalls(), []string{"no_such_syscall", "also_unknown"}; !slices.Equal(got, want) {
		t.Errorf("arm: UnknownSyscalls() = %v, want %v", got, want)
	}
}

func TestTables(t *testing.T) {
	for _, a := range abis {
		if !slices.IsSortedFunc(a.table, func(x, y sysEntry) int { return strings.Compare(x.name, y.name) }) {
			t.Errorf("%s: table not sorted by name", a.name)
		}
		nrs := map[uint32]string{}
		for _, e := range a.table {
			if e.nr < a.lo || e.nr > a.hi {
				t.Errorf("%s: %s = %#x outside the ABI's range", a.name, e.name, e.nr)
			}
			if other, dup := nrs[e.nr]; dup {
				t.Errorf("%s: %s and %s share number %d", a.name, e.name, other, e.nr)
			}
			nrs[e.nr] = e.name
		}
	}
	for _, c := range []struct {
		a    *abi
		name string
		nr   uint32
	}{
		{abiX86_64, "read", 0}, {abiX86_64, "clone3", 435}, {abiX86_64, "_sysctl", 156},
		{abiX32, "read", x32SyscallBit}, {abiX32, "rt_sigaction", x32SyscallBit | 512}, {abiX32, "clone3", x32SyscallBit | 435},
		{abiX86, "_llseek", 140}, {abiX86, "socketcall", 102}, {abiX86, "read", 3},
		{abiAARCH64, "read", 63}, {abiAARCH64, "clone3", 435},
		{abiARM, "set_tls", 0xf0005}, {abiARM, "arm_fadvise64_64", 270},
	} {
		if nr, ok := c.a.table.lookup(c.name); !ok || nr != c.nr {
			t.Errorf("%s %s = %#x, %v; want %#x", c.a.name, c.name, nr, ok, c.nr)
		}
	}
	for _, c := range []struct {
		a    *abi
		name string
	}{{abiAARCH64, "open"}, {abiX32, "uselib"}, {abiX86_64, "socketcall"}, {abiX86_64, "set_tls"}} {
		if nr, ok := c.a.table.lookup(c.name); ok {
			t.Errorf("%s knows %s as %d; it should not", c.a.name, c.name, nr)
		}
	}
}

func TestCompileNativeIsCompile(t *testing.T) {
	if _, ok := family[runtime.GOARCH]; !ok {
		t.Skipf("no syscall tables for %s", runtime.GOARCH)
	}
	cfg := loadProfile(t, "docker-default-amd64.json")
	f, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := compile(cfg, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Instructions(), g.prog) {
		t.Fatal("Compile and compile(runtime.GOARCH) differ")
	}
}
