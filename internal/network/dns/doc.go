// Package dns resolves container names on user-defined networks without a
// daemon: one small DNS server process per berth root, as podman's
// aardvark-dns, started on demand by the first container that needs it
// and gone a while after the last (at once when no user network is left).
//
// # What it answers
//
// The server listens on UDP and TCP port 53 of the gateway address of
// every user-defined bridge network that has endpoints; containers on
// those networks get that address as their nameserver. It runs in the
// host's network namespace, where the gateway is the bridge's own
// address, so every container of the network reaches it.
//
//   - A: a container's name, its aliases (--network-alias) and its short
//     (12-digit) ID, as Docker's embedded DNS; case-insensitive, with or
//     without one of the host's search domains (which containers inherit
//     in their resolv.conf). Several containers sharing an alias all
//     answer, in random order. TTL 600, Docker's.
//   - AAAA and any other type for those names: NOERROR with no records.
//     The name exists; an NXDOMAIN for AAAA would make resolvers that ask
//     both at once drop the A answer, and forwarding would tell the
//     host's resolvers our container names.
//   - PTR for container addresses: "name.network.", as Docker. A PTR for
//     another address inside a berth subnet is NXDOMAIN, not forwarded.
//   - Anything else is forwarded to the asking container's own --dns
//     servers when it has some (as Docker's embedded DNS; loopback ones
//     excepted, which would be the host's here), else to the host's
//     resolvers, read from the host's /etc/resolv.conf at every reload,
//     loopback ones (127.0.0.53) included: that they work is why the
//     server is on the host side and not in each container. UDP first,
//     TCP when the answer is truncated; no answer within 4 s (below
//     glibc's 5 s) is SERVFAIL. A container's --dns-search domains are
//     stripped from its queries as the host's search domains are.
//   - On --internal networks names outside the network are REFUSED: such
//     a network has no way out, and forwarding would be one (DNS tunnels).
//
// A query is answered from the network it arrived on, plus the other
// networks of the container asking (found by its source address), as
// Docker resolves across all of a container's networks. Queries whose
// source is not inside the network's subnet get no answer at all: the
// host routes every container's packets to every gateway address, so
// the source is what keeps a container of network B from reading the
// names of A (isolation), and what keeps us from answering spoofed
// sources elsewhere. The default bridge network has no name resolution,
// as Docker's (only legacy links give it names); its containers use the
// host's resolvers directly.
//
// Queries are hostile input: at most 4096 bytes on either transport, one
// question, opcode QUERY; answers cut to the client's UDP size with TC
// set; at most 512 UDP queries in flight (more are dropped, the client
// retries), 256 of them forwarded (more get SERVFAIL at once), 64 TCP
// connections of at most 64 queries and 10 s idle each. The raw
// bytes-to-bytes path is what the fuzz test runs.
//
// # The process and its files
//
//	<run-root>/dns/
//	  ensure.lock   flock: exclusive to start or stop the server, shared to
//	                look at it (Ensure, Notify)
//	  server.lock   flock: exclusive, held by the running server all its life
//	  pid           the server's PID, for people
//	  root          the engine root it serves, for a Notify that finds it dead
//	  trigger       Notify sets its mtime; the server watches it (inotify)
//	  loaded        the server sets its mtime to the trigger's after reloading
//	  server.log    the server's stdout and stderr
//
// Ensure (after an endpoint is allocated) takes ensure.lock shared; if the
// server runs, it touches trigger and waits until loaded catches up, so
// the new container resolves when Ensure returns. If not, it takes
// ensure.lock exclusively, looks again, and starts `berth network-dns`
// detached (its own session, stdio to server.log, reaped by a goroutine
// rather than waited for), and waits on a pipe until the server has taken
// server.lock, loaded the records and bound its addresses. Two Ensures at
// once therefore start one server. Notify (after endpoints changed) does
// the same touch-and-wait.
//
// The server reloads on every trigger and every 5 s anyway (so a berth
// that crashed before notifying is caught up): it re-reads the records
// through network.Manager (no long-lived database handle), binds new
// gateways, closes gone ones. When no user network has endpoints left, it
// lingers (DefaultLinger, 60 s) while user networks exist, listening on
// nothing but still answering Notify: a `run --rm` loop or a compose
// restart then finds it running instead of paying for a start and an exit
// (~40 ms of a lone container). When the linger runs out, or no user
// network is left (`network rm` and `prune` Notify it), it takes
// ensure.lock exclusively, reads the records once more, and if they still
// let it go stops listening, removes <run-root>/dns and exits. The
// exclusive lock is what makes this safe: an Ensure is either before (it
// sees no server and starts one) or after (the re-read sees its
// endpoint). A server killed outright leaves its directory; the next
// Ensure starts a new one over it, and a Notify starts one that cleans
// up and exits when nothing needs it.
package dns
