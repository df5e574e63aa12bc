package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/testutil"
)

// unpackEntry is one tar entry for the tests: a header and its data.
type unpackEntry struct {
	hdr  tar.Header
	data []byte
}

var unpackMtime = time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)

func ueDir(name string, mode int64) unpackEntry {
	return unpackEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: unpackMtime}}
}

func ueFile(name, data string) unpackEntry {
	return unpackEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: unpackMtime}, data: []byte(data)}
}

func ueSymlink(name, target string) unpackEntry {
	return unpackEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: unpackMtime}}
}

func ueLink(name, target string) unpackEntry {
	return unpackEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: unpackMtime}}
}

func ueNode(name string, typ byte, major, minor int64) unpackEntry {
	return unpackEntry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o640, Devmajor: major, Devminor: minor, ModTime: unpackMtime}}
}

// unpackTar writes entries as a PAX tar.
func unpackTar(t testing.TB, entries ...unpackEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("tar data %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func unpackGzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func unpackZstd(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// unpackInto unpacks data into a fresh directory and returns it.
func unpackInto(t testing.TB, data []byte, opts ...UnpackOpt) (string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err := Unpack(context.Background(), dir, bytes.NewReader(data), opts...)
	return dir, err
}

func mustUnpack(t testing.TB, data []byte, opts ...UnpackOpt) string {
	t.Helper()
	dir, err := unpackInto(t, data, opts...)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	return dir
}

func statNoFollow(t testing.TB, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func fileContent(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantInvalid(t testing.TB, err error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Unpack succeeded; want an error containing %q", substr)
	}
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("error %q does not wrap ErrInvalidArgument", err)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err, substr)
	}
}

func TestUnpackEntryTypes(t *testing.T) {
	long := strings.Repeat("long-directory-name/", 12) + "file" // > 100 bytes: PAX path
	gnuLong := unpackEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("g", 150), Mode: 0o600, Size: 3, ModTime: unpackMtime, Format: tar.FormatGNU}, data: []byte("gnu")}
	data := unpackTar(t,
		ueDir("d/", 0o755),
		ueFile("d/f", "hello"),
		ueFile("empty", ""),
		ueSymlink("d/abs", "/etc/passwd"),
		ueSymlink("d/rel", "../../../../outside"),
		ueSymlink("dangling", "nowhere/at/all"),
		ueLink("d/hard", "d/f"),
		ueLink("hardsym", "d/abs"), // a hardlink to a symlink links the symlink
		ueNode("fifo", tar.TypeFifo, 0, 0),
		ueNode("null", tar.TypeChar, 1, 3),
		ueNode("loop9", tar.TypeBlock, 7, 9),
		ueFile(long, "pax"),
		gnuLong,
	)
	var warnings []error
	dir := mustUnpack(t, data, WithWarnings(func(err error) { warnings = append(warnings, err) }))

	if got := fileContent(t, filepath.Join(dir, "d/f")); got != "hello" {
		t.Errorf("d/f = %q", got)
	}
	if st := statNoFollow(t, filepath.Join(dir, "empty")); st.Size != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("empty: size %d mode %o", st.Size, st.Mode)
	}
	for name, want := range map[string]string{"d/abs": "/etc/passwd", "d/rel": "../../../../outside", "dangling": "nowhere/at/all", "hardsym": "/etc/passwd"} {
		if got, err := os.Readlink(filepath.Join(dir, name)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", name, got, err, want)
		}
	}
	f, h := statNoFollow(t, filepath.Join(dir, "d/f")), statNoFollow(t, filepath.Join(dir, "d/hard"))
	if f.Ino != h.Ino || f.Nlink != 2 {
		t.Errorf("d/hard: ino %d nlink %d; d/f ino %d", h.Ino, f.Nlink, f.Ino)
	}
	if st := statNoFollow(t, filepath.Join(dir, "fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o7777 != 0o640 {
		t.Errorf("fifo mode %o", st.Mode)
	}
	if got := fileContent(t, filepath.Join(dir, long)); got != "pax" {
		t.Errorf("PAX long name = %q", got)
	}
	if got := fileContent(t, filepath.Join(dir, strings.Repeat("g", 150))); got != "gnu" {
		t.Errorf("GNU long name = %q", got)
	}
	if os.Geteuid() != 0 {
		if len(warnings) != 2 {
			t.Errorf("not root: want 2 device warnings, got %v", warnings)
		}
		return
	}
	for name, want := range map[string][3]uint32{"null": {unix.S_IFCHR, 1, 3}, "loop9": {unix.S_IFBLK, 7, 9}} {
		st := statNoFollow(t, filepath.Join(dir, name))
		if st.Mode&unix.S_IFMT != want[0] || unix.Major(st.Rdev) != want[1] || unix.Minor(st.Rdev) != want[2] || st.Mode&0o7777 != 0o640 {
			t.Errorf("%s: mode %o rdev %d:%d", name, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
}

func TestUnpackMissingParents(t *testing.T) {
	deep := strings.Repeat("d/", 1500) + "f" // 1500 missing levels, then replaced whole
	start := time.Now()
	dir := mustUnpack(t, unpackTar(t, ueFile("a/b/c/f", "x"), ueSymlink("x/y/s", "t"), ueFile(deep, "deep"), ueFile("d", "flat")))
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("deep parents took %v", el)
	}
	if got := fileContent(t, filepath.Join(dir, "d")); got != "flat" {
		t.Errorf("d = %q", got)
	}
	if got := fileContent(t, filepath.Join(dir, "a/b/c/f")); got != "x" {
		t.Errorf("a/b/c/f = %q", got)
	}
	if st := statNoFollow(t, filepath.Join(dir, "a/b")); st.Mode&0o7777 != 0o755 {
		t.Errorf("implicit directory mode %o, want 755", st.Mode&0o7777)
	}
}

func TestUnpackOwnershipAndModes(t *testing.T) {
	owned := func(e unpackEntry, uid, gid int, mode int64) unpackEntry {
		e.hdr.Uid, e.hdr.Gid, e.hdr.Mode = uid, gid, mode
		return e
	}
	data := unpackTar(t,
		owned(ueDir("sgid", 0), 1000, 1001, 0o2775),
		owned(ueDir("tmp", 0), 0, 0, 0o1777),
		owned(ueDir("ro", 0), 0, 0, 0o555),
		owned(ueFile("ro/f", "in a read-only directory"), 0, 0, 0o444),
		owned(ueFile("suid", "#!"), 1000, 1001, 0o4755),
		owned(ueFile("sgidfile", "#!"), 1000, 1001, 0o2711),
		owned(ueFile("none", "x"), 1, 2, 0),
		owned(ueSymlink("link", "suid"), 1002, 1003, 0o777),
		owned(ueNode("fifo", tar.TypeFifo, 0, 0), 1004, 1005, 0o620),
	)
	dir := mustUnpack(t, data)
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "ro"), 0o755) }) // lets a non-root TempDir cleanup remove ro/f
	modes := map[string]uint32{"sgid": 0o2775, "tmp": 0o1777, "ro": 0o555, "ro/f": 0o444, "suid": 0o4755, "sgidfile": 0o2711, "none": 0, "fifo": 0o620}
	for name, want := range modes {
		if got := statNoFollow(t, filepath.Join(dir, name)).Mode & 0o7777; got != want {
			t.Errorf("%s: mode %o, want %o", name, got, want)
		}
	}
	if os.Geteuid() != 0 {
		t.Log("not root: ownership not checked")
		return
	}
	owners := map[string][2]uint32{"sgid": {1000, 1001}, "suid": {1000, 1001}, "sgidfile": {1000, 1001}, "none": {1, 2}, "link": {1002, 1003}, "fifo": {1004, 1005}, "tmp": {0, 0}}
	for name, want := range owners {
		if st := statNoFollow(t, filepath.Join(dir, name)); st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, want[0], want[1])
		}
	}
}

// userXattrs skips the test when the temporary directory's filesystem has
// no user xattrs.
func requireUserXattrs(t *testing.T) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p, "user.probe", []byte("1"), 0); err != nil {
		t.Skipf("no user xattrs on %s: %v", os.TempDir(), err)
	}
}

func xattrOf(p, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func TestUnpackXattrs(t *testing.T) {
	requireUserXattrs(t)
	withX := func(e unpackEntry, kv ...string) unpackEntry {
		e.hdr.PAXRecords = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			e.hdr.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
		}
		return e
	}
	data := unpackTar(t,
		withX(ueDir("d", 0o755), "user.dir", "dv", "trusted.overlay.opaque", "y"),
		withX(ueFile("d/f", "x"), "user.one", "1", "user.two", "two\x00bin",
			"trusted.overlay.redirect", "/etc", "trusted.overlay.metacopy", "", "user.overlay.origin", "forged"),
		withX(ueNode("fifo", tar.TypeFifo, 0, 0), "user.fifo", "ff"), // the kernel allows user.* only on files and directories
		withX(ueSymlink("link", "d/f"), "trusted.overlay.opaque", "y"),
	)
	var warnings []string
	dir := mustUnpack(t, data, WithWarnings(func(err error) { warnings = append(warnings, err.Error()) }))
	for p, kv := range map[string][2]string{"d": {"user.dir", "dv"}, "d/f": {"user.one", "1"}} {
		if got, err := xattrOf(filepath.Join(dir, p), kv[0]); err != nil || got != kv[1] {
			t.Errorf("%s %s = %q, %v; want %q", p, kv[0], got, err, kv[1])
		}
	}
	if got, err := xattrOf(filepath.Join(dir, "d/f"), "user.two"); err != nil || got != "two\x00bin" {
		t.Errorf("binary xattr = %q, %v", got, err)
	}
	// Forged overlay xattrs are never set, whoever runs this.
	for _, p := range []string{"d", "d/f", "link"} {
		for _, x := range []string{"trusted.overlay.opaque", "trusted.overlay.redirect", "trusted.overlay.metacopy", "user.overlay.origin"} {
			if v, err := xattrOf(filepath.Join(dir, p), x); err == nil {
				t.Errorf("%s carries forged %s=%q", p, x, v)
			}
		}
	}
	dropped, skipped := 0, 0
	for _, w := range warnings {
		if strings.Contains(w, "may not set overlay xattrs") {
			dropped++
		}
		if strings.Contains(w, `layer entry "fifo": xattr user.fifo skipped`) {
			skipped++
		}
	}
	if dropped != 5 || skipped != 1 {
		t.Errorf("want 5 dropped-xattr warnings and 1 for the fifo, got %q", warnings)
	}
}

func TestUnpackTimes(t *testing.T) {
	at := time.Date(2021, 5, 6, 7, 8, 9, 123456789, time.UTC)
	dirEntry := ueDir("d", 0o755)
	fileEntry := ueFile("d/f", "x")
	fileEntry.hdr.AccessTime = at
	old := ueFile("old", "x")
	old.hdr.ModTime = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) // before the epoch: bounded
	data := unpackTar(t, ueDir(".", 0o711), dirEntry, fileEntry, ueSymlink("d/s", "f"), ueNode("d/p", tar.TypeFifo, 0, 0), ueFile("d/later", "y"), old)
	dir := mustUnpack(t, data)
	for _, p := range []string{".", "d", "d/f", "d/s", "d/p", "d/later"} {
		st := statNoFollow(t, filepath.Join(dir, p))
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(unpackMtime) {
			t.Errorf("%s: mtime %v, want %v", p, got, unpackMtime)
		}
	}
	st := statNoFollow(t, filepath.Join(dir, "d/f"))
	if got := time.Unix(st.Atim.Unix()); !got.Equal(at) {
		t.Errorf("d/f: atime %v, want %v", got, at)
	}
	if got := statNoFollow(t, dir).Mode & 0o7777; got != 0o711 {
		t.Errorf("root mode %o, want 711", got)
	}
	if got := statNoFollow(t, filepath.Join(dir, "old")).Mtim.Sec; got != 0 {
		t.Errorf("pre-epoch mtime became %d, want 0", got)
	}
}

func TestUnpackWhiteouts(t *testing.T) {
	data := unpackTar(t,
		ueDir("d", 0o755),
		ueFile("d/.wh..wh..opq", ""),
		ueFile("d/.wh.gone", ""),
		ueFile(".wh.top", ""),
		ueFile("new/.wh.implicit", ""), // parent not listed
		ueFile(".wh..wh.plnk", ""),     // AUFS bookkeeping
		ueFile(".wh..wh.aufs", ""),
		ueFile("d/kept", "k"),
	)
	t.Run("overlay", func(t *testing.T) {
		dir := mustUnpack(t, data)
		for _, p := range []string{"d/gone", ".wh.top", "top", "new/implicit"} {
			if p == ".wh.top" {
				if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
					t.Errorf("whiteout marker %s written", p)
				}
				continue
			}
			st := statNoFollow(t, filepath.Join(dir, p))
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("%s: mode %o rdev %d, want a 0/0 char device", p, st.Mode, st.Rdev)
			}
		}
		for _, p := range []string{"d/.wh..wh..opq", ".wh..wh.plnk", ".wh..wh.aufs", "d/.wh.gone"} {
			if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
				t.Errorf("%s written", p)
			}
		}
		x := overlayOpaqueXattr
		if os.Geteuid() != 0 {
			x = overlayUserOpaqueXattr
		}
		if v, err := xattrOf(filepath.Join(dir, "d"), x); err != nil || v != "y" {
			t.Errorf("d %s = %q, %v; want y", x, v, err)
		}
		if got := fileContent(t, filepath.Join(dir, "d/kept")); got != "k" {
			t.Errorf("d/kept = %q", got)
		}
	})
	t.Run("plain", func(t *testing.T) {
		dir := mustUnpack(t, data, WithOverlayWhiteouts(false))
		for _, p := range []string{"d/.wh..wh..opq", "d/.wh.gone", ".wh.top", "new/.wh.implicit", ".wh..wh.plnk"} {
			if st := statNoFollow(t, filepath.Join(dir, p)); st.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Errorf("%s: mode %o, want a plain file", p, st.Mode)
			}
		}
		if _, err := xattrOf(filepath.Join(dir, "d"), overlayOpaqueXattr); err == nil {
			t.Error("opaque xattr set with overlay whiteouts off")
		}
	})
}

func TestUnpackReplace(t *testing.T) {
	tests := []struct {
		name    string
		entries []unpackEntry
		check   func(t *testing.T, dir string)
	}{
		{"file over dir", []unpackEntry{ueDir("a", 0o755), ueFile("a/child", "c"), ueFile("a", "file")}, func(t *testing.T, dir string) {
			if got := fileContent(t, filepath.Join(dir, "a")); got != "file" {
				t.Errorf("a = %q", got)
			}
		}},
		{"dir over file", []unpackEntry{ueFile("a", "file"), ueDir("a", 0o700), ueFile("a/child", "c")}, func(t *testing.T, dir string) {
			if st := statNoFollow(t, filepath.Join(dir, "a")); st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o777 != 0o700 {
				t.Errorf("a mode %o", st.Mode)
			}
		}},
		{"duplicate file", []unpackEntry{ueFile("a", "first, longer"), ueFile("a", "second")}, func(t *testing.T, dir string) {
			if got := fileContent(t, filepath.Join(dir, "a")); got != "second" {
				t.Errorf("a = %q", got)
			}
		}},
		{"dir over dir keeps children", []unpackEntry{ueDir("a", 0o755), ueFile("a/child", "c"), ueDir("a", 0o750)}, func(t *testing.T, dir string) {
			if got := fileContent(t, filepath.Join(dir, "a/child")); got != "c" {
				t.Errorf("a/child = %q", got)
			}
			if got := statNoFollow(t, filepath.Join(dir, "a")).Mode & 0o777; got != 0o750 {
				t.Errorf("a mode %o, want the last entry's 750", got)
			}
		}},
		{"file over symlink", []unpackEntry{ueFile("t", "target"), ueSymlink("a", "t"), ueFile("a", "new")}, func(t *testing.T, dir string) {
			if got := fileContent(t, filepath.Join(dir, "t")); got != "target" {
				t.Errorf("the symlink's target was written through: t = %q", got)
			}
			if st := statNoFollow(t, filepath.Join(dir, "a")); st.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Errorf("a is not a file: %o", st.Mode)
			}
		}},
		{"symlink over dir", []unpackEntry{ueDir("a", 0o755), ueFile("a/child", "c"), ueSymlink("a", "elsewhere")}, func(t *testing.T, dir string) {
			if got, _ := os.Readlink(filepath.Join(dir, "a")); got != "elsewhere" {
				t.Errorf("a -> %q", got)
			}
		}},
		{"dir over symlink to dir", []unpackEntry{ueDir("real", 0o755), ueSymlink("a", "real"), ueDir("a", 0o700), ueFile("a/f", "x")}, func(t *testing.T, dir string) {
			if st := statNoFollow(t, filepath.Join(dir, "a")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
				t.Errorf("a is not a directory: %o", st.Mode)
			}
			if _, err := os.Lstat(filepath.Join(dir, "real/f")); err == nil {
				t.Error("real/f written through the replaced symlink")
			}
		}},
		{"hardlink to itself", []unpackEntry{ueFile("a", "keep"), ueLink("a", "a")}, func(t *testing.T, dir string) {
			if got := fileContent(t, filepath.Join(dir, "a")); got != "keep" {
				t.Errorf("a = %q", got)
			}
		}},
		{"hardlink over file", []unpackEntry{ueFile("a", "a"), ueFile("b", "b"), ueLink("b", "a")}, func(t *testing.T, dir string) {
			if got := fileContent(t, filepath.Join(dir, "b")); got != "a" {
				t.Errorf("b = %q", got)
			}
		}},
		{"whiteout over file", []unpackEntry{ueFile("a", "a"), ueFile(".wh.a", "")}, func(t *testing.T, dir string) {
			if st := statNoFollow(t, filepath.Join(dir, "a")); st.Mode&unix.S_IFMT != unix.S_IFCHR {
				t.Errorf("a is not a whiteout: %o", st.Mode)
			}
		}},
		{"fifo over dir", []unpackEntry{ueDir("a/b", 0o755), ueNode("a", tar.TypeFifo, 0, 0)}, func(t *testing.T, dir string) {
			if st := statNoFollow(t, filepath.Join(dir, "a")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
				t.Errorf("a is not a fifo: %o", st.Mode)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, mustUnpack(t, unpackTar(t, tc.entries...)))
		})
	}
}

func TestUnpackCompression(t *testing.T) {
	plain := unpackTar(t, ueDir("d", 0o755), ueFile("d/f", strings.Repeat("data ", 10000)), ueSymlink("s", "d/f"))
	// Writers may pad after the end-of-archive blocks; the diffID covers it.
	padded := append(append([]byte{}, plain...), make([]byte, 10240)...)
	for _, raw := range [][]byte{plain, padded} {
		want := digest.FromBytes(raw)
		for name, data := range map[string][]byte{"plain": raw, "gzip": unpackGzip(t, raw), "zstd": unpackZstd(t, raw)} {
			t.Run(fmt.Sprintf("%s-%d", name, len(raw)), func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "layer")
				os.Mkdir(dir, 0o755)
				var progress []int64
				d, n, err := Unpack(context.Background(), dir, bytes.NewReader(data), WithProgress(func(n int64) { progress = append(progress, n) }))
				if err != nil {
					t.Fatal(err)
				}
				if d != want || n != int64(len(raw)) {
					t.Errorf("diffID %s size %d; want %s %d", d, n, want, len(raw))
				}
				if len(progress) == 0 || progress[len(progress)-1] != n {
					t.Errorf("progress %v does not end at %d", progress, n)
				}
				if got := fileContent(t, filepath.Join(dir, "d/f")); got != strings.Repeat("data ", 10000) {
					t.Errorf("d/f has %d bytes", len(got))
				}
			})
		}
	}
}

func TestUnpackEmptyLayer(t *testing.T) {
	raw := unpackTar(t)
	dir := filepath.Join(t.TempDir(), "layer")
	os.Mkdir(dir, 0o755)
	d, n, err := Unpack(context.Background(), dir, bytes.NewReader(unpackGzip(t, raw)))
	if err != nil || d != digest.FromBytes(raw) || n != 1024 {
		t.Fatalf("empty layer: %s %d %v", d, n, err)
	}
}

func TestUnpackTruncated(t *testing.T) {
	plain := unpackTar(t, ueFile("f", strings.Repeat("x", 100000)), ueFile("g", "y"))
	gz := unpackGzip(t, plain)
	zs := unpackZstd(t, plain)
	for name, data := range map[string][]byte{
		"tar mid-file":   plain[:512+5000],
		"tar mid-header": plain[:512+100352+200],
		"gzip":           gz[:len(gz)/2],
		"gzip trailer":   gz[:len(gz)-4],
		"zstd":           zs[:len(zs)-10],
		"gzip header":    gz[:5],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := unpackInto(t, data)
			wantInvalid(t, err, "layer")
		})
	}
	t.Run("gzip corrupt", func(t *testing.T) {
		bad := append([]byte{}, gz...)
		bad[len(bad)-6] ^= 0xff // CRC
		_, err := unpackInto(t, bad)
		wantInvalid(t, err, "gzip")
	})
	t.Run("names the entry", func(t *testing.T) {
		_, err := unpackInto(t, plain[:512+5000])
		wantInvalid(t, err, `layer entry "f": truncated tar stream`)
	})
}

// bombReader streams, compressed as it is read, one tar entry claiming
// size bytes of zeros: a bomb that costs the test only what Unpack reads.
func bombReader(t *testing.T, size int64, compress func(io.Writer) io.WriteCloser) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		zw := compress(pw)
		tw := tar.NewWriter(zw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Mode: 0o644, Size: size})
		zero := make([]byte, 1<<20)
		for n := int64(0); err == nil && n < size; n += int64(len(zero)) {
			_, err = tw.Write(zero)
		}
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	t.Cleanup(func() { pr.CloseWithError(errors.New("test over")) })
	return pr
}

func TestUnpackBombs(t *testing.T) {
	gz := func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }
	zs := func(w io.Writer) io.WriteCloser {
		zw, err := zstd.NewWriter(w)
		if err != nil {
			panic(err)
		}
		return zw
	}
	tests := []struct {
		name string
		r    io.Reader
		opts []UnpackOpt
		want string
	}{
		{"gzip ratio", bombReader(t, 1<<30, gz), []UnpackOpt{WithMaxRatio(10)}, "layer expands more than 10x: refusing (gzip bomb?)"},
		{"zstd default ratio", bombReader(t, 1<<30, zs), nil, "layer expands more than 1000x: refusing (zstd bomb?)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layer")
			os.Mkdir(dir, 0o755)
			_, _, err := Unpack(context.Background(), dir, tc.r, tc.opts...)
			wantInvalid(t, err, tc.want)
		})
	}
}

func TestUnpackLimits(t *testing.T) {
	t.Run("file over max size", func(t *testing.T) {
		_, err := unpackInto(t, unpackTar(t, ueFile("big", strings.Repeat("x", 2<<20))), WithMaxSize(1<<20))
		wantInvalid(t, err, `layer entry "big": file of 2097152 bytes takes the layer over 1 MiB`)
	})
	t.Run("header claims a giant size", func(t *testing.T) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "giant", Size: 1 << 40, Mode: 0o644})
		dir, err := unpackInto(t, buf.Bytes()) // header only; the default limit refuses it first
		wantInvalid(t, err, "takes the layer over 64 GiB")
		if _, err := os.Lstat(filepath.Join(dir, "giant")); err == nil {
			t.Error("giant file created")
		}
	})
	t.Run("stream over max size", func(t *testing.T) {
		// The headers claim little; the stream goes on with zeros.
		data := append(unpackTar(t, ueFile("f", "x")), make([]byte, 16<<20)...)
		_, err := unpackInto(t, data, WithMaxSize(8<<20))
		wantInvalid(t, err, "layer tar trailer: layer is larger than 8 MiB uncompressed: refusing")
	})
	t.Run("entries", func(t *testing.T) {
		_, err := unpackInto(t, unpackTar(t, ueFile("a", ""), ueFile("b", ""), ueFile("c", "")), WithMaxEntries(2))
		wantInvalid(t, err, "more than 2 entries")
	})
}

func TestUnpackRefusals(t *testing.T) {
	unknown := unpackEntry{hdr: tar.Header{Typeflag: 'V', Name: "volume-label", ModTime: unpackMtime}}
	for name, tc := range map[string]struct {
		entries []unpackEntry
		want    string
	}{
		"unknown type":       {[]unpackEntry{unknown}, `layer entry "volume-label": unsupported entry type 'V'`},
		"file as root":       {[]unpackEntry{ueFile(".", "")}, "only a directory can be the root"},
		"hardlink to dir":    {[]unpackEntry{ueDir("d", 0o755), ueLink("h", "d")}, `hardlink target "d" is a directory`},
		"hardlink to root":   {[]unpackEntry{ueLink("h", "/")}, "hardlink to the layer root"},
		"hardlink missing":   {[]unpackEntry{ueLink("h", "nothing")}, `hardlink target "nothing"`},
		"symlink loop":       {[]unpackEntry{ueSymlink("a", "b"), ueSymlink("b", "a"), ueFile("a/f", "")}, "too many levels of symbolic links"},
		"file as parent":     {[]unpackEntry{ueFile("f", ""), ueFile("f/g", "")}, "not a directory"},
		"dangling parent":    {[]unpackEntry{ueSymlink("s", "missing"), ueFile("s/f", "")}, `parent directory "s"`},
		"whiteout of dotdot": {[]unpackEntry{ueFile(".wh...", "")}, `whiteout of ".."`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := unpackInto(t, unpackTar(t, tc.entries...))
			wantInvalid(t, err, tc.want)
		})
	}
	t.Run("global header is skipped", func(t *testing.T) {
		g := unpackEntry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "x"}}}
		dir := mustUnpack(t, unpackTar(t, g, ueFile("f", "x")))
		if _, err := os.Lstat(filepath.Join(dir, "pax_global_header")); err == nil {
			t.Error("global header written as a file")
		}
	})
}

func TestUnpackSparse(t *testing.T) {
	content := make([]byte, 8<<20)
	copy(content[3<<20:], "island")
	copy(content[len(content)-10:], "tail")
	holeAtEnd := make([]byte, 4<<20)
	copy(holeAtEnd, "head")
	dir := mustUnpack(t, unpackTar(t, ueFile("sparse", string(content)), ueFile("hole-at-end", string(holeAtEnd))))
	for name, want := range map[string][]byte{"sparse": content, "hole-at-end": holeAtEnd} {
		p := filepath.Join(dir, name)
		if got, _ := os.ReadFile(p); !bytes.Equal(got, want) {
			t.Errorf("%s: content differs (%d bytes)", name, len(got))
		}
		if st := statNoFollow(t, p); st.Blocks*512 >= st.Size/2 {
			t.Errorf("%s: %d bytes allocated for %d: zeros not left as holes", name, st.Blocks*512, st.Size)
		}
	}
}

func TestUnpackCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "layer")
	os.Mkdir(dir, 0o755)
	_, _, err := Unpack(ctx, dir, bytes.NewReader(unpackTar(t, ueFile("f", "x"))))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	n := 0
	_, _, err = Unpack(ctx, dir, bytes.NewReader(unpackTar(t, ueFile("a", "x"), ueFile("b", strings.Repeat("y", 4<<20)), ueFile("c", "z"))),
		WithProgress(func(int64) {
			if n++; n == 2 {
				cancel()
			}
		}))
	if !errors.Is(err, context.Canceled) || errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v, want context.Canceled only", err)
	}
}

type brokenSource struct{ r io.Reader }

var errSourceBroken = errors.New("connection reset")

func (f *brokenSource) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errSourceBroken
	}
	return n, err
}

func TestUnpackSourceError(t *testing.T) {
	data := unpackGzip(t, unpackTar(t, ueFile("f", strings.Repeat("x", 100000))))
	dir := filepath.Join(t.TempDir(), "layer")
	os.Mkdir(dir, 0o755)
	_, _, err := Unpack(context.Background(), dir, &brokenSource{bytes.NewReader(data[:len(data)/2])})
	if !errors.Is(err, errSourceBroken) || errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v; want the reader's error, not invalid input", err)
	}
}

func TestUnpackSync(t *testing.T) {
	dir := mustUnpack(t, unpackTar(t, ueFile("f", "x")), WithSync(true))
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}

// TestUnpackGNUTar unpacks archives GNU tar made from a tree (sparse
// files, long names, hardlinks, xattrs) and compares the result with the
// tree.
func TestUnpackGNUTar(t *testing.T) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("needs GNU tar to make the archives")
	}
	src := t.TempDir()
	long := strings.Repeat("n", 120)
	files := map[string]string{"a/f": "hello", "a/" + long + "/g": "long", "b/h": strings.Repeat("z", 70000)}
	for name, data := range files {
		os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("../a/f", filepath.Join(src, "b/s"))
	os.Link(filepath.Join(src, "a/f"), filepath.Join(src, "b/hard"))
	sp, _ := os.Create(filepath.Join(src, "sparse"))
	sp.WriteAt([]byte("data"), 5<<20)
	sp.Truncate(9 << 20)
	sp.Close()
	for _, format := range []string{"gnu", "posix"} {
		t.Run(format, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "layer.tar")
			out, err := exec.Command(tarBin, "--format="+format, "--sparse", "-C", src, "-cf", archive, ".").CombinedOutput()
			if err != nil {
				t.Fatalf("tar: %v: %s", err, out)
			}
			data, _ := os.ReadFile(archive)
			dir := mustUnpack(t, data)
			for name, want := range files {
				if got := fileContent(t, filepath.Join(dir, name)); got != want {
					t.Errorf("%s: %d bytes, want %d", name, len(got), len(want))
				}
			}
			got, _ := os.ReadFile(filepath.Join(dir, "sparse"))
			want, _ := os.ReadFile(filepath.Join(src, "sparse"))
			if !bytes.Equal(got, want) {
				t.Errorf("sparse file: %d bytes, want %d, equal %v", len(got), len(want), bytes.Equal(got, want))
			}
			if l, _ := os.Readlink(filepath.Join(dir, "b/s")); l != "../a/f" {
				t.Errorf("b/s -> %q", l)
			}
			if statNoFollow(t, filepath.Join(dir, "b/hard")).Ino != statNoFollow(t, filepath.Join(dir, "a/f")).Ino {
				t.Error("b/hard is not a hardlink of a/f")
			}
		})
	}
}

func TestUnpackDevicesAsRoot(t *testing.T) {
	testutil.RequiresRoot(t)
	dir := mustUnpack(t, unpackTar(t, ueNode("dev/zero", tar.TypeChar, 1, 5), ueNode("dev/sda", tar.TypeBlock, 8, 0)))
	if st := statNoFollow(t, filepath.Join(dir, "dev/zero")); st.Rdev != unix.Mkdev(1, 5) {
		t.Errorf("dev/zero rdev %d", st.Rdev)
	}
}

// endlessReader serves a prefix, then zeros forever, and records a Read
// made after the test marked Unpack returned.
type endlessReader struct {
	prefix    *bytes.Reader
	returned  atomic.Bool
	lateReads atomic.Int64
}

func (e *endlessReader) Read(p []byte) (int, error) {
	if e.returned.Load() {
		e.lateReads.Add(1)
	}
	if e.prefix.Len() > 0 {
		return e.prefix.Read(p)
	}
	clear(p)
	return len(p), nil
}

func TestUnpackStopsReading(t *testing.T) {
	for name, prefix := range map[string][]byte{
		"hostile first entry": unpackTar(t, ueFile("../evil", "x"))[:1024],
		"endless file":        unpackTar(t, ueFile("f", strings.Repeat("x", 1<<20)))[:1024],
	} {
		t.Run(name, func(t *testing.T) {
			r := &endlessReader{prefix: bytes.NewReader(prefix)}
			dir := filepath.Join(t.TempDir(), "layer")
			os.Mkdir(dir, 0o755)
			_, _, err := Unpack(context.Background(), dir, r, WithMaxSize(64<<20))
			r.returned.Store(true)
			if err == nil {
				t.Fatal("Unpack of an endless stream succeeded")
			}
			time.Sleep(20 * time.Millisecond)
			if n := r.lateReads.Load(); n != 0 {
				t.Fatalf("%d reads of the source after Unpack returned", n)
			}
		})
	}
}
