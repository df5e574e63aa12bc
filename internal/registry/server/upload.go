package server

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/opencontainers/go-digest"
)

// An upload session's life:
//
//	NewUpload      uploads/<uuid>/ with info and an empty data file
//	OpenUpload     locks data (flock, so requests on one session take turns,
//	               across processes too), learns the offset from its size
//	Append         writes a chunk at the offset, hashing it in the same pass;
//	               a chunk that fails half-way is cut off again, so the
//	               offset only ever moves by whole chunks
//	Close          saves the running hash (so the next chunk needs no
//	               re-read) and unlocks
//	Commit         checks digest (and size), fsyncs, renames data into blobs/
//	               and links the blob into the repository (one critical
//	               section of LockWrites, against the collector), removes
//	               the session
//	Cancel         removes the session
//
// Nothing in uploads/ is ever visible through the API as a blob; a kill -9
// leaves a session that the client may resume (GET gives the offset) or
// that PurgeUploads removes once it has been idle for the expiry time.

// Upload is one open upload session, locked by this process until Close.
// It is not safe for concurrent use.
type Upload struct {
	s       *Store
	ID      string
	Repo    string
	alg     algorithm // the running hash's algorithm
	dir     string
	f       *os.File // data, locked
	offset  int64
	h       hash.Hash // nil when not yet loaded for offset
	Started time.Time
	dirty   bool // h has advanced past what hashstate records
}

type uploadInfo struct {
	Repository string    `json:"repository"`
	Algorithm  string    `json:"algorithm"`
	Started    time.Time `json:"started"`
}

type hashState struct {
	Algorithm string `json:"algorithm"`
	Offset    int64  `json:"offset"`
	State     []byte `json:"state"`
}

// RangeError is a chunk that does not start where the upload stands (the
// spec's 416).
type RangeError struct {
	Offset int64 // bytes received so far
	Start  int64 // where the chunk claimed to start
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("chunk starts at byte %d, but the upload has %d bytes: send the chunk that starts at %d", e.Start, e.Offset, e.Offset)
}

func (e *RangeError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// SizeError is content whose length is not what was declared, or over the
// configured maximum (TooLarge).
type SizeError struct {
	Want, Got int64
	TooLarge  bool
}

func (e *SizeError) Error() string {
	if e.TooLarge {
		return fmt.Sprintf("blob is over the registry's size limit of %d bytes", e.Want)
	}
	if e.Got > e.Want {
		return fmt.Sprintf("chunk is longer than its declared %d bytes", e.Want)
	}
	return fmt.Sprintf("chunk has %d bytes, %d were declared", e.Got, e.Want)
}

func (e *SizeError) Unwrap() error { return errdefs.ErrInvalidArgument }

// DigestError is an upload whose content does not hash to the digest the
// client gave to finish it.
type DigestError struct {
	Want, Got digest.Digest
	Size      int64
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("upload has digest %s (%d bytes), not %s", e.Got, e.Size, e.Want)
}

func (e *DigestError) Unwrap() error { return errdefs.ErrInvalidArgument }

func newUploadID() string {
	b := []byte(randomHex(16))
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}

// NewUpload starts an upload session for repository name whose running
// hash uses alg ("" for sha256). The session is returned open and locked.
func (s *Store) NewUpload(name string, alg digest.Algorithm) (*Upload, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if alg == "" {
		alg = digest.SHA256
	}
	a, ok := lookupAlgorithm(string(alg))
	if !ok {
		return nil, fmt.Errorf("digest algorithm %q is not supported (sha256 and sha512 are): %w", truncate(string(alg)), errdefs.ErrInvalidArgument)
	}
	id := newUploadID()
	dir, _ := s.uploadPath(id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start upload: %w", err)
	}
	info := uploadInfo{Repository: name, Algorithm: string(a.name), Started: time.Now().UTC()}
	data, _ := json.Marshal(info)
	// info is written before data exists: a session whose data file is
	// missing is one that never finished starting, and reads as unknown.
	if err := s.writeFileAtomic(filepath.Join(dir, "info"), data); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start upload: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start upload: %w", err)
	}
	if err := fsutil.Flock(f, syscall.LOCK_EX); err != nil {
		f.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start upload: %w", err)
	}
	return &Upload{s: s, ID: id, Repo: name, alg: a, dir: dir, f: f, h: a.new(), Started: info.Started}, nil
}

// OpenUpload opens and locks session id of repository name. A session of
// another repository, a malformed ID, or one idle for longer than maxIdle
// (when > 0) is errdefs.ErrNotFound, so IDs cannot be probed across
// repositories.
func (s *Store) OpenUpload(name, id string, maxIdle time.Duration) (*Upload, error) {
	unknown := fmt.Errorf("upload %q in %s: %w", truncate(id), name, errdefs.ErrNotFound)
	dir, ok := s.uploadPath(id)
	if !ok {
		return nil, unknown
	}
	b, err := readSmallFile(filepath.Join(dir, "info"), 4096)
	if err != nil {
		return nil, unknown
	}
	var info uploadInfo
	if json.Unmarshal(b, &info) != nil || info.Repository != name {
		return nil, unknown
	}
	a, ok := lookupAlgorithm(info.Algorithm)
	if !ok {
		return nil, unknown
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, unknown
	}
	if err := fsutil.Flock(f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock upload %s: %w", id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open upload %s: %w", id, err)
	}
	// Committed or cancelled while we waited for the lock? Then our fd is
	// to a file that was unlinked, or renamed into blobs/: it must not be
	// written, so the path has to still name the very file we locked.
	if now, err := os.Lstat(filepath.Join(dir, "data")); err != nil || !os.SameFile(fi, now) {
		f.Close()
		return nil, unknown
	}
	if maxIdle > 0 && time.Since(fi.ModTime()) > maxIdle {
		f.Close()
		os.RemoveAll(dir)
		return nil, unknown
	}
	return &Upload{s: s, ID: id, Repo: name, alg: a, dir: dir, f: f, offset: fi.Size(), Started: info.Started}, nil
}

// Offset is the number of bytes received so far.
func (u *Upload) Offset() int64 { return u.offset }

// loadHash makes u.h the running hash at u.offset: from hashstate when it
// matches, else by hashing what data holds.
func (u *Upload) loadHash(alg algorithm) error {
	if u.h != nil && u.alg.name == alg.name {
		return nil
	}
	u.alg = alg
	h := alg.new()
	if b, err := readSmallFile(filepath.Join(u.dir, "hashstate"), 4096); err == nil {
		var st hashState
		if json.Unmarshal(b, &st) == nil && st.Algorithm == string(alg.name) && st.Offset == u.offset {
			if um, ok := h.(encoding.BinaryUnmarshaler); ok && um.UnmarshalBinary(st.State) == nil {
				u.h = h
				return nil
			}
		}
	}
	h.Reset()
	if _, err := io.Copy(h, io.NewSectionReader(u.f, 0, u.offset)); err != nil {
		return fmt.Errorf("upload %s: rehash: %w", u.ID, err)
	}
	u.h = h
	u.dirty = true
	return nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// Append writes r at the current offset. start is where the client says
// the chunk starts (-1: wherever the upload stands) and length how long it
// is (-1: unknown); maxSize caps the whole blob (0: no cap). On any error
// the bytes of this chunk are cut off again, so a retry of the same chunk
// succeeds.
func (u *Upload) Append(r io.Reader, start, length, maxSize int64) (int64, error) {
	if start >= 0 && start != u.offset {
		return 0, &RangeError{Offset: u.offset, Start: start}
	}
	if err := u.loadHash(u.alg); err != nil {
		return 0, err
	}
	if length >= 0 && maxSize > 0 && u.offset+length > maxSize {
		return 0, &SizeError{Want: maxSize, TooLarge: true}
	}
	limit := length // bytes we accept from r before it is an error; -1: any
	if limit < 0 && maxSize > 0 {
		limit = maxSize - u.offset
	}
	if _, err := u.f.Seek(u.offset, io.SeekStart); err != nil {
		return 0, fmt.Errorf("upload %s: %w", u.ID, err)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	var err error
	for {
		var m int
		m, err = r.Read(buf)
		if m > 0 {
			if limit >= 0 && n+int64(m) > limit {
				if length >= 0 {
					err = &SizeError{Want: length, Got: n + int64(m)}
				} else {
					err = &SizeError{Want: maxSize, TooLarge: true}
				}
				break
			}
			if _, werr := u.f.Write(buf[:m]); werr != nil {
				err = fmt.Errorf("upload %s: write: %w", u.ID, werr)
				break
			}
			u.h.Write(buf[:m])
			n += int64(m)
		}
		if err == io.EOF {
			err = nil
			break
		}
		if err != nil {
			break
		}
	}
	if err == nil && length >= 0 && n != length {
		err = &SizeError{Want: length, Got: n}
	}
	if err != nil {
		// Cut the partial chunk off; the running hash has seen it, so
		// forget it (hashstate on disk still matches the old offset).
		u.h = nil
		if terr := u.f.Truncate(u.offset); terr != nil {
			return 0, fmt.Errorf("upload %s: %v; then truncate: %w", u.ID, err, terr)
		}
		return 0, err
	}
	u.offset += n
	if n > 0 {
		u.dirty = true
	}
	return n, nil
}

// Close saves the running hash and unlocks the session.
func (u *Upload) Close() error {
	if u.f == nil {
		return nil
	}
	if u.dirty && u.h != nil {
		u.saveHash()
	}
	err := u.f.Close() // drops the flock
	u.f = nil
	return err
}

// saveHash is best effort: hashstate is a cache that loadHash verifies.
func (u *Upload) saveHash() {
	m, ok := u.h.(encoding.BinaryMarshaler)
	if !ok {
		return
	}
	state, err := m.MarshalBinary()
	if err != nil {
		return
	}
	b, _ := json.Marshal(hashState{Algorithm: string(u.alg.name), Offset: u.offset, State: state})
	f, err := u.s.tempFile()
	if err != nil {
		return
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil && cerr == nil {
		err = os.Rename(f.Name(), filepath.Join(u.dir, "hashstate"))
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// Commit finishes the upload as blob want: the content must hash to it
// (a *DigestError otherwise, and the session is removed: its bytes can
// never become that blob). The blob is made durable in blobs/, linked
// into the session's repository, and the session removed.
func (u *Upload) Commit(want digest.Digest) error {
	alg, _, err := splitDigest(string(want))
	if err != nil {
		return err
	}
	if err := u.loadHash(alg); err != nil {
		return err
	}
	got := digest.NewDigestFromEncoded(alg.name, fmt.Sprintf("%x", u.h.Sum(nil)))
	if got != want {
		u.Cancel()
		return &DigestError{Want: want, Got: got, Size: u.offset}
	}
	target, err := u.s.blobPath(want)
	if err != nil {
		return err
	}
	if err := u.f.Chmod(0o444); err != nil {
		return fmt.Errorf("commit upload %s: %w", u.ID, err)
	}
	if err := u.f.Sync(); err != nil {
		return fmt.Errorf("commit upload %s: %w", u.ID, err)
	}
	// Install and link in one critical section: a collector sweeping an
	// old copy of the same blob either has removed it (we install ours) or
	// finds it touched by installBlob or linkBlob, and keeps it.
	unlock, err := u.s.LockWrites()
	if err != nil {
		return err
	}
	// Rename while holding the session's lock: a request waiting on it
	// then finds the file gone from the session and answers "unknown upload".
	err = u.s.installBlob(filepath.Join(u.dir, "data"), target, want)
	if err == nil {
		u.f.Close()
		u.f = nil
		err = u.s.linkBlob(u.Repo, want)
	}
	unlock()
	if err != nil {
		return err
	}
	os.RemoveAll(u.dir)
	return nil
}

// Cancel removes the session.
func (u *Upload) Cancel() error {
	err := os.RemoveAll(u.dir)
	if u.f != nil {
		u.f.Close()
		u.f = nil
	}
	if err != nil {
		return fmt.Errorf("cancel upload %s: %w", u.ID, err)
	}
	return nil
}

// PurgeUploads removes upload sessions idle for longer than olderThan
// (0: every session not in use), and temporary files left in tmp/ by a
// crash that are older than that. A session a request holds locked is
// never removed. It returns how many sessions it removed.
func (s *Store) PurgeUploads(olderThan time.Duration) (int, error) {
	n, _, err := s.purgeUploads(olderThan, false, nil)
	return n, err
}

// purgeUploads is PurgeUploads that also counts the bytes of the sessions
// and reports each; with dryRun it only counts, and removes nothing.
func (s *Store) purgeUploads(olderThan time.Duration, dryRun bool, found func(id string, size int64)) (int, int64, error) {
	cutoff := time.Now().Add(-olderThan)
	var errs []error
	ids, err := readDirNames(filepath.Join(s.root, uploadsDir))
	if err != nil {
		return 0, 0, fmt.Errorf("purge uploads: %w", err)
	}
	removed, bytes := 0, int64(0)
	remove := func(id, dir string, size int64) {
		if !dryRun {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
				return
			}
		}
		removed++
		bytes += size
		if found != nil {
			found(id, size)
		}
	}
	for _, id := range ids {
		dir := filepath.Join(s.root, uploadsDir, id)
		if !validUploadID(id) {
			continue // not ours
		}
		f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			// A session that never finished starting: judge by the dir.
			if fi, err := os.Lstat(dir); err == nil && fi.ModTime().Before(cutoff) {
				remove(id, dir, 0)
			}
			continue
		}
		if err := fsutil.Flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue // in use
		}
		fi, err := f.Stat()
		if err == nil && fi.ModTime().Before(cutoff) {
			remove(id, dir, fi.Size())
		}
		f.Close()
	}
	if dryRun {
		return removed, bytes, errors.Join(errs...)
	}
	// Temporary files live for one request; anything older than an hour
	// (or the expiry, if longer) was left by a crash.
	tmpCutoff := time.Now().Add(-max(olderThan, time.Hour))
	if entries, err := os.ReadDir(filepath.Join(s.root, tmpDir)); err == nil {
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.ModTime().Before(tmpCutoff) {
				os.RemoveAll(filepath.Join(s.root, tmpDir, e.Name()))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, bytes, fmt.Errorf("purge uploads: %w", err)
	}
	return removed, bytes, nil
}
