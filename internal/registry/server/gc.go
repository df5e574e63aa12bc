package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/opencontainers/go-digest"
)

// Garbage collection, online: the registry keeps taking pushes and pulls
// while CollectGarbage runs, in the same process or, the usual case, in a
// `berth registry gc` process beside a `berth registry serve` one.
//
// What is kept. In every repository: the manifests its tags name, and
// (unless untagged manifests are to go) every other manifest revision it
// has; from each of those, recursively, its own bytes, its config and
// layers (the blobs and this repository's links to them), an index's child
// manifests, and the manifests whose subject it is (a signature or SBOM
// lives as long as what it describes). Everything else is garbage:
//
//   - blobs that no kept manifest of any repository names;
//   - a repository's links to blobs that no kept manifest of that
//     repository names (distribution leaves those links forever, so a
//     deleted image's layers stay pullable from where it was deleted);
//   - untagged revisions, with WithUntaggedDeletion, and their entries in
//     the referrers lists;
//   - repositories left with nothing in them, and the directories they
//     leave empty;
//   - upload sessions idle for longer than their expiry (PurgeUploads).
//
// The races. Marking reads a store that keeps changing, and a write can
// make garbage reachable again after the mark has passed it: a client
// HEADs a blob, is told it exists, skips the upload and PUTs a manifest
// naming it; an index names an old untagged manifest; a tag is put on one.
// If the sweep removed those, the push would fail with
// MANIFEST_BLOB_UNKNOWN, or worse, succeed and leave a manifest naming a
// missing blob. Distribution's answer is to make the registry read-only
// while it collects. Here:
//
//  1. Every write that makes stored content reachable (upload commit,
//     mount, manifest PUT from its check of what the manifest names to its
//     last tag) is one short critical section, Store.LockWrites: flock
//     LOCK_SH on locks/store. In it, the write sets the mtime of every
//     existing file it relies on (blob, link, revision) to now.
//  2. A read that finds a link or a revision older than refreshAfter (a
//     minute) sets its mtime and its blob's to now, in such a critical
//     section too, and answers "unknown" if it was swept first. A client
//     that HEADs a blob and pushes a manifest naming it later is thus
//     covered, for the price of one write per object per minute.
//  3. The collector starts with a barrier: it takes locks/store LOCK_EX,
//     reads the clock (S) and lets go. Every write that began earlier has
//     finished, so the mark sees it; every later one touches what it relies
//     on with a time after S.
//  4. Mark reads everything without a lock. Files whose mtime is after the
//     cutoff, S less the grace period (less a second, timestampSlack, for
//     coarse file times), are roots: blobs uploaded for a manifest not
//     pushed yet, manifests pushed by digest before the index or tag that
//     names them. The collector itself never takes LockWrites, nor reads
//     through the methods that refresh: it would wait for itself.
//  5. The sweep takes LOCK_EX in batches (64 files or 20ms, whichever
//     comes first, so a push waits that long at most) and, under it, checks
//     each candidate again: gone already? touched after the cutoff? Or is
//     something that names it, a "parent", in use again? Parents come
//     before what they name (an index before its children, a subject
//     before its referrers, manifests before links before blobs), so a
//     parent found touched keeps everything under it.
//
// Why this is enough: a write that makes X reachable after the barrier
// touches X, or a parent of X, within its critical section. If the sweep
// of X came first, the write finds X gone and fails cleanly (the client
// uploads again); if it comes after, the sweep sees the touch and keeps X.
// Writes before the barrier are in what mark read.
//
// The gate. flock grants LOCK_SH to newcomers while a LOCK_EX waits, so a
// busy registry could starve the collector forever. The collector
// therefore holds locks/gate LOCK_EX while it waits for locks/store, and
// every writer passes through the gate (LOCK_SH, dropped at once) before
// it takes locks/store: once the collector waits, new writers queue
// behind it.
//
// What the grace period must cover: the longest push, from its first
// upload or HEAD to its manifest and tags, plus refreshAfter. The default
// is an hour. With 0, a push in flight can lose blobs it has uploaded and
// fail (never half-succeed): use it when nothing is pushing. The clock
// must not step back by more than the grace period while a collection
// runs. A dry run takes no lock and writes nothing: it is a mark, and a
// list of what a sweep would consider.

// DefaultGracePeriod is how old unreferenced content must be before
// CollectGarbage removes it.
const DefaultGracePeriod = time.Hour

const (
	// readRefreshAfter is Store.refreshAfter's default.
	readRefreshAfter = time.Minute
	// timestampSlack covers coarse file times: files created (rather
	// than touched) get the kernel's clock, up to a tick behind time.Now,
	// and some filesystems keep whole seconds. Even with a grace period of
	// 0, what was touched within the last second stays.
	timestampSlack = time.Second
	// A sweep batch holds the write lock for at most this many files, or
	// this long (plus one file).
	sweepBatchFiles = 64
	sweepBatchTime  = 20 * time.Millisecond
	// maxMarkManifest bounds what mark reads of one manifest.
	maxMarkManifest = 64 << 20

	storeLock = "store"
	gateLock  = "gate"
	gcLock    = "gc"
)

// ---- locks ----

// openLock opens a lock file, creating it (and locks/, which a store
// gets at its first write) if needed. Read-only is enough for flock, and
// works on a read-only mount once the file exists.
func (s *Store) openLock(name string) (*os.File, error) {
	p := filepath.Join(s.root, locksDir, name)
	const flags = os.O_RDONLY | os.O_CREATE | syscall.O_NOFOLLOW
	f, err := os.OpenFile(p, flags, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(p, flags, 0o644)
	}
	return f, err
}

// LockWrites enters a write's critical section against the garbage
// collector and returns the function that leaves it. What the write
// checks and what it then writes must all be inside one section; the
// section must not wait on the network, and must not nest (LinkBlob takes
// its own): a second LockWrites would wait behind a collector that waits
// for the first.
func (s *Store) LockWrites() (unlock func(), err error) {
	fail := func(err error) (func(), error) {
		return nil, fmt.Errorf("lock registry storage %s for writing: %w", s.root, err)
	}
	s.gateMu.Lock()
	gate, err := s.openLock(gateLock)
	if err == nil {
		err = fsutil.Flock(gate, syscall.LOCK_SH)
		gate.Close() // through the gate
	}
	s.gateMu.Unlock()
	if err != nil {
		return fail(err)
	}
	// One open file per section: flock locks belong to an open file, so
	// sections sharing one would release each other's locks.
	f, err := s.openLock(storeLock)
	if err != nil {
		return fail(err)
	}
	if err := fsutil.Flock(f, syscall.LOCK_SH); err != nil {
		f.Close()
		return fail(err)
	}
	return func() { f.Close() }, nil
}

// lockSweep shuts out writers: the gate first, so that new writers queue
// behind us, then the store lock once the sections in progress are done.
func (s *Store) lockSweep() (unlock func(), err error) {
	gate, err := s.openLock(gateLock)
	if err != nil {
		return nil, fmt.Errorf("lock registry storage %s: %w", s.root, err)
	}
	if err := fsutil.Flock(gate, syscall.LOCK_EX); err != nil {
		gate.Close()
		return nil, fmt.Errorf("lock registry storage %s: %w", s.root, err)
	}
	f, err := s.openLock(storeLock)
	if err == nil {
		if err = fsutil.Flock(f, syscall.LOCK_EX); err != nil {
			f.Close()
		}
	}
	if err != nil {
		gate.Close()
		return nil, fmt.Errorf("lock registry storage %s: %w", s.root, err)
	}
	return func() { f.Close(); gate.Close() }, nil
}

// lockGC makes this the only collection running on the store.
func (s *Store) lockGC() (unlock func(), err error) {
	f, err := s.openLock(gcLock)
	if err != nil {
		return nil, fmt.Errorf("garbage collection of %s: %w", s.root, err)
	}
	if err := fsutil.Flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another garbage collection is running on %s: wait for it to finish: %w", s.root, errdefs.ErrConflict)
		}
		return nil, fmt.Errorf("garbage collection of %s: %w", s.root, err)
	}
	return func() { f.Close() }, nil
}

// refreshRead is what a read does for the collector (step 2 above): when
// the link or revision it found (fi, at path) or its blob (bfi) is older
// than refreshAfter, both mtimes are set to now inside a write's critical
// section. gone says the collector swept them first: the read must then
// answer "unknown". Otherwise it is best effort, so that a store this
// process cannot write (a read-only mount) still serves reads.
func (s *Store) refreshRead(fi, bfi fs.FileInfo, path, blobPath string) (gone bool) {
	if time.Since(fi.ModTime()) < s.refreshAfter && time.Since(bfi.ModTime()) < s.refreshAfter {
		return false
	}
	unlock, err := s.LockWrites()
	if err != nil {
		return false
	}
	defer unlock()
	for _, p := range []string{path, blobPath} {
		if err := touch(p); errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// ---- options and report ----

// GCOption configures CollectGarbage.
type GCOption func(*gcConfig)

type gcConfig struct {
	dryRun         bool
	deleteUntagged bool
	grace          time.Duration
	uploadExpiry   time.Duration
	report         func(GCItem)
	// Test hooks: after the mark, and in each sweep batch under the lock.
	afterMark func()
	inBatch   func()
}

// WithDryRun makes CollectGarbage report what it would remove, and remove
// nothing. A dry run takes no locks and writes nothing.
func WithDryRun(dry bool) GCOption { return func(c *gcConfig) { c.dryRun = dry } }

// WithUntaggedDeletion removes manifests that no tag names, directly or
// through an index or as a referrer of one that is kept (distribution's
// --delete-untagged).
func WithUntaggedDeletion(on bool) GCOption { return func(c *gcConfig) { c.deleteUntagged = on } }

// WithGracePeriod keeps unreferenced content younger than d (default
// DefaultGracePeriod): it may belong to a push in progress.
func WithGracePeriod(d time.Duration) GCOption { return func(c *gcConfig) { c.grace = d } }

// WithUploadPurge removes upload sessions idle for longer than d (0, the
// default, leaves them to the server's own expiry).
func WithUploadPurge(d time.Duration) GCOption { return func(c *gcConfig) { c.uploadExpiry = d } }

// WithGCReport calls fn for everything removed (or, in a dry run, to be
// removed), never while holding a lock.
func WithGCReport(fn func(GCItem)) GCOption { return func(c *gcConfig) { c.report = fn } }

// GCItemKind is what a GCItem is.
type GCItemKind string

const (
	GCBlob       GCItemKind = "blob"       // Digest, Size
	GCManifest   GCItemKind = "manifest"   // Repository, Digest: an untagged revision
	GCLink       GCItemKind = "link"       // Repository, Digest: a layer link
	GCRepository GCItemKind = "repository" // Repository
	GCUpload     GCItemKind = "upload"     // ID, Size
)

// GCItem is one thing the collector removed, or would remove.
type GCItem struct {
	Kind       GCItemKind
	Repository string
	Digest     digest.Digest
	ID         string
	Size       int64
}

// GCReport counts what a collection marked and removed. In a dry run the
// removed counts are what would have been removed.
type GCReport struct {
	DryRun       bool
	Repositories int   // repositories marked from
	Manifests    int   // manifest revisions kept
	Blobs        int   // blobs kept because something names them
	BlobBytes    int64 // their size

	DeletedBlobs        int
	DeletedBytes        int64 // of the blobs
	DeletedManifests    int
	DeletedLinks        int
	DeletedRepositories int
	DeletedUploads      int
	UploadBytes         int64

	// YoungBlobs are blobs no manifest names, kept for the grace period
	// (theirs, or that of a link to them).
	YoungBlobs int
	YoungBytes int64
	// InUse counts candidates that a write or read used again while the
	// collector ran: found touched at the sweep, they were kept.
	InUse int
}

// Freed is the space given back (or, in a dry run, that would be).
func (r GCReport) Freed() int64 { return r.DeletedBytes + r.UploadBytes }

// ---- the collector ----

// CollectGarbage marks what the repositories use and sweeps the rest, as
// the comment at the top of gc.go describes, while the registry keeps
// serving. Cancelling ctx stops it between two batches of the sweep; the
// report then counts what was done.
func (s *Store) CollectGarbage(ctx context.Context, opts ...GCOption) (GCReport, error) {
	cfg := gcConfig{grace: DefaultGracePeriod}
	for _, o := range opts {
		o(&cfg)
	}
	c := &collector{
		s:          s,
		cfg:        cfg,
		rep:        GCReport{DryRun: cfg.dryRun},
		liveBlobs:  map[digest.Digest]bool{},
		youngBlobs: map[digest.Digest]bool{},
		parents:    map[node][]node{},
		state:      map[node]sweepState{},
	}
	if cfg.grace < 0 {
		return c.rep, fmt.Errorf("garbage collection: grace period %s is negative: %w", cfg.grace, errdefs.ErrInvalidArgument)
	}
	start := time.Now()
	if !cfg.dryRun {
		unlock, err := s.lockGC()
		if err != nil {
			return c.rep, err
		}
		defer unlock()
		// The barrier (step 3).
		unlockSweep, err := s.lockSweep()
		if err != nil {
			return c.rep, err
		}
		start = time.Now()
		unlockSweep()
	}
	c.cutoff = start.Add(-cfg.grace - timestampSlack)
	if err := c.mark(ctx); err != nil {
		return c.rep, err
	}
	if cfg.afterMark != nil {
		cfg.afterMark()
	}
	if err := c.sweep(ctx); err != nil {
		return c.rep, err
	}
	if err := c.removeEmptyRepos(ctx); err != nil {
		return c.rep, err
	}
	if cfg.uploadExpiry > 0 {
		n, size, err := s.purgeUploads(cfg.uploadExpiry, cfg.dryRun, func(id string, size int64) {
			c.emit(GCItem{Kind: GCUpload, ID: id, Size: size})
		})
		c.rep.DeletedUploads, c.rep.UploadBytes = n, size
		if err != nil {
			return c.rep, err
		}
	}
	return c.rep, nil
}

type nodeKind uint8

const (
	nodeRev  nodeKind = iota // a manifest revision of a repository
	nodeLink                 // a layer link of a repository
	nodeBlob                 // a blob (repo is "")
)

// node is one file the sweep may remove.
type node struct {
	kind nodeKind
	repo string
	d    digest.Digest
}

type sweepState uint8

const (
	undecided sweepState = iota
	removed              // removed by us, or gone already
	kept                 // found in use at the sweep
)

type collector struct {
	s      *Store
	cfg    gcConfig
	cutoff time.Time
	rep    GCReport

	repos     []*repoGraph
	byName    map[string]*repoGraph
	liveBlobs map[digest.Digest]bool // named by a kept manifest
	// youngBlobs are linked by a link younger than the cutoff: uploaded
	// for a manifest still to come, kept for the grace period.
	youngBlobs map[digest.Digest]bool
	// cands are the sweep's candidates, parents before what they name.
	cands     []node
	blobSizes map[digest.Digest]int64
	// parents of a candidate are the candidates that name it.
	parents map[node][]node
	state   map[node]sweepState
}

// repoGraph is what mark read of one repository.
type repoGraph struct {
	name  string
	revs  map[digest.Digest]*revision
	tags  map[string]digest.Digest
	links map[digest.Digest]time.Time // blob -> the link's mtime
	// referrers maps a subject to the manifests whose entries name it.
	referrers map[digest.Digest][]digest.Digest
	liveRevs  map[digest.Digest]bool
	liveLinks map[digest.Digest]bool
}

// revision is a manifest revision and what its manifest names.
type revision struct {
	mtime    time.Time
	blobs    []digest.Digest // config and layers
	children []digest.Digest // an index's manifests
	subject  digest.Digest
}

func (c *collector) mark(ctx context.Context) error {
	names, err := c.s.Repositories()
	if err != nil {
		return fmt.Errorf("garbage collection: %w", err)
	}
	c.byName = map[string]*repoGraph{}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		g, err := c.readRepo(name)
		if err != nil {
			return err
		}
		c.repos = append(c.repos, g)
		c.byName[name] = g
		c.markRepo(g)
	}
	c.rep.Repositories = len(c.repos)
	c.blobSizes = map[digest.Digest]int64{}
	var blobCands []node
	err = c.s.walkBlobFiles(func(d digest.Digest, fi fs.FileInfo) error {
		switch {
		case c.liveBlobs[d]:
			c.rep.Blobs++
			c.rep.BlobBytes += fi.Size()
		case c.youngBlobs[d] || !fi.ModTime().Before(c.cutoff):
			c.rep.YoungBlobs++
			c.rep.YoungBytes += fi.Size()
		default:
			blobCands = append(blobCands, node{kind: nodeBlob, d: d})
			c.blobSizes[d] = fi.Size()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("garbage collection: %w", err)
	}
	c.plan(blobCands)
	return nil
}

// readRepo reads a repository's revisions (and what their manifests
// name), tags, links and referrer entries, without taking any lock.
func (c *collector) readRepo(name string) (*repoGraph, error) {
	dir, err := c.s.repoPath(name)
	if err != nil {
		return nil, err
	}
	g := &repoGraph{
		name:      name,
		revs:      map[digest.Digest]*revision{},
		tags:      map[string]digest.Digest{},
		links:     map[digest.Digest]time.Time{},
		referrers: map[digest.Digest][]digest.Digest{},
		liveRevs:  map[digest.Digest]bool{},
		liveLinks: map[digest.Digest]bool{},
	}
	fail := func(err error) (*repoGraph, error) {
		return nil, fmt.Errorf("garbage collection: repository %s: %w", name, err)
	}
	err = walkLinkFiles(filepath.Join(dir, manifestDir, revsDir), func(d digest.Digest, fi fs.FileInfo) error {
		rev, err := c.readManifest(d)
		if err != nil {
			return fmt.Errorf("manifest %s: %w; nothing was deleted: delete that manifest (DELETE /v2/%s/manifests/%s) and collect again", d, err, name, d)
		}
		rev.mtime = fi.ModTime()
		g.revs[d] = rev
		return nil
	})
	if err != nil {
		return fail(err)
	}
	tags, err := c.s.Tags(name)
	if err != nil {
		return fail(err)
	}
	for _, t := range tags {
		if d, err := c.s.ResolveTag(name, t); err == nil {
			g.tags[t] = d
		} else if !errdefs.IsNotFound(err) {
			return fail(err)
		}
	}
	err = walkLinkFiles(filepath.Join(dir, layersDir), func(d digest.Digest, fi fs.FileInfo) error {
		g.links[d] = fi.ModTime()
		return nil
	})
	if err != nil {
		return fail(err)
	}
	err = walkReferrers(filepath.Join(dir, referrerDir), func(subject, ref digest.Digest, _ string) error {
		g.referrers[subject] = append(g.referrers[subject], ref)
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return g, nil
}

// readManifest reads what a stored manifest names, by the fields of every
// manifest type at once: mark needs no more than the references, and
// keeps non-distributable layers that were pushed anyway. A manifest
// whose bytes are missing names nothing (the revision is broken already);
// one that does not parse stops the collection, since what it names
// cannot be known.
func (c *collector) readManifest(d digest.Digest) (*revision, error) {
	f, _, err := c.s.OpenBlob(d)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return &revision{}, nil
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMarkManifest+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxMarkManifest {
		return nil, fmt.Errorf("over %d bytes, too large to be a manifest", maxMarkManifest)
	}
	var raw rawManifest
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("stored content is not a manifest: %v", err)
	}
	rev := &revision{}
	add := func(to *[]digest.Digest, s string) {
		if d, err := ParseDigest(s); err == nil {
			*to = append(*to, d)
		}
	}
	if raw.Config != nil {
		add(&rev.blobs, string(raw.Config.Digest))
	}
	for _, l := range raw.Layers {
		add(&rev.blobs, string(l.Digest))
	}
	for _, m := range raw.Manifests {
		add(&rev.children, string(m.Digest))
	}
	if raw.Subject != nil {
		if d, err := ParseDigest(string(raw.Subject.Digest)); err == nil {
			rev.subject = d
		}
	}
	return rev, nil
}

// markRepo marks from the repository's roots: tags, untagged revisions
// unless they are to go, and anything younger than the cutoff.
func (c *collector) markRepo(g *repoGraph) {
	var stack []digest.Digest
	for _, d := range g.tags {
		stack = append(stack, d)
	}
	for d, rev := range g.revs {
		if !c.cfg.deleteUntagged || !rev.mtime.Before(c.cutoff) {
			stack = append(stack, d)
		}
	}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		rev := g.revs[d]
		if rev == nil || g.liveRevs[d] {
			continue
		}
		g.liveRevs[d] = true
		c.liveBlobs[d] = true
		for _, b := range rev.blobs {
			g.liveLinks[b] = true
			c.liveBlobs[b] = true
		}
		stack = append(stack, rev.children...)
		stack = append(stack, g.referrers[d]...)
	}
	for b, mtime := range g.links {
		if !g.liveLinks[b] && !mtime.Before(c.cutoff) {
			g.liveLinks[b] = true
			c.youngBlobs[b] = true
		}
	}
	c.rep.Manifests += len(g.liveRevs)
}

// plan lists the candidates, parents first, and who their parents are.
func (c *collector) plan(blobCands []node) {
	addParent := func(child, parent node) { c.parents[child] = append(c.parents[child], parent) }
	for _, g := range c.repos {
		dead := func(d digest.Digest) bool { return g.revs[d] != nil && !g.liveRevs[d] }
		var deadRevs []digest.Digest
		for d := range g.revs {
			if dead(d) {
				deadRevs = append(deadRevs, d)
			}
		}
		sort.Slice(deadRevs, func(i, j int) bool { return deadRevs[i] < deadRevs[j] })
		// Depth-first, in reverse post-order: an index before its
		// children, a subject before its referrers.
		named := func(d digest.Digest) []digest.Digest {
			return append(append([]digest.Digest(nil), g.revs[d].children...), g.referrers[d]...)
		}
		seen := map[digest.Digest]bool{}
		var post []digest.Digest
		var visit func(d digest.Digest)
		visit = func(d digest.Digest) {
			seen[d] = true
			for _, e := range named(d) {
				if dead(e) && !seen[e] {
					visit(e)
				}
			}
			post = append(post, d)
		}
		for _, d := range deadRevs {
			if !seen[d] {
				visit(d)
			}
		}
		for i := len(post) - 1; i >= 0; i-- {
			d := post[i]
			self := node{nodeRev, g.name, d}
			c.cands = append(c.cands, self)
			for _, e := range named(d) {
				if dead(e) {
					addParent(node{nodeRev, g.name, e}, self)
				}
			}
			for _, b := range g.revs[d].blobs {
				addParent(node{nodeLink, g.name, b}, self)
				addParent(node{kind: nodeBlob, d: b}, self)
			}
			addParent(node{kind: nodeBlob, d: d}, self)
		}
	}
	for _, g := range c.repos {
		var links []digest.Digest
		for b := range g.links {
			if !g.liveLinks[b] {
				links = append(links, b)
			}
		}
		sort.Slice(links, func(i, j int) bool { return links[i] < links[j] })
		for _, b := range links {
			self := node{nodeLink, g.name, b}
			c.cands = append(c.cands, self)
			addParent(node{kind: nodeBlob, d: b}, self)
		}
	}
	sort.Slice(blobCands, func(i, j int) bool { return blobCands[i].d < blobCands[j].d })
	c.cands = append(c.cands, blobCands...)
}

// sweep removes the candidates in batches, each under the exclusive lock.
func (c *collector) sweep(ctx context.Context) error {
	for i := 0; i < len(c.cands); {
		if err := ctx.Err(); err != nil {
			return err
		}
		unlock := func() {}
		if !c.cfg.dryRun {
			var err error
			if unlock, err = c.s.lockSweep(); err != nil {
				return err
			}
			if c.cfg.inBatch != nil {
				c.cfg.inBatch()
			}
		}
		var items []GCItem
		var err error
		began := time.Now()
		for n := 0; i < len(c.cands) && (c.cfg.dryRun || n < sweepBatchFiles && time.Since(began) < sweepBatchTime); n++ {
			var it *GCItem
			it, err = c.sweepOne(c.cands[i])
			i++
			if err != nil {
				break
			}
			if it != nil {
				items = append(items, *it)
			}
		}
		unlock()
		for _, it := range items {
			c.emit(it)
		}
		if err != nil {
			return fmt.Errorf("garbage collection: %w", err)
		}
	}
	return nil
}

// sweepOne decides one candidate and, unless it is in use again, removes
// it. It runs under the exclusive lock (no lock in a dry run, where
// nothing is checked again: everything planned would go).
func (c *collector) sweepOne(n node) (*GCItem, error) {
	for _, p := range c.parents[n] {
		switch c.state[p] {
		case kept:
			c.state[n] = kept
			c.rep.InUse++
			return nil, nil
		case undecided: // a cycle (an index naming its own subject)
			if !c.cfg.dryRun && c.fresh(p) {
				c.state[n] = kept
				c.rep.InUse++
				return nil, nil
			}
		}
	}
	c.state[n] = removed
	path, err := c.path(n)
	if err != nil {
		return nil, err
	}
	if !c.cfg.dryRun {
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil // removed by a client meanwhile
		}
		if err != nil {
			return nil, err
		}
		if !fi.ModTime().Before(c.cutoff) {
			c.state[n] = kept
			c.rep.InUse++
			return nil, nil
		}
		if n.kind == nodeRev {
			if sub := c.byName[n.repo].revs[n.d].subject; sub != "" {
				if err := c.s.removeReferrer(n.repo, sub, n.d); err != nil {
					return nil, err
				}
			}
		}
		if err := os.Remove(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("remove %s: %w", path, err)
		}
	}
	switch n.kind {
	case nodeRev:
		c.rep.DeletedManifests++
		return &GCItem{Kind: GCManifest, Repository: n.repo, Digest: n.d}, nil
	case nodeLink:
		c.rep.DeletedLinks++
		return &GCItem{Kind: GCLink, Repository: n.repo, Digest: n.d}, nil
	default:
		size := c.blobSizes[n.d]
		c.rep.DeletedBlobs++
		c.rep.DeletedBytes += size
		return &GCItem{Kind: GCBlob, Digest: n.d, Size: size}, nil
	}
}

// fresh reports whether n's file is there and touched after the cutoff.
func (c *collector) fresh(n node) bool {
	p, err := c.path(n)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(p)
	return err == nil && !fi.ModTime().Before(c.cutoff)
}

func (c *collector) path(n node) (string, error) {
	switch n.kind {
	case nodeRev:
		return c.s.revisionPath(n.repo, n.d)
	case nodeLink:
		return c.s.layerLinkPath(n.repo, n.d)
	}
	return c.s.blobPath(n.d)
}

func (c *collector) emit(it GCItem) {
	if c.cfg.report != nil {
		c.cfg.report(it)
	}
}

// removeEmptyRepos removes the repositories the sweep left empty, deepest
// first, so that a parent directory that held only them goes too. A dry
// run reports those that would be left empty.
func (c *collector) removeEmptyRepos(ctx context.Context) error {
	order := append([]*repoGraph(nil), c.repos...)
	sort.SliceStable(order, func(i, j int) bool {
		return strings.Count(order[i].name, "/") > strings.Count(order[j].name, "/")
	})
	for _, g := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.cfg.dryRun {
			if len(g.tags) == 0 && len(g.liveRevs) == 0 && !c.anyLink(g) {
				c.rep.DeletedRepositories++
				c.emit(GCItem{Kind: GCRepository, Repository: g.name})
			}
			continue
		}
		unlock, err := c.s.lockSweep()
		if err != nil {
			return err
		}
		gone, err := c.s.removeRepoIfEmpty(g.name, c.cutoff)
		unlock()
		if err != nil {
			return fmt.Errorf("garbage collection: repository %s: %w", g.name, err)
		}
		if gone {
			c.rep.DeletedRepositories++
			c.emit(GCItem{Kind: GCRepository, Repository: g.name})
		}
	}
	return nil
}

// anyLink reports whether any of g's links is kept.
func (c *collector) anyLink(g *repoGraph) bool {
	for b := range g.links {
		if g.liveLinks[b] {
			return true
		}
	}
	return false
}

// removeRepoIfEmpty removes referrer entries whose manifest is gone (and
// older than cutoff), then, if repository name holds no revision, tag,
// link or referrer entry any more, its directories, and the directories
// above it that this leaves empty. The caller holds lockSweep: writers
// create these directories inside LockWrites.
func (s *Store) removeRepoIfEmpty(name string, cutoff time.Time) (bool, error) {
	dir, err := s.repoPath(name)
	if err != nil {
		return false, err
	}
	refDir := filepath.Join(dir, referrerDir)
	err = walkReferrers(refDir, func(subject, ref digest.Digest, p string) error {
		rp, err := s.revisionPath(name, ref)
		if err != nil || isRegular(rp) {
			return err
		}
		if fi, err := os.Lstat(p); err == nil && fi.ModTime().Before(cutoff) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	removeEmptyDirs(refDir)
	for _, sub := range []string{layersDir, manifestDir, referrerDir} {
		has, err := hasFiles(filepath.Join(dir, sub))
		if err != nil || has {
			return false, err
		}
	}
	existed := false
	for _, sub := range []string{layersDir, manifestDir, referrerDir} {
		p := filepath.Join(dir, sub)
		if _, err := os.Lstat(p); err == nil {
			existed = true
		}
		if err := os.RemoveAll(p); err != nil {
			return false, err
		}
	}
	top := filepath.Join(s.root, reposDir)
	for d := dir; d != top && strings.HasPrefix(d, top+string(filepath.Separator)); d = filepath.Dir(d) {
		if os.Remove(d) != nil { // not empty: a nested repository, or not ours
			break
		}
	}
	return existed, nil
}

// hasFiles reports whether the tree under dir holds anything but
// directories.
func hasFiles(dir string) (bool, error) {
	found := false
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !e.IsDir() {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found, err
}

// removeEmptyDirs removes the empty directories under dir, and dir itself
// if that leaves it empty.
func removeEmptyDirs(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			removeEmptyDirs(filepath.Join(dir, e.Name()))
		}
	}
	os.Remove(dir) // fails, as it should, if not empty
}

// walkLinkFiles lists <dir>/<alg>/<hex> files with their FileInfo.
func walkLinkFiles(dir string, fn func(d digest.Digest, fi fs.FileInfo) error) error {
	for _, alg := range algorithms {
		entries, err := os.ReadDir(filepath.Join(dir, string(alg.name)))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				continue
			}
			return err
		}
		for _, e := range entries {
			n := e.Name()
			if !e.Type().IsRegular() || len(n) != alg.hexLen || !isLowerHex(n) {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue // removed since ReadDir
			}
			if err := fn(digest.NewDigestFromEncoded(alg.name, n), fi); err != nil {
				return err
			}
		}
	}
	return nil
}

// walkReferrers lists the entries <dir>/<alg>/<hex>/<alg>-<hex> of a
// repository's _referrers: subject, referrer and the entry's path.
func walkReferrers(dir string, fn func(subject, ref digest.Digest, path string) error) error {
	for _, alg := range algorithms {
		algDir := filepath.Join(dir, string(alg.name))
		hexes, err := readDirNames(algDir)
		if err != nil {
			return err
		}
		for _, hex := range hexes {
			subject, err := ParseDigest(string(alg.name) + ":" + hex)
			if err != nil {
				continue
			}
			entries, err := readDirNames(filepath.Join(algDir, hex))
			if err != nil {
				return err
			}
			for _, e := range entries {
				a, h, ok := strings.Cut(e, "-")
				if !ok {
					continue
				}
				ref, err := ParseDigest(a + ":" + h)
				if err != nil {
					continue
				}
				if err := fn(subject, ref, filepath.Join(algDir, hex, e)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
