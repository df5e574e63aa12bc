package dns

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Limits on what a query may cost. Queries come from containers, which
// may run anything: every size, count and wait is bounded.
const (
	// maxQuery bounds a query's size on both transports. Real queries are
	// a few hundred bytes (EDNS padding goes to 468); a bigger one is not
	// a query we want to parse.
	maxQuery = 4096
	// maxUDPAnswer caps the answer size a client may ask for with EDNS:
	// the DNS flag day 2020 value is 1232, 4096 is what resolvers send.
	maxUDPAnswer = 4096
	// ttl is Docker's for its embedded DNS answers.
	ttl = 600
	// forwardBudget bounds a forwarded query, all upstreams together; it
	// stays below glibc's 5 s per try so the client gets our SERVFAIL
	// rather than its own timeout.
	forwardBudget = 4 * time.Second
)

// state is one consistent view the queries are answered from; a reload
// swaps it whole.
type state struct {
	table     *Table
	userNets  int      // user-defined bridge networks, with endpoints or not
	search    []string // the host's search domains, lower-case, no dots at the ends
	upstreams []string // host:port of the host's resolvers
}

// forwarder sends a query to the host's resolvers: the real one in
// forward.go, a fake in the tests.
type forwarder interface {
	forward(ctx context.Context, req *mdns.Msg, servers []string) (*mdns.Msg, error)
}

// handler answers queries. slots bounds the forwarded queries in flight:
// each may wait seconds on an upstream, and a container flooding names
// must not pile up goroutines and sockets without end.
type handler struct {
	fwd    forwarder
	slots  chan struct{}
	budget time.Duration // forwardBudget but in tests
}

func newHandler(fwd forwarder, maxForwards int) *handler {
	return &handler{fwd: fwd, slots: make(chan struct{}, maxForwards), budget: forwardBudget}
}

// respond turns a raw query from src, received at gateway gw, into the
// raw answer, or nil when nothing should be sent. It is the whole path a
// packet takes, so the fuzz test covers exactly what the sockets run.
func (h *handler) respond(ctx context.Context, st *state, raw []byte, gw, src netip.Addr, udp bool) []byte {
	if len(raw) < 12 || len(raw) > maxQuery {
		return nil
	}
	// Answer only the network's own subnet: the host routes every
	// container's packets to every gateway address, so the source is what
	// keeps network B from reading A's names (and keeps spoofed sources
	// elsewhere from using us as a reflector).
	n := st.table.byGateway[gw]
	if n == nil || !n.subnet.Contains(src.Unmap()) {
		return nil
	}
	if raw[2]&0x80 != 0 { // QR: a response; answering it could loop
		return nil
	}
	req := new(mdns.Msg)
	if err := req.Unpack(raw); err != nil {
		return formErr(raw)
	}
	var resp *mdns.Msg
	switch {
	case req.Opcode != mdns.OpcodeQuery:
		resp = new(mdns.Msg).SetRcode(req, mdns.RcodeNotImplemented)
		resp.Question = nil
	case len(req.Question) != 1:
		return formErr(raw)
	default:
		resp = h.answer(ctx, st, req, n, src.Unmap())
	}
	return pack(resp, req, udp)
}

// formErr is the FORMERR answer to a query that does not parse: its ID
// and opcode, nothing else, so it is never larger than what came in.
func formErr(raw []byte) []byte {
	m := &mdns.Msg{MsgHdr: mdns.MsgHdr{Id: uint16(raw[0])<<8 | uint16(raw[1]), Response: true,
		Opcode: int(raw[2]>>3) & 0xF, Rcode: mdns.RcodeFormatError}}
	out, err := m.Pack()
	if err != nil {
		return nil
	}
	return out
}

// pack fits resp to the transport: UDP answers are cut to what the client
// can take (512 bytes, or its EDNS size up to maxUDPAnswer) with the TC
// bit set so it retries over TCP, as RFC 1035 wants.
func pack(resp, req *mdns.Msg, udp bool) []byte {
	size := mdns.MaxMsgSize
	if udp {
		size = mdns.MinMsgSize
		if o := req.IsEdns0(); o != nil && int(o.UDPSize()) > size {
			size = min(int(o.UDPSize()), maxUDPAnswer)
		}
	}
	resp.Truncate(size)
	out, err := resp.Pack()
	if err != nil || len(out) > size {
		// An upstream's answer we cannot re-pack: say so rather than
		// send nothing, which would make the client wait for a timeout.
		fail := new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure)
		if out, err = fail.Pack(); err != nil {
			return nil
		}
	}
	return out
}

// answer answers one well-formed query from src on network n.
func (h *handler) answer(ctx context.Context, st *state, req *mdns.Msg, n *netRecords, src netip.Addr) *mdns.Msg {
	q := req.Question[0]
	if o := req.IsEdns0(); o != nil && o.Version() != 0 {
		resp := new(mdns.Msg).SetReply(req)
		resp.SetEdns0(maxUDPAnswer, false)
		resp.Rcode = mdns.RcodeBadVers // RFC 6891: the only answer to an unknown EDNS version
		return resp
	}
	search, servers := st.table.resolver(n, src, st.search, st.upstreams)
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return h.forwardOrRefuse(ctx, servers, req, n)
	}
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	nets := st.table.visible(n, src)

	if q.Qtype == mdns.TypePTR {
		if ip, ok := reverseAddr(name); ok {
			if target, ok := reverse(nets, ip); ok {
				resp := local(req)
				resp.Answer = append(resp.Answer, &mdns.PTR{Hdr: hdr(q.Name, mdns.TypePTR), Ptr: target})
				return resp
			}
			if st.table.isPrivate(ip) {
				resp := local(req)
				resp.Rcode = mdns.RcodeNameError
				return resp
			}
		}
		return h.forwardOrRefuse(ctx, servers, req, n)
	}

	ips, ok := lookup(nets, name, search)
	if !ok {
		return h.forwardOrRefuse(ctx, servers, req, n)
	}
	// The name is a container's: it has A records and nothing else. Other
	// types get an empty NOERROR (the name exists), never a trip upstream
	// that would tell the host's resolvers our container names. AAAA in
	// particular must be empty, not NXDOMAIN, or resolvers that ask A and
	// AAAA together would drop the A answer.
	resp := local(req)
	if q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY {
		order := rand.Perm(len(ips)) // round robin between containers sharing an alias, as Docker
		for _, i := range order {
			resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr(q.Name, mdns.TypeA), A: ips[i].AsSlice()})
		}
	}
	return resp
}

// local starts an answer given from the records.
func local(req *mdns.Msg) *mdns.Msg {
	resp := new(mdns.Msg).SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	if o := req.IsEdns0(); o != nil {
		resp.SetEdns0(maxUDPAnswer, false)
	}
	return resp
}

func hdr(name string, typ uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: typ, Class: mdns.ClassINET, Ttl: ttl}
}

// forwardOrRefuse sends a query that is not about containers to servers:
// the container's --dns ones or the host's resolvers. Internal networks
// get REFUSED instead: they have no way out by design, and a resolver
// that forwarded for them would be a tunnel out (DNS exfiltration)
// through the host.
func (h *handler) forwardOrRefuse(ctx context.Context, servers []string, req *mdns.Msg, n *netRecords) *mdns.Msg {
	if n.internal {
		return new(mdns.Msg).SetRcode(req, mdns.RcodeRefused)
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		return servfail(req) // busy: fail fast rather than queue without bound
	}
	ctx, cancel := context.WithTimeout(ctx, h.budget)
	defer cancel()
	resp, err := h.fwd.forward(ctx, req, servers)
	if err != nil {
		return servfail(req)
	}
	// It is our answer now, whatever the upstream put in its header.
	resp.Id, resp.Response, resp.Opcode = req.Id, true, req.Opcode
	resp.Question = req.Question // the client's spelling: some check the case they sent (0x20)
	return resp
}

func servfail(req *mdns.Msg) *mdns.Msg {
	resp := new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure)
	resp.RecursionAvailable = true
	return resp
}
