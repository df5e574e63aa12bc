package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
)

// testRegistry is go-containerregistry's in-memory registry behind
// httptest, with a hook to rewrite requests and a log of what was asked.
type testRegistry struct {
	host string // 127.0.0.1:port

	mu       sync.Mutex
	requests []string // "GET /v2/..."
	// wrap, when set, serves the request instead of the registry; it
	// gets the registry to delegate to.
	wrap func(next http.Handler, w http.ResponseWriter, r *http.Request)
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	tr := &testRegistry{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.requests = append(tr.requests, r.Method+" "+r.URL.Path)
		wrap := tr.wrap
		tr.mu.Unlock()
		if wrap != nil {
			wrap(reg, w, r)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr.host = u.Host
	return tr
}

// count is how many requests so far were method on a path containing part.
func (tr *testRegistry) count(method, part string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, r := range tr.requests {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, part) {
			n++
		}
	}
	return n
}

func (tr *testRegistry) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.requests = nil
}

func (tr *testRegistry) setWrap(fn func(next http.Handler, w http.ResponseWriter, r *http.Request)) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.wrap = fn
}

func (tr *testRegistry) push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(tr.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func (tr *testRegistry) pushIndex(t *testing.T, ref string, idx v1.ImageIndex) {
	t.Helper()
	r, err := name.ParseReference(tr.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func randomImage(t *testing.T, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(64<<10, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newService(t *testing.T) *image.Service {
	t.Helper()
	svc, err := image.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func configDigest(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func manifestDigest(t *testing.T, m interface{ Digest() (v1.Hash, error) }) digest.Digest {
	t.Helper()
	h, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

// assertEmpty checks that a failed pull recorded no image and that every
// blob it kept (for the next pull to resume from) hashes to its digest.
func assertEmpty(t *testing.T, svc *image.Service) {
	t.Helper()
	assertVerified(t, svc)
	imgs, err := svc.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) > 0 {
		t.Errorf("records left behind: %v", imgs)
	}
}

// assertVerified checks every stored blob against its digest.
func assertVerified(t *testing.T, svc *image.Service) {
	t.Helper()
	if err := svc.Content.Walk(func(d digest.Digest, _ int64) error {
		f, err := svc.Content.Open(d)
		if err != nil {
			return err
		}
		defer f.Close()
		got, err := digest.Canonical.FromReader(f)
		if err != nil {
			return err
		}
		if got != d {
			t.Errorf("blob %s holds content with digest %s", d, got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPullByTag(t *testing.T) {
	reg := newTestRegistry(t)
	src := randomImage(t, 3)
	reg.push(t, "test/app:v1", src)
	svc := newService(t)

	var (
		mu     sync.Mutex
		events []Event
	)
	img, err := Pull(context.Background(), svc, reg.host+"/test/app:v1", WithProgress(func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if want := configDigest(t, src); img.ID != want {
		t.Errorf("ID = %s, want the config digest %s", img.ID, want)
	}
	if want := []string{reg.host + "/test/app:v1"}; !slices.Equal(img.RepoTags, want) {
		t.Errorf("RepoTags = %v, want %v", img.RepoTags, want)
	}
	md := manifestDigest(t, src)
	if want := []string{reg.host + "/test/app@" + md.String()}; !slices.Equal(img.RepoDigests, want) {
		t.Errorf("RepoDigests = %v, want %v", img.RepoDigests, want)
	}
	if img.ManifestDigest != md || img.ManifestMediaType != mediaTypeDockerManifest {
		t.Errorf("manifest = %s %s, want %s (Docker schema 2)", img.ManifestDigest, img.ManifestMediaType, md)
	}
	if len(img.ChainIDs) != 3 {
		t.Fatalf("ChainIDs = %v, want 3", img.ChainIDs)
	}
	for i, c := range img.ChainIDs {
		if !svc.Snapshots.Has(c) {
			t.Errorf("layer %d (%s) is not in the snapshot store", i, c)
		}
		if _, err := svc.Content.Stat(img.Layers[i].Digest); err != nil {
			t.Errorf("layer blob %d: %v", i, err)
		}
		if img.LayerSizes[i] <= 0 {
			t.Errorf("LayerSizes[%d] = %d", i, img.LayerSizes[i])
		}
	}
	for _, d := range []digest.Digest{img.ID, md} {
		if _, err := svc.Content.Stat(d); err != nil {
			t.Errorf("blob %s: %v", d, err)
		}
	}
	got, err := svc.Get(reg.host + "/test/app:v1")
	if err != nil || got.ID != img.ID {
		t.Fatalf("Get by tag = %v, %v", got, err)
	}
	if got, err := svc.Get(reg.host + "/test/app@" + md.String()); err != nil || got.ID != img.ID {
		t.Errorf("Get by digest = %v, %v", got, err)
	}
	if !slices.ContainsFunc(events, func(e Event) bool { return e.Status == StatusPullComplete }) {
		t.Errorf("no %q event in %v", StatusPullComplete, events)
	}

	// Again: only the manifest is fetched.
	reg.reset()
	again, err := Pull(context.Background(), svc, reg.host+"/test/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != img.ID {
		t.Errorf("second pull ID = %s, want %s", again.ID, img.ID)
	}
	if n := reg.count("GET", "/blobs/"); n != 0 {
		t.Errorf("second pull fetched %d blobs, want 0", n)
	}
	if n := reg.count("GET", "/manifests/"); n != 1 {
		t.Errorf("second pull fetched %d manifests, want 1", n)
	}
}

func TestPullByDigestOCI(t *testing.T) {
	reg := newTestRegistry(t)
	src := mutate.ConfigMediaType(mutate.MediaType(randomImage(t, 2), types.OCIManifestSchema1), types.OCIConfigJSON)
	reg.push(t, "test/oci:latest", src)
	md := manifestDigest(t, src)
	svc := newService(t)

	img, err := Pull(context.Background(), svc, reg.host+"/test/oci@"+md.String(), WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if img.ManifestMediaType != ocispec.MediaTypeImageManifest || img.ManifestDigest != md {
		t.Errorf("manifest = %s %s, want %s %s", img.ManifestDigest, img.ManifestMediaType, md, ocispec.MediaTypeImageManifest)
	}
	if len(img.RepoTags) != 0 {
		t.Errorf("a pull by digest tagged the image: %v", img.RepoTags)
	}
	if img.ID != configDigest(t, src) {
		t.Errorf("ID = %s, want %s", img.ID, configDigest(t, src))
	}
	for _, c := range img.ChainIDs {
		if !svc.Snapshots.Has(c) {
			t.Errorf("layer %s missing", c)
		}
	}
}

func TestPullIndexPicksPlatform(t *testing.T) {
	reg := newTestRegistry(t)
	other := "s390x"
	if goruntime.GOARCH == other {
		other = "amd64"
	}
	host, foreign := randomImage(t, 1), randomImage(t, 2)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}}},
	)
	reg.pushIndex(t, "test/multi:1", idx)
	idxDigest := manifestDigest(t, idx)

	tests := []struct {
		name string
		opts []Option
		want v1.Image
	}{
		{"host platform by default", nil, host},
		{"requested platform", []Option{WithPlatform("linux", other, "")}, foreign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t)
			reg.reset()
			img, err := Pull(context.Background(), svc, reg.host+"/test/multi:1", tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if want := configDigest(t, tt.want); img.ID != want {
				t.Errorf("ID = %s, want %s", img.ID, want)
			}
			if img.ManifestDigest != manifestDigest(t, tt.want) || img.IndexDigest != idxDigest {
				t.Errorf("manifest %s index %s, want %s %s", img.ManifestDigest, img.IndexDigest, manifestDigest(t, tt.want), idxDigest)
			}
			if want := []string{reg.host + "/test/multi@" + idxDigest.String()}; !slices.Equal(img.RepoDigests, want) {
				t.Errorf("RepoDigests = %v, want %v", img.RepoDigests, want)
			}
			// Only the chosen image's blobs are fetched: config + layers.
			ls, _ := tt.want.Layers()
			if n, want := reg.count("GET", "/blobs/"), len(ls)+1; n != want {
				t.Errorf("fetched %d blobs, want %d", n, want)
			}
		})
	}

	t.Run("no such platform", func(t *testing.T) {
		svc := newService(t)
		_, err := Pull(context.Background(), svc, reg.host+"/test/multi:1", WithPlatform("windows", "arm", "v7"))
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "windows/arm/v7") {
			t.Fatalf("err = %v, want not found naming windows/arm/v7", err)
		}
		assertEmpty(t, svc)
	})
}

func TestPullCorruptBlob(t *testing.T) {
	src := randomImage(t, 3)
	ls, err := src.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cfg := configDigest(t, src)
	for _, tt := range []struct {
		name   string
		target func() string
	}{
		{"first layer", func() string { h, _ := ls[0].Digest(); return h.String() }},
		{"last layer", func() string { h, _ := ls[2].Digest(); return h.String() }},
		{"config", func() string { return cfg.String() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.push(t, "test/bad:1", src)
			target := tt.target()
			reg.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+target) {
					next.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				b := rec.Body.Bytes()
				b[len(b)/2] ^= 0xff
				w.Header().Set("Content-Length", rec.Header().Get("Content-Length"))
				w.WriteHeader(rec.Code)
				w.Write(b)
			})
			svc := newService(t)
			_, err := Pull(context.Background(), svc, reg.host+"/test/bad:1")
			if err == nil {
				t.Fatal("a corrupt blob was accepted")
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("err = %v, want invalid argument naming %s as corrupt", err, target)
			}
			assertEmpty(t, svc)
		})
	}
}

func TestPullDigestMismatch(t *testing.T) {
	reg := newTestRegistry(t)
	src := randomImage(t, 1)
	reg.push(t, "test/app:v1", src)
	other := digest.FromString("something else")
	// The registry answers the digest with the tag's manifest.
	reg.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.Replace(r.URL.Path, "/manifests/"+other.String(), "/manifests/v1", 1)
		next.ServeHTTP(w, r)
	})
	svc := newService(t)
	_, err := Pull(context.Background(), svc, reg.host+"/test/app@"+other.String())
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), other.String()) {
		t.Fatalf("err = %v, want invalid argument naming %s", err, other)
	}
	assertEmpty(t, svc)
}

func TestPullManifestTooLarge(t *testing.T) {
	reg := newTestRegistry(t)
	big := append([]byte(`{"schemaVersion":2,"layers":[`), bytes.Repeat([]byte(" "), MaxManifestSize)...)
	big = append(big, "]}"...)
	for _, chunked := range []bool{false, true} {
		reg.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
			if !chunked {
				w.Header().Set("Content-Length", "5000000")
			}
			w.Write(big)
		})
		svc := newService(t)
		_, err := Pull(context.Background(), svc, reg.host+"/test/big:1")
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("chunked=%v: err = %v, want a refusal of the large manifest", chunked, err)
		}
		assertEmpty(t, svc)
	}
}

func TestPullNotFound(t *testing.T) {
	reg := newTestRegistry(t)
	svc := newService(t)
	_, err := Pull(context.Background(), svc, reg.host+"/test/none:1")
	if !errdefs.IsNotFound(err) {
		t.Fatalf("err = %v, want not found", err)
	}
}

func TestPullSharedLayers(t *testing.T) {
	reg := newTestRegistry(t)
	base := randomImage(t, 2)
	extra, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	child, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "test/base:1", base)
	reg.push(t, "test/child:1", child)
	svc := newService(t)
	if _, err := Pull(context.Background(), svc, reg.host+"/test/base:1"); err != nil {
		t.Fatal(err)
	}
	reg.reset()
	img, err := Pull(context.Background(), svc, reg.host+"/test/child:1")
	if err != nil {
		t.Fatal(err)
	}
	// Config and the one new layer.
	if n := reg.count("GET", "/blobs/"); n != 2 {
		t.Errorf("fetched %d blobs, want 2", n)
	}
	if !svc.Snapshots.Has(img.TopChainID()) {
		t.Error("top layer missing")
	}
}

// TestPullRepeatedLayer: one blob twice in a manifest (as Docker's empty
// layers are) gives two chain IDs from one download.
func TestPullRepeatedLayer(t *testing.T) {
	reg := newTestRegistry(t)
	l, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	src, err := mutate.AppendLayers(empty.Image, l, l, l)
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "test/rep:1", src)
	svc := newService(t)
	img, err := Pull(context.Background(), svc, reg.host+"/test/rep:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(slices.Compact(slices.Clone(img.ChainIDs))) != 3 {
		t.Errorf("ChainIDs = %v, want 3 distinct", img.ChainIDs)
	}
	for _, c := range img.ChainIDs {
		if !svc.Snapshots.Has(c) {
			t.Errorf("layer %s missing", c)
		}
	}
}

func TestPickPlatform(t *testing.T) {
	d := func(os, arch, variant string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(os + arch + variant),
			Platform: &ocispec.Platform{OS: os, Architecture: arch, Variant: variant}}
	}
	list := []ocispec.Descriptor{d("linux", "amd64", ""), d("linux", "arm", "v6"), d("linux", "arm", "v7"), d("linux", "arm64", "v8")}
	tests := []struct {
		want    ocispec.Platform
		pick    int // -1: error
		listing []ocispec.Descriptor
	}{
		{ocispec.Platform{OS: "linux", Architecture: "amd64"}, 0, list},
		{ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, 2, list},
		{ocispec.Platform{OS: "linux", Architecture: "arm"}, 1, list},
		{ocispec.Platform{OS: "linux", Architecture: "arm64"}, 3, list},
		{ocispec.Platform{OS: "linux", Architecture: "riscv64"}, -1, list},
		{ocispec.Platform{OS: "linux", Architecture: "riscv64"}, 0, []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest}}},
	}
	for _, tt := range tests {
		got, err := pickPlatform(tt.listing, tt.want)
		if tt.pick < 0 {
			if !errdefs.IsNotFound(err) {
				t.Errorf("%v: err = %v, want not found", tt.want, err)
			}
			continue
		}
		if err != nil || got.Digest != tt.listing[tt.pick].Digest {
			t.Errorf("%v: got %v, %v; want entry %d", tt.want, got.Platform, err, tt.pick)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.1.2.3": true, "[::1]:5000": true, "localhost:5000": true, "localhost": true,
		"docker.io": false, "10.0.0.1:5000": false, "registry.local:443": false, "[::2]:80": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	err := errors.New("plain")
	if classify(err) != err { //nolint
		t.Error("classify changed an error it does not know")
	}
}

// TestPullPipelines holds back the last layer's download until the first
// layer is unpacked: unpacking must not wait for every download.
func TestPullPipelines(t *testing.T) {
	reg := newTestRegistry(t)
	src := randomImage(t, 3)
	reg.push(t, "test/pipe:1", src)
	ls, err := src.Layers()
	if err != nil {
		t.Fatal(err)
	}
	last, _ := ls[2].Digest()
	first, _ := ls[0].DiffID()
	firstChain := digest.Digest(first.String()) // the chain ID of a bottom layer is its diff ID
	svc := newService(t)
	released := make(chan bool, 1)
	reg.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+last.String()) {
			ok := false
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if svc.Snapshots.Has(firstChain) {
					ok = true
					break
				}
			}
			select {
			case released <- ok:
			default:
			}
		}
		next.ServeHTTP(w, r)
	})
	img, err := Pull(context.Background(), svc, reg.host+"/test/pipe:1")
	if err != nil {
		t.Fatal(err)
	}
	if !<-released {
		t.Error("the first layer was not unpacked while the last one was still downloading")
	}
	if !svc.Snapshots.Has(img.TopChainID()) {
		t.Error("top layer missing")
	}
}

// TestPullWrongDiffID: blobs that match their digests but not the
// config's diff IDs are refused, for teed and unteed layers alike.
func TestPullWrongDiffID(t *testing.T) {
	for _, bad := range []int{0, 2} {
		reg := newTestRegistry(t)
		src := randomImage(t, 3)
		cf, err := src.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.RootFS.DiffIDs[bad] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
		reg.push(t, "test/diff:0", src) // the layers
		rawCfg, err := json.Marshal(cf)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := name.NewRepository(reg.host + "/test/diff")
		if err != nil {
			t.Fatal(err)
		}
		cfgLayer := static.NewLayer(rawCfg, types.DockerConfigJSON)
		if err := remote.WriteLayer(repo, cfgLayer); err != nil {
			t.Fatal(err)
		}
		m, err := src.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		m = m.DeepCopy()
		m.Config.Digest, _ = cfgLayer.Digest()
		m.Config.Size = int64(len(rawCfg))
		rawManifest, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Put(repo.Tag("1"), rawTaggable{rawManifest, types.DockerManifestSchema2}); err != nil {
			t.Fatal(err)
		}
		svc := newService(t)
		_, err = Pull(context.Background(), svc, reg.host+"/test/diff:1")
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), strings.Repeat("ab", 32)) {
			t.Errorf("layer %d: err = %v, want invalid argument naming the diff ID", bad, err)
		}
		assertEmpty(t, svc)
	}
}

type rawTaggable struct {
	raw []byte
	mt  types.MediaType
}

func (r rawTaggable) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawTaggable) MediaType() (types.MediaType, error) { return r.mt, nil }

// TestPullWrongDiffIDLayerPresent: a blob that arrives for a layer
// already unpacked (from another image's blob) is still checked against
// the diff ID, so no record pairs a layer with a blob of other files.
func TestPullWrongDiffIDLayerPresent(t *testing.T) {
	reg := newTestRegistry(t)
	src := randomImage(t, 1)
	reg.push(t, "test/good:1", src)
	svc := newService(t)
	if _, err := Pull(context.Background(), svc, reg.host+"/test/good:1"); err != nil {
		t.Fatal(err)
	}
	// Same config (so the same chain IDs), another layer blob.
	other := randomImage(t, 1)
	ls, err := other.Layers()
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(reg.host + "/test/bad")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, ls[0]); err != nil {
		t.Fatal(err)
	}
	rawCfg, err := src.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfgLayer := static.NewLayer(rawCfg, types.DockerConfigJSON)
	if err := remote.WriteLayer(repo, cfgLayer); err != nil {
		t.Fatal(err)
	}
	m, err := src.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	m.Layers[0].Digest, _ = ls[0].Digest()
	m.Layers[0].Size, _ = ls[0].Size()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(repo.Tag("1"), rawTaggable{raw, types.DockerManifestSchema2}); err != nil {
		t.Fatal(err)
	}
	_, err = Pull(context.Background(), svc, reg.host+"/test/bad:1")
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "uncompresses to") {
		t.Fatalf("err = %v, want the blob refused for its diff ID", err)
	}
	if _, err := svc.Get(reg.host + "/test/bad:1"); !errdefs.IsNotFound(err) {
		t.Errorf("a record was written: %v", err)
	}
}

// TestRemovePulledImage: removing a pulled image's last tag removes its
// repository digest too and deletes it, as Docker does; with another tag
// of the repository left, only the tag goes.
func TestRemovePulledImage(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "test/app:1", randomImage(t, 1))
	svc := newService(t)
	img, err := Pull(context.Background(), svc, reg.host+"/test/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Tag(img.ID.String(), reg.host+"/test/app:2"); err != nil {
		t.Fatal(err)
	}
	items, err := svc.Remove(context.Background(), reg.host+"/test/app:2", false, nil)
	if err != nil || len(items) != 1 {
		t.Fatalf("remove of one of two tags: %v, %v", items, err)
	}
	items, err = svc.Remove(context.Background(), reg.host+"/test/app:1", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var untagged []string
	deleted := false
	for _, it := range items {
		if it.Untagged != "" {
			untagged = append(untagged, it.Untagged)
		}
		deleted = deleted || it.Deleted == img.ID.String()
	}
	if len(untagged) != 2 || !strings.Contains(untagged[1], "@sha256:") || !deleted {
		t.Errorf("items = %+v; want the tag and the digest untagged and the image deleted", items)
	}
	if imgs, _ := svc.List(); len(imgs) != 0 {
		t.Errorf("images left: %v", imgs)
	}
}
