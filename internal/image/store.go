package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/metadb"
	"github.com/berth-dev/berth/internal/reference"
)

var (
	bucketImages = []byte("images")
	bucketNames  = []byte("names")
)

// Store keeps image records and names in <root>/metadata.db, through
// package metadb: each call takes metadata.lock, opens the database, runs
// one transaction and closes it, so no berth process locks the others out.
type Store struct {
	root string
	db   *metadb.DB
}

// Open opens (creating if needed) the metadata store under root.
func Open(root string) (*Store, error) {
	db, err := metadb.Open(root)
	if err != nil {
		return nil, fmt.Errorf("open image metadata: %w", err)
	}
	s := &Store{root: root, db: db}
	if _, err := os.Stat(db.Path()); err == nil {
		// Fast path: the buckets exist unless someone else made the file.
		ok := false
		if err := db.View(func(tx *bolt.Tx) error {
			ok = tx.Bucket(bucketImages) != nil && tx.Bucket(bucketNames) != nil
			return nil
		}); err == nil && ok {
			return s, nil
		}
	}
	err = s.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketNames} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open image metadata: %w", err)
	}
	return s, nil
}

// Root is the engine root the store lives in.
func (s *Store) Root() string { return s.root }

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketImages) == nil || tx.Bucket(bucketNames) == nil {
			return fmt.Errorf("%s has no image buckets; was it opened with image.Open?: %w", s.db.Path(), errdefs.ErrFailedPrecondition)
		}
		return fn(tx)
	})
}

func (s *Store) update(fn func(tx *bolt.Tx) error) error { return s.db.Update(fn) }

// Put writes an image record and points its RepoTags and RepoDigests at
// it, taking each name away from any other image that had it (as
// docker tag and docker load do). Names the stored record had and img
// has not are removed.
func (s *Store) Put(img *Image) error {
	if err := img.ID.Validate(); err != nil {
		return fmt.Errorf("put image: invalid ID %q: %w", img.ID, errdefs.ErrInvalidArgument)
	}
	return s.update(func(tx *bolt.Tx) error { return putImage(tx, img, time.Now()) })
}

// Get finds an image by full ID ("sha256:<hex>" or "<hex>"), by name
// ("busybox", "busybox:1", "busybox@sha256:<manifest digest>") or by a
// unique prefix of its ID, in that order, as Docker does.
func (s *Store) Get(idOrRef string) (*Image, error) {
	var img *Image
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		img, err = resolve(tx, idOrRef)
		return err
	})
	return img, err
}

// List returns every image, newest first.
func (s *Store) List() ([]*Image, error) {
	var out []*Image
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = allImages(tx)
		return err
	})
	return out, err
}

// Tag gives the image idOrRef resolves to the name newRef ("name" means
// "name:latest"), moving it from whichever image had it.
func (s *Store) Tag(idOrRef, newRef string) error {
	tagged, err := parseTagRef(newRef)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		img, err := resolve(tx, idOrRef)
		if err != nil {
			return err
		}
		if err := addName(tx, img, tagged.String()); err != nil {
			return err
		}
		img.LastTagTime = time.Now().UTC()
		return writeImage(tx, img)
	})
}

// Untag removes the name ref (a tag or a name@digest) and returns the
// image it named, without that name. The image itself stays, possibly
// dangling.
func (s *Store) Untag(ref string) (*Image, error) {
	named, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	var img *Image
	err = s.update(func(tx *bolt.Tx) error {
		img, err = untag(tx, named)
		return err
	})
	return img, err
}

// Delete removes the image record id (a full ID, or anything Get resolves)
// and every name pointing at it. Blobs and layers stay until GC.
func (s *Store) Delete(id string) error {
	return s.update(func(tx *bolt.Tx) error {
		img, err := resolve(tx, id)
		if err != nil {
			return err
		}
		return deleteImage(tx, img)
	})
}

// --- transaction helpers, shared with Service ---

func getImage(tx *bolt.Tx, id digest.Digest) (*Image, error) {
	v := tx.Bucket(bucketImages).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("no such image: %s: %w", id, errdefs.ErrNotFound)
	}
	img := new(Image)
	if err := json.Unmarshal(v, img); err != nil {
		return nil, fmt.Errorf("image record %s is corrupt: %v", id, err)
	}
	return img, nil
}

func writeImage(tx *bolt.Tx, img *Image) error {
	sort.Strings(img.RepoTags)
	sort.Strings(img.RepoDigests)
	b, err := json.Marshal(img)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketImages).Put([]byte(img.ID), b)
}

func allImages(tx *bolt.Tx) ([]*Image, error) {
	var out []*Image
	err := tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
		img := new(Image)
		if err := json.Unmarshal(v, img); err != nil {
			return fmt.Errorf("image record %s is corrupt: %v", k, err)
		}
		out = append(out, img)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

// putImage writes img and reconciles the names bucket with its name lists.
func putImage(tx *bolt.Tx, img *Image, now time.Time) error {
	names := tx.Bucket(bucketNames)
	want := map[string]bool{}
	for _, n := range append(slices.Clone(img.RepoTags), img.RepoDigests...) {
		want[n] = true
	}
	// Drop names the old record had that the new one has not.
	if old, err := getImage(tx, img.ID); err == nil {
		for _, n := range append(old.RepoTags, old.RepoDigests...) {
			if !want[n] && string(names.Get([]byte(n))) == string(img.ID) {
				if err := names.Delete([]byte(n)); err != nil {
					return err
				}
			}
		}
	}
	tags, digests := img.RepoTags, img.RepoDigests
	img.RepoTags, img.RepoDigests = nil, nil
	for _, n := range append(slices.Clone(tags), digests...) {
		if err := addName(tx, img, n); err != nil {
			return err
		}
	}
	if len(tags) > 0 && img.LastTagTime.IsZero() {
		img.LastTagTime = now.UTC()
	}
	return writeImage(tx, img)
}

// addName points name (normalized) at img, taking it from its previous
// owner, and adds it to img's lists in memory; the caller writes img.
func addName(tx *bolt.Tx, img *Image, name string) error {
	names := tx.Bucket(bucketNames)
	if prev := names.Get([]byte(name)); prev != nil && string(prev) != string(img.ID) {
		old, err := getImage(tx, digest.Digest(prev))
		if err == nil {
			old.RepoTags = remove(old.RepoTags, name)
			old.RepoDigests = remove(old.RepoDigests, name)
			if err := writeImage(tx, old); err != nil {
				return err
			}
		} else if !errdefs.IsNotFound(err) {
			return err
		}
	}
	if err := names.Put([]byte(name), []byte(img.ID)); err != nil {
		return err
	}
	if strings.Contains(name, "@") {
		if !slices.Contains(img.RepoDigests, name) {
			img.RepoDigests = append(img.RepoDigests, name)
		}
	} else if !slices.Contains(img.RepoTags, name) {
		img.RepoTags = append(img.RepoTags, name)
	}
	return nil
}

// nameKey is the names-bucket key for a parsed reference: the digest form
// when there is a digest (a tag beside it is ignored, as Docker does).
func nameKey(named reference.Named) string {
	if d, ok := named.(reference.Digested); ok {
		if c, err := reference.WithDigest(reference.TrimNamed(named), d.Digest()); err == nil {
			return c.String()
		}
	}
	return named.String()
}

func untag(tx *bolt.Tx, named reference.Named) (*Image, error) {
	key := nameKey(named)
	names := tx.Bucket(bucketNames)
	id := names.Get([]byte(key))
	if id == nil {
		return nil, fmt.Errorf("no such image: %s: %w", reference.FamiliarString(named), errdefs.ErrNotFound)
	}
	if err := names.Delete([]byte(key)); err != nil {
		return nil, err
	}
	img, err := getImage(tx, digest.Digest(id))
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("no such image: %s: %w", reference.FamiliarString(named), errdefs.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	img.RepoTags = remove(img.RepoTags, key)
	img.RepoDigests = remove(img.RepoDigests, key)
	return img, writeImage(tx, img)
}

func deleteImage(tx *bolt.Tx, img *Image) error {
	names := tx.Bucket(bucketNames)
	for _, n := range append(slices.Clone(img.RepoTags), img.RepoDigests...) {
		if string(names.Get([]byte(n))) == string(img.ID) {
			if err := names.Delete([]byte(n)); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketImages).Delete([]byte(img.ID))
}

func remove(list []string, s string) []string {
	return slices.DeleteFunc(list, func(x string) bool { return x == s })
}

// resolve implements Get's lookup order inside a transaction.
func resolve(tx *bolt.Tx, s string) (*Image, error) {
	if s == "" {
		return nil, fmt.Errorf("no image given: %w", errdefs.ErrInvalidArgument)
	}
	hex, hasAlg := strings.CutPrefix(s, "sha256:")
	if len(hex) == 64 && isHex(hex) {
		return getImage(tx, digest.Digest("sha256:"+hex))
	}
	if hasAlg && !isHex(hex) {
		return nil, fmt.Errorf("invalid image ID %q: %w", truncate(s), errdefs.ErrInvalidArgument)
	}
	var parseErr error
	if !hasAlg {
		named, err := ParseRef(s)
		if err == nil {
			if img, err := byName(tx, named); err == nil || !errdefs.IsNotFound(err) {
				return img, err
			}
		}
		parseErr = err
	}
	if isHex(hex) && len(hex) < 64 {
		return byPrefix(tx, s, hex)
	}
	if parseErr != nil {
		return nil, parseErr
	}
	return nil, fmt.Errorf("no such image: %s: %w", truncate(s), errdefs.ErrNotFound)
}

func byName(tx *bolt.Tx, named reference.Named) (*Image, error) {
	key := nameKey(named)
	if id := tx.Bucket(bucketNames).Get([]byte(key)); id != nil {
		return getImage(tx, digest.Digest(id))
	}
	// name@digest also finds an image of that repository whose manifest
	// or index has the digest, named or not under that digest (loaded
	// images carry no RepoDigests, as in Docker).
	if d, ok := named.(reference.Digested); ok {
		repo := named.Name()
		var found *Image
		c := tx.Bucket(bucketImages).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			img := new(Image)
			if json.Unmarshal(v, img) != nil {
				continue
			}
			if img.ManifestDigest != d.Digest() && img.IndexDigest != d.Digest() {
				continue
			}
			for _, t := range img.RepoTags {
				if n, err := reference.ParseNormalizedNamed(t); err == nil && n.Name() == repo {
					found = img
				}
			}
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("no such image: %s: %w", reference.FamiliarString(named), errdefs.ErrNotFound)
}

func byPrefix(tx *bolt.Tx, s, hex string) (*Image, error) {
	prefix := []byte("sha256:" + hex)
	c := tx.Bucket(bucketImages).Cursor()
	var match []byte
	n := 0
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		match = slices.Clone(k)
		n++
	}
	switch n {
	case 0:
		return nil, fmt.Errorf("no such image: %s: %w", truncate(s), errdefs.ErrNotFound)
	case 1:
		return getImage(tx, digest.Digest(match))
	}
	return nil, fmt.Errorf("image ID prefix %q is ambiguous: it matches %d images; give more characters: %w", s, n, errdefs.ErrInvalidArgument)
}
