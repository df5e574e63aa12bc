package network_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/berth-dev/berth/internal/network"
)

// A user network with a subnet of its own, two containers on it, and the
// first one gone: what `network create`, `run --network` and `rm` do.
func Example() {
	root, _ := os.MkdirTemp("", "berth-network-example")
	defer os.RemoveAll(root)
	// A real engine passes the bridge driver and reads the host's routes;
	// this one keeps to records and pretends the host has no routes.
	m, _ := network.New(root, network.WithReserved(func() ([]netip.Prefix, error) { return nil, nil }))
	ctx := context.Background()

	n, err := m.Create(ctx, network.CreateOptions{Name: "web", Subnet: "10.7.0.0/24"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n.Name, n.Subnet, "gateway", n.Gateway, "bridge", n.Bridge == "br-"+n.ID[:12])

	a, _ := m.Allocate("web", network.EndpointRequest{ContainerID: "c1", Name: "api"})
	b, _ := m.Allocate("web", network.EndpointRequest{ContainerID: "c2", Name: "db", IP: netip.MustParseAddr("10.7.0.50")})
	fmt.Println(a.Name, a.Address, a.MAC)
	fmt.Println(b.Name, b.Address, b.MAC)

	// Still in use: refused, as Docker refuses it.
	err = m.Remove(ctx, "web")
	fmt.Println(strings.Replace(err.Error(), n.ID, "<id>", 1))
	m.ReleaseContainer("c1")
	m.ReleaseContainer("c2")
	fmt.Println(m.Remove(ctx, "web"))
	// Output:
	// web 10.7.0.0/24 gateway 10.7.0.1 bridge true
	// api 10.7.0.2/24 02:42:0a:07:00:02
	// db 10.7.0.50/24 02:42:0a:07:00:32
	// error while removing network: network web id <id> has active endpoints: conflict
	// <nil>
}
