package network

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/opts"
)

// The predefined networks, as on a fresh Docker: `network ls` lists them,
// `network rm` refuses them, and nobody may create another by their names.
const (
	NameBridge = "bridge" // the default network: DriverBridge on DefaultBridgeName
	NameHost   = "host"   // DriverHost: the host's own network namespace
	NameNone   = "none"   // DriverNull: a namespace with only lo
)

// Drivers. Only DriverBridge networks can be created; DriverHost and
// DriverNull exist once each, as the predefined host and none networks.
const (
	DriverBridge = "bridge"
	DriverHost   = "host"
	DriverNull   = "null"
)

// ScopeLocal is every network's scope: berth has no swarm.
const ScopeLocal = "local"

// DefaultBridgeName is the Linux bridge of the default network, berth's
// docker0.
const DefaultBridgeName = "berth0"

// Bridge driver options, with Docker's names (-o KEY=VALUE on create).
const (
	OptBridgeName      = "com.docker.network.bridge.name"
	OptDefaultBridge   = "com.docker.network.bridge.default_bridge"
	OptEnableICC       = "com.docker.network.bridge.enable_icc"
	OptEnableMasq      = "com.docker.network.bridge.enable_ip_masquerade"
	OptHostBindingIPv4 = "com.docker.network.bridge.host_binding_ipv4"
	OptMTU             = "com.docker.network.driver.mtu"
)

// ifNameMax is IFNAMSIZ less the terminating NUL: the longest Linux
// interface name.
const ifNameMax = 15

// Network is one network's record. Bridge networks have a Subnet, a
// Gateway (the bridge's own address) and a Bridge; host and none have
// none of them.
type Network struct {
	ID      string // 64 hex digits, random
	Name    string // unique
	Driver  string // DriverBridge, DriverHost or DriverNull
	Scope   string // ScopeLocal
	Created time.Time

	Subnet  netip.Prefix // IPv4, masked (10.1.0.0/16, never 10.1.2.3/16)
	Gateway netip.Addr   // inside Subnet: the bridge's address
	// IPRange narrows dynamic allocation (containers without --ip) to a
	// part of Subnet; zero means all of it. Requested addresses may lie
	// anywhere in Subnet, as with Docker.
	IPRange netip.Prefix
	// SubnetAuto is true when Subnet came from the default pools rather
	// than --subnet. Docker allows --ip only on networks whose subnet the
	// user chose: an automatic one may differ on another host.
	SubnetAuto bool

	Internal   bool // no outbound NAT, no route out: containers reach only each other
	Attachable bool // recorded for Docker compatibility; every local network is

	Labels  map[string]string
	Options map[string]string // driver options (-o), Docker's keys

	// Bridge is the Linux bridge: DefaultBridgeName for the default
	// network, "br-" and the first 12 hex digits of ID for the others
	// (Docker's naming), or Options[OptBridgeName].
	Bridge string
}

// Predefined reports whether n is one of the networks every engine has
// (bridge, host, none): they cannot be removed or pruned.
func (n *Network) Predefined() bool { return IsPredefined(n.Name) }

// IsPredefined reports whether name is a predefined network's name (or
// "default", Docker's other word for bridge), which no user network may
// take.
func IsPredefined(name string) bool {
	switch name {
	case NameBridge, NameHost, NameNone, "default":
		return true
	}
	return false
}

// GatewayPrefix is the bridge's own address with the subnet's length
// (172.18.0.1/16), what goes on the bridge; zero for host and none.
func (n *Network) GatewayPrefix() netip.Prefix {
	if !n.Gateway.IsValid() || !n.Subnet.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(n.Gateway, n.Subnet.Bits())
}

// ShortID is the 12-digit ID that tables show.
func (n *Network) ShortID() string { return n.ID[:12] }

// ICC reports whether containers on n may talk to each other
// (enable_icc, true unless set false).
func (n *Network) ICC() bool { return n.boolOption(OptEnableICC, true) }

// Masquerade reports whether traffic leaving n through the host is
// NATed: not on internal networks, and not when enable_ip_masquerade is
// false.
func (n *Network) Masquerade() bool {
	return n.Driver == DriverBridge && !n.Internal && n.boolOption(OptEnableMasq, true)
}

// MTU is the bridge's and its veths' MTU: com.docker.network.driver.mtu,
// or 0 for the kernel's default (1500 on a bridge).
func (n *Network) MTU() int {
	v, err := strconv.Atoi(n.Options[OptMTU])
	if err != nil {
		return 0
	}
	return v
}

// HostBindingIPv4 is the host address that ports published without one
// bind to (host_binding_ipv4), the unspecified address by default.
func (n *Network) HostBindingIPv4() netip.Addr {
	if a, err := netip.ParseAddr(n.Options[OptHostBindingIPv4]); err == nil {
		return a
	}
	return netip.IPv4Unspecified()
}

func (n *Network) boolOption(key string, def bool) bool {
	v, ok := n.Options[key]
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def
	}
	return b
}

// Endpoint is one container's attachment to a network: its address there
// (none on host and none networks) and the names it answers to.
type Endpoint struct {
	ID          string // EndpointID: 64 hex digits, random
	NetworkID   string
	ContainerID string
	Name        string   // the container's name, which DNS on the network resolves
	Aliases     []string // --network-alias: more names for DNS

	// Address is the container's IPv4 address with the subnet's length
	// (172.18.0.2/16), what goes on its veth; zero on host and none.
	Address netip.Prefix
	Gateway netip.Addr // the default route's next hop; zero on internal networks, host and none
	MAC     string     // 02:42 and the IPv4 address, as Docker derives it; or as requested

	// DNS and DNSSearch are the container's --dns servers and
	// --dns-search domains. On user networks the container's resolver is
	// berth's DNS server, which forwards the container's other queries
	// to these servers instead of the host's and strips these domains
	// too, as Docker's embedded DNS does.
	DNS       []string `json:",omitempty"`
	DNSSearch []string `json:",omitempty"`
}

// IP is the endpoint's address without the prefix length.
func (e *Endpoint) IP() netip.Addr { return e.Address.Addr() }

// HardwareAddr is MAC parsed, for netlink; nil when the endpoint has none.
func (e *Endpoint) HardwareAddr() net.HardwareAddr {
	hw, err := net.ParseMAC(e.MAC)
	if err != nil {
		return nil
	}
	return hw
}

// macFromIP is Docker's GenerateMACFromIP: a locally administered
// unicast address, 02:42, then the four bytes of the IPv4 address, so a
// container's MAC is predictable from its IP and never collides on one
// bridge.
func macFromIP(ip netip.Addr) string {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}.String()
}

// ValidName checks a name for a new network, by what Docker's container
// names allow (opts.IsName). Docker itself takes any non-blank network
// name; berth is stricter (as podman is) because network names end up in
// DNS search results, filters and log lines, where spaces and slashes
// only hurt.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("a network name is required: %w", errdefs.ErrInvalidArgument)
	}
	if !opts.IsName(name, 1, 255) {
		return fmt.Errorf("invalid network name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at most 255 characters): %w", name, errdefs.ErrInvalidArgument)
	}
	if IsPredefined(name) {
		return fmt.Errorf("operation is not permitted on predefined %s network: %w", name, errdefs.ErrConflict)
	}
	return nil
}

// ValidBridgeName checks a Linux interface name for a bridge: 1 to 15
// bytes (IFNAMSIZ), none of them '/', ':' or white space, and not "." or
// "..", which the kernel refuses.
func ValidBridgeName(name string) error {
	bad := name == "" || len(name) > ifNameMax || name == "." || name == ".." ||
		strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || r <= ' ' || r >= 0x7f })
	if bad {
		return fmt.Errorf("invalid bridge name %q: a Linux interface name is 1 to %d characters, without '/', ':' or spaces: %w",
			name, ifNameMax, errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkOptions validates the bridge driver options Docker knows and keeps
// the others as given (Docker does too: drivers ignore what they do not
// know).
func checkOptions(opts map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(opts)) { // the same error every time
		v := opts[k]
		var err error
		switch k {
		case OptBridgeName:
			err = ValidBridgeName(v)
		case OptDefaultBridge:
			err = fmt.Errorf("option %s is reserved for the default bridge network: %w", k, errdefs.ErrInvalidArgument)
		case OptEnableICC, OptEnableMasq:
			if _, perr := strconv.ParseBool(v); perr != nil {
				err = fmt.Errorf("invalid option %s=%s: use true or false: %w", k, v, errdefs.ErrInvalidArgument)
			}
		case OptMTU:
			if mtu, perr := strconv.Atoi(v); perr != nil || mtu < 68 || mtu > 65535 {
				err = fmt.Errorf("invalid MTU number: %s (use 68 to 65535): %w", v, errdefs.ErrInvalidArgument)
			}
		case OptHostBindingIPv4:
			if a, perr := netip.ParseAddr(v); perr != nil || !a.Is4() {
				err = fmt.Errorf("invalid option %s=%s: use an IPv4 address: %w", k, v, errdefs.ErrInvalidArgument)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// randomID is a new network or endpoint ID: 64 hex digits, as Docker's.
func randomID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make an ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// userBridgeName is Docker's name for a user network's bridge.
func userBridgeName(id string) string { return "br-" + id[:12] }
