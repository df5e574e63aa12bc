package network

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The helper process: this test binary re-executed with
// BERTH_NETWORK_HELPER set runs one of the modes below instead of the
// tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("BERTH_NETWORK_HELPER"); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	m, err := New(os.Getenv("BERTH_NETWORK_ROOT"), WithReserved(noHost))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch mode {
	case "allocate": // attach containers <tag>-0..<tag>-(N-1), print each address
		n, _ := strconv.Atoi(os.Getenv("BERTH_NETWORK_N"))
		tag := os.Getenv("BERTH_NETWORK_TAG")
		for i := range n {
			ep, err := m.Allocate("shared", EndpointRequest{ContainerID: fmt.Sprintf("%s-%d", tag, i)})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Println(ep.IP())
		}
	case "create": // create networks <tag>-0..<tag>-(N-1) without a subnet, print each subnet
		n, _ := strconv.Atoi(os.Getenv("BERTH_NETWORK_N"))
		tag := os.Getenv("BERTH_NETWORK_TAG")
		for i := range n {
			nw, err := m.Create(context.Background(), CreateOptions{Name: fmt.Sprintf("%s-%d", tag, i)})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Println(nw.Subnet)
		}
	}
	return 0
}

// runHelpers starts procs helper processes in mode at once over root and
// returns every line they print.
func runHelpers(t *testing.T, mode, root string, procs, n int) []string {
	t.Helper()
	var (
		cmds []*exec.Cmd
		outs []*strings.Builder
	)
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BERTH_NETWORK_HELPER="+mode, "BERTH_NETWORK_ROOT="+root,
			"BERTH_NETWORK_N="+strconv.Itoa(n), "BERTH_NETWORK_TAG=p"+strconv.Itoa(p))
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	var lines []string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v", i, err)
		}
		lines = append(lines, strings.Fields(outs[i].String())...)
	}
	return lines
}

// TestAllocateProcesses: four processes allocate on one network at once;
// no address is handed out twice and every endpoint is recorded.
func TestAllocateProcesses(t *testing.T) {
	root := t.TempDir()
	m, err := New(root, WithReserved(noHost))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, m, CreateOptions{Name: "shared", Subnet: "10.6.0.0/24"})
	const procs, each = 4, 30
	lines := runHelpers(t, "allocate", root, procs, each)
	seen := map[string]bool{}
	for _, l := range lines {
		a, err := netip.ParseAddr(l)
		if err != nil || !netip.MustParsePrefix("10.6.0.0/24").Contains(a) || l == "10.6.0.1" {
			t.Errorf("helper printed %q", l)
		}
		if seen[l] {
			t.Errorf("%s handed out twice", l)
		}
		seen[l] = true
	}
	eps, err := m.Endpoints("shared")
	if err != nil || len(seen) != procs*each || len(eps) != procs*each {
		t.Errorf("%d distinct addresses, %d endpoints, want %d (%v)", len(seen), len(eps), procs*each, err)
	}
}

// TestCreateProcesses: three processes create networks without --subnet
// at once; every one gets a subnet of its own.
func TestCreateProcesses(t *testing.T) {
	root := t.TempDir()
	lines := runHelpers(t, "create", root, 3, 5)
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Errorf("subnet %s given twice", l)
		}
		seen[l] = true
	}
	if len(seen) != 15 || seen["172.17.0.0/16"] {
		t.Errorf("subnets %v: want 15, none of them the default bridge's 172.17.0.0/16", lines)
	}
}
