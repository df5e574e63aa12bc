package container

import (
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	boot := time.Unix(1000, 0)
	line := "4242 (sh (odd) name) S 4200 4242 4242 34816 4242 4194560 100 0 0 0 150 50 0 0 20 0 1 0 500 2322432 300 18446744073709551615"
	p, err := parseStat(line, boot)
	if err != nil {
		t.Fatal(err)
	}
	if p.PID != 4242 || p.PPID != 4200 || p.Comm != "sh (odd) name" || p.State != "S" || p.TTY != 34816 {
		t.Errorf("ids: %+v", p)
	}
	if p.UTime != 150 || p.STime != 50 || p.CPUTime() != 2*time.Second {
		t.Errorf("cpu: %+v %v", p, p.CPUTime())
	}
	if p.Priority != 20 || p.Nice != 0 || p.Threads != 1 || !p.Started.Equal(boot.Add(5*time.Second)) || p.VSZ != 2322432 {
		t.Errorf("rest: %+v", p)
	}
	if _, err := parseStat("12 (x) S 1", boot); err == nil {
		t.Error("short line accepted")
	}
}

func TestParseStatusIDs(t *testing.T) {
	uid, gid := parseStatusIDs("Name:\tsh\nUid:\t0\t1000\t1000\t1000\nGid:\t0\t2000\t2000\t2000\n")
	if uid != 1000 || gid != 2000 {
		t.Errorf("effective ids %d %d", uid, gid)
	}
}

func TestParseNetDev(t *testing.T) {
	data := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999      10    0    0    0     0          0         0   999999      10    0    0    0     0       0          0
  eth0:    1500      12    0    0    0     0          0         0      700       7    0    0    0     0       0          0
  eth1:     500       1    0    0    0     0          0         0      300       1    0    0    0     0       0          0
`
	rx, tx := parseNetDev([]byte(data))
	if rx != 2000 || tx != 1000 {
		t.Errorf("rx %d tx %d (loopback must not count)", rx, tx)
	}
}

func TestCPUPercent(t *testing.T) {
	t0 := time.Now()
	prev := &Stats{Read: t0, CPUNanos: 1e9}
	cur := &Stats{Read: t0.Add(500 * time.Millisecond), CPUNanos: 1e9 + 250e6}
	if got := CPUPercent(prev, cur); got < 49.9 || got > 50.1 {
		t.Errorf("CPU %% = %v, want 50", got)
	}
	if CPUPercent(nil, cur) != 0 || CPUPercent(cur, prev) != 0 {
		t.Error("no previous sample, or time going back, must read 0")
	}
	if (&Stats{MemUsage: 1 << 20, MemLimit: 4 << 20}).MemPercent() != 25 || (&Stats{}).MemPercent() != 0 {
		t.Error("MemPercent")
	}
}
