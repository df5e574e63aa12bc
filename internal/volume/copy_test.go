package volume

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/testutil"
)

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// pingCaps is a VFS_CAP_REVISION_2 security.capability value: cap_net_raw
// permitted and effective, as Debian's ping carries.
var pingCaps = []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// TestCopyUp copies an image directory with everything an image can hold
// into a fresh volume, and reads nothing outside it.
func TestCopyUp(t *testing.T) {
	testutil.RequiresRoot(t) // owners and devices
	s := newStore(t)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("host secret"), 0o600)

	src := filepath.Join(t.TempDir(), "app")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "sub", "ro"), 0o755))
	must(os.WriteFile(filepath.Join(src, "file"), []byte("hello"), 0o640))
	must(os.Chown(filepath.Join(src, "file"), 1000, 2000))
	must(os.WriteFile(filepath.Join(src, "suid"), []byte("#!"), 0o755))
	must(os.Chown(filepath.Join(src, "suid"), 0, 0))
	must(unix.Chmod(filepath.Join(src, "suid"), 0o4755))
	must(os.Link(filepath.Join(src, "file"), filepath.Join(src, "sub", "hard")))
	must(os.Symlink(outside, filepath.Join(src, "abs-link")))
	must(os.Symlink("../../../../../../"+outside, filepath.Join(src, "sub", "rel-link")))
	must(os.Symlink("/", filepath.Join(src, "root-link")))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.WriteFile(filepath.Join(src, "sub", "ro", "f"), []byte("x"), 0o444))
	must(os.Chmod(filepath.Join(src, "sub", "ro"), 0o555))
	must(unix.Chmod(filepath.Join(src, "sub"), 0o1777))
	must(os.Chown(src, 33, 33))
	must(os.Chmod(src, 0o750))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(src, "file"), old, old))
	_ = unix.Setxattr(filepath.Join(src, "file"), "user.note", []byte("kept"), 0) // tmpfs may lack user xattrs
	must(os.WriteFile(filepath.Join(src, "ping"), []byte("#!"), 0o755))
	must(os.Chown(filepath.Join(src, "ping"), 0, 1000))
	must(unix.Setxattr(filepath.Join(src, "ping"), "security.capability", pingCaps, 0))

	mustCreate(t, s, "data", nil)
	if err := s.CopyUp("data", src); err != nil {
		t.Fatal(err)
	}
	v, _ := s.Get("data")
	dst := v.Mountpoint

	if st := lstat(t, dst); st.Uid != 33 || st.Mode&0o7777 != 0o750 {
		t.Errorf("volume root: uid %d mode %o, want src's 33 and 750", st.Uid, st.Mode&0o7777)
	}
	if data, err := os.ReadFile(filepath.Join(dst, "file")); err != nil || string(data) != "hello" {
		t.Errorf("file: %q, %v", data, err)
	}
	st := lstat(t, filepath.Join(dst, "file"))
	if st.Uid != 1000 || st.Gid != 2000 || st.Mode&0o7777 != 0o640 || st.Mtim.Sec != old.Unix() || st.Nlink != 2 {
		t.Errorf("file: uid %d gid %d mode %o mtime %d nlink %d", st.Uid, st.Gid, st.Mode&0o7777, st.Mtim.Sec, st.Nlink)
	}
	if hard := lstat(t, filepath.Join(dst, "sub", "hard")); hard.Ino != st.Ino {
		t.Error("hard link copied as a second file")
	}
	if lstat(t, filepath.Join(dst, "suid")).Mode&0o7777 != 0o4755 {
		t.Error("set-user-ID bit lost")
	}
	if lstat(t, filepath.Join(dst, "sub")).Mode&0o7777 != 0o1777 || lstat(t, filepath.Join(dst, "sub", "ro")).Mode&0o7777 != 0o555 {
		t.Error("directory modes lost")
	}
	for link, want := range map[string]string{"abs-link": outside, "sub/rel-link": "../../../../../../" + outside, "root-link": "/"} {
		got, err := os.Readlink(filepath.Join(dst, link))
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want the link itself, %q", link, got, err, want)
		}
	}
	if lstat(t, filepath.Join(dst, "fifo")).Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Error("fifo not copied as a fifo")
	}
	if st := lstat(t, filepath.Join(dst, "null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Error("device not copied")
	}
	val := make([]byte, 32)
	if n, err := unix.Getxattr(filepath.Join(src, "file"), "user.note", val); err == nil && n > 0 {
		n, err := unix.Getxattr(filepath.Join(dst, "file"), "user.note", val)
		if err != nil || string(val[:n]) != "kept" {
			t.Errorf("user xattr: %q, %v", val[:max(n, 0)], err)
		}
	} else {
		t.Logf("no user xattrs where the test's files live (%v); skipping that check", err)
	}
	// File capabilities survive the chown (which clears them) because
	// they are copied after it.
	if n, err := unix.Getxattr(filepath.Join(dst, "ping"), "security.capability", val); err != nil || !bytes.Equal(val[:max(n, 0)], pingCaps) {
		t.Errorf("file capabilities: %x, %v; want %x", val[:max(n, 0)], err, pingCaps)
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("volume directory holds %d entries, want only _data", len(entries))
	}

	// Not empty any more: a second copy (another start) changes nothing.
	os.WriteFile(filepath.Join(dst, "new"), nil, 0o644)
	os.Remove(filepath.Join(dst, "file"))
	if err := s.CopyUp("data", src); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "file")); err == nil {
		t.Error("CopyUp copied into a volume that had content")
	}
}

func TestCopyUpEdges(t *testing.T) {
	s := newStore(t)
	v := mustCreate(t, s, "data", nil)
	// Leftover of a copy that died.
	stale := filepath.Join(filepath.Dir(v.Mountpoint), ".copyup-dead")
	os.MkdirAll(filepath.Join(stale, "x"), 0o755)

	if err := s.CopyUp("data", filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("missing src: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale copy survives: %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	os.Symlink(dir, filepath.Join(dir, "link"))
	for _, src := range []string{filepath.Join(dir, "file"), filepath.Join(dir, "link")} {
		if err := s.CopyUp("data", src); !errdefs.IsInvalidArgument(err) {
			t.Errorf("CopyUp from %s: %v, want invalid argument", src, err)
		}
	}
	if empty, _ := isEmptyDir(v.Mountpoint); !empty {
		t.Error("refused copies wrote into the volume")
	}
	if err := s.CopyUp("nope", dir); !errdefs.IsNotFound(err) {
		t.Errorf("CopyUp into a missing volume: %v", err)
	}
	// An empty source still gives the volume its owner and mode.
	empty := t.TempDir()
	os.Chmod(empty, 0o700)
	if err := s.CopyUp("data", empty); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("mountpoint after empty copy: %v, %v", fi.Mode(), err)
	}
}
