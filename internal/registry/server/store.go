package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Store is the registry's filesystem storage (the tree is drawn in
// paths.go). It keeps no state in memory, so several Stores, in one
// process or several, may share a root, and all its methods are safe for
// concurrent use. Reads and writes are ordered so that every reader sees
// whole files: blobs and links appear by rename or by exclusive creation.
//
// The Walk methods are what a garbage collector marks from: repositories,
// their manifests, tags and layer links, and the blobs themselves. Writes
// that make content reachable hold LockWrites, and reads refresh what they
// find, so that CollectGarbage can run while the registry serves (gc.go).
type Store struct {
	root string
	// refreshAfter: a read that finds a link or manifest revision whose
	// mtime is older than this sets it to now, so the collector does not
	// sweep what a client has just been told exists (gc.go).
	refreshAfter time.Duration
	// gateMu lets one goroutine of this process at a time wait at the
	// collector's gate: a sweep batch then blocks one thread, not one per
	// request (a goroutine blocked in flock holds its thread).
	gateMu sync.Mutex
}

// Open opens (creating if needed) the storage rooted at root.
func Open(root string) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("open registry storage: empty root: %w", errdefs.ErrInvalidArgument)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open registry storage: %w", err)
	}
	dirs := []string{root, filepath.Join(root, reposDir), filepath.Join(root, uploadsDir), filepath.Join(root, tmpDir)}
	for _, a := range algorithms {
		dirs = append(dirs, filepath.Join(root, blobsDir, string(a.name)))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open registry storage: %w", err)
		}
	}
	return &Store{root: root, refreshAfter: readRefreshAfter}, nil
}

// Root is the directory the store was opened at.
func (s *Store) Root() string { return s.root }

// ---- blobs ----

// OpenBlob opens a stored blob for reading; errdefs.ErrNotFound if absent.
// Symbolic links and other non-regular files are never followed.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, int64, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			return nil, 0, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return nil, 0, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open blob %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("blob %s: not a regular file: %w", d, errdefs.ErrNotFound)
	}
	return f, fi.Size(), nil
}

// StatBlob is the size of a stored blob, or errdefs.ErrNotFound.
func (s *Store) StatBlob(d digest.Digest) (int64, error) {
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

// putBlobBytes stores data, whose digest the caller computed, as a blob.
func (s *Store) putBlobBytes(d digest.Digest, data []byte) error {
	target, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(target); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return touch(target)
	}
	f, err := s.tempFile()
	if err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o444)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	return s.installBlob(tmp, target, d)
}

// installBlob renames a verified, synced file into blobs/. Same digest and
// size means same bytes, so a blob already there is kept (and its mtime
// refreshed, which tells a garbage collector with a grace period that it
// is in use again).
func (s *Store) installBlob(src, target string, d digest.Digest) error {
	if fi, err := os.Lstat(target); err == nil && fi.Mode().IsRegular() {
		if sfi, err := os.Stat(src); err == nil && sfi.Size() == fi.Size() {
			os.Remove(src)
			return touch(target)
		}
	}
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	if err := os.Rename(src, target); err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	return nil
}

// WalkBlobs calls fn for every stored blob. Anything in blobs/ that is not
// a blob by its name and type is skipped. Blobs added or removed during the
// walk may or may not be seen; an error from fn stops the walk.
func (s *Store) WalkBlobs(fn func(d digest.Digest, size int64) error) error {
	return s.walkBlobFiles(func(d digest.Digest, fi fs.FileInfo) error { return fn(d, fi.Size()) })
}

// walkBlobFiles is WalkBlobs with each blob's FileInfo (the collector
// wants its mtime too).
func (s *Store) walkBlobFiles(fn func(d digest.Digest, fi fs.FileInfo) error) error {
	for _, alg := range algorithms {
		algDir := filepath.Join(s.root, blobsDir, string(alg.name))
		prefixes, err := readDirNames(algDir)
		if err != nil {
			return fmt.Errorf("walk blobs: %w", err)
		}
		for _, pre := range prefixes {
			if len(pre) != 2 || !isLowerHex(pre) {
				continue
			}
			entries, err := os.ReadDir(filepath.Join(algDir, pre))
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
					continue
				}
				return fmt.Errorf("walk blobs: %w", err)
			}
			for _, e := range entries {
				name := e.Name()
				if !e.Type().IsRegular() || len(name) != alg.hexLen || !isLowerHex(name) || name[:2] != pre {
					continue
				}
				info, err := e.Info()
				if err != nil {
					continue // removed since ReadDir
				}
				if err := fn(digest.NewDigestFromEncoded(alg.name, name), info); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ---- repositories ----

// RepositoryExists reports whether anything was ever pushed to name.
func (s *Store) RepositoryExists(name string) (bool, error) {
	repo, err := s.repoPath(name)
	if err != nil {
		return false, err
	}
	for _, sub := range []string{manifestDir, layersDir} {
		if fi, err := os.Lstat(filepath.Join(repo, sub)); err == nil && fi.IsDir() {
			return true, nil
		}
	}
	return false, nil
}

// Repositories lists every repository in lexical order. A directory is a
// repository when it holds _manifests or _layers; repositories nest
// ("team" and "team/app" may both be).
func (s *Store) Repositories() ([]string, error) {
	var names []string
	var walk func(dir, name string) error
	walk = func(dir, name string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		isRepo := false
		for _, e := range entries {
			n := e.Name()
			if !e.IsDir() { // ReadDir does not follow links: a symlink is not a dir
				continue
			}
			if n == manifestDir || n == layersDir {
				isRepo = true
				continue
			}
			child := n
			if name != "" {
				child = name + "/" + n
			}
			if ValidateName(child) != nil {
				continue
			}
			if err := walk(filepath.Join(dir, n), child); err != nil {
				return err
			}
		}
		if isRepo && name != "" {
			names = append(names, name)
		}
		return nil
	}
	if err := walk(filepath.Join(s.root, reposDir), ""); err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// ---- layer links ----

// LinkBlob makes a stored blob visible in repository name. The blob must
// already be in blobs/ (errdefs.ErrNotFound otherwise, also when the
// collector swept it a moment ago: mount then falls back to an upload).
// It takes the write lock itself (LockWrites); inside one, use linkBlob.
func (s *Store) LinkBlob(name string, d digest.Digest) error {
	unlock, err := s.LockWrites()
	if err != nil {
		return err
	}
	defer unlock()
	return s.linkBlob(name, d)
}

// linkBlob is LinkBlob for a caller that holds LockWrites. The blob's and
// the link's mtimes are set to now (an existing link too): that is what
// tells a running collector they are in use again (gc.go).
func (s *Store) linkBlob(name string, d digest.Digest) error {
	bp, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if err := touch(bp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return fmt.Errorf("link blob %s into %s: %w", d, name, err)
	}
	p, err := s.layerLinkPath(name, d)
	if err != nil {
		return err
	}
	if isRegular(p) {
		err = touch(p)
	} else {
		err = createEmpty(p)
	}
	if err != nil {
		return fmt.Errorf("link blob %s into %s: %w", d, name, err)
	}
	return nil
}

// StatRepoBlob is the size of blob d if repository name links it, else
// errdefs.ErrNotFound. Like every read of a link it may refresh the
// link's mtime (see refreshRead).
func (s *Store) StatRepoBlob(name string, d digest.Digest) (int64, error) {
	lp, bp, lfi, err := s.statLink(name, d)
	if err != nil {
		return 0, err
	}
	bfi, err := os.Lstat(bp)
	if err != nil || !bfi.Mode().IsRegular() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	if s.refreshRead(lfi, bfi, lp, bp) {
		return 0, fmt.Errorf("blob %s in %s: %w", d, name, errdefs.ErrNotFound)
	}
	return bfi.Size(), nil
}

// OpenRepoBlob opens blob d if repository name links it, refreshing the
// link as StatRepoBlob does.
func (s *Store) OpenRepoBlob(name string, d digest.Digest) (*os.File, int64, error) {
	lp, bp, lfi, err := s.statLink(name, d)
	if err != nil {
		return nil, 0, err
	}
	f, size, err := s.OpenBlob(d)
	if err != nil {
		return nil, 0, err
	}
	if bfi, err := f.Stat(); err == nil && s.refreshRead(lfi, bfi, lp, bp) {
		// Swept between our open and the refresh: the bytes are still
		// readable through f, but a client told "here it is" would go on
		// to push a manifest naming a blob that is gone.
		f.Close()
		return nil, 0, fmt.Errorf("blob %s in %s: %w", d, name, errdefs.ErrNotFound)
	}
	return f, size, nil
}

// statLink finds repository name's link to blob d.
func (s *Store) statLink(name string, d digest.Digest) (linkPath, blobPath string, fi fs.FileInfo, err error) {
	if linkPath, err = s.layerLinkPath(name, d); err != nil {
		return "", "", nil, err
	}
	if blobPath, err = s.blobPath(d); err != nil {
		return "", "", nil, err
	}
	fi, err = os.Lstat(linkPath)
	if err != nil || !fi.Mode().IsRegular() {
		return "", "", nil, fmt.Errorf("blob %s in %s: %w", d, name, errdefs.ErrNotFound)
	}
	return linkPath, blobPath, fi, nil
}

// useRepoBlob is StatRepoBlob for a write that is about to rely on the
// blob (a manifest PUT naming it), called under LockWrites: it sets the
// link's and the blob's mtimes to now, always, so that a running
// collector keeps them (gc.go).
func (s *Store) useRepoBlob(name string, d digest.Digest) (int64, error) {
	lp, bp, _, err := s.statLink(name, d)
	if err != nil {
		return 0, err
	}
	size, err := s.StatBlob(d)
	if err != nil {
		return 0, err
	}
	if err := touchAll(lp, bp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("blob %s in %s: %w", d, name, errdefs.ErrNotFound)
		}
		return 0, fmt.Errorf("blob %s in %s: %w", d, name, err)
	}
	return size, nil
}

// UnlinkBlob removes blob d from repository name (the blob itself stays
// until garbage collection); errdefs.ErrNotFound if it was not linked.
func (s *Store) UnlinkBlob(name string, d digest.Digest) error {
	p, err := s.layerLinkPath(name, d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob %s in %s: %w", d, name, errdefs.ErrNotFound)
		}
		return fmt.Errorf("unlink blob %s from %s: %w", d, name, err)
	}
	return nil
}

// WalkRepoBlobs calls fn for every blob linked into repository name.
func (s *Store) WalkRepoBlobs(name string, fn func(d digest.Digest) error) error {
	repo, err := s.repoPath(name)
	if err != nil {
		return err
	}
	return walkLinks(filepath.Join(repo, layersDir), fn)
}

// walkLinks lists <dir>/<alg>/<hex> link files.
func walkLinks(dir string, fn func(d digest.Digest) error) error {
	for _, alg := range algorithms {
		names, err := readDirNames(filepath.Join(dir, string(alg.name)))
		if err != nil {
			return err
		}
		for _, n := range names {
			if len(n) != alg.hexLen || !isLowerHex(n) {
				continue
			}
			if err := fn(digest.NewDigestFromEncoded(alg.name, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- manifests ----

// PutManifest stores a manifest's bytes (the caller has computed d from
// them, with d's algorithm) and links it into repository name with the
// media type it is served as. The caller holds LockWrites, from its check
// of what the manifest names to the last tag it sets (gc.go).
func (s *Store) PutManifest(name string, d digest.Digest, mediaType string, data []byte) error {
	if err := s.putBlobBytes(d, data); err != nil {
		return err
	}
	p, err := s.revisionPath(name, d)
	if err != nil {
		return err
	}
	if cur, err := os.ReadFile(p); err == nil && string(cur) == mediaType {
		// Pushed again: in use again, for a running collector.
		if err := touch(p); err != nil {
			return fmt.Errorf("link manifest %s into %s: %w", d, name, err)
		}
		return nil
	}
	if err := s.writeFileAtomic(p, []byte(mediaType)); err != nil {
		return fmt.Errorf("link manifest %s into %s: %w", d, name, err)
	}
	return nil
}

// StatManifest gives the media type and size of manifest d in repository
// name, or errdefs.ErrNotFound. Like every read of a revision it may
// refresh its mtime (see refreshRead).
func (s *Store) StatManifest(name string, d digest.Digest) (string, int64, error) {
	mt, rp, rfi, err := s.readRevision(name, d)
	if err != nil {
		return "", 0, err
	}
	bp, err := s.blobPath(d)
	if err != nil {
		return "", 0, err
	}
	bfi, err := os.Lstat(bp)
	if err != nil || !bfi.Mode().IsRegular() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return "", 0, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return "", 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	if s.refreshRead(rfi, bfi, rp, bp) {
		return "", 0, fmt.Errorf("manifest %s in %s: %w", d, name, errdefs.ErrNotFound)
	}
	return mt, bfi.Size(), nil
}

// readRevision reads the media type of manifest d in repository name.
func (s *Store) readRevision(name string, d digest.Digest) (mediaType, path string, fi fs.FileInfo, err error) {
	p, err := s.revisionPath(name, d)
	if err != nil {
		return "", "", nil, err
	}
	mt, fi, err := readSmallFileInfo(p, 1024)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", nil, fmt.Errorf("manifest %s in %s: %w", d, name, errdefs.ErrNotFound)
		}
		return "", "", nil, fmt.Errorf("read manifest %s in %s: %w", d, name, err)
	}
	return string(mt), p, fi, nil
}

// useManifest is StatManifest for a write that is about to rely on the
// manifest (an index naming it), called under LockWrites: it sets the
// revision's and the bytes' mtimes to now, always (gc.go).
func (s *Store) useManifest(name string, d digest.Digest) (string, int64, error) {
	mt, rp, _, err := s.readRevision(name, d)
	if err != nil {
		return "", 0, err
	}
	size, err := s.StatBlob(d)
	if err != nil {
		return "", 0, err
	}
	bp, _ := s.blobPath(d)
	if err := touchAll(rp, bp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", 0, fmt.Errorf("manifest %s in %s: %w", d, name, errdefs.ErrNotFound)
		}
		return "", 0, fmt.Errorf("manifest %s in %s: %w", d, name, err)
	}
	return mt, size, nil
}

// GetManifest reads manifest d of repository name: its media type and bytes.
func (s *Store) GetManifest(name string, d digest.Digest, maxSize int64) (string, []byte, error) {
	mt, size, err := s.StatManifest(name, d)
	if err != nil {
		return "", nil, err
	}
	if size > maxSize {
		return "", nil, fmt.Errorf("manifest %s is %d bytes, over the limit of %d: %w", d, size, maxSize, errdefs.ErrFailedPrecondition)
	}
	f, _, err := s.OpenBlob(d)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return "", nil, fmt.Errorf("read manifest %s: %w", d, err)
	}
	return mt, data, nil
}

// DeleteManifest removes manifest d from repository name, with the tags
// that point at it and its entry in its subject's referrers (subject may
// be "" when it has none). errdefs.ErrNotFound if it was not there.
//
// The order matters for a crash half-way: the referrer entry goes first
// and tags next, so nothing ever names a manifest that is gone; the
// referrers listing also checks the revision, for entries left by older
// crashes.
func (s *Store) DeleteManifest(name string, d digest.Digest, subject digest.Digest) error {
	p, err := s.revisionPath(name, d)
	if err != nil {
		return err
	}
	if !isRegular(p) {
		return fmt.Errorf("manifest %s in %s: %w", d, name, errdefs.ErrNotFound)
	}
	if subject != "" {
		if err := s.removeReferrer(name, subject, d); err != nil {
			return err
		}
	}
	tags, err := s.Tags(name)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if td, err := s.ResolveTag(name, t); err == nil && td == d {
			if err := s.DeleteTag(name, t); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("manifest %s in %s: %w", d, name, errdefs.ErrNotFound)
		}
		return fmt.Errorf("delete manifest %s from %s: %w", d, name, err)
	}
	return nil
}

// WalkManifests calls fn for every manifest revision of repository name.
func (s *Store) WalkManifests(name string, fn func(d digest.Digest) error) error {
	repo, err := s.repoPath(name)
	if err != nil {
		return err
	}
	return walkLinks(filepath.Join(repo, manifestDir, revsDir), fn)
}

// ---- tags ----

// SetTag points tag at manifest d (which the caller has stored), under
// LockWrites. The revision's mtime is set to now: a collector that found
// it untagged then keeps it (gc.go).
func (s *Store) SetTag(name, tag string, d digest.Digest) error {
	p, err := s.tagPath(name, tag)
	if err != nil {
		return err
	}
	if _, err := ParseDigest(string(d)); err != nil {
		return err
	}
	if rp, err := s.revisionPath(name, d); err == nil {
		if err := touch(rp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tag %s:%s: %w", name, tag, err)
		}
	}
	if cur, err := os.ReadFile(p); err == nil && string(cur) == string(d) {
		return nil
	}
	if err := s.writeFileAtomic(p, []byte(d)); err != nil {
		return fmt.Errorf("tag %s:%s: %w", name, tag, err)
	}
	return nil
}

// ResolveTag is the digest tag points at, or errdefs.ErrNotFound.
func (s *Store) ResolveTag(name, tag string) (digest.Digest, error) {
	p, err := s.tagPath(name, tag)
	if err != nil {
		return "", err
	}
	b, err := readSmallFile(p, 256)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("tag %q in %s: %w", tag, name, errdefs.ErrNotFound)
		}
		return "", fmt.Errorf("read tag %q in %s: %w", tag, name, err)
	}
	d, err := ParseDigest(string(b))
	if err != nil {
		return "", fmt.Errorf("tag %q in %s: corrupt tag file: %v: %w", tag, name, err, errdefs.ErrNotFound)
	}
	return d, nil
}

// DeleteTag removes tag; errdefs.ErrNotFound if it did not exist.
func (s *Store) DeleteTag(name, tag string) error {
	p, err := s.tagPath(name, tag)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tag %q in %s: %w", tag, name, errdefs.ErrNotFound)
		}
		return fmt.Errorf("delete tag %q in %s: %w", tag, name, err)
	}
	return nil
}

// Tags lists the tags of repository name in Go's sort.Strings order
// (the spec's "ASCIIbetical").
func (s *Store) Tags(name string) ([]string, error) {
	repo, err := s.repoPath(name)
	if err != nil {
		return nil, err
	}
	names, err := readDirNames(filepath.Join(repo, manifestDir, tagsDir))
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", name, err)
	}
	tags := names[:0]
	for _, n := range names {
		if ValidateTag(n) == nil {
			tags = append(tags, n)
		}
	}
	sort.Strings(tags)
	return tags, nil
}

// ---- referrers ----

// AddReferrer records that manifest desc.Digest in repository name has
// subject as its subject; the caller holds LockWrites (the collector
// removes empty referrer directories under its own lock).
func (s *Store) AddReferrer(name string, subject digest.Digest, desc ocispec.Descriptor) error {
	dir, err := s.referrersDir(name, subject)
	if err != nil {
		return err
	}
	if _, err := ParseDigest(string(desc.Digest)); err != nil {
		return err
	}
	data, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, referrerFile(desc.Digest))
	if cur, err := os.ReadFile(p); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	if err := s.writeFileAtomic(p, data); err != nil {
		return fmt.Errorf("record referrer %s of %s in %s: %w", desc.Digest, subject, name, err)
	}
	return nil
}

func (s *Store) removeReferrer(name string, subject, d digest.Digest) error {
	dir, err := s.referrersDir(name, subject)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, referrerFile(d))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove referrer %s of %s in %s: %w", d, subject, name, err)
	}
	return nil
}

// Referrers lists the descriptors of the manifests in repository name
// whose subject is subject, ordered by digest. Entries whose manifest is
// no longer in the repository are skipped.
func (s *Store) Referrers(name string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	dir, err := s.referrersDir(name, subject)
	if err != nil {
		return nil, err
	}
	names, err := readDirNames(dir)
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s in %s: %w", subject, name, err)
	}
	sort.Strings(names)
	out := []ocispec.Descriptor{}
	for _, n := range names {
		alg, hex, ok := strings.Cut(n, "-")
		if !ok {
			continue
		}
		d, err := ParseDigest(alg + ":" + hex)
		if err != nil {
			continue
		}
		rev, err := s.revisionPath(name, d)
		if err != nil || !isRegular(rev) {
			continue
		}
		data, err := readSmallFile(filepath.Join(dir, n), 1<<20)
		if err != nil {
			continue
		}
		var desc ocispec.Descriptor
		if json.Unmarshal(data, &desc) != nil || desc.Digest != d {
			continue
		}
		out = append(out, desc)
	}
	return out, nil
}

// ---- files ----

// tempFile creates a file in tmp/ for writing whole and renaming into
// place; tmp/ is on the same filesystem as everything else under root.
func (s *Store) tempFile() (*os.File, error) {
	for attempt := 0; ; attempt++ {
		p := filepath.Join(s.root, tmpDir, randomHex(16))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) || attempt > 8 {
			return nil, err
		}
	}
}

// writeFileAtomic writes data to p by temp file, fsync and rename, and
// syncs p's directory, creating it if needed.
func (s *Store) writeFileAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := s.tempFile()
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return fsutil.SyncDir(filepath.Dir(p))
}

// createEmpty creates an empty link file at p (and its directory). An
// empty file is whole the moment it exists, so no rename is needed.
func createEmpty(p string) error {
	if isRegular(p) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(p))
}

func isRegular(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}

// readSmallFile reads a regular file of at most max bytes, never through
// a symbolic link.
func readSmallFile(p string, max int64) ([]byte, error) {
	b, _, err := readSmallFileInfo(p, max)
	return b, err
}

// readSmallFileInfo is readSmallFile with the file's FileInfo.
func readSmallFileInfo(p string, max int64) ([]byte, fs.FileInfo, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, fs.ErrNotExist
		}
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fs.ErrNotExist
	}
	if fi.Size() > max {
		return nil, nil, fmt.Errorf("%s: %d bytes, expected at most %d", p, fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	return b, fi, err
}

// readDirNames lists dir; a missing dir is empty.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// touch sets p's times to now: the clock the collector compares with
// (gc.go), read here rather than left to the kernel's coarser one.
func touch(p string) error {
	now := time.Now()
	return os.Chtimes(p, now, now)
}

func touchAll(paths ...string) error {
	for _, p := range paths {
		if err := touch(p); err != nil {
			return err
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
