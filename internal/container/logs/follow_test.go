package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// follower runs a following Read in the background.
type follower struct {
	stop   chan struct{}
	cancel context.CancelFunc
	done   chan struct{} // closed when Read has returned err
	err    error
	mu     sync.Mutex
	got    []string
}

func startFollow(t *testing.T, dir string, opts ReadOpts) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{stop: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	opts.Follow, opts.Stop = true, f.stop
	go func() {
		defer close(f.done)
		f.err = Read(ctx, dir, id, opts, func(e Entry) error {
			f.mu.Lock()
			f.got = append(f.got, string(e.Log))
			f.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
		}
	})
	return f
}

func (f *follower) entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// waitFor waits until the follower has n entries.
func (f *follower) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f.entries()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower has %d entries after 10s, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *follower) waitForOrNot(n int) []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f.entries()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// finish closes Stop and returns what Read delivered and returned.
func (f *follower) finish(t *testing.T) ([]string, error) {
	t.Helper()
	close(f.stop)
	select {
	case <-f.done:
		return f.entries(), f.err
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return 10s after Stop")
		return nil, nil
	}
}

// modes runs a follow test with inotify and with the polling fallback.
func modes(t *testing.T, test func(t *testing.T)) {
	t.Run("inotify", test)
	t.Run("poll", func(t *testing.T) {
		forcePoll = true
		defer func() { forcePoll = false }()
		test(t)
	})
}

func TestFollowSeesWrites(t *testing.T) {
	modes(t, func(t *testing.T) {
		dir := t.TempDir()
		w := newTestWriter(t, dir, id)
		want := numbered(w, 0, 3)
		f := startFollow(t, dir, ReadOpts{Tail: -1})
		f.waitFor(t, 3)
		want = append(want, numbered(w, 3, 2)...)
		f.waitFor(t, 5)
		// Half a line: the follower waits for the rest instead of
		// skipping it as malformed.
		line := string(encode(Stdout, []byte("5\n"), t0.Add(time.Hour)))
		w.raw(line[:25])
		time.Sleep(3 * pollInterval / 2)
		w.raw(line[25:])
		want = append(want, "5\n")
		f.waitFor(t, 6)
		got, err := f.finish(t)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	})
}

func TestFollowStopDrains(t *testing.T) {
	modes(t, func(t *testing.T) {
		dir := t.TempDir()
		w := newTestWriter(t, dir, id)
		f := startFollow(t, dir, ReadOpts{Tail: 0})
		time.Sleep(50 * time.Millisecond) // let it reach the end
		want := numbered(w, 0, 100)
		w.rotate()
		want = append(want, numbered(w, 100, 3)...)
		// The container exited right after writing: Stop must not lose
		// what is already on disk, even across a rotation.
		got, err := f.finish(t)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("got %d entries, %v; want %d", len(got), err, len(want))
		}
	})
}

func TestFollowTailZeroSkipsOld(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	numbered(w, 0, 5)
	f := startFollow(t, dir, ReadOpts{Tail: 0})
	time.Sleep(50 * time.Millisecond)
	want := numbered(w, 5, 2)
	f.waitFor(t, 2)
	if got, err := f.finish(t); err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

func TestFollowRotationWhileReading(t *testing.T) {
	modes(t, func(t *testing.T) {
		dir := t.TempDir()
		w := newTestWriter(t, dir, id)
		w.maxSize = 2000 // a rotation every ~25 entries
		want := numbered(w, 0, 100)
		f := startFollow(t, dir, ReadOpts{Tail: 30})
		want = want[70:]
		f.waitFor(t, 30)
		const n = 5000
		for i := 100; i < 100+n; i++ {
			want = append(want, numbered(w, i, 1)...)
			if i%500 == 0 {
				time.Sleep(time.Millisecond) // let the follower catch up now and then
			}
		}
		if got := f.waitForOrNot(len(want)); len(got) < len(want) {
			i := firstDiff(got, want)
			t.Fatalf("follower has %d entries after 10s, want %d; first difference at %d: %q vs %q", len(got), len(want), i, got[i:min(i+5, len(got))], want[i:min(i+5, len(want))])
		}
		got, err := f.finish(t)
		if err != nil || !slices.Equal(got, want) {
			i := firstDiff(got, want)
			t.Fatalf("got %d entries (%v), want %d; first difference at %d: %q vs %q", len(got), err, len(want), i, got[i:min(i+5, len(got))], want[i:min(i+5, len(want))])
		}
	})
}

func TestFollowBehindWithDeletedFiles(t *testing.T) {
	// The writer keeps two files: a follower that falls behind loses
	// what was deleted, but never sees an entry twice or out of order,
	// and ends with the last one.
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.maxSize, w.maxFiles = 600, 2
	f := startFollow(t, dir, ReadOpts{Tail: -1})
	const n = 3000
	numbered(w, 0, n)
	got := f.waitFor(t, 1)
	deadline := time.Now().Add(10 * time.Second)
	for (len(got) == 0 || got[len(got)-1] != fmt.Sprint(n-1, "\n")) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		got = f.entries()
	}
	got, err := f.finish(t)
	if err != nil {
		t.Fatal(err)
	}
	prev := -1
	for _, s := range got {
		i, _ := strconv.Atoi(strings.TrimSuffix(s, "\n"))
		if i <= prev {
			t.Fatalf("entry %d after %d", i, prev)
		}
		prev = i
	}
	if prev != n-1 {
		t.Fatalf("last entry %d, want %d", prev, n-1)
	}
}

func TestFollowBeforeFirstFile(t *testing.T) {
	modes(t, func(t *testing.T) {
		dir := t.TempDir()
		f := startFollow(t, dir, ReadOpts{Tail: -1})
		time.Sleep(50 * time.Millisecond)
		w := newTestWriter(t, dir, id)
		want := numbered(w, 0, 3)
		f.waitFor(t, 3)
		if got, err := f.finish(t); err != nil || !slices.Equal(got, want) {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	})
}

func TestFollowTruncatedInPlace(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	want := numbered(w, 0, 5)
	f := startFollow(t, dir, ReadOpts{Tail: -1})
	f.waitFor(t, 5)
	w.mu.Lock()
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	w.size = 0
	w.mu.Unlock()
	want = append(want, numbered(w, 5, 1)...)
	f.waitFor(t, 6)
	if got, err := f.finish(t); err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

func TestFollowUntil(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.clock, w.step = time.Now().UTC(), 0
	want := numbered(w, 0, 2)
	f := startFollow(t, dir, ReadOpts{Tail: -1, Until: time.Now().Add(300 * time.Millisecond)})
	select {
	case <-f.done:
		if got := f.entries(); f.err != nil || !slices.Equal(got, want) {
			t.Fatalf("got %q, %v; want %q", got, f.err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow with until did not end when until passed")
	}

	// An Until already past: no following at all.
	err := Read(context.Background(), dir, id, ReadOpts{Tail: -1, Follow: true, Until: time.Now().Add(-time.Hour)},
		func(Entry) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
}

func TestFollowContextCancel(t *testing.T) {
	modes(t, func(t *testing.T) {
		before := runtime.NumGoroutine()
		dir := t.TempDir()
		newTestWriter(t, dir, id)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Read(ctx, dir, id, ReadOpts{Tail: -1, Follow: true}, func(Entry) error { return nil })
		}()
		time.Sleep(50 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Read ignored the cancelled context")
		}
		// No watcher goroutine outlives Read.
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func TestFollowNoFileDescriptorLeak(t *testing.T) {
	count := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.maxSize = 300
	numbered(w, 0, 50)
	before := count()
	for range 5 {
		f := startFollow(t, dir, ReadOpts{Tail: 10})
		numbered(w, 50, 20)
		if _, err := f.finish(t); err != nil {
			t.Fatal(err)
		}
		read(t, dir, ReadOpts{Tail: 25})
	}
	if after := count(); after > before {
		t.Fatalf("%d open descriptors after, %d before", after, before)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
