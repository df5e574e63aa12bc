package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// FuzzCompile feeds linux.seccomp configs to the compiler for every
// architecture with tables. A config is either refused with a classified
// error or compiles to a program the kernel would accept (at most 4096
// instructions, every jump inside it, ending in a return) that agrees with
// the model on every probe.
//
// Input that is not JSON is read as a compact config (see decodeConfig):
// mutating JSON text rarely yields another valid config, so without it the
// fuzzer would mostly test the JSON parser.
func FuzzCompile(f *testing.F) {
	f.Add([]byte{2, 0x7, 0, 1, 0, 0, 3, 9, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 4, 1, 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var cfg specs.LinuxSeccomp
		if err := json.Unmarshal(raw, &cfg); err != nil {
			cfg = decodeConfig(raw)
		}
		for _, goarch := range goarches() {
			fl, err := compile(&cfg, goarch)
			if err != nil {
				if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotImplemented) {
					t.Fatalf("%s: unclassified error: %v", goarch, err)
				}
				continue
			}
			if err := verify(fl.prog); err != nil {
				t.Fatalf("%s: invalid program: %v\n%s", goarch, err, disasm(fl.prog))
			}
			agree(t, &cfg, goarch, 2)
		}
	})
}

var (
	fuzzActions = []specs.LinuxSeccompAction{specs.ActAllow, specs.ActErrno, specs.ActKill,
		specs.ActKillProcess, specs.ActTrap, specs.ActTrace, specs.ActLog, specs.ActKillThread}
	fuzzOps = []specs.LinuxSeccompOperator{specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan,
		specs.OpLessEqual, specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual}
	fuzzArches = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM}
	// Names common to all tables, ones some lack, and one none has.
	fuzzNames = []string{"read", "write", "close", "uname", "personality", "clone", "clone3",
		"socket", "socketcall", "recv", "shmget", "ipc", "open", "rt_sigaction", "set_tls", "_llseek", "getrandom",
		"no_such_call", "kexec_load"}
)

// decodeConfig reads a config from bytes: the default action and errno,
// an architecture bitmask, then rules of [name, action, errno, nargs,
// nargs × (index, op, value 8 bytes LE, valueTwo 8 bytes LE)]. Short input
// ends the config; indexes are kept valid so the fuzzer spends its time
// compiling, not failing validation.
func decodeConfig(b []byte) specs.LinuxSeccomp {
	next := func() byte {
		if len(b) == 0 {
			return 0
		}
		c := b[0]
		b = b[1:]
		return c
	}
	u64 := func() uint64 {
		var buf [8]byte
		n := copy(buf[:], b)
		b = b[n:]
		return binary.LittleEndian.Uint64(buf[:])
	}
	action := func() (specs.LinuxSeccompAction, *uint) {
		act := fuzzActions[int(next())%len(fuzzActions)]
		errno := uint(next())
		if act == specs.ActErrno || act == specs.ActTrace {
			return act, &errno
		}
		return act, nil
	}
	var cfg specs.LinuxSeccomp
	cfg.DefaultAction, cfg.DefaultErrnoRet = action()
	mask := next()
	for i, a := range fuzzArches {
		if mask&(1<<i) != 0 {
			cfg.Architectures = append(cfg.Architectures, a)
		}
	}
	for len(b) > 0 && len(cfg.Syscalls) < 64 {
		sc := specs.LinuxSyscall{Names: []string{fuzzNames[int(next())%len(fuzzNames)]}}
		sc.Action, sc.ErrnoRet = action()
		for n := next() % 4; n > 0 && len(b) > 0; n-- {
			sc.Args = append(sc.Args, specs.LinuxSeccompArg{
				Index: uint(next() % 6), Op: fuzzOps[int(next())%len(fuzzOps)], Value: u64(), ValueTwo: u64()})
		}
		cfg.Syscalls = append(cfg.Syscalls, sc)
	}
	return cfg
}

// TestRandomConfigs runs what the fuzzer checks over random configs every
// time, including ones large enough that the linker must widen jumps.
func TestRandomConfigs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	widened := 0
	for i := range 300 {
		b := make([]byte, rng.IntN(300+i*10))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		cfg := decodeConfig(b)
		for _, goarch := range goarches() {
			f := agree(t, &cfg, goarch, 2)
			if slices.ContainsFunc(f.prog, func(in unix.SockFilter) bool { return in.Code == unix.BPF_JMP|unix.BPF_JA }) {
				widened++
			}
		}
	}
	if widened == 0 {
		t.Fatal("no random config needed a widened jump: make them larger")
	}
}
