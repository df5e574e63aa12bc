package seccomp

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Filter is a seccomp program compiled for the architecture berth runs on.
// It is plain data until Load installs it, and may be loaded any number of
// times, on any number of threads.
type Filter struct {
	prog    []unix.SockFilter
	flags   uintptr
	unknown []string
}

// Instructions returns a copy of the BPF program, for tests and debugging.
func (f *Filter) Instructions() []unix.SockFilter { return slices.Clone(f.prog) }

// UnknownSyscalls lists, in config order, the syscall names that none of
// the filter's architectures know. They were skipped, as runc skips them:
// usually they are newer than berth's tables or belong to another family of
// CPUs, but a typo in a profile also ends up here.
func (f *Filter) UnknownSyscalls() []string { return slices.Clone(f.unknown) }

// Validate runs every check Compile does, so a bad config is rejected
// before anything is created. Errors name the config field and wrap
// errdefs.ErrInvalidArgument, or errdefs.ErrNotImplemented for what berth
// does not support (SCMP_ACT_NOTIFY, an architecture without tables).
func Validate(cfg *specs.LinuxSeccomp) error {
	_, err := Compile(cfg)
	return err
}

// Compile validates cfg and builds the filter for the running architecture
// (runtime.GOARCH), adding the architectures of cfg.Architectures that the
// same kernel can run. See the package documentation for the semantics.
func Compile(cfg *specs.LinuxSeccomp) (*Filter, error) {
	return compile(cfg, runtime.GOARCH)
}

// Offsets in struct seccomp_data. The args are little-endian u64s on every
// architecture berth has tables for: low word first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

const (
	retKillThread  = unix.SECCOMP_RET_KILL_THREAD
	retKillProcess = unix.SECCOMP_RET_KILL_PROCESS
	retENOSYS      = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	// retBadArch is returned for an architecture the config did not allow.
	retBadArch = retKillProcess
)

// fieldError names the config field at fault, the way a user finds it in
// config.json, and carries its errdefs class.
type fieldError struct {
	field, msg string
	class      error
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }
func (e *fieldError) Unwrap() error { return e.class }

func invalid(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...), class: errdefs.ErrInvalidArgument}
}

func unsupported(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...), class: errdefs.ErrNotImplemented}
}

// policy is the config after validation, with actions as SECCOMP_RET_ values.
type policy struct {
	def    uint32
	enosys bool // answer ENOSYS above the highest syscall named
	flags  uintptr
	rules  []rule
	arches []specs.Arch
}

type rule struct {
	names []string
	ret   uint32
	// alts are alternatives (OR) of conjunctions (AND); none means the rule
	// matches unconditionally.
	alts [][]cond
}

type cond struct {
	index           uint32
	op              specs.LinuxSeccompOperator
	value, valueTwo uint64
}

func parse(cfg *specs.LinuxSeccomp) (*policy, error) {
	if cfg == nil {
		return nil, invalid("linux.seccomp", "missing")
	}
	p := &policy{arches: cfg.Architectures}
	var err error
	if p.def, err = parseAction("linux.seccomp.defaultAction", cfg.DefaultAction, "linux.seccomp.defaultErrnoRet", cfg.DefaultErrnoRet); err != nil {
		return nil, err
	}
	for i, a := range cfg.Architectures {
		if !slices.Contains(knownArches, a) {
			return nil, invalid(fmt.Sprintf("linux.seccomp.architectures[%d]", i), "unknown architecture %q", a)
		}
	}
	for i, fl := range cfg.Flags {
		field := fmt.Sprintf("linux.seccomp.flags[%d]", i)
		switch fl {
		case "SECCOMP_FILTER_FLAG_TSYNC":
			p.flags |= unix.SECCOMP_FILTER_FLAG_TSYNC
		case specs.LinuxSeccompFlagLog:
			p.flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			p.flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
			// It changes how a notify listener waits; without SCMP_ACT_NOTIFY
			// there is no listener and the kernel would reject the flag, so it
			// is dropped, as libseccomp drops it.
		case "SECCOMP_FILTER_FLAG_NEW_LISTENER":
			return nil, unsupported(field, "%s is not supported: berth has no seccomp notify listener", fl)
		default:
			return nil, invalid(field, "unknown flag %q", fl)
		}
	}
	for i, sc := range cfg.Syscalls {
		field := fmt.Sprintf("linux.seccomp.syscalls[%d]", i)
		if len(sc.Names) == 0 {
			return nil, invalid(field+".names", "no syscall named")
		}
		for j, n := range sc.Names {
			if n == "" {
				return nil, invalid(fmt.Sprintf("%s.names[%d]", field, j), "empty syscall name")
			}
		}
		r := rule{names: sc.Names}
		if r.ret, err = parseAction(field+".action", sc.Action, field+".errnoRet", sc.ErrnoRet); err != nil {
			return nil, err
		}
		if r.alts, err = parseArgs(field, sc.Args); err != nil {
			return nil, err
		}
		p.rules = append(p.rules, r)
	}
	// runc's patchbpf skips the ENOSYS stub when the default already
	// allows (the call reaches the kernel, which answers ENOSYS itself) or
	// already is ENOSYS.
	switch p.def & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ALLOW, unix.SECCOMP_RET_LOG, unix.SECCOMP_RET_TRACE:
	default:
		p.enosys = p.def != retENOSYS
	}
	return p, nil
}

func parseAction(field string, act specs.LinuxSeccompAction, errnoField string, errnoRet *uint) (uint32, error) {
	var ret uint32
	switch act {
	case "":
		return 0, invalid(field, "required")
	case specs.ActKill, specs.ActKillThread:
		ret = retKillThread
	case specs.ActKillProcess:
		ret = retKillProcess
	case specs.ActTrap:
		ret = unix.SECCOMP_RET_TRAP
	case specs.ActErrno:
		ret = unix.SECCOMP_RET_ERRNO
	case specs.ActTrace:
		ret = unix.SECCOMP_RET_TRACE
	case specs.ActAllow:
		ret = unix.SECCOMP_RET_ALLOW
	case specs.ActLog:
		ret = unix.SECCOMP_RET_LOG
	case specs.ActNotify:
		return 0, unsupported(field, "%s is not supported: berth has no seccomp notify listener", act)
	default:
		return 0, invalid(field, "unknown action %q", act)
	}
	if ret != unix.SECCOMP_RET_ERRNO && ret != unix.SECCOMP_RET_TRACE {
		if errnoRet != nil {
			return 0, invalid(errnoField, "only valid with %s or %s, not %s", specs.ActErrno, specs.ActTrace, act)
		}
		return ret, nil
	}
	// EPERM is the spec's default errno; runc also uses it as the default
	// message a tracer gets from SCMP_ACT_TRACE.
	data := uint(unix.EPERM)
	if errnoRet != nil {
		data = *errnoRet
	}
	if data > unix.SECCOMP_RET_DATA {
		return 0, invalid(errnoField, "%d does not fit in the 16 bits seccomp returns", data)
	}
	return ret | uint32(data), nil
}

func parseArgs(field string, args []specs.LinuxSeccompArg) ([][]cond, error) {
	if len(args) == 0 {
		return nil, nil
	}
	var (
		all   []cond
		seen  [6]int
		split bool
	)
	for j, a := range args {
		f := fmt.Sprintf("%s.args[%d]", field, j)
		if a.Index > 5 {
			return nil, invalid(f+".index", "%d is out of range: syscalls have arguments 0 to 5", a.Index)
		}
		switch a.Op {
		case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
			specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		default:
			return nil, invalid(f+".op", "unknown operator %q", a.Op)
		}
		seen[a.Index]++
		split = split || seen[a.Index] > 1
		all = append(all, cond{index: uint32(a.Index), op: a.Op, value: a.Value, valueTwo: a.ValueTwo})
	}
	if !split {
		return [][]cond{all}, nil
	}
	// libseccomp cannot AND two conditions on one argument, so runc turns
	// such a rule into one rule per condition: Docker's profiles rely on it
	// to allow a list of values for one argument.
	alts := make([][]cond, len(all))
	for i, c := range all {
		alts[i] = []cond{c}
	}
	return alts, nil
}

// behavior is what the filter does for one syscall number: try alts in
// order, else return ret.
type behavior struct {
	alts []alt
	ret  uint32
	wide bool
}

type alt struct {
	conds []cond
	ret   uint32
}

func (b *behavior) plain() bool { return len(b.alts) == 0 }

// span is a range of syscall numbers with one behavior. Bounds are uint64
// so that hi+1 never wraps.
type span struct {
	lo, hi uint64
	b      *behavior
}

const maxNr = 1<<32 - 1

func compile(cfg *specs.LinuxSeccomp, goarch string) (*Filter, error) {
	p, err := parse(cfg)
	if err != nil {
		return nil, err
	}
	fam, ok := family[goarch]
	if !ok {
		return nil, fmt.Errorf("seccomp: berth has no syscall tables for %s: %w", goarch, errdefs.ErrNotImplemented)
	}
	selected := []*abi{fam[0]}
	for _, name := range p.arches {
		for _, a := range fam[1:] {
			if a.name == name && !slices.Contains(selected, a) {
				selected = append(selected, a)
			}
		}
	}

	// One dispatch per AUDIT_ARCH value, in the order the ABIs were selected:
	// native first.
	var audits []uint32
	for _, a := range selected {
		if !slices.Contains(audits, a.audit) {
			audits = append(audits, a.audit)
		}
	}

	known := map[string]bool{}
	var as asm
	labels := make([]label, len(audits))
	as.ld(offArch)
	for i, audit := range audits {
		labels[i] = as.newLabel()
		as.jmp(unix.BPF_JEQ, audit, labels[i], next)
	}
	as.ret(retBadArch)
	for i, audit := range audits {
		as.bind(labels[i])
		as.ld(offNr)
		emitTree(&as, p.spans(audit, selected, known))
	}

	f := &Filter{flags: p.flags}
	for _, r := range p.rules {
		for _, n := range r.names {
			if !known[n] && !slices.Contains(f.unknown, n) {
				f.unknown = append(f.unknown, n)
			}
		}
	}
	// Linking only adds instructions, so an oversized program is refused
	// before paying for it.
	if n := as.instructions(); n > unix.BPF_MAXINSNS {
		return nil, tooLong(n)
	}
	if f.prog, err = as.link(); err != nil {
		return nil, err
	}
	if len(f.prog) > unix.BPF_MAXINSNS {
		return nil, tooLong(len(f.prog))
	}
	return f, nil
}

func tooLong(n int) error {
	return invalid("linux.seccomp", "the filter needs %d BPF instructions, more than the kernel's limit of %d: merge rules or list fewer architectures", n, unix.BPF_MAXINSNS)
}

// spans partitions every syscall number of one AUDIT_ARCH value into ranges
// of equal behavior, sorted, and records in known the names it resolved.
func (p *policy) spans(audit uint32, selected []*abi, known map[string]bool) []span {
	def := &behavior{ret: p.def}
	enosys := &behavior{ret: retENOSYS}
	badArch := &behavior{ret: retBadArch}

	var base []span
	points := map[uint64]*behavior{}
	for _, a := range abis {
		if a.audit != audit {
			continue
		}
		if !slices.Contains(selected, a) {
			// Only x32 can be missing under AUDIT_ARCH_X86_64. libseccomp
			// lets -1 through to the rules: a tracer sets it to skip a call.
			if a.hi == maxNr {
				base = append(base, span{uint64(a.lo), maxNr - 1, badArch}, span{maxNr, maxNr, def})
			} else {
				base = append(base, span{uint64(a.lo), uint64(a.hi), badArch})
			}
			continue
		}
		highest, found := p.resolve(a, points, known)
		if p.enosys && found && highest < a.hi {
			base = append(base, span{uint64(a.lo), uint64(highest), def}, span{uint64(highest) + 1, uint64(a.hi), enosys})
		} else {
			base = append(base, span{uint64(a.lo), uint64(a.hi), def})
		}
	}

	nrs := make([]uint64, 0, len(points))
	for nr := range points {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)

	var out []span
	add := func(s span) {
		if n := len(out); n > 0 && out[n-1].b.plain() && s.b.plain() && out[n-1].b.ret == s.b.ret {
			out[n-1].hi = s.hi
			return
		}
		out = append(out, s)
	}
	for _, s := range base {
		cur := s.lo
		for len(nrs) > 0 && nrs[0] <= s.hi {
			nr := nrs[0]
			nrs = nrs[1:]
			if cur < nr {
				add(span{cur, nr - 1, s.b})
			}
			add(span{nr, nr, points[nr]})
			cur = nr + 1
		}
		if cur <= s.hi {
			add(span{cur, s.hi, s.b})
		}
	}
	return out
}

// resolve adds to points the behavior of every syscall the rules name for
// ABI a, and returns the highest syscall number named (by any rule, as runc
// counts it for its ENOSYS stub, so every syscall with rules is below it).
func (p *policy) resolve(a *abi, points map[uint64]*behavior, known map[string]bool) (highest uint32, found bool) {
	for _, r := range p.rules {
		for _, name := range r.names {
			nr, direct := a.table.lookup(name)
			m, isMuxed := a.muxed[name]
			var muxNr uint32
			if isMuxed {
				muxNr, isMuxed = a.table.lookup(m.via)
			}
			if !direct && !isMuxed {
				continue
			}
			known[name] = true
			if direct && (!found || nr > highest) {
				highest, found = nr, true
			}
			// runc counts only direct numbers; counting the multiplexer too
			// keeps the stub from answering ENOSYS to calls with rules.
			if isMuxed && (!found || muxNr > highest) {
				highest, found = muxNr, true
			}
			if r.ret == p.def {
				continue
			}
			if direct {
				p.add(points, a, nr, r.ret, r.alts)
			}
			if isMuxed {
				p.add(points, a, muxNr, r.ret, muxAlts(m.call, r.alts))
			}
		}
	}
	return highest, found
}

// add records a rule for syscall nr, after those already recorded for it.
func (p *policy) add(points map[uint64]*behavior, a *abi, nr, ret uint32, alts [][]cond) {
	b := points[uint64(nr)]
	if b == nil {
		b = &behavior{ret: p.def, wide: a.wide}
		points[uint64(nr)] = b
	} else if b.plain() && b.ret != p.def {
		// An unconditional rule came first: nothing after it matters.
		return
	}
	if alts == nil {
		b.alts, b.ret = nil, ret
		return
	}
	for _, conds := range alts {
		b.alts = append(b.alts, alt{conds: conds, ret: ret})
	}
}

// muxAlts turns a rule's args into those of its twin on the multiplexer:
// the first argument must be the call's number, and, as in libseccomp, that
// replaces any condition the rule had on argument 0.
func muxAlts(call uint32, alts [][]cond) [][]cond {
	sel := cond{index: 0, op: specs.OpEqualTo, value: uint64(call)}
	if alts == nil {
		return [][]cond{{sel}}
	}
	out := make([][]cond, len(alts))
	for i, conds := range alts {
		out[i] = []cond{sel}
		for _, c := range conds {
			if c.index != 0 {
				out[i] = append(out[i], c)
			}
		}
	}
	return out
}

// emitTree dispatches on the syscall number in A with a binary search over
// spans, whose leaves are the behaviors.
func emitTree(as *asm, spans []span) {
	if len(spans) == 1 {
		emitBehavior(as, spans[0].b)
		return
	}
	mid := len(spans) / 2
	right := as.newLabel()
	as.jmp(unix.BPF_JGE, uint32(spans[mid].lo), right, next)
	emitTree(as, spans[:mid])
	as.bind(right)
	emitTree(as, spans[mid:])
}

func emitBehavior(as *asm, b *behavior) {
	for _, a := range b.alts {
		fail := as.newLabel()
		for _, c := range a.conds {
			emitCond(as, c, b.wide, fail)
		}
		as.ret(a.ret)
		as.bind(fail)
	}
	as.ret(b.ret)
}

// emitCond falls through when the argument satisfies c and jumps to fail
// when it does not. A 64-bit comparison decides on the high words and only
// looks at the low words when the high words are equal.
func emitCond(as *asm, c cond, wide bool, fail label) {
	lo := offArgs + 8*c.index
	hi := lo + 4
	v := c.value
	if c.op == specs.OpMaskedEqual {
		mask := c.value
		datum := c.valueTwo & mask
		if wide && mask>>32 != 0 {
			as.ld(hi)
			as.and(uint32(mask >> 32))
			as.jmp(unix.BPF_JEQ, uint32(datum>>32), next, fail)
		}
		if uint32(mask) != 0 {
			as.ld(lo)
			as.and(uint32(mask))
			as.jmp(unix.BPF_JEQ, uint32(datum), next, fail)
		}
		return
	}
	if !wide {
		// libseccomp compares the low words only, truncating the value.
		as.ld(lo)
		emitCmp(as, c.op, uint32(v), next, fail)
		return
	}
	pass := as.newLabel()
	vhi := uint32(v >> 32)
	as.ld(hi)
	switch c.op {
	case specs.OpEqualTo:
		as.jmp(unix.BPF_JEQ, vhi, next, fail)
	case specs.OpNotEqual:
		as.jmp(unix.BPF_JEQ, vhi, next, pass)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		as.jmp(unix.BPF_JGT, vhi, pass, next)
		as.jmp(unix.BPF_JEQ, vhi, next, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		as.jmp(unix.BPF_JGT, vhi, fail, next)
		as.jmp(unix.BPF_JEQ, vhi, next, pass)
	}
	as.ld(lo)
	emitCmp(as, c.op, uint32(v), next, fail)
	as.bind(pass)
}

// emitCmp compares A with k for op, continuing at pass or fail.
func emitCmp(as *asm, op specs.LinuxSeccompOperator, k uint32, pass, fail label) {
	switch op {
	case specs.OpEqualTo:
		as.jmp(unix.BPF_JEQ, k, pass, fail)
	case specs.OpNotEqual:
		as.jmp(unix.BPF_JEQ, k, fail, pass)
	case specs.OpGreaterThan:
		as.jmp(unix.BPF_JGT, k, pass, fail)
	case specs.OpGreaterEqual:
		as.jmp(unix.BPF_JGE, k, pass, fail)
	case specs.OpLessThan:
		as.jmp(unix.BPF_JGE, k, fail, pass)
	case specs.OpLessEqual:
		as.jmp(unix.BPF_JGT, k, fail, pass)
	}
}
