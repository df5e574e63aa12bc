package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
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

// Run serves the registry cfg describes until ctx is done: it validates
// cfg, opens the storage, listens on cfg.Addr (and cfg.Metrics.Addr) and
// calls started with the bound addresses (metrics is nil when /metrics
// shares the registry's listener) before serving. It is all that
// `berth registry serve` does after reading its file and flags.
func Run(ctx context.Context, cfg *Config, log *slog.Logger, started func(addr, metrics net.Addr)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Everything that can be refused is checked before the storage is
	// created or an address bound.
	tlsConf, err := cfg.TLSConfig(log)
	if err != nil {
		return err
	}
	opts := append(cfg.Options(), WithLogger(log))
	sopts := []ServeOption{
		WithTLS(tlsConf),
		WithPlainHTTP(cfg.HTTP.Plain),
		WithHealth(cfg.Health.Enabled),
	}

	if cfg.Auth.Enabled() {
		a, issuer, err := NewAuth(*cfg.Auth, WithAuthLogger(log))
		if err != nil {
			return err
		}
		opts = append(opts, WithAuthorizer(a))
		if issuer != nil {
			sopts = append(sopts, WithHandler(cfg.Auth.TokenPath(), issuer))
		}
	}
	if len(cfg.Proxy) > 0 {
		p, err := NewProxy(cfg.Proxy)
		if err != nil {
			return err
		}
		opts = append(opts, WithProxy(p))
	}

	store, err := Open(cfg.Root)
	if err != nil {
		return err
	}
	reg := New(store, opts...)
	if cfg.Metrics.Enabled {
		sopts = append(sopts, WithMetrics(NewMetrics(store, log)))
	}
	if cfg.Log.AccessLog {
		sopts = append(sopts, WithAccessLog(log))
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("registry: listen on %s: %w", cfg.Addr, err)
	}
	listeners := []net.Listener{ln}
	var maddr net.Addr
	if cfg.Metrics.Enabled && cfg.Metrics.Addr != "" {
		mln, err := net.Listen("tcp", cfg.Metrics.Addr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("registry: listen on %s (metrics.addr): %w", cfg.Metrics.Addr, err)
		}
		sopts = append(sopts, WithMetricsListener(mln))
		listeners = append(listeners, mln)
		maddr = mln.Addr()
	}
	// Checked before started is told, so nothing claims to listen on an
	// address it then refuses (a host name that resolved to a public IP).
	if tlsConf == nil && !cfg.HTTP.Plain {
		for _, l := range listeners {
			if err := checkPlainHTTP(l.Addr()); err != nil {
				for _, l := range listeners {
					l.Close()
				}
				return err
			}
		}
	}
	if started != nil {
		started(ln.Addr(), maddr)
	}
	return reg.Serve(ctx, ln, sopts...)
}

// ServeOption configures Serve.
type ServeOption func(*serveConfig)

type serveConfig struct {
	tls       *tls.Config
	plainHTTP bool
	metrics   *Metrics
	metricsLn net.Listener
	health    bool
	accessLog *slog.Logger
	handlers  map[string]http.Handler
	prefixes  []string // keys of handlers ending in "/", longest first
}

// WithTLS serves TLS with c (nil: plain HTTP). LoadTLS makes one.
func WithTLS(c *tls.Config) ServeOption { return func(s *serveConfig) { s.tls = c } }

// WithPlainHTTP allows plain HTTP on a listener that is not loopback.
// Without it, Serve refuses to start on such a listener without TLS.
func WithPlainHTTP(allow bool) ServeOption { return func(s *serveConfig) { s.plainHTTP = allow } }

// WithMetrics counts requests in m (Metrics.Instrument) and serves it at
// /metrics, on the registry's listener unless WithMetricsListener gives
// one of its own.
func WithMetrics(m *Metrics) ServeOption { return func(s *serveConfig) { s.metrics = m } }

// WithMetricsListener serves /metrics on ln rather than the registry's
// listener, so it can stay private while the registry is public; /health
// is served on both. Serve closes ln when it returns.
func WithMetricsListener(ln net.Listener) ServeOption {
	return func(s *serveConfig) { s.metricsLn = ln }
}

// WithHealth serves /health and /healthz (default on).
func WithHealth(enabled bool) ServeOption { return func(s *serveConfig) { s.health = enabled } }

// WithAccessLog logs one line per request to l (AccessLog).
func WithAccessLog(l *slog.Logger) ServeOption { return func(s *serveConfig) { s.accessLog = l } }

// WithHandler serves path with h instead of the registry: the exact path,
// or every path under it when path ends in "/". It sits inside the access
// log and metrics, outside the Registry (and so its Authorizer).
func WithHandler(path string, h http.Handler) ServeOption {
	return func(s *serveConfig) {
		if s.handlers == nil {
			s.handlers = map[string]http.Handler{}
		}
		s.handlers[path] = h
	}
}

// WithTokenHandler serves the token issuer of the auth layer at /token,
// the realm its WWW-Authenticate challenges point clients to.
func WithTokenHandler(h http.Handler) ServeOption { return WithHandler("/token", h) }

// Serve serves the registry on ln until ctx is done, then stops taking
// connections and waits (up to 30s) for requests in flight. Meanwhile it
// sweeps expired upload sessions, at start and then periodically.
//
// Around the Registry, in order from the network in:
//
//	TLS            WithTLS; without it, plain HTTP on loopback only,
//	               unless WithPlainHTTP
//	AccessLog      WithAccessLog
//	Instrument     WithMetrics
//	routes         /metrics, /health, /healthz, WithHandler paths (/token);
//	               everything else to the Registry
//
// Serve closes ln (and the metrics listener) when it returns.
func (g *Registry) Serve(ctx context.Context, ln net.Listener, opts ...ServeOption) error {
	sc := &serveConfig{health: true}
	for _, o := range opts {
		o(sc)
	}
	listeners := []net.Listener{ln}
	if sc.metricsLn != nil {
		listeners = append(listeners, sc.metricsLn)
	}
	if sc.tls == nil && !sc.plainHTTP {
		for _, l := range listeners {
			if err := checkPlainHTTP(l.Addr()); err != nil {
				for _, l := range listeners {
					l.Close()
				}
				return err
			}
		}
	}
	for p := range sc.handlers {
		if strings.HasSuffix(p, "/") {
			sc.prefixes = append(sc.prefixes, p)
		}
	}
	// Longest first, so /a/b/ wins over /a/.
	slices.SortFunc(sc.prefixes, func(a, b string) int { return len(b) - len(a) })

	hc := &healthCheck{store: g.store, log: g.log}
	servers := []*http.Server{NewHTTPServer(g.handler(sc, hc))}
	if sc.metricsLn != nil {
		servers = append(servers, NewHTTPServer(sideHandler(sc, hc)))
	}
	// net/http reports TLS handshake failures and the like here: scanners
	// make them common, so they are debug-level noise.
	errLog := slog.NewLogLogger(g.log.Handler(), slog.LevelDebug)
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		srv.ErrorLog = errLog
		srv.TLSConfig = sc.tls
		go func(srv *http.Server, ln net.Listener) {
			if srv.TLSConfig != nil {
				errc <- srv.ServeTLS(ln, "", "")
				return
			}
			errc <- srv.Serve(ln)
		}(srv, listeners[i])
	}
	done := make(chan struct{})
	defer close(done)
	go g.janitor(done)

	var err error // the first listener's failure, if one failed
	taken := 0
	select {
	case err = <-errc:
		taken = 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	shutdownErrs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if shutdownErrs[i] = srv.Shutdown(sctx); errors.Is(shutdownErrs[i], context.DeadlineExceeded) {
				srv.Close() // requests still running past the grace period
			}
		}()
	}
	wg.Wait()
	for ; taken < len(servers); taken++ {
		if serr := <-errc; err == nil || errors.Is(err, http.ErrServerClosed) {
			err = serr
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err == nil {
		err = errors.Join(shutdownErrs...)
	}
	return err
}

// handler is the registry's listener's handler chain (see Serve).
func (g *Registry) handler(sc *serveConfig, hc *healthCheck) http.Handler {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == "/metrics" && sc.metrics != nil && sc.metricsLn == nil:
			sc.metrics.ServeHTTP(w, r)
			return
		case (p == "/health" || p == "/healthz") && sc.health:
			hc.ServeHTTP(w, r)
			return
		}
		if x, ok := sc.handlers[p]; ok {
			x.ServeHTTP(w, r)
			return
		}
		for _, pre := range sc.prefixes {
			if strings.HasPrefix(p, pre) {
				sc.handlers[pre].ServeHTTP(w, r)
				return
			}
		}
		// Everything else, unknown paths included, is the Registry's: it
		// answers them with the spec's error JSON.
		g.ServeHTTP(w, r)
	})
	if sc.metrics != nil {
		h = sc.metrics.Instrument(h)
	}
	if sc.accessLog != nil {
		h = AccessLog(h, sc.accessLog)
	}
	return h
}

// sideHandler serves the metrics listener: /metrics and /health.
func sideHandler(sc *serveConfig, hc *healthCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/metrics" && sc.metrics != nil:
			sc.metrics.ServeHTTP(w, r)
		case (p == "/health" || p == "/healthz") && sc.health:
			hc.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// checkPlainHTTP refuses plain HTTP on a TCP address that is not loopback.
// It judges the bound address, so a host name is judged by what it
// resolved to.
func checkPlainHTTP(a net.Addr) error {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta.IP.IsLoopback() {
		return nil // a Unix socket, or loopback
	}
	return fmt.Errorf("%w: %w", plainHTTPError(a.String()), errdefs.ErrInvalidArgument)
}

// ---- health ----

// healthCheck answers /health: 200 {"status":"ok"} when the storage can
// be written (a file created and removed in tmp/) and read (blobs/ listed),
// 503 otherwise. The result is reused for healthTTL, so frequent probes
// cost one check per second at most.
type healthCheck struct {
	store *Store
	log   *slog.Logger

	mu   sync.Mutex
	at   time.Time
	err  error
	down bool
}

const healthTTL = time.Second

func (h *healthCheck) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < healthTTL {
		return h.err
	}
	h.err = checkStorage(h.store.root)
	h.at = time.Now()
	if (h.err != nil) != h.down {
		h.down = h.err != nil
		if h.down {
			h.log.Warn("registry: health check failing", "err", h.err)
		} else {
			h.log.Info("registry: health check passing again")
		}
	}
	return h.err
}

// checkStorage is the health check proper. A file left by a crash between
// create and remove is a stray temporary file, swept with the others.
func checkStorage(root string) error {
	f, err := os.CreateTemp(filepath.Join(root, tmpDir), "health-")
	if err != nil {
		return fmt.Errorf("storage is not writable: %w", err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("storage is not writable: %w", err)
	}
	d, err := os.Open(filepath.Join(root, blobsDir))
	if err == nil {
		_, err = d.Readdirnames(1)
		d.Close()
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("storage is not readable: %w", err)
	}
	return nil
}

func (h *healthCheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	body, code := `{"status":"ok"}`+"\n", http.StatusOK
	if err := h.check(); err != nil {
		// The reason without its path: the endpoint is unauthenticated.
		reason, _, _ := strings.Cut(err.Error(), ":")
		body, code = `{"status":"unavailable","reason":"`+reason+`"}`+"\n", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		io.WriteString(w, body)
	}
}

// ---- TLS ----

// LoadTLS makes the TLS configuration of a registry: certFile and keyFile
// (PEM), TLS 1.2 at least, and with clientCAFile, client certificates
// required and checked against it. The pair is read again when either
// file changes, so a renewed certificate is served without a restart; a
// pair that fails to load (half-way through a renewal) is logged to log
// and the previous one served meanwhile.
func LoadTLS(certFile, keyFile, clientCAFile string, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.Default()
	}
	kp := &keyPair{certFile: certFile, keyFile: keyFile, log: log}
	if err := kp.load(); err != nil {
		return nil, fmt.Errorf("registry: tls: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: kp.get,
	}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("registry: tls.clientCA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registry: tls.clientCA %s holds no PEM certificate: %w", clientCAFile, errdefs.ErrInvalidArgument)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// TLSConfig loads the configured certificate (nil, nil when none is).
func (c *Config) TLSConfig(log *slog.Logger) (*tls.Config, error) {
	if !c.TLS.Enabled() {
		return nil, nil
	}
	return LoadTLS(c.TLS.Certificate, c.TLS.Key, c.TLS.ClientCA, log)
}

// keyPair is a certificate and key reloaded when their files change.
type keyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and mtimes when cert was loaded
	failed  string // the stamp of the last pair that failed to load
	checked time.Time
}

// fileStamp identifies the current contents of the pair's files.
func (k *keyPair) fileStamp() string {
	var b strings.Builder
	for _, p := range []string{k.certFile, k.keyFile} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d@%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

func (k *keyPair) load() error {
	stamp := k.fileStamp()
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("loading certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.stamp = &cert, stamp
	return nil
}

// get is tls.Config.GetCertificate. It looks at the files at most once a
// second: a stat per handshake is cheap, but there is no need.
func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) < time.Second {
		return k.cert, nil
	}
	k.checked = time.Now()
	stamp := k.fileStamp()
	if stamp == k.stamp || stamp == k.failed {
		return k.cert, nil
	}
	if err := k.load(); err != nil {
		k.failed = stamp
		k.log.Warn("registry: tls: keeping the previous certificate", "err", err)
		return k.cert, nil
	}
	k.log.Info("registry: tls: certificate reloaded", "certificate", k.certFile)
	return k.cert, nil
}

// ---- upload expiry ----

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
