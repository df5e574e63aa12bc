// Package metadb is berth's one metadata database: <root>/metadata.db
// (bbolt), shared by the image, container and volume records so that one
// transaction can see them all (rmi asks which containers use an image).
//
// bbolt locks its file for as long as it is open, so no berth process keeps
// it open: each call takes <root>/metadata.lock (flock, shared for reads,
// exclusive for writes), opens the file, runs one transaction and closes
// it. Opening costs well under a millisecond; a long-lived handle would
// lock every other berth process out.
package metadb
