package network

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/errdefs"
)

// EndpointRequest asks for a container's attachment to a network.
type EndpointRequest struct {
	ContainerID string // required; one endpoint per container and network
	Name        string // the container's name
	Aliases     []string
	// IP is the address the container asks for (--ip); zero means the
	// next free one.
	IP netip.Addr
	// MAC is the hardware address the container asks for
	// (--mac-address); empty means one derived from the IP.
	MAC string
	// DNS and DNSSearch are the container's --dns and --dns-search, for
	// the DNS server (Endpoint.DNS).
	DNS, DNSSearch []string
}

// Allocate attaches a container to the network ref (name, ID or ID
// prefix): it gives it an address (req.IP, or the next free one) and
// records the endpoint, in one write transaction, so no two callers, in
// one process or many, ever get the same address.
//
// Dynamic addresses come from IPRange when the network has one, else from
// the whole subnet, never the network, broadcast or gateway address.
// They are handed out in turn after the last one given (Docker's serial
// allocation), so an address a removed container released is reused only
// once the others are taken: a neighbour's ARP cache may still hold the
// old owner's MAC.
//
// Host and none networks record the endpoint without an address.
func (m *Manager) Allocate(ref string, req EndpointRequest) (*Endpoint, error) {
	if req.ContainerID == "" {
		return nil, fmt.Errorf("allocate an address: no container ID: %w", errdefs.ErrInvalidArgument)
	}
	if req.MAC != "" {
		hw, err := net.ParseMAC(req.MAC)
		if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
			return nil, fmt.Errorf("invalid MAC address %s: use a unicast Ethernet address such as 02:42:ac:11:00:02: %w", req.MAC, errdefs.ErrInvalidArgument)
		}
		req.MAC = hw.String()
	}
	epID, err := randomID()
	if err != nil {
		return nil, err
	}
	var out *Endpoint
	err = m.db.Update(func(tx *bolt.Tx) error {
		rec, err := lookup(tx, ref)
		if err != nil {
			return err
		}
		eb, err := endpointBucket(tx, rec.ID, true)
		if err != nil {
			return err
		}
		eps, err := decodeEndpoints(eb)
		if err != nil {
			return err
		}
		for _, e := range eps {
			if e.ContainerID == req.ContainerID {
				name := req.Name
				if name == "" {
					name = req.ContainerID
				}
				return fmt.Errorf("endpoint with name %s already exists in network %s: %w", name, rec.Name, errdefs.ErrConflict)
			}
		}
		ep := &Endpoint{ID: epID, NetworkID: rec.ID, ContainerID: req.ContainerID, Name: req.Name, Aliases: slices.Clone(req.Aliases), MAC: req.MAC,
			DNS: slices.Clone(req.DNS), DNSSearch: slices.Clone(req.DNSSearch)}
		if rec.Driver == DriverBridge {
			if !rec.Subnet.Addr().Is4() {
				return fmt.Errorf("network %s has no IPv4 subnet in its record: remove and re-create it: %w", rec.Name, errdefs.ErrFailedPrecondition)
			}
			ip, err := rec.pick(eps, req.IP)
			if err != nil {
				return err
			}
			if !req.IP.IsValid() {
				rec.LastIP = ip
				if err := putNetwork(tx, rec); err != nil {
					return err
				}
			}
			ep.Address = netip.PrefixFrom(ip, rec.Subnet.Bits())
			if !rec.Internal {
				ep.Gateway = rec.Gateway
			}
			if ep.MAC == "" {
				ep.MAC = macFromIP(ip)
			}
		} else if req.IP.IsValid() {
			return fmt.Errorf("network %s has no IP addresses: --ip needs a bridge network: %w", rec.Name, errdefs.ErrInvalidArgument)
		}
		data, err := json.Marshal(ep)
		if err != nil {
			return err
		}
		out = ep
		return eb.Put([]byte(ep.ContainerID), data)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pick chooses the address for a new endpoint of n, whose endpoints are
// eps: want if it is valid and free, else the next free one.
func (n *record) pick(eps []*Endpoint, want netip.Addr) (netip.Addr, error) {
	used := make(map[netip.Addr]string, len(eps)+1)
	for _, e := range eps {
		if e.Address.IsValid() {
			used[e.IP()] = e.ContainerID
		}
	}
	if n.Gateway.IsValid() {
		used[n.Gateway] = ""
	}
	first, last := usable(n.Subnet)
	if want.IsValid() {
		want = want.Unmap()
		switch {
		case n.Name == NameBridge:
			return netip.Addr{}, fmt.Errorf("user specified IP address is supported on user defined networks only: %w", errdefs.ErrInvalidArgument)
		case n.SubnetAuto:
			return netip.Addr{}, fmt.Errorf("user specified IP address is supported only when connecting to networks with user configured subnets: %w", errdefs.ErrInvalidArgument)
		case !n.Subnet.Contains(want):
			return netip.Addr{}, fmt.Errorf("no configured subnet or ip-range contain the IP address %s: %w", want, errdefs.ErrInvalidArgument)
		case want.Less(first) || last.Less(want):
			return netip.Addr{}, fmt.Errorf("invalid address %s: it is the network or broadcast address of %s: %w", want, n.Subnet, errdefs.ErrInvalidArgument)
		}
		if holder, ok := used[want]; ok {
			if holder == "" {
				return netip.Addr{}, fmt.Errorf("address already in use: %s is the gateway of network %s: %w", want, n.Name, errdefs.ErrConflict)
			}
			return netip.Addr{}, fmt.Errorf("address already in use: %s is held by container %.12s on network %s: %w", want, holder, n.Name, errdefs.ErrConflict)
		}
		return want, nil
	}
	if n.IPRange.IsValid() {
		rf, rl := n.IPRange.Masked().Addr(), lastAddr(n.IPRange)
		if first.Less(rf) {
			first = rf
		}
		if rl.Less(last) {
			last = rl
		}
	}
	lo, hi := u32(first), u32(last)
	if lo > hi {
		return netip.Addr{}, n.exhausted()
	}
	// Serial: start after the last address handed out, wrap around once.
	start := lo
	if n.LastIP.IsValid() && n.LastIP.Is4() {
		if l := u32(n.LastIP); l >= lo && l < hi {
			start = l + 1
		}
	}
	size := uint64(hi) - uint64(lo) + 1
	for i := uint64(0); i < size; i++ {
		v := uint32(uint64(lo) + (uint64(start-lo)+i)%size)
		a := addr4(v)
		if _, taken := used[a]; !taken {
			return a, nil
		}
	}
	return netip.Addr{}, n.exhausted()
}

func (n *record) exhausted() error {
	return fmt.Errorf("no available IPv4 addresses on this network's address pools: %s (%s): %w", n.Name, n.ID, errdefs.ErrUnavailable)
}

// usable is the first and last address of p that a host may have: all of
// it but the network and broadcast addresses, except in a /31 (RFC 3021:
// two hosts, no broadcast) or a /32.
func usable(p netip.Prefix) (netip.Addr, netip.Addr) {
	first, last := p.Masked().Addr(), lastAddr(p)
	if p.Bits() <= 30 {
		return first.Next(), last.Prev()
	}
	return first, last
}

// lastAddr is the highest address of the IPv4 prefix p (its broadcast
// address).
func lastAddr(p netip.Prefix) netip.Addr {
	return addr4(u32(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1))
}

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// Release detaches the container from the network ref, freeing its
// address. A container that is not attached, or a network that is gone,
// is no error: removal paths call this after crashes too.
func (m *Manager) Release(ref, containerID string) error {
	return m.db.Update(func(tx *bolt.Tx) error {
		rec, err := lookup(tx, ref)
		if errdefs.IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		eb, err := endpointBucket(tx, rec.ID, false)
		if err != nil || eb == nil {
			return err
		}
		return eb.Delete([]byte(containerID))
	})
}

// ReleaseContainer detaches the container from every network, in one
// transaction: what container removal calls.
func (m *Manager) ReleaseContainer(containerID string) error {
	return m.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketEndpoints)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			return root.Bucket(k).Delete([]byte(containerID))
		})
	})
}

// RenameContainer gives the container's endpoints its new name, which DNS
// resolves from then on (Docker's rename does the same), and reports
// whether it had any.
func (m *Manager) RenameContainer(containerID, name string) (bool, error) {
	changed := false
	err := m.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketEndpoints)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			eb := root.Bucket(k)
			data := eb.Get([]byte(containerID))
			if data == nil {
				return nil
			}
			ep, err := decodeEndpoint(data)
			if err != nil {
				return err
			}
			ep.Name = name
			if data, err = json.Marshal(ep); err != nil {
				return err
			}
			changed = true
			return eb.Put([]byte(containerID), data)
		})
	})
	return changed, err
}

// Endpoints lists the endpoints of the network ref, by container name.
func (m *Manager) Endpoints(ref string) ([]*Endpoint, error) {
	var out []*Endpoint
	err := m.db.View(func(tx *bolt.Tx) error {
		rec, err := lookup(tx, ref)
		if err != nil {
			return err
		}
		eb, err := endpointBucket(tx, rec.ID, false)
		if err != nil {
			return err
		}
		out, err = decodeEndpoints(eb)
		return err
	})
	return out, err
}

// ContainerEndpoints lists the container's endpoints, one per network it
// is attached to, by network ID.
func (m *Manager) ContainerEndpoints(containerID string) ([]*Endpoint, error) {
	var out []*Endpoint
	err := m.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketEndpoints)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			data := root.Bucket(k).Get([]byte(containerID))
			if data == nil {
				return nil
			}
			ep, err := decodeEndpoint(data)
			if err != nil {
				return err
			}
			out = append(out, ep)
			return nil
		})
	})
	return out, err
}

// AllEndpoints maps every network's ID to its endpoints.
func (m *Manager) AllEndpoints() (map[string][]*Endpoint, error) {
	out := map[string][]*Endpoint{}
	err := m.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketEndpoints)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			eps, err := decodeEndpoints(root.Bucket(k))
			if err != nil {
				return err
			}
			if len(eps) > 0 {
				out[string(k)] = eps
			}
			return nil
		})
	})
	return out, err
}

// Sweep releases the endpoints of containers that no longer exist (exists
// says which do), what a crash between a container's removal and its
// Release leaves, and returns how many it released. exists is called
// outside any transaction, so it may read the container records.
func (m *Manager) Sweep(exists func(containerID string) bool) (int, error) {
	all, err := m.AllEndpoints()
	if err != nil {
		return 0, err
	}
	type key struct{ net, ctr, ep string }
	var gone []key
	for netID, eps := range all {
		for _, e := range eps {
			if !exists(e.ContainerID) {
				gone = append(gone, key{netID, e.ContainerID, e.ID})
			}
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	n := 0
	err = m.db.Update(func(tx *bolt.Tx) error {
		n = 0
		for _, g := range gone {
			eb, err := endpointBucket(tx, g.net, false)
			if err != nil || eb == nil {
				continue
			}
			// Only the very endpoint seen: a container that re-attached
			// meanwhile has a new one.
			if data := eb.Get([]byte(g.ctr)); data != nil {
				if ep, err := decodeEndpoint(data); err == nil && ep.ID == g.ep {
					if err := eb.Delete([]byte(g.ctr)); err != nil {
						return err
					}
					n++
				}
			}
		}
		return nil
	})
	return n, err
}

// endpointBucket is the bucket of the network id's endpoints (container
// ID -> JSON), created when create is set; nil when it does not exist.
func endpointBucket(tx *bolt.Tx, id string, create bool) (*bolt.Bucket, error) {
	if !create {
		root := tx.Bucket(bucketEndpoints)
		if root == nil {
			return nil, nil
		}
		return root.Bucket([]byte(id)), nil
	}
	root, err := tx.CreateBucketIfNotExists(bucketEndpoints)
	if err != nil {
		return nil, err
	}
	return root.CreateBucketIfNotExists([]byte(id))
}

func decodeEndpoint(data []byte) (*Endpoint, error) {
	var e Endpoint
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("endpoint record is corrupt: %v", err)
	}
	return &e, nil
}

// decodeEndpoints reads every endpoint of b (nil: none), sorted by
// container name.
func decodeEndpoints(b *bolt.Bucket) ([]*Endpoint, error) {
	var out []*Endpoint
	if b == nil {
		return nil, nil
	}
	err := b.ForEach(func(_, v []byte) error {
		e, err := decodeEndpoint(v)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	slices.SortFunc(out, func(a, b *Endpoint) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ContainerID, b.ContainerID)
	})
	return out, err
}
