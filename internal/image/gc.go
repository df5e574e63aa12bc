package image

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/reference"
)

// ingestGrace is how old an abandoned content temp must be before GC
// removes it: writers that take gc.lock are excluded while GC runs, but a
// writer that does not (a pull in another process, say) must not lose a
// temp it is still filling.
const ingestGrace = time.Hour

// GCResult says what a collection removed.
type GCResult struct {
	BlobsRemoved   int
	LayersRemoved  int
	BytesReclaimed int64 // blob bytes plus the unpacked size of removed layers
}

// GC removes every blob and layer no image record needs and no container
// holds: extraRoots returns the chain IDs containers' snapshots are made
// from (their ancestors are kept too). It also sweeps abandoned ingest
// temps.
func (s *Service) GC(ctx context.Context, extraRoots func() ([]digest.Digest, error)) (GCResult, error) {
	var res GCResult
	unlock, err := s.lockGC(unix.LOCK_EX)
	if err != nil {
		return res, err
	}
	defer unlock()
	var blobs, chains map[digest.Digest]bool
	if err := s.Meta.view(func(tx *bolt.Tx) error {
		blobs, chains, err = references(tx)
		return err
	}); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	layers, err := s.Snapshots.Layers()
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	parents := map[digest.Digest]digest.Digest{}
	sizes := map[digest.Digest]int64{}
	for _, l := range layers {
		parents[l.ChainID] = l.Parent
		sizes[l.ChainID] = l.Size
	}
	if extraRoots != nil {
		roots, err := extraRoots()
		if err != nil {
			return res, fmt.Errorf("gc: roots: %w", err)
		}
		for _, c := range roots {
			for c != "" && !chains[c] {
				chains[c] = true
				c = parents[c]
			}
		}
	}
	var errs []error
	var doomed []digest.Digest
	err = s.Content.Walk(func(d digest.Digest, size int64) error {
		if !blobs[d] {
			doomed = append(doomed, d)
			res.BytesReclaimed += size
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	for _, d := range doomed {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := s.Content.Delete(d); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		res.BlobsRemoved++
	}
	var dead []digest.Digest
	for _, l := range layers {
		if !chains[l.ChainID] {
			dead = append(dead, l.ChainID)
		}
	}
	for _, c := range childrenFirst(dead, parents) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := s.Snapshots.Remove(c); errdefs.IsConflict(err) {
			continue // an active snapshot stands on it: not garbage after all
		} else if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		res.LayersRemoved++
		res.BytesReclaimed += sizes[c]
	}
	if err := s.Content.CleanIngest(ingestGrace); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	return res, nil
}

// childrenFirst orders chain IDs deepest first, so no layer is removed
// before a layer stacked on it.
func childrenFirst(ids []digest.Digest, parents map[digest.Digest]digest.Digest) []digest.Digest {
	depth := func(c digest.Digest) int {
		n := 0
		for c != "" && n < 1000 {
			c = parents[c]
			n++
		}
		return n
	}
	d := map[digest.Digest]int{}
	for _, c := range ids {
		d[c] = depth(c)
	}
	out := slices.Clone(ids)
	slices.SortStableFunc(out, func(a, b digest.Digest) int { return d[b] - d[a] })
	return out
}

// RemoveItem is one line of docker rmi's output: an untagged name or a
// deleted image or layer ID.
type RemoveItem struct {
	Untagged string `json:",omitempty"`
	Deleted  string `json:",omitempty"`
}

// Remove is docker rmi. Given a name, it untags it, and deletes the image
// when that was its last name. Given an ID (or ID prefix), it removes all
// the image's names and the image, refusing without force when the names
// span several repositories. An image inUse (by a container) is not
// deleted unless force, and then its layers stay for the container. The
// blobs and layers only the deleted image used are removed at once.
func (s *Service) Remove(ctx context.Context, idOrRef string, force bool, inUse func(id digest.Digest) bool) ([]RemoveItem, error) {
	if inUse == nil {
		inUse = func(digest.Digest) bool { return false }
	}
	var items []RemoveItem
	var deleted *Image
	keepLayers := false
	err := s.Meta.update(func(tx *bolt.Tx) error {
		img, err := resolve(tx, idOrRef)
		if err != nil {
			return err
		}
		name := ""
		if named, err := ParseRef(idOrRef); err == nil {
			key := nameKey(named)
			if slices.Contains(img.RepoTags, key) || slices.Contains(img.RepoDigests, key) {
				name = key
			}
		}
		short := img.ID.Encoded()[:12]
		used := inUse(img.ID)
		if name != "" {
			drop := namesGoingWith(img, name)
			last := len(img.RepoTags)+len(img.RepoDigests) == len(drop)
			if last && used && !force {
				return fmt.Errorf("unable to remove repository reference %q (must force) - a container is using its referenced image %s: %w", Familiar(name), short, errdefs.ErrConflict)
			}
			for _, n := range drop {
				named, err := ParseRef(n)
				if err != nil {
					return err
				}
				if img, err = untag(tx, named); err != nil {
					return err
				}
				items = append(items, RemoveItem{Untagged: Familiar(n)})
			}
			if !last {
				return nil
			}
		} else {
			if repos := repositories(img); len(repos) > 1 && !force {
				return fmt.Errorf("unable to delete %s (must be forced) - image is referenced in multiple repositories: %w", short, errdefs.ErrConflict)
			}
			if used && !force {
				return fmt.Errorf("unable to delete %s (must be forced) - image is being used by a container: %w", short, errdefs.ErrConflict)
			}
			for _, n := range append(slices.Clone(img.RepoTags), img.RepoDigests...) {
				items = append(items, RemoveItem{Untagged: Familiar(n)})
			}
		}
		if err := deleteImage(tx, img); err != nil {
			return err
		}
		items = append(items, RemoveItem{Deleted: img.ID.String()})
		deleted, keepLayers = img, used
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("remove image %s: %w", truncate(idOrRef), err)
	}
	if deleted != nil {
		removed, _, err := s.sweep(ctx, []*Image{deleted}, func(*Image) bool { return keepLayers })
		for _, c := range removed {
			items = append(items, RemoveItem{Deleted: c.String()})
		}
		if err != nil {
			return items, fmt.Errorf("remove image %s: %w", truncate(idOrRef), err)
		}
	}
	return items, nil
}

// namesGoingWith lists the names removing name takes away: name, and
// when it is its repository's last tag, that repository's digest
// references too, as Docker does (a pulled or pushed image otherwise
// lingers as <none> after its tag is removed).
func namesGoingWith(img *Image, name string) []string {
	drop := []string{name}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return drop
	}
	if _, isDigest := named.(reference.Canonical); isDigest {
		return drop
	}
	for _, t := range img.RepoTags {
		if n, err := reference.ParseNormalizedNamed(t); err == nil && t != name && n.Name() == named.Name() {
			return drop // another tag of the repository stays
		}
	}
	for _, d := range img.RepoDigests {
		if n, err := reference.ParseNormalizedNamed(d); err == nil && n.Name() == named.Name() {
			drop = append(drop, d)
		}
	}
	return drop
}

// repositories is the set of repository names among an image's names.
func repositories(img *Image) []string {
	var out []string
	for _, n := range append(slices.Clone(img.RepoTags), img.RepoDigests...) {
		if named, err := reference.ParseNormalizedNamed(n); err == nil && !slices.Contains(out, named.Name()) {
			out = append(out, named.Name())
		}
	}
	return out
}

// sweep removes the blobs and layers of deleted records that no remaining
// record needs; keepLayers spares an image's layers (a container holds
// them). It returns the removed layers' chain IDs and the bytes freed.
func (s *Service) sweep(ctx context.Context, gone []*Image, keepLayers func(*Image) bool) ([]digest.Digest, int64, error) {
	unlock, err := s.lockGC(unix.LOCK_EX)
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	var blobs, chains map[digest.Digest]bool
	if err := s.Meta.view(func(tx *bolt.Tx) error {
		blobs, chains, err = references(tx)
		return err
	}); err != nil {
		return nil, 0, err
	}
	var errs []error
	var removed []digest.Digest
	var freed int64
	for _, img := range gone {
		if keepLayers(img) {
			for _, c := range img.ChainIDs {
				chains[c] = true
			}
		}
	}
	for _, img := range gone {
		cand := []digest.Digest{img.ManifestDigest, img.ID}
		if img.IndexDigest != "" {
			cand = append(cand, img.IndexDigest)
		}
		for _, l := range img.Layers {
			cand = append(cand, l.Digest)
		}
		for _, d := range cand {
			if blobs[d] {
				continue
			}
			blobs[d] = true // once
			size, err := s.Content.Stat(d)
			if errdefs.IsNotFound(err) {
				continue
			}
			if err := s.Content.Delete(d); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
			freed += size
		}
		for i := len(img.ChainIDs) - 1; i >= 0; i-- {
			if err := ctx.Err(); err != nil {
				return removed, freed, err
			}
			c := img.ChainIDs[i]
			if chains[c] {
				continue
			}
			chains[c] = true
			if !s.Snapshots.Has(c) {
				continue
			}
			if err := s.Snapshots.Remove(c); errdefs.IsConflict(err) {
				continue // an active snapshot stands on it
			} else if err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, c)
			if i < len(img.LayerSizes) {
				freed += img.LayerSizes[i]
			}
		}
	}
	return removed, freed, errors.Join(errs...)
}

// PruneReport is docker image prune's result.
type PruneReport struct {
	Items          []RemoveItem
	SpaceReclaimed int64
}

// Prune removes dangling (untagged) images, or with all every image no
// container uses (inUse), and what only they needed.
func (s *Service) Prune(ctx context.Context, all bool, inUse func(id digest.Digest) bool) (PruneReport, error) {
	var rep PruneReport
	if inUse == nil {
		inUse = func(digest.Digest) bool { return false }
	}
	var gone []*Image
	err := s.Meta.update(func(tx *bolt.Tx) error {
		imgs, err := allImages(tx)
		if err != nil {
			return err
		}
		for _, img := range imgs {
			if inUse(img.ID) || (!all && len(img.RepoTags) > 0) {
				continue
			}
			for _, n := range append(slices.Clone(img.RepoTags), img.RepoDigests...) {
				rep.Items = append(rep.Items, RemoveItem{Untagged: Familiar(n)})
			}
			if err := deleteImage(tx, img); err != nil {
				return err
			}
			rep.Items = append(rep.Items, RemoveItem{Deleted: img.ID.String()})
			gone = append(gone, img)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("prune images: %w", err)
	}
	if len(gone) == 0 {
		return rep, nil
	}
	removed, freed, err := s.sweep(ctx, gone, func(*Image) bool { return false })
	for _, c := range removed {
		rep.Items = append(rep.Items, RemoveItem{Deleted: c.String()})
	}
	rep.SpaceReclaimed = freed
	if err != nil {
		return rep, fmt.Errorf("prune images: %w", err)
	}
	return rep, nil
}

// DiskUsage is the images part of docker system df.
type DiskUsage struct {
	Images      int   // all images
	Active      int   // images some container uses
	Size        int64 // unpacked size of all layers, shared layers counted once
	Reclaimable int64 // the part of Size no used image needs
	PerImage    []ImageUsage
}

// ImageUsage is one row of docker system df -v's images table.
type ImageUsage struct {
	ID         digest.Digest
	RepoTags   []string // familiar
	Created    time.Time
	Size       int64 // all its layers
	SharedSize int64 // its layers other images have too
	UniqueSize int64 // Size - SharedSize
	InUse      bool
}

// DiskUsage reports how much the images take and how much removing the
// unused ones would free.
func (s *Service) DiskUsage(inUse func(id digest.Digest) bool) (DiskUsage, error) {
	var du DiskUsage
	if inUse == nil {
		inUse = func(digest.Digest) bool { return false }
	}
	imgs, err := s.Meta.List()
	if err != nil {
		return du, fmt.Errorf("disk usage: %w", err)
	}
	users := map[digest.Digest]int{}
	size := map[digest.Digest]int64{}
	needed := map[digest.Digest]bool{}
	for _, img := range imgs {
		used := inUse(img.ID)
		for i, c := range img.ChainIDs {
			users[c]++
			if i < len(img.LayerSizes) {
				size[c] = img.LayerSizes[i]
			}
			if used {
				needed[c] = true
			}
		}
	}
	for c, n := range size {
		du.Size += n
		if !needed[c] {
			du.Reclaimable += n
		}
	}
	du.Images = len(imgs)
	for _, img := range imgs {
		u := ImageUsage{ID: img.ID, RepoTags: familiarAll(img.RepoTags), Created: img.Created, InUse: inUse(img.ID)}
		seen := map[digest.Digest]bool{}
		for _, c := range img.ChainIDs {
			if seen[c] {
				continue
			}
			seen[c] = true
			u.Size += size[c]
			if users[c] > 1 {
				u.SharedSize += size[c]
			}
		}
		u.UniqueSize = u.Size - u.SharedSize
		if u.InUse {
			du.Active++
		}
		du.PerImage = append(du.PerImage, u)
	}
	return du, nil
}
