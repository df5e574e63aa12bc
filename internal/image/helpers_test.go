package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("BERTH_IMAGE_HELPER"); mode != "" {
		os.Exit(helperProcess(mode))
	}
	os.Exit(m.Run())
}

func newService(t testing.TB) (*Service, string) {
	t.Helper()
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// rootfsTar builds a small root filesystem tarball; seed varies its
// content so images differ.
func rootfsTar(t testing.TB, seed string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, d := range []string{"bin/", "etc/", "tmp/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/hostname": "berth-" + seed + "\n",
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\n",
		"bin/hello":    "#!/bin/sh\necho hello " + seed + "\n" + strings.Repeat("padding ", 512),
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o755, Size: int64(len(files[n])), ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "hello", ModTime: mtime}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// importImage imports a rootfs made from seed and tags it ref.
func importImage(t testing.TB, s *Service, seed, ref string) *Image {
	t.Helper()
	img, err := s.Import(context.Background(), bytes.NewReader(rootfsTar(t, seed)), ref, ImportOpts{})
	if err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
	return img
}

// listing is every path under the stores' directories, so a test can
// check that a failed operation left them exactly as they were.
func listing(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{"content", "snapshots"} {
		base := filepath.Join(root, dir)
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	return out
}

// entries lists one directory's entries (empty if it does not exist).
func entries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func diffListing(before, after []string) string {
	var b strings.Builder
	for _, p := range after {
		if !slices.Contains(before, p) {
			fmt.Fprintf(&b, "+%s\n", p)
		}
	}
	for _, p := range before {
		if !slices.Contains(after, p) {
			fmt.Fprintf(&b, "-%s\n", p)
		}
	}
	return b.String()
}

// tarBuilder builds archives member by member, for hand-made (and
// deliberately broken) docker and OCI archives.
type tarBuilder struct {
	buf bytes.Buffer
	tw  *tar.Writer
}

func newTarBuilder() *tarBuilder {
	b := &tarBuilder{}
	b.tw = tar.NewWriter(&b.buf)
	return b
}

func (b *tarBuilder) file(t testing.TB, name string, data []byte) *tarBuilder {
	t.Helper()
	if err := b.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.tw.Write(data); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *tarBuilder) symlink(t testing.TB, name, target string) *tarBuilder {
	t.Helper()
	if err := b.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *tarBuilder) bytes(t testing.TB) []byte {
	t.Helper()
	if err := b.tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.buf.Bytes()
}

// layerSize is the snapshot store's size of one layer.
func layerSize(t testing.TB, s *Service, chainID digest.Digest) int64 {
	t.Helper()
	layers, err := s.Snapshots.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		if l.ChainID == chainID {
			return l.Size
		}
	}
	t.Fatalf("layer %s not in the store", chainID)
	return 0
}

// dirTar archives a directory tree (as docker import's input), with the
// tree's own modes and link targets, owned by root.
func dirTar(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = filepath.ToSlash(rel), 0, 0, "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
