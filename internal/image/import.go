package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	goruntime "runtime"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/errdefs"
)

// ImportOpts are the options of docker import.
type ImportOpts struct {
	// Message is the history comment; "Imported from -" when empty.
	Message string
	// Platform overrides the host's OS and architecture in the config.
	Platform *v1.Platform
	// Config is the runtime config to record (Cmd, Env, ...), as
	// docker import --change would produce it.
	Config v1.ImageConfig
}

// Import makes a one-layer image from a root filesystem tarball (plain,
// gzip, zstd or bzip2), as docker import does, and tags it ref when ref is
// not empty. The input is read once: it is compressed with gzip into the
// content store while its diffID is computed; the layer is then unpacked
// from the stored blob.
func (s *Service) Import(ctx context.Context, r io.Reader, ref string, opts ImportOpts) (img *Image, err error) {
	var tag string
	if ref != "" {
		t, err := parseTagRef(ref)
		if err != nil {
			return nil, err
		}
		tag = t.String()
	}
	j, end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end(&err)

	layer, diffID, err := s.compressLayer(j, r)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	chainID, err := s.unpackLayer(ctx, j, "", diffID, layer.Digest)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}

	now := time.Now().UTC()
	msg := opts.Message
	if msg == "" {
		msg = "Imported from -"
	}
	platform := v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	if goruntime.GOARCH == "arm64" {
		platform.Variant = "v8"
	}
	if opts.Platform != nil {
		platform = *opts.Platform
	}
	// A plain OCI config: the comment lives in history (where Inspect
	// finds it), so tools that re-serialize configs through the OCI type,
	// as skopeo does converting to OCI, keep the image ID.
	cfg := v1.Image{
		Created:  &now,
		Platform: platform,
		Config:   opts.Config,
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History:  []v1.History{{Created: &now, Comment: msg}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgDigest, err := j.putBytes(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("import: store config: %w", err)
	}
	manifest := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfgJSON))},
		Layers:    []v1.Descriptor{layer},
	}
	mJSON, err := json.Marshal(manifest)
	if err != nil {
		return nil, err
	}
	mDigest, err := j.putBytes(mJSON)
	if err != nil {
		return nil, fmt.Errorf("import: store manifest: %w", err)
	}

	img = &Image{
		ID:                cfgDigest,
		ManifestDigest:    mDigest,
		ManifestMediaType: v1.MediaTypeImageManifest,
		Layers:            manifest.Layers,
		DiffIDs:           []digest.Digest{diffID},
		ChainIDs:          []digest.Digest{chainID},
	}
	if err := img.setConfig(cfgJSON); err != nil {
		return nil, err
	}
	if err := s.fillSizes(img); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if tag != "" {
		img.RepoTags = []string{tag}
	}
	if _, err := s.commit([]*Image{img}); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return img, nil
}

// compressLayer streams r (any supported compression) into the content
// store as gzip, returning the blob's descriptor and the uncompressed
// stream's digest (the diffID).
func (s *Service) compressLayer(j *journal, r io.Reader) (v1.Descriptor, digest.Digest, error) {
	rc, _, err := decompress(r)
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	defer rc.Close()
	w, err := s.Content.Writer("", -1)
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	defer w.Close()
	cw := &countingWriter{w: w}
	gz := newGzipWriter(cw, flate.DefaultCompression)
	closed := false
	defer func() {
		if !closed {
			gz.Close() // stops its goroutines; the blob is aborted anyway
		}
	}()
	diff := digest.SHA256.Digester()
	n, err := io.Copy(io.MultiWriter(gz, diff.Hash()), rc)
	if err != nil {
		return v1.Descriptor{}, "", fmt.Errorf("read input: %w", classifyRead(err))
	}
	if n == 0 {
		return v1.Descriptor{}, "", fmt.Errorf("input is empty; give a tar archive of a root filesystem: %w", errdefs.ErrInvalidArgument)
	}
	closed = true
	if err := gz.Close(); err != nil {
		return v1.Descriptor{}, "", err
	}
	d := w.Digest()
	desc := v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: d, Size: cw.n}
	if _, err := s.Content.Stat(d); err == nil {
		return desc, diff.Digest(), nil
	}
	if _, err := w.Commit(); err != nil {
		return v1.Descriptor{}, "", err
	}
	j.blobs = append(j.blobs, d)
	return desc, diff.Digest(), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
