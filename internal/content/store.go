package content

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/opencontainers/go-digest"
)

const (
	blobsDir  = "blobs"
	ingestDir = "ingest"
)

// Store is a content-addressed blob store rooted at one directory. It holds
// no state in memory: several Stores, in one process or several, may share
// a root. Its methods are safe for concurrent use.
type Store struct {
	root string
}

// Open opens the store at root (<root>/content), creating its directories.
func Open(root string) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("open content store: empty root: %w", errdefs.ErrInvalidArgument)
	}
	root = filepath.Clean(root)
	dirs := []string{root, filepath.Join(root, blobsDir), filepath.Join(root, ingestDir)}
	for _, a := range algorithms {
		dirs = append(dirs, filepath.Join(root, blobsDir, string(a.name)))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open content store: %w", err)
		}
	}
	return &Store{root: root}, nil
}

// Root is the directory the store was opened at.
func (s *Store) Root() string { return s.root }

// Open opens a committed blob for reading. The *os.File is also an
// io.ReaderAt and io.Seeker; the caller closes it. A blob deleted while open
// stays readable through the open file. Symbolic links and other
// non-regular files in blobs/ are never followed: they are not blobs.
func (s *Store) Open(d digest.Digest) (*os.File, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK so a planted FIFO cannot hang us; no effect on regular files.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("blob %s: not a regular file: %w", d, errdefs.ErrNotFound)
	}
	return f, nil
}

// Stat returns the size of a committed blob, or errdefs.ErrNotFound.
func (s *Store) Stat(d digest.Digest) (int64, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("blob %s: not a regular file: %w", d, errdefs.ErrNotFound)
	}
	return fi.Size(), nil
}

// Delete removes a committed blob; errdefs.ErrNotFound if it is absent, so
// callers that only want it gone can ignore that class. Readers that have
// it open keep reading the old file.
func (s *Store) Delete(d digest.Digest) error {
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every committed blob, sha256 ones first, each algorithm
// in lexical order of hex. Anything in blobs/ that is not a blob (stray
// files, malformed names, symbolic links, directories) is skipped, and no
// link is followed. An error from fn stops the walk and is returned as is.
// Blobs committed or deleted during the walk may or may not be seen.
func (s *Store) Walk(fn func(d digest.Digest, size int64) error) error {
	for _, alg := range algorithms {
		dir := filepath.Join(s.root, blobsDir, string(alg.name))
		fi, err := os.Lstat(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("walk blobs: %w", err)
		}
		if !fi.IsDir() {
			continue // a symbolic link or stray file: not ours to follow
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("walk blobs: %w", err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			name := e.Name()
			if len(name) != alg.hexLen || !isLowerHex(name) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted since ReadDir
				}
				return fmt.Errorf("walk blobs: %w", err)
			}
			if !info.Mode().IsRegular() {
				continue
			}
			if err := fn(digest.NewDigestFromEncoded(alg.name, name), info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// CleanIngest removes abandoned ingest files last modified more than
// olderThan ago; CleanIngest(0) removes every abandoned one. A file whose
// Writer is still alive, in this process or another, is never removed: its
// writer holds an flock on it, which the kernel drops when that process
// dies (so a kill -9 leaves a file this sweeps). Stray non-files in ingest/
// older than the cutoff are removed too.
func (s *Store) CleanIngest(olderThan time.Duration) error {
	dir := filepath.Join(s.root, ingestDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("clean ingest: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if olderThan > 0 && !info.ModTime().Before(cutoff) {
			continue
		}
		if !info.Mode().IsRegular() {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := removeUnlocked(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean ingest: %w", err)
	}
	return nil
}

// removeUnlocked removes the ingest file at p unless a live Writer holds
// its lock. The unlink happens under our own lock and only if p still names
// the file we locked, so it cannot race a writer creating or committing it.
func removeUnlocked(p string) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	if err := fsutil.Flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil // a live writer
		}
		return err
	}
	held, err := f.Stat()
	if err != nil {
		return err
	}
	now, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // committed or aborted meanwhile
		}
		return err
	}
	if !os.SameFile(held, now) {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
