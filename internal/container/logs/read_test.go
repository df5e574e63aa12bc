package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

const id = "c0ffee"

// rec is an Entry that owns its bytes, for comparing.
type rec struct {
	Stream string
	Time   time.Time
	Log    string
}

func (r rec) String() string {
	return fmt.Sprintf("%s %s %q", r.Stream, r.Time.Format(time.RFC3339Nano), r.Log)
}

func read(t *testing.T, dir string, opts ReadOpts) []rec {
	t.Helper()
	var got []rec
	err := Read(context.Background(), dir, id, opts, func(e Entry) error {
		got = append(got, rec{e.Stream, e.Time, string(e.Log)})
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return got
}

func logs(rs []rec) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Log
	}
	return out
}

// numbered writes n entries "0\n" ... "n-1\n" and returns their logs.
func numbered(w *testWriter, from, n int) []string {
	var want []string
	for i := from; i < from+n; i++ {
		w.write(Stdout, fmt.Sprint(i))
		want = append(want, fmt.Sprint(i, "\n"))
	}
	return want
}

func all() ReadOpts { return ReadOpts{Tail: -1} }

func TestReadAll(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.write(Stdout, "hello")
	w.write(Stderr, `quote " backslash \ tab	<html> é 日本 `+"\x01")
	w.write(Stdout, "")
	got := read(t, dir, all())
	want := []rec{
		{Stdout, t0, "hello\n"},
		{Stderr, t0.Add(time.Second), `quote " backslash \ tab	<html> é 日本 ` + "\x01\n"},
		{Stdout, t0.Add(2 * time.Second), "\n"},
	}
	if !slices.EqualFunc(got, want, func(a, b rec) bool { return a.Stream == b.Stream && a.Time.Equal(b.Time) && a.Log == b.Log }) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if got[0].Time.Location() != time.UTC {
		t.Errorf("time in %v, want UTC", got[0].Time.Location())
	}
}

func TestReadEmpty(t *testing.T) {
	dir := t.TempDir()
	if got := read(t, dir, all()); len(got) != 0 {
		t.Fatalf("no files: got %v", got)
	}
	newTestWriter(t, dir, id)
	if got := read(t, dir, ReadOpts{Tail: 3}); len(got) != 0 {
		t.Fatalf("empty file: got %v", got)
	}
}

func TestReadErrors(t *testing.T) {
	err := Read(context.Background(), filepath.Join(t.TempDir(), "gone"), id, all(), func(Entry) error { return nil })
	if !errdefs.IsNotFound(err) {
		t.Errorf("missing dir: %v, want not found", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "x\x00"} {
		err := Read(context.Background(), t.TempDir(), bad, all(), func(Entry) error { return nil })
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("id %q: %v, want invalid argument", bad, err)
		}
	}
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	numbered(w, 0, 5)
	stop := errors.New("enough")
	n := 0
	err = Read(context.Background(), dir, id, all(), func(Entry) error {
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("callback error: %v after %d entries, want %v after 2", err, n, stop)
	}
}

func TestPartialEntries(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	long := strings.Repeat("0123456789abcdef", 2500) // 40000 bytes: three entries
	w.write(Stdout, long)
	w.write(Stderr, "after")
	got := read(t, dir, all())
	if len(got) != 4 {
		t.Fatalf("got %d entries, want 3 parts and 1 line", len(got))
	}
	var joined string
	for _, r := range got[:3] {
		joined += r.Log
	}
	if joined != long+"\n" {
		t.Errorf("parts do not join to the line")
	}
	for _, r := range got[:2] {
		if strings.HasSuffix(r.Log, "\n") {
			t.Errorf("partial entry ends in a newline")
		}
	}
}

func TestMalformedLinesSkipped(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.write(Stdout, "first")
	for _, bad := range []string{
		"not json",
		"",
		`{"log":"x\n","stream":"stdout","time":"yesterday"}`,
		`{"log":"x\n","stream":"stdout","time":"2026-02-30T00:00:00Z"}`,
		`{"log":"x\n","stream":"stdin","time":"2026-11-22T07:31:10Z"}`,
		`{"stream":"stdout","time":"2026-11-22T07:31:10Z"}`,
		`{"log":"x\n","stream":"stdout","time":"2026-11-22T07:31:10Z"`,
		`{"log":"raw` + "\x01" + `control","stream":"stdout","time":"2026-11-22T07:31:10Z"}`,
		`[1,2,3]`,
		"\x00\xff\xfe",
	} {
		w.raw(bad + "\n")
	}
	w.write(Stdout, "last")
	if got := logs(read(t, dir, all())); !slices.Equal(got, []string{"first\n", "last\n"}) {
		t.Fatalf("got %q", got)
	}
}

func TestOtherShapesAccepted(t *testing.T) {
	// What encoding/json accepts is an entry, whatever the key order,
	// spacing, extra keys or zone; times are returned in UTC.
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.raw(`{"stream":"stderr","time":"2026-11-22T08:31:10+01:00","log":"a\n"}` + "\n")
	w.raw(`{ "log" : "b\ud83d\ude00\n", "stream":"stdout", "attrs":{"k":"v"}, "time":"2026-11-22T07:31:10.5Z" }` + "\n")
	got := read(t, dir, all())
	want := []rec{
		{Stderr, time.Date(2026, 11, 22, 7, 31, 10, 0, time.UTC), "a\n"},
		{Stdout, time.Date(2026, 11, 22, 7, 31, 10, 5e8, time.UTC), "b😀\n"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func TestIncompleteLastLine(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	want := numbered(w, 0, 3)
	line := string(encode(Stdout, []byte("3\n"), t0.Add(time.Hour)))
	w.raw(line[:20]) // the writer is mid-write
	if got := logs(read(t, dir, all())); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := logs(read(t, dir, ReadOpts{Tail: 1})); !slices.Equal(got, want[2:]) {
		t.Fatalf("tail 1: got %q, want %q", got, want[2:])
	}
	w.raw(line[20:])
	if got := logs(read(t, dir, ReadOpts{Tail: 1})); !slices.Equal(got, []string{"3\n"}) {
		t.Fatalf("completed: got %q", got)
	}
}

func TestOverlongLineSkipped(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.write(Stdout, "before")
	w.raw(`{"log":"` + strings.Repeat("x", 3*maxLine) + `\n","stream":"stdout","time":"2026-11-22T07:31:10Z"}` + "\n")
	w.write(Stdout, "after")
	if got := logs(read(t, dir, all())); !slices.Equal(got, []string{"before\n", "after\n"}) {
		t.Fatalf("got %q", got)
	}
	if got := logs(read(t, dir, ReadOpts{Tail: 2})); !slices.Equal(got, []string{"before\n", "after\n"}) {
		t.Fatalf("tail 2: got %q", got)
	}
	// Just under the cap is still a line.
	w.write(Stdout, strings.Repeat("y", maxLine-200))
	if got := read(t, dir, ReadOpts{Tail: 1}); len(got) != 1 {
		t.Fatalf("line under the cap: got %d entries", len(got))
	}
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.maxSize = 1000 // about 12 entries per file
	var want []string
	for i := range 100 {
		want = append(want, numbered(w, i, 1)...)
		if i%7 == 3 {
			w.raw("garbage that is no entry\n") // never counted
		}
	}
	w.raw(`{"log":"incomplete`)
	paths, _ := Paths(dir, id)
	if len(paths) < 8 {
		t.Fatalf("only %d files: the test wants rotations", len(paths))
	}
	for _, n := range []int{0, 1, 2, 11, 12, 13, 40, 99, 100, 101, 1 << 30} {
		got := logs(read(t, dir, ReadOpts{Tail: n}))
		if w := want[len(want)-min(n, len(want)):]; !slices.Equal(got, w) {
			t.Errorf("tail %d: got %d entries %q, want %d", n, len(got), got, len(w))
		}
	}
	if got := logs(read(t, dir, all())); !slices.Equal(got, want) {
		t.Errorf("all: got %q", got)
	}
}

func TestTailSkipsMalformedRun(t *testing.T) {
	// More malformed lines after the wanted entries than the tail asks
	// for: the backward scan must go back again for the difference.
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	want := numbered(w, 0, 3)
	for range 50 {
		w.raw("{}\n")
	}
	w.rotate()
	for range 50 {
		w.raw("nope\n")
	}
	if got := logs(read(t, dir, ReadOpts{Tail: 2})); !slices.Equal(got, want[1:]) {
		t.Fatalf("got %q, want %q", got, want[1:])
	}
}

func TestSinceUntil(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, id)
	w.maxSize = 500
	want := numbered(w, 0, 60) // entry i at t0 + i seconds
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	for _, tc := range []struct {
		name         string
		opts         ReadOpts
		first, count int
	}{
		{"since", ReadOpts{Tail: -1, Since: at(40)}, 40, 20},
		{"since between", ReadOpts{Tail: -1, Since: at(40).Add(-time.Nanosecond)}, 40, 20},
		{"until", ReadOpts{Tail: -1, Until: at(10)}, 0, 11},
		{"both", ReadOpts{Tail: -1, Since: at(5), Until: at(25)}, 5, 21},
		{"since after all", ReadOpts{Tail: -1, Since: at(100)}, 0, 0},
		{"until before all", ReadOpts{Tail: -1, Until: at(-1)}, 0, 0},
		{"tail then since", ReadOpts{Tail: 10, Since: at(55)}, 55, 5},
		{"tail within since", ReadOpts{Tail: 10, Since: at(5)}, 50, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := logs(read(t, dir, tc.opts))
			if w := want[tc.first : tc.first+tc.count]; !slices.Equal(got, w) {
				t.Errorf("got %q, want %q", got, w)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	dir := t.TempDir()
	if p, err := Paths(filepath.Join(dir, "gone"), id); err != nil || p != nil {
		t.Fatalf("missing dir: %v, %v", p, err)
	}
	for _, name := range []string{
		id + "-json.log", id + "-json.log.1", id + "-json.log.2", id + "-json.log.10",
		id + "-json.log.01", id + "-json.log.tmp", id + "-json.log.-1", id + "-json.log.0",
		"other-json.log", "other-json.log.1",
	} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
	}
	got, err := Paths(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, filepath.Base(p))
	}
	want := []string{id + "-json.log.10", id + "-json.log.2", id + "-json.log.1", id + "-json.log"}
	if !slices.Equal(names, want) {
		t.Fatalf("got %q, want %q", names, want)
	}
}
