package container

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/runtime"
)

// Legacy links (--link NAME[:ALIAS]), as Docker keeps them for the
// default bridge network, where containers have no name resolution: at
// each start the container gets an /etc/hosts entry for every linked
// container (ALIAS, its short ID and its name, at its address on a
// network the two share) and Docker's link environment variables
// (ALIAS_PORT_80_TCP_ADDR=... for the target's exposed ports,
// ALIAS_ENV_X for its environment, ALIAS_NAME). The target must be
// running when the container starts. Unlike Docker, an entry is not
// rewritten when the target restarts with another address: restarting
// the linking container refreshes it. On user networks only the hosts
// entry is given (Docker resolves the alias through its DNS there, and
// sets no environment).

// parseLinks turns --link values into Docker's recorded form,
// "/target:/name/alias", checking that each target exists.
func (e *Engine) parseLinks(name string, links []string) ([]string, error) {
	var out []string
	for _, l := range links {
		target, alias, _ := strings.Cut(l, ":")
		target = strings.TrimPrefix(target, "/")
		if alias == "" {
			alias = target
		}
		alias = strings.TrimPrefix(alias, "/")
		if target == "" || !validLinkAlias(alias) {
			return nil, fmt.Errorf("invalid link %q: use NAME or NAME:ALIAS: %w", l, errdefs.ErrInvalidArgument)
		}
		t, err := e.Get(target)
		if err != nil {
			return nil, fmt.Errorf("could not get container for %s: %w", target, errdefs.ErrNotFound)
		}
		out = append(out, "/"+t.Name+":/"+name+"/"+alias)
	}
	return out, nil
}

// validLinkAlias: a host name label run, as it goes into /etc/hosts and
// an environment variable's name.
func validLinkAlias(a string) bool {
	if a == "" || len(a) > 255 {
		return false
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// link is one resolved link at start.
type link struct {
	alias  string
	target *Container
	ip     netip.Addr
}

// resolveLinks finds c's link targets, running and sharing one of the
// networks in atts (c's attachments, first one first).
func (e *Engine) resolveLinks(c *Container, atts []*attachment) ([]link, error) {
	var out []link
	for _, l := range c.HostConfig.Links {
		target, alias, ok := splitLink(l)
		if !ok {
			continue
		}
		t, err := e.Get(target)
		if err != nil {
			return nil, fmt.Errorf("Cannot link to /%s, as it does not exist: %w", target, errdefs.ErrNotFound)
		}
		t = e.refresh(t)
		if !t.State.Running || t.State.Status == StatusRestarting {
			return nil, fmt.Errorf("Cannot link to a non running container: /%s AS /%s/%s: %w", t.Name, c.Name, alias, errdefs.ErrConflict)
		}
		var ip netip.Addr
		for _, a := range atts {
			if es := t.NetworkSettings.Networks[a.name]; es != nil {
				if addr, err := netip.ParseAddr(es.IPAddress); err == nil {
					ip = addr
					break
				}
			}
		}
		if !ip.IsValid() {
			return nil, fmt.Errorf("Cannot link to /%s, as it does not belong to the network of /%s: %w", t.Name, c.Name, errdefs.ErrConflict)
		}
		out = append(out, link{alias: alias, target: t, ip: ip})
	}
	return out, nil
}

// splitLink reads Docker's "/target:/name/alias".
func splitLink(l string) (target, alias string, ok bool) {
	t, a, ok := strings.Cut(l, ":")
	if !ok {
		return "", "", false
	}
	return strings.TrimPrefix(t, "/"), a[strings.LastIndexByte(a, '/')+1:], true
}

// linkHostLines are the /etc/hosts entries of links, as Docker writes
// them: "IP\tALIAS SHORTID NAME".
func linkHostLines(links []link) string {
	var b strings.Builder
	for _, l := range links {
		fmt.Fprintf(&b, "%s\t%s %s %s\n", l.ip, l.alias, ShortID(l.target.ID), l.target.Name)
	}
	return b.String()
}

// linkEnv is Docker's link environment for c's links.
func linkEnv(c *Container, links []link) []string {
	var env []string
	for _, l := range links {
		prefix := strings.ReplaceAll(strings.ToUpper(l.alias), "-", "_") // only '-', as Docker
		env = append(env, fmt.Sprintf("%s_NAME=/%s/%s", prefix, c.Name, l.alias))
		ports := make([]string, 0, len(l.target.Config.ExposedPorts))
		for p := range l.target.Config.ExposedPorts {
			ports = append(ports, p)
		}
		slices.SortFunc(ports, comparePortKeys)
		for i, key := range ports {
			port, proto, ok := splitPortKey(key)
			if !ok {
				continue
			}
			url := fmt.Sprintf("%s://%s", proto, netip.AddrPortFrom(l.ip, port))
			if i == 0 {
				env = append(env, fmt.Sprintf("%s_PORT=%s", prefix, url))
			}
			p := fmt.Sprintf("%s_PORT_%d_%s", prefix, port, strings.ToUpper(proto))
			env = append(env, p+"="+url, p+"_ADDR="+l.ip.String(), fmt.Sprintf("%s_PORT=%d", p, port), p+"_PROTO="+proto)
		}
		for _, kv := range l.target.Config.Env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "HOME" || k == "PATH" { // as Docker: the image's, not the service's
				continue
			}
			env = append(env, fmt.Sprintf("%s_ENV_%s=%s", prefix, k, v))
		}
	}
	return env
}

// writeLinkEnv puts the links' environment into c's bundle, over the
// environment the spec was created with, so a restart does not pile them
// up. Only on the default network: Docker gives links on user networks
// no environment (their names resolve through its DNS), and neither do
// we.
func (e *Engine) writeLinkEnv(c *Container, links []link, atts []*attachment) error {
	if len(atts) == 0 || !atts[0].net.IsDefault() {
		return nil
	}
	spec, err := runtime.LoadSpec(e.dir(c.ID))
	if err != nil {
		return err
	}
	spec.Process.Env = append(processEnv(c), linkEnv(c, links)...)
	return writeSpec(e.dir(c.ID), spec)
}

// linksFile, in the container's directory, holds the /etc/hosts lines of
// its links as resolved at its last start, so that a rewrite of /etc/hosts
// (network connect and disconnect) keeps them.
const linksFile = "hosts.links"

// setupLinks resolves c's links at start (atts: its attachments) and puts
// their environment into its bundle and their hosts lines in linksFile.
func (e *Engine) setupLinks(c *Container, atts []*attachment) error {
	if len(c.HostConfig.Links) == 0 {
		return nil
	}
	links, err := e.resolveLinks(c, atts)
	if err != nil {
		return err
	}
	if err := e.writeLinkEnv(c, links, atts); err != nil {
		return err
	}
	return writeInPlace(filepath.Join(e.dir(c.ID), linksFile), linkHostLines(links))
}

// linkHosts is what setupLinks wrote for /etc/hosts, or nothing.
func (e *Engine) linkHosts(c *Container) string {
	if len(c.HostConfig.Links) == 0 {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(e.dir(c.ID), linksFile))
	return string(b)
}
