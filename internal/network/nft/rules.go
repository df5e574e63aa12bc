package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/opts"
)

// This file is the plan: the table, its chains and every rule as plain
// data, built without touching the kernel (unit tests read it without
// root). nft.go applies it.

// TableName is berth's table, in the inet family (see the package doc).
const TableName = "berth"

// The chains. Base chains hook into the kernel; "ports" is jumped to.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainForward     = "forward"
	chainInput       = "input"
	chainPorts       = "ports"
	// forward jumps to these two in turn. leaving judges packets by the
	// bridge they come from, entering by the bridge they go to. Only
	// leaving has drops alone, so every "may not leave" of every network
	// is heard before any network's "may enter" accepts: in one chain, an
	// accept of a network made earlier would end the walk before the
	// drop of one made later.
	chainLeaving  = "leaving"
	chainEntering = "entering"
)

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

var accept = nftables.ChainPolicyAccept

// chains lists the table's chains in creation order ("ports" before the
// chains that jump to it).
func chains() []*nftables.Chain {
	return []*nftables.Chain{
		{Name: chainPorts, Table: table},
		{Name: chainLeaving, Table: table},
		{Name: chainEntering, Table: table},
		{Name: chainPrerouting, Table: table, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest},
		{Name: chainOutput, Table: table, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest},
		{Name: chainPostrouting, Table: table, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource},
		{Name: chainForward, Table: table, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept},
		{Name: chainInput, Table: table, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept},
	}
}

// rule is one planned rule: where it goes, what it does, and its tag.
type rule struct {
	chain string
	exprs []expr.Any
	tag   string
}

// The tags, kept in each rule's userdata as an nft comment, so `nft list
// ruleset` shows whose rule it is and berth finds its rules again without
// records of its own:
//
//	berth base                          the table's fixed rules
//	berth net=<bridge>                  a network's rules
//	berth ctr=<id> <proto>/<ip>:<port>  a container's published port
const (
	tagBase   = "berth base"
	netPrefix = "berth net="
	ctrPrefix = "berth ctr="
)

// baseRules are the fixed rules of the base chains, made with the table.
func baseRules() []rule {
	toPorts := concat(fibDaddrLocal(), verdict(expr.VerdictJump, chainPorts))
	return []rule{
		// Published ports answer on every local address (or the one they
		// name), from other hosts and from this one.
		{chainPrerouting, toPorts, tagBase},
		{chainOutput, toPorts, tagBase},
		// Replies and related packets (ICMP errors) of any connection
		// that was let through are let through; the per-network rules
		// below only judge new connections.
		{chainForward, concat(ctStateAny(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept, "")), tagBase},
		{chainForward, verdict(expr.VerdictJump, chainLeaving), tagBase},
		{chainForward, verdict(expr.VerdictJump, chainEntering), tagBase},
	}
}

// Network is what the firewall needs of a bridge network.
type Network struct {
	Bridge string       // the Linux bridge; it keys the network's rules
	Subnet netip.Prefix // IPv4 subnet of the network

	// Internal networks may not leave their bridge: no masquerade, no
	// forwarding out, nothing in from outside.
	Internal bool
	// Masquerade NATs the subnet's traffic leaving through any other
	// interface to that interface's address (Docker's
	// enable_ip_masquerade, on by default there). Ignored when Internal.
	Masquerade bool
	// ICC lets containers of the network talk to each other (Docker's
	// enable_icc, on by default there). Turning it off only bites where
	// bridged traffic passes through netfilter (br_netfilter with
	// net.bridge.bridge-nf-call-iptables=1), as with Docker.
	ICC bool
}

func (n Network) validate() error {
	if err := validIfName(n.Bridge); err != nil {
		return fmt.Errorf("firewall: network bridge: %w", err)
	}
	if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() {
		return fmt.Errorf("firewall: network %s: an IPv4 subnet is required, not %v: %w", n.Bridge, n.Subnet, errdefs.ErrInvalidArgument)
	}
	return nil
}

// networkRules are a network's rules, in order within each chain.
func networkRules(n Network) []rule {
	br, tag := n.Bridge, netPrefix+n.Bridge
	var rs []rule
	add := func(chain string, e ...[]expr.Any) { rs = append(rs, rule{chain, concat(e...), tag}) }

	// forward: only new connections get here (see baseRules).
	if n.Internal {
		// Nothing leaves an internal network, not even through another
		// network's published port.
		add(chainLeaving, iif(br, true), oif(br, false), verdict(expr.VerdictDrop, ""))
	} else {
		// In through a published port: the DNAT chose to let it in.
		add(chainEntering, oif(br, true), ctStatusDNAT(), verdict(expr.VerdictAccept, ""))
	}
	// Container to container on the bridge (seen only with br_netfilter).
	if n.ICC {
		add(chainEntering, iif(br, true), oif(br, true), verdict(expr.VerdictAccept, ""))
	} else {
		add(chainEntering, iif(br, true), oif(br, true), verdict(expr.VerdictDrop, ""))
	}
	// Nothing else comes in: not from outside (who would have to route to
	// the subnet), and not from another berth bridge (isolation).
	add(chainEntering, oif(br, true), verdict(expr.VerdictDrop, ""))

	// postrouting
	if n.Masquerade && !n.Internal {
		add(chainPostrouting, ipv4(), saddrIn(n.Subnet.Masked()), oif(br, false), masquerade())
	}
	// The host's own connections to a published port on 127.0.0.1 leave
	// through the bridge with a loopback source, which the container could
	// not answer: give them the bridge's address.
	add(chainPostrouting, ipv4(), oif(br, true), saddrIn(loopback), masquerade())
	// Hairpin: a container reaching a published port of its own network
	// through a host address must get the answer from that address, not
	// straight from the other container over the bridge (and a container
	// reaching its own port could not accept a packet from itself), so
	// the DNATed connection is masqueraded too. (postrouting knows no
	// input interface: the source address says where it came from.)
	add(chainPostrouting, ipv4(), saddrIn(n.Subnet.Masked()), oif(br, true), ctStatusDNAT(), masquerade())

	// input: route_localnet (package bridge) would let a container send
	// to the host's 127.0.0.1; only the replies of the host's own DNATed
	// connections may come in that way (CVE-2020-8558).
	add(chainInput, ipv4(), iif(br, true), daddrIn(loopback), ctStateNone(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictDrop, ""))
	return rs
}

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// Port is one published port.
type Port struct {
	Proto         string     // "tcp" or "udp"
	HostIP        netip.Addr // IPv4; zero or 0.0.0.0 for every address of the host
	HostPort      uint16
	ContainerIP   netip.Addr // IPv4
	ContainerPort uint16
}

// hostIP is HostIP with zero made explicit.
func (p Port) hostIP() netip.Addr {
	if !p.HostIP.IsValid() {
		return netip.IPv4Unspecified()
	}
	return p.HostIP
}

// String is how messages and tags name the host side: tcp/0.0.0.0:8080.
func (p Port) String() string {
	return fmt.Sprintf("%s/%s", p.Proto, netip.AddrPortFrom(p.hostIP(), p.HostPort))
}

func (p Port) validate() error {
	if p.Proto != "tcp" && p.Proto != "udp" {
		return fmt.Errorf("published port: protocol %q: want tcp or udp: %w", p.Proto, errdefs.ErrInvalidArgument)
	}
	if p.HostIP.IsValid() && !p.HostIP.Is4() {
		return fmt.Errorf("published port %s: host address %v is not IPv4: %w", p, p.HostIP, errdefs.ErrInvalidArgument)
	}
	if p.HostPort == 0 || p.ContainerPort == 0 {
		return fmt.Errorf("published port %s: ports 1-65535, not 0 (choose a free host port first): %w", p, errdefs.ErrInvalidArgument)
	}
	if !p.ContainerIP.Is4() || p.ContainerIP.IsUnspecified() {
		return fmt.Errorf("published port %s: container address %v is not an IPv4 address: %w", p, p.ContainerIP, errdefs.ErrInvalidArgument)
	}
	return nil
}

// overlaps reports whether p and q want the same host port: same protocol
// and port, and the same address or either one every address.
func (p Port) overlaps(q Port) bool {
	return p.Proto == q.Proto && p.HostPort == q.HostPort &&
		(p.hostIP() == q.hostIP() || p.hostIP().IsUnspecified() || q.hostIP().IsUnspecified())
}

func validContainerID(id string) error {
	if !opts.IsName(id, 1, 64) {
		return fmt.Errorf("firewall: container ID %q: want up to 64 of [A-Za-z0-9_.-]: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// portRule DNATs p's host side to its container side.
func portRule(containerID string, p Port) rule {
	e := [][]expr.Any{ipv4()}
	if !p.hostIP().IsUnspecified() {
		e = append(e, daddrIs(p.hostIP()))
	}
	e = append(e, l4proto(p.Proto), dport(p.HostPort), dnat(p.ContainerIP, p.ContainerPort))
	return rule{chainPorts, concat(e...), portTag(containerID, p)}
}

func portTag(containerID string, p Port) string {
	return ctrPrefix + containerID + " " + p.String()
}

// parsePortTag reads a tag of portTag's; ok is false for other tags.
func parsePortTag(tag string) (containerID string, p Port, ok bool) {
	rest, found := strings.CutPrefix(tag, ctrPrefix)
	if !found {
		return "", Port{}, false
	}
	id, hostSide, found := strings.Cut(rest, " ")
	if !found {
		return "", Port{}, false
	}
	proto, addr, found := strings.Cut(hostSide, "/")
	if !found {
		return "", Port{}, false
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", Port{}, false
	}
	return id, Port{Proto: proto, HostIP: ap.Addr(), HostPort: ap.Port()}, true
}

// comment encodes a tag as nft's rule comment (userdata TLV type 0).
func comment(tag string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, tag)
}

func tagOf(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// The expressions, each a small slice so rules read like nft syntax.

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ifname pads as the kernel compares: IFNAMSIZ bytes, NUL-filled.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func metaCmp(key expr.MetaKey, op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: data},
	}
}

func cmpOp(eq bool) expr.CmpOp {
	if eq {
		return expr.CmpOpEq
	}
	return expr.CmpOpNeq
}

func iif(name string, eq bool) []expr.Any {
	return metaCmp(expr.MetaKeyIIFNAME, cmpOp(eq), ifname(name))
}

func oif(name string, eq bool) []expr.Any {
	return metaCmp(expr.MetaKeyOIFNAME, cmpOp(eq), ifname(name))
}

// ipv4 guards every rule that reads IPv4 headers: in an inet table the
// same chain also sees IPv6 packets, whose bytes at those offsets are
// something else.
func ipv4() []expr.Any {
	return metaCmp(expr.MetaKeyNFPROTO, expr.CmpOpEq, []byte{unix.NFPROTO_IPV4})
}

func l4proto(proto string) []expr.Any {
	n := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		n = unix.IPPROTO_UDP
	}
	return metaCmp(expr.MetaKeyL4PROTO, expr.CmpOpEq, []byte{n})
}

// Offsets in the IPv4 header.
const (
	ipv4SaddrOffset = 12
	ipv4DaddrOffset = 16
)

func addrIn(offset uint32, p netip.Prefix) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	if p.Bits() == 0 {
		mask = []byte{0, 0, 0, 0}
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

func saddrIn(p netip.Prefix) []expr.Any { return addrIn(ipv4SaddrOffset, p) }
func daddrIn(p netip.Prefix) []expr.Any { return addrIn(ipv4DaddrOffset, p) }

func daddrIs(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ipv4DaddrOffset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

// dport reads the destination port at offset 2 of the TCP or UDP header.
func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// fibDaddrLocal is `fib daddr type local`: the packet is for this host.
func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// ctBits tests bits of a conntrack key: any set (set=true) or none.
func ctBits(key expr.CtKey, bits uint32, set bool) []expr.Any {
	op := expr.CmpOpEq
	if set {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)},
	}
}

func ctStateAny(bits uint32) []expr.Any  { return ctBits(expr.CtKeySTATE, bits, true) }
func ctStateNone(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATE, bits, false) }

// ipsDstNAT is IPS_DST_NAT of the conntrack status: `ct status dnat`.
const ipsDstNAT = 1 << 5

func ctStatusDNAT() []expr.Any { return ctBits(expr.CtKeySTATUS, ipsDstNAT, true) }

func verdict(kind expr.VerdictKind, chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: kind, Chain: chain}}
}

func masquerade() []expr.Any { return []expr.Any{&expr.Masq{}} }

func dnat(ip netip.Addr, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: ip.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// validIfName is the kernel's rule for interface names, as in package
// bridge (not imported: the firewall has no business with links).
func validIfName(name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\x00") {
		return fmt.Errorf("interface name %s is not valid: %w", strconv.Quote(name), errdefs.ErrInvalidArgument)
	}
	return nil
}
