// Package bridgetest builds the throwaway network topologies that the
// kernel tests of packages bridge and nft share: a "host" namespace per
// test (so tests change no sysctl, link or nftables table of the real
// host and run in parallel with anything), "remote hosts" behind a veth
// pair, and tiny TCP/UDP servers that report the source address they saw.
// Every namespace and link it makes is removed in t.Cleanup, also when the
// test fails. Tests may use tools (ip, nft, nsenter, busybox); the engine
// never does.
package bridgetest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/network/bridge"
)

// NS is a network namespace made by a test, or the real host's when Path
// is empty.
type NS struct {
	Path string
}

// HostNS is the real host's namespace: Do runs fn as it is.
var HostNS = &NS{}

// New makes a namespace that is deleted when the test ends.
func New(t testing.TB, name string) *NS {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := bridge.NewNetNS(path); err != nil {
		t.Fatalf("make namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := bridge.DeleteNetNS(path); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	// A new namespace copies ip_forward from the host's (ipv4 devconf is
	// inherited from init_net), and the host's may be on: start every
	// test host as a fresh machine, with forwarding off.
	if err := bridge.InNetNS(path, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0\n"), 0o644)
	}); err != nil {
		t.Fatalf("turn ip_forward off in %s: %v", name, err)
	}
	return &NS{Path: path}
}

// Do runs fn inside n (see bridge.InNetNS).
func (n *NS) Do(fn func() error) error {
	if n.Path == "" {
		return fn()
	}
	return bridge.InNetNS(n.Path, fn)
}

// Must runs fn inside n and fails the test on an error.
func (n *NS) Must(t testing.TB, fn func() error) {
	t.Helper()
	if err := n.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// Cmd is a command that runs inside n (through nsenter).
func (n *NS) Cmd(args ...string) *exec.Cmd {
	if n.Path == "" {
		return exec.Command(args[0], args[1:]...)
	}
	return exec.Command("nsenter", append([]string{"--net=" + n.Path, "--"}, args...)...)
}

// Output runs a tool inside n and returns its output; it fails the test
// when the tool fails.
func (n *NS) Output(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Cmd(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Links lists the names of n's links, from `ip -o link`.
func (n *NS) Links(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(n.Output(t, "ip", "-o", "link", "show")), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// NFTTables is `nft list tables` inside n.
func (n *NS) NFTTables(t testing.TB) string {
	t.Helper()
	return strings.TrimSpace(n.Output(t, "nft", "list", "tables"))
}

// Ping sends one ICMP echo from n to ip and waits up to a second.
func (n *NS) Ping(ip netip.Addr) error {
	out, err := n.Cmd("busybox", "ping", "-c", "1", "-W", "1", ip.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %v: %v: %s", ip, err, out)
	}
	return nil
}

// ServeTCP listens on addr inside n. Each connection is told the address
// it came from, as the server saw it, and closed: that is how tests see
// NAT at work.
func (n *NS) ServeTCP(t testing.TB, addr string) {
	t.Helper()
	var ln net.Listener
	n.Must(t, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
}

// DialTCP connects from n to addr and returns the source address the
// server reports.
func (n *NS) DialTCP(addr string, timeout time.Duration) (string, error) {
	var seen string
	err := n.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		seen = strings.TrimSpace(line)
		return err
	})
	return seen, err
}

// ServeUDP answers every datagram to addr inside n with the source address
// it came from.
func (n *NS) ServeUDP(t testing.TB, addr string) {
	t.Helper()
	var pc net.PacketConn
	n.Must(t, func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.String()), from)
		}
	}()
}

// QueryUDP sends a datagram from n to addr and returns the answer: the
// source address the server saw.
func (n *NS) QueryUDP(addr string, timeout time.Duration) (string, error) {
	return n.QueryUDPFrom("", addr, timeout)
}

// QueryUDPFrom is QueryUDP from a fixed local address (ip:port), so that
// successive queries are one flow to conntrack.
func (n *NS) QueryUDPFrom(laddr, addr string, timeout time.Duration) (string, error) {
	var seen string
	err := n.Do(func() error {
		d := net.Dialer{}
		if laddr != "" {
			la, err := net.ResolveUDPAddr("udp4", laddr)
			if err != nil {
				return err
			}
			d.LocalAddr = la
		}
		c, err := d.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("who am i")); err != nil {
			return err
		}
		buf := make([]byte, 512)
		k, err := c.Read(buf)
		seen = string(buf[:k])
		return err
	})
	return seen, err
}

// Remote is a "remote host": a namespace joined to a host namespace by a
// veth pair, addressed from 198.18.0.0/15 (RFC 2544's benchmarking range),
// with no route beyond its link. It can only answer packets whose source
// is HostAddr, which is how a test proves masquerading.
type Remote struct {
	*NS
	HostIf     string     // the host end of the pair
	HostAddr   netip.Addr // host end: the host's "uplink" address
	RemoteAddr netip.Addr // the remote's own address
}

var remoteSeq atomic.Uint32

// NewRemote makes a remote host behind host. Each one gets its own /30, so
// several may hang off one host.
func NewRemote(t testing.TB, host *NS) *Remote {
	t.Helper()
	seq := remoteSeq.Add(1)
	hostAddr := netip.AddrFrom4([4]byte{198, 18, byte(seq >> 6), byte(seq&63)*4 + 1})
	r := &Remote{
		NS:         New(t, fmt.Sprintf("remote%d", seq)),
		HostIf:     fmt.Sprintf("rmt%d", seq),
		HostAddr:   hostAddr,
		RemoteAddr: hostAddr.Next(),
	}
	fd, err := unix.Open(r.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	host.Must(t, func() error {
		la := netlink.NewLinkAttrs()
		la.Name = r.HostIf
		veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(fd)}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("make remote link: %w", err)
		}
		if err := netlink.AddrAdd(veth, &netlink.Addr{IPNet: &net.IPNet{IP: hostAddr.AsSlice(), Mask: net.CIDRMask(30, 32)}}); err != nil {
			return err
		}
		return netlink.LinkSetUp(veth)
	})
	t.Cleanup(func() {
		host.Do(func() error {
			if l, err := netlink.LinkByName(r.HostIf); err == nil {
				netlink.LinkDel(l)
			}
			return nil
		})
	})
	h, err := netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	peer, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: r.RemoteAddr.AsSlice(), Mask: net.CIDRMask(30, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	return r
}

// Eventually retries f for up to d: a fresh veth needs a moment before
// it carries packets (the port's carrier comes up asynchronously).
func Eventually(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
