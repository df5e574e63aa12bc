package container

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/network/nft"
)

// ParsePublish reads -p/--publish specs in Docker's syntax,
// [IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTO], into port bindings
// and the ports they expose:
//
//	80            container port 80/tcp on any free host port, every address
//	8080:80       host 8080 to container 80
//	127.0.0.1::80 any free host port on 127.0.0.1
//	8080-8081:80-81/udp  two ports, pairwise
//	8000-8010:80  one free host port of the range
func ParsePublish(specs []string) (PortMap, []string, error) {
	pm := PortMap{}
	var exposed []string
	for _, spec := range specs {
		if err := parsePublish(spec, pm, &exposed); err != nil {
			return nil, nil, err
		}
	}
	return pm, exposed, nil
}

func parsePublish(spec string, pm PortMap, exposed *[]string) error {
	inv := errdefs.ErrInvalidArgument
	rest, proto, _ := strings.Cut(spec, "/")
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		if proto == "sctp" {
			return fmt.Errorf("invalid proto: sctp: berth publishes tcp and udp ports only: %w", errdefs.ErrNotImplemented)
		}
		return fmt.Errorf("invalid proto: %s: %w", proto, inv)
	}
	var ip, hostPart, ctrPart string
	if strings.HasPrefix(rest, "[") { // [::1]:80:80
		return fmt.Errorf("invalid publish spec %s: IPv6 host addresses are not supported yet: %w", spec, errdefs.ErrNotImplemented)
	}
	switch parts := strings.Split(rest, ":"); len(parts) {
	case 1:
		ctrPart = parts[0]
	case 2:
		hostPart, ctrPart = parts[0], parts[1]
	case 3:
		ip, hostPart, ctrPart = parts[0], parts[1], parts[2]
	default:
		return fmt.Errorf("invalid publish spec %s: use [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]: %w", spec, inv)
	}
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return fmt.Errorf("invalid ip address: %s: %w", ip, inv)
		}
		if !a.Is4() {
			return fmt.Errorf("invalid ip address %s: berth publishes on IPv4 addresses only: %w", ip, errdefs.ErrNotImplemented)
		}
	}
	if ctrPart == "" {
		return fmt.Errorf("no port specified: %s<empty>: %w", spec, inv)
	}
	clo, chi, err := parsePortRange(ctrPart)
	if err != nil {
		return fmt.Errorf("invalid containerPort: %s: %w", ctrPart, inv)
	}
	var hlo, hhi uint16
	if hostPart != "" {
		if hlo, hhi, err = parsePortRange(hostPart); err != nil {
			return fmt.Errorf("invalid hostPort: %s: %w", hostPart, inv)
		}
	}
	n := chi - clo + 1
	if hostPart != "" && hhi-hlo+1 != n && n != 1 {
		return fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s: %w", ctrPart, hostPart, inv)
	}
	for i := uint16(0); i < n; i++ {
		key := strconv.Itoa(int(clo+i)) + "/" + proto
		b := PortBinding{HostIp: ip}
		switch {
		case hostPart == "":
		case n == 1 && hhi != hlo: // one container port, a range of host ports
			b.HostPort = fmt.Sprintf("%d-%d", hlo, hhi)
		default:
			b.HostPort = strconv.Itoa(int(hlo + i))
		}
		if !slices.Contains(pm[key], b) {
			pm[key] = append(pm[key], b)
		}
		if !slices.Contains(*exposed, key) {
			*exposed = append(*exposed, key)
		}
	}
	return nil
}

// parsePortRange reads "80" or "8000-8010".
func parsePortRange(s string) (uint16, uint16, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePort(lo)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return a, a, nil
	}
	b, err := parsePort(hi)
	if err != nil || b < a {
		return 0, 0, errors.New("bad range")
	}
	return a, b, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("bad port")
	}
	return uint16(n), nil
}

// ParseExpose reads --expose values: PORT[-END][/PROTO].
func ParseExpose(specs []string) ([]string, error) {
	var out []string
	for _, spec := range specs {
		p, proto, _ := strings.Cut(spec, "/")
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return nil, fmt.Errorf("invalid proto: %s: %w", proto, errdefs.ErrInvalidArgument)
		}
		lo, hi, err := parsePortRange(p)
		if err != nil {
			return nil, fmt.Errorf("invalid range format for --expose: %s: %w", spec, errdefs.ErrInvalidArgument)
		}
		for i := int(lo); i <= int(hi); i++ {
			out = append(out, strconv.Itoa(i)+"/"+proto)
		}
	}
	return out, nil
}

// splitPortKey reads "80/tcp".
func splitPortKey(key string) (uint16, string, bool) {
	p, proto, _ := strings.Cut(key, "/")
	if proto == "" {
		proto = "tcp"
	}
	n, err := parsePort(p)
	return n, proto, err == nil
}

// wantedPort is one port to publish, before its host port is chosen.
type wantedPort struct {
	key            string // "80/tcp"
	proto          string
	ctrPort        uint16
	hostIP         netip.Addr
	hostLo, hostHi uint16 // 0, 0: any free port
}

// wantedPorts lists what the container publishes: its PortBindings and,
// with -P, every exposed port not bound otherwise, on any free host
// port. defaultIP is the host address of bindings that name none.
func wantedPorts(c *Container, defaultIP netip.Addr) ([]wantedPort, error) {
	var out []wantedPort
	keys := make([]string, 0, len(c.HostConfig.PortBindings))
	for k := range c.HostConfig.PortBindings {
		keys = append(keys, k)
	}
	if c.HostConfig.PublishAllPorts {
		for k := range c.Config.ExposedPorts {
			if _, ok := c.HostConfig.PortBindings[k]; !ok {
				keys = append(keys, k)
			}
		}
	}
	slices.SortFunc(keys, comparePortKeys)
	for _, k := range keys {
		port, proto, ok := splitPortKey(k)
		if !ok {
			return nil, fmt.Errorf("invalid port %q: %w", k, errdefs.ErrInvalidArgument)
		}
		if proto != "tcp" && proto != "udp" {
			continue // sctp, exposed by an image: berth does not publish it
		}
		bindings := c.HostConfig.PortBindings[k]
		if len(bindings) == 0 {
			bindings = []PortBinding{{}}
		}
		for _, b := range bindings {
			w := wantedPort{key: k, proto: proto, ctrPort: port, hostIP: defaultIP}
			if b.HostIp != "" {
				a, err := netip.ParseAddr(b.HostIp)
				if err != nil || !a.Is4() {
					return nil, fmt.Errorf("invalid host address %q for port %s: use an IPv4 address: %w", b.HostIp, k, errdefs.ErrInvalidArgument)
				}
				w.hostIP = a
			}
			if b.HostPort != "" {
				lo, hi, err := parsePortRange(b.HostPort)
				if err != nil {
					return nil, fmt.Errorf("invalid hostPort: %s: %w", b.HostPort, errdefs.ErrInvalidArgument)
				}
				w.hostLo, w.hostHi = lo, hi
			}
			out = append(out, w)
		}
	}
	return out, nil
}

// comparePortKeys orders "80/tcp" keys by number, then protocol.
func comparePortKeys(a, b string) int {
	pa, ta, _ := splitPortKey(a)
	pb, tb, _ := splitPortKey(b)
	if pa != pb {
		return int(pa) - int(pb)
	}
	return strings.Compare(ta, tb)
}

// portInUseError is Docker's message for a host port that is taken,
// with who holds it when berth knows.
func portInUseError(hostIP netip.Addr, port uint16, why string) error {
	if !hostIP.IsValid() {
		hostIP = netip.IPv4Unspecified()
	}
	msg := fmt.Sprintf("Bind for %s failed: port is already allocated", netip.AddrPortFrom(hostIP, port))
	if why != "" {
		msg += " (" + why + ")"
	}
	return fmt.Errorf("%s: %w", msg, errdefs.ErrConflict)
}

// probePort checks that a host process does not hold the port, by
// binding it for a moment. Port 0 asks the kernel for a free ephemeral
// port, which it returns. TCP binds with SO_REUSEADDR, so that only a
// listener or a bound socket counts, not connections in TIME_WAIT.
func probePort(proto string, ip netip.Addr, port uint16) (uint16, error) {
	fd, port, err := bindPort(proto, ip, port)
	if err != nil {
		return 0, err
	}
	unix.Close(fd)
	return port, nil
}

// bindPort binds a socket of proto to ip:port (port 0: one the kernel
// picks) and returns it with the port; probePort and holdPorts share it.
func bindPort(proto string, ip netip.Addr, port uint16) (int, uint16, error) {
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	typ := unix.SOCK_STREAM
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, os.NewSyscallError("socket", err)
	}
	if typ == unix.SOCK_STREAM {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port), Addr: ip.As4()}); err != nil {
		unix.Close(fd)
		switch err {
		case unix.EADDRINUSE:
			return -1, 0, portInUseError(ip, port, "a host process uses it")
		case unix.EADDRNOTAVAIL:
			return -1, 0, fmt.Errorf("Bind for %s failed: %s is not an address of this host: %w", netip.AddrPortFrom(ip, port), ip, errdefs.ErrInvalidArgument)
		}
		return -1, 0, fmt.Errorf("Bind for %s failed: %w", netip.AddrPortFrom(ip, port), os.NewSyscallError("bind", err))
	}
	if port != 0 {
		return fd, port, nil
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, os.NewSyscallError("getsockname", err)
	}
	return fd, uint16(sa.(*unix.SockaddrInet4).Port), nil
}

// maxHeldPorts bounds the sockets held for one container: a published
// range of thousands of ports would otherwise cost as many descriptors
// in its monitor (Docker's docker-proxy costs a process per port). Past
// it the ports are published all the same, only not held.
const maxHeldPorts = 512

// holdPorts binds a socket to each published host port, for the
// container's monitor to keep while the container runs: a host process
// that starts later then fails to bind the port (EADDRINUSE) instead of
// binding it and never seeing a connection, every one going to the
// container through DNAT; as Docker's docker-proxy holds the ports it
// publishes. Nothing reaches these sockets while the DNAT rules are in
// place. A TCP one is bound without SO_REUSEADDR and does not listen:
// that already refuses every other bind of the port (the kernel lets two
// sockets share a port only when both ask to), and were the rules gone
// (a flushed firewall) a client gets "connection refused" rather than a
// connection that hangs in a backlog nobody accepts. Only when that bind
// fails (sockets in TIME_WAIT on the port, which SO_REUSEADDR ignores)
// does it fall back to SO_REUSEADDR and listening, which holds the port
// as well. On error every socket made is closed.
func holdPorts(ports []nft.Port) (fds []int, err error) {
	if len(ports) > maxHeldPorts {
		return nil, nil
	}
	defer func() {
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			fds = nil
		}
	}()
	for _, p := range ports {
		fd, err := holdTCPPort(p)
		if err != nil {
			return fds, err
		}
		if fd < 0 {
			if fd, _, err = bindPort(p.Proto, p.HostIP, p.HostPort); err != nil {
				return fds, err
			}
			if p.Proto != "udp" {
				if err := unix.Listen(fd, 1); err != nil {
					unix.Close(fd)
					return fds, fmt.Errorf("hold host port %d: %w", p.HostPort, os.NewSyscallError("listen", err))
				}
			}
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// holdTCPPort binds a TCP socket to p's host port without SO_REUSEADDR
// (see holdPorts), or returns -1 when p is UDP or that bind fails; the
// caller then binds the usual way.
func holdTCPPort(p nft.Port) (int, error) {
	if p.Proto == "udp" {
		return -1, nil
	}
	ip := p.HostIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(p.HostPort), Addr: ip.As4()}); err != nil {
		unix.Close(fd)
		return -1, nil
	}
	return fd, nil
}

// choosePorts gives every wanted port a host port: a fixed one if
// neither berth (held, whose holders describe names) nor a host process
// holds it, else the first free one of its range, else one the kernel
// picks from the ephemeral range; and never one this container takes
// twice.
func choosePorts(ws []wantedPort, held map[nft.Port]string, describe func(id string) string) ([]nft.Port, error) {
	var out []nft.Port
	holder := func(p nft.Port) (string, bool) {
		for h, id := range held {
			if overlaps(h, p) {
				return id, true
			}
		}
		for _, q := range out {
			if overlaps(q, p) {
				return "", true
			}
		}
		return "", false
	}
	for _, w := range ws {
		p := nft.Port{Proto: w.proto, HostIP: w.hostIP, ContainerPort: w.ctrPort}
		switch {
		case w.hostLo != 0 && w.hostLo == w.hostHi:
			p.HostPort = w.hostLo
			if id, taken := holder(p); taken {
				why := "published twice by this container"
				if id != "" {
					why = describe(id)
				}
				return nil, portInUseError(w.hostIP, w.hostLo, why)
			}
			if _, err := probePort(w.proto, w.hostIP, w.hostLo); err != nil {
				return nil, err
			}
		case w.hostLo != 0:
			for port := int(w.hostLo); port <= int(w.hostHi) && p.HostPort == 0; port++ {
				q := p
				q.HostPort = uint16(port)
				if _, taken := holder(q); taken {
					continue
				}
				if _, err := probePort(w.proto, w.hostIP, uint16(port)); err == nil {
					p.HostPort = uint16(port)
				}
			}
			if p.HostPort == 0 {
				return nil, fmt.Errorf("Bind for %s:%d-%d failed: every port of the range is already allocated: %w", w.hostIP, w.hostLo, w.hostHi, errdefs.ErrConflict)
			}
		default:
			for try := 0; try < 64 && p.HostPort == 0; try++ {
				port, err := probePort(w.proto, w.hostIP, 0)
				if err != nil {
					return nil, err
				}
				q := p
				q.HostPort = port
				if _, taken := holder(q); !taken {
					p.HostPort = port
				}
			}
			if p.HostPort == 0 {
				return nil, fmt.Errorf("no free host port for %s on %s: %w", w.key, w.hostIP, errdefs.ErrUnavailable)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// overlaps is nft's rule for two host sides that clash: same protocol
// and port, and the same address or either one every address.
func overlaps(a, b nft.Port) bool {
	ua := !a.HostIP.IsValid() || a.HostIP.IsUnspecified()
	ub := !b.HostIP.IsValid() || b.HostIP.IsUnspecified()
	return a.Proto == b.Proto && a.HostPort == b.HostPort && (a.HostIP == b.HostIP || ua || ub)
}

// portMap is the published ports as inspect and ps show them, with the
// exposed ports that are not published mapped to nil.
// recordedPorts is the inverse of portMap: the published ports of a
// running container as its record holds them, with the address of its
// first network (where setupNetwork points them), for restoreFirewall.
func recordedPorts(c *Container) []nft.Port {
	order := networkOrder(c)
	if len(order) == 0 {
		return nil
	}
	es := c.NetworkSettings.Networks[order[0]]
	if es == nil {
		return nil
	}
	ctrIP, err := netip.ParseAddr(es.IPAddress)
	if err != nil {
		return nil
	}
	var out []nft.Port
	for key, bindings := range c.NetworkSettings.Ports {
		port, proto, ok := splitPortKey(key)
		if !ok {
			continue
		}
		for _, b := range bindings {
			hostIP, err1 := netip.ParseAddr(b.HostIp)
			hostPort, err2 := strconv.ParseUint(b.HostPort, 10, 16)
			if err1 != nil || err2 != nil || hostPort == 0 {
				continue
			}
			out = append(out, nft.Port{Proto: proto, HostIP: hostIP, HostPort: uint16(hostPort), ContainerIP: ctrIP, ContainerPort: port})
		}
	}
	return out
}

func portMap(c *Container, ports []nft.Port) PortMap {
	pm := PortMap{}
	for k := range c.Config.ExposedPorts {
		pm[k] = nil
	}
	for _, p := range ports {
		key := strconv.Itoa(int(p.ContainerPort)) + "/" + p.Proto
		ip := "0.0.0.0"
		if p.HostIP.IsValid() {
			ip = p.HostIP.String()
		}
		pm[key] = append(pm[key], PortBinding{HostIp: ip, HostPort: strconv.Itoa(int(p.HostPort))})
	}
	return pm
}

// publishesPorts reports whether the container asks for published ports
// (whether or not it runs), so removal knows to look for its rules.
func (c *Container) publishesPorts() bool {
	return len(c.HostConfig.PortBindings) > 0 || (c.HostConfig.PublishAllPorts && len(c.Config.ExposedPorts) > 0)
}
