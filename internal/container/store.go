package container

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Records live in two buckets of metadata.db: containers (ID -> JSON)
// and containerNames (name -> ID), so a name is unique across processes
// by the database's own write lock.
var (
	bucketContainers = []byte("containers")
	bucketNames      = []byte("containerNames")
)

// insert stores a new record; its name must be free.
func (e *Engine) insert(c *Container) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error {
		cb, nb, err := buckets(tx)
		if err != nil {
			return err
		}
		if id := nb.Get([]byte(c.Name)); id != nil {
			return nameConflict(c.Name, string(id))
		}
		if err := nb.Put([]byte(c.Name), []byte(c.ID)); err != nil {
			return err
		}
		return cb.Put([]byte(c.ID), data)
	})
}

func nameConflict(name, id string) error {
	return fmt.Errorf("the container name %q is already in use by container %q: remove (or rename) that container to be able to reuse that name: %w",
		"/"+name, id, errdefs.ErrConflict)
}

func buckets(tx *bolt.Tx) (*bolt.Bucket, *bolt.Bucket, error) {
	cb, err := tx.CreateBucketIfNotExists(bucketContainers)
	if err != nil {
		return nil, nil, err
	}
	nb, err := tx.CreateBucketIfNotExists(bucketNames)
	return cb, nb, err
}

// Get finds a container by full ID, name, or unique ID prefix, in that
// order, as Docker does.
func (e *Engine) Get(ref string) (*Container, error) {
	var c *Container
	err := e.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = lookup(tx, ref)
		return err
	})
	return c, err
}

func lookup(tx *bolt.Tx, ref string) (*Container, error) {
	ref = strings.TrimPrefix(ref, "/")
	cb, nb := tx.Bucket(bucketContainers), tx.Bucket(bucketNames)
	notFound := fmt.Errorf("no such container: %s: %w", ref, errdefs.ErrNotFound)
	if cb == nil || nb == nil || ref == "" {
		return nil, notFound
	}
	decode := func(data []byte) (*Container, error) {
		var c Container
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, fmt.Errorf("container record %.12s: %w", ref, err)
		}
		return &c, nil
	}
	if data := cb.Get([]byte(ref)); data != nil {
		return decode(data)
	}
	if id := nb.Get([]byte(ref)); id != nil {
		if data := cb.Get(id); data != nil {
			return decode(data)
		}
	}
	var found []byte
	cur := cb.Cursor()
	for k, v := cur.Seek([]byte(ref)); k != nil && strings.HasPrefix(string(k), ref); k, v = cur.Next() {
		if found != nil {
			return nil, fmt.Errorf("multiple containers found with provided prefix: %s: %w", ref, errdefs.ErrInvalidArgument)
		}
		found = v
	}
	if found == nil {
		return nil, notFound
	}
	return decode(found)
}

// List returns every container record, newest first (as docker ps -a).
func (e *Engine) List() ([]*Container, error) {
	var out []*Container
	err := e.db.View(func(tx *bolt.Tx) error {
		cb := tx.Bucket(bucketContainers)
		if cb == nil {
			return nil
		}
		return cb.ForEach(func(k, v []byte) error {
			var c Container
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("container record %.12s: %w", k, err)
			}
			out = append(out, &c)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, err
}

// update changes the record id in one transaction: fn sees the current
// record and may refuse the change by returning an error.
func (e *Engine) update(id string, fn func(c *Container) error) (*Container, error) {
	var c *Container
	err := e.db.Update(func(tx *bolt.Tx) error {
		cb, _, err := buckets(tx)
		if err != nil {
			return err
		}
		data := cb.Get([]byte(id))
		if data == nil {
			return fmt.Errorf("no such container: %s: %w", id, errdefs.ErrNotFound)
		}
		c = new(Container)
		if err := json.Unmarshal(data, c); err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
		data, err = json.Marshal(c)
		if err != nil {
			return err
		}
		return cb.Put([]byte(id), data)
	})
	return c, err
}

// rename moves the record id to a new, free name.
func (e *Engine) rename(id, name string) error {
	return e.db.Update(func(tx *bolt.Tx) error {
		cb, nb, err := buckets(tx)
		if err != nil {
			return err
		}
		if other := nb.Get([]byte(name)); other != nil {
			if string(other) == id {
				return fmt.Errorf("renaming a container with the same name as its current name: %w", errdefs.ErrInvalidArgument)
			}
			return nameConflict(name, string(other))
		}
		data := cb.Get([]byte(id))
		if data == nil {
			return fmt.Errorf("no such container: %s: %w", id, errdefs.ErrNotFound)
		}
		var c Container
		if err := json.Unmarshal(data, &c); err != nil {
			return err
		}
		if err := nb.Delete([]byte(c.Name)); err != nil {
			return err
		}
		c.Name = name
		if data, err = json.Marshal(&c); err != nil {
			return err
		}
		if err := nb.Put([]byte(name), []byte(id)); err != nil {
			return err
		}
		return cb.Put([]byte(id), data)
	})
}

// drop deletes the record and frees its name.
func (e *Engine) drop(id string) error {
	return e.db.Update(func(tx *bolt.Tx) error {
		cb, nb, err := buckets(tx)
		if err != nil {
			return err
		}
		data := cb.Get([]byte(id))
		if data == nil {
			return nil
		}
		var c Container
		if err := json.Unmarshal(data, &c); err == nil {
			if cur := nb.Get([]byte(c.Name)); string(cur) == id {
				if err := nb.Delete([]byte(c.Name)); err != nil {
					return err
				}
			}
		}
		return cb.Delete([]byte(id))
	})
}
