package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/network"
)

// The records of the unit tests: two user networks, an internal one, and
// the default bridge, whose names must not be served.
var (
	netA = &network.Network{ID: strings.Repeat("a", 64), Name: "neta", Driver: network.DriverBridge,
		Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.1.0.1")}
	netB = &network.Network{ID: strings.Repeat("b", 64), Name: "netb", Driver: network.DriverBridge,
		Subnet: netip.MustParsePrefix("10.2.0.0/24"), Gateway: netip.MustParseAddr("10.2.0.1")}
	netI = &network.Network{ID: strings.Repeat("c", 64), Name: "neti", Driver: network.DriverBridge, Internal: true,
		Subnet: netip.MustParsePrefix("10.3.0.0/24"), Gateway: netip.MustParseAddr("10.3.0.1")}
	netD = &network.Network{ID: strings.Repeat("d", 64), Name: network.NameBridge, Driver: network.DriverBridge,
		Subnet: netip.MustParsePrefix("172.17.0.0/16"), Gateway: netip.MustParseAddr("172.17.0.1")}
)

func ep(nw *network.Network, ctr, name, ip string, aliases ...string) *network.Endpoint {
	a := netip.MustParseAddr(ip)
	return &network.Endpoint{ID: ctr + nw.ID[:4], NetworkID: nw.ID, ContainerID: ctr, Name: name, Aliases: aliases,
		Address: netip.PrefixFrom(a, nw.Subnet.Bits())}
}

// Container IDs: 64 hex digits whose first 12 are the short ID.
var (
	idWeb   = "0123456789ab" + strings.Repeat("0", 52)
	idDB    = "111111111111" + strings.Repeat("1", 52)
	idOther = "222222222222" + strings.Repeat("2", 52)
	idBoth  = "333333333333" + strings.Repeat("3", 52)
	idIn    = "444444444444" + strings.Repeat("4", 52)
	idDef   = "555555555555" + strings.Repeat("5", 52)
)

func testTable() *Table {
	return NewTable([]*network.Network{netA, netB, netI, netD}, map[string][]*network.Endpoint{
		netA.ID: {
			ep(netA, idWeb, "web", "10.1.0.2", "www", "shared"),
			ep(netA, idDB, "db", "10.1.0.3", "shared"),
			ep(netA, idBoth, "both", "10.1.0.4"),
		},
		netB.ID: {
			ep(netB, idOther, "other", "10.2.0.2"),
			ep(netB, idBoth, "both", "10.2.0.4"),
		},
		netI.ID: {ep(netI, idIn, "inside", "10.3.0.2")},
		netD.ID: {ep(netD, idDef, "ondefault", "172.17.0.2")},
	})
}

// fakeUpstream answers every forwarded query with NXDOMAIN, or fails.
type fakeUpstream struct {
	mu      sync.Mutex
	asked   []string
	servers [][]string // the servers each query went to
	err     error
}

func (f *fakeUpstream) forward(_ context.Context, req *mdns.Msg, servers []string) (*mdns.Msg, error) {
	f.mu.Lock()
	f.asked = append(f.asked, req.Question[0].Name)
	f.servers = append(f.servers, servers)
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return new(mdns.Msg).SetRcode(req, mdns.RcodeNameError), nil
}

func (f *fakeUpstream) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.asked)
}

type query struct {
	gw, src string
	name    string
	qtype   uint16
	edns    uint16 // UDP size; 0 for none
	tcp     bool
}

// ask runs q through the raw path and returns the parsed answer, or nil
// when the server sends nothing.
func ask(t *testing.T, h *handler, st *state, q query) *mdns.Msg {
	t.Helper()
	req := new(mdns.Msg).SetQuestion(q.name, q.qtype)
	if q.edns > 0 {
		req.SetEdns0(q.edns, false)
	}
	raw, err := req.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := h.respond(context.Background(), st, raw, netip.MustParseAddr(q.gw), netip.MustParseAddr(q.src), !q.tcp)
	if out == nil {
		return nil
	}
	resp := new(mdns.Msg)
	if err := resp.Unpack(out); err != nil {
		t.Fatalf("%s: answer does not parse: %v", q.name, err)
	}
	if resp.Id != req.Id || !resp.Response {
		t.Fatalf("%s: answer id %d response %v, want id %d", q.name, resp.Id, resp.Response, req.Id)
	}
	return resp
}

func addrs(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, rr.A.String())
		case *mdns.PTR:
			out = append(out, rr.Ptr)
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestResolve(t *testing.T) {
	st := &state{table: testTable(), search: []string{"example.com"}, upstreams: []string{"fake"}}
	const gwA, gwB, gwI, srcA, srcB, srcBoth, srcI = "10.1.0.1", "10.2.0.1", "10.3.0.1", "10.1.0.9", "10.2.0.9", "10.2.0.4", "10.3.0.9"
	tests := []struct {
		what      string
		q         query
		rcode     int
		answer    []string
		forwarded bool
	}{
		{"name", query{gw: gwA, src: srcA, name: "web.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
		{"any case", query{gw: gwA, src: srcA, name: "WeB.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
		{"alias", query{gw: gwA, src: srcA, name: "www.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
		{"shared alias", query{gw: gwA, src: srcA, name: "shared.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.1.0.2", "10.1.0.3"}, false},
		{"short ID", query{gw: gwA, src: srcA, name: "0123456789AB.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
		{"search domain", query{gw: gwA, src: srcA, name: "web.Example.com.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
		{"other domain", query{gw: gwA, src: srcA, name: "web.example.org.", qtype: mdns.TypeA}, mdns.RcodeNameError, nil, true},
		{"AAAA is empty", query{gw: gwA, src: srcA, name: "web.", qtype: mdns.TypeAAAA}, mdns.RcodeSuccess, nil, false},
		{"MX is empty", query{gw: gwA, src: srcA, name: "db.", qtype: mdns.TypeMX}, mdns.RcodeSuccess, nil, false},
		{"PTR", query{gw: gwA, src: srcA, name: "2.0.1.10.in-addr.arpa.", qtype: mdns.TypePTR}, mdns.RcodeSuccess, []string{"web.neta."}, false},
		{"PTR unknown in subnet", query{gw: gwA, src: srcA, name: "99.0.1.10.in-addr.arpa.", qtype: mdns.TypePTR}, mdns.RcodeNameError, nil, false},
		{"PTR of another network", query{gw: gwA, src: srcA, name: "2.0.2.10.in-addr.arpa.", qtype: mdns.TypePTR}, mdns.RcodeNameError, nil, false},
		{"PTR default bridge", query{gw: gwA, src: srcA, name: "2.0.17.172.in-addr.arpa.", qtype: mdns.TypePTR}, mdns.RcodeNameError, nil, false},
		{"PTR outside", query{gw: gwA, src: srcA, name: "1.2.0.192.in-addr.arpa.", qtype: mdns.TypePTR}, mdns.RcodeNameError, nil, true},
		{"unknown name", query{gw: gwA, src: srcA, name: "example.org.", qtype: mdns.TypeA}, mdns.RcodeNameError, nil, true},
		{"isolation: B's name from A", query{gw: gwA, src: srcA, name: "other.", qtype: mdns.TypeA}, mdns.RcodeNameError, nil, true},
		{"isolation: A's name from B", query{gw: gwB, src: srcB, name: "web.", qtype: mdns.TypeA}, mdns.RcodeNameError, nil, true},
		{"default bridge names", query{gw: gwA, src: srcA, name: "ondefault.", qtype: mdns.TypeA}, mdns.RcodeNameError, nil, true},
		{"container on two networks sees both", query{gw: gwB, src: srcBoth, name: "web.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
		{"own network first", query{gw: gwB, src: srcBoth, name: "both.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.2.0.4"}, false},
		{"internal: names", query{gw: gwI, src: srcI, name: "inside.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"10.3.0.2"}, false},
		{"internal: no way out", query{gw: gwI, src: srcI, name: "example.org.", qtype: mdns.TypeA}, mdns.RcodeRefused, nil, false},
		{"EDNS", query{gw: gwA, src: srcA, name: "web.", qtype: mdns.TypeA, edns: 1232}, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
		{"TCP", query{gw: gwA, src: srcA, name: "web.", qtype: mdns.TypeA, tcp: true}, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			up := &fakeUpstream{}
			h := newHandler(up, 4)
			resp := ask(t, h, st, tt.q)
			if resp == nil {
				t.Fatal("no answer")
			}
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if got := addrs(resp); !slices.Equal(got, tt.answer) {
				t.Errorf("answer %v, want %v", got, tt.answer)
			}
			if got := up.count() > 0; got != tt.forwarded {
				t.Errorf("forwarded %v, want %v", got, tt.forwarded)
			}
			if len(resp.Question) != 1 || resp.Question[0].Name != tt.q.name {
				t.Errorf("question %v, want the client's %q", resp.Question, tt.q.name)
			}
			if (resp.IsEdns0() != nil) != (tt.q.edns > 0) && !tt.forwarded {
				t.Errorf("EDNS in answer %v, in query %v", resp.IsEdns0() != nil, tt.q.edns > 0)
			}
		})
	}
}

// TestResolveContainerResolver: a container's --dns servers take the
// host's place for its forwarded queries (loopback ones left out: they
// would be the host's loopback here), and its --dns-search domains are
// stripped as the host's are; other containers keep the host's.
func TestResolveContainerResolver(t *testing.T) {
	own := ep(netA, idWeb, "web", "10.1.0.2")
	own.DNS = []string{"127.0.0.1", "192.0.2.53", "not-an-ip", "2001:db8::53"}
	own.DNSSearch = []string{"Corp.Test."}
	loopOnly := ep(netA, idDB, "db", "10.1.0.3")
	loopOnly.DNS = []string{"127.0.0.11"}
	st := &state{table: NewTable([]*network.Network{netA}, map[string][]*network.Endpoint{
		netA.ID: {own, loopOnly, ep(netA, idOther, "plain", "10.1.0.4")},
	}), search: []string{"example.com"}, upstreams: []string{"192.0.2.1:53"}}
	host := []string{"192.0.2.1:53"}
	tests := []struct {
		what    string
		src     string
		name    string
		answer  []string
		servers []string // nil: answered here
	}{
		{"own servers", "10.1.0.2", "example.org.", nil, []string{"192.0.2.53:53", "[2001:db8::53]:53"}},
		{"own search domain", "10.1.0.2", "db.corp.test.", []string{"10.1.0.3"}, nil},
		{"host's search domain too", "10.1.0.2", "db.example.com.", []string{"10.1.0.3"}, nil},
		{"only loopback servers: the host's", "10.1.0.3", "example.org.", nil, host},
		{"no resolver of its own", "10.1.0.4", "example.org.", nil, host},
		{"another's search domain is not stripped", "10.1.0.4", "db.corp.test.", nil, host},
		{"not a container: the host's", "10.1.0.99", "example.org.", nil, host},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			up := &fakeUpstream{}
			resp := ask(t, newHandler(up, 4), st, query{gw: "10.1.0.1", src: tt.src, name: tt.name, qtype: mdns.TypeA})
			if resp == nil {
				t.Fatal("no answer")
			}
			if got := addrs(resp); !slices.Equal(got, tt.answer) {
				t.Errorf("answer %v, want %v", got, tt.answer)
			}
			switch {
			case tt.servers == nil && len(up.servers) > 0:
				t.Errorf("forwarded to %v, want answered here", up.servers)
			case tt.servers != nil && (len(up.servers) != 1 || !slices.Equal(up.servers[0], tt.servers)):
				t.Errorf("forwarded to %v, want %v", up.servers, tt.servers)
			}
		})
	}
}

func TestResolveRefusesStrangers(t *testing.T) {
	st := &state{table: testTable()}
	h := newHandler(&fakeUpstream{}, 4)
	for _, q := range []query{
		{gw: "10.1.0.1", src: "10.2.0.2", name: "web.", qtype: mdns.TypeA},   // B's container at A's gateway
		{gw: "10.1.0.1", src: "192.0.2.1", name: "web.", qtype: mdns.TypeA},  // outside every network
		{gw: "172.17.0.1", src: "172.17.0.2", name: "x.", qtype: mdns.TypeA}, // default bridge: not served
		{gw: "10.9.0.1", src: "10.9.0.2", name: "x.", qtype: mdns.TypeA},     // no such network
	} {
		if resp := ask(t, h, st, q); resp != nil {
			t.Errorf("%s from %s: answered %s", q.gw, q.src, resp)
		}
	}
}

func TestResolveUpstreamFailure(t *testing.T) {
	st := &state{table: testTable(), upstreams: []string{"fake"}}
	h := newHandler(&fakeUpstream{err: errors.New("timeout")}, 4)
	resp := ask(t, h, st, query{gw: "10.1.0.1", src: "10.1.0.9", name: "example.org.", qtype: mdns.TypeA})
	if resp == nil || resp.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("answer %v, want SERVFAIL", resp)
	}
}

func TestResolveBusyFailsFast(t *testing.T) {
	st := &state{table: testTable(), upstreams: []string{"fake"}}
	h := newHandler(&fakeUpstream{}, 1)
	h.slots <- struct{}{} // every forwarding slot taken
	resp := ask(t, h, st, query{gw: "10.1.0.1", src: "10.1.0.9", name: "example.org.", qtype: mdns.TypeA})
	if resp == nil || resp.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("answer %v, want SERVFAIL", resp)
	}
}

func TestResolveTruncates(t *testing.T) {
	nw := netA
	var eps []*network.Endpoint
	for i := range 100 {
		eps = append(eps, ep(nw, fmt.Sprintf("%064d", i), fmt.Sprintf("c%d", i), fmt.Sprintf("10.1.0.%d", i+2), "many"))
	}
	st := &state{table: NewTable([]*network.Network{nw}, map[string][]*network.Endpoint{nw.ID: eps})}
	h := newHandler(&fakeUpstream{}, 4)
	q := query{gw: "10.1.0.1", src: "10.1.0.2", name: "many.", qtype: mdns.TypeA}
	resp := ask(t, h, st, q)
	if !resp.Truncated || len(resp.Answer) >= 100 {
		t.Errorf("UDP without EDNS: TC %v with %d answers, want TC and fewer than 100", resp.Truncated, len(resp.Answer))
	}
	q.edns = 4096
	if resp = ask(t, h, st, q); resp.Truncated || len(resp.Answer) != 100 {
		t.Errorf("UDP with EDNS 4096: TC %v with %d answers, want all 100", resp.Truncated, len(resp.Answer))
	}
	q.edns, q.tcp = 0, true
	if resp = ask(t, h, st, q); resp.Truncated || len(resp.Answer) != 100 {
		t.Errorf("TCP: TC %v with %d answers, want all 100", resp.Truncated, len(resp.Answer))
	}
}

func TestRespondMalformed(t *testing.T) {
	st := &state{table: testTable()}
	h := newHandler(&fakeUpstream{}, 4)
	gw, src := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.9")
	q := new(mdns.Msg).SetQuestion("web.", mdns.TypeA)
	good, _ := q.Pack()

	resp := good[:len(good)-3] // cut short
	update := new(mdns.Msg).SetUpdate("neta.")
	updateRaw, _ := update.Pack()
	two := new(mdns.Msg).SetQuestion("web.", mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	twoRaw, _ := two.Pack()
	badVers := new(mdns.Msg).SetQuestion("web.", mdns.TypeA)
	badVers.SetEdns0(1232, false)
	badVers.IsEdns0().SetVersion(1)
	badVersRaw, _ := badVers.Pack()
	isResp := append([]byte(nil), good...)
	isResp[2] |= 0x80

	for _, tt := range []struct {
		what  string
		raw   []byte
		rcode int // -1: no answer at all
	}{
		{"empty", nil, -1},
		{"short header", good[:5], -1},
		{"cut short", resp, mdns.RcodeFormatError},
		{"a response", isResp, -1},
		{"update", updateRaw, mdns.RcodeNotImplemented},
		{"two questions", twoRaw, mdns.RcodeFormatError},
		{"EDNS version 1", badVersRaw, mdns.RcodeBadVers},
		{"too big", make([]byte, maxQuery+1), -1},
	} {
		out := h.respond(context.Background(), st, tt.raw, gw, src, true)
		if tt.rcode < 0 {
			if out != nil {
				t.Errorf("%s: answered", tt.what)
			}
			continue
		}
		m := new(mdns.Msg)
		if err := m.Unpack(out); err != nil {
			t.Errorf("%s: answer does not parse: %v", tt.what, err)
			continue
		}
		if m.Rcode != tt.rcode {
			t.Errorf("%s: rcode %s, want %s", tt.what, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tt.rcode])
		}
		if len(out) > len(tt.raw)+64 {
			t.Errorf("%s: %d-byte answer to %d bytes: an amplifier", tt.what, len(out), len(tt.raw))
		}
	}
}

func TestNewTable(t *testing.T) {
	tb := testTable()
	got := tb.Gateways()
	want := []netip.Addr{netA.Gateway, netB.Gateway, netI.Gateway}
	if !slices.Equal(got, want) {
		t.Errorf("gateways %v, want %v (not the default bridge's)", got, want)
	}
	if tb.Empty() {
		t.Error("table with endpoints is empty")
	}
	// Networks without endpoints, host and none networks: nothing to serve.
	empty := NewTable([]*network.Network{netA, {ID: "h", Name: "host", Driver: network.DriverHost}},
		map[string][]*network.Endpoint{"h": {{ContainerID: idWeb, Name: "web"}}})
	if !empty.Empty() {
		t.Errorf("gateways %v, want none", empty.Gateways())
	}
	// A name DNS cannot carry is skipped, the others of the endpoint kept.
	odd := NewTable([]*network.Network{netA}, map[string][]*network.Endpoint{
		netA.ID: {ep(netA, idWeb, "a..b", "10.1.0.2", strings.Repeat("x", 64), "ok")}})
	n := odd.byGateway[netA.Gateway]
	if _, ok := n.names["ok"]; !ok || len(n.names) != 2 { // "ok" and the short ID
		t.Errorf("names %v, want ok and the short ID", n.names)
	}
	if len(n.ptr) != 0 {
		t.Errorf("PTR %v for a name DNS cannot carry", n.ptr)
	}
}

func TestReadHostConf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	os.WriteFile(path, []byte(`# generated
nameserver 127.0.0.53
nameserver 10.1.0.1
; comment
nameserver fe80::1%eth0
nameserver bogus
domain old.example
search Example.COM. corp.example
options edns0 trust-ad
`), 0o644)
	ours := func(a netip.Addr) bool { return a == netip.MustParseAddr("10.1.0.1") }
	c, err := readHostConf(path, ours)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.53:53", "[fe80::1%eth0]:53"}; !slices.Equal(c.servers, want) {
		t.Errorf("servers %v, want %v (our own gateway skipped)", c.servers, want)
	}
	if want := []string{"example.com", "corp.example"}; !slices.Equal(c.search, want) {
		t.Errorf("search %v, want %v (the last line wins)", c.search, want)
	}
	c, err = readHostConf(filepath.Join(dir, "missing"), ours)
	if err != nil || !slices.Equal(c.servers, []string{"127.0.0.1:53"}) {
		t.Errorf("missing file: %v %v, want glibc's default 127.0.0.1", c.servers, err)
	}
}

func TestReverseAddr(t *testing.T) {
	for name, want := range map[string]string{
		"4.3.2.1.in-addr.arpa":   "1.2.3.4",
		"3.2.1.in-addr.arpa":     "",
		"x.3.2.1.in-addr.arpa":   "",
		"256.3.2.1.in-addr.arpa": "",
		"4.3.2.1.ip6.arpa":       "",
		"04.3.2.1.in-addr.arpa":  "",
	} {
		ip, ok := reverseAddr(name)
		if got := ""; ok {
			got = ip.String()
			if got != want {
				t.Errorf("%s: %s, want %q", name, got, want)
			}
		} else if want != "" {
			t.Errorf("%s: not parsed, want %s", name, want)
		}
	}
}
