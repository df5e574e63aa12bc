package logs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// splitAt is where the monitor splits a long line into partial entries.
const splitAt = 16 << 10

// testWriter writes a json-file log the way the monitor does: Docker's
// line format, lines over 16 KiB split into partial entries, rotation by
// renaming .N-1 to .N, ..., current to .1 and creating a new current.
// It reports failures with Errorf, so a writer goroutine may use it.
type testWriter struct {
	tb       testing.TB
	dir, id  string
	maxSize  int64 // rotate before a write would pass it; 0: never
	maxFiles int   // current plus rotated files kept; 0: keep all

	mu    sync.Mutex
	f     *os.File
	size  int64
	clock time.Time     // the next entry's time
	step  time.Duration // added to clock per entry
	files int           // rotated files present
}

var t0 = time.Date(2026, 11, 22, 7, 31, 10, 123456789, time.UTC)

func newTestWriter(tb testing.TB, dir, id string) *testWriter {
	w := &testWriter{tb: tb, dir: dir, id: id, clock: t0, step: time.Second}
	w.open()
	tb.Cleanup(func() { w.close() })
	return w
}

func (w *testWriter) path(n int) string {
	p := filepath.Join(w.dir, w.id+"-json.log")
	if n > 0 {
		p += fmt.Sprintf(".%d", n)
	}
	return p
}

func (w *testWriter) open() {
	f, err := os.OpenFile(w.path(0), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		w.tb.Errorf("test writer: %v", err)
		return
	}
	fi, _ := f.Stat()
	w.f, w.size = f, fi.Size()
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// encode is one entry's line, exactly as Docker writes it.
func encode(stream string, log []byte, t time.Time) []byte {
	l, _ := json.Marshal(string(log))
	return fmt.Appendf(nil, `{"log":%s,"stream":"%s","time":"%s"}`+"\n", l, stream, t.Format(time.RFC3339Nano))
}

// write writes one line of output, splitting it as the monitor does; msg
// gets a newline unless it has one.
func (w *testWriter) write(stream, msg string) {
	if len(msg) == 0 || msg[len(msg)-1] != '\n' {
		msg += "\n"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(msg) > 0 {
		part := msg[:min(len(msg), splitAt)]
		msg = msg[len(part):]
		w.rawLocked(encode(stream, []byte(part), w.clock))
		w.clock = w.clock.Add(w.step)
	}
}

// raw appends bytes as they are: a malformed line, or half of one.
func (w *testWriter) raw(b string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rawLocked([]byte(b))
}

func (w *testWriter) rawLocked(b []byte) {
	if w.maxSize > 0 && w.size > 0 && w.size+int64(len(b)) > w.maxSize {
		w.rotateLocked()
	}
	if w.f == nil {
		return
	}
	if _, err := w.f.Write(b); err != nil {
		w.tb.Errorf("test writer: %v", err)
	}
	w.size += int64(len(b))
}

func (w *testWriter) rotate() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rotateLocked()
}

func (w *testWriter) rotateLocked() {
	w.f.Close()
	w.files++
	if w.maxFiles > 0 && w.files > w.maxFiles-1 {
		w.files = w.maxFiles - 1
	}
	if w.maxFiles == 1 {
		os.Remove(w.path(0))
	}
	for n := w.files; n >= 1; n-- {
		if err := os.Rename(w.path(n-1), w.path(n)); err != nil {
			w.tb.Errorf("test writer: %v", err)
		}
	}
	w.open()
}
