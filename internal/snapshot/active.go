package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/berth-dev/berth/internal/opts"
)

// Names inside active/<key>/.
const (
	upperDir      = "upper"
	workDir       = "work"
	emptyLowerDir = "lower"
	rootfsDir     = "rootfs"
	// partialRootfs is where the copy driver builds rootfs; renamed when whole.
	partialRootfs = "rootfs.partial"
)

// activeMeta is active/<key>/meta.json.
type activeMeta struct {
	Key     string          `json:"key"`
	Driver  string          `json:"driver"`
	ChainID digest.Digest   `json:"chainID,omitempty"`
	Lowers  []digest.Digest `json:"lowers,omitempty"` // chain IDs, top first
	Created time.Time       `json:"created"`
}

func checkKey(key string) error {
	if !opts.IsName(key, 1, 128) {
		return fmt.Errorf("snapshot key %q: want 1-128 letters, digits, '_', '.' or '-', not starting with a symbol: %w", key, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (s *Store) activePath(key string) string {
	return filepath.Join(s.root, activeDir, key)
}

// chain returns the metadata of chainID and its ancestors, top first.
func (s *Store) chain(chainID digest.Digest) ([]*layerMeta, error) {
	var out []*layerMeta
	for c := chainID; c != ""; {
		m, err := s.readLayerMeta(c)
		if err != nil {
			if len(out) > 0 && errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("layer %s, below %s: %w", c, chainID, errdefs.ErrNotFound)
			}
			return nil, err
		}
		out = append(out, m)
		if len(out) > 1<<16 {
			return nil, fmt.Errorf("layer %s: parent chain loops", chainID)
		}
		c = m.Parent
	}
	return out, nil
}

// Prepare creates the active (writable) snapshot key on top of the layer
// chainID ("" for an empty root filesystem) and returns the plan that
// mounts it: one overlay mount, or for the copy driver a bind mount of a
// full copy of the layers. Mount it with MountAt; writes land in the
// snapshot, never in the layers, which stay shared. While the snapshot
// exists its layers cannot be removed. The key is the caller's name for
// it (a container ID); errdefs.ErrAlreadyExists if taken. An active
// snapshot never becomes a layer: RemoveActive ends it.
func (s *Store) Prepare(key string, chainID digest.Digest) ([]Mount, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("prepare snapshot: %w", err)
	}
	if chainID != "" {
		if err := checkDigest("chain ID", chainID); err != nil {
			return nil, fmt.Errorf("prepare snapshot %q: %w", key, err)
		}
	}
	m, err := s.prepare(key, chainID)
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot %q: %w", key, err)
	}
	return m, nil
}

func (s *Store) prepare(key string, chainID digest.Digest) ([]Mount, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	dir := s.activePath(key)
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("snapshot exists: %w", errdefs.ErrAlreadyExists)
	}
	layers, err := s.chain(chainID)
	if err != nil {
		return nil, err
	}
	meta := activeMeta{Key: key, Driver: s.driver, ChainID: chainID, Created: time.Now().UTC()}
	for _, l := range layers {
		meta.Lowers = append(meta.Lowers, l.ChainID)
	}
	var plan []Mount
	if s.driver == DriverOverlay {
		for _, l := range layers {
			if l.Whiteouts != whiteoutsOverlay {
				return nil, fmt.Errorf("layer %s was unpacked for the copy driver and cannot be an overlay lower; remove the image and pull it again: %w", l.ChainID, errdefs.ErrFailedPrecondition)
			}
			link, err := s.readLink(l.ChainID)
			if err != nil {
				return nil, err
			}
			if err := s.ensureLink(l.ChainID, link); err != nil {
				return nil, err
			}
		}
		// Check the plan fits before creating anything.
		if plan, err = s.overlayPlan(&meta); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("snapshot exists: %w", errdefs.ErrAlreadyExists)
		}
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			if !locked {
				if u, err := s.lock(); err == nil {
					unlock, locked = u, true
				}
			}
			s.discard(dir)
		}
	}()
	if err := s.writeActiveMeta(&meta); err != nil {
		return nil, err
	}
	if s.driver == DriverOverlay {
		if err := s.makeUpper(dir, layers); err != nil {
			return nil, err
		}
		ok = true
		return plan, nil
	}
	// The copy can take long: do it unlocked. meta.json, already written,
	// keeps the layers from being removed meanwhile.
	unlock()
	locked = false
	partial := filepath.Join(dir, partialRootfs)
	diffs := make([]string, len(layers))
	for i, l := range layers {
		diffs[len(layers)-1-i] = filepath.Join(s.layerPath(l.ChainID), diffDir)
	}
	if err := materialize(partial, diffs); err != nil {
		return nil, err
	}
	if err := syncFS(partial); err != nil {
		return nil, err
	}
	if err := os.Rename(partial, filepath.Join(dir, rootfsDir)); err != nil {
		return nil, err
	}
	ok = true
	return s.copyPlan(dir), nil
}

// makeUpper creates upper/ and work/ (and lower/ for an empty chain).
// upper/ is the merged root's own inode, so it takes the owner and mode of
// the top layer's root, as containerd's overlay snapshotter does.
func (s *Store) makeUpper(dir string, layers []*layerMeta) error {
	for _, d := range []string{upperDir, workDir} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if len(layers) == 0 {
		if err := os.Mkdir(filepath.Join(dir, emptyLowerDir), 0o755); err != nil {
			return err
		}
		return os.Chmod(filepath.Join(dir, upperDir), 0o755) // past the umask
	}
	fi, err := os.Stat(filepath.Join(s.layerPath(layers[0].ChainID), diffDir))
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	upper := filepath.Join(dir, upperDir)
	if err := os.Lchown(upper, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return syscall.Chmod(upper, st.Mode&0o7777)
}

func (s *Store) overlayPlan(meta *activeMeta) ([]Mount, error) {
	dir := s.activePath(meta.Key)
	var lowers []string
	for _, c := range meta.Lowers {
		link, err := s.readLink(c)
		if err != nil {
			return nil, err
		}
		lowers = append(lowers, filepath.Join(s.root, linksDir, link))
	}
	if len(lowers) == 0 {
		lowers = []string{filepath.Join(dir, emptyLowerDir)} // overlay needs one
	}
	m, err := overlayMount(lowers, filepath.Join(dir, upperDir), filepath.Join(dir, workDir))
	if err != nil {
		return nil, err
	}
	return []Mount{m}, nil
}

func (s *Store) copyPlan(dir string) []Mount {
	return []Mount{{Type: "bind", Source: filepath.Join(dir, rootfsDir), Options: []string{"rbind", "rw"}}}
}

func (s *Store) writeActiveMeta(m *activeMeta) error {
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return err
	}
	dir := s.activePath(m.Key)
	if err := writeFileSync(filepath.Join(dir, metaFile), append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(dir))
}

func (s *Store) readActiveMeta(key string) (*activeMeta, error) {
	b, err := os.ReadFile(filepath.Join(s.activePath(key), metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var m activeMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("snapshot %q: %s: %w", key, metaFile, err)
	}
	if m.Key != key {
		return nil, fmt.Errorf("snapshot %q: %s names %q", key, metaFile, m.Key)
	}
	return &m, nil
}

// Mounts returns the plan that mounts the active snapshot key again, as
// Prepare returned it (errdefs.ErrNotFound if there is no such snapshot).
func (s *Store) Mounts(key string) ([]Mount, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("snapshot mounts: %w", err)
	}
	m, err := s.readActiveMeta(key)
	if err != nil {
		return nil, err
	}
	switch m.Driver {
	case DriverOverlay:
		plan, err := s.overlayPlan(m)
		if err != nil {
			return nil, fmt.Errorf("snapshot %q: %w", key, err)
		}
		return plan, nil
	case DriverCopy:
		dir := s.activePath(key)
		if _, err := os.Lstat(filepath.Join(dir, rootfsDir)); err != nil {
			return nil, fmt.Errorf("snapshot %q: incomplete (its Prepare did not finish); remove it: %w", key, errdefs.ErrFailedPrecondition)
		}
		return s.copyPlan(dir), nil
	}
	return nil, fmt.Errorf("snapshot %q: unknown driver %q", key, m.Driver)
}

// ActiveKeys lists the keys of the active snapshots, sorted.
func (s *Store) ActiveKeys() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, activeDir))
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var keys []string
	for _, e := range ents {
		if e.IsDir() && checkKey(e.Name()) == nil {
			keys = append(keys, e.Name())
		}
	}
	return keys, nil
}

// RemoveActive removes the active snapshot key and everything written to
// it (errdefs.ErrNotFound if there is none). Unmounting is the caller's
// job: while a mount of it is visible in this process's mount namespace,
// RemoveActive refuses with errdefs.ErrConflict. Mounts in other
// namespaces (a running container's) it cannot see.
func (s *Store) RemoveActive(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	unlock, err := s.lock()
	if err != nil {
		return fmt.Errorf("remove snapshot %q: %w", key, err)
	}
	defer unlock()
	dir := s.activePath(key)
	if _, err := os.Lstat(dir); err != nil {
		return fmt.Errorf("remove snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	at, err := s.activeMountedAt(key)
	if err != nil {
		return fmt.Errorf("remove snapshot %q: %w", key, err)
	}
	if at != "" {
		return fmt.Errorf("remove snapshot %q: still mounted at %s; unmount it first: %w", key, at, errdefs.ErrConflict)
	}
	if err := s.discard(dir); err != nil {
		return fmt.Errorf("remove snapshot %q: %w", key, err)
	}
	return nil
}

// activeMountedAt returns where the snapshot key is mounted, or "": an
// overlay whose upperdir is its upper/ (named absolute, or relative to the
// root as MountAt's long form does), a bind of its rootfs/ (same device,
// same path within it), or any mount below its directory.
func (s *Store) activeMountedAt(key string) (string, error) {
	ms, err := readMountInfo()
	if err != nil {
		return "", err
	}
	dir := s.activePath(key)
	uppers := []string{
		"upperdir=" + filepath.Join(dir, upperDir),
		"upperdir=" + filepath.Join(activeDir, key, upperDir),
	}
	var rootfsDev uint64
	hasRootfs := false
	if fi, err := os.Lstat(filepath.Join(dir, rootfsDir)); err == nil {
		rootfsDev, hasRootfs = fi.Sys().(*syscall.Stat_t).Dev, true
	}
	rootfsTail := "/" + filepath.Join(activeDir, key, rootfsDir)
	for _, m := range ms {
		if m.mountPoint == dir || strings.HasPrefix(m.mountPoint, dir+"/") {
			return m.mountPoint, nil
		}
		if m.fstype == "overlay" {
			opts := strings.Split(m.superOpts, ",")
			if slices.Contains(opts, uppers[0]) || slices.Contains(opts, uppers[1]) {
				return m.mountPoint, nil
			}
		}
		if hasRootfs && m.dev == rootfsDev {
			if strings.HasSuffix(m.root, rootfsTail) || strings.Contains(m.root, rootfsTail+"/") {
				return m.mountPoint, nil
			}
		}
	}
	return "", nil
}

// activeUsers returns the keys of the active snapshots with chainID among
// their lowers. Called with the store lock held.
func (s *Store) activeUsers(chainID digest.Digest) ([]string, error) {
	keys, err := s.ActiveKeys()
	if err != nil {
		return nil, err
	}
	var users []string
	for _, k := range keys {
		m, err := s.readActiveMeta(k)
		if errdefs.IsNotFound(err) {
			continue // a copy snapshot whose Prepare died before meta.json
		}
		if err != nil {
			return nil, err
		}
		if slices.Contains(m.Lowers, chainID) {
			users = append(users, k)
		}
	}
	return users, nil
}
