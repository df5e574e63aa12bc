package bridge_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/network/bridge"
	"github.com/berth-dev/berth/internal/network/bridge/bridgetest"
	"github.com/berth-dev/berth/internal/testutil"
)

// Every test here works inside a "host" namespace of its own, so it
// touches no link or sysctl of the real host and may run in parallel.

func TestNetNSLifecycle(t *testing.T) {
	testutil.RequiresRoot(t)
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ns")
	if err := bridge.NewNetNS(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bridge.DeleteNetNS(path) })
	if !bridge.IsNetNS(path) {
		t.Fatal("path is not a mounted namespace")
	}
	if err := bridge.NewNetNS(path); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second NewNetNS at the same path: got %v, want already exists", err)
	}
	if !bridge.IsNetNS(path) {
		t.Fatal("a failed NewNetNS harmed the existing namespace")
	}

	// lo is up, and only lo is there.
	ns := &bridgetest.NS{Path: path}
	ns.Must(t, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("links in a new namespace: %v, want lo, up", links)
		}
		// A socket on 127.0.0.1 works only with lo up.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err
	})

	// The namespace differs from the test's own.
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	var inside string
	ns.Must(t, func() (err error) { inside, err = os.Readlink("/proc/thread-self/ns/net"); return err })
	if inside == self {
		t.Fatalf("InNetNS ran in the caller's namespace %s", self)
	}

	if err := bridge.DeleteNetNS(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("namespace file left behind: %v", err)
	}
	if mounted(t, path) {
		t.Fatal("namespace mount left behind")
	}
	if err := bridge.DeleteNetNS(path); err != nil {
		t.Fatalf("second DeleteNetNS: %v", err)
	}
	// A half-made one (the file, no mount) is removed too.
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := bridge.DeleteNetNS(path); err != nil {
		t.Fatalf("DeleteNetNS of a plain file: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("plain file left behind")
	}
}

func TestNewNetNSNoThreadLeak(t *testing.T) {
	testutil.RequiresRoot(t)
	// Not parallel: while it runs, no other test of the package has a
	// thread inside InNetNS, so every thread of the process must be in
	// the process's namespace. A NewNetNS thread left in (or parked in)
	// a container's namespace would show up here, and would keep that
	// namespace alive after DeleteNetNS.
	runtime.LockOSThread()
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	dir := t.TempDir()
	for i := range 20 {
		p := filepath.Join(dir, fmt.Sprint("ns", i))
		if err := bridge.NewNetNS(p); err != nil {
			t.Fatal(err)
		}
		defer bridge.DeleteNetNS(p)
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err == nil && ns != self {
			t.Errorf("thread %s is in %s, not the process's %s", task.Name(), ns, self)
		}
	}
}

func TestEnsureBridge(t *testing.T) {
	testutil.RequiresRoot(t)
	t.Parallel()
	host := bridgetest.New(t, "host")
	gw := netip.MustParsePrefix("10.20.0.1/24")
	host.Must(t, func() error {
		created, err := bridge.EnsureBridge("br0", gw, 1400)
		if err != nil || !created {
			t.Fatalf("first EnsureBridge: created=%v err=%v", created, err)
		}
		created, err = bridge.EnsureBridge("br0", gw, 1400)
		if err != nil || created {
			t.Fatalf("second EnsureBridge: created=%v err=%v, want an idempotent no-op", created, err)
		}
		l, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		if l.Type() != "bridge" || l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("bridge: type %s mtu %d flags %v", l.Type(), l.Attrs().MTU, l.Attrs().Flags)
		}
		if got := l.Attrs().HardwareAddr.String(); got != "02:42:0a:14:00:01" {
			t.Errorf("bridge MAC %s, want one fixed from the gateway address", got)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.20.0.1/24" {
			t.Errorf("bridge addresses %v, want just 10.20.0.1/24", addrs)
		}
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/br0/route_localnet")
		if err != nil || strings.TrimSpace(string(b)) != "1" {
			t.Errorf("route_localnet = %q, %v; want 1", b, err)
		}

		// A link of the name that is no bridge: refused and left alone.
		la := netlink.NewLinkAttrs()
		la.Name = "notabridge"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "notabridge1"}); err != nil {
			return err
		}
		if _, err := bridge.EnsureBridge("notabridge", gw, 0); !errdefs.IsConflict(err) {
			t.Errorf("EnsureBridge over a veth: %v, want a conflict", err)
		}
		if err := bridge.DeleteBridge("notabridge"); !errdefs.IsConflict(err) {
			t.Errorf("DeleteBridge of a veth: %v, want a conflict", err)
		}
		if _, err := netlink.LinkByName("notabridge"); err != nil {
			t.Errorf("the other link is gone: %v", err)
		}

		if _, err := bridge.EnsureBridge("br1", netip.MustParsePrefix("10.21.0.0/24"), 0); !errdefs.IsInvalidArgument(err) {
			t.Errorf("gateway = network address: %v, want invalid argument", err)
		}
		if _, err := netlink.LinkByName("br1"); err == nil {
			t.Error("a refused EnsureBridge made a bridge")
		}

		if err := bridge.DeleteBridge("br0"); err != nil {
			return err
		}
		if err := bridge.DeleteBridge("br0"); err != nil {
			t.Errorf("second DeleteBridge: %v", err)
		}
		return nil
	})
	links := host.Links(t)
	slices.Sort(links)
	if !slices.Equal(links, []string{"lo", "notabridge", "notabridge1"}) {
		t.Errorf("links left: %v", links)
	}
}

// topo is a host namespace with a bridge and containers on it.
type topo struct {
	host *bridgetest.NS
}

func newTopo(t *testing.T) *topo {
	host := bridgetest.New(t, "host")
	host.Must(t, func() error {
		_, err := bridge.EnsureBridge("br0", netip.MustParsePrefix("10.30.0.1/24"), 0)
		return err
	})
	return &topo{host: host}
}

func (tp *topo) container(t *testing.T, name, addr string) (*bridgetest.NS, string) {
	ns := bridgetest.New(t, name)
	var hostIf string
	tp.host.Must(t, func() (err error) {
		hostIf, err = bridge.Attach(bridge.Endpoint{
			Bridge:  "br0",
			NetNS:   ns.Path,
			Address: netip.MustParsePrefix(addr),
			Gateway: netip.MustParseAddr("10.30.0.1"),
		})
		return err
	})
	return ns, hostIf
}

func (tp *topo) veths(t *testing.T) []string {
	var v []string
	for _, l := range tp.host.Links(t) {
		if strings.HasPrefix(l, "veth") {
			v = append(v, l)
		}
	}
	return v
}

func TestAttachTwoContainers(t *testing.T) {
	testutil.RequiresRoot(t)
	t.Parallel()
	tp := newTopo(t)
	c1, if1 := tp.container(t, "c1", "10.30.0.2/24")
	c2, if2 := tp.container(t, "c2", "10.30.0.3/24")
	if if1 == if2 || !strings.HasPrefix(if1, "veth") || len(if1) != 11 {
		t.Fatalf("host ends %q and %q", if1, if2)
	}

	// The host end: on the bridge, up, hairpin.
	tp.host.Must(t, func() error {
		l, err := netlink.LinkByName(if1)
		if err != nil {
			return err
		}
		br, _ := netlink.LinkByName("br0")
		if l.Attrs().MasterIndex != br.Attrs().Index || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: master %d (bridge %d), flags %v", if1, l.Attrs().MasterIndex, br.Attrs().Index, l.Attrs().Flags)
		}
		if p, err := netlink.LinkGetProtinfo(l); err != nil || !p.Hairpin {
			t.Errorf("%s: hairpin mode off (%v, %v)", if1, p, err)
		}
		return nil
	})
	// The container end: eth0, its MAC, address and default route.
	c1.Must(t, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if got := l.Attrs().HardwareAddr.String(); got != "02:42:0a:1e:00:02" {
			t.Errorf("eth0 MAC %s, want 02:42:0a:1e:00:02", got)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.30.0.2/24" {
			t.Errorf("eth0 addresses %v", addrs)
		}
		routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
		var def bool
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(net.ParseIP("10.30.0.1")) {
				def = true
			}
		}
		if !def {
			t.Errorf("no default route via 10.30.0.1: %v", routes)
		}
		return nil
	})

	// Traffic over the bridge: ping both ways, TCP with the source intact.
	if err := bridgetest.Eventually(2*time.Second, func() error { return c1.Ping(netip.MustParseAddr("10.30.0.3")) }); err != nil {
		t.Fatal(err)
	}
	if err := c2.Ping(netip.MustParseAddr("10.30.0.2")); err != nil {
		t.Fatal(err)
	}
	if err := c1.Ping(netip.MustParseAddr("10.30.0.1")); err != nil {
		t.Fatalf("container to gateway: %v", err)
	}
	c2.ServeTCP(t, "10.30.0.3:8080")
	seen, err := c1.DialTCP("10.30.0.3:8080", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(seen, "10.30.0.2:") {
		t.Errorf("c2 saw the connection from %s, want 10.30.0.2", seen)
	}

	if err := tp.host.Do(func() error { return bridge.Detach(if1) }); err != nil {
		t.Fatal(err)
	}
	if err := tp.host.Do(func() error { return bridge.Detach(if1) }); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	// Disconnect by the container side.
	if err := tp.host.Do(func() error { return bridge.DetachNS(c2.Path, "eth0") }); err != nil {
		t.Fatal(err)
	}
	if v := tp.veths(t); len(v) != 0 {
		t.Errorf("veths left after Detach: %v", v)
	}
	c2.Must(t, func() error {
		if _, err := netlink.LinkByName("eth0"); err == nil {
			t.Error("eth0 still in c2")
		}
		return nil
	})
	tp.host.Must(t, func() error { return bridge.DeleteBridge("br0") })
	if links := tp.host.Links(t); !slices.Equal(links, []string{"lo"}) {
		t.Errorf("links left: %v", links)
	}
}

func TestAttachFailureLeavesNothing(t *testing.T) {
	testutil.RequiresRoot(t)
	t.Parallel()
	tp := newTopo(t)
	c1, _ := tp.container(t, "c1", "10.30.0.2/24")
	before := tp.veths(t)
	attach := func(ep bridge.Endpoint) error {
		ep.NetNS = c1.Path
		return tp.host.Do(func() error { _, err := bridge.Attach(ep); return err })
	}

	// eth0 exists in the namespace already: the kernel refuses the pair.
	err := attach(bridge.Endpoint{Bridge: "br0", Address: netip.MustParsePrefix("10.30.0.4/24")})
	if !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), "eth0") {
		t.Errorf("second eth0: %v, want already exists naming eth0", err)
	}
	// The host name exists: also refused, the existing link untouched.
	err = attach(bridge.Endpoint{Bridge: "br0", IfName: "eth1", HostIfName: before[0], Address: netip.MustParsePrefix("10.30.0.4/24")})
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("taken host name: %v, want already exists", err)
	}
	// Half-way: the pair exists, the second default route fails.
	err = attach(bridge.Endpoint{Bridge: "br0", IfName: "eth1", Address: netip.MustParsePrefix("10.30.0.4/24"), Gateway: netip.MustParseAddr("10.30.0.1")})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "default route") {
		t.Errorf("second default route: %v, want a conflict about the default route", err)
	}
	// No bridge.
	err = attach(bridge.Endpoint{Bridge: "nobr", IfName: "eth1", Address: netip.MustParsePrefix("10.30.0.4/24")})
	if !errdefs.IsNotFound(err) {
		t.Errorf("missing bridge: %v, want not found", err)
	}
	// Not a namespace.
	plain := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(plain, nil, 0o644)
	err = tp.host.Do(func() error {
		_, err := bridge.Attach(bridge.Endpoint{Bridge: "br0", NetNS: plain, Address: netip.MustParsePrefix("10.30.0.4/24")})
		return err
	})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("plain file as namespace: %v, want invalid argument", err)
	}

	if after := tp.veths(t); !slices.Equal(after, before) {
		t.Errorf("veths before %v, after the failures %v", before, after)
	}
	c1.Must(t, func() error {
		links, _ := netlink.LinkList()
		for _, l := range links {
			if l.Attrs().Name != "lo" && l.Attrs().Name != "eth0" {
				t.Errorf("left in the container: %s", l.Attrs().Name)
			}
		}
		return nil
	})

	// A secondary network without a gateway is fine.
	if err := attach(bridge.Endpoint{Bridge: "br0", IfName: "eth1", Address: netip.MustParsePrefix("10.30.0.4/24")}); err != nil {
		t.Errorf("eth1 without gateway: %v", err)
	}
}

// TestDeleteNetNSTakesItsVeths: deleting a namespace (as rm -f after a
// kill -9 of the monitor: no Detach) takes its veths with it, through the
// kernel's namespace cleanup; and one that something else still pins (an
// open descriptor here, an escaped process or a mount copy in life) keeps
// its veth only down, carrying nothing, until the pin goes.
func TestDeleteNetNSTakesItsVeths(t *testing.T) {
	testutil.RequiresRoot(t)
	t.Parallel()
	tp := newTopo(t)
	c1, _ := tp.container(t, "c1", "10.30.0.2/24")
	c2, _ := tp.container(t, "c2", "10.30.0.3/24")
	if v := tp.veths(t); len(v) != 2 {
		t.Fatalf("veths: %v", v)
	}
	vethsLeft := func(n int) func() error {
		return func() error {
			if v := tp.veths(t); len(v) != n {
				return fmt.Errorf("veths on the host: %v, want %d", v, n)
			}
			return nil
		}
	}
	if err := bridge.DeleteNetNS(c1.Path); err != nil {
		t.Fatal(err)
	}
	if err := bridgetest.Eventually(5*time.Second, vethsLeft(1)); err != nil {
		t.Errorf("after DeleteNetNS: %v", err)
	}

	addr := netip.MustParseAddr("10.30.0.3")
	if err := bridgetest.Eventually(3*time.Second, func() error { return tp.host.Ping(addr) }); err != nil {
		t.Fatalf("c2 unreachable before its deletion: %v", err)
	}
	pin, err := os.Open(c2.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer pin.Close()
	if err := bridge.DeleteNetNS(c2.Path); err != nil {
		t.Fatal(err)
	}
	if err := tp.host.Ping(addr); err == nil {
		t.Errorf("c2's address still answers after DeleteNetNS while its namespace is pinned")
	}
	pin.Close()
	if err := bridgetest.Eventually(5*time.Second, vethsLeft(0)); err != nil {
		t.Errorf("after the pin went: %v", err)
	}
}

func TestSysctlsFollowTheNamespace(t *testing.T) {
	testutil.RequiresRoot(t)
	t.Parallel()
	realBefore, err := bridge.IPForward()
	if err != nil {
		t.Fatal(err)
	}
	host := bridgetest.New(t, "host")
	host.Must(t, func() error {
		on, err := bridge.IPForward()
		if err != nil || on {
			t.Fatalf("ip_forward in a new namespace: %v %v, want off", on, err)
		}
		changed, err := bridge.EnableIPForward()
		if err != nil || !changed {
			t.Fatalf("EnableIPForward: changed=%v err=%v, want a change", changed, err)
		}
		changed, err = bridge.EnableIPForward()
		if err != nil || changed {
			t.Fatalf("second EnableIPForward: changed=%v err=%v, want none", changed, err)
		}
		if err := bridge.SetRouteLocalnet("../all"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("SetRouteLocalnet(../all): %v, want invalid argument", err)
		}
		return nil
	})
	realAfter, err := bridge.IPForward()
	if err != nil {
		t.Fatal(err)
	}
	if realAfter != realBefore {
		t.Errorf("the real host's ip_forward changed from %v to %v", realBefore, realAfter)
	}
}

func mounted(t *testing.T, path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), " "+path+" ")
}
