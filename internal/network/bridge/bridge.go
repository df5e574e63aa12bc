package bridge

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// EnsureBridge makes the Linux bridge name exist, carry gateway (the
// bridge's own address with the subnet's length, 172.18.0.1/16), have mtu
// (0: leave the kernel's default, 1500), route_localnet on, and be up. It
// is idempotent; created reports whether this call made the bridge, so a
// caller that fails later knows whether to delete it. An existing bridge is
// adopted as it is, with gateway added if missing (Docker does the same
// with com.docker.network.bridge.name); a link of that name that is not a
// bridge is an error and is left alone.
func EnsureBridge(name string, gateway netip.Prefix, mtu int) (created bool, err error) {
	if err := ValidIfName(name); err != nil {
		return false, fmt.Errorf("bridge: %w", err)
	}
	if err := checkIPv4Prefix("bridge "+name+" gateway", gateway); err != nil {
		return false, err
	}
	if mtu != 0 && (mtu < 68 || mtu > 65535) {
		return false, fmt.Errorf("bridge %s: MTU %d is outside 68-65535: %w", name, mtu, errdefs.ErrInvalidArgument)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return false, fmt.Errorf("bridge %s: netlink: %w", name, err)
	}
	defer h.Close()

	link, err := h.LinkByName(name)
	if err != nil && !isNotFound(err) {
		return false, fmt.Errorf("bridge %s: look up: %w", name, err)
	}
	if err != nil {
		la := netlink.NewLinkAttrs()
		la.Name = name
		la.MTU = mtu
		la.HardwareAddr = MACFromIP(gateway.Addr())
		err = h.LinkAdd(&netlink.Bridge{LinkAttrs: la})
		switch {
		case err == nil:
			created = true
		case errors.Is(err, unix.EEXIST):
			// Another berth made it meanwhile: adopt it below.
		default:
			return false, fmt.Errorf("bridge %s: create: %w", name, err)
		}
		if link, err = h.LinkByName(name); err != nil {
			return false, fmt.Errorf("bridge %s: look up: %w", name, err)
		}
	}
	defer func() {
		if err != nil && created {
			h.LinkDel(link)
		}
	}()
	if link.Type() != "bridge" {
		return false, fmt.Errorf("bridge %s: a %s link of that name exists: %w", name, link.Type(), errdefs.ErrConflict)
	}
	if mtu != 0 && link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return false, fmt.Errorf("bridge %s: set MTU %d: %w", name, mtu, err)
		}
	}
	if err := ensureAddr(h, link, gateway); err != nil {
		return false, fmt.Errorf("bridge %s: %w", name, err)
	}
	if err := SetRouteLocalnet(name); err != nil {
		return false, fmt.Errorf("bridge %s: %w", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return false, fmt.Errorf("bridge %s: set up: %w", name, err)
	}
	return created, nil
}

func ensureAddr(h *netlink.Handle, link netlink.Link, p netip.Prefix) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == p.Addr() && ones == p.Bits() {
			return nil
		}
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %v: %w", p, err)
	}
	return nil
}

// DeleteBridge deletes the bridge name; ports still on it are released,
// not deleted. A missing bridge is not an error; a link of that name that
// is not a bridge is, and is left alone.
func DeleteBridge(name string) error {
	if err := ValidIfName(name); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("bridge %s: netlink: %w", name, err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bridge %s: look up: %w", name, err)
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("bridge %s: a %s link of that name exists, not deleting it: %w", name, link.Type(), errdefs.ErrConflict)
	}
	if err := h.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("bridge %s: delete: %w", name, err)
	}
	return nil
}
