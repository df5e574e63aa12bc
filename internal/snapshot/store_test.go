package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/testutil"
)

// snapEntry is one entry of a test layer tar.
type snapEntry struct {
	name     string
	typ      byte
	body     string
	mode     int64
	link     string
	uid, gid int
	xattrs   map[string]string
}

var snapTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func sDir(name string) snapEntry { return snapEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
func sFile(name, body string) snapEntry {
	return snapEntry{name: name, typ: tar.TypeReg, body: body, mode: 0o644}
}
func sSymlink(name, target string) snapEntry {
	return snapEntry{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func sHardlink(name, target string) snapEntry {
	return snapEntry{name: name, typ: tar.TypeLink, link: target, mode: 0o644}
}

// snapTar returns a layer tar of entries and its diffID.
func snapTar(t testing.TB, entries ...snapEntry) ([]byte, digest.Digest) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Uid: e.uid, Gid: e.gid, ModTime: snapTime, Format: tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), digest.FromBytes(buf.Bytes())
}

// snapOpen opens a store under a fresh temporary root with the driver
// forced (or detected, for "").
func snapOpen(t testing.TB, driver string) *Store {
	t.Helper()
	var opts []StoreOpt
	if driver != "" {
		opts = append(opts, WithDriver(driver))
	}
	s, err := Open(filepath.Join(t.TempDir(), "snapshots"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapRequiresOverlay skips unless root can mount overlay here.
func snapRequiresOverlay(t testing.TB) {
	t.Helper()
	testutil.RequiresRoot(t)
	if ok, why := snapOverlayWorks(t); !ok {
		t.Skipf("needs overlayfs: %s", why)
	}
}

// snapOverlayWorks runs the store's own probe in a temporary root.
func snapOverlayWorks(t testing.TB) (bool, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	s := snapOpen(t, "")
	return s.Driver() == DriverOverlay, s.probeErr
}

func snapApply(t testing.TB, s *Store, parent digest.Digest, entries ...snapEntry) digest.Digest {
	t.Helper()
	b, diffID := snapTar(t, entries...)
	c, err := s.Apply(context.Background(), parent, diffID, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if want := ChainID(parent, diffID); c != want {
		t.Fatalf("Apply returned %s, want %s", c, want)
	}
	return c
}

// snapTree lists everything under root, relative, sorted.
func snapTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			r, _ := filepath.Rel(root, p)
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func snapDirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// snapWantSkeleton checks that root holds only its fixed skeleton.
func snapWantSkeleton(t testing.TB, s *Store) {
	t.Helper()
	got := snapTree(t, s.Root())
	want := []string{".lock", "active", "l", "layers", "tmp"}
	if _, err := os.Stat(filepath.Join(s.Root(), driverName)); err == nil {
		want = append(want, driverName)
		sort.Strings(want)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("left under root: %q, want only %q", got, want)
	}
}

func TestChainID(t *testing.T) {
	d0 := digest.FromString("layer 0")
	d1 := digest.FromString("layer 1")
	d2 := digest.FromString("layer 2")
	sum := func(s string) digest.Digest {
		h := sha256.Sum256([]byte(s))
		return digest.Digest("sha256:" + hex.EncodeToString(h[:]))
	}
	c1 := sum(d0.String() + " " + d1.String())
	c2 := sum(c1.String() + " " + d2.String())
	tests := []struct {
		parent, diffID, want digest.Digest
	}{
		{"", d0, d0},
		{d0, d1, c1},
		{c1, d2, c2},
		// A vector from outside: the chain of two sha256("") layers.
		{
			"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			sum("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
		},
	}
	for _, tt := range tests {
		if got := ChainID(tt.parent, tt.diffID); got != tt.want {
			t.Errorf("ChainID(%s, %s) = %s, want %s", tt.parent, tt.diffID, got, tt.want)
		}
	}
	got := ChainIDs([]digest.Digest{d0, d1, d2})
	if len(got) != 3 || got[0] != d0 || got[1] != c1 || got[2] != c2 {
		t.Errorf("ChainIDs = %v, want [%s %s %s]", got, d0, c1, c2)
	}
	if len(ChainIDs(nil)) != 0 {
		t.Error("ChainIDs(nil) not empty")
	}
}

func TestOpen(t *testing.T) {
	if _, err := Open(t.TempDir(), WithDriver("zfs")); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("unknown driver: got %v, want invalid argument", err)
	}
	if _, err := Open(""); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("empty root: got %v, want invalid argument", err)
	}
	s := snapOpen(t, DriverCopy)
	if s.Driver() != DriverCopy {
		t.Fatalf("driver %q", s.Driver())
	}
	if _, err := os.Stat(filepath.Join(s.Root(), driverName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a forced driver must not be cached: %v", err)
	}
	snapWantSkeleton(t, s)
}

func TestOpenCachesDriver(t *testing.T) {
	root := filepath.Join(t.TempDir(), "snapshots")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, driverName))
	if os.Geteuid() != 0 {
		// Unprivileged: copy for now, nothing cached, so root probes again.
		if s.Driver() != DriverCopy || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("unprivileged: driver %s, cache read %v", s.Driver(), err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(b), "\n"); first != s.Driver() {
		t.Fatalf("cache says %q, store uses %q", b, s.Driver())
	}
	t.Logf("detected driver %s %s", s.Driver(), s.probeErr)
	// The cache decides from now on.
	if err := os.WriteFile(filepath.Join(root, driverName), []byte("copy\nforced by the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Driver() != DriverCopy || s2.probeErr != "forced by the test" {
		t.Fatalf("driver %q (%q), want copy from the cache", s2.Driver(), s2.probeErr)
	}
	snapWantSkeleton(t, s2)
}

func TestOpenSweepsTmp(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	dead := filepath.Join(s.Root(), tmpDir, "apply-dead")
	if err := os.MkdirAll(filepath.Join(dead, "diff", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Root(), tmpDir, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(s.Root(), tmpDir, "apply-live")
	if err := os.Mkdir(live, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := lockDir(live, unix.LOCK_EX)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Root(), WithDriver(DriverCopy)); err != nil {
		t.Fatal(err)
	}
	if got := snapDirNames(t, filepath.Join(s.Root(), tmpDir)); len(got) != 1 || got[0] != "apply-live" {
		t.Fatalf("tmp/ after sweep: %q, want only the locked apply-live", got)
	}
	f.Close()
	if _, err := Open(s.Root(), WithDriver(DriverCopy)); err != nil {
		t.Fatal(err)
	}
	snapWantSkeleton(t, s)
}

func TestApplyTwiceShares(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	b, diffID := snapTar(t, sDir("etc"), sFile("etc/hostname", "box\n"))
	c, err := s.Apply(context.Background(), "", diffID, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if c != diffID {
		t.Fatalf("bottom chain ID %s, want the diffID %s", c, diffID)
	}
	diff := filepath.Join(s.Root(), layersDir, c.Encoded(), diffDir)
	var before unix.Stat_t
	if err := unix.Stat(diff, &before); err != nil {
		t.Fatal(err)
	}
	// The second Apply must not even read its input.
	c2, err := s.Apply(context.Background(), "", diffID, &failingSnapReader{t: t})
	if err != nil || c2 != c {
		t.Fatalf("second Apply = %s, %v", c2, err)
	}
	var after unix.Stat_t
	if err := unix.Stat(diff, &after); err != nil {
		t.Fatal(err)
	}
	if before.Ino != after.Ino {
		t.Fatal("the layer was unpacked again")
	}
	if !s.Has(c) || s.Has(digest.FromString("other")) || s.Has("garbage") {
		t.Fatal("Has is wrong")
	}
	if got := snapDirNames(t, filepath.Join(s.Root(), layersDir)); len(got) != 1 {
		t.Fatalf("layers/: %q", got)
	}
	if got := snapDirNames(t, filepath.Join(s.Root(), linksDir)); len(got) != 1 || len(got[0]) != linkNameLen {
		t.Fatalf("l/: %q", got)
	}
	ls, err := s.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].ChainID != c || ls[0].DiffID != diffID || ls[0].Parent != "" ||
		ls[0].Size != int64(len("box\n")) || ls[0].DiffSize != int64(len(b)) || ls[0].Created.IsZero() {
		t.Fatalf("Layers = %+v", ls)
	}
}

type failingSnapReader struct{ t testing.TB }

func (r *failingSnapReader) Read([]byte) (int, error) {
	r.t.Error("Apply read the stream of a layer it has")
	return 0, io.ErrUnexpectedEOF
}

func TestApplyDiffIDMismatch(t *testing.T) {
	for _, driver := range []string{DriverCopy, DriverOverlay} {
		t.Run(driver, func(t *testing.T) {
			if driver == DriverOverlay {
				testutil.RequiresRoot(t) // mknod of the whiteout needs it
			}
			s := snapOpen(t, driver)
			b, _ := snapTar(t, sFile("a", "1"), sFile(".wh.b", ""))
			wrong := digest.FromString("not this layer")
			_, err := s.Apply(context.Background(), "", wrong, bytes.NewReader(b))
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("got %v, want invalid argument", err)
			}
			if !strings.Contains(err.Error(), wrong.String()) || !strings.Contains(err.Error(), digest.FromBytes(b).String()) {
				t.Fatalf("error %q does not name both digests", err)
			}
			snapWantSkeleton(t, s)
		})
	}
}

func TestApplyRefusals(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	b, diffID := snapTar(t, sFile("a", "1"))
	ctx := context.Background()
	if _, err := s.Apply(ctx, digest.FromString("no such parent"), diffID, bytes.NewReader(b)); !errdefs.IsNotFound(err) {
		t.Fatalf("missing parent: got %v, want not found", err)
	}
	if _, err := s.Apply(ctx, "", "sha256:nothex", bytes.NewReader(b)); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad diffID: got %v, want invalid argument", err)
	}
	if _, err := s.Apply(ctx, "", diffID, bytes.NewReader(b[:700])); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("truncated layer: got %v, want invalid argument", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Apply(cctx, "", diffID, bytes.NewReader(b)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: got %v", err)
	}
	snapWantSkeleton(t, s)
}

// TestApplyAwaitParent: with WithAwaitParent a layer is unpacked before
// its parent exists and committed once the wait returns; a failed wait, or
// a wait that returns with the parent still absent, keeps nothing.
func TestApplyAwaitParent(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	ctx := context.Background()
	pb, pdiff := snapTar(t, sDir("etc"), sFile("etc/a", "1"))
	cb, cdiff := snapTar(t, sFile("etc/b", "2"))
	parent := ChainID("", pdiff)

	// The wait fails: the unpacked child is thrown away.
	boom := errors.New("parent failed")
	_, err := s.Apply(ctx, parent, cdiff, bytes.NewReader(cb), WithAwaitParent(func(context.Context) error { return boom }))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), parent.String()) {
		t.Fatalf("failed wait: got %v", err)
	}
	// The wait returns but the parent never came.
	_, err = s.Apply(ctx, parent, cdiff, bytes.NewReader(cb), WithAwaitParent(func(context.Context) error { return nil }))
	if !errdefs.IsNotFound(err) {
		t.Fatalf("parent absent after the wait: got %v, want not found", err)
	}
	snapWantSkeleton(t, s)

	// The child unpacks while the parent is applied; it commits after.
	unpacked := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		c, err := s.Apply(ctx, parent, cdiff, bytes.NewReader(cb), WithAwaitParent(func(context.Context) error {
			close(unpacked)
			<-release
			return nil
		}))
		if err == nil && c != ChainID(parent, cdiff) {
			err = fmt.Errorf("chain ID %s", c)
		}
		done <- err
	}()
	<-unpacked
	if s.Has(ChainID(parent, cdiff)) {
		t.Fatal("the child was committed before its wait returned")
	}
	if _, err := s.Apply(ctx, "", pdiff, bytes.NewReader(pb)); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.Has(ChainID(parent, cdiff)) {
		t.Fatal("the child is not in the store")
	}
}

func TestRemove(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	c1 := snapApply(t, s, "", sFile("a", "1"))
	c2 := snapApply(t, s, c1, sFile("b", "2"))
	if _, err := s.Prepare("ctr", c2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []digest.Digest{c1, c2} {
		if err := s.Remove(c); !errdefs.IsConflict(err) {
			t.Fatalf("Remove of a lower of an active snapshot: got %v, want conflict", err)
		}
	}
	if err := s.RemoveActive("ctr"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveActive("ctr"); !errdefs.IsNotFound(err) {
		t.Fatalf("second RemoveActive: got %v, want not found", err)
	}
	for _, c := range []digest.Digest{c2, c1} {
		if err := s.Remove(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(c1); !errdefs.IsNotFound(err) {
		t.Fatalf("second Remove: got %v, want not found", err)
	}
	snapWantSkeleton(t, s)
}

func TestPrepareErrors(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	c := snapApply(t, s, "", sFile("a", "1"))
	for _, key := range []string{"", ".", "..", "a/b", "-x", strings.Repeat("k", 129)} {
		if _, err := s.Prepare(key, c); !errdefs.IsInvalidArgument(err) {
			t.Errorf("key %q: got %v, want invalid argument", key, err)
		}
	}
	if _, err := s.Prepare("k", digest.FromString("absent")); !errdefs.IsNotFound(err) {
		t.Fatalf("absent layer: got %v, want not found", err)
	}
	if _, err := s.Prepare("k", c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare("k", c); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("taken key: got %v, want already exists", err)
	}
	if _, err := s.Mounts("nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("Mounts of no snapshot: got %v, want not found", err)
	}
	keys, err := s.ActiveKeys()
	if err != nil || len(keys) != 1 || keys[0] != "k" {
		t.Fatalf("ActiveKeys = %q, %v", keys, err)
	}
	// A layer whose parent vanished (the image package removes children
	// first, but a crash can leave one).
	c2 := snapApply(t, s, c, sFile("b", "2"))
	if err := s.RemoveActive("k"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare("k2", c2); !errdefs.IsNotFound(err) {
		t.Fatalf("broken chain: got %v, want not found", err)
	}
	if err := s.Remove(c2); err != nil {
		t.Fatal(err)
	}
	snapWantSkeleton(t, s)
}

// TestPrepareRepairsLink covers a kill -9 between Apply's rename and its
// link: Prepare recreates the link.
func TestPrepareRepairsLink(t *testing.T) {
	s := snapOpen(t, DriverOverlay)
	c := snapApply(t, s, "", sFile("a", "1"))
	link, err := s.readLink(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Root(), linksDir, link)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare("k", c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), linksDir, link, "a")); err != nil {
		t.Fatalf("link not repaired: %v", err)
	}
}

func TestOverlayRefusesCopyLayers(t *testing.T) {
	cp := snapOpen(t, DriverCopy)
	c := snapApply(t, cp, "", sFile("a", "1"), sFile(".wh.b", ""))
	ov, err := Open(cp.Root(), WithDriver(DriverOverlay))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ov.Prepare("k", c); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("got %v, want failed precondition", err)
	}
	if err := ov.Remove(c); err != nil {
		t.Fatal(err)
	}
	snapWantSkeleton(t, cp)
}

func TestConcurrentApplyGoroutines(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	b, diffID := snapTar(t, sDir("usr"), sFile("usr/big", strings.Repeat("x", 1<<20)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	reads := 0
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each Store is separate, as in separate CLI processes.
			st, err := Open(s.Root(), WithDriver(DriverCopy))
			if err != nil {
				t.Error(err)
				return
			}
			r := &slowSnapReader{r: bytes.NewReader(b)}
			c, err := st.Apply(context.Background(), "", diffID, r)
			if err != nil || c != diffID {
				t.Errorf("Apply = %s, %v", c, err)
			}
			if r.n > 0 {
				mu.Lock()
				reads++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if reads != 1 {
		t.Errorf("%d Applys read the layer, want 1", reads)
	}
	if got := snapDirNames(t, filepath.Join(s.Root(), layersDir)); len(got) != 1 {
		t.Fatalf("layers/: %q", got)
	}
	if got := snapDirNames(t, filepath.Join(s.Root(), linksDir)); len(got) != 1 {
		t.Fatalf("l/: %q", got)
	}
	if got := snapDirNames(t, filepath.Join(s.Root(), tmpDir)); len(got) != 0 {
		t.Fatalf("tmp/: %q", got)
	}
}

// slowSnapReader makes an unpack last long enough for others to pile up.
type slowSnapReader struct {
	r io.Reader
	n int
}

func (r *slowSnapReader) Read(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	n, err := r.r.Read(p[:min(len(p), 64<<10)])
	r.n += n
	return n, err
}

// TestApplyHelperProcess is run by TestConcurrentApplyProcesses in child
// processes; it does nothing in a normal run.
func TestApplyHelperProcess(t *testing.T) {
	root := os.Getenv("BERTH_SNAPSHOT_TEST_ROOT")
	if root == "" {
		t.Skip("helper process for TestConcurrentApplyProcesses")
	}
	b, err := os.ReadFile(os.Getenv("BERTH_SNAPSHOT_TEST_TAR"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(root, WithDriver(DriverCopy))
	if err != nil {
		t.Fatal(err)
	}
	r := &slowSnapReader{r: bytes.NewReader(b)}
	if _, err := s.Apply(context.Background(), "", digest.FromBytes(b), r); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("HELPER-READ=%d\n", r.n)
}

func TestConcurrentApplyProcesses(t *testing.T) {
	if os.Getenv("BERTH_SNAPSHOT_TEST_ROOT") != "" {
		t.Skip("in a helper process")
	}
	s := snapOpen(t, DriverCopy)
	b, _ := snapTar(t, sDir("usr"), sFile("usr/big", strings.Repeat("y", 1<<20)))
	tarPath := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(tarPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 3; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestApplyHelperProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "BERTH_SNAPSHOT_TEST_ROOT="+s.Root(), "BERTH_SNAPSHOT_TEST_TAR="+tarPath)
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	readers := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
		if !strings.Contains(outs[i].String(), "HELPER-READ=") {
			t.Fatalf("helper %d did not run:\n%s", i, outs[i])
		}
		if !strings.Contains(outs[i].String(), "HELPER-READ=0\n") {
			readers++
		}
	}
	if readers != 1 {
		t.Errorf("%d processes unpacked the layer, want 1", readers)
	}
	if got := snapDirNames(t, filepath.Join(s.Root(), layersDir)); len(got) != 1 {
		t.Fatalf("layers/: %q", got)
	}
	if got := snapDirNames(t, filepath.Join(s.Root(), tmpDir)); len(got) != 0 {
		t.Fatalf("tmp/: %q", got)
	}
}

// snapStat describes one path of a tree for comparing views.
func snapStat(t testing.TB, p string, withTimes bool) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	d := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		d += fmt.Sprintf(" size=%d data=%q nlink=%d", st.Size, b, st.Nlink)
	case unix.S_IFLNK:
		l, _ := os.Readlink(p)
		d += " -> " + l
	case unix.S_IFCHR, unix.S_IFBLK:
		d += fmt.Sprintf(" rdev=%d", st.Rdev)
	}
	if withTimes && st.Mode&unix.S_IFMT != unix.S_IFLNK {
		d += fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
	}
	if v, err := xattrGet(p, "user.test"); err == nil {
		d += " user.test=" + string(v)
	}
	return d
}

// snapView describes every path under root (times of all but root).
func snapView(t testing.TB, root string) map[string]string {
	t.Helper()
	view := map[string]string{}
	for _, rel := range snapTree(t, root) {
		view[rel] = snapStat(t, filepath.Join(root, rel), true)
	}
	return view
}

func snapDiffViews(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, fmt.Sprintf("%s: %q vs %q", k, v, b[k]))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("%s: missing vs %q", k, v))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "\n")
}

// snapScenario applies the three layers every driver must merge alike:
// files added; one deleted by a whiteout in layer 2; an opaque directory
// in layer 3.
func snapScenario(t testing.TB, s *Store) digest.Digest {
	t.Helper()
	setuid := sFile("bin/su", "su")
	setuid.mode, setuid.uid, setuid.gid = 0o4755, 1000, 1001
	xf := sFile("etc/x", "xattr")
	xf.xattrs = map[string]string{"user.test": "v1"}
	fifo := snapEntry{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600}
	c1 := snapApply(t, s, "",
		sDir("bin"), sDir("etc"), sDir("opt"), sDir("opt/sub"), sDir("run"),
		setuid, xf, fifo,
		sFile("bin/busybox", "bb"), sHardlink("bin/sh", "bin/busybox"),
		sSymlink("bin/ls", "busybox"), sSymlink("lib", "usr/lib"),
		sFile("etc/passwd", "root\n"), sFile("etc/gone", "bye"),
		sFile("opt/a", "a1"), sFile("opt/sub/deep", "d1"), sFile("opt/b", "b1"),
	)
	c2 := snapApply(t, s, c1,
		sDir("etc"), sFile("etc/.wh.gone", ""), sFile("etc/new", "new2"),
		sFile("etc/passwd", "root\nuser\n"),
	)
	return snapApply(t, s, c2,
		sDir("opt"), sFile("opt/.wh..wh..opq", ""), sFile("opt/c", "c3"),
	)
}

// snapCheckScenario checks the merged view of snapScenario at root.
func snapCheckScenario(t testing.TB, root string) {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatalf("merged view: %v", err)
		}
		return string(b)
	}
	if got := read("etc/passwd"); got != "root\nuser\n" {
		t.Errorf("etc/passwd = %q", got)
	}
	if got := read("etc/new"); got != "new2" {
		t.Errorf("etc/new = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("etc/gone, whited out in layer 2: lstat %v", err)
	}
	if got := snapDirNames(t, filepath.Join(root, "opt")); strings.Join(got, " ") != "c" {
		t.Errorf("opaque opt/ shows %q, want only layer 3's c", got)
	}
	for _, n := range snapTree(t, root) {
		if strings.Contains(n, ".wh.") {
			t.Errorf("whiteout %s visible", n)
		}
	}
	if got := snapStat(t, filepath.Join(root, "bin/su"), false); got != `mode=104755 uid=1000 gid=1001 size=2 data="su" nlink=1` {
		t.Errorf("bin/su: %s", got)
	}
	if got := snapStat(t, filepath.Join(root, "etc/x"), false); !strings.HasSuffix(got, "user.test=v1") {
		t.Errorf("etc/x lost its xattr: %s", got)
	}
	if l, _ := os.Readlink(filepath.Join(root, "lib")); l != "usr/lib" {
		t.Errorf("lib -> %q", l)
	}
	var a, b unix.Stat_t
	unix.Lstat(filepath.Join(root, "bin/sh"), &a)
	unix.Lstat(filepath.Join(root, "bin/busybox"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("bin/sh and bin/busybox: inodes %d %d nlink %d, want one hard-linked inode", a.Ino, b.Ino, a.Nlink)
	}
	if a.Mtim.Sec != snapTime.Unix() {
		t.Errorf("bin/sh mtime %d, want %d", a.Mtim.Sec, snapTime.Unix())
	}
	var f unix.Stat_t
	unix.Lstat(filepath.Join(root, "run/fifo"), &f)
	if f.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("run/fifo mode %o", f.Mode)
	}
}

// TestDriversMergeAlike runs the scenario through both drivers, mounted,
// and compares what a container would see.
func TestDriversMergeAlike(t *testing.T) {
	testutil.RequiresRoot(t)
	views := map[string]map[string]string{}
	for _, driver := range []string{DriverOverlay, DriverCopy} {
		t.Run(driver, func(t *testing.T) {
			if driver == DriverOverlay {
				snapRequiresOverlay(t)
			}
			s := snapOpen(t, driver)
			top := snapScenario(t, s)
			plan, err := s.Prepare("ctr1", top)
			if err != nil {
				t.Fatal(err)
			}
			again, err := s.Mounts("ctr1")
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(again) != fmt.Sprint(plan) {
				t.Fatalf("Mounts = %v, Prepare gave %v", again, plan)
			}
			target := t.TempDir()
			if err := MountAt(plan, target); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Unmount(target) })
			snapCheckScenario(t, target)
			view := snapView(t, target)
			views[driver] = view

			// Writes land in the snapshot, never in a layer.
			if err := os.WriteFile(filepath.Join(target, "etc/written"), []byte("w"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(target, "etc/passwd")); err != nil {
				t.Fatal(err)
			}
			landed := filepath.Join(s.activePath("ctr1"), upperDir, "etc/written")
			if driver == DriverCopy {
				landed = filepath.Join(s.activePath("ctr1"), rootfsDir, "etc/written")
			}
			if _, err := os.Stat(landed); err != nil {
				t.Errorf("write did not land in the snapshot: %v", err)
			}
			for _, l := range snapTree(t, filepath.Join(s.Root(), layersDir)) {
				if strings.HasSuffix(l, "etc/written") {
					t.Errorf("write landed in a layer: %s", l)
				}
			}

			if err := s.RemoveActive("ctr1"); !errdefs.IsConflict(err) {
				t.Fatalf("RemoveActive while mounted: got %v, want conflict", err)
			}
			if err := Unmount(target); err != nil {
				t.Fatal(err)
			}
			if m, err := isMounted(target); err != nil || m {
				t.Fatalf("still in mountinfo after Unmount: %v %v", m, err)
			}
			if err := Unmount(target); err != nil {
				t.Fatalf("Unmount of nothing: %v", err)
			}
			// A second container sees the layers untouched.
			plan2, err := s.Prepare("ctr2", top)
			if err != nil {
				t.Fatal(err)
			}
			target2 := t.TempDir()
			if err := MountAt(plan2, target2); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Unmount(target2) })
			if d := snapDiffViews(view, snapView(t, target2)); d != "" {
				t.Errorf("second snapshot differs:\n%s", d)
			}
			if err := Unmount(target2); err != nil {
				t.Fatal(err)
			}

			for _, k := range []string{"ctr1", "ctr2"} {
				if err := s.RemoveActive(k); err != nil {
					t.Fatal(err)
				}
			}
			ls, err := s.Layers()
			if err != nil || len(ls) != 3 {
				t.Fatalf("Layers = %v, %v", ls, err)
			}
			for _, l := range ls {
				if err := s.Remove(l.ChainID); err != nil {
					t.Fatal(err)
				}
			}
			snapWantSkeleton(t, s)
		})
	}
	if len(views) == 2 {
		if d := snapDiffViews(views[DriverOverlay], views[DriverCopy]); d != "" {
			t.Errorf("overlay and copy views differ (overlay vs copy):\n%s", d)
		}
	}
}

// TestCopyDriverWithoutRoot checks the copy driver's merge where no mount
// is possible, reading the materialised tree directly.
func TestCopyDriverWithoutRoot(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	top := snapApply(t, s, "", sDir("etc"), sFile("etc/gone", "x"), sDir("opt"), sFile("opt/a", "a"))
	top = snapApply(t, s, top, sFile("etc/.wh.gone", ""), sFile("etc/new", "n"))
	top = snapApply(t, s, top, sDir("opt"), sFile("opt/.wh..wh..opq", ""), sFile("opt/c", "c"))
	plan, err := s.Prepare("k", top)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(s.activePath("k"), rootfsDir)
	if len(plan) != 1 || plan[0].Type != "bind" || plan[0].Source != rootfs {
		t.Fatalf("plan %+v", plan)
	}
	if got := snapTree(t, rootfs); strings.Join(got, " ") != "etc etc/new opt opt/c" {
		t.Fatalf("rootfs holds %q", got)
	}
	if err := s.RemoveActive("k"); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyChain(t *testing.T) {
	for _, driver := range []string{DriverOverlay, DriverCopy} {
		t.Run(driver, func(t *testing.T) {
			testutil.RequiresRoot(t)
			if driver == DriverOverlay {
				snapRequiresOverlay(t)
			}
			s := snapOpen(t, driver)
			plan, err := s.Prepare("scratch", "")
			if err != nil {
				t.Fatal(err)
			}
			target := t.TempDir()
			if err := MountAt(plan, target); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Unmount(target) })
			if got := snapDirNames(t, target); len(got) != 0 {
				t.Fatalf("empty rootfs holds %q", got)
			}
			if err := os.WriteFile(filepath.Join(target, "f"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Unmount(target); err != nil {
				t.Fatal(err)
			}
			if err := s.RemoveActive("scratch"); err != nil {
				t.Fatal(err)
			}
			snapWantSkeleton(t, s)
		})
	}
}

// TestManyLayers: a chain whose absolute lowerdirs overflow a page mounts
// with relative ones; one too long even for those is refused clearly.
func TestManyLayers(t *testing.T) {
	// Without root or overlay, only the plans are checked (the layers hold
	// no whiteouts, so unpacking them needs no privilege).
	mount, why := snapOverlayWorks(t)
	s := snapOpen(t, DriverOverlay)
	var chain []digest.Digest
	var top digest.Digest
	for i := 0; i < 150; i++ {
		top = snapApply(t, s, top, sFile(fmt.Sprintf("f%03d", i), fmt.Sprint(i)))
		chain = append(chain, top)
	}
	_, err := s.Prepare("toolong", top)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "too many layers (150") {
		t.Fatalf("150 layers: got %v, want a clear invalid-argument error", err)
	}
	if _, err := os.Lstat(s.activePath("toolong")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused Prepare left %s", s.activePath("toolong"))
	}
	mid := chain[119]
	plan, err := s.Prepare("k120", mid)
	if err != nil {
		t.Fatal(err)
	}
	c, err := planMount(plan[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(c.data) > os.Getpagesize()-1 {
		t.Fatalf("mount data is %d bytes", len(c.data))
	}
	abs := len(strings.Join(plan[0].Options, ","))
	t.Logf("120 layers: absolute options %d bytes, mounted with %d (relative to %q)", abs, len(c.data), c.dir)
	if abs > os.Getpagesize()-1 && c.dir != s.Root() {
		t.Fatalf("long plan made relative to %q, want the store root", c.dir)
	}
	if !mount {
		t.Logf("not mounting: %s", why)
	} else {
		target := t.TempDir()
		if err := MountAt(plan, target); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { Unmount(target) })
		if got := snapDirNames(t, target); len(got) != 120 || got[0] != "f000" || got[119] != "f119" {
			t.Fatalf("merged view of 120 layers: %d entries", len(got))
		}
		// Mounted relative, the check still finds it.
		if err := s.RemoveActive("k120"); !errdefs.IsConflict(err) {
			t.Fatalf("RemoveActive while mounted: got %v, want conflict", err)
		}
		if err := Unmount(target); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveActive("k120"); err != nil {
		t.Fatal(err)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := s.Remove(chain[i]); err != nil {
			t.Fatal(err)
		}
	}
	snapWantSkeleton(t, s)
}

func TestRemoveActiveIncomplete(t *testing.T) {
	s := snapOpen(t, DriverCopy)
	// A copy Prepare killed mid-way: meta.json and a partial tree.
	dir := s.activePath("half")
	if err := os.MkdirAll(filepath.Join(dir, partialRootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.writeActiveMeta(&activeMeta{Key: "half", Driver: DriverCopy}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mounts("half"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Mounts of a half-made snapshot: got %v", err)
	}
	if err := s.RemoveActive("half"); err != nil {
		t.Fatal(err)
	}
	snapWantSkeleton(t, s)
}
