package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/content"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/snapshot"
)

// layerJob is one layer of the image being pulled.
type layerJob struct {
	index   int
	desc    ocispec.Descriptor
	diffID  digest.Digest
	parent  digest.Digest // chain ID of the layer below, "" for the first
	chainID digest.Digest

	done       chan struct{} // closed when the blob is in content, or err is set
	err        error
	unpacked   bool // the download also unpacked it (teed into Apply)
	downloaded bool // the blob came from the registry in this pull
	existed    bool // blob and snapshot were here: "Already exists", nothing more
}

// fetchLayers gets every layer's blob into content and its snapshot into
// the snapshot store. Up to cfg.concurrency downloads run at once, started
// in chain order. Each download of a missing layer is teed into
// snapshot.Store.Apply as it streams, which unpacks it at once and commits
// it once the layer below is committed. Blobs already in content whose
// layer is missing are unpacked from there by this goroutine, in chain
// order.
func (p *pull) fetchLayers(ctx context.Context, img *image.Image) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	jobs := make([]*layerJob, len(img.Layers))
	ready := make([]chan struct{}, len(img.Layers)) // closed once chain i is in place
	var parent digest.Digest
	for i, l := range img.Layers {
		jobs[i] = &layerJob{index: i, desc: l, diffID: img.DiffIDs[i], parent: parent, chainID: img.ChainIDs[i], done: make(chan struct{})}
		ready[i] = make(chan struct{})
		parent = img.ChainIDs[i]
		if !p.svc.Snapshots.Has(jobs[i].chainID) {
			p.event(Event{Status: StatusPullingFsLayer, ID: short(l.Digest)})
		}
	}

	var wg sync.WaitGroup
	// No download outlives Pull. Deferred calls run last-first, so every
	// early return below cancels before it returns, or this would wait
	// for downloads nobody needs.
	defer wg.Wait()
	sem := make(chan struct{}, p.o.concurrency)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, job := range jobs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for _, j := range jobs[i:] {
					j.err = ctx.Err()
					close(j.done)
				}
				return
			}
			var parentReady chan struct{}
			if i > 0 {
				parentReady = ready[i-1]
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				job.err = p.fetchLayer(ctx, job, parentReady)
				close(job.done)
			}()
		}
	}()

	for i, job := range jobs {
		<-job.done
		if job.err != nil {
			cancel()
			return job.err
		}
		if !job.unpacked {
			if err := p.unpackFromContent(ctx, job); err != nil {
				cancel()
				return err
			}
		}
		if !job.existed { // Docker says "Already exists" alone for those
			p.event(Event{Status: StatusPullComplete, ID: short(job.desc.Digest)})
		}
		close(ready[i])
	}
	return nil
}

// fetchLayer gets one layer's blob into content, unpacking it on the way
// when its parent is already in place.
func (p *pull) fetchLayer(ctx context.Context, job *layerJob, parentReady <-chan struct{}) error {
	d := job.desc.Digest
	if n, err := p.svc.Content.Stat(d); err == nil && n == job.desc.Size {
		if p.svc.Snapshots.Has(job.chainID) {
			job.existed = true
			p.event(Event{Status: StatusAlreadyExists, ID: short(d)})
		}
		return nil
	}
	if p.svc.Snapshots.Has(job.chainID) {
		if err := p.download(ctx, job.desc, nil); err != nil {
			return fmt.Errorf("layer %s: %w", d, err)
		}
		job.downloaded = true
		return nil
	}
	// Every layer is unpacked as it streams in, whether or not the layers
	// below are in place yet (a diff does not depend on them); Apply
	// commits it once the parent is.
	awaitParent := func(ctx context.Context) error {
		if parentReady == nil {
			return nil
		}
		select {
		case <-parentReady:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	// Teed: Apply reads the bytes as they arrive. It only sees the end of
	// the stream once the blob's digest has been checked, and a bad
	// digest closes the pipe with an error, so Apply discards the layer.
	pr, pw := io.Pipe()
	applied := make(chan error, 1)
	go func() {
		p.event(Event{Status: StatusExtracting, ID: short(d)})
		got, err := p.svc.Snapshots.Apply(ctx, job.parent, job.diffID, pr, snapshot.WithAwaitParent(awaitParent))
		if err == nil && got != job.chainID {
			err = fmt.Errorf("unpacked to chain ID %s, expected %s", got, job.chainID)
		}
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.CloseWithError(errApplyDone) // done without reading it all (layer appeared meanwhile)
		}
		applied <- err
	}()
	derr := p.download(ctx, job.desc, pw)
	if derr != nil {
		pw.CloseWithError(derr)
	} else {
		pw.Close()
	}
	aerr := <-applied
	if aerr != nil && (derr == nil || errors.Is(derr, aerr)) {
		return fmt.Errorf("layer %s: unpack: %w", d, aerr)
	}
	if derr != nil {
		return fmt.Errorf("layer %s: %w", d, derr)
	}
	job.unpacked = true
	return nil
}

var errApplyDone = errors.New("apply finished")

// unpackFromContent unpacks a downloaded blob unless its layer exists.
func (p *pull) unpackFromContent(ctx context.Context, job *layerJob) error {
	if p.svc.Snapshots.Has(job.chainID) {
		if job.downloaded && job.desc.Digest != job.diffID {
			// The layer came from another blob; this one must hold the
			// same files, or the record would pair them wrongly.
			if err := p.svc.VerifyLayer(job.desc.Digest, job.diffID); err != nil {
				// The blob stays: it matches its digest, and another
				// image may pair it with its real diff ID.
				return err
			}
		}
		return nil
	}
	f, err := p.svc.Content.Open(job.desc.Digest)
	if err != nil {
		return fmt.Errorf("layer %s: %w", job.desc.Digest, err)
	}
	defer f.Close()
	p.event(Event{Status: StatusExtracting, ID: short(job.desc.Digest)})
	// The blob was verified when it entered content: an uncompressed one
	// is its own diff ID and need not be hashed again.
	got, err := p.svc.Snapshots.Apply(ctx, job.parent, job.diffID, f, snapshot.WithTrustedDigest(job.desc.Digest))
	if err != nil {
		return fmt.Errorf("layer %s: unpack: %w", job.desc.Digest, err)
	}
	if got != job.chainID {
		return fmt.Errorf("layer %s: unpacked to chain ID %s, expected %s", job.desc.Digest, got, job.chainID)
	}
	return nil
}

// download streams blob desc from the registry into content, and into
// tee (when not nil) as it arrives. The blob is committed only when its
// size and digest match desc; tee gets every byte before that check, so
// its reader must not trust the stream until it has seen io.EOF, which
// the caller delivers (by closing tee) only after download returned nil.
func (p *pull) download(ctx context.Context, desc ocispec.Descriptor, tee io.Writer) error {
	w, err := p.svc.Content.Writer(desc.Digest, desc.Size)
	if err != nil {
		return err
	}
	defer w.Close()
	sink := &blobSink{w: w, tee: tee, desc: desc, id: short(desc.Digest), o: p.o}
	if _, err := p.c.fetchBlob(ctx, desc, sink); err != nil {
		if errdefs.IsInvalidArgument(err) && sink.werr != nil {
			return blobMismatch(desc, w, sink.werr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("download: %w", err)
	}
	if w.Size() != desc.Size || w.Digest() != desc.Digest {
		return blobMismatch(desc, w, nil)
	}
	if sink.teeErr != nil {
		return sink.teeErr // a verified blob that does not unpack: keep neither
	}
	if _, err := w.Commit(); err != nil {
		return err
	}
	p.event(Event{Status: StatusDownloadComplete, ID: sink.id})
	return nil
}

// blobSink takes a blob's bytes as they arrive: into the content writer,
// into the unpacking pipe, and into progress events.
type blobSink struct {
	w      *content.Writer
	tee    io.Writer
	desc   ocispec.Descriptor
	id     string
	o      *options
	last   int64
	werr   error // the content writer refused bytes (too many)
	teeErr error
}

func (s *blobSink) Write(b []byte) (int, error) {
	if _, err := s.w.Write(b); err != nil {
		s.werr = err
		return 0, err
	}
	if s.tee != nil {
		if _, err := s.tee.Write(b); err != nil {
			// Apply is done: it had what it needed, or it failed. Either
			// way the download goes on into content, so a failure caused
			// by corrupt bytes is reported as that.
			if !errors.Is(err, errApplyDone) {
				s.teeErr = err
			}
			s.tee = nil
		}
	}
	if s.o.progress != nil && (s.w.Size()-s.last >= 512<<10 || s.w.Size() == s.desc.Size) {
		s.last = s.w.Size()
		s.o.event(Event{Status: StatusDownloading, ID: s.id, Current: s.w.Size(), Total: s.desc.Size})
	}
	return len(b), nil
}

// blobMismatch says a blob was not what the manifest promised; the
// caller names the blob.
func blobMismatch(desc ocispec.Descriptor, w *content.Writer, cause error) error {
	if cause != nil && !errdefs.IsInvalidArgument(cause) {
		return cause
	}
	if cause != nil {
		return fmt.Errorf("the registry sent more than the %d bytes the manifest says; nothing was stored, retry the pull: %w", desc.Size, errdefs.ErrInvalidArgument)
	}
	if w.Size() != desc.Size {
		return fmt.Errorf("the registry sent %d bytes, the manifest says %d; nothing was stored, retry the pull: %w", w.Size(), desc.Size, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("the registry sent content with digest %s (corrupt or tampered); nothing was stored, retry the pull: %w", w.Digest(), errdefs.ErrInvalidArgument)
}

func short(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		return e[:12]
	}
	return e
}
