package network

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/testutil"
)

func TestDefaultPools(t *testing.T) {
	p := DefaultPools()
	if len(p) != 31 || p[0].String() != "172.17.0.0/16" || p[14].String() != "172.31.0.0/16" ||
		p[15].String() != "192.168.0.0/20" || p[16].String() != "192.168.16.0/20" || p[30].String() != "192.168.240.0/20" {
		t.Errorf("default pools %v", p)
	}
	for i, a := range p {
		for _, b := range p[i+1:] {
			if a.Overlaps(b) {
				t.Errorf("%s overlaps %s", a, b)
			}
		}
	}
}

func TestChooseSubnet(t *testing.T) {
	pools := DefaultPools()
	pp := netip.MustParsePrefix
	for _, tc := range []struct {
		taken []netip.Prefix
		want  string
	}{
		{nil, "172.17.0.0/16"},
		{[]netip.Prefix{pp("172.17.0.0/16")}, "172.18.0.0/16"},
		{[]netip.Prefix{pp("172.17.3.4/32"), pp("172.18.200.0/24")}, "172.19.0.0/16"},
		{[]netip.Prefix{pp("172.16.0.0/12")}, "192.168.0.0/20"},
		{[]netip.Prefix{pp("172.16.0.0/12"), pp("192.168.1.0/24")}, "192.168.16.0/20"},
		{[]netip.Prefix{pp("fd00::/8")}, "172.17.0.0/16"},
	} {
		got, err := chooseSubnet(pools, tc.taken)
		if err != nil || got.String() != tc.want {
			t.Errorf("taken %v: %v, %v; want %s", tc.taken, got, err, tc.want)
		}
	}
	if _, err := chooseSubnet(pools, []netip.Prefix{pp("172.16.0.0/12"), pp("192.168.0.0/16")}); !errdefs.IsUnavailable(err) {
		t.Errorf("all taken: %v", err)
	}
}

func TestNameservers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# comment\nnameserver 172.20.0.53\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch example\nnameserver bogus\n"), 0o644)
	got := nameservers(p)
	if want := []netip.Prefix{netip.MustParsePrefix("172.20.0.53/32"), netip.MustParsePrefix("fe80::1/128")}; !slices.Equal(got, want) {
		t.Errorf("nameservers %v, want %v", got, want)
	}
	if nameservers(filepath.Join(t.TempDir(), "missing")) != nil {
		t.Error("a missing resolv.conf has nameservers")
	}
}

// TestPoolSkipsHostRoutes builds a network namespace of its own whose
// veth interface carries what a host can have in the way (docker0's
// address, a /24 inside a pool, a route through a gateway, a route in
// another table, a VPN's half-default route) and checks that the
// default network, then a user network, get the first subnets that
// overlap none of it. The host's own routes are only read.
func TestPoolSkipsHostRoutes(t *testing.T) {
	testutil.RequiresRoot(t)
	hostBefore, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		ns       netns.NsHandle
		reserved []netip.Prefix
		err      error
	}
	done := make(chan result)
	go func() {
		// This thread enters the new namespace and never leaves it:
		// returning without UnlockOSThread makes the runtime end the
		// thread, so no other goroutine ever runs in the test's namespace.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			done <- result{err: err}
			return
		}
		r := result{ns: ns}
		r.err = setupFakeHost()
		if r.err == nil {
			r.reserved, r.err = HostReserved() // the calling thread's namespace
		}
		done <- r
	}()
	r := <-done
	if r.ns.IsOpen() {
		t.Cleanup(func() { r.ns.Close() })
	}
	if errors.Is(r.err, unix.EOPNOTSUPP) || errors.Is(r.err, unix.ENODEV) {
		t.Skipf("no veth interfaces in this kernel: %v", r.err)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []string{"172.17.0.0/16", "172.18.5.0/24", "172.19.0.0/16", "172.20.0.0/16"} {
		if !slices.Contains(r.reserved, netip.MustParsePrefix(want)) {
			t.Errorf("HostReserved in the namespace misses %s: %v", want, r.reserved)
		}
	}
	if slices.Contains(r.reserved, netip.MustParsePrefix("0.0.0.0/1")) {
		t.Errorf("HostReserved counts the VPN's half-default route: %v", r.reserved)
	}

	// The same through a handle on the namespace, from any thread.
	h, err := netlink.NewHandleAt(r.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	m := newManager(t, WithReserved(func() ([]netip.Prefix, error) { return hostReserved(h, "") }))
	b, err := m.EnsureDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.Subnet.String() != "172.21.0.0/16" || b.Gateway.String() != "172.21.0.1" {
		t.Errorf("default network got %s (gateway %s), want 172.21.0.0/16: the first pool no route or address covers", b.Subnet, b.Gateway)
	}
	n := mustCreate(t, m, CreateOptions{Name: "user"})
	if n.Subnet.String() != "172.22.0.0/16" {
		t.Errorf("user network got %s, want 172.22.0.0/16", n.Subnet)
	}
	// A subnet given by the user is not checked against the host, as
	// with Docker, only against other networks.
	if _, err := m.Create(context.Background(), CreateOptions{Name: "mine", Subnet: "172.17.0.0/16"}); err != nil {
		t.Errorf("--subnet over a host route: %v", err)
	}

	hostAfter, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	// Other packages' tests may add routes of their own meanwhile, so
	// the check is that none of this test's fake host reached the host.
	for _, rt := range hostAfter {
		if rt.Dst == nil {
			continue
		}
		for _, fake := range []string{"172.17.0.0/16", "172.18.5.0/24", "172.19.0.0/16", "172.20.0.0/16"} {
			if rt.Dst.String() == fake && !slices.ContainsFunc(hostBefore, func(b netlink.Route) bool { return b.Dst != nil && b.Dst.String() == fake }) {
				t.Errorf("the fake host's route %s appeared on the host", fake)
			}
		}
	}
}

// setupFakeHost runs in the test's own namespace (the calling thread's).
func setupFakeHost() error {
	// A veth pair, both ends here: kernels without the dummy module
	// (this CI's) have veth, which containers need anyway.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "fake0"}, PeerName: "fake1"}
	if err := netlink.LinkAdd(veth); err != nil {
		return err
	}
	var link netlink.Link
	for _, name := range []string{"fake1", "fake0"} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		link = l
	}
	for _, a := range []string{"172.17.0.1/16", "172.18.5.1/24"} {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return err
		}
	}
	gw := net.ParseIP("172.17.0.254")
	_, via := mustIPNet("172.19.0.0/16")
	_, other := mustIPNet("172.20.0.0/16")
	_, vpn := mustIPNet("0.0.0.0/1")
	for _, r := range []*netlink.Route{
		{Dst: via, Gw: gw, LinkIndex: link.Attrs().Index},
		{Dst: other, LinkIndex: link.Attrs().Index, Table: 100, Scope: netlink.SCOPE_LINK},
		{Dst: vpn, Gw: gw, LinkIndex: link.Attrs().Index},
	} {
		if err := netlink.RouteAdd(r); err != nil {
			return err
		}
	}
	return nil
}

func mustIPNet(s string) (net.IP, *net.IPNet) {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return ip, n
}
