package dns

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/network"
)

// Table is what the server answers from: the user-defined networks that
// have containers, keyed by the gateway address the queries arrive at. It
// is built whole from the records and never changed, so queries read it
// without locks while a reload builds the next one.
type Table struct {
	byGateway   map[netip.Addr]*netRecords
	byContainer map[string][]*netRecords // container ID -> its networks here, by name
	// resolvers holds the containers that have --dns servers or
	// --dns-search domains of their own, by container ID.
	resolvers map[string]*resolverConf
	// private holds the subnets of every bridge network, the default one
	// too: a PTR query for an address in them is answered here (by name
	// or NXDOMAIN), never sent upstream, where it would only leak which
	// addresses containers use.
	private []netip.Prefix
}

// resolverConf is one container's own resolver settings: servers as
// host:port, search domains lower-case without dots at the ends.
type resolverConf struct {
	servers []string
	search  []string
}

// newResolverConf is ep's --dns and --dns-search as the server uses them,
// or nil when it has neither. Loopback servers are left out: Docker's
// embedded DNS asks them inside the container's namespace, where they
// may run; ours runs in the host's, where 127.0.0.1 is somebody else.
// Such a container's other queries go to the host's resolvers.
func newResolverConf(ep *network.Endpoint) *resolverConf {
	var rc resolverConf
	for _, s := range ep.DNS {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.IsLoopback() || ip.IsUnspecified() {
			continue
		}
		rc.servers = append(rc.servers, net.JoinHostPort(ip.String(), "53"))
	}
	for _, d := range ep.DNSSearch {
		if d = strings.ToLower(strings.Trim(d, ".")); d != "" {
			rc.search = append(rc.search, d)
		}
	}
	if len(rc.servers) == 0 && len(rc.search) == 0 {
		return nil
	}
	return &rc
}

// resolver is the resolver configuration of the container asking from
// src on n, given the host's (search, servers): its own where it has
// them. Its own search domains come first, as in its resolv.conf.
func (t *Table) resolver(n *netRecords, src netip.Addr, hostSearch, hostServers []string) (search, servers []string) {
	search, servers = hostSearch, hostServers
	if id, ok := n.owner[src]; ok {
		if rc := t.resolvers[id]; rc != nil {
			if len(rc.servers) > 0 {
				servers = rc.servers
			}
			if len(rc.search) > 0 {
				search = append(slices.Clone(rc.search), hostSearch...)
			}
		}
	}
	return search, servers
}

// netRecords are one network's names.
type netRecords struct {
	id, name string
	gateway  netip.Addr
	subnet   netip.Prefix
	internal bool
	names    map[string][]netip.Addr // lower-case name without the final dot -> addresses
	ptr      map[netip.Addr]string   // address -> "container.network." as Docker answers
	owner    map[netip.Addr]string   // address -> container ID, to find who asks
}

// NewTable builds the table from the network records and their endpoints
// (by network ID), as network.Manager's List and AllEndpoints return
// them. Only user-defined bridge networks with a gateway and at least one
// addressed endpoint get served: Docker resolves no names on the default
// bridge network (only legacy links do), and host and none networks have
// no address to listen on.
func NewTable(nets []*network.Network, endpoints map[string][]*network.Endpoint) *Table {
	t := &Table{byGateway: map[netip.Addr]*netRecords{}, byContainer: map[string][]*netRecords{}, resolvers: map[string]*resolverConf{}}
	sorted := slices.Clone(nets)
	slices.SortFunc(sorted, func(a, b *network.Network) int { return strings.Compare(a.Name, b.Name) })
	for _, n := range sorted {
		if n.Driver != network.DriverBridge || !n.Subnet.IsValid() {
			continue
		}
		t.private = append(t.private, n.Subnet.Masked())
		if n.Name == network.NameBridge || !n.Gateway.Is4() {
			continue
		}
		if _, dup := t.byGateway[n.Gateway]; dup {
			continue // two records claiming one address: serve the first by name, consistently
		}
		r := &netRecords{id: n.ID, name: n.Name, gateway: n.Gateway, subnet: n.Subnet.Masked(), internal: n.Internal,
			names: map[string][]netip.Addr{}, ptr: map[netip.Addr]string{}, owner: map[netip.Addr]string{}}
		for _, ep := range endpoints[n.ID] {
			ip := ep.IP()
			if !ip.Is4() || !r.subnet.Contains(ip) {
				continue
			}
			name := strings.TrimPrefix(ep.Name, "/")
			for _, nm := range endpointNames(ep, name) {
				if !slices.Contains(r.names[nm], ip) {
					r.names[nm] = append(r.names[nm], ip)
				}
			}
			if name != "" {
				if fqdn := mdns.Fqdn(name + "." + n.Name); validName(fqdn) {
					r.ptr[ip] = fqdn
				}
			}
			if ep.ContainerID != "" {
				r.owner[ip] = ep.ContainerID
				t.byContainer[ep.ContainerID] = append(t.byContainer[ep.ContainerID], r)
				if _, seen := t.resolvers[ep.ContainerID]; !seen {
					if rc := newResolverConf(ep); rc != nil {
						t.resolvers[ep.ContainerID] = rc
					}
				}
			}
		}
		if len(r.owner) == 0 && len(r.names) == 0 {
			continue
		}
		t.byGateway[n.Gateway] = r
	}
	return t
}

// endpointNames are the names an endpoint answers to, lower-cased: the
// container's name, its aliases and, as Docker does, its short ID.
func endpointNames(ep *network.Endpoint, name string) []string {
	names := append([]string{name}, ep.Aliases...)
	if len(ep.ContainerID) >= 12 {
		names = append(names, ep.ContainerID[:12])
	}
	out := names[:0]
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n != "" && validName(mdns.Fqdn(n)) {
			out = append(out, n)
		}
	}
	return out
}

// validName reports whether fqdn can go into a DNS message: labels of at
// most 63 bytes, at most 255 in all, no empty label. Container names and
// aliases are checked by their own rules, which allow "a..b".
func validName(fqdn string) bool {
	_, ok := mdns.IsDomainName(fqdn)
	return ok && !strings.Contains(fqdn, "..") && len(fqdn) <= 254
}

// Gateways are the addresses to listen on, sorted.
func (t *Table) Gateways() []netip.Addr {
	out := make([]netip.Addr, 0, len(t.byGateway))
	for gw := range t.byGateway {
		out = append(out, gw)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Empty reports whether no network needs serving: the server's cue to
// exit.
func (t *Table) Empty() bool { return len(t.byGateway) == 0 }

// visible lists the networks whose names a query from src, arriving at
// n's gateway, may see: n first, then the asking container's other
// networks, as Docker's embedded DNS resolves across every network of the
// container. Nobody else's: that is the isolation between networks.
func (t *Table) visible(n *netRecords, src netip.Addr) []*netRecords {
	out := []*netRecords{n}
	if id, ok := n.owner[src]; ok {
		for _, o := range t.byContainer[id] {
			if o != n {
				out = append(out, o)
			}
		}
	}
	return out
}

// lookup finds name (lower-case, no final dot) on the first of nets that
// has it, trying it as asked and then without each search domain, so
// that "web.example.com" is "web" when the host searches example.com.
func lookup(nets []*netRecords, name string, search []string) ([]netip.Addr, bool) {
	for _, cand := range candidates(name, search) {
		for _, n := range nets {
			if ips, ok := n.names[cand]; ok {
				return ips, true
			}
		}
	}
	return nil, false
}

func candidates(name string, search []string) []string {
	out := []string{name}
	for _, d := range search {
		if s, ok := strings.CutSuffix(name, "."+d); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

// reverse finds the PTR name of ip on nets.
func reverse(nets []*netRecords, ip netip.Addr) (string, bool) {
	for _, n := range nets {
		if name, ok := n.ptr[ip]; ok {
			return name, true
		}
	}
	return "", false
}

// isPrivate reports whether ip lies in a subnet of berth's.
func (t *Table) isPrivate(ip netip.Addr) bool {
	for _, p := range t.private {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// reverseAddr parses an in-addr.arpa name (lower-case, no final dot) into
// its IPv4 address.
func reverseAddr(name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	if !ok {
		return netip.Addr{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	slices.Reverse(parts)
	ip, err := netip.ParseAddr(strings.Join(parts, "."))
	if err != nil || !ip.Is4() {
		return netip.Addr{}, false
	}
	return ip, true
}
