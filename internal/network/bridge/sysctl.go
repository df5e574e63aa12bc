package bridge

import (
	"bytes"
	"fmt"
	"os"
)

// The sysctls are files under /proc/sys. The kernel resolves the net.*
// ones in the network namespace of the thread that opens them, so they
// follow the caller like netlink does (tests run them inside InNetNS).
const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// IPForward reports whether IPv4 forwarding (net.ipv4.ip_forward) is on.
func IPForward() (bool, error) {
	return sysctlOn(ipForwardPath)
}

// EnableIPForward turns IPv4 forwarding on and reports whether it was off.
// It is a host-wide change: call it only for networks whose containers
// reach beyond the host, and let `info` say so. Nothing turns it off again.
func EnableIPForward() (changed bool, err error) {
	on, err := sysctlOn(ipForwardPath)
	if err != nil || on {
		return false, err
	}
	if err := writeSysctl(ipForwardPath); err != nil {
		return false, err
	}
	return true, nil
}

// SetRouteLocalnet sets net.ipv4.conf.<ifname>.route_localnet to 1, so
// connections to published ports on 127.0.0.1 can be DNATed out through
// the bridge (see the package doc).
func SetRouteLocalnet(ifname string) error {
	if err := ValidIfName(ifname); err != nil {
		return err
	}
	path := "/proc/sys/net/ipv4/conf/" + ifname + "/route_localnet"
	on, err := sysctlOn(path)
	if err != nil || on {
		return err
	}
	return writeSysctl(path)
}

func sysctlOn(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read sysctl: %w", err)
	}
	return string(bytes.TrimSpace(b)) == "1", nil
}

func writeSysctl(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write sysctl: %w", err)
	}
	_, werr := f.Write([]byte("1\n"))
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("write sysctl %s: %w", path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("write sysctl %s: %w", path, cerr)
	}
	return nil
}
