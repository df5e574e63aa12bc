package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// DefaultIfName is the container-side name of a container's first network.
const DefaultIfName = "eth0"

// Endpoint is one container's attachment to a bridge, as Attach makes it.
type Endpoint struct {
	Bridge string // the bridge the host end joins (EnsureBridge)
	NetNS  string // path of the container's namespace (NewNetNS)
	IfName string // name inside the namespace; DefaultIfName when empty

	// Address is the container's address with the subnet's length
	// (172.18.0.2/16); the kernel derives the subnet route from it.
	Address netip.Prefix
	// Gateway is the default route's next hop, inside Address's subnet;
	// zero for none (internal networks, and every network of a container
	// but the one that gives it its default route).
	Gateway netip.Addr

	MAC        net.HardwareAddr // container side; MACFromIP(Address) when nil
	MTU        int              // both ends; the bridge's MTU when 0
	HostIfName string           // host end; "veth" + 7 random hex digits when empty
}

// maxNameTries bounds the retries on a random host name that exists.
const maxNameTries = 8

// Attach creates the veth pair of ep and returns the host end's name,
// which Detach takes. On any error it deletes what it made: the caller
// sees either a working pair or none.
func Attach(ep Endpoint) (hostIf string, err error) {
	if ep.IfName == "" {
		ep.IfName = DefaultIfName
	}
	if err := checkEndpoint(ep); err != nil {
		return "", err
	}
	if ep.MAC == nil {
		ep.MAC = MACFromIP(ep.Address.Addr())
	}
	nsFd, err := openNetNS(ep.NetNS)
	if err != nil {
		return "", fmt.Errorf("attach to %s: %w", ep.Bridge, err)
	}
	defer unix.Close(nsFd)

	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return "", fmt.Errorf("attach to %s: netlink: %w", ep.Bridge, err)
	}
	defer h.Close()
	br, err := h.LinkByName(ep.Bridge)
	if isNotFound(err) {
		return "", fmt.Errorf("attach: bridge %s: %w", ep.Bridge, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("attach: bridge %s: %w", ep.Bridge, err)
	}
	if br.Type() != "bridge" {
		return "", fmt.Errorf("attach: %s is a %s link, not a bridge: %w", ep.Bridge, br.Type(), errdefs.ErrInvalidArgument)
	}
	mtu := ep.MTU
	if mtu == 0 {
		mtu = br.Attrs().MTU
	}

	veth, err := addVeth(h, ep, nsFd, mtu)
	if err != nil {
		return "", err
	}
	name := veth.Attrs().Name
	defer func() {
		if err != nil {
			// The pair is one object: deleting the host end removes the
			// end already in the namespace too.
			h.LinkDel(veth)
		}
	}()
	if err := h.LinkSetMasterByIndex(veth, br.Attrs().Index); err != nil {
		return "", fmt.Errorf("attach: enslave %s to %s: %w", name, ep.Bridge, err)
	}
	if err := h.LinkSetHairpin(veth, true); err != nil {
		return "", fmt.Errorf("attach: hairpin mode on %s: %w", name, err)
	}
	if err := h.LinkSetUp(veth); err != nil {
		return "", fmt.Errorf("attach: set %s up: %w", name, err)
	}
	if err := configurePeer(nsFd, ep); err != nil {
		return "", fmt.Errorf("attach %s in %s: %w", ep.IfName, ep.NetNS, err)
	}
	return name, nil
}

func checkEndpoint(ep Endpoint) error {
	if err := ValidIfName(ep.Bridge); err != nil {
		return fmt.Errorf("attach: bridge: %w", err)
	}
	if err := ValidIfName(ep.IfName); err != nil {
		return fmt.Errorf("attach: container interface: %w", err)
	}
	if ep.HostIfName != "" {
		if err := ValidIfName(ep.HostIfName); err != nil {
			return fmt.Errorf("attach: host interface: %w", err)
		}
	}
	if err := checkIPv4Prefix("attach: address", ep.Address); err != nil {
		return err
	}
	if ep.Gateway.IsValid() {
		if !ep.Gateway.Is4() || !ep.Address.Masked().Contains(ep.Gateway) || ep.Gateway == ep.Address.Addr() {
			return fmt.Errorf("attach: gateway %v is not another address of subnet %v: %w", ep.Gateway, ep.Address.Masked(), errdefs.ErrInvalidArgument)
		}
	}
	if ep.MAC != nil && (len(ep.MAC) != 6 || ep.MAC[0]&1 == 1) {
		return fmt.Errorf("attach: MAC %v is not a unicast Ethernet address: %w", ep.MAC, errdefs.ErrInvalidArgument)
	}
	if ep.MTU != 0 && (ep.MTU < 68 || ep.MTU > 65535) {
		return fmt.Errorf("attach: MTU %d is outside 68-65535: %w", ep.MTU, errdefs.ErrInvalidArgument)
	}
	return nil
}

// addVeth creates the pair, the peer directly inside the namespace under
// its final name (see the package doc).
func addVeth(h *netlink.Handle, ep Endpoint, nsFd, mtu int) (*netlink.Veth, error) {
	for try := 1; ; try++ {
		name := ep.HostIfName
		if name == "" {
			var err error
			if name, err = randomVethName(); err != nil {
				return nil, err
			}
		}
		la := netlink.NewLinkAttrs()
		la.Name = name
		la.MTU = mtu
		veth := &netlink.Veth{
			LinkAttrs:        la,
			PeerName:         ep.IfName,
			PeerHardwareAddr: ep.MAC,
			PeerNamespace:    netlink.NsFd(nsFd),
		}
		err := h.LinkAdd(veth)
		if err == nil {
			return veth, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("attach: create veth %s: %w", name, err)
		}
		// EEXIST names neither end: find out which one clashed.
		if _, lerr := h.LinkByName(name); lerr != nil {
			return nil, fmt.Errorf("attach: %s already exists in %s: %w", ep.IfName, ep.NetNS, errdefs.ErrAlreadyExists)
		}
		if ep.HostIfName != "" || try == maxNameTries {
			return nil, fmt.Errorf("attach: host interface %s already exists: %w", name, errdefs.ErrAlreadyExists)
		}
	}
}

// configurePeer gives the container end its address, state and route,
// through a netlink socket opened inside the namespace.
func configurePeer(nsFd int, ep Endpoint) error {
	h, err := netlink.NewHandleAt(netns.NsHandle(nsFd), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	peer, err := h.LinkByName(ep.IfName)
	if err != nil {
		return fmt.Errorf("look up: %w", err)
	}
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(ep.Address)}); err != nil {
		return fmt.Errorf("add address %v: %w", ep.Address, err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	if !ep.Gateway.IsValid() {
		return nil
	}
	err = h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: ep.Gateway.AsSlice()})
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("default route via %v: the namespace has a default route already (attach further networks without a gateway): %w", ep.Gateway, errdefs.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("default route via %v: %w", ep.Gateway, err)
	}
	return nil
}

// Detach deletes the veth pair whose host end is hostIf (what Attach
// returned). A missing link is not an error; a link that is not a veth is,
// and is left alone.
func Detach(hostIf string) error {
	if err := ValidIfName(hostIf); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("detach %s: netlink: %w", hostIf, err)
	}
	defer h.Close()
	return delVeth(h, hostIf)
}

// DetachNS deletes the veth pair whose container end is ifName in the
// namespace at nsPath: for a caller that knows the container side only
// (network disconnect, rm after a crash). A missing namespace or link is
// not an error.
func DetachNS(nsPath, ifName string) error {
	if err := ValidIfName(ifName); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	fd, err := openNetNS(nsPath)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", ifName, err)
	}
	defer unix.Close(fd)
	h, err := netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("detach %s in %s: netlink: %w", ifName, nsPath, err)
	}
	defer h.Close()
	if err := delVeth(h, ifName); err != nil {
		return fmt.Errorf("%w (in %s)", err, nsPath)
	}
	return nil
}

func delVeth(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach %s: look up: %w", name, err)
	}
	if link.Type() != "veth" {
		return fmt.Errorf("detach %s: a %s link, not a veth; not deleting it: %w", name, link.Type(), errdefs.ErrInvalidArgument)
	}
	if err := h.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("detach %s: delete: %w", name, err)
	}
	return nil
}
