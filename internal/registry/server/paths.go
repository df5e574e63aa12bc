package server

import (
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The registry's storage, under its root directory:
//
//	<root>/
//	├── blobs/                          content, stored once for all repositories
//	│   ├── sha256/<hex[0:2]>/<hex>       layers, configs and manifests, read-only
//	│   └── sha512/<hex[0:2]>/<hex>       (0444); only ever created by rename of a
//	│                                     verified file, so whole or absent
//	├── repositories/<name>/            one directory per path component of the
//	│   │                               name ("team/app" is team/app/); components
//	│   │                               never start with "_", so these cannot clash:
//	│   ├── _layers/<alg>/<hex>           empty file: the blob is in this repository
//	│   │                                 (pushed, mounted, or a manifest's config)
//	│   ├── _manifests/
//	│   │   ├── revisions/<alg>/<hex>     the manifest is in this repository; the
//	│   │   │                             file holds the media type it was pushed as
//	│   │   └── tags/<tag>                the digest the tag points at
//	│   └── _referrers/<alg>/<hex>/       manifests whose subject is <alg>:<hex>:
//	│       └── <alg>-<hex>               the referrer's descriptor (JSON) as the
//	│                                     referrers API returns it
//	├── uploads/<uuid>/                 one directory per upload session
//	│   ├── info                          JSON: repository, algorithm, start time
//	│   ├── data                          the bytes received so far; flock(LOCK_EX)
//	│   │                                 while a request appends to it
//	│   └── hashstate                     JSON: the running hash at an offset, so a
//	│                                     chunk is hashed once; a cache, rebuilt from
//	│                                     data when it does not match
//	├── tmp/                            temporary files, renamed into place once
//	│                                   written and synced; leftovers of a crash
//	│                                   are swept by PurgeUploads
//	└── locks/                          flock(2) files between writers and the
//	    │                               garbage collector, across processes (gc.go)
//	    ├── store                         LOCK_SH: one write's critical section
//	    │                                 (upload commit, link, manifest PUT);
//	    │                                 LOCK_EX: one batch of the sweep
//	    ├── gate                          LOCK_EX by the collector while it waits
//	    │                                 for store; writers pass through it
//	    │                                 (LOCK_SH, dropped at once), so they
//	    │                                 queue behind a waiting collector
//	    └── gc                            LOCK_EX for a whole collection: one at
//	                                      a time
//
// Every file another request reads is written elsewhere and renamed into
// place (the empty _layers links are created whole by open(O_CREAT)), and
// a blob is renamed into blobs/ only after its digest has been checked, so
// a kill -9 at any moment leaves no half-written file where a reader looks:
// at most an upload session and a temporary file, both swept later.
//
// Repository links are what makes a blob visible in a repository: a blob in
// blobs/ that no repository links to is invisible through the API, and is
// garbage for the collector (gc.go) to sweep; a link whose blob is gone
// reads as "unknown". Deletes remove links only.
//
// File mtimes carry meaning: a write sets the mtime of each existing blob,
// link or revision it relies on to now, and a read does so when it is
// older than a minute; the collector keeps whatever it finds younger than
// its grace period (gc.go).

const (
	blobsDir    = "blobs"
	reposDir    = "repositories"
	uploadsDir  = "uploads"
	tmpDir      = "tmp"
	layersDir   = "_layers"
	manifestDir = "_manifests"
	revsDir     = "revisions"
	tagsDir     = "tags"
	referrerDir = "_referrers"
	locksDir    = "locks"
)

// All path builders take values that have been validated by ParseDigest,
// ValidateName, ValidateTag or validUploadID; they validate again anyway,
// so that a mistake in a caller is an error and never a path outside root.

func (s *Store) blobPath(d digest.Digest) (string, error) {
	alg, hex, err := splitDigest(string(d))
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, blobsDir, string(alg.name), hex[:2], hex), nil
}

func (s *Store) repoPath(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	return filepath.Join(s.root, reposDir, filepath.FromSlash(name)), nil
}

// digestPath is <alg>/<hex>, the form links take under a repository.
func digestPath(d digest.Digest) (string, error) {
	alg, hex, err := splitDigest(string(d))
	if err != nil {
		return "", err
	}
	return filepath.Join(string(alg.name), hex), nil
}

func (s *Store) layerLinkPath(name string, d digest.Digest) (string, error) {
	return s.repoSubPath(name, d, layersDir)
}

func (s *Store) revisionPath(name string, d digest.Digest) (string, error) {
	return s.repoSubPath(name, d, manifestDir, revsDir)
}

func (s *Store) repoSubPath(name string, d digest.Digest, sub ...string) (string, error) {
	repo, err := s.repoPath(name)
	if err != nil {
		return "", err
	}
	dp, err := digestPath(d)
	if err != nil {
		return "", err
	}
	return filepath.Join(append(append([]string{repo}, sub...), dp)...), nil
}

func (s *Store) tagPath(name, tag string) (string, error) {
	repo, err := s.repoPath(name)
	if err != nil {
		return "", err
	}
	if err := ValidateTag(tag); err != nil {
		return "", err
	}
	return filepath.Join(repo, manifestDir, tagsDir, tag), nil
}

func (s *Store) referrersDir(name string, subject digest.Digest) (string, error) {
	return s.repoSubPath(name, subject, referrerDir)
}

// referrerFile is the name of a referrer's entry: "/" cannot be in a file
// name, so <alg>-<hex>.
func referrerFile(d digest.Digest) string {
	return strings.Replace(string(d), ":", "-", 1)
}

func (s *Store) uploadPath(id string) (string, bool) {
	if !validUploadID(id) {
		return "", false
	}
	return filepath.Join(s.root, uploadsDir, id), true
}
