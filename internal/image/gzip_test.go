package image

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/flate"
)

func TestGzipWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 3*gzipBlock+12345)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("a line of a text file that compresses well\n"), 100000)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"one byte", []byte{'x'}},
		{"one block exactly", text[:gzipBlock]},
		{"random", random},
		{"text", text},
		{"mixed", append(append([]byte{}, text...), random...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			z := newGzipWriter(&out, flate.DefaultCompression)
			// Odd write sizes cross block boundaries.
			for p := tc.in; len(p) > 0; {
				k := min(len(p), 77777)
				if n, err := z.Write(p[:k]); n != k || err != nil {
					t.Fatalf("write: %d, %v", n, err)
				}
				p = p[k:]
			}
			if err := z.Close(); err != nil {
				t.Fatal(err)
			}
			zr, err := stdgzip.NewReader(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			zr.Multistream(false)
			got, err := io.ReadAll(zr) // checks the CRC and length too
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.in) {
				t.Fatalf("round trip differs: %d bytes in, %d out", len(tc.in), len(got))
			}
			// Deterministic: the same input gives the same bytes.
			var again bytes.Buffer
			z = newGzipWriter(&again, flate.DefaultCompression)
			z.Write(tc.in)
			z.Close()
			if !bytes.Equal(out.Bytes(), again.Bytes()) {
				t.Fatal("two compressions of the same input differ")
			}
			if len(tc.in) == len(text) {
				t.Logf("text: %d -> %d bytes", len(tc.in), out.Len())
			}
		})
	}
}

func BenchmarkGzipWriter(b *testing.B) {
	text := bytes.Repeat([]byte("a line of a text file that compresses well, mostly\n"), 1<<16)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		z := newGzipWriter(io.Discard, flate.DefaultCompression)
		z.Write(text)
		z.Close()
	}
}
