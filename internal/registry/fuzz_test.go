package registry

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzParseManifest feeds registry-supplied documents through what a pull
// reads from them: the type probe, the image manifest checks, and the
// platform choice from an index. Nothing may panic, and what is accepted
// must hold what the pull relies on.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:`+zeros+`"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,"digest":"sha256:`+zeros+`"}]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":3,"digest":"sha256:`+zeros+`","platform":{"os":"linux","architecture":"amd64"}}]}`), ocispec.MediaTypeImageIndex)
	f.Add([]byte(`{"schemaVersion":1,"name":"x"}`), "application/vnd.docker.distribution.manifest.v1+prettyjws")
	f.Add([]byte(`{"schemaVersion":2,"config":{"size":-1,"digest":"sha256:zz"},"layers":[{"size":-5}]}`), ocispec.MediaTypeImageManifest)
	f.Add([]byte(`[]`), "text/html")
	f.Fuzz(func(t *testing.T, raw []byte, headerType string) {
		d := digest.FromBytes(raw)
		m, err := parseManifest(raw, headerType, d)
		if err != nil {
			return
		}
		if !isManifestType(m.mediaType) && !isIndexType(m.mediaType) {
			t.Fatalf("accepted media type %q", m.mediaType)
		}
		if isIndexType(m.mediaType) {
			var idx ocispec.Index
			if json.Unmarshal(raw, &idx) == nil {
				if c, err := pickPlatform(idx.Manifests, ocispec.Platform{OS: "linux", Architecture: "amd64"}); err == nil {
					found := false
					for _, x := range idx.Manifests {
						found = found || x.Digest == c.Digest
					}
					if !found {
						t.Fatalf("picked %s, not in the index", c.Digest)
					}
				}
			}
			return
		}
		im, err := parseImageManifest(raw, d)
		if err != nil {
			return
		}
		if im.Config.Digest.Validate() != nil || im.Config.Size < 0 {
			t.Fatalf("accepted config descriptor %+v", im.Config)
		}
		for _, l := range im.Layers {
			if l.Digest.Validate() != nil || l.Size < 0 || !isLayerType(l.MediaType) {
				t.Fatalf("accepted layer %+v", l)
			}
		}
	})
}

// FuzzNextLink: a tag list's Link header never sends the next request
// (and with it our token) to another host.
func FuzzNextLink(f *testing.F) {
	f.Add("https://reg.example/v2/a/tags/list?n=2", `</v2/a/tags/list?last=b&n=2>; rel="next"`)
	f.Add("https://reg.example/v2/a/tags/list", `<https://evil.example/v2/a/tags/list?last=b>; rel="next"`)
	f.Add("http://127.0.0.1:5000/v2/a/tags/list", `<//evil.example/x>; rel="next", <y>; rel="prev"`)
	f.Fuzz(func(t *testing.T, page, link string) {
		next := nextLink(page, link)
		if next == "" {
			return
		}
		pu, err1 := url.Parse(page)
		nu, err2 := url.Parse(next)
		if err1 != nil || err2 != nil || pu.Host != nu.Host {
			t.Fatalf("nextLink(%q, %q) = %q: another host", page, link, next)
		}
	})
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"
