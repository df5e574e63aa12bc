package cgroups

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// request is one device access the kernel asks the program about.
type request struct {
	typ          byte // 'b' or 'c'
	major, minor uint32
	access       string // some of "rwm"
}

func (q request) String() string {
	return fmt.Sprintf("%c %d:%d %s", q.typ, q.major, q.minor, q.access)
}

// interpret runs prog the way the kernel would for q, for the instructions
// devicesProgram emits. It also checks what the verifier would: every
// instruction reachable, every jump in range, R0 set on exit.
func interpret(t *testing.T, prog []insn, q request) bool {
	t.Helper()
	checkReachable(t, prog)
	var acc, typ uint32
	for _, c := range q.access {
		acc |= map[rune]uint32{'m': accMknod, 'r': accRead, 'w': accWrite}[c]
	}
	typ = devChar
	if q.typ == 'b' {
		typ = devBlock
	}
	ctx := []uint32{acc<<16 | typ, q.major, q.minor}
	var reg [11]uint64
	r0set := false
	for pc, steps := 0, 0; pc < len(prog); pc, steps = pc+1, steps+1 {
		if steps > 100000 {
			t.Fatal("program loops")
		}
		i := prog[pc]
		switch i.op {
		case opLdxW:
			if i.src != 1 || i.off%4 != 0 || int(i.off/4) >= len(ctx) {
				t.Fatalf("insn %d: bad context load %+v", pc, i)
			}
			reg[i.dst] = uint64(ctx[i.off/4])
		case opMovImm:
			reg[i.dst] = uint64(uint32(i.imm))
			if i.dst == 0 {
				r0set = true
			}
		case opMovReg:
			reg[i.dst] = uint64(uint32(reg[i.src]))
		case opAndImm:
			reg[i.dst] = uint64(uint32(reg[i.dst]) & uint32(i.imm))
		case opRshImm:
			reg[i.dst] = uint64(uint32(reg[i.dst]) >> uint(i.imm))
		case opJa:
			pc += int(i.off)
		case opJneImm:
			if reg[i.dst] != uint64(int64(i.imm)) {
				pc += int(i.off)
			}
		case opJsetIm:
			if reg[i.dst]&uint64(int64(i.imm)) != 0 {
				pc += int(i.off)
			}
		case opExit:
			if !r0set {
				t.Fatalf("insn %d: exit without R0", pc)
			}
			return reg[0] == 1
		default:
			t.Fatalf("insn %d: unknown opcode %#x", pc, i.op)
		}
	}
	t.Fatal("program runs off its end")
	return false
}

func checkReachable(t *testing.T, prog []insn) {
	t.Helper()
	seen := make([]bool, len(prog))
	var walk func(pc int)
	walk = func(pc int) {
		for ; pc < len(prog) && !seen[pc]; pc++ {
			seen[pc] = true
			i := prog[pc]
			switch i.op {
			case opExit:
				return
			case opJa:
				pc += int(i.off)
			case opJneImm, opJsetIm:
				if to := pc + 1 + int(i.off); to >= len(prog) {
					t.Fatalf("insn %d jumps out of the program", pc)
				} else {
					walk(to)
				}
			}
		}
		if pc >= len(prog) {
			t.Fatal("a path runs off the program's end")
		}
	}
	walk(0)
	for pc, ok := range seen {
		if !ok {
			t.Fatalf("insn %d is unreachable (the verifier refuses that)", pc)
		}
	}
}

// reference is cgroup v1's meaning of the rules for a request, written
// plainly: each access bit goes by the last rule that names the bit and
// matches the device; unmatched bits are denied.
func reference(rules []specs.LinuxDeviceCgroup, q request) bool {
	for _, bit := range q.access {
		allowed := false
		for i := len(rules) - 1; i >= 0; i-- {
			r, _ := deviceRule(rules[i])
			if !strings.ContainsRune(r.access, bit) {
				continue
			}
			if r.typ != 'a' && (r.typ != q.typ || (r.major >= 0 && uint32(r.major) != q.major) || (r.minor >= 0 && uint32(r.minor) != q.minor)) {
				continue
			}
			allowed = r.allow
			break
		}
		if !allowed {
			return false
		}
	}
	return true
}

func TestDevicesProgram(t *testing.T) {
	c := func(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		d := specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Access: access}
		if major != -2 {
			d.Major = &major
		}
		if minor != -2 {
			d.Minor = &minor
		}
		return d
	}
	const omit = -2 // leave the number out, as most configs do
	// Docker's default device rules.
	docker := []specs.LinuxDeviceCgroup{
		c(false, "", omit, omit, "rwm"),
		c(true, "c", omit, omit, "m"),
		c(true, "b", omit, omit, "m"),
		c(true, "c", 1, 3, "rwm"),
		c(true, "c", 1, 5, "rwm"),
		c(true, "c", 1, 7, "rwm"),
		c(true, "c", 5, 0, "rwm"),
		c(true, "c", 5, 1, "rwm"),
		c(true, "c", 1, 8, "rwm"),
		c(true, "c", 1, 9, "rwm"),
		c(true, "c", 136, omit, "rwm"),
		c(true, "c", 5, 2, "rwm"),
		c(false, "c", 10, 200, "rwm"),
	}
	for _, tc := range []struct {
		name  string
		rules []specs.LinuxDeviceCgroup
		allow []request
		deny  []request
	}{
		{"docker defaults", docker,
			[]request{{'c', 1, 3, "rw"}, {'c', 1, 9, "r"}, {'c', 136, 4, "rw"}, {'b', 8, 0, "m"}, {'c', 99, 1, "m"}},
			[]request{{'b', 8, 0, "r"}, {'c', 10, 200, "rw"}, {'c', 10, 200, "m"}, {'c', 1, 1, "r"}, {'c', 4, 0, "w"}}},
		{"empty list denies everything", nil, nil, []request{{'c', 1, 3, "r"}, {'b', 8, 0, "m"}}},
		{"allow all", []specs.LinuxDeviceCgroup{c(true, "a", omit, omit, "rwm")}, []request{{'c', 1, 3, "rwm"}, {'b', 8, 0, "rw"}}, nil},
		{"bits add up across rules", []specs.LinuxDeviceCgroup{c(true, "c", 1, 3, "r"), c(true, "c", 1, 3, "w")},
			[]request{{'c', 1, 3, "rw"}, {'c', 1, 3, "r"}}, []request{{'c', 1, 3, "rwm"}, {'c', 1, 4, "r"}}},
		{"a later deny of one bit wins", []specs.LinuxDeviceCgroup{c(true, "c", 1, 3, "rwm"), c(false, "c", 1, 3, "w")},
			[]request{{'c', 1, 3, "r"}, {'c', 1, 3, "m"}}, []request{{'c', 1, 3, "rw"}, {'c', 1, 3, "w"}}},
		{"a later allow reopens", []specs.LinuxDeviceCgroup{c(true, "a", omit, omit, "rwm"), c(false, "b", omit, omit, "rwm"), c(true, "b", 8, 0, "r")},
			[]request{{'b', 8, 0, "r"}, {'c', 4, 1, "rw"}}, []request{{'b', 8, 0, "w"}, {'b', 8, 1, "r"}}},
		{"type a ignores numbers, as the kernel does", []specs.LinuxDeviceCgroup{c(true, "a", 1, 3, "r")},
			[]request{{'b', 9, 9, "r"}}, []request{{'b', 9, 9, "w"}}},
		{"wildcard -1", []specs.LinuxDeviceCgroup{c(true, "c", -1, 5, "r")},
			[]request{{'c', 7, 5, "r"}}, []request{{'c', 7, 6, "r"}, {'b', 7, 5, "r"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog, err := devicesProgram(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range tc.allow {
				if !interpret(t, prog, q) {
					t.Errorf("%v denied, want allowed", q)
				}
				if !reference(tc.rules, q) {
					t.Errorf("reference denies %v: the test is wrong", q)
				}
			}
			for _, q := range tc.deny {
				if interpret(t, prog, q) {
					t.Errorf("%v allowed, want denied", q)
				}
			}
		})
	}
}

// TestDevicesProgramRandom compares the compiled program with the plain
// reference on random rule lists.
func TestDevicesProgramRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(s string) string { return string(s[rng.IntN(len(s))]) }
	num := func() *int64 {
		if rng.IntN(3) == 0 {
			return nil
		}
		v := int64(rng.IntN(3))
		return &v
	}
	accesses := []string{"r", "w", "m", "rw", "rm", "wm", "rwm"}
	for round := range 300 {
		var rules []specs.LinuxDeviceCgroup
		for range rng.IntN(8) {
			rules = append(rules, specs.LinuxDeviceCgroup{
				Allow: rng.IntN(2) == 0, Type: pick("abcc"), Major: num(), Minor: num(),
				Access: accesses[rng.IntN(len(accesses))],
			})
		}
		prog, err := devicesProgram(rules)
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			q := request{typ: pick("bc")[0], major: uint32(rng.IntN(3)), minor: uint32(rng.IntN(3)), access: accesses[rng.IntN(len(accesses))]}
			if got, want := interpret(t, prog, q), reference(rules, q); got != want {
				t.Fatalf("round %d: rules %+v: %v: program says %v, reference %v", round, rules, q, got, want)
			}
		}
	}
}

func TestEncode(t *testing.T) {
	got := encode([]insn{{op: opLdxW, dst: 2, src: 1, off: 4, imm: 0}, {op: opMovImm, dst: 0, imm: -1}, {op: opExit}})
	want := []byte{
		0x61, 0x12, 4, 0, 0, 0, 0, 0,
		0xb4, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff,
		0x95, 0, 0, 0, 0, 0, 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got % x", got)
	}
}

func TestRuleString(t *testing.T) {
	major, minor := int64(136), int64(-1)
	for _, tc := range []struct {
		d    specs.LinuxDeviceCgroup
		want string
	}{
		{specs.LinuxDeviceCgroup{}, "a *:* rwm"},
		{specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Access: "rw"}, "c 136:* rw"},
		{specs.LinuxDeviceCgroup{Type: "b", Major: &major, Minor: &minor, Access: "m"}, "b 136:* m"},
	} {
		r, err := deviceRule(tc.d)
		if err != nil || r.String() != tc.want {
			t.Errorf("deviceRule(%+v) = %q, %v; want %q", tc.d, r.String(), err, tc.want)
		}
	}
}
