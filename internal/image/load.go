package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	goruntime "runtime"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/snapshot"
)

// Load reads a docker-archive (docker save's tarball: manifest.json, and
// layers either as <id>/layer.tar or, since Docker 25, under blobs/) or an
// OCI image layout tarball (oci-layout, index.json, blobs/), plain or
// compressed, and stores the images in it, tagged as the archive says. It
// prints Docker's "Loaded image: ..." lines to progress (which may be nil).
//
// The archive is read once: members are stored in the content store by
// digest as they stream past (manifest.json may come last), then
// interpreted. Any failure leaves the stores as they were: what this load
// added is removed again.
func (s *Service) Load(ctx context.Context, r io.Reader, progress io.Writer) (imgs []*Image, err error) {
	if progress == nil {
		progress = io.Discard
	}
	j, end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end(&err)

	a, err := s.spool(ctx, j, r)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var plans []*loadPlan
	switch {
	case a.meta["manifest.json"] != nil:
		plans, err = s.planDockerArchive(j, a)
	case a.meta["index.json"] != nil:
		plans, err = s.planOCILayout(a)
	default:
		err = fmt.Errorf("neither manifest.json (docker-archive) nor index.json (OCI layout) found in the archive: %w", errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if plans, err = mergePlans(plans); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	for _, p := range plans {
		if err := s.unpackImage(ctx, j, p.img); err != nil {
			return nil, fmt.Errorf("load: image %s: %w", p.img.ID, err)
		}
		imgs = append(imgs, p.img)
	}
	if err := s.fillSizes(imgs...); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	moved, err := s.commit(imgs)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	// Members nothing refers to (legacy <id>/json files, unused manifests)
	// go again; a failure to delete them is only untidy, GC gets them.
	_ = s.Meta.update(j.removeUnreferenced)

	for _, p := range plans {
		for _, t := range p.tags {
			if old, ok := moved[t]; ok {
				fmt.Fprintf(progress, "The image %s already exists, renaming the old one with ID %s to empty string\n", Familiar(t), old)
			}
			fmt.Fprintf(progress, "Loaded image: %s\n", Familiar(t))
		}
		if len(p.tags) == 0 {
			fmt.Fprintf(progress, "Loaded image ID: %s\n", p.img.ID)
		}
	}
	return imgs, nil
}

// archive is what spool learnt from the tar stream.
type archive struct {
	files map[string]member // cleaned member path -> stored blob
	links map[string]string // cleaned member path -> cleaned target path
	meta  map[string][]byte // the layout's own small files, kept in memory
}

type member struct {
	digest digest.Digest
	size   int64
}

// metaFiles are read into memory instead of the content store.
var metaFiles = map[string]bool{"manifest.json": true, "index.json": true, "oci-layout": true, "repositories": true}

func (s *Service) spool(ctx context.Context, j *journal, r io.Reader) (*archive, error) {
	rc, _, err := decompress(r)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	a := &archive{files: map[string]member{}, links: map[string]string{}, meta: map[string][]byte{}}
	tr := tar.NewReader(rc)
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", tarError(err))
		}
		n++
		name := cleanMember(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives use it
			if metaFiles[name] {
				if hdr.Size > maxJSON {
					return nil, fmt.Errorf("%s is %d bytes, too large: %w", name, hdr.Size, errdefs.ErrInvalidArgument)
				}
				b, err := io.ReadAll(tr)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", name, tarError(err))
				}
				a.meta[name] = b
				delete(a.files, name)
				continue
			}
			expected := blobPathDigest(name)
			d, size, err := j.putBlob(tr, expected, hdr.Size)
			if err != nil {
				if errdefs.IsInvalidArgument(err) && expected != "" {
					return nil, fmt.Errorf("archive member %s does not match its digest: %w", name, err)
				}
				return nil, fmt.Errorf("read %s: %w", name, tarError(err))
			}
			a.files[name] = member{digest: d, size: size}
			delete(a.links, name)
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			a.links[name] = cleanMember(target)
			delete(a.files, name)
		case tar.TypeLink:
			a.links[name] = cleanMember(hdr.Linkname)
			delete(a.files, name)
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("the archive is empty: %w", errdefs.ErrInvalidArgument)
	}
	return a, nil
}

func tarError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("archive is truncated (%v): %w", err, errdefs.ErrInvalidArgument)
	}
	if errors.Is(err, tar.ErrHeader) {
		return fmt.Errorf("not a valid tar archive (%v): %w", err, errdefs.ErrInvalidArgument)
	}
	return classifyRead(err)
}

func cleanMember(name string) string {
	name = path.Clean("/" + name)
	return strings.TrimPrefix(name, "/")
}

// blobPathDigest is the digest a blobs/<alg>/<hex> member must have, or "".
func blobPathDigest(name string) digest.Digest {
	rest, ok := strings.CutPrefix(name, "blobs/")
	if !ok {
		return ""
	}
	alg, hex, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if d.Validate() != nil {
		return ""
	}
	return d
}

// file resolves a member path (following links) to its stored blob.
func (a *archive) file(name, what string) (member, error) {
	name = cleanMember(name)
	orig := name
	for range 16 {
		if m, ok := a.files[name]; ok {
			return m, nil
		}
		target, ok := a.links[name]
		if !ok {
			break
		}
		name = target
	}
	return member{}, fmt.Errorf("%s names %q, which is not a file in the archive: %w", what, orig, errdefs.ErrInvalidArgument)
}

// loadPlan is one image to store and the names to give it.
type loadPlan struct {
	img  *Image
	tags []string // normalized
}

// dockerManifestEntry is one element of a docker-archive's manifest.json.
type dockerManifestEntry struct {
	Config       string
	RepoTags     []string
	Layers       []string
	Parent       string                          `json:",omitempty"`
	LayerSources map[digest.Digest]v1.Descriptor `json:",omitempty"`
}

func (s *Service) planDockerArchive(j *journal, a *archive) ([]*loadPlan, error) {
	var entries []dockerManifestEntry
	if err := json.Unmarshal(a.meta["manifest.json"], &entries); err != nil {
		return nil, fmt.Errorf("manifest.json is not valid JSON: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("manifest.json lists no images: %w", errdefs.ErrInvalidArgument)
	}
	// Docker 25+ archives are also OCI layouts; reuse their manifests, so
	// the manifest digest survives a save and load.
	byConfig := map[digest.Digest]v1.Descriptor{}
	if raw := a.meta["index.json"]; raw != nil {
		var idx v1.Index
		if json.Unmarshal(raw, &idx) == nil {
			for _, d := range idx.Manifests {
				if isManifestType(d.MediaType) {
					if b, err := s.readBlob(d.Digest); err == nil {
						var m v1.Manifest
						if json.Unmarshal(b, &m) == nil {
							byConfig[m.Config.Digest] = d
						}
					}
				}
			}
		}
	}
	var plans []*loadPlan
	for i, e := range entries {
		what := fmt.Sprintf("manifest.json entry %d", i)
		if e.Config == "" {
			return nil, fmt.Errorf("%s has no Config: %w", what, errdefs.ErrInvalidArgument)
		}
		cfg, err := a.file(e.Config, what)
		if err != nil {
			return nil, err
		}
		var layers []v1.Descriptor
		for _, l := range e.Layers {
			m, err := a.file(l, what)
			if err != nil {
				return nil, err
			}
			c, err := s.blobCompression(m.digest)
			if err != nil {
				return nil, err
			}
			mt, err := layerMediaType(c)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", l, err)
			}
			layers = append(layers, v1.Descriptor{MediaType: mt, Digest: m.digest, Size: m.size})
		}
		img, err := s.imageFromConfig(cfg.digest, layers)
		if err != nil {
			return nil, err
		}
		if d, ok := byConfig[cfg.digest]; ok {
			if b, err := s.readBlob(d.Digest); err == nil {
				var m v1.Manifest
				if json.Unmarshal(b, &m) == nil && sameBlobs(m.Layers, layers) {
					img.ManifestDigest, img.ManifestMediaType, img.Layers = d.Digest, d.MediaType, m.Layers
				}
			}
		}
		if img.ManifestDigest == "" {
			if err := s.synthesizeManifest(j, img, cfg.size); err != nil {
				return nil, err
			}
		}
		p := &loadPlan{img: img}
		for _, t := range e.RepoTags {
			tagged, err := parseTagRef(t)
			if err != nil {
				return nil, fmt.Errorf("%s: RepoTags: %w", what, err)
			}
			p.tags = append(p.tags, tagged.String())
		}
		plans = append(plans, p)
	}
	return plans, nil
}

func sameBlobs(a, b []v1.Descriptor) bool {
	return slices.EqualFunc(a, b, func(x, y v1.Descriptor) bool { return x.Digest == y.Digest })
}

// synthesizeManifest writes an OCI manifest for a docker-archive image,
// which carries none.
func (s *Service) synthesizeManifest(j *journal, img *Image, cfgSize int64) error {
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: img.ID, Size: cfgSize},
		Layers:    img.Layers,
	}
	if m.Layers == nil {
		m.Layers = []v1.Descriptor{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	d, err := j.putBytes(b)
	if err != nil {
		return err
	}
	img.ManifestDigest, img.ManifestMediaType = d, v1.MediaTypeImageManifest
	return nil
}

func (s *Service) blobCompression(d digest.Digest) (compression, error) {
	f, err := s.Content.Open(d)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	magic := make([]byte, 6)
	n, _ := io.ReadFull(f, magic)
	return detect(magic[:n]), nil
}

// imageFromConfig reads and checks a config blob and starts a record.
func (s *Service) imageFromConfig(cfg digest.Digest, layers []v1.Descriptor) (*Image, error) {
	raw, err := s.readBlob(cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg, err)
	}
	img := &Image{ID: cfg, Layers: layers}
	if err := img.setConfig(raw); err != nil {
		return nil, fmt.Errorf("config %s is not a valid image config: %v: %w", cfg, err, errdefs.ErrInvalidArgument)
	}
	if t := img.Config.RootFS.Type; t != "layers" {
		return nil, fmt.Errorf("config %s: rootfs type %q, want \"layers\": %w", cfg, t, errdefs.ErrInvalidArgument)
	}
	if n, m := len(img.Config.RootFS.DiffIDs), len(layers); n != m {
		return nil, fmt.Errorf("config %s lists %d layers (rootfs.diff_ids) but the manifest has %d: %w", cfg, n, m, errdefs.ErrInvalidArgument)
	}
	for _, d := range img.Config.RootFS.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("config %s: invalid diff_id %q: %w", cfg, d, errdefs.ErrInvalidArgument)
		}
	}
	img.DiffIDs = slices.Clone(img.Config.RootFS.DiffIDs)
	img.ChainIDs = snapshot.ChainIDs(img.DiffIDs)
	return img, nil
}

// planOCILayout reads an OCI image layout's oci-layout and index.json.
func (s *Service) planOCILayout(a *archive) ([]*loadPlan, error) {
	if raw := a.meta["oci-layout"]; raw != nil {
		var l v1.ImageLayout
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, fmt.Errorf("oci-layout is not valid JSON: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		if l.Version != "" && !strings.HasPrefix(l.Version, "1.") {
			return nil, fmt.Errorf("unsupported OCI layout version %q: %w", l.Version, errdefs.ErrNotImplemented)
		}
	}
	var idx v1.Index
	if err := json.Unmarshal(a.meta["index.json"], &idx); err != nil {
		return nil, fmt.Errorf("index.json is not valid JSON: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(idx.Manifests) == 0 {
		return nil, fmt.Errorf("index.json lists no images: %w", errdefs.ErrInvalidArgument)
	}
	var plans []*loadPlan
	for i, d := range idx.Manifests {
		what := fmt.Sprintf("index.json entry %d", i)
		img, err := s.resolveManifest(d, what, 0)
		if err != nil {
			return nil, err
		}
		p := &loadPlan{img: img}
		if name := refName(d.Annotations); name != "" {
			tagged, err := parseTagRef(name)
			if err != nil {
				return nil, fmt.Errorf("%s: image name: %w", what, err)
			}
			p.tags = append(p.tags, tagged.String())
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// refName is the full image name an index entry carries: containerd's
// annotation, or the OCI ref.name when it is a full name rather than a
// bare tag ("latest" names no repository and is ignored).
func refName(ann map[string]string) string {
	if n := ann[annotationImageName]; n != "" {
		return n
	}
	n := ann[v1.AnnotationRefName]
	if strings.ContainsAny(n, "/:@") {
		return n
	}
	return ""
}

// resolveManifest follows an index entry to one image manifest (picking
// the host's platform from an index) and starts its record.
func (s *Service) resolveManifest(d v1.Descriptor, what string, depth int) (*Image, error) {
	if depth > 4 {
		return nil, fmt.Errorf("%s: indexes nested too deep: %w", what, errdefs.ErrInvalidArgument)
	}
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%s: invalid digest %q: %w", what, d.Digest, errdefs.ErrInvalidArgument)
	}
	raw, err := s.readBlob(d.Digest)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("%s: blob %s is missing from the archive: %w", what, d.Digest, errdefs.ErrInvalidArgument)
	} else if err != nil {
		return nil, err
	}
	mt := d.MediaType
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("%s: %s is not valid JSON: %v: %w", what, d.Digest, err, errdefs.ErrInvalidArgument)
	}
	if mt == "" {
		mt = probe.MediaType
		if mt == "" && probe.Manifests != nil {
			mt = v1.MediaTypeImageIndex
		} else if mt == "" {
			mt = v1.MediaTypeImageManifest
		}
	}
	switch {
	case isIndexType(mt):
		var idx v1.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("%s: index %s: %v: %w", what, d.Digest, err, errdefs.ErrInvalidArgument)
		}
		child, err := pickPlatform(idx.Manifests)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		img, err := s.resolveManifest(child, what, depth+1)
		if err != nil {
			return nil, err
		}
		if img.IndexDigest == "" {
			img.IndexDigest = d.Digest
		}
		return img, nil
	case isManifestType(mt):
		var m v1.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: manifest %s: %v: %w", what, d.Digest, err, errdefs.ErrInvalidArgument)
		}
		if m.Config.MediaType != "" && m.Config.MediaType != v1.MediaTypeImageConfig && m.Config.MediaType != mediaTypeDockerConfig {
			return nil, fmt.Errorf("%s: manifest %s is not an image (config type %q): %w", what, d.Digest, m.Config.MediaType, errdefs.ErrNotImplemented)
		}
		for _, l := range m.Layers {
			if !isLayerType(l.MediaType) {
				return nil, fmt.Errorf("%s: layer %s has unsupported media type %q: %w", what, l.Digest, l.MediaType, errdefs.ErrNotImplemented)
			}
			if n, err := s.Content.Stat(l.Digest); err != nil {
				return nil, fmt.Errorf("%s: layer %s is missing from the archive: %w", what, l.Digest, errdefs.ErrInvalidArgument)
			} else if n != l.Size {
				return nil, fmt.Errorf("%s: layer %s is %d bytes, the manifest says %d: %w", what, l.Digest, n, l.Size, errdefs.ErrInvalidArgument)
			}
		}
		if _, err := s.Content.Stat(m.Config.Digest); err != nil {
			return nil, fmt.Errorf("%s: config %s is missing from the archive: %w", what, m.Config.Digest, errdefs.ErrInvalidArgument)
		}
		img, err := s.imageFromConfig(m.Config.Digest, m.Layers)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		img.ManifestDigest, img.ManifestMediaType = d.Digest, mt
		return img, nil
	}
	return nil, fmt.Errorf("%s: unsupported media type %q: %w", what, mt, errdefs.ErrNotImplemented)
}

// pickPlatform chooses the host's manifest from an index, as a pull would.
func pickPlatform(ds []v1.Descriptor) (v1.Descriptor, error) {
	var fallback []v1.Descriptor
	for _, d := range ds {
		if d.Platform == nil {
			fallback = append(fallback, d)
			continue
		}
		if d.Platform.OS == "linux" && d.Platform.Architecture == goruntime.GOARCH {
			return d, nil
		}
	}
	if len(fallback) == 1 {
		return fallback[0], nil
	}
	return v1.Descriptor{}, fmt.Errorf("no image for linux/%s in the index: %w", goruntime.GOARCH, errdefs.ErrNotFound)
}

// mergePlans folds entries for the same image together and refuses one
// name given to two different images.
func mergePlans(plans []*loadPlan) ([]*loadPlan, error) {
	byID := map[digest.Digest]*loadPlan{}
	owner := map[string]digest.Digest{}
	var out []*loadPlan
	for _, p := range plans {
		for _, t := range p.tags {
			if id, ok := owner[t]; ok && id != p.img.ID {
				return nil, fmt.Errorf("the archive gives the name %s to two images (%s and %s): %w", Familiar(t), id, p.img.ID, errdefs.ErrInvalidArgument)
			}
			owner[t] = p.img.ID
		}
		if q, ok := byID[p.img.ID]; ok {
			for _, t := range p.tags {
				if !slices.Contains(q.tags, t) {
					q.tags = append(q.tags, t)
				}
			}
			continue
		}
		p.tags = slices.Compact(p.tags)
		byID[p.img.ID] = p
		out = append(out, p)
	}
	for _, p := range out {
		p.img.RepoTags = slices.Clone(p.tags)
	}
	return out, nil
}

// unpackImage unpacks an image's layers in order (each needs its parent
// in the store), checking each against its diffID.
func (s *Service) unpackImage(ctx context.Context, j *journal, img *Image) error {
	var parent digest.Digest
	for i, diffID := range img.DiffIDs {
		if err := ctx.Err(); err != nil {
			return err
		}
		chainID, err := s.unpackLayer(ctx, j, parent, diffID, img.Layers[i].Digest)
		if err != nil {
			return err
		}
		if chainID != img.ChainIDs[i] {
			return fmt.Errorf("layer %d: chain ID %s, expected %s", i, chainID, img.ChainIDs[i])
		}
		parent = chainID
	}
	return nil
}
