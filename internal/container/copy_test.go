package container

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestPlanCopy(t *testing.T) {
	missing, dir, file := pathInfo{}, pathInfo{exists: true, isDir: true}, pathInfo{exists: true}
	for _, tc := range []struct {
		src      string
		srcIsDir bool
		dst      string
		d        pathInfo
		want     cpTarget
		err      error
	}{
		// A file.
		{"/etc/hosts", false, "/out/new", missing, cpTarget{"/out", "new"}, nil},
		{"/etc/hosts", false, "/out/file", file, cpTarget{"/out", "file"}, nil},
		{"/etc/hosts", false, "/out", dir, cpTarget{"/out", "hosts"}, nil},
		{"/etc/hosts", false, "/out/", dir, cpTarget{"/out", "hosts"}, nil},
		{"/etc/hosts", false, "/out/new/", missing, cpTarget{}, errdefs.ErrNotFound},
		{"/etc/hosts", false, "/out/file/", file, cpTarget{}, errdefs.ErrInvalidArgument},
		{"/etc/hosts/", false, "/out", dir, cpTarget{}, errdefs.ErrInvalidArgument},
		{"out", false, ".", dir, cpTarget{".", "out"}, nil},
		{"a", false, "b", missing, cpTarget{".", "b"}, nil},
		// A directory.
		{"/data", true, "/out/new", missing, cpTarget{"/out", "new"}, nil},
		{"/data", true, "/out/new/", missing, cpTarget{"/out", "new"}, nil},
		{"/data", true, "/out", dir, cpTarget{"/out", "data"}, nil},
		{"/data/", true, "/out", dir, cpTarget{"/out", "data"}, nil},
		{"/data/.", true, "/out", dir, cpTarget{"/out", ""}, nil},
		{"/data/.", true, "/out/new", missing, cpTarget{"/out", "new"}, nil},
		{"/", true, "/out", dir, cpTarget{"/out", ""}, nil},
		{".", true, "/out", dir, cpTarget{"/out", ""}, nil},
		{"/data", true, "/out/file", file, cpTarget{}, errdefs.ErrInvalidArgument},
	} {
		got, err := planCopy(tc.src, tc.srcIsDir, tc.dst, tc.d)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("planCopy(%q dir=%v, %q %+v): err %v, want %v", tc.src, tc.srcIsDir, tc.dst, tc.d, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("planCopy(%q dir=%v, %q %+v) = %+v, %v; want %+v", tc.src, tc.srcIsDir, tc.dst, tc.d, got, err, tc.want)
		}
	}
}

func TestEntryPath(t *testing.T) {
	for name, want := range map[string]string{
		"a": "a", "a/b/": "a/b", "/abs/x": "abs/x", "./a": "a", ".": ".", "./": ".", "a/../b": "b", "": ".",
		"../x": "", "a/../../x": "", "..": "",
	} {
		got, err := entryPath(name)
		if want == "" {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("entryPath(%q) = %q, %v; want refused", name, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("entryPath(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

// openDir opens dir as an O_PATH root for a tree.
func openDir(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func write(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	write(t, filepath.Join(src, "top/file"), "content", 0o640)
	write(t, filepath.Join(src, "top/sub/deep"), "deep", 0o755)
	os.Symlink("../file", filepath.Join(src, "top/sub/link"))
	os.Link(filepath.Join(src, "top/file"), filepath.Join(src, "top/hard"))
	unix.Mkfifo(filepath.Join(src, "top/fifo"), 0o600)
	os.Chtimes(filepath.Join(src, "top/file"), mtime, mtime)
	os.Chmod(filepath.Join(src, "top/sub"), 0o750)
	os.Chtimes(filepath.Join(src, "top/sub"), mtime, mtime)

	var buf bytes.Buffer
	if err := writeArchive(&buf, hostTree, filepath.Join(src, "top"), false, "renamed"); err != nil {
		t.Fatal(err)
	}
	if err := extractArchive(bytes.NewReader(buf.Bytes()), beneath(openDir(t, dst)), ".", ownerFromHeader); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(dst, "renamed")
	if data, _ := os.ReadFile(filepath.Join(got, "file")); string(data) != "content" {
		t.Errorf("file: %q", data)
	}
	if fi, err := os.Stat(filepath.Join(got, "file")); err != nil || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
		t.Errorf("file mode/mtime: %v %v", fi.Mode(), fi.ModTime())
	}
	if fi, err := os.Stat(filepath.Join(got, "sub")); err != nil || fi.Mode().Perm() != 0o750 || !fi.ModTime().Equal(mtime) {
		t.Errorf("dir mode/mtime (set after its entries): %v %v", fi.Mode(), fi.ModTime())
	}
	if l, err := os.Readlink(filepath.Join(got, "sub/link")); err != nil || l != "../file" {
		t.Errorf("symlink: %q %v", l, err)
	}
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(got, "file"), &a)
	unix.Stat(filepath.Join(got, "hard"), &b)
	if a.Ino != b.Ino {
		t.Error("hard link not kept")
	}
	if fi, err := os.Lstat(filepath.Join(got, "fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v %v", fi, err)
	}

	// The content of a directory (DIR/.) merges into an existing one.
	var contents bytes.Buffer
	if err := writeArchive(&contents, hostTree, filepath.Join(src, "top"), false, ""); err != nil {
		t.Fatal(err)
	}
	dst2 := t.TempDir()
	if err := extractArchive(&contents, beneath(openDir(t, dst2)), ".", ownerNone); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst2, "sub/deep")); err != nil {
		t.Errorf("contents copy: %v", err)
	}
}

// tarOf builds an archive from headers; regular files get body as content.
func tarOf(t *testing.T, entries ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = "pwned"
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return &buf
}

func TestExtractRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	for name, archive := range map[string]*bytes.Buffer{
		"dot-dot": tarOf(t, &tar.Header{Name: "../escaped", Typeflag: tar.TypeReg}),
		"through a planted symlink": tarOf(t,
			&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside},
			&tar.Header{Name: "link/escaped", Typeflag: tar.TypeReg}),
		"through a relative symlink": tarOf(t,
			&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../" + outside},
			&tar.Header{Name: "link/escaped", Typeflag: tar.TypeReg}),
		"hard link out": tarOf(t, &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../x"}),
	} {
		dst := filepath.Join(t.TempDir(), "d")
		os.Mkdir(dst, 0o755)
		err := extractArchive(archive, beneath(openDir(t, dst)), ".", ownerNone)
		if err == nil {
			t.Errorf("%s: extracted", name)
		}
		if _, err := os.Stat(filepath.Join(outside, "escaped")); err == nil {
			t.Fatalf("%s: a file was written outside the destination", name)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "escaped")); err == nil {
			t.Fatalf("%s: a file was written outside the destination", name)
		}
	}
}

func TestExtractNoOverwriteDirNonDir(t *testing.T) {
	dst := t.TempDir()
	os.Mkdir(filepath.Join(dst, "dir"), 0o755)
	write(t, filepath.Join(dst, "file"), "old", 0o644)
	err := extractArchive(tarOf(t, &tar.Header{Name: "dir", Typeflag: tar.TypeReg}), beneath(openDir(t, dst)), ".", ownerNone)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("file over a directory: %v", err)
	}
	err = extractArchive(tarOf(t, &tar.Header{Name: "file/", Typeflag: tar.TypeDir, Mode: 0o755}), beneath(openDir(t, dst)), ".", ownerNone)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("directory over a file: %v", err)
	}
	// A file over a file replaces it, whatever it was (a symlink too,
	// which is replaced, never followed).
	os.Symlink("/etc/passwd", filepath.Join(dst, "link"))
	err = extractArchive(tarOf(t, &tar.Header{Name: "file", Typeflag: tar.TypeReg}, &tar.Header{Name: "link", Typeflag: tar.TypeReg}),
		beneath(openDir(t, dst)), ".", ownerNone)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"file", "link"} {
		if fi, err := os.Lstat(filepath.Join(dst, n)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s not replaced by a file: %v", n, err)
		}
	}
}

// TestContainerTreeStaysInside: a container's absolute and climbing
// symlinks resolve inside its root, for reads and for writes.
func TestContainerTreeStaysInside(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:inside:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0o644)
	write(t, filepath.Join(root, "etc/group"), "root:x:0:\nextra:x:2000:app\n", 0o644)
	os.Symlink("/etc/passwd", filepath.Join(root, "evil"))
	os.Symlink("../../../../../../../../etc/passwd", filepath.Join(root, "climb"))
	os.Symlink("/etc", filepath.Join(root, "etclink"))
	ct := containerTree(openDir(t, root))

	for _, p := range []string{"/evil", "/climb", "evil", "/../../evil"} {
		var buf bytes.Buffer
		if err := writeArchive(&buf, ct, containerPath(p), true, "x"); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		tr := tar.NewReader(&buf)
		if _, err := tr.Next(); err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(tr)
		if !strings.Contains(body.String(), "inside") {
			t.Errorf("%s resolved outside the container: %q", p, body.String())
		}
	}
	if err := extractArchive(tarOf(t, &tar.Header{Name: "newfile", Typeflag: tar.TypeReg}), ct, "/etclink", ownerNone); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(root, "etc/newfile")); err != nil || string(data) != "pwned" {
		t.Errorf("write through /etclink: %q %v", data, err)
	}
	if _, err := os.Stat("/etc/newfile"); err == nil {
		t.Fatal("a write through a container symlink reached the host's /etc")
	}
	u, err := resolveUserIn(ct, "app")
	if err != nil || u.UID != 1000 || u.Home != "/home/app" || len(u.AdditionalGids) != 2 {
		t.Errorf("resolve app: %+v %v", u, err)
	}
	if u, err := resolveUserIn(containerTree(openDir(t, t.TempDir())), "7:8"); err != nil || u.UID != 7 || u.GID != 8 {
		t.Errorf("numeric user without passwd: %+v %v", u, err)
	}
}

func TestPipeArchiveProducerErrorWins(t *testing.T) {
	boom := errors.New("boom")
	_, err := pipeArchive(func(io.Writer) error { return boom }, func(r io.Reader) error {
		return extractArchive(r, hostTree, t.TempDir(), ownerNone)
	})
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want the producer's error", err)
	}
}
