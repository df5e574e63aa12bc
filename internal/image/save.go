package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/reference"
)

// Archive formats for Save.
const (
	// FormatDockerArchive is docker save's format as Docker 25+ writes it:
	// an OCI layout (oci-layout, index.json, blobs/sha256/...) plus
	// manifest.json and repositories, which docker load (any version
	// since 1.10), skopeo's docker-archive: and berth read.
	FormatDockerArchive = "docker-archive"
	// FormatOCIArchive is an OCI image layout in a tar, each name in
	// index.json as org.opencontainers.image.ref.name (the tag) and
	// io.containerd.image.name (the full name).
	FormatOCIArchive = "oci-archive"
)

// saveItem is one image to write and the names to write it under.
type saveItem struct {
	img  *Image
	tags []string // normalized name:tag
}

// Save writes the images refs name to w as a tar archive in format
// (FormatDockerArchive when empty). A name without a tag ("busybox")
// saves every tag of that repository, as docker save does; an image
// given by ID is saved without names. Layer blobs are written as stored
// (compressed if they were pulled or imported compressed: every reader
// named above decompresses them).
func (s *Service) Save(ctx context.Context, w io.Writer, refs []string, format string) error {
	if format == "" {
		format = FormatDockerArchive
	}
	if format != FormatDockerArchive && format != FormatOCIArchive {
		return fmt.Errorf("save: unknown format %q (use %s or %s): %w", format, FormatDockerArchive, FormatOCIArchive, errdefs.ErrInvalidArgument)
	}
	if len(refs) == 0 {
		return fmt.Errorf("save: no images given: %w", errdefs.ErrInvalidArgument)
	}
	unlock, err := s.lockGC(unix.LOCK_SH) // no blob vanishes while we copy it
	if err != nil {
		return err
	}
	defer unlock()
	items, err := s.saveItems(refs)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	// Check every blob first: a missing one should fail the save before
	// anything is written, not leave half an archive.
	for _, it := range items {
		if d := s.missingBlob(it.img); d != "" {
			return fmt.Errorf("save: image %s lacks blob %s in the content store; pull or load it again: %w", it.img.ID, d, errdefs.ErrFailedPrecondition)
		}
	}
	tw := &tarWriter{tw: tar.NewWriter(w), seen: map[string]bool{}}
	if err := tw.dir("blobs/"); err != nil {
		return err
	}
	if err := tw.dir("blobs/sha256/"); err != nil {
		return err
	}
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{}}
	var dockerManifest []dockerManifestEntry
	repositories := map[string]map[string]string{}
	for _, it := range items {
		img := it.img
		blobs := []digest.Digest{img.ManifestDigest, img.ID}
		for _, l := range img.Layers {
			blobs = append(blobs, l.Digest)
		}
		for _, d := range blobs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := s.writeBlob(tw, d); err != nil {
				return fmt.Errorf("save: image %s: %w", img.ID, err)
			}
		}
		size, err := s.Content.Stat(img.ManifestDigest)
		if err != nil {
			return fmt.Errorf("save: image %s: %w", img.ID, err)
		}
		desc := v1.Descriptor{MediaType: img.ManifestMediaType, Digest: img.ManifestDigest, Size: size}
		if len(it.tags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		entry := dockerManifestEntry{Config: blobPath(img.ID), RepoTags: []string{}, Layers: []string{}}
		for _, t := range it.tags {
			named, err := reference.ParseNormalizedNamed(t)
			if err != nil {
				return fmt.Errorf("save: stored name %q: %w", t, err)
			}
			tag := named.(reference.Tagged).Tag()
			d := desc
			d.Annotations = map[string]string{annotationImageName: t, v1.AnnotationRefName: tag}
			idx.Manifests = append(idx.Manifests, d)
			entry.RepoTags = append(entry.RepoTags, reference.FamiliarString(named))
			repo := reference.FamiliarName(named)
			if repositories[repo] == nil {
				repositories[repo] = map[string]string{}
			}
			repositories[repo][tag] = img.TopChainID().Encoded()
		}
		for _, l := range img.Layers {
			entry.Layers = append(entry.Layers, blobPath(l.Digest))
		}
		dockerManifest = append(dockerManifest, entry)
	}
	if err := tw.json("index.json", idx); err != nil {
		return err
	}
	if format == FormatDockerArchive {
		if err := tw.json("manifest.json", dockerManifest); err != nil {
			return err
		}
	}
	if err := tw.json("oci-layout", v1.ImageLayout{Version: v1.ImageLayoutVersion}); err != nil {
		return err
	}
	if format == FormatDockerArchive && len(repositories) > 0 {
		if err := tw.json("repositories", repositories); err != nil {
			return err
		}
	}
	if err := tw.tw.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

func (s *Service) saveItems(refs []string) ([]*saveItem, error) {
	all, err := s.Meta.List()
	if err != nil {
		return nil, err
	}
	var items []*saveItem
	byID := map[digest.Digest]*saveItem{}
	add := func(img *Image, tags ...string) {
		it, ok := byID[img.ID]
		if !ok {
			it = &saveItem{img: img}
			byID[img.ID] = it
			items = append(items, it)
		}
		for _, t := range tags {
			if !slices.Contains(it.tags, t) {
				it.tags = append(it.tags, t)
			}
		}
	}
	for _, ref := range refs {
		// A bare repository name saves all of its tags.
		if named, err := parseNamed(ref); err == nil && reference.IsNameOnly(named) {
			found := false
			for _, img := range all {
				for _, t := range img.RepoTags {
					if n, err := reference.ParseNormalizedNamed(t); err == nil && n.Name() == named.Name() {
						add(img, t)
						found = true
					}
				}
			}
			if found {
				continue
			}
		}
		img, err := s.Meta.Get(ref)
		if err != nil {
			return nil, err
		}
		if named, err := ParseRef(ref); err == nil && slices.Contains(img.RepoTags, named.String()) {
			add(img, named.String())
		} else {
			add(img)
		}
	}
	return items, nil
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

func (s *Service) writeBlob(tw *tarWriter, d digest.Digest) error {
	name := blobPath(d)
	if tw.seen[name] {
		return nil
	}
	f, err := s.Content.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return tw.file(name, fi.Size(), f)
}

// tarWriter writes archive members with fixed metadata, so saving the
// same images twice gives the same bytes.
type tarWriter struct {
	tw   *tar.Writer
	seen map[string]bool
}

var epoch = time.Unix(0, 0).UTC()

func (t *tarWriter) dir(name string) error {
	t.seen[name] = true
	return t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch})
}

func (t *tarWriter) file(name string, size int64, r io.Reader) error {
	t.seen[name] = true
	if err := t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch}); err != nil {
		return err
	}
	n, err := io.Copy(t.tw, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: wrote %d bytes, expected %d", name, n, size)
	}
	return nil
}

func (t *tarWriter) json(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.file(name, int64(len(b)), bytes.NewReader(b))
}
