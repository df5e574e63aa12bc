package snapshot

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// canary is the name hostile entries try to plant outside the layer.
const canary = "berth-unpack-canary"

// unpackSandbox is a temporary directory holding the layer directory and,
// beside it, "outside" with a sentinel file that no layer may touch.
type unpackSandbox struct {
	base, layer, outside string
	before               map[string]string
	hostBefore           map[string]string
}

func newUnpackSandbox(t testing.TB) *unpackSandbox {
	t.Helper()
	base := t.TempDir()
	s := &unpackSandbox{base: base, layer: filepath.Join(base, "layer"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{s.layer, s.outside, filepath.Join(s.outside, "etc")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "sentinel"), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.outside, "etc", "passwd"), []byte("root:x:0:0"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.before = treeState(t, base, s.layer)
	s.hostBefore = hostState(t, s.layer)
	return s
}

// check fails the test if anything outside the layer directory changed:
// the sandbox around it, the canary in every directory above it, and the
// host files hostile entries aim at.
func (s *unpackSandbox) check(t testing.TB) {
	t.Helper()
	after := treeState(t, s.base, s.layer)
	for p, v := range after {
		if s.before[p] != v {
			t.Errorf("outside the layer: %s changed: %q -> %q", p, s.before[p], v)
		}
	}
	for p := range s.before {
		if _, ok := after[p]; !ok {
			t.Errorf("outside the layer: %s removed", p)
		}
	}
	hostAfter := hostState(t, s.layer)
	for p, v := range s.hostBefore {
		if hostAfter[p] != v {
			t.Errorf("host file %s changed: %q -> %q", p, v, hostAfter[p])
		}
	}
}

// treeState describes every path under root but skip: type, mode, owner,
// size, mtime, link count, content digest or link target.
func treeState(t testing.TB, root, skip string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch p {
		case skip:
			return filepath.SkipDir
		case root: // its mtime follows the layer directory's replacement
			return nil
		}
		m[p] = pathState(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func pathState(p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "absent"
	}
	extra := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		b, _ := os.ReadFile(p)
		extra = fmt.Sprintf("%x", sha256.Sum256(b))
	case unix.S_IFLNK:
		extra, _ = os.Readlink(p)
	}
	return fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d.%d nlink=%d ino=%d %s",
		st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Nlink, st.Ino, extra)
}

// hostState describes the host files hostile entries aim at, and the
// canary in each directory from the layer's parent up to "/".
func hostState(t testing.TB, layer string) map[string]string {
	m := map[string]string{}
	for _, p := range []string{"/etc/passwd", "/etc/shadow", "/etc/hostname"} {
		m[p] = pathState(p)
	}
	for d := filepath.Dir(layer); ; d = filepath.Dir(d) {
		m[filepath.Join(d, canary)] = pathState(filepath.Join(d, canary))
		for _, sub := range []string{"abs", "etc/" + canary} {
			m[filepath.Join(d, sub)] = pathState(filepath.Join(d, sub))
		}
		if d == "/" {
			break
		}
	}
	return m
}

// hostileCase is one hostile layer. want is "" when the layer must unpack
// (its entries land inside, at the inside paths), else a substring of the
// error, which must wrap errdefs.ErrInvalidArgument.
type hostileCase struct {
	name    string
	entries func(outside string) []unpackEntry
	want    string
	inside  []string
	// risky cases aim at real host files (/etc/passwd); they run only
	// once every other case has shown the layer is contained.
	risky bool
}

func fixed(es ...unpackEntry) func(string) []unpackEntry {
	return func(string) []unpackEntry { return es }
}

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "dotdot", entries: fixed(ueFile("../"+canary, "x")), want: "climbs out"},
		{name: "nested dotdot", entries: fixed(ueFile("a/../../"+canary, "x")), want: "climbs out"},
		{name: "deep dotdot", entries: fixed(ueDir("a/b", 0o755), ueFile("a/b/../../../../"+canary, "x")), want: "climbs out"},
		{name: "dotdot dir", entries: fixed(ueDir("../"+canary, 0o755)), want: "climbs out"},
		{name: "dotdot symlink name", entries: fixed(ueSymlink("../"+canary, "/")), want: "climbs out"},
		{name: "absolute name", entries: fixed(ueFile("/abs/"+canary, "x")), inside: []string{"abs/" + canary}},
		{name: "absolute name of the outside", entries: func(o string) []unpackEntry { return []unpackEntry{ueFile(o+"/sentinel", "pwned")} },
			inside: []string{"OUTSIDE/sentinel"}},
		{name: "symlink to root", entries: fixed(ueSymlink("s", "/"), ueFile("s/"+canary, "x")), inside: []string{canary}},
		{name: "symlink climbing", entries: fixed(ueSymlink("s", "../../.."), ueFile("s/"+canary, "x")), inside: []string{canary}},
		{name: "symlink dotdot", entries: fixed(ueSymlink("s", ".."), ueFile("s/"+canary, "x")), inside: []string{canary}},
		{name: "escape etc passwd", entries: fixed(ueSymlink("escape", "/"), ueFile("escape/etc/passwd", "pwned")), inside: []string{"etc/passwd"}, risky: true},
		{name: "escape etc passwd climbing", entries: fixed(ueSymlink("escape", "../../../../../../../../"), ueFile("escape/etc/passwd", "pwned")),
			inside: []string{"etc/passwd"}, risky: true},
		{name: "symlink to outside, absolute", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueSymlink("s", o), ueFile("s/sentinel", "pwned")}
		}, want: `parent directory "s"`},
		{name: "symlink to outside, relative", entries: fixed(ueSymlink("s", "../outside"), ueFile("s/sentinel", "pwned")), want: `parent directory "s"`},
		{name: "symlink chain", entries: fixed(ueSymlink("s1", "s2"), ueSymlink("s2", "s3/"), ueSymlink("s3", "../../../.."), ueFile("s1/"+canary, "x")),
			inside: []string{canary}},
		{name: "symlink chain to outside", entries: fixed(ueSymlink("s1", "s2/../outside"), ueSymlink("s2", "../outside"), ueFile("s1/sentinel", "pwned")),
			want: `parent directory "s1"`},
		{name: "symlink chain through dirs", entries: fixed(ueDir("a/b", 0o755), ueSymlink("a/b/up", "../../.."), ueSymlink("top", "a/b/up/outside"), ueFile("top/sentinel", "pwned")),
			want: `parent directory "top"`},
		{name: "symlink loop", entries: fixed(ueSymlink("a", "b"), ueSymlink("b", "a"), ueFile("a/"+canary, "x")), want: "too many levels"},
		{name: "magic link", entries: fixed(ueSymlink("p", "/proc/self/root"), ueFile("p/"+canary, "x")), want: `parent directory "p"`},
		{name: "magic link cwd", entries: fixed(ueSymlink("p", "/proc/self/cwd"), ueFile("p/"+canary, "x")), want: `parent directory "p"`},
		{name: "hardlink to etc passwd", entries: fixed(ueLink("h", "/etc/passwd")), want: `hardlink target "/etc/passwd"`},
		{name: "hardlink climbing", entries: fixed(ueLink("h", "../../outside/sentinel")), want: "climbs out"},
		{name: "hardlink to outside, absolute", entries: func(o string) []unpackEntry { return []unpackEntry{ueLink("h", o+"/sentinel")} }, want: "hardlink target"},
		{name: "hardlink through symlink dir", entries: fixed(ueSymlink("s", "/etc"), ueLink("h", "s/passwd")), want: `hardlink target "s/passwd"`},
		{name: "hardlink through relative symlink dir", entries: fixed(ueSymlink("s", "../outside"), ueLink("h", "s/sentinel")), want: `hardlink target "s/sentinel"`},
		{name: "hardlink to symlink to outside", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueSymlink("l", o+"/sentinel"), ueLink("h", "l"), ueFile("h", "pwned"), ueFile("l", "pwned")}
		}, inside: []string{"h", "l"}},
		{name: "hardlink name through symlink", entries: fixed(ueFile("f", "x"), ueSymlink("s", "/"), ueLink("s/"+canary, "f")), inside: []string{canary}},
		{name: "hardlink to a layer file in etc", entries: fixed(ueFile("etc/passwd", "mine"), ueSymlink("s", "/etc"), ueLink("h", "s/passwd")), inside: []string{"h"}},
		{name: "symlink replaces dir written into later", entries: fixed(ueDir("d", 0o755), ueFile("d/x", "x"), ueSymlink("d", "../outside"), ueFile("d/sentinel", "pwned")),
			want: `parent directory "d"`},
		{name: "symlink replaces dir, then dir entry below", entries: fixed(ueDir("d", 0o755), ueSymlink("d", "/"), ueDir("d/"+canary, 0o777)), inside: []string{canary}},
		{name: "deep path, ancestor replaced by symlink", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueDir("a", 0o755), ueDir("a/b", 0o755), ueFile("a/b/c", "x"), ueSymlink("a", o), ueFile("a/b/d", "pwned")}
		}, want: `parent directory "a"`},
		{name: "deep path, ancestor replaced by climbing symlink", entries: fixed(ueDir("a/b/c", 0o755), ueFile("a/b/c/f", "x"), ueSymlink("a", "../../../outside"), ueDir("a/b/c", 0o777), ueFile("a/b/c/g", "x")),
			want: `parent directory "a"`},
		{name: "file over symlink to outside", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueSymlink("l", o+"/sentinel"), ueFile("l", "pwned")}
		}, inside: []string{"l"}},
		{name: "dir over symlink to outside", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueSymlink("d", o), ueDir("d", 0o777), ueFile("d/sentinel", "mine")}
		}, inside: []string{"d/sentinel"}},
		{name: "dir metadata, then symlink in its place", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueDir("d", 0o777), ueSymlink("d", o)}
		}, inside: []string{"d"}},
		{name: "dir metadata, then symlink to root in its place", entries: fixed(ueDir("d", 0o707), ueSymlink("d", "/")), inside: []string{"d"}},
		{name: "whiteout of dotdot", entries: fixed(ueFile(".wh...", "")), want: `whiteout of ".."`},
		{name: "whiteout of dot", entries: fixed(ueFile("a/.wh..", "")), want: `whiteout of "."`},
		{name: "whiteout climbing", entries: fixed(ueFile("../.wh.outside", "")), want: "climbs out"},
		{name: "whiteout nested climbing", entries: fixed(ueFile("a/../../outside/.wh.sentinel", "")), want: "climbs out"},
		{name: "whiteout through symlink", entries: fixed(ueSymlink("s", "../outside"), ueFile("s/.wh.sentinel", "")), want: `parent directory "s"`},
		{name: "opaque through symlink", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueSymlink("s", o), ueFile("s/.wh..wh..opq", "")}
		}, want: `parent directory "s"`},
		{name: "whiteout through symlink to root", entries: fixed(ueSymlink("s", "/"), ueFile("s/.wh."+canary, "")), inside: []string{canary}},
		{name: "device climbing", entries: fixed(ueNode("../"+canary, tar.TypeChar, 1, 3)), want: "climbs out"},
		{name: "fifo nested climbing", entries: fixed(ueNode("a/../../"+canary, tar.TypeFifo, 0, 0)), want: "climbs out"},
		{name: "fifo through symlink to root", entries: fixed(ueSymlink("s", "/"), ueNode("s/"+canary, tar.TypeFifo, 0, 0)), inside: []string{canary}},
		{name: "root entry is a symlink", entries: fixed(ueSymlink(".", "/")), want: "only a directory can be the root"},
		{name: "root entry via dotdot", entries: fixed(ueDir("a/..", 0o700), ueFile("f", "x")), inside: []string{"f"}},
	}
}

func TestUnpackHostile(t *testing.T) {
	for _, resolver := range []string{"openat2", "walk"} {
		t.Run(resolver, func(t *testing.T) {
			defer func(v bool) { noOpenat2 = v }(noOpenat2)
			noOpenat2 = resolver == "walk"
			cases := hostileCases()
			slices.SortStableFunc(cases, func(a, b hostileCase) int {
				return cmp.Compare(b2i(a.risky), b2i(b.risky))
			})
			for _, tc := range cases {
				if tc.risky && t.Failed() {
					t.Logf("%s: not run: a layer already escaped", tc.name)
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					s := newUnpackSandbox(t)
					data := unpackTar(t, tc.entries(s.outside)...)
					for _, variant := range []struct {
						name string
						data []byte
					}{{"plain", data}, {"gzip", unpackGzip(t, data)}} {
						os.RemoveAll(s.layer)
						os.Mkdir(s.layer, 0o755)
						_, _, err := Unpack(context.Background(), s.layer, bytes.NewReader(variant.data))
						s.check(t)
						if tc.want != "" {
							if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
								t.Fatalf("%s: err = %v; want one containing %q, wrapping ErrInvalidArgument", variant.name, err, tc.want)
							}
							continue
						}
						if err != nil {
							t.Fatalf("%s: %v", variant.name, err)
						}
						for _, p := range tc.inside {
							p = strings.Replace(p, "OUTSIDE", s.outside, 1)
							if _, err := os.Lstat(filepath.Join(s.layer, p)); err != nil {
								t.Errorf("%s: %s not placed inside the layer: %v", variant.name, p, err)
							}
						}
					}
				})
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestUnpackResolversAgree checks that the walk fallback resolves like
// openat2(RESOLVE_IN_ROOT) over a tree of symlinks.
func TestUnpackResolversAgree(t *testing.T) {
	data := unpackTar(t,
		ueDir("a/b/c", 0o755), ueSymlink("a/up", ".."), ueSymlink("a/b/abs", "/a"), ueSymlink("a/b/rel", "../b/c"),
		ueSymlink("a/b/c/top", "../../../../.."), ueSymlink("loop", "loop"), ueSymlink("dangling", "nothing"), ueFile("a/f", "x"),
		ueSymlink("a/b/file", "../f"),
	)
	dir := mustUnpack(t, data)
	l, err := openLayerRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if !l.openat2 {
		t.Skip("no openat2 to compare with")
	}
	paths := []string{".", "a", "a/up", "a/up/a/b", "a/b/abs/b/c", "a/b/rel", "a/b/c/top", "a/b/c/top/a/b/c/top/a", "a/up/up/up",
		"loop", "dangling", "a/f", "a/b/file", "a/b/abs/../..", "a/b/c/top/../a"}
	for _, p := range paths {
		fd1, err1 := l.openDir(p)
		fd2, err2 := l.walkDir(p)
		if (err1 == nil) != (err2 == nil) || (err1 != nil && !errors.Is(err2, errors.Unwrap(err1))) {
			t.Errorf("%s: openat2 %v, walk %v", p, err1, err2)
		}
		if err1 == nil && err2 == nil {
			var st1, st2 unix.Stat_t
			unix.Fstat(fd1, &st1)
			unix.Fstat(fd2, &st2)
			if st1.Ino != st2.Ino {
				t.Errorf("%s: openat2 and walk resolve to different directories", p)
			}
		}
		if err1 == nil {
			unix.Close(fd1)
		}
		if err2 == nil {
			unix.Close(fd2)
		}
	}
}
