package registry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/berth-dev/berth/internal/registry/server"
)

// TestPullThroughProxyMirror: berth's registry server as a pull-through
// cache configured as the engine's Docker Hub mirror. The engine sends
// docker.io names as they are (/v2/library/busybox/...); the proxy's
// catch-all upstream (here an in-memory registry standing in for Docker
// Hub) serves the first pull, and the cache serves the next one with the
// upstream failing every request.
func TestPullThroughProxyMirror(t *testing.T) {
	hub := newTestRegistry(t)
	img := randomImage(t, 2)
	hub.push(t, "library/busybox:latest", img)

	store, err := server.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := server.NewProxy([]server.ProxyConfig{{Remote: "http://" + hub.host}})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // it warns that it serves from the cache
	mirror := httptest.NewServer(server.New(store, server.WithProxy(p), server.WithLogger(quiet)))
	t.Cleanup(mirror.Close)
	hosts := &Hosts{Mirrors: []string{mirror.URL}}

	hub.reset()
	first, err := Pull(context.Background(), newService(t), "busybox", WithHosts(hosts), fast)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first.RepoTags, []string{"docker.io/library/busybox:latest"}) || first.ManifestDigest != manifestDigest(t, img) {
		t.Errorf("first pull: %v %s", first.RepoTags, first.ManifestDigest)
	}
	if n := hub.count("GET", "/v2/library/busybox/blobs/"); n != 3 {
		t.Errorf("first pull: the upstream served %d blobs, want 3 (config and 2 layers)", n)
	}

	hub.reset()
	hub.setWrap(func(_ http.Handler, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream is down", http.StatusServiceUnavailable)
	})
	svc := newService(t)
	second, err := Pull(context.Background(), svc, "busybox", WithHosts(hosts), fast)
	if err != nil {
		t.Fatalf("pull from the cache with the upstream down: %v", err)
	}
	if second.ManifestDigest != first.ManifestDigest {
		t.Errorf("second pull: %s, want %s", second.ManifestDigest, first.ManifestDigest)
	}
	if n := hub.count("GET", "/blobs/"); n != 0 {
		t.Errorf("second pull: the upstream was asked for %d blobs", n)
	}
	assertVerified(t, svc)
}
