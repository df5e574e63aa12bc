// Package network keeps berth's networks: their records, their address
// management (IPAM) and the endpoints that attach containers to them, as
// Docker's libnetwork does, without a daemon. The kernel side (bridges,
// veths, netfilter) is a Driver that the Manager calls; this package only
// reads the kernel (the host's routes, to choose free subnets).
//
// On disk, in the engine root's metadata.db (package metadb):
//
//	metadata.db
//	  networks/            bucket: network ID (64 hex) -> JSON record (Network + LastIP)
//	  networkNames/        bucket: name -> network ID (names are unique)
//	  networkEndpoints/    bucket of buckets, one per network ID:
//	    <network ID>/        container ID -> JSON Endpoint (address, MAC, names)
//	metadata.lock          flock: shared for reads, exclusive for writes (metadb)
//	network.lock           flock: a default-network endpoint with its bridge (kernel.go)
//	ip_forward.changed     when berth turned IPv4 forwarding on, for which network
//
// # The predefined networks
//
// A fresh Docker lists bridge, host and none; so does berth, once
// EnsureDefault has run (every network verb, and `run` on the default
// network, calls it). "bridge" is a bridge network on the Linux bridge
// berth0 with the first free default subnet, made lazily rather than at
// install time so that it dodges whatever the host has by then (docker0's
// 172.17.0.0/16 if Docker runs here). host and none are records without
// addresses; a running container of --network host or none has an
// endpoint on its record without an address (made in the start hook,
// released at exit), so that `network inspect host` lists it, as
// Docker's does.
// None of the three can be removed, and no user network may take their
// names.
//
// The default network's Linux bridge and firewall rules come with its
// first container: with the kernel driver (kernel.go), Connect brings
// them up. They then stay, as docker0 does, until Prune finds the network
// unused and takes them down (the record stays; the next container brings
// them back); the check and the removal hold <root>/network.lock, which
// Connect holds across the address and the bring-up, so the two never
// cross. Taking them down with each last container, as berth first did,
// cost every lone `run --rm` two bridge creations' and one deletion's
// worth of kernel RCU waits (~45 ms). After `rm` of every container and a
// `network prune`, berth holds nothing in the kernel. User networks get
// theirs at Create and lose them at Remove, as with Docker.
//
// # Addresses: one write transaction per decision
//
// Everything that must never be decided twice is decided inside one
// metadb write transaction, which holds metadata.lock exclusively across
// every berth process: a network's name and subnet (Create), a
// container's address (Allocate). Two `berth run`s racing for the last
// address serialize on the lock; the second sees the first's endpoint and
// takes the next address, or fails with Docker's "no available IPv4
// addresses". Nothing is cached in memory, so a Manager is cheap and any
// number of them may share a root.
//
// Dynamic addresses are handed out serially (after the last one given,
// wrapping around), never the network, broadcast or gateway address, and
// only from the ip-range when the network has one. An endpoint's MAC is
// 02:42 followed by its IPv4 address, as Docker derives it. Addresses are
// released when the container goes (Release, ReleaseContainer); Sweep
// releases what a crash between a container's removal and its release
// left.
//
// # Default subnets
//
// Networks created without --subnet take the first of DefaultPools
// (Docker's: 172.17-31.0.0/16, then 192.168.0-240.0/20) that overlaps
// neither another berth network nor any route or address of the host, in
// any routing table, nor a nameserver of /etc/resolv.conf. Routes shorter
// than /8 (defaults, and the 0.0.0.0/1 halves VPN clients install) do not
// count: see hostReserved. A --subnet the user chose is checked only
// against other berth networks ("Pool overlaps with other one on this
// address space"), as Docker does: the user may know better than the
// routing table.
//
// # Records and the kernel stay in step
//
// Create and Remove call the Driver inside the transaction that writes or
// deletes the record: a failing driver leaves the record as it was, and a
// commit that fails after the driver succeeded is undone through the
// driver. The Driver's doc has the contract (idempotent, no metadb
// access). After a crash between the driver's work and the commit, the
// kernel may hold a bridge with no record; the driver is expected to
// recognise its own bridges (by name or attribute) if a sweep is wanted.
//
// # What this package does not do
//
// Apart from the kernel driver, it creates no interface and no rule, and
// starts no DNS server: the bridge and nft packages do that, driven by
// the driver and by the container code with the Endpoints recorded here.
// IPv6 subnets are refused for now.
package network
