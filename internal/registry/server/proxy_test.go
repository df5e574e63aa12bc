package server

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gopkg.in/yaml.v3"

	"github.com/berth-dev/berth/internal/errdefs"
)

// upstreamFixture is the registry a proxy pulls through: our own server
// behind Basic auth, with a hook to misbehave and a log of the requests
// that reach it. The test pushes through admin, a second server over the
// same store without auth.
type upstreamFixture struct {
	t     *testing.T
	admin *testRegistry
	srv   *httptest.Server

	mu       sync.Mutex
	requests []string // "GET /v2/..."
	wrap     func(next http.Handler, w http.ResponseWriter, r *http.Request)
}

const (
	upUser     = "proxyuser"
	upPassword = "s3cret"
)

// upBasicAuth is the upstream's Authorizer: Basic credentials or 401.
type upBasicAuth struct{}

func (upBasicAuth) Authorize(r *http.Request, _ []Access) error {
	if u, p, ok := r.BasicAuth(); ok && u == upUser && p == upPassword {
		return nil
	}
	return &Error{Code: CodeUnauthorized, Message: "authentication required",
		Header: http.Header{"Www-Authenticate": {`Basic realm="upstream"`}}}
}

func newUpstreamFixture(t *testing.T) *upstreamFixture {
	t.Helper()
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(New(store))
	t.Cleanup(admin.Close)
	reg := New(store, WithAuthorizer(upBasicAuth{}))
	u := &upstreamFixture{t: t, admin: &testRegistry{t: t, url: admin.URL, store: store}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.requests = append(u.requests, r.Method+" "+r.URL.Path)
		wrap := u.wrap
		u.mu.Unlock()
		if wrap != nil {
			wrap(reg, w, r)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstreamFixture) config(prefix string) ProxyConfig {
	return ProxyConfig{Prefix: prefix, Remote: u.srv.URL, Username: upUser, Password: upPassword}
}

// count is how many requests so far were method on a path containing part.
func (u *upstreamFixture) count(method, part string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.requests {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, part) {
			n++
		}
	}
	return n
}

func (u *upstreamFixture) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.requests = nil
}

func (u *upstreamFixture) setWrap(fn func(next http.Handler, w http.ResponseWriter, r *http.Request)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.wrap = fn
}

// push puts an OCI image with one random layer of n bytes at repo:tag.
func (u *upstreamFixture) push(repo, tag string, n int) (manifest []byte, md digest.Digest, layer []byte) {
	u.t.Helper()
	layer = randomBytes(u.t, n)
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd, ld := u.admin.pushBlob(repo, cfg), u.admin.pushBlob(repo, layer)
	manifest, _ = json.Marshal(ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: ld, Size: int64(n)}},
		Versioned: specs.Versioned{SchemaVersion: 2},
	})
	u.admin.do("PUT", "/v2/"+repo+"/manifests/"+tag, manifest, "Content-Type", ocispec.MediaTypeImageManifest).want(u.t, 201)
	return manifest, digest.FromBytes(manifest), layer
}

// proxyLog collects what the proxy logs, for the warnings.
type proxyLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *proxyLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *proxyLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newProxyRegistry is a registry proxying for cfgs.
func newProxyRegistry(t *testing.T, cfgs ...ProxyConfig) (*testRegistry, *Proxy, *proxyLog) {
	t.Helper()
	p, err := NewProxy(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	log := &proxyLog{}
	tr := newTestRegistry(t, WithProxy(p), WithLogger(slog.New(slog.NewTextHandler(log, nil))))
	t.Cleanup(func() { waitIdle(t, p) })
	return tr, p, log
}

// waitIdle waits for the proxy's downloads to end, which they do on
// their own after the clients have their answer.
func waitIdle(t *testing.T, p *Proxy) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.fetches)
		p.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d downloads still in flight", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawGet is a GET whose body may break: the error is returned, not fatal.
func rawGet(url string, hdr ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestProxyRoute(t *testing.T) {
	p, err := NewProxy([]ProxyConfig{
		{Remote: "http://127.0.0.1:1"},
		{Prefix: "hub", Remote: "https://registry-1.docker.io"},
		{Prefix: "hub/mirror", Remote: "https://docker.io"},
		{Prefix: "ghcr", Remote: "https://ghcr.io"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, remote, upstream string }{
		{"hub/busybox", "library/busybox", "https://registry-1.docker.io"},
		{"hub/library/busybox", "library/busybox", "https://registry-1.docker.io"},
		{"hub/team/app", "team/app", "https://registry-1.docker.io"},
		{"hub/mirror/alpine", "library/alpine", "https://docker.io"},
		{"ghcr/owner/tool", "owner/tool", "https://ghcr.io"},
		{"ghcr/tool", "tool", "https://ghcr.io"}, // library/ is Docker Hub's alone
		{"ghcrx/tool", "ghcrx/tool", "http://127.0.0.1:1"},
		{"hub", "hub", "http://127.0.0.1:1"}, // the prefix alone is no name under it
		{"library/busybox", "library/busybox", "http://127.0.0.1:1"},
	} {
		u, remote := p.route(c.name)
		if u == nil || u.cfg.Remote != c.upstream || remote != c.remote {
			t.Errorf("route(%s) = %v %q, want %s %q", c.name, u, remote, c.upstream, c.remote)
		}
	}
	if u, _ := p.route("hub/mirror/x"); u.base != "https://registry-1.docker.io" {
		t.Errorf("docker.io is reached at %s, want registry-1.docker.io", u.base)
	}
	p, _ = NewProxy([]ProxyConfig{{Prefix: "cache", Remote: "http://127.0.0.1:1"}})
	if u, _ := p.route("library/busybox"); u != nil {
		t.Error("a name under no prefix was proxied without a catch-all")
	}
	if u, _ := (*Proxy)(nil).route("x"); u != nil {
		t.Error("a nil Proxy routes")
	}
}

func TestNewProxyRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := NewProxy([]ProxyConfig{{Remote: "https://r.example", Username: "u", PasswordFile: pwFile}})
	if err != nil || p.upstreams[0].cfg.Password != "from-file" {
		t.Fatalf("password file: %v, %+v", err, p)
	}
	for _, c := range []struct {
		cfgs []ProxyConfig
		want string
	}{
		{[]ProxyConfig{{Remote: "registry.example"}}, "must be a URL"},
		{[]ProxyConfig{{Remote: "ftp://registry.example"}}, "must be a URL"},
		{[]ProxyConfig{{Remote: "https://registry.example/v2/"}}, "must be a URL"},
		{[]ProxyConfig{{Remote: "https://u:p@registry.example"}}, "must be a URL"},
		{[]ProxyConfig{{Prefix: "Hub", Remote: "https://r.example"}}, "proxy prefix"},
		{[]ProxyConfig{{Remote: "https://a.example"}, {Remote: "https://b.example"}}, "only one may take every name"},
		{[]ProxyConfig{{Prefix: "a", Remote: "https://a.example"}, {Prefix: "a", Remote: "https://b.example"}}, "configured twice"},
		{[]ProxyConfig{{Remote: "https://r.example", Username: "u", Password: "p", PasswordFile: pwFile}}, "not both"},
		{[]ProxyConfig{{Remote: "https://r.example", Username: "u"}}, "go together"},
		{[]ProxyConfig{{Remote: "https://r.example", Password: "p"}}, "go together"},
		{[]ProxyConfig{{Remote: "https://r.example", TTL: -time.Second}}, "negative ttl"},
		{[]ProxyConfig{{Remote: "https://r.example", Username: "u", PasswordFile: filepath.Join(dir, "missing")}}, "read password file"},
		{[]ProxyConfig{{Remote: "https://r.example", CAFile: pwFile}}, "no PEM certificate"},
	} {
		_, err := NewProxy(c.cfgs)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "u:p@") {
			t.Errorf("NewProxy(%+v) = %v, want an error saying %q", c.cfgs, err, c.want)
		}
	}
}

// TestProxyPullThrough: the first pull fetches from the upstream (with
// its credentials) and stores; the next is served from the store, asking
// the upstream only whether the tag moved; with the upstream gone, what
// was cached is still served and the rest is 503.
func TestProxyPullThrough(t *testing.T) {
	up := newUpstreamFixture(t)
	m, md, layer := up.push("library/app", "v1", 100_000)
	ld := digest.FromBytes(layer)
	px, _, log := newProxyRegistry(t, up.config("up"))
	const repo = "/v2/up/library/app"

	pull := func() {
		t.Helper()
		r := px.do("GET", repo+"/manifests/v1", nil, "Accept", ocispec.MediaTypeImageManifest).want(t, 200)
		if !bytes.Equal(r.body, m) || r.Header.Get("Docker-Content-Digest") != string(md) || r.Header.Get("Content-Type") != ocispec.MediaTypeImageManifest {
			t.Fatalf("manifest: %s %q %s", r.Header.Get("Docker-Content-Digest"), r.Header.Get("Content-Type"), r.body)
		}
		if b := px.do("GET", repo+"/blobs/"+string(ld), nil).want(t, 200).body; !bytes.Equal(b, layer) {
			t.Fatalf("layer: %d bytes, want the %d pushed", len(b), len(layer))
		}
		px.do("HEAD", repo+"/manifests/"+string(md), nil).want(t, 200)
	}
	pull()
	if up.count("GET", "/manifests/v1") != 1 || up.count("GET", "/blobs/"+string(ld)) != 1 {
		t.Errorf("first pull: upstream saw %v", up.requests)
	}
	if _, err := px.store.StatRepoBlob("up/library/app", ld); err != nil {
		t.Errorf("the layer is not stored: %v", err)
	}

	up.reset()
	pull()
	if up.count("HEAD", "/manifests/v1") != 1 || up.count("GET", "/v2/library") != 0 {
		t.Errorf("second pull: upstream saw %v, want one HEAD of the tag", up.requests)
	}

	// Proxied names are read-only; others are an ordinary registry.
	px.do("POST", repo+"/blobs/uploads/", nil).wantError(t, 405, CodeUnsupported)
	px.do("PUT", repo+"/manifests/v2", m, "Content-Type", ocispec.MediaTypeImageManifest).wantError(t, 405, CodeUnsupported)
	px.do("DELETE", repo+"/manifests/"+string(md), nil).wantError(t, 405, CodeUnsupported)
	px.do("DELETE", repo+"/blobs/"+string(ld), nil).wantError(t, 405, CodeUnsupported)
	px.pushBlob("local/app", []byte("not proxied"))

	// The upstream's tag list, under the local name, paged.
	up.push("library/app", "v2", 10)
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	r := px.do("GET", repo+"/tags/list?n=1", nil).want(t, 200)
	if json.Unmarshal(r.body, &list); list.Name != "up/library/app" || strings.Join(list.Tags, ",") != "v1" ||
		r.Header.Get("Link") != `</v2/up/library/app/tags/list?last=v1&n=1>; rel="next"` {
		t.Errorf("tags page: %s, Link %q", r.body, r.Header.Get("Link"))
	}
	if json.Unmarshal(px.do("GET", repo+"/tags/list", nil).want(t, 200).body, &list); strings.Join(list.Tags, ",") != "v1,v2" {
		t.Errorf("tags: %v, want the upstream's v1,v2", list.Tags)
	}
	px.do("GET", "/v2/up/library/none/tags/list", nil).wantError(t, 404, CodeNameUnknown)

	// Upstream gone.
	up.srv.Close()
	pull()
	if !strings.Contains(log.String(), "serving the cached tag") {
		t.Errorf("no warning logged for serving a cached tag: %s", log)
	}
	if json.Unmarshal(px.do("GET", repo+"/tags/list", nil).want(t, 200).body, &list); strings.Join(list.Tags, ",") != "v1" {
		t.Errorf("tags with the upstream down: %v, want the cached v1", list.Tags)
	}
	px.do("GET", repo+"/manifests/v2", nil).wantError(t, 503, codeUnavailable)
	px.do("GET", repo+"/blobs/"+string(digest.FromString("never pulled")), nil).wantError(t, 503, codeUnavailable)
}

func TestProxyUpstreamRefuses(t *testing.T) {
	up := newUpstreamFixture(t)
	up.push("library/app", "v1", 10)
	cfg := up.config("")
	cfg.Password = "wrong"
	px, _, _ := newProxyRegistry(t, cfg)
	px.do("GET", "/v2/library/app/manifests/v1", nil).wantError(t, 403, CodeDenied)

	px, _, _ = newProxyRegistry(t, up.config(""))
	px.do("GET", "/v2/library/app/manifests/nope", nil).wantError(t, 404, CodeManifestUnknown)
	px.do("GET", "/v2/library/app/blobs/"+string(digest.FromString("nope")), nil).wantError(t, 404, CodeBlobUnknown)
	px.do("HEAD", "/v2/library/app/blobs/"+string(digest.FromString("nope")), nil).want(t, 404)
}

// TestProxyTooManyRequests: an upstream answering 429 does not stop what
// is cached from being served; what is not cached gets the 429, with the
// upstream's Retry-After.
func TestProxyTooManyRequests(t *testing.T) {
	up := newUpstreamFixture(t)
	m, _, layer := up.push("library/app", "v1", 1000)
	up.push("library/app", "v2", 1000)
	px, _, log := newProxyRegistry(t, up.config(""))
	px.do("GET", "/v2/library/app/manifests/v1", nil).want(t, 200)
	px.do("GET", "/v2/library/app/blobs/"+string(digest.FromBytes(layer)), nil).want(t, 200)

	up.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "7")
		writeErrors(w, r, &Error{Code: CodeTooManyRequests, Message: "pull rate limit reached"})
	})
	if b := px.do("GET", "/v2/library/app/manifests/v1", nil).want(t, 200).body; !bytes.Equal(b, m) {
		t.Errorf("cached manifest: %s", b)
	}
	if !strings.Contains(log.String(), "429") {
		t.Errorf("the warning does not say why: %s", log)
	}
	r := px.do("GET", "/v2/library/app/manifests/v2", nil)
	r.wantError(t, 429, CodeTooManyRequests)
	if r.Header.Get("Retry-After") != "7" || !strings.Contains(string(r.body), "pull rate limit reached") {
		t.Errorf("429: Retry-After %q, body %s", r.Header.Get("Retry-After"), r.body)
	}
	px.do("GET", "/v2/library/app/blobs/"+string(digest.FromString("new")), nil).wantError(t, 429, CodeTooManyRequests)
}

// TestProxyTagTTL: a tag younger than the ttl is served without asking;
// an older one is checked, and a moved tag is followed; a tag gone
// upstream is gone from the cache too.
func TestProxyTagTTL(t *testing.T) {
	up := newUpstreamFixture(t)
	m1, _, _ := up.push("team/app", "latest", 100)
	cfg := up.config("")
	cfg.TTL = time.Hour
	px, _, _ := newProxyRegistry(t, cfg)
	get := func() []byte { return px.do("GET", "/v2/team/app/manifests/latest", nil).want(t, 200).body }
	if !bytes.Equal(get(), m1) {
		t.Fatal("first pull: not the upstream's manifest")
	}
	m2, md2, _ := up.push("team/app", "latest", 200)
	up.reset()
	if !bytes.Equal(get(), m1) || len(up.requests) != 0 {
		t.Fatalf("within the ttl: upstream asked %v", up.requests)
	}
	age := func() {
		t.Helper()
		p, _ := px.store.tagPath("team/app", "latest")
		old := time.Now().Add(-2 * time.Hour)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	age()
	if !bytes.Equal(get(), m2) {
		t.Fatal("past the ttl: the moved tag was not followed")
	}
	up.reset()
	get()
	if len(up.requests) != 0 {
		t.Errorf("a tag just checked was checked again: %v", up.requests)
	}

	up.admin.do("DELETE", "/v2/team/app/manifests/latest", nil).want(t, 202)
	age()
	px.do("GET", "/v2/team/app/manifests/latest", nil).wantError(t, 404, CodeManifestUnknown)
	if _, err := px.store.ResolveTag("team/app", "latest"); !errdefs.IsNotFound(err) {
		t.Errorf("a tag deleted upstream is still cached: %v", err)
	}
	px.do("GET", "/v2/team/app/manifests/"+string(md2), nil).want(t, 200)

	// ttl 0: every pull asks (a HEAD), and fetches nothing unchanged.
	m3, _, _ := up.push("team/other", "v1", 100)
	px0, _, _ := newProxyRegistry(t, up.config(""))
	for i := 0; i < 3; i++ {
		if b := px0.do("GET", "/v2/team/other/manifests/v1", nil).want(t, 200).body; !bytes.Equal(b, m3) {
			t.Fatal("ttl 0: wrong manifest")
		}
	}
	if h, g := up.count("HEAD", "/team/other/manifests/v1"), up.count("GET", "/team/other/manifests/v1"); h != 3 || g != 1 {
		t.Errorf("ttl 0: %d HEAD and %d GET, want 3 and 1", h, g)
	}
}

// TestProxyCorruptBlob: a blob whose bytes do not match its digest breaks
// the client's stream, whether or not the upstream sent a length, and
// leaves nothing behind; once the upstream is right, the pull works.
func TestProxyCorruptBlob(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			up := newUpstreamFixture(t)
			_, _, layer := up.push("library/app", "v1", 300_000)
			ld := digest.FromBytes(layer)
			up.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
				if r.Method != "GET" || !strings.HasSuffix(r.URL.Path, "/blobs/"+string(ld)) {
					next.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				body[len(body)/2] ^= 0xff
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				if chunked {
					w.Header().Del("Content-Length")
				}
				w.WriteHeader(rec.Code)
				w.Write(body[:1000])
				w.(http.Flusher).Flush()
				w.Write(body[1000:])
			})
			px, p, log := newProxyRegistry(t, up.config(""))
			resp, body, err := rawGet(px.url + "/v2/library/app/blobs/" + string(ld))
			if err == nil {
				t.Fatalf("a corrupt blob was served whole: %d, %d bytes", resp.StatusCode, len(body))
			}
			if len(body) >= len(layer) {
				t.Errorf("the client got all %d bytes before the break", len(body))
			}
			waitIdle(t, p)
			if _, err := px.store.StatBlob(ld); !errdefs.IsNotFound(err) {
				t.Errorf("the corrupt blob was stored: %v", err)
			}
			if _, err := px.store.StatRepoBlob("library/app", ld); !errdefs.IsNotFound(err) {
				t.Errorf("the corrupt blob was linked: %v", err)
			}
			if left, _ := os.ReadDir(filepath.Join(px.store.Root(), tmpDir)); len(left) != 0 {
				t.Errorf("left in tmp/: %v", left)
			}
			if !strings.Contains(log.String(), "nothing was stored") {
				t.Errorf("no warning logged: %s", log)
			}

			up.setWrap(nil)
			if b := px.do("GET", "/v2/library/app/blobs/"+string(ld), nil).want(t, 200).body; !bytes.Equal(b, layer) {
				t.Error("after the upstream was fixed: wrong bytes")
			}
		})
	}
}

// TestProxyConcurrentBlob: clients asking at once for a blob not cached
// yet share one download, and get bytes before it ends (streaming, not
// store and forward); a Range request waits for the whole blob.
func TestProxyConcurrentBlob(t *testing.T) {
	up := newUpstreamFixture(t)
	_, _, layer := up.push("library/app", "v1", 4<<20)
	ld := digest.FromBytes(layer)
	half := make(chan struct{})
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before the upstream's Close, which waits for its handlers
	up.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" || !strings.HasSuffix(r.URL.Path, "/blobs/"+string(ld)) {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		close(half)
		<-gate
		w.Write(body[len(body)/2:])
	})
	px, p, _ := newProxyRegistry(t, up.config(""))
	url := px.url + "/v2/library/app/blobs/" + string(ld)

	const clients = 8
	var wg sync.WaitGroup
	errs := make(chan error, clients+1)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, b, err := rawGet(url)
			if err == nil && !bytes.Equal(b, layer) {
				err = fmt.Errorf("got %d bytes, not the layer", len(b))
			}
			errs <- err
		}()
	}
	// One client reads the first half before the upstream sends the rest.
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	<-half
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil || !bytes.Equal(first, layer[:len(first)]) {
		t.Fatalf("reading the first MiB while the download is under way: %v", err)
	}
	waitFor(t, "every client to join the download", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		fe := p.fetches["library/app@"+string(ld)]
		if fe == nil {
			return false
		}
		fe.mu.Lock()
		defer fe.mu.Unlock()
		return fe.refs == clients+2 // and the reader above, and the downloader
	})
	// A Range request joins too, and is answered from the store.
	rangeDone := make(chan error, 1)
	go func() {
		r, b, err := rawGet(url, "Range", "bytes=10-19")
		if err == nil && (r.StatusCode != 206 || !bytes.Equal(b, layer[10:20])) {
			err = fmt.Errorf("range: %d %q", r.StatusCode, b)
		}
		rangeDone <- err
	}()
	release()
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(append(first, rest...), layer) {
		t.Errorf("the early reader: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := <-rangeDone; err != nil {
		t.Error(err)
	}
	if n := up.count("GET", "/blobs/"+string(ld)); n != 1 {
		t.Errorf("the upstream was asked %d times for the blob, want once", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRewriteTagsLink(t *testing.T) {
	for in, want := range map[string]string{
		`</v2/library/busybox/tags/list?last=1.36&n=100>; rel="next"`:      `</v2/hub/busybox/tags/list?last=1.36&n=100>; rel="next"`,
		`<https://r.example/v2/x/tags/list?n=1&last=a&evil=1>; rel="next"`: `</v2/hub/busybox/tags/list?last=a&n=1>; rel="next"`,
		``:                    ``,
		`<not closed`:         ``,
		`</v2/x>; rel="prev"`: ``,
	} {
		if got := rewriteTagsLink(in, "hub/busybox"); got != want {
			t.Errorf("rewriteTagsLink(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestProxyBlobHeadAndSharing: a HEAD of a blob not cached asks the
// upstream and downloads nothing; a blob cached for one repository is
// linked into another without a download, after the upstream confirms
// the repository has it when an Authorizer guards the registry.
func TestProxyBlobHeadAndSharing(t *testing.T) {
	for _, guarded := range []bool{false, true} {
		t.Run(fmt.Sprintf("authorizer=%v", guarded), func(t *testing.T) {
			up := newUpstreamFixture(t)
			_, _, layer := up.push("team/a", "v1", 5000)
			ld := digest.FromBytes(layer)
			up.admin.pushBlob("team/b", layer)
			p, err := NewProxy([]ProxyConfig{up.config("")})
			if err != nil {
				t.Fatal(err)
			}
			opts := []Option{WithProxy(p), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
			if guarded {
				opts = append(opts, WithAuthorizer(allowAll{}))
			}
			px := newTestRegistry(t, opts...)

			r := px.do("HEAD", "/v2/team/a/blobs/"+string(ld), nil).want(t, 200)
			if r.ContentLength != int64(len(layer)) || r.Header.Get("Docker-Content-Digest") != string(ld) {
				t.Errorf("HEAD: length %d, digest %q", r.ContentLength, r.Header.Get("Docker-Content-Digest"))
			}
			if _, err := px.store.StatBlob(ld); !errdefs.IsNotFound(err) {
				t.Errorf("a HEAD downloaded the blob: %v", err)
			}
			px.do("GET", "/v2/team/a/blobs/"+string(ld), nil).want(t, 200)
			waitIdle(t, p)
			up.reset()
			if b := px.do("GET", "/v2/team/b/blobs/"+string(ld), nil).want(t, 200).body; !bytes.Equal(b, layer) {
				t.Fatal("shared blob: wrong bytes")
			}
			if g, h := up.count("GET", "/blobs/"), up.count("HEAD", "/team/b/blobs/"); g != 0 || (h == 1) != guarded {
				t.Errorf("shared blob: upstream saw %v", up.requests)
			}
			// A repository the upstream does not have the blob in.
			px.do("GET", "/v2/team/c/blobs/"+string(ld), nil)
			if _, err := px.store.StatRepoBlob("team/c", ld); errdefs.IsNotFound(err) != guarded {
				t.Errorf("team/c linked: %v, want linked only without an Authorizer", err)
			}
		})
	}
}

// TestProxyClientHangsUp: a client that leaves mid-download does not stop
// it; the blob is cached for the next.
func TestProxyClientHangsUp(t *testing.T) {
	up := newUpstreamFixture(t)
	_, _, layer := up.push("library/app", "v1", 1<<20)
	ld := digest.FromBytes(layer)
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before the upstream's Close, which waits for its handlers
	up.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" || !strings.HasSuffix(r.URL.Path, "/blobs/"+string(ld)) {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		body := rec.Body.Bytes()
		w.Write(body[:1000])
		w.(http.Flusher).Flush()
		<-gate
		w.Write(body[1000:])
	})
	px, p, _ := newProxyRegistry(t, up.config(""))
	// A bound, so that a proxy holding back the first bytes fails the
	// test instead of hanging it (the upstream waits on the gate).
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(px.url + "/v2/library/app/blobs/" + string(ld))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	release()
	waitIdle(t, p)
	if _, err := px.store.StatRepoBlob("library/app", ld); err != nil {
		t.Fatalf("the download stopped with its client: %v", err)
	}
	up.setWrap(func(http.Handler, http.ResponseWriter, *http.Request) { t.Error("the upstream was asked again") })
	if b := px.do("GET", "/v2/library/app/blobs/"+string(ld), nil).want(t, 200).body; !bytes.Equal(b, layer) {
		t.Error("wrong bytes from the cache")
	}
}

// TestProxyCorruptManifest: a manifest that does not match the digest it
// was asked by, or is no manifest, is refused (502) and not stored.
func TestProxyCorruptManifest(t *testing.T) {
	up := newUpstreamFixture(t)
	m, md, _ := up.push("library/app", "v1", 100)
	up.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" || !strings.Contains(r.URL.Path, "/manifests/") {
			next.ServeHTTP(w, r)
			return
		}
		body := append([]byte{' '}, m...) // same JSON, other bytes
		if strings.HasSuffix(r.URL.Path, "/v1") {
			body = []byte(`{"schemaVersion":1,"fsLayers":[]}`)
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		w.Write(body)
	})
	px, _, _ := newProxyRegistry(t, up.config(""))
	r := px.do("GET", "/v2/library/app/manifests/"+string(md), nil)
	r.wantError(t, 502, CodeUnknown)
	if !strings.Contains(string(r.body), "the bytes sent have digest") {
		t.Errorf("digest mismatch: %s", r.body)
	}
	r = px.do("GET", "/v2/library/app/manifests/v1", nil)
	r.wantError(t, 502, CodeUnknown)
	if !strings.Contains(string(r.body), "schema 1") {
		t.Errorf("schema 1: %s", r.body)
	}
	if ok, _ := px.store.RepositoryExists("library/app"); ok {
		t.Error("something was stored")
	}
}

// TestProxyCacheSurvivesGC: what the cache holds is tagged and linked as
// if pushed, so a garbage collection keeps it, and a pull with the
// upstream gone still works after one.
func TestProxyCacheSurvivesGC(t *testing.T) {
	up := newUpstreamFixture(t)
	m, _, layer := up.push("library/app", "v1", 1000)
	px, p, _ := newProxyRegistry(t, up.config(""))
	px.do("GET", "/v2/library/app/manifests/v1", nil).want(t, 200)
	px.do("GET", "/v2/library/app/blobs/"+string(digest.FromBytes(layer)), nil).want(t, 200)
	waitIdle(t, p)
	rep, err := px.store.CollectGarbage(context.Background(), WithGracePeriod(0))
	if err != nil {
		t.Fatal(err)
	}
	if rep.DeletedManifests+rep.DeletedLinks != 0 {
		t.Errorf("the collector removed cached content: %+v", rep)
	}
	up.srv.Close()
	if b := px.do("GET", "/v2/library/app/manifests/v1", nil).want(t, 200).body; !bytes.Equal(b, m) {
		t.Error("wrong manifest after a collection")
	}
	px.do("GET", "/v2/library/app/blobs/"+string(digest.FromBytes(layer)), nil).want(t, 200)
}

// TestProxySlowUpstream: an upstream slower than the clients' I/O timeout
// delays the answer but does not lose it: the timeout is for clients that
// stall, not for the proxy waiting on its upstream.
func TestProxySlowUpstream(t *testing.T) {
	up := newUpstreamFixture(t)
	m, _, layer := up.push("library/app", "v1", 1000)
	up.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			time.Sleep(400 * time.Millisecond)
		}
		next.ServeHTTP(w, r)
	})
	p, err := NewProxy([]ProxyConfig{up.config("")})
	if err != nil {
		t.Fatal(err)
	}
	// A real server, whose connections have deadlines.
	ln := startServer(t, WithProxy(p), WithIOTimeout(150*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	base := "http://" + ln + "/v2/library/app"
	for _, c := range []struct {
		path string
		want []byte
	}{
		{"/manifests/v1", m},
		{"/blobs/" + string(digest.FromBytes(layer)), layer},
		{"/tags/list", []byte(`{"name":"library/app","tags":["v1"]}`)},
	} {
		resp, b, err := rawGet(base + c.path)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, c.want) {
			t.Errorf("GET %s: %v %v %q", c.path, resp, err, b)
		}
	}
	waitIdle(t, p)
}

// TestProxyTLSUpstream: an https upstream is trusted through caFile, or
// not verified with insecure; with neither, its certificate is refused.
func TestProxyTLSUpstream(t *testing.T) {
	up := newUpstreamFixture(t)
	m, _, _ := up.push("library/app", "v1", 100)
	srv := httptest.NewUnstartedServer(up.srv.Config.Handler)
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  ProxyConfig
		want int
	}{
		{"caFile", ProxyConfig{Remote: srv.URL, CAFile: ca}, 200},
		{"insecure", ProxyConfig{Remote: srv.URL, Insecure: true}, 200},
		{"untrusted", ProxyConfig{Remote: srv.URL}, 503},
		{"http remote for an https upstream", ProxyConfig{Remote: strings.Replace(srv.URL, "https:", "http:", 1), CAFile: ca}, 502},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Username, c.cfg.Password = upUser, upPassword
			px, _, _ := newProxyRegistry(t, c.cfg)
			r := px.do("GET", "/v2/library/app/manifests/v1", nil).want(t, c.want)
			if c.want == 200 && !bytes.Equal(r.body, m) {
				t.Errorf("manifest: %s", r.body)
			}
		})
	}
}

// TestProxyConfigYAML: the keys a configuration file uses for upstreams,
// as the yaml tags say (the registry's Config holds them under proxy:).
func TestProxyConfigYAML(t *testing.T) {
	doc := `
- remote: https://registry-1.docker.io
  username: me
  passwordFile: /etc/berth/hub-token
  ttl: 5m
- prefix: ghcr
  remote: https://ghcr.io
  insecure: true
  caFile: ca.pem
`
	var got []ProxyConfig
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := []ProxyConfig{
		{Remote: "https://registry-1.docker.io", Username: "me", PasswordFile: "/etc/berth/hub-token", TTL: 5 * time.Minute},
		{Prefix: "ghcr", Remote: "https://ghcr.io", Insecure: true, CAFile: "ca.pem"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
}
