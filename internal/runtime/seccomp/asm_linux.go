package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The compiler emits a program with symbolic jump targets and links it
// afterwards, because classic BPF's conditional jumps reach at most 255
// instructions ahead and how far a target is only becomes known once the
// whole program is laid out.

// label names a position in the program; next is the instruction after the
// jump, whatever the jump grows into.
type label int

const next label = -1

type op struct {
	code   uint16
	k      uint32
	jt, jf label // conditional jumps
	bind   bool  // a label definition, not an instruction
	lbl    label
}

type asm struct {
	ops     []op
	nlabels int
}

func (a *asm) newLabel() label {
	a.nlabels++
	return label(a.nlabels - 1)
}

// bind places l before the next instruction emitted.
func (a *asm) bind(l label) { a.ops = append(a.ops, op{bind: true, lbl: l}) }

// ld loads the 32-bit word at offset off of struct seccomp_data into A.
func (a *asm) ld(off uint32) {
	a.ops = append(a.ops, op{code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: off})
}

func (a *asm) and(k uint32) {
	a.ops = append(a.ops, op{code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, k: k})
}

// jmp compares A with k (cond is unix.BPF_JEQ, BPF_JGT, BPF_JGE or BPF_JSET)
// and continues at jt when true, at jf when false.
func (a *asm) jmp(cond uint16, k uint32, jt, jf label) {
	a.ops = append(a.ops, op{code: unix.BPF_JMP | cond | unix.BPF_K, k: k, jt: jt, jf: jf})
}

func (a *asm) ret(k uint32) {
	a.ops = append(a.ops, op{code: unix.BPF_RET | unix.BPF_K, k: k})
}

// instructions counts what the program needs before any jump is widened.
func (a *asm) instructions() int {
	n := 0
	for _, o := range a.ops {
		if !o.bind {
			n++
		}
	}
	return n
}

// isCond reports a conditional jump; the compiler emits no other jumps.
func isCond(o op) bool { return !o.bind && o.code&0x07 == unix.BPF_JMP }

// link resolves labels. A conditional jump whose target is too far is
// widened: it jumps to an unconditional BPF_JA placed right after it, whose
// 32-bit offset reaches anywhere. Widening only grows the program, so the
// layout converges; each round widens at least one jump or stops.
func (a *asm) link() ([]unix.SockFilter, error) {
	longT := make([]bool, len(a.ops))
	longF := make([]bool, len(a.ops))
	pc := make([]int, len(a.ops))
	at := make([]int, a.nlabels)

	size := func(i int) int {
		o := a.ops[i]
		switch {
		case o.bind:
			return 0
		case isCond(o):
			n := 1
			if longT[i] {
				n++
			}
			if longF[i] {
				n++
			}
			return n
		}
		return 1
	}
	layout := func() int {
		for i := range at {
			at[i] = -1
		}
		p := 0
		for i, o := range a.ops {
			pc[i] = p
			if o.bind {
				at[o.lbl] = p
			}
			p += size(i)
		}
		return p
	}
	// target is where l points for the jump at op i, as an offset from the
	// instruction after the jump.
	target := func(i int, l label) (int, error) {
		if l == next {
			return pc[i] + size(i) - (pc[i] + 1), nil
		}
		if int(l) >= len(at) || at[l] < 0 {
			return 0, fmt.Errorf("seccomp: internal error: label %d is never placed", l)
		}
		off := at[l] - (pc[i] + 1)
		if off < 0 {
			return 0, fmt.Errorf("seccomp: internal error: backward jump to label %d", l)
		}
		return off, nil
	}

	var total int
	for {
		total = layout()
		widened := false
		for i, o := range a.ops {
			if !isCond(o) {
				continue
			}
			if !longT[i] {
				off, err := target(i, o.jt)
				if err != nil {
					return nil, err
				}
				if off > 255 {
					longT[i], widened = true, true
				}
			}
			if !longF[i] {
				off, err := target(i, o.jf)
				if err != nil {
					return nil, err
				}
				if off > 255 {
					longF[i], widened = true, true
				}
			}
		}
		if !widened {
			break
		}
	}

	prog := make([]unix.SockFilter, 0, total)
	for i, o := range a.ops {
		switch {
		case o.bind:
			continue
		case isCond(o):
			jt, err := target(i, o.jt)
			if err != nil {
				return nil, err
			}
			jf, err := target(i, o.jf)
			if err != nil {
				return nil, err
			}
			// The trampolines sit right after the jump: true's first.
			slot := 0
			var tramps []unix.SockFilter
			if longT[i] {
				tramps = append(tramps, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(jt - 1 - slot)})
				jt = slot
				slot++
			}
			if longF[i] {
				tramps = append(tramps, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(jf - 1 - slot)})
				jf = slot
			}
			prog = append(prog, unix.SockFilter{Code: o.code, Jt: uint8(jt), Jf: uint8(jf), K: o.k})
			prog = append(prog, tramps...)
		default:
			prog = append(prog, unix.SockFilter{Code: o.code, K: o.k})
		}
	}
	return prog, nil
}
