package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// snapLayerDir builds a diff directory from a map of path to content: a
// trailing "/" makes a directory, "-> target" a symlink.
func snapLayerDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(content, "-> "):
			if err := os.Symlink(strings.TrimPrefix(content, "-> "), p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func TestMaterializeAUFSWhiteouts(t *testing.T) {
	outside := t.TempDir()
	l1 := snapLayerDir(t, map[string]string{
		"keep":        "k",
		"gone":        "g",
		"dir/a":       "a",
		"dir/sub/b":   "b",
		"opq/old":     "o",
		"x/child":     "c",
		"trap":        "-> " + outside,
		"file2dir":    "f",
		"opq/deeper/": "",
	})
	l2 := snapLayerDir(t, map[string]string{
		".wh.gone":         "",
		"dir/.wh.sub":      "",
		"dir/new":          "n",
		"opq/.wh..wh..opq": "",
		"opq/fresh":        "f",
		"x":                "now a file",
		"trap/inside":      "must stay below the root",
		"file2dir/":        "",
		".wh..wh.plnk/":    "",
	})
	dst := filepath.Join(t.TempDir(), "rootfs")
	if err := materialize(dst, []string{l1, l2}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(snapTree(t, dst), " ")
	want := "dir dir/a dir/new file2dir keep opq opq/fresh trap trap/inside x"
	if got != want {
		t.Fatalf("tree %q\nwant %q", got, want)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "trap")); err != nil || !fi.IsDir() {
		t.Fatalf("trap should be a real directory now: %v %v", fi, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote outside the tree through a symlink: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "x")); string(b) != "now a file" {
		t.Fatalf("x = %q", b)
	}
}

func TestMaterializeHardlinksAndSparse(t *testing.T) {
	l1 := t.TempDir()
	if err := os.WriteFile(filepath.Join(l1, "a"), []byte("shared"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(l1, "a"), filepath.Join(l1, "b")); err != nil {
		t.Fatal(err)
	}
	// A 1 GiB file with 4 KiB of data at its end, like /var/log/lastlog.
	f, err := os.Create(filepath.Join(l1, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 30
	if _, err := f.WriteAt([]byte(strings.Repeat("z", 4096)), size-4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Layer 2 links "c" to the same content, a separate inode of its own.
	l2 := snapLayerDir(t, map[string]string{"c": "shared"})

	dst := filepath.Join(t.TempDir(), "rootfs")
	if err := materialize(dst, []string{l1, l2}); err != nil {
		t.Fatal(err)
	}
	var a, b, c, sp unix.Stat_t
	for p, st := range map[string]*unix.Stat_t{"a": &a, "b": &b, "c": &c, "sparse": &sp} {
		if err := unix.Lstat(filepath.Join(dst, p), st); err != nil {
			t.Fatal(err)
		}
	}
	if a.Ino != b.Ino || a.Nlink != 2 || c.Ino == a.Ino {
		t.Fatalf("hard links: a %d b %d c %d nlink %d", a.Ino, b.Ino, c.Ino, a.Nlink)
	}
	if sp.Size != size {
		t.Fatalf("sparse size %d", sp.Size)
	}
	if sp.Blocks*512 > 1<<20 {
		t.Fatalf("sparse file copied dense: %d bytes allocated", sp.Blocks*512)
	}
	g, _ := os.Open(filepath.Join(dst, "sparse"))
	buf := make([]byte, 8)
	g.ReadAt(buf, size-8)
	g.Close()
	if string(buf) != "zzzzzzzz" {
		t.Fatalf("sparse tail %q", buf)
	}
}

// TestMaterializeOverlayWhiteouts: the overlay form, as Unpack writes it
// by default, needs root for the 0/0 device and trusted.* xattrs.
func TestMaterializeOverlayWhiteouts(t *testing.T) {
	testutil.RequiresRoot(t)
	l1 := snapLayerDir(t, map[string]string{"gone": "g", "opq/old": "o", "keep": "k"})
	l2 := snapLayerDir(t, map[string]string{"opq/fresh": "f", "keep": "k2"})
	if err := unix.Mknod(filepath.Join(l2, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(l2, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(l2, "null"), 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(l2, "opq"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("filesystem refuses trusted xattrs: %v", err)
	}
	if err := unix.Lsetxattr(filepath.Join(l2, "keep"), "trusted.berth-test", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "rootfs")
	if err := materialize(dst, []string{l1, l2}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(snapTree(t, dst), " "); got != "keep null opq opq/fresh" {
		t.Fatalf("tree %q", got)
	}
	if _, err := xattrGet(filepath.Join(dst, "opq"), "trusted.overlay.opaque"); err == nil {
		t.Fatal("overlay's opaque xattr was copied into the merged tree")
	}
	if v, err := xattrGet(filepath.Join(dst, "keep"), "trusted.berth-test"); err != nil || string(v) != "v" {
		t.Fatalf("xattr: %q %v", v, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "null"), &st); err != nil || st.Rdev != unix.Mkdev(1, 3) || st.Mode&0o7777 != 0o666 {
		t.Fatalf("device: %+v %v", st, err)
	}
}
