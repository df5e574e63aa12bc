package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/network/bridge"
	"github.com/berth-dev/berth/internal/network/dns"
	"github.com/berth-dev/berth/internal/network/nft"
	"github.com/berth-dev/berth/internal/runtime"
)

// The container's networking. See docs/networking.md for the design; in
// short:
//
//	create   the mode is checked, the networks looked up and recorded in
//	         NetworkSettings.Networks (nothing on the kernel side)
//	start    (the monitor's start hook, for every start and restart)
//	         endpoint and address per network (network.Manager.Connect,
//	         which also brings a network's bridge up), a network
//	         namespace pinned at <run-root>/netns/<id>, one veth per
//	         network, DNAT rules for the published ports, /etc/hosts and
//	         /etc/resolv.conf; then the runtime joins the ready namespace.
//	         A failure anywhere undoes all of it.
//	exit     (the exit hook) and rm: rules, namespace (with its veths) and
//	         endpoints go; the default network's bridge goes with its last
//	         endpoint. Each step is idempotent and works from the record
//	         and the run root alone, so rm after a kill -9 of the monitor
//	         leaves nothing either.

// DNS for container names is another process (package dns); these are
// variables so that tests can watch the calls.
var (
	dnsEnsure = dns.Ensure
	dnsNotify = dns.Notify
)

// Network modes other than a network's name.
const (
	modeHost    = "host"
	modeNone    = "none"
	modeBridge  = "bridge"
	modeDefault = "default"
)

// containerMode returns REF of a "container:REF" mode.
func containerMode(mode string) (string, bool) { return strings.CutPrefix(mode, "container:") }

// onBridge reports whether a mode attaches the container to bridge
// networks of its own (the default one or a user network).
func onBridge(mode string) bool {
	_, shared := containerMode(mode)
	return mode != modeHost && mode != modeNone && !shared
}

// netnsPath is where the container's network namespace is pinned while
// it runs on bridge networks.
func (e *Engine) netnsPath(id string) string { return filepath.Join(e.RunRoot, "netns", id) }

func (e *Engine) networks() (*network.Manager, error) {
	if e.Networks == nil {
		return nil, fmt.Errorf("networking is not set up in this engine: %w", errdefs.ErrFailedPrecondition)
	}
	return e.Networks, nil
}

// NetworkOpts are the per-network options of create and run (Docker's
// NetworkingConfig for the network of --network).
type NetworkOpts struct {
	Aliases     []string // --network-alias
	IPv4Address string   // --ip
}

// configureNetwork checks the container's network mode and options at
// create, with Docker's messages, and records the networks to join.
func (e *Engine) configureNetwork(c *Container, o CreateOpts) error {
	hc, no := &c.HostConfig, o.Network
	inv := errdefs.ErrInvalidArgument
	if hc.NetworkMode == "" || hc.NetworkMode == modeDefault {
		hc.NetworkMode = modeBridge
	}
	for _, h := range hc.ExtraHosts {
		if _, _, err := parseExtraHost(h); err != nil {
			return err
		}
	}
	for _, d := range hc.Dns {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("invalid argument %q for \"--dns\" flag: %s is not an ip address: %w", d, d, inv)
		}
	}
	var ip netip.Addr
	if no.IPv4Address != "" {
		a, err := netip.ParseAddr(no.IPv4Address)
		if err != nil || !a.Is4() {
			return fmt.Errorf("invalid IPv4 address: %s: %w", no.IPv4Address, inv)
		}
		ip = a
	}
	c.NetworkSettings = NetworkSettings{Networks: map[string]*EndpointSettings{}}
	if ref, ok := containerMode(hc.NetworkMode); ok {
		switch {
		case ref == "":
			return fmt.Errorf("invalid network mode: container: needs a container name or ID: %w", inv)
		case o.Hostname != "":
			return fmt.Errorf("conflicting options: hostname and the network mode: %w", inv)
		case len(hc.Dns) > 0 || len(hc.DnsSearch) > 0 || len(hc.DnsOptions) > 0:
			return fmt.Errorf("conflicting options: dns and the network mode: %w", inv)
		case len(hc.ExtraHosts) > 0:
			return fmt.Errorf("conflicting options: custom host-to-IP mapping and the network mode: %w", inv)
		case len(hc.PortBindings) > 0 || hc.PublishAllPorts:
			return fmt.Errorf("conflicting options: port publishing and the container type network mode: %w", inv)
		case ip.IsValid() || len(no.Aliases) > 0:
			return fmt.Errorf("conflicting options: network-scoped aliases and IP addresses need a network, not the network of another container: %w", inv)
		case len(hc.Links) > 0:
			return fmt.Errorf("conflicting options: container type network can't be used with links. This would result in undefined behavior: %w", inv)
		}
		target, err := e.Get(ref)
		if err != nil {
			return err
		}
		hc.NetworkMode = "container:" + target.ID
		c.Config.Hostname, c.Config.Domainname = target.Config.Hostname, target.Config.Domainname
		return nil
	}
	m, err := e.networks()
	if err != nil {
		return err
	}
	if _, err := m.EnsureDefault(context.Background()); err != nil {
		return err
	}
	n, err := m.Get(hc.NetworkMode)
	if err != nil {
		return err
	}
	switch n.Driver {
	case network.DriverHost, network.DriverNull:
		hc.PortBindings, hc.PublishAllPorts = nil, false // Docker discards them, with a warning
		if len(hc.Links) > 0 {
			return fmt.Errorf("conflicting options: %s type networking can't be used with links. This would result in undefined behavior: %w", n.Name, inv)
		}
	}
	if hc.Links, err = e.parseLinks(c.Name, hc.Links); err != nil {
		return err
	}
	if n.Driver == network.DriverHost && o.Hostname == "" {
		if h, err := os.Hostname(); err == nil {
			c.Config.Hostname = h // Docker's: the host's network, the host's name
		}
	}
	if (ip.IsValid() || len(no.Aliases) > 0) && (n.Predefined() || n.Driver != network.DriverBridge) {
		if ip.IsValid() {
			return fmt.Errorf("user specified IP address is supported on user defined networks only: %w", inv)
		}
		return fmt.Errorf("network-scoped alias is supported only for containers in user defined networks: %w", inv)
	}
	if ip.IsValid() {
		if n.SubnetAuto {
			return fmt.Errorf("user specified IP address is supported only when connecting to networks with user configured subnets: %w", inv)
		}
		if !n.Subnet.Contains(ip) {
			return fmt.Errorf("no configured subnet or ip-range contain the IP address %s: %w", ip, inv)
		}
	}
	hc.NetworkMode = n.Name
	es := &EndpointSettings{EndpointInfo: EndpointInfo{NetworkID: n.ID, Aliases: slices.Clone(no.Aliases)}}
	if ip.IsValid() {
		es.IPAMConfig = &EndpointIPAMConfig{IPv4Address: ip.String()}
	}
	c.NetworkSettings.Networks[n.Name] = es
	return nil
}

// parseExtraHost reads --add-host NAME:IP (or NAME=IP); IP may be
// host-gateway.
func parseExtraHost(s string) (string, string, error) {
	i := strings.IndexAny(s, "=:")
	if i <= 0 || i == len(s)-1 {
		return "", "", fmt.Errorf("bad format for add-host: %q: use NAME:IP: %w", s, errdefs.ErrInvalidArgument)
	}
	name, ip := s[:i], s[i+1:]
	if ip == "host-gateway" {
		return name, ip, nil
	}
	if _, err := netip.ParseAddr(strings.Trim(ip, "[]")); err != nil {
		return "", "", fmt.Errorf("invalid IP address in add-host: %q: %w", ip, errdefs.ErrInvalidArgument)
	}
	return name, strings.Trim(ip, "[]"), nil
}

// attachment is one network the container is being attached to at start.
type attachment struct {
	name string // key in NetworkSettings.Networks
	net  *network.Network
	ep   *network.Endpoint
	ifc  string // interface in the container
}

// netSetup is what setupNetwork made, for the record and for its undo.
type netSetup struct {
	settings NetworkSettings
	hostname string
	user     bool // attached to a user network: the DNS server serves it
	// held are sockets bound to the published host ports (holdPorts),
	// for the monitor to keep while the container runs.
	held []int
}

// closeHeld closes the held sockets: the monitor has its copies, or the
// start failed.
func (s *netSetup) closeHeld() {
	for _, fd := range s.held {
		unix.Close(fd)
	}
	s.held = nil
}

// setupNetwork attaches a container that is about to start: see the
// comment at the top of this file. On error nothing of it is left.
func (e *Engine) setupNetwork(c *Container) (s *netSetup, err error) {
	s = &netSetup{settings: NetworkSettings{Networks: map[string]*EndpointSettings{}}, hostname: c.Config.Hostname}
	for k, v := range c.NetworkSettings.Networks {
		cp := *v
		cp.clearRuntime()
		s.settings.Networks[k] = &cp
	}
	mode := c.HostConfig.NetworkMode
	if ref, ok := containerMode(mode); ok {
		return s, e.joinContainerNetwork(c, ref, s)
	}
	if !onBridge(mode) {
		if err := e.attachPredefined(c, mode, s); err != nil {
			return nil, err
		}
		if err := e.writeNetFiles(c, s, nil); err != nil {
			e.detachPredefined(c)
			return nil, err
		}
		return s, nil
	}
	m, err := e.networks()
	if err != nil {
		return nil, err
	}
	setup := s
	ctx := context.Background()
	var atts []*attachment
	nsPath := e.netnsPath(c.ID)
	portsAdded := false
	defer func() {
		if err == nil {
			return
		}
		if portsAdded {
			nft.RemovePorts(c.ID)
		}
		setup.closeHeld() // s is nil by now: the error return set it
		bridge.DeleteNetNS(nsPath)
		if len(atts) > 0 {
			ids := make([]string, len(atts))
			for i, a := range atts {
				ids[i] = a.net.ID
			}
			m.Disconnect(context.WithoutCancel(ctx), c.ID, ids...)
		}
	}()

	// Host ports first: a port that is taken fails the start before any
	// kernel work.
	var ports []nft.Port
	if c.publishesPorts() {
		ws, err := wantedPorts(c, netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		held, err := nft.Holders()
		if err != nil {
			return nil, err
		}
		for p, id := range held {
			if id == c.ID {
				delete(held, p) // a previous run's, replaced below
			}
		}
		if ports, err = choosePorts(ws, held, e.portHolder); err != nil {
			return nil, err
		}
		if s.held, err = holdPorts(ports); err != nil {
			return nil, err
		}
	}

	// Endpoints: the network of --network first (it gives the default
	// route), then the others connected while the container was stopped.
	for i, name := range networkOrder(c) {
		es := c.NetworkSettings.Networks[name]
		ref := es.NetworkID
		if ref == "" {
			ref = name
		}
		req := network.EndpointRequest{ContainerID: c.ID, Name: c.Name, Aliases: slices.Clone(es.Aliases),
			DNS: c.HostConfig.Dns, DNSSearch: c.HostConfig.DnsSearch}
		if es.IPAMConfig != nil && es.IPAMConfig.IPv4Address != "" {
			if req.IP, err = netip.ParseAddr(es.IPAMConfig.IPv4Address); err != nil {
				return nil, fmt.Errorf("invalid IPv4 address: %s: %w", es.IPAMConfig.IPv4Address, errdefs.ErrInvalidArgument)
			}
		}
		n, ep, err := e.connect(ctx, m, ref, req)
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("network %s not found: %w", name, errdefs.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		atts = append(atts, &attachment{name: name, net: n, ep: ep, ifc: "eth" + strconv.Itoa(i)})
	}

	e.restoreFirewall(m, c.ID)
	if err := os.MkdirAll(filepath.Dir(nsPath), 0o700); err != nil {
		return nil, err
	}
	if bridge.IsNetNS(nsPath) || fileExists(nsPath) { // a crashed run's
		if err := bridge.DeleteNetNS(nsPath); err != nil {
			return nil, err
		}
	}
	if err := bridge.NewNetNS(nsPath); err != nil {
		return nil, err
	}
	for i, a := range atts {
		be := bridge.Endpoint{Bridge: a.net.Bridge, NetNS: nsPath, IfName: a.ifc, Address: a.ep.Address,
			MAC: a.ep.HardwareAddr(), MTU: a.net.MTU()}
		if i == 0 {
			be.Gateway = a.ep.Gateway
		}
		if _, err := bridge.Attach(be); err != nil {
			return nil, fmt.Errorf("attach to network %s: %w", a.net.Name, err)
		}
	}
	if err := failpoint("network-attached"); err != nil {
		return nil, err
	}
	if len(ports) > 0 {
		if len(atts) == 0 {
			return nil, fmt.Errorf("publish ports: the container is on no network: %w", errdefs.ErrFailedPrecondition)
		}
		for i := range ports {
			ports[i].ContainerIP = atts[0].ep.IP()
		}
		if err := nft.AddPorts(c.ID, ports); err != nil {
			return nil, e.portConflict(c, ports, err)
		}
		portsAdded = true
	}

	s.settings.SandboxKey = nsPath
	s.settings.Ports = portMap(c, ports)
	for _, a := range atts {
		es := s.settings.Networks[a.name]
		es.fill(a.net, a.ep, c)
		es.IfName = a.ifc
		if !a.net.Predefined() {
			s.user = true
		}
	}
	if err := e.setupLinks(c, atts); err != nil {
		return nil, err
	}
	if err := e.writeNetFiles(c, s, atts); err != nil {
		return nil, err
	}
	if err := failpoint("network-ready"); err != nil {
		return nil, err
	}
	if s.user {
		if err := dnsEnsure(e.Root, e.RunRoot); err != nil {
			return nil, fmt.Errorf("start the DNS server of user networks: %w", err)
		}
	}
	return s, nil
}

// restoreFirewall puts berth's firewall rules back when its nftables
// table is gone while its networks are up, as after a firewall reload or
// `nft flush ruleset`, which remove every table: the rules of each
// network whose bridge is up, and the published ports of the running
// containers (self's own come next, from the caller). Without it a lost
// table breaks NAT and every published port in silence until each
// container restarts. It runs at every start on a bridge network, where
// the check is one netlink request (the start has just brought its
// network up, rules included, so the table exists unless something took
// it); the restore is best effort: what fails stays broken, as before.
//
// Besides a missing table, the marker network.FirewallRestoreMarker asks
// for a restore: the network layer leaves it when it had to make the
// table anew for a network (`network create`, or the default network's
// bridge brought back after a prune), since from then on the table
// exists while the other networks' and containers' rules may not.
//
// Each container's ports are re-added under the record store's write
// lock, after checking that the record still says running with ports:
// teardownNetwork clears the record's ports under that lock before it
// removes their rules, so a container on its way out never gets a rule
// back that points at an address already released.
func (e *Engine) restoreFirewall(m *network.Manager, self string) {
	marker := network.FirewallRestoreMarker(e.Root)
	if !fileExists(marker) {
		if ok, err := nft.Exists(); err != nil || ok {
			return
		}
	}
	os.Remove(marker) // before the work: a restore racing this one redoes it, harmlessly
	m.RestoreRules()
	cs, err := e.List()
	if err != nil {
		return
	}
	errUnchanged := errors.New("record unchanged")
	for _, c := range cs {
		if c.ID == self || !c.State.Running || len(recordedPorts(c)) == 0 {
			continue
		}
		e.update(c.ID, func(r *Container) error {
			if ports := recordedPorts(r); r.State.Running && len(ports) > 0 {
				nft.AddPorts(r.ID, ports)
			}
			return errUnchanged // nothing to write
		})
	}
}

// attachPredefined gives a container on the host or none network an
// endpoint there, without an address: what `network inspect host` lists,
// as Docker's does for a running container.
func (e *Engine) attachPredefined(c *Container, mode string, s *netSetup) error {
	if (mode != modeHost && mode != modeNone) || e.Networks == nil {
		return nil
	}
	m, err := e.networks()
	if err != nil {
		return err
	}
	ctx := context.Background()
	n, ep, err := e.connect(ctx, m, mode, network.EndpointRequest{ContainerID: c.ID, Name: c.Name})
	if err != nil {
		return err
	}
	es := s.settings.Networks[mode]
	if es == nil {
		es = &EndpointSettings{}
		s.settings.Networks[mode] = es
	}
	es.fill(n, ep, c)
	return nil
}

// detachPredefined releases what attachPredefined made.
func (e *Engine) detachPredefined(c *Container) {
	if e.Networks != nil {
		e.Networks.Disconnect(context.Background(), c.ID)
	}
}

// record puts what the start gave the container into its record. A
// network connected or disconnected meanwhile keeps its newer entry.
func (s *netSetup) record(ns *NetworkSettings) {
	ns.SandboxKey = s.settings.SandboxKey
	ns.Ports = s.settings.Ports
	for k, v := range s.settings.Networks {
		if _, ok := ns.Networks[k]; ok {
			ns.Networks[k] = v
		}
	}
}

// failpointEnv names a step of the start hook to fail at, so end-to-end
// tests can check that a start that fails half-way leaves nothing. The
// monitor passes it through to its hooks.
const failpointEnv = "BERTH_FAILPOINT"

func failpoint(step string) error {
	if os.Getenv(failpointEnv) == step {
		return fmt.Errorf("failpoint %s: injected failure", step)
	}
	return nil
}

// connect is Manager.Connect, once more after clearing an endpoint that
// a crashed run left (the container's ID is its key). The short ID is a
// DNS name too, as with Docker.
func (e *Engine) connect(ctx context.Context, m *network.Manager, ref string, req network.EndpointRequest) (*network.Network, *network.Endpoint, error) {
	req.Aliases = append(req.Aliases, ShortID(req.ContainerID))
	n, ep, err := m.Connect(ctx, ref, req)
	if errdefs.IsConflict(err) && strings.Contains(err.Error(), "already exists in network") {
		if _, derr := m.Disconnect(ctx, req.ContainerID, ref); derr == nil {
			n, ep, err = m.Connect(ctx, ref, req)
		}
	}
	return n, ep, err
}

// portHolder names the berth container holding a host port, for
// choosePorts' and AddPorts' conflict errors.
func (e *Engine) portHolder(id string) string {
	if other, err := e.Get(id); err == nil {
		return "held by container " + other.Name
	}
	return "held by container " + ShortID(id)
}

// portConflict words AddPorts' conflict (a concurrent start took the
// port after choosePorts looked) as Docker does.
func (e *Engine) portConflict(c *Container, ports []nft.Port, err error) error {
	if !errdefs.IsConflict(err) {
		return err
	}
	for _, p := range ports {
		if id, herr := nft.PortHolder(p); herr == nil && id != "" && id != c.ID {
			return portInUseError(p.HostIP, p.HostPort, e.portHolder(id))
		}
	}
	return err
}

// joinContainerNetwork points the container's bundle at the network
// namespace and the /etc files of the container it shares them with.
func (e *Engine) joinContainerNetwork(c *Container, ref string, s *netSetup) error {
	target, err := e.Get(ref)
	if err != nil {
		return fmt.Errorf("cannot join the network of container %s: %w", ref, err)
	}
	if target.ID == c.ID {
		return fmt.Errorf("cannot join own network: %w", errdefs.ErrInvalidArgument)
	}
	target = e.refresh(target)
	if !target.State.Running || target.State.Pid <= 0 || target.State.Status == StatusRestarting {
		return fmt.Errorf("cannot join network of a non running container: %s: %w", ShortID(target.ID), errdefs.ErrConflict)
	}
	path := target.NetworkSettings.SandboxKey
	if path == "" || !bridge.IsNetNS(path) {
		path = fmt.Sprintf("/proc/%d/ns/net", target.State.Pid)
	}
	s.hostname = target.Config.Hostname
	spec, err := runtime.LoadSpec(e.dir(c.ID))
	if err != nil {
		return err
	}
	setNetNS(spec, path)
	spec.Hostname = target.Config.Hostname
	tdir := e.dir(target.ID)
	for i, m := range spec.Mounts {
		switch m.Destination {
		case "/etc/hosts", "/etc/hostname", "/etc/resolv.conf":
			spec.Mounts[i].Source = filepath.Join(tdir, filepath.Base(m.Destination))
		}
	}
	return writeSpec(e.dir(c.ID), spec)
}

// setNetNS makes the spec join the network namespace at path.
func setNetNS(spec *specs.Spec, path string) {
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = path
			return
		}
	}
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}

func writeSpec(dir string, spec *specs.Spec) error {
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "config.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// teardownNetwork undoes setupNetwork and whatever a crash left of it:
// published ports, the pinned namespace (its veths go first), the
// endpoints (and with the default network's last one, its bridge). Every
// step is idempotent; an error is reported after the other steps ran.
func (e *Engine) teardownNetwork(c *Container) error {
	var errs []error
	if c.publishesPorts() {
		// The record says first, under its lock, that the ports are going:
		// restoreFirewall re-adds only what records hold (see there).
		e.update(c.ID, func(r *Container) error { r.NetworkSettings.Ports = nil; return nil })
		errs = append(errs, nft.RemovePorts(c.ID))
	}
	nsPath := e.netnsPath(c.ID)
	if fileExists(nsPath) {
		errs = append(errs, bridge.DeleteNetNS(nsPath))
	}
	// Bridge modes have endpoints, and host and none one without an
	// address each; container:NAME has none (connect refuses it).
	if _, joined := containerMode(c.HostConfig.NetworkMode); !joined && e.Networks != nil {
		left, err := e.Networks.Disconnect(context.Background(), c.ID)
		errs = append(errs, err)
		if usesUserNetwork(left) {
			errs = append(errs, dnsNotify(e.RunRoot))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up the network of container %s: %w", ShortID(c.ID), err)
	}
	return nil
}

func usesUserNetwork(nets []*network.Network) bool {
	for _, n := range nets {
		if !n.Predefined() {
			return true
		}
	}
	return false
}

// clearRuntime forgets what a run gave the endpoint, keeping what the
// user asked for: what Docker's records keep of a stopped container.
func (es *EndpointSettings) clearRuntime() {
	*es = EndpointSettings{EndpointInfo: EndpointInfo{IPAMConfig: es.IPAMConfig, Links: es.Links, Aliases: es.Aliases,
		DriverOpts: es.DriverOpts, NetworkID: es.NetworkID}}
}

// fill records what the endpoint got.
func (es *EndpointSettings) fill(n *network.Network, ep *network.Endpoint, c *Container) {
	es.NetworkID = n.ID
	es.EndpointID = ep.ID
	es.MacAddress = ep.MAC
	if ep.Address.IsValid() {
		es.IPAddress = ep.IP().String()
		es.IPPrefixLen = ep.Address.Bits()
	}
	if ep.Gateway.IsValid() {
		es.Gateway = ep.Gateway.String()
	}
	if !n.Predefined() {
		es.DNSNames = append(append([]string{c.Name}, es.Aliases...), ShortID(c.ID))
	}
}

// stoppedSettings is the record's NetworkSettings once the container no
// longer runs.
func stoppedSettings(ns NetworkSettings) NetworkSettings {
	out := NetworkSettings{}
	if ns.Networks != nil {
		out.Networks = make(map[string]*EndpointSettings, len(ns.Networks))
		for k, v := range ns.Networks {
			cp := *v
			cp.clearRuntime()
			out.Networks[k] = &cp
		}
	}
	return out
}

// --- /etc/hosts, /etc/hostname, /etc/resolv.conf ---

// writeNetFiles writes the files bind-mounted over /etc/hosts,
// /etc/hostname and /etc/resolv.conf, in place: a running container's
// bind mount holds the inode, so live connects and disconnects rewrite
// them the same way.
func (e *Engine) writeNetFiles(c *Container, s *netSetup, atts []*attachment) error {
	hc := c.HostConfig
	var ips []netip.Addr
	var gw netip.Addr // the gateway of the network with the default route
	user := false
	for _, a := range atts {
		ips = append(ips, a.ep.IP())
		if !gw.IsValid() {
			gw, user = a.net.Gateway, !a.net.Predefined()
		}
	}
	// host-gateway is the host's address as the container sees it.
	hostGW := func() netip.Addr {
		switch {
		case hc.NetworkMode == modeHost:
			return netip.MustParseAddr("127.0.0.1")
		case gw.IsValid():
			return gw
		case e.Networks != nil:
			if n, err := e.Networks.Get(network.NameBridge); err == nil {
				return n.Gateway
			}
		}
		return netip.Addr{}
	}
	dnsFlags := len(hc.Dns)+len(hc.DnsSearch)+len(hc.DnsOptions) > 0
	var hosts, resolv string
	switch {
	case hc.NetworkMode == modeHost:
		// The host's own files, as Docker gives them, with the flags.
		h, _ := os.ReadFile("/etc/hosts")
		hosts = string(h) + extraHostLines(hc.ExtraHosts, hostGW)
		r := readHostResolv()
		resolv = string(r)
		if dnsFlags {
			resolv = resolvConf(r, hc, netip.Addr{}, true)
		}
	case hc.NetworkMode == modeNone:
		hosts = hostsFile(c, nil, hostGW)
		if dnsFlags { // no network, no resolver, unless asked for
			resolv = resolvConf(nil, hc, netip.Addr{}, false)
		}
	case user:
		hosts = hostsFile(c, ips, hostGW) + e.linkHosts(c)
		resolv = resolvConf(readHostResolv(), hc, gw, false)
	default:
		hosts = hostsFile(c, ips, hostGW) + e.linkHosts(c)
		resolv = resolvConf(readHostResolv(), hc, netip.Addr{}, false)
	}
	dir := e.dir(c.ID)
	for name, content := range map[string]string{"hostname": s.hostname + "\n", "hosts": hosts, "resolv.conf": resolv} {
		if err := writeInPlace(filepath.Join(dir, name), content); err != nil {
			return err
		}
	}
	return nil
}

// writeInPlace replaces a file's content without replacing the file.
func writeInPlace(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(content)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// hostsFile is Docker's /etc/hosts: localhost, the IPv6 names, the
// --add-host entries, and the container's own addresses with its
// hostname.
func hostsFile(c *Container, ips []netip.Addr, hostGW func() netip.Addr) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	b.WriteString(extraHostLines(c.HostConfig.ExtraHosts, hostGW))
	names := c.Config.Hostname
	if c.Config.Domainname != "" {
		names = c.Config.Hostname + "." + c.Config.Domainname + "\t" + c.Config.Hostname
	}
	for _, ip := range ips {
		fmt.Fprintf(&b, "%s\t%s\n", ip, names)
	}
	return b.String()
}

// extraHostLines are the --add-host entries, host-gateway resolved.
func extraHostLines(extra []string, hostGW func() netip.Addr) string {
	var b strings.Builder
	for _, h := range extra {
		name, ip, err := parseExtraHost(h)
		if err != nil {
			continue
		}
		if ip == "host-gateway" {
			gw := hostGW()
			if !gw.IsValid() {
				continue
			}
			ip = gw.String()
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, name)
	}
	return b.String()
}

func readHostResolv() []byte {
	data, _ := os.ReadFile("/etc/resolv.conf")
	return data
}

// Docker's fallback when the host has no nameserver a container can
// reach (only loopback ones): Google's public resolvers. Writing them
// into the file sends nothing anywhere.
var fallbackDNS = []string{"8.8.8.8", "8.8.4.4"}

// resolvConf is a container's /etc/resolv.conf from the host's (host)
// and its --dns, --dns-search and --dns-option: each replaces its part of
// the host's. On a user network the nameserver is the network's gateway,
// where berth's DNS server answers for container names and forwards the
// rest. Loopback nameservers of the host are dropped (they are not
// reachable from the container's namespace), with Docker's fallback when
// none is left; asIs keeps them (host network).
func resolvConf(host []byte, hc HostConfig, gateway netip.Addr, asIs bool) string {
	var ns, search, options []string
	for _, line := range strings.Split(string(host), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			a, err := netip.ParseAddr(strings.Split(f[1], "%")[0])
			if err != nil || (!asIs && a.IsLoopback()) {
				continue
			}
			ns = append(ns, f[1])
		case "search", "domain":
			search = f[1:]
		case "options":
			options = append(options, f[1:]...)
		}
	}
	if len(hc.Dns) > 0 {
		ns = hc.Dns
	} else if len(ns) == 0 && !asIs {
		ns = fallbackDNS
	}
	if gateway.IsValid() {
		ns = []string{gateway.String()}
	}
	if len(hc.DnsSearch) > 0 {
		search = hc.DnsSearch
		if len(search) == 1 && search[0] == "." {
			search = nil
		}
	}
	if len(hc.DnsOptions) > 0 {
		options = hc.DnsOptions
	}
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "nameserver %s\n", n)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.String()
}

// --- network connect and disconnect ---

// ConnectNetwork attaches container ref to network netRef (`network
// connect`): a running container gets a new interface at once, without a
// default route when it has one already; a stopped one is attached at
// its next start.
func (e *Engine) ConnectNetwork(ref, netRef string, o NetworkOpts) (err error) {
	c, err := e.Refresh(ref)
	if err != nil {
		return err
	}
	m, err := e.networks()
	if err != nil {
		return err
	}
	if _, err := m.EnsureDefault(context.Background()); err != nil {
		return err
	}
	n, err := m.Get(netRef)
	if err != nil {
		return err
	}
	mode := c.HostConfig.NetworkMode
	_, shared := containerMode(mode)
	switch {
	case n.Driver == network.DriverHost || mode == modeHost:
		return fmt.Errorf("container cannot be disconnected from host network or connected to host network: %w", errdefs.ErrConflict)
	case n.Driver == network.DriverNull || mode == modeNone:
		return fmt.Errorf("container cannot be connected to multiple networks with one of the networks in private (none) mode: %w", errdefs.ErrConflict)
	case shared:
		return fmt.Errorf("container sharing network namespace with another container or host cannot be connected to any other network: %w", errdefs.ErrConflict)
	}
	if _, ok := c.NetworkSettings.Networks[n.Name]; ok {
		return fmt.Errorf("endpoint with name %s already exists in network %s: %w", c.Name, n.Name, errdefs.ErrConflict)
	}
	es := &EndpointSettings{EndpointInfo: EndpointInfo{NetworkID: n.ID, Aliases: slices.Clone(o.Aliases)}}
	var ip netip.Addr
	if o.IPv4Address != "" {
		if ip, err = netip.ParseAddr(o.IPv4Address); err != nil || !ip.Is4() {
			return fmt.Errorf("invalid IPv4 address: %s: %w", o.IPv4Address, errdefs.ErrInvalidArgument)
		}
		es.IPAMConfig = &EndpointIPAMConfig{IPv4Address: ip.String()}
	}
	if n.Predefined() && len(o.Aliases) > 0 {
		return fmt.Errorf("network-scoped alias is supported only for containers in user defined networks: %w", errdefs.ErrInvalidArgument)
	}
	running := c.State.Status == StatusRunning || c.State.Status == StatusPaused
	if !running || c.NetworkSettings.SandboxKey == "" {
		if ip.IsValid() && (n.Predefined() || n.SubnetAuto) {
			return fmt.Errorf("user specified IP address is supported only when connecting to networks with user configured subnets: %w", errdefs.ErrInvalidArgument)
		}
		_, err := e.update(c.ID, func(c *Container) error {
			if c.NetworkSettings.Networks == nil {
				c.NetworkSettings.Networks = map[string]*EndpointSettings{}
			}
			if _, ok := c.NetworkSettings.Networks[n.Name]; ok {
				return fmt.Errorf("endpoint with name %s already exists in network %s: %w", c.Name, n.Name, errdefs.ErrConflict)
			}
			c.NetworkSettings.Networks[n.Name] = es
			return nil
		})
		return err
	}

	ctx := context.Background()
	req := network.EndpointRequest{ContainerID: c.ID, Name: c.Name, Aliases: slices.Clone(o.Aliases), IP: ip,
		DNS: c.HostConfig.Dns, DNSSearch: c.HostConfig.DnsSearch}
	n, ep, err := e.connect(ctx, m, n.ID, req)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.Disconnect(context.WithoutCancel(ctx), c.ID, n.ID)
		}
	}()
	used := map[string]bool{}
	hasGateway := false
	for _, other := range c.NetworkSettings.Networks {
		used[other.IfName] = true
		hasGateway = hasGateway || other.Gateway != ""
	}
	ifc := "eth0"
	for i := 1; used[ifc]; i++ {
		ifc = "eth" + strconv.Itoa(i)
	}
	be := bridge.Endpoint{Bridge: n.Bridge, NetNS: c.NetworkSettings.SandboxKey, IfName: ifc, Address: ep.Address,
		MAC: ep.HardwareAddr(), MTU: n.MTU()}
	if !hasGateway {
		be.Gateway = ep.Gateway
	}
	if _, err := bridge.Attach(be); err != nil {
		return fmt.Errorf("attach to network %s: %w", n.Name, err)
	}
	defer func() {
		if err != nil {
			bridge.DetachNS(be.NetNS, ifc)
		}
	}()
	es.fill(n, ep, c)
	es.IfName = ifc
	if c, err = e.update(c.ID, func(c *Container) error {
		if c.NetworkSettings.Networks == nil {
			c.NetworkSettings.Networks = map[string]*EndpointSettings{}
		}
		c.NetworkSettings.Networks[n.Name] = es
		return nil
	}); err != nil {
		return err
	}
	if err := e.writeHosts(c); err != nil {
		return err
	}
	if !n.Predefined() {
		return dnsEnsure(e.Root, e.RunRoot)
	}
	return nil
}

// DisconnectNetwork detaches container ref from network netRef (`network
// disconnect`): a running container loses the interface at once. With
// force, a container that no longer exists loses its endpoint too.
func (e *Engine) DisconnectNetwork(ref, netRef string, force bool) error {
	m, err := e.networks()
	if err != nil {
		return err
	}
	ctx := context.Background()
	n, err := m.Get(netRef)
	if err != nil {
		return err
	}
	c, err := e.Refresh(ref)
	if errdefs.IsNotFound(err) && force {
		eps, lerr := m.Endpoints(n.ID)
		if lerr != nil {
			return lerr
		}
		for _, ep := range eps {
			if ep.Name == ref || strings.HasPrefix(ep.ContainerID, ref) {
				_, err := m.Disconnect(ctx, ep.ContainerID, n.ID)
				return err
			}
		}
		return err
	}
	if err != nil {
		return err
	}
	if n.Driver == network.DriverHost || c.HostConfig.NetworkMode == modeHost {
		return fmt.Errorf("container cannot be disconnected from host network or connected to host network: %w", errdefs.ErrConflict)
	}
	es, ok := c.NetworkSettings.Networks[n.Name]
	if !ok {
		return fmt.Errorf("container %s is not connected to network %s: %w", c.ID, n.Name, errdefs.ErrNotFound)
	}
	primary := n.Name == c.HostConfig.NetworkMode
	if es.IfName != "" && c.NetworkSettings.SandboxKey != "" {
		if primary && c.publishesPorts() {
			// Published ports lead to this address only.
			if err := nft.RemovePorts(c.ID); err != nil {
				return err
			}
		}
		if err := bridge.DetachNS(c.NetworkSettings.SandboxKey, es.IfName); err != nil {
			return err
		}
	}
	if _, err := m.Disconnect(ctx, c.ID, n.ID); err != nil {
		return err
	}
	c, err = e.update(c.ID, func(c *Container) error {
		delete(c.NetworkSettings.Networks, n.Name)
		if primary && es.IfName != "" {
			c.NetworkSettings.Ports = nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.NetworkSettings.SandboxKey != "" {
		if err := e.writeHosts(c); err != nil {
			return err
		}
	}
	if !n.Predefined() {
		return dnsNotify(e.RunRoot)
	}
	return nil
}

// writeHosts rewrites a running container's /etc/hosts after a connect
// or disconnect, with its addresses on every network, the one with the
// default route first.
func (e *Engine) writeHosts(c *Container) error {
	var ips []netip.Addr
	var gw netip.Addr
	for _, name := range networkOrder(c) {
		es := c.NetworkSettings.Networks[name]
		if a, err := netip.ParseAddr(es.IPAddress); err == nil {
			ips = append(ips, a)
		}
		if g, err := netip.ParseAddr(es.Gateway); err == nil && !gw.IsValid() {
			gw = g
		}
	}
	return writeInPlace(filepath.Join(e.dir(c.ID), "hosts"), hostsFile(c, ips, func() netip.Addr { return gw })+e.linkHosts(c))
}

// networkOrder lists the container's networks, the network of --network
// first (it gives the default route and eth0), then by name.
func networkOrder(c *Container) []string {
	mode := c.HostConfig.NetworkMode
	names := make([]string, 0, len(c.NetworkSettings.Networks))
	for k := range c.NetworkSettings.Networks {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == mode:
			return -1
		case b == mode:
			return 1
		}
		return strings.Compare(a, b)
	})
	return names
}
