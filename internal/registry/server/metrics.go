package server

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// Metrics counts what a registry serves and describes its storage, in
// Prometheus' text exposition format (written here by hand: the format is
// a few lines of text and the client library would be the largest
// dependency of the server). Counters are updated by Instrument as
// requests finish; storage figures are read when /metrics is scraped.
//
//	berth_registry_http_requests_total{method,code}        counter
//	berth_registry_http_request_duration_seconds{method}    histogram
//	berth_registry_http_requests_in_flight                   gauge
//	berth_registry_http_received_bytes_total                 counter (request bodies)
//	berth_registry_http_sent_bytes_total                     counter (response bodies)
//	berth_registry_uploads_in_progress                       gauge (sessions on disk)
//	berth_registry_storage_bytes, _storage_blobs             gauge (walk of blobs/, cached)
//	berth_registry_storage_free_bytes                        gauge (statfs of the root)
//	process_resident_memory_bytes, process_open_fds          gauge
//	go_goroutines, go_memstats_heap_alloc_bytes, go_memstats_sys_bytes
type Metrics struct {
	store *Store
	log   *slog.Logger

	mu        sync.Mutex
	requests  map[reqKey]uint64
	durations map[string]*histogram

	inFlight atomic.Int64
	received atomic.Uint64
	sent     atomic.Uint64

	// The blob walk reads every directory under blobs/; it is cached for
	// storageTTL and refreshed in the background, so a scrape never waits
	// on it except the first.
	storageTTL time.Duration
	smu        sync.Mutex
	storage    storageStats
	walking    bool
}

type reqKey struct {
	method string
	code   int
}

type storageStats struct {
	bytes, blobs int64
	at           time.Time
}

// storageTTL is how long a walk of blobs/ is reused. Storage changes by
// pushes of whole blobs, and a dashboard does not need it to the second.
const storageTTL = 30 * time.Second

// durationBuckets are upper bounds in seconds: manifests and small blobs
// finish in milliseconds, large layers in minutes.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

type histogram struct {
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

// NewMetrics makes the metrics of a registry serving store. log receives
// failures to read the storage figures (nil: slog.Default).
func NewMetrics(store *Store, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.Default()
	}
	return &Metrics{
		store:      store,
		log:        log,
		requests:   map[reqKey]uint64{},
		durations:  map[string]*histogram{},
		storageTTL: storageTTL,
	}
}

// Instrument counts the requests h serves. The ResponseWriter h sees
// still has every ability the server's had: io.ReaderFrom (so blobs go
// out with sendfile), http.Flusher, and through Unwrap the deadlines of
// http.ResponseController that the Registry's I/O timeouts rely on.
func (m *Metrics) Instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		o, r := observe(w, r)
		m.inFlight.Add(1)
		defer func() {
			m.inFlight.Add(-1)
			m.record(r.Method, o.code(), time.Since(start), o.received(), o.sent)
		}()
		h.ServeHTTP(o, r)
	})
}

// methodLabel keeps the method label to a known set, so that a client
// inventing methods cannot make the series grow without bound.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS":
		return m
	}
	return "other"
}

func (m *Metrics) record(method string, code int, d time.Duration, in, out int64) {
	method = methodLabel(method)
	m.received.Add(uint64(in))
	m.sent.Add(uint64(out))
	secs := d.Seconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[reqKey{method, code}]++
	h := m.durations[method]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(durationBuckets)+1)}
		m.durations[method] = h
	}
	i, _ := slices.BinarySearch(durationBuckets, secs)
	h.counts[i]++
	h.sum += secs
	h.n++
}

// ServeHTTP answers a scrape.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var buf bytes.Buffer
	m.WriteTo(&buf)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	if r.Method == http.MethodGet {
		w.Write(buf.Bytes())
	}
}

// WriteTo writes every metric in the text exposition format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	e := &expo{}

	m.mu.Lock()
	keys := make([]reqKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b reqKey) int {
		if c := strings.Compare(a.method, b.method); c != 0 {
			return c
		}
		return a.code - b.code
	})
	e.header("berth_registry_http_requests_total", "counter", "HTTP requests served, by method and status code.")
	for _, k := range keys {
		e.sample("berth_registry_http_requests_total", labels("method", k.method, "code", strconv.Itoa(k.code)), float64(m.requests[k]))
	}
	methods := make([]string, 0, len(m.durations))
	for k := range m.durations {
		methods = append(methods, k)
	}
	slices.Sort(methods)
	e.header("berth_registry_http_request_duration_seconds", "histogram", "Time from a request's arrival to the end of its response, by method.")
	for _, meth := range methods {
		h := m.durations[meth]
		var cum uint64
		for i, c := range h.counts {
			cum += c
			le := "+Inf"
			if i < len(durationBuckets) {
				le = strconv.FormatFloat(durationBuckets[i], 'g', -1, 64)
			}
			e.sample("berth_registry_http_request_duration_seconds_bucket", labels("method", meth, "le", le), float64(cum))
		}
		e.sample("berth_registry_http_request_duration_seconds_sum", labels("method", meth), h.sum)
		e.sample("berth_registry_http_request_duration_seconds_count", labels("method", meth), float64(h.n))
	}
	m.mu.Unlock()

	e.metric("berth_registry_http_requests_in_flight", "gauge", "Requests being served.", float64(m.inFlight.Load()))
	e.metric("berth_registry_http_received_bytes_total", "counter", "Bytes of request bodies read (blob and manifest pushes).", float64(m.received.Load()))
	e.metric("berth_registry_http_sent_bytes_total", "counter", "Bytes of response bodies written (blob and manifest pulls).", float64(m.sent.Load()))

	if m.store != nil {
		if n, err := readDirNames(filepath.Join(m.store.root, uploadsDir)); err == nil {
			count := 0
			for _, id := range n {
				if validUploadID(id) {
					count++
				}
			}
			e.metric("berth_registry_uploads_in_progress", "gauge", "Upload sessions on disk, open or idle but not yet expired.", float64(count))
		}
		st := m.storageStats()
		if !st.at.IsZero() {
			e.metric("berth_registry_storage_bytes", "gauge", "Bytes of all blobs stored (layers, configs and manifests), as of the last walk of blobs/ (at most 30 s old).", float64(st.bytes))
			e.metric("berth_registry_storage_blobs", "gauge", "Number of blobs stored, as of the last walk of blobs/.", float64(st.blobs))
		}
		var fs syscall.Statfs_t
		if syscall.Statfs(m.store.root, &fs) == nil {
			e.metric("berth_registry_storage_free_bytes", "gauge", "Bytes available to the registry on the filesystem of its storage.", float64(fs.Bavail)*float64(fs.Bsize))
		}
	}

	if rss, ok := residentBytes(); ok {
		e.metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", float64(rss))
	}
	if fds, err := readDirNames("/proc/self/fd"); err == nil {
		e.metric("process_open_fds", "gauge", "Number of open file descriptors.", float64(len(fds)))
	}
	e.metric("go_goroutines", "gauge", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	// runtime/metrics, unlike runtime.ReadMemStats, does not stop the world.
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	metrics.Read(samples)
	if samples[0].Value.Kind() == metrics.KindUint64 {
		e.metric("go_memstats_heap_alloc_bytes", "gauge", "Bytes of allocated heap objects.", float64(samples[0].Value.Uint64()))
	}
	if samples[1].Value.Kind() == metrics.KindUint64 {
		e.metric("go_memstats_sys_bytes", "gauge", "Bytes of memory obtained from the OS by the Go runtime.", float64(samples[1].Value.Uint64()))
	}
	n, err := w.Write(e.buf.Bytes())
	return int64(n), err
}

// storageStats is the last walk of blobs/: the first call walks, later
// calls answer from the cache and start a new walk in the background once
// it is older than storageTTL.
func (m *Metrics) storageStats() storageStats {
	m.smu.Lock()
	st := m.storage
	stale := st.at.IsZero() || m.storageTTL <= 0 || time.Since(st.at) > m.storageTTL
	if !stale || m.walking {
		m.smu.Unlock()
		return st
	}
	m.walking = true
	m.smu.Unlock()
	if st.at.IsZero() || m.storageTTL <= 0 {
		return m.walkStorage()
	}
	go m.walkStorage()
	return st
}

func (m *Metrics) walkStorage() storageStats {
	var st storageStats
	err := m.store.WalkBlobs(func(_ digest.Digest, size int64) error {
		st.bytes += size
		st.blobs++
		return nil
	})
	st.at = time.Now()
	m.smu.Lock()
	defer m.smu.Unlock()
	m.walking = false
	if err != nil {
		// Keep the last good figures; their age shows in the next try.
		m.log.Warn("registry: metrics: walking blobs", "err", err)
		m.storage.at = st.at
		return m.storage
	}
	m.storage = st
	return st
}

// residentBytes is the process's resident set, from /proc/self/statm
// (pages; the second field).
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// ---- exposition format ----

type expo struct{ buf bytes.Buffer }

func (e *expo) header(name, typ, help string) {
	e.buf.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
}

func (e *expo) metric(name, typ, help string, v float64) {
	e.header(name, typ, help)
	e.sample(name, "", v)
}

func (e *expo) sample(name, labels string, v float64) {
	e.buf.WriteString(name)
	e.buf.WriteString(labels)
	e.buf.WriteByte(' ')
	e.buf.WriteString(formatValue(v))
	e.buf.WriteByte('\n')
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// labels formats name, value pairs as {name="value",...}.
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i] + `="` + labelEscaper.Replace(kv[i+1]) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

// ---- observing a response ----

// observer is the ResponseWriter that Instrument and AccessLog give the
// handler: it notes the status and counts bytes, and keeps the abilities
// of the writer it wraps. Wrappers share one observer per request (the
// outer makes it, the inner finds it), so stacking them adds no copy.
type observer struct {
	http.ResponseWriter
	status int
	sent   int64
	body   *countingBody
}

var (
	_ io.ReaderFrom = (*observer)(nil)
	_ http.Flusher  = (*observer)(nil)
)

// observe wraps w (unless it is already an observer) and r's body.
func observe(w http.ResponseWriter, r *http.Request) (*observer, *http.Request) {
	if o, ok := w.(*observer); ok {
		return o, r
	}
	o := &observer{ResponseWriter: w}
	if r.Body != nil && r.Body != http.NoBody {
		o.body = &countingBody{ReadCloser: r.Body}
		r = r.WithContext(r.Context()) // a shallow copy, for the body
		r.Body = o.body
	}
	return o, r
}

// code is the status sent; 200 when the handler wrote nothing, as net/http
// then answers.
func (o *observer) code() int {
	if o.status == 0 {
		return http.StatusOK
	}
	return o.status
}

func (o *observer) received() int64 {
	if o.body == nil {
		return 0
	}
	return o.body.n
}

func (o *observer) WriteHeader(code int) {
	// 1xx responses are interim; the status that counts comes after.
	if o.status == 0 && code >= 200 {
		o.status = code
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *observer) Write(p []byte) (int, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	n, err := o.ResponseWriter.Write(p)
	o.sent += int64(n)
	return n, err
}

// ReadFrom hands src to the wrapped writer untouched: net/http's
// response.ReadFrom recognises an *os.File (or an *io.LimitedReader over
// one) and sends it with sendfile, which wrapping src would defeat.
func (o *observer) ReadFrom(src io.Reader) (int64, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := o.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{o.ResponseWriter}, src)
	}
	o.sent += n
	return n, err
}

func (o *observer) Flush() {
	http.NewResponseController(o.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer, for
// SetReadDeadline, SetWriteDeadline, Hijack and EnableFullDuplex.
func (o *observer) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// countingBody counts the bytes a handler reads from a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
