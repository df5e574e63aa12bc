package dns

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/testutil"
)

// Ensure starts /proc/self/exe as `network-dns`: in the tests that is
// this test binary, which TestMain turns into the server. A second mode,
// BERTH_DNS_TEST_ENSURE, runs one Ensure as a separate process, for the
// race between processes.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "network-dns" {
		os.Exit(serverMain(os.Args[2:]))
	}
	if spec := os.Getenv("BERTH_DNS_TEST_ENSURE"); spec != "" {
		root, runRoot, _ := strings.Cut(spec, "\n")
		if err := Ensure(root, runRoot); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serverMain is what `berth network-dns` does (internal/cli), with the
// host's resolv.conf replaced by the test's so nothing is forwarded off
// the host.
func serverMain(args []string) int {
	fs := flag.NewFlagSet("network-dns", flag.ContinueOnError)
	root := fs.String("root", "", "")
	runRoot := fs.String("run-root", "", "")
	readyFD := fs.Int("ready-fd", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o := RunOptions{Root: *root, RunRoot: *runRoot, ResolvConf: os.Getenv("BERTH_DNS_TEST_RESOLV_CONF")}
	if v := os.Getenv("BERTH_DNS_TEST_LINGER"); v != "" { // zero otherwise: exit with the last endpoint
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		o.Linger = d
	}
	if o.ResolvConf == "" {
		fmt.Fprintln(os.Stderr, "BERTH_DNS_TEST_RESOLV_CONF is not set: refusing to forward to the host's resolvers")
		return 2
	}
	if *readyFD > 0 {
		o.Ready = os.NewFile(uintptr(*readyFD), "ready")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, o); err != nil {
		return 1
	}
	return 0
}

// servers lists the live (not zombie) DNS server processes of runRoot.
func servers(runRoot string) []int {
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
		if len(args) < 2 || args[1] != "network-dns" || !slices.Contains(args, runRoot) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			s := string(st)
			if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 && s[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// killServersAtEnd kills, when the test ends, the servers it left: only
// those of its own run root.
func killServersAtEnd(t *testing.T, runRoot string) {
	t.Cleanup(func() {
		for _, pid := range servers(runRoot) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// waitNoServer waits until no server of runRoot is left, and until the
// processes pids have exited (a dying process loses its command line
// before it closes its files: the scan alone would say gone too early).
func waitNoServer(t *testing.T, runRoot string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		alive := servers(runRoot)
		for _, pid := range pids {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
				s := string(st)
				if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 && s[i+2] != 'Z' {
					alive = append(alive, pid)
				}
			}
		}
		if len(alive) == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("dns servers still running: %v", servers(runRoot))
}

func mustResolve(t *testing.T, gw, src netip.Addr, name string, want netip.Addr) {
	t.Helper()
	resp, err := dig(t, gw, src, name, mdns.TypeA, false, 0)
	if err != nil {
		t.Fatalf("%s at %s: %v", name, gw, err)
	}
	if got := addrs(resp); !slices.Equal(got, []string{want.String()}) {
		t.Fatalf("%s at %s: %v (%s), want %s", name, gw, got, mdns.RcodeToString[resp.Rcode], want)
	}
}

// TestServerProcess is the lifecycle: concurrent Ensures start one
// server, Notify makes new records visible at once, the server follows
// networks coming and going and leaves nothing behind when the last
// endpoint goes, and a server killed outright is replaced.
func TestServerProcess(t *testing.T) {
	testutil.RequiresRoot(t)
	subnets := loopNets(3)
	root := t.TempDir()
	runRoot := filepath.Join(root, "run")
	dir := stateDir(runRoot)
	// The host's resolver of this test: an address where nothing
	// listens, so that any forwarded query fails on the host.
	t.Setenv("BERTH_DNS_TEST_RESOLV_CONF", writeResolvConf(t, host(subnets[2], 53)))
	killServersAtEnd(t, runRoot)

	m := newTestManager(t, root)
	a := createNet(t, m, "lca", subnets[0])
	first := allocate(t, m, "lca", "c1"+strings.Repeat("0", 62), "first")

	// Three goroutines and three processes at once.
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 3 {
		wg.Add(2)
		go func() { defer wg.Done(); errs <- Ensure(root, runRoot) }()
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "BERTH_DNS_TEST_ENSURE="+root+"\n"+runRoot)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("ensure process: %v: %s", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	pids := servers(runRoot)
	if len(pids) != 1 {
		t.Fatalf("dns servers after six concurrent Ensures: %v, want one", pids)
	}
	log, _ := os.ReadFile(filepath.Join(dir, logFile))
	if n := strings.Count(string(log), " started"); n != 1 {
		t.Errorf("%d servers started, want 1:\n%s", n, log)
	}
	if pid, _ := os.ReadFile(filepath.Join(dir, pidFile)); strings.TrimSpace(string(pid)) != strconv.Itoa(pids[0]) {
		t.Errorf("pid file says %q, the server is %d", pid, pids[0])
	}
	mustResolve(t, a.Gateway, first, "first.", first)

	// Cheap when it runs.
	begin := time.Now()
	if err := Ensure(root, runRoot); err != nil {
		t.Fatal(err)
	}
	t.Logf("Ensure with the server running: %s", time.Since(begin))

	// A new container resolves as soon as Notify returns.
	second := allocate(t, m, "lca", "c2"+strings.Repeat("0", 62), "second")
	begin = time.Now()
	if err := Notify(runRoot); err != nil {
		t.Fatal(err)
	}
	t.Logf("Notify: %s", time.Since(begin))
	mustResolve(t, a.Gateway, first, "second.", second)

	// A second network: its gateway is bound on Notify, and it sees only
	// its own names.
	b := createNet(t, m, "lcb", subnets[1])
	third := allocate(t, m, "lcb", "c3"+strings.Repeat("0", 62), "third")
	if err := Notify(runRoot); err != nil {
		t.Fatal(err)
	}
	mustResolve(t, b.Gateway, third, "third.", third)
	if resp, err := dig(t, b.Gateway, third, "first.", mdns.TypeA, false, 0); err != nil || len(resp.Answer) != 0 {
		t.Errorf("first seen from lcb: %v %v", resp, err)
	}

	// The last endpoint goes: the server exits, and leaves nothing.
	for _, id := range []string{"c1", "c2", "c3"} {
		if err := m.ReleaseContainer(id + strings.Repeat("0", 62)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Notify(runRoot); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(dir)
		t.Errorf("%s left after the last endpoint went: %v", dir, ents)
	}
	waitNoServer(t, runRoot)
	if err := Notify(runRoot); err != nil { // nothing runs: nothing to do, nothing made
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Notify without a server made %s", dir)
	}

	// kill -9: the next Notify brings a server back for the endpoints left.
	fourth := allocate(t, m, "lca", "c4"+strings.Repeat("0", 62), "fourth")
	if err := Ensure(root, runRoot); err != nil {
		t.Fatal(err)
	}
	pids = servers(runRoot)
	if len(pids) != 1 {
		t.Fatalf("servers %v, want one", pids)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	waitNoServer(t, runRoot, pids[0])
	if err := Notify(runRoot); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, logFile))
		locks, _ := os.ReadFile("/proc/locks")
		t.Fatalf("%v\nlog:\n%s\nlocks:\n%s\nservers: %v", err, log, locks, servers(runRoot))
	}
	mustResolve(t, a.Gateway, fourth, "fourth.", fourth)
	if err := m.ReleaseContainer("c4" + strings.Repeat("0", 62)); err != nil {
		t.Fatal(err)
	}
	if err := Notify(runRoot); err != nil {
		t.Fatal(err)
	}
	waitNoServer(t, runRoot)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left", dir)
	}

	// Started for nothing (no endpoints): it exits at once, leaving nothing.
	if err := Ensure(root, runRoot); err != nil {
		t.Fatal(err)
	}
	waitNoServer(t, runRoot)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left by a server started without endpoints", dir)
	}
}

// TestServerProcessLinger: with a linger, the server outlives the last
// endpoint while user networks exist, so the next container finds it
// running (no second start); it exits at once when the last user network
// goes, and by itself when the linger runs out.
func TestServerProcessLinger(t *testing.T) {
	testutil.RequiresRoot(t)
	subnets := loopNets(2)
	root := t.TempDir()
	runRoot := filepath.Join(root, "run")
	dir := stateDir(runRoot)
	t.Setenv("BERTH_DNS_TEST_RESOLV_CONF", writeResolvConf(t, host(subnets[1], 53)))
	t.Setenv("BERTH_DNS_TEST_LINGER", "1h")
	killServersAtEnd(t, runRoot)
	m := newTestManager(t, root)
	a := createNet(t, m, "lin", subnets[0])
	id := func(i int) string { return fmt.Sprintf("c%d", i) + strings.Repeat("0", 62) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	gone := func(why string, pids []int) {
		t.Helper()
		waitNoServer(t, runRoot, pids...)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s left after %s", dir, why)
		}
	}

	first := allocate(t, m, "lin", id(1), "first")
	must(Ensure(root, runRoot))
	pids := servers(runRoot)
	if len(pids) != 1 {
		t.Fatalf("servers: %v, want one", pids)
	}
	mustResolve(t, a.Gateway, first, "first.", first)
	must(m.ReleaseContainer(id(1)))
	must(Notify(runRoot))
	if now := servers(runRoot); !slices.Equal(now, pids) {
		t.Fatalf("servers after the last endpoint went: %v, want %v still lingering", now, pids)
	}
	// The next container: the same server, which answers for it at once.
	second := allocate(t, m, "lin", id(2), "second")
	must(Ensure(root, runRoot))
	if now := servers(runRoot); !slices.Equal(now, pids) {
		t.Errorf("servers for the next container: %v, want %v", now, pids)
	}
	mustResolve(t, a.Gateway, second, "second.", second)
	if log, _ := os.ReadFile(filepath.Join(dir, logFile)); strings.Count(string(log), " started") != 1 {
		t.Errorf("the server was started again:\n%s", log)
	}
	// No user network left: it exits now, leaving nothing.
	must(m.ReleaseContainer(id(2)))
	must(m.Remove(context.Background(), "lin"))
	must(Notify(runRoot))
	gone("the last user network went", pids)

	// A short linger runs out by itself.
	t.Setenv("BERTH_DNS_TEST_LINGER", "300ms")
	createNet(t, m, "lin2", subnets[0])
	allocate(t, m, "lin2", id(3), "third")
	must(Ensure(root, runRoot))
	pids = servers(runRoot)
	must(m.ReleaseContainer(id(3)))
	must(Notify(runRoot))
	gone("the linger ran out", pids)
}

// TestServerProcessTerm: SIGTERM stops the server and removes its files
// even while containers remain; the next Ensure starts a new one.
func TestServerProcessTerm(t *testing.T) {
	testutil.RequiresRoot(t)
	subnets := loopNets(2)
	root := t.TempDir()
	runRoot := filepath.Join(root, "run")
	t.Setenv("BERTH_DNS_TEST_RESOLV_CONF", writeResolvConf(t, host(subnets[1], 53)))
	killServersAtEnd(t, runRoot)
	m := newTestManager(t, root)
	a := createNet(t, m, "term", subnets[0])
	ip := allocate(t, m, "term", "c1"+strings.Repeat("0", 62), "one")
	if err := Ensure(root, runRoot); err != nil {
		t.Fatal(err)
	}
	pids := servers(runRoot)
	if len(pids) != 1 {
		t.Fatalf("servers %v, want one", pids)
	}
	syscall.Kill(pids[0], syscall.SIGTERM)
	waitNoServer(t, runRoot, pids[0])
	if _, err := os.Stat(stateDir(runRoot)); !os.IsNotExist(err) {
		t.Errorf("files left after SIGTERM")
	}
	if err := Ensure(root, runRoot); err != nil {
		t.Fatal(err)
	}
	mustResolve(t, a.Gateway, ip, "one.", ip)
	m.ReleaseContainer("c1" + strings.Repeat("0", 62))
	if err := Notify(runRoot); err != nil {
		t.Fatal(err)
	}
	waitNoServer(t, runRoot)
}

// TestServerProcessChurn races containers coming and going against the
// server starting and exiting: whenever Ensure has returned after an
// allocation, the name resolves, and when the last one goes, nothing is
// left.
func TestServerProcessChurn(t *testing.T) {
	testutil.RequiresRoot(t)
	if testing.Short() {
		t.Skip("starts and stops many servers")
	}
	subnets := loopNets(2)
	root := t.TempDir()
	runRoot := filepath.Join(root, "run")
	t.Setenv("BERTH_DNS_TEST_RESOLV_CONF", writeResolvConf(t, host(subnets[1], 53)))
	killServersAtEnd(t, runRoot)
	m := newTestManager(t, root)
	a := createNet(t, m, "churn", subnets[0])

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				id := fmt.Sprintf("w%di%d", w, i) + strings.Repeat("0", 60)
				name := fmt.Sprintf("w%d-%d", w, i)
				ep, err := m.Allocate("churn", network.EndpointRequest{ContainerID: id, Name: name})
				if err != nil {
					errs <- err
					return
				}
				if err := Ensure(root, runRoot); err != nil {
					errs <- fmt.Errorf("%s: ensure: %w", name, err)
					return
				}
				resp, err := dig(t, a.Gateway, ep.IP(), name+".", mdns.TypeA, false, 0)
				if err != nil || !slices.Equal(addrs(resp), []string{ep.IP().String()}) {
					errs <- fmt.Errorf("%s right after Ensure: %v %v", name, resp, err)
					return
				}
				if err := m.ReleaseContainer(id); err != nil {
					errs <- err
					return
				}
				if err := Notify(runRoot); err != nil {
					errs <- fmt.Errorf("%s: notify: %w", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitNoServer(t, runRoot)
	if ents, _ := os.ReadDir(runRoot); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left in the run root: %v", names)
	}
}
