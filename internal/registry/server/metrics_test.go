package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestInstrumentKeepsWriterAbilities checks that a handler behind the
// access log and metrics still has what the Registry needs from its
// ResponseWriter: io.ReaderFrom (sendfile), http.Flusher, and the
// connection deadlines of http.ResponseController (the I/O timeouts).
func TestInstrumentKeepsWriterAbilities(t *testing.T) {
	m := NewMetrics(nil, nil)
	var problems []string
	h := AccessLog(m.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(io.ReaderFrom); !ok {
			problems = append(problems, "not an io.ReaderFrom")
		}
		if _, ok := w.(http.Flusher); !ok {
			problems = append(problems, "not an http.Flusher")
		}
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			problems = append(problems, "SetWriteDeadline: "+err.Error())
		}
		if err := rc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			problems = append(problems, "SetReadDeadline: "+err.Error())
		}
		io.WriteString(w, "ok")
	})), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(problems) > 0 {
		t.Fatalf("the wrapped ResponseWriter lost abilities: %v", problems)
	}
}

// readFromRecorder is a ResponseWriter that notes what ReadFrom was given.
type readFromRecorder struct {
	httptest.ResponseRecorder
	src io.Reader
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.src = src
	return io.Copy(&r.ResponseRecorder, src)
}

// TestInstrumentPassesFileToReadFrom checks the sendfile path: the server's
// ReadFrom must get the *io.LimitedReader over the *os.File untouched, which
// is what net/http hands to sendfile(2).
func TestInstrumentPassesFileToReadFrom(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "blob")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("0123456789")
	f.Seek(0, 0)
	defer f.Close()
	lr := &io.LimitedReader{R: f, N: 10}
	inner := &readFromRecorder{ResponseRecorder: *httptest.NewRecorder()}
	m := NewMetrics(nil, nil)
	m.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := w.(io.ReaderFrom).ReadFrom(lr)
		if n != 10 || err != nil {
			t.Errorf("ReadFrom: %d, %v", n, err)
		}
	})).ServeHTTP(inner, httptest.NewRequest("GET", "/v2/a/blobs/x", nil))
	if inner.src != lr {
		t.Fatalf("ReadFrom got %T %p, want the handler's *io.LimitedReader %p", inner.src, inner.src, lr)
	}
	var buf bytes.Buffer
	m.WriteTo(&buf)
	if !strings.Contains(buf.String(), "berth_registry_http_sent_bytes_total 10\n") {
		t.Errorf("bytes sent by ReadFrom not counted:\n%s", buf.String())
	}
}

// served is a registry running through Serve on 127.0.0.1.
type served struct {
	url   string
	store *Store
	log   *lockedBuffer
	stop  func() error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serve runs a registry with Serve; a nil metrics means none.
func serve(t *testing.T, m func(*Store) *Metrics, opts ...ServeOption) *served {
	t.Helper()
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if m != nil {
		opts = append(opts, WithMetrics(m(store)))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- New(store, WithLogger(log)).Serve(ctx, ln, append([]ServeOption{WithAccessLog(log)}, opts...)...)
	}()
	var once sync.Once
	var serr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serr = <-done:
			case <-time.After(10 * time.Second):
				serr = errors.New("Serve did not return")
			}
		})
		return serr
	}
	t.Cleanup(func() { stop() })
	return &served{url: "http://" + ln.Addr().String(), store: store, log: logBuf, stop: stop}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape reads /metrics into name{labels} -> value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	code, body := get(t, nil, url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	return parseExposition(t, body)
}

var sampleRe = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

// parseExposition checks the text format's shape as it reads: each
// family's HELP and TYPE before its samples, every sample well formed.
func parseExposition(t *testing.T, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	typed := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			typed[name] = typ
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sampleRe.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("malformed line %q", line)
		}
		family := m[1]
		if typed[family] == "" {
			family = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(family, "_bucket"), "_sum"), "_count")
		}
		if typed[family] == "" {
			t.Fatalf("sample %q before its # TYPE", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out[m[1]+m[2]] = v
	}
	return out
}

func TestMetricsCount(t *testing.T) {
	s := serve(t, func(st *Store) *Metrics {
		m := NewMetrics(st, nil)
		m.storageTTL = 0 // walk at every scrape
		return m
	})
	m0 := scrape(t, s.url)
	if m0["process_resident_memory_bytes"] <= 0 || m0["berth_registry_storage_blobs"] != 0 || m0["berth_registry_uploads_in_progress"] != 0 {
		t.Fatalf("first scrape: %v", m0)
	}

	// A blob pushed in one request, pulled twice, and a miss.
	blob := bytes.Repeat([]byte("berth"), 2000)
	d := digest.FromBytes(blob)
	resp, err := http.Post(s.url+"/v2/team/app/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	for range 2 {
		if code, body := get(t, nil, s.url+"/v2/team/app/blobs/"+d.String()); code != 200 || body != string(blob) {
			t.Fatalf("pull: %d", code)
		}
	}
	get(t, nil, s.url+"/v2/team/app/blobs/"+digest.FromString("absent").String())
	// An upload session left open.
	resp, err = http.Post(s.url+"/v2/team/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	m1 := scrape(t, s.url)
	want := map[string]float64{
		`berth_registry_http_requests_total{method="POST",code="201"}`:      1,
		`berth_registry_http_requests_total{method="POST",code="202"}`:      1,
		`berth_registry_http_requests_total{method="GET",code="200"}`:       m0[`berth_registry_http_requests_total{method="GET",code="200"}`] + 3, // 2 pulls + the first scrape
		`berth_registry_http_requests_total{method="GET",code="404"}`:       1,
		`berth_registry_http_request_duration_seconds_count{method="POST"}`: 2,
		`berth_registry_uploads_in_progress`:                                1,
		`berth_registry_storage_blobs`:                                      1,
		`berth_registry_storage_bytes`:                                      float64(len(blob)),
		`berth_registry_http_received_bytes_total`:                          float64(len(blob)),
	}
	for k, v := range want {
		if m1[k] != v {
			t.Errorf("%s = %v, want %v", k, m1[k], v)
		}
	}
	if sent := m1["berth_registry_http_sent_bytes_total"] - m0["berth_registry_http_sent_bytes_total"]; sent < float64(2*len(blob)) {
		t.Errorf("sent bytes grew by %v, want at least %d", sent, 2*len(blob))
	}
	if m1[`berth_registry_http_request_duration_seconds_bucket{method="GET",le="+Inf"}`] != m1[`berth_registry_http_request_duration_seconds_count{method="GET"}`] {
		t.Errorf("histogram +Inf bucket differs from its count")
	}
}

func TestMetricsStorageCache(t *testing.T) {
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(store, nil)
	if st := m.storageStats(); st.blobs != 0 {
		t.Fatalf("empty store: %+v", st)
	}
	store.putBlobBytes(digest.FromString("x"), []byte("x"))
	if st := m.storageStats(); st.blobs != 0 {
		t.Fatalf("walked again within the TTL: %+v", st)
	}
	m.storageTTL = 0 // every call walks, synchronously
	if st := m.storageStats(); st.blobs != 1 || st.bytes != 1 {
		t.Fatalf("after a push: %+v", st)
	}
}

func TestExpositionEscapesLabels(t *testing.T) {
	if got := labels("a", `x"y\z`+"\n"); got != `{a="x\"y\\z\n"}` {
		t.Fatalf("labels: %s", got)
	}
	if methodLabel("BREW") != "other" || methodLabel("PATCH") != "PATCH" {
		t.Fatal("methodLabel lets unknown methods through")
	}
}

func TestHealth(t *testing.T) {
	s := serve(t, nil)
	for _, p := range []string{"/health", "/healthz"} {
		if code, body := get(t, nil, s.url+p); code != 200 || body != `{"status":"ok"}`+"\n" {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	// The storage goes away (a lost mount).
	if err := os.RemoveAll(s.store.Root()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(healthTTL + 100*time.Millisecond)
	code, body := get(t, nil, s.url+"/health")
	if code != 503 || !strings.Contains(body, `"status":"unavailable"`) || strings.Contains(body, s.store.Root()) {
		t.Fatalf("health without storage: %d %s (want 503, no path)", code, body)
	}
	if !strings.Contains(s.log.String(), "health check failing") {
		t.Errorf("failure not logged:\n%s", s.log.String())
	}
	// Disabled: the registry's own 404.
	s2 := serve(t, nil, WithHealth(false))
	if code, _ := get(t, nil, s2.url+"/health"); code != 404 {
		t.Errorf("health disabled: %d", code)
	}
}

func TestAccessLog(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	h := AccessLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v2/private/manifests/v1" {
			// As an Authorizer does: it cannot replace the request.
			WithUser(r.Context(), "alice")
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "done")
	}), log)
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("PUT", srv.URL+"/v2/private/manifests/v1?x=1", strings.NewReader("12345"))
	req.Header.Set("User-Agent", "berth-test/1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	get(t, nil, srv.URL+"/health") // debug level: not logged at info

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line (probes at debug), got %d:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{
		"msg": "request", "method": "PUT", "path": "/v2/private/manifests/v1", "query": "x=1",
		"status": 201.0, "bytes_sent": 4.0, "bytes_received": 5.0, "user_agent": "berth-test/1",
		"user": "alice", "proto": "HTTP/1.1",
	} {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v", k, rec[k], v)
		}
	}
	if r, _ := rec["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("remote = %v", rec["remote"])
	}
	if d, ok := rec["duration"].(float64); !ok || d < 0 || d > 10 {
		t.Errorf("duration = %v", rec["duration"])
	}
}

func TestUserContext(t *testing.T) {
	ctx := context.Background()
	if UserFrom(ctx) != "" {
		t.Fatal("user in an empty context")
	}
	if got := UserFrom(WithUser(ctx, "bob")); got != "bob" {
		t.Fatalf("WithUser without a slot: %q", got)
	}
}

// fakeListener has a public address but never accepts: Serve must refuse
// it without TLS before serving anything.
type fakeListener struct {
	addr   net.Addr
	closed bool
}

func (l *fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (l *fakeListener) Close() error              { l.closed = true; return nil }
func (l *fakeListener) Addr() net.Addr            { return l.addr }

func TestServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"0.0.0.0", "192.0.2.7", "::"} {
		ln := &fakeListener{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 5000}}
		err := New(store).Serve(context.Background(), ln)
		if err == nil || !strings.Contains(err.Error(), "--insecure-http") || !ln.closed {
			t.Errorf("%s: %v (closed %v), want a refusal saying what to do", ip, err, ln.closed)
		}
	}
}

func TestServeExtraHandlersAndMetricsListener(t *testing.T) {
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	token := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"token":"t"}`) })
	s := serve(t, func(st *Store) *Metrics { return NewMetrics(st, nil) },
		WithMetricsListener(mln), WithTokenHandler(token), WithHandler("/extra/", token))
	if code, body := get(t, nil, s.url+"/token?scope=x"); code != 200 || body != `{"token":"t"}` {
		t.Errorf("/token: %d %s", code, body)
	}
	if code, _ := get(t, nil, s.url+"/extra/a/b"); code != 200 {
		t.Errorf("/extra/a/b: %d", code)
	}
	// /metrics moved to its own listener: the registry answers 404 for it.
	if code, _ := get(t, nil, s.url+"/metrics"); code != 404 {
		t.Errorf("/metrics on the registry's listener: %d", code)
	}
	m := scrape(t, "http://"+mln.Addr().String())
	if m[`berth_registry_http_requests_total{method="GET",code="200"}`] != 2 {
		t.Errorf("requests on the main listener not counted: %v", m)
	}
	if code, _ := get(t, nil, "http://"+mln.Addr().String()+"/health"); code != 200 {
		t.Errorf("/health on the metrics listener: %d", code)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", mln.Addr().String()); err == nil {
		t.Error("metrics listener still open after Serve returned")
	}
}

// ---- TLS ----

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tlsClient(t *testing.T, caFile string, certs ...tls.Certificate) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(b)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	testutil.TestCA(t, dir, "server", "client")
	conf, err := LoadTLS(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if conf.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", conf.MinVersion)
	}
	s := serve(t, nil, WithTLS(conf))
	url := strings.Replace(s.url, "http://", "https://", 1)
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, tlsClient(t, filepath.Join(dir, "ca.crt"), clientCert), url+"/v2/"); code != 200 {
		t.Fatalf("GET /v2/ over mutual TLS: %d", code)
	}
	if _, err := tlsClient(t, filepath.Join(dir, "ca.crt")).Get(url + "/v2/"); err == nil {
		t.Error("a client without a certificate was let in")
	}
	if _, err := tlsClient(t, "", clientCert).Get(url + "/v2/"); err == nil {
		t.Error("a client that does not trust the CA connected")
	}
	// net/http answers plain HTTP on a TLS listener with a bare 400.
	if resp, err := http.Get(s.url + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("plain HTTP on the TLS listener: %d", resp.StatusCode)
		}
	}
}

func TestTLSReloadsRenewedCertificate(t *testing.T) {
	dir := t.TempDir()
	testutil.TestCA(t, dir, "server")
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	conf, err := LoadTLS(cert, key, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := conf.GetCertificate(nil)

	// A renewal: new files from another CA, written in place.
	other := t.TempDir()
	testutil.TestCA(t, other, "server")
	b, _ := os.ReadFile(filepath.Join(other, "server.crt"))
	os.WriteFile(cert, b, 0o600)
	time.Sleep(1100 * time.Millisecond) // past the once-a-second look
	if c, _ := conf.GetCertificate(nil); c != first {
		t.Fatal("a certificate without its key was loaded")
	}
	b, _ = os.ReadFile(filepath.Join(other, "server.key"))
	os.WriteFile(key, b, 0o600)
	time.Sleep(1100 * time.Millisecond)
	c, _ := conf.GetCertificate(nil)
	if c == first || c == nil {
		t.Fatal("the renewed certificate was not loaded")
	}

	if _, err := LoadTLS(filepath.Join(dir, "absent.crt"), key, "", nil); err == nil || !strings.Contains(err.Error(), "absent.crt") {
		t.Errorf("missing certificate: %v", err)
	}
	if _, err := LoadTLS(cert, key, key, nil); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("client CA that is a key: %v", err)
	}
}
