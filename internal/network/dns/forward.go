package dns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// HostResolvConf is where the host's resolvers are read from.
const HostResolvConf = "/etc/resolv.conf"

// upstream forwards to the host's resolvers, in the order resolv.conf
// lists them, over UDP, and over TCP when an answer comes back truncated.
type upstream struct{}

var _ forwarder = upstream{}

// forward tries each server in turn until one answers; each gets an equal
// share of what is left of ctx's time, so one dead resolver does not eat
// the budget of the next. Any answer, SERVFAIL and NXDOMAIN included, is
// final: those are the resolver's word, not its failure.
func (upstream) forward(ctx context.Context, req *mdns.Msg, servers []string) (*mdns.Msg, error) {
	if len(servers) == 0 {
		return nil, errors.New("no upstream resolvers")
	}
	q := cleanQuery(req)
	var lastErr error
	for i, srv := range servers {
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(forwardBudget)
		}
		share := time.Until(deadline) / time.Duration(len(servers)-i)
		if share <= 0 {
			break
		}
		resp, err := exchange(ctx, q, srv, share)
		if err == nil {
			return resp, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = context.DeadlineExceeded
	}
	return nil, lastErr
}

// cleanQuery is what goes upstream: the client's question, flags and
// EDNS record under a fresh ID (so upstream answers cannot be matched to
// a client's guess), without anything else the client put in.
func cleanQuery(req *mdns.Msg) *mdns.Msg {
	q := &mdns.Msg{MsgHdr: mdns.MsgHdr{Id: mdns.Id(), Opcode: mdns.OpcodeQuery, RecursionDesired: req.RecursionDesired,
		CheckingDisabled: req.CheckingDisabled, AuthenticatedData: req.AuthenticatedData}}
	q.Question = []mdns.Question{req.Question[0]}
	if o := req.IsEdns0(); o != nil {
		q.SetEdns0(min(max(o.UDPSize(), mdns.MinMsgSize), maxUDPAnswer), o.Do())
	}
	return q
}

func exchange(ctx context.Context, q *mdns.Msg, srv string, timeout time.Duration) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &mdns.Client{Net: "udp", UDPSize: maxUDPAnswer, Timeout: timeout}
	resp, _, err := c.ExchangeContext(ctx, q, srv)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, q, srv)
	}
	if err != nil {
		return nil, fmt.Errorf("forward to %s: %w", srv, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) ||
		resp.Question[0].Qtype != q.Question[0].Qtype {
		return nil, fmt.Errorf("forward to %s: the answer is for another question", srv)
	}
	return resp, nil
}

// hostConf is what the server takes from the host's resolv.conf.
type hostConf struct {
	servers []string // host:port
	search  []string
}

// readHostConf parses resolv.conf as glibc does: every nameserver line,
// the last search or domain line, and 127.0.0.1 when no nameserver is
// given. Loopback resolvers (systemd-resolved's 127.0.0.53) are kept: the
// server runs in the host's network namespace, where they answer. Servers
// in skip (our own listen addresses) are dropped, so a host that points
// at a berth gateway cannot make us forward to ourselves.
func readHostConf(path string, skip func(netip.Addr) bool) (hostConf, error) {
	var c hostConf
	f, err := os.Open(path)
	if err != nil && !os.IsNotExist(err) {
		return c, fmt.Errorf("read the host's resolvers: %w", err)
	}
	if f != nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], ";") {
				continue
			}
			switch fields[0] {
			case "nameserver":
				ip, err := netip.ParseAddr(fields[1])
				if err != nil || skip(ip.WithZone("")) {
					continue
				}
				c.servers = append(c.servers, net.JoinHostPort(ip.String(), "53"))
			case "search", "domain":
				c.search = c.search[:0]
				for _, d := range fields[1:] {
					if d = strings.ToLower(strings.Trim(d, ".")); d != "" {
						c.search = append(c.search, d)
					}
				}
			}
		}
		if err := sc.Err(); err != nil {
			return c, fmt.Errorf("read the host's resolvers: %w", err)
		}
	}
	if len(c.servers) == 0 {
		c.servers = []string{"127.0.0.1:53"}
	}
	return c, nil
}
