package dns

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// echoUpstream plays a hostile upstream: its answer to every forwarded
// query is the fuzzer's bytes, so that re-packing and truncating whatever
// an upstream sends is fuzzed along with the queries.
type echoUpstream struct{ raw []byte }

func (e echoUpstream) forward(_ context.Context, req *mdns.Msg, _ []string) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	if err := m.Unpack(e.raw); err != nil {
		return nil, errors.New("garbage from upstream")
	}
	return m, nil
}

// FuzzRespond runs arbitrary bytes through the path every packet takes
// (respond), over UDP and TCP: it must not panic, and what it sends must
// be a well-formed answer to that query, no bigger than the client may
// take.
func FuzzRespond(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"web.", mdns.TypeA, 0},
		{"WWW.example.com.", mdns.TypeA, 1232},
		{"web.", mdns.TypeAAAA, 0},
		{"2.0.1.10.in-addr.arpa.", mdns.TypePTR, 0},
		{"example.org.", mdns.TypeTXT, 4096},
		{"shared.", mdns.TypeANY, 512},
	} {
		m := new(mdns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns > 0 {
			m.SetEdns0(q.edns, true)
		}
		raw, _ := m.Pack()
		f.Add(raw, true)
		f.Add(raw, false)
	}
	f.Add([]byte("\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"), true) // a name pointing at itself
	f.Add([]byte{}, true)

	st := &state{table: testTable(), search: []string{"example.com"}, upstreams: []string{"fake"}}
	gw, src := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.4")
	f.Fuzz(func(t *testing.T, raw []byte, udp bool) {
		h := newHandler(echoUpstream{raw: raw}, 4)
		out := h.respond(context.Background(), st, raw, gw, src, udp)
		if out == nil {
			return
		}
		limit := mdns.MaxMsgSize
		if udp {
			limit = maxUDPAnswer
		}
		if len(out) > limit {
			t.Fatalf("%d-byte answer over %s", len(out), map[bool]string{true: "udp", false: "tcp"}[udp])
		}
		resp := new(mdns.Msg)
		if err := resp.Unpack(out); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if !resp.Response || resp.Id != uint16(raw[0])<<8|uint16(raw[1]) {
			t.Fatalf("answer is not a response to the query: %v", resp.MsgHdr)
		}
		req := new(mdns.Msg)
		if udp && req.Unpack(raw) == nil {
			size := mdns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = max(size, min(int(o.UDPSize()), maxUDPAnswer))
			}
			if len(out) > size {
				t.Fatalf("%d-byte UDP answer to a client that takes %d", len(out), size)
			}
		}
	})
}
