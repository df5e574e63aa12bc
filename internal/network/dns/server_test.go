package dns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/testutil"
)

// loopNets picks n /24 subnets inside 127.0.0.0/8 that other tests are
// unlikely to use. The kernel takes every 127/8 address as its own on
// lo, so a network there has a "gateway" the server can bind without an
// interface, and every packet stays on the host.
func loopNets(n int) []netip.Prefix {
	a, b := 64+rand.IntN(190), rand.IntN(240)
	var out []netip.Prefix
	for i := range n {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{127, byte(a), byte(b + i), 0}), 24))
	}
	return out
}

func host(p netip.Prefix, i int) netip.Addr {
	b := p.Addr().As4()
	b[3] = byte(i)
	return netip.AddrFrom4(b)
}

// fakeResolver is the host's resolver of the tests, on a 127/8 address:
// nothing a test asks ever leaves the host.
type fakeResolver struct {
	addr netip.Addr
	mu   sync.Mutex
	nets []string // the transport of each query, in order
}

func startFakeResolver(t *testing.T, addr netip.Addr) *fakeResolver {
	t.Helper()
	f := &fakeResolver{addr: addr}
	mux := mdns.NewServeMux()
	mux.HandleFunc(".", f.serve)
	for _, proto := range []string{"udp", "tcp"} {
		srv := &mdns.Server{Addr: net.JoinHostPort(addr.String(), "53"), Net: proto, Handler: mux}
		started := make(chan error, 1)
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() { started <- srv.ListenAndServe() }()
		if err := <-started; err != nil {
			t.Fatalf("fake resolver on %s/%s: %v", addr, proto, err)
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
	return f
}

func (f *fakeResolver) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	proto := w.LocalAddr().Network()
	f.mu.Lock()
	f.nets = append(f.nets, proto)
	f.mu.Unlock()
	q := req.Question[0]
	resp := new(mdns.Msg).SetReply(req)
	switch strings.ToLower(q.Name) {
	case "ext.example.":
		resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr(q.Name, mdns.TypeA), A: net.IPv4(192, 0, 2, 7)})
	case "big.example.":
		for i := range 40 {
			resp.Answer = append(resp.Answer, &mdns.TXT{Hdr: hdr(q.Name, mdns.TypeTXT), Txt: []string{fmt.Sprintf("%02d-%s", i, strings.Repeat("x", 40))}})
		}
	case "slow.example.":
		return // no answer at all: a resolver that is down
	default:
		resp.Rcode = mdns.RcodeNameError
	}
	if proto == "udp" {
		size := mdns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

func (f *fakeResolver) transports() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nets)
}

// digTimeout is how long dig waits for an answer.
var digTimeout = 2 * time.Second

// dig asks server (an address; port 53) from the address src, as a
// container with that address would.
func dig(t *testing.T, server, src netip.Addr, name string, qtype uint16, tcp bool, edns uint16) (*mdns.Msg, error) {
	t.Helper()
	c := &mdns.Client{Net: "udp", Timeout: digTimeout, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}}
	if tcp {
		c.Net = "tcp"
		c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	}
	req := new(mdns.Msg).SetQuestion(name, qtype)
	if edns > 0 {
		req.SetEdns0(edns, false)
	}
	resp, _, err := c.Exchange(req, net.JoinHostPort(server.String(), "53"))
	return resp, err
}

func newTestManager(t *testing.T, root string) *network.Manager {
	t.Helper()
	m, err := network.New(root, network.WithReserved(func() ([]netip.Prefix, error) { return nil, nil }))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func createNet(t *testing.T, m *network.Manager, name string, subnet netip.Prefix) *network.Network {
	t.Helper()
	n, err := m.Create(context.Background(), network.CreateOptions{Name: name, Subnet: subnet.String()})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func allocate(t *testing.T, m *network.Manager, nw, id, name string, aliases ...string) netip.Addr {
	t.Helper()
	ep, err := m.Allocate(nw, network.EndpointRequest{ContainerID: id, Name: name, Aliases: aliases})
	if err != nil {
		t.Fatal(err)
	}
	return ep.IP()
}

func writeResolvConf(t *testing.T, server netip.Addr) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver "+server.String()+"\nsearch example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestServer serves records made through network.Manager on their real
// gateway addresses (in 127/8) and port 53, with the host's resolver a
// fake one on another 127/8 address.
func TestServer(t *testing.T) {
	testutil.RequiresRoot(t) // port 53
	subnets := loopNets(3)
	root := t.TempDir()
	m := newTestManager(t, root)
	a := createNet(t, m, "neta", subnets[0])
	b := createNet(t, m, "netb", subnets[1])
	idWeb := "abcdef012345" + strings.Repeat("6", 52)
	web := allocate(t, m, "neta", idWeb, "web", "www")
	db := allocate(t, m, "neta", "db"+strings.Repeat("0", 62), "db")
	other := allocate(t, m, "netb", "ot"+strings.Repeat("0", 62), "other")

	up := startFakeResolver(t, host(subnets[2], 53))
	conf := writeResolvConf(t, up.addr)
	srv := newServer(53, upstream{}, t.Logf)
	srv.h.budget = 700 * time.Millisecond
	t.Cleanup(srv.Close)
	reload := func() {
		t.Helper()
		st, err := loadState(root, conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Update(st); err != nil {
			t.Fatal(err)
		}
	}
	reload()

	for _, tt := range []struct {
		what   string
		gw     netip.Addr
		src    netip.Addr
		name   string
		qtype  uint16
		tcp    bool
		rcode  int
		answer []string
	}{
		{"name", a.Gateway, db, "web.", mdns.TypeA, false, mdns.RcodeSuccess, []string{web.String()}},
		{"name over TCP", a.Gateway, db, "WEB.", mdns.TypeA, true, mdns.RcodeSuccess, []string{web.String()}},
		{"alias", a.Gateway, db, "www.", mdns.TypeA, false, mdns.RcodeSuccess, []string{web.String()}},
		{"short ID", a.Gateway, db, "abcdef012345.", mdns.TypeA, false, mdns.RcodeSuccess, []string{web.String()}},
		{"search domain", a.Gateway, db, "web.example.com.", mdns.TypeA, false, mdns.RcodeSuccess, []string{web.String()}},
		{"AAAA", a.Gateway, db, "web.", mdns.TypeAAAA, false, mdns.RcodeSuccess, nil},
		{"PTR", a.Gateway, db, mustReverse(web), mdns.TypePTR, false, mdns.RcodeSuccess, []string{"web.neta."}},
		{"forwarded", a.Gateway, db, "ext.example.", mdns.TypeA, false, mdns.RcodeSuccess, []string{"192.0.2.7"}},
		{"forwarded NXDOMAIN", a.Gateway, db, "nothing.example.", mdns.TypeA, false, mdns.RcodeNameError, nil},
		{"isolation", b.Gateway, other, "web.", mdns.TypeA, false, mdns.RcodeNameError, nil},
		{"other network", b.Gateway, other, "other.", mdns.TypeA, false, mdns.RcodeSuccess, []string{other.String()}},
	} {
		resp, err := dig(t, tt.gw, tt.src, tt.name, tt.qtype, tt.tcp, 0)
		if err != nil {
			t.Errorf("%s: %v", tt.what, err)
			continue
		}
		if resp.Rcode != tt.rcode {
			t.Errorf("%s: rcode %s, want %s", tt.what, mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.rcode])
		}
		if got := addrs(resp); !slices.Equal(got, tt.answer) {
			t.Errorf("%s: answer %v, want %v", tt.what, got, tt.answer)
		}
	}

	t.Run("no answer to another network's container", func(t *testing.T) {
		digTimeout = 300 * time.Millisecond
		defer func() { digTimeout = 2 * time.Second }()
		if resp, err := dig(t, a.Gateway, other, "web.", mdns.TypeA, false, 0); err == nil {
			t.Errorf("answered: %v", resp)
		}
	})

	t.Run("truncated upstream answer retried over TCP", func(t *testing.T) {
		before := len(up.transports())
		resp, err := dig(t, a.Gateway, db, "big.example.", mdns.TypeTXT, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := up.transports()[before:]; !slices.Equal(got, []string{"udp", "tcp"}) {
			t.Errorf("upstream asked over %v, want udp then tcp", got)
		}
		if !resp.Truncated {
			t.Errorf("UDP answer of %d records not truncated for a 512-byte client", len(resp.Answer))
		}
		resp, err = dig(t, a.Gateway, db, "big.example.", mdns.TypeTXT, true, 0)
		if err != nil || len(resp.Answer) != 40 {
			t.Errorf("over TCP: %v, %v; want 40 records", resp, err)
		}
		resp, err = dig(t, a.Gateway, db, "big.example.", mdns.TypeTXT, false, 4096)
		if err != nil || len(resp.Answer) != 40 || resp.Truncated {
			t.Errorf("over UDP with EDNS 4096: %v, %v; want 40 records", resp, err)
		}
	})

	t.Run("upstream timeout is SERVFAIL", func(t *testing.T) {
		begin := time.Now()
		resp, err := dig(t, a.Gateway, db, "slow.example.", mdns.TypeA, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Rcode != mdns.RcodeServerFailure {
			t.Errorf("rcode %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
		}
		if d := time.Since(begin); d > 1500*time.Millisecond {
			t.Errorf("SERVFAIL after %s, budget 700ms", d)
		}
	})

	t.Run("reload binds and unbinds", func(t *testing.T) {
		late := allocate(t, m, "neta", "la"+strings.Repeat("0", 62), "late")
		reload()
		resp, err := dig(t, a.Gateway, db, "late.", mdns.TypeA, false, 0)
		if err != nil || !slices.Equal(addrs(resp), []string{late.String()}) {
			t.Errorf("late container: %v, %v", resp, err)
		}
		if err := m.ReleaseContainer("ot" + strings.Repeat("0", 62)); err != nil {
			t.Fatal(err)
		}
		reload()
		if got := srv.Listening(); !slices.Equal(got, []netip.Addr{a.Gateway}) {
			t.Errorf("listening on %v, want only %v", got, a.Gateway)
		}
		// The gone network's address is free again.
		pc, err := net.ListenPacket("udp4", net.JoinHostPort(b.Gateway.String(), "53"))
		if err != nil {
			t.Errorf("gateway of a network without containers still bound: %v", err)
		} else {
			pc.Close()
		}
	})
}

func mustReverse(ip netip.Addr) string {
	r, err := mdns.ReverseAddr(ip.String())
	if err != nil {
		panic(err)
	}
	return r
}
