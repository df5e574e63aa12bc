package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/metadb"
	"github.com/berth-dev/berth/internal/version"
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

// PullOpt configures Pull.
type PullOpt func(*pullConfig)

type pullConfig struct {
	insecure    bool
	platform    ocispec.Platform
	progress    func(Event)
	keychain    authn.Keychain
	concurrency int
}

// WithInsecure talks plain HTTP (or HTTPS without verifying the
// certificate) to the registry, as Docker's --insecure-registry does.
// Registries on 127.0.0.0/8, ::1 and localhost are insecure without it.
func WithInsecure() PullOpt { return func(c *pullConfig) { c.insecure = true } }

// WithPlatform picks the image for os/arch[/variant] from a manifest list
// or OCI index; the default is linux and the host's architecture. An empty
// variant matches any.
func WithPlatform(os, arch, variant string) PullOpt {
	return func(c *pullConfig) {
		c.platform = ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
	}
}

// WithProgress calls fn as the pull advances. fn is called from several
// goroutines, one at a time per layer; it must not block for long.
func WithProgress(fn func(Event)) PullOpt { return func(c *pullConfig) { c.progress = fn } }

// WithKeychain resolves credentials (default: authn.DefaultKeychain, the
// Docker config file's auths and credential helpers).
func WithKeychain(k authn.Keychain) PullOpt { return func(c *pullConfig) { c.keychain = k } }

// WithConcurrency sets how many layers download at once (default 4).
func WithConcurrency(n int) PullOpt {
	return func(c *pullConfig) {
		if n > 0 {
			c.concurrency = n
		}
	}
}

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
// downloaded again. On failure, what this pull added and no record
// references is removed.
func Pull(ctx context.Context, svc *image.Service, ref string, opts ...PullOpt) (img *image.Image, err error) {
	cfg := pullConfig{
		platform:    ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		keychain:    authn.DefaultKeychain,
		concurrency: defaultConcurrency,
	}
	for _, o := range opts {
		o(&cfg)
	}
	named, err := image.ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	target, err := remoteRef(named, cfg.insecure)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", image.FamiliarString(named), err)
	}
	puller, err := remote.NewPuller(
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(cfg.keychain),
		remote.WithTransport(newTransport(cfg.insecure)),
		remote.WithUserAgent("berth/"+version.Version),
	)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", image.FamiliarString(named), err)
	}

	// TODO(image): take the GC lock through an exported image.Service
	// method (a Begin returning the journal) instead of knowing its path.
	unlock, err := metadb.Lock(filepath.Join(svc.Meta.Root(), "gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("pull: lock image store: %w", err)
	}
	defer unlock()

	p := &pull{svc: svc, cfg: &cfg, puller: puller, target: target, j: &journal{svc: svc}}
	defer func() {
		if err != nil {
			if rerr := p.j.rollback(); rerr != nil {
				err = fmt.Errorf("%w (and cleaning up failed: %v)", err, rerr)
			}
			err = fmt.Errorf("pull %s: %w", image.FamiliarString(named), err)
		}
	}()
	img, err = p.run(ctx, named)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// pull is the state of one Pull.
type pull struct {
	svc    *image.Service
	cfg    *pullConfig
	puller *remote.Puller
	target name.Reference
	j      *journal
}

func (p *pull) event(e Event) {
	if p.cfg.progress != nil {
		p.cfg.progress(e)
	}
}

func (p *pull) run(ctx context.Context, named reference.Named) (*image.Image, error) {
	p.event(Event{Status: StatusResolving, ID: image.FamiliarString(named)})
	var requested digest.Digest
	if d, ok := named.(reference.Digested); ok {
		requested = d.Digest()
	}
	top, err := p.fetchManifest(ctx, p.target, requested)
	if err != nil {
		return nil, err
	}
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
	if tagged, ok := named.(reference.NamedTagged); ok && requested == "" {
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

// fetchManifest GETs a manifest or index, checks it against the digest
// asked for (if any) and stores it.
func (p *pull) fetchManifest(ctx context.Context, ref name.Reference, want digest.Digest) (*manifest, error) {
	desc, err := p.puller.Get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest for %s: %w", identifier(ref), classify(err))
	}
	if len(desc.Manifest) > MaxManifestSize {
		return nil, fmt.Errorf("manifest for %s is %d bytes, larger than %d: refusing: %w", identifier(ref), len(desc.Manifest), MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	got := digest.FromBytes(desc.Manifest)
	if want != "" && got != want {
		return nil, fmt.Errorf("manifest for %s has digest %s, not the one asked for: the registry sent something else: %w", want, got, errdefs.ErrInvalidArgument)
	}
	m := &manifest{raw: desc.Manifest, mediaType: string(desc.MediaType), digest: got}
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
	if err := p.j.putBytes(m.raw, got); err != nil {
		return nil, fmt.Errorf("store manifest %s: %w", got, err)
	}
	return m, nil
}

// identifier names what a reference asks for: "tag 1" or the digest.
func identifier(ref name.Reference) string {
	if _, ok := ref.(name.Tag); ok {
		return "tag " + ref.Identifier()
	}
	return ref.Identifier()
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
		child, err := pickPlatform(idx.Manifests, p.cfg.platform)
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
		m, err := p.fetchManifest(ctx, p.target.Context().Digest(child.Digest.String()), child.Digest)
		if err != nil {
			return nil, err
		}
		r.manifest = m
	}
	if err := json.Unmarshal(r.manifest.raw, &r.parsed); err != nil {
		return nil, fmt.Errorf("manifest %s: %v: %w", r.manifest.digest, err, errdefs.ErrInvalidArgument)
	}
	m := &r.parsed
	if mt := m.Config.MediaType; mt != "" && mt != ocispec.MediaTypeImageConfig && mt != mediaTypeDockerConfig {
		return nil, fmt.Errorf("manifest %s is not a container image (config type %q): %w", r.manifest.digest, mt, errdefs.ErrNotImplemented)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("manifest %s: invalid config digest %q: %w", r.manifest.digest, m.Config.Digest, errdefs.ErrInvalidArgument)
	}
	for _, l := range m.Layers {
		if !isLayerType(l.MediaType) {
			return nil, fmt.Errorf("manifest %s: layer %s has unsupported media type %q: %w", r.manifest.digest, l.Digest, l.MediaType, errdefs.ErrNotImplemented)
		}
		if err := l.Digest.Validate(); err != nil || l.Size < 0 {
			return nil, fmt.Errorf("manifest %s: invalid layer descriptor %q (size %d): %w", r.manifest.digest, l.Digest, l.Size, errdefs.ErrInvalidArgument)
		}
	}
	return r, nil
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

// remoteRef turns a normalized reference into go-containerregistry's,
// marking loopback registries insecure as Docker does.
func remoteRef(named reference.Named, insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure || isLoopback(reference.Domain(named)) {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(named.Name(), opts...)
	if err != nil {
		return nil, fmt.Errorf("invalid repository %q: %v: %w", named.Name(), err, errdefs.ErrInvalidArgument)
	}
	if d, ok := named.(reference.Digested); ok {
		return repo.Digest(d.Digest().String()), nil
	}
	if t, ok := named.(reference.Tagged); ok {
		return repo.Tag(t.Tag()), nil
	}
	return repo.Tag("latest"), nil
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

// putBytes is used for small verified documents (manifests).
func (j *journal) putBytes(b []byte, d digest.Digest) error {
	if n, err := j.svc.Content.Stat(d); err == nil && n == int64(len(b)) {
		return nil
	}
	w, err := j.svc.Content.Writer(d, int64(len(b)))
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, bytes.NewReader(b)); err != nil {
		return err
	}
	if _, err := w.Commit(); err != nil {
		return err
	}
	j.addBlob(d)
	return nil
}
