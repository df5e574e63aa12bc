package network

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/internal/network/bridge"
	"github.com/berth-dev/berth/internal/network/bridge/bridgetest"
	"github.com/berth-dev/berth/internal/network/nft"
	"github.com/berth-dev/berth/internal/testutil"
)

// The kernel driver's tests run in a namespace of their own (a fresh
// "host"): no link, rule or sysctl of the real host changes. Everything
// the Manager and the driver do happens on the test goroutine's locked
// thread, inside that namespace.

func linkUp(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// TestKernelUserNetwork: a user network's bridge and rules come with
// `network create` and go with `network rm`; IPv4 forwarding is turned on
// for it and noted for `info`; an internal network does not turn it on.
func TestKernelUserNetwork(t *testing.T) {
	testutil.RequiresRoot(t)
	host := bridgetest.New(t, "host")
	root := t.TempDir()
	k := NewKernel(root)
	m, err := New(root, WithReserved(noHost), WithDriver(k), WithDefaultBridge("berthkt0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	host.Must(t, func() error {
		internal, err := m.Create(ctx, CreateOptions{Name: "closed", Subnet: "10.77.1.0/24", Internal: true})
		if err != nil {
			return err
		}
		if !linkUp(internal.Bridge) {
			t.Errorf("bridge %s of an internal network is missing", internal.Bridge)
		}
		if on, _ := bridge.IPForward(); on || IPForwardChanged(root) != "" {
			t.Errorf("an internal network turned forwarding on")
		}
		n, err := m.Create(ctx, CreateOptions{Name: "web", Subnet: "10.77.2.0/24"})
		if err != nil {
			return err
		}
		if !linkUp(n.Bridge) {
			t.Errorf("bridge %s is missing after create", n.Bridge)
		}
		if ok, _ := nft.Exists(); !ok {
			t.Errorf("no nftables table after create")
		}
		if on, _ := bridge.IPForward(); !on {
			t.Errorf("forwarding is off with a bridge network")
		}
		if note := IPForwardChanged(root); !strings.Contains(note, "network web") {
			t.Errorf("ip_forward note: %q", note)
		}
		// The default network's bridge is not made with its record.
		def, err := m.EnsureDefault(ctx)
		if err != nil {
			return err
		}
		if linkUp(def.Bridge) {
			t.Errorf("the default bridge exists before any container")
		}
		for _, name := range []string{"web", "closed"} {
			if err := m.Remove(ctx, name); err != nil {
				return err
			}
		}
		if linkUp(n.Bridge) || linkUp(internal.Bridge) {
			t.Errorf("bridges left after network rm")
		}
		if ok, _ := nft.Exists(); ok {
			t.Errorf("nftables table left after the last network went")
		}
		return nil
	})
}

// TestKernelDefaultLazy: the default network's bridge comes with its
// first endpoint, stays after its last (as docker0), and goes at a prune
// that finds it unused, also while containers connect and disconnect
// concurrently: a connected container always has its bridge.
func TestKernelDefaultLazy(t *testing.T) {
	testutil.RequiresRoot(t)
	host := bridgetest.New(t, "host")
	root := t.TempDir()
	m, err := New(root, WithReserved(noHost), WithDriver(NewKernel(root)), WithDefaultBridge("berthkt1"),
		WithPools(netip.MustParsePrefix("10.78.0.0/16")))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	host.Must(t, func() error {
		if _, err := m.EnsureDefault(ctx); err != nil {
			return err
		}
		n, ep, err := m.Connect(ctx, NameBridge, EndpointRequest{ContainerID: "c1", Name: "one"})
		if err != nil {
			return err
		}
		if !linkUp("berthkt1") || ep.Address.String() != "10.78.0.2/16" || ep.Gateway.String() != "10.78.0.1" || n.Bridge != "berthkt1" {
			t.Errorf("first connect: bridge up %v, endpoint %v via %v", linkUp("berthkt1"), ep.Address, ep.Gateway)
		}
		if _, _, err := m.Connect(ctx, NameBridge, EndpointRequest{ContainerID: "c2", Name: "two"}); err != nil {
			return err
		}
		left, err := m.Disconnect(ctx, "c1")
		if err != nil {
			return err
		}
		if len(left) != 1 || left[0].Name != NameBridge || !linkUp("berthkt1") {
			t.Errorf("after the first of two left: %v, bridge up %v", left, linkUp("berthkt1"))
		}
		if _, err := m.Disconnect(ctx, "c2"); err != nil {
			return err
		}
		if !linkUp("berthkt1") {
			t.Errorf("the default bridge went with its last endpoint; it stays until a prune")
		}
		if _, err := m.Prune(ctx, Filter{}); err != nil {
			return err
		}
		if linkUp("berthkt1") {
			t.Errorf("prune left the unused default bridge")
		}
		if ok, _ := nft.Exists(); ok {
			t.Errorf("nftables table left after a prune with no network in use")
		}
		// Gone twice is no error.
		if left, err := m.Disconnect(ctx, "c2"); err != nil || len(left) != 0 {
			t.Errorf("disconnect again: %v %v", left, err)
		}
		return nil
	})

	// Concurrent connects, disconnects and prunes never leave an endpoint
	// on a missing bridge. Each goroutine enters the test's namespace
	// itself.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	stop := make(chan struct{})
	pruned := make(chan error, 1)
	go func() {
		pruned <- host.Do(func() error {
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				if _, err := m.Prune(ctx, Filter{}); err != nil {
					return err
				}
			}
		})
	}()
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- host.Do(func() error {
				id := "r" + string(rune('a'+i))
				for range 5 {
					if _, _, err := m.Connect(ctx, NameBridge, EndpointRequest{ContainerID: id}); err != nil {
						return err
					}
					if !linkUp("berthkt1") {
						t.Errorf("%s: connected, but the bridge is missing", id)
					}
					if _, err := m.Disconnect(ctx, id); err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	close(stop)
	errs <- <-pruned
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	host.Must(t, func() error {
		if _, err := m.Prune(ctx, Filter{}); err != nil {
			return err
		}
		if linkUp("berthkt1") {
			t.Errorf("the default bridge is left after every endpoint went and a prune")
		}
		return nil
	})
	if eps, _ := m.AllEndpoints(); len(eps) != 0 {
		t.Errorf("endpoints left: %v", eps)
	}
}

// TestKernelActivateAfterReboot: a user network whose bridge is gone
// (records outlive reboots) gets it back, with its rules, at the next
// Connect.
func TestKernelActivateAfterReboot(t *testing.T) {
	testutil.RequiresRoot(t)
	host := bridgetest.New(t, "host")
	root := t.TempDir()
	m, err := New(root, WithReserved(noHost), WithDriver(NewKernel(root)), WithDefaultBridge("berthkt2"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	host.Must(t, func() error {
		n, err := m.Create(ctx, CreateOptions{Name: "app", Subnet: "10.79.0.0/24"})
		if err != nil {
			return err
		}
		// "Reboot": the kernel forgets.
		if err := down(n); err != nil {
			return err
		}
		if _, _, err := m.Connect(ctx, "app", EndpointRequest{ContainerID: "c"}); err != nil {
			return err
		}
		if !linkUp(n.Bridge) {
			t.Errorf("bridge not brought back")
		}
		if ok, _ := nft.Exists(); !ok {
			t.Errorf("rules not brought back")
		}
		if _, err := m.Disconnect(ctx, "c"); err != nil {
			return err
		}
		if !linkUp(n.Bridge) {
			t.Errorf("a user network's bridge went with its last endpoint")
		}
		return m.Remove(ctx, "app")
	})
	if _, err := os.Stat(root); err != nil {
		t.Fatal(err)
	}
}
