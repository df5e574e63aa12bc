package container

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/runtime"
)

// Stats is one sample of a container's resource use, with Docker's
// definitions. Counters are cumulative: rates come from two samples.
type Stats struct {
	ID, Name string
	Running  bool
	Read     time.Time // when the sample was taken
	// CPUNanos is the CPU time the container's processes used.
	CPUNanos uint64
	// MemUsage is the memory in use net of inactive page cache (what
	// docker stats shows: usage - inactive_file); MemLimit is the
	// container's limit, or the host's memory when it has none.
	MemUsage, MemLimit uint64
	NetRx, NetTx       uint64 // bytes, every interface but loopback
	BlockRead          uint64 // bytes
	BlockWrite         uint64
	Pids               uint64
}

// CPUPercent is Docker's CPU %: CPU time used between two samples over
// the wall-clock time between them (100% is one CPU busy).
func CPUPercent(prev, cur *Stats) float64 {
	if prev == nil || cur == nil || !cur.Read.After(prev.Read) || cur.CPUNanos < prev.CPUNanos {
		return 0
	}
	return float64(cur.CPUNanos-prev.CPUNanos) / float64(cur.Read.Sub(prev.Read).Nanoseconds()) * 100
}

// MemPercent is MemUsage as a share of MemLimit, in percent.
func (s *Stats) MemPercent() float64 {
	if s.MemLimit == 0 {
		return 0
	}
	return float64(s.MemUsage) / float64(s.MemLimit) * 100
}

// Stats samples container ref's cgroup. A container that is not running
// has a sample of zeros, as docker stats -a shows it.
func (e *Engine) Stats(ref string) (*Stats, error) {
	c, err := e.Refresh(ref)
	if err != nil {
		return nil, err
	}
	s := &Stats{ID: c.ID, Name: c.Name, Read: time.Now()}
	if !c.State.Running {
		return s, nil
	}
	st, err := e.Runtime.State(c.ID)
	if err != nil || st.Status == runtime.Stopped {
		return s, nil
	}
	spec, err := e.Runtime.ContainerSpec(c.ID)
	if err != nil {
		return s, nil
	}
	cg, err := cgroups.New(spec.Linux.CgroupsPath)
	if err != nil {
		return nil, err
	}
	cs, err := cg.Stats()
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", ShortID(c.ID), err)
	}
	s.Read = time.Now()
	s.Running = true
	s.CPUNanos = cs.CPU.UsageNanos
	s.MemUsage = cs.Memory.Usage
	if inactive, ok := memStat(cg.Path("memory"), "total_inactive_file", "inactive_file"); ok && inactive < s.MemUsage {
		s.MemUsage -= inactive
	}
	s.MemLimit = cs.Memory.Limit
	if host := hostMemory(); s.MemLimit == 0 || (host > 0 && s.MemLimit > host) {
		s.MemLimit = host
	}
	s.BlockRead, s.BlockWrite = cs.IO.ReadBytes, cs.IO.WriteBytes
	s.Pids = cs.Pids.Current
	if c.HostConfig.NetworkMode != "host" {
		s.NetRx, s.NetTx = netDev(st.Pid)
	}
	return s, nil
}

// memStat reads the first of keys found in the memory controller's
// memory.stat (v1 names its hierarchical counters total_*, v2 does not).
func memStat(dir string, keys ...string) (uint64, bool) {
	if dir == "" {
		return 0, false
	}
	data, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, false
	}
	vals := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			vals[k] = n
		}
	}
	for _, k := range keys {
		if v, ok := vals[k]; ok {
			return v, true
		}
	}
	return 0, false
}

// hostMemory is MemTotal of /proc/meminfo in bytes.
func hostMemory() uint64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// netDev sums the receive and transmit bytes of every interface but
// loopback in the network namespace of process pid.
func netDev(pid int) (rx, tx uint64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return 0, 0
	}
	return parseNetDev(data)
}

func parseNetDev(data []byte) (rx, tx uint64) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 == nil && err2 == nil {
			rx += r
			tx += t
		}
	}
	return rx, tx
}

// Process is one process of a container as /proc shows it, with what
// ps's columns need.
type Process struct {
	PID, PPID      int
	UID, GID       int // effective
	State          string
	TTY            uint64 // tty_nr: device number of the controlling terminal, 0 for none
	UTime, STime   uint64 // clock ticks
	Started        time.Time
	RSS, VSZ       uint64 // bytes
	Nice, Priority int
	Threads        int
	Comm           string
	Args           []string
}

// ClockTicks is USER_HZ, the unit of /proc's CPU times (100 on every
// architecture Linux runs containers on).
const ClockTicks = 100

// CPUTime is the process's user and system time.
func (p *Process) CPUTime() time.Duration {
	return time.Duration(p.UTime+p.STime) * time.Second / ClockTicks
}

// Top lists the processes of running container ref, in pid order.
func (e *Engine) Top(ref string) ([]Process, error) {
	c, err := e.Refresh(ref)
	if err != nil {
		return nil, err
	}
	if !c.State.Running || c.State.Restarting {
		return nil, e.notRunning(c)
	}
	pids, err := e.Runtime.Pids(c.ID)
	if err != nil {
		return nil, err
	}
	boot := bootTime()
	var out []Process
	for _, pid := range pids {
		if p, err := readProcess(pid, boot); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// readProcess reads /proc/<pid>/{stat,status,cmdline}.
func readProcess(pid int, boot time.Time) (Process, error) {
	base := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(base + "/stat")
	if err != nil {
		return Process{}, err
	}
	p, err := parseStat(string(stat), boot)
	if err != nil {
		return p, err
	}
	if status, err := os.ReadFile(base + "/status"); err == nil {
		p.UID, p.GID = parseStatusIDs(string(status))
	}
	if cmd, err := os.ReadFile(base + "/cmdline"); err == nil && len(cmd) > 0 {
		p.Args = strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
	}
	return p, nil
}

// parseStat reads proc(5)'s /proc/<pid>/stat line.
func parseStat(s string, boot time.Time) (Process, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return Process{}, fmt.Errorf("malformed stat line")
	}
	var p Process
	p.PID, _ = strconv.Atoi(strings.TrimSpace(s[:open]))
	p.Comm = s[open+1 : end]
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 {
		return p, fmt.Errorf("short stat line")
	}
	num := func(n int) uint64 { v, _ := strconv.ParseUint(f[n-3], 10, 64); return v }
	inum := func(n int) int { v, _ := strconv.Atoi(f[n-3]); return v }
	p.State = f[0]
	p.PPID = inum(4)
	p.TTY = num(7)
	p.UTime, p.STime = num(14), num(15)
	p.Priority, p.Nice = inum(18), inum(19)
	p.Threads = inum(20)
	p.Started = boot.Add(time.Duration(num(22)) * time.Second / ClockTicks)
	p.VSZ = num(23)
	p.RSS = num(24) * uint64(os.Getpagesize())
	return p, nil
}

// parseStatusIDs reads the effective uid and gid of /proc/<pid>/status.
func parseStatusIDs(s string) (uid, gid int) {
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 1 {
				uid, _ = strconv.Atoi(f[1])
			}
		}
		if v, ok := strings.CutPrefix(line, "Gid:"); ok {
			if f := strings.Fields(v); len(f) > 1 {
				gid, _ = strconv.Atoi(f[1])
			}
		}
	}
	return uid, gid
}

// bootTime is btime of /proc/stat.
func bootTime() time.Time {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(n, 0)
		}
	}
	return time.Time{}
}
