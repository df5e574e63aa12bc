// Package nft is berth's firewall: outbound NAT, isolation between
// networks, and published ports, as rules in an nftables table of berth's
// own, `table inet berth`, written through netlink (google/nftables) and
// never through nft(8) or iptables(8). No other table or chain is ever
// read for changing, changed or flushed.
//
// It keeps no records. Every rule carries a tag in its comment (see
// rules.go), so the kernel's table is the record: AddNetwork and AddPorts
// replace what a network or container had, DeleteNetwork and RemovePorts
// find exactly their rules again, and when the last network and port are
// gone the table is deleted too: a host without berth containers has no
// berth table. Everything is idempotent and each call is one atomic
// netlink batch, so a failure changes nothing.
//
// # Why inet, and why our own table
//
// One inet table serves IPv4 and, later, IPv6 with the same chains and
// hooks (NAT in inet tables needs Linux >= 5.2). Rules that read IPv4
// headers check `meta nfproto ipv4` first. A table of our own is what
// nftables is for: iptables-style shared chains (Docker's DOCKER,
// DOCKER-USER) invite fights over rule order; a table is deleted in one
// step and nobody else's rules go with it.
//
//	table inet berth
//	  chain ports        (regular) one DNAT rule per published port
//	  chain prerouting   nat, dstnat   fib daddr type local jump ports
//	  chain output       nat, dstnat   fib daddr type local jump ports
//	  chain postrouting  nat, srcnat   per network: masquerade of the subnet
//	                                   leaving by another interface;
//	                                   127.0.0.0/8 into the bridge; hairpin
//	  chain forward      filter        ct state established,related accept;
//	                                   jump leaving; jump entering
//	  chain leaving      (regular)     per internal network: out drop
//	  chain entering     (regular)     per network: DNATed in accept (not
//	                                   internal), same bridge accept (drop
//	                                   without ICC), anything else in drop
//	  chain input        filter        per network: new packets from the
//	                                   bridge to 127.0.0.0/8 drop
//
// Isolation needs no pairwise rules: a new connection from network A to
// network B passes A's rules (which only judge what leaves or enters A)
// and is dropped by B's "anything else in drop". Published ports are the
// exception, as with Docker: their DNAT makes them public, so a container
// of A reaches B's published port through a host address; one of an
// internal network does not, as "leaving" is walked before "entering".
//
// # Published ports, and why DNAT for 127.0.0.1 too
//
// The DNAT is hooked at prerouting (from other hosts and from containers)
// and at output (from the host itself, 127.0.0.1 included), Docker's
// userland-proxy=false mode: no proxy process per port, the client's
// address is kept for remote clients, and the data path is the kernel's.
// For 127.0.0.1 the bridge needs route_localnet (package bridge sets it),
// and the postrouting masquerade of 127.0.0.0/8 gives the container an
// address to answer. A port may be held once per protocol, port and host
// address (0.0.0.0 overlapping every address); AddPorts refuses an overlap
// with a conflict error naming the holder, and PortHolder tells who holds
// one. The check reads the kernel's rules only: the caller also probes
// with bind() for host processes on the port. UDP flows are remembered by
// conntrack: AddPorts and RemovePorts forget those of the port so that a
// client that keeps sending is DNATed afresh (or no longer).
//
// # Concurrency
//
// Changes take an flock on the network namespace's nsfs inode (see lock),
// so berth processes with different roots on one host serialize, and tests
// in their own namespaces do not. Checks and changes happen under it: two
// concurrent runs cannot both get a port, and the table is never deleted
// under a process that is filling it.
//
// # Other firewalls
//
// nftables runs every base chain registered at a hook; a packet must be
// accepted by all of them, and an accept in ours does not overrule a drop
// elsewhere. So on a host whose iptables FORWARD policy is DROP (Docker
// sets that when it starts; firewalld and many hand-written rulesets do
// the same) container traffic that berth forwards (out through NAT, in
// through published ports from other hosts) is dropped by that other
// chain, while the host's own traffic to containers and to published
// ports on its addresses still works, as it does not cross the forward
// hook. berth does not touch other tables to fix that; ForwardBlockers
// finds such chains cheaply (a netlink dump of the chains; for
// iptables-legacy, only whether its filter table is in use) so `info` and
// network create can warn with the remedy: allow the bridges in that
// firewall, e.g. `iptables -I DOCKER-USER -i br-+ -j ACCEPT` and `-o br-+
// -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, or
// `nft add rule ip filter FORWARD iifname "br-*" accept`.
//
// Where br_netfilter is active (net.bridge.bridge-nf-call-iptables=1),
// traffic between two containers of one bridge passes the forward hook
// too, so another table's drop policy there also cuts containers off from
// each other; berth's own rules accept it unless ICC is off.
package nft
