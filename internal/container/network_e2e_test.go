package container_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/network/bridge/bridgetest"
	"github.com/berth-dev/berth/internal/testutil"
)

// Networking end to end. Traffic goes only to 127.0.0.1 and to the
// addresses of containers these tests start, on bridges they make.

// newNetBerth is newBerth with the busybox applets the network tests use,
// and a www directory for httpd.
func newNetBerth(t *testing.T) *testutil.Berth {
	t.Helper()
	b := testutil.NewEngine(t, berthBin, func(rootfs string) {
		for _, a := range []string{"httpd", "wget", "ping", "nc", "route", "cut", "timeout"} {
			os.Symlink("busybox", filepath.Join(rootfs, "bin", a))
		}
		os.MkdirAll(filepath.Join(rootfs, "www"), 0o755)
		os.WriteFile(filepath.Join(rootfs, "www", "index.html"), []byte("hello from berth\n"), 0o644)
	})
	if _, errs, code := b.Run("network-dns", "--help"); code != 0 {
		t.Fatalf("this berth has no network-dns command (cli.go must register it with addNetworkDNSCommand): %s", errs)
	}
	return b
}

// httpd is the command of a container serving /www on port 80.
var httpd = []string{"httpd", "-f", "-p", "80", "-h", "/www"}

// wgetCmd fetches url in a container's shell, giving up after secs. Not
// wget as the container's PID 1: timeout's SIGTERM would not end it.
func wgetCmd(secs int, url string) string {
	return fmt.Sprintf("timeout %d wget -qO- %s; exit $?", secs, url)
}

// bindHost binds addr on the host, as a server with SO_REUSEADDR (most
// do) would, and lets it go.
func bindHost(network, addr string) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
	}}
	if strings.HasPrefix(network, "udp") {
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		if err == nil {
			pc.Close()
		}
		return err
	}
	l, err := lc.Listen(context.Background(), network, addr)
	if err == nil {
		l.Close()
	}
	return err
}

// freePort is a TCP port nothing listens on at 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get fetches url from the host, retrying while the server starts.
func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := c.Get(url)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}

// netnsCount is how many namespaces are pinned under b's run root.
func netnsCount(b *testutil.Berth) int {
	ents, _ := os.ReadDir(filepath.Join(b.RunRoot, "netns"))
	return len(ents)
}

// nftHas reports whether berth's nftables table holds a rule tagged with
// s (a container ID or a bridge).
func nftHas(s string) bool {
	out, err := exec.Command("nft", "list", "table", "inet", "berth").Output()
	return err == nil && strings.Contains(string(out), s)
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// defaultBridge is the Linux bridge of b's default network.
func defaultBridge(t *testing.T, b *testutil.Berth) string {
	t.Helper()
	return b.Must("network", "inspect", "-f", `{{index .Options "com.docker.network.bridge.name"}}`, "bridge")
}

// assertNoNetwork checks that nothing of container id's network is left
// and, when alone (no other container is on the default network), that
// the default bridge has no interface left on it. The bridge itself
// stays until a prune, as docker0; the engine tests' cleanup prunes and
// checks that it went (testutil.CheckNoNetworkResidue).
func assertNoNetwork(t *testing.T, b *testutil.Berth, id string, alone bool) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(b.RunRoot, "netns", id)); err == nil {
		t.Errorf("network namespace of %.12s left", id)
	}
	if nftHas(id) {
		t.Errorf("nftables rules of %.12s left", id)
	}
	for _, n := range strings.Fields(b.Must("network", "ls", "-q")) {
		if out := b.Must("network", "inspect", "-f", "{{json .Containers}}", n); strings.Contains(out, id) {
			t.Errorf("endpoint of %.12s left on network %s", id, n)
		}
	}
	if br := defaultBridge(t, b); alone {
		// The kernel deletes the veth as the namespace dies, in a worker.
		ports := func() int { ents, _ := os.ReadDir("/sys/class/net/" + br + "/brif"); return len(ents) }
		for deadline := time.Now().Add(5 * time.Second); ports() > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if n := ports(); n > 0 {
			t.Errorf("interfaces left on the default bridge %s with no container on it: %d", br, n)
		}
	}
}

// assertDNSHoldsNoPipe checks that b's DNS server has no pipe open: it
// has no use for one once it has said it is ready, so any pipe is one it
// inherited from whoever started it (a container's stdio).
func assertDNSHoldsNoPipe(t *testing.T, b *testutil.Berth) {
	t.Helper()
	pid, err := os.ReadFile(filepath.Join(b.RunRoot, "dns", "pid"))
	if err != nil {
		t.Fatalf("dns server pid: %v", err)
	}
	dir := filepath.Join("/proc", strings.TrimSpace(string(pid)), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("dns server's descriptors: %v", err)
	}
	for _, e := range ents {
		if to, _ := os.Readlink(filepath.Join(dir, e.Name())); strings.HasPrefix(to, "pipe:") {
			t.Errorf("the dns server holds fd %s -> %s, inherited from the process that started it", e.Name(), to)
		}
	}
}

// TestNetworkUserNetwork: containers on a user network reach each other
// by address, name and alias, a later one is found too, the default
// route goes through the gateway, and a container of another network
// reaches none of them.
func TestNetworkUserNetwork(t *testing.T) {
	b := newNetBerth(t)
	b.Must("network", "create", "front")
	b.Must("network", "create", "back")
	web := b.Must(append([]string{"run", "-d", "--name", "web", "--network", "front", "--network-alias", "www", "bb"}, httpd...)...)
	ip := b.Must("inspect", "-f", "{{.NetworkSettings.Networks.front.IPAddress}}", web)
	gw := b.Must("inspect", "-f", "{{.NetworkSettings.Networks.front.Gateway}}", web)
	if net.ParseIP(ip) == nil || net.ParseIP(gw) == nil {
		t.Fatalf("inspect: IP %q gateway %q", ip, gw)
	}
	// The DNS server, started by web's start hook, holds none of the
	// hook's pipes: web's output (and so `run`'s return) waits for
	// nothing of it. It once held them, and every `run --rm` on a user
	// network waited out the monitor's 2 s drain.
	assertDNSHoldsNoPipe(t, b)
	for _, target := range []string{ip, "web", "www", web[:12]} {
		out, errs, code := b.Run("run", "--rm", "--network", "front", "bb", "sh", "-c", wgetCmd(5, "http://"+target+"/"))
		if code != 0 || out != "hello from berth\n" {
			t.Errorf("wget http://%s/ from front: %d %q %q", target, code, out, errs)
		}
	}
	if out, errs, code := b.Run("run", "--rm", "--network", "front", "bb", "ping", "-c", "1", "-W", "2", "web"); code != 0 {
		t.Errorf("ping web: %d %s %s", code, out, errs)
	}
	// Started later, found by the first.
	b.Must("run", "-d", "--name", "late", "--network", "front", "bb", "sleep", "100")
	if out, errs, code := b.Run("exec", "web", "ping", "-c", "1", "-W", "2", "late"); code != 0 {
		t.Errorf("web pings late: %d %s %s", code, out, errs)
	}
	// Renamed, found by its new name. (The old one is not asked: an
	// unknown name is forwarded to the host's resolvers.)
	b.Must("rename", "late", "later")
	if out, errs, code := b.Run("exec", "web", "ping", "-c", "1", "-W", "2", "later"); code != 0 {
		t.Errorf("web pings later (renamed from late): %d %s %s", code, out, errs)
	}
	// resolv.conf names the gateway; the default route goes through it.
	out := b.Must("exec", "web", "sh", "-c", "grep nameserver /etc/resolv.conf; ip route | grep default")
	if !strings.Contains(out, "nameserver "+gw) || !strings.Contains(out, "default via "+gw) {
		t.Errorf("web's resolver and route: %q (gateway %s)", out, gw)
	}
	// Isolation: back does not reach front's address. (Names are not
	// asked across networks here: the DNS server would forward an
	// unknown name to the host's resolvers, outside this test's hosts.)
	if _, _, code := b.Run("run", "--rm", "--network", "back", "bb", "sh", "-c", wgetCmd(2, "http://"+ip+"/")); code == 0 {
		t.Errorf("a container on back reached %s on front", ip)
	}
	// network inspect lists the containers; rm of a network in use is refused.
	if out := b.Must("network", "inspect", "-f", "{{len .Containers}}", "front"); out != "2" {
		t.Errorf("front has %s containers, want 2", out)
	}
	if _, errs, code := b.Run("network", "rm", "front"); code == 0 || !strings.Contains(errs, "active endpoints") {
		t.Errorf("network rm of a network in use: %d %q", code, errs)
	}
	b.Must("rm", "-f", "web", "later")
	b.Must("network", "rm", "front", "back")
}

// TestNetworkPublish: -p answers on 127.0.0.1 from the host; ps, port and
// inspect show the mapping as Docker does; -P and -p CONTAINER_PORT take
// a free host port.
func TestNetworkPublish(t *testing.T) {
	b := newNetBerth(t)
	port := freePort(t)
	id := b.Must(append([]string{"run", "-d", "--name", "pub", "-p", fmt.Sprintf("%d:80", port), "--expose", "81", "bb"}, httpd...)...)
	if body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); body != "hello from berth\n" {
		t.Errorf("GET published port: %q", body)
	}
	want := fmt.Sprintf("0.0.0.0:%d->80/tcp", port)
	if got := b.Must("ps", "--format", "{{.Ports}}", "--filter", "name=pub"); got != "81/tcp, "+want {
		t.Errorf("ps PORTS: %q, want %q", got, "81/tcp, "+want)
	}
	if got := b.Must("port", "pub"); got != fmt.Sprintf("80/tcp -> 0.0.0.0:%d", port) {
		t.Errorf("port: %q", got)
	}
	if got := b.Must("port", "pub", "80"); got != fmt.Sprintf("0.0.0.0:%d", port) {
		t.Errorf("port pub 80: %q", got)
	}
	if got := b.Must("inspect", "-f", `{{range $p, $b := .NetworkSettings.Ports}}{{$p}}={{range $b}}{{.HostIp}}:{{.HostPort}}{{end}} {{end}}`, id); got != fmt.Sprintf("80/tcp=0.0.0.0:%d 81/tcp= ", port) {
		t.Errorf("inspect Ports: %q", got)
	}
	if got := b.Must("inspect", "-f", `{{.NetworkSettings.IPAddress}} {{.NetworkSettings.Networks.bridge.IPPrefixLen}}`, id); !strings.HasSuffix(got, " 16") || net.ParseIP(strings.Fields(got)[0]) == nil {
		t.Errorf("inspect IPAddress: %q", got)
	}
	// Port chosen by berth, on 127.0.0.1 only.
	b.Must(append([]string{"run", "-d", "--name", "auto", "-p", "127.0.0.1::80", "bb"}, httpd...)...)
	hp := b.Must("port", "auto", "80/tcp")
	if !strings.HasPrefix(hp, "127.0.0.1:") {
		t.Fatalf("port auto: %q", hp)
	}
	if body := get(t, "http://"+hp+"/"); body != "hello from berth\n" {
		t.Errorf("GET auto port: %q", body)
	}
	// -P publishes the exposed ports.
	b.Must(append([]string{"run", "-d", "--name", "all", "--expose", "80", "-P", "bb"}, httpd...)...)
	hp = b.Must("port", "all", "80")
	if !strings.HasPrefix(hp, "0.0.0.0:") {
		t.Fatalf("port all: %q", hp)
	}
	if body := get(t, "http://127.0.0.1"+strings.TrimPrefix(hp, "0.0.0.0")+"/"); body != "hello from berth\n" {
		t.Errorf("GET -P port: %q", body)
	}
	// The monitor holds the published ports: a host process that comes
	// later cannot bind them (it would never see a connection), as with
	// Docker's docker-proxy.
	if err := bindHost("tcp4", fmt.Sprintf("0.0.0.0:%d", port)); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a host process bound the published port %d: %v", port, err)
	}
	// After stop the port is free again and nothing is published.
	b.Must("stop", "-t", "1", "pub")
	if got := b.Must("port", "pub"); got != "" {
		t.Errorf("port after stop: %q", got)
	}
	if nftHas(id) {
		t.Errorf("rules of a stopped container left")
	}
	if err := bindHost("tcp4", fmt.Sprintf("0.0.0.0:%d", port)); err != nil {
		t.Errorf("the port of a stopped container is still held: %v", err)
	}
	b.Must("start", "pub")
	if body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); body != "hello from berth\n" {
		t.Errorf("GET after restart: %q", body)
	}
	// kill, then start at once: the exited run's held port is free by
	// then (the monitor lets go of it before the exit is recorded).
	for i := 0; i < 3; i++ {
		b.Must("kill", "pub")
		if _, errs, code := b.Run("start", "pub"); code != 0 {
			t.Fatalf("start right after kill (%d): %d %s", i, code, errs)
		}
	}
	// UDP is held too.
	udp := freePort(t)
	b.Must("run", "-d", "--name", "dns", "-p", fmt.Sprintf("127.0.0.1:%d:53/udp", udp), "bb", "sleep", "100")
	if err := bindHost("udp4", fmt.Sprintf("127.0.0.1:%d", udp)); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a host process bound the published UDP port %d: %v", udp, err)
	}
	b.Must("rm", "-f", "pub", "auto", "all", "dns")
	if err := bindHost("udp4", fmt.Sprintf("127.0.0.1:%d", udp)); err != nil {
		t.Errorf("the UDP port of a removed container is still held: %v", err)
	}
}

// TestNetworkPortConflict: a host port held by another container or by a
// host process fails the start with Docker's message and exit code, and
// leaves nothing of the failed container's network.
func TestNetworkPortConflict(t *testing.T) {
	b := newNetBerth(t)
	port := freePort(t)
	b.Must(append([]string{"run", "-d", "--name", "holder", "-p", fmt.Sprintf("%d:80", port), "bb"}, httpd...)...)
	_, errs, code := b.Run("run", "-d", "--name", "second", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "bb", "sleep", "100")
	want := fmt.Sprintf("Bind for 127.0.0.1:%d failed: port is already allocated", port)
	if code != 125 || !strings.Contains(errs, want) || !strings.Contains(errs, "holder") {
		t.Errorf("second -p %d: exit %d %q, want 125 and %q naming the holder", port, code, errs, want)
	}
	second := b.Must("inspect", "-f", "{{.Id}}", "second")
	if st := b.Must("inspect", "-f", "{{.State.Status}}", "second"); st != "created" {
		t.Errorf("the failed container is %s, want created (as Docker)", st)
	}
	assertNoNetwork(t, b, second, false)
	b.Must("rm", "second")
	// --rm: the failed container goes too.
	if _, _, code := b.Run("run", "--rm", "-p", fmt.Sprintf("%d:80", port), "bb", "true"); code != 125 {
		t.Errorf("run --rm with a taken port: exit %d", code)
	}
	if ids := b.Must("ps", "-aq"); len(strings.Fields(ids)) != 1 {
		t.Errorf("containers after the failed run --rm: %q", ids)
	}
	// A host process's port.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hp := l.Addr().(*net.TCPAddr).Port
	_, errs, code = b.Run("run", "--rm", "-p", fmt.Sprintf("127.0.0.1:%d:80", hp), "bb", "true")
	if code != 125 || !strings.Contains(errs, fmt.Sprintf("Bind for 127.0.0.1:%d failed: port is already allocated", hp)) {
		t.Errorf("-p over a host listener: exit %d %q", code, errs)
	}
	// Bad specs.
	for _, spec := range []string{"x:80", "80:x", "1.2.3:80:80", "80/sctpx", "0:80", "70000:80"} {
		if _, errs, code := b.Run("run", "--rm", "-p", spec, "bb", "true"); code != 125 || errs == "" {
			t.Errorf("-p %s: exit %d %q", spec, code, errs)
		}
	}
	b.Must("rm", "-f", "holder")
	assertNoNetwork(t, b, second, true)
}

// TestNetworkModes: none has only lo, container:NAME shares the other's
// interfaces and name, --internal has no route out, host sees the host.
func TestNetworkModes(t *testing.T) {
	b := newNetBerth(t)
	if out := b.Must("run", "--rm", "--network", "none", "bb", "ls", "/sys/class/net"); out != "lo" {
		t.Errorf("--network none: %q", out)
	}
	hostIfs, _ := os.ReadDir("/sys/class/net")
	if out := b.Must("run", "--rm", "--network", "host", "bb", "ls", "/sys/class/net"); len(strings.Fields(out)) != len(hostIfs) {
		t.Errorf("--network host: %q, the host has %d interfaces", out, len(hostIfs))
	}
	// Running containers of host and none are listed on those networks,
	// as Docker lists them, with an endpoint but no address.
	for _, mode := range []string{"host", "none"} {
		id := b.Must("run", "-d", "--name", "on-"+mode, "--network", mode, "bb", "sleep", "100")
		out := b.Must("network", "inspect", "-f", `{{range $k, $v := .Containers}}{{$k}} {{$v.Name}} {{$v.IPv4Address}}|{{end}}`, mode)
		if out != id+" on-"+mode+" |" {
			t.Errorf("network inspect %s: %q, want %s on-%s with no address", mode, out, id, mode)
		}
		if ep := b.Must("inspect", "-f", "{{(index .NetworkSettings.Networks \""+mode+"\").EndpointID}}", id); len(ep) != 64 {
			t.Errorf("inspect: endpoint on %s: %q", mode, ep)
		}
		b.Must("stop", "-t", "0", id)
		if out := b.Must("network", "inspect", "-f", "{{len .Containers}}", mode); out != "0" {
			t.Errorf("network inspect %s after stop: %s containers", mode, out)
		}
		b.Must("rm", id)
	}
	a := b.Must("run", "-d", "--name", "a", "bb", "sleep", "100")
	mac := b.Must("exec", "a", "cat", "/sys/class/net/eth0/address")
	out := b.Must("run", "--rm", "--network", "container:a", "bb", "sh", "-c", "cat /sys/class/net/eth0/address; hostname")
	if out != mac+"\n"+a[:12] {
		t.Errorf("container:a sees %q, want a's MAC %s and name %s", out, mac, a[:12])
	}
	if _, errs, code := b.Run("run", "--rm", "--network", "container:a", "-p", "80", "bb", "true"); code != 125 || !strings.Contains(errs, "conflicting options") {
		t.Errorf("container: with -p: %d %q", code, errs)
	}
	b.Must("stop", "-t", "0", "a")
	if _, errs, code := b.Run("run", "--rm", "--network", "container:a", "bb", "true"); code != 125 || !strings.Contains(errs, "non running container") {
		t.Errorf("container:a stopped: %d %q", code, errs)
	}
	b.Must("network", "create", "--internal", "closed")
	out = b.Must("run", "--rm", "--network", "closed", "bb", "sh", "-c", "ip route; ls /sys/class/net")
	if strings.Contains(out, "default") || !strings.Contains(out, "eth0") {
		t.Errorf("--internal network: %q", out)
	}
	if _, errs, code := b.Run("run", "--rm", "--network", "nosuch", "bb", "true"); code != 125 || !strings.Contains(errs, "network nosuch not found") {
		t.Errorf("unknown network: %d %q", code, errs)
	}
	if _, errs, code := b.Run("run", "--rm", "--ip", "10.1.2.3", "bb", "true"); code != 125 || !strings.Contains(errs, "user defined networks only") {
		t.Errorf("--ip on the default network: %d %q", code, errs)
	}
	b.Must("rm", "a")
	b.Must("network", "rm", "closed")
}

// TestNetworkEtcFiles: /etc/hosts, /etc/hostname and /etc/resolv.conf
// from --hostname, --add-host, --dns, --dns-search and --dns-option.
func TestNetworkEtcFiles(t *testing.T) {
	b := newNetBerth(t)
	b.Must("network", "create", "--subnet", "10.213.7.0/24", "etc")
	out := b.Must("run", "--rm", "--network", "etc", "--ip", "10.213.7.9", "--hostname", "box",
		"--add-host", "db:10.0.0.5", "--add-host", "gw:host-gateway",
		"--dns-search", "example.test", "--dns-option", "ndots:2",
		"bb", "sh", "-c", "cat /etc/hostname /etc/hosts /etc/resolv.conf")
	for _, want := range []string{"box\n", "127.0.0.1\tlocalhost\n", "10.0.0.5\tdb\n", "10.213.7.1\tgw\n", "10.213.7.9\tbox\n",
		"nameserver 10.213.7.1\n", "search example.test\n", "options ndots:2"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	// The default network: the host's resolvers, less loopback ones, or
	// Docker's fallback; --dns replaces them.
	out = b.Must("run", "--rm", "--dns", "10.9.9.9", "bb", "cat", "/etc/resolv.conf")
	if out != "nameserver 10.9.9.9" && !strings.HasPrefix(out, "nameserver 10.9.9.9\n") {
		t.Errorf("--dns: %q", out)
	}
	out = b.Must("run", "--rm", "bb", "cat", "/etc/resolv.conf")
	if strings.Contains(out, "nameserver 127.") || !strings.Contains(out, "nameserver ") {
		t.Errorf("default network resolv.conf: %q", out)
	}
	if _, errs, code := b.Run("run", "--rm", "--add-host", "nocolon", "bb", "true"); code != 125 || !strings.Contains(errs, "bad format for add-host") {
		t.Errorf("--add-host nocolon: %d %q", code, errs)
	}
	if _, errs, code := b.Run("run", "--rm", "--dns", "notanip", "bb", "true"); code != 125 || !strings.Contains(errs, "is not an ip address") {
		t.Errorf("--dns notanip: %d %q", code, errs)
	}
	b.Must("network", "rm", "etc")
}

// TestNetworkConnect: network connect adds an interface to a running
// container (no second default route), disconnect takes it away, both
// with Docker's refusals.
func TestNetworkConnect(t *testing.T) {
	b := newNetBerth(t)
	b.Must("network", "create", "one")
	b.Must("network", "create", "two")
	b.Must(append([]string{"run", "-d", "--name", "srv", "--network", "two", "bb"}, httpd...)...)
	b.Must("run", "-d", "--name", "c", "--network", "one", "bb", "sleep", "100")
	if _, _, code := b.Run("exec", "c", "sh", "-c", wgetCmd(2, "http://srv/")); code == 0 {
		t.Errorf("c reached srv before being connected to two")
	}
	b.Must("network", "connect", "--alias", "cee", "two", "c")
	out := b.Must("exec", "c", "sh", "-c", "ls /sys/class/net; ip route | grep -c default")
	if out != "eth0\neth1\nlo\n1" {
		t.Errorf("after connect: %q", out)
	}
	if out := b.Must("exec", "c", "sh", "-c", wgetCmd(5, "http://srv/")); out != "hello from berth" {
		t.Errorf("c to srv after connect: %q", out)
	}
	if _, _, code := b.Run("exec", "srv", "ping", "-c", "1", "-W", "2", "cee"); code != 0 {
		t.Errorf("srv cannot ping c by its alias on two")
	}
	if _, errs, code := b.Run("network", "connect", "two", "c"); code != 1 || !strings.Contains(errs, "already exists in network two") {
		t.Errorf("connect twice: %d %q", code, errs)
	}
	if got := b.Must("ps", "--filter", "name=^c$", "--format", "{{.Networks}}"); got != "one,two" {
		t.Errorf("ps Networks: %q", got)
	}
	b.Must("network", "disconnect", "two", "c")
	if out := b.Must("exec", "c", "ls", "/sys/class/net"); out != "eth0\nlo" {
		t.Errorf("after disconnect: %q", out)
	}
	if _, errs, code := b.Run("network", "disconnect", "two", "c"); code != 1 || !strings.Contains(errs, "is not connected to network two") {
		t.Errorf("disconnect twice: %d %q", code, errs)
	}
	if _, errs, code := b.Run("network", "connect", "one", "nosuch"); code != 1 || !strings.Contains(errs, "no such container") {
		t.Errorf("connect of a missing container: %d %q", code, errs)
	}
	// A stopped container is attached at its next start.
	b.Must("create", "--name", "later", "--network", "one", "bb", "ls", "/sys/class/net")
	b.Must("network", "connect", "two", "later")
	if out := b.Must("start", "-a", "later"); out != "eth0\neth1\nlo" {
		t.Errorf("connected while stopped: %q", out)
	}
	b.Must("rm", "-f", "srv", "c", "later")
	b.Must("network", "rm", "one", "two")
}

// TestNetworkNothingLeft: a start that fails half-way through the
// network, or just after it (the command does not exist), a kill -9 of
// the monitor followed by rm -f, and restarts by the restart policy all
// leave nothing of the network behind.
func TestNetworkNothingLeft(t *testing.T) {
	b := newNetBerth(t)
	b.Must("network", "create", "n")
	port := freePort(t)
	for _, fp := range []string{"network-attached", "network-ready"} {
		cmd := b.Cmd("run", "-d", "--name", "fp", "-p", fmt.Sprintf("%d:80", port), "bb", "sleep", "100")
		cmd.Env = append(cmd.Env, "BERTH_FAILPOINT="+fp)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 || !strings.Contains(string(out), "failpoint "+fp) {
			t.Errorf("failpoint %s: %v %q", fp, err, out)
		}
		id := b.Must("inspect", "-f", "{{.Id}}", "fp")
		assertNoNetwork(t, b, id, true)
		b.Must("rm", "fp")
	}
	if _, _, code := b.Run("run", "--rm", "--network", "n", "-p", fmt.Sprintf("%d:80", port), "bb", "nosuchcmd"); code != 127 {
		t.Errorf("nosuchcmd: exit %d", code)
	}
	if netnsCount(b) != 0 || nftHas(fmt.Sprintf(":%d", port)) {
		t.Errorf("a failed start left a namespace (%d) or a rule", netnsCount(b))
	}
	// kill -9 of the monitor, then rm -f.
	id := b.Must("run", "-d", "--network", "n", "-p", fmt.Sprintf("%d:80", port), "bb", "sleep", "100")
	mons := b.Monitors()
	if len(mons) != 1 {
		t.Fatalf("monitors: %v", mons)
	}
	syscall.Kill(mons[0], syscall.SIGKILL)
	waitFor(t, "the monitor to die", func() bool { return len(b.Monitors()) == 0 })
	b.Must("rm", "-f", id)
	assertNoNetwork(t, b, id, true)
	if netnsCount(b) != 0 {
		t.Errorf("namespaces left: %d", netnsCount(b))
	}
	// Restarts go through the same start: a new address each time is
	// fine, a leftover is not.
	id = b.Must("run", "-d", "--restart", "on-failure:3", "-p", fmt.Sprintf("%d:80", port), "bb", "sh", "-c", "sleep 0.2; exit 1")
	waitFor(t, "three restarts", func() bool {
		return b.Must("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", id) == "exited 3"
	})
	assertNoNetwork(t, b, id, true)
	b.Must("rm", id)
	b.Must("network", "rm", "n")
	// The default bridge outlives its last container, as docker0; a prune
	// takes it and its rules down, and the next container brings them back.
	br := defaultBridge(t, b)
	if !linkExists(br) {
		t.Errorf("the default bridge %s went with its last container; it should stay until a prune", br)
	}
	b.Must("network", "prune", "-f")
	if linkExists(br) || nftHas(`"berth net=`+br+`"`) {
		t.Errorf("network prune left the unused default bridge %s (up: %v) or its rules", br, linkExists(br))
	}
	b.Must("run", "--rm", "bb", "true")
	if !linkExists(br) {
		t.Errorf("the next container did not bring the default bridge %s back", br)
	}
}

// TestNetworkStartCost prints (does not judge) what bridge networking
// adds to `run --rm ... true` over --network none, with hyperfine when it
// is installed.
func TestNetworkStartCost(t *testing.T) {
	if testing.Short() {
		t.Skip("timing: skipped with -short")
	}
	b := newNetBerth(t)
	b.Must("run", "--rm", "bb", "true")
	args := func(mode string) []string {
		return append([]string{"--root", b.Root, "--run-root", b.RunRoot}, "run", "--rm", "--network", mode, "bb", "true")
	}
	if hf, err := exec.LookPath("hyperfine"); err == nil {
		cmd := exec.Command(hf, "-N", "-w", "3", "-r", "30", "--style", "basic",
			b.Bin+" "+strings.Join(args("none"), " "), b.Bin+" "+strings.Join(args("bridge"), " "))
		out, _ := cmd.CombinedOutput()
		t.Logf("hyperfine:\n%s", out)
	}
	median := func(mode string) time.Duration {
		var ds []time.Duration
		for range 25 {
			start := time.Now()
			if out, err := exec.Command(b.Bin, args(mode)...).CombinedOutput(); err != nil {
				t.Fatalf("run --network %s: %v %s", mode, err, out)
			}
			ds = append(ds, time.Since(start))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	none, br := median("none"), median("bridge")
	t.Logf("run --rm true: --network none %v, bridge %v (median of 25): bridge adds %v", none.Round(time.Millisecond),
		br.Round(time.Millisecond), (br - none).Round(time.Millisecond))
	// With another container keeping the default bridge up, the bridge
	// and its rules are not made and removed per run.
	keep := b.Must("run", "-d", "bb", "sleep", "300")
	none, br = median("none"), median("bridge")
	t.Logf("same with the bridge kept up by another container: none %v, bridge %v: bridge adds %v", none.Round(time.Millisecond),
		br.Round(time.Millisecond), (br - none).Round(time.Millisecond))
	b.Must("rm", "-f", keep)
}

// TestNetworkNATToRemote: a container on a bridge network reaches a
// "remote host" through the host's masquerade, and one on an --internal
// network does not. The remote is a namespace this test makes, joined to
// the host by a veth pair on 198.18.0.0/15 (RFC 2544's benchmarking
// range) and routing nothing beyond its /30: it can answer only the
// host's own address on that link, so a reply proves the source was
// rewritten. No packet goes anywhere else.
func TestNetworkNATToRemote(t *testing.T) {
	b := newNetBerth(t)
	remote := bridgetest.NewRemote(t, &bridgetest.NS{}) // hung off the real host
	dst := remote.RemoteAddr.String()
	ping := fmt.Sprintf("ping -c 1 -W 2 %s >/dev/null && echo reached || echo unreachable", dst)

	b.Must("network", "create", "outside")
	b.Must("network", "create", "--internal", "closed")
	// The veth's carrier comes up asynchronously: retry the first reach.
	var out string
	for i := 0; i < 5 && out != "reached"; i++ {
		out = b.Must("run", "--rm", "--network", "outside", "bb", "sh", "-c", ping)
	}
	if out != "reached" {
		t.Errorf("a container on a bridge network did not reach the remote host %s through NAT: %s", dst, out)
	}
	if out := b.Must("run", "--rm", "bb", "sh", "-c", ping); out != "reached" {
		t.Errorf("a container on the default bridge did not reach the remote host %s: %s", dst, out)
	}
	if out := b.Must("run", "--rm", "--network", "closed", "bb", "sh", "-c", ping); out != "unreachable" {
		t.Errorf("a container on an --internal network reached the remote host %s: %s", dst, out)
	}
	// Even with a default route of its own (it has NET_ADMIN only with
	// --cap-add), the internal container stays in.
	route := fmt.Sprintf("ip route add default via $(ip route | awk '/src/ {print $1}' | sed 's|0/.*|1|'); ip route | grep -q default || { echo no route added; exit 0; }; %s", ping)
	if out := b.Must("run", "--rm", "--cap-add", "NET_ADMIN", "--network", "closed", "bb", "sh", "-c", route); out != "unreachable" {
		t.Errorf("an --internal container with its own default route reached the remote host %s: %s", dst, out)
	}
	b.Must("network", "rm", "outside", "closed")
}

// TestNetworkContainerDNSServers: on a user network, a container's --dns
// and --dns-search reach the DNS server's records (its endpoint), which
// forwards its queries to those servers (tested with the real server in
// namespaces of its own: dns.TestForwardOnBridges), while its resolv.conf
// names the gateway. No query is sent here: one that went wrong would
// reach the host's resolvers.
func TestNetworkContainerDNSServers(t *testing.T) {
	b := newNetBerth(t)
	b.Must("network", "create", "withdns")
	id := b.Must("run", "-d", "--network", "withdns", "--dns", "192.0.2.53", "--dns-search", "corp.test", "bb", "sleep", "100")
	gw := b.Must("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "withdns")
	if out := b.Must("exec", id, "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver "+gw+"\n") ||
		strings.Contains(out, "192.0.2.53") || !strings.Contains(out, "search corp.test") {
		t.Errorf("resolv.conf on a user network with --dns: %q, want the gateway %s as the only nameserver and the search domain", out, gw)
	}
	m, err := network.New(b.Root)
	if err != nil {
		t.Fatal(err)
	}
	n, err := m.Get("withdns")
	if err != nil {
		t.Fatal(err)
	}
	eps, err := m.AllEndpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(eps[n.ID]) != 1 || !slices.Equal(eps[n.ID][0].DNS, []string{"192.0.2.53"}) || !slices.Equal(eps[n.ID][0].DNSSearch, []string{"corp.test"}) {
		t.Errorf("endpoints on withdns: %+v, want one with DNS [192.0.2.53] and search [corp.test]", eps[n.ID])
	}
	b.Must("rm", "-f", id)
	b.Must("network", "rm", "withdns")
}

// TestNetworkLinks: --link on the default bridge gives the container an
// /etc/hosts entry for the target (alias, short ID, name) and Docker's
// link environment; a later network connect keeps the entry; a missing
// target fails the create and a stopped one the start, with Docker's
// messages; host networking refuses links.
func TestNetworkLinks(t *testing.T) {
	b := newNetBerth(t)
	db := b.Must("run", "-d", "--name", "db", "--expose", "5432", "-e", "PGUSER=app", "bb", "sleep", "100")
	ip := b.Must("inspect", "-f", "{{.NetworkSettings.IPAddress}}", db)
	app := b.Must("run", "-d", "--name", "app", "--link", "db:pg", "bb", "sleep", "100")
	if out := b.Must("exec", app, "grep", "pg", "/etc/hosts"); out != ip+"\tpg "+db[:12]+" db" {
		t.Errorf("/etc/hosts entry of the link: %q, want %q", out, ip+"\tpg "+db[:12]+" db")
	}
	env := b.Must("exec", app, "sh", "-c", "env | grep ^PG_ | sort")
	for _, want := range []string{"PG_NAME=/app/pg", "PG_PORT=tcp://" + ip + ":5432", "PG_PORT_5432_TCP=tcp://" + ip + ":5432",
		"PG_PORT_5432_TCP_ADDR=" + ip, "PG_PORT_5432_TCP_PORT=5432", "PG_PORT_5432_TCP_PROTO=tcp", "PG_ENV_PGUSER=app"} {
		if !strings.Contains(env+"\n", want+"\n") {
			t.Errorf("link environment lacks %s:\n%s", want, env)
		}
	}
	if _, errs, code := b.Run("exec", app, "ping", "-c", "1", "-W", "2", "pg"); code != 0 {
		t.Errorf("ping pg: %d %s", code, errs)
	}
	if got := b.Must("inspect", "-f", "{{.HostConfig.Links}}", app); got != "[/db:/app/pg]" {
		t.Errorf("HostConfig.Links: %s", got)
	}
	b.Must("network", "create", "more")
	b.Must("network", "connect", "more", app)
	if out, _, code := b.Run("exec", app, "grep", "-c", "pg", "/etc/hosts"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("the link's entry after network connect: %q", out)
	}
	if _, errs, code := b.Run("create", "--link", "nosuch:x", "bb", "true"); code != 1 || !strings.Contains(errs, "could not get container for nosuch") {
		t.Errorf("link to a missing container: %d %q", code, errs)
	}
	if _, errs, code := b.Run("run", "--rm", "--network", "host", "--link", "db", "bb", "true"); code != 125 || !strings.Contains(errs, "host type networking can't be used with links") {
		t.Errorf("link with host networking: %d %q", code, errs)
	}
	b.Must("stop", "-t", "0", "db")
	if _, errs, code := b.Run("run", "--rm", "--name", "late", "--link", "db:pg", "bb", "true"); code != 125 || !strings.Contains(errs, "Cannot link to a non running container: /db AS /late/pg") {
		t.Errorf("link to a stopped container: %d %q", code, errs)
	}
	b.Must("rm", "-f", "app", "db")
	b.Must("network", "rm", "more")
}

// TestNetworkFirewallRestored: when berth's nftables table goes while its
// networks are up (a firewall reload, `nft flush ruleset`), the next
// container start on a bridge network puts back every up network's rules
// and the running containers' published ports, also when a network
// created meanwhile made the table anew.
func TestNetworkFirewallRestored(t *testing.T) {
	b := newNetBerth(t)
	b.Must("network", "create", "app")
	port := freePort(t)
	web := b.Must(append([]string{"run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "bb"}, httpd...)...)
	b.Must(append([]string{"run", "-d", "--name", "other", "--network", "app", "bb"}, httpd...)...)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if body := get(t, url); body != "hello from berth\n" {
		t.Fatalf("GET before: %q", body)
	}
	// The table is shared by every berth root on the host: delete it only
	// when it holds nothing but this test's rules.
	mine := b.Bridges()
	if rules, err := exec.Command("nft", "list", "table", "inet", "berth").Output(); err == nil {
		for _, line := range strings.Split(string(rules), "\n") {
			_, tag, ok := strings.Cut(line, `"berth net=`)
			if br, _, _ := strings.Cut(tag, `"`); ok && !slices.Contains(mine, br) {
				t.Skipf("berth's nftables table also holds rules of bridge %s, not this test's: not deleting it under another berth", br)
			}
		}
	}
	if out, err := exec.Command("nft", "delete", "table", "inet", "berth").CombinedOutput(); err != nil {
		t.Fatalf("nft delete table: %v %s", err, out)
	}
	// Meanwhile the port is refused, not left hanging: the monitor holds
	// it with a bound socket that does not listen.
	if c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second); err == nil || !strings.Contains(err.Error(), "connection refused") {
		if c != nil {
			c.Close()
		}
		t.Errorf("connect to the held port with the rules gone: %v, want connection refused", err)
	}
	if err := bindHost("tcp4", fmt.Sprintf("0.0.0.0:%d", port)); err == nil {
		t.Errorf("a host process bound the held port %d while the rules were gone", port)
	}
	// A network made meanwhile makes the table anew: its existence no
	// longer says anything is missing, yet the next start restores all.
	b.Must("network", "create", "later")
	b.Must("run", "--rm", "bb", "true")
	rules, err := exec.Command("nft", "list", "table", "inet", "berth").Output()
	if err != nil {
		t.Fatalf("no berth table after a start: %v", err)
	}
	for _, br := range b.Bridges() {
		if !strings.Contains(string(rules), `"berth net=`+br+`"`) {
			t.Errorf("rules of bridge %s not restored", br)
		}
	}
	if !strings.Contains(string(rules), "berth ctr="+web) {
		t.Errorf("web's published port not restored:\n%s", rules)
	}
	if body := get(t, url); body != "hello from berth\n" {
		t.Errorf("GET after the restore: %q", body)
	}
	b.Must("rm", "-f", "web", "other")
	b.Must("network", "rm", "app", "later")
}
