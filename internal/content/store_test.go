package content

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testData is n pseudo-random bytes, the same for the same seed (also
// across processes).
func testData(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

func ingestNames(t *testing.T, s *Store) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.Root(), ingestDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func walkAll(t *testing.T, s *Store) map[digest.Digest]int64 {
	t.Helper()
	got := map[digest.Digest]int64{}
	if err := s.Walk(func(d digest.Digest, size int64) error {
		got[d] = size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func readBlob(t *testing.T, s *Store, d digest.Digest) []byte {
	t.Helper()
	f, err := s.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertNothingVisible checks that a failed write left no trace.
func assertNothingVisible(t *testing.T, s *Store) {
	t.Helper()
	if got := walkAll(t, s); len(got) != 0 {
		t.Errorf("blobs visible after failed write: %v", got)
	}
	if names := ingestNames(t, s); len(names) != 0 {
		t.Errorf("ingest not empty after failed write: %v", names)
	}
}

func TestOpenCreatesLayout(t *testing.T) {
	s := newStore(t)
	for _, dir := range []string{"blobs/sha256", "blobs/sha512", "ingest"} {
		fi, err := os.Stat(filepath.Join(s.Root(), dir))
		if err != nil || !fi.IsDir() {
			t.Errorf("%s: want a directory, got %v %v", dir, fi, err)
		}
	}
	// Opening again is fine.
	if _, err := Open(s.Root()); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Open(\"\"): want ErrInvalidArgument, got %v", err)
	}
}

func TestWriterCommit(t *testing.T) {
	data := testData(1, 100_000)
	other := testData(2, 100_000)
	d256 := digest.FromBytes(data)
	d512 := digest.SHA512.FromBytes(data)
	tests := []struct {
		name     string
		expected digest.Digest
		size     int64
		chunk    int
		want     digest.Digest
		wantErr  bool // a *MismatchError at Commit
	}{
		{name: "digest and size", expected: d256, size: int64(len(data)), chunk: 4096, want: d256},
		{name: "digest only", expected: d256, size: -1, chunk: 7777, want: d256},
		{name: "size only", size: int64(len(data)), chunk: 1 << 20, want: d256},
		{name: "neither", size: -1, chunk: 1, want: d256},
		{name: "sha512", expected: d512, size: int64(len(data)), chunk: 10_000, want: d512},
		{name: "wrong digest", expected: digest.FromBytes(other), size: int64(len(data)), chunk: 4096, wantErr: true},
		{name: "wrong sha512 digest", expected: digest.SHA512.FromBytes(other), size: -1, chunk: 4096, wantErr: true},
		{name: "short: declared size larger", expected: d256, size: int64(len(data)) + 1, chunk: 4096, wantErr: true},
		{name: "short, size only", size: int64(len(data)) + 1000, chunk: 4096, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			w, err := s.Writer(tt.expected, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			for rest := data; len(rest) > 0; {
				n := min(tt.chunk, len(rest))
				if _, err := w.Write(rest[:n]); err != nil {
					t.Fatalf("Write: %v", err)
				}
				rest = rest[n:]
			}
			if w.Size() != int64(len(data)) {
				t.Errorf("Size = %d, want %d", w.Size(), len(data))
			}
			got, err := w.Commit()
			if tt.wantErr {
				var me *MismatchError
				if !errors.As(err, &me) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Fatalf("Commit: want *MismatchError of class failed precondition, got %v", err)
				}
				if me.ActualSize != int64(len(data)) || me.Actual == "" {
					t.Errorf("MismatchError = %+v", me)
				}
				assertNothingVisible(t, s)
				return
			}
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Commit = %s, want %s", got, tt.want)
			}
			if !bytes.Equal(readBlob(t, s, got), data) {
				t.Error("content differs")
			}
			if size, err := s.Stat(got); err != nil || size != int64(len(data)) {
				t.Errorf("Stat = %d, %v", size, err)
			}
			if names := ingestNames(t, s); len(names) != 0 {
				t.Errorf("ingest after commit: %v", names)
			}
			fi, err := os.Stat(filepath.Join(s.Root(), "blobs", string(got.Algorithm()), got.Encoded()))
			if err != nil || fi.Mode().Perm() != 0o444 {
				t.Errorf("blob file: %v %v, want mode 0444", fi, err)
			}
		})
	}
}

func TestWriteRefusesPastSize(t *testing.T) {
	data := testData(3, 1000)
	tests := []struct {
		name     string
		expected digest.Digest
		size     int64
		writes   []int // sizes of successive writes; the last must fail
	}{
		{name: "one write too long", expected: digest.FromBytes(data[:10]), size: 10, writes: []int{11}},
		{name: "second write crosses size", expected: digest.FromBytes(data[:10]), size: 10, writes: []int{8, 3}},
		{name: "size only", size: 10, writes: []int{10, 1}},
		{name: "zero size", size: 0, writes: []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			w, err := s.Writer(tt.expected, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			off := 0
			for i, n := range tt.writes {
				m, err := w.Write(data[off : off+n])
				last := i == len(tt.writes)-1
				if !last {
					if err != nil || m != n {
						t.Fatalf("write %d: %d, %v", i, m, err)
					}
					off += n
					continue
				}
				var me *MismatchError
				if !errors.As(err, &me) || !errors.Is(err, errdefs.ErrFailedPrecondition) || m != 0 {
					t.Fatalf("write past size: want 0 and *MismatchError, got %d, %v", m, err)
				}
				if me.Actual != "" || me.ActualSize != int64(off+n) {
					t.Errorf("MismatchError = %+v", me)
				}
				if !strings.Contains(err.Error(), "longer than the declared size") {
					t.Errorf("message %q", err)
				}
			}
			// The writer is spent: more writes and the commit fail.
			if _, err := w.Write(nil); err == nil {
				t.Error("Write after refusal succeeded")
			}
			if _, err := w.Commit(); err == nil {
				t.Error("Commit after refusal succeeded")
			}
			assertNothingVisible(t, s)
		})
	}
}

func TestMismatchMessage(t *testing.T) {
	data := []byte("hello")
	actual := digest.FromBytes(data)
	wrong := digest.FromString("other")
	s := newStore(t)
	_, _, err := s.Put(bytes.NewReader(data), wrong, 5)
	want := fmt.Sprintf("blob %s: content has digest %s (size 5), expected %s (size 5)", wrong, actual, wrong)
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	_, _, err = s.Put(bytes.NewReader(data), "", 6)
	want = fmt.Sprintf("blob: content has digest %s (size 5), expected size 6", actual)
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	_, _, err = s.Put(bytes.NewReader(data), wrong, -1)
	want = fmt.Sprintf("blob %s: content has digest %s (size 5), expected %s", wrong, actual, wrong)
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

// endless is a stream that never ends, as a lying server might send.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.n += int64(len(p))
	return len(p), nil
}

// chunky returns at most max bytes per Read, like a network body.
type chunky struct {
	r   io.Reader
	max int
}

func (c chunky) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.max)]) }

// failing returns its data, then err.
type failing struct {
	r   io.Reader
	err error
}

func (f failing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestPut(t *testing.T) {
	big := testData(4, 3<<20+17)
	small := []byte("small blob")
	tests := []struct {
		name      string
		r         func() io.Reader
		expected  digest.Digest
		size      int64
		want      digest.Digest
		wantSize  int64
		wantClass error
	}{
		{name: "known digest and size", r: func() io.Reader { return bytes.NewReader(big) },
			expected: digest.FromBytes(big), size: int64(len(big)), want: digest.FromBytes(big), wantSize: int64(len(big))},
		{name: "unknown size and digest computes digest", r: func() io.Reader { return bytes.NewReader(big) },
			size: -1, want: digest.FromBytes(big), wantSize: int64(len(big))},
		{name: "small reads", r: func() io.Reader { return chunky{bytes.NewReader(big), 1000} },
			size: -1, want: digest.FromBytes(big), wantSize: int64(len(big))},
		{name: "sha512", r: func() io.Reader { return bytes.NewReader(big) },
			expected: digest.SHA512.FromBytes(big), size: -1, want: digest.SHA512.FromBytes(big), wantSize: int64(len(big))},
		{name: "empty", r: func() io.Reader { return strings.NewReader("") },
			size: 0, want: digest.FromBytes(nil), wantSize: 0},
		{name: "small", r: func() io.Reader { return bytes.NewReader(small) },
			expected: digest.FromBytes(small), size: int64(len(small)), want: digest.FromBytes(small), wantSize: int64(len(small))},
		{name: "wrong digest", r: func() io.Reader { return bytes.NewReader(big) },
			expected: digest.FromBytes(small), size: -1, wantClass: errdefs.ErrFailedPrecondition},
		{name: "stream shorter than size", r: func() io.Reader { return bytes.NewReader(big[:100]) },
			expected: digest.FromBytes(big), size: int64(len(big)), wantClass: errdefs.ErrFailedPrecondition},
		{name: "stream longer than size", r: func() io.Reader { return bytes.NewReader(big) },
			size: 100, wantClass: errdefs.ErrFailedPrecondition},
		{name: "endless stream", r: func() io.Reader { return &endless{} },
			expected: digest.FromBytes(small), size: 1 << 20, wantClass: errdefs.ErrFailedPrecondition},
		{name: "truncated stream is an error, not an end", r: func() io.Reader { return failing{bytes.NewReader(small), io.ErrUnexpectedEOF} },
			size: -1, wantClass: io.ErrUnexpectedEOF},
		{name: "hostile digest", r: func() io.Reader { return bytes.NewReader(small) },
			expected: "sha256:../../x", size: -1, wantClass: errdefs.ErrInvalidArgument},
		{name: "bad size", r: func() io.Reader { return bytes.NewReader(small) },
			size: -2, wantClass: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			r := tt.r()
			d, n, err := s.Put(r, tt.expected, tt.size)
			if tt.wantClass != nil {
				if !errors.Is(err, tt.wantClass) {
					t.Fatalf("Put: want %v, got %v", tt.wantClass, err)
				}
				if e, ok := r.(*endless); ok && e.n > 2<<20 {
					t.Errorf("read %d bytes of an endless stream declared 1 MiB", e.n)
				}
				assertNothingVisible(t, s)
				return
			}
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if d != tt.want || n != tt.wantSize {
				t.Fatalf("Put = %s, %d; want %s, %d", d, n, tt.want, tt.wantSize)
			}
			if got := walkAll(t, s); len(got) != 1 || got[d] != n {
				t.Errorf("Walk = %v", got)
			}
			if h := tt.want.Algorithm().FromBytes(readBlob(t, s, d)); h != d {
				t.Errorf("stored content has digest %s", h)
			}
		})
	}
}

func TestPutDuplicate(t *testing.T) {
	data := testData(5, 50_000)
	want := digest.FromBytes(data)
	s := newStore(t)
	for i, expected := range []digest.Digest{want, want, "", ""} {
		// An unread reader shows the shortcut for present blobs.
		r := bytes.NewReader(data)
		d, n, err := s.Put(r, expected, int64(len(data)))
		if err != nil || d != want || n != int64(len(data)) {
			t.Fatalf("Put %d: %s, %d, %v", i, d, n, err)
		}
		if i == 1 && r.Len() != len(data) {
			t.Errorf("Put of a present blob read its stream")
		}
	}
	// Writers (no shortcut) of a present blob commit fine too.
	w, err := s.Writer(want, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if d, err := w.Commit(); err != nil || d != want {
		t.Fatalf("Commit of a present blob: %s, %v", d, err)
	}
	if got := walkAll(t, s); len(got) != 1 {
		t.Errorf("Walk = %v", got)
	}
	if !bytes.Equal(readBlob(t, s, want), data) {
		t.Error("content differs")
	}
	if names := ingestNames(t, s); len(names) != 0 {
		t.Errorf("ingest: %v", names)
	}
}

func TestWriterLifecycle(t *testing.T) {
	s := newStore(t)
	w, err := s.Writer("", -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ingestNames(t, s)) != 1 {
		t.Fatal("no ingest file while writing")
	}
	w.Write([]byte("abc"))
	if got, want := w.Digest(), digest.FromString("abc"); got != want {
		t.Errorf("Digest so far = %s, want %s", got, want)
	}
	w.Write([]byte("def"))
	if got, want := w.Digest(), digest.FromString("abcdef"); got != want {
		t.Errorf("Digest so far = %s, want %s", got, want)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("second Commit: %v", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Write after Commit: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Commit: %v", err)
	}

	// Close without Commit aborts.
	w, err = s.Writer(digest.FromString("never"), 5)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("nev"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Stat(digest.FromString("never")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("aborted blob: Stat = %v", err)
	}
	if names := ingestNames(t, s); len(names) != 0 {
		t.Errorf("ingest after Close: %v", names)
	}

	// The expected digest's algorithm is the one hashed with.
	w, err = s.Writer(digest.Digest("sha512:"+strings.Repeat("0", 128)), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := w.Digest(); got != digest.SHA512.FromBytes(nil) {
		t.Errorf("sha512 writer digest of nothing = %s", got)
	}
}

func TestConcurrentWritersGoroutines(t *testing.T) {
	data := testData(6, 2<<20+5)
	want := digest.FromBytes(data)
	s := newStore(t)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			// Half through a Writer in small pieces, half through Put,
			// all released together so the commits overlap.
			<-start
			if i%2 == 0 {
				_, _, errs[i] = s.Put(chunky{bytes.NewReader(data), 64 << 10}, "", int64(len(data)))
				return
			}
			w, err := s.Writer(want, int64(len(data)))
			if err != nil {
				errs[i] = err
				return
			}
			defer w.Close()
			for rest := data; len(rest) > 0; {
				n := min(100_000, len(rest))
				if _, err := w.Write(rest[:n]); err != nil {
					errs[i] = err
					return
				}
				rest = rest[n:]
			}
			_, errs[i] = w.Commit()
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if got := walkAll(t, s); len(got) != 1 || got[want] != int64(len(data)) {
		t.Errorf("Walk = %v", got)
	}
	if !bytes.Equal(readBlob(t, s, want), data) {
		t.Error("content differs")
	}
	if names := ingestNames(t, s); len(names) != 0 {
		t.Errorf("ingest: %v", names)
	}
}

func TestCleanIngest(t *testing.T) {
	s := newStore(t)
	dir := filepath.Join(s.Root(), ingestDir)
	old := time.Now().Add(-2 * time.Hour)
	plant := func(name string, mtime time.Time) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	plant("abandoned-old", old)
	plant("abandoned-new", time.Now())
	if err := os.Mkdir(filepath.Join(dir, "stray-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(dir, "stray-dir"), old, old)

	// A live writer, made to look old: its lock protects it.
	w, err := s.Writer("", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("in progress"))
	os.Chtimes(w.path, old, old)
	live := filepath.Base(w.path)

	if err := s.CleanIngest(time.Hour); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(ingestNames(t, s), " ")
	if want := "abandoned-new " + live; !sameWords(got, want) {
		t.Errorf("after CleanIngest(1h): %q, want %q", got, want)
	}
	if err := s.CleanIngest(0); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ingestNames(t, s), " "); got != live {
		t.Errorf("after CleanIngest(0): %q, want only the live writer's %q", got, live)
	}
	w.Write([]byte(" and done"))
	d, err := w.Commit()
	if err != nil {
		t.Fatalf("Commit after sweeps: %v", err)
	}
	if string(readBlob(t, s, d)) != "in progress and done" {
		t.Error("content differs")
	}
	if names := ingestNames(t, s); len(names) != 0 {
		t.Errorf("ingest: %v", names)
	}
}

func sameWords(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	if len(x) != len(y) {
		return false
	}
	seen := map[string]int{}
	for _, w := range x {
		seen[w]++
	}
	for _, w := range y {
		seen[w]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestCleanIngestRacesWriters sweeps continuously while writers create,
// fill and commit: no writer may lose its file.
func TestCleanIngestRacesWriters(t *testing.T) {
	s := newStore(t)
	stop := make(chan struct{})
	var sweeper sync.WaitGroup
	sweeper.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				if err := s.CleanIngest(0); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				data := testData(uint64(1000+i*100+j), 10_000)
				if _, _, err := s.Put(bytes.NewReader(data), digest.FromBytes(data), int64(len(data))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	sweeper.Wait()
	if got := walkAll(t, s); len(got) != 200 {
		t.Errorf("Walk found %d blobs, want 200", len(got))
	}
}

func TestStatOpenDelete(t *testing.T) {
	s := newStore(t)
	data := []byte("a blob")
	d, _, err := s.Put(bytes.NewReader(data), "", -1)
	if err != nil {
		t.Fatal(err)
	}
	absent := digest.FromString("absent")

	if n, err := s.Stat(d); err != nil || n != int64(len(data)) {
		t.Errorf("Stat = %d, %v", n, err)
	}
	f, err := s.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4)
	if _, err := f.ReadAt(buf, 2); err != nil || string(buf) != "blob" {
		t.Errorf("ReadAt = %q, %v", buf, err)
	}

	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	// Still readable through the open file.
	if _, err := f.ReadAt(buf, 2); err != nil || string(buf) != "blob" {
		t.Errorf("ReadAt after Delete = %q, %v", buf, err)
	}
	for _, dg := range []digest.Digest{d, absent} {
		if _, err := s.Stat(dg); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Stat(%s): want ErrNotFound, got %v", dg, err)
		}
		if _, err := s.Open(dg); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Open(%s): want ErrNotFound, got %v", dg, err)
		}
		if err := s.Delete(dg); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Delete(%s): want ErrNotFound, got %v", dg, err)
		}
	}
}

func TestNonRegularBlobsAreNotBlobs(t *testing.T) {
	s := newStore(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("secret"), 0o600)
	link := digest.FromString("link")
	dir := digest.FromString("dir")
	fifo := digest.FromString("fifo")
	os.Symlink(secret, filepath.Join(s.Root(), "blobs", "sha256", link.Encoded()))
	os.Mkdir(filepath.Join(s.Root(), "blobs", "sha256", dir.Encoded()), 0o700)
	if err := syscall.Mkfifo(filepath.Join(s.Root(), "blobs", "sha256", fifo.Encoded()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{link, dir, fifo} {
		if _, err := s.Stat(d); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Stat(%s): want ErrNotFound, got %v", d, err)
		}
		done := make(chan error, 1)
		go func() {
			f, err := s.Open(d)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("Open(%s): want ErrNotFound, got %v", d, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Open(%s) hangs", d)
		}
	}
	if got := walkAll(t, s); len(got) != 0 {
		t.Errorf("Walk = %v", got)
	}
}

func TestWalk(t *testing.T) {
	s := newStore(t)
	want := map[digest.Digest]int64{}
	for i := range 5 {
		data := testData(uint64(10+i), 100*i)
		d, n, err := s.Put(bytes.NewReader(data), "", -1)
		if err != nil {
			t.Fatal(err)
		}
		want[d] = n
	}
	data := testData(20, 300)
	d, n, err := s.Put(bytes.NewReader(data), digest.SHA512.FromBytes(data), -1)
	if err != nil {
		t.Fatal(err)
	}
	want[d] = n

	// Junk that is not a blob.
	blobs := filepath.Join(s.Root(), "blobs")
	good := digest.FromString("junk").Encoded()
	os.WriteFile(filepath.Join(blobs, "stray"), []byte("x"), 0o600)
	os.MkdirAll(filepath.Join(blobs, "md5"), 0o700)
	os.WriteFile(filepath.Join(blobs, "md5", strings.Repeat("a", 32)), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(blobs, "sha256", "notahexname"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(blobs, "sha256", strings.ToUpper(good)), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(blobs, "sha256", good[:63]), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(blobs, "sha512", good), []byte("x"), 0o600) // sha256 length in sha512/
	os.Symlink(filepath.Join(blobs, "sha256", good[:63]), filepath.Join(blobs, "sha256", good))
	os.Mkdir(filepath.Join(blobs, "sha256", digest.FromString("adir").Encoded()), 0o700)
	// A symlinked algorithm directory is not followed either.
	os.Rename(filepath.Join(blobs, "sha512"), filepath.Join(blobs, "elsewhere"))
	os.Symlink("elsewhere", filepath.Join(blobs, "sha512"))
	delete(want, d)

	got := walkAll(t, s)
	if len(got) != len(want) {
		t.Errorf("Walk = %v, want %v", got, want)
	}
	for d, n := range want {
		if got[d] != n {
			t.Errorf("Walk: %s size %d, want %d", d, got[d], n)
		}
	}

	// An error from fn stops the walk and comes back as is.
	stop := errors.New("stop")
	calls := 0
	err = s.Walk(func(digest.Digest, int64) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("Walk with failing fn: %v after %d calls", err, calls)
	}
}

func TestHostileDigests(t *testing.T) {
	hex64 := strings.Repeat("a", 64)
	tests := []digest.Digest{
		"",
		"sha256",
		"sha256:",
		":" + digest.Digest(hex64),
		"sha256:../../etc",
		"sha256:../../../../../../etc/passwd",
		"sha256:" + digest.Digest(strings.Repeat("../", 21)) + "x",
		"sha256:" + digest.Digest(strings.ToUpper(hex64)),
		"sha256:" + digest.Digest(hex64[:63]),
		"sha256:" + digest.Digest(hex64) + "a",
		"sha256:" + digest.Digest(hex64[:62]) + "/a",
		"sha256:" + digest.Digest(hex64[:63]) + "\x00",
		"sha512:" + digest.Digest(hex64),
		"sha384:" + digest.Digest(strings.Repeat("a", 96)),
		"md5:" + digest.Digest(strings.Repeat("a", 32)),
		"../sha256:" + digest.Digest(hex64),
		"SHA256:" + digest.Digest(hex64),
		"sha256+b64:" + digest.Digest(hex64),
		"sha256:" + digest.Digest(hex64) + ":" + digest.Digest(hex64),
	}
	s := newStore(t)
	for _, d := range tests {
		t.Run(fmt.Sprintf("%q", d), func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("%s: want ErrInvalidArgument, got %v", op, err)
				}
			}
			check("ValidateDigest", ValidateDigest(d))
			_, err := s.Open(d)
			check("Open", err)
			_, err = s.Stat(d)
			check("Stat", err)
			check("Delete", s.Delete(d))
			if d != "" { // "" means "unknown" to writers
				w, err := s.Writer(d, -1)
				if w != nil {
					w.Close()
				}
				check("Writer", err)
				_, _, err = s.Put(strings.NewReader("x"), d, -1)
				check("Put", err)
			}
		})
	}
	if names := ingestNames(t, s); len(names) != 0 {
		t.Errorf("ingest: %v", names)
	}
	for _, ok := range []digest.Digest{"sha256:" + digest.Digest(hex64), "sha512:" + digest.Digest(strings.Repeat("0", 128))} {
		if err := ValidateDigest(ok); err != nil {
			t.Errorf("ValidateDigest(%s): %v", ok, err)
		}
	}
}
