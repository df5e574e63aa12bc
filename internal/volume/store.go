package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/berth-dev/berth/internal/metadb"
)

var bucketVolumes = []byte("volumes")

const (
	volumesDir = "volumes"
	dataDir    = "_data"
	tmpDir     = ".tmp"  // under volumes/: staged creates and retired volumes
	useLock    = ".lock" // under volumes/: Hold (shared) against Remove and Prune (exclusive)
)

// InUse returns the IDs of the containers that use the volume name, none
// when it is unused. It is called with <root>/volumes/.lock held
// exclusively, so it must not call back into the Store (it may read the
// container records, under metadata.lock).
type InUse func(name string) []string

// Store keeps the volumes of one engine root. It holds no state in memory:
// any number of Stores, in one process or several, may share a root.
type Store struct {
	root    string // engine root, absolute
	dir     string // <root>/volumes
	tmp     string // <root>/volumes/.tmp
	useLock string // <root>/volumes/.lock
	db      *metadb.DB
}

// record is a volume as stored in the volumes bucket: what is not derived
// from the name and the root.
type record struct {
	Name      string
	Driver    string
	CreatedAt time.Time
	Labels    map[string]string `json:",omitempty"`
	Options   map[string]string `json:",omitempty"`
}

// New opens (creating if needed) the volume store of the engine root.
func New(root string) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("open volume store: empty root: %w", errdefs.ErrInvalidArgument)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open volume store: %w", err)
	}
	if err := os.MkdirAll(abs, 0o711); err != nil {
		return nil, fmt.Errorf("open volume store: %w", err)
	}
	db, err := metadb.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("open volume store: %w", err)
	}
	s := &Store{
		root:    abs,
		dir:     filepath.Join(abs, volumesDir),
		tmp:     filepath.Join(abs, volumesDir, tmpDir),
		useLock: filepath.Join(abs, volumesDir, useLock),
		db:      db,
	}
	// volumes/ is 0701 as Docker's: containers' users may reach a
	// mountpoint they know, nobody but root may list the names.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{s.dir, 0o701}, {s.tmp, 0o700}} {
		if err := os.Mkdir(d.path, d.mode); err == nil {
			if err := os.Chmod(d.path, d.mode); err != nil {
				return nil, fmt.Errorf("open volume store: %w", err)
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("open volume store: %w", err)
		}
	}
	// Fast path: the bucket exists, a shared lock is enough.
	ok := false
	if err := s.db.View(func(tx *bolt.Tx) error { ok = tx.Bucket(bucketVolumes) != nil; return nil }); err == nil && ok {
		return s, nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketVolumes)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open volume store: %w", err)
	}
	return s, nil
}

// Root is the engine root the store lives in.
func (s *Store) Root() string { return s.root }

// Create makes the volume name, or returns it as it is when it exists
// already (whatever labels and opts it was created with: Docker does the
// same). An empty name creates an anonymous volume: a random 64-hex name
// and the label AnonymousLabel.
func (s *Store) Create(name string, labels, opts map[string]string) (*Volume, error) {
	if name == "" {
		n, err := randomName()
		if err != nil {
			return nil, err
		}
		name = n
		labels = maps.Clone(labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[AnonymousLabel] = ""
	} else if err := ValidName(name); err != nil {
		return nil, err
	}
	if err := checkOptions(opts); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	if v, err := s.Get(name); err == nil {
		return v, nil // the common case for `run -v data:/x`: no write lock
	}
	var (
		out     *Volume
		garbage []*trash
	)
	// One write transaction: metadata.lock is held exclusively from the
	// sweep to the commit, so the directory work below is serialized with
	// every other create, remove and sweep.
	err := s.db.Update(func(tx *bolt.Tx) error {
		garbage = s.claimAbandoned()
		if existing, err := getRecord(tx, name); err == nil {
			out = s.volume(existing) // created by someone else since our Get
			return nil
		} else if !errdefs.IsNotFound(err) {
			return err
		}
		final := filepath.Join(s.dir, name)
		// A directory without a record is what a crash between the
		// rename below and the commit leaves (or between a removal's
		// commit and its rename): never visible, so it goes.
		if _, err := os.Lstat(final); err == nil {
			t, err := s.retire(final)
			if err != nil {
				return err
			}
			garbage = append(garbage, t)
		}
		stage, err := os.MkdirTemp(s.tmp, "create-")
		if err != nil {
			return err
		}
		if err := makeVolumeDir(stage); err != nil {
			os.RemoveAll(stage)
			return err
		}
		if err := os.Rename(stage, final); err != nil {
			os.RemoveAll(stage)
			return err
		}
		// The rename is durable before the record that depends on it.
		if err := fsutil.SyncDir(s.dir); err != nil {
			if t, rerr := s.retire(final); rerr == nil {
				garbage = append(garbage, t)
			}
			return err
		}
		rec := &record{Name: name, Driver: DriverLocal, CreatedAt: time.Now().UTC(), Labels: maps.Clone(labels), Options: maps.Clone(opts)}
		if err := putRecord(tx, rec); err != nil {
			if t, rerr := s.retire(final); rerr == nil {
				garbage = append(garbage, t)
			}
			return err
		}
		// A failed commit leaves the directory without a record:
		// garbage for the next sweep, never a visible volume.
		out = s.volume(rec)
		return nil
	})
	dispose(garbage)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	return out, nil
}

// makeVolumeDir gives a staged volume directory its _data, with the
// modes Docker's local driver uses.
func makeVolumeDir(stage string) error {
	if err := os.Chmod(stage, 0o701); err != nil {
		return err
	}
	data := filepath.Join(stage, dataDir)
	if err := os.Mkdir(data, 0o755); err != nil {
		return err
	}
	return os.Chmod(data, 0o755) // whatever the umask
}

// Get returns the volume name, or errdefs.ErrNotFound.
func (s *Store) Get(name string) (*Volume, error) {
	var rec *record
	err := s.view(func(b *bolt.Bucket) error {
		var err error
		rec, err = decode(b, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.volume(rec), nil
}

// List returns every volume, sorted by name.
func (s *Store) List() ([]*Volume, error) {
	var out []*Volume
	err := s.view(func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error { // keys come sorted
			rec, err := decode(b, string(k))
			if err != nil {
				return err
			}
			out = append(out, s.volume(rec))
			return nil
		})
	})
	return out, err
}

// Hold runs fn while no Remove or Prune can decide that a volume is
// unused. Container creation calls Create (or Get) and writes the
// container record inside fn, so that a concurrent `volume rm` either runs
// before (and the container creates the volume afresh) or after (and sees
// the container). fn must not call Remove or Prune.
func (s *Store) Hold(fn func() error) error {
	unlock, err := flock(s.useLock, unix.LOCK_SH)
	if err != nil {
		return fmt.Errorf("lock volumes: %w", err)
	}
	defer unlock()
	return fn()
}

// Remove deletes the volume name and its data. A volume that inUse says
// containers use is refused (errdefs.ErrConflict), force or not; force
// only makes a missing volume no error, as with Docker.
func (s *Store) Remove(name string, force bool, inUse InUse) error {
	unlock, err := flock(s.useLock, unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("remove %s: lock volumes: %w", name, err)
	}
	defer unlock()
	if _, err := s.Get(name); err != nil {
		if force && errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if inUse != nil {
		if ids := inUse(name); len(ids) > 0 {
			return fmt.Errorf("remove %s: volume is in use - [%s]: %w", name, strings.Join(ids, ", "), errdefs.ErrConflict)
		}
	}
	var (
		garbage, data []*trash
		rerr          error
	)
	err = s.db.Update(func(tx *bolt.Tx) error {
		garbage = s.claimAbandoned()
		if err := deleteRecord(tx, name); err != nil {
			return err
		}
		// Once the deletion is committed (metadata.lock still held) the
		// directory is garbage: moved out of the namespace now, deleted
		// after the lock is released.
		tx.OnCommit(func() {
			t, err := s.retire(filepath.Join(s.dir, name))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				rerr = fmt.Errorf("volume removed, but moving its data away failed (the next create, rm or prune retries): %w", err)
			}
			if t != nil {
				data = append(data, t)
			}
		})
		return nil
	})
	if err == nil {
		err = rerr
	}
	dispose(garbage)
	derr := dispose(data)
	switch {
	case errdefs.IsNotFound(err):
		if force {
			return nil
		}
		return err
	case err != nil:
		return fmt.Errorf("remove %s: %w", name, err)
	case derr != nil && !force:
		return fmt.Errorf("remove %s: volume removed, but deleting its data failed (the next create, rm or prune retries): %w", name, derr)
	}
	return nil
}

// Pruned is what Prune removed.
type Pruned struct {
	Names          []string
	SpaceReclaimed int64
}

// Prune removes the unused volumes that f matches: the anonymous ones, or
// with all every one, as Docker 23 and later do. It also sweeps what
// crashes left behind (directories without a record, abandoned temporary
// directories); that space is not counted.
func (s *Store) Prune(inUse InUse, all bool, f Filter) (*Pruned, error) {
	unlock, err := flock(s.useLock, unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("prune volumes: lock volumes: %w", err)
	}
	defer unlock()
	vols, err := s.List()
	if err != nil {
		return nil, err
	}
	var victims []*Volume
	for _, v := range vols {
		if (!all && !v.Anonymous()) || !f.Match(v, inUse) {
			continue
		}
		if inUse != nil && len(inUse(v.Name)) > 0 {
			continue
		}
		victims = append(victims, v)
	}
	sizes := map[string]int64{}
	for _, v := range victims {
		sizes[v.Name], _ = dirSize(v.Mountpoint) // best effort, as Docker
	}
	rep := &Pruned{}
	var garbage []*trash
	err = s.db.Update(func(tx *bolt.Tx) error {
		garbage = s.claimAbandoned()
		rep.Names, rep.SpaceReclaimed = nil, 0
		for _, v := range victims {
			if err := deleteRecord(tx, v.Name); errdefs.IsNotFound(err) {
				continue // gone already (only a hand-edited database does that)
			} else if err != nil {
				return err
			}
			rep.Names = append(rep.Names, v.Name)
			rep.SpaceReclaimed += sizes[v.Name]
		}
		// After the commit every directory without a record is garbage:
		// the pruned volumes' and any a crash left.
		// (Read the names now: the transaction is closed by then.)
		known := map[string]bool{}
		if b := tx.Bucket(bucketVolumes); b != nil {
			if err := b.ForEach(func(k, _ []byte) error { known[string(k)] = true; return nil }); err != nil {
				return err
			}
		}
		tx.OnCommit(func() {
			entries, err := os.ReadDir(s.dir)
			if err != nil {
				return
			}
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") || known[e.Name()] {
					continue
				}
				if t, err := s.retire(filepath.Join(s.dir, e.Name())); err == nil {
					garbage = append(garbage, t)
				}
			}
		})
		return nil
	})
	dispose(garbage)
	if err != nil {
		return nil, fmt.Errorf("prune volumes: %w", err)
	}
	return rep, nil
}

// Size is the apparent size of the volume's data: regular files and
// symbolic links, each hard-linked file once, directories not counted
// (what Docker's `system df -v` reports).
func (s *Store) Size(name string) (int64, error) {
	v, err := s.Get(name)
	if err != nil {
		return 0, err
	}
	n, err := dirSize(v.Mountpoint)
	if err != nil {
		return n, fmt.Errorf("size of volume %s: %w", name, err)
	}
	return n, nil
}

func dirSize(dir string) (int64, error) {
	var size int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walk
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		size += fi.Size()
		return nil
	})
	return size, err
}

func (s *Store) volume(r *record) *Volume {
	return &Volume{
		Name:       r.Name,
		Driver:     r.Driver,
		Mountpoint: filepath.Join(s.dir, r.Name, dataDir),
		CreatedAt:  r.CreatedAt,
		Labels:     r.Labels,
		Options:    r.Options,
		Scope:      ScopeLocal,
	}
}

// --- records ---

func notFound(name string) error {
	return fmt.Errorf("get %s: no such volume: %w", name, errdefs.ErrNotFound)
}

func decode(b *bolt.Bucket, name string) (*record, error) {
	if b == nil {
		return nil, notFound(name)
	}
	v := b.Get([]byte(name))
	if v == nil {
		return nil, notFound(name)
	}
	rec := new(record)
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("volume record %s is corrupt: %v", name, err)
	}
	return rec, nil
}

func getRecord(tx *bolt.Tx, name string) (*record, error) {
	return decode(tx.Bucket(bucketVolumes), name)
}

func putRecord(tx *bolt.Tx, r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b, err := tx.CreateBucketIfNotExists(bucketVolumes)
	if err != nil {
		return err
	}
	return b.Put([]byte(r.Name), data)
}

func deleteRecord(tx *bolt.Tx, name string) error {
	b := tx.Bucket(bucketVolumes)
	if b == nil || b.Get([]byte(name)) == nil {
		return notFound(name)
	}
	return b.Delete([]byte(name))
}

// view runs fn on the volumes bucket in a read-only transaction. b is nil
// when the database has no volumes bucket (New makes it, but the file
// may have been replaced since): no volumes.
func (s *Store) view(fn func(b *bolt.Bucket) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketVolumes)) })
}

// flock takes how (unix.LOCK_SH or LOCK_EX) on path and returns the
// release. A new descriptor per call: flock locks belong to the open file
// description, so goroutines of one process exclude each other too.
func flock(path string, how int) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := fsutil.Flock(f, how); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing the descriptor releases the lock
}

// --- garbage: retired and abandoned directories under volumes/.tmp ---

// trash is a directory under volumes/.tmp whose flock we hold: nobody else
// will touch it, and if we die the lock goes and a later sweep takes it.
type trash struct {
	path string
	lock *os.File
}

// retire moves path (a volume's directory) out of the namespace into a
// fresh, locked wrapper under .tmp. The caller holds metadata.lock (it runs
// inside a write transaction), so no sweep can take the wrapper between
// its creation and its lock.
func (s *Store) retire(path string) (*trash, error) {
	w, err := os.MkdirTemp(s.tmp, "rm-")
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(w, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		if err = fsutil.Flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.Remove(w)
		return nil, err
	}
	if err := os.Rename(path, filepath.Join(w, "v")); err != nil {
		os.Remove(w)
		f.Close()
		return nil, err
	}
	return &trash{path: w, lock: f}, nil
}

// claimAbandoned locks every directory under .tmp that nobody holds: a
// staged create or a retired volume whose process died. The caller holds
// metadata.lock (so no live create's stage is there) and disposes of the
// result after releasing it. Best effort: a failure leaves the entry for
// the next sweep.
func (s *Store) claimAbandoned() []*trash {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil
	}
	var out []*trash
	for _, e := range entries {
		p := filepath.Join(s.tmp, e.Name())
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				os.Remove(p) // nothing of ours is a file here
			}
			continue
		}
		if fsutil.Flock(f, unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // held: being removed by its owner
			continue
		}
		out = append(out, &trash{path: p, lock: f})
	}
	return out
}

// dispose deletes the trash and releases its locks; it returns the first
// error.
func dispose(ts []*trash) error {
	var first error
	for _, t := range ts {
		if err := removeAll(t.path); err != nil && first == nil {
			first = err
		}
		t.lock.Close()
	}
	return first
}

// removeAll is os.RemoveAll that first makes directories writable, so a
// volume holding a read-only directory (chmod 0555 by a container) still
// goes, as root or not.
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}
