// Package content stores blobs (image layers, manifests, configs) once each,
// under their digest, and lets no blob become visible until its bytes have
// been checked against the digest and size its writer declared.
//
// On disk, for a Store opened at <root>/content:
//
//	<root>/content/
//	├── blobs/
//	│   ├── sha256/<hex>      committed blobs, read-only (0444), exactly the
//	│   └── sha512/<hex>      bytes a registry serves; only ever created by
//	│                         rename, so they are whole or absent
//	└── ingest/<random>       one file per Writer in progress; never read.
//	                          Held under flock(LOCK_EX) by its writer, removed
//	                          on Abort or failed Commit, and swept by
//	                          CleanIngest once its writer is gone
//
// A blob's life: Writer (or Put, which drives one) creates an ingest file,
// hashes every byte as it is written (one pass, no re-read; a large write
// is hashed on a second core while the kernel copies it, and writeback
// starts every few MiB so Commit's fsync waits only for the tail), and
// refuses at Write time any byte past the declared size. Commit compares the size and
// digest with what was declared, fsyncs the file, renames it into blobs/ and
// fsyncs that directory. A kill -9 at any point leaves either the whole blob
// or nothing in blobs/, plus at most an ingest file. Two writers of the same
// blob, in one process or several, both succeed: the second to commit finds
// the blob present and discards its copy.
//
// Digests are validated before any path is built from them: only sha256 and
// sha512, lower-case hex of the exact length. Anything else is
// errdefs.ErrInvalidArgument, so "sha256:../../x" never reaches the
// filesystem. Content that does not match its declaration is a
// *MismatchError (class errdefs.ErrFailedPrecondition) naming both digests.
//
// The Store keeps no state in memory, so several processes may share one
// root; deleting a blob that another process is using is the caller's
// concern (image GC runs under the metadata lock).
package content
