package bridge

import (
	"net/netip"
	"regexp"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestValidIfName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"eth0", true},
		{"br-0123456789ab", true}, // Docker's user bridge name: 15 characters
		{"berth0", true},
		{"br.100", true},
		{"", false},
		{"br-0123456789abc", false}, // 16
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a:b", false},
		{"a b", false},
	} {
		err := ValidIfName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidIfName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidIfName(%q): %v is not an invalid-argument error", tc.name, err)
		}
	}
}

func TestRandomVethName(t *testing.T) {
	re := regexp.MustCompile(`^veth[0-9a-f]{7}$`)
	seen := map[string]bool{}
	for range 100 {
		n, err := randomVethName()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(n) || len(n) > ifNameMax {
			t.Fatalf("name %q: want veth and 7 hex digits", n)
		}
		seen[n] = true
	}
	if len(seen) < 99 {
		t.Errorf("100 names, only %d distinct", len(seen))
	}
}

func TestMACFromIP(t *testing.T) {
	if got := MACFromIP(netip.MustParseAddr("172.17.0.2")).String(); got != "02:42:ac:11:00:02" {
		t.Errorf("MACFromIP(172.17.0.2) = %s, want Docker's 02:42:ac:11:00:02", got)
	}
}

func TestCheckEndpoint(t *testing.T) {
	good := Endpoint{
		Bridge: "br0", NetNS: "/run/x", IfName: "eth0",
		Address: netip.MustParsePrefix("10.1.0.2/24"),
		Gateway: netip.MustParseAddr("10.1.0.1"),
	}
	if err := checkEndpoint(good); err != nil {
		t.Fatalf("good endpoint: %v", err)
	}
	for name, mod := range map[string]func(*Endpoint){
		"no bridge":          func(e *Endpoint) { e.Bridge = "" },
		"long ifname":        func(e *Endpoint) { e.IfName = "eth0123456789abc" },
		"bad host name":      func(e *Endpoint) { e.HostIfName = "a/b" },
		"no address":         func(e *Endpoint) { e.Address = netip.Prefix{} },
		"ipv6 address":       func(e *Endpoint) { e.Address = netip.MustParsePrefix("fd00::2/64") },
		"network address":    func(e *Endpoint) { e.Address = netip.MustParsePrefix("10.1.0.0/24") },
		"broadcast address":  func(e *Endpoint) { e.Address = netip.MustParsePrefix("10.1.0.255/24") },
		"gateway outside":    func(e *Endpoint) { e.Gateway = netip.MustParseAddr("10.2.0.1") },
		"gateway is address": func(e *Endpoint) { e.Gateway = netip.MustParseAddr("10.1.0.2") },
		"multicast MAC":      func(e *Endpoint) { e.MAC = []byte{1, 0, 0x5e, 0, 0, 1} },
		"short MAC":          func(e *Endpoint) { e.MAC = []byte{2, 0} },
		"tiny MTU":           func(e *Endpoint) { e.MTU = 10 },
	} {
		ep := good
		mod(&ep)
		err := checkEndpoint(ep)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: got %v, want an invalid-argument error", name, err)
		}
	}
	p31 := good
	p31.Address, p31.Gateway = netip.MustParsePrefix("10.1.0.0/31"), netip.MustParseAddr("10.1.0.1")
	if err := checkEndpoint(p31); err != nil {
		t.Errorf("/31 endpoint: %v", err)
	}
}

func TestIPNetKeepsHostPart(t *testing.T) {
	n := ipNet(netip.MustParsePrefix("10.1.0.2/24"))
	if n.String() != "10.1.0.2/24" {
		t.Errorf("ipNet = %s, want 10.1.0.2/24", n)
	}
}
