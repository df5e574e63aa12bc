package seccomp

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// probes lists the seccomp_data worth checking for cfg on goarch: every
// syscall the config names on every ABI of the family, their neighbours,
// the ends of each ABI's range and -1, foreign architectures, and argument
// vectors made of the values the config compares against, their
// neighbours, and the same with the high word changed.
func probes(cfg *specs.LinuxSeccomp, goarch string, perCall int) []data {
	var cands [6][]uint64
	for i := range cands {
		cands[i] = []uint64{0, 1, 0xffffffff, 1 << 32, ^uint64(0)}
	}
	for _, sc := range cfg.Syscalls {
		for _, a := range sc.Args {
			if a.Index > 5 {
				continue
			}
			for _, v := range []uint64{a.Value, a.ValueTwo, a.Value & a.ValueTwo} {
				cands[a.Index] = append(cands[a.Index], v, v-1, v+1, v^1<<32, v^1<<63, uint64(uint32(v)))
			}
		}
	}
	// i386 multiplexers take the call in argument 0.
	for _, sc := range cfg.Syscalls {
		for _, n := range sc.Names {
			if m, ok := x86Muxed[n]; ok {
				cands[0] = append(cands[0], uint64(m.call))
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	argv := func() [6]uint64 {
		var args [6]uint64
		for i := range args {
			args[i] = cands[i][rng.IntN(len(cands[i]))]
		}
		return args
	}

	var out []data
	add := func(arch, nr uint32, n int) {
		out = append(out, data{arch: arch, nr: nr})
		for range n {
			out = append(out, data{arch: arch, nr: nr, args: argv()})
		}
	}
	for _, a := range abis {
		for _, nr := range []uint32{a.lo, a.lo + 1, a.hi - 1, a.hi, 0xffffffff, x32SyscallBit - 1, x32SyscallBit} {
			add(a.audit, nr, 0)
		}
		// Argument vectors only matter for syscalls some rule compares
		// arguments of.
		vectors := map[uint32]int{}
		for _, sc := range cfg.Syscalls {
			for _, n := range sc.Names {
				if nr, ok := a.table.lookup(n); ok && len(sc.Args) > 0 {
					vectors[nr] = perCall
				}
				if m, ok := a.muxed[n]; ok {
					if nr, ok := a.table.lookup(m.via); ok {
						vectors[nr] = perCall
					}
				}
			}
		}
		for _, nr := range slices.Sorted(maps.Keys(vectors)) {
			add(a.audit, nr, vectors[nr])
		}
		seen := map[uint32]bool{}
		for _, sc := range cfg.Syscalls {
			for _, n := range sc.Names {
				if nr, ok := a.table.lookup(n); ok && !seen[nr] {
					seen[nr] = true
					add(a.audit, nr, 0)
					add(a.audit, nr-1, 0)
					add(a.audit, nr+1, 0)
				}
			}
		}
	}
	add(0x12345678, 0, 0)
	add(unix.AUDIT_ARCH_PPC64LE, 0, 0)
	return out
}

// agree compiles cfg for goarch and checks that the interpreter and the
// model give the same action for every probe, with perCall argument
// vectors per named syscall. It returns the filter.
func agree(t testing.TB, cfg *specs.LinuxSeccomp, goarch string, perCall int) *Filter {
	t.Helper()
	f, err := compile(cfg, goarch)
	if err != nil {
		t.Fatalf("compile for %s: %v", goarch, err)
	}
	if err := verify(f.prog); err != nil {
		t.Fatalf("compile for %s: invalid program: %v\n%s", goarch, err, disasm(f.prog))
	}
	for _, d := range probes(cfg, goarch, perCall) {
		got, err := run(f.prog, d)
		if err != nil {
			t.Fatalf("%s: run %+v: %v", goarch, d, err)
		}
		if want := expect(cfg, goarch, d); got != want {
			t.Fatalf("%s: arch %#x nr %#x args %#x: filter returns %s, want %s", goarch, d.arch, d.nr, d.args, retString(got), retString(want))
		}
	}
	return f
}

func retString(r uint32) string {
	data := r & unix.SECCOMP_RET_DATA
	switch r & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_KILL_PROCESS:
		return "KILL_PROCESS"
	case unix.SECCOMP_RET_KILL_THREAD:
		return "KILL_THREAD"
	case unix.SECCOMP_RET_TRAP:
		return "TRAP"
	case unix.SECCOMP_RET_ERRNO:
		return fmt.Sprintf("ERRNO(%d)", data)
	case unix.SECCOMP_RET_TRACE:
		return fmt.Sprintf("TRACE(%d)", data)
	case unix.SECCOMP_RET_LOG:
		return "LOG"
	case unix.SECCOMP_RET_ALLOW:
		return "ALLOW"
	}
	return fmt.Sprintf("%#x", r)
}

// goarches are the architectures berth has tables for, native first so a
// failure shows the case that matters most on this host.
func goarches() []string {
	all := []string{"amd64", "arm64", "386", "arm"}
	slices.SortStableFunc(all, func(a, b string) int {
		switch {
		case a == runtime.GOARCH:
			return -1
		case b == runtime.GOARCH:
			return 1
		}
		return 0
	})
	return all
}
