package content

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
)

// BenchmarkPut stores a 64 MiB blob per iteration, from a reader in memory,
// through the whole path: hash, write, fsync, rename, directory fsync. The
// blob is deleted between iterations (untimed) so each one commits.
func BenchmarkPut(b *testing.B) {
	const size = 64 << 20
	data := testData(99, size)
	for _, bc := range []struct {
		name     string
		expected digest.Digest
	}{
		{"sha256-unknown", ""},
		{"sha256-verified", digest.FromBytes(data)},
		{"sha512-verified", digest.SHA512.FromBytes(data)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newStore(b)
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				d, _, err := s.Put(bytes.NewReader(data), bc.expected, size)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Delete(d); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkHash is the floor under BenchmarkPut: hashing alone.
func BenchmarkHash(b *testing.B) {
	data := testData(99, 64<<20)
	for _, alg := range algorithms {
		b.Run(fmt.Sprint(alg.name), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for range b.N {
				h := alg.new()
				for rest := data; len(rest) > 0; rest = rest[putBufSize:] {
					h.Write(rest[:putBufSize])
				}
				h.Sum(nil)
			}
		})
	}
}
