package nft_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/network/bridge"
	"github.com/berth-dev/berth/internal/network/bridge/bridgetest"
	"github.com/berth-dev/berth/internal/network/nft"
	"github.com/berth-dev/berth/internal/testutil"
)

// The tests build, per test, a "host" namespace with berth's bridges and
// table in it, containers as namespaces on the bridges, and a "remote
// host" namespace behind a veth pair (bridgetest). All traffic stays in
// namespaces the test made; the real host's links, sysctls and nftables
// are not touched, except by TestRealHostLoopback and TestSetupTime: a
// bridge "bt<hex>" on a free /24 of 198.19.0.0/16, its veths and its rules
// in the shared table, all removed before they end; they send only to
// 127.0.0.1 and to their own container, and leave ip_forward alone.

const timeout = 2 * time.Second

// short is how long a connection that must fail may take to fail.
const short = 400 * time.Millisecond

type world struct {
	t      *testing.T
	host   *bridgetest.NS
	remote *bridgetest.Remote
}

func newWorld(t *testing.T) *world {
	testutil.RequiresRoot(t)
	w := &world{t: t, host: bridgetest.New(t, "host")}
	w.remote = bridgetest.NewRemote(t, w.host)
	// Registered before the networks and containers, so it runs after
	// their cleanups (t.Cleanup is LIFO), and before the namespaces go.
	t.Cleanup(func() { checkResidue(t, w) })
	w.host.Must(t, func() error {
		changed, err := bridge.EnableIPForward()
		if err == nil && !changed {
			t.Error("EnableIPForward in a new namespace reported no change")
		}
		return err
	})
	return w
}

type network struct {
	nft.Network
	gateway netip.Prefix
}

// network makes a bridge network: the bridge and its rules, removed at
// the end of the test.
func (w *world) network(bridgeName, gateway string, internal bool) *network {
	t := w.t
	gw := netip.MustParsePrefix(gateway)
	n := &network{
		Network: nft.Network{Bridge: bridgeName, Subnet: gw.Masked(), Internal: internal, Masquerade: true, ICC: true},
		gateway: gw,
	}
	w.host.Must(t, func() error {
		if _, err := bridge.EnsureBridge(bridgeName, gw, 0); err != nil {
			return err
		}
		return nft.AddNetwork(n.Network)
	})
	t.Cleanup(func() {
		w.host.Do(func() error {
			if err := nft.DeleteNetwork(bridgeName); err != nil {
				t.Errorf("DeleteNetwork: %v", err)
			}
			if err := bridge.DeleteBridge(bridgeName); err != nil {
				t.Errorf("DeleteBridge: %v", err)
			}
			return nil
		})
	})
	return n
}

type container struct {
	*bridgetest.NS
	id     string
	ip     netip.Addr
	hostIf string
}

func randomID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// container makes a namespace on n at address addr (internal networks get
// no default route, as with Docker).
func (w *world) container(name string, n *network, addr string) *container {
	t := w.t
	c := &container{NS: bridgetest.New(t, name), id: randomID(), ip: netip.MustParseAddr(addr)}
	ep := bridge.Endpoint{Bridge: n.Bridge, NetNS: c.Path, Address: netip.PrefixFrom(c.ip, n.gateway.Bits())}
	if !n.Internal {
		ep.Gateway = n.gateway.Addr()
	}
	w.host.Must(t, func() (err error) {
		c.hostIf, err = bridge.Attach(ep)
		return err
	})
	t.Cleanup(func() {
		w.host.Do(func() error {
			if err := nft.RemovePorts(c.id); err != nil {
				t.Errorf("RemovePorts: %v", err)
			}
			if err := bridge.Detach(c.hostIf); err != nil {
				t.Errorf("Detach: %v", err)
			}
			return nil
		})
	})
	// The first packets on a fresh veth can be lost; wait until the
	// container reaches its gateway.
	if err := bridgetest.Eventually(timeout, func() error { return c.Ping(n.gateway.Addr()) }); err != nil {
		t.Fatal(err)
	}
	return c
}

func (w *world) publish(c *container, ports ...nft.Port) error {
	return w.host.Do(func() error { return nft.AddPorts(c.id, ports) })
}

func port(proto, hostIP string, hostPort uint16, c *container, ctrPort uint16) nft.Port {
	p := nft.Port{Proto: proto, HostPort: hostPort, ContainerIP: c.ip, ContainerPort: ctrPort}
	if hostIP != "" {
		p.HostIP = netip.MustParseAddr(hostIP)
	}
	return p
}

func hostPort(a netip.Addr, p uint16) string { return netip.AddrPortFrom(a, p).String() }

// reach dials addr from c and checks the server saw the connection come
// from want (an address, without port).
func reach(t *testing.T, from *bridgetest.NS, addr string, want netip.Addr) {
	t.Helper()
	seen, err := from.DialTCP(addr, timeout)
	if err != nil {
		t.Errorf("connect to %s: %v", addr, err)
		return
	}
	if ap, err := netip.ParseAddrPort(seen); err != nil || ap.Addr() != want {
		t.Errorf("connect to %s: the server saw %s, want %v", addr, seen, want)
	}
}

func unreachable(t *testing.T, from *bridgetest.NS, addr string) {
	t.Helper()
	if seen, err := from.DialTCP(addr, short); err == nil {
		t.Errorf("connect to %s succeeded (server saw %s), want it blocked", addr, seen)
	}
}

func reachUDP(t *testing.T, from *bridgetest.NS, addr string, want netip.Addr) {
	t.Helper()
	seen, err := from.QueryUDP(addr, timeout)
	if err != nil {
		t.Errorf("UDP to %s: %v", addr, err)
		return
	}
	if ap, err := netip.ParseAddrPort(seen); err != nil || ap.Addr() != want {
		t.Errorf("UDP to %s: the server saw %s, want %v", addr, seen, want)
	}
}

func TestFirewall(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	netA := w.network("brA", "10.10.1.1/24", false)
	netB := w.network("brB", "10.10.2.1/24", false)
	netI := w.network("brI", "10.10.3.1/24", true)
	a1 := w.container("a1", netA, "10.10.1.2")
	a2 := w.container("a2", netA, "10.10.1.3")
	b1 := w.container("b1", netB, "10.10.2.2")
	i1 := w.container("i1", netI, "10.10.3.2")
	i2 := w.container("i2", netI, "10.10.3.3")
	remote := w.remote
	gwA := netA.gateway.Addr()

	for _, c := range []*container{a1, a2, b1, i1, i2} {
		c.ServeTCP(t, ":80")
		c.ServeUDP(t, ":53")
	}
	remote.ServeTCP(t, hostPort(remote.RemoteAddr, 9000))

	t.Run("container to container", func(t *testing.T) {
		reach(t, a1.NS, hostPort(a2.ip, 80), a1.ip)
		reach(t, i1.NS, hostPort(i2.ip, 80), i1.ip)
	})
	t.Run("outbound through masquerade", func(t *testing.T) {
		// The remote has no route to 10.10.0.0/16: it answers only
		// because it sees the host's address.
		reach(t, a1.NS, hostPort(remote.RemoteAddr, 9000), remote.HostAddr)
		reach(t, b1.NS, hostPort(remote.RemoteAddr, 9000), remote.HostAddr)
	})
	t.Run("internal stays inside", func(t *testing.T) {
		unreachable(t, i1.NS, hostPort(remote.RemoteAddr, 9000))
		// Even with a default route the container added itself.
		i1.Must(t, func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: netI.gateway.Addr().AsSlice()})
		})
		unreachable(t, i1.NS, hostPort(remote.RemoteAddr, 9000))
		// And nothing from outside gets in, not even from a container
		// of another network that routes there.
		unreachable(t, a1.NS, hostPort(i1.ip, 80))
	})
	t.Run("networks are isolated", func(t *testing.T) {
		unreachable(t, a1.NS, hostPort(b1.ip, 80))
		unreachable(t, b1.NS, hostPort(a1.ip, 80))
		if err := a1.Ping(b1.ip); err == nil {
			t.Error("a1 pings b1 across networks")
		}
		// The remote cannot route to a container either.
		remote.Must(t, func() error {
			_, subnet, _ := net.ParseCIDR("10.10.0.0/16")
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: subnet, Gw: remote.HostAddr.AsSlice()})
		})
		unreachable(t, remote.NS, hostPort(a1.ip, 80))
	})

	t.Run("published ports", func(t *testing.T) {
		if err := w.publish(a2, port("tcp", "", 8080, a2, 80), port("udp", "", 5353, a2, 53)); err != nil {
			t.Fatal(err)
		}
		// From another host, through the host's address: DNAT only,
		// the container sees the client.
		reach(t, remote.NS, hostPort(remote.HostAddr, 8080), remote.RemoteAddr)
		reachUDP(t, remote.NS, hostPort(remote.HostAddr, 5353), remote.RemoteAddr)
		// From the host itself, on 127.0.0.1 (route_localnet, then
		// masqueraded to the bridge's address) and on its own address.
		lo := netip.MustParseAddr("127.0.0.1")
		reach(t, w.host, hostPort(lo, 8080), gwA)
		reachUDP(t, w.host, hostPort(lo, 5353), gwA)
		reach(t, w.host, hostPort(remote.HostAddr, 8080), remote.HostAddr)
		// Hairpin: containers of the same network, a2 itself, and of
		// another network, through the host's address.
		reach(t, a1.NS, hostPort(remote.HostAddr, 8080), gwA)
		reach(t, a2.NS, hostPort(remote.HostAddr, 8080), gwA)
		reach(t, a1.NS, hostPort(gwA, 8080), gwA)
		// (masqueraded to the address of the bridge it leaves by)
		reach(t, b1.NS, hostPort(remote.HostAddr, 8080), gwA)
		// But an internal container does not get out that way.
		unreachable(t, i1.NS, hostPort(netI.gateway.Addr(), 8080))
	})

	t.Run("port conflicts", func(t *testing.T) {
		for _, p := range []nft.Port{
			port("tcp", "", 8080, b1, 80),
			port("tcp", "127.0.0.1", 8080, b1, 80),
			port("udp", "0.0.0.0", 5353, b1, 53),
		} {
			err := w.publish(b1, port("tcp", "", 8081, b1, 80), p)
			if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), a2.id) || !strings.Contains(err.Error(), "already allocated") {
				t.Errorf("publish %s held by a2: %v, want a conflict naming a2", p, err)
			}
		}
		// The refused call changed nothing: 8081 was not published.
		unreachable(t, remote.NS, hostPort(remote.HostAddr, 8081))
		w.host.Must(t, func() error {
			for p, want := range map[nft.Port]string{
				{Proto: "tcp", HostPort: 8080}:                                            a2.id,
				{Proto: "tcp", HostIP: netip.MustParseAddr("198.18.0.1"), HostPort: 8080}: a2.id,
				{Proto: "udp", HostPort: 8080}:                                            "",
				{Proto: "tcp", HostPort: 8081}:                                            "",
			} {
				got, err := nft.PortHolder(p)
				if err != nil {
					return err
				}
				if got != want {
					t.Errorf("PortHolder(%s) = %q, want %q", p, got, want)
				}
			}
			return nil
		})
		// Another protocol on the same number, and another address, are free.
		if err := w.publish(b1, port("udp", "", 8080, b1, 53), port("tcp", "127.0.0.1", 8082, b1, 80)); err != nil {
			t.Fatal(err)
		}
		reachUDP(t, remote.NS, hostPort(remote.HostAddr, 8080), remote.RemoteAddr)
		reach(t, w.host, "127.0.0.1:8082", netB.gateway.Addr())
		// Bound to 127.0.0.1 only: not from another host.
		unreachable(t, remote.NS, hostPort(remote.HostAddr, 8082))
		// Publishing again replaces: 8082 goes, 8083 comes.
		if err := w.publish(b1, port("tcp", "", 8083, b1, 80)); err != nil {
			t.Fatal(err)
		}
		unreachable(t, w.host, "127.0.0.1:8082")
		reach(t, remote.NS, hostPort(remote.HostAddr, 8083), remote.RemoteAddr)
	})

	t.Run("unpublish", func(t *testing.T) {
		// A UDP client that keeps one flow open across the removal.
		from := hostPort(remote.RemoteAddr, 40000)
		if _, err := remote.QueryUDPFrom(from, hostPort(remote.HostAddr, 5353), timeout); err != nil {
			t.Fatal(err)
		}
		if err := w.host.Do(func() error { return nft.RemovePorts(a2.id) }); err != nil {
			t.Fatal(err)
		}
		unreachable(t, remote.NS, hostPort(remote.HostAddr, 8080))
		unreachable(t, w.host, "127.0.0.1:8080")
		if seen, err := remote.QueryUDPFrom(from, hostPort(remote.HostAddr, 5353), short); err == nil {
			t.Errorf("UDP flow still reaches the container after RemovePorts (saw %s)", seen)
		}
		if err := w.host.Do(func() error { return nft.RemovePorts(a2.id) }); err != nil {
			t.Errorf("second RemovePorts: %v", err)
		}
		// b1's ports are untouched.
		reach(t, remote.NS, hostPort(remote.HostAddr, 8083), remote.RemoteAddr)
	})
	// Zero residue is checked by the world's cleanup.
}

// checkResidue looks, with tools as a person would, at a host namespace
// whose networks and containers are cleaned up.
func checkResidue(t *testing.T, w *world) {
	if tables := w.host.NFTTables(t); tables != "" {
		t.Errorf("nft tables left in the host: %s", tables)
	}
	for _, l := range w.host.Links(t) {
		if l != "lo" && l != w.remote.HostIf {
			t.Errorf("link left in the host: %s", l)
		}
	}
}

func TestIdempotentAndZeroResidue(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	rules := func() string {
		out, err := w.host.Cmd("nft", "list", "table", "inet", nft.TableName).CombinedOutput()
		if err != nil {
			return ""
		}
		return string(out)
	}
	count := func(s, sub string) int { return strings.Count(s, sub) }
	n := nft.Network{Bridge: "brX", Subnet: netip.MustParsePrefix("10.11.0.0/24"), Masquerade: true, ICC: true}
	ctr := randomID()
	p := nft.Port{Proto: "tcp", HostPort: 8080, ContainerIP: netip.MustParseAddr("10.11.0.2"), ContainerPort: 80}

	w.host.Must(t, func() error {
		for range 2 {
			if err := nft.AddNetwork(n); err != nil {
				return err
			}
		}
		r := rules()
		if c := count(r, `"berth net=brX"`); c != 7 {
			t.Errorf("after two AddNetwork: %d rules of brX, want 7:\n%s", c, r)
		}
		if c := count(r, `"berth base"`); c != 5 {
			t.Errorf("%d base rules, want 5", c)
		}
		// Changing a network swaps its rules.
		n.Internal = true
		if err := nft.AddNetwork(n); err != nil {
			return err
		}
		if r := rules(); strings.Contains(r, `oifname != "brX" masquerade`) || !strings.Contains(r, `iifname "brX" oifname != "brX" drop`) {
			t.Errorf("internal network still masquerades, or may leave:\n%s", r)
		}
		for range 2 {
			if err := nft.AddPorts(ctr, []nft.Port{p}); err != nil {
				return err
			}
		}
		if c := count(rules(), "berth ctr="+ctr); c != 1 {
			t.Errorf("after two AddPorts: %d port rules, want 1", c)
		}
		if err := nft.DeleteNetwork("brX"); err != nil {
			return err
		}
		// A port is left: the table stays, the network's rules go.
		r = rules()
		if r == "" || strings.Contains(r, "brX") {
			t.Errorf("after DeleteNetwork with a port left:\n%s", r)
		}
		if err := nft.DeleteNetwork("brX"); err != nil {
			t.Errorf("second DeleteNetwork: %v", err)
		}
		if err := nft.RemovePorts(ctr); err != nil {
			return err
		}
		if ok, err := nft.Exists(); err != nil || ok {
			t.Errorf("table after the last port went: exists=%v err=%v", ok, err)
		}
		for _, f := range []func() error{
			func() error { return nft.RemovePorts(ctr) },
			func() error { return nft.DeleteNetwork("brX") },
			nft.Reset,
		} {
			if err := f(); err != nil {
				t.Errorf("on a host without the table: %v", err)
			}
		}
		if h, err := nft.PortHolder(p); err != nil || h != "" {
			t.Errorf("PortHolder without a table: %q %v", h, err)
		}
		return nil
	})
	if tables := w.host.NFTTables(t); tables != "" {
		t.Errorf("tables left: %s", tables)
	}
}

func TestFailedBatchChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// Someone made a base chain named like berth's regular "ports" chain:
	// berth's batch (table, chains, the jumps to "ports", the network's
	// rules) fails in the kernel at the jump, half-way through.
	w.host.Output(t, "nft", "add table inet berth; add chain inet berth ports { type filter hook input priority 10; }")
	before := w.host.Output(t, "nft", "list", "ruleset")
	err := w.host.Do(func() error {
		return nft.AddNetwork(nft.Network{Bridge: "brX", Subnet: netip.MustParsePrefix("10.11.0.0/24"), Masquerade: true})
	})
	if err == nil {
		t.Fatal("AddNetwork succeeded with a base chain where it jumps")
	}
	if !strings.Contains(err.Error(), "add network brX") {
		t.Errorf("error %q does not say what failed", err)
	}
	if after := w.host.Output(t, "nft", "list", "ruleset"); after != before {
		t.Errorf("a failed AddNetwork changed the ruleset:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	w.host.Must(t, nft.Reset)
	if tables := w.host.NFTTables(t); tables != "" {
		t.Errorf("tables left after Reset: %s", tables)
	}
}

func TestForwardBlockers(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	netA := w.network("brA", "10.12.1.1/24", false)
	a1 := w.container("a1", netA, "10.12.1.2")
	w.remote.ServeTCP(t, hostPort(w.remote.RemoteAddr, 9000))
	reach(t, a1.NS, hostPort(w.remote.RemoteAddr, 9000), w.remote.HostAddr)

	w.host.Must(t, func() error {
		b, err := nft.ForwardBlockers()
		if err != nil || len(b) != 0 {
			t.Errorf("ForwardBlockers on a clean host: %q %v", b, err)
		}
		return nil
	})
	// What Docker leaves behind with iptables-nft: FORWARD policy drop.
	w.host.Output(t, "nft", "add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }")
	w.host.Must(t, func() error {
		b, err := nft.ForwardBlockers()
		if err != nil || len(b) != 1 || !strings.Contains(b[0], "ip filter, chain FORWARD: policy drop") {
			t.Errorf("ForwardBlockers with a drop policy: %q %v", b, err)
		}
		return nil
	})
	// As documented: our accept does not overrule their drop.
	unreachable(t, a1.NS, hostPort(w.remote.RemoteAddr, 9000))
	// The host's own traffic to the container does not cross forward.
	a1.ServeTCP(t, ":80")
	reach(t, w.host, hostPort(a1.ip, 80), netA.gateway.Addr())
	w.host.Output(t, "nft", "delete table ip filter")
	reach(t, a1.NS, hostPort(w.remote.RemoteAddr, 9000), w.remote.HostAddr)
}

// realHostNetwork makes a bridge network in the real host's namespace, on
// a /24 of 198.19.0.0/16 (RFC 2544's test range) that no route of the host
// covers, and removes it at the end of the test. Only 127.0.0.1 and the
// container's own address are ever sent to.
func realHostNetwork(t *testing.T) *network {
	testutil.RequiresRoot(t)
	suffix := randomID()[:6]
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	taken := func(p netip.Prefix) bool {
		for _, r := range routes {
			if r.Dst != nil {
				if rp, err := netip.ParsePrefix(r.Dst.String()); err == nil && rp.Overlaps(p) {
					return true
				}
			}
		}
		return false
	}
	var subnet netip.Prefix
	for i := range 256 {
		subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(int(suffix[0])*7 + i), 0}), 24)
		if !taken(subnet) {
			break
		}
	}
	n := &network{
		Network: nft.Network{Bridge: "bt" + suffix, Subnet: subnet, Masquerade: true, ICC: true},
		gateway: netip.PrefixFrom(subnet.Addr().Next(), 24),
	}
	start := time.Now()
	if _, err := bridge.EnsureBridge(n.Bridge, n.gateway, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nft.DeleteNetwork(n.Bridge); err != nil {
			t.Errorf("DeleteNetwork: %v", err)
		}
		if err := bridge.DeleteBridge(n.Bridge); err != nil {
			t.Errorf("DeleteBridge: %v", err)
		}
		if links := bridgetest.HostNS.Links(t); slices.Contains(links, n.Bridge) {
			t.Errorf("bridge %s left", n.Bridge)
		}
		out, err := exec.Command("nft", "list", "table", "inet", nft.TableName).CombinedOutput()
		if err == nil && strings.Contains(string(out), n.Bridge) {
			t.Errorf("rules of %s left in the real host's table:\n%s", n.Bridge, out)
		}
	})
	if err := nft.AddNetwork(n.Network); err != nil {
		t.Fatal(err)
	}
	t.Logf("network %s on %v: EnsureBridge+AddNetwork %v", n.Bridge, subnet, time.Since(start))
	return n
}

// TestSetupTime prints what networking adds to a container's start, in
// the real host's namespace (inside a test namespace every netlink call
// runs on a locked thread, which is slower than production). It asserts
// nothing about time (see STYLE.md).
func TestSetupTime(t *testing.T) {
	n := realHostNetwork(t)
	dir := t.TempDir()
	const runs = 40
	var phases [4][]time.Duration // NewNetNS, Attach, AddPorts, sum
	var teardown []time.Duration
	ip := n.gateway.Addr()
	for i := range runs {
		ip = ip.Next()
		path := fmt.Sprintf("%s/c%d", dir, i)
		id := randomID()
		t0 := time.Now()
		if err := bridge.NewNetNS(path); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		hostIf, err := bridge.Attach(bridge.Endpoint{Bridge: n.Bridge, NetNS: path, Address: netip.PrefixFrom(ip, 24), Gateway: n.gateway.Addr()})
		if err != nil {
			bridge.DeleteNetNS(path)
			t.Fatal(err)
		}
		t2 := time.Now()
		// 127.0.0.1 only: nothing outside the host could reach it anyway.
		err = nft.AddPorts(id, []nft.Port{{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: uint16(41000 + i), ContainerIP: ip, ContainerPort: 80}})
		t3 := time.Now()
		nft.RemovePorts(id)
		bridge.Detach(hostIf)
		bridge.DeleteNetNS(path)
		t4 := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		for k, d := range []time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t3.Sub(t0)} {
			phases[k] = append(phases[k], d)
		}
		teardown = append(teardown, t4.Sub(t3))
	}
	q := func(ds []time.Duration, f float64) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[int(f*float64(len(ds)-1))]
	}
	for k, name := range []string{"NewNetNS", "Attach", "AddPorts (1 port)", "setup total"} {
		t.Logf("%-18s min %8v  median %8v  p90 %8v", name, q(phases[k], 0).Round(time.Microsecond), q(phases[k], 0.5).Round(time.Microsecond), q(phases[k], 0.9).Round(time.Microsecond))
	}
	t.Logf("%-18s min %8v  median %8v  p90 %8v", "teardown (rm)", q(teardown, 0).Round(time.Microsecond), q(teardown, 0.5).Round(time.Microsecond), q(teardown, 0.9).Round(time.Microsecond))
}

// TestRealHostLoopback runs one container in the real host's namespace:
// a port published on 127.0.0.1 (reached from the host; no forwarding,
// so ip_forward is left alone), then checks nothing of it is left. Other
// berth tests may share the table meanwhile, so only this test's rules
// are looked for.
func TestRealHostLoopback(t *testing.T) {
	n := realHostNetwork(t)
	host := bridgetest.HostNS
	id := randomID()
	ctrIP := n.gateway.Addr().Next()
	ctr := &bridgetest.NS{Path: t.TempDir() + "/ctr"}

	// A free host port, found as the lead's bind() probe would.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hp := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	cleanup := func() {
		if err := nft.RemovePorts(id); err != nil {
			t.Errorf("RemovePorts: %v", err)
		}
		if err := bridge.DeleteNetNS(ctr.Path); err != nil {
			t.Errorf("DeleteNetNS: %v", err)
		}
	}
	t.Cleanup(cleanup)
	if err := bridge.NewNetNS(ctr.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := bridge.Attach(bridge.Endpoint{Bridge: n.Bridge, NetNS: ctr.Path, Address: netip.PrefixFrom(ctrIP, 24), Gateway: n.gateway.Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := nft.AddPorts(id, []nft.Port{{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hp, ContainerIP: ctrIP, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	ctr.ServeTCP(t, ":80")
	if err := bridgetest.Eventually(timeout, func() error { return ctr.Ping(n.gateway.Addr()) }); err != nil {
		t.Fatal(err)
	}
	reach(t, host, hostPort(netip.MustParseAddr("127.0.0.1"), hp), n.gateway.Addr())
	reach(t, host, hostPort(ctrIP, 80), n.gateway.Addr())
	if holder, err := nft.PortHolder(nft.Port{Proto: "tcp", HostPort: hp}); err != nil || holder != id {
		t.Errorf("PortHolder = %q, %v; want this container", holder, err)
	}

	cleanup()
	out, err := host.Cmd("nft", "list", "table", "inet", nft.TableName).CombinedOutput()
	if err == nil && strings.Contains(string(out), id) {
		t.Errorf("port rules left in the real host's table:\n%s", out)
	}
	for _, l := range host.Links(t) {
		if strings.HasPrefix(l, "veth") {
			// Other tests' containers may have veths: ours is the one
			// whose peer was in ctr, and ctr is gone, so just say so.
			t.Logf("a veth exists on the host: %s (another test's?)", l)
		}
	}
	if bridge.IsNetNS(ctr.Path) {
		t.Error("namespace still mounted")
	}
	if _, err := host.DialTCP(hostPort(netip.MustParseAddr("127.0.0.1"), hp), short); err == nil {
		t.Error("the port still answers")
	}
}

// TestConcurrentPublish races runs for one host port: exactly one gets it,
// the others get the conflict, whatever the interleaving (the lock makes
// check and change one step).
func TestConcurrentPublish(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const racers = 8
	ids := make([]string, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		ids[i] = randomID()
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.host.Do(func() error {
				return nft.AddPorts(ids[i], []nft.Port{{Proto: "tcp", HostPort: 8080, ContainerIP: netip.AddrFrom4([4]byte{10, 14, 0, byte(2 + i)}), ContainerPort: 80}})
			})
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("both %d and %d got the port", won, i)
		case err == nil:
			won = i
		case !errdefs.IsConflict(err):
			t.Errorf("racer %d: %v, want a conflict", i, err)
		}
	}
	if won < 0 {
		t.Fatal("nobody got the port")
	}
	w.host.Must(t, func() error {
		h, err := nft.Holders()
		if err != nil {
			return err
		}
		if len(h) != 1 || h[nft.Port{Proto: "tcp", HostIP: netip.IPv4Unspecified(), HostPort: 8080}] != ids[won] {
			t.Errorf("holders %v, want only the winner %s", h, ids[won])
		}
		return nft.RemovePorts(ids[won])
	})
}
