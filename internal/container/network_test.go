package container

import (
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/network/nft"
)

func TestParsePublish(t *testing.T) {
	cases := []struct {
		specs   []string
		want    PortMap
		exposed []string
	}{
		{[]string{"80"}, PortMap{"80/tcp": {{}}}, []string{"80/tcp"}},
		{[]string{"8080:80"}, PortMap{"80/tcp": {{HostPort: "8080"}}}, []string{"80/tcp"}},
		{[]string{"127.0.0.1:8080:80/udp"}, PortMap{"80/udp": {{HostIp: "127.0.0.1", HostPort: "8080"}}}, []string{"80/udp"}},
		{[]string{"127.0.0.1::80"}, PortMap{"80/tcp": {{HostIp: "127.0.0.1"}}}, []string{"80/tcp"}},
		{[]string{"8080-8081:80-81"}, PortMap{"80/tcp": {{HostPort: "8080"}}, "81/tcp": {{HostPort: "8081"}}}, []string{"80/tcp", "81/tcp"}},
		{[]string{"8000-8010:80"}, PortMap{"80/tcp": {{HostPort: "8000-8010"}}}, []string{"80/tcp"}},
		{[]string{"80-81"}, PortMap{"80/tcp": {{}}, "81/tcp": {{}}}, []string{"80/tcp", "81/tcp"}},
		{[]string{"8080:80", "127.0.0.1:9090:80", "8080:80"}, PortMap{"80/tcp": {{HostPort: "8080"}, {HostIp: "127.0.0.1", HostPort: "9090"}}}, []string{"80/tcp"}},
	}
	for _, c := range cases {
		pm, exposed, err := ParsePublish(c.specs)
		if err != nil {
			t.Errorf("%v: %v", c.specs, err)
			continue
		}
		if !reflect.DeepEqual(pm, c.want) || !reflect.DeepEqual(exposed, c.exposed) {
			t.Errorf("%v: %v %v, want %v %v", c.specs, pm, exposed, c.want, c.exposed)
		}
	}
	bad := map[string]string{
		"x":               "invalid containerPort: x",
		"x:80":            "invalid hostPort: x",
		"0:80":            "invalid hostPort: 0",
		"70000:80":        "invalid hostPort: 70000",
		"80/sctpx":        "invalid proto: sctpx",
		"1.2.3:80:80":     "invalid ip address: 1.2.3",
		"8080-8082:80-81": "invalid ranges",
		"a:b:c:d":         "invalid publish spec",
		"[::1]:80:80":     "IPv6",
		"8080:":           "no port specified",
		"81-80":           "invalid containerPort",
	}
	for spec, want := range bad {
		if _, _, err := ParsePublish([]string{spec}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("-p %s: %v, want %q", spec, err, want)
		}
	}
}

func TestParseExpose(t *testing.T) {
	got, err := ParseExpose([]string{"80", "53/udp", "7000-7001"})
	if err != nil || !reflect.DeepEqual(got, []string{"80/tcp", "53/udp", "7000/tcp", "7001/tcp"}) {
		t.Errorf("ParseExpose: %v %v", got, err)
	}
	if _, err := ParseExpose([]string{"x"}); err == nil {
		t.Errorf("--expose x accepted")
	}
}

func TestWantedPorts(t *testing.T) {
	c := &Container{
		Config: Config{ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}, "9/sctp": {}}},
		HostConfig: HostConfig{PortBindings: PortMap{"80/tcp": {{HostIp: "127.0.0.1", HostPort: "8080"}}},
			PublishAllPorts: true},
	}
	ws, err := wantedPorts(c, netip.IPv4Unspecified())
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].key != "53/udp" || ws[0].hostLo != 0 || ws[1].key != "80/tcp" || ws[1].hostLo != 8080 ||
		ws[1].hostIP != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("wantedPorts: %+v", ws)
	}
}

// TestChoosePorts binds on 127.0.0.1 only, to probe.
func TestChoosePorts(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := uint16(l.Addr().(*net.TCPAddr).Port)
	describe := func(id string) string { return "held by container " + id }
	held := map[nft.Port]string{{Proto: "tcp", HostPort: 7001}: "other"}

	// A host process's port, and another container's (0.0.0.0 covers 127.0.0.1).
	_, err = choosePorts([]wantedPort{{key: "80/tcp", proto: "tcp", ctrPort: 80, hostIP: lo, hostLo: busy, hostHi: busy}}, held, describe)
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "port is already allocated (a host process uses it)") {
		t.Errorf("host process's port: %v", err)
	}
	_, err = choosePorts([]wantedPort{{key: "80/tcp", proto: "tcp", ctrPort: 80, hostIP: lo, hostLo: 7001, hostHi: 7001}}, held, describe)
	if err == nil || err.Error() != "Bind for 127.0.0.1:7001 failed: port is already allocated (held by container other): conflict" {
		t.Errorf("berth's port: %v", err)
	}
	// A range skips the taken port; an open one gets an ephemeral port.
	ps, err := choosePorts([]wantedPort{
		{key: "80/tcp", proto: "tcp", ctrPort: 80, hostIP: lo, hostLo: 7001, hostHi: 7003},
		{key: "81/tcp", proto: "tcp", ctrPort: 81, hostIP: lo},
		{key: "82/udp", proto: "udp", ctrPort: 82, hostIP: lo},
	}, held, describe)
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].HostPort != 7002 || ps[1].HostPort < 1024 || ps[2].Proto != "udp" || ps[2].HostPort == 0 {
		t.Errorf("chosen: %+v", ps)
	}
	// The same host port twice in one container.
	_, err = choosePorts([]wantedPort{
		{key: "80/tcp", proto: "tcp", ctrPort: 80, hostLo: 7005, hostHi: 7005},
		{key: "81/tcp", proto: "tcp", ctrPort: 81, hostIP: lo, hostLo: 7005, hostHi: 7005},
	}, nil, describe)
	if !errdefs.IsConflict(err) {
		t.Errorf("one host port twice: %v", err)
	}
}

func TestPortMap(t *testing.T) {
	c := &Container{Config: Config{ExposedPorts: map[string]struct{}{"80/tcp": {}, "443/tcp": {}}}}
	pm := portMap(c, []nft.Port{{Proto: "tcp", HostPort: 8080, ContainerPort: 80}, {Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8081, ContainerPort: 80}})
	want := PortMap{"80/tcp": {{HostIp: "0.0.0.0", HostPort: "8080"}, {HostIp: "127.0.0.1", HostPort: "8081"}}, "443/tcp": nil}
	if !reflect.DeepEqual(pm, want) {
		t.Errorf("portMap: %v", pm)
	}
}

// TestRecordedPorts: what portMap records of a start, recordedPorts reads
// back as the same rules (restoreFirewall's input), pointed at the first
// network's address; exposed ports without a binding give none.
func TestRecordedPorts(t *testing.T) {
	ctrIP := netip.MustParseAddr("172.18.0.5")
	started := []nft.Port{
		{Proto: "tcp", HostIP: netip.IPv4Unspecified(), HostPort: 8080, ContainerIP: ctrIP, ContainerPort: 80},
		{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8081, ContainerIP: ctrIP, ContainerPort: 80},
		{Proto: "udp", HostIP: netip.IPv4Unspecified(), HostPort: 5353, ContainerIP: ctrIP, ContainerPort: 53},
	}
	c := &Container{Config: Config{ExposedPorts: map[string]struct{}{"443/tcp": {}}}, HostConfig: HostConfig{NetworkMode: "app"}}
	c.NetworkSettings = NetworkSettings{Ports: portMap(c, started), Networks: map[string]*EndpointSettings{
		"app":   {EndpointInfo: EndpointInfo{IPAddress: ctrIP.String()}},
		"other": {EndpointInfo: EndpointInfo{IPAddress: "10.9.0.2"}},
	}}
	got := recordedPorts(c)
	sortPorts := func(ps []nft.Port) {
		slices.SortFunc(ps, func(a, b nft.Port) int { return int(a.HostPort) - int(b.HostPort) })
	}
	sortPorts(got)
	sortPorts(started)
	if !reflect.DeepEqual(got, started) {
		t.Errorf("recordedPorts:\n got %+v\nwant %+v", got, started)
	}
	c.NetworkSettings.Networks["app"].IPAddress = ""
	if got := recordedPorts(c); got != nil {
		t.Errorf("recordedPorts without an address: %+v", got)
	}
}

func TestResolvConf(t *testing.T) {
	host := []byte("# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.test lab.test\noptions edns0 trust-ad\n")
	cases := []struct {
		name string
		host []byte
		hc   HostConfig
		gw   string
		asIs bool
		want string
	}{
		{"bridge", host, HostConfig{}, "", false, "nameserver 10.0.0.2\nsearch corp.test lab.test\noptions edns0 trust-ad\n"},
		{"only loopback", []byte("nameserver 127.0.0.53\n"), HostConfig{}, "", false, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"user network", host, HostConfig{}, "172.20.0.1", false, "nameserver 172.20.0.1\nsearch corp.test lab.test\noptions edns0 trust-ad\n"},
		{"flags", host, HostConfig{Dns: []string{"1.1.1.1"}, DnsSearch: []string{"x.test"}, DnsOptions: []string{"ndots:3"}}, "", false,
			"nameserver 1.1.1.1\nsearch x.test\noptions ndots:3\n"},
		{"no search", host, HostConfig{DnsSearch: []string{"."}}, "", false, "nameserver 10.0.0.2\noptions edns0 trust-ad\n"},
		{"host network keeps loopback", host, HostConfig{DnsOptions: []string{"ndots:1"}}, "", true,
			"nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.test lab.test\noptions ndots:1\n"},
	}
	for _, c := range cases {
		var gw netip.Addr
		if c.gw != "" {
			gw = netip.MustParseAddr(c.gw)
		}
		if got := resolvConf(c.host, c.hc, gw, c.asIs); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestHostsFile(t *testing.T) {
	c := &Container{Config: Config{Hostname: "box"}, HostConfig: HostConfig{ExtraHosts: []string{"db:10.0.0.5", "gw:host-gateway", "v6=::1"}}}
	got := hostsFile(c, []netip.Addr{netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.19.0.3")},
		func() netip.Addr { return netip.MustParseAddr("172.18.0.1") })
	want := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n10.0.0.5\tdb\n172.18.0.1\tgw\n::1\tv6\n172.18.0.2\tbox\n172.19.0.3\tbox\n"
	if got != want {
		t.Errorf("hosts:\n%s\nwant\n%s", got, want)
	}
}

func TestParseExtraHost(t *testing.T) {
	for in, want := range map[string]string{"a:1.2.3.4": "a 1.2.3.4", "a=1.2.3.4": "a 1.2.3.4", "a:host-gateway": "a host-gateway",
		"a:[::1]": "a ::1", "a:::1": "a ::1"} {
		n, ip, err := parseExtraHost(in)
		if err != nil || n+" "+ip != want {
			t.Errorf("%s: %s %s %v", in, n, ip, err)
		}
	}
	for _, in := range []string{"a", ":1.2.3.4", "a:", "a:notip"} {
		if _, _, err := parseExtraHost(in); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

func TestNetworkOrderAndSettings(t *testing.T) {
	c := &Container{HostConfig: HostConfig{NetworkMode: "zeta"}, NetworkSettings: NetworkSettings{Networks: map[string]*EndpointSettings{
		"alpha": {EndpointInfo: EndpointInfo{NetworkID: "a", EndpointID: "e", IPAddress: "10.0.0.2", Aliases: []string{"x"}}}, "zeta": {EndpointInfo: EndpointInfo{NetworkID: "z"}}, "beta": {}}}}
	if got := networkOrder(c); !reflect.DeepEqual(got, []string{"zeta", "alpha", "beta"}) {
		t.Errorf("networkOrder: %v", got)
	}
	st := stoppedSettings(c.NetworkSettings)
	if a := st.Networks["alpha"]; a.NetworkID != "a" || a.EndpointID != "" || a.IPAddress != "" || !reflect.DeepEqual(a.Aliases, []string{"x"}) {
		t.Errorf("stoppedSettings: %+v", a)
	}
	if c.NetworkSettings.Networks["alpha"].IPAddress != "10.0.0.2" {
		t.Errorf("stoppedSettings changed its argument")
	}
}
