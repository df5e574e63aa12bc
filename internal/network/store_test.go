package network

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// noHost is a host with no routes: the default pools are all free.
func noHost() ([]netip.Prefix, error) { return nil, nil }

func newManager(t *testing.T, opts ...Option) *Manager {
	t.Helper()
	m, err := New(t.TempDir(), append([]Option{WithReserved(noHost)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustCreate(t *testing.T, m *Manager, o CreateOptions) *Network {
	t.Helper()
	n, err := m.Create(context.Background(), o)
	if err != nil {
		t.Fatalf("create %s: %v", o.Name, err)
	}
	return n
}

func names(nets []*Network) []string {
	var out []string
	for _, n := range nets {
		out = append(out, n.Name)
	}
	return out
}

// recorder is a Driver that records its calls and fails when told to.
type recorder struct {
	mu                  sync.Mutex
	calls               []string
	failCreate, failDel bool
}

func (r *recorder) CreateNetwork(_ context.Context, n *Network) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "create "+n.Name+" "+n.Bridge)
	if r.failCreate {
		return errors.New("netlink: operation not permitted")
	}
	return nil
}

func (r *recorder) DeleteNetwork(_ context.Context, n *Network) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "delete "+n.Name+" "+n.Bridge)
	if r.failDel {
		return errors.New("netlink: device busy")
	}
	return nil
}

func TestEnsureDefault(t *testing.T) {
	drv := &recorder{}
	// 172.17.0.0/16 is docker0's on this pretend host.
	m := newManager(t, WithDriver(drv), WithReserved(func() ([]netip.Prefix, error) {
		return []netip.Prefix{netip.MustParsePrefix("172.17.0.0/16")}, nil
	}))
	ctx := context.Background()
	b, err := m.EnsureDefault(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "bridge" || b.Driver != "bridge" || b.Bridge != "berth0" || b.Subnet.String() != "172.18.0.0/16" ||
		b.Gateway.String() != "172.18.0.1" || !b.SubnetAuto || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(b.ID) {
		t.Errorf("default network %+v", b)
	}
	if b.GatewayPrefix().String() != "172.18.0.1/16" {
		t.Errorf("gateway prefix %s", b.GatewayPrefix())
	}
	if b.Options[OptBridgeName] != "berth0" || b.Options[OptDefaultBridge] != "true" || !b.Masquerade() || !b.ICC() || b.MTU() != 1500 {
		t.Errorf("default options %v", b.Options)
	}
	again, err := m.EnsureDefault(ctx)
	if err != nil || again.ID != b.ID {
		t.Errorf("second EnsureDefault: %v, %v", again, err)
	}
	if !slices.Equal(drv.calls, []string{"create bridge berth0"}) {
		t.Errorf("driver calls %v, want one create", drv.calls)
	}
	nets, err := m.List()
	if err != nil || !slices.Equal(names(nets), []string{"bridge", "host", "none"}) {
		t.Fatalf("list %v, %v", names(nets), err)
	}
	for _, n := range nets[1:] {
		if n.Subnet.IsValid() || n.Bridge != "" || n.Scope != "local" || !n.Predefined() {
			t.Errorf("%s: %+v", n.Name, n)
		}
	}
	if nets[1].Driver != "host" || nets[2].Driver != "null" {
		t.Errorf("drivers %s %s", nets[1].Driver, nets[2].Driver)
	}

	// A failing driver leaves no default network.
	m2 := newManager(t, WithDriver(&recorder{failCreate: true}))
	if _, err := m2.EnsureDefault(ctx); err == nil || !strings.Contains(err.Error(), "create the default bridge network: netlink: operation not permitted") {
		t.Errorf("EnsureDefault with a failing driver: %v", err)
	}
	if nets, _ := m2.List(); len(nets) != 0 {
		t.Errorf("failing driver left %v", names(nets))
	}
	// WithDefaultBridge: tests keep off berth0.
	m3 := newManager(t, WithDefaultBridge("bt-test0"))
	if b, err := m3.EnsureDefault(ctx); err != nil || b.Bridge != "bt-test0" || b.Subnet.String() != "172.17.0.0/16" {
		t.Errorf("WithDefaultBridge: %+v, %v", b, err)
	}
	if _, err := New(t.TempDir(), WithDefaultBridge("much-too-long-name")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a 18-character default bridge: %v", err)
	}
}

func TestCreate(t *testing.T) {
	drv := &recorder{}
	root := t.TempDir()
	m, err := New(root, WithReserved(noHost), WithDriver(drv))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	a := mustCreate(t, m, CreateOptions{Name: "front", Labels: map[string]string{"app": "web"}})
	if a.Subnet.String() != "172.18.0.0/16" || a.Gateway.String() != "172.18.0.1" || a.Bridge != "br-"+a.ID[:12] ||
		a.Driver != "bridge" || a.Scope != "local" || a.Created.Before(before) || a.Labels["app"] != "web" || !a.SubnetAuto {
		t.Errorf("front: %+v", a)
	}
	b := mustCreate(t, m, CreateOptions{Name: "back", Subnet: "10.10.0.0/24", Gateway: "10.10.0.254", IPRange: "10.10.0.128/25",
		Internal: true, Options: map[string]string{OptBridgeName: "br-back", OptMTU: "9000"}})
	if b.Subnet.String() != "10.10.0.0/24" || b.Gateway.String() != "10.10.0.254" || b.IPRange.String() != "10.10.0.128/25" ||
		!b.Internal || b.Masquerade() || b.Bridge != "br-back" || b.MTU() != 9000 || b.SubnetAuto {
		t.Errorf("back: %+v", b)
	}
	c := mustCreate(t, m, CreateOptions{Name: "third"})
	if c.Subnet.String() != "172.19.0.0/16" {
		t.Errorf("third network got %s, want the next free pool", c.Subnet)
	}
	want := []string{"create bridge berth0", "create front br-" + a.ID[:12], "create back br-back", "create third br-" + c.ID[:12]}
	if !slices.Equal(drv.calls, want) {
		t.Errorf("driver calls %v, want %v", drv.calls, want)
	}
	for _, ref := range []string{"back", b.ID, b.ID[:5]} {
		if got, err := m.Get(ref); err != nil || got.ID != b.ID || got.Gateway != b.Gateway {
			t.Errorf("get %s: %+v, %v", ref, got, err)
		}
	}
	if _, err := m.Get("missing"); !errdefs.IsNotFound(err) || err.Error() != "network missing not found: not found" {
		t.Errorf("get missing: %v", err)
	}
	// A second Manager (another process) sees the same.
	m2, err := New(root, WithReserved(noHost))
	if err != nil {
		t.Fatal(err)
	}
	if nets, err := m2.List(); err != nil || !slices.Equal(names(nets), []string{"back", "bridge", "front", "host", "none", "third"}) {
		t.Errorf("list from a second manager: %v, %v", names(nets), err)
	}
}

// TestCreateRefuses: every bad create is one line of the right class and
// leaves nothing behind.
func TestCreateRefuses(t *testing.T) {
	drv := &recorder{}
	m := newManager(t, WithDriver(drv))
	mustCreate(t, m, CreateOptions{Name: "taken", Subnet: "10.1.0.0/16", Options: map[string]string{OptBridgeName: "br-taken"}})
	for _, tc := range []struct {
		o     CreateOptions
		class error
		msg   string
	}{
		{CreateOptions{Name: "taken"}, errdefs.ErrConflict, "network with name taken already exists"},
		{CreateOptions{Name: "bridge"}, errdefs.ErrConflict, "operation is not permitted on predefined bridge network"},
		{CreateOptions{Name: "host"}, errdefs.ErrConflict, "operation is not permitted on predefined host network"},
		{CreateOptions{Name: "none"}, errdefs.ErrConflict, "operation is not permitted on predefined none network"},
		{CreateOptions{Name: ""}, errdefs.ErrInvalidArgument, "a network name is required"},
		{CreateOptions{Name: "a b"}, errdefs.ErrInvalidArgument, `invalid network name "a b"`},
		{CreateOptions{Name: "-x"}, errdefs.ErrInvalidArgument, `invalid network name "-x"`},
		{CreateOptions{Name: "x/y"}, errdefs.ErrInvalidArgument, `invalid network name "x/y"`},
		{CreateOptions{Name: "n", Subnet: "10.1.128.0/24"}, errdefs.ErrConflict, "Pool overlaps with other one on this address space: 10.1.128.0/24 overlaps 10.1.0.0/16 of network taken"},
		{CreateOptions{Name: "n", Subnet: "10.0.0.0/8"}, errdefs.ErrConflict, "Pool overlaps with other one on this address space"},
		{CreateOptions{Name: "n", Subnet: "10.2.0/16"}, errdefs.ErrInvalidArgument, "invalid subnet 10.2.0/16: invalid CIDR block notation"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0"}, errdefs.ErrInvalidArgument, "invalid subnet 10.2.0.0: invalid CIDR block notation"},
		{CreateOptions{Name: "n", Subnet: "10.2.3.4/16"}, errdefs.ErrInvalidArgument, "invalid subnet 10.2.3.4/16: it should be 10.2.0.0/16"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/31"}, errdefs.ErrInvalidArgument, "invalid subnet 10.2.0.0/31: a bridge network needs at least a /30"},
		{CreateOptions{Name: "n", Subnet: "fd00:1::/64"}, errdefs.ErrNotImplemented, "IPv6 networks are not supported yet"},
		{CreateOptions{Name: "n", Gateway: "10.2.0.1"}, errdefs.ErrInvalidArgument, "every ip-range or gateway must have a corresponding subnet"},
		{CreateOptions{Name: "n", IPRange: "10.2.0.0/24"}, errdefs.ErrInvalidArgument, "every ip-range or gateway must have a corresponding subnet"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", Gateway: "10.3.0.1"}, errdefs.ErrInvalidArgument, "invalid gateway 10.3.0.1: parent subnet 10.2.0.0/16 doesn't contain this address"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", Gateway: "10.2.0.0"}, errdefs.ErrInvalidArgument, "invalid gateway 10.2.0.0: it is the network or broadcast address of 10.2.0.0/16"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", Gateway: "10.2.255.255"}, errdefs.ErrInvalidArgument, "invalid gateway 10.2.255.255: it is the network or broadcast address"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", Gateway: "nope"}, errdefs.ErrInvalidArgument, "invalid gateway nope: invalid address"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", Gateway: "fd00::1"}, errdefs.ErrInvalidArgument, "invalid gateway fd00::1: parent subnet is an IPv4 block"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", IPRange: "10.3.0.0/24"}, errdefs.ErrInvalidArgument, "invalid ip-range 10.3.0.0/24: parent subnet 10.2.0.0/16 doesn't contain ip-range"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", IPRange: "10.0.0.0/8"}, errdefs.ErrInvalidArgument, "invalid ip-range 10.0.0.0/8: CIDR block is bigger than its parent subnet 10.2.0.0/16"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", IPRange: "10.2.1.7/24"}, errdefs.ErrInvalidArgument, "invalid ip-range 10.2.1.7/24: it should be 10.2.1.0/24"},
		{CreateOptions{Name: "n", Subnet: "10.2.0.0/16", IPRange: "10.2.1"}, errdefs.ErrInvalidArgument, "invalid ip-range 10.2.1: invalid CIDR block notation"},
		{CreateOptions{Name: "n", Driver: "host"}, errdefs.ErrConflict, `only one instance of "host" network is allowed`},
		{CreateOptions{Name: "n", Driver: "null"}, errdefs.ErrConflict, `only one instance of "null" network is allowed`},
		{CreateOptions{Name: "n", Driver: "overlay"}, errdefs.ErrNotImplemented, `network driver "overlay" is not supported yet`},
		{CreateOptions{Name: "n", Driver: "weave"}, errdefs.ErrNotFound, `plugin "weave" not found`},
		{CreateOptions{Name: "n", Options: map[string]string{OptBridgeName: "a-name-too-long-for-linux"}}, errdefs.ErrInvalidArgument, `invalid bridge name "a-name-too-long-for-linux": a Linux interface name is 1 to 15 characters`},
		{CreateOptions{Name: "n", Options: map[string]string{OptBridgeName: "br/x"}}, errdefs.ErrInvalidArgument, `invalid bridge name "br/x"`},
		{CreateOptions{Name: "n", Options: map[string]string{OptBridgeName: "br-taken"}}, errdefs.ErrConflict, "bridge name br-taken is already used by network taken"},
		{CreateOptions{Name: "n", Options: map[string]string{OptBridgeName: "berth0"}}, errdefs.ErrConflict, "bridge name berth0 is already used by network bridge"},
		{CreateOptions{Name: "n", Options: map[string]string{OptMTU: "12"}}, errdefs.ErrInvalidArgument, "invalid MTU number: 12"},
		{CreateOptions{Name: "n", Options: map[string]string{OptEnableICC: "maybe"}}, errdefs.ErrInvalidArgument, "invalid option com.docker.network.bridge.enable_icc=maybe: use true or false"},
		{CreateOptions{Name: "n", Options: map[string]string{OptHostBindingIPv4: "::1"}}, errdefs.ErrInvalidArgument, "use an IPv4 address"},
		{CreateOptions{Name: "n", Options: map[string]string{OptDefaultBridge: "true"}}, errdefs.ErrInvalidArgument, "reserved for the default bridge network"},
	} {
		_, err := m.Create(context.Background(), tc.o)
		if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("create %+v:\n got %v\nwant %q (%v)", tc.o, err, tc.msg, tc.class)
		}
	}
	nets, _ := m.List()
	if !slices.Equal(names(nets), []string{"bridge", "host", "none", "taken"}) {
		t.Errorf("refused creates left %v", names(nets))
	}
	if len(drv.calls) != 2 {
		t.Errorf("refused creates reached the driver: %v", drv.calls)
	}

	// The pools run out: Docker's message, nothing made.
	small := newManager(t, WithPools(netip.MustParsePrefix("10.9.0.0/24"), netip.MustParsePrefix("10.9.1.0/24")))
	mustCreate(t, small, CreateOptions{Name: "one"})
	_, err := small.Create(context.Background(), CreateOptions{Name: "two"})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network") {
		t.Errorf("pools exhausted: %v", err)
	}
	if _, err := small.Get("two"); !errdefs.IsNotFound(err) {
		t.Errorf("exhausted create left a record: %v", err)
	}
}

// TestDriverFailures: records and driver stay in step both ways.
func TestDriverFailures(t *testing.T) {
	drv := &recorder{}
	m := newManager(t, WithDriver(drv))
	ctx := context.Background()
	if _, err := m.EnsureDefault(ctx); err != nil {
		t.Fatal(err)
	}
	drv.failCreate = true
	_, err := m.Create(ctx, CreateOptions{Name: "web"})
	if err == nil || err.Error() != "create network web: netlink: operation not permitted" {
		t.Errorf("create with a failing driver: %v", err)
	}
	if _, err := m.Get("web"); !errdefs.IsNotFound(err) {
		t.Errorf("failing driver left a record: %v", err)
	}
	drv.failCreate = false
	n := mustCreate(t, m, CreateOptions{Name: "web"})
	if n.Subnet.String() != "172.18.0.0/16" {
		t.Errorf("after a failed create the subnet is %s, want 172.18.0.0/16 free again", n.Subnet)
	}
	drv.failDel = true
	if err := m.Remove(ctx, "web"); err == nil || err.Error() != "remove network web: netlink: device busy" {
		t.Errorf("remove with a failing driver: %v", err)
	}
	if _, err := m.Get("web"); err != nil {
		t.Errorf("failing delete lost the record: %v", err)
	}
	drv.failDel = false
	if err := m.Remove(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get("web"); !errdefs.IsNotFound(err) {
		t.Errorf("removed network still there: %v", err)
	}
}

func TestRemoveAndPrune(t *testing.T) {
	drv := &recorder{}
	m := newManager(t, WithDriver(drv))
	ctx := context.Background()
	used := mustCreate(t, m, CreateOptions{Name: "used"})
	mustCreate(t, m, CreateOptions{Name: "idle", Labels: map[string]string{"keep": "yes"}})
	mustCreate(t, m, CreateOptions{Name: "idle2"})
	if _, err := m.Allocate("used", EndpointRequest{ContainerID: "c1", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bridge", "host", "none"} {
		err := m.Remove(ctx, name)
		if !errdefs.IsConflict(err) || err.Error() != name+" is a pre-defined network and cannot be removed: conflict" {
			t.Errorf("rm %s: %v", name, err)
		}
	}
	err := m.Remove(ctx, "used")
	if !errdefs.IsConflict(err) || err.Error() != "error while removing network: network used id "+used.ID+" has active endpoints: conflict" {
		t.Errorf("rm used: %v", err)
	}
	if err := m.Remove(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("rm nope: %v", err)
	}
	f, err := ParseFilter([]string{"label!=keep=yes"}, "until", "label", "label!")
	if err != nil {
		t.Fatal(err)
	}
	pruned, err := m.Prune(ctx, f)
	if err != nil || !slices.Equal(pruned, []string{"idle2"}) {
		t.Errorf("prune label!=keep=yes: %v, %v", pruned, err)
	}
	f, _ = ParseFilter([]string{"until=1h"}, "until", "label", "label!")
	if pruned, err := m.Prune(ctx, f); err != nil || len(pruned) != 0 {
		t.Errorf("prune until=1h pruned %v, %v", pruned, err)
	}
	pruned, err = m.Prune(ctx, Filter{})
	if err != nil || !slices.Equal(pruned, []string{"idle"}) {
		t.Errorf("prune: %v, %v", pruned, err)
	}
	if err := m.Release("used", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, used.ID[:10]); err != nil {
		t.Errorf("rm by ID prefix once released: %v", err)
	}
	nets, _ := m.List()
	if !slices.Equal(names(nets), []string{"bridge", "host", "none"}) {
		t.Errorf("left %v", names(nets))
	}
	if eps, err := m.AllEndpoints(); err != nil || len(eps) != 0 {
		t.Errorf("endpoints left: %v, %v", eps, err)
	}
	// The name and the subnet are free again.
	if n := mustCreate(t, m, CreateOptions{Name: "used"}); n.Subnet.String() != "172.18.0.0/16" {
		t.Errorf("re-created network got %s", n.Subnet)
	}
}

// TestConcurrentCreate: goroutines with a Manager each (as separate
// CLIs) create networks at once; every network gets its own subnet and
// each name is made once.
func TestConcurrentCreate(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		subnets = map[string]string{}
		dupes   int
	)
	for w := range 6 {
		wg.Go(func() {
			m, err := New(root, WithReserved(noHost))
			if err != nil {
				t.Error(err)
				return
			}
			for i := range 4 {
				n, err := m.Create(ctx, CreateOptions{Name: "n" + string(rune('a'+i)) + string(rune('0'+w))})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if other, ok := subnets[n.Subnet.String()]; ok {
					t.Errorf("%s and %s share %s", other, n.Name, n.Subnet)
				}
				subnets[n.Subnet.String()] = n.Name
				mu.Unlock()
			}
			if _, err := m.Create(ctx, CreateOptions{Name: "shared"}); errdefs.IsConflict(err) {
				mu.Lock()
				dupes++
				mu.Unlock()
			} else if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(subnets) != 24 || dupes != 5 {
		t.Errorf("%d distinct subnets (want 24), %d conflicting creates of one name (want 5)", len(subnets), dupes)
	}
}

func TestInspectJSON(t *testing.T) {
	m := newManager(t)
	n := mustCreate(t, m, CreateOptions{Name: "web", Subnet: "10.20.0.0/16", IPRange: "10.20.5.0/24", Labels: map[string]string{"a": "b"}})
	ep, err := m.Allocate("web", EndpointRequest{ContainerID: "c0ffee", Name: "app", Aliases: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Inspect("web")
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	created, _ := json.Marshal(n.Created.Local())
	want := `{"Name":"web","Id":"` + n.ID + `","Created":` + string(created) + `,"Scope":"local","Driver":"bridge","EnableIPv6":false,` +
		`"IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.20.0.0/16","IPRange":"10.20.5.0/24","Gateway":"10.20.0.1"}]},` +
		`"Internal":false,"Attachable":false,"Ingress":false,"ConfigFrom":{"Network":""},"ConfigOnly":false,` +
		`"Containers":{"c0ffee":{"Name":"app","EndpointID":"` + ep.ID + `","MacAddress":"02:42:0a:14:05:00","IPv4Address":"10.20.5.0/16","IPv6Address":""}},` +
		`"Options":{},"Labels":{"a":"b"}}`
	if string(data) != want {
		t.Errorf("inspect:\n%s\nwant\n%s", data, want)
	}
	host, err := m.Inspect("host")
	if err != nil {
		t.Fatal(err)
	}
	data, _ = json.Marshal(host.IPAM)
	if string(data) != `{"Driver":"default","Options":null,"Config":[]}` || host.Driver != "host" || len(host.Containers) != 0 {
		t.Errorf("host: %s %+v", data, host)
	}
}

func TestFilter(t *testing.T) {
	n := &Network{ID: "4f0c" + strings.Repeat("a", 60), Name: "web-net", Driver: "bridge", Scope: "local",
		Created: time.Now().Add(-2 * time.Hour), Labels: map[string]string{"app": "web", "tier": ""}}
	bridge := &Network{ID: strings.Repeat("b", 64), Name: "bridge", Driver: "bridge", Scope: "local"}
	for _, tc := range []struct {
		args []string
		n    *Network
		eps  int
		want bool
	}{
		{nil, n, 0, true},
		{[]string{"name=web-net"}, n, 0, true},
		{[]string{"name=net"}, n, 0, true},
		{[]string{"name=^net"}, n, 0, false},
		{[]string{"name=x", "name=web"}, n, 0, true},
		{[]string{"id=4f0c"}, n, 0, true},
		{[]string{"id=^aaaa"}, n, 0, false},
		{[]string{"driver=bridge"}, n, 0, true},
		{[]string{"driver=host"}, n, 0, false},
		{[]string{"scope=local"}, n, 0, true},
		{[]string{"scope=swarm"}, n, 0, false},
		{[]string{"label=app"}, n, 0, true},
		{[]string{"label=app=web", "label=tier"}, n, 0, true},
		{[]string{"label=app=db"}, n, 0, false},
		{[]string{"type=custom"}, n, 0, true},
		{[]string{"type=builtin"}, n, 0, false},
		{[]string{"type=builtin"}, bridge, 0, true},
		{[]string{"type=custom"}, bridge, 0, false},
		{[]string{"dangling=true"}, n, 0, true},
		{[]string{"dangling=true"}, n, 1, false},
		{[]string{"dangling=true"}, bridge, 0, false},
		{[]string{"dangling=false"}, n, 1, true},
		{[]string{"until=1h"}, n, 0, true},
		{[]string{"until=3h"}, n, 0, false},
		{[]string{"label!=app=web"}, n, 0, false},
		{[]string{"label!=app=db"}, n, 0, true},
	} {
		f, err := ParseFilter(tc.args, "name", "id", "driver", "scope", "label", "label!", "type", "dangling", "until")
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if got := f.Match(tc.n, tc.eps); got != tc.want {
			t.Errorf("%v on %s with %d endpoints: %v, want %v", tc.args, tc.n.Name, tc.eps, got, tc.want)
		}
	}
	for _, args := range [][]string{{"type=other"}, {"nokey"}, {"until=1h"}, {"name=("}, {"dangling=maybe"}, {"type=custom", "type=builtin"}} {
		if _, err := ParseFilter(args, "name", "type", "dangling"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%v: %v, want invalid argument", args, err)
		}
	}
}

func TestNaturalOrder(t *testing.T) {
	in := []string{"net10", "net2", "a", "net1", "B", "net02", "net"}
	slices.SortFunc(in, func(a, b string) int {
		if naturalLess(a, b) {
			return -1
		}
		if naturalLess(b, a) {
			return 1
		}
		return 0
	})
	if want := []string{"B", "a", "net", "net1", "net2", "net02", "net10"}; !slices.Equal(in, want) {
		t.Errorf("natural order %v, want %v", in, want)
	}
}

func TestValidBridgeName(t *testing.T) {
	for _, ok := range []string{"berth0", "br-0123456789ab", "a", "x.y_z-1"} {
		if err := ValidBridgeName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0123456789abcdef", ".", "..", "a b", "a/b", "a:b", "tab\t", "é"} {
		if err := ValidBridgeName(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v, want invalid", bad, err)
		}
	}
}
