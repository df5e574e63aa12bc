package image

import (
	"encoding/json"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image record: what docker images, inspect and history
// show without opening a blob, and what GC needs to keep.
type Image struct {
	// ID is the digest of the config blob, as Docker's image ID.
	ID digest.Digest `json:"id"`
	// ManifestDigest and ManifestMediaType name the manifest blob in
	// content (an OCI or Docker schema 2 manifest).
	ManifestDigest    digest.Digest `json:"manifestDigest"`
	ManifestMediaType string        `json:"manifestMediaType"`
	// IndexDigest is the index (manifest list) the manifest was picked
	// from, when there was one. The index blob is kept if present.
	IndexDigest digest.Digest `json:"indexDigest,omitempty"`

	// Config is the parsed config blob.
	Config v1.Image `json:"config"`
	// Docker-only config fields the OCI type drops.
	Comment       string          `json:"comment,omitempty"`
	DockerVersion string          `json:"dockerVersion,omitempty"`
	Healthcheck   json.RawMessage `json:"healthcheck,omitempty"`
	OnBuild       []string        `json:"onBuild,omitempty"`
	Shell         []string        `json:"shell,omitempty"`

	// Layers are the manifest's layer descriptors (blobs in content);
	// DiffIDs, ChainIDs and LayerSizes are per layer, in the same order:
	// the uncompressed digest, the snapshot's chain ID and what the
	// unpacked files take on disk (as Docker sizes layers).
	Layers     []v1.Descriptor `json:"layers"`
	DiffIDs    []digest.Digest `json:"diffIDs"`
	ChainIDs   []digest.Digest `json:"chainIDs"`
	LayerSizes []int64         `json:"layerSizes"`

	Created time.Time `json:"created"`
	// Size is the sum of LayerSizes, the SIZE docker images shows.
	Size int64 `json:"size"`

	// RepoTags and RepoDigests are normalized references
	// ("docker.io/library/busybox:latest"); Familiar shortens them.
	RepoTags    []string          `json:"repoTags,omitempty"`
	RepoDigests []string          `json:"repoDigests,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	LastTagTime time.Time         `json:"lastTagTime,omitzero"`
}

// TopChainID is the chain ID of the image's top layer: what a container's
// snapshot is prepared from. It is "" for an image without layers.
func (img *Image) TopChainID() digest.Digest {
	if len(img.ChainIDs) == 0 {
		return ""
	}
	return img.ChainIDs[len(img.ChainIDs)-1]
}

// dockerConfig holds the fields of a Docker image config that v1.Image
// has no place for.
type dockerConfig struct {
	Comment       string `json:"comment"`
	DockerVersion string `json:"docker_version"`
	Config        struct {
		Healthcheck json.RawMessage `json:"Healthcheck"`
		OnBuild     []string        `json:"OnBuild"`
		Shell       []string        `json:"Shell"`
	} `json:"config"`
}

// setConfig parses a config blob into the record.
func (img *Image) setConfig(raw []byte) error {
	var cfg v1.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	var extra dockerConfig
	_ = json.Unmarshal(raw, &extra) // same document; fields are optional
	img.Config = cfg
	img.Comment = extra.Comment
	img.DockerVersion = extra.DockerVersion
	if len(extra.Config.Healthcheck) > 0 && string(extra.Config.Healthcheck) != "null" {
		img.Healthcheck = extra.Config.Healthcheck
	}
	img.OnBuild = extra.Config.OnBuild
	img.Shell = extra.Config.Shell
	img.Labels = cfg.Config.Labels
	if cfg.Created != nil {
		img.Created = *cfg.Created
	}
	return nil
}
