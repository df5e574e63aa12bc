// Package image stores container images: it parses references with
// Docker's rules, keeps image records and names in bbolt, imports rootfs
// tarballs, loads and saves docker-archive and OCI-layout tarballs, and
// collects the blobs and layers no image or container needs any more.
//
// The blobs live in package content and the unpacked layers in package
// snapshot; this package only knows which of them make up an image. It
// knows nothing of containers: callers pass the chain IDs and image IDs
// containers hold (GC's extra roots, Remove's inUse).
//
// On disk, under the engine root:
//
//	<root>/
//	  metadata.db        bbolt, shared with other record kinds; this package owns
//	    images/          bucket: image ID ("sha256:<hex>") -> JSON Image record
//	    names/           bucket: normalized reference ("docker.io/library/busybox:latest"
//	                     or "...@sha256:<hex>") -> image ID
//	  metadata.lock      flock: shared by readers, exclusive by writers, held around
//	                     each open-transaction-close of metadata.db
//	  gc.lock            flock: shared while an import or load adds content that no
//	                     record names yet, exclusive while GC sweeps
//	  content/           package content: blobs by digest
//	  snapshots/         package snapshot: layers by chain ID
//
// Every record change is one bbolt transaction, so a kill -9 leaves either
// the old or the new record, never half of one. The database is opened for
// each operation and closed after it: bbolt's own lock would otherwise
// shut every other berth process out for as long as one CLI runs.
package image
