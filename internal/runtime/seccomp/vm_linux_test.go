package seccomp

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// This file holds two independent views of a filter, so tests can hold the
// compiler to them: a classic-BPF interpreter for the instructions the
// compiler emits, run against a synthetic struct seccomp_data, and a model
// that computes the expected action straight from the config.

// data is struct seccomp_data.
type data struct {
	nr   uint32
	arch uint32
	ip   uint64
	args [6]uint64
}

func (d data) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], d.nr)
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	binary.LittleEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// verify rejects what the kernel's checker (bpf_check_classic plus
// seccomp_check_filter) would, for the subset of BPF the compiler uses.
func verify(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > unix.BPF_MAXINSNS {
		return fmt.Errorf("program length %d out of 1..%d", len(prog), unix.BPF_MAXINSNS)
	}
	for pc, in := range prog {
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K >= 64 || in.K%4 != 0 {
				return fmt.Errorf("pc %d: load at offset %d outside struct seccomp_data", pc, in.K)
			}
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, unix.BPF_RET | unix.BPF_K:
		case unix.BPF_JMP | unix.BPF_JA:
			if uint64(pc)+1+uint64(in.K) >= uint64(len(prog)) {
				return fmt.Errorf("pc %d: ja %d leaves the program", pc, in.K)
			}
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K,
			unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if pc+1+int(max(in.Jt, in.Jf)) >= len(prog) {
				return fmt.Errorf("pc %d: jump (jt %d, jf %d) leaves the program", pc, in.Jt, in.Jf)
			}
		default:
			return fmt.Errorf("pc %d: opcode %#x not expected", pc, in.Code)
		}
	}
	if last := prog[len(prog)-1]; last.Code != unix.BPF_RET|unix.BPF_K {
		return fmt.Errorf("last instruction %#x is not a return", last.Code)
	}
	return nil
}

// run executes prog on d. It trusts verify to have checked the program.
func run(prog []unix.SockFilter, d data) (uint32, error) {
	mem := d.bytes()
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			// seccomp_data is loaded in host order; every table here is
			// little-endian.
			a = binary.LittleEndian.Uint32(mem[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			a &= in.K
		case unix.BPF_RET | unix.BPF_K:
			return in.K, nil
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		default:
			var ok bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				ok = a == in.K
			case unix.BPF_JGT:
				ok = a > in.K
			case unix.BPF_JGE:
				ok = a >= in.K
			case unix.BPF_JSET:
				ok = a&in.K != 0
			default:
				return 0, fmt.Errorf("pc %d: opcode %#x not expected", pc, in.Code)
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		}
	}
	return 0, fmt.Errorf("fell off the end of the program")
}

// disasm renders a program for failure messages.
func disasm(prog []unix.SockFilter) string {
	var b strings.Builder
	for pc, in := range prog {
		fmt.Fprintf(&b, "%4d: code=%#04x jt=%d jf=%d k=%#x\n", pc, in.Code, in.Jt, in.Jf, in.K)
	}
	return b.String()
}

// expect is the model: what the filter compiled from cfg for goarch must
// return for d. It shares only the syscall tables and ABI list with the
// compiler.
func expect(cfg *specs.LinuxSeccomp, goarch string, d data) uint32 {
	fam := family[goarch]
	sel := []*abi{fam[0]}
	for _, a := range fam[1:] {
		if slices.Contains(cfg.Architectures, a.name) {
			sel = append(sel, a)
		}
	}
	def := modelAction(cfg.DefaultAction, cfg.DefaultErrnoRet)
	var a *abi
	archAllowed := false
	for _, x := range sel {
		if x.audit == d.arch {
			archAllowed = true
			if d.nr >= x.lo && d.nr <= x.hi {
				a = x
			}
		}
	}
	if a == nil {
		if archAllowed && d.nr == 0xffffffff {
			return def // no syscall is numbered -1: no rule matches
		}
		return unix.SECCOMP_RET_KILL_PROCESS
	}

	var uncond, first *uint32
	highest, found := uint32(0), false
	for _, sc := range cfg.Syscalls {
		ret := modelAction(sc.Action, sc.ErrnoRet)
		named, muxMatch := false, false
		for _, n := range sc.Names {
			if nr, ok := a.table.lookup(n); ok {
				if !found || nr > highest {
					highest, found = nr, true
				}
				named = named || nr == d.nr
			}
			if m, ok := a.muxed[n]; ok {
				if nr, ok := a.table.lookup(m.via); ok {
					if !found || nr > highest {
						highest, found = nr, true
					}
					if nr == d.nr {
						muxMatch = muxMatch || modelMux(m.call, sc.Args, d)
					}
				}
			}
		}
		if ret == def {
			continue
		}
		if named && len(sc.Args) == 0 {
			if uncond == nil {
				uncond = &ret
			}
			continue
		}
		if first == nil && (muxMatch || named && modelArgs(sc.Args, a.wide, d)) {
			first = &ret
		}
	}
	switch {
	case uncond != nil:
		return *uncond
	case first != nil:
		return *first
	}
	denies := true
	switch cfg.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
		denies = false
	}
	if denies && def != unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS) && found && d.nr > highest {
		return unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	}
	return def
}

func modelAction(act specs.LinuxSeccompAction, errnoRet *uint) uint32 {
	data := uint32(unix.EPERM)
	if errnoRet != nil {
		data = uint32(*errnoRet)
	}
	return map[specs.LinuxSeccompAction]uint32{
		specs.ActKill:        unix.SECCOMP_RET_KILL_THREAD,
		specs.ActKillThread:  unix.SECCOMP_RET_KILL_THREAD,
		specs.ActKillProcess: unix.SECCOMP_RET_KILL_PROCESS,
		specs.ActTrap:        unix.SECCOMP_RET_TRAP,
		specs.ActErrno:       unix.SECCOMP_RET_ERRNO | data,
		specs.ActTrace:       unix.SECCOMP_RET_TRACE | data,
		specs.ActAllow:       unix.SECCOMP_RET_ALLOW,
		specs.ActLog:         unix.SECCOMP_RET_LOG,
	}[act]
}

func modelArgs(args []specs.LinuxSeccompArg, wide bool, d data) bool {
	split := modelSplits(args)
	for _, a := range args {
		ok := modelArg(a, wide, d)
		if split && ok {
			return true
		}
		if !split && !ok {
			return false
		}
	}
	return !split
}

// modelMux is whether a call through a multiplexer (i386 only, so 32-bit
// compares) matches the twin of a rule: the first argument selects the
// call, and replaces whatever the rule asked of argument 0.
func modelMux(call uint32, args []specs.LinuxSeccompArg, d data) bool {
	if uint32(d.args[0]) != call {
		return false
	}
	if !modelSplits(args) {
		for _, a := range args {
			if a.Index != 0 && !modelArg(a, false, d) {
				return false
			}
		}
		return true
	}
	for _, a := range args {
		if a.Index == 0 || modelArg(a, false, d) {
			return true
		}
	}
	return false
}

// modelSplits is whether runc turns the rule into one rule per arg.
func modelSplits(args []specs.LinuxSeccompArg) bool {
	seen := map[uint]bool{}
	for _, a := range args {
		if seen[a.Index] {
			return true
		}
		seen[a.Index] = true
	}
	return false
}

func modelArg(a specs.LinuxSeccompArg, wide bool, d data) bool {
	x, v, v2 := d.args[a.Index], a.Value, a.ValueTwo
	if !wide {
		x, v, v2 = uint64(uint32(x)), uint64(uint32(v)), uint64(uint32(v2))
	}
	switch a.Op {
	case specs.OpEqualTo:
		return x == v
	case specs.OpNotEqual:
		return x != v
	case specs.OpLessThan:
		return x < v
	case specs.OpLessEqual:
		return x <= v
	case specs.OpGreaterThan:
		return x > v
	case specs.OpGreaterEqual:
		return x >= v
	case specs.OpMaskedEqual:
		return x&v == v2&v
	}
	panic("unknown op " + a.Op)
}
