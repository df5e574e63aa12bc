package dns

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/network/bridge"
	"github.com/berth-dev/berth/internal/network/bridge/bridgetest"
	"github.com/berth-dev/berth/internal/testutil"
)

// TestServerOnBridges runs the server as it runs for real, on the
// gateway addresses of two Linux bridges, with a container namespace on
// each, all inside a host namespace of the test's own. A container of B
// can reach A's gateway address (the host routes between its own
// addresses), so what keeps it from A's names is the server's check of
// the source address: this is the test of isolation on a real kernel.
func TestServerOnBridges(t *testing.T) {
	testutil.RequiresRoot(t)
	h := bridgetest.New(t, "host")
	ctrA := bridgetest.New(t, "ctra")
	ctrB := bridgetest.New(t, "ctrb")

	root := t.TempDir()
	m := newTestManager(t, root)
	a := createNet(t, m, "nsa", netip.MustParsePrefix("10.88.1.0/24"))
	b := createNet(t, m, "nsb", netip.MustParsePrefix("10.88.2.0/24"))
	ipA := allocate(t, m, "nsa", "ca"+strings.Repeat("0", 62), "alpha", "web")
	ipB := allocate(t, m, "nsb", "cb"+strings.Repeat("0", 62), "beta")
	h.Must(t, func() error {
		for _, x := range []struct {
			br, ns string
			gw     netip.Prefix
			ip     netip.Addr
		}{{"br-a", ctrA.Path, a.GatewayPrefix(), ipA}, {"br-b", ctrB.Path, b.GatewayPrefix(), ipB}} {
			if _, err := bridge.EnsureBridge(x.br, x.gw, 0); err != nil {
				return err
			}
			if _, err := bridge.Attach(bridge.Endpoint{Bridge: x.br, NetNS: x.ns,
				Address: netip.PrefixFrom(x.ip, x.gw.Bits()), Gateway: x.gw.Addr()}); err != nil {
				return err
			}
		}
		return nil
	})

	up := &fakeUpstream{} // no way out of these namespaces anyway
	srv := newServer(53, up, t.Logf)
	t.Cleanup(srv.Close)
	st, err := loadState(root, "/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	h.Must(t, func() error { return srv.Update(st) }) // the sockets belong to the namespace they are made in

	resolve := func(ns *bridgetest.NS, gw, src netip.Addr, name string) (*mdns.Msg, error) {
		var resp *mdns.Msg
		err := ns.Do(func() error {
			var err error
			resp, err = dig(t, gw, src, name, mdns.TypeA, false, 0)
			return err
		})
		return resp, err
	}

	// A fresh veth takes a moment to pass packets.
	err = bridgetest.Eventually(5*time.Second, func() error {
		resp, err := resolve(ctrA, a.Gateway, ipA, "web.")
		if err != nil {
			return err
		}
		if got := addrs(resp); !slices.Equal(got, []string{ipA.String()}) {
			return errors.New("web: " + strings.Join(got, ","))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("container on nsa asking its gateway: %v", err)
	}
	if err := bridgetest.Eventually(5*time.Second, func() error {
		resp, err := resolve(ctrB, b.Gateway, ipB, "beta.")
		if err == nil && !slices.Equal(addrs(resp), []string{ipB.String()}) {
			err = errors.New("beta: " + strings.Join(addrs(resp), ","))
		}
		return err
	}); err != nil {
		t.Fatalf("container on nsb asking its gateway: %v", err)
	}

	// B's container reaches A's gateway...
	if err := ctrB.Ping(a.Gateway); err != nil {
		t.Fatalf("nsb cannot reach nsa's gateway at all (%v): the isolation check below would prove nothing", err)
	}
	// ...but gets no answer there,
	digTimeout = 500 * time.Millisecond
	defer func() { digTimeout = 2 * time.Second }()
	if resp, err := resolve(ctrB, a.Gateway, ipB, "alpha."); err == nil {
		t.Errorf("nsb's container got an answer at nsa's gateway: %v", resp)
	}
	// and its own gateway does not know A's names.
	digTimeout = 2 * time.Second
	resp, err := resolve(ctrB, b.Gateway, ipB, "alpha.")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Answer) != 0 {
		t.Errorf("nsb's gateway answered alpha: %v", resp.Answer)
	}
}
