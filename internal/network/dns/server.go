package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on the sockets' work, beyond a single query's (resolver.go).
const (
	maxInFlight = 512              // UDP queries being answered at once; more are dropped, and the client retries
	maxForwards = 256              // of which forwarded upstream
	maxTCPConns = 64               // TCP clients at once; more wait in the kernel's backlog
	maxTCPMsgs  = 64               // queries per TCP connection before we close it
	tcpIdle     = 10 * time.Second // RFC 7766 suggests seconds, not minutes
)

// Server answers on port 53 of the gateways in its table. Update gives it
// a new table and binds and unbinds to match; the queries in flight
// finish with the state they started with.
type Server struct {
	port  int
	h     *handler
	logf  func(format string, args ...any)
	state atomic.Pointer[state]

	ctx    context.Context // cancelled by Close: forwarded queries stop waiting
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[netip.Addr]*listener
	inflight  chan struct{}
	tcpConns  chan struct{}
	wg        sync.WaitGroup
}

type listener struct {
	udp *net.UDPConn
	tcp *net.TCPListener
}

// newServer makes a server listening on port (53 but in tests) that
// forwards through fwd.
func newServer(port int, fwd forwarder, logf func(string, ...any)) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{port: port, h: newHandler(fwd, maxForwards), logf: logf, ctx: ctx, cancel: cancel,
		listeners: map[netip.Addr]*listener{}, inflight: make(chan struct{}, maxInFlight), tcpConns: make(chan struct{}, maxTCPConns)}
	s.state.Store(&state{table: NewTable(nil, nil)})
	return s
}

// Update answers from st from now on and listens on exactly its
// gateways: new ones are bound, gone ones closed. It returns the binds
// that failed (the next Update tries them again); the rest are served.
func (s *Server) Update(st *state) error {
	s.state.Store(st)
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[netip.Addr]bool{}
	for _, gw := range st.table.Gateways() {
		want[gw] = true
	}
	for gw, l := range s.listeners {
		if !want[gw] {
			l.close()
			delete(s.listeners, gw)
			s.logf("stopped listening on %s", gw)
		}
	}
	var errs []error
	for gw := range want {
		if s.listeners[gw] != nil {
			continue
		}
		l, err := s.listen(gw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.listeners[gw] = l
		s.logf("listening on %s", net.JoinHostPort(gw.String(), strconv.Itoa(s.port)))
	}
	return errors.Join(errs...)
}

// Listening lists the addresses bound now.
func (s *Server) Listening() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.Addr, 0, len(s.listeners))
	for gw := range s.listeners {
		out = append(out, gw)
	}
	return out
}

// Close stops listening and waits for the queries in flight.
func (s *Server) Close() {
	s.cancel()
	s.mu.Lock()
	for gw, l := range s.listeners {
		l.close()
		delete(s.listeners, gw)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// freebind lets us bind a gateway address before the bridge has it (a
// bridge being recreated after a reboot, or by a run still in progress):
// the socket then receives as soon as the address appears.
func freebind(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	}); err != nil {
		return err
	}
	return serr
}

func (s *Server) listen(gw netip.Addr) (*listener, error) {
	addr := net.JoinHostPort(gw.String(), strconv.Itoa(s.port))
	lc := net.ListenConfig{Control: freebind}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s/udp: %w", addr, err)
	}
	ln, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("listen on %s/tcp: %w", addr, err)
	}
	l := &listener{udp: pc.(*net.UDPConn), tcp: ln.(*net.TCPListener)}
	s.wg.Add(2)
	go s.serveUDP(gw, l.udp)
	go s.serveTCP(gw, l.tcp)
	return l, nil
}

func (l *listener) close() {
	l.udp.Close()
	l.tcp.Close()
}

func (s *Server) serveUDP(gw netip.Addr, conn *net.UDPConn) {
	defer s.wg.Done()
	for {
		buf := make([]byte, maxQuery+1) // one byte more, to see oversized datagrams
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors of earlier replies and the like
		}
		select {
		case s.inflight <- struct{}{}:
		default:
			continue // overloaded: drop, the client will retry
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.inflight; s.wg.Done() }()
			out := s.h.respond(s.ctx, s.state.Load(), buf[:n], gw, src.Addr(), true)
			if out != nil {
				conn.WriteToUDPAddrPort(out, src)
			}
		}()
	}
}

func (s *Server) serveTCP(gw netip.Addr, ln *net.TCPListener) {
	defer s.wg.Done()
	for {
		// Take a slot before accepting, so that the clients beyond
		// maxTCPConns wait in the kernel's backlog, not in our memory.
		select {
		case s.tcpConns <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			<-s.tcpConns
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and friends: do not spin
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() { c.Close(); <-s.tcpConns; s.wg.Done() }()
			s.serveConn(gw, c)
		}()
	}
}

// serveConn answers the queries of one TCP connection, one at a time.
func (s *Server) serveConn(gw netip.Addr, c *net.TCPConn) {
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	var lenBuf [2]byte
	for range maxTCPMsgs {
		c.SetDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n < 12 || n > maxQuery {
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		out := s.h.respond(s.ctx, s.state.Load(), buf, gw, src, false)
		if out == nil {
			return
		}
		msg := make([]byte, 2+len(out))
		binary.BigEndian.PutUint16(msg, uint16(len(out)))
		copy(msg[2:], out)
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}
