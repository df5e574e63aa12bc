package snapshot

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/opencontainers/go-digest"
	"hash"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/berth-dev/berth/internal/errdefs"
)

// unpackBufPool holds the 1 MiB buffers file data is copied through.
var unpackBufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// sourceReader counts the compressed bytes and keeps the caller's reader's
// error apart from the stream's, so a network failure is not blamed on the
// layer. The readahead goroutine reads through it while the caller's may
// look at the error, hence atomics.
type sourceReader struct {
	r   io.Reader
	n   atomic.Int64
	err atomic.Pointer[error]
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n.Add(int64(n))
	if err != nil && err != io.EOF {
		s.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// failed returns the caller's reader's error, if it failed.
func (s *sourceReader) failed() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// layerStream is the uncompressed tar stream: it hashes and counts what
// passes and enforces the size and ratio limits. The readahead goroutine
// is its only reader; the other goroutine looks at it only once that one
// has stopped.
type layerStream struct {
	r      io.Reader
	src    *sourceReader
	kind   string // "gzip", "zstd" or "" for plain tar
	closer func()
	hash   hash.Hash
	n      int64
	cfg    *unpackConfig
	err    error
}

func newLayerStream(r io.Reader, cfg *unpackConfig) (*layerStream, error) {
	src := &sourceReader{r: r}
	br := bufio.NewReaderSize(src, 256<<10)
	s := &layerStream{src: src, cfg: cfg, hash: sha256.New(), closer: func() {}}
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		s.kind = "gzip"
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, s.classify("layer gzip header", err)
		}
		s.r, s.closer = zr, func() { zr.Close() }
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		s.kind = "zstd"
		// One decoder goroutine: the readahead already overlaps decoding
		// with writing, and zstd's own async blocks on top of it measured
		// 1.5x slower on two cores.
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, s.classify("layer zstd header", err)
		}
		s.r, s.closer = zr, zr.Close
	default:
		s.r = br
		if cfg.trusted != "" && cfg.trusted.Algorithm() == digest.SHA256 {
			s.hash = nil // the raw bytes are the tar: the caller's digest is the diffID
		}
	}
	return s, nil
}

func (s *layerStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	if n > 0 {
		if s.hash != nil {
			s.hash.Write(p[:n])
		}
		s.n += int64(n)
		if max := s.cfg.maxSize; max > 0 && s.n > max {
			s.err = fmt.Errorf("layer is larger than %s uncompressed: refusing: %w", humanBytes(max), errdefs.ErrInvalidArgument)
			return 0, s.err
		}
		if x := s.cfg.maxRatio; x > 0 && s.kind != "" && s.n > ratioGrace && float64(s.n) > x*float64(s.src.n.Load()) {
			s.err = fmt.Errorf("layer expands more than %gx: refusing (%s bomb?): %w", x, s.kind, errdefs.ErrInvalidArgument)
			return 0, s.err
		}
	}
	return n, err
}

func (s *layerStream) close() { s.closer() }

// classify prefixes err with where and marks it invalid input unless it
// is the caller's reader failing, a cancellation, or already classified.
func (s *layerStream) classify(where string, err error) error {
	srcErr := s.src.failed()
	switch {
	case srcErr != nil && errors.Is(err, srcErr):
		return fmt.Errorf("%s: reading layer: %w", where, err)
	case errors.Is(err, errdefs.ErrInvalidArgument), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", where, err)
	case srcErr != nil:
		return fmt.Errorf("%s: reading layer: %w: %w", where, srcErr, err)
	case isInputErr(err):
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return fmt.Errorf("%s: truncated %s stream: %w: %w", where, s.kindName(), err, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%s: %w: %w", where, err, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("%s: %w", where, err)
}

func (s *layerStream) kindName() string {
	if s.kind == "" {
		return "tar"
	}
	return s.kind
}

// isInputErr reports whether a failure that nothing classified yet is the
// stream's fault (tar, gzip or zstd format errors, truncation) rather than
// the host's (a syscall error such as ENOSPC).
func isInputErr(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return true
	}
	switch errno {
	case syscall.ENOTDIR, syscall.EISDIR, syscall.ELOOP, syscall.ENAMETOOLONG, syscall.EXDEV,
		syscall.ENOENT, syscall.EEXIST, syscall.ENOTEMPTY, syscall.EINVAL, syscall.EMLINK,
		syscall.E2BIG, syscall.ERANGE:
		// What a hostile or broken layer causes: a name through a
		// non-directory or a dangling link, a link loop, a name or
		// xattr too long, a target that is not there.
		return true
	}
	return false
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// readahead runs decompression and hashing (the layerStream) in its own
// goroutine, up to readaheadDepth chunks ahead of the tar reader, so they
// overlap with the syscalls that write the files: on two cores or more a
// layer unpacks up to twice as fast.
type readahead struct {
	full     chan aheadChunk
	free     chan *[]byte
	stop     chan struct{}
	done     chan struct{}
	stopped  bool
	progress func(int64)

	buf    *[]byte // chunk being read, nil before the first
	n, off int
	err    error // error that ends the stream after buf
	read   int64 // bytes handed to the reader
}

type aheadChunk struct {
	buf *[]byte
	n   int
	err error
}

const readaheadDepth = 4

func startReadahead(src io.Reader, progress func(int64)) *readahead {
	ra := &readahead{
		full:     make(chan aheadChunk, readaheadDepth),
		free:     make(chan *[]byte, readaheadDepth),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		progress: progress,
	}
	for range readaheadDepth {
		ra.free <- unpackBufPool.Get().(*[]byte)
	}
	go ra.run(src)
	return ra
}

// run fills free buffers from src and passes them on, until src ends or
// fails (that chunk carries the error) or close stops it.
func (ra *readahead) run(src io.Reader) {
	defer close(ra.done)
	for {
		var buf *[]byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		b := *buf
		n := 0
		var err error
		for n < len(b) && err == nil {
			var m int
			m, err = src.Read(b[n:])
			n += m
		}
		select {
		case ra.full <- aheadChunk{buf, n, err}:
		case <-ra.stop:
			ra.free <- buf
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *readahead) Read(p []byte) (int, error) {
	for ra.off == ra.n {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.buf != nil {
			ra.free <- ra.buf // never blocks: free holds every buffer
		}
		c := <-ra.full
		ra.buf, ra.n, ra.off, ra.err = c.buf, c.n, 0, c.err
		if ra.progress != nil && c.n > 0 {
			ra.progress(ra.read + int64(c.n))
		}
	}
	n := copy(p, (*ra.buf)[ra.off:ra.n])
	ra.off += n
	ra.read += int64(n)
	return n, nil
}

// close stops the goroutine, waiting for a Read of the source it may be
// in, so nothing reads the caller's reader after Unpack returns, and
// gives the buffers back. It may be called more than once.
func (ra *readahead) close() {
	if ra.stopped {
		return
	}
	ra.stopped = true
	close(ra.stop)
	<-ra.done
	if ra.buf != nil {
		unpackBufPool.Put(ra.buf)
	}
	for {
		select {
		case c := <-ra.full:
			unpackBufPool.Put(c.buf)
		case b := <-ra.free:
			unpackBufPool.Put(b)
		default:
			return
		}
	}
}
