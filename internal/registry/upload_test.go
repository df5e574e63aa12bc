package registry

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/registry/registrytest"
)

// localImage pulls a random 3-layer image into a fresh service, tagged
// ref on reg: the local image the push tests push.
func localImage(t *testing.T, reg *testRegistry, repo string) (*image.Service, *image.Image) {
	t.Helper()
	reg.push(t, repo+":src", randomImage(t, 3))
	svc := newService(t)
	img, err := Pull(context.Background(), svc, reg.host+"/"+repo+":src")
	if err != nil {
		t.Fatal(err)
	}
	return svc, img
}

func TestPushRoundTrip(t *testing.T) {
	src := newTestRegistry(t)
	svc, img := localImage(t, src, "test/src")
	reg := newTestRegistry(t)
	ref := reg.host + "/test/dst:1"
	if err := svc.Tag(img.ID.String(), ref); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []Event
	d, size, err := Push(context.Background(), svc, ref, WithProgress(func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if d != img.ManifestDigest || size <= 0 {
		t.Errorf("Push = %s, %d; want the stored manifest %s", d, size, img.ManifestDigest)
	}
	// Each blob: HEAD, then POST and one PUT (monolithic), HEAD first.
	for _, b := range append([]string{img.ID.String()}, func() (ds []string) {
		for _, l := range img.Layers {
			ds = append(ds, l.Digest.String())
		}
		return ds
	}()...) {
		if n := reg.count("HEAD", "/blobs/"+b); n != 1 {
			t.Errorf("blob %s: %d HEADs, want 1", b, n)
		}
	}
	if n, m := reg.count("POST", "/blobs/uploads/"), reg.count("PUT", "/blobs/uploads/"); n != 4 || m != 4 {
		t.Errorf("%d POSTs and %d PUTs of blobs, want 4 and 4", n, m)
	}
	reg.mu.Lock()
	firstPost := slices.IndexFunc(reg.requests, func(r string) bool { return strings.HasPrefix(r, "POST ") })
	firstHead := slices.IndexFunc(reg.requests, func(r string) bool { return strings.HasPrefix(r, "HEAD ") })
	reg.mu.Unlock()
	if firstHead < 0 || firstPost < firstHead {
		t.Errorf("an upload started before any HEAD: %v", reg.requests)
	}
	pushed := 0
	for _, e := range events {
		if e.Status == StatusPushed {
			pushed++
		}
	}
	if pushed != 3 {
		t.Errorf("%d Pushed events, want 3 (one per layer, none for the config)", pushed)
	}
	got, err := svc.Get(reg.host + "/test/dst@" + d.String())
	if err != nil || got.ID != img.ID {
		t.Errorf("repo digest not recorded: %v", err)
	}
	back, err := Pull(context.Background(), newService(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != img.ID || back.ManifestDigest != img.ManifestDigest {
		t.Errorf("pulled back %s/%s, pushed %s/%s", back.ID, back.ManifestDigest, img.ID, img.ManifestDigest)
	}

	// Again: only HEADs and the manifest.
	reg.reset()
	if _, _, err := Push(context.Background(), svc, ref); err != nil {
		t.Fatal(err)
	}
	if n := reg.count("POST", "/blobs/uploads/") + reg.count("PATCH", "/blobs/uploads/") + reg.count("PUT", "/blobs/uploads/"); n != 0 {
		t.Errorf("second push made %d upload requests, want 0", n)
	}
	if n := reg.count("PUT", "/manifests/1"); n != 1 {
		t.Errorf("%d manifest PUTs, want 1", n)
	}
}

func TestPushChunked(t *testing.T) {
	reg := newTestRegistry(t)
	svc, img := localImage(t, reg, "test/src")
	other := newTestRegistry(t) // no mount possible: another registry
	ref := other.host + "/test/chunked:1"
	if err := svc.Tag(img.ID.String(), ref); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Push(context.Background(), svc, ref, WithChunkSize(8<<10)); err != nil {
		t.Fatal(err)
	}
	var want int
	for _, l := range img.Layers {
		want += int((l.Size + 8<<10 - 1) / (8 << 10))
	}
	if n := other.count("PATCH", "/blobs/uploads/"); n < want {
		t.Errorf("%d PATCH requests, want at least %d (8 KiB chunks)", n, want)
	}
	back, err := Pull(context.Background(), newService(t), ref)
	if err != nil || back.ID != img.ID {
		t.Fatalf("pull back: %v", err)
	}
}

func TestPushFaults(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault func(w http.ResponseWriter, r *http.Request, n int32) bool // true: handled
		ok    bool
		class func(error) bool
		says  string
	}{
		{"500 on first blob PUT", func(w http.ResponseWriter, r *http.Request, n int32) bool {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && n == 0 {
				w.WriteHeader(http.StatusInternalServerError)
				return true
			}
			return false
		}, true, nil, ""},
		{"403 on manifest", func(w http.ResponseWriter, r *http.Request, _ int32) bool {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				w.Write([]byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
				return true
			}
			return false
		}, false, errdefs.IsFailedPrecondition, "DENIED: requested access to the resource is denied"},
		{"wrong digest stored", func(w http.ResponseWriter, r *http.Request, _ int32) bool {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
				w.Header().Set("Docker-Content-Digest", "sha256:"+zeros)
				w.WriteHeader(http.StatusCreated)
				return true
			}
			return false
		}, false, errdefs.IsInvalidArgument, "sha256:" + zeros},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := newTestRegistry(t)
			svc, img := localImage(t, src, "test/src")
			dst := newTestRegistry(t)
			ref := dst.host + "/test/app:1"
			if err := svc.Tag(img.ID.String(), ref); err != nil {
				t.Fatal(err)
			}
			var hits atomic.Int32
			dst.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
				if tt.fault(w, r, hits.Load()) {
					hits.Add(1)
					return
				}
				next.ServeHTTP(w, r)
			})
			_, _, err := Push(context.Background(), svc, ref, fast)
			if tt.ok {
				if err != nil {
					t.Fatalf("push did not recover: %v", err)
				}
				return
			}
			if err == nil || !tt.class(err) || !strings.Contains(err.Error(), tt.says) || !strings.HasPrefix(err.Error(), "push "+ref+": ") {
				t.Fatalf("err = %v, want one line saying %q", err, tt.says)
			}
		})
	}
}

func TestPushBadRefs(t *testing.T) {
	svc := newService(t)
	if _, _, err := Push(context.Background(), svc, "127.0.0.1:1/a/b:1"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "does not exist locally") {
		t.Errorf("not local: %v", err)
	}
	if _, _, err := Push(context.Background(), svc, "127.0.0.1:1/a/b@sha256:"+zeros); !errdefs.IsInvalidArgument(err) {
		t.Errorf("digest ref: %v", err)
	}
	if _, _, err := Push(context.Background(), svc, "a//b:1"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad ref: %v", err)
	}
}

// TestPushAuth pushes to Debian's docker-registry behind Basic auth and
// behind token auth (with a cross-repository mount, which needs a token
// with pull on the source repository too); without credentials the push
// is refused with one line.
func TestPushAuth(t *testing.T) {
	mem := newTestRegistry(t)
	for _, mode := range []string{"basic", "token"} {
		t.Run(mode, func(t *testing.T) {
			opts := []registrytest.Option{registrytest.WithBasicAuth("alice", "s3cret")}
			if mode == "token" {
				opts = append(opts, registrytest.WithTokenAuth("berth-test-issuer"))
			}
			reg := registrytest.Start(t, opts...)
			svc, img := localImage(t, mem, "test/src")
			keys := WithKeychain(fixedKeychain{authn.FromConfig(authn.AuthConfig{Username: "alice", Password: "s3cret"})})
			a, b := reg.Addr+"/team/a:1", reg.Addr+"/team/b:1"
			for _, r := range []string{a, b} {
				if err := svc.Tag(img.ID.String(), r); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := Push(context.Background(), svc, a, fast); !errdefs.IsFailedPrecondition(err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("push without credentials: %v, want one line, failed precondition", err)
			}
			if _, _, err := Push(context.Background(), svc, a, keys, fast); err != nil {
				t.Fatal(err)
			}
			var mounted atomic.Int32
			if _, _, err := Push(context.Background(), svc, b, keys, fast, WithProgress(func(e Event) {
				if e.Status == StatusMounted+" team/a" {
					mounted.Add(1)
				}
			})); err != nil {
				t.Fatal(err)
			}
			if mounted.Load() != 3 {
				t.Errorf("%d layers mounted from team/a, want 3", mounted.Load())
			}
			back, err := Pull(context.Background(), newService(t), b, keys, fast)
			if err != nil || back.ID != img.ID {
				t.Fatalf("pull back: %v", err)
			}
		})
	}
}
