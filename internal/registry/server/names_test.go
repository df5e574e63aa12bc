package server

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

const (
	sha256Hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	sha512Hex = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
)

func TestValidateName(t *testing.T) {
	good := []string{"a", "busybox", "library/busybox", "a.b", "a_b", "a__b", "a-b", "a---b", "team/app/v1", "0", "a1/b2", strings.Repeat("a", 255)}
	bad := []string{"", "A", "a/", "/a", "a//b", "..", "a/../b", "../a", "a/..", ".a", "a.", "_a", "a_", "a___b", "a._b", "a-", "-a", "a/_layers",
		"a/.hidden", "a b", "a\x00b", "a%2fb", "a\\b", "é", strings.Repeat("a", 256), "a/B"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateName(n); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateName(%q) = %v, want invalid argument", n, err)
		}
	}
}

func TestValidateTag(t *testing.T) {
	good := []string{"latest", "v1.0", "_x", "A-b_c.d", "1", strings.Repeat("a", 128)}
	bad := []string{"", ".", "..", ".a", "-a", "a/b", "a:b", "a b", strings.Repeat("a", 129), "a\x00"}
	for _, tg := range good {
		if err := ValidateTag(tg); err != nil {
			t.Errorf("ValidateTag(%q) = %v", tg, err)
		}
	}
	for _, tg := range bad {
		if err := ValidateTag(tg); err == nil {
			t.Errorf("ValidateTag(%q) = nil, want error", tg)
		}
	}
}

func TestParseDigestAndReference(t *testing.T) {
	good := []string{"sha256:" + sha256Hex, "sha512:" + sha512Hex}
	bad := []string{"sha256:" + sha256Hex[:63], "sha256:" + sha256Hex + "0", "sha256:" + strings.ToUpper(sha256Hex), "sha384:" + sha256Hex,
		"sha512:" + sha256Hex, "md5:abc", "sha256:", ":" + sha256Hex, "sha256:../../etc/passwd", "sha256:baddigeststring", "sha256"}
	for _, d := range good {
		if _, err := ParseDigest(d); err != nil {
			t.Errorf("ParseDigest(%q) = %v", d, err)
		}
		ref, err := ParseReference(d)
		if err != nil || string(ref.Digest) != d || ref.Tag != "" {
			t.Errorf("ParseReference(%q) = %+v, %v", d, ref, err)
		}
	}
	for _, d := range bad {
		if _, err := ParseDigest(d); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseDigest(%q) = %v, want invalid argument", d, err)
		}
		if _, err := ParseReference(d); err == nil && strings.Contains(d, ":") {
			t.Errorf("ParseReference(%q) accepted a bad digest", d)
		}
	}
	if ref, err := ParseReference("v1.2"); err != nil || ref.Tag != "v1.2" {
		t.Errorf("ParseReference(v1.2) = %+v, %v", ref, err)
	}
}

func TestParseRoute(t *testing.T) {
	d := "sha256:" + sha256Hex
	tests := []struct {
		path string
		want route
		bad  bool
	}{
		{"/v2/", route{kind: routeBase}, false},
		{"/v2", route{kind: routeBase}, false},
		{"/v2/_catalog", route{kind: routeCatalog}, false},
		{"/v2/a/b/tags/list", route{routeTags, "a/b", ""}, false},
		{"/v2/a/manifests/latest", route{routeManifest, "a", "latest"}, false},
		{"/v2/a/blobs/" + d, route{routeBlob, "a", d}, false},
		{"/v2/a/blobs/uploads/", route{routeUpload, "a", ""}, false},
		{"/v2/a/blobs/uploads", route{routeUpload, "a", ""}, false},
		{"/v2/a/blobs/uploads/123", route{routeUpload, "a", "123"}, false},
		{"/v2/a/referrers/" + d, route{routeReferrers, "a", d}, false},
		// A repository may have endpoint words as components.
		{"/v2/x/blobs/manifests/latest", route{routeManifest, "x/blobs", "latest"}, false},
		{"/v2/x/manifests/blobs/uploads/", route{routeUpload, "x/manifests", ""}, false},
		{"/v2/tags/tags/list", route{routeTags, "tags", ""}, false},
		{"/v2/../../etc/manifests/x", route{}, true},
		{"/v2/a/../b/manifests/x", route{}, true},
		{"/v2//a/manifests/x", route{}, true},
		{"/v2/A/manifests/x", route{}, true},
		{"/v2/manifests/x", route{}, false}, // no name: not an endpoint
		{"/v3/a/manifests/x", route{}, false},
		{"/", route{}, false},
	}
	for _, tt := range tests {
		got, err := parseRoute(tt.path)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v (error %v)", tt.path, got, err, tt.want, tt.bad)
		}
	}
}

func TestValidUploadID(t *testing.T) {
	id := newUploadID()
	if !validUploadID(id) {
		t.Fatalf("newUploadID() = %q is not valid", id)
	}
	for _, bad := range []string{"", "..", "../../../../../../../../../etc/passwd", strings.ToUpper(id), id + "0", strings.Replace(id, "-", "x", 1)} {
		if validUploadID(bad) {
			t.Errorf("validUploadID(%q) = true", bad)
		}
	}
}
