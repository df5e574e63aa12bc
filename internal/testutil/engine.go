package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MainWithBerth is TestMain for packages whose tests drive the built
// binary: as root and without -short it builds berth into *bin first (the
// tests skip themselves otherwise), runs the tests and returns the code.
func MainWithBerth(m *testing.M, bin *string) int {
	if testing.Short() || os.Getuid() != 0 {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "berth-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildBerth(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// NewEngine is the common start of an engine test: root required, the
// binary built, a busybox image "bb" imported (extra may add to its
// rootfs), and at cleanup every container removed and the zero-residue
// contract checked (CheckNoResidue).
func NewEngine(t *testing.T, bin string, extra func(rootfs string)) *Berth {
	t.Helper()
	RequiresRoot(t)
	if bin == "" {
		t.Skip("needs the berth binary (built by TestMain; skipped with -short)")
	}
	b := NewBerth(t, bin)
	b.ImportBusybox("bb", extra)
	t.Cleanup(func() {
		if ids := strings.Fields(b.Must("ps", "-aq", "--no-trunc")); len(ids) > 0 {
			b.Run(append([]string{"rm", "-f"}, ids...)...)
		}
		b.CheckNoResidue(t)
	})
	return b
}

// CheckNoResidue is the zero-residue contract: no container directory,
// run directory, active snapshot, host mount or monitor of b's engine is
// left.
func (b *Berth) CheckNoResidue(t *testing.T) {
	t.Helper()
	// The last monitor closes its socket just before it exits.
	deadline := time.Now().Add(10 * time.Second)
	for len(b.Monitors()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if pids := b.Monitors(); len(pids) > 0 {
		t.Errorf("monitors left running: %v", pids)
	}
	if ents, _ := os.ReadDir(filepath.Join(b.Root, "containers")); len(ents) > 0 {
		t.Errorf("container directories left: %d", len(ents))
	}
	var left []string
	ents, _ := os.ReadDir(b.RunRoot)
	for _, e := range ents {
		if e.Name() == "runtime" {
			if sub, _ := os.ReadDir(filepath.Join(b.RunRoot, "runtime")); len(sub) == 0 {
				continue
			}
		}
		left = append(left, e.Name())
	}
	if len(left) > 0 {
		t.Errorf("run root entries left: %v", left)
	}
	if ents, _ := os.ReadDir(filepath.Join(b.Root, "snapshots", "active")); len(ents) > 0 {
		t.Errorf("active snapshots left: %d", len(ents))
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), b.Root) {
		t.Errorf("mounts under the engine root left in the host's mountinfo")
	}
}

// Monitors lists the monitor processes of b's engine (by their argv:
// berth monitor ID ROOT ...).
func (b *Berth) Monitors() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) > 3 && args[1] == "monitor" && args[3] == b.Root {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Zombies counts zombie processes on the host, or with pidns set only in
// the pid namespace of that process.
func Zombies(pidns int) int {
	var ns string
	if pidns > 0 {
		ns, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pidns))
	}
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if ns != "" {
			if other, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid"); other != ns {
				continue
			}
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(st)
		if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 && s[i+2] == 'Z' {
			n++
		}
	}
	return n
}
