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

// escapeCanary is the name hostile entries try to plant outside the layer.
const escapeCanary = "berth-unpack-canary"

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
	s.before = describeTree(t, base, s.layer)
	s.hostBefore = describeHost(t, s.layer)
	return s
}

// check fails the test if anything outside the layer directory changed:
// the sandbox around it, the canary in every directory above it, and the
// host files hostile entries aim at.
func (s *unpackSandbox) check(t testing.TB) {
	t.Helper()
	after := describeTree(t, s.base, s.layer)
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
	hostAfter := describeHost(t, s.layer)
	for p, v := range s.hostBefore {
		if hostAfter[p] != v {
			t.Errorf("host file %s changed: %q -> %q", p, v, hostAfter[p])
		}
	}
}

// describeTree describes every path under root but skip: type, mode, owner,
// size, mtime, link count, content digest or link target.
func describeTree(t testing.TB, root, skip string) map[string]string {
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
		m[p] = describePath(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func describePath(p string) string {
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

// describeHost describes the host files hostile entries aim at, and the
// escapeCanary in each directory from the layer's parent up to "/".
func describeHost(t testing.TB, layer string) map[string]string {
	m := map[string]string{}
	for _, p := range []string{"/etc/passwd", "/etc/shadow", "/etc/hostname"} {
		m[p] = describePath(p)
	}
	for d := filepath.Dir(layer); ; d = filepath.Dir(d) {
		m[filepath.Join(d, escapeCanary)] = describePath(filepath.Join(d, escapeCanary))
		for _, sub := range []string{"abs", "etc/" + escapeCanary} {
			m[filepath.Join(d, sub)] = describePath(filepath.Join(d, sub))
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

func entriesOf(es ...unpackEntry) func(string) []unpackEntry {
	return func(string) []unpackEntry { return es }
}

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "dotdot", entries: entriesOf(ueFile("../"+escapeCanary, "x")), want: "climbs out"},
		{name: "nested dotdot", entries: entriesOf(ueFile("a/../../"+escapeCanary, "x")), want: "climbs out"},
		{name: "deep dotdot", entries: entriesOf(ueDir("a/b", 0o755), ueFile("a/b/../../../../"+escapeCanary, "x")), want: "climbs out"},
		{name: "dotdot dir", entries: entriesOf(ueDir("../"+escapeCanary, 0o755)), want: "climbs out"},
		{name: "dotdot symlink name", entries: entriesOf(ueSymlink("../"+escapeCanary, "/")), want: "climbs out"},
		{name: "absolute name", entries: entriesOf(ueFile("/abs/"+escapeCanary, "x")), inside: []string{"abs/" + escapeCanary}},
		{name: "absolute name of the outside", entries: func(o string) []unpackEntry { return []unpackEntry{ueFile(o+"/sentinel", "pwned")} },
			inside: []string{"OUTSIDE/sentinel"}},
		{name: "symlink to root", entries: entriesOf(ueSymlink("s", "/"), ueFile("s/"+escapeCanary, "x")), inside: []string{escapeCanary}},
		{name: "symlink climbing", entries: entriesOf(ueSymlink("s", "../../.."), ueFile("s/"+escapeCanary, "x")), inside: []string{escapeCanary}},
		{name: "symlink dotdot", entries: entriesOf(ueSymlink("s", ".."), ueFile("s/"+escapeCanary, "x")), inside: []string{escapeCanary}},
		{name: "escape etc passwd", entries: entriesOf(ueSymlink("escape", "/"), ueFile("escape/etc/passwd", "pwned")), inside: []string{"etc/passwd"}, risky: true},
		{name: "escape etc passwd climbing", entries: entriesOf(ueSymlink("escape", "../../../../../../../../"), ueFile("escape/etc/passwd", "pwned")),
			inside: []string{"etc/passwd"}, risky: true},
		{name: "symlink to outside, absolute", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueSymlink("s", o), ueFile("s/sentinel", "pwned")}
		}, want: `parent directory "s"`},
		{name: "symlink to outside, relative", entries: entriesOf(ueSymlink("s", "../outside"), ueFile("s/sentinel", "pwned")), want: `parent directory "s"`},
		{name: "symlink chain", entries: entriesOf(ueSymlink("s1", "s2"), ueSymlink("s2", "s3/"), ueSymlink("s3", "../../../.."), ueFile("s1/"+escapeCanary, "x")),
			inside: []string{escapeCanary}},
		{name: "symlink chain to outside", entries: entriesOf(ueSymlink("s1", "s2/../outside"), ueSymlink("s2", "../outside"), ueFile("s1/sentinel", "pwned")),
			want: `parent directory "s1"`},
		{name: "symlink chain through dirs", entries: entriesOf(ueDir("a/b", 0o755), ueSymlink("a/b/up", "../../.."), ueSymlink("top", "a/b/up/outside"), ueFile("top/sentinel", "pwned")),
			want: `parent directory "top"`},
		{name: "symlink loop", entries: entriesOf(ueSymlink("a", "b"), ueSymlink("b", "a"), ueFile("a/"+escapeCanary, "x")), want: "too many levels"},
		{name: "magic link", entries: entriesOf(ueSymlink("p", "/proc/self/root"), ueFile("p/"+escapeCanary, "x")), want: `parent directory "p"`},
		{name: "magic link cwd", entries: entriesOf(ueSymlink("p", "/proc/self/cwd"), ueFile("p/"+escapeCanary, "x")), want: `parent directory "p"`},
		{name: "hardlink to etc passwd", entries: entriesOf(ueLink("h", "/etc/passwd")), want: `hardlink target "/etc/passwd"`},
		{name: "hardlink climbing", entries: entriesOf(ueLink("h", "../../outside/sentinel")), want: "climbs out"},
		{name: "hardlink to outside, absolute", entries: func(o string) []unpackEntry { return []unpackEntry{ueLink("h", o+"/sentinel")} }, want: "hardlink target"},
		{name: "hardlink through symlink dir", entries: entriesOf(ueSymlink("s", "/etc"), ueLink("h", "s/passwd")), want: `hardlink target "s/passwd"`},
		{name: "hardlink through relative symlink dir", entries: entriesOf(ueSymlink("s", "../outside"), ueLink("h", "s/sentinel")), want: `hardlink target "s/sentinel"`},
		{name: "hardlink to symlink to outside", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueSymlink("l", o+"/sentinel"), ueLink("h", "l"), ueFile("h", "pwned"), ueFile("l", "pwned")}
		}, inside: []string{"h", "l"}},
		{name: "hardlink name through symlink", entries: entriesOf(ueFile("f", "x"), ueSymlink("s", "/"), ueLink("s/"+escapeCanary, "f")), inside: []string{escapeCanary}},
		{name: "hardlink to a layer file in etc", entries: entriesOf(ueFile("etc/passwd", "mine"), ueSymlink("s", "/etc"), ueLink("h", "s/passwd")), inside: []string{"h"}},
		{name: "symlink replaces dir written into later", entries: entriesOf(ueDir("d", 0o755), ueFile("d/x", "x"), ueSymlink("d", "../outside"), ueFile("d/sentinel", "pwned")),
			want: `parent directory "d"`},
		{name: "symlink replaces dir, then dir entry below", entries: entriesOf(ueDir("d", 0o755), ueSymlink("d", "/"), ueDir("d/"+escapeCanary, 0o777)), inside: []string{escapeCanary}},
		{name: "deep path, ancestor replaced by symlink", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueDir("a", 0o755), ueDir("a/b", 0o755), ueFile("a/b/c", "x"), ueSymlink("a", o), ueFile("a/b/d", "pwned")}
		}, want: `parent directory "a"`},
		{name: "deep path, ancestor replaced by climbing symlink", entries: entriesOf(ueDir("a/b/c", 0o755), ueFile("a/b/c/f", "x"), ueSymlink("a", "../../../outside"), ueDir("a/b/c", 0o777), ueFile("a/b/c/g", "x")),
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
		{name: "dir metadata, then symlink to root in its place", entries: entriesOf(ueDir("d", 0o707), ueSymlink("d", "/")), inside: []string{"d"}},
		{name: "whiteout of dotdot", entries: entriesOf(ueFile(".wh...", "")), want: `whiteout of ".."`},
		{name: "whiteout of dot", entries: entriesOf(ueFile("a/.wh..", "")), want: `whiteout of "."`},
		{name: "whiteout climbing", entries: entriesOf(ueFile("../.wh.outside", "")), want: "climbs out"},
		{name: "whiteout nested climbing", entries: entriesOf(ueFile("a/../../outside/.wh.sentinel", "")), want: "climbs out"},
		{name: "whiteout through symlink", entries: entriesOf(ueSymlink("s", "../outside"), ueFile("s/.wh.sentinel", "")), want: `parent directory "s"`},
		{name: "opaque through symlink", entries: func(o string) []unpackEntry {
			return []unpackEntry{ueSymlink("s", o), ueFile("s/.wh..wh..opq", "")}
		}, want: `parent directory "s"`},
		{name: "whiteout through symlink to root", entries: entriesOf(ueSymlink("s", "/"), ueFile("s/.wh."+escapeCanary, "")), inside: []string{escapeCanary}},
		{name: "device climbing", entries: entriesOf(ueNode("../"+escapeCanary, tar.TypeChar, 1, 3)), want: "climbs out"},
		{name: "fifo nested climbing", entries: entriesOf(ueNode("a/../../"+escapeCanary, tar.TypeFifo, 0, 0)), want: "climbs out"},
		{name: "fifo through symlink to root", entries: entriesOf(ueSymlink("s", "/"), ueNode("s/"+escapeCanary, tar.TypeFifo, 0, 0)), inside: []string{escapeCanary}},
		{name: "root entry is a symlink", entries: entriesOf(ueSymlink(".", "/")), want: "only a directory can be the root"},
		{name: "root entry via dotdot", entries: entriesOf(ueDir("a/..", 0o700), ueFile("f", "x")), inside: []string{"f"}},
	}
}

func TestUnpackHostile(t *testing.T) {
	for _, resolver := range []string{"openat2", "walk"} {
		t.Run(resolver, func(t *testing.T) {
			defer noOpenat2.Store(noOpenat2.Load())
			noOpenat2.Store(resolver == "walk")
			cases := hostileCases()
			slices.SortStableFunc(cases, func(a, b hostileCase) int {
				return cmp.Compare(riskRank(a.risky), riskRank(b.risky))
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

func riskRank(b bool) int {
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
