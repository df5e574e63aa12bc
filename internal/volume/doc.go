// Package volume keeps named volumes, as Docker's "local" driver does:
// directories under the engine root that outlive the containers mounting
// them.
//
// On disk, under the engine root:
//
//	<root>/
//	  metadata.db            bbolt (package metadb), shared with images and containers
//	    volumes/             bucket: name -> JSON record (driver, created, labels, options)
//	  metadata.lock          flock (package metadb): shared for reads, exclusive for
//	                         writes, held around each open-transaction-close of
//	                         metadata.db; for volumes it also guards every rename into
//	                         or out of volumes/<name> and every sweep of .tmp
//	  volumes/               0701
//	    <name>/              0701, one per volume
//	      _data/             0755, the volume: what containers mount
//	      .copyup-<random>/  an image directory being copied in (CopyUp), renamed
//	                         over the empty _data when whole
//	    .lock                flock: Hold takes it shared, Remove and Prune exclusive
//	    .tmp/                created volumes being staged, removed ones being deleted
//	      create-<random>/   a new <name>/ before its rename into place
//	      rm-<random>/v/     a removed <name>/, flock'd by its remover while deleted
//
// Names start with a letter or digit, so the store's own entries (".lock",
// ".tmp", ".copyup-*") never clash with a volume.
//
// # Why bbolt, not a meta.json per volume
//
// Volume records share metadata.db with image and container records, in
// their own bucket, through package metadb (metadata.lock, then open, one
// transaction, close). One transaction is one atomic, fsync'd change, with
// no temp-file dance per record; List is one read, not a directory scan
// plus a file per volume; and the verbs that must see volumes and
// containers together (prune, system df, a container that creates its
// volume) read one consistent database. A write transaction also holds
// metadata.lock exclusively, which is the lock the directory work below
// needs: the renames happen inside the transaction's function, and the
// ones that must follow a commit in its OnCommit handlers.
//
// # Crash safety: the record is the truth
//
// A volume exists when its record does. The directory is made before the
// record and removed after it:
//
//   - Create stages <name>/_data under .tmp, renames it to volumes/<name>,
//     fsyncs volumes/, then commits the record. A crash before the commit
//     leaves a directory without a record: never listed, never returned,
//     and retired by the next Create of that name or by Prune.
//   - Remove commits the record's deletion, then renames the directory into
//     .tmp and deletes it there under a flock. A crash after the commit
//     leaves garbage only, swept the same way.
//   - CopyUp copies into volumes/<name>/.copyup-<random> under a flock on
//     volumes/<name> and renames the copy over the empty _data: a crash
//     leaves the empty volume and a leftover the next CopyUp removes.
//
// Everything under .tmp that nobody holds a flock on is abandoned, and
// Create, Remove and Prune sweep it. The sweep runs under metadata.lock,
// which every staging create also holds, so no live create loses its
// stage; removers lock their wrapper before they release metadata.lock.
//
// # Concurrency
//
// Two creates of one name, in one process or several, serialize on
// metadata.lock: the second finds the record and returns the volume the
// first made (Docker's create is idempotent too). Remove and Prune ask the
// caller's InUse while holding volumes/.lock exclusively; container code
// creates or looks up a volume and records the container inside Hold,
// which holds it shared, so no volume is removed between a container's
// check and its record. Lock order is volumes/.lock, then metadata.lock;
// InUse may take metadata.lock, never volumes/.lock.
//
// The package knows nothing of containers: callers pass InUse.
package volume
