package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/metadb"
)

// Buckets of metadata.db (see doc.go).
var (
	bucketNetworks  = []byte("networks")         // ID -> JSON record
	bucketNames     = []byte("networkNames")     // name -> ID
	bucketEndpoints = []byte("networkEndpoints") // ID -> bucket: container ID -> JSON endpoint
)

// record is a network as stored: the Network and the IPAM cursor.
type record struct {
	Network
	// LastIP is the address last handed out dynamically: the next
	// allocation starts after it (serial allocation, see Allocate).
	LastIP netip.Addr `json:",omitzero"`
}

// Manager keeps the networks of one engine root: their records, their
// addresses and their endpoints, in metadata.db. It holds no state in
// memory: any number of Managers, in one process or several, may share a
// root.
type Manager struct {
	db            *metadb.DB
	driver        Driver
	reserved      func() ([]netip.Prefix, error)
	pools         []netip.Prefix
	defaultBridge string
}

// Option configures a Manager.
type Option func(*Manager)

// WithDriver sets the kernel side of bridge networks (NopDriver by
// default: records only).
func WithDriver(d Driver) Option { return func(m *Manager) { m.driver = d } }

// WithReserved replaces HostReserved, the prefixes a default subnet must
// not overlap: tests pass the routes of a namespace of their own, or
// none.
func WithReserved(fn func() ([]netip.Prefix, error)) Option {
	return func(m *Manager) { m.reserved = fn }
}

// WithPools replaces DefaultPools, the subnets tried in turn for networks
// created without --subnet.
func WithPools(pools ...netip.Prefix) Option {
	return func(m *Manager) { m.pools = slices.Clone(pools) }
}

// WithDefaultBridge names the default network's Linux bridge instead of
// DefaultBridgeName, so that tests with engine roots of their own do not
// share one bridge.
func WithDefaultBridge(name string) Option { return func(m *Manager) { m.defaultBridge = name } }

// New returns the Manager of the engine root.
func New(root string, opts ...Option) (*Manager, error) {
	db, err := metadb.Open(root)
	if err != nil {
		return nil, fmt.Errorf("open network store: %w", err)
	}
	m := &Manager{db: db, driver: NopDriver{}, reserved: HostReserved, pools: DefaultPools(), defaultBridge: DefaultBridgeName}
	for _, o := range opts {
		o(m)
	}
	if err := ValidBridgeName(m.defaultBridge); err != nil {
		return nil, err
	}
	return m, nil
}

// CreateOptions are the flags of `network create`, as the user gave
// them: Create parses the addresses so the command line and the API
// report the same errors.
type CreateOptions struct {
	Name       string
	Driver     string // "" means DriverBridge, the only one that can be created
	Subnet     string // CIDR; "" picks the first free one of the default pools
	Gateway    string // "" means the first address of the subnet
	IPRange    string // CIDR inside Subnet; "" means all of it
	Internal   bool
	Attachable bool
	Labels     map[string]string
	Options    map[string]string
}

// ipamConfig is CreateOptions' addresses, parsed and checked.
type ipamConfig struct {
	subnet, ipRange netip.Prefix
	gateway         netip.Addr
}

// parseIPAM checks the addresses of a create with Docker's messages
// (ValidateIPAM in moby's api/types/network).
func parseIPAM(o CreateOptions) (ipamConfig, error) {
	var c ipamConfig
	inv := errdefs.ErrInvalidArgument
	if o.Subnet == "" {
		if o.Gateway != "" || o.IPRange != "" {
			return c, fmt.Errorf("every ip-range or gateway must have a corresponding subnet: %w", inv)
		}
		return c, nil
	}
	subnet, err := netip.ParsePrefix(o.Subnet)
	switch {
	case err != nil:
		return c, fmt.Errorf("invalid subnet %s: invalid CIDR block notation: %w", o.Subnet, inv)
	case subnet.Addr().Is6():
		return c, fmt.Errorf("invalid subnet %s: IPv6 networks are not supported yet: %w", o.Subnet, errdefs.ErrNotImplemented)
	case subnet != subnet.Masked():
		return c, fmt.Errorf("invalid subnet %s: it should be %s: %w", subnet, subnet.Masked(), inv)
	case subnet.Bits() > 30:
		return c, fmt.Errorf("invalid subnet %s: a bridge network needs at least a /30, room for its gateway and a container: %w", subnet, inv)
	}
	c.subnet = subnet
	first, last := usable(subnet)
	if o.IPRange != "" {
		r, err := netip.ParsePrefix(o.IPRange)
		switch {
		case err != nil:
			return c, fmt.Errorf("invalid ip-range %s: invalid CIDR block notation: %w", o.IPRange, inv)
		case !r.Addr().Is4():
			return c, fmt.Errorf("invalid ip-range %s: parent subnet is an IPv4 block: %w", o.IPRange, inv)
		case r.Bits() < subnet.Bits():
			return c, fmt.Errorf("invalid ip-range %s: CIDR block is bigger than its parent subnet %s: %w", o.IPRange, subnet, inv)
		case r != r.Masked():
			return c, fmt.Errorf("invalid ip-range %s: it should be %s: %w", r, r.Masked(), inv)
		case !subnet.Overlaps(r):
			return c, fmt.Errorf("invalid ip-range %s: parent subnet %s doesn't contain ip-range: %w", o.IPRange, subnet, inv)
		}
		c.ipRange = r
	}
	if o.Gateway == "" {
		c.gateway = first
		return c, nil
	}
	gw, err := netip.ParseAddr(o.Gateway)
	switch {
	case err != nil:
		return c, fmt.Errorf("invalid gateway %s: invalid address: %w", o.Gateway, inv)
	case !gw.Is4():
		return c, fmt.Errorf("invalid gateway %s: parent subnet is an IPv4 block: %w", o.Gateway, inv)
	case !subnet.Contains(gw):
		return c, fmt.Errorf("invalid gateway %s: parent subnet %s doesn't contain this address: %w", o.Gateway, subnet, inv)
	case gw.Less(first) || last.Less(gw):
		return c, fmt.Errorf("invalid gateway %s: it is the network or broadcast address of %s: %w", o.Gateway, subnet, inv)
	}
	c.gateway = gw
	return c, nil
}

// checkDriver accepts the drivers a user network may have, with Docker's
// refusals for the others.
func checkDriver(driver string) error {
	switch driver {
	case "", DriverBridge:
		return nil
	case DriverHost, DriverNull:
		return fmt.Errorf("only one instance of %q network is allowed: %w", driver, errdefs.ErrConflict)
	case "overlay", "macvlan", "ipvlan":
		return fmt.Errorf("network driver %q is not supported yet: berth has only the bridge driver: %w", driver, errdefs.ErrNotImplemented)
	}
	return fmt.Errorf("plugin %q not found: berth has only the bridge driver: %w", driver, errdefs.ErrNotFound)
}

// Create makes a bridge network: its record, with a subnet (o.Subnet, or
// the first default pool that overlaps no other network and no route or
// address of the host), and through the Driver its kernel side. Either
// both exist afterwards or neither.
//
// It makes the predefined networks first (EnsureDefault), so that the
// default bridge network takes the first default subnet, as Docker's.
func (m *Manager) Create(ctx context.Context, o CreateOptions) (*Network, error) {
	if err := ValidName(o.Name); err != nil {
		return nil, err
	}
	if err := checkDriver(o.Driver); err != nil {
		return nil, err
	}
	if err := checkOptions(o.Options); err != nil {
		return nil, err
	}
	cfg, err := parseIPAM(o)
	if err != nil {
		return nil, err
	}
	if _, err := m.EnsureDefault(ctx); err != nil {
		return nil, err
	}
	var reserved []netip.Prefix
	if !cfg.subnet.IsValid() {
		if reserved, err = m.reserved(); err != nil {
			return nil, fmt.Errorf("create network %s: %w", o.Name, err)
		}
	}
	id, err := randomID()
	if err != nil {
		return nil, err
	}
	n := &Network{
		ID: id, Name: o.Name, Driver: DriverBridge, Scope: ScopeLocal, Created: time.Now().UTC(),
		Subnet: cfg.subnet, Gateway: cfg.gateway, IPRange: cfg.ipRange, SubnetAuto: !cfg.subnet.IsValid(),
		Internal: o.Internal, Attachable: o.Attachable,
		Labels: maps.Clone(o.Labels), Options: maps.Clone(o.Options),
		Bridge: userBridgeName(id),
	}
	if name, ok := o.Options[OptBridgeName]; ok {
		n.Bridge = name
	}
	driverDone := false
	err = m.db.Update(func(tx *bolt.Tx) error {
		if id := bucketGet(tx, bucketNames, n.Name); id != nil {
			return fmt.Errorf("network with name %s already exists: %w", n.Name, errdefs.ErrConflict)
		}
		others, err := allRecords(tx)
		if err != nil {
			return err
		}
		if err := checkBridgeFree(others, n.Bridge); err != nil {
			return err
		}
		if n.SubnetAuto {
			taken := slices.Clone(reserved)
			for _, r := range others {
				if r.Subnet.IsValid() {
					taken = append(taken, r.Subnet)
				}
			}
			if n.Subnet, err = chooseSubnet(m.pools, taken); err != nil {
				return err
			}
			n.Gateway, _ = usable(n.Subnet)
		} else {
			for _, r := range others {
				if r.Subnet.IsValid() && r.Subnet.Overlaps(n.Subnet) {
					return fmt.Errorf("Pool overlaps with other one on this address space: %s overlaps %s of network %s: %w", n.Subnet, r.Subnet, r.Name, errdefs.ErrConflict)
				}
			}
		}
		if err := insert(tx, &record{Network: *n}); err != nil {
			return err
		}
		if err := m.driver.CreateNetwork(ctx, n); err != nil {
			return fmt.Errorf("create network %s: %w", n.Name, err)
		}
		driverDone = true
		return nil
	})
	if err != nil {
		if driverDone { // the record did not commit: take the bridge back
			_ = m.driver.DeleteNetwork(context.WithoutCancel(ctx), n)
		}
		return nil, err
	}
	return n, nil
}

// checkBridgeFree refuses a bridge name that another network uses.
func checkBridgeFree(others []*record, bridge string) error {
	for _, r := range others {
		if r.Bridge != "" && r.Bridge == bridge {
			return fmt.Errorf("bridge name %s is already used by network %s: %w", bridge, r.Name, errdefs.ErrConflict)
		}
	}
	return nil
}

// EnsureDefault makes the predefined networks that do not exist yet and
// returns the default bridge network. The first call on an engine root
// gives "bridge" the first default subnet that overlaps no route or
// address of the host (and no other network) and has the Driver create
// its bridge; later calls only read. `run` calls it before attaching a
// container to the default network; the network verbs call it so that a
// fresh engine lists bridge, host and none, as Docker does.
//
// It does not call the Driver for a default network that exists: a
// caller that needs the bridge up (after a reboot, say) calls the
// driver's idempotent CreateNetwork itself.
func (m *Manager) EnsureDefault(ctx context.Context) (*Network, error) {
	var bridge *record
	complete := false
	if err := m.db.View(func(tx *bolt.Tx) error {
		complete = bucketGet(tx, bucketNames, NameHost) != nil && bucketGet(tx, bucketNames, NameNone) != nil
		var err error
		if bridge, err = lookupName(tx, NameBridge); errdefs.IsNotFound(err) {
			complete = false
			return nil
		}
		return err
	}); err != nil {
		return nil, err
	}
	if complete {
		return &bridge.Network, nil
	}
	var reserved []netip.Prefix
	if bridge == nil {
		var err error
		if reserved, err = m.reserved(); err != nil {
			return nil, fmt.Errorf("create the default bridge network: %w", err)
		}
	}
	var made *Network // the bridge network made here, for the undo
	err := m.db.Update(func(tx *bolt.Tx) error {
		made = nil
		for _, p := range []struct{ name, driver string }{{NameHost, DriverHost}, {NameNone, DriverNull}} {
			if bucketGet(tx, bucketNames, p.name) != nil {
				continue
			}
			id, err := randomID()
			if err != nil {
				return err
			}
			r := &record{Network: Network{ID: id, Name: p.name, Driver: p.driver, Scope: ScopeLocal, Created: time.Now().UTC()}}
			if err := insert(tx, r); err != nil {
				return err
			}
		}
		var err error
		if bridge, err = lookupName(tx, NameBridge); err == nil {
			return nil
		} else if !errdefs.IsNotFound(err) {
			return err
		}
		others, err := allRecords(tx)
		if err != nil {
			return err
		}
		if err := checkBridgeFree(others, m.defaultBridge); err != nil {
			return fmt.Errorf("create the default bridge network: %w", err)
		}
		taken := slices.Clone(reserved)
		for _, r := range others {
			if r.Subnet.IsValid() {
				taken = append(taken, r.Subnet)
			}
		}
		subnet, err := chooseSubnet(m.pools, taken)
		if err != nil {
			return fmt.Errorf("create the default bridge network: %w", err)
		}
		gw, _ := usable(subnet)
		id, err := randomID()
		if err != nil {
			return err
		}
		bridge = &record{Network: Network{
			ID: id, Name: NameBridge, Driver: DriverBridge, Scope: ScopeLocal, Created: time.Now().UTC(),
			Subnet: subnet, Gateway: gw, SubnetAuto: true, Bridge: m.defaultBridge,
			Labels: map[string]string{},
			Options: map[string]string{
				OptDefaultBridge:   "true",
				OptEnableICC:       "true",
				OptEnableMasq:      "true",
				OptHostBindingIPv4: "0.0.0.0",
				OptBridgeName:      m.defaultBridge,
				OptMTU:             "1500",
			},
		}}
		if err := insert(tx, bridge); err != nil {
			return err
		}
		if err := m.driver.CreateNetwork(ctx, &bridge.Network); err != nil {
			return fmt.Errorf("create the default bridge network: %w", err)
		}
		made = &bridge.Network
		return nil
	})
	if err != nil {
		if made != nil {
			_ = m.driver.DeleteNetwork(context.WithoutCancel(ctx), made)
		}
		return nil, err
	}
	return &bridge.Network, nil
}

// Get returns the network ref: a full ID, a name, or a unique ID prefix,
// tried in that order, as Docker does.
func (m *Manager) Get(ref string) (*Network, error) {
	var rec *record
	err := m.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = lookup(tx, ref)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &rec.Network, nil
}

// List returns every network, sorted by name as `docker network ls`
// sorts (digits by value: net2 before net10).
func (m *Manager) List() ([]*Network, error) {
	var out []*Network
	err := m.db.View(func(tx *bolt.Tx) error {
		recs, err := allRecords(tx)
		for _, r := range recs {
			out = append(out, &r.Network)
		}
		return err
	})
	slices.SortFunc(out, func(a, b *Network) int {
		switch {
		case naturalLess(a.Name, b.Name):
			return -1
		case naturalLess(b.Name, a.Name):
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// Remove deletes the network ref and, through the Driver, its bridge. The
// predefined networks and networks with endpoints are refused
// (errdefs.ErrConflict), with Docker's messages.
func (m *Manager) Remove(ctx context.Context, ref string) error {
	_, err := m.remove(ctx, ref)
	return err
}

// remove is Remove, returning the removed network's name.
func (m *Manager) remove(ctx context.Context, ref string) (string, error) {
	var gone *Network // removed from the kernel, for the undo
	var name string
	err := m.db.Update(func(tx *bolt.Tx) error {
		gone = nil
		rec, err := lookup(tx, ref)
		if err != nil {
			return err
		}
		if rec.Predefined() {
			return fmt.Errorf("%s is a pre-defined network and cannot be removed: %w", rec.Name, errdefs.ErrConflict)
		}
		eb, err := endpointBucket(tx, rec.ID, false)
		if err != nil {
			return err
		}
		if eb != nil {
			if k, _ := eb.Cursor().First(); k != nil {
				return fmt.Errorf("error while removing network: network %s id %s has active endpoints: %w", rec.Name, rec.ID, errdefs.ErrConflict)
			}
		}
		if err := tx.Bucket(bucketNetworks).Delete([]byte(rec.ID)); err != nil {
			return err
		}
		if nb := tx.Bucket(bucketNames); nb != nil {
			if err := nb.Delete([]byte(rec.Name)); err != nil {
				return err
			}
		}
		if eb != nil {
			if err := tx.Bucket(bucketEndpoints).DeleteBucket([]byte(rec.ID)); err != nil {
				return err
			}
		}
		name = rec.Name
		if rec.Driver == DriverBridge {
			if err := m.driver.DeleteNetwork(ctx, &rec.Network); err != nil {
				return fmt.Errorf("remove network %s: %w", rec.Name, err)
			}
			gone = &rec.Network
		}
		return nil
	})
	if err != nil {
		if gone != nil { // the deletion did not commit: bring the bridge back
			_ = m.driver.CreateNetwork(context.WithoutCancel(ctx), gone)
		}
		return "", err
	}
	return name, nil
}

// Prune removes every network that is not predefined, has no endpoints
// and matches f, and returns their names. A network that fails to go is
// left and reported (the first such error); the others still go. An
// unused default network loses its bridge and rules too (its record
// stays, and its next container brings them back): after `rm` of every
// container and a prune, berth holds nothing in the kernel.
func (m *Manager) Prune(ctx context.Context, f Filter) ([]string, error) {
	nets, err := m.List()
	if err != nil {
		return nil, err
	}
	used, err := m.AllEndpoints()
	if err != nil {
		return nil, err
	}
	var (
		names []string
		first error
	)
	for _, n := range nets {
		if n.Predefined() || len(used[n.ID]) > 0 || !f.Match(n, len(used[n.ID])) {
			continue
		}
		name, err := m.remove(ctx, n.ID) // by full ID: this very network or none
		switch {
		case err == nil:
			names = append(names, name)
		case errdefs.IsConflict(err) || errdefs.IsNotFound(err):
			// attached or removed by someone else since List
		case first == nil:
			first = err
		}
	}
	if err := m.deactivateIdleDefault(ctx); err != nil && first == nil {
		first = err
	}
	return names, first
}

// --- records ---

func notFound(ref string) error {
	return fmt.Errorf("network %s not found: %w", ref, errdefs.ErrNotFound)
}

func bucketGet(tx *bolt.Tx, bucket []byte, key string) []byte {
	b := tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	return b.Get([]byte(key))
}

func decodeRecord(data []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("network record is corrupt: %v", err)
	}
	return &r, nil
}

// lookup finds a network by full ID, name, or unique ID prefix.
func lookup(tx *bolt.Tx, ref string) (*record, error) {
	nb := tx.Bucket(bucketNetworks)
	if nb == nil || ref == "" {
		return nil, notFound(ref)
	}
	if data := nb.Get([]byte(ref)); data != nil {
		return decodeRecord(data)
	}
	if r, err := lookupName(tx, ref); !errdefs.IsNotFound(err) {
		return r, err
	}
	var found []byte
	n := 0
	c := nb.Cursor()
	for k, v := c.Seek([]byte(ref)); k != nil && strings.HasPrefix(string(k), ref); k, v = c.Next() {
		found = v
		n++
	}
	switch n {
	case 0:
		return nil, notFound(ref)
	case 1:
		return decodeRecord(found)
	}
	return nil, fmt.Errorf("network %s is ambiguous (%d matches found based on ID prefix): %w", ref, n, errdefs.ErrInvalidArgument)
}

func lookupName(tx *bolt.Tx, name string) (*record, error) {
	id := bucketGet(tx, bucketNames, name)
	if id == nil {
		return nil, notFound(name)
	}
	data := bucketGet(tx, bucketNetworks, string(id))
	if data == nil {
		return nil, fmt.Errorf("network %s: the name points to a missing record %.12s: %w", name, id, errdefs.ErrNotFound)
	}
	return decodeRecord(data)
}

func allRecords(tx *bolt.Tx) ([]*record, error) {
	b := tx.Bucket(bucketNetworks)
	if b == nil {
		return nil, nil
	}
	var out []*record
	err := b.ForEach(func(_, v []byte) error {
		r, err := decodeRecord(v)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// insert stores a new record and its name.
func insert(tx *bolt.Tx, r *record) error {
	nb, err := tx.CreateBucketIfNotExists(bucketNames)
	if err != nil {
		return err
	}
	if nb.Get([]byte(r.Name)) != nil {
		return fmt.Errorf("network with name %s already exists: %w", r.Name, errdefs.ErrConflict)
	}
	if b := tx.Bucket(bucketNetworks); b != nil && b.Get([]byte(r.ID)) != nil {
		return errors.New("network ID collision: try again") // 256 random bits: never
	}
	if err := nb.Put([]byte(r.Name), []byte(r.ID)); err != nil {
		return err
	}
	return putNetwork(tx, r)
}

func putNetwork(tx *bolt.Tx, r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b, err := tx.CreateBucketIfNotExists(bucketNetworks)
	if err != nil {
		return err
	}
	return b.Put([]byte(r.ID), data)
}

// naturalLess orders strings as Docker's CLI sorts names: runs of digits
// compare by value, the rest byte by byte.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			x, y := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(x) != len(y) {
				return len(x) < len(y)
			}
			if x != y {
				return x < y
			}
			if da != db { // same value: fewer leading zeros first
				return da < db
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
