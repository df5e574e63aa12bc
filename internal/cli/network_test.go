package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/network"
)

// runNetwork runs berth with the network verbs registered (whether or
// not cli.go registers them yet), stdin from in, and returns stdout and
// stderr apart.
func runNetwork(t *testing.T, in string, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCommand()
	registered := false
	for _, c := range root.Commands() {
		registered = registered || c.Name() == "network"
	}
	if !registered {
		addNetworkCommands(root)
	}
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(in))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// fakeDriver records the bridges it is asked for and fails when told to.
type fakeDriver struct {
	mu      sync.Mutex
	bridges map[string]bool
	fail    bool
}

func (d *fakeDriver) CreateNetwork(_ context.Context, n *network.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail {
		return errors.New("netlink: operation not permitted")
	}
	d.bridges[n.Bridge] = true
	return nil
}

func (d *fakeDriver) DeleteNetwork(_ context.Context, n *network.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.bridges, n.Bridge)
	return nil
}

// useFakeNetworks makes the network verbs use drv and see a host without
// routes, so the subnets the test expects do not depend on this host.
func useFakeNetworks(t *testing.T, drv network.Driver) {
	old := newNetworkManager
	newNetworkManager = func(root string) (*network.Manager, error) {
		return network.New(root, network.WithDriver(drv), network.WithReserved(func() ([]netip.Prefix, error) { return nil, nil }))
	}
	t.Cleanup(func() { newNetworkManager = old })
}

// TestNetworkVerbs drives the network verbs as a user would, against a
// fresh --root.
func TestNetworkVerbs(t *testing.T) {
	root := t.TempDir()
	t.Setenv("BERTH_ROOT", root)
	drv := &fakeDriver{bridges: map[string]bool{}}
	useFakeNetworks(t, drv)
	must := func(args ...string) string {
		t.Helper()
		out, errOut, err := runNetwork(t, "", args...)
		if err != nil {
			t.Fatalf("berth %v: %v\n%s%s", args, err, out, errOut)
		}
		return out
	}
	hex12 := `[0-9a-f]{12}`

	// A fresh engine lists Docker's three networks.
	if out := must("network", "ls"); !regexp.MustCompile(`^NETWORK ID     NAME      DRIVER    SCOPE\n` +
		hex12 + `   bridge    bridge    local\n` + hex12 + `   host      host      local\n` + hex12 + `   none      null      local\n$`).MatchString(out) {
		t.Errorf("ls on a fresh root:\n%s", out)
	}
	if !drv.bridges["berth0"] {
		t.Errorf("the default network's bridge was not created: %v", drv.bridges)
	}

	webID := strings.TrimSpace(must("network", "create", "--label", "app=web", "--label", "tier", "web"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(webID) {
		t.Errorf("create printed %q", webID)
	}
	must("network", "create", "-d", "bridge", "--subnet", "10.99.0.0/24", "--gateway", "10.99.0.254", "--ip-range", "10.99.0.128/25",
		"--internal", "-o", "com.docker.network.bridge.name=br-back", "back")
	if !drv.bridges["br-"+webID[:12]] || !drv.bridges["br-back"] {
		t.Errorf("bridges %v", drv.bridges)
	}

	if out := must("network", "ls", "-q"); len(strings.Fields(out)) != 5 || !regexp.MustCompile(`^(`+hex12+`\n){5}$`).MatchString(out) {
		t.Errorf("ls -q:\n%s", out)
	}
	if out := must("network", "ls", "-q", "--no-trunc", "--filter", "name=^web$"); out != webID+"\n" {
		t.Errorf("ls -q --no-trunc: %q", out)
	}
	if out := must("network", "ls", "--filter", "type=custom", "--format", "{{.Name}}"); out != "back\nweb\n" {
		t.Errorf("ls type=custom: %q", out)
	}
	if out := must("network", "ls", "--filter", "type=builtin", "--filter", "driver=null", "--format", "{{.Name}} {{.Driver}}"); out != "none null\n" {
		t.Errorf("ls type=builtin driver=null: %q", out)
	}
	if out := must("network", "ls", "--filter", "label=app=web", "--format", `{{.Name}} {{.Labels}} {{.Label "app"}}`); out != "web app=web,tier= web\n" {
		t.Errorf("ls label: %q", out)
	}
	if out := must("network", "ls", "--filter", "id="+webID[:8], "--format", "{{.ID}}"); out != webID[:12]+"\n" {
		t.Errorf("ls id=: %q", out)
	}
	if out := must("network", "ls", "--format", `table {{.Name}}\t{{.Internal}}`, "-f", "name=back", "-f", "name=web"); out != "NAME      INTERNAL\nback      true\nweb       false\n" {
		t.Errorf("ls --format table:\n%q", out)
	}
	if out := must("network", "ls", "--format", "table"); !strings.HasPrefix(out, "NETWORK ID     NAME      DRIVER    SCOPE\n") || strings.Count(out, "\n") != 6 {
		t.Errorf("ls --format table:\n%s", out)
	}
	out := must("network", "ls", "--format", "json", "--filter", "name=back")
	var row map[string]any
	if err := json.Unmarshal([]byte(out), &row); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("ls --format json: %v\n%s", err, out)
	}
	if row["Name"] != "back" || row["Driver"] != "bridge" || row["Internal"] != "true" || row["IPv6"] != "false" || row["Scope"] != "local" ||
		len(row["ID"].(string)) != 12 || row["CreatedAt"] == "" || !strings.HasPrefix(out, `{"CreatedAt":`) {
		t.Errorf("ls --format json: %s", out)
	}

	// inspect: Docker's shape.
	var ins []map[string]any
	if err := json.Unmarshal([]byte(must("network", "inspect", "web")), &ins); err != nil || len(ins) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	w := ins[0]
	ipam, _ := w["IPAM"].(map[string]any)
	cfg, _ := ipam["Config"].([]any)
	if w["Name"] != "web" || w["Id"] != webID || w["Driver"] != "bridge" || w["Scope"] != "local" || w["Internal"] != false ||
		len(cfg) != 1 || cfg[0].(map[string]any)["Subnet"] != "172.18.0.0/16" || cfg[0].(map[string]any)["Gateway"] != "172.18.0.1" {
		t.Errorf("inspect web: %v", w)
	}
	for _, key := range []string{"Created", "EnableIPv6", "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels"} {
		if _, ok := w[key]; !ok {
			t.Errorf("inspect lacks %s", key)
		}
	}
	if out := must("network", "inspect", "--format", "{{.Name}} {{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).IPRange}} {{.Options}}", "back", webID[:6]); out != "back 10.99.0.0/24 10.99.0.128/25 map[com.docker.network.bridge.name:br-back]\n"+"web 172.18.0.0/16 <no value> map[]\n" {
		t.Errorf("inspect --format:\n%s", out)
	}
	if out := must("network", "inspect", "-f", "{{.Name}} {{.Driver}} {{index .Options \"com.docker.network.bridge.name\"}}", "bridge"); out != "bridge bridge berth0\n" {
		t.Errorf("inspect bridge: %q", out)
	}
	out, _, err := runNetwork(t, "", "network", "inspect", "web", "missing")
	if err == nil || userMessage(err) != "network missing not found" || !strings.Contains(out, `"Name": "web"`) {
		t.Errorf("inspect of one missing: %v\n%s", err, out)
	}

	// Refusals: one line, the engine's exit code (not exitError).
	for args, want := range map[string]string{
		"network create web":                                                     "network with name web already exists",
		"network create bridge":                                                  "operation is not permitted on predefined bridge network",
		"network create --subnet 10.99.0.0/16 x1":                                "Pool overlaps with other one on this address space: 10.99.0.0/16 overlaps 10.99.0.0/24 of network back",
		"network create --subnet 10.98.0/16 x2":                                  "invalid subnet 10.98.0/16: invalid CIDR block notation",
		"network create --subnet 10.98.0.0/16 --gateway 10.97.0.1 x3":            "invalid gateway 10.97.0.1: parent subnet 10.98.0.0/16 doesn't contain this address",
		"network create --subnet 10.98.0.0/16 --ip-range 10.97.0.0/24 x4":        "invalid ip-range 10.97.0.0/24: parent subnet 10.98.0.0/16 doesn't contain ip-range",
		"network create --gateway 10.98.0.1 x5":                                  "every ip-range or gateway must have a corresponding subnet",
		"network create -d overlay x6":                                           `network driver "overlay" is not supported yet: berth has only the bridge driver`,
		"network create -o com.docker.network.bridge.name=much-too-long-name x7": `invalid bridge name "much-too-long-name"`,
		"network create --ipv6 x8":                                               "IPv6 networks are not supported yet",
		"network create --subnet 10.1.0.0/16 --subnet 10.2.0.0/16 x9":            "berth networks have one IPv4 subnet, got 2",
		"network create":                                                         `"berth network create" needs a network name`,
		"network ls --filter type=other":                                         "invalid filter: 'type'='other' (use custom or builtin)",
		"network ls --filter until=1h":                                           "invalid filter 'until'",
		"network prune -f --filter name=x":                                       "invalid filter 'name'",
	} {
		var ee exitError
		_, _, err := runNetwork(t, "", strings.Fields(args)...)
		if err == nil || errors.As(err, &ee) || !strings.Contains(userMessage(err), want) || strings.Contains(userMessage(err), "\n") {
			t.Errorf("%s: %v, want one engine error line with %q", args, err, want)
		}
	}
	if out := must("network", "ls", "-q"); len(strings.Fields(out)) != 5 {
		t.Errorf("refused creates left networks: %s", out)
	}

	// A container on web (what run will record): rm and prune leave web.
	m, err := newNetworkManager(root)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := m.Allocate("web", network.EndpointRequest{ContainerID: "c0ffee" + strings.Repeat("0", 58), Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if out := must("network", "inspect", "-f", `{{range $id, $c := .Containers}}{{$c.Name}} {{$c.IPv4Address}} {{$c.MacAddress}}{{end}}`, "web"); out != "app 172.18.0.2/16 02:42:ac:12:00:02\n" || ep.IP().String() != "172.18.0.2" {
		t.Errorf("inspect with a container: %q", out)
	}
	out, errOut, err := runNetwork(t, "", "network", "rm", "back", "missing", "web", "bridge")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || out != "back\n" ||
		errOut != "Error response from berth: network missing not found\n"+
			"Error response from berth: error while removing network: network web id "+webID+" has active endpoints\n"+
			"Error response from berth: bridge is a pre-defined network and cannot be removed\n" {
		t.Errorf("rm: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	if drv.bridges["br-back"] {
		t.Error("rm left back's bridge")
	}
	if out, errOut, err := runNetwork(t, "", "network", "rm", "-f", "missing"); err != nil || out != "" || errOut != "" {
		t.Errorf("rm -f missing: %v %q %q", err, out, errOut)
	}

	// prune: asks first; removes custom networks without containers.
	must("network", "create", "--label", "keep=1", "kept")
	must("network", "create", "idle")
	out, _, err = runNetwork(t, "n\n", "network", "prune")
	if err != nil || out != "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] " {
		t.Errorf("prune, answered no: %v %q", err, out)
	}
	if out := must("network", "prune", "-f", "--filter", "label!=keep"); out != "Deleted Networks:\nidle\n\n" {
		t.Errorf("prune label!=keep: %q", out)
	}
	out, _, err = runNetwork(t, "y\n", "network", "prune")
	if err != nil || !strings.HasSuffix(out, "[y/N] Deleted Networks:\nkept\n\n") {
		t.Errorf("prune: %v %q", err, out)
	}
	if out := must("network", "prune", "-f"); out != "" {
		t.Errorf("prune with nothing to do printed %q", out)
	}
	if out := must("network", "ls", "--format", "{{.Name}}"); out != "bridge\nhost\nnone\nweb\n" {
		t.Errorf("after prunes: %q", out)
	}
	// The container goes; so can its network.
	if err := m.ReleaseContainer(ep.ContainerID); err != nil {
		t.Fatal(err)
	}
	if out := must("network", "rm", webID[:12]); out != webID[:12]+"\n" {
		t.Errorf("rm by short ID: %q", out)
	}
	if len(drv.bridges) != 1 || !drv.bridges["berth0"] {
		t.Errorf("bridges left: %v, want only berth0", drv.bridges)
	}
}

// TestNetworkCreateDriverFails: a driver that fails leaves no network.
func TestNetworkCreateDriverFails(t *testing.T) {
	t.Setenv("BERTH_ROOT", t.TempDir())
	drv := &fakeDriver{bridges: map[string]bool{}}
	useFakeNetworks(t, drv)
	if _, _, err := runNetwork(t, "", "network", "ls"); err != nil {
		t.Fatal(err)
	}
	drv.fail = true
	_, _, err := runNetwork(t, "", "network", "create", "web")
	if err == nil || userMessage(err) != "create network web: netlink: operation not permitted" {
		t.Errorf("create with a failing driver: %v", err)
	}
	drv.fail = false
	if out, _, err := runNetwork(t, "", "network", "ls", "--format", "{{.Name}}"); err != nil || out != "bridge\nhost\nnone\n" {
		t.Errorf("after a failed create: %v %q", err, out)
	}
}

func TestDefaultBridgeName(t *testing.T) {
	if got := defaultBridgeName("/var/lib/berth"); got != "berth0" {
		t.Errorf("default root: %s", got)
	}
	a, b := defaultBridgeName(t.TempDir()), defaultBridgeName(t.TempDir())
	if !regexp.MustCompile(`^berth[0-9a-f]{8}$`).MatchString(a) || a == b || network.ValidBridgeName(a) != nil {
		t.Errorf("other roots: %s and %s", a, b)
	}
	if defaultBridgeName("/tmp/x") != defaultBridgeName("/tmp/x/") {
		t.Error("one root, two names")
	}
}
