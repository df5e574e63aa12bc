package cli

import (
	"testing"

	"github.com/berth-dev/berth/internal/container"
)

// TestDisplayablePorts: ps's PORTS column as Docker's CLI writes it.
func TestDisplayablePorts(t *testing.T) {
	cases := []struct {
		ports container.PortMap
		want  string
	}{
		{container.PortMap{"80/tcp": {{HostIp: "0.0.0.0", HostPort: "8080"}}}, "0.0.0.0:8080->80/tcp"},
		{container.PortMap{"80/tcp": nil}, "80/tcp"},
		{container.PortMap{"80/tcp": {{HostIp: "0.0.0.0", HostPort: "80"}}, "81/tcp": {{HostIp: "0.0.0.0", HostPort: "81"}}},
			"0.0.0.0:80-81->80-81/tcp"},
		{container.PortMap{"53/udp": nil, "53/tcp": nil, "443/tcp": {{HostIp: "127.0.0.1", HostPort: "8443"}}},
			"53/tcp, 53/udp, 127.0.0.1:8443->443/tcp"},
		{container.PortMap{"80/tcp": {{HostIp: "0.0.0.0", HostPort: "8080"}, {HostIp: "127.0.0.1", HostPort: "9090"}}, "81/tcp": nil},
			"81/tcp, 0.0.0.0:8080->80/tcp, 127.0.0.1:9090->80/tcp"},
		{container.PortMap{}, ""},
	}
	for _, c := range cases {
		ctr := &container.Container{NetworkSettings: container.NetworkSettings{Ports: c.ports}}
		if got := displayablePorts(containerPorts(ctr)); got != c.want {
			t.Errorf("%v: %q, want %q", c.ports, got, c.want)
		}
	}
}

func TestNetworkNames(t *testing.T) {
	c := &container.Container{HostConfig: container.HostConfig{NetworkMode: "b"},
		NetworkSettings: container.NetworkSettings{Networks: map[string]*container.EndpointSettings{"b": {}, "a": {}}}}
	if got := networkNames(c); got != "a,b" {
		t.Errorf("networkNames: %q", got)
	}
	c = &container.Container{HostConfig: container.HostConfig{NetworkMode: "container:abc"}}
	if got := networkNames(c); got != "container:abc" {
		t.Errorf("networkNames: %q", got)
	}
}
