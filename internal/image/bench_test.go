package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// bigRootfs is a tarball of n files of 1 MiB, half random (incompressible)
// and half text, so compression does real work.
func bigRootfs(b testing.TB, n int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range n {
		if i%2 == 0 {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		} else {
			copy(data, bytes.Repeat([]byte(fmt.Sprintf("line %d of a text file\n", i)), len(data)))
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("data/f%d", i), Mode: 0o644, Size: int64(len(data))}); err != nil {
			b.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	return buf.Bytes()
}

func BenchmarkImport64MiB(b *testing.B) {
	rootfs := bigRootfs(b, 64)
	b.SetBytes(int64(len(rootfs)))
	for b.Loop() {
		b.StopTimer()
		s, _ := newService(b)
		b.StartTimer()
		if _, err := s.Import(context.Background(), bytes.NewReader(rootfs), "big", ImportOpts{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSaveLoad64MiB(b *testing.B) {
	src, _ := newService(b)
	if _, err := src.Import(context.Background(), bytes.NewReader(bigRootfs(b, 64)), "big", ImportOpts{}); err != nil {
		b.Fatal(err)
	}
	var archive bytes.Buffer
	if err := src.Save(context.Background(), &archive, []string{"big"}, FormatDockerArchive); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(archive.Len()))
	for b.Loop() {
		b.StopTimer()
		dst, _ := newService(b)
		b.StartTimer()
		if _, err := dst.Load(context.Background(), bytes.NewReader(archive.Bytes()), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImportFile imports the rootfs tarball BERTH_BENCH_TAR names
// (a real tree compresses nothing like the synthetic one above), e.g.
// tar -C /usr -cf /tmp/usr-bin.tar bin.
func BenchmarkImportFile(b *testing.B) {
	p := os.Getenv("BERTH_BENCH_TAR")
	if p == "" {
		b.Skip("set BERTH_BENCH_TAR to a rootfs tarball")
	}
	fi, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	for b.Loop() {
		b.StopTimer()
		s, _ := newService(b)
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if _, err := s.Import(context.Background(), f, "big", ImportOpts{}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/import")
		f.Close()
	}
}
