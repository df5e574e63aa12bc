package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/metadb"
	"github.com/berth-dev/berth/internal/network/bridge"
	"github.com/berth-dev/berth/internal/network/nft"
)

// Kernel is the Driver that makes bridge networks real: a Linux bridge
// with the gateway address (package bridge) and the network's rules in
// berth's nftables table (package nft).
//
// User networks get their bridge when they are created and lose it when
// they are removed, as with Docker. The default network's comes with its
// first container (see Activator) and then stays, as docker0 does, until
// `network prune` finds it unused: taking it down with every last
// container cost each lone `run --rm` ~45 ms of the kernel's RCU waits
// (bridge deletion) and a bridge and table made again at the next start.
type Kernel struct {
	root string // engine root: where the ip_forward note is kept
}

var (
	_ Driver    = (*Kernel)(nil)
	_ Activator = (*Kernel)(nil)
)

// NewKernel returns the kernel driver of the engine root.
func NewKernel(root string) *Kernel { return &Kernel{root: root} }

// Activator is a Driver whose networks may have kernel state only while
// they are used. The Manager's Connect calls Activate after giving a
// container its address, and Prune calls Deactivate for the default
// network when no container is attached to it.
type Activator interface {
	// Activate brings n's kernel side up if it is not (the default
	// network's first container; any network after a reboot). It must be
	// cheap when n is up already: it runs at every container start.
	Activate(ctx context.Context, n *Network) error
	// Deactivate takes down what Activate made, for a network that
	// exists only while it is used.
	Deactivate(ctx context.Context, n *Network) error
}

// IsDefault reports whether n is the default bridge network, whose
// kernel side comes with its first container and goes at a prune.
func (n *Network) IsDefault() bool {
	return n.Name == NameBridge && n.Driver == DriverBridge
}

// CreateNetwork brings up a user network's bridge and rules. The
// default network's come at its first container (Activate).
func (k *Kernel) CreateNetwork(_ context.Context, n *Network) error {
	if n.Driver != DriverBridge || n.IsDefault() {
		return nil
	}
	return k.up(n, true)
}

// DeleteNetwork removes a bridge network's rules and bridge; missing ones
// are no error.
func (k *Kernel) DeleteNetwork(_ context.Context, n *Network) error {
	if n.Driver != DriverBridge {
		return nil
	}
	return down(n)
}

// Activate makes sure n's bridge exists; when this call had to create it
// (the default network's first container, or any network after a
// reboot), the rules follow. An existing bridge is taken to have its
// rules: checking them would cost an nftables dump at every start.
func (k *Kernel) Activate(_ context.Context, n *Network) error {
	if n.Driver != DriverBridge {
		return nil
	}
	return k.up(n, false)
}

// Deactivate takes the default network's bridge and rules down (Prune,
// with no container on it). User networks keep theirs until `network rm`.
func (k *Kernel) Deactivate(_ context.Context, n *Network) error {
	if !n.IsDefault() {
		return nil
	}
	return down(n)
}

// up makes the bridge and, when it was made now or always is set, the
// rules; IPv4 forwarding is turned on for networks whose containers may
// leave the host. A failure takes back a bridge made here.
func (k *Kernel) up(n *Network, always bool) (err error) {
	created, err := bridge.EnsureBridge(n.Bridge, n.GatewayPrefix(), n.MTU())
	if err != nil {
		return err
	}
	if !created && !always {
		return nil
	}
	defer func() {
		if err != nil && created {
			bridge.DeleteBridge(n.Bridge)
		}
	}()
	// A table made anew here may be one a firewall reload flushed: then
	// the other networks' rules and the containers' ports are missing
	// too, and the table's existence no longer says so. The next
	// container start restores them (FirewallRestoreMarker); not here,
	// where Create calls us inside its metadata transaction.
	hadTable, _ := nft.Exists()
	if err := nft.AddNetwork(nftNetwork(n)); err != nil {
		return err
	}
	if !hadTable {
		k.afterTableMade()
	}
	if n.Masquerade() {
		changed, err := bridge.EnableIPForward()
		if err != nil {
			nft.DeleteNetwork(n.Bridge)
			return fmt.Errorf("network %s: enable IPv4 forwarding: %w", n.Name, err)
		}
		if changed {
			k.noteIPForward(n)
		}
	}
	return nil
}

// RestoreRules puts back the firewall rules of every bridge network whose
// bridge is up, for when berth's nftables table went while its networks
// stayed: a firewall reload or `nft flush ruleset` removes every table,
// ours too, and nothing of berth's runs to notice. The caller (a
// container's start, which checks that the table is missing first) also
// restores the published ports of running containers. AddNetwork is
// idempotent, so two starts doing this at once do no harm.
func (m *Manager) RestoreRules() error {
	nets, err := m.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nets {
		if n.Driver != DriverBridge || n.Bridge == "" {
			continue
		}
		if _, err := os.Stat("/sys/class/net/" + n.Bridge); err != nil {
			continue // not up: its next container brings bridge and rules
		}
		errs = append(errs, nft.AddNetwork(nftNetwork(n)))
	}
	return errors.Join(errs...)
}

// FirewallRestoreMarker is the file under the engine root that asks the
// next container start for a full firewall restore (the container
// package's restoreFirewall).
func FirewallRestoreMarker(root string) string { return filepath.Join(root, "firewall.restore") }

// afterTableMade leaves the marker that asks the next container start
// for a full restore, after this driver made berth's table anew.
func (k *Kernel) afterTableMade() {
	if k.root != "" {
		os.WriteFile(FirewallRestoreMarker(k.root), nil, 0o600)
	}
}

func down(n *Network) error {
	if err := nft.DeleteNetwork(n.Bridge); err != nil {
		return err
	}
	return bridge.DeleteBridge(n.Bridge)
}

func nftNetwork(n *Network) nft.Network {
	return nft.Network{Bridge: n.Bridge, Subnet: n.Subnet, Internal: n.Internal, Masquerade: n.Masquerade(), ICC: n.ICC()}
}

// ipForwardNote is the file, under the engine root, that says berth
// turned IPv4 forwarding on, when and for which network: `info` shows it,
// since it is a change to the host that outlives berth's networks.
const ipForwardNote = "ip_forward.changed"

func (k *Kernel) noteIPForward(n *Network) {
	if k.root == "" {
		return
	}
	msg := fmt.Sprintf("%s network %s (%s)\n", time.Now().UTC().Format(time.RFC3339), n.Name, n.Bridge)
	tmp := filepath.Join(k.root, ipForwardNote+".tmp")
	if err := os.WriteFile(tmp, []byte(msg), 0o644); err == nil {
		os.Rename(tmp, filepath.Join(k.root, ipForwardNote))
	}
}

// IPForwardChanged reports whether berth turned the host's IPv4
// forwarding on for a network of the engine root, and when and for which
// network ("" when it did not), for `berth info`.
func IPForwardChanged(root string) string {
	b, err := os.ReadFile(filepath.Join(root, ipForwardNote))
	if err != nil {
		return ""
	}
	return string(b[:len(b)-min(len(b), 1)])
}

// --- endpoints with their network's kernel side ---

// lifecycleLock is taken around a default-network endpoint's allocation
// and Activate, and around Prune's check that the default network is
// unused and its Deactivate, so a prune never removes the bridge that a
// container starting at the same moment has just been given an address
// on.
func (m *Manager) lifecycleLock() (func(), error) {
	unlock, err := metadb.Lock(filepath.Join(filepath.Dir(m.db.Path()), "network.lock"), unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("lock networks: %w", err)
	}
	return unlock, nil
}

// Connect gives a container an endpoint on the network ref (Allocate)
// and makes sure the network's kernel side is up (Activator). Either
// both happen or neither.
func (m *Manager) Connect(ctx context.Context, ref string, req EndpointRequest) (*Network, *Endpoint, error) {
	n, err := m.Get(ref)
	if err != nil {
		return nil, nil, err
	}
	act, lazy := m.driver.(Activator)
	if lazy && n.IsDefault() {
		unlock, err := m.lifecycleLock()
		if err != nil {
			return nil, nil, err
		}
		defer unlock()
	}
	ep, err := m.Allocate(n.ID, req)
	if err != nil {
		return nil, nil, err
	}
	if lazy && n.Driver == DriverBridge {
		if err := act.Activate(ctx, n); err != nil {
			m.Release(n.ID, req.ContainerID)
			return nil, nil, fmt.Errorf("network %s: %w", n.Name, err)
		}
	}
	return n, ep, nil
}

// Disconnect releases the container's endpoints, on the networks refs
// or, with none given, on every network, in one transaction. The
// networks' kernel sides stay (the default one until a prune). A
// container or network that is gone is no error: removal paths call this
// after crashes too. It returns the networks the container left.
func (m *Manager) Disconnect(ctx context.Context, containerID string, refs ...string) ([]*Network, error) {
	var left []*Network
	err := m.db.Update(func(tx *bolt.Tx) error {
		left = nil
		root := tx.Bucket(bucketEndpoints)
		if root == nil {
			return nil
		}
		var ids [][]byte
		if len(refs) == 0 {
			if err := root.ForEachBucket(func(k []byte) error { ids = append(ids, k); return nil }); err != nil {
				return err
			}
		}
		for _, ref := range refs {
			rec, err := lookup(tx, ref)
			if errdefs.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			ids = append(ids, []byte(rec.ID))
		}
		for _, id := range ids {
			eb := root.Bucket(id)
			if eb == nil || eb.Get([]byte(containerID)) == nil {
				continue
			}
			if err := eb.Delete([]byte(containerID)); err != nil {
				return err
			}
			data := bucketGet(tx, bucketNetworks, string(id))
			if data == nil {
				continue
			}
			rec, err := decodeRecord(data)
			if err != nil {
				return err
			}
			left = append(left, &rec.Network)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return left, nil
}

// deactivateIdleDefault takes the default network's kernel side down if
// no container is attached to it (Prune). Under the lifecycle lock, so
// no Connect gets an address on it meanwhile.
func (m *Manager) deactivateIdleDefault(ctx context.Context) error {
	act, lazy := m.driver.(Activator)
	if !lazy {
		return nil
	}
	n, err := m.Get(NameBridge)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil || !n.IsDefault() {
		return err
	}
	unlock, err := m.lifecycleLock()
	if err != nil {
		return err
	}
	defer unlock()
	used, err := m.AllEndpoints()
	if err != nil || len(used[n.ID]) > 0 {
		return err
	}
	if err := act.Deactivate(ctx, n); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	return nil
}
