package bridge

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// ifNameMax is IFNAMSIZ less its NUL.
const ifNameMax = 15

// vethPrefix starts every host-side veth berth makes; 7 hex digits follow
// (28 bits: a clash among a host's veths is rare, and Attach retries).
const vethPrefix = "veth"

// ValidIfName checks an interface name as the kernel's dev_valid_name does,
// so a bad name fails here with a clear message instead of as EINVAL from
// netlink, and never reaches a /proc/sys path.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("interface name is empty: %w", errdefs.ErrInvalidArgument)
	case len(name) > ifNameMax:
		return fmt.Errorf("interface name %q is longer than %d characters: %w", name, ifNameMax, errdefs.ErrInvalidArgument)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed: %w", name, errdefs.ErrInvalidArgument)
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return fmt.Errorf("interface name %q has a '/', ':' or space: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// randomVethName is a fresh host-side veth name.
func randomVethName() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random veth name: %w", err)
	}
	return vethPrefix + hex.EncodeToString(b[:])[:7], nil
}

// MACFromIP is Docker's GenerateMACFromIP: 02:42 (locally administered,
// unicast) and the four bytes of an IPv4 address.
func MACFromIP(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// ipNet converts for netlink, keeping the host part (10.1.0.2/24, not
// 10.1.0.0/24): netlink.Addr wants the interface's own address.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// checkIPv4Prefix checks an interface address: IPv4, a real host address
// of its subnet (neither the network nor the broadcast address, except on
// /31 and /32 where every address is one).
func checkIPv4Prefix(what string, p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("%s %v: an IPv4 address with a prefix length is required: %w", what, p, errdefs.ErrInvalidArgument)
	}
	if p.Bits() < 31 {
		a := p.Addr().As4()
		host := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		hostMask := uint32(1)<<(32-p.Bits()) - 1
		if host&hostMask == 0 || host&hostMask == hostMask {
			return fmt.Errorf("%s %v is the network or broadcast address of its subnet: %w", what, p, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}
