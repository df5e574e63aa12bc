package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
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
)

type testRegistry struct {
	t     *testing.T
	url   string
	store *Store
}

func newTestRegistry(t *testing.T, opts ...Option) *testRegistry {
	t.Helper()
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(store, opts...))
	t.Cleanup(srv.Close)
	return &testRegistry{t: t, url: srv.URL, store: store}
}

type response struct {
	*http.Response
	body []byte
}

// do sends a request; hdr is key, value pairs.
func (tr *testRegistry) do(method, path string, body []byte, hdr ...string) response {
	tr.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = tr.url + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tr.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tr.t.Fatal(err)
	}
	return response{resp, b}
}

func (r response) want(t *testing.T, status int) response {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.body)
	}
	return r
}

// wantError checks the status and that the body is the spec's error JSON
// with code as its first code.
func (r response) wantError(t *testing.T, status int, code ErrorCode) {
	t.Helper()
	r.want(t, status)
	if r.Request.Method == http.MethodHead {
		return
	}
	var body errorBody
	if err := json.Unmarshal(r.body, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("%s %s: error body %q is not the spec's JSON: %v", r.Request.Method, r.Request.URL, r.body, err)
	}
	if body.Errors[0].Code != code {
		t.Fatalf("%s %s: code %s, want %s (%s)", r.Request.Method, r.Request.URL, body.Errors[0].Code, code, r.body)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// pushBlob uploads data monolithically (POST then PUT).
func (tr *testRegistry) pushBlob(repo string, data []byte) digest.Digest {
	tr.t.Helper()
	d := digest.FromBytes(data)
	loc := tr.do("POST", "/v2/"+repo+"/blobs/uploads/", nil).want(tr.t, 202).Header.Get("Location")
	tr.do("PUT", loc+"?digest="+string(d), data).want(tr.t, 201)
	return d
}

// image pushes a config and one layer into repo and returns an OCI image
// manifest over them.
func (tr *testRegistry) image(repo string, extra map[string]any) ([]byte, digest.Digest) {
	tr.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := randomBytes(tr.t, 1000)
	cd, ld := tr.pushBlob(repo, cfg), tr.pushBlob(repo, layer)
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocispec.MediaTypeImageManifest,
		"config":        ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))},
		"layers":        []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: ld, Size: 1000}},
	}
	for k, v := range extra {
		m[k] = v
	}
	data, _ := json.Marshal(m)
	return data, digest.FromBytes(data)
}

func TestBaseAndErrors(t *testing.T) {
	tr := newTestRegistry(t)
	r := tr.do("GET", "/v2/", nil).want(t, 200)
	if r.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("API version header %q", r.Header.Get("Docker-Distribution-API-Version"))
	}
	tr.do("HEAD", "/v2/", nil).want(t, 200)
	tr.do("GET", "/v2/nothing/here", nil).wantError(t, 404, CodeUnsupported)
	tr.do("POST", "/v2/a/manifests/latest", nil).wantError(t, 405, CodeUnsupported)
	tr.do("GET", "/v2/A/manifests/latest", nil).wantError(t, 400, CodeNameInvalid)
	tr.do("GET", "/v2/a/../../../etc/manifests/latest", nil) // cleaned by the client; must still not 500
	req, _ := http.NewRequest("GET", tr.url+"/v2/a/%2e%2e/b/manifests/latest", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("encoded .. in the name: status %d, want 400", resp.StatusCode)
	}
	tr.do("GET", "/v2/a/manifests/sha256:baddigest", nil).wantError(t, 400, CodeDigestInvalid)
	tr.do("GET", "/v2/a/manifests/-bad", nil).wantError(t, 400, CodeManifestInvalid)
	tr.do("GET", "/v2/a/blobs/sha256:"+strings.Repeat("0", 63), nil).wantError(t, 400, CodeDigestInvalid)
	tr.do("GET", "/v2/a/blobs/sha384:"+strings.Repeat("0", 96), nil).wantError(t, 400, CodeDigestInvalid)
	tr.do("GET", "/v2/a/blobs/sha256:"+sha256Hex, nil).wantError(t, 404, CodeBlobUnknown)
	tr.do("GET", "/v2/a/manifests/latest", nil).wantError(t, 404, CodeNameUnknown)
	tr.do("GET", "/v2/a/tags/list", nil).wantError(t, 404, CodeNameUnknown)
	tr.do("PATCH", "/v2/a/blobs/uploads/"+newUploadID(), []byte("x")).wantError(t, 404, CodeBlobUploadUnknown)
	tr.do("PATCH", "/v2/a/blobs/uploads/..%2f..%2fx", []byte("x")).want(t, 404)
	tr.do("GET", "/v2/a/tags/list?n=-1", nil).wantError(t, 400, CodeUnsupported)
	// Nothing was created outside the store's own directories.
	entries, _ := os.ReadDir(tr.store.Root())
	for _, e := range entries {
		switch e.Name() {
		case blobsDir, reposDir, uploadsDir, tmpDir:
		default:
			t.Errorf("unexpected %s in the storage root", e.Name())
		}
	}
}

func TestBlobUploads(t *testing.T) {
	tr := newTestRegistry(t)
	data := randomBytes(t, 300_000)
	d := digest.FromBytes(data)

	t.Run("single POST", func(t *testing.T) {
		r := tr.do("POST", "/v2/single/blobs/uploads/?digest="+string(d), data).want(t, 201)
		if r.Header.Get("Docker-Content-Digest") != string(d) || r.Header.Get("Location") != "/v2/single/blobs/"+string(d) {
			t.Errorf("headers %v", r.Header)
		}
		got := tr.do("GET", "/v2/single/blobs/"+string(d), nil).want(t, 200)
		if !bytes.Equal(got.body, data) || got.Header.Get("Docker-Content-Digest") != string(d) || got.Header.Get("Content-Length") != "300000" {
			t.Errorf("GET: %d bytes, headers %v", len(got.body), got.Header)
		}
		h := tr.do("HEAD", "/v2/single/blobs/"+string(d), nil).want(t, 200)
		if h.Header.Get("Content-Length") != "300000" || len(h.body) != 0 {
			t.Errorf("HEAD: %v", h.Header)
		}
	})

	t.Run("chunked with out-of-order chunk", func(t *testing.T) {
		r := tr.do("POST", "/v2/chunked/blobs/uploads/", nil, "Content-Length", "0").want(t, 202)
		loc := r.Header.Get("Location")
		if !strings.HasPrefix(loc, "/v2/chunked/blobs/uploads/") || strings.Contains(loc, "?") || r.Header.Get("Range") != "0-0" {
			t.Fatalf("POST: Location %q Range %q", loc, r.Header.Get("Range"))
		}
		r = tr.do("PATCH", loc, data[:100_000], "Content-Range", "0-99999").want(t, 202)
		if r.Header.Get("Range") != "0-99999" {
			t.Errorf("PATCH Range %q", r.Header.Get("Range"))
		}
		loc = r.Header.Get("Location")
		// A chunk that skips ahead is refused with 416 and the offset.
		r = tr.do("PATCH", loc, data[200_000:], "Content-Range", "200000-299999")
		r.wantError(t, 416, CodeBlobUploadInvalid)
		if r.Header.Get("Range") != "0-99999" {
			t.Errorf("416 Range %q", r.Header.Get("Range"))
		}
		// A chunk longer than its Content-Range is refused and cut off.
		tr.do("PATCH", loc, data[100_000:200_001], "Content-Range", "100000-199999").wantError(t, 400, CodeSizeInvalid)
		r = tr.do("GET", loc, nil).want(t, 204)
		if r.Header.Get("Range") != "0-99999" {
			t.Errorf("GET status Range %q", r.Header.Get("Range"))
		}
		// Streamed chunk without Content-Range, then the last in PUT.
		tr.do("PATCH", loc, data[100_000:200_000]).want(t, 202)
		r = tr.do("PUT", loc+"?digest="+string(d), data[200_000:], "Content-Range", "200000-299999").want(t, 201)
		if r.Header.Get("Docker-Content-Digest") != string(d) {
			t.Errorf("PUT headers %v", r.Header)
		}
		if got := tr.do("GET", "/v2/chunked/blobs/"+string(d), nil).want(t, 200); !bytes.Equal(got.body, data) {
			t.Error("chunked blob differs")
		}
		tr.do("GET", loc, nil).wantError(t, 404, CodeBlobUploadUnknown)
	})

	t.Run("bad digest", func(t *testing.T) {
		loc := tr.do("POST", "/v2/bad/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
		tr.do("PUT", loc, data).wantError(t, 400, CodeDigestInvalid) // no digest=: session kept
		tr.do("PUT", loc+"?digest=sha256:nothex", data).wantError(t, 400, CodeDigestInvalid)
		tr.do("PUT", loc+"?digest="+string(digest.FromString("other")), data).wantError(t, 400, CodeDigestInvalid)
		tr.do("GET", "/v2/bad/blobs/"+string(digest.FromString("other")), nil).wantError(t, 404, CodeBlobUnknown)
		tr.do("POST", "/v2/bad/blobs/uploads/?digest="+string(digest.FromString("x")), data).wantError(t, 400, CodeDigestInvalid)
		tr.do("POST", "/v2/bad/blobs/uploads/?digest-algorithm=md5", nil).wantError(t, 400, CodeDigestInvalid)
	})

	t.Run("sha512", func(t *testing.T) {
		d512 := digest.SHA512.FromBytes(data)
		loc := tr.do("POST", "/v2/s512/blobs/uploads/?digest-algorithm=sha512", nil).want(t, 202).Header.Get("Location")
		tr.do("PATCH", loc, data[:1000]).want(t, 202)
		tr.do("PUT", loc+"?digest="+string(d512), data[1000:]).want(t, 201)
		// Without digest-algorithm the running sha256 is redone as sha512.
		loc = tr.do("POST", "/v2/s512b/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
		tr.do("PUT", loc+"?digest="+string(d512), data).want(t, 201)
		if got := tr.do("GET", "/v2/s512b/blobs/"+string(d512), nil).want(t, 200); !bytes.Equal(got.body, data) {
			t.Error("sha512 blob differs")
		}
	})

	t.Run("cancel", func(t *testing.T) {
		loc := tr.do("POST", "/v2/cancel/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
		tr.do("PATCH", loc, data[:10]).want(t, 202)
		tr.do("DELETE", loc, nil).want(t, 204)
		tr.do("PATCH", loc, data[:10]).wantError(t, 404, CodeBlobUploadUnknown)
	})

	t.Run("session belongs to its repository", func(t *testing.T) {
		loc := tr.do("POST", "/v2/mine/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
		other := strings.Replace(loc, "/mine/", "/theirs/", 1)
		tr.do("GET", other, nil).wantError(t, 404, CodeBlobUploadUnknown)
	})

	t.Run("mount", func(t *testing.T) {
		r := tr.do("POST", "/v2/mounted/blobs/uploads/?mount="+string(d)+"&from=single", nil).want(t, 201)
		if r.Header.Get("Location") != "/v2/mounted/blobs/"+string(d) {
			t.Errorf("mount Location %q", r.Header.Get("Location"))
		}
		tr.do("HEAD", "/v2/mounted/blobs/"+string(d), nil).want(t, 200)
		// Not in the source repository: a fresh session instead.
		tr.do("POST", "/v2/mounted2/blobs/uploads/?mount="+string(d)+"&from=nowhere", nil).want(t, 202)
		tr.do("HEAD", "/v2/mounted2/blobs/"+string(d), nil).wantError(t, 404, CodeBlobUnknown)
		// Without from= (no Authorizer): found wherever it is stored.
		tr.do("POST", "/v2/mounted3/blobs/uploads/?mount="+string(d), nil).want(t, 201)
		tr.do("POST", "/v2/mounted3/blobs/uploads/?mount="+string(d)+"&from=Bad", nil).wantError(t, 400, CodeNameInvalid)
	})

	t.Run("delete", func(t *testing.T) {
		tr.do("DELETE", "/v2/mounted/blobs/"+string(d), nil).want(t, 202)
		tr.do("HEAD", "/v2/mounted/blobs/"+string(d), nil).wantError(t, 404, CodeBlobUnknown)
		tr.do("DELETE", "/v2/mounted/blobs/"+string(d), nil).wantError(t, 404, CodeBlobUnknown)
		tr.do("HEAD", "/v2/single/blobs/"+string(d), nil).want(t, 200) // other repositories keep it
	})

	t.Run("empty blob", func(t *testing.T) {
		e := digest.FromBytes(nil)
		loc := tr.do("POST", "/v2/empty/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
		tr.do("PUT", loc+"?digest="+string(e), nil).want(t, 201)
		r := tr.do("GET", "/v2/empty/blobs/"+string(e), nil).want(t, 200)
		if len(r.body) != 0 || r.Header.Get("Content-Length") != "0" {
			t.Errorf("empty blob: %q %v", r.body, r.Header)
		}
	})
}

func TestBlobRange(t *testing.T) {
	tr := newTestRegistry(t)
	data := randomBytes(t, 2048)
	d := tr.pushBlob("r", data)
	r := tr.do("GET", "/v2/r/blobs/"+string(d), nil, "Range", "bytes=500-1499").want(t, 206)
	if !bytes.Equal(r.body, data[500:1500]) || r.Header.Get("Content-Range") != "bytes 500-1499/2048" {
		t.Errorf("range: %d bytes, %v", len(r.body), r.Header)
	}
	r = tr.do("GET", "/v2/r/blobs/"+string(d), nil, "Range", "bytes=-10").want(t, 206)
	if !bytes.Equal(r.body, data[2038:]) {
		t.Error("suffix range differs")
	}
	tr.do("GET", "/v2/r/blobs/"+string(d), nil, "Range", "bytes=5000-6000").want(t, 416)
}

func TestSizeLimits(t *testing.T) {
	tr := newTestRegistry(t, WithMaxBlobSize(1000), WithMaxManifestSize(2000))
	tr.do("POST", "/v2/a/blobs/uploads/?digest="+string(digest.FromBytes(make([]byte, 1001))), make([]byte, 1001)).wantError(t, 413, CodeSizeInvalid)
	loc := tr.do("POST", "/v2/a/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
	tr.do("PATCH", loc, make([]byte, 600)).want(t, 202)
	// Streamed (no Content-Length) past the limit: refused, chunk cut off.
	req, _ := http.NewRequest("PATCH", tr.url+loc, io.MultiReader(bytes.NewReader(make([]byte, 600))))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("streamed chunk over the limit: status %d, want 413", resp.StatusCode)
	}
	if r := tr.do("GET", loc, nil).want(t, 204); r.Header.Get("Range") != "0-599" {
		t.Errorf("after refused chunk: Range %q", r.Header.Get("Range"))
	}
	big := []byte(`{"schemaVersion":2,"manifests":[],"annotations":{"x":"` + strings.Repeat("a", 2000) + `"}}`)
	tr.do("PUT", "/v2/a/manifests/big", big, "Content-Type", ocispec.MediaTypeImageIndex).wantError(t, 413, CodeManifestInvalid)
}

func TestManifests(t *testing.T) {
	tr := newTestRegistry(t)
	m, md := tr.image("app", nil)

	r := tr.do("PUT", "/v2/app/manifests/v1", m, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
	if r.Header.Get("Docker-Content-Digest") != string(md) || r.Header.Get("Location") != "/v2/app/manifests/"+string(md) {
		t.Errorf("PUT headers %v", r.Header)
	}
	for _, ref := range []string{"v1", string(md)} {
		g := tr.do("GET", "/v2/app/manifests/"+ref, nil, "Accept", ocispec.MediaTypeImageIndex).want(t, 200)
		if !bytes.Equal(g.body, m) || g.Header.Get("Content-Type") != ocispec.MediaTypeImageManifest ||
			g.Header.Get("Docker-Content-Digest") != string(md) || g.Header.Get("Content-Length") != fmt.Sprint(len(m)) {
			t.Errorf("GET %s: %v", ref, g.Header)
		}
		h := tr.do("HEAD", "/v2/app/manifests/"+ref, nil).want(t, 200)
		if h.Header.Get("Content-Length") != fmt.Sprint(len(m)) || h.Header.Get("Docker-Content-Digest") != string(md) {
			t.Errorf("HEAD %s: %v", ref, h.Header)
		}
	}

	t.Run("digest mismatch", func(t *testing.T) {
		tr.do("PUT", "/v2/app/manifests/"+string(digest.FromString("x")), m, "Content-Type", ocispec.MediaTypeImageManifest).wantError(t, 400, CodeDigestInvalid)
		tr.do("PUT", "/v2/app/manifests/sha256:baddigeststring", m, "Content-Type", ocispec.MediaTypeImageManifest).wantError(t, 400, CodeDigestInvalid)
	})

	t.Run("sha512 by digest with tag params", func(t *testing.T) {
		d512 := digest.SHA512.FromBytes(m)
		r := tr.do("PUT", "/v2/app/manifests/"+string(d512)+"?tag=a&tag=b", m, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
		if r.Header.Get("Docker-Content-Digest") != string(d512) || r.Header.Get("OCI-Tag") != "a, b" {
			t.Errorf("headers %v", r.Header)
		}
		if g := tr.do("GET", "/v2/app/manifests/b", nil).want(t, 200); g.Header.Get("Docker-Content-Digest") != string(d512) {
			t.Errorf("tag b -> %s", g.Header.Get("Docker-Content-Digest"))
		}
		tr.do("PUT", "/v2/app/manifests/x?tag=a", m, "Content-Type", ocispec.MediaTypeImageManifest).wantError(t, 400, CodeManifestInvalid)
		tr.do("PUT", "/v2/app/manifests/"+string(d512)+"?tag=.bad", m, "Content-Type", ocispec.MediaTypeImageManifest).wantError(t, 400, CodeManifestInvalid)
	})

	t.Run("references must exist", func(t *testing.T) {
		missing := digest.FromString("missing")
		bad, _ := tr.image("app", map[string]any{"layers": []ocispec.Descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: missing, Size: 7}}})
		r := tr.do("PUT", "/v2/app/manifests/bad", bad, "Content-Type", ocispec.MediaTypeImageManifest)
		r.wantError(t, 400, CodeManifestBlobUnknown)
		// The same manifest is fine with the layer non-distributable.
		nd := bytes.Replace(bad, []byte(`application/vnd.oci.image.layer.v1.tar"`), []byte(`application/vnd.oci.image.layer.nondistributable.v1.tar","urls":["https://example.com/x"]`), 1)
		tr.do("PUT", "/v2/app/manifests/nd", nd, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
		// A blob of another repository does not count.
		tr.do("PUT", "/v2/other/manifests/v1", m, "Content-Type", ocispec.MediaTypeImageManifest).wantError(t, 400, CodeManifestBlobUnknown)
		// Nor does a wrong size.
		wrong := bytes.Replace(m, []byte(`"size":1000`), []byte(`"size":999`), 1)
		tr.do("PUT", "/v2/app/manifests/wrong", wrong, "Content-Type", ocispec.MediaTypeImageManifest).wantError(t, 400, CodeManifestInvalid)
		idx, _ := json.Marshal(ocispec.Index{Versioned: versioned2, MediaType: ocispec.MediaTypeImageIndex,
			Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: missing, Size: 7}}})
		tr.do("PUT", "/v2/app/manifests/idx", idx, "Content-Type", ocispec.MediaTypeImageIndex).wantError(t, 400, CodeManifestBlobUnknown)
	})

	t.Run("malformed", func(t *testing.T) {
		for name, body := range map[string]string{
			"not json":      `{"schemaVersion":`,
			"array":         `[]`,
			"schema 1":      `{"schemaVersion":1,"fsLayers":[]}`,
			"no config":     `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`,
			"bad digest":    `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:abc","size":1},"layers":[]}`,
			"type mismatch": `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`,
			"bad data":      `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:` + sha256Hex + `","size":1,"data":"eA=="},"layers":[]}`,
		} {
			tr.do("PUT", "/v2/app/manifests/malformed", []byte(body), "Content-Type", ocispec.MediaTypeImageManifest).wantError(t, 400, CodeManifestInvalid)
			_ = name
		}
	})

	t.Run("delete", func(t *testing.T) {
		tr.do("PUT", "/v2/app/manifests/v2", m, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
		tr.do("DELETE", "/v2/app/manifests/v2", nil).want(t, 202)
		tr.do("GET", "/v2/app/manifests/v2", nil).wantError(t, 404, CodeManifestUnknown)
		tr.do("GET", "/v2/app/manifests/v1", nil).want(t, 200)
		tr.do("DELETE", "/v2/app/manifests/"+string(md), nil).want(t, 202)
		tr.do("GET", "/v2/app/manifests/"+string(md), nil).wantError(t, 404, CodeManifestUnknown)
		tr.do("GET", "/v2/app/manifests/v1", nil).wantError(t, 404, CodeManifestUnknown) // its tags went with it
		tr.do("DELETE", "/v2/app/manifests/"+string(md), nil).wantError(t, 404, CodeManifestUnknown)
	})
}

var versioned2 = specs.Versioned{SchemaVersion: 2}

func TestDeleteDisabled(t *testing.T) {
	tr := newTestRegistry(t, WithDelete(false))
	d := tr.pushBlob("a", []byte("x"))
	tr.do("DELETE", "/v2/a/blobs/"+string(d), nil).wantError(t, 405, CodeUnsupported)
	tr.do("DELETE", "/v2/a/manifests/latest", nil).wantError(t, 405, CodeUnsupported)
}

func TestIndexAndReferrers(t *testing.T) {
	tr := newTestRegistry(t)
	m, md := tr.image("app", nil)
	tr.do("PUT", "/v2/app/manifests/"+string(md), m, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
	idx, _ := json.Marshal(ocispec.Index{Versioned: versioned2, MediaType: MediaTypeDockerManifestList,
		Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(m)), Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}}})
	r := tr.do("PUT", "/v2/app/manifests/multi", idx, "Content-Type", MediaTypeDockerManifestList).want(t, 201)
	if g := tr.do("GET", "/v2/app/manifests/multi", nil).want(t, 200); g.Header.Get("Content-Type") != MediaTypeDockerManifestList {
		t.Errorf("index Content-Type %q", g.Header.Get("Content-Type"))
	}
	_ = r

	// Two artifacts refer to the image (one pushed before it would even
	// have to exist: the subject need not), with different types.
	empty := tr.pushBlob("app", []byte("{}"))
	artifact := func(at string, ann string) ([]byte, digest.Digest) {
		a, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "artifactType": at,
			"config":      ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: empty, Size: 2},
			"layers":      []ocispec.Descriptor{},
			"subject":     ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(m))},
			"annotations": map[string]string{"note": ann},
		})
		return a, digest.FromBytes(a)
	}
	sbom, sbomD := artifact("application/vnd.example.sbom", "one")
	sig, sigD := artifact("application/vnd.example.sig", "two")
	for _, a := range [][]byte{sbom, sig} {
		r := tr.do("PUT", "/v2/app/manifests/"+string(digest.FromBytes(a)), a, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
		if r.Header.Get("OCI-Subject") != string(md) {
			t.Errorf("OCI-Subject %q, want %s", r.Header.Get("OCI-Subject"), md)
		}
	}
	var list ocispec.Index
	r = tr.do("GET", "/v2/app/referrers/"+string(md), nil).want(t, 200)
	if r.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex || json.Unmarshal(r.body, &list) != nil || len(list.Manifests) != 2 || list.SchemaVersion != 2 {
		t.Fatalf("referrers: %v %s", r.Header, r.body)
	}
	for _, desc := range list.Manifests {
		if desc.Digest == sbomD && (desc.ArtifactType != "application/vnd.example.sbom" || desc.Annotations["note"] != "one" || desc.Size != int64(len(sbom))) {
			t.Errorf("sbom descriptor %+v", desc)
		}
	}
	r = tr.do("GET", "/v2/app/referrers/"+string(md)+"?artifactType=application/vnd.example.sig", nil).want(t, 200)
	list = ocispec.Index{}
	json.Unmarshal(r.body, &list)
	if r.Header.Get("OCI-Filters-Applied") != "artifactType" || len(list.Manifests) != 1 || list.Manifests[0].Digest != sigD {
		t.Errorf("filtered referrers: %v %s", r.Header, r.body)
	}
	// Deleting a referrer drops it from the list.
	tr.do("DELETE", "/v2/app/manifests/"+string(sigD), nil).want(t, 202)
	list = ocispec.Index{}
	json.Unmarshal(tr.do("GET", "/v2/app/referrers/"+string(md), nil).want(t, 200).body, &list)
	if len(list.Manifests) != 1 || list.Manifests[0].Digest != sbomD {
		t.Errorf("after delete: %+v", list.Manifests)
	}
	// No referrers, and no repository: an empty index, never 404.
	for _, p := range []string{"/v2/app/referrers/" + string(digest.FromString("x")), "/v2/nope/referrers/" + string(md)} {
		r := tr.do("GET", p, nil).want(t, 200)
		if !strings.Contains(string(r.body), `"manifests":[]`) {
			t.Errorf("%s: %s", p, r.body)
		}
	}
	tr.do("GET", "/v2/app/referrers/sha256:zzz", nil).wantError(t, 400, CodeDigestInvalid)
}

func TestTagsAndCatalogPaging(t *testing.T) {
	tr := newTestRegistry(t)
	m, _ := tr.image("team/app", nil)
	want := []string{"1.0", "2.0", "B", "a", "latest"}
	for _, tag := range want {
		tr.do("PUT", "/v2/team/app/manifests/"+tag, m, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
	}
	var tl struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	json.Unmarshal(tr.do("GET", "/v2/team/app/tags/list", nil).want(t, 200).body, &tl)
	if tl.Name != "team/app" || strings.Join(tl.Tags, ",") != strings.Join(want, ",") {
		t.Errorf("tags %+v", tl)
	}
	// Walk the pages by their Link headers.
	var got []string
	next := "/v2/team/app/tags/list?n=2"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		r := tr.do("GET", next, nil).want(t, 200)
		tl.Tags = nil
		json.Unmarshal(r.body, &tl)
		got = append(got, tl.Tags...)
		next = ""
		if l := r.Header.Get("Link"); l != "" {
			next = l[1:strings.Index(l, ">")]
			if !strings.HasSuffix(l, `rel="next"`) {
				t.Errorf("Link %q", l)
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("paged tags %v", got)
	}
	r := tr.do("GET", "/v2/team/app/tags/list?n=0", nil).want(t, 200)
	if r.Header.Get("Link") != "" || !strings.Contains(string(r.body), `"tags":[]`) {
		t.Errorf("n=0: %v %s", r.Header, r.body)
	}
	json.Unmarshal(tr.do("GET", "/v2/team/app/tags/list?last=B", nil).want(t, 200).body, &tl)
	if strings.Join(tl.Tags, ",") != "a,latest" {
		t.Errorf("last=B: %v", tl.Tags)
	}

	tr.pushBlob("team", []byte("x"))
	tr.pushBlob("team-b", []byte("x"))
	tr.pushBlob("a/b/c", []byte("x"))
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	json.Unmarshal(tr.do("GET", "/v2/_catalog", nil).want(t, 200).body, &cat)
	if strings.Join(cat.Repositories, ",") != "a/b/c,team,team-b,team/app" {
		t.Errorf("catalog %v", cat.Repositories)
	}
	r = tr.do("GET", "/v2/_catalog?n=2", nil).want(t, 200)
	json.Unmarshal(r.body, &cat)
	if strings.Join(cat.Repositories, ",") != "a/b/c,team" || !strings.Contains(r.Header.Get("Link"), "last=team") {
		t.Errorf("catalog page: %v %v", cat.Repositories, r.Header.Get("Link"))
	}
}

// denyAll is an Authorizer that records what it was asked and refuses
// pushes.
type denyPush struct {
	mu   sync.Mutex
	seen [][]Access
}

func (d *denyPush) Authorize(r *http.Request, access []Access) error {
	d.mu.Lock()
	d.seen = append(d.seen, access)
	d.mu.Unlock()
	for _, a := range access {
		for _, act := range a.Actions {
			if act == "push" {
				return &Error{Code: CodeUnauthorized, Message: "authentication required",
					Header: http.Header{"Www-Authenticate": {`Bearer realm="x"`}}}
			}
		}
	}
	return nil
}

func TestAuthorizerHook(t *testing.T) {
	az := &denyPush{}
	tr := newTestRegistry(t, WithAuthorizer(az))
	tr.do("GET", "/v2/", nil).want(t, 200)
	r := tr.do("POST", "/v2/a/blobs/uploads/?mount="+string(digest.FromString("x"))+"&from=b", nil)
	r.wantError(t, 401, CodeUnauthorized)
	if r.Header.Get("WWW-Authenticate") == "" {
		t.Error("no WWW-Authenticate")
	}
	tr.do("GET", "/v2/a/tags/list", nil).wantError(t, 404, CodeNameUnknown)
	az.mu.Lock()
	defer az.mu.Unlock()
	want := fmt.Sprint([][]Access{nil,
		{{"repository", "a", []string{"pull", "push"}}, {"repository", "b", []string{"pull"}}},
		{{"repository", "a", []string{"pull"}}}})
	if fmt.Sprint(az.seen) != want {
		t.Errorf("authorizer saw %v\nwant %v", az.seen, want)
	}
	// With an Authorizer, a mount without from= is not attempted.
	store := tr.store
	d := digest.FromString("blob")
	if err := store.putBlobBytes(d, []byte("blob")); err != nil {
		t.Fatal(err)
	}
	reg := New(store, WithAuthorizer(allowAll{}))
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, httptest.NewRequest("POST", "/v2/c/blobs/uploads/?mount="+string(d), nil))
	if rec.Code != 202 {
		t.Errorf("anonymous mount with an Authorizer: %d, want 202 (a fresh session)", rec.Code)
	}
}

type allowAll struct{}

func (allowAll) Authorize(*http.Request, []Access) error { return nil }

func TestUploadExpiry(t *testing.T) {
	tr := newTestRegistry(t, WithUploadExpiry(time.Hour))
	loc := tr.do("POST", "/v2/a/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(filepath.Join(tr.store.Root(), uploadsDir, id, "data"), old, old)
	tr.do("PATCH", loc, []byte("x")).wantError(t, 404, CodeBlobUploadUnknown)
	if _, err := os.Stat(filepath.Join(tr.store.Root(), uploadsDir, id)); !os.IsNotExist(err) {
		t.Errorf("expired session still on disk: %v", err)
	}
	// PurgeUploads sweeps idle sessions and leaves fresh ones.
	loc2 := tr.do("POST", "/v2/a/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
	loc3 := tr.do("POST", "/v2/a/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
	id3 := loc3[strings.LastIndex(loc3, "/")+1:]
	os.Chtimes(filepath.Join(tr.store.Root(), uploadsDir, id3, "data"), old, old)
	n, err := tr.store.PurgeUploads(time.Hour)
	if err != nil || n != 1 {
		t.Errorf("PurgeUploads = %d, %v; want 1", n, err)
	}
	tr.do("GET", loc2, nil).want(t, 204)
	tr.do("GET", loc3, nil).wantError(t, 404, CodeBlobUploadUnknown)
}

// Many clients push the same blobs into several repositories at once:
// every push succeeds, each blob is stored once, and each repository
// links what it pushed.
func TestConcurrentPushes(t *testing.T) {
	tr := newTestRegistry(t)
	blobs := [][]byte{randomBytes(t, 1<<20), randomBytes(t, 3<<20), randomBytes(t, 10)}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			repo := fmt.Sprintf("repo%d", i%4)
			for _, b := range blobs {
				d := digest.FromBytes(b)
				req, _ := http.NewRequest("POST", tr.url+"/v2/"+repo+"/blobs/uploads/?digest="+string(d), bytes.NewReader(b))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 201 {
					errs <- fmt.Errorf("push %s to %s: %d", d, repo, resp.StatusCode)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	tr.store.WalkBlobs(func(digest.Digest, int64) error { n++; return nil })
	if n != len(blobs) {
		t.Errorf("%d blobs stored, want %d", n, len(blobs))
	}
	for i := 0; i < 4; i++ {
		for _, b := range blobs {
			if got := tr.do("GET", fmt.Sprintf("/v2/repo%d/blobs/%s", i, digest.FromBytes(b)), nil).want(t, 200); !bytes.Equal(got.body, b) {
				t.Errorf("repo%d: blob differs", i)
			}
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(tr.store.Root(), uploadsDir)); len(entries) != 0 {
		t.Errorf("%d upload sessions left", len(entries))
	}
}

// Requests racing on one session take turns: one PUT finishes it, the
// others find it gone, and none writes into the blob it became.
func TestConcurrentFinishOfOneSession(t *testing.T) {
	tr := newTestRegistry(t)
	data := randomBytes(t, 4<<20)
	d := digest.FromBytes(data)
	loc := tr.do("POST", "/v2/race/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("PUT", tr.url+loc+"?digest="+string(d), bytes.NewReader(data))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	created := 0
	for c := range codes {
		switch c {
		case 201:
			created++
		case 404:
		default:
			t.Errorf("racing PUT: status %d", c)
		}
	}
	if created != 1 {
		t.Errorf("%d PUTs finished the session, want 1", created)
	}
	if got := tr.do("GET", "/v2/race/blobs/"+string(d), nil).want(t, 200); !bytes.Equal(got.body, data) {
		t.Errorf("blob corrupted: %d bytes", len(got.body))
	}
}
