package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
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

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
)

// The drivers a Store can use.
const (
	DriverOverlay = "overlay"
	DriverCopy    = "copy"
)

// Names in the tree doc.go draws.
const (
	lockName    = ".lock"
	driverName  = "driver"
	layersDir   = "layers"
	linksDir    = "l"
	activeDir   = "active"
	tmpDir      = "tmp"
	diffDir     = "diff"
	linkFile    = "link"
	metaFile    = "meta.json"
	linkNameLen = 26
)

// Whiteout forms a layer's diff can hold (layerMeta.Whiteouts).
const (
	whiteoutsOverlay = "overlay" // 0/0 char devices, trusted.overlay.opaque=y
	whiteoutsAUFS    = "aufs"    // plain .wh.<name> and .wh..wh..opq files
)

// Store is the layer store and its snapshotters. It keeps no state in
// memory beyond its root and driver: several Stores, in one process or
// several, may share a root, and its methods are safe for concurrent use.
type Store struct {
	root   string
	driver string
	// probeErr is why overlay was not chosen, when the probe ran and failed.
	probeErr string
}

// StoreOpt configures Open.
type StoreOpt func(*storeConfig)

type storeConfig struct {
	driver string
}

// WithDriver forces a driver (DriverOverlay or DriverCopy) instead of
// detecting one; nothing is probed or cached.
func WithDriver(name string) StoreOpt { return func(c *storeConfig) { c.driver = name } }

// LayerInfo describes one layer of the store.
type LayerInfo struct {
	ChainID digest.Digest
	DiffID  digest.Digest
	Parent  digest.Digest // "" for a bottom layer
	// Size is what the unpacked files take: the bytes of every non-directory
	// in diff/, hard links counted once (as docker system df counts).
	Size int64
	// DiffSize is the length of the uncompressed layer tar.
	DiffSize int64
	Created  time.Time
}

// layerMeta is layers/<hex>/meta.json.
type layerMeta struct {
	ChainID   digest.Digest `json:"chainID"`
	DiffID    digest.Digest `json:"diffID"`
	Parent    digest.Digest `json:"parent,omitempty"`
	Size      int64         `json:"size"`
	DiffSize  int64         `json:"diffSize"`
	Created   time.Time     `json:"created"`
	Whiteouts string        `json:"whiteouts"`
}

// ChainID returns the chain ID of the layer diffID on top of the chain
// parent, as the OCI image spec defines it: the diffID itself for a bottom
// layer (parent ""), else sha256(parent + " " + diffID).
func ChainID(parent, diffID digest.Digest) digest.Digest {
	if parent == "" {
		return diffID
	}
	return digest.FromString(parent.String() + " " + diffID.String())
}

// ChainIDs returns the chain ID of every prefix of diffIDs (bottom first):
// the last is the chain ID of the whole image.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	var parent digest.Digest
	for i, d := range diffIDs {
		parent = ChainID(parent, d)
		out[i] = parent
	}
	return out
}

// Open opens the store at root (<berth root>/snapshots), creating its
// directories, sweeping what killed processes left in tmp/, and choosing a
// driver: the one WithDriver names, else the cached result of probing
// overlay under root, else a fresh probe.
func Open(root string, opts ...StoreOpt) (*Store, error) {
	var cfg storeConfig
	for _, o := range opts {
		o(&cfg)
	}
	if root == "" {
		return nil, fmt.Errorf("open snapshot store: empty root: %w", errdefs.ErrInvalidArgument)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	switch cfg.driver {
	case "", DriverOverlay, DriverCopy:
	default:
		return nil, fmt.Errorf("open snapshot store: unknown driver %q (want %q or %q): %w", cfg.driver, DriverOverlay, DriverCopy, errdefs.ErrInvalidArgument)
	}
	for _, d := range []string{root, filepath.Join(root, layersDir), filepath.Join(root, linksDir), filepath.Join(root, activeDir), filepath.Join(root, tmpDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open snapshot store: %w", err)
		}
	}
	s := &Store{root: root, driver: cfg.driver}
	unlock, err := s.lock()
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	defer unlock()
	if err := s.sweepTmp(); err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if s.driver == "" {
		if err := s.detectDriver(); err != nil {
			return nil, fmt.Errorf("open snapshot store: %w", err)
		}
	}
	return s, nil
}

// Root is the directory the store was opened at.
func (s *Store) Root() string { return s.root }

// Driver is DriverOverlay or DriverCopy.
func (s *Store) Driver() string { return s.driver }

// detectDriver reads the cached probe result, or probes overlay and caches
// the answer. Called with the store lock held, so one process probes.
func (s *Store) detectDriver() error {
	cache := filepath.Join(s.root, driverName)
	if b, err := os.ReadFile(cache); err == nil {
		first, rest, _ := strings.Cut(string(b), "\n")
		if first == DriverOverlay || first == DriverCopy {
			s.driver, s.probeErr = first, strings.TrimSpace(rest)
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.driver = DriverOverlay
	content := DriverOverlay + "\n"
	if err := s.probeOverlay(); err != nil {
		s.driver, s.probeErr = DriverCopy, err.Error()
		if errors.Is(err, unix.EPERM) {
			// Not privileged to mount (yet): say nothing about the kernel,
			// so a later privileged Open probes again.
			return nil
		}
		content = DriverCopy + "\n" + s.probeErr + "\n"
	}
	return writeFileSync(cache, []byte(content), 0o600)
}

// lock takes the store-wide flock on <root>/.lock. Each call opens its own
// descriptor, so goroutines of one process exclude each other too.
func (s *Store) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.root, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock snapshot store: %w", err)
	}
	if err := flockRetry(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock snapshot store: %w", err)
	}
	return func() { f.Close() }, nil
}

func flockRetry(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return os.NewSyscallError("flock", err)
		}
	}
}

// lockChain takes an open-file-description lock on one byte of .lock whose
// offset comes from chainID, so only one process at a time unpacks a given
// layer (two chain IDs sharing a byte merely wait for each other). It
// polls so that ctx can cancel the wait. These locks do not interact with
// the flock on the same file.
func (s *Store) lockChain(ctx context.Context, chainID digest.Digest) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.root, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock layer %s: %w", chainID, err)
	}
	var off int64
	if b, err := hex.DecodeString(chainID.Encoded()); err == nil && len(b) >= 8 {
		off = int64(binary.BigEndian.Uint64(b) >> 2)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: off, Len: 1}
	wait := 5 * time.Millisecond
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != unix.EAGAIN && err != unix.EACCES && err != unix.EINTR {
			f.Close()
			return nil, fmt.Errorf("lock layer %s: %w", chainID, os.NewSyscallError("fcntl", err))
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// newTmp makes tmp/<prefix><random> and flocks it, so sweepTmp leaves it
// alone while this process lives. Called with the store lock held, which
// sweepTmp also holds, so no sweep sees it between mkdir and flock.
func (s *Store) newTmp(prefix string) (string, *os.File, error) {
	dir, err := os.MkdirTemp(filepath.Join(s.root, tmpDir), prefix)
	if err != nil {
		return "", nil, err
	}
	f, err := lockDir(dir, unix.LOCK_EX)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, f, nil
}

func lockDir(dir string, how int) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if err := flockRetry(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sweepTmp removes what dead processes left in tmp/: every entry nobody
// holds a flock on. Called with the store lock held.
func (s *Store) sweepTmp() error {
	dir := filepath.Join(s.root, tmpDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			f, err := lockDir(p, unix.LOCK_EX|unix.LOCK_NB)
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue // its owner is alive
			}
			if err == nil {
				defer f.Close()
			}
		}
		if err := removeTree(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree removes p and everything below it, including an overlay work
// directory's mode-0 leftovers.
func removeTree(p string) error {
	err := os.RemoveAll(p)
	if err != nil && errors.Is(err, fs.ErrPermission) {
		// A directory whose mode forbids us (overlay's work/work as non-root):
		// open everything up and retry.
		filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if d != nil && d.IsDir() {
				os.Chmod(q, 0o700)
			}
			return nil
		})
		err = os.RemoveAll(p)
	}
	return err
}

func (s *Store) layerPath(chainID digest.Digest) string {
	return filepath.Join(s.root, layersDir, chainID.Encoded())
}

// checkDigest refuses what is not a valid digest, which also keeps
// chainID.Encoded() a plain hex name.
func checkDigest(what string, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%s %q: %v: %w", what, d, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Has reports whether the layer chainID is in the store, whole.
func (s *Store) Has(chainID digest.Digest) bool {
	if chainID.Validate() != nil {
		return false
	}
	_, err := os.Lstat(filepath.Join(s.layerPath(chainID), metaFile))
	return err == nil
}

func (s *Store) readLayerMeta(chainID digest.Digest) (*layerMeta, error) {
	if err := checkDigest("chain ID", chainID); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(s.layerPath(chainID), metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("layer %s: %w", chainID, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", chainID, err)
	}
	var m layerMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("layer %s: %s: %w", chainID, metaFile, err)
	}
	if m.ChainID != chainID {
		return nil, fmt.Errorf("layer %s: %s names chain ID %s", chainID, metaFile, m.ChainID)
	}
	return &m, nil
}

func (s *Store) readLink(chainID digest.Digest) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.layerPath(chainID), linkFile))
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", chainID, err)
	}
	l := strings.TrimSpace(string(b))
	if len(l) != linkNameLen || strings.ContainsAny(l, "/.") {
		return "", fmt.Errorf("layer %s: bad link name %q", chainID, l)
	}
	return l, nil
}

// Apply unpacks the layer tar r (gzip, zstd or plain) on top of the chain
// parent ("" for a bottom layer) unless the layer is already in the store,
// and returns its chain ID. When it is, r is not read. Otherwise r is
// unpacked in tmp/, its uncompressed digest must equal diffID (if not,
// nothing is kept and the error, naming both, wraps
// errdefs.ErrInvalidArgument), and the layer is synced and renamed into
// layers/ only when whole. The parent must be in the store
// (errdefs.ErrNotFound), or, with WithAwaitParent, be there when its wait
// returns. Concurrent Applys of one layer, in one process or
// several, unpack it once.
func (s *Store) Apply(ctx context.Context, parent, diffID digest.Digest, r io.Reader, opts ...UnpackOpt) (digest.Digest, error) {
	if err := checkDigest("diffID", diffID); err != nil {
		return "", fmt.Errorf("apply layer: %w", err)
	}
	if parent != "" {
		if err := checkDigest("parent chain ID", parent); err != nil {
			return "", fmt.Errorf("apply layer %s: %w", diffID, err)
		}
	}
	chainID := ChainID(parent, diffID)
	if s.Has(chainID) {
		return chainID, nil
	}
	var cfg unpackConfig
	for _, o := range opts {
		o(&cfg)
	}
	if parent != "" && cfg.awaitParent == nil && !s.Has(parent) {
		return "", fmt.Errorf("apply layer %s: parent layer %s: %w", diffID, parent, errdefs.ErrNotFound)
	}
	unlockChain, err := s.lockChain(ctx, chainID)
	if err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	defer unlockChain()
	if s.Has(chainID) { // another Apply finished it while we waited
		return chainID, nil
	}

	unlock, err := s.lock()
	if err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	tmp, tmpLock, err := s.newTmp("apply-")
	unlock()
	if err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	defer tmpLock.Close()
	committed := false
	defer func() {
		if !committed {
			removeTree(tmp)
		}
	}()

	if err := s.unpackLayer(ctx, tmp, parent, diffID, chainID, r, opts); err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	if cfg.awaitParent != nil {
		if err := cfg.awaitParent(ctx); err != nil {
			return "", fmt.Errorf("apply layer %s: waiting for parent layer %s: %w", diffID, parent, err)
		}
	}

	unlock, err = s.lock()
	if err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	defer unlock()
	if s.Has(chainID) {
		return chainID, nil
	}
	if parent != "" && !s.Has(parent) {
		return "", fmt.Errorf("apply layer %s: parent layer %s is missing or was removed meanwhile: %w", diffID, parent, errdefs.ErrNotFound)
	}
	dst := s.layerPath(chainID)
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	committed = true
	if err := fsutil.SyncDir(filepath.Dir(dst)); err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	link, err := s.readLink(chainID)
	if err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	if err := s.ensureLink(chainID, link); err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	return chainID, nil
}

// unpackLayer fills tmp with diff/, meta.json and link, and syncs them.
func (s *Store) unpackLayer(ctx context.Context, tmp string, parent, diffID, chainID digest.Digest, r io.Reader, opts []UnpackOpt) error {
	diff := filepath.Join(tmp, diffDir)
	if err := os.Mkdir(diff, 0o755); err != nil {
		return err
	}
	// Past the umask: a layer's root becomes the container's "/" unless
	// the tar sets it.
	if err := os.Chmod(diff, 0o755); err != nil {
		return err
	}
	whiteouts := whiteoutsOverlay
	if s.driver == DriverCopy {
		whiteouts = whiteoutsAUFS
	}
	got, n, err := Unpack(ctx, diff, r, append(opts, WithOverlayWhiteouts(whiteouts == whiteoutsOverlay))...)
	if err != nil {
		return err
	}
	if got != diffID {
		return fmt.Errorf("layer content does not match its diffID: expected %s, got %s: %w", diffID, got, errdefs.ErrInvalidArgument)
	}
	size, err := diskUsage(diff)
	if err != nil {
		return err
	}
	m := layerMeta{
		ChainID:   chainID,
		DiffID:    diffID,
		Parent:    parent,
		Size:      size,
		DiffSize:  n,
		Created:   time.Now().UTC(),
		Whiteouts: whiteouts,
	}
	b, err := json.MarshalIndent(&m, "", "\t")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, metaFile), append(b, '\n'), 0o600); err != nil {
		return err
	}
	link, err := newLinkName()
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, linkFile), []byte(link), 0o600); err != nil {
		return err
	}
	// One syncfs flushes the unpacked files of the whole filesystem, far
	// cheaper than an fsync per file, before the rename publishes them.
	return syncFS(tmp)
}

// ensureLink makes l/<link> point at the layer's diff. Apply makes it right
// after the rename, so a kill -9 in between leaves a layer without one:
// Prepare calls this again for every lower. Called with the store lock held.
func (s *Store) ensureLink(chainID digest.Digest, link string) error {
	p := filepath.Join(s.root, linksDir, link)
	want := filepath.Join("..", layersDir, chainID.Encoded(), diffDir)
	if got, err := os.Readlink(p); err == nil {
		if got == want {
			return nil
		}
		return fmt.Errorf("layer %s: link %s points at %s", chainID, p, got)
	}
	if err := os.Symlink(want, p); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(p))
}

// newLinkName returns a random 26-character base32 name, as overlay2's
// l/ links.
func newLinkName() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base32.StdEncoding.EncodeToString(b)[:linkNameLen], nil
}

// Layers lists the layers in the store, sorted by chain ID.
func (s *Store) Layers() ([]LayerInfo, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, layersDir))
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	var out []LayerInfo
	for _, e := range ents {
		var alg digest.Algorithm
		switch len(e.Name()) {
		case 64:
			alg = digest.SHA256
		case 128:
			alg = digest.SHA512
		default:
			continue // not a layer
		}
		m, err := s.readLayerMeta(digest.NewDigestFromEncoded(alg, e.Name()))
		if errdefs.IsNotFound(err) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("list layers: %w", err)
		}
		out = append(out, LayerInfo{ChainID: m.ChainID, DiffID: m.DiffID, Parent: m.Parent, Size: m.Size, DiffSize: m.DiffSize, Created: m.Created})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ChainID < out[j].ChainID })
	return out, nil
}

// Remove removes the layer chainID (errdefs.ErrNotFound if absent). It
// refuses, with errdefs.ErrConflict, while an active snapshot has the layer
// among its lowers. It does not look at other layers: the image package
// decides what is garbage and removes children before parents.
func (s *Store) Remove(chainID digest.Digest) error {
	if err := checkDigest("chain ID", chainID); err != nil {
		return fmt.Errorf("remove layer: %w", err)
	}
	unlock, err := s.lock()
	if err != nil {
		return fmt.Errorf("remove layer %s: %w", chainID, err)
	}
	defer unlock()
	if !s.Has(chainID) {
		return fmt.Errorf("remove layer %s: %w", chainID, errdefs.ErrNotFound)
	}
	users, err := s.activeUsers(chainID)
	if err != nil {
		return fmt.Errorf("remove layer %s: %w", chainID, err)
	}
	if len(users) > 0 {
		return fmt.Errorf("remove layer %s: in use by snapshot %q; remove the container first: %w", chainID, users[0], errdefs.ErrConflict)
	}
	// The link goes first: a kill -9 then leaves a layer without a link,
	// which Prepare repairs, never a link to nothing.
	if link, err := s.readLink(chainID); err == nil {
		if err := os.Remove(filepath.Join(s.root, linksDir, link)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove layer %s: %w", chainID, err)
		}
	}
	return s.discard(s.layerPath(chainID))
}

// discard renames dir into tmp/ (so it vanishes at once) and removes it
// there; if that fails half-way, the next Open's sweep finishes. Called
// with the store lock held.
func (s *Store) discard(dir string) error {
	trash, tl, err := s.newTmp("rm-")
	if err != nil {
		return err
	}
	defer tl.Close()
	if err := os.Rename(dir, filepath.Join(trash, "x")); err != nil {
		removeTree(trash)
		return err
	}
	return removeTree(trash)
}

// diskUsage sums the sizes of the non-directories under dir, counting each
// hard-linked inode once.
func diskUsage(dir string) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			k := [2]uint64{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += fi.Size()
		return nil
	})
	return total, err
}

// writeFileSync replaces a file whole: temp, fsync, rename. The caller
// syncs the directory when the rename itself must survive a crash.
func writeFileSync(p string, b []byte, mode os.FileMode) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return os.NewSyscallError("syncfs", err)
	}
	return nil
}
