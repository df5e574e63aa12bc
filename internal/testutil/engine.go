package testutil

import (
	"fmt"
	"os"
	"os/exec"
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
		ids := strings.Fields(b.Must("ps", "-aq", "--no-trunc"))
		if len(ids) > 0 {
			b.Run(append([]string{"rm", "-f"}, ids...)...)
		}
		// The test's networks go too (as a user's `network prune` would),
		// after their bridges were checked for leftover veths.
		bridges := b.Bridges()
		b.checkNoPorts(t, bridges)
		b.Run("network", "prune", "-f")
		b.CheckNoResidue(t)
		b.CheckNoNetworkResidue(t, bridges, ids)
	})
	return b
}

// Bridges lists the Linux bridges of b's bridge networks, the default
// one included (whether or not it is up now).
func (b *Berth) Bridges() []string {
	out, _, code := b.Run("network", "ls", "-q", "--no-trunc", "--filter", "driver=bridge")
	if code != 0 {
		return nil
	}
	var names []string
	for _, id := range strings.Fields(out) {
		name, _, code := b.Run("network", "inspect", "-f", `{{index .Options "com.docker.network.bridge.name"}}`, id)
		name = strings.TrimSpace(name)
		if code != 0 {
			continue
		}
		if name == "" || name == "<no value>" {
			name = "br-" + id[:12]
		}
		names = append(names, name)
	}
	return names
}

// checkNoPorts: with every container gone, no veth is left on b's
// bridges. The kernel deletes a removed container's veth pair as its
// namespace dies, in a worker, moments after rm returns: give it a few
// seconds.
func (b *Berth) checkNoPorts(t *testing.T, bridges []string) {
	t.Helper()
	for _, br := range bridges {
		ports := func() []os.DirEntry {
			ents, _ := os.ReadDir("/sys/class/net/" + br + "/brif")
			return ents
		}
		for deadline := time.Now().Add(5 * time.Second); len(ports()) > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if ents := ports(); len(ents) > 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("interfaces left on bridge %s: %v", br, names)
		}
	}
}

// CheckNoNetworkResidue is the networking part of the zero-residue
// contract, once every container and user network of b is gone: no
// pinned network namespace under the run root, none of b's bridges, no
// nftables rule for them or for the containers (ids), no endpoint left
// on the predefined networks, no DNS server of b's.
func (b *Berth) CheckNoNetworkResidue(t *testing.T, bridges, ids []string) {
	t.Helper()
	if ents, _ := os.ReadDir(filepath.Join(b.RunRoot, "netns")); len(ents) > 0 {
		t.Errorf("network namespaces left under the run root: %d", len(ents))
	}
	for _, br := range bridges {
		if _, err := os.Stat("/sys/class/net/" + br); err == nil {
			t.Errorf("bridge %s left on the host", br)
		}
	}
	if rules, err := exec.Command("nft", "list", "table", "inet", "berth").Output(); err == nil {
		for _, line := range strings.Split(string(rules), "\n") {
			for _, br := range bridges {
				if strings.Contains(line, `"berth net=`+br+`"`) {
					t.Errorf("nftables rule left for bridge %s: %s", br, strings.TrimSpace(line))
				}
			}
			for _, id := range ids {
				if strings.Contains(line, "berth ctr="+id) {
					t.Errorf("nftables rule left for container %.12s: %s", id, strings.TrimSpace(line))
				}
			}
		}
	}
	for _, n := range []string{"bridge", "host", "none"} {
		out, _, code := b.Run("network", "inspect", "-f", "{{len .Containers}}", n)
		if code == 0 && strings.TrimSpace(out) != "0" {
			t.Errorf("endpoints left on network %s: %s", n, strings.TrimSpace(out))
		}
	}
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
	// The DNS server of user networks removes its directory as it exits.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(b.RunRoot, "dns")); err != nil {
			break
		}
	}
	ents, _ := os.ReadDir(b.RunRoot)
	for _, e := range ents {
		switch e.Name() {
		case "runtime", "netns": // directories of per-container entries
			if sub, _ := os.ReadDir(filepath.Join(b.RunRoot, e.Name())); len(sub) == 0 {
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
