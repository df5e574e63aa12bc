package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Registry serves the OCI distribution API from a Store. It is an
// http.Handler; every request goes through the same chain:
//
//	ServeHTTP      API version header, panic guard, I/O deadlines
//	route          path -> (kind, repository, reference); names validated
//	authorize      the Authorizer, if any, sees the repository and actions
//	handler        one per endpoint: blobs.go, uploads.go, manifests.go,
//	               lists.go; storage errors become spec error codes here
//
// Access logs and metrics belong outside, as http.Handler wrappers.
type Registry struct {
	store           *Store
	maxManifestSize int64
	maxBlobSize     int64
	uploadExpiry    time.Duration
	ioTimeout       time.Duration
	deleteEnabled   bool
	authorizer      Authorizer
	proxy           *Proxy // pull-through cache (proxy.go); nil: none
	log             *slog.Logger
}

// Option configures a Registry.
type Option func(*Registry)

// WithMaxManifestSize caps manifests (default 4 MiB); larger ones get 413.
func WithMaxManifestSize(n int64) Option { return func(r *Registry) { r.maxManifestSize = n } }

// WithMaxBlobSize caps the size of one blob (default 0: no cap); an upload
// that grows past it gets 413 and loses the chunk that crossed it.
func WithMaxBlobSize(n int64) Option { return func(r *Registry) { r.maxBlobSize = n } }

// WithUploadExpiry is how long an upload session may sit idle before it is
// forgotten (default 24h).
func WithUploadExpiry(d time.Duration) Option { return func(r *Registry) { r.uploadExpiry = d } }

// WithIOTimeout is how long a request may go without making progress
// reading its body or writing its response (default 60s). It is a
// per-read and per-write deadline, not a whole-request one, so a large
// blob on a slow link succeeds and a client that stalls (slowloris) does not
// hold a connection for long.
func WithIOTimeout(d time.Duration) Option { return func(r *Registry) { r.ioTimeout = d } }

// WithDelete enables or disables the DELETE endpoints (default enabled);
// disabled, they answer 405 UNSUPPORTED as the spec allows.
func WithDelete(enabled bool) Option { return func(r *Registry) { r.deleteEnabled = enabled } }

// WithAuthorizer puts an Authorizer in front of every endpoint. With one
// set, mounts without a from= repository are refused (they would let a
// client link any blob whose digest it knows).
func WithAuthorizer(a Authorizer) Option { return func(r *Registry) { r.authorizer = a } }

// WithLogger sets where server faults are logged (default slog.Default).
func WithLogger(l *slog.Logger) Option { return func(r *Registry) { r.log = l } }

// Access is one resource a request needs and what it does with it, in the
// shape of a token scope: "repository:team/app:pull,push".
type Access struct {
	Type    string   // "repository", or "registry" for the catalog
	Name    string   // the repository, or "catalog"
	Actions []string // "pull", "push", "delete"; "*" for the catalog
}

// Authorizer decides whether a request may have the access it needs. It
// is called after routing and before any storage is read, for every
// request including GET /v2/ (with no access: a login check). It returns
// nil to allow, or an *Error (UNAUTHORIZED with a WWW-Authenticate header,
// DENIED) to answer with. It must answer the same for a repository that
// does not exist as for one the caller may not see.
type Authorizer interface {
	Authorize(r *http.Request, access []Access) error
}

// New makes a Registry over store.
func New(store *Store, opts ...Option) *Registry {
	r := &Registry{
		store:           store,
		maxManifestSize: DefaultMaxManifestSize,
		uploadExpiry:    24 * time.Hour,
		ioTimeout:       60 * time.Second,
		deleteEnabled:   true,
		log:             slog.Default(),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

type routeKind int

const (
	routeNone routeKind = iota
	routeBase
	routeCatalog
	routeTags
	routeManifest
	routeBlob
	routeUpload
	routeReferrers
)

// route is a parsed API path. Name has passed ValidateName; Ref is the
// raw last segment (reference, digest, upload ID) for the handler to parse.
type route struct {
	kind routeKind
	name string
	ref  string
}

// parseRoute splits an API path. The repository name may itself contain
// "blobs" or "manifests" as components, so the endpoint is recognised
// from the end of the path, and what precedes it is the name. A path
// that is no endpoint gives routeNone; one whose name breaks the grammar
// (including "..", empty or encoded-slash tricks) gives an error.
func parseRoute(p string) (route, error) {
	switch p {
	case "/v2", "/v2/":
		return route{kind: routeBase}, nil
	case "/v2/_catalog":
		return route{kind: routeCatalog}, nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}, nil
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var rt route
	nameEnd := 0
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		rt, nameEnd = route{kind: routeTags}, n-2
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		rt, nameEnd = route{kind: routeUpload, ref: segs[n-1]}, n-3
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		rt, nameEnd = route{kind: routeUpload}, n-2
	case n >= 3 && segs[n-2] == "blobs":
		rt, nameEnd = route{kind: routeBlob, ref: segs[n-1]}, n-2
	case n >= 3 && segs[n-2] == "manifests":
		rt, nameEnd = route{kind: routeManifest, ref: segs[n-1]}, n-2
	case n >= 3 && segs[n-2] == "referrers":
		rt, nameEnd = route{kind: routeReferrers, ref: segs[n-1]}, n-2
	default:
		return route{}, nil
	}
	rt.name = strings.Join(segs[:nameEnd], "/")
	if err := ValidateName(rt.name); err != nil {
		return route{}, err
	}
	return rt, nil
}

// methods lists what each endpoint answers, for 405's Allow header.
var methods = map[routeKind][]string{
	routeBase:      {"GET", "HEAD"},
	routeCatalog:   {"GET"},
	routeTags:      {"GET"},
	routeManifest:  {"GET", "HEAD", "PUT", "DELETE"},
	routeBlob:      {"GET", "HEAD", "DELETE"},
	routeUpload:    {"POST", "PATCH", "PUT", "GET", "DELETE"},
	routeReferrers: {"GET"},
}

func (g *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			g.log.Error("registry: panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v)
			writeErrors(w, r, &Error{Code: CodeUnknown, Message: "internal server error"})
		}
	}()
	// A deadline for the whole of a small request; the body reader and
	// blob writer push it forward as bytes move.
	rc := http.NewResponseController(w)
	if g.ioTimeout > 0 {
		rc.SetReadDeadline(time.Now().Add(g.ioTimeout))
		rc.SetWriteDeadline(time.Now().Add(g.ioTimeout))
	}
	rt, err := parseRoute(r.URL.Path)
	if err != nil {
		writeErrors(w, r, apiError(CodeNameInvalid, err))
		return
	}
	if rt.kind == routeNone {
		writeErrors(w, r, &Error{Code: CodeUnsupported, Status: http.StatusNotFound, Message: "no such endpoint: " + truncate(r.URL.Path)})
		return
	}
	if !slices.Contains(methods[rt.kind], r.Method) {
		w.Header().Set("Allow", strings.Join(methods[rt.kind], ", "))
		writeErrors(w, r, &Error{Code: CodeUnsupported, Message: "method " + r.Method + " is not supported on this endpoint"})
		return
	}
	if g.authorizer != nil {
		if err := g.authorizer.Authorize(r, g.access(r, rt)); err != nil {
			g.fail(w, r, err)
			return
		}
	}
	switch rt.kind {
	case routeBase:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			io.WriteString(w, "{}")
		}
		return
	case routeCatalog:
		err = g.getCatalog(w, r)
	case routeTags:
		err = g.getTags(w, r, rt.name)
	case routeReferrers:
		err = g.getReferrers(w, r, rt.name, rt.ref)
	case routeManifest:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			err = g.getManifest(w, r, rt.name, rt.ref)
		case http.MethodPut:
			err = g.putManifest(w, r, rt.name, rt.ref)
		case http.MethodDelete:
			err = g.deleteManifest(w, r, rt.name, rt.ref)
		}
	case routeBlob:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			err = g.getBlob(w, r, rt.name, rt.ref)
		case http.MethodDelete:
			err = g.deleteBlob(w, r, rt.name, rt.ref)
		}
	case routeUpload:
		err = g.serveUpload(w, r, rt.name, rt.ref)
	}
	if err != nil {
		g.fail(w, r, err)
	}
}

// access is what a request needs, for the Authorizer.
func (g *Registry) access(r *http.Request, rt route) []Access {
	repo := func(actions ...string) []Access {
		return []Access{{Type: "repository", Name: rt.name, Actions: actions}}
	}
	switch rt.kind {
	case routeCatalog:
		return []Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	case routeTags, routeReferrers:
		return repo("pull")
	case routeManifest, routeBlob:
		switch r.Method {
		case http.MethodPut:
			return repo("pull", "push")
		case http.MethodDelete:
			return repo("delete")
		}
		return repo("pull")
	case routeUpload:
		a := repo("pull", "push")
		if from := r.URL.Query().Get("from"); from != "" && r.URL.Query().Get("mount") != "" && ValidateName(from) == nil {
			a = append(a, Access{Type: "repository", Name: from, Actions: []string{"pull"}})
		}
		return a
	}
	return nil
}

// errorList is several spec errors answered together (a manifest that
// references several missing blobs).
type errorList []*Error

func (l errorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// fail answers with err. Handlers turn what they can name into *Error;
// what is left is classified here, and anything unclassified is a server
// fault: logged, and answered 500 without detail.
func (g *Registry) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		apiErr  *Error
		list    errorList
		rangeE  *RangeError
		sizeE   *SizeError
		digestE *DigestError
		readE   *bodyReadError
		maxE    *http.MaxBytesError
	)
	switch {
	case errors.As(err, &list) && len(list) > 0:
		writeErrors(w, r, list...)
	case errors.As(err, &apiErr):
		writeErrors(w, r, apiErr)
	case errors.As(err, &rangeE):
		writeErrors(w, r, &Error{Code: CodeBlobUploadInvalid, Status: http.StatusRequestedRangeNotSatisfiable, Message: rangeE.Error()})
	case errors.As(err, &sizeE):
		e := &Error{Code: CodeSizeInvalid, Message: sizeE.Error()}
		if sizeE.TooLarge {
			e.Status = http.StatusRequestEntityTooLarge
		}
		writeErrors(w, r, e)
	case errors.As(err, &maxE):
		writeErrors(w, r, &Error{Code: CodeSizeInvalid, Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body is over the limit of %d bytes", maxE.Limit)})
	case errors.As(err, &digestE):
		writeErrors(w, r, &Error{Code: CodeDigestInvalid, Message: digestE.Error()})
	case errors.As(err, &readE):
		writeErrors(w, r, &Error{Code: CodeBlobUploadInvalid, Message: readE.Error()})
	case errdefs.IsInvalidArgument(err):
		writeErrors(w, r, &Error{Code: CodeUnsupported, Status: http.StatusBadRequest, Message: userText(err)})
	default:
		if r.Context().Err() != nil {
			return // the client went away; nobody to answer
		}
		g.log.Error("registry: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeErrors(w, r, &Error{Code: CodeUnknown, Message: "internal server error"})
	}
}

// bodyReadError is a failure reading the client's request body: the
// client's problem (it hung up, stalled past the I/O timeout), never a
// server fault.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// deadlineReader reads a request body, pushing the connection's read
// deadline forward as data arrives, and marks its errors as the client's.
type deadlineReader struct {
	r        io.Reader
	rc       *http.ResponseController
	timeout  time.Duration
	extended time.Time
}

func (g *Registry) body(w http.ResponseWriter, r *http.Request) io.Reader {
	return &deadlineReader{r: r.Body, rc: http.NewResponseController(w), timeout: g.ioTimeout}
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.timeout > 0 {
		// Extending costs a timer reset; doing it at most every
		// timeout/8 keeps it off the hot path of a fast upload.
		if now := time.Now(); now.Sub(d.extended) > d.timeout/8 {
			d.rc.SetReadDeadline(now.Add(d.timeout))
			d.extended = now
		}
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		var maxE *http.MaxBytesError
		if errors.As(err, &maxE) {
			return n, err
		}
		return n, &bodyReadError{err}
	}
	return n, err
}

// sendChunk is how much of a blob is handed to sendfile between two
// extensions of the write deadline: a client must read at least this much
// per I/O timeout.
const sendChunk = 1 << 20

// deadlineWriter pushes the connection's write deadline forward while a
// blob is sent, in chunks, keeping the sendfile path of http.ServeContent
// (an *io.LimitedReader over an *os.File).
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) extend() {
	if w.timeout > 0 {
		w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

func (w *deadlineWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, src)
	}
	lr, ok := src.(*io.LimitedReader)
	if !ok {
		lr = &io.LimitedReader{R: src, N: 1<<63 - 1}
	}
	var total int64
	for lr.N > 0 {
		w.extend()
		want := min(lr.N, sendChunk)
		m, err := rf.ReadFrom(&io.LimitedReader{R: lr.R, N: want})
		lr.N -= m
		total += m
		if err != nil || m < want {
			return total, err
		}
	}
	return total, nil
}
