package cli

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/container"
)

// networkOpts fills the networking part of create and run's options:
// --network, -p/-P/--expose, --ip, --network-alias, --add-host and the
// DNS flags, checked with Docker's messages.
func (f *runFlags) networkOpts(cmd *cobra.Command, o *container.CreateOpts) error {
	hc := &o.HostConfig
	hc.NetworkMode = f.network
	pm, exposed, err := container.ParsePublish(f.publish)
	if err != nil {
		return err
	}
	more, err := container.ParseExpose(f.expose)
	if err != nil {
		return err
	}
	if len(pm) > 0 {
		hc.PortBindings = pm
	}
	hc.PublishAllPorts = f.publishAll
	o.ExposedPorts = append(exposed, more...)
	if f.network == "host" && (len(f.publish) > 0 || f.publishAll) {
		fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: Published ports are discarded when using host network mode")
	}
	for _, d := range f.dns {
		if _, err := netip.ParseAddr(d); err != nil {
			return usageErr("invalid argument %q for \"--dns\" flag: %s is not an ip address", d, d)
		}
	}
	for _, h := range f.addHosts {
		name, ip, ok := strings.Cut(strings.Replace(h, "=", ":", 1), ":")
		if !ok || name == "" {
			return usageErr("invalid argument %q for \"--add-host\" flag: bad format for add-host: %q", h, h)
		}
		if ip != "host-gateway" {
			if _, err := netip.ParseAddr(strings.Trim(ip, "[]")); err != nil {
				return usageErr("invalid argument %q for \"--add-host\" flag: invalid IP address in add-host: %q", h, ip)
			}
		}
	}
	hc.Dns, hc.DnsSearch, hc.DnsOptions, hc.ExtraHosts, hc.Links = f.dns, f.dnsSearch, f.dnsOptions, f.addHosts, f.links
	o.Network = container.NetworkOpts{Aliases: f.aliases, IPv4Address: f.ip}
	if f.ip != "" {
		if a, err := netip.ParseAddr(f.ip); err != nil || !a.Is4() {
			return usageErr("invalid argument %q for \"--ip\" flag: invalid IPv4 address: %s", f.ip, f.ip)
		}
	}
	return nil
}
