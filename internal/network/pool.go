package network

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// DefaultPools are the subnets a network gets when it is created without
// --subnet, tried in this order: Docker's default-address-pools.
//
//	172.17.0.0/16, 172.18.0.0/16, ... 172.31.0.0/16    15 networks of 65534 addresses
//	192.168.0.0/20, 192.168.16.0/20, ... 192.168.240.0/20  16 networks of 4094 addresses
//
// The default bridge network takes the first free one, as docker0 takes
// 172.17.0.0/16.
func DefaultPools() []netip.Prefix {
	var out []netip.Prefix
	for i := 17; i <= 31; i++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16))
	}
	for i := 0; i < 16; i++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i * 16), 0}), 20))
	}
	return out
}

// errPoolsExhausted is Docker's message when every default subnet is
// taken.
var errPoolsExhausted = fmt.Errorf("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network (pass --subnet): %w", errdefs.ErrUnavailable)

// chooseSubnet returns the first of pools that overlaps none of taken.
func chooseSubnet(pools, taken []netip.Prefix) (netip.Prefix, error) {
	for _, p := range pools {
		free := true
		for _, t := range taken {
			if p.Overlaps(t) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, errPoolsExhausted
}

// HostReserved lists what a default subnet must not overlap on this host
// (in the calling thread's network namespace): the destination of every
// route, in every routing table, the prefix of every address on every
// interface, and the nameservers of /etc/resolv.conf. It only reads.
func HostReserved() ([]netip.Prefix, error) {
	return hostReserved(&netlink.Handle{}, "/etc/resolv.conf")
}

// hostReserved is HostReserved through h (a handle on some namespace; the
// zero Handle is the caller's) and the resolv.conf at resolvConf ("" for
// none).
//
// Routes shorter than /8 are left out: they are default routes and the
// halves (0.0.0.0/1, 128.0.0.0/1) through which VPN clients replace the
// default route, not networks the host sits on; counting them would make
// every default subnet "taken" on a host with a VPN, the trap Docker
// fell into before it narrowed its own check (moby PR 42598). Loopback is
// left out too: 127.0.0.0/8 is never a candidate.
func hostReserved(h *netlink.Handle, resolvConf string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	add := func(ipn *net.IPNet) {
		if ipn == nil {
			return
		}
		addr, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			return
		}
		ones, _ := ipn.Mask.Size()
		p := netip.PrefixFrom(addr.Unmap(), ones).Masked()
		if !p.IsValid() || p.Bits() < 8 || p.Addr().IsLoopback() {
			return
		}
		out = append(out, p)
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("read the host's routes: %w", err)
	}
	for _, r := range routes {
		add(r.Dst)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("read the host's addresses: %w", err)
	}
	for _, a := range addrs {
		add(a.IPNet)
	}
	if resolvConf != "" {
		out = append(out, nameservers(resolvConf)...)
	}
	return out, nil
}

// retryDump runs a netlink dump again when the kernel says it was
// interrupted by a concurrent change (its result would be incomplete).
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range 5 {
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return out, err
}

// nameservers reads the IPv4 and IPv6 nameservers of a resolv.conf as
// single-address prefixes: a network over the host's resolver would
// capture its DNS traffic. A file that cannot be read has none.
func nameservers(path string) []netip.Prefix {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		host, _, _ := strings.Cut(fields[1], "%") // fe80::1%eth0
		a, err := netip.ParseAddr(host)
		if err != nil || a.IsLoopback() {
			continue
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.BitLen()))
	}
	return out
}
