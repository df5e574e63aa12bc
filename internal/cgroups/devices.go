package cgroups

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// rule is one linux.resources.devices entry with its defaults filled in.
type rule struct {
	allow        bool
	typ          byte  // 'a', 'b' or 'c'
	major, minor int64 // -1 is any
	access       string
}

func deviceRule(d specs.LinuxDeviceCgroup) (rule, error) {
	r := rule{allow: d.Allow, typ: 'a', major: -1, minor: -1, access: d.Access}
	switch d.Type {
	case "", "a":
	case "b", "c":
		r.typ = d.Type[0]
	default:
		return r, fmt.Errorf("type %q is not a, b or c", d.Type)
	}
	if d.Major != nil {
		if *d.Major < -1 || *d.Major > math.MaxInt32 {
			return r, fmt.Errorf("major %d is out of range (omit it or use -1 for any)", *d.Major)
		}
		r.major = *d.Major
	}
	if d.Minor != nil {
		if *d.Minor < -1 || *d.Minor > math.MaxInt32 {
			return r, fmt.Errorf("minor %d is out of range (omit it or use -1 for any)", *d.Minor)
		}
		r.minor = *d.Minor
	}
	if r.access == "" {
		r.access = "rwm"
	}
	seen := map[rune]bool{}
	for _, c := range r.access {
		if !strings.ContainsRune("rwm", c) || seen[c] {
			return r, fmt.Errorf("access %q is not a combination of r, w and m", d.Access)
		}
		seen[c] = true
	}
	return r, nil
}

// String is the line devices.allow and devices.deny take: "c 1:3 rwm".
func (r rule) String() string {
	num := func(n int64) string {
		if n < 0 {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("%c %s:%s %s", r.typ, num(r.major), num(r.minor), r.access)
}

// The context a BPF_PROG_TYPE_CGROUP_DEVICE program sees
// (struct bpf_cgroup_dev_ctx) and the values in it (include/uapi/linux/bpf.h).
const (
	devBlock = 1
	devChar  = 2
	accMknod = 1
	accRead  = 2
	accWrite = 4
)

// insn is one eBPF instruction (struct bpf_insn).
type insn struct {
	op       uint8
	dst, src uint8
	off      int16
	imm      int32
}

// The few opcodes the device program needs.
const (
	opLdxW   = 0x61 // dst = *(u32 *)(src + off)
	opMovImm = 0xb4 // 32-bit dst = imm
	opMovReg = 0xbc // 32-bit dst = src
	opAndImm = 0x54 // 32-bit dst &= imm
	opRshImm = 0x74 // 32-bit dst >>= imm
	opJa     = 0x05
	opJneImm = 0x55
	opJsetIm = 0x45 // jump if dst & imm
	opExit   = 0x95
)

func encode(prog []insn) []byte {
	b := make([]byte, 0, 8*len(prog))
	for _, i := range prog {
		b = append(b, i.op, i.dst&0xf|i.src<<4)
		b = binary.LittleEndian.AppendUint16(b, uint16(i.off))
		b = binary.LittleEndian.AppendUint32(b, uint32(i.imm))
	}
	return b
}

// assembler resolves jumps to labels into the relative offsets eBPF uses.
type assembler struct {
	prog   []insn
	jumps  map[int]string
	labels map[string]int
}

func (a *assembler) emit(i insn) { a.prog = append(a.prog, i) }

func (a *assembler) jump(i insn, label string) {
	if a.jumps == nil {
		a.jumps = map[int]string{}
	}
	a.jumps[len(a.prog)] = label
	a.prog = append(a.prog, i)
}

func (a *assembler) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.prog)
}

func (a *assembler) assemble() ([]insn, error) {
	for at, l := range a.jumps {
		to, ok := a.labels[l]
		if !ok {
			return nil, fmt.Errorf("device program: no label %q", l)
		}
		off := to - at - 1
		if off < 0 || off > 0x7fff {
			return nil, fmt.Errorf("device program: jump to %q out of range", l)
		}
		a.prog[at].off = int16(off)
	}
	return a.prog, nil
}

// devicesProgram compiles rules into a BPF_PROG_TYPE_CGROUP_DEVICE program,
// cgroup v2's only device controller. It keeps v1's meaning, where rules
// start from deny-all and a later rule overrides an earlier one: each
// requested access bit (m, r, w) is decided by the last rule that matches
// the device and names that bit, and all requested bits must be allowed.
// Deciding per bit, rather than requiring one rule to cover the whole
// request as runc's filter does, keeps "allow r" + "allow w" granting rw
// and makes a later "deny w" refuse an rw open, as v1 does.
//
// Registers: R2 device type, R3 requested access, R4 major, R5 minor.
func devicesProgram(specRules []specs.LinuxDeviceCgroup) ([]insn, error) {
	rules := make([]rule, 0, len(specRules))
	for i, d := range specRules {
		r, err := deviceRule(d)
		if err != nil {
			return nil, invalid(fmt.Sprintf("devices[%d]", i), "%v", err)
		}
		rules = append(rules, r)
	}
	var a assembler
	a.emit(insn{op: opLdxW, dst: 2, src: 1, off: 0}) // access_type
	a.emit(insn{op: opMovReg, dst: 3, src: 2})
	a.emit(insn{op: opAndImm, dst: 2, imm: 0xffff})
	a.emit(insn{op: opRshImm, dst: 3, imm: 16})
	a.emit(insn{op: opLdxW, dst: 4, src: 1, off: 4}) // major
	a.emit(insn{op: opLdxW, dst: 5, src: 1, off: 8}) // minor

	for _, bit := range []struct {
		mask int32
		char rune
	}{{accMknod, 'm'}, {accRead, 'r'}, {accWrite, 'w'}} {
		check, done := fmt.Sprintf("check%d", bit.mask), fmt.Sprintf("done%d", bit.mask)
		a.jump(insn{op: opJsetIm, dst: 3, imm: bit.mask}, check)
		a.jump(insn{op: opJa}, done)
		a.label(check)
		// The verifier rejects unreachable instructions, so nothing is
		// emitted after a rule that matches every device.
		matchedAll := false
		for i := len(rules) - 1; i >= 0; i-- {
			r := rules[i]
			if !strings.ContainsRune(r.access, bit.char) {
				continue
			}
			next := fmt.Sprintf("next%d_%d", bit.mask, i)
			conds := 0
			if r.typ != 'a' {
				t := int32(devChar)
				if r.typ == 'b' {
					t = devBlock
				}
				a.jump(insn{op: opJneImm, dst: 2, imm: t}, next)
				conds++
				if r.major >= 0 {
					a.jump(insn{op: opJneImm, dst: 4, imm: int32(r.major)}, next)
					conds++
				}
				if r.minor >= 0 {
					a.jump(insn{op: opJneImm, dst: 5, imm: int32(r.minor)}, next)
					conds++
				}
			}
			if r.allow {
				a.jump(insn{op: opJa}, done)
			} else {
				a.emit(insn{op: opMovImm, dst: 0, imm: 0})
				a.emit(insn{op: opExit})
			}
			if conds == 0 {
				matchedAll = true
				break
			}
			a.label(next)
		}
		if !matchedAll {
			a.emit(insn{op: opMovImm, dst: 0, imm: 0})
			a.emit(insn{op: opExit})
		}
		a.label(done)
	}
	a.emit(insn{op: opMovImm, dst: 0, imm: 1})
	a.emit(insn{op: opExit})
	return a.assemble()
}
