package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The manifest media types the registry accepts. Docker's schema 1 is
// refused: it is deprecated, signed over a re-serialisation of itself,
// and no current client pushes it.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	// DefaultMaxManifestSize is the spec's "at least 4 megabytes", and
	// what berth's client accepts.
	DefaultMaxManifestSize = 4 << 20
)

// manifestKind says which references a manifest has and where they must be.
type manifestKind int

const (
	kindImage manifestKind = iota + 1 // config and layers: blobs in the repository
	kindIndex                         // manifests: manifests in the repository
)

var manifestKinds = map[string]manifestKind{
	ocispec.MediaTypeImageManifest: kindImage,
	MediaTypeDockerManifest:        kindImage,
	ocispec.MediaTypeImageIndex:    kindIndex,
	MediaTypeDockerManifestList:    kindIndex,
}

// manifestInfo is what the registry needs to know of a manifest it stores.
type manifestInfo struct {
	MediaType string
	Kind      manifestKind
	// Blobs must be in the repository: the config and the layers, less
	// those of non-distributable media types (pulled from their URLs).
	Blobs []ocispec.Descriptor
	// Manifests are an index's children; they must be in the repository.
	Manifests []ocispec.Descriptor
	Subject   *ocispec.Descriptor
	// ArtifactType and Annotations go into the referrers API's descriptor.
	ArtifactType string
	Annotations  map[string]string
}

// rawManifest has the fields of every accepted manifest type at once.
type rawManifest struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
	FSLayers      json.RawMessage      `json:"fsLayers"` // schema 1
}

// parseManifest validates a manifest as pushed with the given Content-Type
// header and says what it references. It checks structure only (digests,
// sizes, embedded data, media types); whether the references exist is the
// caller's question. The error is a *Error with code MANIFEST_INVALID.
func parseManifest(contentType string, data []byte) (*manifestInfo, error) {
	var raw rawManifest
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, invalidManifest("not a JSON object")
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, invalidManifest("malformed JSON: %v", err)
	}
	ct := ""
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err == nil {
			ct = mt
		}
	}
	if ct == mediaTypeDockerSchema1 || ct == mediaTypeDockerSchema1JWS || raw.MediaType == mediaTypeDockerSchema1 ||
		raw.MediaType == mediaTypeDockerSchema1JWS || (raw.FSLayers != nil && raw.MediaType == "") {
		return nil, invalidManifest("Docker schema 1 manifests are not supported: push with a client that writes schema 2 or OCI")
	}
	mt := ""
	switch {
	case manifestKinds[ct] != 0:
		mt = ct
		if raw.MediaType != "" && raw.MediaType != ct {
			return nil, invalidManifest("mediaType %q does not match the Content-Type %q", raw.MediaType, ct)
		}
	case manifestKinds[raw.MediaType] != 0:
		mt = raw.MediaType
	case raw.MediaType == "" && raw.Manifests != nil && raw.Config == nil:
		mt = ocispec.MediaTypeImageIndex
	case raw.MediaType == "" && raw.Config != nil && raw.Manifests == nil:
		mt = ocispec.MediaTypeImageManifest
	default:
		t := raw.MediaType
		if t == "" {
			t = ct
		}
		return nil, invalidManifest("unsupported manifest media type %q (want an OCI image manifest or index, or a Docker schema 2 manifest or manifest list)", t)
	}
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		return nil, invalidManifest("schemaVersion must be 2")
	}
	info := &manifestInfo{MediaType: mt, Kind: manifestKinds[mt], ArtifactType: raw.ArtifactType, Annotations: raw.Annotations}
	switch info.Kind {
	case kindImage:
		if raw.Config == nil {
			return nil, invalidManifest("image manifest has no config")
		}
		if raw.Manifests != nil {
			return nil, invalidManifest("image manifest has a manifests field")
		}
		if err := checkDescriptor("config", *raw.Config); err != nil {
			return nil, err
		}
		info.Blobs = append(info.Blobs, *raw.Config)
		for i, l := range raw.Layers {
			if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), l); err != nil {
				return nil, err
			}
			if !nonDistributable(l.MediaType) {
				info.Blobs = append(info.Blobs, l)
			}
		}
		if info.ArtifactType == "" {
			info.ArtifactType = raw.Config.MediaType
		}
	case kindIndex:
		if raw.Manifests == nil {
			return nil, invalidManifest("index has no manifests field")
		}
		if raw.Config != nil || raw.Layers != nil {
			return nil, invalidManifest("index has config or layers")
		}
		for i, m := range raw.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), m); err != nil {
				return nil, err
			}
		}
		info.Manifests = raw.Manifests
	}
	if raw.Subject != nil {
		if err := checkDescriptor("subject", *raw.Subject); err != nil {
			return nil, err
		}
		info.Subject = raw.Subject
	}
	return info, nil
}

// nonDistributable layers are not pushed to registries; their manifests
// name URLs to fetch them from instead.
func nonDistributable(mediaType string) bool {
	return strings.HasPrefix(mediaType, "application/vnd.oci.image.layer.nondistributable.") ||
		mediaType == mediaTypeDockerForeignLayer
}

func checkDescriptor(field string, d ocispec.Descriptor) error {
	if d.MediaType == "" {
		return invalidManifest("%s: no mediaType", field)
	}
	if _, err := ParseDigest(string(d.Digest)); err != nil {
		return invalidManifest("%s: %s", field, userText(err))
	}
	if d.Size < 0 {
		return invalidManifest("%s: negative size %d", field, d.Size)
	}
	// Embedded data must be the content the descriptor names, or a
	// client that trusts it would use bytes nobody verified.
	if len(d.Data) > 0 {
		if int64(len(d.Data)) != d.Size {
			return invalidManifest("%s: data has %d bytes, size says %d", field, len(d.Data), d.Size)
		}
		if d.Digest.Algorithm().FromBytes(d.Data) != d.Digest {
			return invalidManifest("%s: data does not match digest %s", field, d.Digest)
		}
	}
	return nil
}

func invalidManifest(format string, args ...any) *Error {
	return &Error{Code: CodeManifestInvalid, Message: "manifest invalid: " + fmt.Sprintf(format, args...)}
}

// referrerDescriptor is manifest d's entry in its subject's referrers list.
func (m *manifestInfo) referrerDescriptor(d digest.Digest, size int64) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: m.MediaType, Digest: d, Size: size, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
}
