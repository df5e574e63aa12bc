package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchLog writes about size bytes of typical output (lines of 40 to 200
// bytes, some needing escapes) as one file and returns its directory.
func benchLog(b *testing.B, size int) (string, int64) {
	b.Helper()
	dir := b.TempDir()
	var sb strings.Builder
	at := t0
	for i := 0; sb.Len() < size; i++ {
		msg := fmt.Sprintf("%d GET /api/v1/items?id=%d HTTP/1.1 200 \"ok\"\t%s\n", i, i*7, strings.Repeat("x", i%160))
		sb.Write(encode([]string{Stdout, Stderr}[i%5/4], []byte(msg), at))
		at = at.Add(time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(dir, id+"-json.log"), []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return dir, int64(sb.Len())
}

// BenchmarkRead reports how fast a whole log is read (MB/s).
func BenchmarkRead(b *testing.B) {
	dir, size := benchLog(b, 64<<20)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		err := Read(context.Background(), dir, id, ReadOpts{Tail: -1}, func(e Entry) error { n++; return nil })
		if err != nil || n == 0 {
			b.Fatal(err, n)
		}
	}
}

// BenchmarkTail shows that --tail costs the tail, not the log: its time
// does not grow with the file.
func BenchmarkTail(b *testing.B) {
	dir, _ := benchLog(b, 64<<20)
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		err := Read(context.Background(), dir, id, ReadOpts{Tail: 100}, func(e Entry) error { n++; return nil })
		if err != nil || n != 100 {
			b.Fatal(err, n)
		}
	}
}

// BenchmarkParseLine compares the hand parser with encoding/json.
func BenchmarkParseLine(b *testing.B) {
	line := encode(Stdout, []byte("2026/11/22 07:31:10 GET /api/v1/items?id=42 HTTP/1.1 200 \"ok\" 1.2ms\n"), t0)
	line = line[:len(line)-1]
	var e Entry
	var scratch []byte
	for _, p := range []struct {
		name  string
		parse func([]byte, *Entry, *[]byte) bool
	}{{"fast", parseLine}, {"encoding-json", parseSlow}} {
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if !p.parse(line, &e, &scratch) {
					b.Fatal("not parsed")
				}
			}
		})
	}
}
