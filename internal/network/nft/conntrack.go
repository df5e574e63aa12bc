package nft

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// forgetUDP deletes the conntrack entries of UDP flows to the host side of
// ports. TCP needs nothing: a new connection gets a new entry, and an old
// one keeps working or breaks as it would under Docker.
func forgetUDP(ports []Port) error {
	var filters []netlink.CustomConntrackFilter
	for _, p := range ports {
		if p.Proto != "udp" {
			continue
		}
		f := &netlink.ConntrackFilter{}
		if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return fmt.Errorf("firewall: conntrack filter: %w", err)
		}
		if err := f.AddPort(netlink.ConntrackOrigDstPort, p.HostPort); err != nil {
			return fmt.Errorf("firewall: conntrack filter: %w", err)
		}
		if !p.hostIP().IsUnspecified() {
			if err := f.AddIP(netlink.ConntrackOrigDstIP, p.hostIP().AsSlice()); err != nil {
				return fmt.Errorf("firewall: conntrack filter: %w", err)
			}
		}
		filters = append(filters, f)
	}
	if len(filters) == 0 {
		return nil
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...); err != nil {
		return fmt.Errorf("firewall: forget UDP flows of published ports: %w", err)
	}
	return nil
}
