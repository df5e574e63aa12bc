package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/metadb"
	"github.com/berth-dev/berth/internal/reference"
)

// Media types Docker registries serve besides image-spec's constants.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	mediaTypeDockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

const (
	// MaxManifestSize bounds a manifest or index: larger ones are refused
	// before they are read whole (as containerd and Docker bound them).
	MaxManifestSize = 4 << 20
	// maxConfigSize bounds an image config read into memory.
	maxConfigSize = 16 << 20
	// maxIndexDepth bounds indexes nested in indexes.
	maxIndexDepth = 4
	// defaultConcurrency is how many layers download at once, as Docker's
	// max-concurrent-downloads default (3) and containerd's (3), rounded.
	defaultConcurrency = 4
)

// Event is one step of a pull, as Docker's progress stream reports them.
type Event struct {
	// Status is one of the Status* constants.
	Status string
	// ID is the short (12 hex) digest of the layer concerned, or the
	// reference for whole-image events.
	ID string
	// Current and Total are bytes, for StatusDownloading.
	Current, Total int64
}

// Event statuses, worded as Docker's.
const (
	StatusResolving        = "Pulling from"
	StatusPullingFsLayer   = "Pulling fs layer"
	StatusAlreadyExists    = "Already exists"
	StatusDownloading      = "Downloading"
	StatusDownloadComplete = "Download complete"
	StatusExtracting       = "Extracting"
	StatusPullComplete     = "Pull complete"
	StatusDigest           = "Digest"
)

// Pull fetches ref ("busybox", "localhost:5000/app:1", "name@sha256:...")
// from its registry into svc and returns the image record, tagged with ref
// when ref has a tag and no digest. Every blob is checked against its
// digest before it is stored, every layer against its diff ID before its
// snapshot becomes visible; blobs and layers already present are not
// downloaded again. A failed pull keeps what it verified, so pulling
// again resumes there; until then GC may reclaim it. Docker Hub images
// come from the configured mirrors first (WithHosts), then Docker Hub.
func Pull(ctx context.Context, svc *image.Service, ref string, opts ...Option) (img *image.Image, err error) {
	o := newOptions(opts)
	named, err := image.ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("pull %s: %w", image.FamiliarString(named), err)
		}
	}()
	// TODO(image): take the GC lock through an exported image.Service
	// method instead of knowing its path.
	unlock, err := metadb.Lock(filepath.Join(svc.Meta.Root(), "gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("lock image store: %w", err)
	}
	defer unlock()

	p := &pull{svc: svc, o: o}
	o.event(Event{Status: StatusResolving, ID: image.FamiliarString(named)})
	top, err := p.connect(ctx, named)
	if err != nil {
		return nil, err
	}
	return p.run(ctx, named, top)
}

// pull is the state of one Pull.
type pull struct {
	svc *image.Service
	o   *options
	c   *client // the registry (or mirror) the top manifest came from
}

func (p *pull) event(e Event) { p.o.event(e) }

// connect finds the top manifest: from each Docker Hub mirror in turn for
// docker.io images, then from the image's own registry.
func (p *pull) connect(ctx context.Context, named reference.Named) (*manifest, error) {
	domain, path := reference.Domain(named), reference.Path(named)
	var mirrorErrs []error
	if domain == "docker.io" {
		for _, m := range p.o.hosts.mirrors() {
			top, err := p.fetchTop(ctx, named, m.host, path, m.plain)
			if err == nil {
				return top, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			mirrorErrs = append(mirrorErrs, fmt.Errorf("mirror %s: %w", m.host, err))
		}
	}
	top, err := p.fetchTop(ctx, named, domain, path, false)
	if err != nil && len(mirrorErrs) > 0 {
		return nil, fmt.Errorf("%w (mirrors failed too: %v)", err, errors.Join(mirrorErrs...))
	}
	return top, err
}

func (p *pull) fetchTop(ctx context.Context, named reference.Named, host, path string, plain bool) (*manifest, error) {
	c, err := p.o.dial(ctx, host, path, plain, transport.PullScope)
	if err != nil {
		return nil, err
	}
	p.c = c
	ref, requested := "latest", digest.Digest("")
	if d, ok := named.(reference.Digested); ok {
		requested = d.Digest()
		ref = requested.String()
	} else if t, ok := named.(reference.Tagged); ok {
		ref = t.Tag()
	}
	return p.fetchManifest(ctx, ref, requested)
}

func (p *pull) run(ctx context.Context, named reference.Named, top *manifest) (*image.Image, error) {
	_, byDigest := named.(reference.Digested)
	m, err := p.resolve(ctx, top)
	if err != nil {
		return nil, err
	}
	img, err := p.fetchConfig(ctx, m)
	if err != nil {
		return nil, err
	}
	if err := p.fetchLayers(ctx, img); err != nil {
		return nil, err
	}
	repo := reference.TrimNamed(named)
	if tagged, ok := named.(reference.NamedTagged); ok && !byDigest {
		img.RepoTags = []string{tagged.String()}
	}
	withDigest, err := reference.WithDigest(repo, top.digest)
	if err != nil {
		return nil, err
	}
	img.RepoDigests = []string{withDigest.String()}
	if err := p.svc.Commit(img); err != nil {
		return nil, fmt.Errorf("store image %s: %w", img.ID, err)
	}
	p.event(Event{Status: StatusDigest, ID: top.digest.String()})
	return img, nil
}

// manifest is a fetched, verified manifest or index.
type manifest struct {
	raw       []byte
	mediaType string
	digest    digest.Digest
}

// fetchManifest GETs a manifest or index (ref: a tag or digest), checks
// it against the digest asked for (if any) and stores it.
func (p *pull) fetchManifest(ctx context.Context, ref string, want digest.Digest) (*manifest, error) {
	raw, mediaType, err := p.c.getManifest(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("manifest for %s: %w", describe(ref), err)
	}
	got := digest.FromBytes(raw)
	if want != "" {
		if err := want.Validate(); err != nil {
			return nil, fmt.Errorf("invalid digest %q: %w", want, errdefs.ErrInvalidArgument)
		}
		if want.Algorithm() != digest.Canonical {
			got = want.Algorithm().FromBytes(raw)
		}
		if got != want {
			return nil, fmt.Errorf("manifest for %s has digest %s, not the one asked for: the registry sent something else: %w", want, got, errdefs.ErrInvalidArgument)
		}
	}
	m, err := parseManifest(raw, mediaType, got)
	if err != nil {
		return nil, err
	}
	if err := p.putBytes(m.raw, got); err != nil {
		return nil, fmt.Errorf("store manifest %s: %w", got, err)
	}
	return m, nil
}

// parseManifest decides what a fetched document is: an image manifest or
// an index, of a type berth can pull. It is the first code to read bytes
// from the registry, so it is fuzzed (FuzzParseManifest).
func parseManifest(raw []byte, mediaType string, got digest.Digest) (*manifest, error) {
	m := &manifest{raw: raw, mediaType: mediaType, digest: got}
	// Content-Type is only a hint; the document's own mediaType wins,
	// and a document with "manifests" is an index.
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(m.raw, &probe); err != nil {
		return nil, fmt.Errorf("manifest %s is not valid JSON: %v: %w", got, err, errdefs.ErrInvalidArgument)
	}
	switch {
	case probe.MediaType != "":
		m.mediaType = probe.MediaType
	case probe.Manifests != nil:
		m.mediaType = ocispec.MediaTypeImageIndex
	case !isManifestType(m.mediaType) && !isIndexType(m.mediaType):
		m.mediaType = ocispec.MediaTypeImageManifest
	}
	if probe.SchemaVersion != 2 {
		return nil, fmt.Errorf("manifest %s has schemaVersion %d; only schema 2 and OCI images can be pulled (schema 1 is deprecated; push the image again with a current client): %w", got, probe.SchemaVersion, errdefs.ErrNotImplemented)
	}
	if !isManifestType(m.mediaType) && !isIndexType(m.mediaType) {
		return nil, fmt.Errorf("manifest %s has unsupported media type %q: %w", got, m.mediaType, errdefs.ErrNotImplemented)
	}
	return m, nil
}

// describe names what a manifest reference asks for: "tag 1" or the digest.
func describe(ref string) string {
	if strings.Contains(ref, ":") {
		return ref
	}
	return "tag " + ref
}

// resolved is the image manifest a reference leads to.
type resolved struct {
	manifest *manifest
	index    digest.Digest // the outermost index it was picked from, or ""
	parsed   ocispec.Manifest
}

// resolve follows indexes down to one image manifest for the platform.
func (p *pull) resolve(ctx context.Context, top *manifest) (*resolved, error) {
	r := &resolved{manifest: top}
	for depth := 0; isIndexType(r.manifest.mediaType); depth++ {
		if depth >= maxIndexDepth {
			return nil, fmt.Errorf("indexes nested more than %d deep: %w", maxIndexDepth, errdefs.ErrInvalidArgument)
		}
		var idx ocispec.Index
		if err := json.Unmarshal(r.manifest.raw, &idx); err != nil {
			return nil, fmt.Errorf("index %s: %v: %w", r.manifest.digest, err, errdefs.ErrInvalidArgument)
		}
		child, err := pickPlatform(idx.Manifests, p.o.platform)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", r.manifest.digest, err)
		}
		if err := child.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("index %s: invalid digest %q: %w", r.manifest.digest, child.Digest, errdefs.ErrInvalidArgument)
		}
		if child.Size > MaxManifestSize {
			return nil, fmt.Errorf("index %s: manifest %s is %d bytes, larger than %d: refusing: %w", r.manifest.digest, child.Digest, child.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
		}
		if r.index == "" {
			r.index = r.manifest.digest
		}
		m, err := p.fetchManifest(ctx, child.Digest.String(), child.Digest)
		if err != nil {
			return nil, err
		}
		r.manifest = m
	}
	parsed, err := parseImageManifest(r.manifest.raw, r.manifest.digest)
	if err != nil {
		return nil, err
	}
	r.parsed = parsed
	return r, nil
}

// parseImageManifest reads an image manifest and checks what the pull
// will trust from it: a container image config, valid digests, layer
// types berth can unpack. Fuzzed with parseManifest.
func parseImageManifest(raw []byte, d digest.Digest) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("manifest %s: %v: %w", d, err, errdefs.ErrInvalidArgument)
	}
	if mt := m.Config.MediaType; mt != "" && mt != ocispec.MediaTypeImageConfig && mt != mediaTypeDockerConfig {
		return m, fmt.Errorf("manifest %s is not a container image (config type %q): %w", d, mt, errdefs.ErrNotImplemented)
	}
	if err := m.Config.Digest.Validate(); err != nil || m.Config.Size < 0 {
		return m, fmt.Errorf("manifest %s: invalid config descriptor %q (size %d): %w", d, m.Config.Digest, m.Config.Size, errdefs.ErrInvalidArgument)
	}
	for _, l := range m.Layers {
		if !isLayerType(l.MediaType) {
			return m, fmt.Errorf("manifest %s: layer %s has unsupported media type %q: %w", d, l.Digest, l.MediaType, errdefs.ErrNotImplemented)
		}
		if err := l.Digest.Validate(); err != nil || l.Size < 0 {
			return m, fmt.Errorf("manifest %s: invalid layer descriptor %q (size %d): %w", d, l.Digest, l.Size, errdefs.ErrInvalidArgument)
		}
	}
	return m, nil
}

// pickPlatform chooses want's manifest from an index: the first entry
// whose OS and architecture match and whose variant matches when want
// names one.
func pickPlatform(ds []ocispec.Descriptor, want ocispec.Platform) (ocispec.Descriptor, error) {
	var untagged []ocispec.Descriptor
	for _, d := range ds {
		if d.Platform == nil {
			if isManifestType(d.MediaType) || d.MediaType == "" {
				untagged = append(untagged, d)
			}
			continue
		}
		if d.Platform.OS == want.OS && d.Platform.Architecture == want.Architecture &&
			(want.Variant == "" || d.Platform.Variant == want.Variant) {
			return d, nil
		}
	}
	if len(untagged) == 1 {
		return untagged[0], nil
	}
	var have []string
	for _, d := range ds {
		if d.Platform != nil {
			have = append(have, platformString(*d.Platform))
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("no image for %s in the manifest list (it has: %s); choose one with --platform: %w",
		platformString(want), strings.Join(have, ", "), errdefs.ErrNotFound)
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// fetchConfig fetches and stores the config blob and starts the record.
func (p *pull) fetchConfig(ctx context.Context, r *resolved) (*image.Image, error) {
	cd := r.parsed.Config
	if cd.Size > maxConfigSize {
		return nil, fmt.Errorf("config %s is %d bytes, larger than %d: refusing: %w", cd.Digest, cd.Size, maxConfigSize, errdefs.ErrInvalidArgument)
	}
	if n, err := p.svc.Content.Stat(cd.Digest); err != nil || n != cd.Size {
		if err := p.download(ctx, cd, nil); err != nil {
			return nil, fmt.Errorf("config %s: %w", cd.Digest, err)
		}
	}
	img, err := p.svc.NewRecord(cd.Digest, r.parsed.Layers)
	if err != nil {
		return nil, err
	}
	img.ManifestDigest, img.ManifestMediaType, img.IndexDigest = r.manifest.digest, r.manifest.mediaType, r.index
	return img, nil
}

// isLoopback reports whether a registry host[:port] is on 127.0.0.0/8,
// ::1 or localhost, which Docker trusts over plain HTTP.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var (
	isManifestType = image.IsManifestType
	isIndexType    = image.IsIndexType
	isLayerType    = image.IsLayerType
)

// putBytes stores a small verified document (a manifest).
func (p *pull) putBytes(b []byte, d digest.Digest) error {
	if n, err := p.svc.Content.Stat(d); err == nil && n == int64(len(b)) {
		return nil
	}
	w, err := p.svc.Content.Writer(d, int64(len(b)))
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		return err
	}
	_, err = w.Commit()
	return err
}
