package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// HTTP server limits. Bodies are guarded by the Registry's per-read
// deadline (WithIOTimeout), not by a whole-request timeout that would cut
// off a large blob on a slow link; headers have their own short deadline,
// so a client that trickles headers (slowloris) is dropped.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 256 << 10
	// shutdownGrace is how long Serve lets requests in flight finish
	// after it is told to stop.
	shutdownGrace = 30 * time.Second
)

// NewHTTPServer is an http.Server for h with berth's timeouts.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// Serve serves the registry on ln until ctx is done, then stops taking
// connections and waits (up to 30s) for requests in flight. Meanwhile it
// sweeps expired upload sessions, at start and then periodically.
func (g *Registry) Serve(ctx context.Context, ln net.Listener) error {
	srv := NewHTTPServer(g)
	srv.ErrorLog = nil
	done := make(chan struct{})
	defer close(done)
	go g.janitor(done)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// janitor purges idle upload sessions every tenth of the expiry (at
// least every minute, at most every hour).
func (g *Registry) janitor(done <-chan struct{}) {
	if g.uploadExpiry <= 0 {
		return
	}
	every := min(max(g.uploadExpiry/10, time.Minute), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := g.store.PurgeUploads(g.uploadExpiry); err != nil {
			g.log.Warn("registry: purging upload sessions", "err", err)
		} else if n > 0 {
			g.log.Info("registry: purged idle upload sessions", "count", n)
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}
