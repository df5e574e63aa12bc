package content

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Writer streams one blob into the store. Bytes go to a private ingest
// file and into the hash in the same pass; nothing is visible in blobs/
// until Commit has checked them. Every Writer must end with Commit or
// Close (Close after Commit is a no-op, so `defer w.Close()` is the idiom).
// A Writer is not safe for concurrent use.
type Writer struct {
	s        *Store
	expected digest.Digest // "" when the caller does not know it
	size     int64         // -1 when unknown
	alg      algorithm
	h        hash.Hash
	f        *os.File // nil once committed or aborted
	path     string   // of the ingest file
	fd       int      // of f, for sync_file_range
	n        int64    // bytes written
	flushed  int64    // bytes whose writeback was started
	err      error    // sticky: once set, Commit fails
}

// Writer starts writing a blob. expected may be "" (the digest is then
// computed, with sha256); size may be -1 (unknown). When either is given,
// Commit refuses content that does not match it, and Write refuses any
// byte past size.
func (s *Store) Writer(expected digest.Digest, size int64) (*Writer, error) {
	alg := algorithms[0]
	if expected != "" {
		a, _, err := parseDigest(expected)
		if err != nil {
			return nil, err
		}
		alg = a
	}
	if size < -1 {
		return nil, fmt.Errorf("write blob %s: size %d: %w", expected, size, errdefs.ErrInvalidArgument)
	}
	f, path, err := s.createIngest()
	if err != nil {
		return nil, fmt.Errorf("write blob %s: %w", expected, err)
	}
	return &Writer{s: s, expected: expected, size: size, alg: alg, h: alg.new(), f: f, fd: int(f.Fd()), path: path}, nil
}

// createIngest creates and locks a fresh ingest file. The lock tells
// CleanIngest the file is alive, so the file must never be visible
// unlocked: it is made unnamed (O_TMPFILE), locked, and only then linked
// into ingest/. Filesystems without O_TMPFILE get create-then-lock, where
// a sweep may unlink the file in the instant before the lock; the Nlink
// check catches that and we start over with a new name.
func (s *Store) createIngest() (*os.File, string, error) {
	dir := filepath.Join(s.root, ingestDir)
	f, p, err := createLinkedTmp(dir)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) {
		return f, p, err
	}
	for attempt := 0; ; attempt++ {
		p := filepath.Join(dir, randomName())
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			if errors.Is(err, fs.ErrExist) && attempt < 8 {
				continue
			}
			return nil, "", err
		}
		if err := fsutil.Flock(f, syscall.LOCK_EX); err != nil {
			f.Close()
			os.Remove(p)
			return nil, "", err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			os.Remove(p)
			return nil, "", err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
			f.Close()
			if attempt < 64 {
				continue
			}
			return nil, "", errors.New("ingest file removed as it was created")
		}
		return f, p, nil
	}
}

// createLinkedTmp makes a locked O_TMPFILE in dir and links it under a
// random name. EOPNOTSUPP/EISDIR mean the filesystem has no O_TMPFILE.
func createLinkedTmp(dir string) (*os.File, string, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, "", &os.PathError{Op: "create ingest file", Path: dir, Err: err}
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, "", &os.PathError{Op: "lock ingest file", Path: dir, Err: err}
	}
	for attempt := 0; ; attempt++ {
		p := filepath.Join(dir, randomName())
		// Linking through /proc/self/fd needs no CAP_DAC_READ_SEARCH,
		// unlike linkat(AT_EMPTY_PATH).
		err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, p, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			return os.NewFile(uintptr(fd), p), p, nil
		}
		if errors.Is(err, unix.EEXIST) && attempt < 8 {
			continue
		}
		unix.Close(fd)
		return nil, "", &os.LinkError{Op: "link ingest file", Old: "O_TMPFILE", New: p, Err: err}
	}
}

func randomName() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (w *Writer) name() string {
	if w.expected != "" {
		return "blob " + string(w.expected)
	}
	return "blob"
}

// Write appends p to the blob. A write that would go past the declared
// size is refused whole, before any of it is stored, and the Writer can
// then only be closed: a lying or endless stream costs at most one buffer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.f == nil {
		return 0, fmt.Errorf("%s: write after commit or close: %w", w.name(), errdefs.ErrFailedPrecondition)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.size >= 0 && int64(len(p)) > w.size-w.n {
		w.err = &MismatchError{Expected: w.expected, ExpectedSize: w.size, ActualSize: w.n + int64(len(p))}
		return 0, w.err
	}
	var n int
	var err error
	if len(p) >= overlapMin {
		// Hash on another core while the kernel copies p into the page
		// cache: both only read p. If the write falls short the hash has
		// seen bytes the file has not, but the Writer is then spent.
		done := make(chan struct{})
		go func() {
			w.h.Write(p)
			close(done)
		}()
		n, err = w.f.Write(p)
		<-done
	} else {
		n, err = w.f.Write(p)
		w.h.Write(p[:n])
	}
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("%s: write ingest: %w", w.name(), err)
		return n, w.err
	}
	if w.n-w.flushed >= flushEvery {
		// Start writeback of what is written so far, so the fsync in
		// Commit waits for the tail only, not for the whole blob. A hint:
		// its errors are Commit's fsync's to report.
		unix.SyncFileRange(w.fd, w.flushed, w.n-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
		w.flushed = w.n
	}
	return n, nil
}

const (
	// overlapMin is the write size from which hashing runs beside the
	// write(2) rather than after it; below it a goroutine costs more than
	// it saves.
	overlapMin = 128 << 10
	// flushEvery is how often Write starts writeback of the ingest file.
	flushEvery = 8 << 20
)

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Digest is the digest of what was written so far, with the expected
// digest's algorithm (sha256 when none was expected).
func (w *Writer) Digest() digest.Digest {
	return digest.NewDigestFromEncoded(w.alg.name, hex.EncodeToString(w.h.Sum(nil)))
}

// Commit makes the blob visible once its size and digest match what was
// declared, and returns its digest. The ingest file is fsynced, renamed
// into blobs/<alg>/<hex> and the directory fsynced, so after Commit returns
// the blob survives a crash. If another writer committed the same blob
// first, this one's copy is discarded and Commit succeeds. On any failure
// the ingest file is removed and nothing becomes visible.
func (w *Writer) Commit() (digest.Digest, error) {
	if w.f == nil {
		return "", fmt.Errorf("%s: commit after commit or close: %w", w.name(), errdefs.ErrFailedPrecondition)
	}
	if w.err != nil {
		w.abort()
		return "", w.err
	}
	got := w.Digest()
	if (w.size >= 0 && w.n != w.size) || (w.expected != "" && got != w.expected) {
		w.abort()
		return "", &MismatchError{Expected: w.expected, ExpectedSize: w.size, Actual: got, ActualSize: w.n}
	}
	if err := w.commit(got); err != nil {
		w.abort()
		return "", fmt.Errorf("commit blob %s: %w", got, err)
	}
	return got, nil
}

func (w *Writer) commit(d digest.Digest) error {
	target, err := w.s.blobPath(d)
	if err != nil {
		return err
	}
	// Read-only, so no later writer through a stray path can change a
	// blob under its digest.
	if err := w.f.Chmod(0o444); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	// Same digest and size means same bytes: keep the blob already there
	// (rename over it would be equally correct, but dirties the directory).
	if fi, err := os.Lstat(target); err == nil && fi.Mode().IsRegular() && fi.Size() == w.n {
		if err := os.Remove(w.path); err != nil {
			return err
		}
	} else if err := os.Rename(w.path, target); err != nil {
		return err
	}
	// Rename while holding the lock, and close after: CleanIngest then
	// finds either our locked file or nothing at the ingest path.
	f := w.f
	w.f = nil
	if err := f.Close(); err != nil {
		return err
	}
	// Also when the blob was already there: its writer may not have
	// synced the directory yet, and our caller is told it is durable.
	return fsutil.SyncDir(filepath.Dir(target))
}

// Close aborts the write unless it was committed; it is always safe to call.
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	return w.abort()
}

func (w *Writer) abort() error {
	var err error
	if w.f != nil {
		err = w.f.Close()
		w.f = nil
	}
	if rerr := os.Remove(w.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("%s: abort: %w", w.name(), err)
	}
	return nil
}

// putBufSize is Put's copy buffer: large, so a 300 MB layer is ~300
// write(2) calls and the hash runs on long runs of bytes.
const putBufSize = 1 << 20

var putBufs = sync.Pool{New: func() any { b := make([]byte, putBufSize); return &b }}

// Put copies r into the store as one blob and returns its digest and size.
// expected and size are as for Writer ("" and -1 when unknown). If the
// expected blob is already present (with the declared size, when given),
// Put returns at once without reading r. An error from r is returned
// wrapped, and nothing becomes visible.
func (s *Store) Put(r io.Reader, expected digest.Digest, size int64) (digest.Digest, int64, error) {
	if expected != "" {
		if err := ValidateDigest(expected); err != nil {
			return "", 0, err
		}
		if n, err := s.Stat(expected); err == nil && (size < 0 || n == size) {
			return expected, n, nil
		}
	}
	w, err := s.Writer(expected, size)
	if err != nil {
		return "", 0, err
	}
	defer w.Close()

	bp := putBufs.Get().(*[]byte)
	defer putBufs.Put(bp)
	buf := *bp
	for {
		n, eof, rerr := fill(r, buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return "", 0, err
			}
		}
		if rerr != nil {
			return "", 0, fmt.Errorf("%s: read: %w", w.name(), rerr)
		}
		if eof {
			break
		}
	}
	d, err := w.Commit()
	if err != nil {
		return "", 0, err
	}
	return d, w.n, nil
}

// fill reads into buf until it is full or r ends. Filling before writing
// matters: readers such as HTTP bodies return small pieces, and each
// write(2) has a fixed cost. Unlike io.ReadFull it keeps a reader's own
// io.ErrUnexpectedEOF (a truncated stream) apart from a clean end.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}
