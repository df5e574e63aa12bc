package server

import (
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The parsers stand between the network and the filesystem: whatever they
// accept must build a path inside the storage root, and nothing may make
// them panic. Seeds live in testdata/fuzz/<FuzzName>/; `go test` runs
// them as regression cases, `go test -fuzz=FuzzName` explores further.

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "library/busybox", "a__b/c--d.e", "../x", "a/_layers", "a//b", "A"} {
		f.Add(s)
	}
	s := &Store{root: "/root"}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		for _, c := range strings.Split(name, "/") {
			if c == "" || c == "." || c == ".." || c[0] == '_' || c[0] == '.' || c[0] == '-' {
				t.Fatalf("accepted name %q has component %q", name, c)
			}
		}
		p, err := s.repoPath(name)
		if err != nil {
			t.Fatalf("repoPath(%q): %v", name, err)
		}
		if !strings.HasPrefix(p, "/root/"+reposDir+"/") || filepath.Clean(p) != p {
			t.Fatalf("name %q builds path %q outside the repositories dir", name, p)
		}
	})
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"latest", "sha256:" + sha256Hex, "sha512:" + sha512Hex, "sha256:baddigeststring", "..", "a:b", "_x"} {
		f.Add(s)
	}
	s := &Store{root: "/root"}
	f.Fuzz(func(t *testing.T, in string) {
		ref, err := ParseReference(in)
		if err != nil {
			return
		}
		if ref.Digest != "" {
			if ref.Tag != "" || string(ref.Digest) != in {
				t.Fatalf("ParseReference(%q) = %+v", in, ref)
			}
			p, err := s.blobPath(ref.Digest)
			if err != nil || !strings.HasPrefix(p, "/root/blobs/sha") || filepath.Clean(p) != p {
				t.Fatalf("digest %q builds %q, %v", in, p, err)
			}
			return
		}
		if ref.Tag != in || strings.ContainsAny(in, "/:\x00") || in == "." || in == ".." {
			t.Fatalf("ParseReference(%q) = %+v", in, ref)
		}
		p, err := s.tagPath("a", ref.Tag)
		if err != nil || filepath.Dir(p) != "/root/repositories/a/_manifests/tags" {
			t.Fatalf("tag %q builds %q, %v", in, p, err)
		}
	})
}

func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{"sha256:" + sha256Hex, "sha512:" + sha512Hex, "sha256:" + strings.ToUpper(sha256Hex), "sha256:../x", "md5:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, err := ParseDigest(in)
		if err != nil {
			return
		}
		// go-digest must agree that it is well formed.
		if err := d.Validate(); err != nil {
			t.Fatalf("ParseDigest accepted %q, go-digest says %v", in, err)
		}
	})
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/", "/v2/../x/tags/list", "/v2/x/blobs/blobs/uploads/id"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt, err := parseRoute(p)
		if err != nil || rt.kind == routeNone || rt.kind == routeBase || rt.kind == routeCatalog {
			return
		}
		if ValidateName(rt.name) != nil {
			t.Fatalf("parseRoute(%q) gave invalid name %q", p, rt.name)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add("application/vnd.oci.image.manifest.v1+json", []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:`+sha256Hex+`","size":0},"layers":[]}`))
	f.Add("", []byte(`{"schemaVersion":2,"manifests":[]}`))
	f.Add("application/vnd.docker.distribution.manifest.list.v2+json", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"x","digest":"sha256:`+sha256Hex+`","size":3}]}`))
	f.Add("application/json", []byte(`[1,2]`))
	f.Add("", []byte(`{"schemaVersion":1,"fsLayers":[]}`))
	f.Fuzz(func(t *testing.T, contentType string, data []byte) {
		info, err := parseManifest(contentType, data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("parseManifest error is %T, want *Error", err)
			}
			return
		}
		if manifestKinds[info.MediaType] == 0 {
			t.Fatalf("accepted media type %q", info.MediaType)
		}
		for _, d := range append(append([]ocispec.Descriptor{}, info.Blobs...), info.Manifests...) {
			if _, err := ParseDigest(string(d.Digest)); err != nil || d.Size < 0 {
				t.Fatalf("accepted descriptor %+v", d)
			}
		}
		if info.Subject != nil {
			if _, err := ParseDigest(string(info.Subject.Digest)); err != nil {
				t.Fatalf("accepted subject %+v", info.Subject)
			}
		}
	})
}
