package network

import "context"

// Driver is the kernel side of bridge networks: the Linux bridge, its
// address, its netfilter rules. The Manager owns the records and calls
// the Driver at the two points where records and kernel must change
// together:
//
//   - CreateNetwork when a bridge network's record is written (network
//     create, and the default network's first EnsureDefault). If it
//     fails, the record is not written. If the record then fails to
//     commit, the Manager calls DeleteNetwork to undo it.
//   - DeleteNetwork when the record is deleted (network rm, prune). If it
//     fails, the record stays, so the user can retry. If the deletion then
//     fails to commit, the Manager calls CreateNetwork to undo it.
//
// Both run inside the metadata write transaction, with metadata.lock held
// exclusively: no other berth process changes networks meanwhile, and
// neither method may open metadata.db itself (the lock is not reentrant:
// it would wait for itself). Everything the driver needs is in *Network.
//
// Both must be idempotent: CreateNetwork of a network whose bridge exists
// succeeds and leaves it as it should be, DeleteNetwork of one already
// gone succeeds. Records outlive reboots and kernel state does not, so
// the caller that attaches a container calls CreateNetwork again to bring
// the bridge back; a crash between the driver and the commit leaves a
// bridge that the next CreateNetwork or DeleteNetwork of that network
// reuses or removes.
//
// Host and none networks never reach the Driver: they have no kernel
// side of their own.
type Driver interface {
	CreateNetwork(ctx context.Context, n *Network) error
	DeleteNetwork(ctx context.Context, n *Network) error
}

// NopDriver makes no kernel changes: for tests, and for tools that manage
// only records.
type NopDriver struct{}

var _ Driver = NopDriver{}

// CreateNetwork does nothing.
func (NopDriver) CreateNetwork(context.Context, *Network) error { return nil }

// DeleteNetwork does nothing.
func (NopDriver) DeleteNetwork(context.Context, *Network) error { return nil }
