package nft

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

func has[T expr.Any](exprs []expr.Any) (T, bool) {
	for _, e := range exprs {
		if t, ok := e.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

func TestNetworkRules(t *testing.T) {
	n := Network{Bridge: "br-abc", Subnet: netip.MustParsePrefix("172.18.0.0/16"), Masquerade: true, ICC: true}
	rs := networkRules(n)
	perChain := map[string]int{}
	masq := 0
	for _, r := range rs {
		if r.tag != "berth net=br-abc" {
			t.Errorf("rule in %s tagged %q", r.chain, r.tag)
		}
		perChain[r.chain]++
		if _, ok := has[*expr.Masq](r.exprs); ok {
			masq++
		}
		// Every rule names the bridge, padded as the kernel compares.
		found := false
		for _, e := range r.exprs {
			if c, ok := e.(*expr.Cmp); ok && bytes.Equal(c.Data, ifname("br-abc")) {
				found = true
			}
		}
		if !found {
			t.Errorf("a rule in %s does not match on the bridge", r.chain)
		}
		// Rules reading IPv4 headers check the family first.
		if p, ok := has[*expr.Payload](r.exprs); ok && p.Base == expr.PayloadBaseNetworkHeader {
			m, ok := r.exprs[0].(*expr.Meta)
			if !ok || m.Key != expr.MetaKeyNFPROTO {
				t.Errorf("rule in %s reads the IPv4 header without `meta nfproto ipv4` first", r.chain)
			}
		}
	}
	if perChain[chainLeaving] != 0 || perChain[chainEntering] != 3 || perChain[chainPostrouting] != 3 || perChain[chainInput] != 1 {
		t.Errorf("rules per chain %v", perChain)
	}
	if masq != 3 {
		t.Errorf("%d masquerade rules, want 3 (outbound, loopback, hairpin)", masq)
	}
	// The first rule entering accepts DNATed connections: it comes before
	// the drops, or published ports would be dropped.
	if rs[0].chain != chainEntering {
		t.Fatalf("first rule in %s", rs[0].chain)
	}
	if v, _ := has[*expr.Verdict](rs[0].exprs); v.Kind != expr.VerdictAccept {
		t.Errorf("first rule entering: %v, want the DNAT accept", v)
	}
}

func TestInternalNetworkRules(t *testing.T) {
	n := Network{Bridge: "br-int", Subnet: netip.MustParsePrefix("10.9.0.0/24"), Internal: true, Masquerade: true, ICC: true}
	var outDrop, dnatAccept bool
	for _, r := range networkRules(n) {
		v, _ := has[*expr.Verdict](r.exprs)
		if _, ok := has[*expr.Masq](r.exprs); ok {
			// Only the loopback and hairpin masquerades, which stay on
			// the bridge, are allowed.
			for _, e := range r.exprs {
				if c, ok := e.(*expr.Cmp); ok && c.Op == expr.CmpOpNeq && bytes.Equal(c.Data, ifname("br-int")) {
					t.Error("internal network masquerades traffic leaving its bridge")
				}
			}
		}
		if r.chain == chainLeaving {
			// iifname br-int oifname != br-int drop
			c1, ok1 := r.exprs[1].(*expr.Cmp)
			c2, ok2 := r.exprs[3].(*expr.Cmp)
			outDrop = ok1 && ok2 && v.Kind == expr.VerdictDrop && len(r.exprs) == 5 && c1.Op == expr.CmpOpEq && c2.Op == expr.CmpOpNeq
		}
		if _, ok := has[*expr.Ct](r.exprs); ok && r.chain == chainEntering && v.Kind == expr.VerdictAccept {
			dnatAccept = true
		}
	}
	if !outDrop {
		t.Error("internal network has no `iifname br-int oifname != br-int drop` in leaving")
	}
	if dnatAccept {
		t.Error("internal network lets DNATed connections in")
	}
	masqOut := func(n Network) bool {
		for _, r := range networkRules(n) {
			// ip saddr 10.9.0.0/24 oifname != br-int masquerade
			if _, ok := has[*expr.Masq](r.exprs); ok && len(r.exprs) == 8 {
				c, ok1 := r.exprs[4].(*expr.Cmp)
				o, ok2 := r.exprs[6].(*expr.Cmp)
				if ok1 && ok2 && bytes.Equal(c.Data, []byte{10, 9, 0, 0}) && o.Op == expr.CmpOpNeq {
					return true
				}
			}
		}
		return false
	}
	if masqOut(n) {
		t.Error("internal network masquerades its subnet")
	}
	n.Internal = false
	if !masqOut(n) {
		t.Error("bridge network does not masquerade its subnet")
	}
	n.Masquerade = false
	if masqOut(n) {
		t.Error("Masquerade=false still masquerades")
	}
}

func TestNoICC(t *testing.T) {
	for _, icc := range []bool{true, false} {
		n := Network{Bridge: "br0", Subnet: netip.MustParsePrefix("10.9.0.0/24"), ICC: icc}
		for _, r := range networkRules(n) {
			if r.chain != chainEntering || len(r.exprs) != 5 {
				continue
			}
			m1, ok1 := r.exprs[0].(*expr.Meta)
			m2, ok2 := r.exprs[2].(*expr.Meta)
			if ok1 && ok2 && m1.Key == expr.MetaKeyIIFNAME && m2.Key == expr.MetaKeyOIFNAME {
				v := r.exprs[4].(*expr.Verdict)
				if (v.Kind == expr.VerdictAccept) != icc {
					t.Errorf("ICC=%v: same-bridge verdict %v", icc, v.Kind)
				}
			}
		}
	}
}

func TestPortRule(t *testing.T) {
	p := Port{Proto: "udp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, ContainerIP: netip.MustParseAddr("10.1.0.2"), ContainerPort: 53}
	r := portRule("c0ffee", p)
	if r.chain != chainPorts || r.tag != "berth ctr=c0ffee udp/127.0.0.1:5353" {
		t.Fatalf("rule %s %q", r.chain, r.tag)
	}
	nat, ok := has[*expr.NAT](r.exprs)
	if !ok || nat.Type != expr.NATTypeDestNAT || nat.Family != unix.NFPROTO_IPV4 {
		t.Fatalf("no IPv4 DNAT: %+v", nat)
	}
	var imms [][]byte
	var cmps [][]byte
	for _, e := range r.exprs {
		switch e := e.(type) {
		case *expr.Immediate:
			imms = append(imms, e.Data)
		case *expr.Cmp:
			cmps = append(cmps, e.Data)
		}
	}
	if len(imms) != 2 || !bytes.Equal(imms[0], []byte{10, 1, 0, 2}) || !bytes.Equal(imms[1], []byte{0, 53}) {
		t.Errorf("DNAT target %v, want 10.1.0.2 and port 53 big-endian", imms)
	}
	want := [][]byte{{unix.NFPROTO_IPV4}, {127, 0, 0, 1}, {unix.IPPROTO_UDP}, {0x14, 0xe9}}
	if len(cmps) != len(want) {
		t.Fatalf("matches %v, want %v", cmps, want)
	}
	for i := range want {
		if !bytes.Equal(cmps[i], want[i]) {
			t.Errorf("match %d: %v, want %v", i, cmps[i], want[i])
		}
	}
	// 0.0.0.0 matches no address: the prerouting/output jump already
	// limits the chain to local addresses.
	p.HostIP = netip.Addr{}
	for _, e := range portRule("c0ffee", p).exprs {
		if pl, ok := e.(*expr.Payload); ok && pl.Base == expr.PayloadBaseNetworkHeader {
			t.Error("a port on every address matches a destination address")
		}
	}
}

func TestPortTagRoundTrip(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for _, p := range []Port{
		{Proto: "tcp", HostPort: 80},
		{Proto: "udp", HostIP: netip.MustParseAddr("192.0.2.7"), HostPort: 65535},
	} {
		tag := portTag(id, p)
		if len(comment(tag)) > 128 {
			t.Errorf("tag %q longer than nft's 128-byte comments", tag)
		}
		gotID, got, ok := parsePortTag(tag)
		if !ok || gotID != id || got.Proto != p.Proto || got.hostIP() != p.hostIP() || got.HostPort != p.HostPort {
			t.Errorf("parse(%q) = %s %+v %v", tag, gotID, got, ok)
		}
	}
	for _, bad := range []string{"", tagBase, "berth net=br0", "berth ctr=abc", "berth ctr=abc tcp:80", "berth ctr=abc tcp/x:80"} {
		if _, _, ok := parsePortTag(bad); ok {
			t.Errorf("parsePortTag(%q) ok", bad)
		}
	}
}

func TestOverlaps(t *testing.T) {
	any80 := Port{Proto: "tcp", HostPort: 80}
	lo80 := Port{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 80}
	other80 := Port{Proto: "tcp", HostIP: netip.MustParseAddr("192.0.2.1"), HostPort: 80}
	zero80 := Port{Proto: "tcp", HostIP: netip.IPv4Unspecified(), HostPort: 80}
	for _, tc := range []struct {
		a, b Port
		want bool
	}{
		{any80, any80, true},
		{any80, zero80, true},
		{any80, lo80, true},
		{lo80, any80, true},
		{lo80, lo80, true},
		{lo80, other80, false},
		{any80, Port{Proto: "udp", HostPort: 80}, false},
		{any80, Port{Proto: "tcp", HostPort: 81}, false},
	} {
		if got := tc.a.overlaps(tc.b); got != tc.want {
			t.Errorf("%s overlaps %s = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Port{Proto: "tcp", HostPort: 8080, ContainerIP: netip.MustParseAddr("10.0.0.2"), ContainerPort: 80}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Port){
		"sctp":            func(p *Port) { p.Proto = "sctp" },
		"ipv6 host":       func(p *Port) { p.HostIP = netip.MustParseAddr("::1") },
		"host port 0":     func(p *Port) { p.HostPort = 0 },
		"ctr port 0":      func(p *Port) { p.ContainerPort = 0 },
		"no container IP": func(p *Port) { p.ContainerIP = netip.Addr{} },
		"0.0.0.0 target":  func(p *Port) { p.ContainerIP = netip.IPv4Unspecified() },
	} {
		p := ok
		mod(&p)
		if err := p.validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
	for _, id := range []string{"", "a b", strings.Repeat("a", 65), "-x"} {
		if err := validContainerID(id); !errdefs.IsInvalidArgument(err) {
			t.Errorf("container ID %q: %v", id, err)
		}
	}
	for _, n := range []Network{
		{Bridge: "", Subnet: netip.MustParsePrefix("10.0.0.0/24")},
		{Bridge: "br-0123456789abc", Subnet: netip.MustParsePrefix("10.0.0.0/24")},
		{Bridge: "br0"},
		{Bridge: "br0", Subnet: netip.MustParsePrefix("fd00::/64")},
	} {
		if err := n.validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("network %+v: %v, want invalid argument", n, err)
		}
	}
}

func TestBaseChains(t *testing.T) {
	cs := chains()
	if cs[0].Name != chainPorts || cs[0].Hooknum != nil {
		t.Error("ports must be a regular chain made before the chains jumping to it")
	}
	names := map[string]bool{}
	for _, c := range cs {
		names[c.Name] = true
		if c.Table != table {
			t.Errorf("chain %s outside berth's table", c.Name)
		}
	}
	for _, r := range baseRules() {
		if !names[r.chain] || r.tag != tagBase {
			t.Errorf("base rule in %s tagged %q", r.chain, r.tag)
		}
	}
}
