package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Limits Unpack applies unless told otherwise.
const (
	// DefaultMaxSize bounds the uncompressed tar stream, and separately the
	// sum of the file sizes its headers claim: 64 GiB, beyond any layer a
	// registry serves in practice, small enough that a hostile one cannot
	// fill a typical disk before it is refused.
	DefaultMaxSize int64 = 64 << 30
	// DefaultMaxRatio bounds uncompressed/compressed bytes. Real layers
	// compress 2-10x; deflate cannot exceed ~1032x, so only a gzip stream
	// that is almost nothing but zeros (a bomb) trips it; zstd bombs go
	// far beyond.
	DefaultMaxRatio = 1000
	// DefaultMaxEntries bounds the headers in one layer (4Mi): several
	// times the largest node_modules layers, and a bound on inodes.
	DefaultMaxEntries = 1 << 22

	// ratioGrace is how much a stream may expand before the ratio is
	// checked at all, so a small layer holding one zero-filled file is not
	// refused for its ratio alone.
	ratioGrace = 64 << 20
	// zstdMaxWindow is the largest zstd window accepted: 128 MiB, what
	// zstd --ultra -22 and --long=27 use; the decoder allocates it up front.
	zstdMaxWindow = 1 << 27
)

// UnpackOpt configures Unpack.
type UnpackOpt func(*unpackConfig)

type unpackConfig struct {
	maxSize    int64
	maxRatio   float64
	maxEntries int64
	whiteouts  bool
	sync       bool
	progress   func(int64)
	warn       func(error)
	trusted    digest.Digest
	// awaitParent is Apply's, not Unpack's: see WithAwaitParent.
	awaitParent func(context.Context) error
}

// WithTrustedDigest tells Unpack the digest of its raw input, already
// verified by the caller (a blob read back from the content store). When
// the input is not compressed that digest is the diffID, and Unpack skips
// hashing the stream a second time; compressed input is hashed as usual.
func WithTrustedDigest(d digest.Digest) UnpackOpt { return func(c *unpackConfig) { c.trusted = d } }

// WithMaxSize bounds the uncompressed bytes of the layer (default
// DefaultMaxSize). The same bound applies to the sum of the sizes file
// headers claim, which a sparse entry can make larger than the stream.
// n <= 0 removes the bound.
func WithMaxSize(n int64) UnpackOpt { return func(c *unpackConfig) { c.maxSize = n } }

// WithMaxRatio bounds how many times larger than the compressed input the
// uncompressed stream may grow (default DefaultMaxRatio), once past the
// first 64 MiB. It does not apply to plain tar input. x <= 0 removes it.
func WithMaxRatio(x float64) UnpackOpt { return func(c *unpackConfig) { c.maxRatio = x } }

// WithMaxEntries bounds the number of tar headers (default
// DefaultMaxEntries). n <= 0 removes the bound.
func WithMaxEntries(n int64) UnpackOpt { return func(c *unpackConfig) { c.maxEntries = n } }

// WithOverlayWhiteouts chooses how whiteouts are written. true (the
// default): in overlayfs form, a ".wh.<name>" entry becomes a 0/0 character
// device <name> and ".wh..wh..opq" sets trusted.overlay.opaque=y on its
// directory. false: every ".wh." entry is written as the plain file the tar
// names, for the copy driver, which applies whiteouts by deleting.
func WithOverlayWhiteouts(on bool) UnpackOpt { return func(c *unpackConfig) { c.whiteouts = on } }

// WithAwaitParent lets Apply unpack a layer before its parent is in the
// store: a layer's diff does not depend on the files below it, so a pull
// can unpack every layer as it streams in. Apply calls wait once the diff
// is unpacked and commits only after it returns nil; the parent must be
// in the store by then. Unpack ignores this option.
func WithAwaitParent(wait func(context.Context) error) UnpackOpt {
	return func(c *unpackConfig) { c.awaitParent = wait }
}

// WithSync makes Unpack flush the layer to stable storage before it
// returns (SyncDir). Off by default: the caller unpacks into a temporary
// directory and renames it when whole, so a crash leaves only garbage to
// sweep; it calls SyncDir once before that rename when it wants the layer
// to survive power loss, not only kill -9.
func WithSync(on bool) UnpackOpt { return func(c *unpackConfig) { c.sync = on } }

// WithProgress calls fn with the total uncompressed bytes read so far,
// about every MiB and once at the end.
func WithProgress(fn func(n int64)) UnpackOpt { return func(c *unpackConfig) { c.progress = fn } }

// WithWarnings calls fn for what Unpack skipped without failing: device
// nodes it may not create (EPERM, as in a user namespace), xattrs the
// filesystem refuses (ENOTSUP, EPERM) and overlay xattrs the tar carried.
// Each warning names its entry. Without it warnings are dropped.
func WithWarnings(fn func(error)) UnpackOpt { return func(c *unpackConfig) { c.warn = fn } }

// Unpack reads one layer tar (gzip, zstd or plain, detected by magic),
// writes it under dir, converting OCI/AUFS whiteouts to overlay whiteouts,
// and returns the digest and size of the uncompressed stream (the diffID).
// Hostile input never writes outside dir. Limits bound expansion.
//
// dir must be an existing, empty directory. Every path is resolved with
// openat2(RESOLVE_IN_ROOT) from a descriptor of dir, so a symlink the
// layer planted resolves as it will inside the container, below dir (or,
// without openat2, by a walk with the same semantics). The last component
// is always handled with the *at calls that do not follow it.
//
// Entry names: a leading "/" is dropped, as tar does ("/etc/passwd" lands
// in dir/etc/passwd); a name or hardlink target that climbs above the root
// with ".." is refused. Missing parent directories are created 0755.
// Replacing an existing path behaves like tar (and moby): whatever is there
// is removed, recursively for a directory, unless both are directories, in
// which case only the metadata is updated. Entry types other than
// directory, file, symlink, hardlink, char/block device and fifo are
// refused, as containerd and moby do. Devices that mknod refuses with EPERM
// are skipped with a warning; fifos are always created.
//
// Metadata: as root, ownership is set (lchown; not root, it is left to
// the unpacking user and opaque directories get user.overlay.opaque, what
// overlay's userxattr option reads); then modes, including
// setuid, setgid and sticky (after chown, which clears them); xattrs from
// SCHILY.xattr.* records, except trusted.overlay.* and user.overlay.*,
// which a layer must not forge (dropped with a warning), and ones the
// filesystem refuses with ENOTSUP/EPERM (skipped with a warning);
// atime/mtime. Directory modes and times are applied after all entries,
// since writing children changes them. Files whose data is zeros in whole
// 64 KiB blocks are written sparse.
//
// Errors name the entry (`layer entry "a/b": ...`) and wrap
// errdefs.ErrInvalidArgument when the input is at fault: malformed,
// truncated, hostile or over a limit. On error dir holds a partial layer
// for the caller to remove. ctx is checked between entries and chunks.
//
// Decompression and hashing run in a second goroutine a few MiB ahead of
// the writes; Unpack waits for it, so it never reads r after returning.
func Unpack(ctx context.Context, dir string, r io.Reader, opts ...UnpackOpt) (digest.Digest, int64, error) {
	cfg := unpackConfig{
		maxSize:    DefaultMaxSize,
		maxRatio:   DefaultMaxRatio,
		maxEntries: DefaultMaxEntries,
		whiteouts:  true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	root, err := openLayerRoot(dir)
	if err != nil {
		return "", 0, err
	}
	defer root.close()

	s, err := newLayerStream(r, &cfg)
	if err != nil {
		return "", 0, err
	}
	defer s.close()
	ra := startReadahead(s, cfg.progress)
	defer ra.close() // before s.close: the goroutine reads s
	// fail stops the goroutine first: classify looks at what it wrote.
	fail := func(where string, err error) (digest.Digest, int64, error) {
		ra.close()
		return "", 0, s.classify(where, err)
	}

	u := &unpacker{ctx: ctx, cfg: &cfg, root: root, chown: os.Geteuid() == 0}
	tr := tar.NewReader(ra)
	var entries int64
	last := ""
	for {
		if err := ctx.Err(); err != nil {
			return fail("layer", err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			// Our own checks judge names; anything else is the stream.
			if last != "" {
				return fail(fmt.Sprintf("layer tar after entry %q", last), err)
			}
			return fail("layer tar", err)
		}
		entries++
		if cfg.maxEntries > 0 && entries > cfg.maxEntries {
			return fail("layer", fmt.Errorf("more than %d entries: refusing: %w", cfg.maxEntries, errdefs.ErrInvalidArgument))
		}
		last = hdr.Name
		if err := u.entry(hdr, tr); err != nil {
			return fail(fmt.Sprintf("layer entry %q", hdr.Name), err)
		}
	}
	// The diffID covers the whole stream: the end-of-archive blocks and
	// whatever padding the writer added after them.
	if _, err := io.Copy(io.Discard, ra); err != nil {
		return fail("layer tar trailer", err)
	}
	ra.close() // the goroutine has seen the end; now s is ours
	if err := u.finish(); err != nil {
		return "", 0, err
	}
	if cfg.sync {
		if err := syncRoot(root.fd); err != nil {
			return "", 0, fmt.Errorf("layer %s: %w", dir, err)
		}
	}
	if cfg.progress != nil {
		cfg.progress(s.n)
	}
	if s.hash == nil {
		return cfg.trusted, s.n, nil
	}
	return digest.NewDigestFromBytes(digest.SHA256, s.hash.Sum(nil)), s.n, nil
}

// SyncDir flushes the filesystem that holds dir to stable storage: one
// syncfs(2) rather than an fsync per file, which for a layer of thousands
// of files costs a journal commit each. It flushes other dirty data on
// that filesystem too; since Linux 5.8 it reports writeback errors. The
// layer store calls it before renaming a layer into place.
func SyncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, os.NewSyscallError("open", err))
	}
	defer unix.Close(fd)
	if err := syncRoot(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func syncRoot(fd int) error { return os.NewSyscallError("syncfs", unix.Syncfs(fd)) }
