package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func mustAllocate(t *testing.T, m *Manager, network, ctr string) *Endpoint {
	t.Helper()
	ep, err := m.Allocate(network, EndpointRequest{ContainerID: ctr, Name: "name-" + ctr})
	if err != nil {
		t.Fatalf("allocate %s on %s: %v", ctr, network, err)
	}
	return ep
}

// TestAllocateSerial: a /29 holds five containers beside its gateway;
// addresses go out in turn, a released one comes back only after the
// others, and a full network says so in Docker's words.
func TestAllocateSerial(t *testing.T) {
	m := newManager(t)
	n := mustCreate(t, m, CreateOptions{Name: "small", Subnet: "10.0.0.0/29"})
	var got []string
	for i := range 5 {
		got = append(got, mustAllocate(t, m, "small", fmt.Sprintf("c%d", i)).IP().String())
	}
	if want := []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}; !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}
	_, err := m.Allocate("small", EndpointRequest{ContainerID: "c5"})
	if !errdefs.IsUnavailable(err) || err.Error() != "no available IPv4 addresses on this network's address pools: small ("+n.ID+"): unavailable" {
		t.Errorf("full network: %v", err)
	}
	if err := m.Release("small", "c2"); err != nil { // 10.0.0.4
		t.Fatal(err)
	}
	if ep := mustAllocate(t, m, "small", "c6"); ep.IP().String() != "10.0.0.4" {
		t.Errorf("after a release got %s, want the freed 10.0.0.4", ep.IP())
	}
	m.Release("small", "c0") // 10.0.0.2
	m.Release("small", "c1") // 10.0.0.3
	// The last address handed out was .4: .5 and .6 are taken, so the
	// search wraps to .2 (not .3, the most recently freed).
	if ep := mustAllocate(t, m, "small", "c7"); ep.IP().String() != "10.0.0.2" {
		t.Errorf("wrapped allocation got %s, want 10.0.0.2", ep.IP())
	}
	if ep := mustAllocate(t, m, "small", "c8"); ep.IP().String() != "10.0.0.3" {
		t.Errorf("next got %s, want 10.0.0.3", ep.IP())
	}
	// Releasing twice, or from a missing network, is no error.
	if err := m.Release("small", "c2"); err != nil {
		t.Errorf("second release: %v", err)
	}
	if err := m.Release("gone", "c2"); err != nil {
		t.Errorf("release on a missing network: %v", err)
	}
}

func TestAllocateEndpoint(t *testing.T) {
	m := newManager(t)
	n := mustCreate(t, m, CreateOptions{Name: "web", Subnet: "172.30.0.0/16", Gateway: "172.30.255.254"})
	ep, err := m.Allocate("web", EndpointRequest{ContainerID: "c1", Name: "app", Aliases: []string{"api", "www"}})
	if err != nil {
		t.Fatal(err)
	}
	if ep.Address.String() != "172.30.0.1/16" || ep.Gateway.String() != "172.30.255.254" || ep.MAC != "02:42:ac:1e:00:01" ||
		ep.NetworkID != n.ID || ep.ContainerID != "c1" || ep.Name != "app" || !slices.Equal(ep.Aliases, []string{"api", "www"}) ||
		len(ep.ID) != 64 || ep.HardwareAddr().String() != ep.MAC {
		t.Errorf("endpoint %+v", ep)
	}
	_, err = m.Allocate("web", EndpointRequest{ContainerID: "c1", Name: "app"})
	if !errdefs.IsConflict(err) || err.Error() != "endpoint with name app already exists in network web: conflict" {
		t.Errorf("second attach of one container: %v", err)
	}
	internal := mustCreate(t, m, CreateOptions{Name: "int", Internal: true})
	if ep := mustAllocate(t, m, "int", "c1"); ep.Gateway.IsValid() || ep.Address.Addr().String() != internal.Subnet.Addr().Next().Next().String() {
		t.Errorf("internal endpoint %+v", ep)
	}
	// Host and none record the container, without an address.
	for _, net := range []string{"host", "none"} {
		ep := mustAllocate(t, m, net, "c9")
		if ep.Address.IsValid() || ep.MAC != "" || ep.Gateway.IsValid() {
			t.Errorf("%s endpoint %+v", net, ep)
		}
	}
	if r, _ := m.Inspect("host"); len(r.Containers) != 1 || r.Containers["c9"].Name != "name-c9" || r.Containers["c9"].IPv4Address != "" {
		t.Errorf("host inspect: %+v", r.Containers)
	}
	eps, err := m.ContainerEndpoints("c1")
	if err != nil || len(eps) != 2 {
		t.Errorf("c1's endpoints: %v, %v", eps, err)
	}
	if err := m.ReleaseContainer("c1"); err != nil {
		t.Fatal(err)
	}
	if eps, _ := m.ContainerEndpoints("c1"); len(eps) != 0 {
		t.Errorf("after ReleaseContainer: %v", eps)
	}
	if eps, _ := m.ContainerEndpoints("c9"); len(eps) != 2 {
		t.Errorf("another container's endpoints went too: %v", eps)
	}
	if _, err := m.Allocate("nope", EndpointRequest{ContainerID: "c1"}); !errdefs.IsNotFound(err) {
		t.Errorf("allocate on a missing network: %v", err)
	}
	if _, err := m.Allocate("web", EndpointRequest{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("allocate without a container: %v", err)
	}
}

// TestAllocateIPRange: dynamic addresses stay in the range; requested
// ones may be anywhere in the subnet.
func TestAllocateIPRange(t *testing.T) {
	m := newManager(t)
	mustCreate(t, m, CreateOptions{Name: "r", Subnet: "10.1.0.0/16", IPRange: "10.1.7.0/30"})
	var got []string
	for i := range 4 {
		got = append(got, mustAllocate(t, m, "r", fmt.Sprintf("c%d", i)).IP().String())
	}
	if want := []string{"10.1.7.0", "10.1.7.1", "10.1.7.2", "10.1.7.3"}; !slices.Equal(got, want) {
		t.Errorf("range addresses %v, want %v", got, want)
	}
	if _, err := m.Allocate("r", EndpointRequest{ContainerID: "c4"}); !errdefs.IsUnavailable(err) {
		t.Errorf("range exhausted: %v", err)
	}
	ep, err := m.Allocate("r", EndpointRequest{ContainerID: "c5", IP: netip.MustParseAddr("10.1.9.9")})
	if err != nil || ep.Address.String() != "10.1.9.9/16" || ep.MAC != "02:42:0a:01:09:09" {
		t.Errorf("requested address outside the range: %+v, %v", ep, err)
	}
	// A range at the top of the subnet skips the broadcast address.
	mustCreate(t, m, CreateOptions{Name: "top", Subnet: "10.2.0.0/24", IPRange: "10.2.0.252/30"})
	got = nil
	for i := range 3 {
		got = append(got, mustAllocate(t, m, "top", fmt.Sprintf("c%d", i)).IP().String())
	}
	if want := []string{"10.2.0.252", "10.2.0.253", "10.2.0.254"}; !slices.Equal(got, want) {
		t.Errorf("top range %v, want %v", got, want)
	}
	if _, err := m.Allocate("top", EndpointRequest{ContainerID: "c3"}); !errdefs.IsUnavailable(err) {
		t.Errorf("top range exhausted: %v", err)
	}
}

func TestAllocateRequested(t *testing.T) {
	m := newManager(t)
	mustCreate(t, m, CreateOptions{Name: "user", Subnet: "10.3.0.0/24"})
	mustCreate(t, m, CreateOptions{Name: "auto"})
	held, err := m.Allocate("user", EndpointRequest{ContainerID: "holder0123456789", IP: netip.MustParseAddr("10.3.0.50")})
	if err != nil || held.IP().String() != "10.3.0.50" {
		t.Fatalf("requested: %+v, %v", held, err)
	}
	// A requested address does not move the serial cursor.
	if ep := mustAllocate(t, m, "user", "d1"); ep.IP().String() != "10.3.0.2" {
		t.Errorf("dynamic after a requested one: %s", ep.IP())
	}
	for _, tc := range []struct {
		net, ip, mac string
		class        error
		msg          string
	}{
		{"user", "10.3.0.50", "", errdefs.ErrConflict, "address already in use: 10.3.0.50 is held by container holder012345 on network user"},
		{"user", "10.3.0.1", "", errdefs.ErrConflict, "address already in use: 10.3.0.1 is the gateway of network user"},
		{"user", "10.3.0.0", "", errdefs.ErrInvalidArgument, "invalid address 10.3.0.0: it is the network or broadcast address of 10.3.0.0/24"},
		{"user", "10.3.0.255", "", errdefs.ErrInvalidArgument, "invalid address 10.3.0.255: it is the network or broadcast address"},
		{"user", "10.4.0.9", "", errdefs.ErrInvalidArgument, "no configured subnet or ip-range contain the IP address 10.4.0.9"},
		{"bridge", "172.17.0.9", "", errdefs.ErrInvalidArgument, "user specified IP address is supported on user defined networks only"},
		{"auto", "172.18.0.9", "", errdefs.ErrInvalidArgument, "user specified IP address is supported only when connecting to networks with user configured subnets"},
		{"host", "10.3.0.9", "", errdefs.ErrInvalidArgument, "network host has no IP addresses: --ip needs a bridge network"},
		{"user", "", "zz:zz", errdefs.ErrInvalidArgument, "invalid MAC address zz:zz"},
		{"user", "", "01:00:5e:00:00:01", errdefs.ErrInvalidArgument, "invalid MAC address 01:00:5e:00:00:01"},
	} {
		req := EndpointRequest{ContainerID: "new", MAC: tc.mac}
		if tc.ip != "" {
			req.IP = netip.MustParseAddr(tc.ip)
		}
		_, err := m.Allocate(tc.net, req)
		if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s on %s (mac %q):\n got %v\nwant %q", tc.ip, tc.net, tc.mac, err, tc.msg)
		}
	}
	ep, err := m.Allocate("user", EndpointRequest{ContainerID: "mac", MAC: "02:AA:bb:cc:dd:ee"})
	if err != nil || ep.MAC != "02:aa:bb:cc:dd:ee" {
		t.Errorf("requested MAC: %+v, %v", ep, err)
	}
	if eps, _ := m.Endpoints("user"); len(eps) != 3 {
		t.Errorf("refused allocations left endpoints: %d", len(eps))
	}
}

// TestAllocateConcurrent: goroutines, each with its own Manager (as
// separate CLIs would have), allocate at once: no address twice.
func TestAllocateConcurrent(t *testing.T) {
	root := t.TempDir()
	m, err := New(root, WithReserved(noHost))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, m, CreateOptions{Name: "busy", Subnet: "10.5.0.0/24"})
	const workers, each = 8, 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[netip.Addr]string{}
	)
	for w := range workers {
		wg.Go(func() {
			mw, err := New(root, WithReserved(noHost))
			if err != nil {
				t.Error(err)
				return
			}
			for i := range each {
				ctr := fmt.Sprintf("w%d-c%d", w, i)
				ep, err := mw.Allocate("busy", EndpointRequest{ContainerID: ctr})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if other, dup := seen[ep.IP()]; dup {
					t.Errorf("%s given to %s and %s", ep.IP(), other, ctr)
				}
				seen[ep.IP()] = ctr
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	eps, err := m.Endpoints("busy")
	if err != nil || len(eps) != workers*each || len(seen) != workers*each {
		t.Errorf("%d endpoints recorded, %d distinct addresses seen, want %d (%v)", len(eps), len(seen), workers*each, err)
	}
}

func TestSweep(t *testing.T) {
	m := newManager(t)
	mustCreate(t, m, CreateOptions{Name: "a"})
	mustCreate(t, m, CreateOptions{Name: "b"})
	for _, c := range []string{"live", "dead1", "dead2"} {
		mustAllocate(t, m, "a", c)
	}
	mustAllocate(t, m, "b", "dead1")
	n, err := m.Sweep(func(id string) bool { return id == "live" })
	if err != nil || n != 3 {
		t.Errorf("sweep released %d, %v; want 3", n, err)
	}
	all, _ := m.AllEndpoints()
	if len(all) != 1 {
		t.Fatalf("endpoints after sweep: %v", all)
	}
	for _, eps := range all {
		if len(eps) != 1 || eps[0].ContainerID != "live" {
			t.Errorf("left %+v", eps)
		}
	}
}

func TestAddressMath(t *testing.T) {
	for _, tc := range []struct{ p, first, last string }{
		{"10.0.0.0/24", "10.0.0.1", "10.0.0.254"},
		{"10.0.0.0/30", "10.0.0.1", "10.0.0.2"},
		{"10.0.0.0/31", "10.0.0.0", "10.0.0.1"},
		{"10.0.0.7/32", "10.0.0.7", "10.0.0.7"},
		{"0.0.0.0/0", "0.0.0.1", "255.255.255.254"},
	} {
		f, l := usable(netip.MustParsePrefix(tc.p))
		if f.String() != tc.first || l.String() != tc.last {
			t.Errorf("usable(%s) = %s..%s, want %s..%s", tc.p, f, l, tc.first, tc.last)
		}
	}
	if mac := macFromIP(netip.MustParseAddr("172.17.0.2")); mac != "02:42:ac:11:00:02" {
		t.Errorf("MAC of 172.17.0.2: %s", mac)
	}
}
