package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/snapshot"
)

// The image package builds records from configs and commits them with
// unexported functions (imageFromConfig, setConfig, commit, the journal).
// Until it exports them, this file does the same through exported APIs.
//
// TODO(image): export, and use here instead of this file:
//
//	// NewRecord parses a stored config blob into a record for the
//	// manifest's layers (imageFromConfig).
//	func (s *Service) NewRecord(config digest.Digest, layers []v1.Descriptor) (*Image, error)
//	// Commit checks that the records' blobs and layers are present, fills
//	// their sizes and writes them in one transaction, adding RepoTags and
//	// RepoDigests to an existing record of the same ID (commit + fillSizes).
//	func (s *Service) Commit(imgs ...*Image) error
//	// Begin takes the GC lock shared and returns a journal whose End(&err)
//	// rolls back what was added on failure (begin, putBlob, unpackLayer's
//	// journaling). Registry would then record into it with
//	// AddBlob/AddLayer.
//	func (s *Service) Begin() (*Journal, error)

// newRecord parses a config blob into an image record.
func newRecord(id digest.Digest, raw []byte, layers []ocispec.Descriptor) (*image.Image, error) {
	if len(raw) > maxConfigSize {
		return nil, fmt.Errorf("config %s is larger than %d bytes: %w", id, maxConfigSize, errdefs.ErrInvalidArgument)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("config %s is not a valid image config: %v: %w", id, err, errdefs.ErrInvalidArgument)
	}
	var extra struct {
		Comment       string `json:"comment"`
		DockerVersion string `json:"docker_version"`
		Config        struct {
			Healthcheck json.RawMessage `json:"Healthcheck"`
			OnBuild     []string        `json:"OnBuild"`
			Shell       []string        `json:"Shell"`
		} `json:"config"`
	}
	_ = json.Unmarshal(raw, &extra) // same document; the fields are optional
	if t := cfg.RootFS.Type; t != "layers" {
		return nil, fmt.Errorf("config %s: rootfs type %q, want \"layers\": %w", id, t, errdefs.ErrInvalidArgument)
	}
	if n, m := len(cfg.RootFS.DiffIDs), len(layers); n != m {
		return nil, fmt.Errorf("config %s lists %d layers (rootfs.diff_ids) but the manifest has %d: %w", id, n, m, errdefs.ErrInvalidArgument)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("config %s: invalid diff_id %q: %w", id, d, errdefs.ErrInvalidArgument)
		}
	}
	img := &image.Image{
		ID:            id,
		Config:        cfg,
		Comment:       extra.Comment,
		DockerVersion: extra.DockerVersion,
		OnBuild:       extra.Config.OnBuild,
		Shell:         extra.Config.Shell,
		Labels:        cfg.Config.Labels,
		Layers:        slices.Clone(layers),
		DiffIDs:       slices.Clone(cfg.RootFS.DiffIDs),
	}
	if h := extra.Config.Healthcheck; len(h) > 0 && string(h) != "null" {
		img.Healthcheck = h
	}
	if cfg.Created != nil {
		img.Created = *cfg.Created
	}
	if img.Layers == nil {
		img.Layers = []ocispec.Descriptor{}
	}
	img.ChainIDs = snapshot.ChainIDs(img.DiffIDs)
	return img, nil
}

// fillSizes sets the record's layer sizes from the snapshot store.
func (p *pull) fillSizes(img *image.Image) error {
	layers, err := p.svc.Snapshots.Layers()
	if err != nil {
		return err
	}
	size := make(map[digest.Digest]int64, len(layers))
	for _, l := range layers {
		size[l.ChainID] = l.Size
	}
	img.LayerSizes = make([]int64, len(img.ChainIDs))
	img.Size = 0
	for i, c := range img.ChainIDs {
		img.LayerSizes[i] = size[c]
		img.Size += size[c]
	}
	return nil
}

// commit writes the record, keeping the names an existing record of the
// same ID has. TODO(image): the read and the write are two transactions;
// image.Service.Commit would make them one.
func (p *pull) commit(img *image.Image) error {
	blobs := []digest.Digest{img.ManifestDigest, img.ID}
	for _, l := range img.Layers {
		blobs = append(blobs, l.Digest)
	}
	for _, d := range blobs {
		if _, err := p.svc.Content.Stat(d); err != nil {
			return fmt.Errorf("blob %s vanished while storing image %s (a concurrent removal?); retry: %w", d, img.ID, errdefs.ErrUnavailable)
		}
	}
	for _, c := range img.ChainIDs {
		if !p.svc.Snapshots.Has(c) {
			return fmt.Errorf("layer %s vanished while storing image %s (a concurrent removal?); retry: %w", c, img.ID, errdefs.ErrUnavailable)
		}
	}
	rec := img
	if old, err := p.svc.Meta.Get(img.ID.String()); err == nil {
		rec = old
		added := false
		for _, t := range img.RepoTags {
			if !slices.Contains(rec.RepoTags, t) {
				rec.RepoTags = append(rec.RepoTags, t)
				added = true
			}
		}
		for _, d := range img.RepoDigests {
			if !slices.Contains(rec.RepoDigests, d) {
				rec.RepoDigests = append(rec.RepoDigests, d)
			}
		}
		if added {
			rec.LastTagTime = time.Now().UTC()
		}
		if rec.IndexDigest == "" && rec.ManifestDigest == img.ManifestDigest {
			rec.IndexDigest = img.IndexDigest
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	if err := p.svc.Meta.Put(rec); err != nil {
		return fmt.Errorf("store image %s: %w", img.ID, err)
	}
	if rec != img {
		*img = *rec
	}
	return nil
}

// journal records what one pull added, so a failure takes exactly that
// back out. Its methods are safe for concurrent use.
type journal struct {
	svc    *image.Service
	mu     sync.Mutex
	blobs  []digest.Digest
	layers map[digest.Digest]int // chain ID -> position in its chain
}

func (j *journal) addBlob(d digest.Digest) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.blobs = append(j.blobs, d)
}

func (j *journal) addLayer(c digest.Digest, index int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.layers == nil {
		j.layers = map[digest.Digest]int{}
	}
	j.layers[c] = index
}

// rollback removes what the journal added that no record references,
// layers above before the layers below them.
func (j *journal) rollback() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.blobs) == 0 && len(j.layers) == 0 {
		return nil
	}
	imgs, err := j.svc.Meta.List()
	if err != nil {
		return err
	}
	usedBlobs, usedChains := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for _, img := range imgs {
		usedBlobs[img.ID], usedBlobs[img.ManifestDigest] = true, true
		if img.IndexDigest != "" {
			usedBlobs[img.IndexDigest] = true
		}
		for _, l := range img.Layers {
			usedBlobs[l.Digest] = true
		}
		for _, c := range img.ChainIDs {
			usedChains[c] = true
		}
	}
	var errs []error
	for _, d := range j.blobs {
		if !usedBlobs[d] {
			if err := j.svc.Content.Delete(d); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	chains := make([]digest.Digest, 0, len(j.layers))
	for c := range j.layers {
		chains = append(chains, c)
	}
	slices.SortFunc(chains, func(a, b digest.Digest) int { return j.layers[b] - j.layers[a] })
	for _, c := range chains {
		if !usedChains[c] {
			if err := j.svc.Snapshots.Remove(c); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	j.blobs, j.layers = nil, nil
	return errors.Join(errs...)
}
