package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/network"
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

// TestForwardOnBridges: the real server and forwarder, inside a host
// namespace of the test's own, send a container's outside queries to its
// own --dns server and another container's to the host's resolvers. Both
// upstreams are fakes in namespaces this test makes, hung off its host
// namespace: no query can leave, whatever the code does.
func TestForwardOnBridges(t *testing.T) {
	testutil.RequiresRoot(t)
	h := bridgetest.New(t, "host")
	ctrOwn := bridgetest.New(t, "ctrown")
	ctrHost := bridgetest.New(t, "ctrhost")
	own := bridgetest.NewRemote(t, h)     // the container's --dns server
	hostRes := bridgetest.NewRemote(t, h) // the "host's resolver"
	answers := map[*bridgetest.Remote]netip.Addr{own: netip.MustParseAddr("192.0.2.7"), hostRes: netip.MustParseAddr("192.0.2.8")}
	asked := map[*bridgetest.Remote]chan string{}
	for r, a := range answers {
		asked[r] = serveFakeDNS(t, r, a)
	}

	root := t.TempDir()
	m := newTestManager(t, root)
	n := createNet(t, m, "fwd", netip.MustParsePrefix("10.88.3.0/24"))
	epOwn, err := m.Allocate("fwd", network.EndpointRequest{ContainerID: "co" + strings.Repeat("0", 62), Name: "own",
		DNS: []string{own.RemoteAddr.String()}, DNSSearch: []string{"corp.test"}})
	if err != nil {
		t.Fatal(err)
	}
	ipHost := allocate(t, m, "fwd", "ch"+strings.Repeat("0", 62), "plain")
	h.Must(t, func() error {
		if _, err := bridge.EnsureBridge("br-f", n.GatewayPrefix(), 0); err != nil {
			return err
		}
		for _, x := range []struct {
			ns string
			ip netip.Addr
		}{{ctrOwn.Path, epOwn.IP()}, {ctrHost.Path, ipHost}} {
			if _, err := bridge.Attach(bridge.Endpoint{Bridge: "br-f", NetNS: x.ns,
				Address: netip.PrefixFrom(x.ip, 24), Gateway: n.Gateway}); err != nil {
				return err
			}
		}
		return nil
	})
	// The server as a process started inside the test's host namespace
	// (Ensure forks from the locked thread there): its forwarding sockets
	// are made there too, where the only routes lead to the fakes. An
	// in-process server would forward from the test's own namespace.
	runRoot := filepath.Join(root, "run")
	t.Setenv("BERTH_DNS_TEST_RESOLV_CONF", writeResolvConf(t, hostRes.RemoteAddr))
	killServersAtEnd(t, runRoot)
	h.Must(t, func() error { return Ensure(root, runRoot) })
	pids := servers(runRoot)
	if len(pids) != 1 {
		t.Fatalf("dns servers: %v, want one", pids)
	}
	var want string
	h.Must(t, func() (err error) {
		want, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	})
	if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pids[0])); got != want {
		t.Fatalf("the dns server runs in network namespace %q, not the test's host %q: refusing to send it queries", got, want)
	}

	for _, c := range []struct {
		ns     *bridgetest.NS
		src    netip.Addr
		name   string
		via    *bridgetest.Remote
		answer netip.Addr
	}{
		{ctrOwn, epOwn.IP(), "probe.berth.test.", own, answers[own]},
		{ctrHost, ipHost, "probe.berth.test.", hostRes, answers[hostRes]},
		{ctrOwn, epOwn.IP(), "plain.corp.test.", nil, ipHost}, // its search domain: answered here
	} {
		var resp *mdns.Msg
		err := bridgetest.Eventually(5*time.Second, func() error {
			return c.ns.Do(func() (err error) {
				resp, err = dig(t, n.Gateway, c.src, c.name, mdns.TypeA, false, 0)
				return err
			})
		})
		if err != nil {
			t.Fatalf("%s from %s: %v", c.name, c.src, err)
		}
		if got := addrs(resp); !slices.Equal(got, []string{c.answer.String()}) {
			t.Errorf("%s from %s: %v, want %s", c.name, c.src, got, c.answer)
		}
		for r, ch := range asked {
			select {
			case q := <-ch:
				if r != c.via {
					t.Errorf("%s from %s went to %s (%s)", c.name, c.src, r.RemoteAddr, q)
				}
			default:
				if r == c.via {
					t.Errorf("%s from %s never reached %s", c.name, c.src, r.RemoteAddr)
				}
			}
		}
	}
}

// serveFakeDNS answers every A query at r's address:53 with answer, and
// reports each query asked.
func serveFakeDNS(t *testing.T, r *bridgetest.Remote, answer netip.Addr) chan string {
	t.Helper()
	var pc net.PacketConn
	r.Must(t, func() (err error) {
		pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(r.RemoteAddr, 53).String())
		return err
	})
	asked := make(chan string, 16)
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		resp := new(mdns.Msg).SetReply(req)
		if q := req.Question[0]; q.Qtype == mdns.TypeA {
			resp.Answer = append(resp.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
				A: answer.AsSlice()})
		}
		select {
		case asked <- req.Question[0].Name:
		default:
		}
		w.WriteMsg(resp)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return asked
}
