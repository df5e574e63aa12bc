package image

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/content"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/metadb"
	"github.com/berth-dev/berth/internal/snapshot"
)

// Media types beyond image-spec's constants: Docker's, which archives and
// registries still carry.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	mediaTypeDockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

	annotationImageName = "io.containerd.image.name" // the full name, as containerd and Docker write it
)

// maxJSON bounds manifests, configs and indexes read into memory.
const maxJSON = 16 << 20

// Service is the image engine: records in Meta, blobs in Content, unpacked
// layers in Snapshots. Its methods are what the CLI verbs call.
type Service struct {
	Content   *content.Store
	Snapshots *snapshot.Store
	Meta      *Store
}

// New opens the three stores under an engine root.
func New(root string) (*Service, error) {
	meta, err := Open(root)
	if err != nil {
		return nil, err
	}
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		return nil, err
	}
	ss, err := snapshot.Open(filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, err
	}
	return &Service{Content: cs, Snapshots: ss, Meta: meta}, nil
}

// Get is Meta.Get.
func (s *Service) Get(idOrRef string) (*Image, error) { return s.Meta.Get(idOrRef) }

// List is Meta.List.
func (s *Service) List() ([]*Image, error) { return s.Meta.List() }

// Tag is Meta.Tag.
func (s *Service) Tag(idOrRef, newRef string) error { return s.Meta.Tag(idOrRef, newRef) }

// lockGC takes <root>/gc.lock: shared while content is being added that
// no record names yet (import, load, save reading blobs), exclusive while
// GC decides what nothing names.
func (s *Service) lockGC(how int) (func(), error) {
	unlock, err := metadb.Lock(filepath.Join(s.Meta.root, "gc.lock"), how)
	if err != nil {
		return nil, fmt.Errorf("lock image store: %w", err)
	}
	return unlock, nil
}

// journal records what one import or load added, so a failure can take
// exactly that back out and leave the stores as they were.
type journal struct {
	s      *Service
	blobs  []digest.Digest
	layers []digest.Digest
}

// begin starts a change that adds blobs and layers (import, load): it
// holds the GC lock shared, so no GC sweeps what is not recorded yet, and
// returns a journal of what the change adds. end(&err) releases the lock
// and, when *err is set, removes what the journal recorded.
func (s *Service) begin() (*journal, func(*error), error) {
	unlock, err := s.lockGC(unix.LOCK_SH)
	if err != nil {
		return nil, nil, err
	}
	j := &journal{s: s}
	end := func(errp *error) {
		defer unlock()
		if *errp != nil {
			if rerr := j.rollback(); rerr != nil {
				*errp = fmt.Errorf("%w (and cleaning up failed: %v)", *errp, rerr)
			}
		}
	}
	return j, end, nil
}

// putBlob stores r as a blob. A non-empty expected digest (and size >= 0)
// is verified. A blob already present is left alone and not journaled.
func (j *journal) putBlob(r io.Reader, expected digest.Digest, size int64) (digest.Digest, int64, error) {
	if expected != "" {
		if n, err := j.s.Content.Stat(expected); err == nil && (size < 0 || n == size) {
			return expected, n, nil
		}
	}
	w, err := j.s.Content.Writer(expected, size)
	if err != nil {
		return "", 0, err
	}
	defer w.Close()
	// 1 MiB writes: the content writer hashes large writes on a second
	// core while the kernel copies them; io.Copy's 32 KiB never would.
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, buf)
	if err != nil {
		return "", 0, err
	}
	d := w.Digest()
	if expected != "" && d != expected {
		return "", 0, fmt.Errorf("content is %s, not %s: %w", d, expected, errdefs.ErrInvalidArgument)
	}
	if size >= 0 && n != size {
		return "", 0, fmt.Errorf("content is %d bytes, not %d: %w", n, size, errdefs.ErrInvalidArgument)
	}
	if _, err := j.s.Content.Stat(d); err == nil {
		return d, n, nil // someone has it already; our temp is discarded
	}
	if _, err := w.Commit(); err != nil {
		return "", 0, err
	}
	j.blobs = append(j.blobs, d)
	return d, n, nil
}

func (j *journal) putBytes(b []byte) (digest.Digest, error) {
	d, _, err := j.putBlob(bytes.NewReader(b), digest.FromBytes(b), int64(len(b)))
	return d, err
}

// rollback removes what the journal added and no record references. It
// runs under the metadata write lock so no record can start referencing
// a blob between the check and the delete.
func (j *journal) rollback() error {
	if len(j.blobs) == 0 && len(j.layers) == 0 {
		return nil
	}
	return j.s.Meta.update(func(tx *bolt.Tx) error {
		return j.removeUnreferenced(tx)
	})
}

func (j *journal) removeUnreferenced(tx *bolt.Tx) error {
	blobs, chains, err := references(tx)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range j.blobs {
		if !blobs[d] {
			if err := j.s.Content.Delete(d); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	for _, c := range slices.Backward(j.layers) { // children before parents
		if !chains[c] {
			if err := j.s.Snapshots.Remove(c); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	j.blobs, j.layers = nil, nil
	return errors.Join(errs...)
}

// references collects every blob and chain ID some record needs.
func references(tx *bolt.Tx) (blobs, chains map[digest.Digest]bool, err error) {
	imgs, err := allImages(tx)
	if err != nil {
		return nil, nil, err
	}
	blobs, chains = map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for _, img := range imgs {
		markImage(img, blobs, chains)
	}
	return blobs, chains, nil
}

func markImage(img *Image, blobs, chains map[digest.Digest]bool) {
	blobs[img.ID] = true
	blobs[img.ManifestDigest] = true
	if img.IndexDigest != "" {
		blobs[img.IndexDigest] = true
	}
	for _, l := range img.Layers {
		blobs[l.Digest] = true
	}
	for _, c := range img.ChainIDs {
		chains[c] = true
	}
}

// commit writes new records in one transaction, after checking that what
// they name is still there (a concurrent failed load may have rolled back
// a blob this one found present). Tags given in each record's RepoTags
// are added to (not replacing) those of an existing record of the same ID.
// moved reports tags taken from other images, as docker load prints.
func (s *Service) commit(imgs []*Image) (moved map[string]digest.Digest, err error) {
	moved = map[string]digest.Digest{}
	err = s.Meta.update(func(tx *bolt.Tx) error {
		now := time.Now().UTC()
		for _, img := range imgs {
			if err := s.verifyPresent(img); err != nil {
				return err
			}
			for _, t := range img.RepoTags {
				if prev := tx.Bucket(bucketNames).Get([]byte(t)); prev != nil && string(prev) != string(img.ID) {
					moved[t] = digest.Digest(prev)
				}
			}
			rec := img
			if old, err := getImage(tx, img.ID); err == nil {
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
					rec.LastTagTime = now
				}
				if rec.IndexDigest == "" && rec.ManifestDigest == img.ManifestDigest {
					rec.IndexDigest = img.IndexDigest
				}
			} else if !errdefs.IsNotFound(err) {
				return err
			}
			if err := putImage(tx, rec, now); err != nil {
				return err
			}
			*img = *rec
		}
		return nil
	})
	return moved, err
}

func (s *Service) verifyPresent(img *Image) error {
	if d := s.missingBlob(img); d != "" {
		return fmt.Errorf("blob %s vanished while storing image %s (a concurrent removal?); retry: %w", d, img.ID, errdefs.ErrUnavailable)
	}
	for _, c := range img.ChainIDs {
		if !s.Snapshots.Has(c) {
			return fmt.Errorf("layer %s vanished while storing image %s (a concurrent removal?); retry: %w", c, img.ID, errdefs.ErrUnavailable)
		}
	}
	return nil
}

// missingBlob is the first of the image's blobs absent from content, or "".
func (s *Service) missingBlob(img *Image) digest.Digest {
	blobs := []digest.Digest{img.ManifestDigest, img.ID}
	for _, l := range img.Layers {
		blobs = append(blobs, l.Digest)
	}
	for _, d := range blobs {
		if _, err := s.Content.Stat(d); err != nil {
			return d
		}
	}
	return ""
}

// unpackLayer makes sure the layer (parent, diffID) exists in the
// snapshot store, unpacking blob if not, and returns its chain ID. When
// the layer already exists the blob is still checked against diffID, so a
// record never names a blob that does not match its layer.
func (s *Service) unpackLayer(ctx context.Context, j *journal, parent, diffID, blob digest.Digest) (digest.Digest, error) {
	chainID := snapshot.ChainID(parent, diffID)
	if s.Snapshots.Has(chainID) {
		if blob == diffID {
			return chainID, nil // an uncompressed blob, verified by its own digest
		}
		return chainID, s.verifyLayer(blob, diffID)
	}
	f, err := s.Content.Open(blob)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// The blob goes in as stored: Unpack detects the compression and
	// bounds the expansion ratio, which needs the compressed stream.
	// The blob was verified when it entered the content store: an
	// uncompressed layer need not be hashed again while it unpacks.
	got, err := s.Snapshots.Apply(ctx, parent, diffID, f, snapshot.WithTrustedDigest(blob))
	if err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", blob, err)
	}
	j.layers = append(j.layers, got)
	if got != chainID {
		return "", fmt.Errorf("unpack layer %s: chain ID %s, expected %s", blob, got, chainID)
	}
	return chainID, nil
}

// VerifyLayer checks that blob, in content, uncompresses to diffID: for a
// blob that arrives for a layer already unpacked from another blob (the
// same files compressed differently), so the record never pairs a layer
// with a blob of other files.
func (s *Service) VerifyLayer(blob, diffID digest.Digest) error { return s.verifyLayer(blob, diffID) }

// verifyLayer checks that blob uncompresses to diffID.
func (s *Service) verifyLayer(blob, diffID digest.Digest) error {
	f, err := s.Content.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	rc, _, err := decompress(f)
	if err != nil {
		return fmt.Errorf("layer %s: %w", blob, err)
	}
	defer rc.Close()
	h := digest.SHA256.Digester()
	if _, err := io.Copy(h.Hash(), rc); err != nil {
		return fmt.Errorf("layer %s: %w", blob, classifyRead(err))
	}
	if got := h.Digest(); got != diffID {
		return fmt.Errorf("layer %s uncompresses to %s, but the config says %s: %w", blob, got, diffID, errdefs.ErrInvalidArgument)
	}
	return nil
}

// fillSizes sets the records' layer sizes from the snapshot store.
func (s *Service) fillSizes(imgs ...*Image) error {
	layers, err := s.Snapshots.Layers()
	if err != nil {
		return err
	}
	size := make(map[digest.Digest]int64, len(layers))
	for _, l := range layers {
		size[l.ChainID] = l.Size
	}
	for _, img := range imgs {
		img.LayerSizes = make([]int64, len(img.ChainIDs))
		img.Size = 0
		for i, c := range img.ChainIDs {
			img.LayerSizes[i] = size[c]
			img.Size += size[c]
		}
	}
	return nil
}

// compression of a stream, found by its magic bytes.
type compression int

const (
	uncompressed compression = iota
	gzipped
	zstded
	bzipped
	xzed
)

func detect(magic []byte) compression {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzipped
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return zstded
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzipped
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return xzed
	}
	return uncompressed
}

// decompress returns r uncompressed (plain, gzip, zstd or bzip2).
func decompress(r io.Reader) (io.ReadCloser, compression, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(6)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, uncompressed, err
	}
	c := detect(magic)
	switch c {
	case gzipped:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("read gzip: %w", errdefs.ErrInvalidArgument)
		}
		return zr, c, nil
	case zstded:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, c, err
		}
		return zr.IOReadCloser(), c, nil
	case bzipped:
		return io.NopCloser(bzip2.NewReader(br)), c, nil
	case xzed:
		return nil, c, fmt.Errorf("xz-compressed input is not supported; decompress it (xz -d) or use gzip or zstd: %w", errdefs.ErrNotImplemented)
	}
	return io.NopCloser(br), c, nil
}

// layerMediaType is the OCI media type for a layer blob with compression c.
func layerMediaType(c compression) (string, error) {
	switch c {
	case uncompressed:
		return v1.MediaTypeImageLayer, nil
	case gzipped:
		return v1.MediaTypeImageLayerGzip, nil
	case zstded:
		return v1.MediaTypeImageLayerZstd, nil
	}
	return "", fmt.Errorf("layers compressed with bzip2 or xz are not supported: %w", errdefs.ErrNotImplemented)
}

// Commit stores image records whose blobs and layers are in the stores,
// with their layer sizes, in one transaction: a record of the same ID
// keeps its names and gains the new ones. For engines that bring images
// in their own way (registry pulls).
func (s *Service) Commit(imgs ...*Image) error {
	if err := s.fillSizes(imgs...); err != nil {
		return err
	}
	_, err := s.commit(imgs)
	return err
}

// NewRecord reads and checks the config blob cfg (already in Content) and
// starts an image record for it and the manifest's layers.
func (s *Service) NewRecord(cfg digest.Digest, layers []v1.Descriptor) (*Image, error) {
	return s.imageFromConfig(cfg, layers)
}

// IsManifestType, IsIndexType and IsLayerType classify media types berth
// reads: OCI's and Docker's.
func IsManifestType(mt string) bool { return isManifestType(mt) }

// IsIndexType: see IsManifestType.
func IsIndexType(mt string) bool { return isIndexType(mt) }

// IsLayerType: see IsManifestType.
func IsLayerType(mt string) bool { return isLayerType(mt) }

func isManifestType(mt string) bool {
	return mt == v1.MediaTypeImageManifest || mt == mediaTypeDockerManifest
}

func isIndexType(mt string) bool {
	return mt == v1.MediaTypeImageIndex || mt == mediaTypeDockerManifestList
}

func isLayerType(mt string) bool {
	switch mt {
	case v1.MediaTypeImageLayer, v1.MediaTypeImageLayerGzip, v1.MediaTypeImageLayerZstd,
		v1.MediaTypeImageLayerNonDistributable, v1.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // still found in the wild
		v1.MediaTypeImageLayerNonDistributableZstd, //nolint:staticcheck
		mediaTypeDockerLayer, mediaTypeDockerLayerGzip, mediaTypeDockerLayerZstd, mediaTypeDockerForeignGzip:
		return true
	}
	return false
}

// classifyRead marks truncated or corrupt input as the caller's problem.
func classifyRead(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
		return fmt.Errorf("%v (truncated or corrupt input): %w", err, errdefs.ErrInvalidArgument)
	}
	return err
}

// readBlob reads a small blob (manifest, config, index) whole.
func (s *Service) readBlob(d digest.Digest) ([]byte, error) {
	f, err := s.Content.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSON+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJSON {
		return nil, fmt.Errorf("blob %s is larger than %d bytes, too large for a manifest or config: %w", d, maxJSON, errdefs.ErrInvalidArgument)
	}
	return b, nil
}
