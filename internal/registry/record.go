package registry

import (
	"errors"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
)

// Records are built and committed by the image package (NewRecord,
// Commit). What a failed pull added is taken back by the journal below.
// TODO(image): image's own journal (begin, GC lock, rollback) is
// unexported; exporting it as Begin/AddBlob/AddLayer/End would replace
// this one and make the rollback hold the metadata lock while it decides.

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
