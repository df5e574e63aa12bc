package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	benchOnce              sync.Once
	benchLarge, benchSmall []byte
)

// benchLayers builds the benchmark layers once: 256 MiB in four files of
// random bytes (incompressible: measures hashing and writing), and 128 MiB
// in 16384 files of 8 KiB of word salad (compresses ~3x like real
// layers: measures decompression and the per-file syscalls).
func benchLayers(b *testing.B) {
	benchOnce.Do(func() {
		rng := rand.New(rand.NewChaCha8([32]byte{1}))
		var large []unpackEntry
		for i := range 4 {
			data := make([]byte, 64<<20)
			for j := 0; j < len(data); j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					data[j+k] = byte(v >> (8 * k))
				}
			}
			large = append(large, ueFile(fmt.Sprintf("random-%d", i), string(data)))
		}
		benchLarge = unpackTar(b, large...)

		words := []string{"layer ", "container ", "overlay ", "the ", "of ", "snapshot ", "digest ", "whiteout\n", "berth ", "image "}
		small := []unpackEntry{}
		for d := range 64 {
			small = append(small, ueDir(fmt.Sprintf("dir%02d", d), 0o755))
			for f := range 256 {
				var sb bytes.Buffer
				for sb.Len() < 8<<10 {
					sb.WriteString(words[rng.IntN(len(words))])
				}
				small = append(small, ueFile(fmt.Sprintf("dir%02d/file%03d", d, f), sb.String()[:8<<10]))
			}
		}
		benchSmall = unpackTar(b, small...)
	})
}

// BenchmarkUnpack reports MB/s of uncompressed layer written to disk.
func BenchmarkUnpack(b *testing.B) {
	benchLayers(b)
	cases := []struct {
		name string
		raw  []byte
		data func(testing.TB, []byte) []byte
	}{
		{"random-plain", benchLarge, nil},
		{"random-gzip", benchLarge, unpackGzip},
		{"random-zstd", benchLarge, unpackZstd},
		{"smallfiles-gzip", benchSmall, unpackGzip},
		{"smallfiles-zstd", benchSmall, unpackZstd},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			data := c.raw
			if c.data != nil {
				data = c.data(b, c.raw)
			}
			base := b.TempDir() // TMPDIR=/dev/shm takes the disk out of the measure
			b.SetBytes(int64(len(c.raw)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(base, fmt.Sprint(i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, _, err := Unpack(context.Background(), dir, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.ReportMetric(float64(len(c.raw))/float64(len(data)), "ratio")
		})
	}
}
