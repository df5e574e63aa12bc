package nft

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// AddNetwork installs n's rules, replacing any it had: calling it again
// with the same Network changes nothing, and with a changed one (say
// Internal) swaps the rules in one atomic batch. The table and its base
// chains are made on first use.
func AddNetwork(n Network) error {
	if err := n.validate(); err != nil {
		return err
	}
	return update("add network "+n.Bridge, func(s *session) error {
		old, _, err := s.split(networkChains, func(tag string) bool { return tag == netPrefix+n.Bridge })
		if err != nil {
			return err
		}
		s.ensureTable()
		for _, r := range old {
			s.c.DelRule(r)
		}
		for _, r := range networkRules(n) {
			s.add(r)
		}
		return nil
	})
}

// DeleteNetwork removes the rules of the network on bridge, and the whole
// table when nothing else is left in it. A network without rules is not an
// error.
func DeleteNetwork(bridge string) error {
	if err := validIfName(bridge); err != nil {
		return fmt.Errorf("firewall: network bridge: %w", err)
	}
	return update("delete network "+bridge, func(s *session) error {
		if !s.exists {
			return nil
		}
		mine, others, err := s.split(append(slices.Clone(networkChains), chainPorts), func(tag string) bool { return tag == netPrefix+bridge })
		if err != nil {
			return err
		}
		s.delete(mine, others)
		return nil
	})
}

// AddPorts publishes containerID's ports, replacing the ones it had. A
// host port that another container holds (same protocol and port, and the
// same host address or either one 0.0.0.0) is refused with an
// errdefs.ErrConflict that names the holder; the check and the change are
// one step under the lock, so two concurrent runs cannot both get a port.
// Nothing changes on any error.
func AddPorts(containerID string, ports []Port) error {
	if err := validContainerID(containerID); err != nil {
		return err
	}
	for i, p := range ports {
		if err := p.validate(); err != nil {
			return err
		}
		for _, q := range ports[:i] {
			if p.overlaps(q) {
				return fmt.Errorf("publish %s: the host port is published twice (also as %s): %w", p, q, errdefs.ErrInvalidArgument)
			}
		}
	}
	err := update("publish ports of "+containerID, func(s *session) error {
		existing, err := s.rules(chainPorts)
		if err != nil {
			return err
		}
		var mine []*nftables.Rule
		for _, r := range existing {
			id, held, ok := parsePortTag(tagOf(r))
			if !ok {
				continue
			}
			if id == containerID {
				mine = append(mine, r)
				continue
			}
			for _, p := range ports {
				if p.overlaps(held) {
					return fmt.Errorf("publish %s: port is already allocated (by container %s as %s): %w", p, id, held, errdefs.ErrConflict)
				}
			}
		}
		s.ensureTable()
		for _, r := range mine {
			s.c.DelRule(r)
		}
		for _, p := range ports {
			s.add(portRule(containerID, p))
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A UDP "connection" to the port that began before this rule (a
	// client already sending) has a conntrack entry without DNAT, and
	// would keep bypassing the rule until it times out.
	return forgetUDP(ports)
}

// RemovePorts unpublishes containerID's ports, and removes the table when
// nothing else is left in it. A container without ports is not an error.
func RemovePorts(containerID string) error {
	if err := validContainerID(containerID); err != nil {
		return err
	}
	var removed []Port
	err := update("unpublish ports of "+containerID, func(s *session) error {
		if !s.exists {
			return nil
		}
		mine, others, err := s.split([]string{chainPorts}, func(tag string) bool {
			id, _, ok := parsePortTag(tag)
			return ok && id == containerID
		})
		if err != nil || len(mine) == 0 {
			return err
		}
		if others == 0 {
			// Maybe the last rule of all: the networks decide.
			if _, others, err = s.split(networkChains, func(string) bool { return false }); err != nil {
				return err
			}
		}
		for _, r := range mine {
			_, p, _ := parsePortTag(tagOf(r))
			removed = append(removed, p)
		}
		s.delete(mine, others)
		return nil
	})
	if err != nil {
		return err
	}
	// A UDP flow keeps its DNAT in conntrack after the rule is gone: a
	// client that keeps sending would still reach the container, or,
	// once the address is reused, another one.
	return forgetUDP(removed)
}

// PortHolder returns the ID of the container holding the host side of p
// (see AddPorts for what overlaps), or "" when it is free. Only p's
// Proto, HostIP and HostPort matter.
func PortHolder(p Port) (string, error) {
	h, err := Holders()
	if err != nil {
		return "", err
	}
	for held, id := range h {
		if held.overlaps(p) {
			return id, nil
		}
	}
	return "", nil
}

// Holders maps every published host port (Proto, HostIP, HostPort) to the
// container that holds it.
func Holders() (map[Port]string, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("firewall: netlink: %w", err)
	}
	defer c.CloseLasting()
	rules, err := c.GetRules(table, &nftables.Chain{Name: chainPorts, Table: table})
	if isNotExist(err) {
		return map[Port]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("firewall: list published ports: %w", err)
	}
	out := make(map[Port]string, len(rules))
	for _, r := range rules {
		if id, p, ok := parsePortTag(tagOf(r)); ok {
			out[p] = id
		}
	}
	return out, nil
}

// Reset deletes berth's table with everything in it: for `system prune`
// style cleanups and tests. Other tables are never touched.
func Reset() error {
	return update("delete table", func(s *session) error {
		if s.exists {
			s.c.DelTable(table)
		}
		return nil
	})
}

// Exists reports whether berth's table is there.
func Exists() (bool, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return false, fmt.Errorf("firewall: netlink: %w", err)
	}
	defer c.CloseLasting()
	_, err = c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("firewall: look up table: %w", err)
	}
	return true, nil
}

// ForwardBlockers lists what, outside berth's table, may drop the packets
// berth's forward chain accepts: base chains of other tables at the
// forward hook whose policy is drop (iptables-nft's FORWARD after Docker
// set it so, firewalld, a hand-written ruleset), and the legacy iptables
// filter table, whose policy cannot be read cheaply. An empty list means
// none was found, not that nothing drops: a drop rule inside an accepting
// chain is not looked for.
func ForwardBlockers() ([]string, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("firewall: netlink: %w", err)
	}
	defer c.CloseLasting()
	all, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("firewall: list chains: %w", err)
	}
	var out []string
	for _, ch := range all {
		if ch.Table == nil || (ch.Table.Name == TableName && ch.Table.Family == nftables.TableFamilyINet) {
			continue
		}
		fam := familyName(ch.Table.Family)
		if fam == "" || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		out = append(out, fmt.Sprintf("nftables table %s %s, chain %s: policy drop", fam, ch.Table.Name, ch.Name))
	}
	if b, err := os.ReadFile("/proc/net/ip_tables_names"); err == nil && slices.Contains(strings.Fields(string(b)), "filter") {
		out = append(out, "iptables-legacy filter table: its FORWARD chain may drop forwarded traffic (see iptables-legacy -L FORWARD)")
	}
	return out, nil
}

// familyName names the families whose forward hook sees IPv4.
func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return ""
}

// networkChains hold the networks' rules.
var networkChains = []string{chainLeaving, chainEntering, chainPostrouting, chainInput}

// session is one change: berth's lock, one netlink connection, the
// commands queued for one atomic batch.
type session struct {
	unlock func()
	c      *nftables.Conn
	exists bool            // the table exists
	chains map[string]bool // its chains
}

// update runs plan in a session and sends what it queued as one batch;
// an error from plan sends nothing.
func update(what string, plan func(*session) error) error {
	s, err := open()
	if err != nil {
		return err
	}
	defer s.close()
	if err := plan(s); err != nil {
		return err
	}
	if err := s.c.Flush(); err != nil {
		return fmt.Errorf("firewall: %s: %w", what, err)
	}
	return nil
}

func open() (*session, error) {
	unlock, err := lock()
	if err != nil {
		return nil, err
	}
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		unlock()
		return nil, fmt.Errorf("firewall: netlink: %w", err)
	}
	s := &session{unlock: unlock, c: c, chains: map[string]bool{}}
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("firewall: list chains: %w", err)
	}
	for _, ch := range all {
		if ch.Table != nil && ch.Table.Name == TableName {
			s.chains[ch.Name] = true
		}
	}
	if len(s.chains) > 0 {
		s.exists = true
	} else if _, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet); err == nil {
		s.exists = true // an empty table, left by someone's `nft flush table`
	}
	return s, nil
}

func (s *session) close() {
	s.c.CloseLasting()
	s.unlock()
}

// ensureTable queues the table and whichever base chains (with their fixed
// rules) are missing. Adding a table that exists is a no-op in nftables.
func (s *session) ensureTable() {
	s.c.AddTable(table)
	base := baseRules()
	for _, ch := range chains() {
		if s.chains[ch.Name] {
			continue
		}
		s.c.AddChain(ch)
		for _, r := range base {
			if r.chain == ch.Name {
				s.add(r)
			}
		}
		s.chains[ch.Name] = true
	}
	s.exists = true
}

func (s *session) add(r rule) {
	s.c.AddRule(&nftables.Rule{
		Table:    table,
		Chain:    &nftables.Chain{Name: r.chain, Table: table},
		Exprs:    r.exprs,
		UserData: comment(r.tag),
	})
}

// rules lists a chain's rules; none when the chain does not exist.
func (s *session) rules(chain string) ([]*nftables.Rule, error) {
	if !s.chains[chain] {
		return nil, nil
	}
	rules, err := s.c.GetRules(table, &nftables.Chain{Name: chain, Table: table})
	if err != nil {
		return nil, fmt.Errorf("firewall: list chain %s: %w", chain, err)
	}
	return rules, nil
}

// split lists the rules of chains and sorts them: the ones whose tag
// mine accepts, and the count of all others but the fixed base rules
// (rules someone added by hand count too: their table is not deleted
// under them).
func (s *session) split(chains []string, mine func(tag string) bool) ([]*nftables.Rule, int, error) {
	var out []*nftables.Rule
	others := 0
	for _, ch := range chains {
		rules, err := s.rules(ch)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range rules {
			switch t := tagOf(r); {
			case mine(t):
				out = append(out, r)
			case t != tagBase:
				others++
			}
		}
	}
	return out, others, nil
}

// delete queues the removal of rules, or of the whole table when no other
// rule is left in it: zero residue without a separate cleanup step.
func (s *session) delete(rules []*nftables.Rule, others int) {
	if others == 0 {
		s.c.DelTable(table)
		return
	}
	for _, r := range rules {
		s.c.DelRule(r)
	}
}

func isNotExist(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist))
}

// lock serializes berth's changes to its table among all berth processes
// (and goroutines) of one network namespace. The lock is an flock on the
// namespace's own nsfs file: every opener in the namespace gets the same
// inode, and a test's namespace gets another, so no path has to be agreed
// on (a file under --run-root would not be shared by two roots on one
// host). Without it, two runs could both find a host port free, and a
// DeleteNetwork that found the table empty could delete it just after
// another process put a network in it.
func lock() (func(), error) {
	// thread-self: the namespace of the thread that will also open the
	// netlink socket (they differ only inside bridge.InNetNS, which
	// keeps the goroutine on one thread).
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("firewall: lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("firewall: lock: %w", os.NewSyscallError("flock", err))
	}
	return func() { f.Close() }, nil
}
