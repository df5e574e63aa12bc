// Package bridge is the link-level plumbing of bridge networks: persistent
// network namespaces, the Linux bridge, the veth pair that puts a container
// on it, and the few sysctls they need. It talks to the kernel through
// netlink and /proc/sys only; it never runs ip(8) or sysctl(8). It keeps no
// records: the caller (internal/network) owns names, addresses and state,
// and every function here is safe to call again after a crash.
//
// Everything happens in the caller's network namespace, "the host". Tests
// run the same code in a namespace of their own (InNetNS), which is also
// how a future rootless mode would use it.
//
// # A container's network, in order
//
//	NewNetNS(path)                   empty namespace with lo up, pinned by a
//	                                 bind mount at path (podman/CNI style)
//	EnsureBridge(br, gw/len, mtu)    once per network; idempotent
//	Attach(Endpoint{Bridge, NetNS,   veth pair: vethXXXXXXX on the bridge,
//	  IfName, Address, Gateway})     eth0 in the namespace with its address,
//	                                 MAC and default route
//	... the OCI config names path under linux.namespaces[network].path;
//	    the container joins the ready namespace, so start adds no netlink
//	    work and nothing of the network is left to undo if start fails ...
//	Detach(hostIf) or DetachNS       remove the pair (live disconnect)
//	DeleteNetNS(path)                deletes the namespace's veths, then
//	                                 unmounts and removes path
//
// # Why a namespace pinned by path
//
// The namespace exists before the container process and after it: the
// veth is configured once, before start, and torn down after the process
// is gone, by whichever berth process runs rm, even after a kill -9 of the
// monitor. NewNetNS creates it from a goroutine locked to its thread: the
// thread unshares CLONE_NEWNET, bind-mounts /proc/thread-self/ns/net onto
// path, sets lo up, and goes back to its old namespace with setns before
// it is unlocked, so no other goroutine ever runs in the new namespace. (A
// thread that cannot go back stays locked and dies with the goroutine.
// Exiting locked is not the general answer: the runtime never ends the
// main thread, it parks it for good, and a parked thread inside the
// namespace would keep it alive.) Deleting path (unlink after the unmount)
// also detaches copies of the mount that other mount namespaces took
// (Linux >= 3.18), so the namespace really goes away.
//
// # Veths
//
// The host end is "veth" and 7 random hex digits (11 of IFNAMSIZ's 15
// characters), retried on the rare name clash. The container end is created
// directly inside the namespace under its final name, so "eth0" never
// exists, not even for a moment, in the host namespace, where it would
// clash with the host's own eth0. The host end is enslaved to the bridge,
// in hairpin mode (a container reaching its own published port through
// the host's address gets its packets back through its own port, as in
// Docker's userland-proxy=false mode), and up. A failure half-way deletes
// the pair again; deleting either end deletes both, wherever the other is.
//
// Gateway: Attach adds a default route only when Endpoint.Gateway is set.
// Internal networks still have the gateway address on their bridge (the
// host reaches their containers through it), but their containers get no
// default route, as with Docker: a packet for the outside fails at once
// with "network unreachable" instead of timing out, and the firewall
// (package nft) drops it anyway if the container adds a route itself. A
// container on several networks gets one default route, from the network
// attached with a Gateway; attach the others without one.
//
// MACs default to Docker's 02:42 followed by the IPv4 address, so an
// address reused by a new container keeps its MAC and no neighbour cache
// goes stale. The bridge's own MAC is set the same way from its gateway
// address: a bridge without a fixed address takes its lowest port's MAC,
// and changes it as containers come and go.
//
// # Sysctls
//
// EnableIPForward turns on net.ipv4.ip_forward only when asked (the
// caller asks when a bridge network that may leave the host is created),
// and reports whether it changed it, so `berth info` can say so. It never
// turns it off again: other software may rely on it by then, as Docker's
// does.
//
// EnsureBridge sets net.ipv4.conf.<bridge>.route_localnet=1: published
// ports answer on 127.0.0.1 through a DNAT in the nat OUTPUT hook (package
// nft), and the rewritten packet leaves through the bridge with its
// loopback source still on it until postrouting masquerades it; without
// route_localnet the kernel drops it as a martian. The flag also lets a
// container send to 127.0.0.1 of the host; package nft drops such packets
// (CVE-2020-8558), except the replies of the DNATed connections.
package bridge
