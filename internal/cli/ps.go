package cli

import (
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/berth-dev/berth/internal/container"
)

// printProcTable prints the container's processes from /proc, so `ps`
// needs no host ps binary (whose output is no API).
func printProcTable(w io.Writer, pids []int) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "UID\tPID\tPPID\tSTAT\tCMD")
	for _, pid := range pids {
		base := "/proc/" + strconv.Itoa(pid)
		stat, err := os.ReadFile(base + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		uid := "?"
		if status, err := os.ReadFile(base + "/status"); err == nil {
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, "Uid:"); ok {
					if fs := strings.Fields(v); len(fs) > 0 {
						uid = fs[0]
					}
				}
			}
		}
		cmd, _ := os.ReadFile(base + "/cmdline")
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if cmdline == "" {
			cmdline = "[" + s[strings.IndexByte(s, '(')+1:i] + "]"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", uid, pid, f[1], f[0], cmdline)
	}
	return tw.Flush()
}

// publicPort is one row of a container's port list, as Docker's
// types.Port: the container side, and the host side when published.
type publicPort struct {
	IP          string
	PrivatePort int
	PublicPort  int
	Type        string
}

// containerPorts lists a running container's ports from its record:
// published ones with their host side, exposed ones without.
func containerPorts(c *container.Container) []publicPort {
	var out []publicPort
	for key, bindings := range c.NetworkSettings.Ports {
		p, proto, _ := strings.Cut(key, "/")
		priv, err := strconv.Atoi(p)
		if err != nil {
			continue
		}
		if len(bindings) == 0 {
			out = append(out, publicPort{PrivatePort: priv, Type: proto})
			continue
		}
		for _, b := range bindings {
			pub, _ := strconv.Atoi(b.HostPort)
			out = append(out, publicPort{IP: b.HostIp, PrivatePort: priv, PublicPort: pub, Type: proto})
		}
	}
	return out
}

// displayablePorts is ps's PORTS column, as Docker's CLI writes it
// (formatter.DisplayablePorts): runs of consecutive ports that map to
// the same numbers on one address are grouped ("0.0.0.0:8080-8081->8080-8081/tcp"),
// other published ports listed as "0.0.0.0:8080->80/tcp", exposed ones
// as "80/tcp".
func displayablePorts(ports []publicPort) string {
	type group struct{ first, last int }
	groups := map[string]*group{}
	var keys, result, mappings []string
	slices.SortFunc(ports, func(a, b publicPort) int {
		if a.PrivatePort != b.PrivatePort {
			return a.PrivatePort - b.PrivatePort
		}
		if a.IP != b.IP {
			return strings.Compare(a.IP, b.IP)
		}
		if a.PublicPort != b.PublicPort {
			return a.PublicPort - b.PublicPort
		}
		return strings.Compare(a.Type, b.Type)
	})
	form := func(key string, g *group) string {
		ip, typ, hasIP := strings.Cut(key, "/")
		if !hasIP {
			ip, typ = "", key
		}
		s := strconv.Itoa(g.first)
		if g.first != g.last {
			s += "-" + strconv.Itoa(g.last)
		}
		if ip != "" {
			s = ip + ":" + s + "->" + s
		}
		return s + "/" + typ
	}
	for _, p := range ports {
		key := p.Type
		if p.IP != "" {
			if p.PublicPort != p.PrivatePort {
				mappings = append(mappings, fmt.Sprintf("%s->%d/%s", net.JoinHostPort(p.IP, strconv.Itoa(p.PublicPort)), p.PrivatePort, p.Type))
				continue
			}
			key = p.IP + "/" + p.Type
		}
		g := groups[key]
		switch {
		case g == nil:
			groups[key] = &group{p.PrivatePort, p.PrivatePort}
			keys = append(keys, key)
		case p.PrivatePort == g.last+1:
			g.last = p.PrivatePort
		default:
			result = append(result, form(key, g))
			groups[key] = &group{p.PrivatePort, p.PrivatePort}
		}
	}
	for _, k := range keys {
		result = append(result, form(k, groups[k]))
	}
	return strings.Join(append(result, mappings...), ", ")
}

// networkNames is ps's Networks field: the networks the container is
// attached to, or its mode when it shares another's or the host's.
func networkNames(c *container.Container) string {
	names := make([]string, 0, len(c.NetworkSettings.Networks))
	for n := range c.NetworkSettings.Networks {
		names = append(names, n)
	}
	if len(names) == 0 {
		return c.HostConfig.NetworkMode
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}
