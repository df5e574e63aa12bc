package metadb

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// timeout bounds the wait for bbolt's own file lock, which only matters
// when some opener does not follow the metadata.lock protocol.
const timeout = 30 * time.Second

// DB is the metadata database under one engine root.
type DB struct {
	path, lock string
}

// Path is the database file.
func (d *DB) Path() string { return d.path }

// Open returns the database of root, creating root if needed. Buckets are
// created by the packages that own them, in their first Update.
func Open(root string) (*DB, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("open metadata: %w", err)
	}
	return &DB{path: filepath.Join(root, "metadata.db"), lock: filepath.Join(root, "metadata.lock")}, nil
}

// Lock takes how (unix.LOCK_SH or LOCK_EX) on the file at path, creating
// it, and returns the release. A new descriptor per call: flock locks
// belong to the open file description, so goroutines of one process
// exclude each other too.
func Lock(path string, how int) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, os.NewSyscallError("flock", err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the lock
}

func (d *DB) flock(how int) (func(), error) {
	unlock, err := Lock(d.lock, how)
	if err != nil {
		return nil, fmt.Errorf("lock metadata: %w", err)
	}
	return unlock, nil
}

// View runs fn in a read-only transaction. A database that does not exist
// yet reads as empty: fn gets a transaction with no buckets.
func (d *DB) View(fn func(tx *bolt.Tx) error) error {
	unlock, err := d.flock(unix.LOCK_SH)
	if err != nil {
		return err
	}
	if _, err := os.Stat(d.path); os.IsNotExist(err) {
		unlock()
		return d.Update(fn) // creates the file; fn only reads
	}
	defer unlock()
	db, err := bolt.Open(d.path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return fmt.Errorf("open %s: %w", d.path, err)
	}
	defer db.Close()
	return db.View(fn)
}

// Update runs fn in a read-write transaction, committed when fn returns nil.
func (d *DB) Update(fn func(tx *bolt.Tx) error) error {
	unlock, err := d.flock(unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	db, err := bolt.Open(d.path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return fmt.Errorf("open %s: %w", d.path, err)
	}
	err = db.Update(fn)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", d.path, cerr)
	}
	return err
}
