package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/registry/registrytest"
)

// These tests look at Push on the wire. upload_test.go checks what a push
// achieves; here a wire wrapper in front of the in-memory registry logs
// every request with its query and headers, and can make the registry
// behave as real ones do where go-containerregistry's does not: blobs
// per repository (its blob store is shared by all repositories, so a HEAD
// finds a blob pushed anywhere and a mount is never needed), mounts
// answered 201, token authentication whose scopes are recorded, Location
// headers with state in the query that must be followed.

// wireReq is one request as the registry saw it.
type wireReq struct {
	method, path string
	query        url.Values
	header       http.Header
	length       int64 // Content-Length
	status       int   // what was answered
}

func (r wireReq) String() string {
	s := r.method + " " + r.path
	if len(r.query) > 0 {
		s += "?" + r.query.Encode()
	}
	return fmt.Sprintf("%s -> %d", s, r.status)
}

// wire wraps a testRegistry (install with reg.setWrap(w.serve)).
type wire struct {
	host string

	// perRepo answers HEAD and GET of a blob 404 in a repository it was
	// neither uploaded to nor mounted into; mount then answers a mount
	// request 201 when the source repository has the blob.
	perRepo, mount bool
	// token puts a Bearer challenge in front of everything; the scopes
	// asked for at /token are recorded.
	token bool
	// fault, when it returns true, has answered the request itself.
	fault func(w http.ResponseWriter, r *http.Request) bool
	// rewrite, when set, may change a response's headers before they are
	// sent.
	rewrite func(r *http.Request, status int, h http.Header)

	mu     sync.Mutex
	log    []wireReq
	has    map[string]map[string]bool // repository -> blob digests
	scopes []string
}

func newWire(reg *testRegistry) *wire {
	w := &wire{host: reg.host, has: map[string]map[string]bool{}}
	reg.setWrap(w.serve)
	return w
}

// statusWriter tells the wire the status and lets rewrite see the headers.
type statusWriter struct {
	http.ResponseWriter
	r      *http.Request
	status int
	hook   func(r *http.Request, status int, h http.Header)
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		if s.hook != nil {
			s.hook(s.r, code, s.Header())
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// repoOf splits "/v2/<repo>/blobs/<rest>".
func repoOf(path string) (repo, rest string, ok bool) {
	p, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.Index(p, "/blobs/")
	if i < 0 {
		return "", "", false
	}
	return p[:i], p[i+len("/blobs/"):], true
}

func (w *wire) holds(repo, d string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.has[repo][d]
}

func (w *wire) put(repo, d string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.has[repo] == nil {
		w.has[repo] = map[string]bool{}
	}
	w.has[repo][d] = true
}

func (w *wire) serve(next http.Handler, rw http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: rw, r: r, hook: w.rewrite}
	defer func() {
		w.mu.Lock()
		w.log = append(w.log, wireReq{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), r.ContentLength, sw.status})
		w.mu.Unlock()
	}()
	if w.token {
		if r.URL.Path == "/token" {
			w.mu.Lock()
			for _, s := range r.URL.Query()["scope"] {
				w.scopes = append(w.scopes, strings.Fields(s)...)
			}
			w.mu.Unlock()
			sw.Header().Set("Content-Type", "application/json")
			sw.WriteHeader(http.StatusOK)
			sw.Write([]byte(`{"token":"t0k3n"}`))
			return
		}
		if r.Header.Get("Authorization") != "Bearer t0k3n" {
			sw.Header().Set("WWW-Authenticate", `Bearer realm="http://`+w.host+`/token",service="wire"`)
			sw.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	if w.fault != nil && w.fault(sw, r) {
		return
	}
	repo, rest, isBlob := repoOf(r.URL.Path)
	if !w.perRepo || !isBlob {
		next.ServeHTTP(sw, r)
		return
	}
	q := r.URL.Query()
	switch {
	case (r.Method == http.MethodHead || r.Method == http.MethodGet) && !strings.HasPrefix(rest, "uploads"):
		if !w.holds(repo, rest) {
			sw.Header().Set("Content-Type", "application/json")
			sw.WriteHeader(http.StatusNotFound)
			sw.Write([]byte(`{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`))
			return
		}
	case r.Method == http.MethodPost && w.mount && q.Get("mount") != "" && w.holds(q.Get("from"), q.Get("mount")):
		w.put(repo, q.Get("mount"))
		sw.Header().Set("Location", "/v2/"+repo+"/blobs/"+q.Get("mount"))
		sw.Header().Set("Docker-Content-Digest", q.Get("mount"))
		sw.WriteHeader(http.StatusCreated)
		return
	case r.Method == http.MethodPut && strings.HasPrefix(rest, "uploads/"):
		next.ServeHTTP(sw, r)
		if sw.status == http.StatusCreated {
			w.put(repo, q.Get("digest"))
		}
		return
	}
	next.ServeHTTP(sw, r)
}

func (w *wire) requests() []wireReq {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.log)
}

func (w *wire) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log, w.scopes = nil, nil
}

// find returns the indexes of the requests that match.
func (w *wire) find(match func(wireReq) bool) []int {
	var is []int
	for i, r := range w.requests() {
		if match(r) {
			is = append(is, i)
		}
	}
	return is
}

func isUpload(r wireReq) bool {
	_, rest, ok := repoOf(r.path)
	return ok && strings.HasPrefix(rest, "uploads") && r.method != http.MethodHead && r.method != http.MethodGet
}

// blobsOf lists an image's blobs as Push sends them: config, then layers.
func blobsOf(img *image.Image) []digest.Digest {
	return append([]digest.Digest{img.ID}, imageBlobDigests(img)...)
}

// eventLog collects progress events from Push's goroutines.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) opt() Option {
	return WithProgress(func(e Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.events = append(l.events, e)
	})
}

// count is how many events had status.
func (l *eventLog) count(status string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Status == status {
			n++
		}
	}
	return n
}

// pushedBack pulls ref into a fresh service and checks it is img.
func pushedBack(t *testing.T, img *image.Image, ref string, opts ...Option) {
	t.Helper()
	back, err := Pull(context.Background(), newService(t), ref, opts...)
	if err != nil {
		t.Fatalf("pull back %s: %v", ref, err)
	}
	if back.ID != img.ID || back.ManifestDigest != img.ManifestDigest {
		t.Errorf("pulled back %s / manifest %s, pushed %s / manifest %s", back.ID, back.ManifestDigest, img.ID, img.ManifestDigest)
	}
}

func tagImage(t *testing.T, svc *image.Service, img *image.Image, refs ...string) {
	t.Helper()
	for _, r := range refs {
		if err := svc.Tag(img.ID.String(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPushWireMounts pushes an image to repository a of a registry that
// keeps blobs per repository and mounts across them, then to b. The
// local image is also tagged b, so the push to a already tries mounts
// from b (which has nothing: 202, and the upload goes on in the session
// the mount opened); the push to b mounts everything from a. Every blob
// is asked about with HEAD before anything is sent for it, and the token
// for b includes pull on a, without which a registry refuses the mount.
func TestPushWireMounts(t *testing.T) {
	src := newTestRegistry(t)
	svc, img := localImage(t, src, "test/src")
	dst := newTestRegistry(t)
	w := newWire(dst)
	w.perRepo, w.mount, w.token = true, true, true
	a, b := dst.host+"/team/a:1", dst.host+"/team/b:1"
	tagImage(t, svc, img, a, b)
	anon := WithKeychain(fixedKeychain{authn.Anonymous})

	var ev eventLog
	d, size, err := Push(context.Background(), svc, a, anon, ev.opt())
	if err != nil {
		t.Fatal(err)
	}
	if d != img.ManifestDigest || size <= 0 {
		t.Errorf("Push = %s, %d; want %s", d, size, img.ManifestDigest)
	}
	for _, bd := range blobsOf(img) {
		heads := w.find(func(r wireReq) bool { return r.method == http.MethodHead && r.path == "/v2/team/a/blobs/"+bd.String() })
		mounts := w.find(func(r wireReq) bool {
			return r.method == http.MethodPost && r.path == "/v2/team/a/blobs/uploads/" &&
				r.query.Get("mount") == bd.String() && r.query.Get("from") == "team/b"
		})
		if len(heads) != 1 || len(mounts) != 1 || heads[0] > mounts[0] {
			t.Errorf("blob %s: HEADs at %v, mount requests at %v; want one HEAD, then one mount from team/b", bd, heads, mounts)
			continue
		}
		if st := w.requests()[mounts[0]].status; st != http.StatusAccepted {
			t.Errorf("blob %s: mount from team/b (which lacks it) answered %d, want 202", bd, st)
		}
	}
	if n := len(w.find(func(r wireReq) bool { return r.method == http.MethodPost && isUpload(r) })); n != 4 {
		t.Errorf("%d POSTs to /blobs/uploads/, want 4: the mount attempts, whose sessions carry the uploads", n)
	}
	if n := len(w.find(func(r wireReq) bool {
		return r.method == http.MethodPut && isUpload(r) && r.status == http.StatusCreated
	})); n != 4 {
		t.Errorf("%d blob uploads completed, want 4", n)
	}
	if ev.count(StatusPushed) != 3 || ev.count(StatusMounted+" team/b") != 0 {
		t.Errorf("events %v: want 3 Pushed, no mounts", ev.events)
	}

	// Now b: everything is mounted from a, nothing uploaded.
	w.reset()
	ev = eventLog{}
	if _, _, err := Push(context.Background(), svc, b, anon, ev.opt()); err != nil {
		t.Fatal(err)
	}
	if ev.count(StatusMounted+" team/a") != 3 || ev.count(StatusPushed) != 0 {
		t.Errorf("events %v: want 3 'Mounted from team/a', nothing Pushed", ev.events)
	}
	for _, bd := range blobsOf(img) {
		if !w.holds("team/b", bd.String()) {
			t.Errorf("blob %s not in team/b after the push", bd)
		}
	}
	if n := len(w.find(func(r wireReq) bool { return isUpload(r) && r.method != http.MethodPost })); n != 0 {
		t.Errorf("%d PATCH/PUT uploads to b, want 0 (all mounted)", n)
	}
	w.mu.Lock()
	scopes := slices.Clone(w.scopes)
	w.mu.Unlock()
	for _, want := range []string{"repository:team/b:push,pull", "repository:team/a:pull"} {
		if !slices.Contains(scopes, want) {
			t.Errorf("token scopes %v lack %q", scopes, want)
		}
	}

	got, err := svc.Get(img.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{dst.host + "/team/a@" + d.String(), dst.host + "/team/b@" + d.String()} {
		if !slices.Contains(got.RepoDigests, want) {
			t.Errorf("RepoDigests %v lack %s", got.RepoDigests, want)
		}
	}
	if !slices.Contains(got.RepoTags, a) || !slices.Contains(got.RepoTags, b) {
		t.Errorf("RepoTags %v lost a tag in recording the digests", got.RepoTags)
	}
	pushedBack(t, img, b, anon)
}

// TestPushWireSecondPush: a second push of the same image sends only
// HEADs (one per blob, all answered 200) and the manifest, and reports
// every layer as already there.
func TestPushWireSecondPush(t *testing.T) {
	src := newTestRegistry(t)
	svc, img := localImage(t, src, "test/src")
	dst := newTestRegistry(t)
	w := newWire(dst)
	w.perRepo = true
	ref := dst.host + "/test/app:1"
	tagImage(t, svc, img, ref)
	if _, _, err := Push(context.Background(), svc, ref); err != nil {
		t.Fatal(err)
	}
	w.reset()
	var ev eventLog
	d, _, err := Push(context.Background(), svc, ref, ev.opt())
	if err != nil || d != img.ManifestDigest {
		t.Fatalf("second push: %s, %v", d, err)
	}
	heads := 0
	for _, r := range w.requests() {
		switch {
		case r.method == http.MethodGet && r.path == "/v2/":
		case r.method == http.MethodHead && strings.HasPrefix(r.path, "/v2/test/app/blobs/sha256:"):
			heads++
			if r.status != http.StatusOK {
				t.Errorf("%v: the first push did not leave the blob there", r)
			}
		case r.method == http.MethodPut && r.path == "/v2/test/app/manifests/1":
		default:
			t.Errorf("second push sent %v; want only HEADs of blobs and the manifest PUT", r)
		}
	}
	if heads != 4 {
		t.Errorf("%d HEADs, want 4", heads)
	}
	if ev.count(StatusLayerExists) != 3 || ev.count(StatusPushed) != 0 {
		t.Errorf("events %v: want 3 %q", ev.events, StatusLayerExists)
	}
}

// TestPushWireChunked checks the chunked upload against the distribution
// spec: PATCHes of at most the chunk size whose Content-Range ("start-end",
// inclusive) continue where the last one ended and match Content-Length,
// each sent to the Location the previous answer gave (state in its query,
// relative and absolute), then a PUT with the digest and no body. The
// pushed image pulls back identical; progress counts up to each layer's
// size.
func TestPushWireChunked(t *testing.T) {
	src := newTestRegistry(t)
	svc, img := localImage(t, src, "test/src")
	dst := newTestRegistry(t)
	w := newWire(dst)
	ref := dst.host + "/test/chunked:1"
	tagImage(t, svc, img, ref)

	// Each answer that opens or continues a session hands out a new state;
	// a request presenting another one is refused, as registries that keep
	// the upload's state in the URL (distribution's _state) do.
	var (
		mu    sync.Mutex
		state = map[string]int{} // session -> last state handed out
		step  int
	)
	session := func(path string) string { return path[strings.LastIndex(path, "/")+1:] }
	w.rewrite = func(r *http.Request, status int, h http.Header) {
		loc := h.Get("Location")
		if loc == "" || !strings.Contains(loc, "/blobs/uploads/") || (r.Method != http.MethodPost && r.Method != http.MethodPatch) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		step++
		state[session(loc)] = step
		if r.Method == http.MethodPatch {
			loc = "http://" + dst.host + loc // absolute this time
		}
		h.Set("Location", fmt.Sprintf("%s?_state=%d&keep=me", loc, step))
	}
	w.fault = func(rw http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPatch && r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/blobs/uploads/") {
			return false
		}
		mu.Lock()
		want := state[session(r.URL.Path)]
		mu.Unlock()
		if r.URL.Query().Get("_state") != fmt.Sprint(want) || r.URL.Query().Get("keep") != "me" {
			http.Error(rw, "stale upload state "+r.URL.RawQuery, http.StatusBadRequest)
			return true
		}
		return false
	}

	var ev eventLog
	const chunk = 8 << 10
	if _, _, err := Push(context.Background(), svc, ref, WithChunkSize(chunk), ev.opt()); err != nil {
		t.Fatal(err)
	}

	sizes := map[string]int64{}
	for _, l := range img.Layers {
		sizes[l.Digest.String()] = l.Size
	}
	n, err := svc.Content.Stat(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	sizes[img.ID.String()] = n

	// Follow each session: PATCHes in order, then the PUT.
	type sess struct {
		next    int64
		patches int
	}
	sessions := map[string]*sess{}
	done := map[string]bool{}
	for _, r := range w.requests() {
		if !isUpload(r) || r.method == http.MethodPost {
			continue
		}
		id := session(r.path)
		s := sessions[id]
		if s == nil {
			s = &sess{}
			sessions[id] = s
		}
		switch r.method {
		case http.MethodPatch:
			s.patches++
			var start, end int64
			cr := r.header.Get("Content-Range")
			if _, err := fmt.Sscanf(cr, "%d-%d", &start, &end); err != nil || fmt.Sprintf("%d-%d", start, end) != cr {
				t.Errorf("PATCH Content-Range %q, want start-end", cr)
				continue
			}
			if start != s.next || r.length != end-start+1 || end-start+1 > chunk || end < start {
				t.Errorf("PATCH %d: Content-Range %s, Content-Length %d; want %d-..., at most %d bytes, range inclusive", s.patches, cr, r.length, s.next, chunk)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("PATCH Content-Type %q", ct)
			}
			s.next = end + 1
		case http.MethodPut:
			d := r.query.Get("digest")
			if r.length != 0 {
				t.Errorf("closing PUT of %s has Content-Length %d, want an empty body", d, r.length)
			}
			want, ok := sizes[d]
			if !ok {
				t.Errorf("PUT of unknown digest %q", d)
				continue
			}
			if s.next != want || int64(s.patches) != (want+chunk-1)/chunk {
				t.Errorf("blob %s: %d bytes in %d PATCHes, want %d in %d", d, s.next, s.patches, want, (want+chunk-1)/chunk)
			}
			if r.status != http.StatusCreated {
				t.Errorf("closing PUT of %s answered %d", d, r.status)
			}
			done[d] = true
		}
	}
	if len(done) != 4 {
		t.Errorf("%d blobs uploaded, want 4", len(done))
	}
	for _, r := range w.requests() {
		if r.status == http.StatusBadRequest {
			t.Errorf("refused: %v", r)
		}
	}

	// Progress: Preparing, Pushing counting up to the size, Pushed; per
	// layer, never for the config.
	ev.mu.Lock()
	byID := map[string][]Event{}
	for _, e := range ev.events {
		byID[e.ID] = append(byID[e.ID], e)
	}
	ev.mu.Unlock()
	if _, ok := byID[short(img.ID)]; ok {
		t.Errorf("events for the config blob: %v", byID[short(img.ID)])
	}
	for _, l := range img.Layers {
		es := byID[short(l.Digest)]
		if len(es) < 3 || es[0].Status != StatusPreparing || es[len(es)-1].Status != StatusPushed {
			t.Errorf("layer %s: events %v, want Preparing ... Pushed", short(l.Digest), es)
			continue
		}
		var last int64
		for _, e := range es[1 : len(es)-1] {
			if e.Status != StatusPushing || e.Total != l.Size || e.Current < last || e.Current > e.Total {
				t.Errorf("layer %s: event %+v after %d bytes", short(l.Digest), e, last)
			}
			last = e.Current
		}
		if last != l.Size {
			t.Errorf("layer %s: progress ended at %d of %d", short(l.Digest), last, l.Size)
		}
	}
	pushedBack(t, img, ref)
}

// TestPushWireLatest: a bare name is pushed as :latest.
func TestPushWireLatest(t *testing.T) {
	src := newTestRegistry(t)
	svc, img := localImage(t, src, "test/src")
	dst := newTestRegistry(t)
	w := newWire(dst)
	tagImage(t, svc, img, dst.host+"/test/app")
	d, _, err := Push(context.Background(), svc, dst.host+"/test/app")
	if err != nil || d != img.ManifestDigest {
		t.Fatalf("push: %s, %v", d, err)
	}
	puts := w.find(func(r wireReq) bool { return r.method == http.MethodPut && strings.Contains(r.path, "/manifests/") })
	if len(puts) != 1 || w.requests()[puts[0]].path != "/v2/test/app/manifests/latest" {
		t.Errorf("manifest PUTs %v, want one to /v2/test/app/manifests/latest", puts)
	} else if ct := w.requests()[puts[0]].header.Get("Content-Type"); ct != img.ManifestMediaType {
		t.Errorf("manifest sent as %q, stored as %q", ct, img.ManifestMediaType)
	}
	pushedBack(t, img, dst.host+"/test/app:latest")
}

func isBlobPut(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter) {
	conn, _, err := w.(*statusWriter).ResponseWriter.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

// sessions checks that n upload sessions were opened: one per blob, and
// one more for the blob that failed, which starts over.
func sessions(n int) func(t *testing.T, w *wire) {
	return func(t *testing.T, w *wire) {
		t.Helper()
		if got := len(w.find(func(r wireReq) bool { return r.method == http.MethodPost && isUpload(r) })); got != n {
			t.Errorf("%d upload sessions opened, want %d: the broken blob starts over in a new one", got, n)
		}
	}
}

// TestPushWireFaults: transient failures of an upload start the blob over
// in a fresh session (a half-written session is not trusted) and the push
// succeeds; lasting ones end it with one line in the right class, after
// as many attempts as the retry policy allows.
func TestPushWireFaults(t *testing.T) {
	for _, tt := range []struct {
		name    string
		chunked bool
		token   bool // behind (the wire's) token authentication
		// skip, when set, says why the case does not pass yet.
		skip string
		// fault answers the n-th (from 0) request it is offered of those
		// that match; true: answered.
		match func(r *http.Request) bool
		fault func(w http.ResponseWriter, r *http.Request, n int32) bool
		ok    bool
		class func(error) bool
		says  string
		check func(t *testing.T, w *wire)
	}{
		{name: "connection dropped after a blob PUT's body",
			match: isBlobPut,
			fault: func(w http.ResponseWriter, r *http.Request, n int32) bool {
				if n != 1 {
					return false
				}
				io.Copy(io.Discard, r.Body)
				hangUp(w)
				return true
			},
			ok:    true,
			check: sessions(5)},
		// The client may see the connection closed under its write
		// (net.ErrClosed), which retryable does not count as transient:
		// about one run in twenty fails.
		{name: "connection dropped in the middle of a blob PUT's body",
			match: isBlobPut,
			fault: func(w http.ResponseWriter, _ *http.Request, n int32) bool {
				if n != 1 {
					return false
				}
				hangUp(w)
				return true
			},
			ok:    true,
			check: sessions(5)},
		// A token that expires while a blob is sent: go-containerregistry's
		// bearer transport fetches a new one and sends the request again
		// with the body already read ("ContentLength=N with Body length
		// 0"), an error the push does not start the blob over for.
		{name: "token expired during a blob PUT", token: true,
			match: isBlobPut,
			fault: func(w http.ResponseWriter, r *http.Request, n int32) bool {
				if n != 1 {
					return false
				}
				io.Copy(io.Discard, r.Body)
				w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token",service="wire",error="invalid_token"`)
				w.WriteHeader(http.StatusUnauthorized)
				return true
			},
			ok:    true,
			check: sessions(5)},
		{name: "500 on a PATCH in the middle of a blob", chunked: true,
			match: func(r *http.Request) bool { return r.Method == http.MethodPatch },
			fault: func(w http.ResponseWriter, _ *http.Request, n int32) bool {
				if n != 2 {
					return false
				}
				w.WriteHeader(http.StatusInternalServerError)
				return true
			},
			ok: true,
			check: func(t *testing.T, w *wire) {
				// The session after the failed PATCH starts at byte 0.
				rs := w.requests()
				failed := slices.IndexFunc(rs, func(r wireReq) bool { return r.status == http.StatusInternalServerError })
				if failed < 0 {
					t.Fatal("the fault never fired")
				}
				dead := rs[failed].path
				for _, r := range rs[failed+1:] {
					if r.path == dead {
						t.Errorf("%v: the failed session was used again", r)
					}
				}
				starts := 0
				for _, r := range rs {
					if r.method == http.MethodPatch && strings.HasPrefix(r.header.Get("Content-Range"), "0-") {
						starts++
					}
				}
				if starts != 5 {
					t.Errorf("%d PATCHes from byte 0, want 5 (4 blobs, one twice)", starts)
				}
			}},
		{name: "429 on opening a session",
			match: func(r *http.Request) bool { return r.Method == http.MethodPost },
			fault: func(w http.ResponseWriter, _ *http.Request, n int32) bool {
				if n > 1 {
					return false
				}
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			},
			ok: true},
		{name: "503 on every blob PUT",
			match: func(r *http.Request) bool {
				return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
			},
			fault: func(w http.ResponseWriter, _ *http.Request, _ int32) bool {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			},
			class: errdefs.IsUnavailable, says: "503 Service Unavailable",
			check: func(t *testing.T, w *wire) {
				// One blob at a time (WithConcurrency(1) below): the first
				// is tried 4 times, then the push stops.
				if n := len(w.find(func(r wireReq) bool { return r.method == http.MethodPut && isUpload(r) })); n != 4 {
					t.Errorf("%d blob PUTs, want 4: the retry policy's attempts", n)
				}
			}},
		{name: "401 on opening a session",
			match: func(r *http.Request) bool { return r.Method == http.MethodPost },
			fault: func(w http.ResponseWriter, _ *http.Request, _ int32) bool {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
				return true
			},
			class: errdefs.IsFailedPrecondition, says: "berth login",
			check: func(t *testing.T, w *wire) {
				if n := len(w.find(func(r wireReq) bool { return r.method == http.MethodPost })); n != 1 {
					t.Errorf("%d POSTs, want 1: 401 is not retried", n)
				}
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip != "" {
				t.Skip(tt.skip)
			}
			src := newTestRegistry(t)
			svc, img := localImage(t, src, "test/src")
			dst := newTestRegistry(t)
			w := newWire(dst)
			w.token = tt.token
			var hits atomic.Int32
			w.fault = func(rw http.ResponseWriter, r *http.Request) bool {
				if !tt.match(r) {
					return false
				}
				return tt.fault(rw, r, hits.Add(1)-1)
			}
			ref := dst.host + "/test/app:1"
			tagImage(t, svc, img, ref)
			opts := []Option{fast, WithConcurrency(1), WithKeychain(fixedKeychain{authn.Anonymous})}
			if tt.chunked {
				opts = append(opts, WithChunkSize(8<<10))
			}
			_, _, err := Push(context.Background(), svc, ref, opts...)
			if tt.check != nil {
				tt.check(t, w)
			}
			if tt.ok {
				if err != nil {
					t.Fatalf("push did not recover: %v", err)
				}
				pushedBack(t, img, ref, opts[2])
				return
			}
			if err == nil || !tt.class(err) || !strings.Contains(err.Error(), tt.says) ||
				!strings.HasPrefix(err.Error(), "push "+ref+": ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line saying %q", err, tt.says)
			}
		})
	}
}

// TestPushMissingBlob: a blob of the image gone from the content store
// ends the push with one line naming it.
func TestPushMissingBlob(t *testing.T) {
	for _, which := range []string{"config", "layer"} {
		t.Run(which, func(t *testing.T) {
			src := newTestRegistry(t)
			svc, img := localImage(t, src, "test/src")
			dst := newTestRegistry(t)
			ref := dst.host + "/test/app:1"
			tagImage(t, svc, img, ref)
			gone := img.ID
			if which == "layer" {
				gone = img.Layers[1].Digest
			}
			if err := svc.Content.Delete(gone); err != nil {
				t.Fatal(err)
			}
			_, _, err := Push(context.Background(), svc, ref, fast)
			if err == nil || !strings.Contains(err.Error(), gone.String()) || !strings.Contains(err.Error(), "content store") ||
				!strings.HasPrefix(err.Error(), "push "+ref+": ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line naming %s", err, gone)
			}
			if _, err := Pull(context.Background(), newService(t), ref); !errdefs.IsNotFound(err) {
				t.Errorf("the manifest was pushed without its blobs: pull says %v", err)
			}
		})
	}
}

// TestPushDockerRegistry pushes to Debian's docker-registry, without
// authentication, behind Basic auth and behind token auth, in one request
// per blob and in chunks, and has skopeo read it back from outside: the
// manifest it gets is byte for byte the one berth stores, under the
// digest Push returned, and every blob verifies. The image is tagged in
// two repositories: the push to the first tries mounts from the second
// (which has nothing yet) and uploads; the push to the second mounts every
// layer from the first.
func TestPushDockerRegistry(t *testing.T) {
	if _, err := os.Stat(registrytest.Binary); err != nil {
		t.Skipf("needs %s: apt-get install docker-registry", registrytest.Binary)
	}
	mem := newTestRegistry(t)
	for _, auth := range []string{"none", "basic", "token"} {
		t.Run(auth, func(t *testing.T) {
			var ropts []registrytest.Option
			switch auth {
			case "basic":
				ropts = append(ropts, registrytest.WithBasicAuth("alice", "s3cret"))
			case "token":
				ropts = append(ropts, registrytest.WithBasicAuth("alice", "s3cret"), registrytest.WithTokenAuth("berth-test-issuer"))
			}
			reg := registrytest.Start(t, ropts...)
			keys := WithKeychain(fixedKeychain{authn.FromConfig(authn.AuthConfig{Username: reg.Username, Password: reg.Password})})
			if reg.Username == "" {
				keys = WithKeychain(fixedKeychain{authn.Anonymous})
			}
			for _, mode := range []string{"monolithic", "chunked"} {
				t.Run(mode, func(t *testing.T) {
					opts := []Option{keys, fast}
					if mode == "chunked" {
						opts = append(opts, WithChunkSize(8<<10))
					}
					svc, img := localImage(t, mem, "test/"+auth+"-"+mode)
					a, b := reg.Addr+"/"+mode+"/a:1", reg.Addr+"/"+mode+"/b:1"
					tagImage(t, svc, img, a, b)

					var ev eventLog
					d, size, err := Push(context.Background(), svc, a, append(opts, ev.opt())...)
					if err != nil {
						t.Fatal(err)
					}
					if d != img.ManifestDigest {
						t.Errorf("Push returned %s, the image's manifest is %s", d, img.ManifestDigest)
					}
					if ev.count(StatusPushed) != 3 {
						t.Errorf("events %v, want 3 Pushed", ev.events)
					}
					raw := skopeoCheck(t, reg, a, d)
					if raw != nil && int64(len(raw)) != size {
						t.Errorf("Push returned size %d, the registry's manifest has %d bytes", size, len(raw))
					}

					ev = eventLog{}
					if d2, _, err := Push(context.Background(), svc, b, append(opts, ev.opt())...); err != nil || d2 != d {
						t.Fatalf("push to b: %s, %v", d2, err)
					}
					if ev.count(StatusMounted+" "+mode+"/a") != 3 || ev.count(StatusPushed) != 0 {
						t.Errorf("events %v, want 3 'Mounted from %s/a'", ev.events, mode)
					}
					skopeoCheck(t, reg, b, d)
					pushedBack(t, img, b, keys, fast)
				})
			}
		})
	}
}

// skopeoCheck reads ref from reg with skopeo: the digest it reports must
// be want and the raw manifest hash to it; a copy out, which verifies
// every blob, must succeed and keep that manifest. It returns the raw manifest, nil without
// skopeo.
func skopeoCheck(t *testing.T, reg *registrytest.Registry, ref string, want digest.Digest) []byte {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Log("skopeo not installed (apt-get install skopeo): not checked from outside")
		return nil
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--policy", policy}, args...)...)
		// Keep skopeo away from the invoking user's auth files.
		cmd.Env = append(os.Environ(), "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out
	}
	creds := func(flag string) []string {
		if reg.Username == "" {
			return nil
		}
		return []string{flag, reg.Username + ":" + reg.Password}
	}
	inspect := append([]string{"inspect", "--tls-verify=false"}, creds("--creds")...)
	var info struct{ Digest string }
	if err := json.Unmarshal(run(append(inspect, "docker://"+ref)...), &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != want.String() {
		t.Errorf("skopeo inspect %s: digest %s, Push returned %s", ref, info.Digest, want)
	}
	raw := run(append(inspect, "--raw", "docker://"+ref)...)
	if got := digest.FromBytes(raw); got != want {
		t.Errorf("skopeo inspect --raw %s: manifest hashes to %s, want %s", ref, got, want)
	}
	// A dir: copy keeps the manifest as the registry sent it (an oci:
	// one would convert Docker's media types and change the digest).
	cp := append([]string{"copy", "--src-tls-verify=false"}, creds("--src-creds")...)
	run(append(cp, "docker://"+ref, "dir:"+filepath.Join(dir, "copy"))...)
	copied, err := os.ReadFile(filepath.Join(dir, "copy", "manifest.json"))
	if err != nil || digest.FromBytes(copied) != want {
		t.Errorf("skopeo copy of %s: manifest.json hashes to %s (%v), want %s", ref, digest.FromBytes(copied), err, want)
	}
	return raw
}
